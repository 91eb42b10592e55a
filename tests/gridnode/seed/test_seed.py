"""The seeder in-process on a real PostgreSQL server and a real data directory: snapshot, follow
(insert, update, delete, key change, TRUNCATE), excluded columns, the durable position, and a
100k-row snapshot."""

import psycopg
import pytest
import trio

from gridnode.repo import Repo
from gridnode.seed import SeedConfigError, UnsupportedColumn
from gridnode.seed.config import PostgresSource
from gridnode.seed.seeder import META_PREFIX, Position, Seeder

TIMEOUT = 120


def make_table(dsn, rows=0):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE people (id integer PRIMARY KEY, name text NOT NULL, city text, "
            "email text, age integer)"
        )
        if rows:
            conn.execute(
                "INSERT INTO people SELECT i, 'name ' || i, 'city ' || (i %% 10), "
                "'user' || i || '@example.org', i %% 90 FROM generate_series(1, %s) AS i",
                (rows,),
            )


def expected(dsn, exclude=("email",)):
    """The documents the table's rows should be."""
    with psycopg.connect(dsn) as conn:
        cur = conn.execute("SELECT * FROM people ORDER BY id")
        names = [d.name for d in cur.description]
        docs = {}
        for row in cur.fetchall():
            doc = {n: v for n, v in zip(names, row, strict=True) if n not in exclude}
            doc["_id"] = doc["id"]
            docs[doc["id"]] = doc
        return docs


def source(dsn, address, **options):
    options.setdefault("exclude", ("email",))
    return PostgresSource(dsn=dsn, table="people", key="id", address=address, **options)


def data_entries(db):
    """The entries of the log that carry rows (not the seeder's schema records)."""
    return sum(1 for e in db.entries() if e.payload.get("op") != "meta")


def schema_entries(db):
    """The seeder's schema records in the log."""
    return [e.payload["value"] for e in db.entries() if e.payload.get("op") == "meta"]


async def held(seeder):
    def read():
        return {doc["_id"]: doc for doc in seeder.database.store.docs()}

    return await seeder._storage(read)


def run_seeder(repo, src, scenario):
    """Run a seeder on ``repo`` while ``scenario(seeder)`` runs; then stop it."""

    async def main():
        seeder = Seeder.for_repo(repo, src)
        async with trio.open_nursery() as nursery:
            await nursery.start(seeder.run)
            await scenario(seeder)
            nursery.cancel_scope.cancel()
        return seeder

    return trio.run(main)


def test_snapshot_then_follow_inserts_updates_deletes(tmp_path, pg_dsn):
    make_table(pg_dsn, rows=50)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents", options={"indexes": ["city"]})

        async def scenario(seeder):
            await seeder.wait_idle(TIMEOUT)
            assert await held(seeder) == expected(pg_dsn)
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("INSERT INTO people VALUES (100, 'new', 'x', 'n@e.org', 1)")
                conn.execute("UPDATE people SET city = 'moved' WHERE id = 3")
                conn.execute("DELETE FROM people WHERE id = 4")
                conn.execute("UPDATE people SET id = 200 WHERE id = 5")  # a key change
                with conn.transaction():
                    conn.execute("UPDATE people SET age = age + 1 WHERE id < 10")
                    conn.execute("UPDATE people SET age = age + 1 WHERE id < 10")
            await seeder.wait_idle(TIMEOUT)
            docs = await held(seeder)
            assert docs == expected(pg_dsn)
            assert 4 not in docs and 5 not in docs and docs[200]["name"] == "name 5"
            assert docs[3]["city"] == "moved"
            assert seeder.stats.snapshot_rows == 50

        seeder = run_seeder(repo, source(pg_dsn, db.address), scenario)
        # The outbox is empty: every change was applied and acknowledged.
        with psycopg.connect(pg_dsn) as conn:
            assert (
                conn.execute(
                    f"SELECT count(*) FROM gridnode_outbox_{seeder.source.slot}"
                ).fetchone()[0]
                == 0
            )
        # The index on a published column works on the seeded documents.
        assert [d["id"] for d in db.store.query("city", eq="moved")] == [3]


def test_excluded_columns_never_leave_the_server(tmp_path, pg_dsn):
    make_table(pg_dsn, rows=20)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents")

        async def scenario(seeder):
            await seeder.wait_idle(TIMEOUT)
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("UPDATE people SET email = 'changed@example.org' WHERE id = 1")
                conn.execute("INSERT INTO people VALUES (21, 'n', 'c', 'secret@example.org', 5)")
            await seeder.wait_idle(TIMEOUT)

        run_seeder(repo, source(pg_dsn, db.address, exclude=("email", "age")), scenario)
        for doc in db.store.docs():
            assert set(doc) == {"_id", "id", "name", "city"}
        # Not in any entry of the log either (the blocks peers receive).
        for entry in db.entries():
            assert b"example.org" not in entry.block
        # Changing only an excluded column writes nothing.
        assert data_entries(db) == 21 and len(schema_entries(db)) == 1 and len(db) == 22


def test_columns_option_publishes_only_those(tmp_path, pg_dsn):
    make_table(pg_dsn, rows=3)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "keyvalue")

        async def scenario(seeder):
            await seeder.wait_idle(TIMEOUT)

        run_seeder(repo, source(pg_dsn, db.address, columns=("name",), exclude=()), scenario)
        assert db.store.items() == [
            ("1", {"id": 1, "name": "name 1"}),
            ("2", {"id": 2, "name": "name 2"}),
            ("3", {"id": 3, "name": "name 3"}),
        ]


