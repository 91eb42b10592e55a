"""Recovery on a real PostgreSQL server: a seeded table of every mapped type comes back exactly
(excluded columns NULL), a non-empty table is refused unless forced, a killed recovery resumes
without loading a row twice, and a schema that is not usable is refused."""

import psycopg
import pytest
import trio

from gridnode.errors import RecoverError, TableNotEmpty
from gridnode.repo import Repo
from gridnode.seed.config import PostgresSource
from gridnode.seed.recover import SCHEMA_KEY, Recovery, check_schema
from gridnode.seed.seeder import Seeder

TIMEOUT = 120

CREATE = """
CREATE TABLE items (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  label varchar(20),
  code char(3),
  price numeric(12,2),
  ratio double precision,
  small real,
  flag boolean,
  uid uuid,
  blob bytea,
  at timestamptz,
  local timestamp,
  day date,
  clock time,
  zclock timetz,
  doc jsonb,
  tags text[],
  amounts numeric[],
  grid integer[][],
  secret text NOT NULL
)
"""

INSERT = """
INSERT INTO items
SELECT i, 'name ' || i, 'label ' || (i %% 7), 'c' || (i %% 10), (i * 1.25)::numeric(12,2),
       i / 3.0, (i / 7.0)::real, i %% 2 = 0, md5(i::text)::uuid, decode(md5(i::text), 'hex'),
       '2024-05-01 12:00:00.123456+02'::timestamptz + i * interval '1 minute',
       '2024-05-01 08:30:00'::timestamp + i * interval '1 second',
       '2024-05-01'::date + i, '12:00:00.5'::time, '13:14:15+02'::timetz,
       jsonb_build_object('n', i, 'big', 12345678901234, 'list', jsonb_build_array(1, 'two', null),
                          'f', 1.5, 's', 'x"y\\z'),
       ARRAY['a' || i, 'b,"c', NULL], ARRAY[i * 0.5, 10.10]::numeric[],
       ARRAY[[i, 2], [3, 4]], 'secret ' || i
FROM generate_series(1, %s) AS i
"""


