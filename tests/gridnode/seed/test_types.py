"""PostgreSQL values to IPLD: every mapped type read from a real server, and the values and
types that have no mapping."""

import datetime as dt
import uuid
from decimal import Decimal

import psycopg
import pytest

from crdt.errors import GridnodeError
from crdt.ipld import decode, encode
from gridnode.seed import UnmappableValue, UnsupportedColumn
from gridnode.seed.config import PostgresSource
from gridnode.seed.postgres import PostgresSide
from gridnode.seed.types import to_ipld


def read(dsn, columns, values, key="id"):
    """Create a one-row table with ``columns``, insert ``values`` and read the row through the
    seeder's PostgreSQL side."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute(f"CREATE TABLE t (id integer PRIMARY KEY, {columns})")
        conn.execute(f"INSERT INTO t VALUES (1, {values})")
    side = PostgresSide(PostgresSource(dsn=dsn, table="t", key=key, address="/gridnode/x"))
    try:
        side.describe()
        (change,) = side.snapshot(None, 10)
        return change.row
    finally:
        side.close()


CASES = [
    (
        "a smallint, b integer, c bigint",
        "-3, 2147483647, -9223372036854775808",
        {"a": -3, "b": 2147483647, "c": -9223372036854775808},
    ),
    (
        "a numeric(10,2), b numeric, c numeric",
        "12.50, 0.00000001, -123456789012345678901234567890",
        {"a": "12.50", "b": "0.00000001", "c": "-123456789012345678901234567890"},
    ),
    ("a real, b double precision", "1.5, -0.1", {"a": 1.5, "b": -0.1}),
    ("a boolean, b boolean", "true, NULL", {"a": True, "b": None}),
    (
        "a text, b varchar(5), c char(4), d name",
        "'héllo', 'abc', 'ab', 'n'",
        {"a": "héllo", "b": "abc", "c": "ab  ", "d": "n"},
    ),
    (
        "a uuid",
        "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
        {"a": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
    ),
    ("a bytea", "'\\x00ff10'::bytea", {"a": b"\x00\xff\x10"}),
    (
        "a timestamptz, b timestamptz",
        "'2024-05-01 14:00:00+02', '2024-05-01 12:00:00.5Z'",
        {"a": "2024-05-01T12:00:00.000000Z", "b": "2024-05-01T12:00:00.500000Z"},
    ),
    ("a timestamp", "'0099-12-31 23:59:59.999999'", {"a": "0099-12-31T23:59:59.999999Z"}),
    (
        "a date, b time, c timetz",
        "'2024-02-29', '08:30', '08:30:00.25-05:30'",
        {"a": "2024-02-29", "b": "08:30:00.000000", "c": "08:30:00.250000-05:30"},
    ),
    (
        "a json, b jsonb",
        """'{"z": [1, 2.5, "x", null, true]}', '{"b": {"c": []}, "a": 1}'""",
        {"a": {"z": [1, 2.5, "x", None, True]}, "b": {"a": 1, "b": {"c": []}}},
    ),
    (
        "a integer[], b text[], c numeric[], d integer[][]",
        "'{1,NULL,3}', '{x,\"y z\"}', '{1.10}', '{{1,2},{3,4}}'",
        {"a": [1, None, 3], "b": ["x", "y z"], "c": ["1.10"], "d": [[1, 2], [3, 4]]},
    ),
    ("a timestamptz[]", "'{2024-01-01T00:00:00Z}'", {"a": ["2024-01-01T00:00:00.000000Z"]}),
]


@pytest.mark.parametrize(("columns", "values", "want"), CASES, ids=[c[0] for c in CASES])
def test_mapped_types(pg_dsn, columns, values, want):
    row = read(pg_dsn, columns, values)
    assert row == {"id": 1, **want}
    # Every mapped value is IPLD: it encodes to DAG-CBOR and decodes to itself.
    assert decode(encode(row)) == row


def test_enum_columns_are_strings(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok')")
    assert read(pg_dsn, "m mood, ms mood[]", "'ok', '{sad,ok}'") == {
        "id": 1,
        "m": "ok",
        "ms": ["sad", "ok"],
    }


UNMAPPABLE = [
    ("x double precision", "'NaN'", "NaN"),
    ("x real", "'Infinity'", "inf"),
    ("x numeric", "'NaN'", "NaN"),
    ("x numeric", "'-Infinity'", "Infinity"),
    ("x timestamptz", "'infinity'", "infinity"),
    ("x timestamp", "'-infinity'", "infinity"),
    ("x date", "'0044-03-15 BC'", "BC"),
    ("x jsonb", "'{\"n\": 18446744073709551616}'", "64 bits"),
    ("x json", "'[1e400]'", "NaN or infinite"),
    ("x jsonb", "'[1e400]'", "(401 digits) does not fit in 64 bits"),
    ("x float8[]", "'{1, NaN}'", "NaN"),
]


@pytest.mark.parametrize(
    ("column", "value", "reason"), UNMAPPABLE, ids=[f"{c[0]}={c[1]}" for c in UNMAPPABLE]
)
def test_unmappable_values_name_the_row_and_column(pg_dsn, column, value, reason):
    with pytest.raises(UnmappableValue) as caught:
        read(pg_dsn, column, value)
    error = caught.value
    assert isinstance(error, GridnodeError)
    assert (error.table, error.key, error.column) == ("t", 1, "x")
    assert reason in str(error)
    assert str(error).startswith("t row 1, column x: ")


@pytest.mark.parametrize(
    "sql_type", ["interval", "money", "point", "inet", "xml", "tsvector", "interval[]"]
)
def test_types_without_a_mapping_are_refused_at_start(pg_dsn, sql_type):
    with pytest.raises(UnsupportedColumn) as caught:
        read(pg_dsn, f"x {sql_type}", "NULL")
    assert caught.value.column == "x"
    assert "--exclude x" in str(caught.value)


def test_keys_of_other_types_are_refused(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE f (id float8 PRIMARY KEY)")
    side = PostgresSide(PostgresSource(dsn=pg_dsn, table="f", key="id", address="/gridnode/x"))
    try:
        with pytest.raises(GridnodeError, match="a key column is an integer, text or uuid column"):
            side.describe()
    finally:
        side.close()


def test_to_ipld_on_python_values():
    def m(value):
        return to_ipld(value, table="t", key="k", column="c")

    assert m(Decimal("1E+3")) == "1000"
    assert m(Decimal("-0.0010")) == "-0.0010"
    assert (
        m(dt.datetime(2024, 1, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))))
        == "2024-01-01T00:00:00.000000Z"
    )
    assert m(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert m(memoryview(b"ab")) == b"ab"
    assert m((1, [2])) == [1, [2]]
    with pytest.raises(UnmappableValue, match="a map key 1 is not a string"):
        m({1: 2})
    with pytest.raises(UnmappableValue, match="a complex value has no IPLD mapping"):
        m(1j)
    with pytest.raises(UnmappableValue, match="nested more than 64"):
        value = []
        for _ in range(70):
            value = [value]
        m(value)
