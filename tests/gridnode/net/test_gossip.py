"""Gossipsub between real hosts: delivery, forwarding, validation, and loss instead of errors."""

import trio

from gridnode.net import GossipConfig, GossipMessage
from tests.gridnode.net.hosts import open_hosts, run, wait_for_gossip_peer

TOPIC = "/gridnode/test/heads"


async def receive_until(subscription, wanted, timeout=5.0):
    """Messages (probes left out) until one carries ``wanted`` data, or the timeout."""
    received = []
    with trio.move_on_after(timeout):
        async for message in subscription:
            if message.data != b"probe":
                received.append(message)
                if message.data == wanted:
                    break
    return received


def test_three_hosts_gossip_along_a_line():
    # a - b - c: c hears a only because b forwards.
    async def main():
        async with open_hosts(3) as (a, b, c):
            subs = [await host.subscribe(TOPIC) for host in (a, b, c)]
            await b.connect(a.addrs[0])
            await b.connect(c.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, subs[2])

            await a.publish(TOPIC, b"from a")
            for sub in subs[1:]:
                assert (await receive_until(sub, b"from a"))[-1] == GossipMessage(
                    a.peer_id, b"from a"
                )
            await c.publish(TOPIC, b"from c")
            assert (await receive_until(subs[1], b"from c"))[-1] == (c.peer_id, b"from c")
            # a also gets its own message, in its own subscription.
            assert await receive_until(subs[0], b"from c") == [
                (a.peer_id, b"from a"),
                (c.peer_id, b"from c"),
            ]

    run(main)


def test_a_message_names_the_peer_that_forwarded_it():
    # a - b - c: c is not connected to a, so a's message reaches c from b; what c should ask
    # for what the message names is b (issue 21: pulls aimed at a failed, "peer ID not found").
    async def main():
        async with open_hosts(3) as (a, b, c):
            subs = [await host.subscribe(TOPIC) for host in (a, b, c)]
            await b.connect(a.addrs[0])
            await b.connect(c.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, subs[2])

            await a.publish(TOPIC, b"from a")
            at_b = (await receive_until(subs[1], b"from a"))[-1]
            at_c = (await receive_until(subs[2], b"from a"))[-1]
            assert (at_b.peer_id, at_b.forwarder) == (a.peer_id, a.peer_id)
            assert (at_c.peer_id, at_c.forwarder) == (a.peer_id, b.peer_id)
            own = (await receive_until(subs[0], b"from a"))[-1]
            assert own.forwarder == a.peer_id

    run(main)


def test_a_message_while_the_gossip_service_stops_ends_the_stream_not_the_host():
    # Under load a node shutting down still reads gossip streams while py-libp2p's pubsub
    # service has closed its task group (issue 21: a node died of an uncaught "RuntimeError:
    # Nursery is closed to new arrivals"). Here the closed task group is simulated: every task
    # the service is asked to start is refused as py-libp2p's closed one refuses it.
    async def main():
        async with open_hosts(2) as (a, b):
            await a.subscribe(TOPIC)
            sub = await b.subscribe(TOPIC)
            await a.connect(b.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, sub)

            def closed(*args, **kwargs):
                raise RuntimeError("Nursery is closed to new arrivals")

            b._gossip._pubsub.manager.run_task = closed
            await a.publish(TOPIC, b"while b stops")
            await trio.sleep(0.5)

    run(main)


def test_a_burst_of_messages_between_two_hosts():
    # py-libp2p's defaults let 10 of 2,000 rapid messages through; docs/decisions.md has our
    # numbers. Gossip stays lossy by design, so this only asserts that a burst gets through,
    # and that publish never raises or blocks on full queues.
    n = 500

    async def main():
        async with open_hosts(2) as (a, b):
            sub = await b.subscribe(TOPIC)
            await a.subscribe(TOPIC)
            await a.connect(b.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, sub)
            for i in range(n):
                await a.publish(TOPIC, i.to_bytes(4, "big"))
            received = set()
            with trio.move_on_after(10):
                async for message in sub:
                    if message.data != b"probe":
                        received.add(int.from_bytes(message.data, "big"))
                        if len(received) == n:
                            break
            return received

    received = run(main, timeout=30)
    print(f"{len(received)} of {n} gossip messages arrived")
    assert len(received) > 10  # more than py-libp2p's rate limit alone would let through


async def drain(subscription, quiet=0.3):
    """Everything buffered or arriving until ``quiet`` seconds pass without a message."""
    messages = []
    while True:
        with trio.move_on_after(quiet):
            messages.append(await subscription.receive())
            continue
        return [m for m in messages if m.data != b"probe"]


def test_a_full_peer_queue_drops_and_publish_never_raises():
    async def main():
        async with open_hosts(2, gossip=GossipConfig(peer_queue_size=2)) as (a, b):
            sub = await b.subscribe(TOPIC)
            await a.subscribe(TOPIC)
            await a.connect(b.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, sub)
            for i in range(300):
                await a.publish(TOPIC, i.to_bytes(4, "big"))
            assert 1 <= len(await drain(sub)) < 300
            await a.publish(TOPIC, b"later")  # the queue drained: gossip flows again
            assert (await receive_until(sub, b"later"))[-1].data == b"later"

    run(main)


