"""The errors of the seeder: every one a :class:`~crdt.errors.GridnodeError`."""

from __future__ import annotations

from typing import Any

from crdt.errors import GridnodeError

__all__ = [
    "SeedConfigError",
    "SeedError",
    "SourceUnavailable",
    "UnmappableValue",
    "UnsupportedColumn",
]


class SeedError(GridnodeError):
    """The seeder cannot go on."""


class SeedConfigError(SeedError, ValueError):
    """A seed source is misconfigured (a missing option, an unknown table, key or column, a
    database of the wrong type); the message names what."""


class UnsupportedColumn(SeedConfigError):
    """A selected column's PostgreSQL type has no IPLD mapping (docs/seeding.md lists the
    types that have one): exclude the column, or change its type."""

    def __init__(self, table: str, column: str, type_name: str) -> None:
        self.table = table
        self.column = column
        self.type_name = type_name
        super().__init__(
            f"{table}.{column}: the PostgreSQL type {type_name} has no IPLD mapping "
            f"(exclude the column with --exclude {column}, or change its type)"
        )


class UnmappableValue(SeedError, ValueError):
    """A value in a row cannot be represented in IPLD (a NaN or infinite float or numeric, an
    infinite timestamp, an integer beyond 64 bits in a JSON value, ...). Names the row's key and
    the column; the seeder stops there (its position is not advanced), so nothing is skipped
    silently."""

    def __init__(self, table: str, key: Any, column: str, reason: str) -> None:
        self.table = table
        self.key = key
        self.column = column
        self.reason = reason
        super().__init__(f"{table} row {key!r}, column {column}: {reason}")


class SourceUnavailable(SeedError):
    """PostgreSQL cannot be reached (the seeder retries until it can)."""
