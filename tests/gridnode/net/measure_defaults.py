"""Measures the py-libp2p defaults gridnode.net changes, against gridnode.net's settings.

Not a test (nothing here asserts a time); the numbers go to docs/decisions.md:
    python tests/gridnode/net/measure_defaults.py
"""

import os
import socket
import sys
import time
from contextlib import AsyncExitStack, suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import multiaddr
import trio
from libp2p import new_host
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

import gridnode.net.gossip as gossip_module
from gridnode.net import DialError, GossipConfig, open_host
from gridnode.net.identity import key_pair_from_seed
from gridnode.net.logs import quiet_libp2p_logs
from tests.gridnode.net.hosts import LOCAL, open_fds, open_hosts, seed

TOPIC = "measure"
N = 500


def ms(seconds):
    return f"{seconds * 1000:.0f} ms"


# Connect


async def py_libp2p_connects(per_peer):
    config = ConnectionConfig(max_connections_per_peer=per_peer)
    hosts = [
        new_host(key_pair=key_pair_from_seed(seed(i)), connection_config=config) for i in range(6)
    ]
    times = []
    async with AsyncExitStack() as stack:
        for host in hosts:
            await stack.enter_async_context(host.run([multiaddr.Multiaddr(LOCAL[0])]))
        for host in hosts[1:]:
            started = time.perf_counter()
            await hosts[0].connect(info_from_p2p_addr(host.get_addrs()[0]))
            times.append(time.perf_counter() - started)
        for host in hosts:
            await host.close()
    return times


async def our_connects():
    async with open_hosts(6) as hosts:
        times = []
        for host in hosts[1:]:
            started = time.perf_counter()
            await hosts[0].connect(host.addrs[0])
            times.append(time.perf_counter() - started)
        return times


# Close


async def closing(n, ours):
    async with open_host(seed(0), LOCAL) as hub, open_hosts(n, first=1) as peers:
        for peer in peers:
            await hub.connect(peer.addrs[0])
        started = time.perf_counter()
        if ours:
            from gridnode.net.host import _close_connections

            await _close_connections(hub._host.get_network())
        await hub._host.close()  # py-libp2p: closes the connections one by one
        return time.perf_counter() - started


async def leak_without_close():
    before = open_fds()
    for _ in range(3):
        hosts = [new_host(key_pair=key_pair_from_seed(seed(i))) for i in range(4)]
        async with AsyncExitStack() as stack:
            for host in hosts:
                await stack.enter_async_context(host.run([multiaddr.Multiaddr(LOCAL[0])]))
            for host in hosts[1:]:
                await hosts[0].connect(info_from_p2p_addr(host.get_addrs()[0]))
    return open_fds() - before


async def dial_nobody(ours):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = f"/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
    if ours:
        async with open_host(seed(0), LOCAL) as host:
            started = time.perf_counter()
            with suppress(DialError):
                await host.connect(target)
            return time.perf_counter() - started
    host = new_host(key_pair=key_pair_from_seed(seed(0)))
    async with host.run([multiaddr.Multiaddr(LOCAL[0])]):
        started = time.perf_counter()
        with suppress(Exception):
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(target)))
        elapsed = time.perf_counter() - started
        await host.close()
    return elapsed


# Gossip


async def count_arrivals(receive, publish, n):
    """Publish n numbered messages as fast as possible; count distinct arrivals within 10 s."""
    started = time.perf_counter()
    for i in range(n):
        await publish(i.to_bytes(4, "big"))
    received, last = set(), started
    with trio.move_on_after(10):
        while len(received) < n:
            data = await receive()
            if data != b"probe":
                received.add(int.from_bytes(data, "big"))
                last = time.perf_counter()
    return len(received), last - started