def schema_of_table(dsn, table, key, excluded):
    """The SCHEMA map of the contract (docs/spec.md), read from PostgreSQL's catalog: what the
    seeder records (written here by the tests that run without it)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, a.attnotnull "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (table,),
        ).fetchall()
    return {
        "version": 1,
        "table": table,
        "key": key,
        "columns": [
            {"name": n, "type": t, "typname": tn, "nullable": not nn} for n, t, tn, nn in rows
        ],
        "excluded": list(excluded),
        "primary_key": [key],
    }


def seed(repo, dsn, address, rows, *, table="items", exclude=("secret",), store="documents"):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(CREATE)
        if rows:
            conn.execute(INSERT, (rows,))
    address = repo.create_database(address, store).address
    src = PostgresSource(dsn=dsn, table=table, key="id", address=address, exclude=exclude)

    async def main():
        seeder = Seeder.for_repo(repo, src)
        async with trio.open_nursery() as nursery:
            await nursery.start(seeder.run)
            await seeder.wait_idle(TIMEOUT)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return repo.database(address), schema_of_table(dsn, table, "id", exclude)


def rows_as_text(dsn, query):
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(query).fetchall()]


ORIGINAL = "SELECT (t.*)::text FROM (SELECT {cols} FROM items ORDER BY id) AS t"


def columns(dsn, null=("secret",)):
    with psycopg.connect(dsn) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            ).fetchall()
        ]
    return ", ".join(f"NULL::text AS {n}" if n in null else n for n in names)


@pytest.mark.parametrize("store", ["documents", "keyvalue"])
def test_every_mapped_type_comes_back_exactly(tmp_path, postgres_server, store):
    source_dsn = postgres_server.create_database()
    target_dsn = postgres_server.create_database()
    with Repo(tmp_path / "node") as repo:
        database, schema = seed(repo, source_dsn, "items", 120, store=store)
        seen = []
        report = Recovery(database, target_dsn, schema=schema, batch=50, progress=seen.append).run()
    assert report.rows == 120 and report.verified == 120 and report.created
    assert report.nulled == ("secret",)
    assert [p.rows for p in seen if p.phase == "load"] == [0, 50, 100, 120]
    expected = rows_as_text(source_dsn, ORIGINAL.format(cols=columns(source_dsn)))
    got = rows_as_text(target_dsn, ORIGINAL.format(cols=columns(target_dsn, null=())))
    assert got == expected
    with psycopg.connect(target_dsn) as conn:
        # The primary key is back; the excluded NOT NULL column is nullable, and NULL.
        assert conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'items'::regclass AND indisprimary"
        ).fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM items WHERE secret IS NULL").fetchone() == (120,)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO items (id, name) VALUES (1, 'dup')")


def test_a_non_empty_table_is_refused_unless_forced(tmp_path, postgres_server):
    source_dsn = postgres_server.create_database()
    target_dsn = postgres_server.create_database()
    with Repo(tmp_path / "node") as repo:
        database, schema = seed(repo, source_dsn, "items", 10)
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id bigint, name text, extra text)")
            conn.execute("INSERT INTO items VALUES (999, 'kept', 'x')")
        with pytest.raises(TableNotEmpty, match="--force"):
            Recovery(database, target_dsn, schema=schema).run()
        assert rows_as_text(target_dsn, "SELECT name FROM items") == ["kept"]
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE items")
            # An existing table is used as it is: its excluded column must take NULL.
            conn.execute(CREATE.replace("secret text NOT NULL", "secret text"))
            conn.execute("INSERT INTO items (id, name, secret) VALUES (999, 'gone', 's')")
        report = Recovery(database, target_dsn, schema=schema, force=True).run()
    assert report.rows == 10 and not report.created
    assert rows_as_text(target_dsn, "SELECT id::text FROM items ORDER BY id::bigint") == [
        str(i) for i in range(1, 11)
    ]


def test_a_killed_recovery_resumes_and_loads_every_row_once(tmp_path, postgres_server, monkeypatch):
    source_dsn = postgres_server.create_database()
    target_dsn = postgres_server.create_database()
    with Repo(tmp_path / "node") as repo:
        database, schema = seed(repo, source_dsn, "items", 95)
        recorded = []
        original = Recovery._record

        def dying(self, position):
            # The third batch commits in PostgreSQL, then the process "dies" before its
            # position is recorded.
            if position["rows"] == 30:
                raise KeyboardInterrupt
            recorded.append(position["rows"])
            original(self, position)

        monkeypatch.setattr(Recovery, "_record", dying)
        with pytest.raises(KeyboardInterrupt):
            Recovery(database, target_dsn, schema=schema, batch=10).run()
        assert recorded == [0, 10, 20]
        assert rows_as_text(target_dsn, "SELECT count(*)::text FROM items") == ["30"]
        monkeypatch.setattr(Recovery, "_record", original)
        # Not refused although the table is not empty: the node knows it is its own.
        report = Recovery(database, target_dsn, schema=schema, batch=10).run()
    assert report.resumed_at == 20 and report.rows == 95 and report.verified == 95
    assert rows_as_text(target_dsn, "SELECT count(DISTINCT id)::text FROM items") == ["95"]
    assert rows_as_text(target_dsn, "SELECT count(*)::text FROM items") == ["95"]


def test_a_finished_recovery_run_again_is_refused(tmp_path, postgres_server):
    source_dsn = postgres_server.create_database()
    target_dsn = postgres_server.create_database()
    with Repo(tmp_path / "node") as repo:
        database, schema = seed(repo, source_dsn, "items", 5)
        Recovery(database, target_dsn, schema=schema).run()
        with pytest.raises(TableNotEmpty):
            Recovery(database, target_dsn, schema=schema).run()


def test_a_mismatch_after_loading_names_the_rows(tmp_path, postgres_server, monkeypatch):
    source_dsn = postgres_server.create_database()
    target_dsn = postgres_server.create_database()
    with Repo(tmp_path / "node") as repo:
        database, schema = seed(repo, source_dsn, "items", 5)
        real = Recovery._copy_row

        def wrong(self, row):
            values = real(self, row)
            if row["id"] == 3:
                values[1] = "changed"
            return values

        monkeypatch.setattr(Recovery, "_copy_row", wrong)
        with pytest.raises(RecoverError, match=r"rows \[3\] differ"):
            Recovery(database, target_dsn, schema=schema).run()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "mapping version 2"),
        ({"key": "nope"}, "the key 'nope' is not a column"),
        ({"columns": [{"name": "id", "type": "bigint; DROP TABLE x"}]}, "has the type"),
        ({"columns": [{"name": "id", "type": "int REFERENCES other"}]}, "has the type"),
        ({"excluded": "secret"}, "'excluded' is not a list"),
    ],
)
def test_an_unusable_schema_is_refused(change, message):
    schema = {
        "version": 1,
        "table": "public.items",
        "key": "id",
        "columns": [
            {"name": "id", "type": "bigint", "typname": "int8", "nullable": False},
            {"name": "at", "type": "timestamp(3) with time zone", "typname": "timestamptz"},
            {"name": "label", "type": "character varying(20)[]", "typname": "_varchar"},
            {"name": "price", "type": "numeric(12,2)", "typname": "numeric"},
            {"name": "ratio", "type": "double precision", "typname": "float8"},
            {"name": "mood", "type": 'public."Mood"', "typname": "Mood"},
        ],
        "excluded": [],
        "primary_key": ["id"],
    }
    assert check_schema(dict(schema)) == schema
    with pytest.raises(RecoverError, match=message):
        check_schema({**schema, **change})


def test_a_database_without_a_schema_is_refused(tmp_path, pg_dsn):
    with Repo(tmp_path / "node") as repo:
        database = repo.create_database("items", "documents")
        with pytest.raises(RecoverError, match=f"holds no table schema \\({SCHEMA_KEY!r}\\)"):
            Recovery(database, pg_dsn)


def test_a_table_without_a_primary_key_gets_a_unique_key(tmp_path, postgres_server):
    source_dsn = postgres_server.create_database()
    target_dsn = postgres_server.create_database()
    with Repo(tmp_path / "node") as repo:
        database, schema = seed(repo, source_dsn, "items", 5)
        schema = {**schema, "primary_key": []}
        Recovery(database, target_dsn, schema=schema).run()
    with psycopg.connect(target_dsn) as conn:
        assert conn.execute(
            "SELECT indisprimary, indisunique FROM pg_index WHERE indrelid = 'items'::regclass"
        ).fetchall() == [(False, True)]
