"""QUIC v1 beside TCP, with real hosts over 127.0.0.1 (issue 22, item 4)."""

import contextlib
import os

import pytest
import trio

from gridnode.net import DialError, open_host, peer_id_from_seed
from gridnode.net.transports import (
    QUIC_STREAM_WINDOW,
    dial_order,
    is_quic,
    keep_datagrams_in_order,
    sweep_quic_listeners,
)
from tests.gridnode.net.hosts import LOCAL, run, seed
from tests.gridnode.net.test_host import ECHO, ask, echo_upper

QUIC = ["/ip4/127.0.0.1/udp/0/quic-v1"]
BOTH = LOCAL + QUIC


def transport_of(host, peer_id):
    """Which transport carries ``host``'s connection to ``peer_id``: "quic" or "tcp"."""
    connections = host._host.get_network().connections[_id(peer_id)]
    assert len(connections) == 1
    kind = type(connections[0].muxed_conn).__name__
    return "quic" if kind == "QUICConnection" else "tcp"


def _id(peer_id):
    from libp2p.peer.id import ID

    return ID.from_base58(peer_id)


def test_dial_order_puts_quic_first_and_leaves_it_out_for_a_tcp_only_host():
    tcp = "/ip4/192.0.2.1/tcp/4001/p2p/X"
    quic = "/ip4/192.0.2.1/udp/4001/quic-v1/p2p/X"
    draft = "/ip4/192.0.2.1/udp/4001/quic/p2p/X"
    assert is_quic(quic) and not is_quic(tcp) and not is_quic(draft)
    assert dial_order([tcp, quic], quic=True) == [quic, tcp]
    assert dial_order([tcp, quic], quic=False) == [tcp]
    assert dial_order([draft, tcp], quic=True) == [draft, tcp]


def test_two_hosts_over_quic_only_exchange_messages_both_ways():
    async def main():
        async with open_host(seed(0), QUIC) as a, open_host(seed(1), QUIC) as b:
            assert a.quic and b.quic
            assert all(is_quic(addr) for addr in a.addrs + b.addrs)
            a.set_stream_handler(ECHO, echo_upper)
            b.set_stream_handler(ECHO, echo_upper)
            assert await a.connect(b.addrs[0]) == b.peer_id
            assert transport_of(a, b.peer_id) == "quic"
            assert await ask(a, b.peer_id, b"hello from a") == b"HELLO FROM A"
            assert await ask(b, a.peer_id, b"hello from b") == b"HELLO FROM B"
            big = bytes(range(256)) * 2000  # 512 KB: beyond one flow-control window
            assert await ask(a, b.peer_id, big) == big.upper()

    run(main, timeout=60)


def test_replies_over_quic_arrive_whole():
    """py-libp2p's QUIC read can report the end of a stream with its last data still buffered
    (gridnode.net.transports.quic_rest): every reply must arrive whole, every time."""

    async def main():
        async with open_host(seed(0), QUIC) as a, open_host(seed(1), QUIC) as b:
            b.set_stream_handler(ECHO, echo_upper)
            await a.connect(b.addrs[0])
            for i in range(40):
                request = bytes((i + j) % 256 for j in range(60_000))
                assert await ask(a, b.peer_id, request) == request.upper(), i

    run(main, timeout=120)


def test_quic_authenticates_the_peer_id_both_ways():
    async def main():
        seen = []

        async def handler(stream):
            seen.append(stream.remote_peer_id)

        async with open_host(seed(0), QUIC) as a, open_host(seed(1), QUIC) as b:
            b.set_stream_handler(ECHO, handler)
            # The address names someone else's peer id: the TLS certificate's key does not match.
            impostor = peer_id_from_seed(seed(7))
            wrong = b.addrs[0].replace(b.peer_id, impostor)
            with pytest.raises(DialError):
                await a.connect(wrong)
            assert impostor not in a.peers()
            await a.connect(b.addrs[0])
            stream = await a.open_stream(b.peer_id, ECHO)
            assert stream.remote_peer_id == b.peer_id
            assert await stream.read(10) == b""
            # The listener learnt who dialled from the certificate.
            assert seen == [a.peer_id]
            assert b.peers() == [a.peer_id]

    run(main, timeout=60)


