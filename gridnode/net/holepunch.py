"""Hole punching: DCUtR upgrades a relayed connection to a direct one where the NATs allow.

Wire format: libp2p's DCUtR (``/libp2p/dcutr``, uvarint-length-prefixed ``HolePunch``
protobufs, py-libp2p's generated ``dcutr_pb2``), as specified
(https://github.com/libp2p/specs/blob/master/relay/DCUtR.md), over the relayed connection:

1. B, the peer that *received* the relayed connection (the one behind the relay), opens the
   stream and sends ``CONNECT`` with the addresses it can be dialled at: its direct announced
   addresses and, for each IP its peers observed it at (identify), that IP with each of its TCP
   listen ports (a NAT that keeps ports maps the listen port there);
2. A answers ``CONNECT`` with its own; B measures the round trip;
3. B sends ``SYNC`` and, half a round trip later, dials A's addresses; A dials B's as soon as
   the ``SYNC`` arrives. Both dial *from their listen port* (SO_REUSEPORT, which py-libp2p's TCP
   listener sets), so that each SYN leaves through the NAT mapping the other side dials: with
   endpoint-independent NATs the SYNs cross and TCP's simultaneous open joins them. On that
   joined connection A is the Noise initiator and B the responder (the spec's roles: B upgrades
   its dials as the responder, py-libp2p's ``dial_addr_as_responder``).
4. Once a direct connection to the peer exists, the relayed one is closed: the node's streams
   (sync, gossip) go direct from then on.

Up to ``attempts`` rounds (3, as the spec suggests), each bounded by ``dial_timeout``; a round that
gives no direct connection leaves the relayed one as it was. Each side reads at most
:data:`MAX_ADDRS` addresses of at most :data:`~gridnode.net.relay.MAX_MESSAGE` bytes in all; a
DCUtR stream over a direct connection is refused (nothing to upgrade).

Why not py-libp2p 0.8.1's own ``DCUtRProtocol``: docs/decisions.md, "Issue 22, hole punching".
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import multiaddr
import trio
from libp2p.connection_types import ConnectionType
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.dcutr_pb2 import HolePunch

from gridnode.net.relay import is_circuit, read_message, write_message

__all__ = ["DCUTR", "HolePunchStats", "HolePuncher", "candidate_addrs", "direct_conns"]

log = logging.getLogger(__name__)

DCUTR: Final = TProtocol("/libp2p/dcutr")

#: Addresses read from a peer's CONNECT (more are ignored) and sent in ours.
MAX_ADDRS: Final = 8
#: Rounds a peer may make us run as A (each dials up to MAX_ADDRS addresses it names) per
#: minute, one at a time; and rounds running at once for all peers.
ROUNDS_PER_PEER_PER_MINUTE: Final = 3
MAX_ROUNDS_RUNNING: Final = 16


@dataclass
class HolePunchStats:
    """For status and /metrics (``gridnode_holepunch_*``)."""

    #: rounds run (CONNECT, CONNECT, SYNC, dials), as either side
    attempts: int = 0
    #: rounds after which a direct connection to the peer existed
    successes: int = 0
    #: relayed connections given up on after every round failed
    failures: int = 0
    #: successes by the transport of the direct connection (``tcp``, ``quic``)
    transports: Counter[str] = field(default_factory=Counter)
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "successes": self.successes,
            "failures": self.failures,
            "transports": dict(self.transports),
            "last_error": self.last_error,
        }


def _conns(host: Any, peer: Any) -> list[Any]:
    return list(host.get_network().connections.get(peer, []))


def _relayed_conn(conn: Any) -> bool:
    """Whether a swarm connection runs over a circuit (its raw connection says so; the swarm
    connection's own ``get_transport_addresses`` falls back to the peerstore's addresses)."""
    return _relayed_muxed(conn.muxed_conn)


def _relayed_muxed(muxed: Any) -> bool:
    try:
        if muxed.get_connection_type() == ConnectionType.RELAYED:
            return True
        return any(is_circuit(str(a)) for a in muxed.get_transport_addresses())
    except Exception:
        return False


def direct_conns(host: Any, peer: Any) -> list[Any]:
    """``peer``'s connections that do not go through a relay."""
    return [c for c in _conns(host, peer) if not _relayed_conn(c) and not c.muxed_conn.is_closed]


