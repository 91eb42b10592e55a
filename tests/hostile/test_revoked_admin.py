"""(issue 18 item 4) A revoked admin takes the database over: the admin of a database (node a's
key) grants admin to M, then revokes it. M, on a head from before its revocation, grants admin to
a fresh key M2; M2 revokes a's admin role and grants admin back to M; the attacker announces the
three entries to node a. Revocation holds (docs/spec.md §8): on both honest nodes, a is still
admin, M and M2 are not, the three entries are kept in the DAG but void, and a still administers
afterwards."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from crdt.entry import decode_entry
from crdt.identity import Keypair
from crdt.log import Log
from gridnode.net import open_host
from protocols.gossip import Announcement, topic_for
from tests.hostile.attacker import LOOPBACK, applied_cids, converged, honest_nodes

ATTACKER_SEED = bytes([97]) * 32
M = Keypair.from_seed(bytes([77]) * 32)
M2 = Keypair.from_seed(bytes([78]) * 32)


async def administer(node, address, op, role, did):
    """An ACL entry signed with the node's key (the admin's), announced like any write."""
    payload = {"op": op, "role": role, "did": did}
    await node.worker.run(lambda: node.database(address).write(payload))
    await node.announce(address)


def test_a_revoked_admin_cannot_take_the_database_over(tmp_path):
    async def main():
        async with honest_nodes(tmp_path) as (a, b, address), AsyncExitStack() as stack:
            admin = a.repo.did
            manifest = a.database(address).manifest
            await administer(a, address, "grant", "admin", M.did)
            await converged([a, b], address)
            # The attacker's replica as it stood while M was an admin.
            blocks = await a.read(address, lambda d: [(e.cid, e.block) for e in d.entries()])
            log = Log(manifest)
            log.join(decode_entry(c, blk) for c, blk in blocks)
            log._authorise = lambda *a: None  # the attacker signs what it likes
            await administer(a, address, "revoke", "admin", M.did)
            await converged([a, b], address)
            backdated = log.append(M, {"op": "grant", "role": "admin", "did": M2.did})
            coup = log.append(M2, {"op": "revoke", "role": "admin", "did": admin})
            restore = log.append(M2, {"op": "grant", "role": "admin", "did": M.did})
            attack = (backdated, coup, restore)

            host = await stack.enter_async_context(open_host(ATTACKER_SEED, LOOPBACK))
            await host.connect(a.addrs[0])
            topic = topic_for(manifest.cid)
            await host.subscribe(topic)
            message = Announcement(
                manifest.cid,
                tuple(e.cid for e in attack),
                tuple((e.cid, e.block) for e in attack),
            ).encode()
            wanted = {e.cid for e in attack}
            with trio.fail_after(30):
                while wanted - await applied_cids(a, address):
                    await host.publish(topic, message)
                    await trio.sleep(0.2)
            await converged([a, b], address)
            for node in (a, b):
                access = await node.read(address, lambda d: d._db.log.access.describe())
                assert admin in access["admins"], node
                assert M.did not in access["admins"] and M2.did not in access["admins"]
                verdicts = await node.read(
                    address, lambda d: [d._db.log.invalidity(e.cid) for e in attack]
                )
                assert all(verdicts), verdicts  # kept in the DAG, but void
            # a still administers, and its grants reach b.
            await administer(a, address, "grant", "writer", M2.did)
            await converged([a, b], address)
            assert M2.did in await b.read(address, lambda d: d._db.log.access.writers)

    trio.run(main)
