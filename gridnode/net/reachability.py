"""Reachability: AutoNAT v1 with a dial-back that proves something, and the node's verdict.

Wire format: libp2p's AutoNAT v1 (``/libp2p/autonat/1.0.0``, one uvarint-length-prefixed
``Message`` each way, py-libp2p's generated ``autonat_pb2``;
https://github.com/libp2p/specs/blob/master/autonat/autonat-v1.md), so that gridnode nodes can
ask, and answer, any libp2p node.

Written in gridnode because py-libp2p 0.8.1's ``AutoNATService`` answers ``OK`` to every
requester it is connected to: its dial-back is ``host.connect(PeerInfo(peer, [addr]))``, which
returns at once when a connection to the peer exists, and the requester is connected (it sent
the request over that connection). tests/gridnode/net/test_reachability.py shows it
(docs/decisions.md, "Issue 22, reachability").

The server (:class:`AutonatServer`): a DIAL request over a direct connection, for the peer that
sent it (any other peer id: ``E_BAD_REQUEST``), is answered by dialling the IP the request came
from at each TCP port its addresses name (at most :data:`MAX_DIALS`; no other IP is ever dialled,
so the server cannot be turned on a third party; the requester need not know its public IP, which
a node behind NAT learns late from identify) on a **new** TCP connection, from an ephemeral
port, outside the swarm: the Noise handshake must prove the peer's key, then the connection is
closed. ``OK`` with the address reached, else ``E_DIAL_ERROR``. Requests over a relayed
connection, a second one from a peer while its first runs, more than :data:`PER_PEER_PER_MINUTE`
a minute from a peer, or more than :data:`MAX_RUNNING` at once: ``E_DIAL_REFUSED``.

The client (:class:`Reachability`): asks up to :data:`SERVERS` connected peers (directly
connected: a relay's peers cannot answer over it; only peers at a global IP when it is connected
to any, and only their verdicts count once one has answered: a LAN neighbour's dial-back proves
reachability from the LAN, not from the internet) to dial it back at its candidate addresses
(:func:`~gridnode.net.holepunch.candidate_addrs`), and keeps each server's latest verdict. The
status is ``public`` when at least ``min(3, servers that answered)`` said OK and more said OK
than failed, ``private`` when that many failed and more failed, ``unknown`` otherwise. A host
that listens on nothing is ``private`` without asking. Checks run when a peer connects while the
status is unknown, and every :attr:`Reachability.interval` seconds.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.peer.id import ID

from gridnode.net.holepunch import _relayed_muxed, candidate_addrs, listen_ports
from gridnode.net.relay import read_message, write_message

__all__ = ["AUTONAT", "AutonatServer", "Reachability"]

log = logging.getLogger(__name__)

AUTONAT: Final = TProtocol("/libp2p/autonat/1.0.0")

#: Addresses of one request the server dials (one after another), and seconds for each dial.
MAX_DIALS: Final = 3
DIAL_TIMEOUT: Final = 5.0
#: Dial-backs running at once (all peers), and requests one peer may make a minute.
MAX_RUNNING: Final = 8
PER_PEER_PER_MINUTE: Final = 4
#: Servers the client asks in one check.
SERVERS: Final = 4
#: Servers whose latest verdict the client keeps (the oldest forgotten first).
MAX_VERDICTS: Final = 32

PUBLIC: Final = "public"
PRIVATE: Final = "private"
UNKNOWN: Final = "unknown"


def _remote_is_global(conn: Any) -> bool:
    """Whether a direct connection's far end is at a globally routable IP."""
    try:
        return ipaddress.ip_address(conn.muxed_conn.get_remote_address()[0]).is_global
    except Exception:
        return False


def _host_part(ip: str | None) -> str | None:
    """``/ip4/<ip>`` or ``/ip6/<ip>`` for a socket's peer IP (an IPv4-mapped IPv6 one as IPv4)."""
    if ip is None:
        return None
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return f"/ip{parsed.version}/{parsed}"