def _transport(conn: Any) -> str:
    try:
        addrs = " ".join(str(a) for a in conn.muxed_conn.get_transport_addresses())
    except Exception:
        addrs = ""
    return "quic" if "/quic" in addrs else "tcp"


def listen_ports(libp2p_host: Any) -> list[tuple[str, int]]:
    """The host's bound IPv4 TCP listen addresses, as (ip, port)."""
    ports = []
    for addr in libp2p_host.get_transport_addrs():
        parts = str(addr).split("/")
        if len(parts) >= 5 and parts[1] == "ip4" and parts[3] == "tcp" and len(parts) == 5:
            ports.append((parts[2], int(parts[4])))
    return ports


def observed_ips(libp2p_host: Any) -> list[str]:
    """IPv4 addresses peers saw us at over direct connections (identify's observed address, as
    py-libp2p's ``ObservedAddrManager`` records it: any number of observers)."""
    manager = getattr(libp2p_host, "_observed_addr_manager", None)
    found: list[str] = []
    for externals in dict(getattr(manager, "_external_addrs", {}) or {}).values():
        for external in externals:
            parts = str(external).split("/")
            if len(parts) >= 3 and parts[1] == "ip4" and parts[2] not in found:
                found.append(parts[2])
    return found[:MAX_ADDRS]


def candidate_addrs(libp2p_host: Any, announced: list[str]) -> list[str]:
    """Where we may be dialled (no ``/p2p/``), at most :data:`MAX_ADDRS`: each observed IP with
    each TCP listen port (a NAT that keeps ports maps the listen port there), then the direct
    ``announced`` addresses."""
    addrs = [
        f"/ip4/{ip}/tcp/{port}"
        for ip in observed_ips(libp2p_host)
        for _ip, port in listen_ports(libp2p_host)
    ]
    addrs += [a.split("/p2p/")[0] for a in announced if not is_circuit(a)]
    return list(dict.fromkeys(addrs))[:MAX_ADDRS]


def _parse_addrs(raw: Any) -> list[multiaddr.Multiaddr]:
    """A peer's addresses to dial: direct ones only, at most :data:`MAX_ADDRS`."""
    addrs = []
    for item in list(raw)[:MAX_ADDRS]:
        try:
            addr = multiaddr.Multiaddr(item)
            text = str(addr)  # multiaddr parses bytes lazily: a bad one fails here
        except Exception:
            continue
        if is_circuit(text) or not (text.startswith("/ip4/") or text.startswith("/ip6/")):
            continue
        if "/tcp/" not in text and "/quic" not in text:
            continue
        addrs.append(addr)
    return addrs


