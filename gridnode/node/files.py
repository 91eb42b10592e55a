"""Files the node keeps for others: what its catalogs list, and what its databases link to.

A followed catalog may list files and directories (``file:<cid>`` keys, :mod:`protocols.catalog`).
This room fetches each one whole from the connected peers over bitswap
(:class:`~gridnode.files.fetch.DagFetcher`: parallel wants, every block verified) into the file
store and pins it under the name ``catalog:<cid>``, so every node following the catalog keeps it
(and serves it: bitswap and the gateway answer pinned blocks). When no followed catalog lists a
file any more its ``catalog:`` pin is removed (``gridnode gc`` then frees the blocks unless
another pin keeps them); a pin the operator made is never touched.

A database may ask its replicas to keep what its entries link to: the manifest option
``pinLinks`` (``{"maxBytes": N}``; absent: off, the default). Every node replicating such a
database fetches and pins (``links:<address>:<cid>``) each file or directory CID (dag-pb or raw)
found in the values of its live entries, each at most ``maxBytes`` (and at most
:data:`MAX_LINK_BYTES`), so a documents database of posts keeps its images.

Bounds: at most :data:`MAX_FETCHES` fetches at once; a fetch that failed is tried again after
:data:`RETRY_SECONDS` (doubling, up to :data:`MAX_RETRY_SECONDS`); each fetch stops at the room
left under ``max_storage`` (a node at its bound fetches nothing:
:class:`~gridnode.errors.StorageLimitReached`) and at the fetcher's bounds on blocks and depth. With
bitswap off in the config nothing is fetched (and the status says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final

import trio

from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from gridnode.errors import FeatureOff, FetchIncomplete
from gridnode.files.fetch import DagFetcher, FetchLimits, FetchProgress, LinksOf
from gridnode.files.store import links_of
from gridnode.logs import LogLimiter
from gridnode.net.bitswap import Bitswap
from gridnode.repo import Repo
from gridnode.storage.worker import StorageWorker
from protocols.catalog import FILE_CODECS, Catalog

__all__ = [
    "CATALOG_PIN",
    "LINKS_OPTION",
    "LINKS_PIN",
    "MAX_FETCHES",
    "MAX_LINK_BYTES",
    "RETRY_SECONDS",
    "FileReplication",
    "PeerBlocks",
    "links_wanted",
]

log = logging.getLogger(__name__)

#: Pin names this room owns: ``catalog:<cid>`` and ``links:<address>:<cid>``.
CATALOG_PIN: Final = "catalog:"
LINKS_PIN: Final = "links:"
#: The manifest option that turns on keeping what a database's entries link to.
LINKS_OPTION: Final = "pinLinks"
#: The largest DAG kept for a database's link, whatever its option says.
MAX_LINK_BYTES: Final = 1 << 34
#: Linked CIDs taken from one database (the rest are left, and logged).
MAX_LINKS_PER_DATABASE: Final = 10_000
#: DAG fetches under way at once.
MAX_FETCHES: Final = 4
#: Seconds before a failed fetch is tried again (doubled at each failure, up to the maximum).
RETRY_SECONDS: Final = 10.0
MAX_RETRY_SECONDS: Final = 600.0
#: A fetch's wants: this many batches in flight, of this many CIDs each (at most
#: PARALLEL * BATCH blocks in hand: 32 MiB of 1 MiB chunks).
PARALLEL: Final = 4
BATCH: Final = 8
#: Seconds between two looks at what is wanted.
TICK: Final = 1.0
#: Seconds a fetch waits for blocks asked before it gives up (and is tried again later).
STALL_SECONDS: Final = 30.0


@dataclass
class _Want:
    """A DAG to keep: its pin name and its size bound."""

    cid: CID
    pin: str
    max_bytes: int


@dataclass
class _Failure:
    error: str
    at: float
    retry_after: float


@dataclass
class FileTotals:
    """What the room has done since the node started."""

    fetched: int = 0
    fetched_blocks: int = 0
    fetched_bytes: int = 0
    failed: int = 0
    unpinned: int = 0
    failures: dict[str, _Failure] = field(default_factory=dict)


class _Local:
    """The file store through the storage worker, as the fetcher sees it; what it stores is
    counted by ``max_storage`` (checked before each batch) and kept from gc by a lease."""

    def __init__(
        self, repo: Repo, worker: StorageWorker, lease: int, after_put: Callable[[], None]
    ):
        self._repo = repo
        self._worker = worker
        self._lease = lease
        self._after_put = after_put

    async def has_many(self, cids: list[CID]) -> set[CID]:
        return await self._worker.run(self._repo.files.has_many, cids)

    async def get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        return await self._worker.run(self._repo.files.get_many, cids)

    async def put_blocks(self, blocks: list[tuple[CID, bytes]]) -> None:
        self._repo.quota.check(f"fetch {blocks[0][0]}")
        # The fetcher hashed every block against its CID already: not hashed a third time.
        await self._worker.run(
            partial(self._repo.files.put_blocks, blocks, lease=self._lease, verified=True)
        )
        self._after_put()


def links_wanted(value: Any, found: dict[CID, None], limit: int) -> None:
    """Add to ``found`` (in order, at most ``limit``) the file or directory CIDs in a value."""
    stack = [value]
    while stack and len(found) < limit:
        item = stack.pop()
        if isinstance(item, CID):
            if item.codec in FILE_CODECS:
                found.setdefault(item, None)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))


def link_option(options: Any) -> int | None:
    """The byte bound of a manifest's ``pinLinks`` option; ``None`` when it is off (or bad)."""
    if not isinstance(options, dict):
        return None
    value = options.get(LINKS_OPTION)
    if value is None or value is False:
        return None
    if value is True:
        return MAX_LINK_BYTES
    if isinstance(value, dict):
        bound = value.get("maxBytes")
        if type(bound) is int and bound > 0:
            return min(bound, MAX_LINK_BYTES)
        if bound is None:
            return MAX_LINK_BYTES
    return None


