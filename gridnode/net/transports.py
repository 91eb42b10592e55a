"""Which transports a host runs (TCP, and QUIC when it listens on QUIC), and the dial order.

A host always runs TCP (Noise, yamux: see :mod:`gridnode.net.host`). It runs QUIC
(``/udp/N/quic-v1``, RFC 9000) too when one of its listen addresses is a QUIC one: the
``server`` and ``home`` profiles listen on both, on the same port number (docs/config.md).
A host without a QUIC listen address does not dial QUIC either (:func:`dial_order` leaves
QUIC addresses out), so a TCP-only node never spends a dial on an address it cannot use.

QUIC brings its own security and multiplexing: TLS 1.3 with the libp2p certificate extension
(the certificate carries the peer's ed25519 public key and a signature by it over the TLS key),
checked by py-libp2p's QUIC transport in both directions: a dial to ``.../p2p/<id>`` fails
unless the peer there holds ``<id>``'s key, and an inbound connection without a certificate is
refused. Streams are native QUIC streams (no yamux).

Where py-libp2p 0.8.1's QUIC transport is changed (docs/decisions.md, "Issue 22, QUIC"):

- a stream read that waits longer than ``STREAM_READ_TIMEOUT`` (30 s by default) *resets the
  stream*: gossipsub's long-lived streams and a sync session waiting on a slow peer would be
  cut. Reads wait as long as TCP's do (the node's own deadlines bound them).
- draft-29 (``/quic``) is off: obsolete, and gridnode listens on ``/quic-v1`` only.
- a read racing the peer's FIN can report the end of the stream (or a reset) with data still
  buffered, and a stream whose two halves are closed reads as "closed" (a reset) instead of
  end of stream: :class:`~gridnode.net.stream.Stream` then takes the buffered data, and reads
  a FIN without a reset as EOF (:func:`quic_rest`).
- a connection's datagrams left in the order aioquic numbered them only by luck: each task
  that transmits (the writer, the receive loop, the timer loop) takes a batch of datagrams
  from aioquic and awaits ``sendto`` for each, so two batches interleave on the wire. The
  receiver acknowledges a later packet first, and the sender's loss detection (three packets
  later, RFC 9002) declares the earlier ones lost though they arrive a moment after: on
  loopback ~150 "losses" per 4 MB, every one spurious, Reno's window held at its minimum (a
  few kB), which over a real path of tens of ms would cap a connection at ~100-200 kB/s.
  :func:`keep_datagrams_in_order` sends each batch without yielding between datagrams.
- a stream had no flow control towards the application: aioquic doubles a stream's receive
  window whenever half of it has *arrived*, read or not, and py-libp2p's stream, its buffer
  past 2 MiB, *drops* what arrives (a warning in the log, and the bytes are gone; a FIN in the
  dropped data is lost too and the reader waits for ever). A reader slower than the network
  (4 MB read at ~0.4 MB/s: 3,081,223 bytes arrived) got a corrupted stream.
  :func:`credit_streams_as_read` gives each stream a window of :data:`QUIC_STREAM_WINDOW`
  bytes beyond what the application has read, as yamux does over TCP: the sender waits, and
  a peer that sends past its credit breaks QUIC's flow control (aioquic closes the connection).
- the listener keeps at most 256 handshakes in progress (the oldest is dropped for a new one),
  but a second map of its own (handshake -> connection id) is emptied only for handshakes that
  time out, never for dropped ones: a flood of fake QUIC Initial packets (one datagram each,
  spoofable) grows it by one entry per datagram, for ever. :func:`quic_upkeep` sweeps it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import trio
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.packet import QuicFrameType
from libp2p.transport.quic.config import QUICTransportConfig
from libp2p.transport.quic.connection import QUICConnection
from libp2p.transport.quic.stream import QUICStream
from libp2p.transport.quic.transport import QUICTransport
from libp2p.transport.tcp.tcp import TCP

__all__ = [
    "build_transports",
    "credit_streams_as_read",
    "dial_order",
    "is_quic",
    "keep_datagrams_in_order",
    "quic_rest",
    "quic_upkeep",
    "sweep_quic_listeners",
]

#: The protocol name of QUIC v1 in a multiaddr (``/udp/N/quic-v1``).
QUIC_V1: Final = "quic-v1"

#: Bytes a QUIC stream may receive beyond what the application has read: the credit a peer gets,
#: renewed as the application reads (:func:`credit_streams_as_read`). Below py-libp2p's 2 MiB
#: per-stream buffer, so that an honest sender never fills it.
QUIC_STREAM_WINDOW: Final = 1024 * 1024

#: How often the QUIC listeners' handshake bookkeeping is swept (:func:`sweep_quic_listeners`).
QUIC_SWEEP_SECONDS: Final = 10.0


def is_quic(address: str | Any) -> bool:
    """Whether ``address`` (text or a ``Multiaddr``) is a QUIC v1 address."""
    return QUIC_V1 in str(address).split("/")


def quic_config() -> QUICTransportConfig:
    """py-libp2p's QUIC settings with gridnode's changes (see the module's docstring)."""
    return QUICTransportConfig(
        STREAM_READ_TIMEOUT=math.inf,
        enable_draft29=False,
        STREAM_FLOW_CONTROL_WINDOW=QUIC_STREAM_WINDOW,
    )


def build_transports(private_key: Any, listen: Iterable[Any]) -> list[Any]:
    """The transports for a host listening on ``listen``: TCP, then QUIC if any address is
    QUIC. ``private_key``: the host's libp2p key (QUIC's TLS certificate is signed by it)."""
    transports: list[Any] = [TCP()]
    if any(is_quic(address) for address in listen):
        keep_datagrams_in_order()
        credit_streams_as_read()
        transports.append(QUICTransport(private_key, config=quic_config()))
    return transports


def dial_order(addrs: Sequence[str], quic: bool) -> list[str]:
    """``addrs`` in the order to dial them: QUIC ones first if this host speaks QUIC (one
    round trip to a secure, multiplexed connection instead of TCP's three), left out if it does
    not. Otherwise the given order is kept."""
    quic_addrs = [a for a in addrs if is_quic(a)]
    others = [a for a in addrs if not is_quic(a)]
    return quic_addrs + others if quic else others


def quic_rest(libp2p_stream: Any, max_bytes: int) -> bytes | None:
    """What a read of a QUIC stream that raised end-of-stream or "closed" should have returned:
    up to ``max_bytes`` bytes still buffered, or ``b""`` at a clean end (the peer's FIN, no
    reset). ``None``: not a QUIC stream, or it was reset (the error stands).

    py-libp2p 0.8.1's ``QUICStream.read`` looks at its buffer, then awaits a lock, then at the
    stream's state: data arriving with the peer's FIN in between is left in the buffer behind an
    end of stream (or, once both halves are closed, a "closed" error, which py-libp2p turns into
    a reset). Seen on loopback as the last kilobyte or so of a 60 kB reply missing in about one
    stream in ten. The data and the FIN arrive in one call, so when the error is raised every
    byte before the FIN is in the buffer."""
    muxed: Any = getattr(libp2p_stream, "muxed_stream", None)
    if type(muxed).__name__ != "QUICStream" or muxed.is_reset():
        return None
    if muxed._receive_buffer:
        # Synchronous: no other task touches the buffer until this returns.
        data: bytes = muxed._extract_data_from_buffer(max_bytes)
        return data
    return b"" if muxed._read_closed else None


def sweep_quic_listeners(libp2p_host: Any) -> int:
    """Forget the QUIC listeners' handshakes that their registry has already dropped (see the
    module's docstring); returns how many entries went. Synchronous: no packet is handled
    while it runs."""
    dropped = 0
    for listener in list(libp2p_host.get_network().listeners.values()):
        by_quic_id = getattr(listener, "_pending_cid_by_quic_id", None)
        registry = getattr(listener, "_registry", None)
        if by_quic_id is None or registry is None:
            continue  # not a QUIC listener
        live = set(registry._pending) | set(registry._initial_connection_ids)
        for quic_id, cid in list(by_quic_id.items()):
            if cid not in live and quic_id not in listener._conn_by_quic_id:
                del by_quic_id[quic_id]
                dropped += 1
    return dropped


@asynccontextmanager
async def quic_upkeep(
    libp2p_host: Any, interval: float = QUIC_SWEEP_SECONDS
) -> AsyncIterator[None]:
    """Sweep the host's QUIC listeners every ``interval`` seconds for the block's duration."""

    async def sweep() -> None:
        while True:
            await trio.sleep(interval)
            sweep_quic_listeners(libp2p_host)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sweep)
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()


