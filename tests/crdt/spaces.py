"""Spaces for testing the stores: one that stores values as a persistent space does, and one that
counts the rows a store reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from crdt.ipld import decode, encode
from crdt.space import MemorySpace, MemoryTable, Space, Table


class EncodedTable:
    """A table that keeps each value as its DAG-CBOR encoding and decodes a fresh copy on every
    read, as the SQLite space does: a store that puts what DAG-CBOR cannot hold fails here, and
    so does one that relies on mutating a value after the put or on getting the same object."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows = MemoryTable()

    def get(self, key: bytes) -> Any | None:
        assert type(key) is bytes, f"a key is bytes, not {type(key).__name__}"
        raw = self._rows.get(key)
        return None if raw is None else decode(raw)

    def put(self, key: bytes, value: Any) -> None:
        assert type(key) is bytes, f"a key is bytes, not {type(key).__name__}"
        assert value is not None, "None is never stored"
        self._rows.put(key, encode(value))  # raises DagCborEncodeError for a non-IPLD value

    def delete(self, key: bytes) -> bool:
        assert type(key) is bytes, f"a key is bytes, not {type(key).__name__}"
        return self._rows.delete(key)

    def range(
        self,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, Any]]:
        for key, raw in self._rows.range(low, high, reverse=reverse, limit=limit):
            yield key, decode(raw)

    def __len__(self) -> int:
        return len(self._rows)


class EncodedSpace:
    """A :class:`~crdt.space.Space` of :class:`EncodedTable`."""

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[str, EncodedTable] = {}

    def table(self, name: str) -> EncodedTable:
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = EncodedTable()
        return table

    def names(self) -> list[str]:
        return sorted(self._tables)


class CountingTable:
    """A table of another space that counts the rows read: one per ``get``, one per row a
    ``range`` yields; and the writes."""

    def __init__(self, inner: Table, counts: Counter[str]) -> None:
        self._inner = inner
        self._counts = counts

    def get(self, key: bytes) -> Any | None:
        self._counts["reads"] += 1
        return self._inner.get(key)

    def put(self, key: bytes, value: Any) -> None:
        self._counts["writes"] += 1
        self._inner.put(key, value)

    def delete(self, key: bytes) -> bool:
        self._counts["writes"] += 1
        return self._inner.delete(key)

    def range(
        self,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, Any]]:
        for row in self._inner.range(low, high, reverse=reverse, limit=limit):
            self._counts["reads"] += 1
            yield row

    def __len__(self) -> int:
        self._counts["len"] += 1
        return len(self._inner)


class CountingSpace:
    """Wraps a space (a new :class:`MemorySpace` by default); ``counts`` has ``reads``,
    ``writes`` and ``len`` (calls of ``len()`` on a table, which a store must not need)."""

    def __init__(self, inner: Space | None = None) -> None:
        self.inner: Space = MemorySpace() if inner is None else inner
        self.counts: Counter[str] = Counter()
        self._tables: dict[str, CountingTable] = {}

    def table(self, name: str) -> CountingTable:
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = CountingTable(self.inner.table(name), self.counts)
        return table

    def reset(self) -> None:
        self.counts.clear()

    @property
    def reads(self) -> int:
        return self.counts["reads"]

    @property
    def writes(self) -> int:
        return self.counts["writes"]


#: The spaces every store test runs over, by name.
SPACES: dict[str, type[MemorySpace] | type[EncodedSpace]] = {
    "memory": MemorySpace,
    "encoded": EncodedSpace,
}


def dump(space: Space) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every row of every non-empty table of a :class:`MemorySpace` or :class:`EncodedSpace`,
    values encoded: two spaces holding the same state dump equal."""
    assert isinstance(space, (MemorySpace, EncodedSpace))
    tables: dict[str, Any] = space._tables
    out = {}
    for name in sorted(tables):
        rows = [(key, encode(value)) for key, value in tables[name].range()]
        if rows:
            out[name] = rows
    return out
