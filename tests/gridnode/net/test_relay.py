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
