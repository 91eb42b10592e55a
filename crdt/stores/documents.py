"""The documents store: last-writer-wins documents by id, with secondary indexes.

Manifest options: ``{"indexBy": "_id", "indexes": ["field", "a.b", ...]}``. ``indexBy`` (default
``"_id"``) names the top-level field holding each document's id, a string or an integer. Each
name in ``indexes`` is a top-level field, or a dotted path into nested maps (``"a.b"`` is
``doc["a"]["b"]``; a document where ``doc["a"]`` is not a map lacks it), to keep a sorted index on.

Ops: ``{"op": "put", "doc": {...}}`` (the doc is a map holding its id) and
``{"op": "del", "id": <str | int>}``. Per id, the op of the entry greatest in the total order
``(clock, binary CID)`` wins, whatever order entries arrive in; a winning del leaves a tombstone.

Each index is a :class:`~crdt.stores.base.SortedKeys` of ``value_key(value) + value_key(id)``
(see :func:`~crdt.stores.base.value_key` for the order over values of any kind). A document that
lacks the field is not in that field's index. A query bisects to the ends of its range and reads
only the entries it returns. The id field is always indexed, so ``query`` also answers id ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from typing import Any, ClassVar, Final, TypeGuard

from crdt.entry import Entry
from crdt.errors import InvalidManifest, InvalidOperation, InvalidQuery, UnknownIndex
from crdt.ipld.cid import CID
from crdt.stores.base import SortedKeys, Store, value_key

__all__ = ["DocumentsStore"]

DEFAULT_INDEX_BY: Final = "_id"
#: Greater than the rank of any id (ids are numbers or strings, ranks 2 and 3 of ``value_key``):
#: ``value_key(v) + _TOP`` comes after every key ``value_key(v) + value_key(id)``.
_TOP: Final = (99,)


class _Unset:
    """Marks a query bound not given (``None`` is a value one may query for)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
_MISSING: Final = object()

DocId = str | int


#: The op deciding an id: (clock, binary CID, CID, the doc or None for a del). A plain tuple:
#: building a NamedTuple costs several times more, once per applied entry.
_Winner = tuple[int, bytes, CID, dict[str, Any] | None]


def _index_by(options: Mapping[str, Any] | None) -> str:
    index_by = DEFAULT_INDEX_BY if options is None else options.get("indexBy", DEFAULT_INDEX_BY)
    if type(index_by) is not str or not index_by:
        raise InvalidManifest(f"indexBy must be a non-empty string, not {index_by!r}")
    return index_by


def _index_names(options: Mapping[str, Any] | None) -> list[str]:
    names = [] if options is None else options.get("indexes", [])
    if type(names) not in (list, tuple) or not all(type(n) is str and n for n in names):
        raise InvalidManifest(f"indexes must be a list of non-empty field names, not {names!r}")
    return list(names)


def _is_id(value: object) -> TypeGuard[DocId]:
    return type(value) is str or type(value) is int


def _read_op(payload: Any, index_by: str) -> tuple[DocId, dict[str, Any] | None]:
    """``(id, doc)`` of a put, ``(id, None)`` of a del; :class:`InvalidOperation` otherwise."""
    if type(payload) is not dict:
        raise InvalidOperation("a documents op is a map")
    op = payload.get("op")
    # Exactly the keys named: a length check and lookups are cheaper than comparing key sets.
    if op == "put" and len(payload) == 2 and "doc" in payload:
        doc = payload["doc"]
        if type(doc) is not dict:
            raise InvalidOperation("a put's doc is a map")
        doc_id = doc.get(index_by, _MISSING)
        if not _is_id(doc_id):
            raise InvalidOperation(
                f"a document's {index_by!r} field is its id: a string or an integer"
            )
        return doc_id, doc
    if op == "del" and len(payload) == 2 and "id" in payload:
        doc_id = payload["id"]
        if not _is_id(doc_id):
            raise InvalidOperation("a del names its document's id: a string or an integer")
        return doc_id, None
    raise InvalidOperation(
        'a documents op is {"op": "put", "doc": {...}} or {"op": "del", "id": ...}'
    )


