"""Set reconciliation in the sync protocol: round trips, messages and bytes of a pull.

    python bench/bench_reconcile.py                    # N = 10k, 100k, 1M; d = 1, 100, 10k
    python bench/bench_reconcile.py --sizes 10000      # one size
    python bench/bench_reconcile.py --quick            # N = 2k, d = 1, 100 (CI smoke run)

Two real SQLite data dirs in this process; the puller and the server talk over an in-memory trio
stream (no libp2p: the figures are the sync protocol's own bytes, framing included; the
transport adds its own ~0.1%). Every pull is checked: afterwards the puller holds every entry the
server holds.

Scenarios, for each N (entries both replicas share) and d:

- *cold*: the puller holds nothing;
- *behind*: the server has d newer entries;
- *diverged*: each side has d entries of its own, written concurrently (a difference of 2d);
- *warm*: 200 rounds of "the server writes 1 to 5 entries, the puller 0 to 2, then pull": the
  mean round trips of a warm sync;
- *overhead*: a cold pull of 1000 entries with 1 kB payloads: bytes beyond the entry blocks.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.identity import Keypair
from gridnode.node.sync import PullReport, pull, serve
from gridnode.repo import Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker

OTHER = Keypair.from_seed(bytes([77]) * 32)


class MemoryStream:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def read(self, max_bytes: int) -> bytes:
        return await self.stream.receive_some(max_bytes)

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self) -> None:
        await self.stream.aclose()


async def _pull(server: Repo, puller: StoredDatabase) -> PullReport:
    left, right = trio.testing.memory_stream_pair()
    a, b = StorageWorker(), StorageWorker()
    report: PullReport | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, MemoryStream(right), server, a)
        report = await pull(MemoryStream(left), puller, b)
        await left.aclose()
    assert report is not None
    return report


def measure(server: Repo, address: str, puller_repo: Repo) -> tuple[PullReport, float]:
    puller = puller_repo.database(address)
    start = time.perf_counter()
    report = trio.run(_pull, server, puller)
    elapsed = time.perf_counter() - start
    source = server.database(address)
    # The puller's log is closed under parents: holding the server's heads is holding it all.
    assert report.complete and not puller.unknown(list(source.heads)), report
    assert len(puller) >= len(source)
    return report, elapsed


def write(
    db: StoredDatabase, n: int, *, key: Keypair | None = None, size: int = 100, tag: str = ""
) -> None:
    for first in range(0, n, 2000):
        db.write_many(
            [
                {"op": "add", "value": {"n": i, "by": tag, "text": "x" * size}}
                for i in range(first, min(n, first + 2000))
            ],
            key,
        )


def row(label: str, n: int, d: str, report: PullReport, seconds: float) -> str:
    s = report.stats
    total = s.bytes_sent + s.bytes_received
    share = (
        100 * s.overhead_bytes / s.block_bytes_received if s.block_bytes_received else float("nan")
    )
    return (
        f"| {label} | {n:,} | {d} | {s.round_trips} | {s.messages_sent + s.messages_received} | "
        f"{total:,} | {s.blocks_received:,} | {s.overhead_bytes:,} | {share:.2f}% | {seconds:.2f} |"
    )


def bench_size(root: Path, n: int, ds: list[int]) -> list[str]:
    rows = []
    server_dir, puller_dir = root / f"server-{n}", root / f"puller-{n}"
    with Repo(server_dir) as server:
        db = server.create_database(f"bench-{n}", "events", public=True)
        address = db.manifest.address
        start = time.perf_counter()
        write(db, n, tag="base")
        print(
            f"# built {n:,} entries in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        # Cold: an empty replica joins.
        with Repo(root / f"cold-{n}") as cold:
            cold.add_database(db.manifest)
            report, seconds = measure(server, address, cold)
            rows.append(row("cold", n, "N", report, seconds))
        shutil.rmtree(root / f"cold-{n}")
    shutil.copytree(server_dir, puller_dir)
    with Repo(server_dir) as server, Repo(puller_dir) as puller:
        source, replica = server.database(address), puller.database(address)
        for d in ds:
            write(source, d, tag=f"behind-{d}")
            report, seconds = measure(server, address, puller)
            rows.append(row("behind", n, f"{d:,}", report, seconds))
        for d in ds:
            write(source, d, tag=f"server-{d}")
            write(replica, d, key=OTHER, tag=f"puller-{d}")
            report, seconds = measure(server, address, puller)
            rows.append(row("diverged", n, f"{d:,} + {d:,}", report, seconds))
            measure(puller, address, server)  # even them out again (not measured)
        rng = random.Random(n)
        trips = []
        for _ in range(200):
            write(source, rng.randint(1, 5), tag="warm")
            write(replica, rng.randint(0, 2), key=OTHER, tag="warm")
            report, _ = measure(server, address, puller)
            trips.append(report.stats.round_trips)
            measure(puller, address, server)
        rows.append(
            f"| warm (200 syncs) | {n:,} | 1-5 + 0-2 | mean {sum(trips) / len(trips):.3f}, max {max(trips)} | | | | | | |"
        )
    shutil.rmtree(server_dir)
    shutil.rmtree(puller_dir)
    return rows


def bench_overhead(root: Path) -> str:
    with Repo(root / "ovh-server") as server, Repo(root / "ovh-puller") as puller:
        db = server.create_database("overhead", "events", public=True)
        write(db, 1000, size=1000)
        puller.add_database(db.manifest)
        report, seconds = measure(server, db.manifest.address, puller)
        return row("overhead, 1 kB payloads", 1000, "N", report, seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--diffs", type=int, nargs="*", default=[1, 100, 10_000])
    args = parser.parse_args()
    sizes, ds = ([2_000], [1, 100]) if args.quick else (args.sizes, args.diffs)
    print(
        f"# in-process pulls over a memory stream; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        f"# goal for cold catch-up round trips: ceil(log16 N) + 2 = {', '.join(f'{math.ceil(math.log(n, 16)) + 2} (N={n:,})' for n in sizes)}"
    )
    print()
    print(
        "| pull | N | d | round trips | messages | bytes | entries sent | overhead bytes | overhead | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        print(bench_overhead(root), flush=True)
        for n in sizes:
            for line in bench_size(root, n, [d for d in ds if d <= n]):
                print(line, flush=True)


if __name__ == "__main__":
    main()
