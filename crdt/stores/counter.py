"""The counter store: a PN-counter.

Op: ``{"op": "inc", "by": <int>}``, where ``by`` may be negative and ``|by| <= 2**53`` (booleans
are not integers here). Each author has a total of increments ``p`` and of decrements ``n``; the
value is ``sum(p) - sum(n)``. Sums commute, so any order of the same ops gives the same totals;
the CIDs already counted make a repeated entry a no-op.

Tables (see :mod:`crdt.stores.base`); totals beyond 64 bits are kept as decimal text:

- ``counter.applied``: ``binary CID`` -> the step, for every entry counted (a sum is not
  idempotent: this makes it so; it is determined by the entries applied, so not part of
  :meth:`CounterStore.state`);
- ``counter.totals``: the author's UTF-8 bytes -> ``[increments, decrements]``;
- ``counter.meta``: ``b"sum"`` -> ``[value, number of authors]``, and the state sum.

State rows (the digest): ``(b"totals", author, b"<increments>,<decrements>")`` per author.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from crdt.entry import Entry
from crdt.errors import InvalidOperation
from crdt.space import Space
from crdt.stores.base import Store, read_int, storable_int

__all__ = ["MAX_STEP", "CounterStore"]

#: The largest ``|by|`` of one op: integers up to this survive a trip through JSON and doubles.
MAX_STEP: Final = 2**53
_MAX_UINT64: Final = 2**64 - 1
_SUM: Final = b"sum"
_TOTALS: Final = b"totals"


def _fingerprint(p: int | str, n: int | str) -> bytes:
    """An author's totals as a row fingerprint: both in decimal, comma-separated."""
    return f"{read_int(p)},{read_int(n)}".encode()


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


def _author(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


class CounterStore(Store):
    """A counter anyone allowed may increment or decrement."""

    type_name: ClassVar[str] = "counter"

    def __init__(
        self, options: Mapping[str, Any] | None = None, space: Space | None = None
    ) -> None:
        super().__init__(options, space)
        self._applied = self._table("applied")
        self._totals = self._table("totals")

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        _read_inc(payload)

    def apply(self, entry: Entry) -> bool:
        try:
            by = _read_inc(entry.payload)
        except InvalidOperation:
            return False
        raw = entry.cid.bytes
        if self._applied.get(raw) is not None:
            return True
        self._applied.put(raw, by)
        author = entry.author.encode("utf-8", "surrogatepass")
        totals = self._totals.get(author)
        new_author = totals is None
        p, n = (0, 0) if totals is None else (read_int(totals[0]), read_int(totals[1]))
        if by >= 0:
            p += by
        else:
            n -= by
        self._totals.put(author, [_total(p), _total(n)])
        self._change_row(
            _TOTALS, author, None if totals is None else _fingerprint(*totals), _fingerprint(p, n)
        )
        value, authors = self._summary()
        self._meta.put(_SUM, [storable_int(value + by), authors + new_author])
        return True

    def _summary(self) -> tuple[int, int]:
        summary = self._meta.get(_SUM)
        return (0, 0) if summary is None else (read_int(summary[0]), summary[1])

    @property
    def value(self) -> int:
        """The count: every author's increments minus every author's decrements."""
        return self._summary()[0]

    def __int__(self) -> int:
        return self.value

    def __len__(self) -> int:
        """The number of authors who have counted."""
        return self._summary()[1]

    def contributions(self) -> dict[str, tuple[int, int]]:
        """``{author: (increments, decrements)}``."""
        return {_author(a): (read_int(p), read_int(n)) for a, (p, n) in self._totals.range()}

    def data_rows(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """One row per author: the totals, ``b"<increments>,<decrements>"`` in decimal."""
        for author, (p, n) in self._totals.range():
            yield _TOTALS, author, _fingerprint(p, n)

    def state(self) -> dict[str, dict[str, int | str]]:
        """``{author: {"p": increments, "n": decrements}}``; totals past 64 bits as decimal text."""
        return {_author(a): {"p": p, "n": n} for a, (p, n) in self._totals.range()}
