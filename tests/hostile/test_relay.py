"""Item 6 of issue 22 for relays: a hostile peer against the hop service and the relay client.

Real hosts on 127.0.0.1: the relay (``relay_service``), honest home hosts that listen on nothing
(``relay_client``), and MALLORY, who speaks the hop and stop protocols by hand."""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack, suppress

import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage, PeerId, Status, StopMessage

from gridnode.net import open_host
from gridnode.net.relay import HOP, STOP, RelayLimits, read_message, write_message
from tests.gridnode.net.hosts import LOCAL, run, seed
from tests.gridnode.net.test_relay import ECHO, echo_through, relayed, serve_echo, wait_circuit

MALLORY = 40


def test_malformed_hop_requests_end_the_stream_not_the_relay() -> None:
    async def main() -> None:
        async with relayed(2) as (relay, (a, b)), open_host(seed(MALLORY), LOCAL) as mallory:
            await mallory.connect(relay.addrs[0])
            bad = [
                b"\xff" * 12,  # a length prefix that never ends
                b"\x80\x80\x04" + b"x" * 100,  # 64 KiB announced, over MAX_MESSAGE
                b"\x05\xff\xff\xff\xff\xff",  # not protobuf
                b"\x02\x08\x07",  # an unknown message type
                b"",  # nothing at all: the read times out or ends
            ]
            for frame in bad:
                stream = await mallory.open_stream(relay.peer_id, HOP)
                if frame:
                    await stream.write(frame)
                await stream.close_write()
                with trio.fail_after(15):
                    while await stream.read(4096):
                        pass
            # The relay still serves honest peers.
            serve_echo(b)
            await a.connect(await wait_circuit(b))
            await echo_through(a, b.peer_id, 1 << 16)

    run(main, 60)


def test_a_reservation_is_the_connections_own_not_the_one_claimed() -> None:
    async def main() -> None:
        async with (
            open_host(seed(0), LOCAL, relay_service=RelayLimits()) as relay,
            open_host(seed(MALLORY), LOCAL) as mallory,
            open_host(seed(1), [], relay_client=True) as victim,
        ):
            for host in (mallory, victim):
                await host.connect(relay.addrs[0])
            # py-libp2p's hop service reserves for the peer named in the request.
            stream = await mallory.open_stream(relay.peer_id, HOP)
            await write_message(
                stream,
                HopMessage(
                    type=HopMessage.RESERVE,
                    peer=PeerId(id=ID.from_base58(victim.peer_id).to_bytes()),
                ),
            )
            answer = await read_message(stream, HopMessage)
            assert answer.status == Status.OK
            assert relay.relay_service is not None
            assert victim.peer_id not in relay.relay_service.reservations
            assert mallory.peer_id in relay.relay_service.reservations

    run(main, 30)


def test_reservations_and_circuits_stay_within_their_bounds() -> None:
    async def main() -> None:
        limits = RelayLimits(max_reservations=3, max_circuits_per_peer=2)
        async with relayed(1, limits) as (relay, (home,)), AsyncExitStack() as stack:
            # Many identities asking for reservations: at most 3 held, whoever asks.
            sybils = [
                await stack.enter_async_context(open_host(seed(MALLORY + i), LOCAL))
                for i in range(5)
            ]
            granted = 0
            for sybil in sybils:
                await sybil.connect(relay.addrs[0])
                stream = await sybil.open_stream(relay.peer_id, HOP)
                await write_message(stream, HopMessage(type=HopMessage.RESERVE))
                granted += (await read_message(stream, HopMessage)).status == Status.OK
            assert relay.relay_service is not None
            assert granted == 2 and len(relay.relay_service.reservations) == 3
            # One peer opening circuits to the home and never speaking Noise on them.
            mallory = sybils[0]
            opened: list[int] = []

            async def circuit() -> None:
                stream = await mallory.open_stream(relay.peer_id, HOP)
                target = ID.from_base58(home.peer_id).to_bytes()
                await write_message(
                    stream, HopMessage(type=HopMessage.CONNECT, peer=PeerId(id=target))
                )
                opened.append((await read_message(stream, HopMessage)).status)
                await trio.sleep(3)  # held open, silent

            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(circuit)
                while len(opened) < 8:
                    await trio.sleep(0.02)
                assert relay.relay_service.circuits <= 2
            assert opened.count(Status.OK) <= 2
            assert opened.count(Status.RESOURCE_LIMIT_EXCEEDED) >= 6
            assert mallory.peer_id not in home.peers()

    run(main, 60)


