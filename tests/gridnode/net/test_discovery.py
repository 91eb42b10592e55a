"""LAN discovery with mDNS: real hosts finding each other, the records, and a clean stop.

The tests with real hosts need IP multicast on an interface; each is skipped only when a probe (a
datagram to the mDNS group, looped back to a socket that joined it) shows it does not work there.
Their hosts have random keys: every gridnode host with mDNS on this machine (another test run, a
node) is heard too, and one with the same fixed test key would be taken for ours.
"""

import os
import socket
import threading
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

from gridnode.net import DiscoveredPeer, NetError, open_host, peer_id_from_seed
from gridnode.net.discovery import (
    MAX_ADDRS,
    MAX_PEERS,
    SERVICE_TYPE,
    Discovery,
    _Listener,
    _start,
    announced_addrs,
    encode_txt,
    local_ips,
    mdns_interfaces,
    parse_txt,
)
from tests.gridnode.net.hosts import LOCAL, open_fds, run, seed, trio_tasks

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
ID_A = peer_id_from_seed(seed(10))
ID_B = peer_id_from_seed(seed(11))


def random_peer_id():
    return peer_id_from_seed(os.urandom(32))


@asynccontextmanager
async def mdns_hosts(n, listen=LOCAL):
    """``n`` hosts with mDNS on and random keys."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_host(os.urandom(32), listen, mdns=True))
            for _ in range(n)
        ]


def multicast_problem(interface_ip):
    """Why multicast does not work on the interface of ``interface_ip``, or None if it does."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("", 0))
        membership = socket.inet_aton(MDNS_GROUP) + socket.inet_aton(interface_ip)
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface_ip))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.sendto(b"probe", (MDNS_GROUP, receiver.getsockname()[1]))
        receiver.settimeout(1.0)
        data, _ = receiver.recvfrom(16)
        return None if data == b"probe" else f"received {data!r}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        receiver.close()
        sender.close()


def require_multicast(interface_ip):
    problem = multicast_problem(interface_ip)
    if problem is not None:
        pytest.skip(f"no IP multicast on the interface of {interface_ip} here: {problem}")


def zeroconf_threads():
    """zeroconf's threads: its event loop's and its browsers'."""
    return [
        t.name for t in threading.enumerate() if "(_run_loop)" in t.name or "zeroconf" in t.name
    ]


def threads_besides_trios_cache():
    """Running threads, less trio's idle ``to_thread`` workers (trio ends them after 10 s idle)."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("Trio thread"))


def mdns_sockets():
    """This process's UDP sockets on port 5353."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == MDNS_PORT and fields[9] in inodes:
                    count += 1
    return count


async def next_peer(found, timeout=5.0):
    with trio.fail_after(timeout):
        return await found.__anext__()


async def find(found, peer_id, timeout=5.0):
    """The addresses ``found`` yields for ``peer_id``, skipping other peers (other tests' hosts on
    this machine, or on the LAN, may be there too)."""
    with trio.fail_after(timeout):
        async for found_id, addrs in found:
            if found_id == peer_id:
                return addrs
    raise AssertionError("iteration ended")


async def drain(found, seconds):
    """Peer ids ``found`` yields within ``seconds``."""
    ids = []
    with trio.move_on_after(seconds):
        async for peer_id, _ in found:
            ids.append(peer_id)
    return ids


def raw_zeroconf_service(type_, peer_id, port):
    """A service announced by plain zeroconf (another program) for ``peer_id``."""
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"
    name = os.urandom(8).hex()
    return ServiceInfo(
        type_,
        f"{name}.{type_}",
        port=port,
        properties=encode_txt([addr]),
        server=f"{name}.local.",
        parsed_addresses=["127.0.0.1"],
    )


# Real hosts.


