"""The node's libp2p host: TCP, Noise, yamux, gossipsub, and a lifetime that is one ``async with``.

:func:`open_host` builds a py-libp2p host with settings chosen for gridnode (each default it
changes is listed, with its measured effect, in docs/decisions.md, section "py-libp2p 0.8.1
behind gridnode.net"):

- security: Noise only. py-libp2p's default host also accepts ``/plaintext/2.0.0`` (and secio),
  where the remote merely *claims* a public key: anyone who knows a peer's public key could
  connect as that peer.
- muxer: yamux only (mplex has no flow control).
- at most one connection per peer. Besides being all gridnode needs, this is what makes a dial
  return as soon as it is connected: py-libp2p's dialer otherwise waits its 250 ms
  "happy eyeballs" delay after every successful dial, hoping for a further connection.
- no auto-connector: py-libp2p dials peers from its peerstore until it has half-way between its
  watermarks (by default 50+) connections; which peers gridnode talks to is the node's decision.
- an explicit :meth:`Host.connect` dials the address it is given (py-libp2p dials the first
  address it ever learnt for the peer), even if the peer failed within the last minute (py-libp2p
  refuses those for 60 s from a "negative cache"), and retries once, not three times.
- peers the node has banned (:meth:`Host.refuse_peers`): their inbound streams are reset before
  any handler sees them, and a new connection from one is reported to the node, which closes it.
- LAN discovery over mDNS only if asked for (``mdns=True``; see :mod:`gridnode.net.discovery`).
- what the node tells peers to dial (:attr:`Host.announced_addrs`, gridnode's peer records) is
  the ``announce`` addresses if given, else its bound listen addresses with a wildcard replaced
  by this machine's addresses, and without private ones if ``announce_private=False`` (the
  server profile). py-libp2p's ``get_addrs`` gives ``/ip4/0.0.0.0/...`` for a wildcard, which
  sends a peer elsewhere to itself.
- on exit, every connection is closed *concurrently* (py-libp2p closes them one after another,
  with a 100 ms pause in each), then the listeners; nothing is left open, even when the block is
  left by cancellation. Leaving py-libp2p's own ``host.run()`` without ``host.close()`` leaked
  every connected socket.

The rest of gridnode never imports libp2p: it sees :class:`Host`, :class:`~gridnode.net.stream.
Stream` and :class:`~gridnode.net.gossip.Subscription`, and peer ids as base58 text.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any, Final

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.exceptions import StreamFailure
from libp2p.host.ping import ID as PING_PROTOCOL_ID
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.protocol_muxer.exceptions import MultiselectClientError
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from gridnode.errors import DialError, NetError, ProtocolNotSupported, StreamError
from gridnode.net.dht import Dht, DhtConfig, run_dht
from gridnode.net.discovery import (
    DiscoveredPeers,
    Discovery,
    announced_addrs,
    local_ips,
    run_mdns,
)
from gridnode.net.gossip import Gossip, GossipConfig, Subscription, TopicValidator
from gridnode.net.holepunch import HolePuncher
from gridnode.net.identity import key_pair_from_seed
from gridnode.net.logs import quiet_libp2p_logs
from gridnode.net.reachability import PUBLIC, AutonatServer, Reachability
from gridnode.net.relay import (
    RelayClient,
    RelayLimits,
    RelayService,
    advertise_relayed,
    is_circuit,
)
from gridnode.net.stream import Stream, single_exception
from gridnode.net.tasks import index_tasks
from gridnode.net.transports import build_transports, dial_order, is_quic, quic_upkeep

__all__ = ["Host", "StreamHandler", "announcement", "open_host"]

log = logging.getLogger(__name__)

#: ``async def handler(stream)``: serves one inbound stream; the stream is closed when it returns
#: (reset if it raises).
StreamHandler = Callable[[Stream], Awaitable[None]]

# What a peer record carries (protocols/gossip.py: MAX_ADDRS addresses of at most 256 characters),
# and how many of them may be relayed (or dial-back confirmed) ones.
_MAX_ANNOUNCED: Final = 16
_MAX_ADDR_CHARS: Final = 256
_MAX_EXTRA_ADDRS: Final = 6

# How long closing may take before we stop waiting for peers to acknowledge.
_CLOSE_TIMEOUT: Final = 5.0


class _Notifee:
    """py-libp2p's network notifee, every event ignored (subclasses pick theirs)."""

    async def connected(self, _network: Any, _conn: Any) -> None:
        pass

    async def disconnected(self, _network: Any, _conn: Any) -> None:
        pass

    async def opened_stream(self, _network: Any, _stream: Any) -> None:
        pass

    async def closed_stream(self, _network: Any, _stream: Any) -> None:
        pass

    async def listen(self, _network: Any, _multiaddr: Any) -> None:
        pass

    async def listen_close(self, _network: Any, _multiaddr: Any) -> None:
        pass


