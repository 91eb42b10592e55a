"""Signed snapshots: a database's materialised state as IPLD blocks, signed, to serve at once.

A fresh replica that folds a long history before it can answer a read waits minutes; one that
starts from a signed snapshot of the state answers at once and verifies the history behind it
(Bitcoin Core's assumeUTXO, geth's snap sync). This module is the snapshot's format, pure:
build one from a :class:`~crdt.database.Database`, decode and check its blocks, and assemble the
store they describe. Who may sign, when a snapshot is too young or too old, and the comparison
with the verified history are decided here too, with the time passed in; fetching, storing and
serving the blocks are the node's (``gridnode/node/snapshots.py``). docs/spec.md §16 gives the
bytes.

**Blocks.** A snapshot is one signed *root* and *chunks*, each a DAG-CBOR block addressed by its
CIDv1 (sha2-256):

- a chunk is ``{"rows": [[table, key, value], ...]}``: rows of the store's tables (``table`` a
  string such as ``"keyvalue.keys"``, ``key`` bytes, ``value`` the IPLD value the store keeps),
  in ascending ``(table, key)`` order across all chunks, each chunk at most
  :data:`CHUNK_BYTES` of rows (one row alone may exceed it);
- the root is ``{"snapshot": body, "signature": <64 bytes>}``, ``signature`` being ed25519 by
  ``body["signer"]`` over :data:`DOMAIN` followed by the DAG-CBOR of ``body``. The body lists the
  chunks' CIDs in order: a hash list, i.e. a Merkle tree of two levels, so chunks can be
  fetched from several peers at once and each checked on arrival against the signed root.

**What the body says.** The database (its manifest's CID), the store type, the heads the state
covers, the log's entry count, the count of invalid entries, the access state, the range sums
of the log (count and fingerprint over every item, what reconciliation compares), the store's
digest, the *state digest* (exactly :meth:`crdt.database.Database.digest` of a replica holding
those heads), the row count, the chunks, the creation time (whole seconds) and the signer.

**What is checked.** On decoding the root: the CID, strict DAG-CBOR, every field's type and
bound, the signature. On each chunk: its CID is the one the root lists at its place, strict
DAG-CBOR, rows well formed and strictly ascending. On assembly: every row's table is one of the
store type's tables, rows ascend across chunks, the count matches, and the store folded from
the rows has the digest the root signs, which with the signed heads, access and invalid count
gives the signed state digest. What is *not* checked here, and cannot be from the snapshot
alone: that folding the history behind the heads gives that state. The node checks that when
the history has arrived, and drops the snapshot (never the history) if it does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from crdt.database import Database
from crdt.errors import (
    DecodeError,
    GridnodeError,
    InvalidSnapshot,
    UntrustedSnapshot,
)
from crdt.identity import Keypair, verify
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.manifest import Manifest
from crdt.rangesums import TOP, LogItems, fingerprint_of
from crdt.space import MemorySpace, Space, Table
from crdt.stores import STORE_TYPES, Store, open_store

__all__ = [
    "CHUNK_BYTES",
    "DOMAIN",
    "MAX_CHUNKS",
    "MAX_ROOT_BYTES",
    "SNAPSHOT_VERSION",
    "BuiltSnapshot",
    "Capture",
    "SnapshotHeader",
    "assemble_store",
    "build_from",
    "build_snapshot",
    "capture",
    "check_store_digest",
    "check_trust",
    "decode_chunk",
    "decode_root",
    "rows_digest",
    "state_digest",
    "store_tables",
]

SNAPSHOT_VERSION: Final = 1
#: What a snapshot's signature covers before the body: never valid as another message's bytes.
DOMAIN: Final = b"gridnode snapshot v1\n"
#: Rows are cut into chunks of about this many bytes (a bitswap-sized block).
CHUNK_BYTES: Final = 256 * 1024
#: The largest chunk block accepted: one oversized row (a store value may be up to an entry's
#: 1 MiB payload) plus its neighbours.
MAX_CHUNK_BYTES: Final = 4 * 1024 * 1024
#: The largest root block accepted, and so the most chunks one snapshot lists (~40 B each).
MAX_ROOT_BYTES: Final = 2 * 1024 * 1024
MAX_CHUNKS: Final = 40_000
#: Most heads a snapshot may name (as many as a log keeps for its announcements).
MAX_HEADS: Final = 1024

_BODY_KEYS: Final = frozenset(
    {
        "v",
        "database",
        "store",
        "heads",
        "entries",
        "invalid",
        "access",
        "sums",
        "store_digest",
        "digest",
        "rows",
        "chunks",
        "created",
        "signer",
    }
)


# -- the tables of a store -------------------------------------------------------------------------


class _NamingSpace:
    """A space that remembers which tables are asked for (to learn a store type's tables)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._space = MemorySpace()

    def table(self, name: str) -> Table:
        self.names.append(name)
        return self._space.table(name)


def store_tables(store_type: str, options: Mapping[str, Any] | None = None) -> list[str]:
    """The names of the tables a store of this type (with these manifest options) keeps its
    state in, sorted: the rows a snapshot carries."""
    naming = _NamingSpace()
    open_store(store_type, options, naming)
    return sorted(set(naming.names))


def _rows(space: Space, tables: Sequence[str]) -> Iterator[tuple[str, bytes, Any]]:
    for name in tables:
        for key, value in space.table(name).range():
            yield name, key, value


def rows_digest(store: Store, store_type: str, options: Mapping[str, Any] | None = None) -> bytes:
    """SHA-256 over every row of the store's tables, values included, in a snapshot's order.

    The state digest (docs/spec.md §17) hashes each row's deciding entry, not its value: equal
    for two replicas that applied the same entries, but blind to a snapshot whose rows carry the
    right entry with another value. A replica therefore holds the history's rows at the
    snapshot's heads to this too, against the rows the signed chunks gave it."""
    hasher = hashlib.sha256()
    for name, key, value in _rows(store.space, store_tables(store_type, options)):
        hasher.update(encode([name, key, value]))
    return hasher.digest()


def state_digest(heads: Iterable[CID], access: Any, invalid: int, store_digest: bytes) -> bytes:
    """The state digest from its parts, as :meth:`crdt.database.Database.digest` makes it."""
    summary = {"heads": list(heads), "access": access, "invalid": invalid, "store": store_digest}
    return hashlib.sha256(encode(summary)).digest()


# -- building --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltSnapshot:
    """A snapshot made by :func:`build_snapshot`: its root and chunk blocks."""

    root_cid: CID
    root: bytes
    header: SnapshotHeader
    #: ``(cid, block)`` of each chunk, in order.
    chunks: tuple[tuple[CID, bytes], ...]


@dataclass(frozen=True)
class Capture:
    """What a snapshot is made of, copied out of a database in one state (:func:`capture`): the
    cheap part, done while the database is held still; :func:`build_from` does the rest."""

    manifest: Manifest
    rows: list[tuple[str, bytes, Any]]
    heads: list[CID]
    entries: int
    invalid: int
    access: Any
    sums: tuple[int, bytes]


def capture(database: Database) -> Capture:
    """Copy the store's rows and the log's facts (heads, counts, access, range sums): O(rows)
    reads and nothing else."""
    manifest = database.manifest
    log = database.log
    count, total = LogItems(log).aggregate(b"", TOP)
    return Capture(
        manifest=manifest,
        rows=list(_rows(database.space, store_tables(manifest.store, manifest.options))),
        heads=sorted(log.heads, key=lambda c: c.bytes),
        entries=len(log),
        invalid=log.invalid_count,
        access=log.access.describe(),
        sums=(count, fingerprint_of(count, total)),
    )


def _array_head(n: int) -> bytes:
    """The DAG-CBOR head of an array of ``n`` items (major type 4, shortest form)."""
    if n < 24:
        return bytes((0x80 | n,))
    for extra, code in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if n < 1 << (8 * extra):
            return bytes((0x80 | code,)) + n.to_bytes(extra, "big")
    raise InvalidSnapshot("too many rows in one chunk")  # pragma: no cover


#: ``{"rows": `` as DAG-CBOR: a map of one entry, the text key "rows".
_CHUNK_PREFIX: Final = b"\xa1\x64rows"


def build_from(
    captured: Capture, keypair: Keypair, *, created: int, chunk_bytes: int = CHUNK_BYTES
) -> BuiltSnapshot:
    """The signed snapshot of a :class:`Capture` (``created``: whole seconds since the epoch, by
    the caller's clock). Each row is encoded once: a chunk's block is its rows' encodings after
    the array's head, which is exactly the DAG-CBOR of ``{"rows": [...]}``. The store digest is
    that of the store the rows make (as a follower assembles it), so the database need not be
    held meanwhile."""
    manifest = captured.manifest
    chunks: list[tuple[CID, bytes]] = []
    batch: list[bytes] = []
    size = 0

    def cut() -> None:
        nonlocal batch, size
        block = _CHUNK_PREFIX + _array_head(len(batch)) + b"".join(batch)
        chunks.append((CID.for_block(block), block))
        batch, size = [], 0

    for name, key, value in captured.rows:
        encoded = encode([name, key, value])
        batch.append(encoded)
        size += len(encoded)
        if size >= chunk_bytes:
            cut()
    if batch or not chunks:
        cut()
    if len(chunks) > MAX_CHUNKS:
        raise InvalidSnapshot(f"{len(chunks)} chunks exceed {MAX_CHUNKS}: build with larger chunks")
    space = MemorySpace()
    for name, key, value in captured.rows:
        space.table(name).put(key, value)
    store_digest = open_store(manifest.store, manifest.options, space).recompute_digest()
    body: dict[str, Any] = {
        "v": SNAPSHOT_VERSION,
        "database": manifest.cid,
        "store": manifest.store,
        "heads": captured.heads,
        "entries": captured.entries,
        "invalid": captured.invalid,
        "access": captured.access,
        "sums": list(captured.sums),
        "store_digest": store_digest,
        "digest": state_digest(captured.heads, captured.access, captured.invalid, store_digest),
        "rows": len(captured.rows),
        "chunks": [cid for cid, _ in chunks],
        "created": int(created),
        "signer": keypair.did,
    }
    signature = keypair.sign(DOMAIN + encode(body))
    root = encode({"snapshot": body, "signature": signature})
    root_cid = CID.for_block(root)
    return BuiltSnapshot(root_cid, root, decode_root(root_cid, root), tuple(chunks))


def build_snapshot(
    database: Database, keypair: Keypair, *, created: int, chunk_bytes: int = CHUNK_BYTES
) -> BuiltSnapshot:
    """A snapshot of ``database``'s state now, signed by ``keypair``: :func:`capture` then
    :func:`build_from`."""
    return build_from(capture(database), keypair, created=created, chunk_bytes=chunk_bytes)


# -- checking --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotHeader:
    """A snapshot's signed root, decoded and its signature verified (:func:`decode_root`)."""

    cid: CID
    database: CID
    store: str
    heads: tuple[CID, ...]
    entries: int
    invalid: int
    access: Any
    sums: tuple[int, bytes]
    store_digest: bytes
    digest: bytes
    rows: int
    chunks: tuple[CID, ...]
    created: int
    signer: str

    def covers(self, heads: Collection[CID]) -> bool:
        """Whether the snapshot's heads are exactly ``heads``."""
        return set(self.heads) == set(heads)


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidSnapshot(f"snapshot root: {what}")


def _uint(value: Any) -> bool:
    return type(value) is int and 0 <= value < (1 << 63)


def decode_root(cid: CID, block: bytes) -> SnapshotHeader:
    """Check a snapshot root against its CID, decode it strictly, check every field and the
    signature. Raises :class:`~crdt.errors.InvalidSnapshot` (the root's fault) naming what is
    wrong; who signed is judged by :func:`check_trust`."""
    if len(block) > MAX_ROOT_BYTES:
        raise InvalidSnapshot(f"snapshot root of {len(block)} bytes exceeds {MAX_ROOT_BYTES}")
    if not cid.matches(block):
        raise InvalidSnapshot(f"snapshot root does not hash to {cid}")
    try:
        top = decode(block)
    except DecodeError as exc:
        raise InvalidSnapshot(f"snapshot root is not strict DAG-CBOR: {exc}") from None
    _need(type(top) is dict and set(top) == {"snapshot", "signature"}, "not a snapshot root")
    body, signature = top["snapshot"], top["signature"]
    _need(type(body) is dict and set(body) == _BODY_KEYS, "its body has other fields")
    _need(type(signature) is bytes and len(signature) == 64, "a signature has 64 bytes")
    _need(body["v"] == SNAPSHOT_VERSION and type(body["v"]) is int, "unknown version")
    _need(type(body["database"]) is CID, "database is a link")
    _need(type(body["store"]) is str and body["store"] in STORE_TYPES, "unknown store type")
    heads = body["heads"]
    _need(
        type(heads) is list
        and 0 < len(heads) <= MAX_HEADS
        and all(type(h) is CID for h in heads)
        and [h.bytes for h in heads] == sorted({h.bytes for h in heads}),
        "heads are 1 to 1024 links, ascending by binary CID",
    )
    for name in ("entries", "invalid", "rows", "created"):
        _need(_uint(body[name]), f"{name} is a non-negative integer")
    _need(body["entries"] >= len(heads), "fewer entries than heads")
    sums = body["sums"]
    _need(
        type(sums) is list
        and len(sums) == 2
        and _uint(sums[0])
        and type(sums[1]) is bytes
        and len(sums[1]) == 16,
        "sums is [count, 16-byte fingerprint]",
    )
    for name in ("store_digest", "digest"):
        _need(type(body[name]) is bytes and len(body[name]) == 32, f"{name} has 32 bytes")
    chunks = body["chunks"]
    _need(
        type(chunks) is list
        and 0 < len(chunks) <= MAX_CHUNKS
        and all(type(c) is CID for c in chunks),
        f"chunks are 1 to {MAX_CHUNKS} links",
    )
    _need(type(body["access"]) is dict, "access is a map")
    _need(type(body["signer"]) is str, "signer is a did:key")
    try:
        verify(body["signer"], DOMAIN + encode(body), signature)
    except GridnodeError as exc:
        raise InvalidSnapshot(f"snapshot signature by {body['signer']}: {exc}") from None
    expected = state_digest(heads, body["access"], body["invalid"], body["store_digest"])
    _need(expected == body["digest"], "the state digest is not that of its parts")
    return SnapshotHeader(
        cid=cid,
        database=body["database"],
        store=body["store"],
        heads=tuple(heads),
        entries=body["entries"],
        invalid=body["invalid"],
        access=body["access"],
        sums=(sums[0], sums[1]),
        store_digest=body["store_digest"],
        digest=body["digest"],
        rows=body["rows"],
        chunks=tuple(chunks),
        created=body["created"],
        signer=body["signer"],
    )


def check_trust(
    header: SnapshotHeader,
    manifest: Manifest,
    *,
    trusted: Collection[str] = (),
    now: float,
    min_age: float = 0.0,
    max_age: float | None = None,
) -> None:
    """Whether a replica of ``manifest``'s database may serve from this snapshot: it is of that
    database and store; its signer is one of the manifest's admins or of ``trusted`` (the
    operator's designated keys); it is at least ``min_age`` seconds old (time for others to
    find a bad one) and at most ``max_age`` (a stale snapshot, far behind, saves little and hides
    much). ``now``: seconds since the epoch. Raises :class:`~crdt.errors.UntrustedSnapshot`."""
    if header.database != manifest.cid:
        raise UntrustedSnapshot(f"snapshot {header.cid} is of another database")
    if header.store != manifest.store:
        raise UntrustedSnapshot(f"snapshot {header.cid} is of a {header.store} store")
    signers = set(manifest.admins) | set(trusted)
    if header.signer not in signers:
        raise UntrustedSnapshot(
            f"snapshot {header.cid} is signed by {header.signer}, not an admin or a trusted signer"
        )
    age = now - header.created
    if age < min_age:
        raise UntrustedSnapshot(
            f"snapshot {header.cid} is {max(age, 0):.0f} s old, younger than the minimum {min_age:.0f} s"
        )
    if max_age is not None and age > max_age:
        raise UntrustedSnapshot(
            f"snapshot {header.cid} is {age:.0f} s old, older than the maximum {max_age:.0f} s"
        )


def decode_chunk(header: SnapshotHeader, index: int, block: bytes) -> list[list[Any]]:
    """The rows of chunk ``index`` of the snapshot, checked: its hash is the CID the signed root
    lists there, strict DAG-CBOR, rows ``[table, key, value]`` strictly ascending."""
    if not 0 <= index < len(header.chunks):
        raise InvalidSnapshot(f"snapshot {header.cid} has no chunk {index}")
    cid = header.chunks[index]
    if len(block) > MAX_CHUNK_BYTES:
        raise InvalidSnapshot(f"chunk {cid} of {len(block)} bytes exceeds {MAX_CHUNK_BYTES}")
    if not cid.matches(block):
        raise InvalidSnapshot(f"chunk {index} does not hash to {cid}, which the root signs")
    try:
        top = decode(block)
    except DecodeError as exc:
        raise InvalidSnapshot(f"chunk {cid} is not strict DAG-CBOR: {exc}") from None
    if type(top) is not dict or set(top) != {"rows"} or type(top["rows"]) is not list:
        raise InvalidSnapshot(f"chunk {cid} is not {{'rows': [...]}}")
    rows: list[list[Any]] = top["rows"]
    previous: tuple[str, bytes] | None = None
    for row in rows:
        if (
            type(row) is not list
            or len(row) != 3
            or type(row[0]) is not str
            or type(row[1]) is not bytes
            or row[2] is None
        ):
            raise InvalidSnapshot(f"chunk {cid}: a row is [table, key bytes, value]")
        place = (row[0], row[1])
        if previous is not None and place <= previous:
            raise InvalidSnapshot(f"chunk {cid}: rows are not strictly ascending")
        previous = place
    return rows


def assemble_store(
    header: SnapshotHeader,
    manifest: Manifest,
    chunks: Iterable[Sequence[Sequence[Any]]],
    *,
    check_digest: bool = True,
) -> Store:
    """The store the snapshot describes, in memory, from its chunks' rows in order (each from
    :func:`decode_chunk`): every table one of the store type's, rows ascending across chunks,
    the count as signed, and (unless ``check_digest`` is false: then call
    :func:`check_store_digest` before trusting the state) the store's digest the one signed, so
    the signed state digest is this store's with the signed heads, access and invalid count.
    Raises :class:`~crdt.errors.InvalidSnapshot`."""
    allowed = set(store_tables(manifest.store, manifest.options))
    space = MemorySpace()
    previous: tuple[str, bytes] | None = None
    count = 0
    tables: dict[str, Table] = {}
    for rows in chunks:
        if rows:
            first = (rows[0][0], rows[0][1])
            if previous is not None and first <= previous:
                raise InvalidSnapshot(f"snapshot {header.cid}: chunks are not in row order")
            previous = (rows[-1][0], rows[-1][1])
        for name, key, value in rows:
            table = tables.get(name)
            if table is None:
                if name not in allowed:
                    raise InvalidSnapshot(
                        f"snapshot {header.cid}: {name!r} is no table of a {manifest.store} store"
                    )
                table = tables[name] = space.table(name)
            table.put(key, value)
        count += len(rows)
    if count != header.rows:
        raise InvalidSnapshot(f"snapshot {header.cid}: {count} rows, the root signs {header.rows}")
    try:
        store = open_store(manifest.store, manifest.options, space)
    except GridnodeError as exc:
        raise InvalidSnapshot(f"snapshot {header.cid}: its rows are no store: {exc}") from None
    if check_digest:
        check_store_digest(header, store)
    return store


def check_store_digest(header: SnapshotHeader, store: Store) -> None:
    """Whether the store assembled from the snapshot's rows has the store digest its root signs
    (O(rows): a whole-state encode, which is why a replica may serve first and check after).
    Raises :class:`~crdt.errors.InvalidSnapshot`."""
    try:
        # Recomputed from the rows: the kept state sum (a row of the store's meta table, docs/
        # spec.md §17) travels among the rows, and is the signer's claim until checked.
        digest = store.recompute_digest()
        kept = store.digest()
    except GridnodeError as exc:
        raise InvalidSnapshot(f"snapshot {header.cid}: its rows are no store: {exc}") from None
    if digest != header.store_digest or kept != digest:
        raise InvalidSnapshot(
            f"snapshot {header.cid}: its rows' digest is not the store digest the root signs"
        )
