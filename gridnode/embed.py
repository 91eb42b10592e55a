"""A node inside another program: from asyncio code, or from plain synchronous code.

The node itself is trio-native (:func:`gridnode.node.open_node`). To serve an asyncio program
(a FastAPI backend, say) or a synchronous one, it runs in a thread of its own, in its own
``trio.run`` (:func:`gridnode.runner.run`, the runner ``gridnode start`` uses, stopped by an event
instead of a signal); the program calls into it from any thread:

    async with gridnode.asyncio_node(data_dir) as node:      # asyncio
        address = await node.create_database("notes", "keyvalue")
        await node.put(address, "hello", "world")

    with gridnode.start_node(data_dir) as node:               # synchronous, any thread
        node.put(address, "hello", "world")

How a call crosses over: the caller's thread queues the operation into the node's trio loop
(:meth:`trio.lowlevel.TrioToken.run_sync_soon`), where it runs as a task of a nursery the node
owns, and hands back a :class:`concurrent.futures.Future`; an asyncio caller awaits it through
:func:`asyncio.wrap_future` (no thread is blocked, none is borrowed from the default executor),
a synchronous caller blocks on it. Cancelling an asyncio call cancels its trio task.

Guarantees:

- errors are the node's own, typed (:class:`gridnode.errors.NotFound`,
  :class:`crdt.errors.InvalidOperation`, :class:`gridnode.errors.UnknownDatabase`,
  :class:`gridnode.errors.ConfigError`, ...): every one a
  :class:`GridnodeError`; a call to a node that stopped raises :class:`NodeStopped`;
- leaving the block stops the node and joins its thread: no thread outlives it; calls still
  running are cancelled (they raise :class:`NodeStopped`); if the node failed while it ran, its
  error is raised there;
- the node holds its data directory's lock as ``gridnode start`` does, and (``api=True``, the
  default) serves the local API, so ``gridnode status`` and every other ``gridnode`` command work
  against it meanwhile.

The operations are those of the local API (docs/cli.md), on values rather than JSON: a database
is named by its address, its bare CID or its unique name; values are IPLD values (``None``,
``bool``, ``int``, ``float``, ``str``, ``bytes``, lists, dicts, :class:`~crdt.ipld.cid.CID`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from gridnode.errors import NodeStopped

if TYPE_CHECKING:
    from gridnode.node import Node

__all__ = ["AsyncioNode", "NodeStopped", "SyncNode", "asyncio_node", "start_node"]

T = TypeVar("T")

#: Seconds to wait for the node to start, and to stop, by default.
START_TIMEOUT = 60.0


# -- the operations, run in the node's trio loop ---------------------------------------------------


async def _write(node: Node, ref: str, payloads: Sequence[Any]) -> dict[str, Any]:
    from gridnode import ops

    entries = await node.write(ref, list(payloads))
    database = await node.worker.run(ops.resolve, node.repo, ref)
    written: dict[str, Any] = await node.worker.run(ops.written, database, entries)
    return written


async def _create(
    node: Node,
    name: str,
    store: str,
    writers: Sequence[str],
    public: bool,
    indexes: Sequence[str],
    index_by: str | None,
    private: bool,
    readers: Sequence[str],
    encrypted: bool = False,
    admins: Sequence[str] = (),
) -> str:
    database = await node.create_database(
        name,
        store,
        writers=writers,
        public=public,
        indexes=indexes,
        index_by=index_by,
        private=private,
        readers=readers,
        encrypted=encrypted,
        admins=admins,
    )
    return database.address


async def _follow(node: Node, address: str, timeout: float, snapshot: bool = True) -> str:
    database = await node.follow(address, timeout=timeout, snapshot=snapshot)
    return database.address


async def _databases(node: Node) -> list[dict[str, Any]]:
    from gridnode import ops

    listing: list[dict[str, Any]] = await node.worker.run(ops.listing, node.repo)
    return listing


async def _info(node: Node, ref: str) -> dict[str, Any]:
    from gridnode import ops

    def info() -> dict[str, Any]:
        return ops.info(ops.resolve(node.repo, ref), digest=True)

    found: dict[str, Any] = await node.worker.run(info)
    return found


async def _read(node: Node, name: str, ref: str, params: dict[str, Any]) -> dict[str, Any]:
    """The registered read ``name`` (:data:`gridnode.ops.READS`), as the API serves it."""
    from gridnode import ops

    database = await node.worker.run(ops.resolve, node.repo, ref)
    # A read over the whole database (verify) runs a slice at a time: other calls go between.
    found: dict[str, Any] = await node.worker.run_steps(ops.read_steps(name, database, params))
    return found


async def _get(node: Node, ref: str, key: Any) -> Any:
    params = {"key": key} if type(key) is str else {"id": key}
    return (await _read(node, "get", ref, params))["value"]


async def _delete(node: Node, ref: str, key: Any) -> str:
    info = await _info(node, ref)
    field = "key" if info["type"] == "keyvalue" else "id"
    written = await _write(node, ref, [{"op": "del", field: key}])
    return str(written["entries"][0])


async def _query(
    node: Node,
    ref: str,
    field: str | None,
    bounds: dict[str, Any],
    limit: int | None,
    reverse: bool,
) -> list[Any]:
    from gridnode import ops
    from gridnode.errors import InvalidRequest

    unknown = set(bounds) - set(ops.BOUNDS)
    if unknown:
        raise InvalidRequest(f"unknown bound {sorted(unknown)[0]!r} (eq, gt, gte, lt, lte)")
    params = {"field": field, "limit": limit, "reverse": reverse, **bounds}
    return list((await _read(node, "query", ref, params))["documents"])


async def _items(node: Node, ref: str, limit: int | None, reverse: bool) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await _read(node, "iter", ref, {"limit": limit, "reverse": reverse})
    )["items"]
    return found


async def _value(node: Node, ref: str) -> int:
    return int((await _read(node, "value", ref, {}))["value"])


async def _digest(node: Node, ref: str) -> str:
    return str((await _info(node, ref))["digest"])


async def _peers(node: Node) -> list[str]:
    return sorted(node.peers())


async def _connect(node: Node, multiaddr: str) -> str | None:
    return await node.connect(multiaddr)


# -- the node's thread -----------------------------------------------------------------------------


class _NodeThread:
    """The node's thread: :func:`gridnode.runner.run` with ``stop`` instead of signals, and a
    nursery of calls (the runner's extra work) that :meth:`submit` spawns into from any thread."""

    def __init__(self, data_dir: Path, node_options: dict[str, Any], api: bool) -> None:
        self.data_dir = Path(data_dir)
        self._options = node_options
        self._api = api
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.node: Node | None = None
        self.api_url: str | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._calls: trio.Nursery | None = None
        # Set only in the node's loop (run_sync_soon), or before the loop knows of it.
        self._stop = trio.Event()
        self._stop_requested = False
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._thread = threading.Thread(
            target=self._run, name=f"gridnode node {self.data_dir}", daemon=True
        )

    # -- lifetime ---------------------------------------------------------------------------------

    def launch(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from gridnode import runner

        try:
            runner.run(
                self.data_dir,
                **self._options,
                api=self._api,
                stop=self._stop,
                ready=self._started,
                tasks=self._serve_calls,
            )
        except BaseException as exc:
            self._error = exc
        finally:
            self._calls = None
            stopped = NodeStopped(
                f"the node stopped: {self._error}" if self._error else "the node stopped"
            )
            with self._lock:
                pending, self._pending = set(self._pending), set()
            for future in pending:
                _settle(future, error=stopped)
            if not self.ready.done():
                _settle(self.ready, error=self._error or NodeStopped("the node did not start"))
            _settle(self.finished, None)

    def _started(self, node: Node, url: str | None) -> None:
        self.node, self.api_url = node, url

    async def _serve_calls(self, node: Node, calls: trio.Nursery) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._calls = calls
        _settle(self.ready, None)
        # A stop asked for before the token was known could not reach the loop: honour it now.
        if self._stop_requested:
            self._stop.set()

    def request_stop(self) -> None:
        """Ask the node to stop (from any thread); returns at once."""
        self._stop_requested = True
        token = self._token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._stop.set)

    def join(self) -> None:
        """After :attr:`finished`: the thread is gone; raise the error that stopped the node, if
        any."""
        if self._thread.ident is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error

    # -- calls ------------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``await fn(node, *args)`` in the node's loop; its future (thread-safe)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        token = self._token
        if token is None or self._calls is None or not self.ready.done():
            raise NodeStopped("the node is not running")
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

        def spawn() -> None:
            if self._calls is None:
                _settle(future, error=NodeStopped("the node stopped"))
                return
            self._calls.start_soon(self._call, fn, args, future)

        try:
            token.run_sync_soon(spawn)
        except trio.RunFinishedError:
            _settle(future, error=NodeStopped("the node stopped"))
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    async def _call(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        future: concurrent.futures.Future[Any],
    ) -> None:
        token = trio.lowlevel.current_trio_token()
        try:
            with trio.CancelScope() as scope:

                def cancelled(done: concurrent.futures.Future[Any]) -> None:
                    # The caller gave up (an asyncio task cancelled): so does the trio task.
                    if done.cancelled():
                        with contextlib.suppress(trio.RunFinishedError):
                            token.run_sync_soon(scope.cancel)

                future.add_done_callback(cancelled)
                try:
                    result = await fn(self.node, *args)
                except Exception as exc:
                    _settle(future, error=exc)
                else:
                    _settle(future, result)
        finally:
            if not future.done():
                _settle(future, error=NodeStopped("the node stopped during the call"))


def _settle(
    future: concurrent.futures.Future[Any], value: Any = None, *, error: BaseException | None = None
) -> None:
    """Set a future's outcome unless it is already settled (cancelled by its caller)."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


# -- the two facades -------------------------------------------------------------------------------


class _Facade:
    """What both facades share: the node's identity once it runs."""

    _thread: _NodeThread

    @property
    def data_dir(self) -> Path:
        return self._thread.data_dir

    def _node(self) -> Node:
        node = self._thread.node
        if node is None:
            raise NodeStopped("the node is not running")
        return node

    @property
    def peer_id(self) -> str:
        """The libp2p peer id (``12D3KooW...``)."""
        return self._node().peer_id

    @property
    def did(self) -> str:
        """The node's identity (``did:key:z6Mk...``): what an admin names with ``writers=``."""
        return self._node().repo.did

    @property
    def addrs(self) -> list[str]:
        """The multiaddrs the node listens on, each ending ``/p2p/<peer id>``."""
        return list(self._node().addrs)

    @property
    def api_url(self) -> str | None:
        """The local API's URL (``None`` with ``api=False``)."""
        return self._thread.api_url


class AsyncioNode(_Facade):
    """A node for asyncio code. Made by :func:`asyncio_node`; every method is a coroutine to
    await in the asyncio loop (any number at once, from any task)."""

    def __init__(self, thread: _NodeThread) -> None:
        self._thread = thread

    async def __aenter__(self) -> AsyncioNode:
        self._thread.launch()
        try:
            await asyncio.shield(asyncio.wrap_future(self._thread.ready))
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop(raise_error=exc is None)

    async def _stop(self, raise_error: bool = False) -> None:
        self._thread.request_stop()
        await asyncio.shield(asyncio.wrap_future(self._thread.finished))
        try:
            self._thread.join()
        except BaseException:
            if raise_error:
                raise

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await asyncio.wrap_future(self._thread.submit(fn, *args))

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(node, *args)`` in the node's trio loop, with the trio
        :class:`~gridnode.node.Node`: for what the methods below do not cover."""
        return await self._run(fn, *args)

    async def create_database(
        self,
        name: str,
        type: str,
        *,
        writers: Sequence[str] = (),
        public: bool = False,
        indexes: Sequence[str] = (),
        index_by: str | None = None,
        private: bool = False,
        readers: Sequence[str] = (),
        encrypted: bool = False,
        admins: Sequence[str] = (),
    ) -> str:
        """Create a database (this node is its admin, and ``admins`` too: say a key kept offline,
        docs/keys.md); return its address. ``private``: only
        its admins, writers and ``readers`` (did:keys) may read it. ``encrypted``: its store
        operations are sealed with a key wrapped for this node, its writers and ``readers``;
        nodes without the key replicate it blind."""
        return await self._run(
            _create,
            name,
            type,
            writers,
            public,
            indexes,
            index_by,
            private,
            readers,
            encrypted,
            admins,
        )

    async def follow(self, address: str, *, timeout: float = 30.0, snapshot: bool = True) -> str:
        """Keep and replicate a database a connected peer has; return its address. One held
        nothing of yet starts from a trusted signed snapshot (reads at once, the history verified
        behind it); ``snapshot=False``: verify everything before serving."""
        return await self._run(_follow, address, timeout, snapshot)

    async def databases(self) -> list[dict[str, Any]]:
        """The databases kept here: ``{"address", "name", "type", "entries"}`` each."""
        return await self._run(_databases)

    async def info(self, ref: str) -> dict[str, Any]:
        """A database's manifest, entries, heads and state digest."""
        return await self._run(_info, ref)

    async def write(self, ref: str, ops: Sequence[Any]) -> list[str]:
        """Write ops (one transaction, checked first) and return the entry CIDs."""
        written = await self._run(_write, ref, ops)
        return [str(cid) for cid in written["entries"]]

    async def put(self, ref: str, key: str, value: Any) -> str:
        """keyvalue: set ``key``; return the entry CID."""
        return (await self.write(ref, [{"op": "put", "key": key, "value": value}]))[0]

    async def put_document(self, ref: str, doc: dict[str, Any]) -> str:
        """documents: put ``doc`` (holding its id); return the entry CID."""
        return (await self.write(ref, [{"op": "put", "doc": doc}]))[0]

    async def get(self, ref: str, key: str | int) -> Any:
        """A keyvalue value or a document by id; :class:`gridnode.errors.NotFound` if none."""
        return await self._run(_get, ref, key)

    async def delete(self, ref: str, key: str | int) -> str:
        """keyvalue or documents: delete a key or a document id; return the entry CID."""
        return await self._run(_delete, ref, key)

    async def add(self, ref: str, value: Any) -> str:
        """events or set: add a value; return the entry CID."""
        return (await self.write(ref, [{"op": "add", "value": value}]))[0]

    async def inc(self, ref: str, by: int = 1) -> int:
        """counter: add ``by``; return the new value."""
        written = await self._run(_write, ref, [{"op": "inc", "by": by}])
        return int(written["value"])

    async def value(self, ref: str) -> int:
        """counter: its value."""
        return await self._run(_value, ref)

    async def query(
        self,
        ref: str,
        field: str | None = None,
        *,
        limit: int | None = None,
        reverse: bool = False,
        **bounds: Any,
    ) -> list[Any]:
        """documents: those whose indexed ``field`` matches ``eq=``/``gt=``/``gte=``/``lt=``/
        ``lte=``, in its order."""
        return await self._run(_query, ref, field, bounds, limit, reverse)

    async def items(
        self, ref: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[dict[str, Any]]:
        """events ``{"cid", "value"}`` in the log's order, or set members ``{"value"}``."""
        return await self._run(_items, ref, limit, reverse)

    async def digest(self, ref: str) -> str:
        """The state digest (hex): equal on replicas holding the same entries."""
        return await self._run(_digest, ref)

    async def peers(self) -> list[str]:
        """The peer ids of the connected peers."""
        return await self._run(_peers)

    async def connect(self, multiaddr: str) -> str | None:
        """Dial a peer (``/ip4/.../tcp/N/p2p/<peer id>``); its peer id, ``None`` if unreachable."""
        return await self._run(_connect, multiaddr)


class SyncNode(_Facade):
    """A node for synchronous code. Made by :func:`start_node`; every method blocks until done
    and may be called from any thread at the same time. Not for use inside an asyncio loop
    (it would block the loop): use :class:`AsyncioNode` there."""

    def __init__(self, thread: _NodeThread, timeout: float) -> None:
        self._thread = thread
        self._thread.launch()
        try:
            self._thread.ready.result(timeout)
        except concurrent.futures.TimeoutError:
            self.close()
            raise NodeStopped(f"the node did not start in {timeout:g} s") from None
        except BaseException:
            self._thread.request_stop()
            self._thread.finished.result()
            self._thread.join()
            raise

    def close(self) -> None:
        """Stop the node and join its thread; raise the error that stopped it, if any.
        Idempotent."""
        self._thread.request_stop()
        self._thread.finished.result()
        self._thread.join()

    def __enter__(self) -> SyncNode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except BaseException:
            if exc is None:
                raise

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._thread.submit(fn, *args).result()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(node, *args)`` in the node's trio loop, with the trio
        :class:`~gridnode.node.Node`: for what the methods below do not cover."""
        return self._run(fn, *args)

    def create_database(
        self,
        name: str,
        type: str,
        *,
        writers: Sequence[str] = (),
        public: bool = False,
        indexes: Sequence[str] = (),
        index_by: str | None = None,
        private: bool = False,
        readers: Sequence[str] = (),
        encrypted: bool = False,
        admins: Sequence[str] = (),
    ) -> str:
        """Create a database (this node is its admin, and ``admins`` too: say a key kept offline,
        docs/keys.md); return its address. ``private``: only
        its admins, writers and ``readers`` (did:keys) may read it. ``encrypted``: its store
        operations are sealed with a key wrapped for this node, its writers and ``readers``;
        nodes without the key replicate it blind."""
        return self._run(
            _create,
            name,
            type,
            writers,
            public,
            indexes,
            index_by,
            private,
            readers,
            encrypted,
            admins,
        )

    def follow(self, address: str, *, timeout: float = 30.0, snapshot: bool = True) -> str:
        """Keep and replicate a database a connected peer has; return its address. One held
        nothing of yet starts from a trusted signed snapshot (reads at once, the history verified
        behind it); ``snapshot=False``: verify everything before serving."""
        return self._run(_follow, address, timeout, snapshot)

    def databases(self) -> list[dict[str, Any]]:
        """The databases kept here: ``{"address", "name", "type", "entries"}`` each."""
        return self._run(_databases)

    def info(self, ref: str) -> dict[str, Any]:
        """A database's manifest, entries, heads and state digest."""
        return self._run(_info, ref)

    def write(self, ref: str, ops: Sequence[Any]) -> list[str]:
        """Write ops (one transaction, checked first) and return the entry CIDs."""
        return [str(cid) for cid in self._run(_write, ref, ops)["entries"]]

    def put(self, ref: str, key: str, value: Any) -> str:
        """keyvalue: set ``key``; return the entry CID."""
        return self.write(ref, [{"op": "put", "key": key, "value": value}])[0]

    def put_document(self, ref: str, doc: dict[str, Any]) -> str:
        """documents: put ``doc`` (holding its id); return the entry CID."""
        return self.write(ref, [{"op": "put", "doc": doc}])[0]

    def get(self, ref: str, key: str | int) -> Any:
        """A keyvalue value or a document by id; :class:`gridnode.errors.NotFound` if none."""
        return self._run(_get, ref, key)

    def delete(self, ref: str, key: str | int) -> str:
        """keyvalue or documents: delete a key or a document id; return the entry CID."""
        return self._run(_delete, ref, key)

    def add(self, ref: str, value: Any) -> str:
        """events or set: add a value; return the entry CID."""
        return self.write(ref, [{"op": "add", "value": value}])[0]

    def inc(self, ref: str, by: int = 1) -> int:
        """counter: add ``by``; return the new value."""
        return int(self._run(_write, ref, [{"op": "inc", "by": by}])["value"])

    def value(self, ref: str) -> int:
        """counter: its value."""
        return self._run(_value, ref)

    def query(
        self,
        ref: str,
        field: str | None = None,
        *,
        limit: int | None = None,
        reverse: bool = False,
        **bounds: Any,
    ) -> list[Any]:
        """documents: those whose indexed ``field`` matches ``eq=``/``gt=``/``gte=``/``lt=``/
        ``lte=``, in its order."""
        return self._run(_query, ref, field, bounds, limit, reverse)

    def items(
        self, ref: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[dict[str, Any]]:
        """events ``{"cid", "value"}`` in the log's order, or set members ``{"value"}``."""
        return self._run(_items, ref, limit, reverse)

    def digest(self, ref: str) -> str:
        """The state digest (hex): equal on replicas holding the same entries."""
        return self._run(_digest, ref)

    def peers(self) -> list[str]:
        """The peer ids of the connected peers."""
        return self._run(_peers)

    def connect(self, multiaddr: str) -> str | None:
        """Dial a peer (``/ip4/.../tcp/N/p2p/<peer id>``); its peer id, ``None`` if unreachable."""
        return self._run(_connect, multiaddr)


def _settings(
    listen: Sequence[str] | None,
    bootstrap: Sequence[str] | None,
    announce_interval: float | None,
    target_peers: int | None,
) -> dict[str, Any]:
    """The node's settings as :func:`gridnode.runner.run` takes them (``None``: the config's)."""
    return {
        "listen": listen,
        "bootstrap": bootstrap,
        "announce_interval": announce_interval,
        "target_peers": target_peers,
    }


def asyncio_node(
    data_dir: str | Path,
    *,
    listen: Sequence[str] | None = None,
    bootstrap: Sequence[str] | None = None,
    announce_interval: float | None = None,
    target_peers: int | None = None,
    api: bool = True,
) -> AsyncioNode:
    """A node on ``data_dir`` (created if new) for asyncio code: ``async with
    asyncio_node(data_dir) as node: ...``. Settings left ``None`` come from the data directory's
    ``gridnode.toml`` and ``GRIDNODE_...`` variables (docs/config.md); ``api=False`` serves no
    local API."""
    return AsyncioNode(
        _NodeThread(
            Path(data_dir), _settings(listen, bootstrap, announce_interval, target_peers), api
        )
    )


def start_node(
    data_dir: str | Path,
    *,
    listen: Sequence[str] | None = None,
    bootstrap: Sequence[str] | None = None,
    announce_interval: float | None = None,
    target_peers: int | None = None,
    api: bool = True,
    timeout: float = START_TIMEOUT,
) -> SyncNode:
    """Start a node on ``data_dir`` (created if new) in a background thread and return its
    blocking facade once it runs: ``with start_node(data_dir) as node: ...`` (or call
    :meth:`SyncNode.close`). Arguments as :func:`asyncio_node`."""
    return SyncNode(
        _NodeThread(
            Path(data_dir), _settings(listen, bootstrap, announce_interval, target_peers), api
        ),
        timeout,
    )
