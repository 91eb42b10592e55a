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
import fcntl
import hmac
import http.client
import itertools
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from crdt.errors import GridnodeError, InvalidCar
from crdt.errors import Unauthorized as NotAWriter
from crdt.ipld.car import car_section_bytes, car_v1_header_bytes
from crdt.ipld.cid import CID
from crdt.stores import STORE_TYPES, UNSET, open_store
from gridnode import gateway, jsonvalue, metrics
from gridnode.openapi import openapi
from gridnode.repo import Repo, StoredDatabase, UnknownDatabase

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
    "ApiError",
    "BadRequest",
    "Conflict",
    "CreateRequest",
    "InvalidOp",
    "NodeUnavailable",
    "NotFound",
    "Offline",
    "TokenRefused",
    "check_type",
    "dashboard_url",
    "node_lock",
    "open_endpoint",
    "serve_api",
]

log = logging.getLogger(__name__)

API_FILE: Final = "api"
TOKEN_FILE: Final = "api.token"
LOCK_FILE: Final = "node.lock"
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


# -- errors ----------------------------------------------------------------------------------------


class ApiError(GridnodeError):
    """A request the API refuses; ``status`` is its HTTP status."""

    status = 400


class BadRequest(ApiError):
    """Malformed JSON, an invalid op or query, a missing or bad parameter (400)."""


class InvalidOp(BadRequest):
    """One op of a write is not an operation of the database's type; ``index`` says which."""

    def __init__(self, label: str, index: int, reason: str) -> None:
        super().__init__(f"{label}: {reason}")
        self.index = index
        self.reason = reason


class TokenRefused(ApiError):
    """No token, or not the node's (401)."""

    status = 401


class NotFound(ApiError, LookupError):
    """No such database, key, document, member or endpoint (404)."""

    status = 404


class Conflict(ApiError):
    """A request the database refuses as it stands: this node may not write it, or the verb is
    not one of its type's (409)."""

    status = 409


class NodeUnavailable(ApiError):
    """The node's API cannot be reached (or the data directory is busy)."""

    status = 503


class _TooLarge(ApiError):
    status = 413


class _Disconnected(Exception):
    """The client went away before its request was whole: nobody to answer."""


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).splitlines()).strip()
    return text or type(exc).__name__


def _status_of(exc: GridnodeError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, UnknownDatabase):
        return 404
    if isinstance(exc, NotAWriter):
        return 409
    return 400


