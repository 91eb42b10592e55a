"""``gridnode seed postgres`` as a real process: SIGKILL and resume, PostgreSQL restarting under
it, and the walkthrough of docs/seeding.md (the primary seeds, a community node follows)."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager

import psycopg
import pytest

from gridnode.repo import Repo
from gridnode.seed.config import PostgresSource
from gridnode.seed.seeder import META_PREFIX, Position

pytestmark = pytest.mark.slow

TIMEOUT = 120


def gridnode(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "gridnode.cli", "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"gridnode {args} failed: {result.stderr}")
    return result


def make_people(dsn, rows):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, city text, "
            "email text, joined timestamptz NOT NULL DEFAULT '2024-01-01T00:00:00Z')"
        )
        conn.execute(
            "INSERT INTO people (id, name, city, email) SELECT i, 'name ' || i, "
            "'city ' || (i %% 7), 'u' || i || '@example.org' FROM generate_series(1, %s) AS i",
            (rows,),
        )


def table_docs(dsn):
    """The documents the rows should become (email excluded)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, name, city, to_char(joined AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') FROM people'
        ).fetchall()
    return {
        r[0]: {"_id": r[0], "id": r[0], "name": r[1], "city": r[2], "joined": r[3]} for r in rows
    }


def outbox_empty(dsn, slot):
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM gridnode_outbox_{slot}").fetchone()[0] == 0


def position(data_dir, slot):
    """The seeder's position, read beside the running process (SQLite WAL: a reader does not
    block the writer)."""
    conn = sqlite3.connect(f"file:{data_dir / 'gridnode.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(
            "SELECT value FROM meta WHERE name = ?", (META_PREFIX + slot,)
        ).fetchone()
    finally:
        conn.close()
    return Position.loads(None if row is None else row[0])


