"""A fresh replica's seconds to its first read: from a signed snapshot vs. verifying the history
first (issue 21, item 1).

    python bench/bench_snapshot.py                 # 10k and 100k entries
    python bench/bench_snapshot.py --sizes 1000000
    python bench/bench_snapshot.py --quick         # 1k entries (CI smoke run)

The source (a keyvalue database of N puts of distinct keys, ~400-byte values, and a snapshot of it
published by its admin) runs in a process of its own, as a real peer would; the fresh replica
runs in this one. For each size, two fresh replicas follow it in turn:

- ``--no-snapshot``: ``follow``, then wait until the history is caught up (every entry applied):
  only then does a read answer from the whole state. This is what main's code does.
- from the snapshot: ``follow`` returns serving from the snapshot; the first read (the newest
  key and a middle one, both checked) is timed, then the time until the history behind it is
  verified (its state digest compared).

The source is prepared, and each follower runs, in a process of its own, so the peak RSS printed
is the follower's alone (ru_maxrss of its process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
VALUE = "x" * 380


def prepare_source(root: Path, n: int, snapshot: bool) -> tuple[str, str, float]:
    """A data dir with a keyvalue database of ``n`` puts (and its snapshot, if asked); the
    seconds the snapshot took to build."""
    data_dir = root / "source"
    with Repo(data_dir) as repo:
        db = repo.create_database("bench", "keyvalue", public=True)
        for first in range(0, n, 1000):
            db.write_many(
                [
                    {"op": "put", "key": f"k{i:08d}", "value": {"n": i, "text": VALUE}}
                    for i in range(first, min(n, first + 1000))
                ]
            )
        built = 0.0
        if snapshot:
            from crdt.snapshot import build_snapshot
            from gridnode.storage.snapshots import set_published_root

            start = time.perf_counter()
            made = build_snapshot(db.database, repo.keypair, created=int(time.time()))
            # (A running node builds in a thread, the storage worker only copying the rows.)
            with repo.sql.transaction():
                for cid, block in made.chunks:
                    repo.sql.put_block(cid.bytes, block)
                repo.sql.put_block(made.root_cid.bytes, made.root)
                set_published_root(repo.sql, db.address, made.root_cid.bytes)
            built = time.perf_counter() - start
        return str(data_dir), db.address, built


async def serve_forever(data_dir: Path) -> None:
    async with open_node(data_dir, listen=LOOPBACK, announce_interval=5) as node:
        print(node.addrs[0], flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def first_read(
    root: Path, source_addr: str, address: str, n: int, *, snapshot: bool
) -> dict[str, float]:
    newest, middle = f"k{n - 1:08d}", f"k{n // 2:08d}"
    async with AsyncExitStack() as stack:
        fresh = await stack.enter_async_context(
            open_node(
                root / f"fresh-{n}-{snapshot}",
                listen=LOOPBACK,
                bootstrap=[source_addr],
                announce_interval=5,
            )
        )
        with trio.fail_after(30):
            while not fresh.peers():
                await trio.sleep(0.01)
        start = time.perf_counter()
        kwargs = {} if snapshot else {"snapshot": False}
        try:
            database = await fresh.follow(address, **kwargs)
        except TypeError:  # main's code: no snapshots at all
            database = await fresh.follow(address)
        if not snapshot:
            with trio.fail_after(1800):
                while await fresh.worker.run(len, database) < n:
                    await trio.sleep(0.02)

        def read() -> tuple[object, object]:
            return database.store.get(newest), database.store.get(middle)

        with trio.fail_after(1800):
            while (got := await fresh.worker.run(read))[0] is None:
                await trio.sleep(0.01)
        first = time.perf_counter() - start
        assert got == ({"n": n - 1, "text": VALUE}, {"n": n // 2, "text": VALUE}), got
        result = {"first_read": first, "verified": 0.0}
        if snapshot:
            served = getattr(fresh, "snapshots", None)
            assert served is not None and served.status(address) is not None, "no snapshot"
            result["fetch"] = served.status(address)["fetch_seconds"]
            print(f"# {n:,}: fetch timings {served.status(address)['timings']}", flush=True)
            with trio.fail_after(1800):
                while served.status(address)["state"] == "serving":
                    await trio.sleep(0.05)
            assert served.status(address)["state"] == "verified", served.status(address)
            result["verified"] = time.perf_counter() - start
        result["rss_mb"] = _rss_mb()
        return result


def run_one(root: Path, source_dir: Path, address: str, n: int, snapshot: bool) -> dict[str, float]:
    """One follower, in a process of its own (``--follow``)."""
    way = "snapshot" if snapshot else "history"
    done = subprocess.run(
        [sys.executable, __file__, "--follow", way, str(root), str(source_dir), address, str(n)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = done.stdout.splitlines()
    for line in lines[:-1]:
        print(line, flush=True)
    result: dict[str, float] = json.loads(lines[-1])
    return result


def follow_in_this_process(
    root: Path, source_dir: Path, address: str, n: int, snapshot: bool
) -> dict[str, float]:
    source = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(source_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert source.stdout is not None and source.stdin is not None
        source_addr = source.stdout.readline().strip()
        return trio.run(lambda: first_read(root, source_addr, address, n, snapshot=snapshot))
    finally:
        assert source.stdin is not None
        source.stdin.close()
        source.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", help="entries (default 10k and 100k)")
    parser.add_argument(
        "--only", choices=("snapshot", "history"), help="run one of the two ways only"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--follow", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve_forever, args.serve)
        return
    if args.follow:
        way, root, source_dir, address, n = args.follow
        result = follow_in_this_process(
            Path(root), Path(source_dir), address, int(n), way == "snapshot"
        )
        print(json.dumps(result), flush=True)
        return
    if args.prepare:
        root, n, snapshot = args.prepare
        print(json.dumps(prepare_source(Path(root), int(n), snapshot == "yes")), flush=True)
        return
    sizes = [1_000] if args.quick else (args.sizes or [10_000, 100_000])
    ways = [args.only == "snapshot"] if args.only else [False, True]
    print(
        f"# loopback, source in its own process; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print()
    print(
        "| entries | follow | first read (s) | snapshot fetched (s) | history verified (s) | snapshot build (s) | follower peak RSS (MB) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for n in sizes:
            root = Path(tmp) / f"s{n}"
            made = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--prepare",
                    str(root),
                    str(n),
                    "yes" if True in ways else "no",
                ],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            )
            source, address, built = json.loads(made.stdout.splitlines()[-1])
            source_dir = Path(source)
            for snapshot in ways:
                r = run_one(root, source_dir, address, n, snapshot)
                print(
                    f"| {n:,} | {'from snapshot' if snapshot else '--no-snapshot'} "
                    f"| {r['first_read']:.2f} | {r.get('fetch', 0):.2f} "
                    f"| {r['verified']:.2f} | {built:.2f} | {r['rss_mb']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
