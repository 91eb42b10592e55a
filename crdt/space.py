"""Where the log and the stores keep their state: named tables of ordered byte keys.

The log and every store read and write their state only through :class:`Space` and
:class:`Table`, so the same code (the CRDT logic, written once) runs over memory
(:class:`MemorySpace`, here) or over the node's SQLite file (``gridnode.storage``), where a whole
join is one transaction. Keys are bytes, ordered bytewise; values are IPLD data model values
(a persistent space stores them as DAG-CBOR).

Values handed out must not be mutated by callers; values handed in are not mutated afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from crdt.sortedkeys import SortedKeys

__all__ = ["MemorySpace", "MemoryTable", "Space", "Table", "absent_keys"]


class Table(Protocol):
    """One named table: an ordered map from byte keys to IPLD values."""

    def get(self, key: bytes) -> Any | None:
        """The value under ``key``, or ``None`` if there is none (so ``None`` is never stored)."""

    def put(self, key: bytes, value: Any) -> None:
        """Set ``key`` to ``value`` (not ``None``)."""

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; return whether it was there."""

    def range(
        self,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, Any]]:
        """``(key, value)`` with ``low <= key < high`` in key order (descending if ``reverse``)."""

    def __len__(self) -> int: ...


class Space(Protocol):
    """A set of tables, created on first use."""

    def table(self, name: str) -> Table: ...


def absent_keys(table: Table, keys: list[bytes]) -> set[bytes]:
    """Those of ``keys`` that ``table`` does not hold: one query for a whole batch where the
    table offers ``absent`` (a persistent table), else a lookup per key."""
    batch = getattr(table, "absent", None)
    if batch is not None:
        found: set[bytes] = batch(keys)
        return found
    return {k for k in keys if table.get(k) is None}


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (``None``: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


class MemoryTable:
    """A :class:`Table` in memory: a dict for lookups and sorted keys for ranges."""

    __slots__ = ("_keys", "_values")

    def __init__(self) -> None:
        self._values: dict[bytes, Any] = {}
        self._keys = SortedKeys()

    def get(self, key: bytes) -> Any | None:
        return self._values.get(key)

    def absent(self, keys: list[bytes]) -> set[bytes]:
        values = self._values
        return {k for k in keys if k not in values}

    def put(self, key: bytes, value: Any) -> None:
        if key not in self._values:
            self._keys.add(key)
        self._values[key] = value

    def delete(self, key: bytes) -> bool:
        if key in self._values:
            del self._values[key]
            self._keys.remove(key)
            return True
        return False

    def range(
        self,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, Any]]:
        if limit is not None and limit <= 0:
            return
        values = self._values
        keys = self._keys.irange(
            None if low is None else (low, True),
            None if high is None else (high, False),
            reverse=reverse,
        )
        for count, key in enumerate(keys, 1):
            yield key, values[key]
            if count == limit:
                return

    def __len__(self) -> int:
        return len(self._values)


class MemorySpace:
    """A :class:`Space` in memory."""

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[str, MemoryTable] = {}

    def table(self, name: str) -> MemoryTable:
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = MemoryTable()
        return table