def _tcp_port(addr: str) -> int | None:
    """The TCP port of a direct ``/ip4|ip6/<ip>/tcp/<port>...`` address, else None."""
    parts = addr.split("/")
    if (
        len(parts) < 5
        or parts[1] not in ("ip4", "ip6")
        or parts[3] != "tcp"
        or "p2p-circuit" in parts
    ):
        return None
    try:
        port = int(parts[4])
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


def status_of(verdicts: dict[str, bool], at_global_ip: dict[str, bool]) -> str:
    """The status AutoNAT servers' latest verdicts (peer -> it reached us) make: ``public`` when
    at least ``min(3, servers that answered)`` said yes and more said yes than no, ``private``
    the other way round, else ``unknown``.

    A server reached over a LAN (or loopback, or CGNAT) address that dials us back proves only
    that we are reachable from that LAN: two home nodes behind one router would otherwise call
    each other public and stop announcing their relayed addresses. So once any server at a
    global IP (``at_global_ip``) has answered, only such servers count; with none (a LAN-only
    network, tests on loopback), all do."""
    counted = {p: v for p, v in verdicts.items() if at_global_ip.get(p)} or verdicts
    answered = len(counted)
    yes = sum(counted.values())
    no = answered - yes
    needed = max(1, min(3, answered))
    if yes >= needed and yes > no:
        return PUBLIC
    if no >= needed and no > yes:
        return PRIVATE
    return UNKNOWN


class AutonatServer:
    """Answers AutoNAT dial requests with a real dial-back (see the module's doc)."""

    def __init__(self, libp2p_host: Any, refused: Callable[[str], bool] = lambda _p: False):
        self._host = libp2p_host
        self._refused = refused
        self._running: set[str] = set()
        self._recent: dict[str, deque[float]] = {}
        self.served = 0
        self.refused = 0

    def start(self) -> None:
        self._host.set_stream_handler(AUTONAT, self._serve)

    def _admit(self, peer: str) -> bool:
        now = time.monotonic()
        recent = self._recent.setdefault(peer, deque())
        while recent and recent[0] < now - 60:
            recent.popleft()
        if len(self._recent) > 4096:  # bounded memory: forget the quiet ones
            for quiet in [p for p, r in self._recent.items() if not r and p != peer]:
                del self._recent[quiet]
        if (
            peer in self._running
            or len(self._running) >= MAX_RUNNING
            or len(recent) >= PER_PEER_PER_MINUTE
        ):
            return False
        recent.append(now)
        return True

    async def _serve(self, stream: Any) -> None:
        peer_id = stream.muxed_conn.peer_id
        peer = str(peer_id)
        try:
            if self._refused(peer):
                await stream.reset()
                return
            request = await read_message(stream, Message)
            answer = await self._answer(stream, peer_id, request)
            await write_message(stream, answer)
            await stream.close()
        except Exception as exc:
            log.debug("autonat request from %s: %r", peer, exc)
            try:
                await stream.reset()
            except Exception as exc2:
                log.debug("resetting an autonat stream: %r", exc2)

    async def _answer(self, stream: Any, peer_id: Any, request: Any) -> Any:
        peer = str(peer_id)

        def response(status: Any, text: str = "", addr: bytes | None = None) -> Any:
            answer = Message(type=Message.DIAL_RESPONSE)
            answer.dialResponse.status = status
            if text:
                answer.dialResponse.statusText = text
            if addr is not None:
                answer.dialResponse.addr = addr
            return answer

        if request.type != Message.DIAL:
            return response(Message.E_BAD_REQUEST, "not a DIAL")
        if _relayed_muxed(stream.muxed_conn):
            self.refused += 1
            return response(Message.E_DIAL_REFUSED, "over a relayed connection")
        try:
            claimed = ID(request.dial.peer.id)
        except Exception:
            return response(Message.E_BAD_REQUEST, "bad peer id")
        if claimed != peer_id:
            return response(Message.E_BAD_REQUEST, "a dial-back is only for the requester")
        observed = None
        try:
            observed = stream.muxed_conn.get_remote_address()[0]
        except Exception:
            observed = None
        dialable = []
        host_part = _host_part(observed)
        for raw in list(request.dial.peer.addrs)[:16]:
            try:
                addr = str(multiaddr.Multiaddr(raw))
            except Exception:
                continue
            port = _tcp_port(addr)
            if host_part is not None and port is not None:
                # The IP the request came from, at the port the address names: never a third
                # party; and a requester that does not know its public IP yet (identify's
                # observed addresses come late) is still dialled where its NAT would map it.
                dialable.append(f"{host_part}/tcp/{port}")
        dialable = list(dict.fromkeys(dialable))[:MAX_DIALS]
        if not dialable:
            self.refused += 1
            return response(Message.E_DIAL_REFUSED, f"no TCP address in the request ({observed})")
        if not self._admit(peer):
            self.refused += 1
            return response(Message.E_DIAL_REFUSED, "too many requests")
        self._running.add(peer)
        try:
            self.served += 1
            for addr in dialable:
                if await self._dial_back(addr, peer_id):
                    return response(Message.OK, addr=multiaddr.Multiaddr(addr).to_bytes())
            return response(Message.E_DIAL_ERROR, "no dial-back succeeded")
        finally:
            self._running.discard(peer)

    async def _dial_back(self, addr: str, peer_id: Any) -> bool:
        """A new TCP connection to ``addr`` whose Noise handshake proves ``peer_id``; closed at
        once, never added to the swarm."""
        network = self._host.get_network()
        maddr = multiaddr.Multiaddr(addr)
        secured = raw = None
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                transport = network.transport_manager.transport_for_dialing(maddr)
                if transport is None:
                    return False
                raw = await transport.dial(maddr)
                secured = await network.upgrader.upgrade_security(raw, True, peer_id)
            return True
        except Exception as exc:
            log.debug("autonat dial-back to %s at %s: %r", peer_id, addr, exc)
            return False
        finally:
            with trio.CancelScope(shield=True):
                for conn in (secured, raw):
                    if conn is not None:
                        try:
                            await conn.close()
                        except Exception as exc:
                            log.debug("closing a dial-back: %r", exc)


