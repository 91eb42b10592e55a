"""Recovery: the time to get a seeded table back into PostgreSQL from a replica on loopback,
including the replication step from a cold node (``gridnode recover postgres --from PEER``).

    python bench/bench_recover.py                 # 100,000 rows
    python bench/bench_recover.py -n 1000000      # 1M rows (goal: <= 5 minutes)
    python bench/bench_recover.py --quick         # 2,000 rows (smoke run)

It starts a throwaway PostgreSQL server (tests/gridnode/seed/conftest.py), seeds a table of the
drill's shape (examples/recovery_drill.py: bigint key, text, numeric, float, timestamptz, date,
jsonb, text[], bytea) into a data directory with the seeder, serves that directory with
``gridnode start`` (the replica), and times ``gridnode recover postgres --from`` into a fresh
database from a fresh data directory: replication, then COPY, primary key and the row comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

import psycopg  # noqa: E402
import recovery_drill as drill  # noqa: E402
import trio  # noqa: E402
from bench_seed import start_server  # noqa: E402

from gridnode.repo import Repo  # noqa: E402
from gridnode.seed.config import PostgresSource  # noqa: E402
from gridnode.seed.seeder import Seeder  # noqa: E402


def seed(data_dir: Path, dsn: str, rows: int) -> tuple[str, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(drill.CREATE)
        conn.execute(drill.INSERT, (rows,))
    with Repo(data_dir) as repo:
        database = repo.create_database("items", "documents")
        address = database.address
        source = PostgresSource(dsn=dsn, table="public.items", key="id", address=address)
        began = time.monotonic()

        async def main() -> None:
            seeder = Seeder.for_repo(repo, source)
            async with trio.open_nursery() as nursery:
                await nursery.start(seeder.run)
                await seeder.wait_idle()
                nursery.cancel_scope.cancel()

        trio.run(main)
        return address, time.monotonic() - began


def run(server_dsn: str, rows: int, work: Path) -> dict[str, float]:
    drill.TIMEOUT = 3600.0  # the drill's bound on one command is 300 s: a 1M-row run takes longer
    os.environ.setdefault("GRIDNODE_MDNS", "false")
    with psycopg.connect(server_dsn + " dbname=postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_src")
        conn.execute("CREATE DATABASE bench_dst")
    replica = work / "replica"
    address, seed_seconds = seed(replica, f"{server_dsn} dbname=bench_src", rows)
    proc, listening = drill.start(replica, "start", "--listen", "/ip4/127.0.0.1/tcp/0")
    try:
        began = time.monotonic()
        result = drill.gridnode(
            work / "cold", "recover", "postgres", "--dsn", f"{server_dsn} dbname=bench_dst",
            "--db", address, "--from", listening, "--json", "--timeout", "3600",
        )  # fmt: skip
        total = time.monotonic() - began
    finally:
        drill.stop(proc)
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["verified"] == rows, report
    return {
        "rows": rows,
        "seed s": round(seed_seconds, 1),
        "replicate s": report["replicated_seconds"],
        "load+check s": report["seconds"],
        "recovery s": round(total, 1),
        "rows/s (end to end)": round(rows / total),
        "rows/s (load+check)": report["rows_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rows", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="2,000 rows")
    args = parser.parse_args()
    rows = 2_000 if args.quick else args.rows
    server = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-recover-") as tmp:
            dsn = server.dsn().replace("dbname=postgres", "")
            for name, value in run(dsn, rows, Path(tmp)).items():
                print(f"{name}: {value}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