def test_two_hosts_on_loopback_find_each_other_and_connect():
    require_multicast("127.0.0.1")

    foreign_id, other_id = random_peer_id(), random_peer_id()

    async def main():
        zc = await trio.to_thread.run_sync(
            lambda: Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        )
        try:
            # Another libp2p program's service, on the spec's type: not ours to find.
            foreign = raw_zeroconf_service("_p2p._udp.local.", foreign_id, 1001)
            await trio.to_thread.run_sync(zc.register_service, foreign, None, False, True)
            async with open_host(os.urandom(32), LOCAL) as quiet, mdns_hosts(2) as (a, b):
                assert a.mdns and b.mdns and not quiet.mdns
                async with a.discovered() as found_by_a, b.discovered() as found_by_b:
                    assert await find(found_by_a, b.peer_id) == b.addrs
                    assert await find(found_by_b, a.peer_id) == a.addrs
                    # A record of our type written by another program is found; the foreign one,
                    # announced before the hosts started, never was.
                    ours = raw_zeroconf_service(SERVICE_TYPE, other_id, 1002)
                    await trio.to_thread.run_sync(zc.register_service, ours, None, False, True)
                    assert await find(found_by_a, other_id) == [
                        f"/ip4/127.0.0.1/tcp/1002/p2p/{other_id}"
                    ]
                    # Its goodbye removes it: a new iterator replays only the peers still there.
                    await trio.to_thread.run_sync(zc.unregister_service, ours)
                    with trio.fail_after(5):
                        while other_id in a._discovery.known():
                            await trio.sleep(0.01)
                    async with a.discovered() as late:
                        replayed = await drain(late, 0.2)
                    assert b.peer_id in replayed
                    assert other_id not in replayed
                    # The discovered address is the one to dial.
                    assert await a.connect(b.addrs[0]) == b.peer_id
                    assert a.peers() == [b.peer_id]
                # Neither the host with mdns off nor the foreign service was found.
                for host in (a, b):
                    assert quiet.peer_id not in host._discovery.known()
                    assert foreign_id not in host._discovery.known()
        finally:
            await trio.to_thread.run_sync(zc.close)

    run(main)


def test_a_host_with_mdns_off_starts_no_zeroconf():
    async def main():
        async with open_host(seed(0), LOCAL) as a, open_host(seed(1), LOCAL) as b:
            await a.connect(b.addrs[0])
            assert not a.mdns
            assert zeroconf_threads() == []
            assert mdns_sockets() == 0
            with pytest.raises(RuntimeError, match="mdns=True"):
                a.discovered()

    assert zeroconf_threads() == []
    run(main)


def test_closing_stops_zeroconf_and_releases_everything():
    require_multicast("127.0.0.1")

    async def main():
        async with mdns_hosts(1):  # first-use allocations, trio's worker threads
            pass
        fds, threads, tasks = open_fds(), threads_besides_trios_cache(), trio_tasks()
        for _ in range(2):
            async with mdns_hosts(2) as (a, b):
                assert len(zeroconf_threads()) == 4  # an event loop and a browser per host
                assert mdns_sockets() > 0
                found = a.discovered()
                await find(found, b.peer_id)
                await a.connect(b.addrs[0])
            # Iteration ends with the host.
            with pytest.raises(StopAsyncIteration):
                await next_peer(found)
            assert zeroconf_threads() == []
            assert mdns_sockets() == 0
            assert open_fds() == fds
            assert threads_besides_trios_cache() == threads
            assert trio_tasks() == tasks
        # Cancelled while starting (the announcement takes ~0.45 s), and while running.
        for delay in (0.05, 1.0):
            with trio.move_on_after(delay):
                async with mdns_hosts(2):
                    await trio.sleep_forever()
            assert zeroconf_threads() == []
            assert mdns_sockets() == 0
            assert open_fds() == fds

    run(main)


# The records.


def test_txt_records_round_trip_and_follow_the_spec():
    addrs = [f"/ip4/192.0.2.7/tcp/4001/p2p/{ID_A}", f"/ip6/fd00::7/tcp/4001/p2p/{ID_A}"]
    text = encode_txt(addrs)
    # One length-prefixed ``dnsaddr=<multiaddr>`` string per address.
    assert text == b"".join(bytes([len(s)]) + s for s in (b"dnsaddr=" + a.encode() for a in addrs))
    assert parse_txt(text) == DiscoveredPeer(ID_A, addrs)
    # What py-libp2p's PeerBroadcaster writes (dnsaddr, dnsaddr2, ...) is read too.
    py_libp2p = ServiceInfo(
        SERVICE_TYPE,
        f"x.{SERVICE_TYPE}",
        port=1,
        properties={b"dnsaddr": addrs[0].encode(), b"dnsaddr2": addrs[1].encode()},
    )
    assert parse_txt(py_libp2p.text) == DiscoveredPeer(ID_A, addrs)