class HolePuncher:
    """Runs DCUtR on ``libp2p_host``'s relayed connections (see the module's doc)."""

    def __init__(
        self,
        libp2p_host: Any,
        announced: Any,
        *,
        attempts: int = 3,
        dial_timeout: float = 5.0,
        on_direct: Callable[[str], None] | None = None,
    ) -> None:
        self._host = libp2p_host
        self._announced = announced  # () -> list[str]: the host's announced addresses
        #: Told the peer once its relayed connection is closed and a direct one remains (the
        #: host moves its gossip streams there); it must not wait.
        self._on_direct = on_direct
        self.max_attempts = attempts
        self.dial_timeout = dial_timeout
        self.stats = HolePunchStats()
        self._send, self._receive = trio.open_memory_channel[str](64)
        self._running: set[str] = set()
        self._answering: set[str] = set()
        self._rounds: dict[str, list[float]] = {}
        #: rounds refused to peers over ROUNDS_PER_PEER_PER_MINUTE or MAX_ROUNDS_RUNNING
        self.refused = 0

    def start(self) -> None:
        self._host.set_stream_handler(DCUTR, self._serve)

    def relayed_inbound(self, peer: str) -> None:
        """A relayed connection from ``peer`` arrived: try to make it direct (we are B)."""
        if peer in self._running:
            return
        try:
            self._send.send_nowait(peer)
        except trio.WouldBlock:
            log.debug("hole punching: queue full, %s stays relayed", peer)

    async def run(self) -> None:
        """Punch for each relayed connection that arrives, one task each, forever."""
        async with trio.open_nursery() as nursery:
            async for peer in self._receive:
                if peer not in self._running:
                    self._running.add(peer)
                    nursery.start_soon(self._punch, peer)

    # -- addresses -------------------------------------------------------------------------------

    def candidates(self) -> list[str]:
        """The addresses we ask a peer to dial (without ``/p2p/``), at most :data:`MAX_ADDRS`."""
        return candidate_addrs(self._host, self._announced())

    def _source(self) -> tuple[str, int] | None:
        ports = listen_ports(self._host)
        return ports[0] if ports else None

    # -- the two sides ---------------------------------------------------------------------------

    async def _punch(self, peer: str) -> None:
        """As B: up to ``max_attempts`` rounds, until a direct connection exists."""
        try:
            peer_id = ID.from_base58(peer)
            for _ in range(self.max_attempts):
                if not _conns(self._host, peer_id):
                    return  # the relayed connection is gone: nothing to upgrade
                if direct_conns(self._host, peer_id):
                    await self._succeeded(peer_id)
                    return
                self.stats.attempts += 1
                try:
                    with trio.fail_after(self.dial_timeout * 2):
                        theirs = await self._exchange_as_initiator(peer_id)
                        await self._dial(peer_id, theirs, as_responder=True)
                except Exception as exc:
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
                    log.debug("hole punch with %s: %r", peer, exc)
                if direct_conns(self._host, peer_id):
                    await self._succeeded(peer_id)
                    return
            self.stats.failures += 1
            log.info("hole punching with %s failed: the connection stays relayed", peer)
        finally:
            self._running.discard(peer)

    async def _exchange_as_initiator(self, peer_id: Any) -> list[multiaddr.Multiaddr]:
        stream = await self._host.new_stream(peer_id, [DCUTR])
        try:
            mine = [multiaddr.Multiaddr(a).to_bytes() for a in self.candidates()]
            await write_message(stream, HolePunch(type=HolePunch.CONNECT, ObsAddrs=mine))
            started = trio.current_time()
            answer = await read_message(stream, HolePunch)
            rtt = trio.current_time() - started
            if answer.type != HolePunch.CONNECT:
                raise ValueError(f"expected CONNECT, got type {answer.type}")
            await write_message(stream, HolePunch(type=HolePunch.SYNC))
            await trio.sleep(min(rtt / 2, 2.0))
            return _parse_addrs(answer.ObsAddrs)
        finally:
            await _close(stream)

    async def _serve(self, stream: Any) -> None:
        """As A: answer B's CONNECT, and dial at its SYNC."""
        peer_id = stream.muxed_conn.peer_id
        peer = str(peer_id)
        try:
            if not _relayed_conn_of(stream):
                await stream.reset()  # DCUtR is for relayed connections only
                return
            if not self._admit(peer):
                self.refused += 1
                await stream.reset()
                return
        except Exception as exc:
            log.debug("dcutr stream from %s: %r", peer, exc)
            return
        try:
            await self._answer(stream, peer_id, peer)
        finally:
            self._answering.discard(peer)

    def _admit(self, peer: str) -> bool:
        """One round at a time per peer, at most ROUNDS_PER_PEER_PER_MINUTE a minute, at most
        MAX_ROUNDS_RUNNING in all: each round dials addresses the peer chose."""
        now = trio.current_time()
        for other in [p for p, times in self._rounds.items() if times[-1] < now - 60]:
            del self._rounds[other]  # bounded memory: only peers of the last minute
        recent = [t for t in self._rounds.get(peer, []) if t >= now - 60]
        if (
            peer in self._answering
            or len(self._answering) >= MAX_ROUNDS_RUNNING
            or len(recent) >= ROUNDS_PER_PEER_PER_MINUTE
        ):
            return False
        self._rounds[peer] = [*recent, now]
        self._answering.add(peer)
        return True

    async def _answer(self, stream: Any, peer_id: Any, peer: str) -> None:
        try:
            request = await read_message(stream, HolePunch)
            if request.type != HolePunch.CONNECT:
                await stream.reset()
                return
            theirs = _parse_addrs(request.ObsAddrs)
            mine = [multiaddr.Multiaddr(a).to_bytes() for a in self.candidates()]
            await write_message(stream, HolePunch(type=HolePunch.CONNECT, ObsAddrs=mine))
            sync = await read_message(stream, HolePunch)
            if sync.type != HolePunch.SYNC:
                await stream.reset()
                return
            await _close(stream)
        except Exception as exc:
            log.debug("dcutr stream from %s: %r", peer, exc)
            await _close(stream, reset=True)
            return
        self.stats.attempts += 1
        try:
            with trio.fail_after(self.dial_timeout * 2):
                await self._dial(peer_id, theirs, as_responder=False)
        except Exception as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
        if direct_conns(self._host, peer_id):
            await self._succeeded(peer_id)

    async def _dial(self, peer_id: Any, addrs: list[Any], *, as_responder: bool) -> None:
        """Dial every address at once from our listen port; return when one connects (or all
        failed, or ``dial_timeout`` passed)."""
        if not addrs:
            raise ValueError("no address to dial")
        network = self._host.get_network()
        source = self._source()
        errors: list[str] = []

        async def one(addr: Any) -> None:
            try:
                with trio.fail_after(self.dial_timeout):
                    if as_responder:
                        await network.dial_addr_as_responder(addr, peer_id, source)
                    else:
                        await network.dial_addr(addr, peer_id, source)
            except Exception as exc:
                errors.append(f"{addr}: {exc!r}"[:200])

        with trio.move_on_after(self.dial_timeout):
            async with trio.open_nursery() as nursery:
                for addr in addrs:
                    nursery.start_soon(one, addr)
                while len(errors) < len(addrs) and not direct_conns(self._host, peer_id):
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        if not direct_conns(self._host, peer_id) and errors:
            raise OSError("; ".join(errors[:3]))

    async def _succeeded(self, peer_id: Any) -> None:
        direct = direct_conns(self._host, peer_id)
        if not direct:
            return
        self.stats.successes += 1
        self.stats.transports[_transport(direct[0])] += 1
        log.info(
            "hole punched to %s (%s): closing the relayed connection",
            peer_id,
            _transport(direct[0]),
        )
        for conn in _conns(self._host, peer_id):
            if _relayed_conn(conn):
                try:
                    await conn.close()
                except Exception as exc:
                    log.debug("closing a relayed connection: %r", exc)
        with trio.move_on_after(self.dial_timeout):  # until the swarm has let go of it
            while any(_relayed_conn(c) for c in _conns(self._host, peer_id)):
                await trio.sleep(0.01)
        if self._on_direct is not None and direct_conns(self._host, peer_id):
            self._on_direct(str(peer_id))


def _relayed_conn_of(stream: Any) -> bool:
    return _relayed_muxed(stream.muxed_conn)


async def _close(stream: Any, reset: bool = False) -> None:
    try:
        if reset:
            await stream.reset()
        else:
            await stream.close()
    except Exception as exc:
        log.debug("closing a dcutr stream: %r", exc)
