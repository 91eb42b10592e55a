"""Real hosts over 127.0.0.1: connections, streams, security, and a clean exit."""

import socket
from contextlib import asynccontextmanager

import pytest
import trio

from gridnode.net import (
    DialError,
    NetError,
    ProtocolNotSupported,
    StreamError,
    open_host,
    peer_id_from_seed,
)
from tests.gridnode.net.hosts import (
    LOCAL,
    open_fds,
    open_hosts,
    run,
    running_threads,
    seed,
    trio_tasks,
)

ECHO = "/gridnode-test/echo/1.0.0"


async def echo_upper(stream):
    """Read until EOF, answer with the same bytes in upper case, then close."""
    received = b""
    while chunk := await stream.read(4096):
        received += chunk
    await stream.write(received.upper())


async def ask(host, peer_id, request):
    stream = await host.open_stream(peer_id, ECHO)
    assert stream.remote_peer_id == peer_id
    assert stream.protocol == ECHO
    await stream.write(request)
    await stream.close_write()
    answer = b""
    while chunk := await stream.read(4096):
        answer += chunk
    await stream.close()
    return answer


def test_two_hosts_exchange_messages_over_a_custom_protocol_both_ways():
    async def main():
        async with open_hosts(2) as (a, b):
            a.set_stream_handler(ECHO, echo_upper)
            b.set_stream_handler(ECHO, echo_upper)
            assert await a.connect(b.addrs[0]) == b.peer_id
            assert await ask(a, b.peer_id, b"hello from a") == b"HELLO FROM A"
            # The other direction over the same connection.
            assert await ask(b, a.peer_id, b"hello from b") == b"HELLO FROM B"
            big = bytes(range(256)) * 2000  # 512 KB: several yamux windows
            assert await ask(a, b.peer_id, big) == big.upper()
            assert a.peers() == [b.peer_id]
            assert b.peers() == [a.peer_id]

    run(main)


def test_the_handler_sees_who_opened_the_stream():
    async def main():
        seen = []

        async def handler(stream):
            seen.append(stream.remote_peer_id)

        async with open_hosts(2) as (a, b):
            b.set_stream_handler(ECHO, handler)
            await a.connect(b.addrs[0])
            stream = await a.open_stream(b.peer_id, ECHO)
            assert await stream.read(10) == b""  # the handler returned: the stream was closed
            assert seen == [a.peer_id]

    run(main)


def test_connect_to_five_hosts():
    # The time per connect (py-libp2p's 250 ms wait after each dial) is measured in
    # docs/decisions.md; here: it works, returns the peer id, and is idempotent.
    async def main():
        async with open_hosts(6) as hosts:
            hub, others = hosts[0], hosts[1:]
            for other in others:
                assert await hub.connect(other.addrs[0]) == other.peer_id
            assert sorted(hub.peers()) == sorted(o.peer_id for o in others)
            assert await hub.connect(others[0].addrs[0]) == others[0].peer_id
            assert len(hub.peers()) == 5
            await hub.disconnect(others[0].peer_id)
            assert others[0].peer_id not in hub.peers()

    run(main)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_errors():
    async def main():
        async with open_hosts(3) as (a, b, c):
            with pytest.raises(DialError):
                await a.connect("/ip4/127.0.0.1/tcp/1")  # no /p2p/<id>
            with pytest.raises(DialError):
                await a.connect("not a multiaddr")
            with pytest.raises(DialError):
                await a.connect(a.addrs[0])  # ourselves
            # Nobody listens there.
            with pytest.raises(DialError):
                await a.connect(f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{b.peer_id}")
            # Someone listens there, but it is c, not b: Noise authenticates the key.
            c_port = c.addrs[0].split("/tcp/")[1].split("/")[0]
            with pytest.raises(DialError):
                await a.connect(f"/ip4/127.0.0.1/tcp/{c_port}/p2p/{b.peer_id}")
            assert a.peers() == []
            # A peer that just failed is dialed again at its right address (py-libp2p would
            # refuse for 60 s from its negative cache).
            assert await a.connect(b.addrs[0]) == b.peer_id

    run(main)


def test_dial_timeout():
    async def main():
        with socket.socket() as silent:  # accepts TCP but never speaks
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            async with open_host(seed(0), LOCAL, dial_timeout=0.5) as a:
                with pytest.raises(DialError, match="within"):
                    await a.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_from_seed(seed(9))}")

    run(main)


def test_open_stream_errors():
    async def main():
        async with open_hosts(2) as (a, b):
            await a.connect(b.addrs[0])
            with pytest.raises(ProtocolNotSupported):
                await a.open_stream(b.peer_id, "/gridnode-test/nobody-serves-this/1")
            # Still connected and usable afterwards.
            b.set_stream_handler(ECHO, echo_upper)
            assert await ask(a, b.peer_id, b"x") == b"X"
            # A peer we have no address for.
            async with open_hosts(1, first=5) as (stranger,):
                with pytest.raises(StreamError):
                    await a.open_stream(stranger.peer_id, ECHO)
            with pytest.raises(ValueError):
                await a.open_stream("not a peer id!", ECHO)

    run(main)


