"""The op log: joining already-verified entries, and the total order, with concurrent writers.

python bench/bench_log.py            # 100,000 entries, 10 writers
python bench/bench_log.py --quick    # 2,000 entries (CI smoke run)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.identity import Keypair
from crdt.log import Log
from crdt.manifest import create_manifest


def build(n: int, writers: int, seed: int = 1) -> tuple[list, object]:
    """``writers`` replicas appending concurrently and merging each other's heads now and then."""
    rng = random.Random(seed)
    keys = [Keypair.from_seed(bytes([i + 1]) * 32) for i in range(writers)]
    manifest = create_manifest("bench", "keyvalue", writers=[k.did for k in keys])
    logs = [Log(manifest) for _ in keys]
    written: list = []
    synced = [0] * writers
    while len(written) < n:
        i = rng.randrange(writers)
        if rng.random() < 0.1:
            # Writer i catches up with everything written so far, then writes on top of it.
            logs[i].join(written[synced[i] :])
            synced[i] = len(written)
        entry = logs[i].append(
            keys[i], {"op": "put", "key": f"k{len(written) % 1000}", "value": len(written)}
        )
        written.append(entry)
    return written, manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, reps = (2_000, 1) if args.quick else (100_000, 3)
    start = time.perf_counter()
    entries, manifest = build(n, 10)
    built = time.perf_counter() - start
    print(f"# {n} entries by 10 concurrent writers, built and signed in {built:.1f} s")
    print()
    print("| operation | median | min | max |")
    print("|---|---:|---:|---:|")
    joins, orders, shuffled_joins = [], [], []
    for rep in range(reps):
        log = Log(manifest)
        t = time.perf_counter()
        log.join(entries)
        joins.append(time.perf_counter() - t)
        assert len(log) == n, (len(log), log.pending_count)
        t = time.perf_counter()
        order = log.order()
        orders.append(time.perf_counter() - t)
        assert len(order) == n
        delivery = list(entries)
        random.Random(rep).shuffle(delivery)
        # The whole history delivered at random may wait at once: the caller's own delivery (as
        # a node's bitswap walk or CAR import is), which the pending caps for peers do not bound.
        log = Log(manifest, own_sources={"own"})
        t = time.perf_counter()
        log.join(delivery, source="own")
        shuffled_joins.append(time.perf_counter() - t)
        assert len(log) == n
    for name, times in [
        ("join in causal order (entries/s)", joins),
        ("join in random order, via the pending set (entries/s)", shuffled_joins),
    ]:
        rates = [n / t for t in times]
        print(
            f"| {name} | {statistics.median(rates):,.0f} | {min(rates):,.0f} | {max(rates):,.0f} |"
        )
    ms = [t * 1000 for t in orders]
    print(
        f"| total order of all entries (ms) | {statistics.median(ms):,.1f} | {min(ms):,.1f} | {max(ms):,.1f} |"
    )


if __name__ == "__main__":
    main()