def _lookup(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``doc``, or ``_MISSING``."""
    value: Any = doc
    for part in path:
        if type(value) is not dict:
            return _MISSING
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


class DocumentsStore(Store):
    """Documents by id with sorted secondary indexes."""

    type_name: ClassVar[str] = "documents"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        #: The field holding each document's id.
        self.index_by = _index_by(options)
        names = [self.index_by, *_index_names(options)]
        #: The indexed fields (the id field first), as declared.
        self.indexes: tuple[str, ...] = tuple(dict.fromkeys(names))
        self._index: dict[str, SortedKeys] = {name: SortedKeys() for name in self.indexes}
        # (index, field name, its path if dotted else None), for the updates on every apply. The
        # id field is a top-level key even if its name has a dot in it.
        self._fields = [
            (
                self._index[name],
                name,
                tuple(name.split(".")) if "." in name and name != self.index_by else None,
            )
            for name in self.indexes
        ]
        # The id index alone, also the order in which whole-store scans go.
        self._ids = self._index[self.index_by]
        self._winners: dict[DocId, _Winner] = {}
        self._live = 0

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        _read_op(payload, _index_by(options))

    def apply(self, entry: Entry) -> bool:
        try:
            doc_id, doc = _read_op(entry.payload, self.index_by)
        except InvalidOperation:
            return False
        clock, raw = entry.clock, entry.cid.bytes
        old = self._winners.get(doc_id)
        if old is not None:
            # LWW: the max of a set does not depend on arrival order, and an entry seen again is
            # not greater than itself.
            if (old[0], old[1]) >= (clock, raw):
                return True
            if old[3] is not None:
                self._unindex(doc_id, old[3])
        self._winners[doc_id] = (clock, raw, entry.cid, doc)
        if doc is not None:
            self._reindex(doc_id, doc)
        return True

    def _reindex(self, doc_id: DocId, doc: dict[str, Any]) -> None:
        id_key = value_key(doc_id)
        for index, name, path in self._fields:
            value = doc.get(name, _MISSING) if path is None else _lookup(doc, path)
            if value is not _MISSING:
                index.add(value_key(value) + id_key)
        self._live += 1

    def _unindex(self, doc_id: DocId, doc: dict[str, Any]) -> None:
        id_key = value_key(doc_id)
        for index, name, path in self._fields:
            value = doc.get(name, _MISSING) if path is None else _lookup(doc, path)
            if value is not _MISSING:
                index.remove(value_key(value) + id_key)
        self._live -= 1

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._live

    def __contains__(self, doc_id: object) -> bool:
        winner = self._winners.get(doc_id) if _is_id(doc_id) else None
        return winner is not None and winner[3] is not None

    def get(self, doc_id: DocId) -> dict[str, Any] | None:
        """The document with this id, or ``None``. Treat it as read-only: it is the stored one."""
        winner = self._winners.get(doc_id) if _is_id(doc_id) else None
        return None if winner is None else winner[3]

    def ids(self) -> Iterator[DocId]:
        """The live ids in order: integers ascending, then strings by code point."""
        for key in self._ids:
            yield key[-1]

    def docs(self) -> Iterator[dict[str, Any]]:
        """The live documents in id order."""
        winners = self._winners
        for doc_id in self.ids():
            yield winners[doc_id][3]  # type: ignore[misc]

    def query(
        self,
        field: str,
        *,
        eq: Any = UNSET,
        gt: Any = UNSET,
        gte: Any = UNSET,
        lt: Any = UNSET,
        lte: Any = UNSET,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[dict[str, Any]]:
        """The documents whose indexed ``field`` is ``eq`` or lies within the bounds given.

        Answered from the field's index: a bisect to each end of the range, then only the
        documents returned are read. Results come ordered by (field value, id), descending if
        ``reverse``; values of different kinds compare as :func:`~crdt.stores.base.value_key`
        says (numbers compare across int and float). With no condition, every document that has
        the field. Raises :class:`~crdt.errors.UnknownIndex` for a field without an index and
        :class:`~crdt.errors.InvalidQuery` for conflicting conditions.
        """
        ids = self.query_ids(
            field, eq=eq, gt=gt, gte=gte, lt=lt, lte=lte, limit=limit, reverse=reverse
        )
        winners = self._winners
        return [winners[i][3] for i in ids]  # type: ignore[misc]

    def query_ids(
        self,
        field: str,
        *,
        eq: Any = UNSET,
        gt: Any = UNSET,
        gte: Any = UNSET,
        lt: Any = UNSET,
        lte: Any = UNSET,
        limit: int | None = None,
        reverse: bool = False,
    ) -> Iterator[DocId]:
        """Like :meth:`query`, yielding the ids of the matching documents lazily."""
        index = self._index.get(field)
        if index is None:
            raise UnknownIndex(
                f"no index on {field!r}; the database indexes {', '.join(map(repr, self.indexes))}"
            )
        if eq is not UNSET and any(b is not UNSET for b in (gt, gte, lt, lte)):
            raise InvalidQuery("give eq or range bounds, not both")
        if gt is not UNSET and gte is not UNSET:
            raise InvalidQuery("give gt or gte, not both")
        if lt is not UNSET and lte is not UNSET:
            raise InvalidQuery("give lt or lte, not both")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidQuery(f"limit must be a non-negative integer, not {limit!r}")
        if eq is not UNSET:
            gte = lte = eq
        # A key is value_key(v) + value_key(id), one flat tuple (flat tuples compare several
        # times faster than nested ones). value_key(v) alone, a prefix, sorts before every key
        # with the value v, and value_key(v) + _TOP after them all.
        low: tuple[Any, bool] | None = None
        if gt is not UNSET:
            low = (value_key(gt) + _TOP, False)
        elif gte is not UNSET:
            low = (value_key(gte), True)
        high: tuple[Any, bool] | None = None
        if lt is not UNSET:
            high = (value_key(lt), False)
        elif lte is not UNSET:
            high = (value_key(lte) + _TOP, True)
        return self._walk(index, low, high, reverse, limit)

    @staticmethod
    def _walk(
        index: SortedKeys,
        low: tuple[Any, bool] | None,
        high: tuple[Any, bool] | None,
        reverse: bool,
        limit: int | None,
    ) -> Iterator[DocId]:
        for key in islice(index.irange(low, high, reverse=reverse), limit):
            yield key[-1]

    def filter(
        self, predicate: Callable[[dict[str, Any]], bool], limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The documents ``predicate`` accepts, in id order: a scan, for what no index answers."""
        out: list[dict[str, Any]] = []
        if limit == 0:
            return out
        for doc in self.docs():
            if predicate(doc):
                out.append(doc)
                if len(out) == limit:
                    break
        return out

    def winner(self, doc_id: DocId) -> tuple[int, CID] | None:
        """``(clock, entry CID)`` of the op that decides ``doc_id`` (a put or a del), if any."""
        found = self._winners.get(doc_id)
        return None if found is None else (found[0], found[2])

    def state(self) -> list[dict[str, Any]]:
        """``[{"id", "clock", "entry", "doc"}, ...]`` in id order; a deleted id has no ``"doc"``."""
        out: list[dict[str, Any]] = []
        winners = self._winners
        for doc_id in sorted(winners, key=value_key):
            clock, _raw, cid, doc = winners[doc_id]
            item: dict[str, Any] = {"id": doc_id, "clock": clock, "entry": cid}
            if doc is not None:
                item["doc"] = doc
            out.append(item)
        return out
