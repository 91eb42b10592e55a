"""The local API: a small JSON HTTP API a running node serves on 127.0.0.1, and its client.

A running node must be the only writer of its SQLite file (it caches what it wrote), so while it
runs every other program, the CLI included, reaches its databases through this API. Three parts
share one set of operations:

- the operations on a data directory (find a database by address or name, describe it, check and
  write ops, read values, queries and logs), plain functions returning JSON-ready values, and
  :class:`Offline`, which runs them directly on a :class:`~gridnode.repo.Repo` (no node running);
- :class:`ApiApp`, an ASGI app running the same operations in the node's storage worker, served by
  hypercorn's trio worker inside the node's trio loop (:func:`serve_api`);
- :class:`ApiClient`, the blocking HTTP client the CLI uses.

:class:`Offline` and :class:`ApiClient` have the same methods and return the same values (IPLD
values: a link is a :class:`~crdt.ipld.cid.CID`, bytes are ``bytes``), so what the CLI prints does
not depend on whether a node runs.

Who may call: whoever can read ``DATA_DIR/api.token`` (mode 0600, written when the API starts).
Every request carries ``Authorization: Bearer <token>``. ``DATA_DIR/api`` holds the API's URL
once it answers; both files are removed when the node stops. ``DATA_DIR/node.lock`` tells a
running node from a stale ``api`` file: the node holds it exclusively for its whole life, a
command working on the data directory offline holds it shared (:func:`open_endpoint`).

Endpoints and statuses: docs/http.md (and docs/cli.md, "The local API"). Two endpoints answer
without the token because they hold no data: ``GET /dashboard`` (a page whose own data calls carry
the token, which it reads from its URL's ``#token=`` fragment) and ``GET /openapi.json``.
The trustless gateway (``GET``/``HEAD /ipfs/{cid}``, :mod:`gridnode.gateway`) answers without it
too: read-only, and content-addressed.
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from crdt.errors import GridnodeError, InvalidOperation, Unauthorized
from crdt.ipld.cid import CID
from gridnode import datadir, gateway, jsonvalue, metrics, ops
from gridnode.datadir import API_FILE, LOCK_FILE, TOKEN_FILE, node_lock
from gridnode.errors import (
    FeatureOff,
    InvalidJsonValue,
    InvalidRequest,
    NodeUnavailable,
    NotAcceptable,
    NotAWriter,
    NotFound,
    RequestTooLarge,
    TokenRefused,
    UnknownDatabase,
    WrongStoreType,
)
from gridnode.net.identity import check_peer_multiaddr
from gridnode.openapi import openapi
from gridnode.ops import CreateRequest, RepoEndpoint, describe_error
from gridnode.repo import Repo, StoredDatabase

if TYPE_CHECKING:
    from gridnode.node import Node, PeerSync

__all__ = [
    "API_FILE",
    "CAR_TYPE",
    "LOCK_FILE",
    "MAX_CAR_BYTES",
    "MAX_JSON_BYTES",
    "TOKEN_FILE",
    "ApiApp",
    "ApiClient",
    "dashboard_url",
    "node_lock",
    "open_endpoint",
    "serve_api",
]

log = logging.getLogger(__name__)

#: The largest JSON request body the API reads.
MAX_JSON_BYTES: Final = 64 * 1024 * 1024
#: The largest CAR ``POST /import`` reads (it is held in memory); import larger ones offline.
MAX_CAR_BYTES: Final = 256 * 1024 * 1024
CAR_TYPE: Final = "application/vnd.ipld.car"
#: ``POST /db/restore``: at most this many roots (the manifest and the heads), this many peers,
#: and this many seconds to fetch in (the default when none is given).
MAX_RESTORE_ROOTS: Final = 1024
MAX_RESTORE_PEERS: Final = 64
MAX_RESTORE_TIMEOUT: Final = 3600.0
DEFAULT_RESTORE_TIMEOUT: Final = 120.0


# -- errors and their statuses --------------------------------------------------------------------


class _Disconnected(Exception):
    """The client went away before its request was whole: nobody to answer."""


_describe = describe_error

#: An error's HTTP status: the first class in this list it is an instance of (else 400).
_STATUSES: Final[tuple[tuple[type[GridnodeError], int], ...]] = (
    (TokenRefused, 401),
    (NotFound, 404),
    (NotAcceptable, 406),
    (RequestTooLarge, 413),
    (WrongStoreType, 409),
    (NotAWriter, 409),
    (Unauthorized, 409),
    (FeatureOff, 409),
    (NodeUnavailable, 503),
)

#: The classes the client raises again by name (the ``x-gridnode-error`` header of an answer).
_BY_NAME: Final[dict[str, type[GridnodeError]]] = {
    cls.__name__: cls
    for cls in (
        InvalidRequest,
        RequestTooLarge,
        InvalidJsonValue,
        NotAcceptable,
        NotFound,
        UnknownDatabase,
        WrongStoreType,
        NotAWriter,
        FeatureOff,
        TokenRefused,
        NodeUnavailable,
        InvalidOperation,
    )
}

#: Without a known ``x-gridnode-error``: the class of an error answer by its status.
_BY_STATUS: Final[dict[int, type[GridnodeError]]] = {
    400: InvalidRequest,
    401: TokenRefused,
    404: NotFound,
    406: NotAcceptable,
    409: NotAWriter,
    413: RequestTooLarge,
    503: NodeUnavailable,
}


def _status_of(exc: GridnodeError) -> int:
    for cls, status in _STATUSES:
        if isinstance(exc, cls):
            return status
    return 400


def _error_body(exc: GridnodeError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": _describe(exc)}
    if isinstance(exc, InvalidOperation) and exc.index is not None:
        body["index"] = exc.index
        body["reason"] = exc.reason
    return body


def _sync_json(sync: PeerSync, now: float) -> dict[str, Any]:
    out = asdict(sync)
    del out["address"], out["started"]
    if sync.running:
        out["complete"] = False
    return {"peer": out.pop("peer"), "seconds_ago": round(max(0.0, now - sync.started), 3), **out}


# -- the HTTP app ----------------------------------------------------------------------------------


class _Body:
    """The request body's messages, as the app reads them."""

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._receive = receive
        self.done = False

    async def receive(self) -> dict[str, Any]:
        if self.done:
            raise _Disconnected
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.done = True
            raise _Disconnected
        if not message.get("more_body", False):
            self.done = True
        return message

    async def drain(self) -> None:
        """Read and drop the rest of the body (up to :data:`MAX_CAR_BYTES`)."""
        size = 0
        while not self.done and size <= MAX_CAR_BYTES:
            size += len((await self.receive()).get("body", b""))