def _error_body(exc: GridnodeError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": _describe(exc)}
    if isinstance(exc, InvalidOp):
        body["index"] = exc.index
        body["reason"] = exc.reason
    return body


# -- the operations, on one data directory ---------------------------------------------------------


def resolve(repo: Repo, ref: str) -> StoredDatabase:
    """The database named by ``ref``: ``/gridnode/<cid>``, the bare CID, or a unique name."""
    try:
        return repo.database(ref)
    except UnknownDatabase:
        matches = [a for a, name, _ in repo.databases() if name == ref]
    if len(matches) > 1:
        raise BadRequest(
            f"{len(matches)} databases are named {ref!r}; give an address: " + ", ".join(matches)
        )
    if not matches:
        raise NotFound(
            f"no database {ref!r} in {repo.data_dir} "
            "(give /gridnode/<cid> or a name; 'gridnode db list' shows them)"
        )
    return repo.database(matches[0])


def check_type(info: Mapping[str, Any], verb: str, types: Sequence[str]) -> None:
    """Refuse (409) a verb that a database of this type does not have."""
    if types and info["type"] not in types:
        raise Conflict(
            f"'{verb}' works on {' and '.join(types)} databases; "
            f"{info['name']} ({info['address']}) is a {info['type']} database"
        )


def _check_type_of(db: StoredDatabase, verb: str, types: Sequence[str]) -> None:
    manifest = db.manifest
    check_type({"type": manifest.store, "name": manifest.name, "address": db.address}, verb, types)


def describe(db: StoredDatabase) -> dict[str, Any]:
    """The manifest: ``{"address", "name", "type", "admins", "writers", "options"}``."""
    manifest = db.manifest
    return {
        "address": db.address,
        "name": manifest.name,
        "type": manifest.store,
        "admins": list(manifest.admins),
        "writers": list(manifest.writers),
        "options": dict(manifest.options),
    }


def info(db: StoredDatabase, *, digest: bool = True) -> dict[str, Any]:
    """The manifest, the number of entries, the heads, whether this node may write, and (unless
    ``digest`` is false: it reads the whole state) the state digest in hex."""
    out = describe(db)
    out["entries"] = len(db)
    out["heads"] = [str(h) for h in db.heads]
    out["may_write"] = db.may_write()
    out["private"] = db.repo.private(db.address)
    if digest:
        out["digest"] = db.digest().hex()
    return out


def listing(repo: Repo) -> list[dict[str, Any]]:
    """``{"address", "name", "type", "entries"}`` of every database, by name."""
    out = []
    for a, n, t in repo.databases():
        row: dict[str, Any] = {"address": a, "name": n, "type": t}
        row.update(_counts(repo, a, heads=False))
        out.append(row)
    return out


def _counts(repo: Repo, address: str, *, heads: bool) -> dict[str, Any]:
    """A database's entries (and heads). One whose store does not open (options it cannot use,
    from an older node or a peer's manifest) is listed with zeros and its ``"error"``, so that
    one bad database does not fail every listing."""
    try:
        db = repo.database(address)
        counts: dict[str, Any] = {"entries": len(db)}
        if heads:
            counts["head_count"] = len(db.heads)
    except GridnodeError as exc:
        log.warning("database %s cannot be opened: %s", address, _describe(exc))
        counts = {"entries": 0, "error": _describe(exc)}
        if heads:
            counts["head_count"] = 0
    return counts


@dataclass(frozen=True)
class CreateRequest:
    """What ``POST /db`` (and ``db create``) asks for."""

    name: str
    type: str
    writers: list[str] = field(default_factory=list)
    public: bool = False
    indexes: list[str] = field(default_factory=list)
    index_by: str | None = None
    private: bool = False

    @classmethod
    def from_json(cls, body: Any) -> CreateRequest:
        if type(body) is not dict:
            raise BadRequest(
                'the body is {"name", "type", "writers", "public", "indexes", "index_by", '
                '"private"}'
            )
        unknown = set(body) - {
            "name",
            "type",
            "writers",
            "public",
            "indexes",
            "index_by",
            "private",
        }
        if unknown:
            raise BadRequest(f"unknown field {sorted(unknown)[0]!r}")
        name, store = body.get("name"), body.get("type")
        if type(name) is not str or not name:
            raise BadRequest("name must be a non-empty string")
        if type(store) is not str or store not in STORE_TYPES:
            raise BadRequest(f"type must be one of {', '.join(sorted(STORE_TYPES))}, not {store!r}")
        writers = body.get("writers", [])
        indexes = body.get("indexes", [])
        for key, value in (("writers", writers), ("indexes", indexes)):
            if type(value) is not list or not all(type(v) is str for v in value):
                raise BadRequest(f"{key} must be a list of strings")
        public = body.get("public", False)
        if type(public) is not bool:
            raise BadRequest("public must be true or false")
        private = body.get("private", False)
        if type(private) is not bool:
            raise BadRequest("private must be true or false")
        index_by = body.get("index_by")
        if index_by is not None and type(index_by) is not str:
            raise BadRequest("index_by must be a string")
        if (indexes or index_by is not None) and store != "documents":
            raise BadRequest("indexes and index_by apply to documents databases")
        return cls(name, store, writers, public, indexes, index_by, private)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def options(self) -> dict[str, Any]:
        """The manifest's options; :class:`BadRequest` if the store would not open with them (a
        database whose store cannot be opened would fail every listing that counts entries)."""
        options: dict[str, Any] = {}
        if self.index_by is not None:
            options["indexBy"] = self.index_by
        if self.indexes:
            options["indexes"] = list(dict.fromkeys(self.indexes))
        try:
            open_store(self.type, options)
        except GridnodeError as exc:
            raise BadRequest(_describe(exc)) from None
        return options


def prepare_ops(
    db: StoredDatabase, payloads: Sequence[Any], labels: Sequence[str] | None = None
) -> list[Any]:
    """Check a write before anything is signed: this node must be a writer, and every op one of
    the database's type (:class:`InvalidOp` names the first that is not). A set ``remove``
    without ``tags`` gets the tags of every add of its value this replica holds (it must hold
    one)."""
    if not payloads:
        raise BadRequest("no ops to write")
    if not db.may_write():
        raise Conflict(
            f"this node ({db.repo.did}) is not a writer of {db.manifest.name} ({db.address}); "
            "an admin names writers with 'gridnode db create --writer DID'"
        )
    store = db.store
    check_op = type(store).check_op
    options = db.manifest.options
    prepared = []
    for index, payload in enumerate(payloads):
        label = labels[index] if labels is not None else f"ops[{index}]"
        if (
            db.manifest.store == "set"
            and type(payload) is dict
            and payload.get("op") == "remove"
            and "value" in payload
            and "tags" not in payload
        ):
            tags = store.tags_for(payload["value"])  # type: ignore[attr-defined]
            if not tags:
                raise NotFound(
                    f"{_dumps_or_repr(payload['value'])} is not a member of {db.manifest.name}"
                )
            payload = {**payload, "tags": tags}
        try:
            check_op(payload, options)
        except GridnodeError as exc:
            raise InvalidOp(label, index, _describe(exc)) from None
        prepared.append(payload)
    return prepared


def _dumps_or_repr(value: Any) -> str:
    try:
        return jsonvalue.dumps(value)
    except GridnodeError:
        return repr(value)


def written(db: StoredDatabase, entries: Sequence[Any]) -> dict[str, Any]:
    """What a write did: ``{"address", "written", "entries", "heads"}``, and a counter's new
    ``"value"``."""
    out: dict[str, Any] = {
        "address": db.address,
        "written": len(entries),
        "entries": [str(e.cid) for e in entries],
        "heads": [str(h) for h in db.heads],
    }
    if db.manifest.store == "counter":
        out["value"] = db.store.value  # type: ignore[attr-defined]
    return out


def get_value(db: StoredDatabase, key: Any) -> dict[str, Any]:
    """``{"key", "value"}``: a keyvalue key's value, or a document by id."""
    _check_type_of(db, "get", ("keyvalue", "documents"))
    store: Any = db.store
    if db.manifest.store == "keyvalue":
        if type(key) is not str:
            raise BadRequest("a keyvalue key is a string")
        if key not in store:
            raise NotFound(f"no key {key!r} in {db.manifest.name}")
        return {"key": key, "value": store.get(key)}
    if type(key) not in (str, int):
        raise BadRequest("a document id is a string or an integer")
    value = store.get(key)
    if value is None:
        raise NotFound(f"no document {key!r} in {db.manifest.name}")
    return {"key": key, "value": value}


BOUNDS: Final = ("eq", "gt", "gte", "lt", "lte")


def query(
    db: StoredDatabase,
    field_: str | None,
    bounds: Mapping[str, Any],
    limit: int | None,
    reverse: bool,
) -> dict[str, Any]:
    """``{"index_by", "documents"}``: the documents whose indexed field matches, in its order."""
    _check_type_of(db, "query", ("documents",))
    store: Any = db.store
    given = {name: bounds.get(name, UNSET) for name in BOUNDS}
    docs = store.query(field_ or store.index_by, limit=limit, reverse=reverse, **given)
    return {"index_by": store.index_by, "documents": docs}


def log_entries(db: StoredDatabase, limit: int | None) -> Iterator[dict[str, Any]]:
    """The entries in their total order: ``{"clock", "cid", "author", "next", "payload"}``."""
    for entry in itertools.islice(db.entries(), limit):
        yield {
            "clock": entry.clock,
            "cid": str(entry.cid),
            "author": entry.author,
            "next": [str(c) for c in entry.next],
            "payload": entry.payload,
        }


def items(db: StoredDatabase, limit: int | None, reverse: bool) -> list[dict[str, Any]]:
    """Events ``{"cid", "value"}`` in the log's order, or set members ``{"value"}``."""
    _check_type_of(db, "iter", ("events", "set"))
    store: Any = db.store
    if db.manifest.store == "events":
        return [
            {"cid": str(cid), "value": value}
            for cid, value in store.iter(forward=not reverse, limit=limit)
        ]
    members = store.values()
    if reverse:
        members.reverse()
    members = members[:limit] if limit is not None else members
    return [{"value": value} for value in members]


def counter_value(db: StoredDatabase) -> dict[str, Any]:
    _check_type_of(db, "value", ("counter",))
    return {"address": db.address, "value": db.store.value}  # type: ignore[attr-defined]


def car_sections(db: StoredDatabase) -> tuple[list[bytes], int]:
    """A CAR v1 of the database (roots: the manifest, then the heads), as parts to send, and its
    block count. Taken in one go so that it is one consistent state."""
    parts = [
        car_v1_header_bytes([db.manifest.cid, *db.heads]),
        car_section_bytes(db.manifest.cid, db.manifest.block),
    ]
    for entry in db.entries():
        parts.append(car_section_bytes(entry.cid, entry.block))
    return parts, len(parts) - 1


def import_report(report: Any) -> dict[str, Any]:
    return {
        "address": report.address,
        "applied": report.applied,
        "duplicates": report.duplicates,
        "pending": report.pending,
        "rejected": [{"cid": c, "reason": r} for c, r in report.rejected],
    }


def _import_car(repo: Repo, data: bytes | memoryview) -> Any:
    try:
        return repo.import_car(data)
    except InvalidCar as exc:
        raise BadRequest(f"invalid CAR: {_describe(exc)}") from None


def databases_status(repo: Repo) -> list[dict[str, Any]]:
    out = []
    for address, name, store in repo.databases():
        row: dict[str, Any] = {"address": address, "name": name, "type": store}
        row.update(_counts(repo, address, heads=True))
        out.append(row)
    return out


def _sync_json(sync: PeerSync, now: float) -> dict[str, Any]:
    out = asdict(sync)
    del out["address"], out["at"]
    if sync.running:
        out["complete"] = False
    return {"peer": out.pop("peer"), "seconds_ago": round(max(0.0, now - sync.at), 3), **out}


# -- offline: the operations run directly ----------------------------------------------------------


class Offline:
    """The operations on a data directory no node is running on (the CLI's offline mode)."""

    running: Final = False

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def database(self, ref: str, *, digest: bool = False) -> dict[str, Any]:
        return info(resolve(self.repo, ref), digest=digest)

    def databases(self) -> list[dict[str, Any]]:
        return listing(self.repo)

    def create(self, request: CreateRequest) -> dict[str, Any]:
        db = self.repo.create_database(
            request.name,
            request.type,
            writers=request.writers,
            public=request.public,
            options=request.options(),
        )
        if request.private:
            self.repo.set_private(db.address, True)
        return describe(db)

    def write(
        self, ref: str, payloads: Sequence[Any], labels: Sequence[str] | None = None
    ) -> dict[str, Any]:
        db = resolve(self.repo, ref)
        entries = db.write_many(prepare_ops(db, payloads, labels))
        return written(db, entries)

    def get(self, ref: str, key: Any) -> dict[str, Any]:
        return get_value(resolve(self.repo, ref), key)

    def query(
        self,
        ref: str,
        field_: str | None,
        bounds: Mapping[str, Any],
        limit: int | None,
        reverse: bool,
    ) -> dict[str, Any]:
        return query(resolve(self.repo, ref), field_, bounds, limit, reverse)

    def log(self, ref: str, limit: int | None) -> Iterator[dict[str, Any]]:
        return log_entries(resolve(self.repo, ref), limit)

    def items(self, ref: str, limit: int | None, reverse: bool) -> list[dict[str, Any]]:
        return items(resolve(self.repo, ref), limit, reverse)

    def value(self, ref: str) -> dict[str, Any]:
        return counter_value(resolve(self.repo, ref))

    def export(self, ref: str, path: Path) -> dict[str, Any]:
        db = resolve(self.repo, ref)
        count = db.export_car(path)
        return {"address": db.address, "file": str(path), "blocks": count}

    def import_car(self, data: bytes | memoryview) -> dict[str, Any]:
        return import_report(_import_car(self.repo, data))

    def status(self) -> dict[str, Any]:
        from gridnode.net.identity import peer_id_from_seed

        return {
            "running": False,
            "data_dir": str(self.repo.data_dir),
            "identity": self.repo.did,
            "peer_id": peer_id_from_seed(self.repo.keypair.seed),
            "databases": databases_status(self.repo),
        }

    def peers(self) -> dict[str, Any]:
        from gridnode.net.identity import peer_id_from_seed

        return {
            "running": False,
            "identity": self.repo.did,
            "peer_id": peer_id_from_seed(self.repo.keypair.seed),
            "peers": [],
        }


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
            raise _TooLarge(f"the request body is over {limit} bytes")
        chunks = []
        size = 0
        while True:
            message = await self.stream.receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge(f"the request body is over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def json(self) -> Any:
        data = await self.body()
        if not data.strip():
            raise BadRequest("the request body is empty; it is JSON")
        return jsonvalue.parse(data, "the request body")

    def int_param(self, name: str) -> int | None:
        text = self.query.get(name)
        if text is None:
            return None
        if not (text.isascii() and text.isdigit()):
            raise BadRequest(f"{name} must be a non-negative integer, not {text!r}")
        return int(text)

    def flag(self, name: str, default: bool = False) -> bool:
        text = self.query.get(name)
        if text is None:
            return default
        if text in ("1", "true", "yes", ""):
            return True
        if text in ("0", "false", "no"):
            return False
        raise BadRequest(f"{name} must be true or false, not {text!r}")


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
                    raise BadRequest(f"parameter {key!r} is given twice")
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
            response = _Response(_status_of(exc), _error_body(exc))
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
        db: StoredDatabase = await self._run(resolve, self.node.repo, ref)
        return db

    async def hello(self, request: _Request) -> _Response:
        return _Response(200, {"peer_id": self.node.peer_id, "identity": self.node.repo.did})

    async def status(self, request: _Request) -> _Response:
        import trio

        node = self.node
        databases = await self._run(databases_status, node.repo)
        now = trio.current_time()
        for db in databases:
            db["replicating"] = node.replicating(db["address"])
            db["syncs"] = [
                _sync_json(s, now)
                for (_peer, address), s in sorted(node.syncs.items())
                if address == db["address"]
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
                "served": {peer: asdict(t) for peer, t in sorted(node.served.items())},
                "bitswap": None if node.bitswap is None else node.bitswap.stats.as_dict(),
            },
        )

    async def peers(self, request: _Request) -> _Response:
        node = self.node
        peers = [{"peer_id": p, "strikes": node.strikes.get(p, 0)} for p in sorted(node.peers())]
        return _Response(
            200,
            {"running": True, "identity": node.repo.did, "peer_id": node.peer_id, "peers": peers},
        )

    async def list_databases(self, request: _Request) -> _Response:
        return _Response(200, {"databases": await self._run(listing, self.node.repo)})

    async def create_database(self, request: _Request) -> _Response:
        spec = CreateRequest.from_json(await request.json())
        db = await self.node.create_database(
            spec.name,
            spec.type,
            writers=spec.writers,
            public=spec.public,
            options=spec.options(),
            private=spec.private,
        )
        return _Response(201, describe(db))

    async def follow(self, request: _Request) -> _Response:
        db = await self.node.follow(_address_body(await request.json()))
        return _Response(200, await self._run(lambda: info(db, digest=False)))

    async def restore(self, request: _Request) -> _Response:
        """Fetch a database from IPFS peers over bitswap (:meth:`~gridnode.node.Node.restore`):
        connect to the ``peers`` given first, then ask them (or, when none was given or none
        answered, every connected peer)."""
        import trio

        roots, addresses, timeout = _restore_body(await request.json())
        node = self.node
        if node.bitswap is None:
            raise Conflict(
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
            raise NotFound(
                f"no peer to ask for the manifest {roots[0]}: no peer is connected{missed}"
            )
        try:
            report = await node.restore(roots, peer_ids or None, timeout=timeout)
        except UnknownDatabase as exc:
            raise NotFound(f"{_describe(exc)}{missed}") from None
        db = await self._resolve(report.address)

        def describe_restored() -> dict[str, Any]:
            answer = info(db, digest=False)
            answer.update(import_report(report))
            # What did not come in time: parents that entries held wait for.
            answer["missing"] = len(db.missing)
            return answer

        return _Response(200, await self._run(describe_restored))

    async def import_car(self, request: _Request) -> _Response:
        data = await request.body(MAX_CAR_BYTES)
        report = await self._run(_import_car, self.node.repo, data)
        self.node.count_join("import", report)
        db = await self._resolve(report.address)
        await self.node.replicate(db)
        if report.applied:
            await self.node.announce(db.address)
        return _Response(200, import_report(report))

    async def database(self, request: _Request) -> _Response:
        db = await self._resolve(request.segments[1])
        with_digest = request.flag("digest", True)
        return _Response(200, await self._run(lambda: info(db, digest=with_digest)))

    async def write(self, request: _Request) -> _Response:
        db = await self._resolve(request.segments[1])
        body = await request.json()
        if type(body) is not list:
            raise BadRequest("the body is a JSON array of ops")
        payloads = await self._run(prepare_ops, db, body)
        await self.node.replicate(db)
        entries = await self.node.write(db.address, payloads)
        return _Response(200, await self._run(written, db, entries))

    async def get(self, request: _Request) -> _Response:
        db = await self._resolve(request.segments[1])
        if ("key" in request.query) == ("id" in request.query):
            raise BadRequest("give key=<string> or id=<JSON string or integer>")
        key: Any = request.query.get("key")
        if key is None:
            key = jsonvalue.parse(request.query["id"], "id")
        return _Response(200, await self._run(get_value, db, key))

    async def query(self, request: _Request) -> _Response:
        db = await self._resolve(request.segments[1])
        bounds = {
            name: jsonvalue.parse(request.query[name], name)
            for name in BOUNDS
            if name in request.query
        }
        args = (
            request.query.get("field") or None,
            bounds,
            request.int_param("limit"),
            request.flag("reverse"),
        )
        return _Response(200, await self._run(query, db, *args))

    async def log(self, request: _Request) -> _Response:
        db = await self._resolve(request.segments[1])
        limit = request.int_param("limit")
        entries = await self._run(lambda: list(log_entries(db, limit)))
        return _Response(200, {"address": db.address, "entries": entries})

    async def items(self, request: _Request) -> _Response:
        db = await self._resolve(request.segments[1])
        args = (request.int_param("limit"), request.flag("reverse"))
        return _Response(200, {"address": db.address, "items": await self._run(items, db, *args)})

    async def value(self, request: _Request) -> _Response:
        db = await self._resolve(request.segments[1])
        return _Response(200, await self._run(counter_value, db))

    async def unfollow(self, request: _Request) -> _Response:
        address = _address_body(await request.json())
        db = await self.node.unfollow(address)
        return _Response(200, {"address": db.address, "replicating": False})

    async def events(self, request: _Request) -> _Response:
        limit = request.int_param("limit")
        recent = list(reversed(self.node.events))[:limit]
        return _Response(200, {"events": [asdict(e) for e in recent]})

    async def metrics(self, request: _Request) -> _Response:
        node = self.node
        databases = await self._run(databases_status, node.repo)
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
        try:
            cid = gateway.parse_cid(request.segments[1])
            kind = gateway.choose_format(
                request.headers.get(b"accept", b"").decode("latin-1") or None,
                request.query.get("format"),
            )
            scope = request.query.get("dag-scope", "all")
            served: gateway.Served = await self._run(
                gateway.serve, self.node.repo, cid, kind, scope
            )
        except gateway.GatewayError as exc:
            return _Response(exc.status, {"error": _describe(exc)})
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
        db = await self._resolve(request.segments[1])
        parts, count = await self._run(car_sections, db)
        return _Response(
            200,
            parts=parts,
            content_type=CAR_TYPE,
            headers=[
                (b"x-gridnode-blocks", str(count).encode()),
                (b"x-gridnode-address", db.address.encode()),
            ],
        )


def dashboard_url(url: str, token: str) -> str:
    """The dashboard's address for the API at ``url``, the token in its fragment: a browser
    never sends a fragment, and the page moves the token to the tab's session storage."""
    return f"{url}/dashboard#token={quote(token, safe='')}"


def _address_body(body: Any) -> str:
    if type(body) is not dict or type(body.get("address")) is not str or set(body) != {"address"}:
        raise BadRequest('the body is {"address": "/gridnode/<cid>"}')
    address: str = body["address"]
    return address


_RESTORE_BODY: Final = (
    'the body is {"roots": [manifest CID, head CID, ...], "peers": [multiaddr, ...], '
    '"timeout": seconds} (peers and timeout optional)'
)


def _restore_body(body: Any) -> tuple[list[CID], list[str], float]:
    """The roots (as CIDs), the peers' multiaddrs and the timeout of a ``POST /db/restore``."""
    if type(body) is not dict or "roots" not in body:
        raise BadRequest(_RESTORE_BODY)
    unknown = set(body) - {"roots", "peers", "timeout"}
    if unknown:
        raise BadRequest(f"unknown field {sorted(unknown)[0]!r}; {_RESTORE_BODY}")
    texts = body["roots"]
    if type(texts) is not list:
        raise BadRequest("roots must be a list of CIDs: the manifest's, then the heads")
    if not texts:
        raise BadRequest("roots is empty: give the manifest's CID (then the heads)")
    if len(texts) > MAX_RESTORE_ROOTS:
        raise BadRequest(f"roots has {len(texts)} CIDs; at most {MAX_RESTORE_ROOTS}")
    roots = []
    for index, text in enumerate(texts):
        if type(text) is not str:
            raise BadRequest(f"roots[{index}] must be a CID as a string")
        try:
            roots.append(CID.parse(text))
        except GridnodeError as exc:
            raise BadRequest(f"roots[{index}] is not a CID: {_describe(exc)}") from None
    addresses = body.get("peers", [])
    if type(addresses) is not list:
        raise BadRequest("peers must be a list of multiaddrs ending in /p2p/<peer id>")
    if len(addresses) > MAX_RESTORE_PEERS:
        raise BadRequest(f"peers has {len(addresses)} multiaddrs; at most {MAX_RESTORE_PEERS}")
    for index, address in enumerate(addresses):
        _check_peer_address(address, f"peers[{index}]")
    timeout = body.get("timeout", DEFAULT_RESTORE_TIMEOUT)
    if type(timeout) not in (int, float) or not 0 < timeout <= MAX_RESTORE_TIMEOUT:
        raise BadRequest(
            f"timeout must be a number of seconds above 0 and at most {MAX_RESTORE_TIMEOUT:g}, "
            f"not {_dumps_or_repr(timeout)}"
        )
    return roots, list(dict.fromkeys(addresses)), float(timeout)


def _check_peer_address(address: Any, label: str) -> None:
    """Refuse (400) what is not a multiaddr ending in ``/p2p/<peer id>``."""
    if type(address) is not str:
        raise BadRequest(f"{label} must be a multiaddr (a string) ending in /p2p/<peer id>")
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    try:
        info_from_p2p_addr(multiaddr.Multiaddr(address))
    except Exception as exc:
        raise BadRequest(
            f"{label} is not a multiaddr ending in /p2p/<peer id>: {address!r} ({_describe(exc)})"
        ) from None


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
    (("db", "*", "get"), "GET"): ApiApp.get,
    (("db", "*", "query"), "GET"): ApiApp.query,
    (("db", "*", "log"), "GET"): ApiApp.log,
    (("db", "*", "iter"), "GET"): ApiApp.items,
    (("db", "*", "value"), "GET"): ApiApp.value,
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
                _write_files(data_dir, url, token)
            log.info("API on %s", url)
            yield url
        finally:
            if data_dir is not None:
                _remove_files(data_dir)
            stopping.set()


async def _serve_until(
    serve: Any, app: ApiApp, config: Any, stopping: Any, *, task_status: Any
) -> None:
    await serve(app, config, shutdown_trigger=stopping.wait, task_status=task_status)


def _write_files(data_dir: Path, url: str, token: str) -> None:
    _remove_files(data_dir)
    token_path = data_dir / TOKEN_FILE
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the mode given to open() is masked by the umask; make sure
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    # The URL last, atomically: once DATA_DIR/api is there, the API answers with this token.
    tmp = data_dir / (API_FILE + ".tmp")
    tmp.write_text(url + "\n")
    tmp.replace(data_dir / API_FILE)


def _remove_files(data_dir: Path) -> None:
    for name in (API_FILE, API_FILE + ".tmp", TOKEN_FILE):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).unlink()


# -- the data directory's lock ---------------------------------------------------------------------


def _open_lock(data_dir: Path) -> int:
    return os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)