class Host:
    """A running libp2p host; made by :func:`open_host`, valid inside its ``async with``."""

    def __init__(
        self,
        libp2p_host: Any,
        gossip: Gossip,
        dial_timeout: float,
        discovery: Discovery | None = None,
        announce: Sequence[str] = (),
        announce_private: bool = True,
    ) -> None:
        self._host = libp2p_host
        self._announce = list(announce)
        self._announce_private = announce_private
        self._gossip = gossip
        self._dial_timeout = dial_timeout
        self._discovery = discovery
        #: This node's base58 peer id (``12D3KooW...``), derived from its ed25519 key.
        self.peer_id: str = str(libp2p_host.get_id())
        self._refused: Callable[[str], bool] = lambda _peer: False
        #: The Kademlia DHT (:mod:`gridnode.net.dht`) when open_host was given ``dht``.
        self.dht: Dht | None = None
        #: Circuit relay v2 (:mod:`gridnode.net.relay`): the hop service and the client, if on.
        self.relay_service: RelayService | None = None
        self.relay_client: RelayClient | None = None
        #: DCUtR (:mod:`gridnode.net.holepunch`), if on.
        self.hole_puncher: HolePuncher | None = None
        #: AutoNAT (:mod:`gridnode.net.reachability`), if on.
        self.autonat_server: AutonatServer | None = None
        self.reachability: Reachability | None = None
        self._addrs_event = trio.Event()

    def _refused_peer(self, peer_id: str) -> bool:
        return self._refused(peer_id)

    def refuse_peers(
        self, refused: Callable[[str], bool], on_connected: Callable[[str], None]
    ) -> None:
        """Refuse peers for which ``refused(peer id)`` is true: their inbound streams are reset
        unserved, and ``on_connected(peer id)`` is called when one connects (in either
        direction), for the caller to close that connection (not from inside the connection's
        own set-up, which awaits its notifications)."""
        self._refused = refused

        class _Gate(_Notifee):
            async def connected(self, _network: Any, conn: Any) -> None:
                peer = str(conn.muxed_conn.peer_id)
                if refused(peer):
                    on_connected(peer)

        self._host.get_network().register_notifee(_Gate())

    def watch_connections(self, connected: Callable[[str], None]) -> None:
        """Call ``connected(peer id)`` for every new connection, inbound or outbound. It is
        called from inside the connection's set-up: it must not wait (start a task instead)."""

        class _Watch(_Notifee):
            async def connected(self, _network: Any, conn: Any) -> None:
                connected(str(conn.muxed_conn.peer_id))

        self._host.get_network().register_notifee(_Watch())

    def __repr__(self) -> str:
        return f"<Host {self.peer_id}>"

    @property
    def addrs(self) -> list[str]:
        """Where peers can reach us: full multiaddrs, with the bound port and ``/p2p/<id>``."""
        return [str(addr) for addr in self._host.get_addrs()]

    @property
    def announced_addrs(self) -> list[str]:
        """Where peers are told to reach us (``/p2p/<id>`` appended): the ``announce`` addresses
        given to :func:`open_host`, else :func:`announcement` of the bound listen addresses."""
        direct = self._direct_addrs()
        if self.reachability is not None and self.reachability.status == PUBLIC:
            # Dialled back: tell peers where we were reached, not where a relay is.
            reached = [f"{a}/p2p/{self.peer_id}" for a in self.reachability.confirmed]
            extra = [a for a in reached if a not in direct]
        elif self.relay_client is not None:
            extra = self.relay_client.circuit_addrs()
        else:
            return direct
        # A peer record carries at most 16 addresses of at most 256 characters
        # (protocols/gossip.py): the relayed or reached ones keep their place.
        extra = [a for a in extra if len(a) <= _MAX_ADDR_CHARS][:_MAX_EXTRA_ADDRS]
        return direct[: _MAX_ANNOUNCED - len(extra)] + extra

    def _direct_addrs(self) -> list[str]:
        bound = [str(addr) for addr in self._host.get_transport_addrs()]
        return dial_order(
            announcement(
                bound, self.peer_id, local_ips(), self._announce, private=self._announce_private
            ),
            quic=True,
        )

    @property
    def quic(self) -> bool:
        """Whether this host speaks QUIC (it listens on a ``/udp/N/quic-v1`` address)."""
        return any(is_quic(addr) for addr in self._host.get_transport_addrs())

    def dial_order(self, addrs: Sequence[str]) -> list[str]:
        """A peer's ``addrs`` in the order to dial them: QUIC first if this host speaks it,
        left out if not (:func:`~gridnode.net.transports.dial_order`)."""
        return dial_order(addrs, self.quic)

    def nat_status(self) -> dict[str, Any]:
        """What the relay service, the relay client and hole punching did (``None``: off),
        for ``status`` (``"nat"``) and /metrics (``gridnode_relay_*``, ``gridnode_holepunch_*``)."""
        return {
            "relay_service": None if self.relay_service is None else self.relay_service.as_dict(),
            "relay_client": None if self.relay_client is None else self.relay_client.as_dict(),
            "hole_punching": None
            if self.hole_puncher is None
            else self.hole_puncher.stats.as_dict(),
            "reachability": None if self.reachability is None else self.reachability.as_dict(),
            "autonat_server": None
            if self.autonat_server is None
            else {"served": self.autonat_server.served, "refused": self.autonat_server.refused},
        }

    def _addrs_changed(self) -> None:
        self._addrs_event.set()
        self._addrs_event = trio.Event()

    async def announced_changed(self) -> None:
        """Return once :attr:`announced_addrs` may have changed: a relay reservation taken or
        lost (and so a ``/p2p-circuit`` address), for the node to tell its peers."""
        await self._addrs_event.wait()

    # Connections

    async def connect(self, address: str) -> str:
        """Connect to the peer at ``address`` (``/ip4/.../tcp/N/p2p/<id>``); return its peer id.

        Returns at once if already connected. Raises :class:`DialError` when the address is
        unusable, nobody answers within the dial timeout, or the peer there is not ``<id>``.
        """
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        except Exception as exc:
            raise DialError(f"not a peer address (.../p2p/<peer id>): {address!r}") from exc
        peer_id = str(info.peer_id)
        if peer_id == self.peer_id:
            raise DialError(f"{address} is this node")
        if is_quic(address) and not self.quic:
            raise DialError(f"cannot connect to {address}: this node does not listen on QUIC")
        if is_circuit(address):
            if info.peer_id in self._host.get_network().connections:
                return peer_id
            if self.relay_client is None:
                raise DialError(f"relayed address, and the relay client is off: {address}")
            return await self.relay_client.dial(address)
        if info.peer_id not in self._host.get_network().connections:
            # py-libp2p dials the first address it knows for the peer, which may be an old,
            # wrong one, and refuses for 60 s a peer whose dial failed: an explicit connect
            # dials the address it is given.
            self._host.get_peerstore().clear_addrs(info.peer_id)
            self._host.get_network()._negative_peer_cache.evict(peer_id)
        try:
            with trio.fail_after(self._dial_timeout):
                await self._host.connect(info)
        except trio.TooSlowError:
            raise DialError(f"no connection to {address} within {self._dial_timeout} s") from None
        except (BaseLibp2pError, OSError) as exc:
            raise DialError(f"cannot connect to {address}: {_reason(exc)}") from exc
        if self.relay_client is not None:
            self.relay_client.poke()
        if self.reachability is not None:
            self.reachability.poke()
        return peer_id

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to ``peer_id`` (nothing happens if there is none)."""
        await self._host.disconnect(_peer(peer_id))

    def peers(self) -> list[str]:
        """Peer ids we are connected to now."""
        return [str(peer) for peer in self._host.get_connected_peers()]

    def peer_addrs(self, peer_id: str, limit: int = 8) -> list[str]:
        """Up to ``limit`` addresses the peerstore holds for ``peer_id`` (a peer tells us as
        many as it likes in identify: the page shows a few)."""
        try:
            known = self._host.get_peerstore().addrs(_peer(peer_id))
        except KeyError:  # py-libp2p's PeerStoreError: a peer it never stored
            return []
        return sorted({str(addr) for addr in known})[:limit]

    async def ping(self, peer_id: str, timeout: float) -> float:
        """One ``/ipfs/ping/1.0.0`` round trip to a connected peer, in milliseconds (py-libp2p
        answers pings by default; so do Kubo and Helia). Raises :class:`StreamError` if the
        peer does not answer correctly within ``timeout`` seconds."""
        with trio.move_on_after(timeout):
            try:
                stream = await self._host.new_stream(_peer(peer_id), [PING_PROTOCOL_ID])
            except (BaseLibp2pError, OSError) as exc:
                raise StreamError(f"cannot ping {peer_id}: {_reason(exc)}") from exc
            started = trio.current_time()
            try:
                await perform_ping_roundtrip(stream)
            except (BaseLibp2pError, OSError, ValueError, trio.TooSlowError) as exc:
                await stream.reset()
                raise StreamError(f"ping to {peer_id} failed: {_reason(exc)}") from exc
            # trio's clock, in float: py-libp2p's own figure is whole milliseconds, and a
            # loopback round trip is well under one.
            elapsed = (trio.current_time() - started) * 1000.0
            with suppress(BaseLibp2pError, OSError):
                await stream.close()
            return elapsed
        raise StreamError(f"no answer to a ping from {peer_id} within {timeout} s")

    # Streams

    def remove_stream_handler(self, protocol: str) -> None:
        """Stop serving ``protocol``: a peer's new stream for it is refused by multistream."""
        self._host.remove_stream_handler(protocol)

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        """Serve inbound streams of ``protocol`` (e.g. ``/gridnode/sync/1.1.0``) with ``handler``.

        Each stream runs in a task of its connection, so closing the connection (or the host)
        cancels it. A :class:`NetError` in the handler (a peer that went away) is logged at DEBUG,
        any other exception at ERROR; either way the stream is reset and the host keeps running.
        """

        async def serve(libp2p_stream: Any) -> None:
            stream = Stream(libp2p_stream)
            if self._refused(stream.remote_peer_id):
                log.debug("%s: refused a stream from banned %s", protocol, stream.remote_peer_id)
                await stream.reset()
                return
            try:
                await handler(stream)
            except NetError as exc:
                log.debug("%s handler: %s", protocol, exc)
                await stream.reset()
            except Exception:
                log.exception(
                    "%s handler failed on a stream from %s", protocol, stream.remote_peer_id
                )
                await stream.reset()
            else:
                await stream.close()

        self._host.set_stream_handler(TProtocol(protocol), serve)

    async def open_stream(self, peer_id: str, protocol: str | Sequence[str]) -> Stream:
        """A new stream to ``peer_id`` speaking ``protocol`` (dials the peer if not connected);
        given several, the first the peer serves (:attr:`Stream.protocol` says which).

        Raises :class:`ProtocolNotSupported` if the peer does not serve ``protocol``,
        :class:`StreamError` for any other failure.
        """
        protocols = [protocol] if isinstance(protocol, str) else list(protocol)
        try:
            libp2p_stream = await self._host.new_stream(
                _peer(peer_id), [TProtocol(p) for p in protocols]
            )
        except StreamFailure as exc:
            if isinstance(exc.__cause__, MultiselectClientError) and "not supported" in str(
                exc.__cause__
            ):
                raise ProtocolNotSupported(
                    f"{peer_id} does not serve {' or '.join(protocols)}"
                ) from exc
            raise StreamError(f"cannot open {protocols[0]} to {peer_id}: {_reason(exc)}") from exc
        except (BaseLibp2pError, OSError) as exc:
            raise StreamError(f"cannot open {protocols[0]} to {peer_id}: {_reason(exc)}") from exc
        return Stream(libp2p_stream)

    # Gossip

    async def subscribe(self, topic: str) -> Subscription:
        """Receive ``topic``'s gossip: an async iterator of ``(origin peer id, data)``."""
        return await self._gossip.subscribe(topic)

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip ``data`` on ``topic``. Lossy: a full peer queue drops, never raises or waits."""
        await self._gossip.publish(topic, data)

    def topic_peers(self, topic: str) -> list[str]:
        """The connected peers subscribed to ``topic`` (as their subscriptions said)."""
        return self._gossip.topic_peers(topic)

    def set_topic_validator(self, topic: str, validator: TopicValidator) -> None:
        """Accept ``topic``'s messages only if ``validator(origin peer id, data)`` is true.

        A rejected message is neither delivered nor forwarded, and lowers the gossip score of the
        peer that sent it; past ``GossipConfig.invalid_message_allowance`` that peer's messages on
        the topic are ignored until the count decays.
        """
        self._gossip.set_topic_validator(topic, validator)

    def gossip_score(self, peer_id: str, topic: str) -> float:
        """``peer_id``'s gossip score on ``topic`` (0 neutral, negative after invalid messages)."""
        return self._gossip.score(peer_id, topic)

    # LAN discovery

    @property
    def mdns(self) -> bool:
        """Whether this host announces itself and looks for peers on the LAN (``mdns=True``)."""
        return self._discovery is not None

    def discovered(self) -> DiscoveredPeers:
        """Gridnode hosts found on the LAN: an async iterator of ``(peer id, addresses)``.

        Use it as ``async with host.discovered() as found: async for peer_id, addrs in found:``.
        It yields the peers already found, then each new one (and one whose addresses changed);
        each address is a full ``/ip4/.../tcp/N/p2p/<id>`` for :meth:`connect`, which also
        authenticates the peer: anyone on the LAN can announce anything. Iteration ends when the
        host closes. Raises ``RuntimeError`` if the host was opened without ``mdns=True``.
        """
        if self._discovery is None:
            raise RuntimeError("LAN discovery is off: open the host with mdns=True")
        return self._discovery.discovered()


