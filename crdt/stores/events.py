"""The events store: an append-only feed, read in the log's total order.

Op: ``{"op": "add", "value": <any IPLD value>}``. Each add is one event, named by its entry's CID;
events are ordered by ``(clock, binary CID)``, the log's total order, whatever order they arrived
in. Ranges are given by event CIDs (``gt``, ``gte``, ``lt``, ``lte``), as positions in the feed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any, ClassVar

from crdt.entry import Entry
from crdt.errors import InvalidOperation, InvalidQuery
from crdt.ipld.cid import CID
from crdt.stores.base import SortedKeys, Store

__all__ = ["EventsStore"]


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

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        # (clock, binary CID) of every event, ascending. An event that arrives in order lands at
        # the end (a bisect and an append); a late one is a bisect and a move inside one chunk.
        self._order = SortedKeys()
        # binary CID -> (CID, clock, value)
        self._events: dict[bytes, tuple[CID, int, Any]] = {}

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        _read_add(payload)

    def apply(self, entry: Entry) -> bool:
        try:
            value = _read_add(entry.payload)
        except InvalidOperation:
            return False
        raw = entry.cid.bytes
        if raw not in self._events:
            self._events[raw] = (entry.cid, entry.clock, value)
            self._order.add((entry.clock, raw))
        return True

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, CID) and cid.bytes in self._events

    def get(self, cid: CID) -> Any:
        """The value of the event ``cid``; :class:`KeyError` if the feed has no such event."""
        return self._events[cid.bytes][2]

    def __iter__(self) -> Iterator[tuple[CID, Any]]:
        return self.iter()

    def _position(self, cid: CID) -> tuple[int, bytes]:
        found = self._events.get(cid.bytes) if isinstance(cid, CID) else None
        if found is None:
            raise InvalidQuery(f"{cid} is not an event of this feed")
        return found[1], cid.bytes

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
        touched. Raises :class:`~crdt.errors.InvalidQuery` for a bound that is not an event here,
        two lower or two upper bounds, or a negative limit.
        """
        if gt is not None and gte is not None:
            raise InvalidQuery("give gt or gte, not both")
        if lt is not None and lte is not None:
            raise InvalidQuery("give lt or lte, not both")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidQuery(f"limit must be a non-negative integer, not {limit!r}")
        low = None
        if gt is not None:
            low = (self._position(gt), False)
        elif gte is not None:
            low = (self._position(gte), True)
        high = None
        if lt is not None:
            high = (self._position(lt), False)
        elif lte is not None:
            high = (self._position(lte), True)
        return self._walk(low, high, not forward, limit)

    def _walk(
        self,
        low: tuple[Any, bool] | None,
        high: tuple[Any, bool] | None,
        reverse: bool,
        limit: int | None,
    ) -> Iterator[tuple[CID, Any]]:
        events = self._events
        for _clock, raw in islice(self._order.irange(low, high, reverse=reverse), limit):
            cid, _, value = events[raw]
            yield cid, value

    def state(self) -> list[list[Any]]:
        """``[[clock, cid, value], ...]`` in total order."""
        events = self._events
        return [[clock, events[raw][0], events[raw][2]] for clock, raw in self._order]
