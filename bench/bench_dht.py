"""Lookups on gridnode's DHT (gridnode/net/dht.py) among many hosts in one process on loopback
(issue 22, discovery): how long finding a CID's provider takes, and how many peers it asks, when
the finder knows one peer and the provider is somewhere else.

    python bench/bench_dht.py                  # 60 hosts, 10 CIDs
    python bench/bench_dht.py --hosts 100 --cids 20

Host i > 0 connects to one earlier host (chosen at random, ``--seed``), then every host refreshes
its table (a lookup of its own id). A random host provides each CID; a random other host, whose
connections are all closed first (it keeps only its routing table), finds its providers. Printed:
per lookup, the seconds and the peers asked (median, max), and how many found the provider.
All hosts share one trio loop and the machine's cores with whatever else runs: the figures are
upper bounds of the protocol's cost, not of a node's.
"""

from __future__ import annotations

import argparse
import random
import statistics
from contextlib import AsyncExitStack

import trio

from crdt.ipld.cid import CID
from gridnode.net import open_host
from gridnode.net.dht import DhtConfig


async def main(hosts: int, cids: int, seed: int) -> None:
    rng = random.Random(seed)
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                open_host(
                    bytes([i % 256, i // 256]) * 16,
                    ["/ip4/127.0.0.1/tcp/0"],
                    dht=DhtConfig(),
                    max_connections=hosts + 8,
                )
            )
            for i in range(hosts)
        ]
        for i in range(1, hosts):
            await nodes[i].connect(nodes[rng.randrange(i)].addrs[0])
        for node in nodes:
            assert node.dht is not None
            await node.dht.refresh()
        tables = [node.dht.table_size for node in nodes if node.dht is not None]
        print(
            f"{hosts} hosts; routing tables: median {statistics.median(tables)}, min {min(tables)}"
        )
        times, asked, hits = [], [], 0
        for n in range(cids):
            provider, finder = rng.sample(nodes, 2)
            assert provider.dht is not None and finder.dht is not None
            cid = CID.for_block(f"bench {seed} {n}".encode())
            await provider.dht.provide(cid)
            for peer in finder.peers():
                await finder.disconnect(peer)
            lookups = finder.dht.stats.lookups
            began = trio.current_time()
            found = await finder.dht.find_providers(cid, count=1)
            times.append(trio.current_time() - began)
            ran = finder.dht.stats.lookups > lookups  # else its own records had it
            asked.append(len(finder.dht.last_lookup_asked) if ran else 0)
            hits += any(p.peer_id == provider.peer_id for p in found)
        print(
            f"find_providers: {hits}/{cids} found the provider; "
            f"seconds median {statistics.median(times):.3f}, max {max(times):.3f}; "
            f"peers asked median {statistics.median(asked)}, max {max(asked)}"
        )
        sent = sum(node.dht.stats.requests_sent for node in nodes if node.dht is not None)
        failed = sum(node.dht.stats.requests_failed for node in nodes if node.dht is not None)
        print(f"requests sent {sent}, failed {failed} (timeouts of a starved loop, resets)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=60)
    parser.add_argument("--cids", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    trio.run(main, args.hosts, args.cids, args.seed)
