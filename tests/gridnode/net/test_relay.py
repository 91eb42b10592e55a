"""Circuit relay v2 (gridnode.net.relay) between real hosts on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from gridnode.errors import DialError, RelayRefused
from gridnode.net import Host, open_host
from gridnode.net.relay import RelayLimits, is_circuit
from tests.gridnode.net.hosts import LOCAL, run, seed

ECHO = "/gridnode-test/echo/1.0.0"


@asynccontextmanager
async def relayed(
    homes: int = 2, limits: RelayLimits | None = None
) -> AsyncIterator[tuple[Host, list[Host]]]:
    """A relay on 127.0.0.1 and ``homes`` hosts that listen on nothing, each with a reservation."""
    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(
            open_host(seed(0), LOCAL, relay_service=limits or RelayLimits())
        )
        hosts = [
            await stack.enter_async_context(open_host(seed(i + 1), [], relay_client=True))
            for i in range(homes)
        ]
        for host in hosts:
            await host.connect(relay.addrs[0])
        for host in hosts:
            await wait_circuit(host)
        yield relay, hosts


async def wait_circuit(host: Host) -> str:
    while True:
        circuits = [a for a in host.announced_addrs if is_circuit(a)]
        if circuits:
            return circuits[0]
        await trio.sleep(0.02)


def serve_echo(host: Host) -> None:
    async def echo(stream: Any) -> None:
        while data := await stream.read(65536):
            await stream.write(data)

    host.set_stream_handler(ECHO, echo)


async def echo_through(client: Host, peer: str, size: int) -> bytes:
    stream = await client.open_stream(peer, ECHO)
    payload = bytes(range(256)) * (size // 256)
    got = bytearray()
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            for i in range(0, len(payload), 16384):
                await stream.write(payload[i : i + 16384])
            await stream.close_write()

        nursery.start_soon(send)
        while len(got) < len(payload):
            chunk = await stream.read(65536)
            if not chunk:
                break
            got += chunk
    assert bytes(got) == payload
    return bytes(got)


def test_unreachable_host_is_reached_through_a_relay() -> None:
    async def main() -> None:
        async with relayed() as (relay, (a, b)):
            assert not [x for x in b.announced_addrs if not is_circuit(x)]  # listens on nothing
            circuit = await wait_circuit(b)
            assert circuit.endswith(f"/p2p/{relay.peer_id}/p2p-circuit/p2p/{b.peer_id}")
            serve_echo(b)
            assert await a.connect(circuit) == b.peer_id
            assert b.peer_id in a.peers() and a.peer_id in b.peers()
            await echo_through(a, b.peer_id, 1 << 20)
            # And the other way over the same (relayed) connection.
            serve_echo(a)
            await echo_through(b, a.peer_id, 1 << 16)
            assert relay.relay_service is not None
            assert relay.relay_service.stats.circuits_opened == 1
            assert relay.relay_service.stats.bytes_relayed > 2 << 20
            assert a.relay_client is not None and a.relay_client.stats.relayed_dials == 1
            assert b.relay_client is not None and b.relay_client.stats.relayed_inbound == 1

    run(main, 30)


def test_reservations_beyond_the_limit_are_refused() -> None:
    async def main() -> None:
        async with (
            relayed(1, RelayLimits(max_reservations=1)) as (relay, (a,)),
            open_host(seed(5), [], relay_client=True) as late,
        ):
            await late.connect(relay.addrs[0])
            assert late.relay_client is not None and a.relay_client is not None
            with pytest.raises(RelayRefused, match="RESERVATION_REFUSED"):
                await late.relay_client.reserve(relay.peer_id)
            await late.relay_client.refresh()
            assert not [x for x in late.announced_addrs if is_circuit(x)]
            # The holder renews its own.
            await a.relay_client.reserve(relay.peer_id)
            assert relay.relay_service is not None
            assert relay.relay_service.stats.reservations_refused >= 2
            assert list(relay.relay_service.reservations) == [a.peer_id]

    run(main, 30)


def test_circuits_per_peer_are_bounded() -> None:
    async def main() -> None:
        async with relayed(3, RelayLimits(max_circuits_per_peer=1)) as (relay, (a, b, c)):
            target = await wait_circuit(c)
            await a.connect(target)
            with pytest.raises(DialError, match="RESOURCE_LIMIT_EXCEEDED"):
                await b.connect(target)
            assert c.peer_id not in b.peers()
            # Once a's circuit ends, b gets one.
            await a.disconnect(c.peer_id)
            assert relay.relay_service is not None
            while relay.relay_service.circuits:
                await trio.sleep(0.02)
            assert await b.connect(target) == c.peer_id

    run(main, 30)


def test_a_circuit_is_cut_at_its_byte_limit() -> None:
    async def main() -> None:
        async with relayed(2, RelayLimits(circuit_bytes=256 * 1024)) as (relay, (a, b)):
            serve_echo(b)
            await a.connect(await wait_circuit(b))
            with pytest.raises(Exception):  # noqa: B017 - the stream or connection breaks
                await echo_through(a, b.peer_id, 1 << 20)
            while b.peer_id in a.peers() or a.peer_id in b.peers():
                await trio.sleep(0.02)
            assert relay.relay_service is not None
            assert relay.relay_service.stats.circuits_cut == 1
            assert relay.relay_service.stats.bytes_relayed <= 256 * 1024

    run(main, 30)


def test_an_idle_circuit_is_cut_at_its_duration() -> None:
    async def main() -> None:
        async with relayed(2, RelayLimits(circuit_seconds=0.5)) as (relay, (a, b)):
            await a.connect(await wait_circuit(b))
            while b.peer_id in a.peers() or a.peer_id in b.peers():
                await trio.sleep(0.05)
            assert relay.relay_service is not None
            assert relay.relay_service.stats.circuits_cut == 1
            assert relay.relay_service.circuits == 0

    run(main, 30)


def test_relayed_addresses_keep_their_place_in_a_full_peer_record() -> None:
    async def main() -> None:
        many = [f"/ip4/192.0.2.{i}/tcp/4001" for i in range(1, 17)]  # 16: a full record
        async with (
            open_host(seed(0), LOCAL, relay_service=RelayLimits()) as relay,
            open_host(seed(1), LOCAL, relay_client=True, announce=many) as home,
        ):
            await home.connect(relay.addrs[0])
            circuit = await wait_circuit(home)
            assert len(home.announced_addrs) == 16
            assert circuit in home.announced_addrs

    run(main, 30)


def test_a_peer_known_by_a_dead_relay_is_met_through_ours() -> None:
    from gridnode.node.reachability import meet_through_relays

    async def main() -> None:
        async with relayed(2) as (relay, (a, b)):
            # a knows b only through a relay that is gone (b's record from before it stopped).
            gone = "12D3KooWQ38qezbnxQzpCpnmsiJxkPAADrnvqodsdC2xMhoebJCE"
            known = {b.peer_id: (f"/ip4/127.0.0.1/tcp/9/p2p/{gone}/p2p-circuit/p2p/{b.peer_id}",)}

            async def connect(address: str) -> str | None:
                try:
                    return await a.connect(address)
                except DialError:
                    return None

            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: meet_through_relays(a, known, connect, interval=0.05))
                while b.peer_id not in a.peers():
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
            assert relay.relay_service is not None
            assert relay.relay_service.stats.circuits_opened == 1

    run(main, 30)


def test_two_nodes_dialling_each_other_at_once_keep_one_circuit() -> None:
    async def main() -> None:
        async with relayed(2) as (relay, (a, b)):
            to_b, to_a = await wait_circuit(b), await wait_circuit(a)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.connect, to_b)
                nursery.start_soon(b.connect, to_a)
            assert relay.relay_service is not None
            opened = relay.relay_service.stats.circuits_opened
            # However many circuits the race opened, one stays, the same one on both sides.
            while relay.relay_service.circuits != 1:
                await trio.sleep(0.05)
            await trio.sleep(1.5)  # past the settling time: nothing more is closed
            assert relay.relay_service.circuits == 1
            assert b.peer_id in a.peers() and a.peer_id in b.peers()
            serve_echo(b)
            await echo_through(a, b.peer_id, 1 << 16)
            assert a.relay_client is not None and b.relay_client is not None
            closed = a.relay_client.stats.duplicates_closed + b.relay_client.stats.duplicates_closed
            assert opened - 1 <= closed <= 2 * (opened - 1)

    run(main, 30)


def test_a_relay_that_announces_nothing_is_used_where_it_was_reached() -> None:
    async def main() -> None:
        async with (
            open_host(seed(0), LOCAL, relay_service=RelayLimits(), announce_private=False) as relay,
            open_host(seed(1), [], relay_client=True) as home,
        ):
            assert relay.announced_addrs == []  # loopback only: nothing public
            await home.connect(relay.addrs[0])
            circuit = await wait_circuit(home)
            assert circuit == f"{relay.addrs[0]}/p2p-circuit/p2p/{home.peer_id}"

    run(main, 30)


def test_identify_and_the_signed_record_name_the_relayed_addresses_and_gossip_still_flows() -> None:
    """A peer that meets a home learns its ``/p2p-circuit`` address from identify, in the one
    signed peer record the home sends everywhere; pubsub RPCs (which carry that record too) are
    not dropped as carrying an older record."""
    from libp2p.peer.id import ID

    async def main() -> None:
        async with relayed(2) as (_relay, (a, b)):
            circuit = await wait_circuit(b)
            assert circuit in b.addrs  # the host's own list, from which identify is built
            subs = {host.peer_id: await host.subscribe("/test/relayed") for host in (a, b)}
            await a.connect(circuit)
            peerstore = a._host.get_peerstore()
            with trio.fail_after(10):
                while True:
                    envelope = peerstore.get_peer_record(ID.from_base58(b.peer_id))
                    if envelope is not None:
                        named = {str(addr) for addr in envelope.record().addrs}
                        if any(is_circuit(addr) for addr in named):
                            break
                    await trio.sleep(0.05)
            assert circuit in named or circuit.removesuffix(f"/p2p/{b.peer_id}") in named
            for sender, receiver in ((a, b), (b, a)):
                data = f"from {sender.peer_id}".encode()
                with trio.fail_after(10):
                    got = None
                    while got is None:
                        await sender.publish("/test/relayed", data)
                        with trio.move_on_after(0.5):
                            while got is None:
                                message = await subs[receiver.peer_id].receive()
                                if message.data == data:
                                    got = message

    run(main, 40)