class Reachability:
    """This host's verdict on whether it can be dialled, from AutoNAT servers' dial-backs."""

    def __init__(
        self,
        libp2p_host: Any,
        announced: Callable[[], list[str]],
        on_change: Callable[[], None] = lambda: None,
        *,
        interval: float = 600.0,
        timeout: float = 20.0,
    ) -> None:
        self._host = libp2p_host
        self._announced = announced  # () -> the host's direct announced addresses
        self._on_change = on_change
        self.interval = interval
        self.timeout = timeout
        #: server peer id -> its latest verdict (True: it reached us)
        self.verdicts: dict[str, bool] = {}
        #: the addresses servers reached us at (newest last)
        self.confirmed: list[str] = []
        self.checks = 0
        self.status = UNKNOWN
        self._not_servers: set[str] = set()
        #: server peer id -> why it gave no verdict (refused, did not answer), the last few
        self.no_verdict: dict[str, str] = {}
        #: server peer id -> whether we are connected to it at a global IP
        self._global: dict[str, bool] = {}
        self._poked = trio.Event()
        #: for tests: the addresses to ask servers to dial, instead of the candidates
        self.candidates: Callable[[], list[str]] | None = None

    def poke(self) -> None:
        """A new connection: check now if the status is unknown, or rests on LAN neighbours'
        verdicts alone while a peer at a global IP that could say better is connected."""
        if self.status == UNKNOWN or self._global_unasked():
            self._poked.set()

    def _global_unasked(self) -> bool:
        if any(self._global.get(peer) for peer in self.verdicts):
            return False
        network = self._host.get_network()
        return any(
            not _relayed_muxed(conn.muxed_conn) and _remote_is_global(conn)
            for conns in list(network.connections.values())
            for conn in conns
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "confirmed": list(self.confirmed),
            "servers": dict(self.verdicts),
            "no_verdict": dict(self.no_verdict),
            "checks": self.checks,
        }

    async def run(self) -> None:
        while True:
            self._poked = trio.Event()
            await self.check()
            with trio.move_on_after(self.interval):
                await self._poked.wait()

    def _servers(self) -> list[Any]:
        """Up to :data:`SERVERS` directly connected peers to ask, new ones first; only those
        connected at a global IP when there are any (:func:`status_of` says why)."""
        network = self._host.get_network()
        servers, global_servers = [], []
        for peer_id, conns in list(network.connections.items()):
            if str(peer_id) in self._not_servers:
                continue
            direct = [c for c in conns if not _relayed_muxed(c.muxed_conn)]
            if not direct:
                continue
            servers.append(peer_id)
            is_global = any(_remote_is_global(c) for c in direct)
            self._global[str(peer_id)] = is_global
            if is_global:
                global_servers.append(peer_id)
        keep = set(self.verdicts) | {str(p) for p in servers}
        for gone in [p for p in self._global if p not in keep]:
            del self._global[gone]
        chosen = global_servers or servers
        chosen.sort(key=lambda p: (str(p) in self.verdicts, str(p)))  # new ones first
        return chosen[:SERVERS]

    async def check(self) -> str:
        """Ask up to :data:`SERVERS` connected peers; return (and keep) the new status."""
        if self.candidates is not None:
            addrs = self.candidates()
        else:
            addrs = (
                candidate_addrs(self._host, self._announced()) if listen_ports(self._host) else []
            )
        if not addrs:
            self._set(PRIVATE)  # nothing anyone could dial
            return self.status
        servers = self._servers()
        if not servers:
            return self.status
        self.checks += 1
        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(self._ask, server, addrs)
        status = status_of(self.verdicts, self._global)
        if status != UNKNOWN:
            self._set(status)
        return self.status

    async def _ask(self, server: Any, addrs: list[str]) -> None:
        peer = str(server)
        request = Message(type=Message.DIAL)
        request.dial.peer.id = self._host.get_id().to_bytes()
        for addr in addrs:
            request.dial.peer.addrs.append(multiaddr.Multiaddr(addr).to_bytes())
        try:
            with trio.fail_after(self.timeout):
                stream = await self._host.new_stream(server, [AUTONAT])
                try:
                    await write_message(stream, request)
                    answer = await read_message(stream, Message)
                finally:
                    try:
                        await stream.close()
                    except Exception as exc:
                        log.debug("closing an autonat stream: %r", exc)
        except Exception as exc:
            log.debug("autonat: %s did not answer: %r", peer, exc)
            self._no_verdict(peer, f"no answer: {type(exc).__name__}: {str(exc)[:80]}")
            if "not supported" in repr(exc) or "protocol" in repr(exc).lower():
                self._not_servers.add(peer)
            return
        status = answer.dialResponse.status
        if status in (Message.OK, Message.E_DIAL_ERROR):
            self.verdicts.pop(peer, None)  # newest last; the oldest go past MAX_VERDICTS
            while len(self.verdicts) >= MAX_VERDICTS:
                del self.verdicts[next(iter(self.verdicts))]
        if status == Message.OK:
            self.verdicts[peer] = True
            try:
                reached = str(multiaddr.Multiaddr(answer.dialResponse.addr))
            except Exception:
                reached = ""
            if reached and _tcp_port(reached) in {_tcp_port(a) for a in addrs}:  # a port we named
                self.confirmed = [*[a for a in self.confirmed if a != reached][-3:], reached]
        elif status == Message.E_DIAL_ERROR:
            self.verdicts[peer] = False
        else:  # E_DIAL_REFUSED and the rest: no verdict
            self._no_verdict(peer, answer.dialResponse.statusText[:120] or f"status {status}")

    def _no_verdict(self, peer: str, why: str) -> None:
        """Keep why the last few servers gave no verdict, for status."""
        self.no_verdict.pop(peer, None)
        while len(self.no_verdict) >= SERVERS:
            del self.no_verdict[next(iter(self.no_verdict))]
        self.no_verdict[peer] = why

    def _set(self, status: str) -> None:
        if status != self.status:
            log.info("reachability: %s (was %s)", status, self.status)
            self.status = status
            self._on_change()
