"""What every store type shares: the :class:`Store` interface (state kept in the tables of a
:class:`~crdt.space.Space`) and a total order over IPLD values.

A store is an op-based CRDT folded from the entries of one database's log. The log hands each
verified, authorised entry to :meth:`Store.apply` once, in *some* causal order, which is not always
the total order ``(clock, binary CID)``: an entry that arrives late may sort before entries already
applied. So every store is written to reach the same state from the same set of entries in any
order at all, and to treat a repeated entry as a no-op.

**Storage.** A store keeps all of its state in tables of a :class:`~crdt.space.Space`, named
``"<type_name>.<part>"`` (``"documents.docs"``, ...), and nothing in Python attributes but handles
to those tables: a store constructed over a space an earlier instance wrote to simply continues
(no scan, no replay), and a persistent space rolled back with its transaction leaves no stale
copy behind. A space holds one database's state: reopen it with the same manifest options. Every
value put is plain IPLD data (so a persistent space can store it as DAG-CBOR), never mutated after
the put, and read back as a fresh object in a persistent space; counts that ``__len__`` answers
are kept in a ``"<type_name>.meta"`` table, since counting a table's rows may be O(n).

**The store-level meta op.** The documents and keyvalue stores (those with :attr:`Store.takes_meta`)
also take ``{"op": "meta", "key": <non-empty str>, "value": <any IPLD value>}``: a fact about the
database itself (the seeder's ``"postgres.table"`` schema), signed and replicated like any entry
but never a document or a key of the data. Per meta key, the op of the entry greatest in the
log's total order ``(clock, binary CID)`` wins, whatever order entries arrive in; read it with
:meth:`Store.meta`. Winners are kept in ``"<type_name>.metaop"``: the key's UTF-8 bytes ->
``[clock, binary CID, value]``. They decide future merges, so :meth:`Store.state` holds them:
a store with meta keys gives ``{"state": <its data's state>, "meta": <meta_state>}``, one with
none the data's state alone.

**The state digest** (docs/spec.md §17) is kept as the state changes, never computed from the
whole state when asked: every store describes its state as a set of *rows* ``(part, key,
fingerprint)`` (a table's part name, a row key, bytes standing for the row's value: often the
winning entry's binary CID, which fixes the value), and keeps in ``"<type_name>.meta"`` under
``b"statesum"`` the sum modulo ``2**2048`` of :func:`row_hash` over them. Each ``apply`` that adds,
changes or removes a row adds or subtracts its hashes in the same call (so in the same
transaction); :meth:`Store.digest` reads one row. :meth:`Store.recompute_sum` walks the rows
(:meth:`Store.state_rows`, a table range at a time, bounded memory) and must always agree.
"""

from __future__ import annotations

import hashlib
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from crdt.entry import Entry
from crdt.errors import InvalidOperation, InvalidQuery
from crdt.ipld.cid import CID
from crdt.sortedkeys import SortedKeys
from crdt.space import MemorySpace, Space, Table

__all__ = [
    "META_OP",
    "SUM_BYTES",
    "SortedKeys",
    "Store",
    "add_to_count",
    "read_count",
    "read_int",
    "row_hash",
    "storable_int",
    "value_key",
]

#: The integers DAG-CBOR can hold: anything beyond is stored as decimal text (see storable_int).
_MIN_INT: Final = -(2**64)
_MAX_INT: Final = 2**64 - 1

#: The ``"op"`` of the store-level meta op.
META_OP: Final = "meta"

#: Bytes of the state sum (docs/spec.md §17): row hashes are added modulo ``2**2048``, wide
#: enough that no one finds a set of rows with a chosen sum (docs/decisions.md).
SUM_BYTES: Final = 256
_SUM_MASK: Final = (1 << (8 * SUM_BYTES)) - 1
#: The part of the meta op's rows.
_METAOP: Final = b"metaop"
#: Where each store keeps its state sum, in its ``"<type_name>.meta"`` table.
_SUM: Final = b"statesum"
#: What the digest hashes before a store's type name and sum.
_DIGEST_TAG: Final = b"gridnode state digest 2\x00"
_u32 = struct.Struct(">I").pack


