"""The set store: an observed-remove set (OR-set) where an add wins over a concurrent remove.

Ops: ``{"op": "add", "value": v}`` and ``{"op": "remove", "value": v, "tags": [cid, ...]}``, with
``v`` any IPLD value. Each add is tagged by its entry's CID. A remove names the add tags of ``v``
its writer had observed (:meth:`SetStore.tags_for` lists them) and cancels exactly those; ``v`` is
a member while some add tag of it is not cancelled. An add the remover had not seen (a concurrent
one) carries a tag the remove does not name, so it survives: add wins.

Values are identified by their canonical DAG-CBOR encoding, so equal values are one member
whatever their Python form, and members sort by it. Every structure here only grows (tags added,
tags cancelled), so the order of ops does not matter, and a repeated op adds nothing new.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from crdt.entry import Entry
from crdt.errors import DagCborEncodeError, InvalidOperation
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import encode
from crdt.stores.base import Store

__all__ = ["SetStore"]



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

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        # All keyed by the value's encoding.
        self._values: dict[bytes, Any] = {}
        self._adds: dict[bytes, set[CID]] = {}  # every add tag seen
        self._removed: dict[bytes, set[CID]] = {}  # every tag a remove of that value named
        self._live: dict[bytes, set[CID]] = {}  # adds minus removed; present iff non-empty

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        value, _tags = _read_op(payload)
        _encode(value)

    def apply(self, entry: Entry) -> bool:
        try:
            value, tags = _read_op(entry.payload)
            key = _encode(value)
        except InvalidOperation:
            return False
        self._values.setdefault(key, value)
        removed = self._removed.get(key)
        if tags is None:
            tag = entry.cid
            self._adds.setdefault(key, set()).add(tag)
            if removed is None or tag not in removed:
                self._live.setdefault(key, set()).add(tag)
            return True
        # A remove cancels only adds of its own value: tags naming anything else are inert.
        if removed is None:
            removed = self._removed[key] = set()
        removed.update(tags)
        live = self._live.get(key)
        if live is not None:
            live.difference_update(tags)
            if not live:
                del self._live[key]
        return True

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, value: object) -> bool:
        try:
            return encode(value) in self._live
        except DagCborEncodeError:
            return False

    def values(self) -> list[Any]:
        """The members, sorted by their DAG-CBOR encoding."""
        return [self._values[key] for key in sorted(self._live)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values())

    def tags_for(self, value: Any) -> list[CID]:
        """The uncancelled add tags of ``value``, ascending: what a remove of it must name."""
        try:
            key = encode(value)
        except DagCborEncodeError:
            return []
        return sorted(self._live.get(key, ()))

    def state(self) -> list[dict[str, Any]]:
        """``[{"value", "adds": [cid, ...], "removed": [cid, ...]}, ...]`` sorted by the value's
        encoding, for every value ever added or removed; tags ascending."""
        out: list[dict[str, Any]] = []
        for key in sorted(self._values):
            out.append(
                {
                    "value": self._values[key],
                    "adds": sorted(self._adds.get(key, ())),
                    "removed": sorted(self._removed.get(key, ())),
                }
            )
        return out
