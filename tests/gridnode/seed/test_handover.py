"""Hand-over: after the primary's data directory and PostgreSQL are lost and the table is
recovered from a replica, ``gridnode seed postgres`` on the recovered table, with the old node key
in place, resumes without rewriting the history (a whole snapshot pass writes no entry), and the
replicas accept its new writes.

The recovery itself is ``gridnode recover postgres`` (gridnode/seed/recover.py); here a small
stand-in does what it must: the table created from the schema record the seeder kept with the
data, the rows loaded from the replica's documents, excluded columns NULL.
"""

import shutil

import psycopg
import pytest
from psycopg import sql

from gridnode.keystore import KEY_FILE
from gridnode.repo import Repo
from gridnode.seed import SeedConfigError
from gridnode.seed.postgres import SCHEMA_META_KEY
from gridnode.seed.seeder import Seeder
from tests.gridnode.seed.test_seed import (
    TIMEOUT,
    data_entries,
    expected,
    held,
    make_table,
    run_seeder,
    source,
)


def car(db):
    return b"".join(db.car_parts())


def restore_table(dsn, db):
    """The stand-in for ``gridnode recover postgres``: the table from the schema record, its rows
    from the documents (the people table's columns map back as they are)."""
    schema = db.store.meta(SCHEMA_META_KEY)
    schema_name, table = schema["table"].split(".")
    columns = schema["columns"]
    definitions = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c["name"]),
            sql.SQL(c["type"]),
            sql.SQL("" if c["nullable"] else " NOT NULL"),
        )
        for c in columns
    ]
    definitions.append(
        sql.SQL("PRIMARY KEY ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, schema["primary_key"]))
        )
    )
    names = [c["name"] for c in columns]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                sql.Identifier(schema_name, table), sql.SQL(", ").join(definitions)
            )
        )
        with conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(schema_name, table), sql.SQL(", ").join(map(sql.Identifier, names))
            )
        ) as copy:
            for doc in db.store.docs():
                # Excluded columns never left the server: NULL, never invented.
                copy.write_row([None if n in schema["excluded"] else doc[n] for n in names])


def test_the_recovered_primary_resumes_without_rewriting_history(tmp_path, pg_dsn, postgres_server):
    make_table(pg_dsn, rows=60)
    primary_dir, key_kept = tmp_path / "primary", tmp_path / "offline.node.key"

    # The primary seeds; a replica holds a copy.
    with Repo(primary_dir) as primary, Repo(tmp_path / "replica") as replica:
        db = primary.create_database("people", "documents", options={"indexes": ["city"]})
        address = db.address
        run_seeder(primary, source(pg_dsn, address), lambda s: s.wait_idle(TIMEOUT))
        replica.import_car(car(db))
        history = [e.cid for e in db.entries()]
        author = primary.did
        shutil.copy(primary_dir / KEY_FILE, key_kept)  # the node key, kept offline

    # The disaster: the primary's data directory and its database are gone.
    shutil.rmtree(primary_dir)
    fresh_dsn = postgres_server.create_database()

    # Without the old key, the new primary may not write: the seeder says so and stops.
    with Repo(tmp_path / "stranger") as stranger, Repo(tmp_path / "replica") as replica:
        stranger.import_car(car(replica.database(address)))
        restore_table(fresh_dsn, stranger.database(address))
        with pytest.raises(SeedConfigError, match="may not write"):
            Seeder.for_repo(stranger, source(fresh_dsn, address))
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE people")

    # Recovery: a fresh data directory with the key restored, the database from the replica,
    # the table from it.
    recovered_dir = tmp_path / "recovered"
    recovered_dir.mkdir()
    shutil.copy(key_kept, recovered_dir / KEY_FILE)
    with Repo(recovered_dir) as recovered, Repo(tmp_path / "replica") as replica:
        assert recovered.did == author
        recovered.import_car(car(replica.database(address)))
        db = recovered.database(address)
        restore_table(fresh_dsn, db)
        heads, digest = db.heads, db.digest()

        async def handover(seeder):
            await seeder.wait_idle(TIMEOUT)
            # A whole snapshot pass over the identical table: nothing written, not even the
            # schema (the recovered table has the recorded one).
            assert seeder.stats.snapshot_rows == 60
            assert seeder.stats.written == 0 and seeder.stats.schema_writes == 0
            assert db.heads == heads and db.digest() == digest
            assert [e.cid for e in db.entries()] == history
            # The recovered primary writes again.
            with psycopg.connect(fresh_dsn, autocommit=True) as conn:
                conn.execute("INSERT INTO people VALUES (61, 'after', 'c', 'x@e.org', 3)")
                conn.execute("UPDATE people SET city = 'moved' WHERE id = 2")
                conn.execute("DELETE FROM people WHERE id = 3")
            await seeder.wait_idle(TIMEOUT)
            assert seeder.stats.written == 3
            assert await held(seeder) == expected(fresh_dsn)

        run_seeder(recovered, source(fresh_dsn, address), handover)
        new = [e for e in db.entries() if e.cid not in set(history)]
        assert len(new) == 3 and {e.author for e in new} == {author}
        assert [e.cid for e in db.entries()][: len(history)] == history

        # The replica accepts the new writes: signed by the database's writer, on its history.
        report = replica.import_car(car(db))
        assert report.applied == 3 and not report.rejected
        kept = replica.database(address)
        assert kept.digest() == db.digest() and data_entries(kept) == 63
        assert {d["_id"]: d for d in kept.store.docs()} == expected(fresh_dsn)
        assert [d["id"] for d in kept.store.query("city", eq="moved")] == [2]
