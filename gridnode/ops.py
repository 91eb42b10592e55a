"""The database operations, written once.

Every way into a node's databases runs these functions: the local API's handlers (in the
running node's storage worker), the embed facades (the same, through the node), and the CLI when
no node runs (:class:`RepoEndpoint`, straight on the data directory). They are synchronous, take
a :class:`~gridnode.repo.Repo` or a :class:`~gridnode.repo.StoredDatabase`, and return
JSON-ready values (IPLD values: a link is a :class:`~crdt.ipld.cid.CID`, bytes are ``bytes``).
They know nothing of HTTP, trio or the terminal.

Rules:

- **One write path.** :func:`write` checks a write (this node is a writer; every op is one of
  the database's type, the first that is not named by its index) and commits it in one
  transaction; :func:`write_group` does the same for many callers' writes in one shared
  transaction (group commit); nothing else calls
  :meth:`~gridnode.repo.StoredDatabase.write_many`. A running node's writes all go through
  :meth:`gridnode.node.Node.write` (group commit, then count, tell bitswap, announce).
- **One export path.** A CAR of a database comes from
  :meth:`~gridnode.repo.StoredDatabase.car_parts`, which re-hashes every stored block: a damaged
  one raises :class:`~gridnode.errors.CorruptBlock` and nothing damaged is sent.
- **Reads on one database are registered** (:data:`READS`): a name, the store types that have
  it, its parameters and their kinds. The API serves each at ``GET /db/{db}/{name}``, its client
  and :class:`RepoEndpoint` call it by name (``endpoint.read(name, ref, **params)``), the embed
  facades by ``node.read(name, ref, **params)``. Adding a read is: the function here, its route
  in :mod:`gridnode.api.routes`, its CLI verb.

Errors are :mod:`gridnode.errors`' (and crdt's :class:`~crdt.errors.InvalidOperation` for an op
that is not valid): never HTTP names.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from crdt.entry import Entry, decode_entry
from crdt.errors import GridnodeError, InvalidCar, InvalidDidKey, InvalidOperation
from crdt.identity import public_key_from_did
from crdt.ipld.cid import CID
from crdt.manifest import decode_manifest
from crdt.stores import STORE_TYPES, UNSET, open_store
from gridnode import jsonvalue
from gridnode.errors import (
    InvalidRequest,
    NotAWriter,
    NotFound,
    UnknownDatabase,
    WrongStoreType,
)
from gridnode.files import ops as files_ops
from gridnode.repo import ImportReport, Repo, StoredDatabase
from protocols.catalog import parse_catalog

__all__ = [
    "BOUNDS",
    "READS",
    "CreateRequest",
    "Param",
    "Read",
    "RepoEndpoint",
    "WriteRequest",
    "Written",
    "check_type",
    "create",
    "describe",
    "describe_error",
    "export_car",
    "import_car",
    "import_report",
    "info",
    "listing",
    "read_steps",
    "resolve",
    "run_to_end",
    "status_of_databases",
    "write",
    "write_group",
    "written",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


def describe_error(exc: BaseException) -> str:
    """An error as one line of text (its class name if it says nothing)."""
    text = " ".join(str(exc).splitlines()).strip()
    return text or type(exc).__name__


# -- finding and describing databases --------------------------------------------------------------


def resolve(repo: Repo, ref: str) -> StoredDatabase:
    """The database named by ``ref``: ``/gridnode/<cid>``, the bare CID, or a unique name."""
    if not ref:
        raise InvalidRequest("give a database: /gridnode/<cid>, its CID or its name")
    try:
        return repo.database(ref)
    except UnknownDatabase:
        matches = [a for a, name, _ in repo.databases() if name == ref]
    if len(matches) > 1:
        raise InvalidRequest(
            f"{len(matches)} databases are named {ref!r}; give an address: " + ", ".join(matches)
        )
    if not matches and ref.startswith("/orbitdb/"):
        raise UnknownDatabase(
            f"{ref} is an OrbitDB database: it is read through a running node that follows it "
            "('gridnode start', then 'gridnode orbitdb follow')"
        )
    if not matches:
        raise UnknownDatabase(
            f"no database {ref!r} in {repo.data_dir} "
            "(give /gridnode/<cid> or a name; 'gridnode db list' shows them)"
        )
    return repo.database(matches[0])


def check_type(info: Mapping[str, Any], verb: str, types: Sequence[str]) -> None:
    """Refuse a verb that a database of this type does not have (``info`` as :func:`info`)."""
    if types and info["type"] not in types:
        raise WrongStoreType(
            f"'{verb}' works on {' and '.join(types)} databases; "
            f"{info['name']} ({info['address']}) is a {info['type']} database"
        )


def _check_type_of(database: StoredDatabase, verb: str, types: Sequence[str]) -> None:
    manifest = database.manifest
    check_type(
        {"type": manifest.store, "name": manifest.name, "address": database.address}, verb, types
    )


def describe(database: StoredDatabase) -> dict[str, Any]:
    """The manifest: ``{"address", "name", "type", "admins", "writers", "options"}``, and
    ``"readers"`` for a private database."""
    manifest = database.manifest
    out: dict[str, Any] = {
        "address": database.address,
        "name": manifest.name,
        "type": manifest.store,
        "admins": list(manifest.admins),
        "writers": list(manifest.writers),
        "options": dict(manifest.options),
    }
    if manifest.private:
        out["readers"] = list(manifest.readers)
    if manifest.encrypted:
        # Who holds the current key (public facts of the log), and whether this node does not.
        out["encrypted"] = True
        out["key_readers"] = database.readers()
        out["blind"] = database.blind
    return out


def info(database: StoredDatabase, *, digest: bool = True) -> dict[str, Any]:
    """The manifest, the number of entries, the heads, whether this node may write, and (unless
    ``digest`` is false: it reads the whole state) the state digest in hex."""
    out = describe(database)
    out["entries"] = len(database)
    out["heads"] = [str(h) for h in database.heads]
    out["may_write"] = database.may_write()
    out["private"] = database.repo.private(database.address)
    if digest:
        out["digest"] = database.digest().hex()
    return out


def listing(repo: Repo) -> list[dict[str, Any]]:
    """``{"address", "name", "type", "entries"}`` of every database, by name."""
    return [_row(repo, a, n, t, heads=False) for a, n, t in repo.databases()]


def status_of_databases(repo: Repo) -> list[dict[str, Any]]:
    """:func:`listing` with each database's ``head_count`` (``gridnode status``, metrics)."""
    return [_row(repo, a, n, t, heads=True) for a, n, t in repo.databases()]


