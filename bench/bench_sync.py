"""Replication over loopback: catch-up of a fresh node, and how fast one write reaches N nodes.

    python bench/bench_sync.py              # catch-up of 10k and 100k entries; 10 and 20 nodes
    python bench/bench_sync.py --quick      # 1k entries, 3 nodes (CI smoke run)

All nodes are real (libp2p hosts on 127.0.0.1, SQLite data dirs) and run in this one process, so
they share its two cores and one interpreter lock, except the catch-up source, which runs in a
process of its own.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridnode.node import open_node
from gridnode.repo import Repo

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def prepare_source(root: Path, n: int) -> tuple[Path, str, float]:
    """A data dir holding a public events database with ``n`` entries of ~300 bytes."""
    data_dir = root / "source"
    with Repo(data_dir) as repo:
        db = repo.create_database("bench", "events", public=True)
        start = time.perf_counter()
        for first in range(0, n, 1000):
            db.write_many(
                [
                    {"op": "add", "value": {"n": i, "text": "x" * 200, "tags": ["bench", "sync"]}}
                    for i in range(first, min(n, first + 1000))
                ]
            )
        return data_dir, db.address, time.perf_counter() - start


async def serve_forever(data_dir: Path) -> None:
    """``--serve DIR``: run a node on DIR, print its address, run until stdin closes."""
    async with open_node(data_dir, listen=LOOPBACK, announce_interval=5) as node:
        print(node.addrs[0], flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)


async def catch_up(root: Path, source_dir: Path, address: str, n: int) -> dict[str, float]:
    # The source runs in a process of its own, as a real peer would (nodes in one process would
    # share one interpreter lock).
    source = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(source_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        source_addr = await trio.to_thread.run_sync(source.stdout.readline)
        result = await _catch_up(root, source_addr.strip(), address, n)
    finally:
        source.stdin.close()
        source.wait(timeout=30)
    with Repo(source_dir) as repo:
        assert repo.database(address).digest() == result.pop("digest"), "replicas differ"
    return result


async def _catch_up(root: Path, source_addr: str, address: str, n: int) -> dict[str, float]:
    async with AsyncExitStack() as stack:
        fresh = await stack.enter_async_context(
            open_node(
                root / f"fresh-{n}", listen=LOOPBACK, bootstrap=[source_addr], announce_interval=5
            )
        )
        with trio.fail_after(30):
            while not fresh.peers():
                await trio.sleep(0.01)
        start = time.perf_counter()
        database = await fresh.follow(address)
        with trio.fail_after(600):
            while await fresh.worker.run(len, database) < n:
                await trio.sleep(0.02)
        elapsed = time.perf_counter() - start
        with trio.fail_after(60):  # the pull's own accounting lands when it returns
            while not (
                done := [
                    s
                    for (_p, a), s in fresh.stats.syncs.items()
                    if a == address and s.total_applied
                ]
            ):
                await trio.sleep(0.01)
        status = done[0]
        digest = await fresh.worker.run(database.digest)
        return {
            "seconds": elapsed,
            "entries_per_s": n / elapsed,
            "round_trips": status.total_round_trips,
            "bytes": status.total_bytes_received,
            "digest": digest,
        }


async def propagation(root: Path, count: int, writes: int) -> list[float]:
    rng = random.Random(count)
    dirs = [root / f"p{count}-{i}" for i in range(count)]
    with Repo(dirs[0]) as first:
        db = first.create_database("fanout", "counter", public=True)
        manifest = db.manifest
    for d in dirs[1:]:
        with Repo(d) as repo:
            repo.add_database(manifest)
    async with AsyncExitStack() as stack:
        nodes = []
        for d in dirs:
            peers = rng.sample(nodes, min(2, len(nodes)))
            bootstrap = [p.addrs[0] for p in peers]
            nodes.append(
                await stack.enter_async_context(
                    open_node(d, listen=LOOPBACK, bootstrap=bootstrap, announce_interval=2)
                )
            )
        await trio.sleep(3)  # let the gossip mesh form
        latencies = []
        for k in range(writes):
            writer = nodes[rng.randrange(count)]
            start = time.perf_counter()
            await writer.write(manifest.address, [{"op": "inc", "by": 1}])
            with trio.fail_after(60):
                for node in nodes:
                    store = node.database(manifest.address).store
                    while await node.worker.run(lambda s=store: s.value) < k + 1:
                        await trio.sleep(0.005)
            latencies.append(time.perf_counter() - start)
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--sizes", type=int, nargs="*", help="catch-up sizes (default 10k and 100k)"
    )
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out runs")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve_forever, args.serve)
        return
    sizes = [1_000] if args.quick else (args.sizes or [10_000, 100_000])
    fanouts = [] if args.no_fanout else [3] if args.quick else [10, 20]
    writes = 3 if args.quick else 10
    print(
        f"# loopback, all nodes in one process; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print()
    print("| catch-up | seconds | entries/s | round trips | bytes received | bytes per entry |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        for n in sizes:
            source_dir, address, _built = prepare_source(root / f"s{n}", n)
            result = trio.run(catch_up, root / f"s{n}", source_dir, address, n)
            print(
                f"| {n:,} entries | {result['seconds']:.2f} | {result['entries_per_s']:,.0f} | "
                f"{result['round_trips']:.0f} | {result['bytes']:,.0f} | {result['bytes'] / n:,.0f} |",
                flush=True,
            )
        print()
        print("| one write reaches all of | median | min | max |")
        print("|---|---:|---:|---:|")
        for count in fanouts:
            latencies = sorted(trio.run(propagation, root, count, writes))
            median = latencies[len(latencies) // 2]
            print(
                f"| {count} nodes | {median * 1000:.0f} ms | {latencies[0] * 1000:.0f} ms | {latencies[-1] * 1000:.0f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
