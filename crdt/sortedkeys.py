"""Distinct, mutually comparable keys kept in ascending order, with cheap inserts and ranges."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["SortedKeys"]

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
