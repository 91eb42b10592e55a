"""An attacker floods the peers topic with 300 peer records, each signed by a fresh peer id and
naming an address the attacker listens on (item 9 of issue 18, "peer records can eclipse").

The victim bootstraps from one honest node and is dialled by another. After the flood: the
bootstrap peer is still known and redialled after a disconnect, the honest peer is still known,
and the victim dialled the attacker's addresses no more often than one source's dial budget
allows (gridnode.node.known). Today's main forgot both honest peers and dialled one attacker
address after another.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import PUBSUB_SIGNING_PREFIX

from gridnode.net import open_host
from gridnode.net.identity import key_pair_from_seed
from gridnode.node import open_node
from gridnode.node.known import DIAL_BURST, DIAL_RATE
from gridnode.repo import Repo
from protocols.gossip import PEERS_TOPIC, PeerRecord
from tests.hostile.attacker import LOOPBACK

SYBILS = 300


def forged_record(pubsub, seed: bytes, addrs: list[str]) -> rpc_pb2.Message:
    """A peers-topic message signed by a fresh key, describing that key's peer id (so it passes
    the victim's validator), with addresses the attacker chose."""
    key_pair = key_pair_from_seed(seed)
    peer = ID.from_pubkey(key_pair.public_key)
    msg = rpc_pb2.Message(
        data=PeerRecord(str(peer), tuple(addrs)).encode(),
        topicIDs=[PEERS_TOPIC],
        from_id=peer.to_bytes(),
        seqno=(1).to_bytes(8, "big"),
    )
    msg.signature = key_pair.private_key.sign(
        PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString()
    )
    msg.key = key_pair.public_key.serialize()
    return msg


def test_sybil_peer_records_do_not_eclipse(tmp_path):
    dials = {"n": 0, "tcp": 0}

    async def count_dials(task_status=trio.TASK_STATUS_IGNORED):
        # The address every sybil record names (py-libp2p makes a few TCP connections per dial).
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])

        async def handler(stream):
            dials["tcp"] += 1
            await stream.aclose()

        await trio.serve_listeners(handler, listeners)

    async def main():
        dirs = {name: tmp_path / name for name in ("boot", "victim", "honest")}
        for d in dirs.values():
            Repo(d).close()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            port = await nursery.start(count_dials)
            boot = await stack.enter_async_context(open_node(dirs["boot"], listen=LOOPBACK))
            victim = await stack.enter_async_context(
                open_node(dirs["victim"], listen=LOOPBACK, bootstrap=boot.addrs, target_peers=64)
            )
            honest = await stack.enter_async_context(
                open_node(dirs["honest"], listen=LOOPBACK, bootstrap=victim.addrs)
            )
            with trio.fail_after(20):
                while not {boot.peer_id, honest.peer_id} <= set(victim.known):
                    await trio.sleep(0.05)

            attacker = await stack.enter_async_context(
                open_host(seed=bytes([98]) * 32, listen=LOOPBACK)
            )
            await attacker.connect(victim.addrs[0])
            pubsub = attacker._gossip._pubsub
            with trio.fail_after(20):  # the victim's subscription reaches the attacker
                while victim.peer_id not in {
                    str(p) for p in pubsub.peer_topics.get(PEERS_TOPIC, ())
                }:
                    await trio.sleep(0.05)
            real_connect = victim.host.connect

            async def counting_connect(address: str) -> str:
                if f"/tcp/{port}/" in address:
                    dials["n"] += 1
                return await real_connect(address)

            victim.host.connect = counting_connect  # type: ignore[method-assign]
            forgotten: set[str] = set()

            async def watch_known():
                # A peer evicted even for a moment is one the node would not redial then.
                while True:
                    forgotten.update({boot.peer_id, honest.peer_id} - set(victim.known))
                    await trio.sleep(0.01)

            nursery.start_soon(watch_known)
            started = trio.current_time()
            wall = time.monotonic()
            for i in range(SYBILS):
                seed = i.to_bytes(4, "big") * 8
                msg = forged_record(pubsub, seed, [f"/ip4/127.0.0.1/tcp/{port}"])
                await pubsub.push_msg(pubsub.my_id, msg)
                await trio.sleep(0.005)
            # The records arrive and are judged (today's main judged them one dial at a time).
            with trio.move_on_after(120):
                while victim.stats.counters.gossip_received < SYBILS:
                    await trio.sleep(0.05)
            await trio.sleep(2)
            received = victim.stats.counters.gossip_received
            print(
                f"\n{SYBILS} sybil records: {dials['n']} dials ({dials['tcp']} TCP connections) to "
                f"the attacker's address in {time.monotonic() - wall:.1f} s (budget "
                f"{DIAL_BURST + (trio.current_time() - started) * DIAL_RATE:.1f}); known: "
                f"{len(victim.known)}, bootstrap known: {boot.peer_id in victim.known}, "
                f"honest known: {honest.peer_id in victim.known}, records judged: {received}, "
                f"evicted during the flood: bootstrap {boot.peer_id in forgotten}, honest "
                f"{honest.peer_id in forgotten}"
            )
            assert received >= SYBILS, "the node judged peer records one dial at a time"
            assert boot.peer_id in victim.known, "the bootstrap peer was evicted"
            assert honest.peer_id in victim.known, "the honest peer was evicted"
            assert not forgotten, "an honest peer was evicted during the flood"
            # the bootstrap peer is redialled after a disconnect, despite the flood
            await victim.host.disconnect(boot.peer_id)
            with trio.fail_after(30):
                while boot.peer_id not in victim.peers():
                    await trio.sleep(0.05)
            assert dials["n"] <= DIAL_BURST + (trio.current_time() - started) * DIAL_RATE + 1
            nursery.cancel_scope.cancel()

    trio.run(main)