def test_txt_parsing_keeps_only_dialable_addresses_of_one_peer():
    def txt(*strings):
        return b"".join(bytes([len(s)]) + s for s in strings)

    good = f"dnsaddr=/ip4/192.0.2.7/tcp/4001/p2p/{ID_A}".encode()
    loopback = f"dnsaddr=/ip4/127.0.0.1/tcp/4001/p2p/{ID_A}".encode()
    assert parse_txt(txt(loopback, good)).addrs == [good[8:].decode(), loopback[8:].decode()]
    ignored = [
        b"id=whatever",
        b"dnsaddr",  # no value
        f"dnsaddrx=/ip4/192.0.2.8/tcp/1/p2p/{ID_A}".encode(),  # not a dnsaddr key
        f"dnsaddr=/ip4/192.0.2.8/udp/1/quic-v1/p2p/{ID_A}".encode(),  # not TCP
        f"dnsaddr=/dns4/x.local/tcp/1/p2p/{ID_A}".encode(),  # not an IP
        f"dnsaddr=/ip4/192.0.2.8/tcp/1/p2p/{ID_A}/p2p-circuit".encode(),
        b"dnsaddr=/ip4/192.0.2.8/tcp/1",  # no peer id
        b"dnsaddr=/ip4/300.0.0.1/tcp/1/p2p/x",  # not a multiaddr
        "dnsaddr=\u00e9".encode(),
        b"\xff\xfe=\x00",
    ]
    assert parse_txt(txt(*ignored, good)) == DiscoveredPeer(ID_A, [good[8:].decode()])
    assert parse_txt(txt(*ignored)) is None
    assert parse_txt(b"") is None
    assert parse_txt(txt(good, good)).addrs == [good[8:].decode()]  # no duplicates
    # Two peer ids in one record: refused as a whole.
    other = f"dnsaddr=/ip4/192.0.2.9/tcp/4001/p2p/{ID_B}".encode()
    assert parse_txt(txt(good, other)) is None
    # A truncated record: the whole strings are read.
    assert parse_txt(txt(good) + bytes([200]) + b"dnsaddr=") == DiscoveredPeer(
        ID_A, [good[8:].decode()]
    )
    many = [f"dnsaddr=/ip4/192.0.2.{i}/tcp/1/p2p/{ID_A}".encode() for i in range(40)]
    assert len(parse_txt(txt(*many)).addrs) == MAX_ADDRS


def test_what_a_host_announces():
    ips = ["127.0.0.1", "192.0.2.2", "fd00::2", "::1", "198.51.100.3"]
    assert announced_addrs(["/ip4/127.0.0.1/tcp/7"], ID_A, ips) == [
        f"/ip4/127.0.0.1/tcp/7/p2p/{ID_A}"
    ]
    # A wildcard: this machine's addresses of its family, loopback only when there is no other.
    assert announced_addrs(["/ip4/0.0.0.0/tcp/7", "/ip6/::/tcp/8"], ID_A, ips) == [
        f"/ip4/192.0.2.2/tcp/7/p2p/{ID_A}",
        f"/ip4/198.51.100.3/tcp/7/p2p/{ID_A}",
        f"/ip6/fd00::2/tcp/8/p2p/{ID_A}",
    ]
    assert announced_addrs(["/ip4/0.0.0.0/tcp/7"], ID_A, ["127.0.0.1", "::1"]) == [
        f"/ip4/127.0.0.1/tcp/7/p2p/{ID_A}"
    ]
    # QUIC v1 is announced like TCP (issue 22); other UDP protocols (draft-29 QUIC) are not.
    assert announced_addrs(["/ip4/0.0.0.0/udp/7/quic-v1"], ID_A, ips) == [
        f"/ip4/192.0.2.2/udp/7/quic-v1/p2p/{ID_A}",
        f"/ip4/198.51.100.3/udp/7/quic-v1/p2p/{ID_A}",
    ]
    assert announced_addrs(["/ip4/127.0.0.1/udp/7/quic"], ID_A, ips) == []
    assert announced_addrs(["/ip4/127.0.0.1/udp/7"], ID_A, ips) == []
    # Where mDNS runs: on the interfaces listened on; everywhere for a wildcard.
    assert mdns_interfaces(["/ip4/127.0.0.1/tcp/7"]) == ["127.0.0.1"]
    assert mdns_interfaces(["/ip4/192.0.2.2/tcp/7", "/ip6/::1/tcp/7"]) == ["192.0.2.2"]
    assert mdns_interfaces(["/ip4/127.0.0.1/tcp/7", "/ip4/0.0.0.0/tcp/8"]) is InterfaceChoice.All
    assert mdns_interfaces(["/ip6/::/tcp/7"]) is InterfaceChoice.All
    assert "127.0.0.1" in local_ips()


# What is done with the records, without zeroconf.


def peer(peer_id, *ports):
    return DiscoveredPeer(peer_id, [f"/ip4/192.0.2.1/tcp/{p}/p2p/{peer_id}" for p in ports])