def wait_for(condition, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def seeder_process(data_dir, dsn, address, *extra):
    log = open(data_dir / "seed.log", "a")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridnode.cli",
            "--data-dir",
            str(data_dir),
            "seed",
            "postgres",
            "--dsn",
            dsn,
            "--table",
            "people",
            "--key",
            "id",
            "--db",
            address,
            "--exclude",
            "email",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("seeding:"):
                break
        else:
            raise AssertionError(f"the seeder did not start: {(data_dir / 'seed.log').read_text()}")
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        log.close()


def offline_docs(data_dir, address):
    """The documents, and the number of entries that carry rows: the log less the seeder's
    schema record, written exactly once (the table's columns never change here)."""
    with Repo(data_dir) as repo:
        db = repo.database(address)
        schema_records = sum(1 for e in db.entries() if e.payload.get("op") == "meta")
        assert schema_records == 1
        return {d["_id"]: d for d in db.store.docs()}, len(db) - schema_records


def new_data_dir(tmp_path):
    data_dir = tmp_path / "primary"
    with Repo(data_dir) as repo:
        address = repo.create_database("people", "documents", options={"indexes": ["city"]}).address
    return data_dir, address


def test_sigkill_during_snapshot_and_follow_then_resume(tmp_path, pg_dsn):
    rows = 20_000
    make_people(pg_dsn, rows)
    data_dir, address = new_data_dir(tmp_path)
    slot = PostgresSource(dsn=pg_dsn, table="people", key="id", address=address).slot

    # 1. Killed in the middle of the snapshot.
    with seeder_process(data_dir, pg_dsn, address, "--batch", "500") as (proc, _):
        wait_for(lambda: position(data_dir, slot).snapshot_rows >= 2000, "snapshot progress")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    killed_at = position(data_dir, slot)
    assert killed_at.phase == "snapshot" and killed_at.snapshot_rows < rows
    docs, entries = offline_docs(data_dir, address)
    # The position was committed with exactly the entries it accounts for.
    assert entries == killed_at.snapshot_rows == len(docs) == killed_at.after

    # 2. Changes while the seeder is down, on disjoint rows.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE people SET city = 'moved' WHERE id <= 100")
        conn.execute("DELETE FROM people WHERE id > 100 AND id <= 150")
        conn.execute(
            "INSERT INTO people (id, name) SELECT i, 'late' FROM generate_series(30001, 30010) AS i"
        )
    with seeder_process(data_dir, pg_dsn, address, "--batch", "500"):
        wait_for(
            lambda: position(data_dir, slot).phase == "follow" and outbox_empty(pg_dsn, slot),
            "the snapshot and the outbox",
        )
    docs, entries = offline_docs(data_dir, address)
    assert docs == table_docs(pg_dsn)
    # Every row of the snapshot written once, every change once: the first 100 rows were in the
    # snapshot already (updated: one entry each), 50 deletes, 10 inserts (the snapshot may have
    # read them, then the outbox adds nothing).
    assert entries == rows + 100 + 50 + 10

    # 3. Killed while following a stream of changes.
    with seeder_process(data_dir, pg_dsn, address) as (proc, _):
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for i in range(200):
                conn.execute(
                    "UPDATE people SET name = %s WHERE id = %s", (f"renamed {i}", 1000 + i)
                )
                if i == 100:
                    proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    with seeder_process(data_dir, pg_dsn, address):
        wait_for(lambda: outbox_empty(pg_dsn, slot), "the outbox")
    docs, after = offline_docs(data_dir, address)
    assert docs == table_docs(pg_dsn)
    assert after <= entries + 200


def test_postgres_restarts_under_the_seeder(tmp_path, pg_dsn, postgres_server):
    make_people(pg_dsn, 500)
    data_dir, address = new_data_dir(tmp_path)
    slot = PostgresSource(dsn=pg_dsn, table="people", key="id", address=address).slot
    with seeder_process(data_dir, pg_dsn, address) as (proc, _):
        wait_for(
            lambda: position(data_dir, slot).phase == "follow" and outbox_empty(pg_dsn, slot),
            "the snapshot",
        )
        postgres_server.restart(mode="immediate")  # a crash, then recovery
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE people SET city = 'after restart' WHERE id <= 10")
            conn.execute("DELETE FROM people WHERE id = 500")
        postgres_server.restart(mode="fast")
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO people (id, name) VALUES (501, 'after the second restart')")
        wait_for(lambda: outbox_empty(pg_dsn, slot), "the outbox after the restarts")
        assert proc.poll() is None
        # Read through the running node's API, as an operator would.
        found = gridnode(
            "--data-dir",
            str(data_dir),
            "db",
            "query",
            address,
            "city",
            "--eq",
            '"after restart"',
            "--json",
        ).stdout.splitlines()
        assert sorted(json.loads(line)["id"] for line in found) == list(range(1, 11))
    assert "PostgreSQL unavailable" in (data_dir / "seed.log").read_text()
    docs, _ = offline_docs(data_dir, address)
    assert docs == table_docs(pg_dsn)


def test_unmappable_value_stops_the_seeder_naming_row_and_column(tmp_path, pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE people (id integer PRIMARY KEY, score float8, email text)")
        conn.execute("INSERT INTO people VALUES (1, 1.5, NULL), (2, 'NaN', NULL)")
    data_dir, address = new_data_dir(tmp_path)
    result = gridnode(
        "--data-dir",
        str(data_dir),
        "seed",
        "postgres",
        "--dsn",
        pg_dsn,
        "--table",
        "people",
        "--key",
        "id",
        "--db",
        address,
        check=False,
    )
    assert result.returncode == 1
    assert "error: people row 2, column score" in result.stderr
    assert "NaN" in result.stderr
    docs, _ = offline_docs(data_dir, address)
    assert docs == {}  # the batch holding row 2 was not written


def test_walkthrough_primary_seeds_community_node_follows(tmp_path, pg_dsn):
    """docs/seeding.md, step by step: the primary's node seeds a documents database from the
    people table; a community node bootstraps from it, follows the database and ends with
    exactly the table's rows (never the excluded column); later changes reach it too."""
    make_people(pg_dsn, 1000)
    primary = tmp_path / "primary"
    community = tmp_path / "community"
    gridnode("--data-dir", str(primary), "init")
    address = gridnode(
        "--data-dir",
        str(primary),
        "db",
        "create",
        "people",
        "--type",
        "documents",
        "--index",
        "city",
    ).stdout.strip()
    (primary / "gridnode.toml").write_text(
        (primary / "gridnode.toml").read_text()
        + f"""
[[seed.postgres]]
dsn = "{pg_dsn}"
table = "people"
key = "id"
db = "{address}"
exclude = ["email"]
"""
    )
    log = open(tmp_path / "primary.log", "w")  # noqa: SIM115
    seed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridnode.cli",
            "--data-dir",
            str(primary),
            "seed",
            "postgres",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    start = None
    try:
        listening = None
        for line in seed.stdout:
            if line.startswith("listening:"):
                listening = line.split(None, 1)[1].strip()
            if line.startswith("seeding:"):
                break
        assert listening, (tmp_path / "primary.log").read_text()
        start = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridnode.cli",
                "--data-dir",
                str(community),
                "start",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--bootstrap",
                listening,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in start.stdout:
            if line.startswith("api:"):
                break

        def follow():
            return (
                gridnode(
                    "--data-dir", str(community), "db", "follow", address, check=False
                ).returncode
                == 0
            )

        wait_for(follow, "the community node to follow the database")

        def replica():
            lines = gridnode("--data-dir", str(community), "db", "query", address, "--json").stdout
            return {d["_id"]: d for d in map(json.loads, lines.splitlines())}

        wait_for(lambda: replica() == table_docs(pg_dsn), "the replica to hold the table's rows")
        assert all("email" not in doc for doc in replica().values())
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE people SET city = 'elsewhere' WHERE id = 42")
            conn.execute("DELETE FROM people WHERE id = 43")
        wait_for(lambda: replica() == table_docs(pg_dsn), "the changes to reach the replica")
        digests = {
            gridnode("--data-dir", str(d), "db", "digest", address).stdout
            for d in (primary, community)
        }
        assert len(digests) == 1
    finally:
        for proc in (start, seed):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc is not None:
                proc.stdout.close()
        log.close()
    assert seed.returncode == 0