async def py_libp2p_gossip(n):
    hosts = [new_host(key_pair=key_pair_from_seed(seed(i))) for i in range(2)]
    routers = [
        GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6,
            degree_low=5,
            degree_high=12,
        )
        for _ in hosts
    ]
    pubsubs = [Pubsub(host, router) for host, router in zip(hosts, routers, strict=True)]
    async with AsyncExitStack() as stack:
        for host, pubsub, router in zip(hosts, pubsubs, routers, strict=True):
            await stack.enter_async_context(host.run([multiaddr.Multiaddr(LOCAL[0])]))
            await stack.enter_async_context(background_trio_service(pubsub))
            await stack.enter_async_context(background_trio_service(router))
        sub = await pubsubs[1].subscribe(TOPIC)
        await pubsubs[0].subscribe(TOPIC)
        await hosts[0].connect(info_from_p2p_addr(hosts[1].get_addrs()[0]))
        while True:  # until the mesh is up
            await pubsubs[0].publish(TOPIC, b"probe")
            with trio.move_on_after(0.05):
                await sub.get()
                break
        await trio.sleep(1.1)  # let the 1 s rate-limit window pass

        async def receive():
            return (await sub.get()).data

        result = await count_arrivals(receive, lambda d: pubsubs[0].publish(TOPIC, d), n)
        for host in hosts:
            await host.close()
        for pubsub in pubsubs:
            pubsub.seen_messages.stop()
        return result


async def our_gossip(n, config=None):
    async with open_hosts(2, gossip=config or GossipConfig()) as (a, b):
        sub = await b.subscribe(TOPIC)
        await a.subscribe(TOPIC)
        await a.connect(b.addrs[0])
        while True:
            await a.publish(TOPIC, b"probe")
            with trio.move_on_after(0.05):
                await sub.receive()
                break
        await trio.sleep(1.1)

        async def receive():
            return (await sub.receive()).data

        return await count_arrivals(receive, lambda d: a.publish(TOPIC, d), n)


def with_own_rate_limit(config):
    original = gossip_module._GossipSub._check_spam_protection
    gossip_module._GossipSub._check_spam_protection = GossipSub._check_spam_protection
    try:
        return trio.run(our_gossip, N, config)
    finally:
        gossip_module._GossipSub._check_spam_protection = original


def with_protocols(protocols):
    original = gossip_module._PROTOCOLS
    gossip_module._PROTOCOLS = protocols
    try:
        return trio.run(our_gossip, N)
    finally:
        gossip_module._PROTOCOLS = original


def main():
    quiet_libp2p_logs()
    print(f"CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")

    print("connect() to 5 hosts, one after another (ms each):")
    for label, times in (
        ("py-libp2p default (3 connections per peer)", trio.run(py_libp2p_connects, 3)),
        ("py-libp2p, 1 connection per peer", trio.run(py_libp2p_connects, 1)),
        ("gridnode.net", trio.run(our_connects)),
    ):
        print(f"  {label}: {', '.join(f'{t * 1000:.0f}' for t in times)}")

    print("\nconnect() to a port nobody listens on:")
    print(f"  py-libp2p default (3 retries): {ms(trio.run(dial_nobody, False))}")
    print(f"  gridnode.net (1 retry): {ms(trio.run(dial_nobody, True))}")

    print("\nclosing a host with n connections:")
    for n in (1, 5, 20):
        theirs = trio.run(closing, n, False)
        ours = trio.run(closing, n, True)
        print(f"  n={n}: py-libp2p host.close() {ms(theirs)}; concurrent {ms(ours)}")

    print(
        f"\nfds left open after 3 x (4 hosts, 3 connections) with run() but no close(): "
        f"{trio.run(leak_without_close)}"
    )

    print(f"\ngossip: {N} messages published at once, a -> b (arrived, time to the last):")
    rows = [
        ("py-libp2p defaults", trio.run(py_libp2p_gossip, N)),
        ("gridnode.net", trio.run(our_gossip, N)),
        (
            "  but speaking meshsub 1.2 too",
            with_protocols((PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID)),
        ),
        (
            "  but own publishes rate-limited, 10/s",
            with_own_rate_limit(GossipConfig(peer_rate_limit=10)),
        ),
        ("  but peer queues of 32", trio.run(our_gossip, N, GossipConfig(peer_queue_size=32))),
        (
            "  but a subscription buffer of 32",
            trio.run(our_gossip, N, GossipConfig(subscription_buffer=32)),
        ),
        ("  with 2,000 messages", trio.run(our_gossip, 2000)),
    ]
    for label, (arrived, elapsed) in rows:
        print(f"  {label}: {arrived} in {ms(elapsed)}")


if __name__ == "__main__":
    main()
