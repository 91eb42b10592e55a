"""The puller's per-entry cost of a catch-up, stage by stage, without the network.

    BENCH_TMP=/work python bench/bench_catchup.py -n 100000   # ~1 min
    python bench/bench_catchup.py --quick                     # 2,000 entries (CI smoke run)

A source data dir gets ``n`` ~400-byte events (as bench/bench_sync.py writes them); their blocks
are then read in the order a sync sends them and handed, in batches of 2,000 (about one 1 MiB
wire message), to a fresh data dir exactly as ``gridnode/node/sync.py`` does: verification
(``StoredDatabase.verify_entry_blocks``: hash, strict DAG-CBOR, structure, signature) then the join
(``StoredDatabase.join_entries``: log checks, tables, range sums, the store, one transaction per
batch), after the newest entry alone, as a gossip announcement delivers it first. The two
stages are timed apart, in one thread, as the thread's CPU time (so that other work on a shared
machine counts less); a real pull overlaps them (verification runs in a thread
of its own) and adds the transport.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridnode.repo import Repo

BATCH = 2_000


def prepare(root: Path, n: int) -> tuple[Path, str, list[bytes]]:
    data_dir = root / "source"
    with Repo(data_dir) as repo:
        db = repo.create_database("bench", "events", public=True)
        for first in range(0, n, 1000):
            db.write_many(
                [
                    {"op": "add", "value": {"n": i, "text": "x" * 200, "tags": ["bench", "sync"]}}
                    for i in range(first, min(n, first + 1000))
                ]
            )
        blocks = [entry.block for entry in db.entries()]
        return data_dir, db.address, blocks


def run(root: Path, source: Path, address: str, blocks: list[bytes], tag: str) -> dict[str, float]:
    with Repo(source) as repo:
        manifest = repo.database(address).manifest
        digest = repo.database(address).digest()
    verify_s = join_s = 0.0
    with Repo(root / f"fresh-{tag}") as repo:
        db = repo.add_database(manifest)
        statements = [0]

        def count(_sql: str) -> None:
            statements[0] += 1

        # Statements SQLite ran (each row of an executemany counts): a figure the machine's load
        # does not move.
        repo.sql.conn.set_trace_callback(count)
        gc.collect()
        wall = time.perf_counter()
        # As on the network: the announcement's inline head arrives first and waits (pending)
        # for its past, which the sync then brings.
        entries, report = db.verify_entry_blocks(blocks[-1:])
        db.join_entries(entries, report)
        for first in range(0, len(blocks), BATCH):
            batch = blocks[first : first + BATCH]
            t0 = time.thread_time()
            entries, report = db.verify_entry_blocks(batch)
            t1 = time.thread_time()
            db.join_entries(entries, report)
            t2 = time.thread_time()
            assert not report.rejected, report.rejected[:3]
            verify_s += t1 - t0
            join_s += t2 - t1
        wall = time.perf_counter() - wall
        assert len(db) == len(blocks)
        assert db.digest() == digest, "replicas differ"
    n = len(blocks)
    return {
        "verify_us": verify_s / n * 1e6,
        "join_us": join_s / n * 1e6,
        "total_s": verify_s + join_s,
        "wall_s": wall,
        "statements": statements[0] / n,
        "entries_per_s": n / (verify_s + join_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2,000 entries, 1 repetition")
    parser.add_argument("-n", type=int, default=100_000, help="entries (default 100,000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--reuse", type=Path, help="a directory that keeps the written source")
    args = parser.parse_args()
    n, reps = (2_000, 1) if args.quick else (args.n, args.reps)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        if args.reuse is not None:
            # A source written once and kept (for repeated runs, e.g. under valgrind).
            kept = args.reuse / "blocks.pickle"
            if not kept.exists():
                kept.write_bytes(pickle.dumps(prepare(args.reuse, n)))
            source, address, blocks = pickle.loads(kept.read_bytes())
        else:
            source, address, blocks = prepare(root, n)
        print(f"# {n} events written in {time.perf_counter() - t:.1f} s; batches of {BATCH}")
        print()
        print(
            "| rep | verify µs/entry (CPU) | join µs/entry (CPU) | CPU s | entries per CPU s | wall s | SQL statements per entry |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for rep in range(reps):
            r = run(root, source, address, blocks, str(rep))
            print(
                f"| {rep + 1} | {r['verify_us']:.1f} | {r['join_us']:.1f} | "
                f"{r['total_s']:.2f} | {r['entries_per_s']:,.0f} | {r['wall_s']:.2f} | "
                f"{r['statements']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