async def _nobody(cids: Sequence[CID], peers: Sequence[str], stall: float) -> dict[CID, bytes]:
    """The block fetch when no peer is connected: nothing comes."""
    return {}


#: Fetches asked through the API whose progress is remembered.
MAX_REQUESTED: Final = 16


class PeerBlocks:
    """A block source (``async get_many(cids)``, what :mod:`gridnode.files.export` reads) over the
    local file store and, for what it lacks, the connected peers over bitswap: ``cat``, ``ls`` and
    ``get`` of a file the node does not hold. Blocks fetched are hashed against their CIDs and
    kept in the file store (unpinned: ``gc`` may free them), counted in ``blocks``/``bytes``."""

    def __init__(self, files: FileReplication, peers: Sequence[str] | None = None) -> None:
        self._files = files
        self._peers = peers
        self.blocks = 0
        self.bytes = 0
        self.fetched = 0

    async def get_many(self, cids: Sequence[CID]) -> dict[CID, bytes]:
        files = self._files
        wanted = list(dict.fromkeys(cids))
        found: dict[CID, bytes] = await files._worker.run(files._repo.files.get_many, wanted)
        missing = [c for c in wanted if c not in found]
        bitswap = files._bitswap
        if missing and bitswap is not None:
            connected = files._peers()
            asked = [
                p
                for p in dict.fromkeys(connected if self._peers is None else self._peers)
                if p in connected
            ]
            if asked:
                got = await bitswap.fetch(missing, asked, timeout=files.stall)
                got = {c: got[c] for c in missing if c in got}
                await trio.to_thread.run_sync(_verify_all, got)
                if got:
                    files._repo.quota.check(f"fetch {missing[0]}")
                    await files._worker.run(
                        partial(files._repo.files.put_blocks, list(got.items()), verified=True)
                    )
                    bitswap.blocks_added()
                    self.fetched += len(got)
                found.update(got)
        self.blocks += len(found)
        self.bytes += sum(len(b) for b in found.values())
        return found


def _verify_all(blocks: dict[CID, bytes]) -> None:
    for cid, block in blocks.items():
        cid.verify(block)


