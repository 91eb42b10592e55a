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
sent it (any other peer id: ``E_BAD_REQUEST``), is answered by dialling each of its addresses
whose IP is the one the request came from (at most :data:`MAX_DIALS`; others are never dialled,
so the server cannot be turned on a third party) on a **new** TCP connection, from an ephemeral
port, outside the swarm: the Noise handshake must prove the peer's key, then the connection is
closed. ``OK`` with the address reached, else ``E_DIAL_ERROR``. Requests over a relayed
connection, a second one from a peer while its first runs, more than :data:`PER_PEER_PER_MINUTE`
a minute from a peer, or more than :data:`MAX_RUNNING` at once: ``E_DIAL_REFUSED``.

The client (:class:`Reachability`): asks up to :data:`SERVERS` connected peers (directly
connected: a relay's peers cannot answer over it) to dial it back at its candidate addresses
(:func:`~gridnode.net.holepunch.candidate_addrs`), and keeps each server's latest verdict. The
status is ``public`` when at least ``min(3, servers that answered)`` said OK and more said OK
than failed, ``private`` when that many failed and more failed, ``unknown`` otherwise. A host
that listens on nothing is ``private`` without asking. Checks run when a peer connects while the
status is unknown, and every :attr:`Reachability.interval` seconds.
"""

from __future__ import annotations

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

PUBLIC: Final = "public"
PRIVATE: Final = "private"
UNKNOWN: Final = "unknown"


def _ip_of(addr: str) -> str | None:
    parts = addr.split("/")
    return parts[2] if len(parts) > 2 and parts[1] in ("ip4", "ip6") else None


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
        for raw in list(request.dial.peer.addrs)[:16]:
            try:
                addr = str(multiaddr.Multiaddr(raw))
            except Exception:
                continue
            if observed is not None and _ip_of(addr) == observed and "/tcp/" in addr:
                dialable.append(addr.split("/p2p/")[0])
        dialable = list(dict.fromkeys(dialable))[:MAX_DIALS]
        if not dialable:
            self.refused += 1
            return response(Message.E_DIAL_REFUSED, "no address at the IP the request came from")
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
        self._poked = trio.Event()
        #: for tests: the addresses to ask servers to dial, instead of the candidates
        self.candidates: Callable[[], list[str]] | None = None

    def poke(self) -> None:
        """A new connection: check now if the status is unknown."""
        if self.status == UNKNOWN:
            self._poked.set()

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "confirmed": list(self.confirmed),
            "servers": dict(self.verdicts),
            "checks": self.checks,
        }

    async def run(self) -> None:
        while True:
            self._poked = trio.Event()
            await self.check()
            with trio.move_on_after(self.interval):
                await self._poked.wait()

    def _servers(self) -> list[Any]:
        network = self._host.get_network()
        servers = []
        for peer_id, conns in list(network.connections.items()):
            if str(peer_id) in self._not_servers:
                continue
            if any(not _relayed_muxed(c.muxed_conn) for c in conns):
                servers.append(peer_id)
        servers.sort(key=lambda p: (str(p) in self.verdicts, str(p)))  # new ones first
        return servers[:SERVERS]

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
        answered = len(self.verdicts)
        yes = sum(self.verdicts.values())
        no = answered - yes
        needed = max(1, min(3, answered))
        if yes >= needed and yes > no:
            self._set(PUBLIC)
        elif no >= needed and no > yes:
            self._set(PRIVATE)
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
            if "not supported" in repr(exc) or "protocol" in repr(exc).lower():
                self._not_servers.add(peer)
            return
        status = answer.dialResponse.status
        if status == Message.OK:
            self.verdicts[peer] = True
            try:
                reached = str(multiaddr.Multiaddr(answer.dialResponse.addr))
            except Exception:
                reached = ""
            if reached and reached in addrs:  # only an address we asked for
                self.confirmed = [*[a for a in self.confirmed if a != reached][-3:], reached]
        elif status == Message.E_DIAL_ERROR:
            self.verdicts[peer] = False
        # E_DIAL_REFUSED and the rest: no verdict

    def _set(self, status: str) -> None:
        if status != self.status:
            log.info("reachability: %s (was %s)", status, self.status)
            self.status = status
            self._on_change()
