"""Circuit relay v2: a hop service with gridnode-sized limits, and the client that reserves slots.

Wire format: libp2p's circuit relay v2 (``/libp2p/circuit/relay/0.2.0/hop`` and ``.../stop``,
uvarint-length-prefixed protobufs; py-libp2p's generated ``circuit_pb2`` messages). Written in
gridnode rather than using py-libp2p 0.8.1's ``CircuitV2Protocol``/``CircuitV2Transport``
(docs/decisions.md, "Issue 22, relays"): its hop service takes the reserving peer from the
request (anyone can reserve slots in another peer's name), checks the circuit duration only
when data arrives (an idle circuit lives forever), and tracks one circuit per peer.

The service (:class:`RelayService`, the ``server`` profile):

- a reservation is held by the *connection's* peer, for ``reservation_seconds``; at most
  ``max_reservations`` peers hold one (a refresh by a holder always succeeds);
- a circuit is opened only to a peer holding a reservation and connected now; at most
  ``max_circuits_per_peer`` circuits from one source and to one destination, and
  ``max_circuits`` in all;
- each circuit is cut (both halves reset) after ``circuit_seconds`` or ``circuit_bytes`` bytes
  (both directions together), whichever comes first;
- hop requests over a relayed connection are refused (no relay chains); a malformed message,
  one over :data:`MAX_MESSAGE` bytes, or one that does not come within :data:`READ_TIMEOUT`
  ends the stream.

The client (:class:`RelayClient`, the ``home`` profile) keeps reservations on up to
``max_relays`` connected peers that serve the hop protocol (asked once per peer: bootstrap
peers, catalog seed peers, anyone), announces ``<relay address>/p2p-circuit/p2p/<self>`` for
each (:meth:`RelayClient.circuit_addrs`), accepts circuits only from relays it holds a
reservation on, and dials ``/p2p-circuit`` addresses (:meth:`RelayClient.dial`). A relayed
connection is a connection like any other: Noise and yamux over the circuit, in the swarm, used
for sync.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import multiaddr
import trio
from libp2p.connection_types import ConnectionType
from libp2p.custom_types import TProtocol
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.circuit_pb2 import (
    HopMessage,
    Limit,
    Reservation,
    Status,
    StopMessage,
)
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as PbPeerId

from gridnode.errors import DialError, RelayRefused

__all__ = [
    "HOP",
    "STOP",
    "RelayClient",
    "RelayLimits",
    "RelayService",
    "RelayStats",
    "advertise_relayed",
    "is_circuit",
]

log = logging.getLogger(__name__)

HOP: Final = TProtocol("/libp2p/circuit/relay/0.2.0/hop")
STOP: Final = TProtocol("/libp2p/circuit/relay/0.2.0/stop")

#: Largest hop/stop message read (a reservation carries a few addresses: well under 1 KiB).
MAX_MESSAGE: Final = 4096
#: Seconds a peer has to send its request (or answer a STOP) before the stream is dropped.
READ_TIMEOUT: Final = 10.0
#: Addresses of a relay's reservation answer a client keeps (each becomes an announced one).
MAX_RELAY_ADDRS: Final = 3
#: Bytes read from one half of a circuit at a time.
_CHUNK: Final = 64 * 1024


@dataclass(frozen=True)
class RelayLimits:
    """The hop service's bounds (config keys ``relay_*``; docs/config.md)."""

    max_reservations: int = 128
    max_circuits_per_peer: int = 4
    max_circuits: int = 256
    circuit_seconds: float = 600.0
    circuit_bytes: int = 64 * 1024 * 1024
    reservation_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if min(self.max_reservations, self.max_circuits_per_peer, self.max_circuits) < 1:
            raise ValueError("relay reservations and circuits must be at least 1")
        if self.circuit_seconds <= 0 or self.circuit_bytes <= 0 or self.reservation_seconds <= 0:
            raise ValueError("relay circuit seconds, bytes and reservation seconds must be > 0")


@dataclass
class RelayStats:
    """Counters for status and /metrics (``gridnode_relay_*``)."""

    reservations_accepted: int = 0
    reservations_refused: int = 0
    circuits_opened: int = 0
    circuits_refused: int = 0
    circuits_cut: int = 0
    bytes_relayed: int = 0
    reservations_held: int = 0
    relayed_dials: int = 0
    relayed_dials_failed: int = 0
    relayed_inbound: int = 0
    duplicates_closed: int = 0


