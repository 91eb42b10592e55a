"""Durable storage: signed appends, reads at scale, reopen time, memory and disk per entry.

    python bench/bench_storage.py            # 1,000,000 documents (several minutes)
    python bench/bench_storage.py -n 100000  # smaller
    python bench/bench_storage.py --quick    # 2,000 (CI smoke run)

Every write goes through gridnode.repo: signed with the node key, verified by the log, applied
to the documents store (2 secondary indexes) and committed with synchronous=FULL, in batches of
1,000 operations per transaction (group commit): a batch is acknowledged once it is on disk.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gridnode.repo import Repo  # noqa: E402
from gridnode.storage import DB_FILE  # noqa: E402

BATCH = 1000


def doc(i: int) -> dict:
    return {
        "_id": f"doc{i:08d}",
        "n": i,
        "group": i % 1000,
        "title": f"Record {i}",
        "tags": ["a", "b"],
    }


def timed(fn, reps: int = 200) -> tuple[float, float, float]:
    """Median, min, max latency of ``fn`` in microseconds."""
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples), min(samples), max(samples)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reopen_probe(data_dir: str, address: str, n: int) -> None:
    """Run in a fresh process: time to reopen and serve a read; resident memory after."""
    start = time.perf_counter()
    repo = Repo(Path(data_dir))
    db = repo.database(address)
    found = db.store.get(f"doc{n - 1:08d}")
    elapsed = time.perf_counter() - start
    assert found is not None and found["n"] == n - 1
    print(f"{elapsed:.4f} {rss_mb():.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        reopen_probe(args.probe[0], args.probe[1], int(args.probe[2]))
        return
    n = 2_000 if args.quick else args.n
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        data_dir = Path(tmp) / "node"
        repo = Repo(data_dir)
        db = repo.create_database("bench", "documents", options={"indexes": ["n", "group"]})
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            db.write_many(
                [{"op": "put", "doc": doc(i)} for i in range(first, min(n, first + BATCH))]
            )
        write_seconds = time.perf_counter() - start
        writer_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        get = timed(lambda: db.store.get(f"doc{n // 2:08d}"))
        eq = timed(lambda: db.store.query("n", eq=n // 3))
        rng = timed(lambda: db.store.query("n", gte=n // 2, lt=n // 2 + 1000, limit=10))
        group = timed(lambda: db.store.query("group", eq=7, limit=10))
        address = db.address
        files = [data_dir / DB_FILE, data_dir / (DB_FILE + "-wal")]
        disk = sum(f.stat().st_size for f in files if f.exists())
        events = repo.create_database("feed", "events")
        appends = min(n, 200_000)
        start = time.perf_counter()
        for first in range(0, appends, BATCH):
            events.write_many(
                [
                    {"op": "add", "value": {"n": i, "title": f"Record {i}"}}
                    for i in range(first, min(appends, first + BATCH))
                ]
            )
        append_seconds = time.perf_counter() - start
        repo.close()
        probes = []
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, __file__, "--probe", str(data_dir), address, str(n)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            probes.append((float(out[0]), float(out[1])))
    print(
        f"# {n:,} signed documents (2 indexes), batches of {BATCH}, synchronous=FULL; "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print()
    print("| measure | result |")
    print("|---|---:|")
    print(
        f"| durable signed appends/s, events store, {appends:,} appends | {appends / append_seconds:,.0f} |"
    )
    print(
        f"| durable signed document puts/s (2 indexes), {n:,} documents | {n / write_seconds:,.0f} |"
    )
    print(f"| get by id, median (min-max) | {get[0]:.0f} µs ({get[1]:.0f}-{get[2]:.0f}) |")
    print(f"| indexed query n == x, median | {eq[0]:.0f} µs |")
    print(f"| indexed range query, limit 10, median | {rng[0]:.0f} µs |")
    print(f"| indexed query group == 7, limit 10, median | {group[0]:.0f} µs |")
    print(
        f"| reopen + first read, fresh process (median of 3) | {statistics.median(p[0] for p in probes) * 1000:.0f} ms |"
    )
    print(
        f"| resident memory after reopen + read | {statistics.median(p[1] for p in probes):.0f} MB |"
    )
    print(f"| writer's peak resident memory | {writer_rss:.0f} MB |")
    print(f"| bytes on disk per entry (database + WAL) | {disk / n:,.0f} |")


if __name__ == "__main__":
    main()
