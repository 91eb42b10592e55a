"""The events store: an append-only feed, read in the log's total order.

Op: ``{"op": "add", "value": <any IPLD value>}``. Each add is one event, named by its entry's CID;
events are ordered by ``(clock, binary CID)``, the log's total order, whatever order they arrived
in. Ranges are given by event CIDs (``gt``, ``gte``, ``lt``, ``lte``), as positions in the feed.

Tables (see :mod:`crdt.stores.base`):

- ``events.feed``: ``clock (8 bytes, big-endian) + binary CID`` -> ``[value]`` (a list, since the
  value may be null), so key order is the total order;
- ``events.cids``: ``binary CID`` -> ``clock``: membership, and where an event sits in the feed;
- ``events.meta``: ``b"count"`` -> the number of events, and the state sum.

State rows (the digest): ``(b"feed", feed key, b"")`` per event.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from crdt.entry import Entry
from crdt.errors import InvalidOperation, InvalidQuery
from crdt.ipld.cid import CID
from crdt.space import Space
from crdt.stores.base import Store, add_to_count, read_count

__all__ = ["EventsStore"]

_COUNT: Final = b"count"
_FEED: Final = b"feed"
_pack_clock = struct.Struct(">Q").pack
_unpack_clock = struct.Struct(">Q").unpack_from
_parse_cid = CID.parse


def _read_add(payload: Any) -> Any:
    """The value of a well-formed add op; :class:`InvalidOperation` otherwise."""
    # Exactly the two keys: a length check and lookups are cheaper than comparing key sets.
    if (
        type(payload) is not dict
        or len(payload) != 2
        or payload.get("op") != "add"
        or "value" not in payload
    ):
        raise InvalidOperation('an events op is {"op": "add", "value": ...}')
    return payload["value"]


class EventsStore(Store):
    """An ordered feed of immutable events."""

    type_name: ClassVar[str] = "events"

    def __init__(
        self, options: Mapping[str, Any] | None = None, space: Space | None = None
    ) -> None:
        super().__init__(options, space)
        self._feed = self._table("feed")
        self._cids = self._table("cids")

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        _read_add(payload)

    def apply(self, entry: Entry) -> bool:
        try:
            value = _read_add(entry.payload)
        except InvalidOperation:
            return False
        raw = entry.cid.bytes
        # A CID fixes its entry's clock, so the feed key alone tells whether the event is in.
        key = _pack_clock(entry.clock) + raw
        if self._feed.get(key) is None:
            self._feed.put(key, [value])
            self._cids.put(raw, entry.clock)
            add_to_count(self._meta, _COUNT, 1)
            self._change_row(_FEED, key, None, b"")
        return True

    def data_rows(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """One row per event: its feed key (the CID in it fixes the value)."""
        for key, _row in self._feed.range():
            yield _FEED, key, b""

    def __len__(self) -> int:
        return read_count(self._meta, _COUNT)

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, CID) and self._cids.get(cid.bytes) is not None

    def get(self, cid: CID) -> Any:
        """The value of the event ``cid``; :class:`KeyError` if the feed has no such event."""
        clock = self._cids.get(cid.bytes) if isinstance(cid, CID) else None
        if clock is None:
            raise KeyError(cid)
        row = self._feed.get(_pack_clock(clock) + cid.bytes)
        assert row is not None, "events.cids and events.feed disagree"
        return row[0]

    def __iter__(self) -> Iterator[tuple[CID, Any]]:
        return self.iter()

    def _position(self, cid: CID) -> bytes:
        clock = self._cids.get(cid.bytes) if isinstance(cid, CID) else None
        if clock is None:
            raise InvalidQuery(f"{cid} is not an event of this feed")
        return _pack_clock(clock) + cid.bytes

    def iter(
        self,
        *,
        forward: bool = True,
        gt: CID | None = None,
        gte: CID | None = None,
        lt: CID | None = None,
        lte: CID | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[CID, Any]]:
        """``(cid, value)`` of the events in total order, oldest first (newest first if not
        ``forward``).

        ``gt``/``gte`` and ``lt``/``lte`` bound the range by the CIDs of events in the feed
        (exclusive/inclusive); ``limit`` caps how many are yielded. Only the events yielded are
        read (and one row per bound). Raises :class:`~crdt.errors.InvalidQuery` for a bound that
        is not an event here, two lower or two upper bounds, or a negative limit.
        """
        if gt is not None and gte is not None:
            raise InvalidQuery("give gt or gte, not both")
        if lt is not None and lte is not None:
            raise InvalidQuery("give lt or lte, not both")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidQuery(f"limit must be a non-negative integer, not {limit!r}")
        # Keys are all distinct and none is a prefix of another: ``key + 00`` is the smallest
        # byte string after ``key``, so it turns an exclusive bound into an inclusive one.
        low = None
        if gt is not None:
            low = self._position(gt) + b"\x00"
        elif gte is not None:
            low = self._position(gte)
        high = None
        if lt is not None:
            high = self._position(lt)
        elif lte is not None:
            high = self._position(lte) + b"\x00"
        return self._walk(low, high, not forward, limit)

    def _walk(
        self, low: bytes | None, high: bytes | None, reverse: bool, limit: int | None
    ) -> Iterator[tuple[CID, Any]]:
        for key, row in self._feed.range(low, high, reverse=reverse, limit=limit):
            yield _parse_cid(key[8:]), row[0]

    def state(self) -> list[list[Any]]:
        """``[[clock, cid, value], ...]`` in total order."""
        return [
            [_unpack_clock(key)[0], _parse_cid(key[8:]), row[0]] for key, row in self._feed.range()
        ]