def test_a_failing_handler_resets_its_stream_and_the_host_keeps_serving():
    async def main():
        calls = 0

        async def flaky(stream):
            nonlocal calls
            calls += 1
            await stream.read(100)
            if calls == 1:
                raise RuntimeError("a bug in a handler")
            await stream.write(b"ok")

        async with open_hosts(2) as (a, b):
            b.set_stream_handler(ECHO, flaky)
            await a.connect(b.addrs[0])
            first = await a.open_stream(b.peer_id, ECHO)
            await first.write(b"1")
            with pytest.raises(StreamError):
                while await first.read(100):
                    pass
            second = await a.open_stream(b.peer_id, ECHO)
            await second.write(b"2")
            assert await second.read(100) == b"ok"
            assert b.peers() == [a.peer_id]

    run(main)


def test_reset_by_the_peer_raises_stream_error():
    async def main():
        handler_done = trio.Event()

        async def resetter(stream):
            await stream.read(100)
            await stream.reset()
            handler_done.set()

        async with open_hosts(2) as (a, b):
            b.set_stream_handler(ECHO, resetter)
            await a.connect(b.addrs[0])
            stream = await a.open_stream(b.peer_id, ECHO)
            await stream.write(b"x")
            await handler_done.wait()
            with pytest.raises(StreamError):
                await stream.read(100)
            await stream.reset()  # idempotent on a dead stream
            await stream.close()

    run(main)


# Security: Noise only.


def plaintext_impostor(victim_public_key):
    """A py-libp2p host that speaks only /plaintext/2.0.0 and claims ``victim_public_key``
    (whose private key it does not have): plaintext's handshake merely states a key."""
    from libp2p import new_host
    from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from libp2p.crypto.keys import KeyPair
    from libp2p.custom_types import TProtocol
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
    from libp2p.stream_muxer.yamux.yamux import Yamux

    claimed = Ed25519PublicKey.from_bytes(victim_public_key)

    class Impostor(Ed25519PrivateKey):
        def get_public_key(self):
            return claimed

    key_pair = KeyPair(Impostor.new(bytes([99]) * 32), claimed)
    return new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)},
        muxer_opt={TProtocol(YAMUX): Yamux},
    )


@asynccontextmanager
async def impostor_connection(target_peer_id, target_addr, victim_public_key):
    """Yields whether the impostor got a connection to the target, while it lasts."""
    import multiaddr
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

    impostor = plaintext_impostor(victim_public_key)
    target = PeerInfo(ID.from_base58(target_peer_id), [multiaddr.Multiaddr(target_addr)])
    async with impostor.run([multiaddr.Multiaddr(LOCAL[0])]):
        try:
            try:
                with trio.move_on_after(5):
                    await impostor.connect(target)
            except Exception:
                pass
            yield bool(impostor.get_connected_peers())
        finally:
            await impostor.close()


def test_a_plaintext_dialer_is_refused():
    from crdt.identity import Keypair

    victim = Keypair(seed(7))  # a peer whose public key everybody knows
    victim_peer_id = peer_id_from_seed(seed(7))

    async def against_default_py_libp2p_host():
        # The control: py-libp2p's default host believes the impostor is the victim.
        import multiaddr
        from libp2p import new_host

        target = new_host()
        async with target.run([multiaddr.Multiaddr(LOCAL[0])]):
            addr = str(target.get_transport_addrs()[0])
            try:
                async with impostor_connection(
                    str(target.get_id()), addr, victim.public_key
                ) as connected:
                    await trio.sleep(0.1)
                    return connected, [str(p) for p in target.get_connected_peers()]
            finally:
                await target.close()

    async def against_our_host():
        async with open_host(seed(0), LOCAL) as host:
            addr = host.addrs[0].split("/p2p/")[0]
            async with impostor_connection(host.peer_id, addr, victim.public_key) as connected:
                await trio.sleep(0.1)
                return connected, host.peers()

    assert run(against_default_py_libp2p_host) == (True, [victim_peer_id])
    assert run(against_our_host) == (False, [])


# Lifetime


def test_closing_releases_every_socket_task_and_thread():
    async def main():
        async with open_hosts(1):  # import-time and first-use allocations happen here
            pass
        fds, threads, tasks = open_fds(), running_threads(), trio_tasks()
        for _ in range(5):
            async with open_hosts(4) as (hub, *peers):
                for peer in peers:
                    await hub.connect(peer.addrs[0])
                await hub.subscribe("topic")
                await hub.publish("topic", b"x")
                assert open_fds() > fds
            assert open_fds() == fds
            assert running_threads() == threads
            assert trio_tasks() == tasks

    run(main, timeout=40)


def test_leaving_by_cancellation_still_closes_everything():
    async def main():
        async with open_hosts(1):
            pass
        fds = open_fds()
        with trio.move_on_after(0.5):
            async with open_hosts(3) as (a, b, c):
                await a.connect(b.addrs[0])
                await a.connect(c.addrs[0])
                await trio.sleep_forever()
        assert open_fds() == fds

    run(main)


def test_listen_errors():
    async def main():
        fds = open_fds()
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            with pytest.raises(NetError, match="cannot listen"):
                async with open_host(seed(0), [f"/ip4/127.0.0.1/tcp/{port}"]):
                    pass
        with pytest.raises(NetError):
            async with open_host(seed(0), ["/ip4/not-an-ip/tcp/0"]):
                pass
        assert open_fds() == fds

    run(main)