def test_a_host_on_both_announces_quic_first_and_is_reached_over_quic():
    async def main():
        async with open_host(seed(0), BOTH) as a, open_host(seed(1), BOTH) as b:
            assert is_quic(b.announced_addrs[0])
            assert [is_quic(addr) for addr in b.announced_addrs] == [True, False]
            first = b.dial_order(b.announced_addrs)[0]
            assert await a.connect(first) == b.peer_id
            assert transport_of(a, b.peer_id) == "quic"

    run(main, timeout=60)


def test_tcp_only_and_quic_hosts_still_connect_both_ways():
    async def main():
        async with open_host(seed(0), LOCAL) as old, open_host(seed(1), BOTH) as new:
            assert not old.quic and new.quic
            old.set_stream_handler(ECHO, echo_upper)
            new.set_stream_handler(ECHO, echo_upper)
            # The TCP-only host leaves the QUIC address out, and is refused one outright.
            order = old.dial_order(new.announced_addrs)
            assert order and not any(is_quic(addr) for addr in order)
            quic_addr = next(addr for addr in new.addrs if is_quic(addr))
            with pytest.raises(DialError, match="QUIC"):
                await old.connect(quic_addr)
            assert await old.connect(order[0]) == new.peer_id
            assert transport_of(old, new.peer_id) == "tcp"
            assert await ask(old, new.peer_id, b"tcp") == b"TCP"
            assert await ask(new, old.peer_id, b"back") == b"BACK"
            await old.disconnect(new.peer_id)
            with trio.fail_after(10):
                while new.peers():
                    await trio.sleep(0.02)
            # The other way: the QUIC host dials the TCP-only one over TCP.
            assert await new.connect(old.addrs[0]) == old.peer_id
            assert transport_of(new, old.peer_id) == "tcp"
            assert await ask(new, old.peer_id, b"again") == b"AGAIN"

    run(main, timeout=60)


def _fake_initial():
    """A datagram that looks like a QUIC v1 Initial from a new client (long header, version 1,
    fresh connection ids, padded to 1200 bytes) with a garbage payload: it opens a handshake."""
    head = b"\xc0" + (1).to_bytes(4, "big") + b"\x08" + os.urandom(8) + b"\x08" + os.urandom(8)
    head += b"\x00" + (0x4000 | 1150).to_bytes(2, "big")
    return head + os.urandom(1200 - len(head))


def test_a_flood_of_garbage_udp_datagrams_leaves_the_host_serving_and_bounded():
    """Hostile: random bytes, fake Initials (each one a new handshake) and short-header junk at
    the QUIC port. The connected peer and a new one are still served, and the listener's
    handshake bookkeeping stays bounded (py-libp2p's own map grows per fake Initial; gridnode
    sweeps it: gridnode.net.transports.sweep_quic_listeners)."""

    async def main():
        async with open_host(seed(0), QUIC) as a, open_host(seed(1), QUIC) as b:
            b.set_stream_handler(ECHO, echo_upper)
            await a.connect(b.addrs[0])
            port = int(b.addrs[0].split("/")[4])
            listener = next(iter(b._host.get_network().listeners.values()))
            with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
                for i in range(9000):
                    kind = i % 4
                    if kind == 0:
                        datagram = os.urandom(1 + i % 1400)
                    elif kind in (1, 2):
                        datagram = _fake_initial()
                    else:
                        datagram = b"\x40" + os.urandom(40)
                    with contextlib.suppress(OSError):  # a full socket buffer drops it
                        await sock.sendto(datagram, ("127.0.0.1", port))
                    if i % 20 == 0:
                        await trio.sleep(0)  # let the host read what it can
            await trio.sleep(0.5)
            handshakes = len(listener._pending_cid_by_quic_id)
            dropped = sweep_quic_listeners(b._host)
            # The registry keeps at most 256 handshakes (and 256 initial ids) at a time: what
            # the sweep leaves is bounded by those, however many fake Initials came.
            assert len(listener._pending_cid_by_quic_id) <= 512
            assert handshakes - dropped == len(listener._pending_cid_by_quic_id)
            assert len(listener._registry._pending) <= 256
            # Still serving: the connected peer, and a newcomer.
            assert await ask(a, b.peer_id, b"still there") == b"STILL THERE"
            async with open_host(seed(2), QUIC) as c:
                assert await c.connect(b.addrs[0]) == b.peer_id
                assert await ask(c, b.peer_id, b"new") == b"NEW"

    run(main, timeout=120)


