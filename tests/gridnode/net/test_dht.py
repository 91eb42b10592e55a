"""The Kademlia DHT of gridnode.net.dht on real hosts over 127.0.0.1: peers learnt on connection,
provider records stored at the closest peers and found by a node that knows only one of them,
and every bound a hostile peer could push on."""

from __future__ import annotations

import hashlib
from contextlib import suppress

import multiaddr
import trio
import trio.testing
from libp2p.kad_dht.pb.kademlia_pb2 import Message

from crdt.ipld.cid import CID
from gridnode.errors import StreamError
from gridnode.net import peer_id_from_seed
from gridnode.net.dht import LAN_PROTOCOL, PROTOCOL, DhtConfig, DhtLimits, peer_bytes
from protocols.wire import FrameDecoder, frame
from tests.gridnode.net.hosts import open_hosts, run


def cid(i: int) -> CID:
    return CID.for_block(f"block {i}".encode())


async def until(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def request(host, peer, message, *, answer=True):
    """One raw kad-dht request from ``host`` (no DHT of its own needed) to ``peer``."""
    stream = await host.open_stream(peer, PROTOCOL)
    await stream.write(frame(message.SerializeToString()))
    if not answer:
        await stream.close()
        return None
    decoder = FrameDecoder(1 << 20)
    while True:
        data = await stream.read(65536)
        assert data, "the stream ended before an answer"
        frames = decoder.feed(data)
        if frames:
            await stream.close()
            reply = Message()
            reply.ParseFromString(frames[0])
            return reply


def test_a_node_that_knows_one_peer_finds_the_provider_it_never_heard_of():
    async def main():
        async with open_hosts(3, dht=DhtConfig()) as (a, b, c):
            # b knows a; c knows only b.
            await b.connect(a.addrs[0])
            await until(lambda: a.peer_id in b.dht.table() and b.peer_id in a.dht.table())
            stored = await a.dht.provide(cid(1))
            assert stored == 1  # b, the only other peer a knows
            assert b.dht.records == 1
            await c.connect(b.addrs[0])
            # c's probe of b and its refresh put b, then a, in its table.
            await until(lambda: {a.peer_id, b.peer_id} <= set(c.dht.table()))
            await b.disconnect(c.peer_id)
            found = await c.dht.find_providers(cid(1))
            assert [p.peer_id for p in found] == [a.peer_id]
            assert found[0].addrs  # where to dial it
            assert await c.dht.find_providers(cid(2)) == []

    run(main, timeout=40)


def test_provider_records_are_bounded_per_key_per_peer_and_in_all():
    limits = DhtLimits(providers_per_key=2, records_per_peer=3, records_total=4)

    async def main():
        async with open_hosts(4, dht=DhtConfig(limits=limits)) as hosts:
            target, others = hosts[0], hosts[1:]
            for other in others:
                await other.connect(target.addrs[0])

            def add(peer_host, key_cid, claimed=None):
                message = Message(type=Message.ADD_PROVIDER, key=CID.parse(key_cid).multihash)
                slot = message.providerPeers.add()
                slot.id = peer_bytes(claimed or peer_host.peer_id)
                slot.addrs.append(b"\x04\x7f\x00\x00\x01\x06\x0f\xa1")  # /ip4/127.0.0.1/tcp/4001
                return request(peer_host, target.peer_id, message, answer=False)

            # A record for someone else is never kept.
            await add(others[0], cid(0), claimed=others[1].peer_id)
            # Per peer: the fourth key of one peer is refused.
            for i in range(4):
                await add(others[0], cid(i))
            await until(lambda: target.dht.stats.records_refused >= 2)
            assert target.dht.records == 3
            # Per key: a third provider of one key is refused (two of cid(0): others[0] and 1).
            await add(others[1], cid(0))
            await add(others[2], cid(0))
            await until(lambda: target.dht.stats.records_refused >= 3)
            assert len(target.dht.local_providers(cid(0))) == 2
            # In all: four records, however many peers ask.
            await add(others[2], cid(7))
            await add(others[2], cid(8))
            await until(lambda: target.dht.stats.records_refused >= 4)
            assert target.dht.records == 4
            # A refresh of a record kept is not a new record.
            await add(others[0], cid(1))
            await trio.sleep(0.2)
            assert target.dht.records == 4

    run(main, timeout=40)


def test_records_expire():
    limits = DhtLimits(record_ttl=60.0)
    clock = trio.testing.MockClock(rate=1.0)  # real time, plus jumps

    async def main():
        async with open_hosts(2, dht=DhtConfig(limits=limits)) as (a, b):
            await b.connect(a.addrs[0])
            await until(lambda: b.peer_id in a.dht.table())
            assert await b.dht.provide(cid(3)) == 1
            await until(lambda: a.dht.records == 1)
            assert a.dht.local_providers(cid(3))
            clock.jump(61.0)
            assert a.dht.local_providers(cid(3)) == []
            assert a.dht.records == 0

    async def bounded():
        with trio.fail_after(100):  # on the mock clock: 61 s of it are the jump
            await main()

    trio.run(bounded, clock=clock)


def test_a_peer_flooding_requests_is_cut_off_and_others_are_still_served():
    limits = DhtLimits(requests_per_second=5.0, request_burst=10.0)

    async def main():
        async with open_hosts(3, dht=DhtConfig(limits=limits)) as (target, flooder, honest):
            await flooder.connect(target.addrs[0])
            await honest.connect(target.addrs[0])
            # Garbage is a bad message, not a crash.
            bad = await flooder.open_stream(target.peer_id, PROTOCOL)
            await bad.write(frame(b"\xff\xff\xff"))
            await until(lambda: target.dht.stats.bad_messages == 1)
            stream = await flooder.open_stream(target.peer_id, PROTOCOL)
            query = Message(type=Message.FIND_NODE, key=peer_bytes(flooder.peer_id))
            answers = 0
            decoder = FrameDecoder(1 << 20)
            try:
                for _ in range(200):
                    await stream.write(frame(query.SerializeToString()))
                    with trio.fail_after(5):
                        while not (got := decoder.feed(await stream.read(65536) or b"end")):
                            pass
                    answers += len(got)
            except Exception:
                pass  # reset: cut off
            assert answers <= 10 + 5  # the burst, and what the rate allowed meanwhile
            assert target.dht.stats.rate_limited == 1
            # Too many streams at once from one peer: the extra ones are reset.
            held = []
            for _ in range(6):
                with suppress(StreamError):  # reset before it was even open
                    held.append(await flooder.open_stream(target.peer_id, PROTOCOL))
            await until(lambda: target.dht.stats.streams_refused >= 2)
            for s in held:
                await s.reset()
            # Someone else is answered all along.
            reply = await request(
                honest, target.peer_id, Message(type=Message.FIND_NODE, key=b"\x00" * 34)
            )
            assert reply.type == Message.FIND_NODE

    run(main, timeout=40)


def test_the_routing_table_is_bounded():
    limits = DhtLimits(k=2, max_table=3)

    async def main():
        async with open_hosts(6, dht=DhtConfig(limits=limits)) as hosts:
            center = hosts[0]
            for other in hosts[1:]:
                await other.connect(center.addrs[0])
            await until(lambda: all(center.peer_id in h.dht.table() for h in hosts[1:]))
            await trio.sleep(0.5)
            assert center.dht.table_size <= 3
            # Buckets by distance hold at most k each.
            keys = [hashlib.sha256(peer_bytes(p)).digest() for p in center.dht.table()]
            assert len(keys) == center.dht.table_size

    run(main, timeout=40)


def test_a_lying_dht_peer_cannot_make_a_lookup_unbounded():
    """A peer answers every request with hundreds of made-up closer peers (at an address where
    nobody listens) and made-up providers: the lookup asks at most ``lookup_peers`` peers, reads
    at most k of each list, keeps at most ``count`` providers, and ends. An answer over
    ``max_answer`` bytes is refused."""
    limits = DhtLimits(lookup_peers=12, request_timeout=2.0, max_answer=64 * 1024)

    async def main():
        async with open_hosts(3, dht=DhtConfig(limits=limits)) as (victim, _spare, liar):
            made_up = [peer_id_from_seed((1000 + i).to_bytes(2, "big") * 16) for i in range(300)]

            async def lie(stream):
                decoder = FrameDecoder(1 << 16)
                while data := await stream.read(65536):
                    for payload in decoder.feed(data):
                        asked = Message()
                        asked.ParseFromString(payload)
                        answer = Message(type=asked.type, key=asked.key)
                        for peer in made_up:
                            slot = answer.closerPeers.add()
                            slot.id = peer_bytes(peer)
                            slot.addrs.append(
                                multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/1").to_bytes()
                            )
                        for peer in made_up[:50]:
                            slot = answer.providerPeers.add()
                            slot.id = peer_bytes(peer)
                        await stream.write(frame(answer.SerializeToString()))

            liar.set_stream_handler(PROTOCOL, lie)
            liar.set_stream_handler(LAN_PROTOCOL, lie)
            await victim.connect(liar.addrs[0])
            victim.dht.add_peer(liar.peer_id, [liar.addrs[0].split("/p2p/")[0]])
            with trio.fail_after(limits.lookup_seconds + 10):
                await victim.dht.refresh()
            # It followed the lies (none answers) as far as it may, and no further.
            assert len(victim.dht.last_lookup_asked) == limits.lookup_peers
            assert victim.dht.table() == [liar.peer_id]  # the made-up peers never answered
            with trio.fail_after(limits.lookup_seconds + 10):
                found = await victim.dht.find_providers(cid(5), count=5)
            assert len(found) == 5  # made up too: a provider found is only dialled, then checked
            # Too big an answer: 300 peers of ~50 bytes > 8 KiB.
            small = DhtLimits(max_answer=8 * 1024, request_timeout=2.0)
            victim.dht.limits = small
            failed = victim.dht.stats.requests_failed
            await victim.dht.refresh()
            assert victim.dht.stats.requests_failed > failed

    run(main, timeout=60)


def test_connections_the_dht_opens_only_to_ask_are_closed_once_idle_and_a_gridnodes_kept():
    limits = DhtLimits(dialled_idle_seconds=1.0)

    async def sync(stream):  # what makes a peer a gridnode, as identify tells it
        await stream.close()

    async def answer_empty(stream):  # a DHT server that knows nobody (and never dials)
        decoder = FrameDecoder(1 << 16)
        while data := await stream.read(65536):
            for payload in decoder.feed(data):
                asked = Message()
                asked.ParseFromString(payload)
                reply = Message(type=asked.type, key=asked.key)
                await stream.write(frame(reply.SerializeToString()))

    async def main():
        async with (
            open_hosts(3, dht=DhtConfig(limits=limits)) as (a, b, gridnode_like),
            open_hosts(1, first=3) as (ipfs_like,),
        ):
            for host in (a, b, gridnode_like):
                host.set_stream_handler("/gridnode/sync/1.1.0", sync)
            ipfs_like.set_stream_handler(PROTOCOL, answer_empty)
            for other in (a, ipfs_like, gridnode_like):
                await b.connect(other.addrs[0])
            await until(lambda: len(b.dht.table()) == 3 and b.peer_id in a.dht.table())
            # a learns both from b and dials them to ask (a dial of theirs to a at the same
            # moment may cost one request: then the next refresh gets them).
            with trio.fail_after(20):
                while not {ipfs_like.peer_id, gridnode_like.peer_id} <= set(a.dht.table()):
                    await a.dht.refresh()
            await until(lambda: ipfs_like.peer_id not in a.peers())
            await trio.sleep(1.5)  # past the idle time again
            assert gridnode_like.peer_id in a.peers()  # the node may sync over it
            assert b.peer_id in a.peers()  # not opened by a's DHT: left alone
            assert a.dht.stats.hung_up == 1

    run(main, timeout=40)


def test_a_node_whose_table_is_empty_still_asks_the_peers_it_is_connected_to():
    async def main():
        async with open_hosts(2, dht=DhtConfig()) as (a, b):
            await a.connect(b.addrs[0])
            await until(lambda: b.peer_id in a.dht.table())
            await b.dht.provide(cid(9))
            a.dht._table.clear()  # as if its probe of b had failed
            found = await a.dht.find_providers(cid(9))
            assert [p.peer_id for p in found] == [b.peer_id]

    run(main, timeout=30)
