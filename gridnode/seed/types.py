"""PostgreSQL values as IPLD values: the one mapping the seeder uses (docs/seeding.md).

=============================================  ==============================================
PostgreSQL                                     IPLD (Python)
=============================================  ==============================================
NULL                                           null (``None``)
boolean                                        bool
smallint, integer, bigint                      int
numeric / decimal                              string: the exact decimal, no exponent
                                               (``"12.50"``; its scale kept); NaN and
                                               infinities are an error
real, double precision                         float; NaN and infinities are an error
text, varchar, char(n), name, enum types       string
uuid                                           string (lower case, with hyphens)
bytea                                          bytes
timestamp with time zone                       string, RFC 3339 in UTC with 6 fraction digits:
                                               ``"2024-05-01T12:00:00.000000Z"``
timestamp (without time zone)                  the same, the value read as UTC
date                                           string ``"2024-05-01"`` (RFC 3339 full-date)
time / time with time zone                     string ``"12:00:00.000000"`` (+ the offset,
                                               ``Z`` for zero)
json, jsonb                                    the JSON value: map, list, string, number, bool,
                                               null (an integer must fit in 64 bits)
arrays of any of these                         list (nested lists for more dimensions)
=============================================  ==============================================

Timestamps have a fixed width so that their strings sort in time order (a documents index on one
is an index by time). numeric is a string, not an int or float: a float would lose digits and
an int the scale, and IPLD integers stop at 64 bits. A column of any other type is refused when
the seeder starts (:class:`~gridnode.errors.UnsupportedColumn`); a value that cannot be
represented (``'NaN'::float8``, ``'infinity'::timestamptz``, a BC date) is an
:class:`~gridnode.errors.UnmappableValue` naming the row's key and the column.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any, Final

from gridnode.errors import UnmappableValue

__all__ = [
    "KEY_TYPES",
    "SCALAR_TYPES",
    "Unloadable",
    "install_loaders",
    "supported",
    "to_ipld",
]

#: pg_type.typname of the scalar types that map (arrays of them map too; so do enum types).
SCALAR_TYPES: Final = frozenset(
    {
        "bool",
        "int2",
        "int4",
        "int8",
        "numeric",
        "float4",
        "float8",
        "text",
        "varchar",
        "bpchar",
        "name",
        "uuid",
        "bytea",
        "timestamptz",
        "timestamp",
        "date",
        "time",
        "timetz",
        "json",
        "jsonb",
    }
)

#: Types a key column may have: its values become document ids (strings or integers).
KEY_TYPES: Final = frozenset({"int2", "int4", "int8", "text", "varchar", "bpchar", "name", "uuid"})

_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 63) - 1


def supported(typname: str, typtype: str, elem: str | None, elem_type: str | None) -> bool:
    """Whether a column of this type maps (``elem``: the element type of an array type)."""
    if elem is not None:
        return elem in SCALAR_TYPES or elem_type == "e"
    return typname in SCALAR_TYPES or typtype == "e"


class Unloadable:
    """A value psycopg could not turn into a Python value (an infinite or BC timestamp)."""

    __slots__ = ("reason", "text")

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def install_loaders(connection: Any) -> None:
    """Make timestamps, dates and times that Python cannot hold load as :class:`Unloadable`
    (then named with their row and column) instead of failing the whole fetch."""
    import psycopg
    from psycopg.types import datetime as pgdt

    def tolerant(base: type) -> type:
        class Tolerant(base):  # type: ignore[misc]
            def load(self, data: Any) -> Any:
                try:
                    return super().load(data)
                except psycopg.DataError as exc:
                    return Unloadable(bytes(data).decode("utf-8", "replace"), str(exc))

        return Tolerant

    adapters = connection.adapters
    adapters.register_loader("timestamptz", tolerant(pgdt.TimestamptzLoader))
    adapters.register_loader("timestamp", tolerant(pgdt.TimestampLoader))
    adapters.register_loader("date", tolerant(pgdt.DateLoader))


def _fraction(value: dt.datetime | dt.time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"


def _offset(delta: dt.timedelta | None) -> str:
    if not delta:
        return "Z"
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, extra = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}"
    return text + (f":{extra:02d}" if extra else "")


def _timestamp(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{_fraction(value)}Z"


def to_ipld(value: Any, *, table: str, key: Any, column: str) -> Any:
    """The IPLD value of one column's value (see the module docstring); raises
    :class:`UnmappableValue` naming ``table``, ``key`` and ``column``."""

    def fail(reason: str) -> UnmappableValue:
        return UnmappableValue(table, key, column, reason)

    def convert(value: Any, depth: int) -> Any:
        if depth > 64:
            raise fail("nested more than 64 levels deep")
        kind = type(value)
        if value is None or kind is str or kind is bool:
            return value
        if kind is int:
            if not _INT_MIN <= value <= _INT_MAX:
                text = str(value)
                if len(text) > 30:
                    text = f"{text[:20]}... ({len(text)} digits)"
                raise fail(f"the integer {text} does not fit in 64 bits (IPLD integers)")
            return value
        if kind is float:
            if not math.isfinite(value):
                raise fail(f"the float {value!r} is not representable in IPLD (NaN or infinite)")
            return value
        if kind is Decimal:
            if not value.is_finite():
                raise fail(f"the numeric {value} is not representable in IPLD (NaN or infinite)")
            return format(value, "f")
        if kind is bytes:
            return value
        if kind is bytearray or kind is memoryview:
            return bytes(value)
        if kind is dt.datetime:
            return _timestamp(value)
        if kind is dt.date:
            return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        if kind is dt.time:
            return _fraction(value) + (_offset(value.utcoffset()) if value.tzinfo else "")
        if kind is uuid.UUID:
            return str(value)
        if kind is list or kind is tuple:
            return [convert(item, depth + 1) for item in value]
        if kind is dict:
            out = {}
            for name, item in value.items():
                if type(name) is not str:
                    raise fail(f"a map key {name!r} is not a string")
                out[name] = convert(item, depth + 1)
            return out
        if kind is Unloadable:
            raise fail(f"{value.text!r} is not representable ({value.reason})")
        raise fail(f"a {kind.__name__} value has no IPLD mapping")

    return convert(value, 0)