def _row(repo: Repo, address: str, name: str, store: str, *, heads: bool) -> dict[str, Any]:
    """A database's row with its entries (and heads). One whose store does not open (options it
    cannot use, from an older node or a peer's manifest) is listed with zeros and its
    ``"error"``, so that one bad database does not fail every listing."""
    row: dict[str, Any] = {"address": address, "name": name, "type": store}
    try:
        database = repo.database(address)
        row["entries"] = len(database)
        if heads:
            row["head_count"] = len(database.heads)
    except GridnodeError as exc:
        log.warning("database %s cannot be opened: %s", address, describe_error(exc))
        row["entries"] = 0
        row["error"] = describe_error(exc)
        if heads:
            row["head_count"] = 0
    return row


# -- creating --------------------------------------------------------------------------------------


_CREATE_FIELDS: Final = (
    "name",
    "type",
    "writers",
    "public",
    "indexes",
    "index_by",
    "private",
    "readers",
    "encrypted",
    "admins",
    "pin_links",
)


@dataclass(frozen=True)
class CreateRequest:
    """What ``POST /db`` (and ``db create``, and an embedder's ``create_database``) asks for."""

    name: str
    type: str
    writers: list[str] = field(default_factory=list)
    public: bool = False
    indexes: list[str] = field(default_factory=list)
    index_by: str | None = None
    #: Private: only its admins, writers and ``readers`` (did:keys) may read it, and it is never
    #: announced on a gossip topic nor served by CID (docs/spec.md §10, "Private databases").
    private: bool = False
    readers: list[str] = field(default_factory=list)
    #: Encrypted: its store operations are ciphertext sealed with a key wrapped for this node, its
    #: writers and ``readers``; anyone may replicate it, blind (docs/spec.md, "Encrypted
    #: databases and blind replicas").
    encrypted: bool = False
    #: More admins besides this node (did:keys): a key kept offline can then grant, revoke and
    #: rotate if this node's key is lost (docs/keys.md).
    admins: list[str] = field(default_factory=list)
    #: Replicas fetch and pin the files its entries link to, each of at most this many bytes
    #: (the manifest option ``pinLinks``, gridnode/node/files.py); ``None``: they do not.
    pin_links: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> CreateRequest:
        if type(body) is not dict:
            raise InvalidRequest(
                "the body is {" + ", ".join(f'"{name}"' for name in _CREATE_FIELDS) + "}"
            )
        unknown = set(body) - set(_CREATE_FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown field {sorted(unknown)[0]!r}")
        name, store = body.get("name"), body.get("type")
        if type(name) is not str or not name:
            raise InvalidRequest("name must be a non-empty string")
        if type(store) is not str or store not in STORE_TYPES:
            raise InvalidRequest(
                f"type must be one of {', '.join(sorted(STORE_TYPES))}, not {store!r}"
            )
        writers = body.get("writers", [])
        indexes = body.get("indexes", [])
        readers = body.get("readers", [])
        admins = body.get("admins", [])
        for key, value in (
            ("writers", writers),
            ("indexes", indexes),
            ("readers", readers),
            ("admins", admins),
        ):
            if type(value) is not list or not all(type(v) is str for v in value):
                raise InvalidRequest(f"{key} must be a list of strings")
        public = body.get("public", False)
        if type(public) is not bool:
            raise InvalidRequest("public must be true or false")
        private = body.get("private", False)
        if type(private) is not bool:
            raise InvalidRequest("private must be true or false")
        encrypted = body.get("encrypted", False)
        if type(encrypted) is not bool:
            raise InvalidRequest("encrypted must be true or false")
        index_by = body.get("index_by")
        if index_by is not None and type(index_by) is not str:
            raise InvalidRequest("index_by must be a string")
        if (indexes or index_by is not None) and store != "documents":
            raise InvalidRequest("indexes and index_by apply to documents databases")
        pin_links = body.get("pin_links")
        if pin_links is not None and (type(pin_links) is not int or pin_links <= 0):
            raise InvalidRequest("pin_links must be a positive number of bytes (or null)")
        request = cls(
            name,
            store,
            writers,
            public,
            indexes,
            index_by,
            private,
            readers,
            encrypted,
            admins,
            pin_links,
        )
        request.check_readers()
        return request

    def check_readers(self) -> None:
        """:class:`InvalidRequest` unless the reader list fits: did:keys, on a private database
        that not anyone may write."""
        if self.readers and not (self.private or self.encrypted):
            raise InvalidRequest(
                "readers apply to private (private: true) or encrypted (encrypted: true) databases"
            )
        if self.encrypted and self.public:
            raise InvalidRequest(
                "an encrypted database cannot be public: a stranger holds no key to write with"
            )
        if self.private and self.public:
            raise InvalidRequest(
                "a private database cannot be public: anyone could write, and nobody could "
                "fetch a stranger's writes"
            )
        for role, dids in (("reader", self.readers), ("admin", self.admins)):
            for did in dids:
                try:
                    public_key_from_did(did)
                except InvalidDidKey as exc:
                    raise InvalidRequest(f"{role} {did!r}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def options(self) -> dict[str, Any]:
        """The manifest's options; :class:`InvalidRequest` if the store would not open with them
        (a database whose store cannot be opened would fail every listing that counts
        entries)."""
        options: dict[str, Any] = {}
        if self.index_by is not None:
            options["indexBy"] = self.index_by
        if self.indexes:
            options["indexes"] = list(dict.fromkeys(self.indexes))
        if self.pin_links is not None:
            options["pinLinks"] = {"maxBytes": self.pin_links}
        try:
            open_store(self.type, options)
        except GridnodeError as exc:
            raise InvalidRequest(describe_error(exc)) from None
        return options


def create(repo: Repo, request: CreateRequest) -> StoredDatabase:
    """Create the database ``request`` describes, with this node's key as admin (and the
    request's ``admins`` besides)."""
    request.check_readers()
    database = repo.create_database(
        request.name,
        request.type,
        admins=list(dict.fromkeys([repo.did, *request.admins])),
        writers=request.writers,
        public=request.public,
        options=request.options(),
        readers=request.readers if request.private else None,
        encrypted=request.encrypted,
        key_readers=request.readers if request.encrypted else (),
    )
    return database


def change_reader(database: StoredDatabase, action: str, did: str) -> dict[str, Any]:
    """``add``: wrap the encrypted database's current key for ``did``; ``remove``: rotate the
    key, leaving ``did`` out of later entries. This node must be an admin holding the key.
    ``{"address", "action", "did", "entry", "key_readers"}``."""
    if action not in ("add", "remove"):
        raise InvalidRequest(f"action is add or remove, not {action!r}")
    try:
        public_key_from_did(did)
    except InvalidDidKey as exc:
        raise InvalidRequest(f"reader {did!r}: {exc}") from None
    if not database.encrypted:
        raise InvalidRequest(
            f"{database.address} is not encrypted: its readers are its manifest's (db create "
            "--private --reader)"
        )
    entry = database.add_reader(did) if action == "add" else database.remove_reader(did)
    return {
        "address": database.address,
        "action": action,
        "did": did,
        "entry": str(entry.cid),
        "key_readers": database.readers(),
    }


def change_access(database: StoredDatabase, action: str, role: str, did: str) -> dict[str, Any]:
    """``grant`` or ``revoke`` the ``admin`` or ``writer`` role of ``did`` (spec §8: an admin
    grants; it revokes only a key of a lower rank, or its own role). This node must be an admin
    now. ``{"address", "action", "role", "did", "entry", "effective", "admins", "writers"}``."""
    if action not in ("grant", "revoke"):
        raise InvalidRequest(f"action is grant or revoke, not {action!r}")
    if role not in ("admin", "writer"):
        raise InvalidRequest(f"role is admin or writer, not {role!r}")
    try:
        public_key_from_did(did)
    except InvalidDidKey as exc:
        raise InvalidRequest(f"{role} {did!r}: {exc}") from None
    access = database.database.log.access
    if not access.may_administer(database.repo.did):
        raise NotAWriter(
            f"this node ({database.repo.did}) is not an admin of {database.manifest.name} "
            f"({database.address}): only an admin grants or revokes"
        )
    entry = database.change_access(action, role, did)
    access = database.database.log.access
    holds = did in (access.admins if role == "admin" else access.writers)
    return {
        "address": database.address,
        "action": action,
        "role": role,
        "did": did,
        "entry": str(entry.cid),
        # False: signed and in the log, but the access rules give it no effect (a revocation of
        # a key that ranks as high as this node, spec §8).
        "effective": holds == (action == "grant"),
        "admins": sorted(access.admins),
        "writers": sorted(access.writers),
    }


# -- writing ---------------------------------------------------------------------------------------


def prepare(
    database: StoredDatabase, payloads: Sequence[Any], labels: Sequence[str] | None = None
) -> list[Any]:
    """Check a write before anything is signed: this node must be a writer, and every op one of
    the database's type (:class:`~crdt.errors.InvalidOperation` with ``index`` names the first
    that is not; a documents or keyvalue database also takes the store-level meta op,
    ``{"op": "meta", "key", "value"}``, docs/spec.md). A set ``remove`` without ``tags`` gets the tags of every add of its value
    this replica holds (it must hold one)."""
    if not payloads:
        raise InvalidRequest("no ops to write")
    if not database.may_write():
        raise NotAWriter(
            f"this node ({database.repo.did}) is not a writer of {database.manifest.name} "
            f"({database.address}); an admin names writers with 'gridnode db create --writer DID'"
        )
    store = database.store
    check_op = type(store).check_op
    options = database.manifest.options
    prepared = []
    for index, payload in enumerate(payloads):
        label = labels[index] if labels is not None else f"ops[{index}]"
        if (
            database.manifest.store == "set"
            and type(payload) is dict
            and payload.get("op") == "remove"
            and "value" in payload
            and "tags" not in payload
        ):
            tags = store.tags_for(payload["value"])  # type: ignore[attr-defined]
            if not tags:
                raise NotFound(
                    f"{_dumps_or_repr(payload['value'])} is not a member of "
                    f"{database.manifest.name}"
                )
            payload = {**payload, "tags": tags}
        try:
            check_op(payload, options)
        except GridnodeError as exc:
            reason = describe_error(exc)
            raise InvalidOperation(f"{label}: {reason}", index=index, reason=reason) from None
        prepared.append(payload)
    return prepared


def write(
    database: StoredDatabase,
    payloads: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    meta: Mapping[str, str | int | bytes] | None = None,
) -> list[Entry]:
    """THE write: check the ops (:func:`prepare`), then sign and commit them in one transaction,
    durable when this returns. ``meta`` values are kept in the node's ``meta`` table in that
    same transaction (a seeder's position); with ``meta``, an empty write is allowed (it only
    records the position)."""
    prepared = prepare(database, payloads, labels) if payloads or meta is None else []
    return database.write_many(prepared, meta=meta)


@dataclass(frozen=True)
class WriteRequest:
    """One caller's write, for :func:`write_group`: the arguments of :func:`write`, the database
    named by ``ref`` (as :func:`resolve` takes it)."""

    ref: str
    payloads: Sequence[Any]
    labels: Sequence[str] | None = None
    meta: Mapping[str, str | int | bytes] | None = None
    #: Also return :func:`written` (what the API answers), read right after the commit.
    answer: bool = False


@dataclass
class Written:
    """What :func:`write_group` did for one request: its database, its entries, and
    :func:`written` if the request asked for its answer."""

    database: StoredDatabase
    entries: list[Entry]
    answer: dict[str, Any] | None = None


def write_group(repo: Repo, requests: Sequence[WriteRequest]) -> list[Written | Exception]:
    """Many callers' writes in ONE transaction, one commit (one fsync): group commit. Each is
    :func:`write`'s: resolved, checked (:func:`prepare`) and written in turn, so later ones see
    earlier ones. Returns, in order, each request's :class:`Written` or the error that refused
    it: a write refused by its checks (nothing of it written yet) fails alone, and the rest of
    the group commits. Should one fail *while* writing (past its checks) or the commit itself
    fail, the whole transaction is rolled back and every request is written again in a
    transaction of its own, so that again only the failing ones fail. Nothing is durable before
    this returns."""
    results: list[Written | Exception] = []
    touched: list[StoredDatabase] = []
    try:
        with repo.sql.transaction():
            for request in requests:
                try:
                    database = resolve(repo, request.ref)
                    payloads, meta = list(request.payloads), request.meta
                    prepared = (
                        prepare(database, payloads, request.labels)
                        if payloads or meta is None
                        else []
                    )
                except Exception as exc:  # refused before anything was written: this one only
                    results.append(exc)
                    continue
                touched.append(database)
                # An error here leaves the transaction: all of it is rolled back (below).
                results.append(Written(database, database.write_many(prepared, meta=meta)))
    except Exception as exc:
        for database in touched:
            database.reload()  # its caches saw writes the rollback undid
        if len(requests) == 1:
            return [exc]
        log.info("a group of %d writes failed (%s): writing each alone", len(requests), exc)
        return [write_group(repo, [request])[0] for request in requests]
    for request, result in zip(requests, results, strict=True):
        if request.answer and isinstance(result, Written):
            result.answer = written(result.database, result.entries)
    return results


def written(database: StoredDatabase, entries: Sequence[Entry]) -> dict[str, Any]:
    """What a write did: ``{"address", "written", "entries", "heads"}``, and a counter's new
    ``"value"``."""
    out: dict[str, Any] = {
        "address": database.address,
        "written": len(entries),
        "entries": [str(e.cid) for e in entries],
        "heads": [str(h) for h in database.heads],
    }
    if database.manifest.store == "counter":
        out["value"] = database.store.value  # type: ignore[attr-defined]
    return out


def _dumps_or_repr(value: Any) -> str:
    try:
        return jsonvalue.dumps(value)
    except GridnodeError:
        return repr(value)


# -- reads on one database: the registry -----------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A parameter of a read: its name and kind. ``str`` and ``int`` (non-negative) travel as
    they are, ``bool`` as true/false, ``json`` as JSON text (DAG-JSON forms for links and
    bytes). A parameter not given is left out of the call (the function's default applies)."""

    name: str
    kind: str
    help: str = ""


@dataclass(frozen=True)
class Read:
    """A read on one database: ``fn(database, **params)`` returns a JSON-ready dict, whose list
    values may be lazy iterators (a :class:`RepoEndpoint` streams them; the API sends them
    whole)."""

    name: str
    fn: Callable[..., dict[str, Any]]
    params: tuple[Param, ...] = ()
    #: The store types that have it; empty: every type.
    types: tuple[str, ...] = ()
    summary: str = ""
    #: For a read that passes over the whole database: the same read as steps (a generator that
    #: yields between bounded pieces of work and returns the answer), which a running node runs
    #: a slice at a time (:meth:`~gridnode.storage.worker.StorageWorker.run_steps`).
    steps: Callable[..., Generator[None, None, dict[str, Any]]] | None = None


#: name -> the read; ``GET /db/{db}/{name}`` serves each (gridnode/api/routes.py).
READS: dict[str, Read] = {}


def read(
    name: str,
    *params: Param,
    types: Sequence[str] = (),
    steps: Callable[..., Generator[None, None, dict[str, Any]]] | None = None,
) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register ``fn`` as the read ``name`` (see :class:`Read`); its docstring's first line is
    the summary the API's OpenAPI document and ``--help`` show."""

    def register(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        summary = (fn.__doc__ or "").strip().split("\n\n", 1)[0]
        summary = " ".join(summary.split())
        READS[name] = Read(name, fn, tuple(params), tuple(types), summary, steps)
        return fn

    return register


def _checked(name: str, database: StoredDatabase, params: Mapping[str, Any]) -> Read:
    found = READS.get(name)
    if found is None:
        raise NotFound(f"no read {name!r} (reads: {', '.join(sorted(READS))})")
    unknown = set(params) - {p.name for p in found.params}
    if unknown:
        raise InvalidRequest(f"'{name}' takes no parameter {sorted(unknown)[0]!r}")
    _check_type_of(database, name, found.types)
    return found


def run_read(name: str, database: StoredDatabase, params: Mapping[str, Any]) -> dict[str, Any]:
    """The read ``name`` on ``database``, its type checked first."""
    return _checked(name, database, params).fn(database, **params)


def read_steps(
    name: str, database: StoredDatabase, params: Mapping[str, Any]
) -> Generator[None, None, dict[str, Any]]:
    """:func:`run_read` as steps (the answer through :func:`materialize`), for a running node's
    :meth:`~gridnode.storage.worker.StorageWorker.run_steps`: a read over the whole database
    (its :attr:`Read.steps`) yields between pages, so the node's storage serves other calls
    meanwhile; any other read is one step."""
    found = _checked(name, database, params)
    if found.steps is None:
        answer = found.fn(database, **params)
    else:
        answer = yield from found.steps(database, **params)
    return dict(materialize(answer))


def run_to_end(steps: Generator[None, None, T]) -> T:
    """Run steps to their end in one go (where no one else waits: the offline CLI)."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            value: T = stop.value
            return value


BOUNDS: Final = ("eq", "gt", "gte", "lt", "lte")


@read(
    "get",
    Param("key", "str", "a keyvalue key"),
    Param("id", "json", "a document id"),
    types=("keyvalue", "documents"),
)
def get_value(database: StoredDatabase, key: Any = None, id: Any = UNSET) -> dict[str, Any]:
    """A keyvalue key's value, or a document by id: ``{"key", "value"}``."""
    if (key is None) == (id is UNSET):
        raise InvalidRequest("give key=<string> or id=<JSON string or integer>")
    if key is None:
        key = id
    store: Any = database.store
    if database.manifest.store == "keyvalue":
        if type(key) is not str:
            raise InvalidRequest("a keyvalue key is a string")
        if key not in store:
            raise NotFound(f"no key {key!r} in {database.manifest.name}")
        return {"key": key, "value": store.get(key)}
    if type(key) not in (str, int):
        raise InvalidRequest("a document id is a string or an integer")
    value = store.get(key)
    if value is None:
        raise NotFound(f"no document {key!r} in {database.manifest.name}")
    return {"key": key, "value": value}


@read(
    "query",
    Param("field", "str", "the indexed field (default: the index_by field)"),
    *(Param(bound, "json", f"{bound} bound, as JSON") for bound in BOUNDS),
    Param("limit", "int", "at most this many documents"),
    Param("reverse", "bool", "descending order"),
    types=("documents",),
)
def query(
    database: StoredDatabase,
    field: str | None = None,
    limit: int | None = None,
    reverse: bool = False,
    **bounds: Any,
) -> dict[str, Any]:
    """The documents whose indexed field matches, in its order: ``{"index_by", "documents"}``."""
    store: Any = database.store
    given = {name: bounds.get(name, UNSET) for name in BOUNDS}
    docs = store.query(field or store.index_by, limit=limit, reverse=reverse, **given)
    return {"index_by": store.index_by, "documents": docs}


@read("log", Param("limit", "int", "at most this many entries"))
def log_entries(database: StoredDatabase, limit: int | None = None) -> dict[str, Any]:
    """The entries in their total order: ``{"address", "entries"}``, each ``{"clock", "cid",
    "author", "next", "payload"}`` (an encrypted database's payloads decrypted where this node
    holds the key, else as the envelope stands)."""

    def entries() -> Iterator[dict[str, Any]]:
        for entry in itertools.islice(database.entries(), limit):
            yield {
                "clock": entry.clock,
                "cid": str(entry.cid),
                "author": entry.author,
                "next": [str(c) for c in entry.next],
                "payload": database.plaintext(entry),
            }

    return {"address": database.address, "entries": entries()}


@read(
    "iter",
    Param("limit", "int", "at most this many items"),
    Param("reverse", "bool", "newest event (last member) first"),
    types=("events", "set"),
)
def items(
    database: StoredDatabase, limit: int | None = None, reverse: bool = False
) -> dict[str, Any]:
    """Events ``{"cid", "value"}`` in the log's order, or set members ``{"value"}``:
    ``{"address", "items"}``."""
    store: Any = database.store
    if database.manifest.store == "events":
        found = [
            {"cid": str(cid), "value": value}
            for cid, value in store.iter(forward=not reverse, limit=limit)
        ]
    else:
        members = store.values()
        if reverse:
            members.reverse()
        members = members[:limit] if limit is not None else members
        found = [{"value": value} for value in members]
    return {"address": database.address, "items": found}


@read("value", types=("counter",))
def counter_value(database: StoredDatabase) -> dict[str, Any]:
    """A counter's value: ``{"address", "value"}``."""
    return {"address": database.address, "value": database.store.value}  # type: ignore[attr-defined]


@read("catalog", types=("keyvalue",))
def catalog(database: StoredDatabase) -> dict[str, Any]:
    """A catalog's listing (docs/catalogs.md): ``{"address", "name", "is_catalog", "databases",
    "peers", "refused", "files", "orbitdb"}``, each database (and OrbitDB database) ``{"address", "name", "description"}``, each
    file ``{"cid", "name", "description"}``."""
    view = parse_catalog(database.store.items())  # type: ignore[attr-defined]
    return {
        "address": database.address,
        "name": view.name,
        "is_catalog": view.is_catalog,
        "databases": [asdict(item) for item in view.databases],
        "peers": list(view.peers),
        "refused": [{"key": key, "reason": reason} for key, reason in view.refused],
        "files": [asdict(item) for item in view.files],
        "orbitdb": [asdict(item) for item in view.orbitdb],
    }


def verify_steps(database: StoredDatabase) -> Generator[None, None, dict[str, Any]]:
    """:func:`verify` as steps: it yields after each block (a page of blocks is read at a
    time), so a running node serves other calls between slices. A block joined meanwhile may be
    checked or not (as with a pass started a moment later or earlier)."""
    damaged = []
    blocks = 0
    for cid, block in database.stored_blocks():
        yield
        blocks += 1
        if block is None:
            damaged.append({"cid": str(cid), "reason": "missing from the node's SQLite file"})
            continue
        try:
            if cid == database.manifest.cid:
                decode_manifest(cid, block)  # the hash, then the manifest's structure
            else:
                decode_entry(cid, block)  # size, hash, DAG-CBOR, structure, signature
        except GridnodeError as exc:
            damaged.append(
                {"cid": str(cid), "reason": f"{type(exc).__name__}: {describe_error(exc)}"}
            )
    return {"address": database.address, "blocks": blocks, "damaged": damaged}


@read("verify", steps=verify_steps)
def verify(database: StoredDatabase) -> dict[str, Any]:
    """Re-hash every stored block of the database (its manifest and each applied entry) and
    check every entry's structure and signature: ``{"address", "blocks", "damaged"}``, each
    damaged block ``{"cid", "reason"}``."""
    return run_to_end(verify_steps(database))


def materialize(value: Any) -> Any:
    """``value`` with every lazy iterator in it turned into a list (to send it whole)."""
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, Iterator):
        return [materialize(v) for v in value]
    return value


# -- CARs ------------------------------------------------------------------------------------------


def export_car(database: StoredDatabase) -> tuple[list[bytes], int]:
    """A CAR v1 of the database (roots: the manifest, then the heads) as parts to send, and its
    block count; every block re-hashed (:meth:`~gridnode.repo.StoredDatabase.car_parts`).
    Taken in one go so that it is one consistent state."""
    parts = list(database.car_parts())
    return parts, len(parts) - 1


def import_car(repo: Repo, data: bytes | memoryview) -> ImportReport:
    """Import a CAR (``gridnode export``'s, or a peer's): the database is added if new, every
    entry verified and joined. Refused at the storage bound (``max_storage``)."""
    repo.quota.check("import a CAR")
    try:
        return repo.import_car(data)
    except InvalidCar as exc:
        raise InvalidRequest(f"invalid CAR: {describe_error(exc)}") from None


def import_report(report: ImportReport) -> dict[str, Any]:
    """What an import (or a restore) did, JSON-ready."""
    return {
        "address": report.address,
        "applied": report.applied,
        "duplicates": report.duplicates,
        "pending": report.pending,
        "rejected": [{"cid": c, "reason": r} for c, r in report.rejected],
    }


# -- the CLI's endpoint when no node runs ----------------------------------------------------------


class RepoEndpoint:
    """The operations run directly on a data directory no node runs on (the CLI's endpoint when
    no node runs; :class:`gridnode.api.client.ApiClient` is the one when a node does). Both have
    the same methods and return the same values, so what the CLI prints does not depend on
    whether a node runs."""

    running: Final = False

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def database(self, ref: str, *, digest: bool = False) -> dict[str, Any]:
        return info(resolve(self.repo, ref), digest=digest)

    def reader(self, ref: str, action: str, did: str) -> dict[str, Any]:
        return change_reader(resolve(self.repo, ref), action, did)

    def access(self, ref: str, action: str, role: str, did: str) -> dict[str, Any]:
        return change_access(resolve(self.repo, ref), action, role, did)

    def databases(self) -> list[dict[str, Any]]:
        return listing(self.repo)

    def create(self, request: CreateRequest) -> dict[str, Any]:
        return describe(create(self.repo, request))

    def write(
        self, ref: str, payloads: Sequence[Any], labels: Sequence[str] | None = None
    ) -> dict[str, Any]:
        database = resolve(self.repo, ref)
        return written(database, write(database, payloads, labels))

    def read(self, name: str, ref: str, **params: Any) -> dict[str, Any]:
        """The registered read ``name`` (:data:`READS`) on the database ``ref``."""
        return run_read(name, resolve(self.repo, ref), params)

    def export(self, ref: str, path: Path) -> dict[str, Any]:
        database = resolve(self.repo, ref)
        count = database.export_car(path)
        return {"address": database.address, "file": str(path), "blocks": count}

    def import_car(self, data: bytes | memoryview) -> dict[str, Any]:
        return import_report(import_car(self.repo, data))

    # -- the file store (gridnode/files/ops.py) ------------------------------------------------

    def files_put(self, blocks: Sequence[tuple[CID, bytes]], lease: int | None) -> dict[str, Any]:
        # The CLI's own importer made these blocks, in this process, from their hashes: they
        # are not hashed a second time (the running node's API hashes what it is sent).
        return files_ops.put(self.repo, blocks, lease, verified=True)

    def files_block(self, cid: CID, *, peers: bool = False) -> bytes:
        # Offline there are no peers to ask: the data directory's file store only.
        return files_ops.block(self.repo, cid)

    def files_begin(self) -> int:
        return int(files_ops.begin(self.repo)["lease"])

    def files_end(self, lease: int) -> None:
        files_ops.end(self.repo, lease)

    def files_pin(self, cid: CID, name: str | None, recursive: bool) -> dict[str, Any]:
        return files_ops.pin(self.repo, cid, name, recursive)

    def files_unpin(self, name_or_cid: str) -> dict[str, Any]:
        return files_ops.unpin(self.repo, name_or_cid)

    def files_pins(self) -> list[dict[str, Any]]:
        return files_ops.pins(self.repo)

    def files_gc(self) -> dict[str, Any]:
        return files_ops.gc(self.repo)

    def files_usage(self) -> dict[str, Any]:
        return files_ops.usage(self.repo)

    def status(self) -> dict[str, Any]:
        return {
            "running": False,
            "data_dir": str(self.repo.data_dir),
            "identity": self.repo.did,
            "peer_id": self._peer_id(),
            "databases": status_of_databases(self.repo),
            "storage": self.repo.quota.status(),
        }

    def peers(self) -> dict[str, Any]:
        return {
            "running": False,
            "identity": self.repo.did,
            "peer_id": self._peer_id(),
            "peers": [],
        }

    def _peer_id(self) -> str:
        # Imported here: the network floor (libp2p) is heavy, and only these two verbs need it.
        from gridnode.net.identity import peer_id_from_seed

        return peer_id_from_seed(self.repo.keypair.seed)
