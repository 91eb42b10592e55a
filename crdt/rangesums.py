"""Range fingerprints over a log's entries, kept up to date so a range query reads a few rows.

Set reconciliation (:mod:`protocols.reconcile`) compares *items*: the keys of ``log.order``,
an entry's clock (8 bytes, big-endian) followed by its binary CID, so items sort in the log's
total order. The fingerprint of a range of items is :func:`fingerprint_of` its count and the sum,
modulo 2**256, of :func:`item_hash` of each item. Sums add, so they can be kept per bucket:

- table ``log.sums`` holds, for every level ``l`` in 1..:data:`LEVELS` and every bucket ``b``
  (the clocks ``[b * 16**l, (b + 1) * 16**l)``), the count and hash sum of the entries whose
  clock falls in it: key ``l`` (1 byte) + ``b`` (8 bytes), value ``[count, sum (32 bytes)]``.
  Every applied entry adds itself to one bucket per level.
- the aggregate of any range is then the sum of the buckets that tile the clocks it covers whole
  (largest first), plus the entries of the few clocks at its edges that no bucket fits (at most
  15 clocks a side), read from ``log.order``. A range whose bounds are multiples of a power of
  16 (the bounds :meth:`LogItems.split` makes) costs one row per bucket and no scan.

:class:`LogItems` answers what a reconciler asks (count, fingerprint, items, split) from these
tables. Pure: it reads and writes the log's :class:`~crdt.space.Space` and nothing else.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING, Final

from crdt.space import Table

if TYPE_CHECKING:
    from crdt.log import Log

__all__ = ["LEVELS", "TOP", "LogItems", "RangeSums", "fingerprint_of", "item_hash"]

_MOD: Final = 1 << 256
#: Levels of buckets kept: 16, 256, ..., 16**LEVELS clocks.
LEVELS: Final = 5
#: An upper bound above every item.
TOP: Final = b"\xff" * 48
_u64 = struct.Struct(">Q")
_CACHE_LIMIT: Final = 4096


def item_hash(item: bytes) -> int:
    """An item's contribution to the sum: its SHA-256 as a 256-bit big-endian integer."""
    return int.from_bytes(hashlib.sha256(item).digest(), "big")


def fingerprint_of(count: int, total: int) -> bytes:
    """The 16-byte fingerprint of a range holding ``count`` items whose hashes sum to ``total``."""
    return hashlib.sha256(count.to_bytes(8, "big") + (total % _MOD).to_bytes(32, "big")).digest()[
        :16
    ]


def _bucket_key(level: int, bucket: int) -> bytes:
    return bytes((level,)) + _u64.pack(bucket)


class RangeSums:
    """The ``log.sums`` table: per-bucket counts and hash sums, updated as entries are applied.

    Rows read are cached (bounded); the log drops the whole object when a transaction rolls
    back, so the cache never outlives what is on disk."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._cache: dict[bytes, tuple[int, int]] = {}
        #: Buckets changed since the last :meth:`flush` (the log flushes at the end of each
        #: append and join, inside their transaction).
        self._dirty: set[bytes] = set()

    def _get(self, key: bytes) -> tuple[int, int]:
        found = self._cache.get(key)
        if found is None:
            value = self._table.get(key)
            found = (0, 0) if value is None else (int(value[0]), int.from_bytes(value[1], "big"))
            if len(self._cache) >= _CACHE_LIMIT:
                self.flush()
                self._cache.clear()
            self._cache[key] = found
        return found

    def add(self, item: bytes) -> None:
        """Count one applied entry (its ``log.order`` key)."""
        clock = _u64.unpack_from(item)[0]
        h = item_hash(item)
        cache, dirty = self._cache, self._dirty
        for level in range(1, LEVELS + 1):
            key = _bucket_key(level, clock >> (4 * level))
            count, total = cache.get(key) or self._get(key)
            cache[key] = (count + 1, (total + h) % _MOD)
            dirty.add(key)

    def flush(self) -> None:
        """Write the changed buckets to the table."""
        for key in self._dirty:
            count, total = self._cache[key]
            self._table.put(key, [count, total.to_bytes(32, "big")])
        self._dirty.clear()

    def bucket(self, level: int, index: int) -> tuple[int, int]:
        """``(count, sum)`` of bucket ``index`` at ``level``."""
        return self._get(_bucket_key(level, index))


def _clock_of_bound(bound: bytes) -> tuple[int, bool]:
    """The clock a bound falls in, and whether it falls exactly on that clock's start."""
    if len(bound) <= 8:
        return _u64.unpack(bound.ljust(8, b"\x00"))[0], True
    return _u64.unpack_from(bound)[0], False


