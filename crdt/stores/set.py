"""The set store: an observed-remove set (OR-set) where an add wins over a concurrent remove.

Ops: ``{"op": "add", "value": v}`` and ``{"op": "remove", "value": v, "tags": [cid, ...]}``, with
``v`` any IPLD value. Each add is tagged by its entry's CID. A remove names the add tags of ``v``
its writer had observed (:meth:`SetStore.tags_for` lists them) and cancels exactly those; ``v`` is
a member while some add tag of it is not cancelled. An add the remover had not seen (a concurrent
one) carries a tag the remove does not name, so it survives: add wins.

Values are identified by their canonical DAG-CBOR encoding, so equal values are one member
whatever their Python form, and members sort by it. Every structure here only grows (tags added,
tags cancelled), so the order of ops does not matter, and a repeated op adds nothing new.

Tables (see :mod:`crdt.stores.base`), keyed by ``enc``, a value's DAG-CBOR encoding (a CBOR item
is self-delimiting, so no encoding is a prefix of another and ``enc + ...`` keys of one value
form one byte range):

- ``set.values``: ``enc`` -> ``0``, every value some well-formed op named (what
  :meth:`SetStore.state` lists);
- ``set.members``: ``enc`` -> ``0``, the members (values with an uncancelled add tag);
- ``set.tags``: ``enc + 01 + binary CID`` -> ``0`` for an uncancelled add tag, and
  ``enc + 02 + binary CID`` -> ``1`` for a cancelled add tag, ``0`` for a tag a remove named
  before (or without) its add arrived. A tag is under one of the two at most, so
  :meth:`SetStore.tags_for` reads only uncancelled tags;
- ``set.meta``: ``b"live"`` -> the number of members, and the state sum.

State rows (the digest): ``(b"values", enc, b"")`` per value named, ``(b"tags", tag key, its 0
or 1 as one byte)`` per tag; the members are derived.

Values come back by decoding their ``enc`` key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from crdt.entry import Entry
from crdt.errors import DagCborEncodeError, InvalidOperation
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.space import Space
from crdt.stores.base import Store, add_to_count, read_count

__all__ = ["SetStore"]

_LIVE: Final = b"live"
_LIVE_TAG: Final = b"\x01"
_CANCELLED: Final = b"\x02"
_AFTER: Final = b"\x03"
_VALUES: Final = b"values"
_TAGS: Final = b"tags"
_ZERO: Final = b"\x00"
_ONE: Final = b"\x01"
_parse_cid = CID.parse


def _read_op(payload: Any) -> tuple[Any, list[CID] | None]:
    """``(value, None)`` of an add, ``(value, tags)`` of a remove; :class:`InvalidOperation`
    otherwise."""
    if type(payload) is not dict:
        raise InvalidOperation("a set op is a map")
    op = payload.get("op")
    if op == "add" and len(payload) == 2 and "value" in payload:
        return payload["value"], None
    if op == "remove" and len(payload) == 3 and "value" in payload and "tags" in payload:
        tags = payload["tags"]
        if type(tags) is not list or not all(type(t) is CID for t in tags):
            raise InvalidOperation("a remove's tags are a list of the CIDs of the adds it cancels")
        return payload["value"], tags
    raise InvalidOperation(
        'a set op is {"op": "add", "value": ...} or {"op": "remove", "value": ..., "tags": [...]}'
    )


def _encode(value: Any) -> bytes:
    try:
        return encode(value)
    except DagCborEncodeError:
        raise InvalidOperation("a set member must be a value of the IPLD data model") from None


class SetStore(Store):
    """An add-wins observed-remove set of IPLD values."""

    type_name: ClassVar[str] = "set"

    def __init__(
        self, options: Mapping[str, Any] | None = None, space: Space | None = None
    ) -> None:
        super().__init__(options, space)
        self._values = self._table("values")
        self._members = self._table("members")
        self._tags = self._table("tags")

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        value, _tags = _read_op(payload)
        _encode(value)

    def apply(self, entry: Entry) -> bool:
        try:
            value, tags = _read_op(entry.payload)
            enc = _encode(value)
        except InvalidOperation:
            return False
        if tags is None:
            self._add(enc, entry.cid.bytes)
        else:
            self._remove(enc, tags)
        return True

    def _add(self, enc: bytes, tag: bytes) -> None:
        table = self._tags
        cancelled = enc + _CANCELLED + tag
        seen = table.get(cancelled)
        if seen is not None:
            # A remove named this tag first: the add is cancelled as it arrives.
            if seen == 0:
                table.put(cancelled, 1)
                self._change_row(_TAGS, cancelled, _ZERO, _ONE)
            return
        live = enc + _LIVE_TAG + tag
        if table.get(live) is not None:
            return  # seen before
        table.put(live, 0)
        self._change_row(_TAGS, live, None, _ZERO)
        if self._members.get(enc) is None:
            self._members.put(enc, 0)
            self._name_value(enc)
            add_to_count(self._meta, _LIVE, 1)

    def _name_value(self, enc: bytes) -> None:
        """Record that some well-formed op named the value ``enc``."""
        if self._values.get(enc) is None:
            self._values.put(enc, 0)
            self._change_row(_VALUES, enc, None, b"")

    def _remove(self, enc: bytes, tags: list[CID]) -> None:
        # A remove cancels only adds of its own value: tags naming anything else are inert.
        table = self._tags
        self._name_value(enc)
        dropped = False
        for tag in tags:
            raw = tag.bytes
            live = enc + _LIVE_TAG + raw
            cancelled = enc + _CANCELLED + raw
            if table.delete(live):
                self._change_row(_TAGS, live, _ZERO, None)
                table.put(cancelled, 1)
                self._change_row(_TAGS, cancelled, None, _ONE)
                dropped = True
            elif table.get(cancelled) is None:
                table.put(cancelled, 0)
                self._change_row(_TAGS, cancelled, None, _ZERO)
        if dropped and not any(True for _ in self._live_tags(enc, limit=1)):
            self._members.delete(enc)
            add_to_count(self._meta, _LIVE, -1)

    def _live_tags(self, enc: bytes, limit: int | None = None) -> Iterator[tuple[bytes, Any]]:
        return self._tags.range(enc + _LIVE_TAG, enc + _CANCELLED, limit=limit)

    def __len__(self) -> int:
        return read_count(self._meta, _LIVE)

    def __contains__(self, value: object) -> bool:
        try:
            return self._members.get(encode(value)) is not None
        except DagCborEncodeError:
            return False

    def values(self) -> list[Any]:
        """The members, sorted by their DAG-CBOR encoding."""
        return [decode(enc) for enc, _ in self._members.range()]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values())

    def tags_for(self, value: Any) -> list[CID]:
        """The uncancelled add tags of ``value``, ascending: what a remove of it must name."""
        try:
            enc = encode(value)
        except DagCborEncodeError:
            return []
        start = len(enc) + 1
        return [_parse_cid(key[start:]) for key, _ in self._live_tags(enc)]

    def data_rows(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """Every value named (``values``, fingerprint empty) and every tag (``tags``, its
        stored 0 or 1 as one byte)."""
        for enc, _ in self._values.range():
            yield _VALUES, enc, b""
        for key, flag in self._tags.range():
            yield _TAGS, key, bytes((flag,))

    def state(self) -> list[dict[str, Any]]:
        """``[{"value", "adds": [cid, ...], "removed": [cid, ...]}, ...]`` sorted by the value's
        encoding, for every value ever added or removed; tags ascending."""
        out: list[dict[str, Any]] = []
        tags = self._tags
        for enc, _ in self._values.range():
            start = len(enc) + 1
            adds = [key[start:] for key, _ in self._live_tags(enc)]
            removed = []
            for key, added in tags.range(enc + _CANCELLED, enc + _AFTER):
                removed.append(key[start:])
                if added:
                    adds.append(key[start:])
            out.append(
                {
                    "value": decode(enc),
                    "adds": [_parse_cid(t) for t in sorted(adds)],
                    "removed": [_parse_cid(t) for t in removed],
                }
            )
        return out
