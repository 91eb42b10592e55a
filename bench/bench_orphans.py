"""Orphan floods (issue 18, item 2): what an outsider's validly signed orphans cost a node.

    python bench/bench_orphans.py                      # 200 + 40 orphans of 900 KB; 100,000 pending
    python bench/bench_orphans.py --quick              # CI smoke run

Two parts, both on today's code and on main alike (the script uses nothing newer than main's API):

1. **The flood**, ``tests/hostile/test_orphans.py``'s scenario on live nodes on 127.0.0.1: an
   attacker answers the honest node's pulls with ``--fresh`` orphans by fresh keys and
   ``--writer`` orphans by a writer whose key it holds, ``--size`` bytes of payload each. Prints
   the SQLite file's growth, RSS, what waits for parents afterwards and after a restart.
2. **An announcement at many pending**: ``--pending`` small orphans by 10 writers wait in a
   database (joined from 10 sources); then the work the node does for each gossip announcement
   of heads it lacks (``unknown`` and ``_has_missing`` in gridnode/node/replication.py), timed
   (median of 20).
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.entry import create_entry
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from gridnode.node.pulls import _has_missing
from gridnode.repo import Repo
from tests.hostile.test_orphans import orphan_flood, pending_stored

MIB = 1024 * 1024


def flood(args: argparse.Namespace, tmp: Path) -> None:
    out = trio.run(
        lambda: orphan_flood(tmp / "flood", fresh=args.fresh, writer=args.writer, size=args.size)
    )
    print(
        f"## flood: {out.sent_fresh} orphans by fresh keys + {out.sent_writer} by a writer's key, "
        f"{out.sent_bytes / MIB:.0f} MiB, sent in {out.flood_seconds:.1f} s"
    )
    print()
    print("| measure | value |")
    print("|---|---:|")
    print(f"| SQLite file (+WAL) growth | {(out.file_after - out.file_before) / MIB:+.1f} MiB |")
    print(f"| RSS growth at peak | {(out.rss_peak - out.rss_before) / MIB:+.0f} MiB |")
    print(f"| RSS growth after the flood | {(out.rss_after - out.rss_before) / MIB:+.0f} MiB |")
    print(f"| pending after the flood | {out.pending[0]} entries, {out.pending[1] / MIB:.1f} MiB |")
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(out.rejected.items())) or "none"
    print(f"| rejections counted | {rejected} |")
    print(f"| rejection log lines | {out.rejection_lines} |")
    print(f"| honest writes converged after | {out.honest_converged} |")
    print(f"| admin's grant chain: waited / applied | {out.chain_waited} / {out.chain_applied} |")

    def after_restart() -> tuple[int, int]:
        with Repo(out.dirs[0]) as repo:
            return pending_stored(repo.database(out.address))

    count, size = after_restart()
    print(f"| pending after a restart | {count} entries, {size / MIB:.1f} MiB |")
    print()


def announcements(args: argparse.Namespace, tmp: Path) -> None:
    writers = [Keypair.from_seed(bytes([200 + i]) * 32) for i in range(10)]
    repo = Repo(tmp / "pending")
    database = repo.create_database("orphans", "keyvalue", writers=[w.did for w in writers])
    mcid = database.manifest.cid
    t = time.perf_counter()
    entries = [
        create_entry(
            writers[i % 10],
            db=mcid,
            clock=2,
            next=[CID.for_block(os.urandom(16))],
            payload={"op": "put", "key": "k", "value": i},
        )
        for i in range(args.pending)
    ]
    made = time.perf_counter() - t
    takes_source = "source" in inspect.signature(database.join_entries).parameters
    t = time.perf_counter()
    chunk = max(1, args.pending // 10)
    for n, start in enumerate(range(0, len(entries), chunk)):
        batch = entries[start : start + chunk]
        for part in range(0, len(batch), 5_000):
            piece = batch[part : part + 5_000]
            if takes_source:
                database.join_entries(piece, source=f"peer{n}")
            else:
                database.join_entries(piece)
    joined = time.perf_counter() - t
    pending = database._db.log.pending_count
    heads = [CID.for_block(os.urandom(16)) for _ in range(4)]
    given_up = {CID.for_block(os.urandom(16)): 3 for _ in range(1000)}
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        database.unknown(heads)
        _has_missing(database, given_up)
        times.append(time.perf_counter() - t)
    repo.close()
    print(
        f"## one announcement at {pending:,} pending entries ({args.pending:,} made in "
        f"{made:.1f} s, joined in {joined:.1f} s)"
    )
    print()
    print("| measure | median | min | max |")
    print("|---|---:|---:|---:|")
    ms = [x * 1000 for x in times]
    print(
        f"| unknown + _has_missing (ms) | {statistics.median(ms):.2f} | {min(ms):.2f} | "
        f"{max(ms):.2f} |"
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fresh", type=int, default=200)
    parser.add_argument("--writer", type=int, default=40)
    parser.add_argument("--size", type=int, default=900_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--skip-flood", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.fresh, args.writer, args.size, args.pending, args.reps = 8, 4, 10_000, 2_000, 3
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        if not args.skip_flood:
            flood(args, Path(tmp))
        announcements(args, Path(tmp))


if __name__ == "__main__":
    main()