class LogItems:
    """A reconciler's view of a log's applied entries (see :class:`protocols.reconcile.ItemSet`).

    Bounds are byte strings: lower inclusive, upper exclusive."""

    def __init__(self, log: Log) -> None:
        self._log = log
        self._order = log.space.table("log.order")
        self._sums = log.sums

    # -- aggregates ---------------------------------------------------------------------------

    def _scan(self, low: bytes, high: bytes) -> tuple[int, int]:
        count = total = 0
        for key, _ in self._order.range(low, high):
            count += 1
            total += item_hash(key)
        return count, total

    def _clock_span(self, low: bytes, high: bytes) -> tuple[int, int, bytes | None, bytes | None]:
        """The whole clocks ``[first, end)`` a range covers, and the partial edges to scan."""
        top = self._log.clock + 1
        first, exact = _clock_of_bound(low)
        head: bytes | None = None
        if not exact:
            head = low
            first += 1
        if high >= _u64.pack(top):
            end, tail = top, None
        else:
            end, exact = _clock_of_bound(high)
            tail = None if exact else high
        return first, end, head, tail

    def aggregate(self, low: bytes, high: bytes) -> tuple[int, int]:
        """``(count, hash sum)`` of the items in ``[low, high)``."""
        if high <= low:
            return 0, 0
        first, end, head, tail = self._clock_span(low, high)
        count = total = 0
        if head is not None:
            c, t = self._scan(head, min(high, _u64.pack(first)) if first < (1 << 64) else high)
            count, total = count + c, total + t
            if tail is not None and first > end:
                return count, total % _MOD  # the range lies inside one clock
        if tail is not None:
            c, t = self._scan(max(_u64.pack(end), low), tail)
            count, total = count + c, total + t
        clock = first
        scan_from: int | None = None
        while clock < end:
            level = 0
            while (
                level < LEVELS
                and clock % (16 ** (level + 1)) == 0
                and clock + 16 ** (level + 1) <= end
            ):
                level += 1
            if level == 0:
                if scan_from is None:
                    scan_from = clock
                clock += 1
                continue
            if scan_from is not None:
                c, t = self._scan(_u64.pack(scan_from), _u64.pack(clock))
                count, total, scan_from = count + c, total + t, None
            c, t = self._sums.bucket(level, clock >> (4 * level))
            count, total = count + c, total + t
            clock += 16**level
        if scan_from is not None:
            c, t = self._scan(_u64.pack(scan_from), _u64.pack(end))
            count, total = count + c, total + t
        return count, total % _MOD

    def count(self, low: bytes, high: bytes) -> int:
        return self.aggregate(low, high)[0]

    def fingerprint(self, low: bytes, high: bytes) -> bytes:
        count, total = self.aggregate(low, high)
        return fingerprint_of(count, total)

    def items(self, low: bytes, high: bytes) -> list[bytes]:
        if high <= low:
            return []
        return [key for key, _ in self._order.range(low, high)]

    # -- splitting ----------------------------------------------------------------------------

    def split(self, low: bytes, high: bytes, parts: int) -> list[bytes]:
        """Inner bounds cutting ``[low, high)`` into at most ``parts`` pieces: at multiples of a
        power of 16 clocks when the range spans several clocks (so both sides answer from
        buckets), else (one clock holding many entries) at items, by count."""
        first, _ = _clock_of_bound(low)
        top = self._log.clock + 1
        if high >= _u64.pack(top):
            end = max(top, first + 1)
        else:
            end, exact = _clock_of_bound(high)
            end += 0 if exact else 1
        if end - first <= 1:
            inside = self.items(low, high)
            bounds: list[bytes] = []
            for k in range(1, parts):
                item = inside[len(inside) * k // parts] if inside else None
                if item is not None and item > low and (not bounds or item > bounds[-1]):
                    bounds.append(item)
            return bounds
        step = 1
        while step * parts < end - first:
            step *= 16
        bounds = []
        clock = (first // step + 1) * step
        while clock < end:
            bound = _u64.pack(clock)
            if low < bound < high:
                bounds.append(bound)
            clock += step
        return bounds

    def recent_bounds(self, newest: int = 16) -> list[bytes]:
        """Cuts for a first message that looks closely at the newest entries: at the clock of
        the ``newest``-th last entry, then 256 clocks below the top, 4096, and so on (aligned),
        ascending."""
        top = self._log.clock + 1
        last = [key for key, _ in self._order.range(reverse=True, limit=newest)]
        if len(last) < newest:
            return []
        first_cut = _u64.unpack_from(last[-1])[0]
        cuts = {first_cut}
        span = 256
        while span < top and span <= 16**LEVELS:
            unit = span // 16
            cut = (top - span) // unit * unit
            if cut < first_cut:
                cuts.add(cut)
            span *= 16
        return [_u64.pack(c) for c in sorted(cuts) if c > 0]