@dataclass
class _Request:
    method: str
    segments: list[str]
    query: dict[str, str]
    headers: dict[bytes, bytes]
    stream: _Body

    async def body(self, limit: int | None = None) -> bytes:
        limit = MAX_JSON_BYTES if limit is None else limit
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"the request body is over {limit} bytes")
        chunks = []
        size = 0
        while True:
            message = await self.stream.receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"the request body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def json(self) -> Any:
        data = await self.body()
        if not data.strip():
            raise InvalidRequest("the request body is empty; it is JSON")
        return jsonvalue.parse(data, "the request body")

    def int_param(self, name: str) -> int | None:
        text = self.query.get(name)
        if text is None:
            return None
        if not (text.isascii() and text.isdigit()):
            raise InvalidRequest(f"{name} must be a non-negative integer, not {text!r}")
        return int(text)

    def flag(self, name: str, default: bool = False) -> bool:
        text = self.query.get(name)
        if text is None:
            return default
        if text in ("1", "true", "yes", ""):
            return True
        if text in ("0", "false", "no"):
            return False
        raise InvalidRequest(f"{name} must be true or false, not {text!r}")


@dataclass
class _Response:
    status: int
    body: Any = None
    #: Raw parts to send instead of ``body`` as JSON.
    parts: list[bytes] | None = None
    content_type: str = "application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: A HEAD: the headers (and the length) of the answer, without its body.
    head: bool = False


Handler = Callable[["ApiApp", _Request], Awaitable[_Response]]