def test_a_slow_reader_loses_messages_not_its_subscription():
    async def main():
        async with open_hosts(2, gossip=GossipConfig(subscription_buffer=4)) as (a, b):
            sub = await b.subscribe(TOPIC)
            await a.subscribe(TOPIC)
            await a.connect(b.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, sub)
            for i in range(50):
                await a.publish(TOPIC, i.to_bytes(4, "big"))
            # Nobody reads meanwhile; wait (bounded) until all 50 have arrived, not a fixed time.
            with trio.fail_after(20):
                while sub.dropped < 50 - 4:
                    await trio.sleep(0.05)
            kept = await drain(sub)
            assert 1 <= len(kept) <= 4
            assert sub.dropped >= 50 - 4
            await a.publish(TOPIC, b"later")
            assert (await receive_until(sub, b"later"))[-1].data == b"later"

    run(main)


def test_a_validator_stops_delivery_and_forwarding_and_counts_against_the_peer():
    async def main():
        async with open_hosts(3) as (a, b, c):
            rejected = []

            def only_good(origin, data):
                if data.startswith(b"bad"):
                    rejected.append(origin)
                    return False
                return True

            b.set_topic_validator(TOPIC, only_good)
            subs = [await host.subscribe(TOPIC) for host in (a, b, c)]
            await b.connect(a.addrs[0])
            await b.connect(c.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, subs[2])
            assert b.gossip_score(a.peer_id, TOPIC) == 0

            await a.publish(TOPIC, b"bad 1")
            await a.publish(TOPIC, b"good 1")
            for sub in subs[1:]:
                data = [m.data for m in await receive_until(sub, b"good 1")]
                assert data == [b"good 1"]  # c has no validator: b did not forward it
            assert rejected == [a.peer_id]
            assert b.gossip_score(a.peer_id, TOPIC) < 0

            # Past the allowance, b ignores a on this topic (until the count decays).
            for i in range(12):
                await a.publish(TOPIC, b"bad %d" % i)
            await a.publish(TOPIC, b"good 2")
            assert await receive_until(subs[1], b"good 2", timeout=1.0) == []
            assert b.gossip_score(a.peer_id, TOPIC) < -10

    run(main)


def test_a_validator_that_raises_rejects():
    async def main():
        def broken(origin, data):
            if data == b"boom":
                raise ValueError("a bug in a validator")
            return True

        async with open_hosts(2) as (a, b):
            b.set_topic_validator(TOPIC, broken)
            sub = await b.subscribe(TOPIC)
            await a.subscribe(TOPIC)
            await a.connect(b.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, sub)
            await a.publish(TOPIC, b"boom")
            await a.publish(TOPIC, b"fine")
            assert [m.data for m in await receive_until(sub, b"fine")] == [b"fine"]

    run(main)


def test_own_bursts_are_not_rate_limited():
    # py-libp2p counts a node's own publishes against its 10 messages/s per-topic limit: the
    # 11th head announced within a second was never sent.
    async def main():
        async with open_hosts(2) as (a, b):
            sub = await b.subscribe(TOPIC)
            await a.subscribe(TOPIC)
            await a.connect(b.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, sub)
            for i in range(30):
                await a.publish(TOPIC, b"head %d" % i)
            received = await receive_until(sub, b"head 29")
            assert [m.data for m in received] == [b"head %d" % i for i in range(30)]

    run(main)


def test_several_subscriptions_and_unsubscribing():
    async def main():
        async with open_hosts(2) as (a, b):
            first = await b.subscribe(TOPIC)
            second = await b.subscribe(TOPIC)
            await a.subscribe(TOPIC)
            await a.connect(b.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, first)
            await a.publish(TOPIC, b"both")
            assert (await receive_until(first, b"both"))[-1].data == b"both"
            assert (await receive_until(second, b"both"))[-1].data == b"both"

            async with second:
                pass  # leaving the block unsubscribes this subscription only
            assert [m async for m in second if m.data != b"probe"] == []
            await a.publish(TOPIC, b"first only")
            assert (await receive_until(first, b"first only"))[-1].data == b"first only"

            await first.aclose()
            await first.aclose()  # idempotent
            with trio.move_on_after(0.5):
                await receive_until(first, b"never")  # ends at once: iteration is over

    run(main)


def test_per_message_bookkeeping_stays_bounded():
    async def main():
        async with open_hosts(2) as (a, b):
            sub = await b.subscribe(TOPIC)
            await a.subscribe(TOPIC)
            await a.connect(b.addrs[0])
            await wait_for_gossip_peer(a, TOPIC, sub)
            for i in range(300):
                await a.publish(TOPIC, i.to_bytes(4, "big"))
            await drain(sub)
            for host in (a, b):
                router = host._gossip._router
                assert sum(map(len, router.recent_message_deliveries.values())) == 0
                assert len(router.equivocation_detection) <= 4096

    run(main)
