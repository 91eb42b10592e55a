"""The documents store: last-writer-wins documents by id, with secondary indexes.

Manifest options: ``{"indexBy": "_id", "indexes": ["field", "a.b", ...]}``. ``indexBy`` (default
``"_id"``) names the top-level field holding each document's id, a string or an integer. Each
name in ``indexes`` is a top-level field, or a dotted path into nested maps (``"a.b"`` is
``doc["a"]["b"]``; a document where ``doc["a"]`` is not a map lacks it), to keep a sorted index on.

Ops: ``{"op": "put", "doc": {...}}`` (the doc is a map holding its id) and
``{"op": "del", "id": <str | int>}``. Per id, the op of the entry greatest in the total order
``(clock, binary CID)`` wins, whatever order entries arrive in; a winning del leaves a tombstone.
The store-level ``{"op": "meta", "key": <str>, "value": ...}`` is taken too (see
:mod:`crdt.stores.base`): a meta op is never a document.

Tables (see :mod:`crdt.stores.base`), keyed by :func:`~crdt.sortkey.sort_key`, whose byte order
is the order of :func:`~crdt.stores.base.value_key` over values of any kind:

- ``documents.docs``: ``sort_key(id)`` -> ``[clock, binary CID, doc]``, the live documents with
  the put that decides each; it is also the index of the id field, which is always indexed;
- ``documents.deleted``: ``sort_key(id)`` -> ``[clock, binary CID, id]``, the tombstones;
- ``documents.index.<field>`` for each other declared field: ``sort_key(value) + sort_key(id)``
  -> ``id``, for every live document that has the field (a document that lacks it is not in
  that index). A document's index keys are computed again from its stored version when it is
  overwritten or deleted;
- ``documents.meta``: ``b"live"`` -> the number of live documents, and the state sum;
- ``documents.metaop``: the winning meta op of each meta key.

State rows (the digest): ``(b"docs" or b"deleted", sort_key(id), binary CID of the winning op)``
per id, and the meta op's ``(b"metaop", key, binary CID)``; the indexes are derived.

A query is a range over one table, then a read of each document it returns: it touches only
the rows it returns. ``sort_key`` is self-delimiting, so the keys of one value form the byte
range ``[sort_key(v), prefix_end(sort_key(v)))``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Final, TypeGuard

from crdt.entry import Entry
from crdt.errors import InvalidManifest, InvalidOperation, InvalidQuery, UnknownIndex
from crdt.ipld.cid import CID
from crdt.sortkey import sort_key
from crdt.space import Space, Table, prefix_end
from crdt.stores.base import (
    Store,
    add_to_count,
    is_meta_payload,
    read_count,
    read_meta_op,
)

__all__ = ["DocumentsStore"]

DEFAULT_INDEX_BY: Final = "_id"
_LIVE: Final = b"live"
_DOCS: Final = b"docs"
_DELETED: Final = b"deleted"
#: The length of sort_key(n) for any number n: a kind byte and two 8-byte parts.
_NUMBER_KEY: Final = 17
_parse_cid = CID.parse


class _Unset:
    """Marks a query bound not given (``None`` is a value one may query for)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
_MISSING: Final = object()