def test_a_stop_from_a_peer_that_is_not_our_relay_is_refused() -> None:
    async def main() -> None:
        async with (
            open_host(seed(1), LOCAL, relay_client=True) as home,
            open_host(seed(MALLORY), LOCAL) as mallory,
        ):
            await mallory.connect(home.addrs[0])
            stream = await mallory.open_stream(home.peer_id, STOP)
            spoofed = ID.from_base58(mallory.peer_id).to_bytes()
            await write_message(
                stream, StopMessage(type=StopMessage.CONNECT, peer=PeerId(id=spoofed))
            )
            answer = await read_message(stream, StopMessage)
            assert answer.status == Status.PERMISSION_DENIED
            assert home.relay_client is not None
            assert home.relay_client.stats.relayed_inbound == 0
            # Whatever came of it, the home still answers.
            serve_echo(home)
            await echo_through(mallory, home.peer_id, 4096)
            assert ECHO

    run(main, 30)


def test_dcutr_from_a_hostile_peer_is_bounded() -> None:
    from libp2p.relay.circuit_v2.pb.dcutr_pb2 import HolePunch

    from gridnode.net.holepunch import DCUTR

    async def main() -> None:
        async with (
            open_host(seed(1), LOCAL, relay_client=True, hole_punching=True) as home,
            open_host(seed(MALLORY), LOCAL) as mallory,
        ):
            await mallory.connect(home.addrs[0])
            # Over a direct connection there is nothing to upgrade: the stream is reset.
            many = [f"/ip4/10.0.{i // 250}.{i % 250}/tcp/1".encode() for i in range(500)]
            with trio.fail_after(15):
                try:
                    stream = await mallory.open_stream(home.peer_id, DCUTR)
                    await write_message(stream, HolePunch(type=HolePunch.CONNECT, ObsAddrs=many))
                    while await stream.read(4096):
                        pass
                except Exception:  # reset: what is expected
                    pass
            assert home.hole_puncher is not None
            assert home.hole_puncher.stats.attempts == 0
            # Garbage, an oversized CONNECT (over 4 KiB): the stream ends, the home answers.
            for frame in (b"\xff" * 12, b"\x80\x80\x04" + b"x" * 64):
                with trio.fail_after(15):
                    try:
                        stream = await mallory.open_stream(home.peer_id, DCUTR)
                        await stream.write(frame)
                        while await stream.read(4096):
                            pass
                    except Exception:  # reset: what is expected
                        pass
            serve_echo(home)
            await echo_through(mallory, home.peer_id, 4096)

    run(main, 60)