class ApiApp:
    """The ASGI app of the local API, answering from a running :class:`~gridnode.node.Node`.

    Every storage call goes through the node's storage worker; writes go through
    :meth:`~gridnode.node.Node.write` (durable, then announced).
    """

    def __init__(self, node: Node, token: str) -> None:
        self.node = node
        self._expected = b"Bearer " + token.encode("ascii")

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "http":
            body = _Body(receive)
            try:
                response = await self._respond(scope, body)
                # Read what is left of the body before answering: a client that sent less than
                # it announced and went away has been answered by hypercorn itself, and a second
                # answer would race with that one on the socket. (Not for a body too large to
                # read: hypercorn closes the connection after that answer.)
                if response.status != 413:
                    await body.drain()
            except _Disconnected:
                return
            await _send(send, response)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _respond(self, scope: dict[str, Any], stream: _Body) -> _Response:
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        try:
            headers = {bytes(k).lower(): bytes(v) for k, v in scope["headers"]}
            path = raw_path.decode("ascii").split("?", 1)[0]
            segments = [unquote(s, errors="strict") for s in path.strip("/").split("/") if s]
            public = (tuple(segments), method) in _PUBLIC or _is_gateway(segments, method)
            if not public and not hmac.compare_digest(
                headers.get(b"authorization", b""), self._expected
            ):
                raise TokenRefused(
                    "a request needs the header 'Authorization: Bearer <token>' "
                    "with the token in DATA_DIR/api.token"
                )
            query: dict[str, str] = {}
            for key, value in parse_qsl(
                scope.get("query_string", b"").decode("ascii"),
                keep_blank_values=True,
                strict_parsing=False,
                errors="strict",
            ):
                if key in query:
                    raise InvalidRequest(f"parameter {key!r} is given twice")
                query[key] = value
            request = _Request(method, segments, query, headers, stream)
            handler, allowed = _route(segments, method)
            if handler is None:
                if allowed:
                    return _Response(
                        405,
                        {"error": f"{method} is not allowed here; allowed: {', '.join(allowed)}"},
                        headers=[(b"allow", ", ".join(allowed).encode())],
                    )
                raise NotFound(f"no endpoint {method} /{'/'.join(segments)}")
            response = await handler(self, request)
        except _Disconnected:
            raise
        except UnicodeError:
            response = _Response(400, {"error": "the path or query is not valid UTF-8"})
        except GridnodeError as exc:
            response = _Response(
                _status_of(exc),
                _error_body(exc),
                # The error's class, for the client to raise the same one (a status is shared by
                # several: 409 is "not a writer" and "not a verb of this type").
                headers=[(b"x-gridnode-error", type(exc).__name__.encode("ascii"))],
            )
            if isinstance(exc, TokenRefused):
                response.headers.append((b"www-authenticate", b"Bearer"))
        except Exception as exc:
            log.exception("API %s %s failed", method, raw_path)
            response = _Response(500, {"error": f"internal error: {_describe(exc)}"})
        log.debug("API %s %s -> %d", method, raw_path, response.status)
        return response

    # -- handlers ----------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.node.worker.run(fn, *args)

    async def _resolve(self, ref: str) -> StoredDatabase:
        database: StoredDatabase = await self._run(ops.resolve, self.node.repo, ref)
        return database

    async def hello(self, request: _Request) -> _Response:
        return _Response(200, {"peer_id": self.node.peer_id, "identity": self.node.repo.did})

    async def status(self, request: _Request) -> _Response:
        import trio

        node = self.node
        databases = await self._run(ops.status_of_databases, node.repo)
        now = trio.current_time()
        for row in databases:
            row["replicating"] = node.replicating(row["address"])
            row["syncs"] = [
                _sync_json(s, now)
                for (_peer, address), s in sorted(node.stats.syncs.items())
                if address == row["address"]
            ]
        return _Response(
            200,
            {
                "running": True,
                "data_dir": str(node.repo.data_dir),
                "identity": node.repo.did,
                "peer_id": node.peer_id,
                "addrs": node.addrs,
                "peers": sorted(node.peers()),
                "databases": databases,
                "served": {peer: asdict(t) for peer, t in sorted(node.stats.served.items())},
                "bitswap": None if node.stats.bitswap is None else node.stats.bitswap.as_dict(),
            },
        )

    async def peers(self, request: _Request) -> _Response:
        node = self.node
        peers = [
            {"peer_id": p, "strikes": node.stats.strikes.get(p, 0)} for p in sorted(node.peers())
        ]
        return _Response(
            200,
            {"running": True, "identity": node.repo.did, "peer_id": node.peer_id, "peers": peers},
        )

    async def list_databases(self, request: _Request) -> _Response:
        return _Response(200, {"databases": await self._run(ops.listing, self.node.repo)})

    async def create_database(self, request: _Request) -> _Response:
        database = await self.node.create(CreateRequest.from_json(await request.json()))
        return _Response(201, ops.describe(database))

    async def follow(self, request: _Request) -> _Response:
        database = await self.node.follow(_address_body(await request.json()))
        return _Response(200, await self._run(lambda: ops.info(database, digest=False)))

    async def restore(self, request: _Request) -> _Response:
        """Fetch a database from IPFS peers over bitswap (:meth:`~gridnode.node.Node.restore`):
        connect to the ``peers`` given first, then ask them (or, when none was given or none
        answered, every connected peer)."""
        import trio

        roots, addresses, timeout = _restore_body(await request.json())
        node = self.node
        if node.stats.bitswap is None:
            raise FeatureOff(
                "bitswap is off in this node's config: 'bitswap = true' in gridnode.toml turns it "
                "on (then restart the node)"
            )
        connected: dict[int, str | None] = {}

        async def dial(index: int, address: str) -> None:
            try:
                connected[index] = await node.connect(address)
            except Exception as exc:  # an address the transport cannot dial at all
                log.warning("cannot connect to %s: %s", address, _describe(exc))
                connected[index] = None

        async with trio.open_nursery() as nursery:
            for index, address in enumerate(addresses):
                nursery.start_soon(dial, index, address)
        peer_ids = list(dict.fromkeys(p for _, p in sorted(connected.items()) if p is not None))
        unreachable = [a for i, a in enumerate(addresses) if connected.get(i) is None]
        missed = f" (cannot connect to {', '.join(unreachable)})" if unreachable else ""
        if not peer_ids and not node.peers():
            raise UnknownDatabase(
                f"no peer to ask for the manifest {roots[0]}: no peer is connected{missed}"
            )
        try:
            report = await node.restore(roots, peer_ids or None, timeout=timeout)
        except UnknownDatabase as exc:
            raise UnknownDatabase(f"{_describe(exc)}{missed}") from None
        database = await self._resolve(report.address)

        def describe_restored() -> dict[str, Any]:
            answer = ops.info(database, digest=False)
            answer.update(ops.import_report(report))
            # What did not come in time: parents that entries held wait for.
            answer["missing"] = len(database.missing)
            return answer

        return _Response(200, await self._run(describe_restored))

    async def import_car(self, request: _Request) -> _Response:
        data = await request.body(MAX_CAR_BYTES)
        report = await self.node.import_car(data)
        return _Response(200, ops.import_report(report))

    async def database(self, request: _Request) -> _Response:
        database = await self._resolve(request.segments[1])
        with_digest = request.flag("digest", True)
        return _Response(200, await self._run(lambda: ops.info(database, digest=with_digest)))

    async def write(self, request: _Request) -> _Response:
        ref = request.segments[1]
        body = await request.json()
        if type(body) is not list:
            raise InvalidRequest("the body is a JSON array of ops")
        database = await self._resolve(ref)
        entries = await self.node.write(database.address, body)
        return _Response(200, await self._run(ops.written, database, entries))

    async def read(self, request: _Request) -> _Response:
        """``GET /db/{db}/{name}``: the registered read ``name`` (:data:`gridnode.ops.READS`),
        its parameters from the query string by their kinds."""
        found = ops.READS[request.segments[2]]
        params: dict[str, Any] = {}
        known = {p.name for p in found.params}
        for name in request.query:
            if name not in known:
                raise InvalidRequest(
                    f"'{found.name}' takes no parameter {name!r}"
                    + (f" (it takes {', '.join(sorted(known))})" if known else "")
                )
        for param in found.params:
            if param.name not in request.query:
                continue
            text = request.query[param.name]
            if param.kind == "int":
                params[param.name] = request.int_param(param.name)
            elif param.kind == "bool":
                params[param.name] = request.flag(param.name)
            elif param.kind == "json":
                params[param.name] = jsonvalue.parse(text, param.name)
            else:
                params[param.name] = text or None
        database = await self._resolve(request.segments[1])
        answer = await self._run(
            lambda: ops.materialize(ops.run_read(found.name, database, params))
        )
        return _Response(200, answer)

    async def unfollow(self, request: _Request) -> _Response:
        address = _address_body(await request.json())
        database = await self.node.unfollow(address)
        return _Response(200, {"address": database.address, "replicating": False})

    async def events(self, request: _Request) -> _Response:
        limit = request.int_param("limit")
        recent = list(reversed(self.node.stats.events))[:limit]
        return _Response(200, {"events": [asdict(e) for e in recent]})

    async def metrics(self, request: _Request) -> _Response:
        node = self.node
        databases = await self._run(ops.status_of_databases, node.repo)
        families = metrics.node_families(
            node, databases, _storage_bytes(node.repo.sql.path), _version()
        )
        return _Response(
            200,
            parts=[metrics.exposition(families).encode("utf-8")],
            content_type=metrics.CONTENT_TYPE,
        )

    async def dashboard(self, request: _Request) -> _Response:
        return _Response(
            200,
            parts=[_dashboard_page()],
            content_type="text/html; charset=utf-8",
            headers=[
                (b"content-security-policy", _DASHBOARD_CSP),
                (b"x-frame-options", b"DENY"),
                (b"referrer-policy", b"no-referrer"),
                (b"x-content-type-options", b"nosniff"),
            ],
        )

    async def openapi_document(self, request: _Request) -> _Response:
        return _Response(200, openapi(_version()))

    async def ipfs(self, request: _Request) -> _Response:
        """The trustless gateway (gridnode/gateway.py): no token, read-only, content-addressed."""
        cid = gateway.parse_cid(request.segments[1])
        kind = gateway.choose_format(
            request.headers.get(b"accept", b"").decode("latin-1") or None,
            request.query.get("format"),
        )
        scope = request.query.get("dag-scope", "all")
        served: gateway.Served = await self._run(gateway.serve, self.node.repo, cid, kind, scope)
        headers = [
            (b"etag", served.etag.encode()),
            (b"cache-control", served.cache_control.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-ipfs-path", f"/ipfs/{request.segments[1]}".encode()),
            (b"vary", b"Accept"),
        ]
        if request.headers.get(b"if-none-match", b"").decode("latin-1") == served.etag:
            return _Response(
                304, parts=[], content_type=served.content_type, headers=headers, head=True
            )
        return _Response(
            200,
            parts=served.parts,
            content_type=served.content_type,
            headers=headers,
            head=request.method == "HEAD",
        )

    async def car(self, request: _Request) -> _Response:
        database = await self._resolve(request.segments[1])
        # ops.export_car re-hashes every block: a damaged one fails the request (500 would say
        # "internal"; CorruptBlock is a GridnodeError, answered 400 with its message) before a
        # byte is sent.
        parts, count = await self._run(ops.export_car, database)
        return _Response(
            200,
            parts=parts,
            content_type=CAR_TYPE,
            headers=[
                (b"x-gridnode-blocks", str(count).encode()),
                (b"x-gridnode-address", database.address.encode()),
            ],
        )


def dashboard_url(url: str, token: str) -> str:
    """The dashboard's address for the API at ``url``, the token in its fragment: a browser
    never sends a fragment, and the page moves the token to the tab's session storage."""
    return f"{url}/dashboard#token={quote(token, safe='')}"


def _address_body(body: Any) -> str:
    if type(body) is not dict or type(body.get("address")) is not str or set(body) != {"address"}:
        raise InvalidRequest('the body is {"address": "/gridnode/<cid>"}')
    address: str = body["address"]
    return address


_RESTORE_BODY: Final = (
    'the body is {"roots": [manifest CID, head CID, ...], "peers": [multiaddr, ...], '
    '"timeout": seconds} (peers and timeout optional)'
)


def _restore_body(body: Any) -> tuple[list[CID], list[str], float]:
    """The roots (as CIDs), the peers' multiaddrs and the timeout of a ``POST /db/restore``."""
    if type(body) is not dict or "roots" not in body:
        raise InvalidRequest(_RESTORE_BODY)
    unknown = set(body) - {"roots", "peers", "timeout"}
    if unknown:
        raise InvalidRequest(f"unknown field {sorted(unknown)[0]!r}; {_RESTORE_BODY}")
    texts = body["roots"]
    if type(texts) is not list:
        raise InvalidRequest("roots must be a list of CIDs: the manifest's, then the heads")
    if not texts:
        raise InvalidRequest("roots is empty: give the manifest's CID (then the heads)")
    if len(texts) > MAX_RESTORE_ROOTS:
        raise InvalidRequest(f"roots has {len(texts)} CIDs; at most {MAX_RESTORE_ROOTS}")
    roots = []
    for index, text in enumerate(texts):
        if type(text) is not str:
            raise InvalidRequest(f"roots[{index}] must be a CID as a string")
        try:
            roots.append(CID.parse(text))
        except GridnodeError as exc:
            raise InvalidRequest(f"roots[{index}] is not a CID: {_describe(exc)}") from None
    addresses = body.get("peers", [])
    if type(addresses) is not list:
        raise InvalidRequest("peers must be a list of multiaddrs ending in /p2p/<peer id>")
    if len(addresses) > MAX_RESTORE_PEERS:
        raise InvalidRequest(f"peers has {len(addresses)} multiaddrs; at most {MAX_RESTORE_PEERS}")
    for index, address in enumerate(addresses):
        check_peer_multiaddr(address, f"peers[{index}]")
    timeout = body.get("timeout", DEFAULT_RESTORE_TIMEOUT)
    if type(timeout) not in (int, float) or not 0 < timeout <= MAX_RESTORE_TIMEOUT:
        raise InvalidRequest(
            f"timeout must be a number of seconds above 0 and at most {MAX_RESTORE_TIMEOUT:g}, "
            f"not {ops._dumps_or_repr(timeout)}"
        )
    return roots, list(dict.fromkeys(addresses)), float(timeout)


def _storage_bytes(path: Path) -> int:
    """The SQLite file and its write-ahead log, in bytes."""
    size = 0
    for name in (path.name, path.name + "-wal"):
        with contextlib.suppress(OSError):
            size += (path.parent / name).stat().st_size
    return size


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gridnode")
    except PackageNotFoundError:
        return "unknown"


_DASHBOARD_CSP: Final = (
    b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)


def _dashboard_page() -> bytes:
    from importlib.resources import files

    return files("gridnode").joinpath("static", "dashboard.html").read_bytes()


#: (path pattern, method) -> handler; ``*`` matches one segment (a database).
_ROUTES: Final[dict[tuple[tuple[str, ...], str], Handler]] = {
    ((), "GET"): ApiApp.hello,
    (("status",), "GET"): ApiApp.status,
    (("peers",), "GET"): ApiApp.peers,
    (("db",), "GET"): ApiApp.list_databases,
    (("db",), "POST"): ApiApp.create_database,
    (("follow",), "POST"): ApiApp.follow,
    (("db", "restore"), "POST"): ApiApp.restore,
    # /db/restore is also /db/{db} for a database named "restore": GET reads that database.
    (("db", "restore"), "GET"): ApiApp.database,
    (("unfollow",), "POST"): ApiApp.unfollow,
    (("events",), "GET"): ApiApp.events,
    (("metrics",), "GET"): ApiApp.metrics,
    (("dashboard",), "GET"): ApiApp.dashboard,
    (("openapi.json",), "GET"): ApiApp.openapi_document,
    (("import",), "POST"): ApiApp.import_car,
    (("db", "*"), "GET"): ApiApp.database,
    (("db", "*", "ops"), "POST"): ApiApp.write,
    # The reads on one database (gridnode.ops.READS), one line each.
    (("db", "*", "get"), "GET"): ApiApp.read,
    (("db", "*", "query"), "GET"): ApiApp.read,
    (("db", "*", "log"), "GET"): ApiApp.read,
    (("db", "*", "iter"), "GET"): ApiApp.read,
    (("db", "*", "value"), "GET"): ApiApp.read,
    (("db", "*", "car"), "GET"): ApiApp.car,
    (("ipfs", "*"), "GET"): ApiApp.ipfs,
    (("ipfs", "*"), "HEAD"): ApiApp.ipfs,
}


#: What answers without the token: no data in either.
_PUBLIC: Final = frozenset({(("dashboard",), "GET"), (("openapi.json",), "GET")})


def _is_gateway(segments: list[str], method: str) -> bool:
    """The trustless gateway answers without the token: read-only, and every byte it sends is
    checked by the client against the CID it asked for (docs/http.md)."""
    return len(segments) == 2 and segments[0] == "ipfs" and method in ("GET", "HEAD")


def _route(segments: list[str], method: str) -> tuple[Handler | None, list[str]]:
    """The handler for a path and method, or ``None`` and the methods the path allows."""
    allowed = []
    for (pattern, route_method), handler in _ROUTES.items():
        if len(pattern) == len(segments) and all(
            p in ("*", s) for p, s in zip(pattern, segments, strict=True)
        ):
            if route_method == method:
                return handler, []
            allowed.append(route_method)
    return None, sorted(set(allowed))


async def _send(send: Callable[[dict[str, Any]], Awaitable[None]], response: _Response) -> None:
    parts = response.parts
    if parts is None:
        parts = [jsonvalue.dumps(response.body).encode("utf-8") + b"\n"]
    length = sum(len(p) for p in parts)
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(length).encode()),
        *response.headers,
    ]
    if not any(name == b"cache-control" for name, _ in response.headers):
        headers.append((b"cache-control", b"no-store"))
    if response.head:
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    # Whole parts, a few at a time: one message per 64 KiB or so, not one per CAR section.
    batch: list[bytes] = []
    size = 0
    for part in parts:
        batch.append(part)
        size += len(part)
        if size >= 65536:
            await send({"type": "http.response.body", "body": b"".join(batch), "more_body": True})
            batch, size = [], 0
    await send({"type": "http.response.body", "body": b"".join(batch), "more_body": False})