@asynccontextmanager
async def open_host(
    seed: bytes,
    listen: list[str],
    *,
    max_connections: int = 64,
    dial_timeout: float = 10.0,
    gossip: GossipConfig | None = None,
    mdns: bool = False,
    announce: Sequence[str] = (),
    announce_private: bool = True,
    dht: DhtConfig | None = None,
    relay_service: RelayLimits | None = None,
    relay_client: bool = False,
    hole_punching: bool = False,
    autonat: bool = False,
) -> AsyncIterator[Host]:
    """Run a libp2p host for the duration of the ``async with`` block.

    :param seed: the node's 32-byte ed25519 seed (the key of its ``did:key``); the peer id
        follows from it, so it is the same across restarts.
    :param listen: multiaddrs to listen on, e.g. ``/ip4/0.0.0.0/tcp/4001``; port 0 picks a free
        port (see :attr:`Host.addrs`). Raises :class:`NetError` if any cannot be bound.
    :param max_connections: connections (inbound and outbound) beyond which new ones are refused.
    :param dial_timeout: seconds :meth:`Host.connect` waits for a connection.
    :param gossip: gossipsub settings (:class:`GossipConfig` defaults otherwise).
    :param mdns: announce this host on the LAN and find other gridnode hosts there with mDNS
        (:meth:`Host.discovered`). Off by default: it tells everyone on the network that a node
        runs here, and where. Zeroconf's threads and sockets exist only while it is on. Starting
        takes ~0.45 s (the announcement); raises :class:`NetError` if mDNS cannot start.
    :param announce: multiaddrs peers are told to reach this host at (:attr:`Host.
        announced_addrs`), e.g. a public address the machine does not see on its interfaces
        (behind 1:1 NAT) or a ``/dns4/`` name; empty: derived from the listen addresses.
    :param announce_private: whether those derived addresses keep private, loopback and
        link-local ones (``False``: public ones only, as a server on the internet wants).
    :param dht: run a Kademlia DHT with these settings (:attr:`Host.dht`, :mod:`gridnode.net.
        dht`); ``None``: none.
    :param relay_service: serve circuit relay v2 (hop) within these limits
        (:mod:`gridnode.net.relay`); ``None``: no relay service.
    :param relay_client: hold reservations on connected relays, announce the ``/p2p-circuit``
        addresses they give, accept relayed connections and dial relayed addresses.
    :param hole_punching: run DCUtR on relayed connections, to replace them with direct ones
        where the NATs allow (:mod:`gridnode.net.holepunch`).
    :param autonat: answer AutoNAT dial-back requests, and learn whether this host can be
        dialled (:attr:`Host.reachability`): when it can, it announces the addresses it was
        reached at and no relayed ones (:mod:`gridnode.net.reachability`).
    """
    quiet_libp2p_logs()
    index_tasks()
    key_pair = key_pair_from_seed(seed)
    try:
        listen_addrs = [multiaddr.Multiaddr(address) for address in listen]
    except Exception as exc:
        raise NetError(f"not a multiaddr in {listen!r}: {exc}") from exc
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    try:
        for address in announce:
            multiaddr.Multiaddr(address)
    except Exception as exc:
        raise NetError(f"not a multiaddr in announce {list(announce)!r}: {exc}") from exc
    libp2p_host: Any = new_host(
        key_pair=key_pair,
        transports=build_transports(key_pair.private_key, listen_addrs),
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, create_x25519_key_pair().private_key)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=listen_addrs,
        connection_config=ConnectionConfig(
            max_connections=max_connections,
            min_connections=0,
            low_watermark=max_connections,
            high_watermark=max_connections,
            max_connections_per_peer=1,
        ),
    )
    swarm: Any = libp2p_host.get_network()
    swarm.retry_config = RetryConfig(max_retries=1)
    gossip_service = Gossip(libp2p_host, gossip or GossipConfig())
    lone: BaseException | None = None
    try:
        async with libp2p_host.run(listen_addrs):
            await swarm.auto_connector.stop()
            missing = {str(a) for a in listen_addrs} - set(swarm.listeners)
            if missing:
                raise NetError(f"cannot listen on {', '.join(sorted(missing))}")
            async with gossip_service.running(), AsyncExitStack() as lan:
                await lan.enter_async_context(quic_upkeep(libp2p_host))
                discovery = None
                if mdns:
                    bound = [str(a) for a in libp2p_host.get_transport_addrs()]
                    peer_id = str(libp2p_host.get_id())
                    discovery = await lan.enter_async_context(run_mdns(peer_id, bound))
                host = Host(
                    libp2p_host, gossip_service, dial_timeout, discovery, announce, announce_private
                )
                if dht is not None:
                    host.dht = await lan.enter_async_context(run_dht(host, swarm, dht))
                if relay_service is not None:
                    host.relay_service = RelayService(
                        libp2p_host, relay_service, lambda: host.announced_addrs, host._refused_peer
                    )
                    host.relay_service.start()
                nat = await lan.enter_async_context(trio.open_nursery())
                lan.callback(nat.cancel_scope.cancel)
                if hole_punching:
                    host.hole_puncher = HolePuncher(
                        libp2p_host,
                        lambda: host.announced_addrs,
                        on_direct=lambda peer: nat.start_soon(gossip_service.reattach, peer),
                    )
                    host.hole_puncher.start()
                    nat.start_soon(host.hole_puncher.run)
                if autonat:
                    host.autonat_server = AutonatServer(libp2p_host, host._refused_peer)
                    host.autonat_server.start()
                    host.reachability = Reachability(
                        libp2p_host, host._direct_addrs, host._addrs_changed
                    )
                    nat.start_soon(host.reachability.run)
                if relay_client:
                    puncher = host.hole_puncher
                    host.relay_client = RelayClient(
                        libp2p_host,
                        host.connect,
                        dial_timeout=dial_timeout,
                        on_change=host._addrs_changed,
                        on_inbound=puncher.relayed_inbound if puncher else lambda _peer: None,
                    )
                    host.relay_client.start()
                    nat.start_soon(host.relay_client.run)
                    advertise_relayed(
                        libp2p_host, lambda: [a for a in host.announced_addrs if is_circuit(a)]
                    )
                if not host.announced_addrs and not relay_client:
                    log.warning(
                        "announcing no address: none of %s is public; peers cannot dial this "
                        "node (set 'announce' to the address they can reach it at)",
                        ", ".join(str(a) for a in libp2p_host.get_transport_addrs()),
                    )
                try:
                    yield host
                finally:
                    # Before gossip stops: inbound gossip streams run in connection tasks and
                    # hand messages to the gossip service, which must outlive them.
                    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
                        await _close_connections(swarm)
    except BaseExceptionGroup as group:
        # py-libp2p's nurseries wrap whatever leaves the block, even a lone exception, in
        # (nested) exception groups; the caller gets its own exception back.
        lone = single_exception(group)
        if lone is None:
            raise
    finally:
        # Listeners, transports, services; also after a failure before the block (listening).
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            await libp2p_host.close()
        gossip_service.close()
    if lone is not None:
        raise lone  # outside the except clause: its own __cause__ and __context__ stay as they were


