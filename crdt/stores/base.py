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
none the data's state alone (so its digest is the one it always had).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from crdt.entry import Entry
from crdt.errors import InvalidOperation, InvalidQuery
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import encode
from crdt.sortedkeys import SortedKeys
from crdt.space import MemorySpace, Space, Table

__all__ = [
    "META_OP",
    "SortedKeys",
    "Store",
    "add_to_count",
    "read_count",
    "read_int",
    "storable_int",
    "value_key",
]

#: The integers DAG-CBOR can hold: anything beyond is stored as decimal text (see storable_int).
_MIN_INT: Final = -(2**64)
_MAX_INT: Final = 2**64 - 1

#: The ``"op"`` of the store-level meta op.
META_OP: Final = "meta"


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
            for key in [k for k, _ in table.range()]:
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
        """SHA-256 of the DAG-CBOR encoding of :meth:`state`: what two replicas compare."""
        return hashlib.sha256(encode(self.state())).digest()

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