_transmit_unordered: Any = None


class _SendWithoutYielding:
    """A connection's trio UDP socket whose ``sendto`` does not yield when the kernel takes the
    datagram at once (trio's yields after every send, which lets another task's batch in)."""

    def __init__(self, trio_socket: Any) -> None:
        self._trio_socket = trio_socket

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trio_socket, name)

    async def sendto(self, data: bytes, address: Any) -> int:
        try:
            sent: int = self._trio_socket._sock.sendto(data, address)
        except BlockingIOError:  # the socket's buffer is full: wait for it as trio does
            sent = await self._trio_socket.sendto(data, address)
        return sent


def keep_datagrams_in_order() -> None:
    """Make each QUIC connection send a batch of datagrams without yielding between them (see
    the module's docstring), so that another task's batch cannot slip in: py-libp2p's
    ``QUICConnection._transmit`` gets a socket whose ``sendto`` returns without a checkpoint
    when the kernel takes the datagram. Patches once per process. (A lock around ``_transmit``
    did the same but held up closing: the CONNECTION_CLOSE, sent with a 0.1 s limit, waited
    behind other tasks' turns and a refused peer was never told.)"""
    global _transmit_unordered
    if _transmit_unordered is not None:
        return
    _transmit_unordered = QUICConnection._transmit

    async def transmit_in_order(self: Any) -> None:
        sock = self._socket
        if sock is not None and not isinstance(sock, _SendWithoutYielding):
            self._socket = _SendWithoutYielding(sock)
        await _transmit_unordered(self)

    QUICConnection._transmit = transmit_in_order  # type: ignore[method-assign]


