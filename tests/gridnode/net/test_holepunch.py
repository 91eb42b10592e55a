"""DCUtR hole punching (gridnode.net.holepunch) between real hosts on 127.0.0.1.

Loopback has no NAT: what is tested here is the protocol, the dials from the listen port, the
Noise roles on the resulting connection, and that the relayed connection is replaced (or kept,
when no direct connection can be made). tests/faults/test_nat.py runs it behind real NATs."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from gridnode.net import open_host
from gridnode.net.holepunch import direct_conns
from gridnode.net.relay import RelayLimits
from tests.gridnode.net.hosts import LOCAL, run, seed
from tests.gridnode.net.test_relay import echo_through, serve_echo, wait_circuit


def _direct(host, peer: str) -> bool:
    from libp2p.peer.id import ID

    return bool(direct_conns(host._host, ID.from_base58(peer)))


def test_a_relayed_connection_becomes_direct() -> None:
    async def main() -> None:
        async with AsyncExitStack() as stack:
            relay = await stack.enter_async_context(
                open_host(seed(0), LOCAL, relay_service=RelayLimits())
            )
            a, b = [
                await stack.enter_async_context(
                    open_host(seed(i), LOCAL, relay_client=True, hole_punching=True)
                )
                for i in (1, 2)
            ]
            for host in (a, b):
                await host.connect(relay.addrs[0])
            circuit = await wait_circuit(b)
            await a.connect(circuit)
            assert b.hole_puncher is not None and a.hole_puncher is not None
            while not (_direct(a, b.peer_id) and _direct(b, a.peer_id)):
                await trio.sleep(0.05)
            # The relayed connection is closed: one connection each way, direct.
            assert relay.relay_service is not None
            while relay.relay_service.circuits:
                await trio.sleep(0.05)
            while not b.hole_puncher.stats.successes:  # B's round ends after A's
                await trio.sleep(0.05)
            assert b.hole_puncher.stats.successes == 1
            assert b.hole_puncher.stats.transports == {"tcp": 1}
            assert b.hole_puncher.stats.attempts >= 1
            serve_echo(b)
            before = relay.relay_service.stats.bytes_relayed
            await echo_through(a, b.peer_id, 1 << 18)
            assert relay.relay_service.stats.bytes_relayed == before  # nothing through the relay

    run(main, 40)


def test_without_a_direct_address_the_connection_stays_relayed() -> None:
    async def main() -> None:
        async with AsyncExitStack() as stack:
            relay = await stack.enter_async_context(
                open_host(seed(0), LOCAL, relay_service=RelayLimits())
            )
            # Neither listens anywhere: nothing to dial, nothing to dial from.
            a, b = [
                await stack.enter_async_context(
                    open_host(seed(i), [], relay_client=True, hole_punching=True)
                )
                for i in (1, 2)
            ]
            for host in (a, b):
                await host.connect(relay.addrs[0])
            await a.connect(await wait_circuit(b))
            assert b.hole_puncher is not None
            while b.hole_puncher.stats.failures < 1:
                await trio.sleep(0.05)
            assert b.hole_puncher.stats.successes == 0
            assert b.hole_puncher.stats.attempts == 3
            assert b.peer_id in a.peers()
            serve_echo(b)
            await echo_through(a, b.peer_id, 1 << 16)  # still works, through the relay

    run(main, 60)


def test_gossip_flows_over_the_direct_connection_once_the_relayed_one_is_closed() -> None:
    """The gossip streams ran on the relayed connection the punch closes: both sides reopen
    them on the direct one, so a message published after the punch arrives, either way, without
    waiting for a reconnection (behind real NAT a write took 8-19 s to cross, wt22-c)."""

    async def main() -> None:
        async with AsyncExitStack() as stack:
            relay = await stack.enter_async_context(
                open_host(seed(0), LOCAL, relay_service=RelayLimits())
            )
            a, b = [
                await stack.enter_async_context(
                    open_host(seed(i), LOCAL, relay_client=True, hole_punching=True)
                )
                for i in (1, 2)
            ]
            subs = {}
            for host in (a, b):
                subs[host.peer_id] = await host.subscribe("/test/after-punch")
                await host.connect(relay.addrs[0])
            await a.connect(await wait_circuit(b))
            assert relay.relay_service is not None and b.hole_puncher is not None
            while not (_direct(a, b.peer_id) and _direct(b, a.peer_id)):
                await trio.sleep(0.05)
            while relay.relay_service.circuits or not b.hole_puncher.stats.successes:
                await trio.sleep(0.05)
            for sender, receiver in ((a, b), (b, a)):
                data = f"from {sender.peer_id}".encode()
                with trio.fail_after(10):
                    got = None
                    while got is None:
                        await sender.publish("/test/after-punch", data)
                        with trio.move_on_after(0.5):
                            while got is None:  # a node also hears its own messages
                                message = await subs[receiver.peer_id].receive()
                                if message.data == data:
                                    got = message
                assert got.peer_id == sender.peer_id

    run(main, 60)