def _try_lock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def node_lock(data_dir: Path, *, wait: float = 10.0) -> Iterator[None]:
    """Hold ``DATA_DIR/node.lock`` exclusively: what a running node does for its whole life.

    Waits up to ``wait`` seconds for offline commands to finish; raises
    :class:`NodeUnavailable` if a node runs there, or the directory stays busy.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(data_dir)
    try:
        deadline = time.monotonic() + wait
        while not _try_lock(fd, fcntl.LOCK_EX):
            client = ApiClient.from_data_dir(data_dir)
            if client is not None and client.answers():
                raise NodeUnavailable(f"a node is already running on {data_dir} ({client.url})")
            if time.monotonic() > deadline:
                raise NodeUnavailable(f"{data_dir} is in use by another gridnode process")
            time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _closing(repo: Repo, lock: _SharedLock) -> Callable[[], None]:
    def done() -> None:
        repo.close()
        lock.close()

    return done


class _SharedLock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_endpoint(
    data_dir: Path,
    open_repo: Callable[[], Repo],
    *,
    warn: Callable[[str], None],
    wait: float = 10.0,
) -> tuple[ApiClient | Offline, Callable[[], None]]:
    """Where the CLI works on ``data_dir``: the running node's API if a node runs there, else the
    data directory itself (:class:`Offline` over ``open_repo()``), with a shared hold on
    ``DATA_DIR/node.lock`` so that no node starts meanwhile. Returns the endpoint and what to
    call when done.

    A ``DATA_DIR/api`` left by a node that crashed is removed (``warn`` says so). A node that
    holds the lock but does not answer (starting, stopping) is waited for up to ``wait``
    seconds, then :class:`NodeUnavailable` is raised: nothing writes behind a node's back.
    """
    fd = _open_lock(data_dir)
    lock = _SharedLock(fd)
    try:
        deadline = time.monotonic() + wait
        while True:
            if _try_lock(fd, fcntl.LOCK_SH):
                # No node runs (a node holds the lock exclusively while it runs).
                if (data_dir / API_FILE).exists():
                    _remove_files(data_dir)
                    warn(
                        f"removed the stale {data_dir / API_FILE} (no node runs on {data_dir}); "
                        "working offline"
                    )
                repo = open_repo()
                return Offline(repo), _closing(repo, lock)
            client = ApiClient.from_data_dir(data_dir)
            if client is not None and client.answers():
                lock.close()
                return client, lambda: None
            if time.monotonic() > deadline:
                raise NodeUnavailable(
                    f"a node is running on {data_dir} but its API does not answer; "
                    "try again when it has started (or stopped)"
                )
            time.sleep(0.05)
    except BaseException:
        lock.close()
        raise


# -- the client ------------------------------------------------------------------------------------


_ERRORS: Final[dict[int, type[ApiError]]] = {
    400: BadRequest,
    401: TokenRefused,
    404: NotFound,
    409: Conflict,
    413: _TooLarge,
}


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
        try:
            url = (data_dir / API_FILE).read_text().strip()
            token = (data_dir / TOKEN_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NodeUnavailable(f"cannot read the node's API files: {exc.strerror}") from None
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
                raise InvalidOp(f"ops[{index}]", index, str(value.get("reason", text)))
            raise _ERRORS.get(response.status, ApiError)(text)
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
        except InvalidOp as exc:
            if labels is not None and 0 <= exc.index < len(labels):
                raise InvalidOp(labels[exc.index], exc.index, exc.reason) from None
            raise

    def get(self, ref: str, key: Any) -> dict[str, Any]:
        params = {"key": key} if type(key) is str else {"id": jsonvalue.dumps(key)}
        return self._get(_db_path(ref, "get"), params)  # type: ignore[no-any-return]

    def query(
        self,
        ref: str,
        field_: str | None,
        bounds: Mapping[str, Any],
        limit: int | None,
        reverse: bool,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "field": field_,
            "limit": limit,
            "reverse": "true" if reverse else None,
        }
        for name, value in bounds.items():
            if value is not UNSET:
                params[name] = jsonvalue.dumps(value)
        return self._get(_db_path(ref, "query"), params)  # type: ignore[no-any-return]

    def log(self, ref: str, limit: int | None) -> Iterator[dict[str, Any]]:
        return iter(self._get(_db_path(ref, "log"), {"limit": limit})["entries"])

    def items(self, ref: str, limit: int | None, reverse: bool) -> list[dict[str, Any]]:
        params = {"limit": limit, "reverse": "true" if reverse else None}
        return self._get(_db_path(ref, "iter"), params)["items"]  # type: ignore[no-any-return]

    def value(self, ref: str) -> dict[str, Any]:
        return self._get(_db_path(ref, "value"))  # type: ignore[no-any-return]

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
            raise BadRequest(
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
    return "/".join(["/db", quote(ref, safe=""), *rest])