# -- serving ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_api(node: Node, data_dir: Path | None = None) -> AsyncIterator[str]:
    """Serve the local API of ``node`` on a free port of 127.0.0.1 while the block runs; yield
    its URL.

    With ``data_dir``, a new token goes to ``DATA_DIR/api.token`` (mode 0600, created
    exclusively) and then the URL to ``DATA_DIR/api``; both are removed when the block ends,
    however it ends. The caller makes sure no other node serves this data directory
    (:func:`node_lock`): stale files from a crash are replaced.
    """
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    token = secrets.token_urlsafe(32)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    # hypercorn's own logger, through the root handlers; its start line would say "CTRL + C".
    server_log = logging.getLogger("hypercorn.error")
    if server_log.level == logging.NOTSET:
        server_log.setLevel(logging.WARNING)
    config.errorlog = server_log
    config.include_server_header = False
    config.graceful_timeout = 2.0
    app = ApiApp(node, token)
    stopping = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(_serve_until, serve, app, config, stopping)
        url = binds[0]
        try:
            if data_dir is not None:
                datadir.write_api_files(data_dir, url, token)
            log.info("API on %s", url)
            yield url
        finally:
            if data_dir is not None:
                datadir.remove_api_files(data_dir)
            stopping.set()


async def _serve_until(
    serve: Any, app: ApiApp, config: Any, stopping: Any, *, task_status: Any
) -> None:
    await serve(app, config, shutdown_trigger=stopping.wait, task_status=task_status)


