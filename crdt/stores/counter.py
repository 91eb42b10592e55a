"""The counter store: a PN-counter.

Op: ``{"op": "inc", "by": <int>}``, where ``by`` may be negative and ``|by| <= 2**53`` (booleans
are not integers here). Each author has a total of increments ``p`` and of decrements ``n``; the
value is ``sum(p) - sum(n)``. Sums commute, so any order of the same ops gives the same totals;
the CIDs already counted make a repeated entry a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from crdt.entry import Entry
from crdt.errors import InvalidOperation
from crdt.stores.base import Store

__all__ = ["MAX_STEP", "CounterStore"]

#: The largest ``|by|`` of one op: integers up to this survive a trip through JSON and doubles.
MAX_STEP: Final = 2**53
_MAX_UINT64: Final = 2**64 - 1


def _read_inc(payload: Any) -> int:
    """The step of a well-formed inc op; :class:`InvalidOperation` otherwise."""
    if (
        type(payload) is not dict
        or len(payload) != 2
        or payload.get("op") != "inc"
        or "by" not in payload
    ):
        raise InvalidOperation('a counter op is {"op": "inc", "by": <int>}')
    by = payload["by"]
    if type(by) is not int:
        raise InvalidOperation(f"a counter step is an integer, not {type(by).__name__}")
    if not -MAX_STEP <= by <= MAX_STEP:
        raise InvalidOperation(f"a counter step is at most 2**53 in size, not {by}")
    return by


def _total(n: int) -> int | str:
    # Totals can outgrow the 64 bits DAG-CBOR integers hold (2**11 steps of 2**53 do); those are
    # written as decimal text. Each total still has exactly one form, so the state stays canonical.
    return n if n <= _MAX_UINT64 else str(n)


class CounterStore(Store):
    """A counter anyone allowed may increment or decrement."""

    type_name: ClassVar[str] = "counter"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        # author did -> [increments, decrements], both non-negative
        self._totals: dict[str, list[int]] = {}
        # Binary CIDs of the entries counted: a sum is not idempotent, this makes it so. It is
        # determined by the set of entries applied, so it is not part of :meth:`state`.
        self._applied: set[bytes] = set()
        self._value = 0

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        _read_inc(payload)

    def apply(self, entry: Entry) -> bool:
        try:
            by = _read_inc(entry.payload)
        except InvalidOperation:
            return False
        raw = entry.cid.bytes
        if raw in self._applied:
            return True
        self._applied.add(raw)
        totals = self._totals.get(entry.author)
        if totals is None:
            totals = self._totals[entry.author] = [0, 0]
        if by >= 0:
            totals[0] += by
        else:
            totals[1] -= by
        self._value += by
        return True

    @property
    def value(self) -> int:
        """The count: every author's increments minus every author's decrements."""
        return self._value

    def __int__(self) -> int:
        return self._value

    def __len__(self) -> int:
        """The number of authors who have counted."""
        return len(self._totals)

    def contributions(self) -> dict[str, tuple[int, int]]:
        """``{author: (increments, decrements)}``."""
        return {author: (p, n) for author, (p, n) in sorted(self._totals.items())}

    def state(self) -> dict[str, dict[str, int | str]]:
        """``{author: {"p": increments, "n": decrements}}``; totals past 64 bits as decimal text."""
        return {a: {"p": _total(p), "n": _total(n)} for a, (p, n) in self._totals.items()}