async def _close_connections(swarm: Any) -> None:
    """Stop accepting, then close every connection at once (py-libp2p: one after another)."""
    for listener in list(swarm.listeners.values()):
        await listener.close()
    connections = [c for conns in swarm.connections.values() for c in conns]

    async def close_one(connection: Any) -> None:
        try:
            await connection.close()
            # close() returns at once if a close already began, and py-libp2p's own closes run
            # in its tasks: one cancelled half-way (when the host's block is left by
            # cancellation) leaves the socket open.
            if not connection.muxed_conn.is_closed:
                await connection.muxed_conn.close()
        except Exception as exc:  # a connection that broke while closing is closed
            log.debug("closing a connection: %r", exc)
        swarm.remove_conn(connection)

    async with trio.open_nursery() as nursery:
        for connection in connections:
            nursery.start_soon(close_one, connection)


def announcement(
    bound: Sequence[str],
    peer_id: str,
    ips: Sequence[str],
    announce: Sequence[str] = (),
    *,
    private: bool = True,
) -> list[str]:
    """The addresses to tell peers, each ending in ``/p2p/<peer_id>``.

    ``announce``, if not empty, is taken as it is (the operator knows an address the machine
    cannot see). Else the ``bound`` listen addresses, a wildcard replaced by this machine's
    ``ips`` (:func:`~gridnode.net.discovery.announced_addrs`); with ``private=False`` only those
    whose IP is globally routable are kept.
    """
    if announce:
        return [a if "/p2p/" in a else f"{a}/p2p/{peer_id}" for a in announce]
    derived = announced_addrs(bound, peer_id, ips)
    if private:
        return derived
    return [a for a in derived if ipaddress.ip_address(a.split("/")[2]).is_global]


def _peer(peer_id: str) -> Any:
    try:
        return ID.from_base58(peer_id)
    except Exception as exc:
        raise ValueError(f"not a peer id: {peer_id!r}") from exc


def _reason(exc: BaseException) -> str:
    """The innermost cause's message: py-libp2p wraps errors several levels deep."""
    for _ in range(16):
        if exc.__cause__ is None:
            break
        exc = exc.__cause__
    return str(exc) or type(exc).__name__