def _closing(repo: Repo, hold: datadir.SharedHold) -> Callable[[], None]:
    def done() -> None:
        repo.close()
        hold.close()

    return done


def open_endpoint(
    data_dir: Path,
    open_repo: Callable[[], Repo],
    *,
    warn: Callable[[str], None],
    wait: float = 10.0,
) -> tuple[ApiClient | RepoEndpoint, Callable[[], None]]:
    """Where the CLI works on ``data_dir``: the running node's API if a node runs there, else the
    data directory itself (:class:`~gridnode.ops.RepoEndpoint` over ``open_repo()``), with a shared hold on
    ``DATA_DIR/node.lock`` so that no node starts meanwhile. Returns the endpoint and what to
    call when done.

    A ``DATA_DIR/api`` left by a node that crashed is removed (``warn`` says so). A node that
    holds the lock but does not answer (starting, stopping) is waited for up to ``wait``
    seconds, then :class:`NodeUnavailable` is raised: nothing writes behind a node's back.
    """
    deadline = time.monotonic() + wait
    while True:
        hold = datadir.hold_shared(data_dir)
        if hold is not None:
            # No node runs (a node holds the lock exclusively while it runs).
            try:
                if (data_dir / API_FILE).exists():
                    datadir.remove_api_files(data_dir)
                    warn(
                        f"removed the stale {data_dir / API_FILE} (no node runs on {data_dir}); "
                        "working offline"
                    )
                repo = open_repo()
            except BaseException:
                hold.close()
                raise
            return RepoEndpoint(repo), _closing(repo, hold)
        client = ApiClient.from_data_dir(data_dir)
        if client is not None and client.answers():
            return client, lambda: None
        if time.monotonic() > deadline:
            raise NodeUnavailable(
                f"a node is running on {data_dir} but its API does not answer; "
                "try again when it has started (or stopped)"
            )
        time.sleep(0.05)