def test_truncate_removes_every_document(tmp_path, pg_dsn):
    make_table(pg_dsn, rows=30)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents")

        async def scenario(seeder):
            await seeder.wait_idle(TIMEOUT)
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE people")
                conn.execute("INSERT INTO people VALUES (7, 'again', NULL, NULL, NULL)")
            await seeder.wait_idle(TIMEOUT)
            assert await held(seeder) == expected(pg_dsn)

        run_seeder(repo, source(pg_dsn, db.address), scenario)
        assert [d["name"] for d in db.store.docs()] == ["again"]


def test_position_commits_with_the_entries_and_resumes(tmp_path, pg_dsn):
    """A seeder stopped after some snapshot batches continues after the last key written; a
    second run over a seeded table writes nothing."""
    make_table(pg_dsn, rows=1000)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents")
        src = source(pg_dsn, db.address, batch=100)

        async def three_batches(seeder):
            with trio.fail_after(TIMEOUT):
                while seeder.stats.snapshot_rows < 300:
                    await trio.sleep(0.01)

        first = run_seeder(repo, src, three_batches)
        position = Position.loads(repo.meta(META_PREFIX + src.slot))
        assert position.phase == "snapshot"
        # The position names exactly the rows written.
        assert position.snapshot_rows == data_entries(db) == position.after
        written = data_entries(db)
        assert written < 1000

        async def finish(seeder):
            await seeder.wait_idle(TIMEOUT)

        second = run_seeder(repo, src, finish)
        assert second.stats.snapshot_rows == 1000 - written
        assert data_entries(db) == 1000  # every row written exactly once
        assert Position.loads(repo.meta(META_PREFIX + src.slot)).phase == "follow"
        third = run_seeder(repo, src, finish)
        assert third.stats.written == 0 and data_entries(db) == 1000
        # The schema was recorded once: runs over an unchanged table do not write it again.
        assert len(schema_entries(db)) == 1 and len(db) == 1001
        assert first.stats.schema_writes == 1
        assert second.stats.schema_writes == third.stats.schema_writes == 0
        assert first.stats.written + second.stats.written == 1000


def test_changes_applied_but_not_acknowledged_are_not_applied_twice(tmp_path, pg_dsn):
    """The window between the SQLite commit and the outbox delete: the same outbox rows read
    again write nothing."""
    make_table(pg_dsn, rows=10)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents")
        src = source(pg_dsn, db.address)

        async def idle(seeder):
            await seeder.wait_idle(TIMEOUT)

        run_seeder(repo, src, idle)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE people SET name = 'x' || name")
            conn.execute("DELETE FROM people WHERE id = 2")
            # Copy the outbox rows: they come back after they are applied and deleted.
            saved = conn.execute(f"SELECT key FROM gridnode_outbox_{src.slot}").fetchall()
        run_seeder(repo, src, idle)
        entries = len(db)
        assert data_entries(db) == 10 + 10 and len(schema_entries(db)) == 1 and entries == 21
        with psycopg.connect(pg_dsn, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany(f"INSERT INTO gridnode_outbox_{src.slot} (key) VALUES (%s)", saved)
        again = run_seeder(repo, src, idle)
        assert again.stats.changes == 10 and again.stats.written == 0
        assert len(db) == entries
        assert {d["_id"]: d for d in db.store.docs()} == expected(pg_dsn)


def test_configuration_errors(tmp_path, pg_dsn):
    make_table(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE odd (id integer PRIMARY KEY, span interval, n integer)")
        conn.execute("CREATE TABLE nokey (id integer, name text)")
    with Repo(tmp_path / "node") as repo:
        docs = repo.create_database("people", "documents")
        events = repo.create_database("log", "events")

        def start(src):
            async def main():
                seeder = Seeder.for_repo(repo, src)
                with trio.fail_after(TIMEOUT):
                    await seeder.run()

            trio.run(main)

        with pytest.raises(SeedConfigError, match="no column 'emial'"):
            start(source(pg_dsn, docs.address, exclude=("emial",)))  # a typo is not ignored
        with pytest.raises(SeedConfigError, match="no table"):
            start(PostgresSource(dsn=pg_dsn, table="nope", key="id", address=docs.address))
        with pytest.raises(UnsupportedColumn, match=r"odd\.span.*interval"):
            start(PostgresSource(dsn=pg_dsn, table="odd", key="id", address=docs.address))
        with pytest.raises(SeedConfigError, match="unique index"):
            start(PostgresSource(dsn=pg_dsn, table="nokey", key="id", address=docs.address))
        with pytest.raises(SeedConfigError, match="events database"):
            start(source(pg_dsn, events.address))
        with pytest.raises(SeedConfigError, match="cannot be excluded"):
            source(pg_dsn, docs.address, exclude=("id",))
        # With the column excluded, the odd table seeds.
        start_ok = PostgresSource(
            dsn=pg_dsn, table="odd", key="id", address=docs.address, exclude=("span",)
        )
        run_seeder(repo, start_ok, lambda seeder: seeder.wait_idle(TIMEOUT))


@pytest.mark.slow
def test_snapshot_of_100k_rows(tmp_path, pg_dsn):
    make_table(pg_dsn, rows=100_000)
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("people", "documents")

        async def scenario(seeder):
            await seeder.wait_idle(600)

        seeder = run_seeder(repo, source(pg_dsn, db.address), scenario)
        assert seeder.stats.snapshot_rows == 100_000
        assert data_entries(db) == 100_000
        assert len(db.store) == 100_000
        want = expected(pg_dsn)
        for doc in db.store.docs():
            assert doc == want.pop(doc["_id"])
        assert not want
