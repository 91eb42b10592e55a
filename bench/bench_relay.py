"""A catch-up through a circuit relay: what it carries and how long it holds a circuit.

    python bench/bench_relay.py -n 10000      # the figure behind the relay_* defaults
    python bench/bench_relay.py --quick       # 1,000 entries (CI smoke run)

Three nodes in one process on 127.0.0.1: a relay (``relay_service``), a source holding ``n``
~400-byte events (as bench/bench_sync.py writes them) and a fresh follower; source and follower
listen on nothing (``relay_client``), so the follower's catch-up runs over a circuit through the
relay. Then the same catch-up over a direct TCP connection, for comparison. Reported: seconds
until the follower holds everything (the digests match), the bytes the relay carried (both
directions: what ``relay_circuit_bytes`` must allow), and circuits opened and cut.
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

from gridnode.node import open_node
from gridnode.repo import Repo

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def prepare(root: Path, n: int, relayed: bool) -> tuple[Path, Path, Path, str]:
    source, follower, relay = root / "source", root / "follower", root / "relay"
    with Repo(source) as repo:
        db = repo.create_database("bench", "events", public=True)
        for first in range(0, n, 1000):
            db.write_many(
                [
                    {"op": "add", "value": {"n": i, "text": "x" * 200, "tags": ["bench", "sync"]}}
                    for i in range(first, min(n, first + 1000))
                ]
            )
        manifest, address = db.manifest, db.address
    with Repo(follower) as repo:
        repo.add_database(manifest)
    Repo(relay).close()
    with open(relay / "gridnode.toml", "a") as config:
        config.write("relay_service = true\n")
    if relayed:
        for d in (source, follower):
            with open(d / "gridnode.toml", "a") as config:
                config.write("relay_client = true\nlisten = []\n")
    return source, follower, relay, address


async def catch_up(source: Path, follower: Path, relay_dir: Path, address: str) -> dict:
    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(
            open_node(relay_dir, listen=LOOPBACK, announce_interval=1.0)
        )
        a = await stack.enter_async_context(
            open_node(source, bootstrap=[relay.addrs[0]], announce_interval=1.0)
        )
        want = await a.worker.run(a.database(address).digest)
        bootstrap = [relay.addrs[0]] if not a.addrs else [a.addrs[0]]
        started = time.perf_counter()
        b = await stack.enter_async_context(
            open_node(follower, bootstrap=bootstrap, announce_interval=1.0)
        )
        while await b.worker.run(b.database(address).digest) != want:
            await trio.sleep(0.05)
        seconds = time.perf_counter() - started
        stats = relay.host.relay_service.stats  # type: ignore[union-attr]
        return {
            "seconds": seconds,
            "bytes": stats.bytes_relayed,
            "opened": stats.circuits_opened,
            "cut": stats.circuits_cut,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 entries")
    parser.add_argument("-n", type=int, default=10_000, help="entries (default 10,000)")
    args = parser.parse_args()
    n = 1_000 if args.quick else args.n
    print(
        "| path | entries | seconds to caught up | bytes through the relay | circuits opened | cut |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for relayed in (True, False):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            dirs = prepare(Path(tmp), n, relayed)
            r = trio.run(catch_up, *dirs)
            path = "relayed" if relayed else "direct"
            print(
                f"| {path} | {n:,} | {r['seconds']:.2f} | {r['bytes']:,} | {r['opened']} | "
                f"{r['cut']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
