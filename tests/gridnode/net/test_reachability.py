"""Reachability (gridnode.net.reachability): AutoNAT dial-backs between real hosts on 127.0.0.1."""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack
from typing import Any

import trio
from libp2p.host.autonat.autonat import AutoNATService
from libp2p.host.autonat.pb.autonat_pb2 import Message

from gridnode.net import Host, open_host
from gridnode.net.reachability import AUTONAT, PRIVATE, PUBLIC
from gridnode.net.relay import RelayLimits, is_circuit, read_message, write_message
from tests.gridnode.net.hosts import LOCAL, run, seed
from tests.gridnode.net.test_relay import wait_circuit


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ask(client: Host, server: Host, addrs: list[str], peer_id: Any = None) -> Any:
    """One AutoNAT DIAL request from ``client`` to ``server``; the DIAL_RESPONSE."""
    import multiaddr

    request = Message(type=Message.DIAL)
    request.dial.peer.id = (peer_id or client._host.get_id()).to_bytes()
    for addr in addrs:
        request.dial.peer.addrs.append(multiaddr.Multiaddr(addr).to_bytes())
    stream = await client.open_stream(server.peer_id, AUTONAT)
    await write_message(stream, request)
    answer = await read_message(stream, Message)
    await stream.close()
    return answer.dialResponse


def test_py_libp2p_autonat_says_reachable_to_anyone_connected_and_gridnode_does_not() -> None:
    """The suspicion of issue 22, item 3, verified: py-libp2p 0.8.1's AutoNAT server "dials
    back" with ``host.connect``, which returns at once for a peer already connected; the
    requester always is. A host that listens on nothing is told it is reachable."""

    async def main() -> None:
        async with AsyncExitStack() as stack:
            upstream = await stack.enter_async_context(open_host(seed(0), LOCAL))
            AutoNATService(upstream._host, serve=True)
            ours = await stack.enter_async_context(open_host(seed(1), LOCAL, autonat=True))
            nowhere = await stack.enter_async_context(open_host(seed(2), []))
            for server in (upstream, ours):
                await nowhere.connect(server.addrs[0])
            nothing_there = [f"/ip4/127.0.0.1/tcp/{closed_port()}"]
            assert (await ask(nowhere, upstream, nothing_there)).status == Message.OK  # wrong
            answer = await ask(nowhere, ours, nothing_there)
            assert answer.status == Message.E_DIAL_ERROR
            assert ours.autonat_server is not None and ours.autonat_server.served == 1

    run(main, 40)


def test_a_dialable_host_is_public_and_announces_no_relayed_address() -> None:
    async def main() -> None:
        async with AsyncExitStack() as stack:
            relay = await stack.enter_async_context(
                open_host(seed(0), LOCAL, relay_service=RelayLimits(), autonat=True)
            )
            home = await stack.enter_async_context(
                open_host(seed(1), LOCAL, relay_client=True, autonat=True)
            )
            await home.connect(relay.addrs[0])
            reach = home.reachability
            assert reach is not None and home.relay_client is not None
            while reach.status != PUBLIC or not home.relay_client.circuit_addrs():
                await trio.sleep(0.05)
            # A reservation is held, but the home is dialable: it announces where it was reached.
            assert not [a for a in home.announced_addrs if is_circuit(a)]
            assert reach.confirmed == [home.addrs[0].split("/p2p/")[0]]
            assert reach.verdicts == {relay.peer_id: True}
            # It stops being dialable (what it asks to be dialled at is closed): relayed again.
            reach.candidates = lambda: [f"/ip4/127.0.0.1/tcp/{closed_port()}"]
            assert await reach.check() == PRIVATE
            assert await wait_circuit(home) in home.announced_addrs
            # And back.
            reach.candidates = None
            assert await reach.check() == PUBLIC
            assert not [a for a in home.announced_addrs if is_circuit(a)]
            nat = home.nat_status()
            assert nat["reachability"]["status"] == PUBLIC
            assert relay.nat_status()["autonat_server"]["served"] >= 3

    run(main, 60)


