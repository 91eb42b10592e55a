"""The table's schema kept with the data: the seeder records it as the store-level meta op
``postgres.table`` at start, not again over an unchanged table, and again when the table's
columns change (then the rows whose documents differ are written again)."""

import psycopg
import trio

from gridnode.repo import Repo
from gridnode.seed.config import PostgresSource
from gridnode.seed.postgres import SCHEMA_META_KEY
from gridnode.seed.seeder import Seeder
from tests.gridnode.seed.test_seed import (
    TIMEOUT,
    expected,
    held,
    make_table,
    run_seeder,
    schema_entries,
    source,
)


def column(name, type_, typname, nullable):
    return {"name": name, "type": type_, "typname": typname, "nullable": nullable}


PEOPLE_COLUMNS = [
    column("id", "integer", "int4", False),
    column("name", "text", "text", False),
    column("city", "text", "text", True),
    column("email", "text", "text", True),
    column("age", "integer", "int4", True),
]


async def idle(seeder):
    await seeder.wait_idle(TIMEOUT)


def test_the_schema_is_recorded_with_the_data(tmp_path, pg_dsn):
    make_table(pg_dsn, rows=5)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents")
        run_seeder(repo, source(pg_dsn, db.address), idle)
        schema = db.store.meta(SCHEMA_META_KEY)
        assert schema == {
            "version": 1,
            "table": "public.people",
            "key": "id",
            "columns": PEOPLE_COLUMNS,
            "excluded": ["email"],
            "primary_key": ["id"],
        }
        # A signed entry of the log like any other, and not a document.
        assert schema_entries(db) == [schema]
        assert len(db.store) == 5 and all(type(doc["_id"]) is int for doc in db.store.docs())


def test_the_schema_of_a_keyvalue_database_and_of_configured_columns(tmp_path, pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE things (code text NOT NULL UNIQUE, n numeric(10, 2) NOT NULL, "
            "at timestamptz, tags varchar(8)[], secret bytea, pk1 int, pk2 int, "
            "PRIMARY KEY (pk2, pk1))"
        )
        conn.execute("INSERT INTO things VALUES ('a', 1.5, now(), '{x}', 'x', 1, 2)")
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("things", "keyvalue")
        src = PostgresSource(
            dsn=pg_dsn,
            table="things",
            key="code",
            address=db.address,
            exclude=("secret",),
            columns=("n", "at", "tags"),
        )
        run_seeder(repo, src, idle)
        assert db.store.meta(SCHEMA_META_KEY) == {
            "version": 1,
            "table": "public.things",
            "key": "code",
            "columns": [
                column("code", "text", "text", False),
                column("n", "numeric(10,2)", "numeric", False),
                column("at", "timestamp with time zone", "timestamptz", True),
                column("tags", "character varying(8)[]", "_varchar", True),
                column("secret", "bytea", "bytea", True),
                column("pk1", "integer", "int4", False),
                column("pk2", "integer", "int4", False),
            ],
            # Not published: excluded, or not among the configured columns.
            "excluded": ["secret", "pk1", "pk2"],
            "primary_key": ["pk2", "pk1"],
        }
        assert db.store.keys() == ["a"] and "postgres.table" not in db.store


def test_the_schema_is_written_again_when_the_columns_change(tmp_path, pg_dsn):
    make_table(pg_dsn, rows=20)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents")
        src = source(pg_dsn, db.address)

        def recorded(seeder):
            return seeder._storage(lambda: db.store.meta(SCHEMA_META_KEY))

        async def until(seeder, test):
            with trio.fail_after(TIMEOUT):
                while not test(await recorded(seeder)):
                    await trio.sleep(0.05)

        def names(schema):
            return [c["name"] for c in schema["columns"]]

        async def main():
            seeder = Seeder.for_repo(repo, src)
            seeder.schema_interval = 0.0
            async with trio.open_nursery() as nursery:
                await nursery.start(seeder.run)
                await seeder.wait_idle(TIMEOUT)
                assert names(await recorded(seeder)) == [c["name"] for c in PEOPLE_COLUMNS]
                written = seeder.stats.written
                assert written == 20

                # A column added: recorded, and every document gets it (the rows compared again).
                with psycopg.connect(pg_dsn, autocommit=True) as conn:
                    conn.execute("ALTER TABLE people ADD COLUMN score integer NOT NULL DEFAULT 7")
                await until(seeder, lambda s: "score" in names(s))
                await seeder.wait_idle(TIMEOUT)
                assert await held(seeder) == expected(pg_dsn)
                assert all(doc["score"] == 7 for doc in (await held(seeder)).values())
                assert (await recorded(seeder))["columns"][-1] == column(
                    "score", "integer", "int4", False
                )
                assert seeder.stats.written == written + 20

                # An excluded column's change is recorded, and rewrites no document.
                written = seeder.stats.written
                with psycopg.connect(pg_dsn, autocommit=True) as conn:
                    conn.execute("ALTER TABLE people ALTER COLUMN email SET NOT NULL")
                await until(seeder, lambda s: not s["columns"][3]["nullable"])
                await seeder.wait_idle(TIMEOUT)
                assert seeder.stats.written == written

                # A published column dropped, and a row changed right after.
                with psycopg.connect(pg_dsn, autocommit=True) as conn:
                    conn.execute("ALTER TABLE people DROP COLUMN city")
                    conn.execute("UPDATE people SET name = 'renamed' WHERE id = 1")
                await until(seeder, lambda s: "city" not in names(s))
                await seeder.wait_idle(TIMEOUT)
                docs = await held(seeder)
                assert docs == expected(pg_dsn) and docs[1]["name"] == "renamed"
                assert all("city" not in doc for doc in docs.values())
                nursery.cancel_scope.cancel()
            return seeder

        seeder = trio.run(main)
        assert seeder.stats.schema_writes == 4
        assert [names(s) for s in schema_entries(db)][-1] == ["id", "name", "email", "age", "score"]
        assert len(schema_entries(db)) == 4


def test_a_query_naming_a_dropped_column_reads_the_columns_again(tmp_path, pg_dsn):
    """Between two looks at the columns, a change to a dropped column's table: the seeder does
    not stop, it records the new schema and continues."""
    make_table(pg_dsn, rows=10)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents")

        async def main():
            seeder = Seeder.for_repo(repo, source(pg_dsn, db.address))
            seeder.schema_interval = 3600.0  # only the failing query can tell
            async with trio.open_nursery() as nursery:
                await nursery.start(seeder.run)
                await seeder.wait_idle(TIMEOUT)
                with psycopg.connect(pg_dsn, autocommit=True) as conn:
                    conn.execute("ALTER TABLE people DROP COLUMN age")
                    conn.execute("UPDATE people SET name = 'renamed' WHERE id = 1")
                with trio.fail_after(TIMEOUT):
                    while seeder.stats.schema_writes < 2:
                        await trio.sleep(0.05)
                await seeder.wait_idle(TIMEOUT)
                docs = await held(seeder)
                assert docs == expected(pg_dsn) and docs[1]["name"] == "renamed"
                nursery.cancel_scope.cancel()
            return seeder

        seeder = trio.run(main)
        schema = db.store.meta(SCHEMA_META_KEY)
        assert [c["name"] for c in schema["columns"]] == ["id", "name", "city", "email"]
        assert seeder.stats.schema_writes == 2