DocId = str | int


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
        ' (or {"op": "meta", "key": ..., "value": ...})'
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
    takes_meta: ClassVar[bool] = True

    def __init__(
        self, options: Mapping[str, Any] | None = None, space: Space | None = None
    ) -> None:
        super().__init__(options, space)
        #: The field holding each document's id.
        self.index_by = _index_by(options)
        names = [self.index_by, *_index_names(options)]
        #: The indexed fields (the id field first), as declared.
        self.indexes: tuple[str, ...] = tuple(dict.fromkeys(names))
        self._docs = self._table("docs")
        self._deleted = self._table("deleted")
        # The table answering queries on each indexed field: the id field's is the docs table.
        self._index: dict[str, Table] = {self.index_by: self._docs}
        # (index, field name, its path if dotted else None) of every index to keep up on apply.
        # The id field is a top-level key even if its name has a dot in it.
        self._fields: list[tuple[Table, str, tuple[str, ...] | None]] = []
        for name in self.indexes[1:]:
            index = self._index[name] = self._table(f"index.{name}")
            self._fields.append((index, name, tuple(name.split(".")) if "." in name else None))

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        if is_meta_payload(payload):
            read_meta_op(payload)
        else:
            _read_op(payload, _index_by(options))

    def apply(self, entry: Entry) -> bool:
        if self.is_meta_op(entry.payload):
            return self.apply_meta(entry)
        try:
            doc_id, doc = _read_op(entry.payload, self.index_by)
        except InvalidOperation:
            return False
        clock, raw = entry.clock, entry.cid.bytes
        id_key = sort_key(doc_id)
        old = self._docs.get(id_key)
        tombstone = None if old is not None else self._deleted.get(id_key)
        winner = old if old is not None else tombstone
        # LWW: the max of a set does not depend on arrival order, and an entry seen again is not
        # greater than itself.
        if winner is not None and (winner[0], winner[1]) >= (clock, raw):
            return True
        if doc is None:
            self._deleted.put(id_key, [clock, raw, doc_id])
            self._change_row(_DELETED, id_key, None if tombstone is None else tombstone[1], raw)
            if old is not None:
                self._docs.delete(id_key)
                self._change_row(_DOCS, id_key, old[1], None)
                self._reindex(id_key, doc_id, old[2], None)
                add_to_count(self._meta, _LIVE, -1)
            return True
        self._docs.put(id_key, [clock, raw, doc])
        self._change_row(_DOCS, id_key, None if old is None else old[1], raw)
        if old is not None:
            self._reindex(id_key, doc_id, old[2], doc)
            return True
        if tombstone is not None:
            self._deleted.delete(id_key)
            self._change_row(_DELETED, id_key, tombstone[1], None)
        self._reindex(id_key, doc_id, None, doc)
        add_to_count(self._meta, _LIVE, 1)
        return True

    def data_rows(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """One row per id: live (``docs``) or deleted, the binary CID of the op deciding it."""
        for key, row in self._docs.range():
            yield _DOCS, key, row[1]
        for key, row in self._deleted.range():
            yield _DELETED, key, row[1]

    def _reindex(
        self,
        id_key: bytes,
        doc_id: DocId,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
    ) -> None:
        """Move the index entries of ``doc_id`` from those of ``old`` to those of ``new``."""
        for index, name, path in self._fields:
            before = after = None
            if old is not None:
                value = old.get(name, _MISSING) if path is None else _lookup(old, path)
                if value is not _MISSING:
                    before = sort_key(value) + id_key
            if new is not None:
                value = new.get(name, _MISSING) if path is None else _lookup(new, path)
                if value is not _MISSING:
                    after = sort_key(value) + id_key
            if before != after:
                if before is not None:
                    index.delete(before)
                if after is not None:
                    index.put(after, doc_id)

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return read_count(self._meta, _LIVE)

    def __contains__(self, doc_id: object) -> bool:
        return _is_id(doc_id) and self._docs.get(sort_key(doc_id)) is not None

    def get(self, doc_id: DocId) -> dict[str, Any] | None:
        """The document with this id, or ``None``. Treat it as read-only."""
        row = self._docs.get(sort_key(doc_id)) if _is_id(doc_id) else None
        return None if row is None else row[2]

    def ids(self) -> Iterator[DocId]:
        """The live ids in order: integers ascending, then strings by code point."""
        index_by = self.index_by
        for _key, row in self._docs.range():
            yield row[2][index_by]

    def docs(self) -> Iterator[dict[str, Any]]:
        """The live documents in id order."""
        for _key, row in self._docs.range():
            yield row[2]

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

        Answered from the field's index: a range over it, then only the documents returned are
        read. Results come ordered by (field value, id), descending if ``reverse``; values of
        different kinds compare as :func:`~crdt.stores.base.value_key` says (numbers compare
        across int and float). With no condition, every document that has the field. Raises
        :class:`~crdt.errors.UnknownIndex` for a field without an index and
        :class:`~crdt.errors.InvalidQuery` for conflicting conditions.
        """
        index, low, high = self._range(field, eq, gt, gte, lt, lte, limit)
        rows = index.range(low, high, reverse=reverse, limit=limit)
        if index is self._docs:
            return [row[2] for _key, row in rows]
        docs = self._docs
        out = []
        for key, doc_id in rows:
            # The key ends with sort_key(doc_id), 17 bytes for a number: no need to compute it.
            row = docs.get(key[-_NUMBER_KEY:] if type(doc_id) is int else sort_key(doc_id))
            assert row is not None, "an index names a document that is not there"
            out.append(row[2])
        return out

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
        index, low, high = self._range(field, eq, gt, gte, lt, lte, limit)
        return self._walk(index, low, high, reverse, limit)

    def _walk(
        self,
        index: Table,
        low: bytes | None,
        high: bytes | None,
        reverse: bool,
        limit: int | None,
    ) -> Iterator[DocId]:
        rows = index.range(low, high, reverse=reverse, limit=limit)
        if index is self._docs:
            index_by = self.index_by
            for _key, row in rows:
                yield row[2][index_by]
        else:
            for _key, doc_id in rows:
                yield doc_id

    def _range(
        self, field: str, eq: Any, gt: Any, gte: Any, lt: Any, lte: Any, limit: int | None
    ) -> tuple[Table, bytes | None, bytes | None]:
        """The table answering a query on ``field`` and the key range ``[low, high)`` it asks."""
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
        # Every key of a value v starts with sort_key(v), and no other key does (sort_key is
        # self-delimiting): those keys are [sort_key(v), prefix_end(sort_key(v))).
        low: bytes | None = None
        if gt is not UNSET:
            low = prefix_end(_query_key(gt))
        elif gte is not UNSET:
            low = _query_key(gte)
        high: bytes | None = None
        if lt is not UNSET:
            high = _query_key(lt)
        elif lte is not UNSET:
            high = prefix_end(_query_key(lte))
        return index, low, high

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
        if not _is_id(doc_id):
            return None
        id_key = sort_key(doc_id)
        row = self._docs.get(id_key)
        if row is None:
            row = self._deleted.get(id_key)
        return None if row is None else (row[0], _parse_cid(row[1]))

    def state(self) -> Any:
        """``[{"id", "clock", "entry", "doc"}, ...]`` in id order; a deleted id has no ``"doc"``.
        With meta keys, ``{"state": that, "meta": meta_state()}``."""
        out: list[dict[str, Any]] = []
        index_by = self.index_by
        # Two tables keyed alike, with no key in both: merged, they are every id in order.
        live = ((key, True, row) for key, row in self._docs.range())
        gone = ((key, False, row) for key, row in self._deleted.range())
        for _key, is_live, row in heapq.merge(live, gone, key=_first):
            if is_live:
                item = {"id": row[2][index_by], "clock": row[0], "entry": _parse_cid(row[1])}
                item["doc"] = row[2]
            else:
                item = {"id": row[2], "clock": row[0], "entry": _parse_cid(row[1])}
            out.append(item)
        return self._with_meta(out)


def _first(item: tuple[bytes, bool, Any]) -> bytes:
    return item[0]


def _query_key(value: Any) -> bytes:
    try:
        return sort_key(value)
    except TypeError as exc:
        raise InvalidQuery(str(exc)) from None