class FileReplication:
    """Fetches and pins the files the followed catalogs list and the followed databases link to
    (see the module docstring). Made by :class:`~gridnode.node.Node`."""

    def __init__(
        self,
        repo: Repo,
        nursery: trio.Nursery,
        worker: StorageWorker,
        bitswap: Bitswap | None,
        *,
        peers: Callable[[], list[str]],
        catalogs: Callable[[], Iterable[Catalog]],
        catalogs_read: Callable[[], bool] = lambda: True,
        databases: Callable[[], Iterable[Any]] | None = None,
        links: LinksOf | None = None,
        stall: float = STALL_SECONDS,
        tick: float = TICK,
    ) -> None:
        self._repo = repo
        self._nursery = nursery
        self._worker = worker
        self._bitswap = bitswap
        self._peers = peers
        self._catalogs = catalogs
        #: Whether every followed catalog has been read: until then what they list is unknown,
        #: and no ``catalog:`` pin is removed (a node just started has read none yet).
        self._catalogs_read = catalogs_read
        #: The replicated databases (``StoredDatabase``s) whose ``pinLinks`` option is read.
        self._databases = databases
        self._links = links or links_of
        self.stall = stall
        self.tick = tick
        #: Wants in flight per fetch: ``parallel`` batches of ``batch`` CIDs.
        self.parallel = PARALLEL
        self.batch = BATCH
        #: Root CID -> the fetch under way.
        self.fetching: dict[CID, FetchProgress] = {}
        #: Fetches asked through the API (``gridnode get|cat`` of a file the node lacks), by
        #: root CID text, the last :data:`MAX_REQUESTED` (done ones too, for the progress bar).
        self.requested: dict[str, FetchProgress] = {}
        self.totals = FileTotals()
        #: Pins this room holds, by name, and their totals (read again each round).
        self.held: dict[str, CID] = {}
        self.held_bytes: int = 0
        self._db_heads: dict[str, tuple[Any, ...]] = {}
        self._db_links: dict[str, list[_Want]] = {}
        self._log = LogLimiter(lines=3, interval=60.0)
        #: Set at the end of each round (tests wait on it).
        self.round_done = trio.Event()

    def start(self) -> None:
        self._nursery.start_soon(self._watch)

    # -- what the status says -------------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        """``/status``'s ``files``: what the node keeps for catalogs and databases, and the
        fetches under way with their progress."""
        now = trio.current_time()
        return {
            "enabled": self._bitswap is not None,
            "held": len(self.held),
            "held_bytes": self.held_bytes,
            "fetching": [p.as_json() for p in self.fetching.values()],
            "fetched": self.totals.fetched,
            "fetched_bytes": self.totals.fetched_bytes,
            "failed": [
                {"cid": cid, "error": f.error, "retry_in": max(0.0, f.retry_after - now)}
                for cid, f in sorted(self.totals.failures.items())
            ][:32],
        }

    # -- the watcher --------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            try:
                await self._round()
            except GridnodeError as exc:
                if self._log.allow("round", trio.current_time()):
                    log.warning("files: %s", exc)
            self.round_done.set()
            self.round_done = trio.Event()
            await trio.sleep(self.tick)

    def _wanted(self) -> dict[str, _Want]:
        wanted: dict[str, _Want] = {}
        for view in self._catalogs():
            for item in view.files:
                name = CATALOG_PIN + item.cid
                wanted.setdefault(name, _Want(CID.parse(item.cid), name, 0))
        for wants in self._db_links.values():
            for want in wants:
                wanted.setdefault(want.pin, want)
        return wanted

    async def _round(self) -> None:
        await self._read_databases()
        wanted = self._wanted()
        pins = {p.name: p.cid for p in await self._worker.run(self._repo.files.pins)}
        # Ours that nothing wants any more: unpinned (gc frees the blocks, unless pinned again).
        read = self._catalogs_read()
        for name in [n for n in pins if _ours(n) and n not in wanted]:
            if name.startswith(CATALOG_PIN) and not read:
                continue
            await self._worker.run(self._repo.files.unpin, name)
            self.totals.unpinned += 1
            log.info("files: unpinned %s (no catalog or database wants it any more)", name)
            del pins[name]
        self.held = {n: c for n, c in pins.items() if _ours(n)}
        self.held_bytes = await self._held_bytes()
        if self._bitswap is None:
            return
        now = trio.current_time()
        for name, want in wanted.items():
            if name in pins or want.cid in self.fetching or len(self.fetching) >= MAX_FETCHES:
                continue
            failure = self.totals.failures.get(str(want.cid))
            if failure is not None and now < failure.retry_after:
                continue
            if not self._peers():
                return
            self.fetching[want.cid] = FetchProgress(want.cid)
            self._nursery.start_soon(self._fetch, want)

    async def _held_bytes(self) -> int:
        # The sizes the pins' root blocks state would be a lie to trust; the fetches counted
        # what arrived, and the store knows its blocks: its total is what max_storage counts.
        _blocks, size = await self._worker.run(self._repo.files.usage)
        return size

    async def fetch(
        self,
        root: CID,
        peers: Sequence[str] | None = None,
        *,
        pin: str | None = None,
        max_bytes: int | None = None,
        progress: FetchProgress | None = None,
    ) -> FetchProgress:
        """Fetch the DAG under ``root`` from ``peers`` (default: every connected peer; peers not
        connected are left out) into the file store, every block verified, and pin it as ``pin`` (``None``: no pin; the blocks
        are then kept from gc only for the store's lease time). Bounded by ``max_bytes`` and by
        the room left under ``max_storage``; see :class:`~gridnode.files.fetch.DagFetcher` for
        what it raises."""
        bitswap = self._bitswap
        if bitswap is None:
            raise FeatureOff(
                "bitswap is off in this node's config: 'bitswap = true' in gridnode.toml turns "
                "it on (then restart the node)"
            )
        quota = self._repo.quota
        quota.check(f"fetch {root}")
        limits = FetchLimits()
        bound = limits.max_bytes if max_bytes is None else max_bytes
        if quota.limit > 0:
            bound = min(bound, max(0, quota.limit - int(quota.status()["used"])))
        connected = self._peers()
        # Only connected peers: bitswap opens its answer streams to them (a peer id that is not
        # one, or nobody to ask, is refused here, not in bitswap's sender).
        asked = [p for p in dict.fromkeys(connected if peers is None else peers) if p in connected]
        # With no peer to ask, a DAG held whole still completes (and pins); a missing block is
        # FetchIncomplete at once rather than after a stall.
        progress = progress or FetchProgress(root)
        lease = await self._worker.run(self._repo.files.begin)
        try:
            fetcher = DagFetcher(
                partial(_fetch_blocks, bitswap) if asked else _nobody,
                _Local(self._repo, self._worker, lease, bitswap.blocks_added),
                self._links,
                parallel=self.parallel,
                batch=self.batch,
                stall=self.stall,
                limits=replace(limits, max_bytes=bound),
            )
            try:
                await fetcher.fetch(root, asked, progress=progress)
            except FetchIncomplete:
                if asked:
                    raise
                raise FetchIncomplete(
                    f"no connected peer to fetch {root} from, and it is not all held here"
                ) from None
            if pin is not None:
                await self._worker.run(partial(self._repo.files.pin, root, pin, recursive=True))
        finally:
            with trio.CancelScope(shield=True):
                await self._worker.run(self._repo.files.end, lease)
        return progress

    async def fetch_requested(self, root: CID, pin: str | None = None) -> FetchProgress:
        """:meth:`fetch` for the API (``POST /files/fetch``): its progress is kept in
        :attr:`requested` while and after it runs, for ``GET /files/fetch/{cid}``. A second
        request for a root already being fetched waits for that one."""
        key = str(root)
        running = self.requested.get(key)
        if running is not None and not running.done:
            while not running.done:
                await trio.sleep(0.1)
            if pin is not None:
                await self._worker.run(partial(self._repo.files.pin, root, pin, recursive=True))
            return running
        progress = FetchProgress(root)
        self.requested.pop(key, None)
        while len(self.requested) >= MAX_REQUESTED:
            del self.requested[next(iter(self.requested))]
        self.requested[key] = progress
        try:
            return await self.fetch(root, pin=pin, progress=progress)
        finally:
            progress.done = True

    def source(self, peers: Sequence[str] | None = None) -> PeerBlocks:
        """A block source over the file store and ``peers`` (default: every connected peer), for
        :mod:`gridnode.files.export` (see :class:`PeerBlocks`)."""
        return PeerBlocks(self, peers)

    async def _fetch(self, want: _Want) -> None:
        progress = self.fetching[want.cid]
        key = str(want.cid)
        try:
            await self.fetch(
                want.cid, pin=want.pin, max_bytes=want.max_bytes or None, progress=progress
            )
            self.held[want.pin] = want.cid
            self.held_bytes = await self._held_bytes()
            self.totals.fetched += 1
            self.totals.fetched_blocks += progress.fetched_blocks
            self.totals.fetched_bytes += progress.fetched_bytes
            self.totals.failures.pop(key, None)
            seconds = max(1e-9, trio.current_time() - progress.started)
            log.info(
                "files: fetched and pinned %s (%d blocks, %d bytes, %.1f MB/s) as %s",
                want.cid,
                progress.blocks,
                progress.bytes,
                progress.fetched_bytes / seconds / 1e6,
                want.pin,
            )
        except GridnodeError as exc:
            self.totals.failed += 1
            self.totals.fetched_bytes += progress.fetched_bytes
            previous = self.totals.failures.get(key)
            wait = RETRY_SECONDS if previous is None else previous.retry_after - previous.at
            wait = min(MAX_RETRY_SECONDS, wait * 2 if previous is not None else wait)
            now = trio.current_time()
            self.totals.failures[key] = _Failure(str(exc), now, now + wait)
            if len(self.totals.failures) > 1024:
                del self.totals.failures[next(iter(self.totals.failures))]
            if self._log.allow(key, now):
                log.info("files: cannot fetch %s yet (again in %g s): %s", want.cid, wait, exc)
        finally:
            self.fetching.pop(want.cid, None)

    # -- databases that keep what they link to ----------------------------------------------

    async def _read_databases(self) -> None:
        if self._databases is None:
            return
        seen: set[str] = set()
        for database in list(self._databases()):
            bound = link_option(dict(database.manifest.options))
            if bound is None:
                continue
            address = database.address
            seen.add(address)
            heads = await self._worker.run(_heads, database)
            if self._db_heads.get(address) == heads:
                continue
            found = await self._worker.run(_linked, database)
            self._db_heads[address] = heads
            self._db_links[address] = [
                _Want(cid, f"{LINKS_PIN}{address}:{cid}", bound) for cid in found
            ]
        for address in set(self._db_links) - seen:
            del self._db_links[address]
            self._db_heads.pop(address, None)


def _heads(database: Any) -> tuple[Any, ...]:
    return tuple(database.heads)


def _ours(name: str) -> bool:
    return name.startswith((CATALOG_PIN, LINKS_PIN))


def _linked(database: Any) -> list[CID]:
    """The file CIDs the live values of a database link to (in the storage worker)."""
    found: dict[CID, None] = {}
    for value in _live_values(database):
        links_wanted(value, found, MAX_LINKS_PER_DATABASE)
        if len(found) >= MAX_LINKS_PER_DATABASE:
            break
    return list(found)


def _live_values(database: Any) -> Iterable[Any]:
    """The live values of a database, one at a time where its store can (a whole state is only
    built for a store type without an iterator: a counter's, with no links anyway)."""
    store = database.store
    kind = database.manifest.store
    if kind == "documents":
        yield from store.docs()
    elif kind == "keyvalue":
        yield from store.items()
    elif kind == "set":
        yield from store.values()
    elif kind == "events":
        yield from store.iter()
    else:
        yield store.state()


async def _fetch_blocks(
    bitswap: Bitswap, cids: list[CID], peers: list[str], timeout: float
) -> dict[CID, bytes]:
    return await bitswap.fetch(cids, peers, timeout=timeout)
