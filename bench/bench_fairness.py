"""An honest peer's sync latency while another peer floods the server (issue 18 item 8).

    python bench/bench_fairness.py               # 20k entries on the server, 8 + 8 flood streams
    python bench/bench_fairness.py --quick       # 5k entries, 4 + 4 streams (CI smoke run)

Three processes, as real peers would be: the server (a node with N entries, in a process of its
own), the flooder (tests/hostile/flooder.py: `want` of the heads with an empty `have`, and
reconciliation messages of 4,096 mismatching fingerprints, on many streams, reading every answer)
and the honest peer (a node in this process that replicates the database). Measured, idle and then
under the flood: the honest peer's warm sync (a pull with nothing new: one round trip), and its
pull of 100 entries the server just wrote; and the server's storage-worker seconds per second of
wall time (during the flood, all of it is the flooder's but for the honest peer's few calls).

The script does not depend on the budget it measures, so it runs the same on a checkout from
before it (the before/after figures in docs/reliability.md come from it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.ipld import CID
from gridnode.net import open_host
from gridnode.node import open_node
from gridnode.repo import Repo
from gridnode.storage.worker import StorageWorker

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
FLOODER_SEED = bytes([88]) * 32
#: Seconds of flood before measuring: more than a budget's burst lasts.
RAMP = 10.0


def prepare(root: Path, n: int) -> tuple[Path, Path, str]:
    """The server's data dir with ``n`` events of ~300 bytes; the honest peer's, following it."""
    server, honest = root / "server", root / "honest"
    with Repo(server) as repo:
        db = repo.create_database("bench", "events", public=True)
        for first in range(0, n, 1000):
            db.write_many(
                [
                    {"op": "add", "value": {"n": i, "text": "x" * 200}}
                    for i in range(first, min(n, first + 1000))
                ]
            )
        address, manifest = db.address, db.manifest
    with Repo(honest) as repo:
        repo.add_database(manifest)
    return server, honest, address


# -- the server process ------------------------------------------------------------------------


def _time_the_worker() -> list[float]:
    """Wrap every storage call so the thread's busy seconds are summed (any version of the
    worker: the wrapper times the function itself, in the thread)."""
    busy = [0.0, 0.0]  # total, longest call
    original = StorageWorker.run

    async def run(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        def timed():  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                busy[0] += took
                busy[1] = max(busy[1], took)

        return await original(self, timed)

    StorageWorker.run = run  # type: ignore[method-assign]
    original_steps = getattr(StorageWorker, "run_steps", None)
    if original_steps is not None:

        async def run_steps(self, steps):  # type: ignore[no-untyped-def]
            def timed_steps():  # type: ignore[no-untyped-def]
                while True:
                    start = time.perf_counter()
                    try:
                        next(steps)
                    except StopIteration as stop:
                        busy[0] += time.perf_counter() - start
                        return stop.value
                    busy[0] += time.perf_counter() - start
                    yield

            return await original_steps(self, timed_steps())

        StorageWorker.run_steps = run_steps  # type: ignore[method-assign]
    return busy


async def serve(data_dir: Path, address: str) -> None:
    """``--serve DIR ADDRESS``: run the server; answer commands on stdin, one JSON line each."""
    busy = _time_the_worker()
    async with open_node(data_dir, listen=LOOPBACK, announce_interval=3600) as node:
        heads = await node.read(address, lambda d: [str(c) for c in d.heads])
        print(json.dumps({"addr": node.addrs[0], "heads": heads}), flush=True)
        written = 0
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                return
            command = line.split()
            if command[0] == "write":
                count = int(command[1])
                await node.write(
                    address,
                    [
                        {"op": "add", "value": {"w": written + i, "text": "y" * 200}}
                        for i in range(count)
                    ],
                )
                written += count
                print(json.dumps({"ok": True}), flush=True)
            elif command[0] == "stats":
                print(
                    json.dumps(
                        {
                            "busy": busy[0],
                            "longest": busy[1],
                            "cpu": time.process_time(),
                            "wall": time.monotonic(),
                            "usage": {
                                tag[-6:]: round(u.seconds, 2)
                                for tag, u in getattr(node.worker, "usage", {}).items()
                            },
                        }
                    ),
                    flush=True,
                )


# -- the flooder process -----------------------------------------------------------------------


async def flood_forever(addr: str, peer: str, db: str, heads: list[str], top: int, streams: int):
    from tests.hostile.flooder import flood

    counts: Counter[str] = Counter()
    async with open_host(FLOODER_SEED, LOOPBACK) as host:
        await host.connect(addr)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: flood(
                    host,
                    peer,
                    CID.parse(db),
                    [CID.parse(h) for h in heads],
                    top,
                    counts,
                    want_streams=streams,
                    ranges_streams=streams,
                )
            )
            await trio.to_thread.run_sync(sys.stdin.read)
            nursery.cancel_scope.cancel()
    print(json.dumps(dict(counts)), flush=True)


# -- the honest peer (this process) --------------------------------------------------------------


class Server:
    def __init__(self, data_dir: Path, address: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(data_dir), address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ask(self, line: str | None = None) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        return json.loads(await trio.to_thread.run_sync(self.process.stdout.readline))

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


async def measure(node, server: Server, peer: str, address: str, syncs: int, pulls: int) -> dict:
    database = node.replication.database(address)
    warm = []
    for _ in range(syncs):
        start = time.perf_counter()
        report = await node.replication.pulls._pull_once(peer, database)
        warm.append(time.perf_counter() - start)
        assert report is not None and report.refused is None, report
        await trio.sleep(0.05)
    fresh = []
    for _ in range(pulls):
        target = await node.read(address, len) + 100
        await server.ask("write 100")
        # (The server's announcement may start a pull of its own: whichever brings them.)
        start = time.perf_counter()
        report = await node.replication.pulls._pull_once(peer, database)
        assert report is not None and report.refused is None, report
        while await node.read(address, len) < target:
            await trio.sleep(0.002)
        fresh.append(time.perf_counter() - start)
        await trio.sleep(0.05)
    return {
        "warm_median": statistics.median(warm),
        "warm_p90": sorted(warm)[int(0.9 * (len(warm) - 1))],
        "pull100_median": statistics.median(fresh),
        "pull100_max": max(fresh),
    }


async def bench(root: Path, n: int, streams: int, syncs: int, pulls: int) -> dict:
    start = time.perf_counter()
    server_dir, honest_dir, address = prepare(root, n)
    print(f"prepared {n} entries in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    server = Server(server_dir, address)
    flooder = None
    try:
        hello = await server.ask()
        addr = hello["addr"]
        peer = addr.rsplit("/p2p/", 1)[1]
        async with AsyncExitStack() as stack:
            node = await stack.enter_async_context(
                open_node(honest_dir, listen=LOOPBACK, bootstrap=[addr], announce_interval=3600)
            )
            start = time.perf_counter()
            with trio.fail_after(600):
                while await node.read(address, len) < n:
                    await trio.sleep(0.05)
            catch_up = time.perf_counter() - start
            await trio.sleep(1.0)
            before = await server.ask("stats")
            idle = await measure(node, server, peer, address, syncs, pulls)
            after = await server.ask("stats")
            idle["worker_per_s"] = (after["busy"] - before["busy"]) / (
                after["wall"] - before["wall"]
            )

            flooder = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--flood",
                    addr,
                    peer,
                    str(CID.parse(address.rsplit("/", 1)[1])),
                    str(n),
                    str(streams),
                    *hello["heads"],
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            await trio.sleep(RAMP)  # the flood ramps up (and spends any burst it is allowed)
            before = await server.ask("stats")
            flooded = await measure(node, server, peer, address, syncs, pulls)
            after = await server.ask("stats")
            wall = after["wall"] - before["wall"]
            flooded["worker_per_s"] = (after["busy"] - before["busy"]) / wall
            flooded["server_cpu_per_s"] = (after["cpu"] - before["cpu"]) / wall
            flooded["usage"] = after["usage"]  # worker seconds per peer (a budgeted node only)
            flooded["longest_call"] = after["longest"]
            assert flooder.stdin is not None and flooder.stdout is not None
            flooder.stdin.close()
            counts = json.loads(await trio.to_thread.run_sync(flooder.stdout.readline) or "{}")
            flooder.wait(timeout=60)
            flooder = None
    finally:
        if flooder is not None:
            flooder.kill()
        server.stop()
    return {"entries": n, "catch_up": catch_up, "idle": idle, "flood": flooded, "flooder": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=8, help="flood streams of each kind")
    parser.add_argument("--syncs", type=int, default=20)
    parser.add_argument("--pulls", type=int, default=5)
    parser.add_argument("--serve", nargs=2, metavar=("DIR", "ADDRESS"))
    parser.add_argument("--flood", nargs="+")
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, Path(args.serve[0]), args.serve[1])
        return
    if args.flood:
        addr, peer, db, top, streams, *heads = args.flood
        trio.run(flood_forever, addr, peer, db, heads, int(top), int(streams))
        return
    n, streams = (5_000, 4) if args.quick else (args.entries, args.streams)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        result = trio.run(bench, Path(tmp), n, streams, args.syncs, args.pulls)
    idle, flood = result["idle"], result["flood"]
    print(f"server: {n} entries; flood: {streams} want + {streams} ranges streams")
    print(f"honest catch-up of {n} (idle): {result['catch_up']:.2f} s")
    print("| | warm sync median | warm sync p90 | pull of 100 median | max | worker s/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in (("idle", idle), ("under flood", flood)):
        print(
            f"| {name} | {row['warm_median'] * 1000:.0f} ms | {row['warm_p90'] * 1000:.0f} ms | "
            f"{row['pull100_median'] * 1000:.0f} ms | {row['pull100_max'] * 1000:.0f} ms | "
            f"{row['worker_per_s']:.2f} |"
        )
    print(
        f"ratio under flood / idle: warm sync {flood['warm_median'] / idle['warm_median']:.2f}x, "
        f"pull of 100 {flood['pull100_median'] / idle['pull100_median']:.2f}x; "
        f"server CPU under flood {flood['server_cpu_per_s']:.2f} s/s"
    )
    print(f"longest storage call: {flood['longest_call'] * 1000:.0f} ms")
    if flood["usage"]:
        print(f"server's worker seconds by peer (last 6 chars; whole run): {flood['usage']}")
    print(f"flooder: {result['flooder']}")


if __name__ == "__main__":
    main()