def test_autonat_requests_are_checked_and_bounded() -> None:
    from libp2p.host.autonat.pb.autonat_pb2 import Message

    from tests.gridnode.net.test_reachability import ask

    async def main() -> None:
        async with (
            open_host(seed(0), LOCAL, autonat=True) as server,
            open_host(seed(MALLORY), LOCAL) as mallory,
            open_host(seed(2), LOCAL) as victim,
        ):
            await mallory.connect(server.addrs[0])
            assert server.autonat_server is not None
            mine = mallory.addrs[0].split("/p2p/")[0]
            # A dial-back for somebody else.
            other = ID.from_base58(victim.peer_id)
            assert (await ask(mallory, server, [mine], other)).status == Message.E_BAD_REQUEST
            # No TCP address: nothing to dial.
            answer = await ask(mallory, server, ["/ip4/127.0.0.1/udp/4001/quic-v1"])
            assert answer.status == Message.E_DIAL_REFUSED
            assert server.autonat_server.served == 0
            # An address at another IP than the request came from: only its port is used, at
            # the requester's IP; the third party there is never dialled.
            accepted = []
            with socket.socket() as third_party:
                third_party.bind(("127.0.0.2", 0))
                third_party.listen()
                third_party.setblocking(False)
                port = third_party.getsockname()[1]
                answer = await ask(mallory, server, [f"/ip4/127.0.0.2/tcp/{port}"])
                with suppress(BlockingIOError):
                    accepted.append(third_party.accept())
            assert answer.status == Message.E_DIAL_ERROR  # 127.0.0.1 at that port: closed
            assert accepted == []
            assert server.autonat_server.served == 1
            # Another peer's address at our IP: the Noise handshake proves it is not us.
            theirs = victim.addrs[0].split("/p2p/")[0]
            assert (await ask(mallory, server, [theirs])).status == Message.E_DIAL_ERROR
            # At most 4 dial-backs a minute for one peer (two used above).
            statuses = [(await ask(mallory, server, [mine])).status for _ in range(4)]
            assert statuses[:2] == [Message.OK] * 2
            assert statuses[2:] == [Message.E_DIAL_REFUSED] * 2
            assert server.autonat_server.served == 4
            # Garbage: the stream ends, the server still answers the honest.
            stream = await mallory.open_stream(server.peer_id, "/libp2p/autonat/1.0.0")
            await stream.write(b"\xff" * 12)
            with trio.fail_after(15):
                try:
                    while await stream.read(4096):
                        pass
                except Exception:  # reset: what is expected
                    pass
            await victim.connect(server.addrs[0])
            assert (await ask(victim, server, [theirs])).status == Message.OK

    run(main, 60)


def test_dcutr_rounds_a_peer_can_make_us_dial_are_bounded() -> None:
    """A peer behind a relay (the DCUtR initiator, B) names the addresses we dial in a round:
    it cannot make us run more than 3 rounds a minute, one at a time."""
    from libp2p.relay.circuit_v2.pb.dcutr_pb2 import HolePunch

    from gridnode.net.holepunch import DCUTR, ROUNDS_PER_PEER_PER_MINUTE

    async def main() -> None:
        async with (
            open_host(seed(0), LOCAL, relay_service=RelayLimits()) as relay,
            open_host(seed(1), LOCAL, relay_client=True, hole_punching=True) as home,
            open_host(seed(MALLORY), [], relay_client=True) as mallory,
        ):
            for host in (home, mallory):
                await host.connect(relay.addrs[0])
            await home.connect(await wait_circuit(mallory))  # home is A, mallory B
            # Closed ports, and text where binary multiaddrs belong (skipped, not fatal).
            targets = [
                multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{9 + i}").to_bytes() for i in range(4)
            ]
            targets += [f"/ip4/127.0.0.1/tcp/{9 + i}".encode() for i in range(4)]
            answered = 0
            for _ in range(6):
                try:
                    with trio.fail_after(15):
                        stream = await mallory.open_stream(home.peer_id, DCUTR)
                        await write_message(
                            stream, HolePunch(type=HolePunch.CONNECT, ObsAddrs=targets)
                        )
                        await read_message(stream, HolePunch)
                        await write_message(stream, HolePunch(type=HolePunch.SYNC))
                        answered += 1
                except Exception:  # reset: refused
                    pass
                await trio.sleep(0.3)
            assert home.hole_puncher is not None
            assert answered == ROUNDS_PER_PEER_PER_MINUTE
            assert home.hole_puncher.stats.attempts <= ROUNDS_PER_PEER_PER_MINUTE
            assert home.hole_puncher.refused >= 6 - ROUNDS_PER_PEER_PER_MINUTE
            serve_echo(home)
            await echo_through(mallory, home.peer_id, 4096)

    run(main, 90)