_write_stream_limits_doubling: Any = None


def credit_streams_as_read() -> None:
    """Give each QUIC stream's peer :data:`QUIC_STREAM_WINDOW` bytes of credit beyond what the
    application has read, renewed as it reads (see the module's docstring). Replaces aioquic's
    ``QuicConnection._write_stream_limits`` (which doubles the window as data arrives) and
    counts the bytes py-libp2p's ``QUICStream`` hands to its reader; once per process."""
    global _write_stream_limits_doubling
    if _write_stream_limits_doubling is not None:
        return
    _write_stream_limits_doubling = QuicConnection._write_stream_limits
    take_from_buffer = QUICStream._extract_data_from_buffer

    def extract_and_count(self: Any, n: int) -> bytes:
        data: bytes = take_from_buffer(self, n)
        quic = self._connection._quic
        read: dict[int, int] = quic.__dict__.setdefault("_gridnode_read", {})
        total = read[self._stream_id] = read.get(self._stream_id, 0) + len(data)
        if len(read) > 2 * len(quic._streams) + 64:
            # Streams aioquic has finished with need no credit: forget them (a long-lived
            # connection opens a stream per sync session).
            for stream_id in [i for i in read if i not in quic._streams]:
                del read[stream_id]
        stream = quic._streams.get(self._stream_id)
        if stream is not None and _credit_due(stream.max_stream_data_local, total):
            self._connection._signal_activity()  # the connection's loop sends the new credit
        return data

    def write_stream_limits(self: Any, builder: Any, space: Any, stream: Any) -> None:
        if not stream.max_stream_data_local:
            return  # a stream we only send on: nothing to credit
        read = self.__dict__.get("_gridnode_read", {}).get(stream.stream_id, 0)
        if _credit_due(stream.max_stream_data_local, read):
            stream.max_stream_data_local = read + QUIC_STREAM_WINDOW
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            # MAX_STREAM_DATA (RFC 9000, 19.10): stream id, maximum; resent if lost.
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    QUICStream._extract_data_from_buffer = extract_and_count  # type: ignore[method-assign]
    QuicConnection._write_stream_limits = write_stream_limits  # type: ignore[method-assign]


def _credit_due(limit: int, read: int) -> bool:
    """Whether to renew a stream's credit: less than half the window is left beyond ``read``
    (renewing in halves, not per read, keeps MAX_STREAM_DATA frames few)."""
    return limit - read < QUIC_STREAM_WINDOW // 2
