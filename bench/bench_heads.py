"""Many heads and large honest divergence (issue 18, items 1 and 7): what they cost, and whether
honest nodes still replicate with zero strikes.

    python bench/bench_heads.py                      # 3,000 heads; 80k vs 80k (model); 10k vs 10k (nodes)
    python bench/bench_heads.py --heads 3000 --model 80000 --nodes 10000

Three figures, each from the code of the checkout this script lives in (copy it into another
checkout to measure that one):

- **announce with many heads**: a real node holding ``--heads`` concurrent root entries announces
  them ``--repeat`` times (20); the time per announcement and the longest stall of the node's event loop meanwhile
  (what its API and every stream wait on);
- **divergence, model**: reconciliation of two sets of ``--model`` items each, fully interleaved,
  in memory (protocols.reconcile with the wire's limits): the round trips and largest message, or
  the message a receiver refused;
- **divergence, nodes**: two real nodes on 127.0.0.1, each of which wrote a chain of ``--nodes``
  entries (clocks 1 to n) the other has not seen, connected: the time to converge and the
  strikes between them.

``--only announce|model|nodes`` runs one of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.entry import create_entry
from crdt.identity import Keypair
from crdt.ipld import CID
from gridnode.node import open_node
from gridnode.repo import Repo
from protocols import wire
from protocols.errors import ProtocolError
from protocols.reconcile import Reconciler, SortedItems

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
WRITER = Keypair.from_seed(bytes([87]) * 32)


def setup(root: Path) -> tuple[list[Path], str]:
    """Data dirs of two nodes sharing a keyvalue database whose writers include WRITER."""
    dirs = [root / "a", root / "b"]
    repos = [Repo(d) for d in dirs]
    db = repos[0].create_database("heads", "keyvalue", writers=[repos[1].did, WRITER.did])
    repos[1].add_database(db.manifest)
    for repo in repos:
        repo.close()
    return dirs, db.address


def preload(data_dir: Path, address: str, n: int, tag: str) -> None:
    """n concurrent root entries (clock 1, no parents) by WRITER, joined before the node starts."""
    manifest_cid = CID.parse(address.rsplit("/", 1)[-1])
    with Repo(data_dir) as repo:
        database = repo.database(address)
        for first in range(0, n, 2000):
            blocks = []
            for i in range(first, min(first + 2000, n)):
                payload = {"op": "put", "key": f"{tag}{i}", "value": i}
                e = create_entry(WRITER, db=manifest_cid, clock=1, next=[], payload=payload)
                blocks.append((e.cid, e.block))
            database.join_blocks(blocks)


async def announce_cost(root: Path, heads: int, repeat: int) -> str:
    dirs, address = setup(root)
    preload(dirs[0], address, heads, "h")
    async with open_node(dirs[0], listen=LOOPBACK) as node:
        stall = 0.0
        done = False

        async def watch() -> None:
            nonlocal stall
            while not done:
                before = time.perf_counter()
                await trio.sleep(0.001)
                stall = max(stall, time.perf_counter() - before - 0.001)

        times = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(0.05)
            for _ in range(repeat):
                started = time.perf_counter()
                await node.announce(address)
                times.append(time.perf_counter() - started)
            done = True
        times.sort()
        return (
            f"| announce, {heads:,} heads | {times[len(times) // 2] * 1000:.1f} ms median, "
            f"{times[-1] * 1000:.1f} ms max | event loop stalled up to {stall * 1000:.1f} ms |"
        )


def item(n: int) -> bytes:
    return n.to_bytes(8, "big") + b"\x01\x71\x12\x20" + (n * 7919).to_bytes(32, "big")


def divergence_model(n: int) -> str:
    held = [item(i) for i in range(0, 2 * n, 2)]
    puller = Reconciler(SortedItems(held), role="puller")
    server = Reconciler(SortedItems([item(i) for i in range(1, 2 * n, 2)]), role="server")
    have = set(held)
    started = time.perf_counter()
    message = puller.initiate_ranges()
    trips = largest = 0
    try:
        while message is not None:
            trips += 1
            largest = max(largest, len(message))
            answer = server.receive_ranges(message)
            have.update(server.outbox)
            if answer is None:
                break
            largest = max(largest, len(answer))
            puller.items = SortedItems(have)
            message = puller.receive_ranges(answer)
    except ProtocolError as exc:
        return (
            f"| divergence {n:,} vs {n:,} (model) | refused at round trip {trips}: "
            f"{largest:,} ranges > {wire.MAX_RANGES:,} ({exc}) | |"
        )
    seconds = time.perf_counter() - started
    settled = len(have) == 2 * n
    return (
        f"| divergence {n:,} vs {n:,} (model) | {'settled' if settled else 'NOT settled'} in "
        f"{trips} round trips, largest message {largest:,} ranges | {seconds:.1f} s |"
    )


def write_chain(data_dir: Path, address: str, n: int, tag: str) -> None:
    """n entries written one on another by the node's own key (clocks 1 to n), before it starts."""
    with Repo(data_dir) as repo:
        database = repo.database(address)
        for first in range(0, n, 1000):
            database.write_many(
                {"op": "put", "key": f"{tag}{i}", "value": "x" * 200}
                for i in range(first, min(n, first + 1000))
            )


async def divergence_nodes(root: Path, n: int, timeout: float) -> str:
    dirs, address = setup(root)
    write_chain(dirs[0], address, n, "a")
    write_chain(dirs[1], address, n, "b")
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_node(dirs[0], listen=LOOPBACK))
        started = time.perf_counter()
        b = await stack.enter_async_context(
            open_node(dirs[1], listen=LOOPBACK, bootstrap=a.addrs, announce_interval=1.0)
        )
        outcome = f"did not converge in {timeout:.0f} s"
        with trio.move_on_after(timeout):
            while True:
                counts = {await node.read(address, len) for node in (a, b)}
                if counts == {2 * n}:
                    outcome = f"converged in {time.perf_counter() - started:.1f} s"
                    break
                await trio.sleep(0.1)
        struck = (a.stats.strikes.get(b.peer_id, 0), b.stats.strikes.get(a.peer_id, 0))
        return f"| divergence {n:,} vs {n:,} (2 nodes) | {outcome} | strikes {struck} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heads", type=int, default=3_000)
    parser.add_argument("--model", type=int, default=80_000)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to converge")
    parser.add_argument("--repeat", type=int, default=20, help="announcements measured")
    parser.add_argument("--only", choices=["announce", "model", "nodes"])
    args = parser.parse_args()
    print(f"# {Path(__file__).resolve().parents[1]}; {os.cpu_count()} CPUs")
    print()
    print("| case | result | |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        if args.only in (None, "announce"):
            print(trio.run(announce_cost, root / "announce", args.heads, args.repeat), flush=True)
        if args.only in (None, "model"):
            print(divergence_model(args.model), flush=True)
        if args.only in (None, "nodes"):
            print(
                trio.run(divergence_nodes, root / "diverge", args.nodes, args.timeout), flush=True
            )


if __name__ == "__main__":
    main()
