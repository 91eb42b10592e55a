"""(d) An attacker holding an authorised writer's key equivocates: two different entries by EVE at one
clock on the same parents, both validly signed. Both are kept and recorded as an equivocation, the
same on both honest nodes, and the replicas converge."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from crdt.entry import decode_entry
from crdt.log import Equivocation, Log
from gridnode.net import open_host
from protocols.gossip import Announcement, topic_for
from tests.hostile.attacker import EVE, LOOPBACK, applied_cids, converged, honest_nodes

ATTACKER_SEED = bytes([98]) * 32


def test_equivocation_is_kept_recorded_and_converges(tmp_path):
    async def main():
        async with honest_nodes(tmp_path) as (a, b, address), AsyncExitStack() as stack:
            await b.write(address, [{"op": "put", "key": "from b", "value": 1}])
            await converged([a, b], address)
            manifest = a.database(address).manifest
            before = await applied_cids(a, address)
            # The attacker's own replicas of the log (what a pull would give it), one per fork.
            blocks = await a.read(address, lambda d: [(e.cid, e.block) for e in d.entries()])
            forks = []
            for value in ("fork one", "fork two"):
                log = Log(manifest)
                log.join(decode_entry(c, blk) for c, blk in blocks)
                forks.append(log.append(EVE, {"op": "put", "key": "k", "value": value}))
            one, two = forks
            assert (one.author, one.clock, one.next) == (two.author, two.clock, two.next)
            assert one.cid != two.cid

            host = await stack.enter_async_context(open_host(ATTACKER_SEED, LOOPBACK))
            await host.connect(a.addrs[0])
            topic = topic_for(manifest.cid)
            await host.subscribe(topic)
            message = Announcement(
                manifest.cid, (one.cid, two.cid), ((one.cid, one.block), (two.cid, two.block))
            ).encode()
            with trio.fail_after(30):
                while {one.cid, two.cid} - await applied_cids(a, address):
                    await host.publish(topic, message)
                    await trio.sleep(0.2)
            await converged([a, b], address)
            expected = [Equivocation(EVE.did, one.clock, tuple(sorted((one.cid, two.cid))))]
            for node in (a, b):
                assert await applied_cids(node, address) == before | {one.cid, two.cid}
                assert await node.read(address, lambda d: d._db.log.equivocations) == expected
            # Honest writes after the fork still converge, on top of both branches.
            await b.write(address, [{"op": "put", "key": "after", "value": 2}])
            await converged([a, b], address)
            assert await a.read(address, lambda d: d.store.get("after")) == 2
            assert len(await a.read(address, lambda d: d.heads)) == 1

    trio.run(main)