# -- the client ------------------------------------------------------------------------------------


#: Seconds a restore request may take beyond its own timeout: dialling the peers given (10 s
#: each, at once), then verifying and joining what came.
_RESTORE_SLACK: Final = 300.0


class ApiClient:
    """A blocking client of a node's local API (one connection per request)."""

    running: Final = True

    def __init__(self, url: str, token: str, *, timeout: float = 600.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise NodeUnavailable(f"not an API address: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port
        self.timeout = timeout
        self._auth = f"Bearer {token}"

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> ApiClient | None:
        """The client of the node whose files are in ``data_dir``, or ``None`` if there are none."""
        found = datadir.api_files(data_dir)
        if found is None:
            return None
        url, token = found
        try:
            return cls(url, token)
        except NodeUnavailable:
            return None

    def answers(self) -> bool:
        """Whether the node answers with this token (raises :class:`TokenRefused` if not)."""
        try:
            self._request("GET", "/", timeout=5.0)
        except NodeUnavailable:
            return False
        return True

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        sink: Callable[[http.client.HTTPResponse], Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = path + ("?" + urlencode(query) if query else "")
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=timeout or self.timeout
        )
        try:
            try:
                connection.request(method, target, body=body, headers=headers)
                response = connection.getresponse()
            except (ConnectionError, OSError) as exc:
                raise NodeUnavailable(
                    f"the node at {self.url} does not answer: {_describe(exc)}"
                ) from None
            if response.status < 300 and sink is not None:
                return sink(response)
            data = response.read()
        finally:
            connection.close()
        value = jsonvalue.parse(data, "the node's answer") if data.strip() else None
        if response.status >= 300:
            message = value.get("error") if isinstance(value, dict) else None
            text = message if isinstance(message, str) else f"HTTP {response.status}"
            if isinstance(value, dict) and type(value.get("index")) is int:
                index = value["index"]
                reason = str(value.get("reason", text))
                raise InvalidOperation(f"ops[{index}]: {reason}", index=index, reason=reason)
            cls = _BY_NAME.get(response.getheader("x-gridnode-error") or "")
            raise (cls or _BY_STATUS.get(response.status, GridnodeError))(text)
        return value

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._request("GET", path, params)

    def _post(self, path: str, value: Any) -> Any:
        return self._request("POST", path, body=jsonvalue.dumps(value).encode("utf-8"))

    # -- the Offline methods, over HTTP ------------------------------------------------------------

    def database(self, ref: str, *, digest: bool = False) -> dict[str, Any]:
        answer: dict[str, Any] = self._get(_db_path(ref), {"digest": "true" if digest else "false"})
        return answer

    def databases(self) -> list[dict[str, Any]]:
        return self._get("/db")["databases"]  # type: ignore[no-any-return]

    def create(self, request: CreateRequest) -> dict[str, Any]:
        return self._post("/db", request.to_json())  # type: ignore[no-any-return]

    def follow(self, address: str) -> dict[str, Any]:
        return self._post("/follow", {"address": address})  # type: ignore[no-any-return]

    def unfollow(self, address: str) -> dict[str, Any]:
        return self._post("/unfollow", {"address": address})  # type: ignore[no-any-return]

    def restore(
        self,
        roots: Sequence[str],
        peers: Sequence[str] = (),
        timeout: float = DEFAULT_RESTORE_TIMEOUT,
    ) -> dict[str, Any]:
        """``POST /db/restore``: the node fetches the database over bitswap, taking up to
        ``timeout`` seconds (and the time to dial the peers and to join what came), which this
        request waits for."""
        body = {"roots": list(roots), "peers": list(peers), "timeout": timeout}
        answer: dict[str, Any] = self._request(
            "POST",
            "/db/restore",
            body=jsonvalue.dumps(body).encode("utf-8"),
            timeout=max(self.timeout, timeout + _RESTORE_SLACK),
        )
        return answer

    def write(
        self, ref: str, payloads: Sequence[Any], labels: Sequence[str] | None = None
    ) -> dict[str, Any]:
        try:
            return self._post(_db_path(ref, "ops"), list(payloads))  # type: ignore[no-any-return]
        except InvalidOperation as exc:
            index = exc.index
            if labels is not None and index is not None and 0 <= index < len(labels):
                raise InvalidOperation(
                    f"{labels[index]}: {exc.reason}", index=index, reason=exc.reason
                ) from None
            raise

    def read(self, name: str, ref: str, **params: Any) -> dict[str, Any]:
        """The registered read ``name`` (:data:`gridnode.ops.READS`) on the database ``ref``:
        ``GET /db/{ref}/{name}``, each parameter written by its kind."""
        found = ops.READS.get(name)
        if found is None:
            raise NotFound(f"no read {name!r}")
        kinds = {p.name: p.kind for p in found.params}
        query: dict[str, Any] = {}
        for key, value in params.items():
            kind = kinds.get(key)
            if kind is None:
                raise InvalidRequest(f"'{name}' takes no parameter {key!r}")
            if value is None:
                continue
            if kind == "bool":
                if value:
                    query[key] = "true"
            elif kind == "json":
                query[key] = jsonvalue.dumps(value)
            else:
                query[key] = value
        return self._get(_db_path(ref, name), query)  # type: ignore[no-any-return]

    def export(self, ref: str, path: Path) -> dict[str, Any]:
        """Fetch the database as a CAR and write it to ``path`` (atomically, like offline)."""

        def save(response: http.client.HTTPResponse) -> dict[str, Any]:
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
            return {
                "address": response.getheader("x-gridnode-address", ""),
                "file": str(path),
                "blocks": int(response.getheader("x-gridnode-blocks", "0")),
            }

        return self._request("GET", _db_path(ref, "car"), sink=save)  # type: ignore[no-any-return]

    def import_car(self, data: bytes | memoryview) -> dict[str, Any]:
        if len(data) > MAX_CAR_BYTES:
            raise InvalidRequest(
                f"the CAR is larger than a running node takes ({MAX_CAR_BYTES} bytes); "
                "stop the node and import it offline"
            )
        report: dict[str, Any] = self._request(
            "POST", "/import", body=bytes(data), content_type=CAR_TYPE
        )
        return report

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._get("/status")
        status["api"] = self.url
        return status

    def peers(self) -> dict[str, Any]:
        return self._get("/peers")  # type: ignore[no-any-return]

    def request_json(self, method: str, path: str, value: Any = None) -> Any:
        """A raw request (for tests and scripts): ``value`` as the JSON body, the answer parsed."""
        body = None if value is None else jsonvalue.dumps(value).encode("utf-8")
        return self._request(method, path, body=body)


def _db_path(ref: str, *rest: str) -> str:
    if not ref:
        # "/db/" would be the listing of every database, not a database.
        raise InvalidRequest("give a database: /gridnode/<cid>, its CID or its name")
    return "/".join(["/db", quote(ref, safe=""), *rest])
