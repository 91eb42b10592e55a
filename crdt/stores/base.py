"""What every store type shares: the :class:`Store` interface, a total order over IPLD values and
the sorted key structure the ordered stores (events, document indexes) are built on.

A store is an op-based CRDT folded from the entries of one database's log. The log hands each
verified, authorised entry to :meth:`Store.apply` once, in *some* causal order, which is not always
the total order ``(clock, binary CID)``: an entry that arrives late may sort before entries already
applied. So every store is written to reach the same state from the same set of entries in any
order at all, and to treat a repeated entry as a no-op.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from crdt.entry import Entry
from crdt.errors import InvalidQuery
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import encode

__all__ = ["SortedKeys", "Store", "value_key"]


class Store(ABC):
    """A database's state as a deterministic fold over its log entries.

    Subclasses set :attr:`type_name` (the store name a manifest gives) and implement
    :meth:`check_op`, :meth:`apply`, :meth:`state` and ``__len__``.
    """

    #: The manifest's name for this store type: "events", "keyvalue", ...
    type_name: ClassVar[str]

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        #: The options of the database manifest (store-specific; unknown keys are ignored).
        self.options: Mapping[str, Any] = dict(options or {})

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

    @abstractmethod
    def __len__(self) -> int:
        """The number of live items (events, keys, documents, set members, ...)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type_name!r}: {len(self)} items>"


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


# -- sorted keys -----------------------------------------------------------------------------------

#: A chunk is split in two when it grows past twice this size.
_CHUNK: Final = 1000
#: A chunk this small after a removal is merged into its successor.
_SMALL: Final = _CHUNK // 4


class SortedKeys:
    """Distinct, mutually comparable keys kept in ascending order.

    A plain sorted list costs O(n) to insert into (everything after the slot moves), which at a
    million keys is milliseconds per insert. Here the keys live in a list of sorted chunks of at
    most ``2 * 1000`` keys, with the largest key of each chunk in ``_maxes``: an insert or removal
    is a bisect over the chunk maxima, then a bisect and a short move inside one chunk. Appending
    a key larger than all others (the common case for a feed fed in order) only bisects and
    appends. Iterating a range starts with two bisects and touches only the keys it yields.

    Callers keep the keys distinct; the structure does not check.
    """

    __slots__ = ("_chunks", "_len", "_maxes")

    def __init__(self) -> None:
        self._chunks: list[list[Any]] = []
        self._maxes: list[Any] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        for chunk in self._chunks:
            yield from chunk

    def __contains__(self, key: Any) -> bool:
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return False
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        return bool(chunk[j] == key)

    def add(self, key: Any) -> None:
        """Insert ``key`` (which must not be present)."""
        maxes = self._maxes
        self._len += 1
        if not maxes:
            self._chunks.append([key])
            maxes.append(key)
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1
            chunk = self._chunks[i]
            chunk.append(key)
            maxes[i] = key
        else:
            chunk = self._chunks[i]
            insort(chunk, key)
        if len(chunk) > 2 * _CHUNK:
            self._chunks.insert(i + 1, chunk[_CHUNK:])
            del chunk[_CHUNK:]
            maxes.insert(i, chunk[-1])

    def remove(self, key: Any) -> bool:
        """Remove ``key``; return whether it was present."""
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return False
        chunks = self._chunks
        chunk = chunks[i]
        j = bisect_left(chunk, key)
        if chunk[j] != key:
            return False
        del chunk[j]
        self._len -= 1
        if not chunk:
            del chunks[i]
            del maxes[i]
            return True
        maxes[i] = chunk[-1]
        if len(chunk) < _SMALL and i + 1 < len(chunks):
            # Keep chunks from fragmenting after many removals: merge into the next one, and
            # split the result again if that made it too long.
            chunk.extend(chunks[i + 1])
            del chunks[i + 1]
            del maxes[i]
            if len(chunk) > 2 * _CHUNK:
                chunks.insert(i + 1, chunk[_CHUNK:])
                del chunk[_CHUNK:]
                maxes.insert(i, chunk[-1])
        return True

    def _left(self, key: Any) -> tuple[int, int]:
        # Position of the first key >= ``key``; (len(chunks), 0) when there is none.
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return i, 0
        return i, bisect_left(self._chunks[i], key)

    def _right(self, key: Any) -> tuple[int, int]:
        # Position of the first key > ``key``; (len(chunks), 0) when there is none.
        i = bisect_right(self._maxes, key)
        if i == len(self._maxes):
            return i, 0
        return i, bisect_right(self._chunks[i], key)

    def irange(
        self,
        low: tuple[Any, bool] | None = None,
        high: tuple[Any, bool] | None = None,
        *,
        reverse: bool = False,
    ) -> Iterator[Any]:
        """The keys between two bounds, ascending (descending if ``reverse``).

        Each bound is ``(key, inclusive)`` or ``None`` for none (``None`` itself is a legitimate
        key, so it cannot mean "no bound"). A bound need not be present, only comparable with the
        keys. Do not add or remove keys while iterating.
        """
        chunks = self._chunks
        first, offset = (0, 0) if low is None else (self._left if low[1] else self._right)(low[0])
        last, end = (
            (len(chunks), 0) if high is None else (self._right if high[1] else self._left)(high[0])
        )
        if (first, offset) >= (last, end):
            return
        if not reverse:
            for i in range(first, min(last, len(chunks) - 1) + 1):
                chunk = chunks[i]
                stop = end if i == last else len(chunk)
                for j in range(offset if i == first else 0, stop):
                    yield chunk[j]
        else:
            for i in range(min(last, len(chunks) - 1), first - 1, -1):
                chunk = chunks[i]
                stop = end if i == last else len(chunk)
                for j in range(stop - 1, (offset if i == first else 0) - 1, -1):
                    yield chunk[j]