def is_circuit(address: str) -> bool:
    """Whether ``address`` goes through a relay (``.../p2p-circuit/p2p/<id>``)."""
    return "/p2p-circuit" in address


def _status_name(code: int) -> str:
    try:
        return str(Status.Name(code))  # type: ignore[arg-type]
    except ValueError:
        return str(code)


# -- framing ---------------------------------------------------------------------------------------


async def _read_exactly(stream: Any, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        try:
            chunk = await stream.read(n - len(data))
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise EOFError("stream ended")
        data += chunk
    return bytes(data)


async def read_message(stream: Any, message: Any) -> Any:
    """One uvarint-length-prefixed protobuf ``message`` (a class), within :data:`READ_TIMEOUT`;
    raises ``ValueError``/``EOFError``/``trio.TooSlowError`` on a bad, short or slow one."""
    with trio.fail_after(READ_TIMEOUT):
        length = 0
        for shift in range(0, 35, 7):
            byte = (await _read_exactly(stream, 1))[0]
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
        else:
            raise ValueError("length prefix too long")
        if length > MAX_MESSAGE:
            raise ValueError(f"message of {length} bytes (at most {MAX_MESSAGE})")
        body = await _read_exactly(stream, length)
    parsed = message()
    try:
        parsed.ParseFromString(body)
    except Exception as exc:  # protobuf's DecodeError
        raise ValueError(f"malformed message: {exc}") from exc
    return parsed


async def write_message(stream: Any, message: Any) -> None:
    body = message.SerializeToString()
    length = len(body)
    prefix = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            prefix.append(byte | 0x80)
        else:
            prefix.append(byte)
            break
    with trio.fail_after(READ_TIMEOUT):
        await stream.write(bytes(prefix) + body)


def _relayed(stream: Any) -> bool:
    try:
        muxed = stream.muxed_conn
        if muxed.get_connection_type() == ConnectionType.RELAYED:
            return True
        return any(is_circuit(str(a)) for a in muxed.get_transport_addresses())
    except Exception:
        return False


async def _quiet_reset(stream: Any) -> None:
    try:
        await stream.reset()
    except Exception as exc:
        log.debug("resetting a relay stream: %r", exc)


# -- the hop service -------------------------------------------------------------------------------


class RelayService:
    """Serves ``/libp2p/circuit/relay/0.2.0/hop`` on ``libp2p_host`` within ``limits``."""

    def __init__(
        self,
        libp2p_host: Any,
        limits: RelayLimits,
        announced: Any,
        refused: Any = lambda _peer: False,
        clock: Any = time.monotonic,
    ) -> None:
        self._host = libp2p_host
        self.limits = limits
        self._announced = announced  # () -> list[str], this relay's addresses
        self._refused = refused
        self._clock = clock
        #: peer id -> monotonic expiry of its reservation
        self.reservations: dict[str, float] = {}
        self._from: Counter[str] = Counter()
        self._to: Counter[str] = Counter()
        self.stats = RelayStats()

    def start(self) -> None:
        self._host.set_stream_handler(HOP, self._serve)

    def as_dict(self) -> dict[str, Any]:
        """For status and /metrics."""
        self._expire()
        s = self.stats
        return {
            "reservations": len(self.reservations),
            "circuits": self.circuits,
            "reservations_accepted": s.reservations_accepted,
            "reservations_refused": s.reservations_refused,
            "circuits_opened": s.circuits_opened,
            "circuits_refused": s.circuits_refused,
            "circuits_cut": s.circuits_cut,
            "bytes_relayed": s.bytes_relayed,
        }

    @property
    def circuits(self) -> int:
        return sum(self._from.values())

    def _live(self, peer: str) -> bool:
        expiry = self.reservations.get(peer)
        return expiry is not None and expiry > self._clock()

    def _expire(self) -> None:
        now = self._clock()
        for peer in [p for p, e in self.reservations.items() if e <= now]:
            del self.reservations[peer]

    async def _serve(self, stream: Any) -> None:
        peer = str(stream.muxed_conn.peer_id)
        try:
            if self._refused(peer):
                await _quiet_reset(stream)
                return
            if _relayed(stream):
                await self._status(stream, Status.PERMISSION_DENIED)
                return
            try:
                request = await read_message(stream, HopMessage)
            except (ValueError, EOFError, trio.TooSlowError) as exc:
                log.debug("hop request from %s: %s", peer, exc)
                await self._status(stream, Status.MALFORMED_MESSAGE)
                return
            if request.type == HopMessage.RESERVE:
                await self._reserve(stream, peer)
            elif request.type == HopMessage.CONNECT:
                await self._connect(stream, peer, request)
            else:
                await self._status(stream, Status.UNEXPECTED_MESSAGE)
        except Exception as exc:  # a peer that went away mid-request
            log.debug("hop stream from %s: %r", peer, exc)
            await _quiet_reset(stream)

    async def _status(self, stream: Any, code: Any, **fields: Any) -> None:
        await write_message(stream, HopMessage(type=HopMessage.STATUS, status=code, **fields))
        await stream.close()

    def _limit(self) -> Limit:
        return Limit(duration=int(self.limits.circuit_seconds), data=self.limits.circuit_bytes)

    async def _reserve(self, stream: Any, peer: str) -> None:
        self._expire()
        if peer not in self.reservations and len(self.reservations) >= self.limits.max_reservations:
            self.stats.reservations_refused += 1
            await self._status(stream, Status.RESERVATION_REFUSED)
            return
        self.reservations[peer] = self._clock() + self.limits.reservation_seconds
        self.stats.reservations_accepted += 1
        addrs = [multiaddr.Multiaddr(a).to_bytes() for a in self._announced() if not is_circuit(a)]
        reservation = Reservation(
            expire=int(time.time() + self.limits.reservation_seconds), addrs=addrs
        )
        await self._status(stream, Status.OK, reservation=reservation, limit=self._limit())

    async def _connect(self, stream: Any, source: str, request: Any) -> None:
        try:
            target_id = ID(request.peer.id)
            target = str(target_id)
        except Exception:
            await self._status(stream, Status.MALFORMED_MESSAGE)
            return
        connected = target_id in self._host.get_network().connections
        if not self._live(target) or not connected:
            self.stats.circuits_refused += 1
            await self._status(stream, Status.NO_RESERVATION)
            return
        per_peer = self.limits.max_circuits_per_peer
        if (
            self._from[source] >= per_peer
            or self._to[target] >= per_peer
            or self.circuits >= self.limits.max_circuits
        ):
            self.stats.circuits_refused += 1
            await self._status(stream, Status.RESOURCE_LIMIT_EXCEEDED)
            return
        self._from[source] += 1
        self._to[target] += 1
        try:
            await self._open_circuit(stream, source, target_id)
        finally:
            self._from[source] -= 1
            self._to[target] -= 1
            self._from += Counter()  # drops the zeros
            self._to += Counter()

    async def _open_circuit(self, stream: Any, source: str, target_id: Any) -> None:
        try:
            with trio.fail_after(READ_TIMEOUT):
                other = await self._host.new_stream(target_id, [STOP])
            await write_message(
                other,
                StopMessage(
                    type=StopMessage.CONNECT,
                    peer=PbPeerId(id=ID.from_base58(source).to_bytes()),
                    limit=self._limit(),
                ),
            )
            answer = await read_message(other, StopMessage)
        except Exception as exc:
            log.debug("relay: no circuit to %s: %r", target_id, exc)
            self.stats.circuits_refused += 1
            await self._status(stream, Status.CONNECTION_FAILED)
            return
        if answer.type != StopMessage.STATUS or answer.status != Status.OK:
            self.stats.circuits_refused += 1
            await _quiet_reset(other)
            await self._status(stream, Status.CONNECTION_FAILED)
            return
        await write_message(
            stream, HopMessage(type=HopMessage.STATUS, status=Status.OK, limit=self._limit())
        )
        self.stats.circuits_opened += 1
        await self._splice(stream, other)

    async def _splice(self, a: Any, b: Any) -> None:
        """Copy both ways until both halves end, or cut the circuit at a limit."""
        budget = [self.limits.circuit_bytes]
        cut = False

        async def copy(src: Any, dst: Any, scope: trio.CancelScope) -> None:
            nonlocal cut
            try:
                while True:
                    try:
                        data = await src.read(_CHUNK)
                    except StreamEOF:
                        if getattr(src.muxed_stream, "reset_received", False):
                            raise
                        data = b""
                    if not data:
                        await dst.close_write()  # half-close: the other direction goes on
                        return
                    budget[0] -= len(data)
                    if budget[0] < 0:
                        cut = True
                        scope.cancel()
                        return
                    self.stats.bytes_relayed += len(data)
                    await dst.write(data)
            except Exception as exc:  # a half reset: the circuit is over
                log.debug("relay copy: %r", exc)
                scope.cancel()

        with trio.move_on_after(self.limits.circuit_seconds) as timer:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(copy, a, b, nursery.cancel_scope)
                nursery.start_soon(copy, b, a, nursery.cancel_scope)
        if cut or timer.cancelled_caught:
            self.stats.circuits_cut += 1
            log.debug("relay: circuit cut (%s)", "bytes" if cut else "duration")
        with trio.CancelScope(shield=True):
            await _quiet_reset(a)
            await _quiet_reset(b)


# -- the client ------------------------------------------------------------------------------------


@dataclass
class _Held:
    expiry: float  # monotonic
    addrs: list[str] = field(default_factory=list)  # the relay's addresses, with /p2p/<relay>


class RelayClient:
    """Reservations on relays, ``/p2p-circuit`` addresses, and relayed connections both ways."""

    def __init__(
        self,
        libp2p_host: Any,
        connect: Any,
        *,
        max_relays: int = 2,
        interval: float = 10.0,
        dial_timeout: float = 10.0,
        clock: Any = time.monotonic,
        on_change: Any = lambda: None,
        on_inbound: Any = lambda _peer: None,
    ) -> None:
        self._on_inbound = on_inbound  # (peer id) -> None: a relayed connection arrived
        self._host = libp2p_host
        self._on_change = on_change  # () -> None: the circuit addresses changed
        self._connect = connect  # async (address) -> peer id: Host.connect
        self.max_relays = max_relays
        self.interval = interval
        self._dial_timeout = dial_timeout
        self._clock = clock
        self.peer_id = str(libp2p_host.get_id())
        self.held: dict[str, _Held] = {}
        self._not_relays: set[str] = set()
        self.stats = RelayStats()
        self._poked = trio.Event()
        self._announced: frozenset[str] = frozenset()
        self._nursery: trio.Nursery | None = None
        self._deduping: set[Any] = set()

    def start(self) -> None:
        self._host.set_stream_handler(STOP, self._serve_stop)
        client = self

        class _LostRelay:  # a relay we hold a reservation on went away: look again at once
            async def connected(self, _network: Any, _conn: Any) -> None:
                pass

            async def disconnected(self, _network: Any, conn: Any) -> None:
                if str(conn.muxed_conn.peer_id) in client.held:
                    client.poke()

            async def opened_stream(self, _network: Any, _stream: Any) -> None:
                pass

            async def closed_stream(self, _network: Any, _stream: Any) -> None:
                pass

            async def listen(self, _network: Any, _multiaddr: Any) -> None:
                pass

            async def listen_close(self, _network: Any, _multiaddr: Any) -> None:
                pass

        self._host.get_network().register_notifee(_LostRelay())

    def as_dict(self) -> dict[str, Any]:
        """For status and /metrics."""
        s = self.stats
        return {
            "relays": sorted(self._live()),
            "relayed_dials": s.relayed_dials,
            "relayed_dials_failed": s.relayed_dials_failed,
            "relayed_inbound": s.relayed_inbound,
            "duplicates_closed": s.duplicates_closed,
        }

    def _connected(self) -> set[str]:
        return {str(p) for p in self._host.get_network().connections}

    def _live(self) -> dict[str, _Held]:
        now, connected = self._clock(), self._connected()
        return {r: h for r, h in self.held.items() if h.expiry > now and r in connected}

    def circuit_addrs(self) -> list[str]:
        """``<relay address>/p2p-circuit/p2p/<self>`` for each live reservation."""
        return [
            f"{addr}/p2p-circuit/p2p/{self.peer_id}"
            for held in self._live().values()
            for addr in held.addrs
        ]

    def poke(self) -> None:
        """Look for relays now (a new connection), not at the next interval."""
        self._poked.set()

    async def run(self) -> None:
        """Keep reservations on up to ``max_relays`` connected relays, forever."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                self._poked = trio.Event()
                await self.refresh()
                with trio.move_on_after(self.interval):
                    await self._poked.wait()

    def _dedupe_soon(self, peer: Any) -> None:
        if self._nursery is not None and peer not in self._deduping:
            self._deduping.add(peer)
            self._nursery.start_soon(self._dedupe, peer)

    async def _dedupe(self, peer: Any, settle: float = 1.0) -> None:
        """Two nodes that dial each other's circuit at once end up with two relayed
        connections (two circuits held on the relay, for ever: the swarm trims extra
        connections only as they are added, and spares new ones). Once both exist, each side
        closes all but the same one: dialled by the smaller peer id, through the smallest relay
        id."""
        try:
            await trio.sleep(settle)
        finally:
            self._deduping.discard(peer)
        conns = [
            c
            for c in list(self._host.get_network().connections.get(peer, []))
            if c.muxed_conn.get_connection_type() == ConnectionType.RELAYED
            and not c.muxed_conn.is_closed
        ]
        if len(conns) < 2:
            return
        smaller_dials = self.peer_id < str(peer)

        def rank(conn: Any) -> tuple[bool, str]:
            try:
                ours = bool(conn.muxed_conn.secured_conn.is_initiator)
            except AttributeError:
                ours = False
            try:
                address = str(conn.muxed_conn.get_transport_addresses()[0])
                relay = address.partition("/p2p-circuit")[0].rsplit("/p2p/", 1)[1]
            except (IndexError, AttributeError):
                relay = "~"
            return (ours != smaller_dials, relay)

        conns.sort(key=rank)
        for extra in conns[1:]:
            self.stats.duplicates_closed += 1
            try:
                await extra.close()
            except Exception as exc:
                log.debug("closing a duplicate relayed connection: %r", exc)

    async def refresh(self) -> None:
        """Renew reservations nearing their end and take new ones on connected relays."""
        connected = self._connected()
        for relay in [r for r in self.held if r not in connected]:
            del self.held[relay]
        now = self._clock()
        for relay, held in list(self.held.items()):
            if held.expiry - now < 4 * self.interval:
                await self._try_reserve(relay)
        for relay in sorted(connected - set(self.held) - self._not_relays):
            if len(self.held) >= self.max_relays:
                break
            await self._try_reserve(relay)
        self.stats.reservations_held = len(self._live())
        # Compared with what was last announced, not with the start of this refresh: a relay
        # lost between two refreshes changes the addresses too.
        announced = frozenset(self.circuit_addrs())
        if announced != self._announced:
            self._announced = announced
            self._on_change()

    async def _try_reserve(self, relay: str) -> None:
        try:
            with trio.fail_after(self._dial_timeout):
                await self.reserve(relay)
        except RelayRefused as exc:
            log.info("relay %s refused a reservation: %s", relay, exc)
            self.held.pop(relay, None)
            self._not_relays.add(relay)
        except Exception as exc:
            log.debug("no reservation on %s: %r", relay, exc)
            self.held.pop(relay, None)
            if "not supported" in repr(exc) or "protocol" in repr(exc).lower():
                self._not_relays.add(relay)

    async def reserve(self, relay: str) -> None:
        """Ask connected ``relay`` for a reservation; raises :class:`RelayRefused` if it says
        no, another exception if it does not serve the hop protocol or breaks."""
        stream = await self._host.new_stream(ID.from_base58(relay), [HOP])
        try:
            await write_message(stream, HopMessage(type=HopMessage.RESERVE))
            answer = await read_message(stream, HopMessage)
        finally:
            await _quiet_reset(stream)
        if answer.type != HopMessage.STATUS or answer.status != Status.OK:
            raise RelayRefused(f"relay {relay}: {_status_name(answer.status)}")
        addrs: list[str] = []
        for raw in list(answer.reservation.addrs)[:MAX_RELAY_ADDRS]:
            try:
                addr = str(multiaddr.Multiaddr(raw))
            except Exception:
                continue
            if not addr.endswith(f"/p2p/{relay}"):
                addr = f"{addr}/p2p/{relay}"
            addrs.append(addr)
        if not addrs:
            # A relay that announces no address (a server profile seeing only private ones):
            # where we reached it will do.
            addrs = self._reached_at(relay)
        seconds = max(0, answer.reservation.expire - int(time.time()))
        self.held[relay] = _Held(self._clock() + min(seconds, 24 * 3600), addrs)

    def _reached_at(self, relay: str) -> list[str]:
        for conn in list(self._host.get_network().connections.get(ID.from_base58(relay), [])):
            try:
                if conn.muxed_conn.get_connection_type() == ConnectionType.RELAYED:
                    continue
                ip, port = conn.muxed_conn.get_remote_address()
            except Exception:
                continue
            family = "ip6" if ":" in ip else "ip4"
            return [f"/{family}/{ip}/tcp/{port}/p2p/{relay}"]
        return []

    async def _serve_stop(self, stream: Any) -> None:
        relay = str(stream.muxed_conn.peer_id)
        try:
            request = await read_message(stream, StopMessage)
            if relay not in self._live():
                await self._stop_status(stream, Status.PERMISSION_DENIED)
                return
            if request.type != StopMessage.CONNECT:
                await self._stop_status(stream, Status.UNEXPECTED_MESSAGE)
                return
            try:
                source = ID(request.peer.id)
                str(source)
            except Exception:
                await self._stop_status(stream, Status.MALFORMED_MESSAGE)
                return
            if source in self._host.get_network().connections:
                await self._stop_status(stream, Status.CONNECTION_FAILED)
                return
            await write_message(stream, StopMessage(type=StopMessage.STATUS, status=Status.OK))
            address = multiaddr.Multiaddr(f"/p2p/{relay}/p2p-circuit/p2p/{source}")
            raw = RawConnection(stream, False, ConnectionType.RELAYED, [address])
            with trio.fail_after(self._dial_timeout):
                await self._host.get_network().upgrade_inbound_raw_conn(raw, address)
            self.stats.relayed_inbound += 1
            self._dedupe_soon(source)
            self._on_inbound(str(source))
        except Exception as exc:
            log.debug("stop stream from %s: %r", relay, exc)
            await _quiet_reset(stream)

    async def _stop_status(self, stream: Any, code: Any) -> None:
        await write_message(stream, StopMessage(type=StopMessage.STATUS, status=code))
        await stream.close()

    async def dial(self, address: str) -> str:
        """Connect to the peer at ``.../p2p/<relay>/p2p-circuit/p2p/<peer>`` through its relay;
        return the peer id. Raises :class:`DialError`."""
        relay_part, _, rest = address.partition("/p2p-circuit")
        target = rest.removeprefix("/p2p/")
        try:
            target_id = ID.from_base58(target)
            relay_id = ID.from_base58(relay_part.rsplit("/p2p/", 1)[1])
        except Exception as exc:
            raise DialError(f"not a relayed peer address: {address!r}") from exc
        self.stats.relayed_dials += 1
        try:
            with trio.fail_after(self._dial_timeout):
                if relay_id not in self._host.get_network().connections:
                    await self._connect(relay_part)
                stream = await self._host.new_stream(relay_id, [HOP])
                await write_message(
                    stream,
                    HopMessage(type=HopMessage.CONNECT, peer=PbPeerId(id=target_id.to_bytes())),
                )
                answer = await read_message(stream, HopMessage)
                if answer.type != HopMessage.STATUS or answer.status != Status.OK:
                    await _quiet_reset(stream)
                    raise DialError(f"relay refused {address}: {_status_name(answer.status)}")
                raw = RawConnection(
                    stream, True, ConnectionType.RELAYED, [multiaddr.Multiaddr(address)]
                )
                await self._host.get_network().upgrade_outbound_raw_conn(raw, target_id)
            self._dedupe_soon(target_id)
        except DialError:
            self.stats.relayed_dials_failed += 1
            raise
        except trio.TooSlowError:
            self.stats.relayed_dials_failed += 1
            raise DialError(f"no relayed connection to {address} within the timeout") from None
        except Exception as exc:
            self.stats.relayed_dials_failed += 1
            raise DialError(f"cannot connect to {address} through its relay: {exc}") from exc
        return str(target_id)


def advertise_relayed(libp2p_host: Any, relayed: Callable[[], list[str]]) -> None:
    """Make the host's own address list (``get_addrs``) end with ``relayed()``: the
    ``/p2p-circuit`` addresses this node is reachable at through its relays.

    py-libp2p builds identify's listen addresses *and* the one signed peer record it caches and
    sends everywhere (identify, pubsub, the DHT) from ``get_addrs``, and reissues that record
    when the list changes. Its ``get_addrs`` cannot carry a relayed address itself (it cuts an
    address at its first ``/p2p/``, the relay's). Adding them here keeps one record, so a peer
    never sees two records of ours with different sequence numbers (py-libp2p's pubsub drops
    every RPC that carries a record older than one it holds)."""
    plain = libp2p_host.get_addrs

    def get_addrs() -> list[multiaddr.Multiaddr]:
        addrs = list(plain())
        seen = {str(addr) for addr in addrs}
        for address in relayed():
            if address not in seen:
                seen.add(address)
                addrs.append(multiaddr.Multiaddr(address))
        return addrs

    libp2p_host.get_addrs = get_addrs