def test_a_host_that_listens_nowhere_is_private() -> None:
    async def main() -> None:
        async with (
            open_host(seed(0), LOCAL, relay_service=RelayLimits(), autonat=True) as relay,
            open_host(seed(1), [], relay_client=True, autonat=True) as home,
        ):
            await home.connect(relay.addrs[0])
            assert home.reachability is not None
            while home.reachability.status != PRIVATE:
                await trio.sleep(0.05)
            circuit = await wait_circuit(home)
            assert home.announced_addrs == [circuit]

    run(main, 30)


def test_an_auto_mode_dht_serves_the_public_dht_only_while_the_host_is_public() -> None:
    """``dht_mode = "auto"`` (the home profile): the LAN DHT is served from the start, the
    public one only once AutoNAT finds the host dialable, and no longer once it is not."""
    from gridnode.errors import StreamError
    from gridnode.net.dht import LAN_PROTOCOL, PROTOCOL, DhtConfig

    async def answers(asker: Host, host: Host, protocol: str) -> bool:
        try:
            stream = await asker.open_stream(host.peer_id, protocol)
        except StreamError:
            return False
        await stream.reset()
        return True

    async def main() -> None:
        async with (
            open_host(seed(0), LOCAL, relay_service=RelayLimits(), autonat=True) as relay,
            open_host(
                seed(1), LOCAL, relay_client=True, autonat=True, dht=DhtConfig(auto=True)
            ) as home,
        ):
            assert home.dht is not None and home.reachability is not None
            assert not home.dht.serving and home.dht.as_dict()["mode"] == "client"
            await home.connect(relay.addrs[0])
            assert await answers(relay, home, LAN_PROTOCOL)
            with trio.fail_after(20):
                while home.reachability.status != PUBLIC or not home.dht.serving:
                    await trio.sleep(0.05)
            assert await answers(relay, home, PROTOCOL)
            assert home.dht.as_dict()["mode"] == "server" and home.dht.as_dict()["auto"] is True
            home.reachability.candidates = lambda: [f"/ip4/127.0.0.1/tcp/{closed_port()}"]
            assert await home.reachability.check() == PRIVATE
            with trio.fail_after(10):
                while home.dht.serving:
                    await trio.sleep(0.05)
            assert not await answers(relay, home, PROTOCOL)
            assert await answers(relay, home, LAN_PROTOCOL)

    run(main, 60)


def test_a_lan_neighbours_dial_back_does_not_make_a_node_public() -> None:
    """Two LAN neighbours reaching us say nothing about the internet: once a server at a global
    IP has answered, only such servers count (tests/faults/test_nat.py shows it behind a real
    NAT)."""
    from gridnode.net.reachability import UNKNOWN, status_of

    lan = {"n1": True, "n2": True, "n3": True}
    internet = {"relay": False}
    at_global = {"relay": True, "n1": False, "n2": False, "n3": False}
    assert status_of({**lan, **internet}, at_global) == PRIVATE
    assert status_of({**lan, **internet}, {}) == PUBLIC  # what counting everyone said
    # With no server at a global IP (a LAN-only network, loopback): everyone counts.
    assert status_of(lan, at_global) == PUBLIC
    assert status_of({"n1": True, "n2": False}, at_global) == UNKNOWN
    assert status_of({"n1": True, "n2": True, "relay": False}, {}) == UNKNOWN
    # Global servers decide by the same majority rule.
    servers = {"g1": True, "g2": True, "g3": True, "g4": False, "n1": False, "n2": False}
    assert status_of(servers, {f"g{i}": True for i in range(1, 5)}) == PUBLIC
    assert status_of(servers, {}) == UNKNOWN
    assert status_of({"g1": True}, {"g1": True}) == PUBLIC