def row_hash(type_name: str, part: bytes, key: bytes, fingerprint: bytes) -> int:
    """The hash of one state row, as a number below ``2**2048``: SHAKE-256 (256 bytes out,
    read little-endian) of the type name, the part, the key and the fingerprint, each preceded
    by its length (4 bytes, big-endian)."""
    name = type_name.encode()
    h = hashlib.shake_256(
        b"".join(
            (
                _u32(len(name)),
                name,
                _u32(len(part)),
                part,
                _u32(len(key)),
                key,
                _u32(len(fingerprint)),
                fingerprint,
            )
        )
    )
    return int.from_bytes(h.digest(SUM_BYTES), "little")


def digest_of_sum(type_name: str, total: int) -> bytes:
    """SHA-256 of the tag, the type name and the sum (``SUM_BYTES``, little-endian)."""
    return hashlib.sha256(
        _DIGEST_TAG + type_name.encode() + b"\x00" + total.to_bytes(SUM_BYTES, "little")
    ).digest()


class Store(ABC):
    """A database's state as a deterministic fold over its log entries.

    Subclasses set :attr:`type_name` (the store name a manifest gives) and implement
    :meth:`check_op`, :meth:`apply`, :meth:`state` and ``__len__``.

    ``space`` holds the state (a fresh :class:`~crdt.space.MemorySpace` if not given). Over a
    space where an instance with the same options already applied entries, the new instance
    continues from that state: construction reads nothing.
    """

    #: The manifest's name for this store type: "events", "keyvalue", ...
    type_name: ClassVar[str]
    #: Whether this store type takes the store-level meta op (see the module's docstring).
    takes_meta: ClassVar[bool] = False

    def __init__(
        self, options: Mapping[str, Any] | None = None, space: Space | None = None
    ) -> None:
        #: The options of the database manifest (store-specific; unknown keys are ignored).
        self.options: Mapping[str, Any] = dict(options or {})
        #: Where the state lives.
        self.space: Space = MemorySpace() if space is None else space
        self._tables: list[Table] = []
        self._meta = self._table("meta")
        # Opened only where the op exists, so that other stores' tables stay as they were.
        self._metaops = self._table("metaop") if self.takes_meta else None

    def _table(self, part: str) -> Table:
        """This store type's table ``"<type_name>.<part>"`` (every one a store uses is opened in
        its constructor, so :meth:`clear` knows them all)."""
        table = self.space.table(f"{self.type_name}.{part}")
        self._tables.append(table)
        return table

    def clear(self) -> None:
        """Forget the whole state (to fold it again from the log's valid entries)."""
        for table in self._tables:
            # A page of keys at a time: memory stays bounded whatever the size of the state.
            while page := [k for k, _ in table.range(limit=256)]:
                for key in page:
                    table.delete(key)

    @classmethod
    @abstractmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        """Raise :class:`~crdt.errors.InvalidOperation` unless ``payload`` is a well-formed
        operation of this store type (writers call it before they sign)."""

    @abstractmethod
    def apply(self, entry: Entry) -> bool:
        """Fold one verified entry into the state.

        Returns ``False``, changing nothing, when the payload is not a well-formed operation of
        this store: an authorised writer's malformed op stays in the log but has no effect, the
        same on every replica. Applying an entry a second time changes nothing either (and
        returns ``True`` for a well-formed op).
        """

    @abstractmethod
    def state(self) -> Any:
        """The whole state as one canonical IPLD value.

        Replicas holding the same entries return equal values. It includes what decides future
        merges (the winning entry of each key, tombstones, ...), not only the visible data.
        """

    def digest(self) -> bytes:
        """What two replicas compare (docs/spec.md §17): a hash of the state sum, which applies
        keep; reads one row. Equal to :meth:`recompute_digest` (a test holds it to that)."""
        return digest_of_sum(self.type_name, self._sum())

    def recompute_digest(self) -> bytes:
        """:meth:`digest` computed again from the rows of the state (:meth:`recompute_sum`)."""
        return digest_of_sum(self.type_name, self.recompute_sum())

    def recompute_sum(self) -> int:
        """The state sum from the rows (:meth:`state_rows`): linear in the state, memory
        bounded (tables are read a range at a time)."""
        total = 0
        name = self.type_name
        for part, key, fingerprint in self.state_rows():
            total += row_hash(name, part, key, fingerprint)
        return total & _SUM_MASK

    def state_rows(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """``(part, key, fingerprint)`` of every row of the state (see the module), a table at
        a time in key order: the data's rows (:meth:`data_rows`), then the meta op's."""
        yield from self.data_rows()
        if self._metaops is not None:
            for key, row in self._metaops.range():
                yield _METAOP, key, row[1]

    @abstractmethod
    def data_rows(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """The rows of the data's state (the meta op's apart)."""

    @property
    def sum_indexed(self) -> bool:
        """Whether the state sum is kept: false only for a state written before it was (rows
        but no sum), which :meth:`index_sum` fixes once."""
        return self._meta.get(_SUM) is not None or next(self.state_rows(), None) is None

    def index_sum(self) -> None:
        """Compute and keep the state sum of a state written before it was kept (a scan)."""
        self._put_sum(self.recompute_sum())

    def _sum(self) -> int:
        stored = self._meta.get(_SUM)
        return 0 if stored is None else int.from_bytes(stored, "little")

    def _put_sum(self, total: int) -> None:
        if total:
            self._meta.put(_SUM, total.to_bytes(SUM_BYTES, "little"))
        else:
            self._meta.delete(_SUM)

    def _change_row(self, part: bytes, key: bytes, old: bytes | None, new: bytes | None) -> None:
        """Keep the state sum as one row of ``part`` changes: ``old`` is its fingerprint
        before (``None``: it was absent), ``new`` after (``None``: it is gone)."""
        if old == new:
            return
        name = self.type_name
        delta = 0
        if old is not None:
            delta -= row_hash(name, part, key, old)
        if new is not None:
            delta += row_hash(name, part, key, new)
        self._put_sum((self._sum() + delta) & _SUM_MASK)

    # -- the store-level meta op ------------------------------------------------------------------

    def is_meta_op(self, payload: Any) -> bool:
        """Whether ``payload`` claims to be a meta op of this store (well-formed or not)."""
        return self.takes_meta and is_meta_payload(payload)

    def apply_meta(self, entry: Entry) -> bool:
        """Fold a meta op (``False``, changing nothing, if it is malformed): last writer wins."""
        try:
            key, value = read_meta_op(entry.payload)
        except InvalidOperation:
            return False
        table = self._metaops
        assert table is not None, f"{self.type_name} stores take no meta op"
        k = key.encode("utf-8", "surrogatepass")
        clock, raw = entry.clock, entry.cid.bytes
        old = table.get(k)
        # As for the data's keys: the max of a set does not depend on arrival order.
        if old is None or (old[0], old[1]) < (clock, raw):
            table.put(k, [clock, raw, value])
            self._change_row(_METAOP, k, None if old is None else old[1], raw)
        return True

    def meta(self, key: str) -> Any:
        """The value of the winning meta op for ``key``, or ``None`` if there is none."""
        if self._metaops is None or type(key) is not str:
            return None
        row = self._metaops.get(key.encode("utf-8", "surrogatepass"))
        return None if row is None else row[2]

    def _with_meta(self, state: Any) -> Any:
        """The data's ``state`` with :meth:`meta_state`, if there is any (see the module)."""
        meta = self.meta_state()
        return {"state": state, "meta": meta} if meta else state

    def meta_state(self) -> dict[str, dict[str, Any]]:
        """``{key: {"clock", "entry", "value"}}`` of every meta key (empty where none)."""
        if self._metaops is None:
            return {}
        return {
            k.decode("utf-8", "surrogatepass"): {
                "clock": row[0],
                "entry": CID.parse(row[1]),
                "value": row[2],
            }
            for k, row in self._metaops.range()
        }

    @abstractmethod
    def __len__(self) -> int:
        """The number of live items (events, keys, documents, set members, ...)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type_name!r}: {len(self)} items>"


# -- the meta op -----------------------------------------------------------------------------------


def is_meta_payload(payload: Any) -> bool:
    """Whether ``payload`` is a map whose ``"op"`` is ``"meta"``."""
    return type(payload) is dict and payload.get("op") == META_OP


def read_meta_op(payload: Any) -> tuple[str, Any]:
    """``(key, value)`` of a well-formed meta op; :class:`InvalidOperation` otherwise."""
    if not (
        is_meta_payload(payload) and len(payload) == 3 and "key" in payload and "value" in payload
    ):
        raise InvalidOperation('a meta op is {"op": "meta", "key": <string>, "value": ...}')
    key = payload["key"]
    if type(key) is not str or not key:
        raise InvalidOperation("a meta op's key is a non-empty string")
    return key, payload["value"]


# -- counts kept in a table ----------------------------------------------------------------------


def storable_int(n: int) -> int | str:
    """``n`` as DAG-CBOR can hold it: itself within 64 bits, else its decimal text (one form per
    number, so states stay canonical)."""
    return n if _MIN_INT <= n <= _MAX_INT else str(n)


def read_int(stored: int | str) -> int:
    """The integer :func:`storable_int` stored."""
    return stored if type(stored) is int else int(stored)


def read_count(table: Table, key: bytes) -> int:
    """The integer kept under ``key`` (0 if absent)."""
    stored = table.get(key)
    return 0 if stored is None else read_int(stored)


def add_to_count(table: Table, key: bytes, delta: int) -> None:
    """Add ``delta`` to the integer kept under ``key``: one get, then one put (or a delete when
    it comes to 0: absent means 0, so equal counts are equal rows)."""
    old = table.get(key)
    new = (0 if old is None else read_int(old)) + delta
    if new:
        table.put(key, storable_int(new))
    else:
        table.delete(key)


# -- a total order over IPLD values ----------------------------------------------------------------

_NULL: Final = 0
_BOOL: Final = 1
_NUMBER: Final = 2
_STRING: Final = 3
_BYTES: Final = 4
_LIST: Final = 5
_MAP: Final = 6
_LINK: Final = 7


def value_key(value: Any) -> tuple[Any, ...]:
    """A sort key giving every IPLD value a place in one deterministic total order.

    Kinds come in this order: null < booleans < numbers < strings < bytes < lists < maps < links.
    Within a kind:

    - booleans: false < true;
    - numbers: integers and floats are one kind, compared by exact mathematical value (so ``1``
      and ``1.0`` have equal keys: a query for one finds both);
    - strings: by code point, which is also the order of their UTF-8 bytes;
    - bytes: bytewise;
    - lists: element by element, a prefix before its extensions;
    - maps: as the list of their ``(key, value)`` pairs sorted by key (code point order);
    - links: by binary CID.

    Keys of the same kind never compare values of different kinds, so any two keys compare.
    Raises :class:`~crdt.errors.InvalidQuery` for a value outside the IPLD data model.
    """
    t = type(value)
    if t is str:
        return (_STRING, value)
    if t is int or t is float:
        return (_NUMBER, value)
    if value is None:
        return (_NULL,)
    if t is bool:
        return (_BOOL, value)
    if t is bytes:
        return (_BYTES, value)
    if t is list or t is tuple:
        return (_LIST, tuple(value_key(item) for item in value))
    if t is dict:
        return (_MAP, tuple((k, value_key(v)) for k, v in sorted(value.items())))
    if t is CID:
        return (_LINK, value.bytes)
    return _subclass_key(value)


def _subclass_key(value: Any) -> tuple[Any, ...]:
    # As in the encoder, a subclass of a data-model type counts as its base type.
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return (_BOOL, bool(value))
    if isinstance(value, int):
        return (_NUMBER, int(value))
    if isinstance(value, float):
        return (_NUMBER, float(value))
    if isinstance(value, str):
        return (_STRING, str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return (_BYTES, bytes(value))
    if isinstance(value, (list, tuple)):
        return value_key(list(value))
    if isinstance(value, dict):
        return value_key(dict(value))
    raise InvalidQuery(f"{type(value).__name__} is not a value of the IPLD data model")