def test_a_connections_datagrams_leave_in_the_order_they_were_numbered():
    """Two tasks transmitting on one QUIC connection at once (the writer and the receive loop)
    must not interleave their batches: the receiver would see later packets first, and the
    sender would take the earlier ones for lost (gridnode.net.transports.keep_datagrams_in_order)."""
    from libp2p.transport.quic.connection import QUICConnection

    keep_datagrams_in_order()
    sent = []

    class Kernel:
        """The stdlib socket under trio's: takes each datagram at once."""

        def sendto(self, data, addr):
            sent.append(data)
            return len(data)

    class TrioSocket:
        _sock = Kernel()

        async def sendto(self, data, addr):
            await trio.sleep(0)  # trio's sendto yields after each datagram
            return self._sock.sendto(data, addr)

    class Quic:
        def __init__(self):
            self.batches = [[(b"a1", None), (b"a2", None), (b"a3", None)]]
            self.batches.append([(b"b1", None), (b"b2", None), (b"b3", None)])

        def datagrams_to_send(self, now):
            return self.batches.pop(0) if self.batches else []

    class Connection:
        _transmit = QUICConnection._transmit

        def __init__(self):
            self._socket = TrioSocket()
            self._quic = Quic()
            self._stats = {"packets_sent": 0, "bytes_sent": 0}

        def _refresh_send_backpressure(self):
            pass

    async def main():
        connection = Connection()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection._transmit)
            nursery.start_soon(connection._transmit)
        assert sent == [b"a1", b"a2", b"a3", b"b1", b"b2", b"b3"]
        assert connection._stats["packets_sent"] == 6

    run(main)


def test_a_peer_refused_for_max_connections_learns_it_over_quic():
    """A listener at ``max_connections`` closes a new QUIC connection as it registers it; the
    dialler must be told (CONNECTION_CLOSE), not left with a connection nobody serves."""

    async def main():
        async with (
            open_host(seed(0), QUIC, max_connections=1) as a,
            open_host(seed(1), QUIC) as b,
            open_host(seed(2), QUIC) as c,
        ):
            await b.connect(a.addrs[0])
            with contextlib.suppress(DialError):
                await c.connect(a.addrs[0])
            assert a.peers() == [b.peer_id]
            with trio.fail_after(10):
                while a.peer_id in c.peers():
                    await trio.sleep(0.05)

    run(main, timeout=60)


def test_a_reader_slower_than_the_network_gets_every_byte_and_holds_at_most_a_window():
    """py-libp2p's QUIC stream dropped what arrived past its 2 MiB buffer (aioquic credits the
    sender as data arrives, read or not): a reader that paused got a corrupted stream. Now the
    sender waits for credit (gridnode.net.transports.credit_streams_as_read)."""
    payload = bytes(i % 251 for i in range(4_000_000))

    async def main():
        buffered = []
        received = []
        sent = trio.Event()

        async def paused_sink(stream):
            # Not reading while the sender pushes: before, it could push everything.
            with trio.move_on_after(3):
                await sent.wait()
            buffered.append(len(stream._stream.muxed_stream._receive_buffer))
            data = b""
            while chunk := await stream.read(65536):
                data += chunk
            received.append(data)
            await stream.write(b"done")

        async with open_host(seed(0), QUIC) as a, open_host(seed(1), QUIC) as b:
            b.set_stream_handler(ECHO, paused_sink)
            await a.connect(b.addrs[0])
            stream = await a.open_stream(b.peer_id, ECHO)
            await stream.write(payload)
            sent.set()
            await stream.close_write()
            assert await stream.read(10) == b"done"
        assert received == [payload]
        assert buffered[0] <= QUIC_STREAM_WINDOW

    run(main, timeout=90)


def test_the_read_counts_of_finished_quic_streams_are_forgotten():
    """The bytes read per stream (for its credit) are kept for live streams only: a connection
    that opens a stream per request does not grow them for ever."""

    async def main():
        async with open_host(seed(0), QUIC) as a, open_host(seed(1), QUIC) as b:
            b.set_stream_handler(ECHO, echo_upper)
            await a.connect(b.addrs[0])
            for i in range(300):
                assert await ask(a, b.peer_id, b"x%d" % i) == b"X%d" % i
            for host in (a, b):
                for connections in host._host.get_network().connections.values():
                    quic = connections[0].muxed_conn._quic
                    assert len(quic._gridnode_read) <= 2 * len(quic._streams) + 65

    run(main, timeout=90)
