"""PostgreSQL seeding: rows/s of the initial snapshot, changes/s while following, and what the
capture trigger costs the primary's writes.

    python bench/bench_seed.py            # 100,000 rows, 20,000 changes
    python bench/bench_seed.py -n 20000   # smaller
    python bench/bench_seed.py --quick    # 2,000 rows, 500 changes (CI smoke run)
    python bench/bench_seed.py --dsn DSN  # an existing server (creates and drops a table there)

Without --dsn it starts a throwaway PostgreSQL server on 127.0.0.1 (the tests' launcher,
tests/gridnode/seed/conftest.py; as the user nobody when run as root). The seeder writes to a
data directory through gridnode.seed.seeder.Seeder (the same loop ``gridnode seed postgres``
runs, without the network): every row signed, verified, applied to a documents store with one
secondary index and committed with synchronous=FULL, 2,000 rows per transaction.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import trio  # noqa: E402

from gridnode.repo import Repo  # noqa: E402
from gridnode.seed.config import PostgresSource  # noqa: E402
from gridnode.seed.seeder import Seeder  # noqa: E402

TABLE = "bench_people"


def start_server():
    path = ROOT / "tests" / "gridnode" / "seed" / "conftest.py"
    spec = importlib.util.spec_from_file_location("gridnode_pg_launcher", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bin_dir = module._bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    return module.PostgresServer(bin_dir)


def create_table(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE} CASCADE")
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, name text NOT NULL, city text, "
            "email text, score numeric(8,2), tags text[], joined timestamptz NOT NULL)"
        )
        conn.execute(
            f"INSERT INTO {TABLE} SELECT i, 'name ' || i, 'city ' || (i %% 100), "
            "'u' || i || '@example.org', (i %% 10000) / 100.0, ARRAY['a', 'b'], "
            "'2024-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, %s) i",
            (rows,),
        )


def timed_update(dsn: str, changes: int) -> float:
    """Seconds for one UPDATE of ``changes`` rows (a single transaction)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        conn.execute(f"UPDATE {TABLE} SET city = city || '+' WHERE id <= %s", (changes,))
        return time.perf_counter() - start


def stream_updates(dsn: str, changes: int, offset: int) -> float:
    """``changes`` single-row UPDATE transactions, one after the other; their seconds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        for i in range(changes):
            conn.execute(f"UPDATE {TABLE} SET name = name || '.' WHERE id = %s", (offset + i + 1,))
        return time.perf_counter() - start


def run(dsn: str, rows: int, changes: int) -> dict[str, float]:
    create_table(dsn, rows)
    results: dict[str, float] = {}
    # The primary's write without the capture trigger (the seeder installs it when it starts).
    results["update_plain_s"] = timed_update(dsn, changes)
    with tempfile.TemporaryDirectory() as tmp, Repo(Path(tmp) / "node") as repo:
        db = repo.create_database("people", "documents", options={"indexes": ["city"]})
        source = PostgresSource(
            dsn=dsn, table=TABLE, key="id", address=db.address, exclude=("email",)
        )

        async def main() -> None:
            seeder = Seeder.for_repo(repo, source)
            async with trio.open_nursery() as nursery:
                start = time.perf_counter()
                await nursery.start(seeder.run)
                await seeder.wait_idle()
                results["snapshot_s"] = time.perf_counter() - start
                assert seeder.stats.snapshot_rows == rows, seeder.stats

                # Bulk: one transaction changing `changes` rows, then until all are applied.
                update = await trio.to_thread.run_sync(timed_update, dsn, changes)
                results["update_captured_s"] = update
                start = time.perf_counter()
                await seeder.wait_idle()
                results["follow_bulk_s"] = time.perf_counter() - start
                # Stream: single-row transactions while the seeder follows; until all applied.
                written = seeder.stats.written
                box: dict[str, float] = {}
                start = time.perf_counter()
                thread = threading.Thread(
                    target=lambda: box.update(s=stream_updates(dsn, changes, changes))
                )
                thread.start()
                await trio.to_thread.run_sync(thread.join)
                await seeder.wait_idle()
                results["follow_stream_s"] = time.perf_counter() - start
                results["stream_commit_s"] = box["s"]
                assert seeder.stats.written - written == changes, seeder.stats
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert len(db.store) == rows
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {TABLE} CASCADE")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rows", type=int, default=100_000)
    parser.add_argument("-c", "--changes", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 500 changes")
    parser.add_argument("--dsn", help="an existing PostgreSQL database")
    args = parser.parse_args()
    rows, changes = (2000, 500) if args.quick else (args.rows, args.changes)
    changes = min(changes, rows // 2)
    server = None
    dsn = args.dsn
    if dsn is None:
        server = start_server()
        dsn = server.dsn()
    try:
        r = run(dsn, rows, changes)
    finally:
        if server is not None:
            server.close()
    print(
        f"snapshot: {rows:,} rows in {r['snapshot_s']:.2f} s = {rows / r['snapshot_s']:,.0f} rows/s"
    )
    print(
        f"follow, one {changes:,}-row UPDATE: applied in {r['follow_bulk_s']:.2f} s after its "
        f"commit = {changes / r['follow_bulk_s']:,.0f} changes/s"
    )
    print(
        f"follow, {changes:,} single-row transactions: all applied {r['follow_stream_s']:.2f} s "
        f"after the first began = {changes / r['follow_stream_s']:,.0f} changes/s "
        f"(the writer alone: {changes / r['stream_commit_s']:,.0f} commits/s)"
    )
    print(
        f"the primary's UPDATE of {changes:,} rows: {r['update_plain_s'] * 1000:.0f} ms without "
        f"capture, {r['update_captured_s'] * 1000:.0f} ms with the trigger"
    )


if __name__ == "__main__":
    main()