def test_discovered_peers_replay_coalesce_and_forget():
    own = peer_id_from_seed(seed(0))
    ids = [peer_id_from_seed(seed(i)) for i in range(1, 5)]

    async def main():
        discovery = Discovery(own)
        discovery.found("own", peer(own, 1))  # our own announcement, heard back
        discovery.found("s1", peer(ids[0], 1))
        found = discovery.discovered()
        discovery.found("s2", peer(ids[1], 2))
        discovery.found("s1", peer(ids[0], 1))  # unchanged: not again
        discovery.found("s3", peer(ids[2], 3))
        discovery.found("s3", peer(ids[2], 4))  # new addresses before it was read: once, newest
        discovery.found("s4", peer(ids[3], 5))
        discovery.removed("s4")  # gone before it was read
        assert [await next_peer(found) for _ in range(3)] == [
            peer(ids[0], 1),
            peer(ids[1], 2),
            peer(ids[2], 4),
        ]
        discovery.found("s1", peer(ids[0], 6))  # read, then new addresses: again
        assert await next_peer(found) == peer(ids[0], 6)
        # The same peer under a second instance name (a restart) stays until both are gone.
        discovery.found("s1b", peer(ids[0], 6))
        discovery.removed("s1")
        assert ids[0] in discovery.known()
        discovery.removed("s1b")
        assert ids[0] not in discovery.known()
        # A late iterator starts with who is there now.
        async with discovery.discovered() as late:
            assert [p.peer_id for p in [await next_peer(late), await next_peer(late)]] == ids[1:3]
        with pytest.raises(StopAsyncIteration):
            await late.__anext__()
        # A reader waiting when the host closes: iteration ends.
        async with trio.open_nursery() as nursery:
            ended = trio.Event()

            async def read_to_the_end():
                async for _ in found:
                    pass
                ended.set()

            nursery.start_soon(read_to_the_end)
            await trio.sleep(0.01)
            discovery.found("s5", peer(ids[3], 7))
            discovery.close()
            with trio.fail_after(1):
                await ended.wait()
        discovery.found("s6", peer(ids[3], 8))  # after close: ignored
        assert [p async for p in discovery.discovered()] == []

    run(main)


def test_a_flood_of_announcements_is_bounded():
    async def main():
        discovery = Discovery(ID_A)
        found = discovery.discovered()
        fake = "12D3KooWGzBwgNF5AsUDhW6Rhp6xHQqy3AR3RpqPrPv6hDGKNXJ"
        for i in range(MAX_PEERS + 10):
            discovery.found(f"s{i}", DiscoveredPeer(f"{fake[:-5]}{i:05d}", [f"/x/{i}"]))
        assert len(discovery.known()) == MAX_PEERS
        assert discovery.ignored == 10
        assert len(found._pending) == MAX_PEERS

    run(main)


class FakeZeroconf:
    def __init__(self, infos):
        self.infos = infos

    def get_service_info(self, type_, name, timeout):
        info = self.infos[name]
        if isinstance(info, Exception):
            raise info
        return info


def test_the_listener_hands_results_to_trio_and_never_raises():
    async def main():
        discovery = Discovery(ID_B)
        listener = _Listener(discovery, trio.lowlevel.current_trio_token())
        zc = FakeZeroconf(
            {
                "good": raw_zeroconf_service(SERVICE_TYPE, ID_A, 1),
                "garbage": ServiceInfo(SERVICE_TYPE, f"g.{SERVICE_TYPE}", properties=b"\x03abc"),
                "unanswered": None,
                "broken": OSError("network down"),
            }
        )

        def browser_thread():
            for name in ("garbage", "unanswered", "broken", "good"):
                listener.add_service(zc, SERVICE_TYPE, name)

        await trio.to_thread.run_sync(browser_thread)
        await trio.sleep(0.01)  # the hand-over runs on the trio thread
        assert discovery.known() == {ID_A: [f"/ip4/127.0.0.1/tcp/1/p2p/{ID_A}"]}
        await trio.to_thread.run_sync(listener.remove_service, zc, SERVICE_TYPE, "good")
        await trio.sleep(0.01)
        assert discovery.known() == {}
        return listener

    listener = run(main)
    # After the trio run: nobody to hand to, and no exception in zeroconf's thread.
    listener.remove_service(None, SERVICE_TYPE, "good")


def test_a_zeroconf_that_cannot_start_is_a_net_error_and_leaves_nothing():
    async def main():
        listener = _Listener(Discovery(ID_B), trio.lowlevel.current_trio_token())
        with pytest.raises(NetError, match="cannot start mDNS"):
            # An address no interface of this machine has (TEST-NET-3).
            _start(["203.0.113.1"], [f"/ip4/203.0.113.1/tcp/1/p2p/{ID_A}"], listener)
        assert zeroconf_threads() == []
        assert mdns_sockets() == 0

    run(main)
