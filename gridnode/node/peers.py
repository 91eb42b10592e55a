"""The node's peers: whom it dials, whom it keeps dialling, and whom it drops.

A node seeks ``target_peers`` connections (it accepts more from others, up to the host's
``max_connections``). It learns of peers four ways, and remembers each in :attr:`Peering.known`
(bounded, :data:`MAX_KNOWN_PEERS`) to dial it again whenever it has fewer connections:

- **dialing**: bootstrap addresses from the config, and every :meth:`Peering.connect` (a peer
  dialled, or tried, is remembered; a bootstrap address without a peer id is known by the id it
  answers with);
- **redial with backoff**: a lost peer (a restart, a network cut), or a bootstrap peer not up yet,
  is dialled again while the node is below ``target_peers``, each on its own backoff from
  :data:`REDIAL_FIRST` doubling to :data:`REDIAL_MOST` seconds, so a peer gone for good costs one
  dial every five minutes, not a storm;
- **peer exchange**: every node publishes a record of its own addresses on the peers topic (on
  each new connection, then every third announcement interval); the topic validator drops a
  record that does not describe the peer it comes from before gossipsub forwards it. Records are
  bucketed by source and address prefix, and dials on a source's behalf come from a budget
  (:mod:`gridnode.node.known`): bootstrap peers are never evicted, and sybil records cannot fill
  ``known`` or make the node dial a stream of addresses;
- **mDNS**: gridnode nodes on the LAN, when the config turns it on.

**Strikes and bans.** A protocol violation (a sync stream or a bitswap message that breaks the
protocol: :meth:`Peering.strike`) counts against the peer. Strikes decay: one is forgiven every
:data:`STRIKE_DECAY` seconds, so an honest peer's occasional mistake is forgotten. At
:data:`MAX_STRIKES` the node bans the peer by its peer id for :data:`BAN_SECONDS`: it disconnects
it, forgets its addresses and does not dial it, and refuses it while banned: its inbound streams
are reset unserved and a new connection from it is closed (reconnecting does not reset a ban).
The ban list is bounded (:data:`MAX_BANNED`; the oldest ban goes first). Time is trio's clock.

This room refuses to know what a connection is for: on each new connection it calls the
``connected`` callback it was made with (the node starts its pulls there), and it reads nothing of
the databases.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

import trio

from crdt.errors import GridnodeError
from gridnode.net import Host, Subscription
from gridnode.node.known import MAX_KNOWN_PEERS, MDNS, OURS, RELAYED, DialBudget, KnownPeers
from gridnode.node.stats import NodeStats, trim_oldest
from protocols.errors import ProtocolError
from protocols.gossip import PEERS_TOPIC, PeerRecord, parse_peer_record

__all__ = [
    "BAN_SECONDS",
    "MAX_BANNED",
    "MAX_KNOWN_PEERS",
    "MAX_STRIKES",
    "REDIAL_FIRST",
    "REDIAL_MOST",
    "STRIKE_DECAY",
    "Peering",
]

log = logging.getLogger(__name__)

#: Protocol violations after which a peer is disconnected and banned.
MAX_STRIKES: Final = 3
#: Seconds after which one strike is forgiven (strikes within this time of each other add up).
STRIKE_DECAY: Final = 600.0
#: Seconds a peer stays banned once it reaches MAX_STRIKES.
BAN_SECONDS: Final = 3600.0
#: Peers banned at once; the oldest ban is lifted first (sybils cost a key each, a ban nothing).
MAX_BANNED: Final = 1024
#: Seconds before the first redial of a lost peer; doubled after each failure, up to the most.
REDIAL_FIRST: Final = 1.0
REDIAL_MOST: Final = 300.0


class Peering:
    """The peers of one running node; made by :class:`~gridnode.node.Node`, started by
    :meth:`start` once the node's databases replicate."""

    def __init__(
        self,
        host: Host,
        nursery: trio.Nursery,
        stats: NodeStats,
        *,
        target_peers: int,
        connected: Callable[[str], None],
    ) -> None:
        self.host = host
        #: Connections the node seeks through redialling, peer exchange and mDNS.
        self.target_peers = target_peers
        #: Peers to dial again when below ``target_peers``: peer id (or, for a bootstrap address
        #: without one, the address) -> its multiaddrs. Bootstrap peers, peers dialled, peers
        #: named by peer records; not peers disconnected for protocol violations. Bucketed by
        #: source and address prefix (:class:`~gridnode.node.known.KnownPeers`).
        self.known = KnownPeers()
        #: Dials on behalf of a record's source (bootstrap and the user's dials are not limited).
        self.dial_budget = DialBudget()
        #: Seconds between two publications of this node's peer record (``inf``: only on new
        #: connections).
        self.record_interval = math.inf
        self._nursery = nursery
        self._stats = stats
        self._connected = connected
        #: key -> (when it may be dialled again, the wait after the next failure).
        self._redial: dict[str, tuple[float, float]] = {}
        self._dialing: set[str] = set()
        #: peer id -> when its strikes were last counted (for their decay).
        self._struck_at: dict[str, float] = {}
        #: peer id -> when its ban ends; oldest ban first.
        self._banned: OrderedDict[str, float] = OrderedDict()
        host.refuse_peers(self.is_banned, self._refuse)
        # Every connection, dialled by either side: each side meets the other (summaries).
        host.watch_connections(self._on_connection)

    def is_banned(self, peer: str) -> bool:
        """Whether ``peer`` is banned now (its streams are refused, its connections closed)."""
        until = self._banned.get(peer)
        if until is None:
            return False
        if trio.current_time() < until:
            return True
        del self._banned[peer]
        return False

    @property
    def banned(self) -> dict[str, float]:
        """Banned peers and the trio time each ban ends."""
        now = trio.current_time()
        return {peer: until for peer, until in self._banned.items() if until > now}

    def _refuse(self, peer: str) -> None:
        log.debug("closing a connection from banned %s", peer)
        self._nursery.start_soon(self.host.disconnect, peer)

    def _decay(self, peer: str, now: float) -> int:
        """Forgive ``peer`` one strike per STRIKE_DECAY seconds since they were last counted;
        its strikes now."""
        strikes = self._stats.strikes.get(peer, 0)
        since = self._struck_at.get(peer)
        if since is None or not strikes:
            self._struck_at[peer] = now
            return strikes
        forgiven = int((now - since) // STRIKE_DECAY)
        if forgiven:
            strikes = max(0, strikes - forgiven)
            self._struck_at[peer] = since + forgiven * STRIKE_DECAY
            if strikes:
                self._stats.strikes[peer] = strikes
            else:
                self._stats.strikes.pop(peer, None)
                self._struck_at.pop(peer, None)
        return strikes

    def forgive(self) -> None:
        """Apply the strikes' decay to every peer (strikes shown by the API go down in time)."""
        now = trio.current_time()
        for peer in list(self._stats.strikes):
            self._decay(peer, now)
        for peer in list(self._struck_at):
            if peer not in self._stats.strikes:
                del self._struck_at[peer]

    @property
    def dialing(self) -> frozenset[str]:
        """Known peers being dialled again right now."""
        return frozenset(self._dialing)

    async def start(self, bootstrap: Sequence[str]) -> None:
        """Take part in peer exchange, dial ``bootstrap``, keep dialling known peers while below
        ``target_peers``, and dial the LAN's nodes if the host looks for them."""
        self.host.set_topic_validator(PEERS_TOPIC, self._valid_record)
        self._nursery.start_soon(self._exchange, await self.host.subscribe(PEERS_TOPIC))
        for multiaddr in bootstrap:
            self._nursery.start_soon(self.connect, multiaddr)
        self._nursery.start_soon(self._keep_connected)
        if math.isfinite(self.record_interval):
            self._nursery.start_soon(self._publish_periodically)
        if self.host.mdns:
            self._nursery.start_soon(self._dial_discovered)

    def remember(self, key: str, addrs: Sequence[str], source: str = OURS) -> None:
        """Keep ``addrs`` of a peer (``key``: its id, or a bootstrap address) to dial it again
        whenever the node has fewer than ``target_peers`` connections. ``source``: who named it
        (:data:`~gridnode.node.known.OURS`, the default, for bootstrap and the user's dials:
        never evicted); a record's peer is kept only if its buckets have room."""
        if (
            key == self.host.peer_id
            or self._stats.strikes.get(key, 0) >= MAX_STRIKES
            or self.is_banned(key)
        ):
            return
        # QUIC first when both sides speak it; left out if this node does not (nothing left:
        # kept as given, for the dial to say why it fails).
        self.known.remember(key, self.host.dial_order(addrs) or addrs, source)

    async def connect(self, multiaddr: str, source: str = OURS) -> str | None:
        """Dial a peer; log and return ``None`` if it cannot be reached. A peer dialled (or
        tried) is remembered, and dialled again whenever it is lost (:meth:`remember`);
        ``source`` says on whose behalf (:data:`~gridnode.node.known.OURS`: bootstrap, the
        user's dials)."""
        key = peer_of(multiaddr) or multiaddr
        if key not in self.known:
            self.remember(key, [multiaddr], source)
        try:
            peer = await self.host.connect(multiaddr)
        except GridnodeError as exc:
            log.warning("cannot connect to %s: %s", multiaddr, exc)
            self._stats.note("connect-failed", f"{multiaddr}: {exc}")
            return None
        if key != peer:
            # A bootstrap address without a peer id: from now on known by the id it answered with.
            source = self.known.source_of(key) if key in self.known else source
            self.known.pop(key, None)
            self.remember(peer, [multiaddr], source)
        self._redial.pop(peer, None)
        log.info("connected to %s", peer)
        self._nursery.start_soon(self.publish_record)
        return peer

    def _on_connection(self, peer: str) -> None:
        if not self.is_banned(peer):
            self._connected(peer)

    async def strike(self, peer: str, reason: str) -> None:
        """Count a protocol violation; disconnect and ban a peer that keeps misbehaving."""
        now = trio.current_time()
        strikes = self._stats.strikes[peer] = self._decay(peer, now) + 1
        self._stats.counters.strikes += 1
        self._struck_at.setdefault(peer, now)
        trim_oldest(self._stats.strikes)
        log.info("protocol violation by %s (%d/%d): %s", peer, strikes, MAX_STRIKES, reason)
        self._stats.note(
            "strike", f"protocol violation {strikes}/{MAX_STRIKES}: {reason}", peer=peer
        )
        if strikes >= MAX_STRIKES:
            log.warning("disconnecting %s after %d protocol violations", peer, strikes)
            self._stats.note("disconnected", f"after {strikes} protocol violations", peer=peer)
            self.known.pop(peer, None)  # and not dialled again
            self._ban(peer, now)
            await self.host.disconnect(peer)

    def _ban(self, peer: str, now: float) -> None:
        self._banned.pop(peer, None)  # re-inserted last: the newest ban is lifted last
        self._banned[peer] = now + BAN_SECONDS
        while len(self._banned) > MAX_BANNED:
            self._banned.popitem(last=False)
        # Its strikes stay (and decay) for the record: by the ban's end they are forgotten.

    # -- staying connected --------------------------------------------------------------------

    async def _keep_connected(self) -> None:
        """While below ``target_peers`` connections, dial known peers that are not connected."""
        while True:
            await trio.sleep(REDIAL_FIRST / 2)
            self.forgive()
            connected = set(self.host.peers())
            for peer in connected:
                # A banned peer's new connection is closed when it is made (the host's gate);
                # this catches one that raced past it.
                if self.is_banned(peer):
                    self._refuse(peer)
            if len(connected) >= self.target_peers:
                continue
            now = trio.current_time()
            for key, addrs in list(self.known.items()):
                if key in connected or key in self._dialing:
                    continue
                due, wait = self._redial.get(key, (now, REDIAL_FIRST))
                if now < due:
                    continue
                # Records from one source cannot make the node dial their addresses one after
                # another: the source's budget is spent first (bootstrap peers are not limited).
                if not self.dial_budget.take(self.known.source_of(key), now):
                    continue
                self._redial[key] = (now + wait, min(wait * 2, REDIAL_MOST))
                self._dialing.add(key)
                self._nursery.start_soon(self._redial_one, key, addrs)

    async def _redial_one(self, key: str, addrs: tuple[str, ...]) -> None:
        source = self.known.source_of(key)
        try:
            for i, addr in enumerate(addrs):
                # Every address of a record is a dial: the first was paid for by the caller.
                if i and not self.dial_budget.take(source, trio.current_time()):
                    return
                if await self.connect(addr, source) is not None:
                    log.info("reconnected to %s", key)
                    return
        finally:
            self._dialing.discard(key)

    async def _dial_discovered(self) -> None:
        """Dial gridnode nodes found on the LAN by mDNS, while below ``target_peers``."""
        async with self.host.discovered() as found:
            async for peer, addrs in found:
                if self._enough_or_connected(peer):
                    continue
                # Anyone on the LAN can answer mDNS: its peers are bucketed and budgeted like
                # relayed records' (one source), not kept as the user's own.
                for addr in self.host.dial_order(addrs):
                    if not self.dial_budget.take(MDNS, trio.current_time()):
                        break
                    if await self.connect(addr, MDNS) is not None:
                        log.info("found %s on the local network", peer)
                        break

    def _enough_or_connected(self, peer: str) -> bool:
        peers = self.host.peers()
        return peer in peers or len(peers) >= self.target_peers

    # -- peer exchange ------------------------------------------------------------------------

    async def publish_record(self) -> None:
        """Tell the peers topic where this node can be reached (its announced addresses)."""
        record = PeerRecord(self.host.peer_id, tuple(self.host.announced_addrs))
        await self.host.publish(PEERS_TOPIC, record.encode())
        self._stats.counters.gossip_published += 1

    async def _publish_periodically(self) -> None:
        # Peers that connected after our last record (or missed it) still learn of us.
        while True:
            await trio.sleep(self.record_interval)
            await self.publish_record()

    def _valid_record(self, origin: str, data: bytes) -> bool:
        try:
            parse_peer_record(data, origin)
        except ProtocolError:
            return False
        return True

    async def _exchange(self, subscription: Subscription) -> None:
        """Remember the peers other nodes' records name; dial them while below
        ``target_peers`` connections."""
        async for origin, data in subscription:
            if origin == self.host.peer_id:
                continue
            self._stats.counters.gossip_received += 1
            try:
                record = parse_peer_record(data, origin)
            except ProtocolError:
                continue
            full_addrs = [a if "/p2p/" in a else f"{a}/p2p/{origin}" for a in record.addrs]
            # A record from a peer connected to us is its own word; any other was relayed, and
            # fresh peer ids cost nothing: all relayed records share one source's buckets.
            source = origin if origin in self.host.peers() else RELAYED
            self.remember(origin, full_addrs, source)
            if origin not in self.known or self._enough_or_connected(origin):
                continue
            for addr in self.host.dial_order(full_addrs):
                if not self.dial_budget.take(source, trio.current_time()):
                    break
                if await self.connect(addr, source) is not None:
                    log.info("learnt of %s through gossip", origin)
                    break


def peer_of(multiaddr: str) -> str | None:
    """The peer id a multiaddr ends with (``.../p2p/<id>``), if any."""
    _head, sep, tail = multiaddr.rpartition("/p2p/")
    return tail.split("/", 1)[0] if sep and tail else None
