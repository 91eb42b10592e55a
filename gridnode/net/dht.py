"""A Kademlia DHT for finding who holds a CID: provider records and peer routing, bounded.

The wire format is libp2p's kad-dht (varint-length-prefixed protobuf ``Message``s, one request
and at most one answer per round, streams reused), on IPFS's protocol ids, so that gridnodes,
Kubo and Helia share one DHT (docs/decisions.md, "Issue 22, discovery": why not a gridnode
protocol id, and why not py-libp2p's ``KadDHT``):

* ``/ipfs/kad/1.0.0``: the public (WAN) DHT of IPFS;
* ``/ipfs/lan/kad/1.0.0``: the LAN DHT Kubo runs beside it (Kubo keeps peers with only private
  or loopback addresses out of its WAN table, and looks for them on this one).

Both are served by one routing table and one provider store. What is served: ``FIND_NODE``,
``GET_PROVIDERS``, ``ADD_PROVIDER`` and ``PING``; ``GET_VALUE`` is answered with closer peers
only and ``PUT_VALUE`` is refused (gridnode keeps no value records: IPNS and public keys are not
its business, and a store of other people's values is memory anyone can fill).

Every bound is per peer or total and configurable (:class:`DhtLimits`): routing-table size (k
per bucket and a total), provider records per key, per providing peer and in all, inbound
streams per peer and in all, requests per peer per second (a token bucket), the size of a
request and of an answer, addresses kept per peer, peers asked per lookup, and a timeout on every
request. A peer that goes past a bound has its stream reset and is counted; a malformed message
is a :class:`~gridnode.errors.DhtError`, counted, logged at most a few lines a minute per peer
(:class:`~gridnode.logs.LogLimiter`), and handed to the node's ``violation`` callback.

Only a record whose provider is the peer that sent it is kept (as every kad-dht does): anyone
can claim to hold anything, but only for itself, and what it then serves is checked against the
CID by whoever fetches it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

import multiaddr
import trio
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID

from crdt.ipld.cid import CID
from gridnode.errors import DhtError, NetError
from gridnode.logs import LogLimiter
from gridnode.net.reachability import PUBLIC
from gridnode.net.stream import Stream
from protocols.errors import ProtocolError
from protocols.kad import ProviderStore, RoutingTable, kad_key
from protocols.wire import FrameDecoder, frame

if TYPE_CHECKING:
    from gridnode.net.host import Host

__all__ = [
    "LAN_PROTOCOL",
    "PROTOCOL",
    "PROTOCOLS",
    "Dht",
    "DhtConfig",
    "DhtLimits",
    "DhtStats",
    "Provider",
    "run_dht",
]

log = logging.getLogger(__name__)

PROTOCOL: Final = "/ipfs/kad/1.0.0"
LAN_PROTOCOL: Final = "/ipfs/lan/kad/1.0.0"
#: Offered in this order when this node asks.
PROTOCOLS: Final = (PROTOCOL, LAN_PROTOCOL)

_READ: Final = 16 * 1024
#: A multihash key longer than this is not a CID's (go-libp2p refuses > 80 bytes too).
MAX_KEY: Final = 80
#: A peer id in bytes (an identity multihash of an ed25519 key is 38; RSA ones are 34, sha256).
MAX_PEER_ID: Final = 64
MAX_ADDR: Final = 256

Violation = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class DhtLimits:
    """The bounds of one node's DHT (docs/reliability.md, "Issue 22, discovery")."""

    #: k: peers per bucket, peers answered, providers per key, peers a record is sent to.
    k: int = 20
    #: Requests in flight per round of a lookup.
    alpha: int = 3
    #: Peers in the routing table, in all.
    max_table: int = 400
    #: Addresses kept per peer (table and provider records).
    addrs_per_peer: int = 8
    #: Provider records kept per key.
    providers_per_key: int = 20
    #: Provider records one peer may have stored here (over all keys).
    records_per_peer: int = 256
    #: Provider records in all.
    records_total: int = 20_000
    #: Seconds a provider record lives unless provided again (go-libp2p: 48 h).
    record_ttl: float = 48 * 3600.0
    #: Requests per peer per second, and the burst a peer may save up.
    requests_per_second: float = 10.0
    request_burst: float = 20.0
    #: Inbound streams at once, per peer and in all.
    streams_per_peer: int = 4
    streams_total: int = 64
    #: Bytes of one request received, and of one answer read from a peer.
    max_request: int = 16 * 1024
    max_answer: int = 512 * 1024
    #: Seconds one request to a peer (dial included) may take; an idle inbound stream is
    #: closed after ``idle_seconds``.
    request_timeout: float = 5.0
    idle_seconds: float = 60.0
    #: Peers asked in one lookup, at most, and seconds a lookup may take.
    lookup_peers: int = 40
    lookup_seconds: float = 30.0
    #: Seconds a connection the DHT opened only to ask may sit unused before it is closed.
    dialled_idle_seconds: float = 10.0
    #: Peers whose rate and stream counts are remembered (least recently seen forgotten).
    max_tracked_peers: int = 4096


@dataclass(frozen=True)
class DhtConfig:
    """Turns the DHT on in :func:`~gridnode.net.host.open_host`."""

    limits: DhtLimits = field(default_factory=DhtLimits)
    #: Seconds between refreshes of the routing table (a lookup of this node's own id).
    refresh_interval: float = 600.0
    #: Whether to serve requests (server mode). Off: ask only (client mode).
    serve: bool = True
    #: Auto mode (``serve`` is then ignored): serve the LAN DHT always, and the public one only
    #: while the host's AutoNAT check (:class:`~gridnode.net.reachability.Reachability`) finds
    #: it publicly reachable, so a node behind NAT never sits in others' routing tables as a
    #: server they cannot dial (the way Kubo's DHT picks its mode).
    auto: bool = False


@dataclass
class DhtStats:
    """What the DHT did (status and /metrics: ``gridnode_dht_*``)."""

    requests_received: int = 0
    #: Of those, GET_PROVIDERS (someone looking for a CID's holders).
    provider_requests: int = 0
    requests_sent: int = 0
    requests_failed: int = 0
    #: Requests refused for going past a peer's rate, streams refused past a bound.
    rate_limited: int = 0
    streams_refused: int = 0
    #: Malformed or refused messages (each resets its stream).
    bad_messages: int = 0
    records_stored: int = 0
    records_refused: int = 0
    provides: int = 0
    lookups: int = 0
    providers_found: int = 0
    #: Connections this DHT opened only to ask, closed once idle.
    hung_up: int = 0


@dataclass(frozen=True)
class Provider:
    """A peer said to hold a CID, with the addresses it (or the record) gave."""

    peer_id: str
    addrs: tuple[str, ...]


@dataclass
class _PeerState:
    tokens: float
    last: float
    streams: int = 0


def peer_bytes(peer_id: str) -> bytes:
    return bytes(ID.from_base58(peer_id).to_bytes())


def _peer_text(data: bytes) -> str:
    if not 2 <= len(data) <= MAX_PEER_ID:
        raise DhtError(f"a peer id of {len(data)} bytes")
    try:
        return str(ID(data))
    except Exception as exc:
        raise DhtError(f"not a peer id: {exc}") from None


def _addrs(raw: Sequence[bytes], limit: int) -> tuple[str, ...]:
    """The first ``limit`` well-formed addresses, without ``/p2p/`` suffixes; others skipped."""
    kept: list[str] = []
    for data in raw:
        if len(kept) >= limit:
            break
        if len(data) > MAX_ADDR:
            continue
        try:
            text = str(multiaddr.Multiaddr(bytes(data)))
        except Exception:
            continue
        text = text.split("/p2p/")[0]
        if text and text not in kept:
            kept.append(text)
    return tuple(kept)


def _dialable(addrs: Sequence[str]) -> list[str]:
    """TCP (or QUIC) addresses first, relayed ones last."""
    return sorted(addrs, key=lambda a: ("/p2p-circuit" in a, "/tcp/" not in a))


class Dht:
    """One node's part of the DHT. Made by :func:`run_dht`; :attr:`Host.dht` when it is on."""

    def __init__(
        self, host: Host, config: DhtConfig, *, violation: Violation | None = None
    ) -> None:
        self._host = host
        self.config = config
        self.limits = config.limits
        self.violation = violation
        self.stats = DhtStats()
        self._own = peer_bytes(host.peer_id)
        limits = self.limits
        self._table = RoutingTable(
            kad_key(self._own),
            k=limits.k,
            max_table=limits.max_table,
            addrs_per_peer=limits.addrs_per_peer,
        )
        #: Provider records other peers stored here (multihash -> provider -> addresses).
        self._records = ProviderStore(
            per_key=limits.providers_per_key,
            per_peer=limits.records_per_peer,
            total=limits.records_total,
            ttl=limits.record_ttl,
        )
        #: Keys this node provides itself (answered with its own addresses).
        self._providing: set[bytes] = set()
        self._peers: OrderedDict[str, _PeerState] = OrderedDict()
        self._streams = 0
        self._refusals = LogLimiter()
        self._probe_send: trio.MemorySendChannel[str] | None = None
        self._refreshing = False
        self._last_refresh = -1e18
        #: py-libp2p's swarm (:func:`run_dht` sets it): which protocols a peer said it speaks.
        self._network: Any = None
        #: Peers this DHT dialled to ask, and when either side last used the connection.
        self._dialled: dict[str, float] = {}
        self._serving = False
        #: The peers the last lookup asked (for tests and debugging).
        self.last_lookup_asked: set[str] = set()

    def __repr__(self) -> str:
        return f"<Dht {self._host.peer_id}: {self.table_size} peers, {self.records} records>"

    def as_dict(self) -> dict[str, Any]:
        """For ``GET /status`` (``"dht"``): mode, table size, records held, CIDs provided,
        and the counters of :class:`DhtStats`."""
        return {
            "mode": "server" if self.serving else "client",
            "auto": self.config.auto,
            "table_size": self.table_size,
            "records": self.records,
            "providing": len(self._providing),
            **asdict(self.stats),
        }

    # -- routing table ------------------------------------------------------------------------

    @property
    def table_size(self) -> int:
        return len(self._table)

    @property
    def records(self) -> int:
        """Provider records held for other peers (not expired ones that were not yet swept)."""
        return len(self._records)

    def table(self) -> list[str]:
        """The peer ids in the routing table."""
        return self._table.peers()

    def add_peer(self, peer_id: str, addrs: Sequence[str]) -> bool:
        """Put a peer that answered as a DHT server in the table (:meth:`RoutingTable.add`);
        whether it is there now."""
        if peer_id == self._host.peer_id:
            return False
        return self._table.add(peer_id, kad_key(peer_bytes(peer_id)), addrs)

    def _failed(self, peer_id: str) -> None:
        self._table.failed(peer_id, kad_key(peer_bytes(peer_id)))

    def closest(self, key: int, count: int, exclude: str | None = None) -> list[tuple[str, int]]:
        """The ``count`` peers of the table closest to ``key``: ``(peer id, distance)``."""
        return self._table.closest(key, count, exclude)

    def _addrs_of(self, peer_id: str) -> tuple[str, ...]:
        kept = self._table.addrs(peer_id, kad_key(peer_bytes(peer_id)))
        if kept:
            return kept
        return tuple(a.split("/p2p/")[0] for a in self._host.peer_addrs(peer_id))

    # -- per peer ---------------------------------------------------------------------------------

    def _peer(self, peer_id: str) -> _PeerState:
        state = self._peers.get(peer_id)
        now = trio.current_time()
        if state is None:
            state = _PeerState(tokens=self.limits.request_burst, last=now)
            if len(self._peers) >= self.limits.max_tracked_peers:
                # The least recently seen peer with no stream open and no record here.
                for old_id, old in self._peers.items():
                    if not old.streams and not self._records.held_by(old_id):
                        del self._peers[old_id]
                        break
            self._peers[peer_id] = state
        self._peers.move_to_end(peer_id)
        return state

    def _take(self, state: _PeerState) -> bool:
        now = trio.current_time()
        limits = self.limits
        state.tokens = min(
            limits.request_burst, state.tokens + (now - state.last) * limits.requests_per_second
        )
        state.last = now
        if state.tokens < 1.0:
            return False
        state.tokens -= 1.0
        return True

    def _refuse(self, peer_id: str, what: str) -> None:
        now = trio.current_time()
        if self._refusals.allow(peer_id, now):
            log.info("dht: %s: %s", peer_id, what)
        more = self._refusals.unreported(peer_id, now)
        if more:
            log.info("dht: %s: %d more refusals not shown", peer_id, more)

    # -- provider records -------------------------------------------------------------------------

    def _store(self, key: bytes, peer_id: str, addrs: tuple[str, ...]) -> bool:
        self._peer(peer_id)
        return self._records.store(key, peer_id, addrs, trio.current_time())

    def sweep(self) -> None:
        """Drop every expired provider record."""
        self._records.sweep(trio.current_time())

    def local_providers(self, cid: CID | str) -> list[Provider]:
        """The providers of ``cid`` this node knows of without asking anyone."""
        return self._local(CID.parse(cid).multihash)

    def _local(self, key: bytes) -> list[Provider]:
        found = [Provider(p, a) for p, a in self._records.providers(key, trio.current_time())]
        if key in self._providing:
            found.insert(0, Provider(self._host.peer_id, tuple(self._own_addrs())))
        return found

    def _own_addrs(self) -> list[str]:
        return [a.split("/p2p/")[0] for a in self._host.announced_addrs]

    # -- serving ----------------------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Whether this node answers requests on the public DHT (server mode) now."""
        return self._serving

    def mount(self, protocols: tuple[str, ...] = PROTOCOLS) -> None:
        for protocol in protocols:
            self._host.set_stream_handler(protocol, self._serve)
        self._serving = self._serving or PROTOCOL in protocols

    def unmount_public(self) -> None:
        """Stop answering on the public DHT (a peer's request there is then refused by
        multistream, as from a client-mode node)."""
        self._host.remove_stream_handler(PROTOCOL)
        self._serving = False

    async def _follow_reachability(self) -> None:
        """Auto mode: serve the public DHT exactly while the host is found publicly reachable."""
        while True:
            reachability = self._host.reachability
            public = reachability is not None and reachability.status == PUBLIC
            if public and not self._serving:
                log.info("DHT: publicly reachable, answering DHT requests (server mode)")
                self.mount((PROTOCOL,))
            elif not public and self._serving:
                log.info("DHT: not publicly reachable, asking only (client mode)")
                self.unmount_public()
            await self._host.announced_changed()

    async def _serve(self, stream: Stream) -> None:
        peer_id = stream.remote_peer_id
        state = self._peer(peer_id)
        limits = self.limits
        if state.streams >= limits.streams_per_peer or self._streams >= limits.streams_total:
            self.stats.streams_refused += 1
            self._refuse(peer_id, "too many DHT streams at once; one reset")
            await stream.reset()
            return
        state.streams += 1
        self._streams += 1
        decoder = FrameDecoder(limits.max_request)
        try:
            while True:
                with trio.move_on_after(limits.idle_seconds):
                    data = await stream.read(_READ)
                    if not data:
                        return
                    for payload in decoder.feed(data):
                        if not self._take(state):
                            self.stats.rate_limited += 1
                            self._refuse(peer_id, "more DHT requests than allowed; stream reset")
                            await stream.reset()
                            return
                        if peer_id in self._dialled:
                            self._dialled[peer_id] = trio.current_time()
                        answer = self._answer(peer_id, _parse(payload))
                        if answer is not None:
                            await stream.write(frame(answer.SerializeToString()))
                    continue
                return  # idle
        except (DhtError, ProtocolError) as exc:
            self.stats.bad_messages += 1
            self._refuse(peer_id, f"bad DHT message: {exc}")
            await stream.reset()
            if self.violation is not None:
                await self.violation(peer_id, f"dht: {exc}")
        finally:
            state.streams -= 1
            self._streams -= 1

    def _answer(self, peer_id: str, message: Any) -> Any:
        """The answer to one request (``None``: no answer is due)."""
        self.stats.requests_received += 1
        kind = message.type
        key = bytes(message.key)
        if kind == Message.PING:
            return Message(type=Message.PING)
        if not key or len(key) > MAX_KEY:
            raise DhtError(f"a key of {len(key)} bytes")
        if kind == Message.FIND_NODE:
            answer = Message(type=Message.FIND_NODE, key=key)
            self._add_closer(answer, kad_key(key), peer_id)
            return answer
        if kind == Message.GET_PROVIDERS:
            self.stats.provider_requests += 1
            answer = Message(type=Message.GET_PROVIDERS, key=key)
            for provider in self._local(key):
                self._add_peer(answer.providerPeers.add(), provider.peer_id, provider.addrs)
            self._add_closer(answer, kad_key(key), peer_id)
            return answer
        if kind == Message.ADD_PROVIDER:
            stored = False
            for provider in list(message.providerPeers)[: self.limits.k]:
                if _peer_text(bytes(provider.id)) != peer_id:
                    continue  # a record only for the sender itself
                addrs = _addrs(provider.addrs, self.limits.addrs_per_peer)
                if self._store(key, peer_id, addrs):
                    stored = True
            if stored:
                self.stats.records_stored += 1
            else:
                self.stats.records_refused += 1
            return None  # go-libp2p answers nothing
        if kind == Message.GET_VALUE:
            answer = Message(type=Message.GET_VALUE, key=key)
            self._add_closer(answer, kad_key(key), peer_id)
            return answer
        raise DhtError(f"request type {kind} is not served here")

    def _add_closer(self, answer: Any, key: int, requester: str) -> None:
        for peer, _distance in self.closest(key, self.limits.k, exclude=requester):
            self._add_peer(answer.closerPeers.add(), peer, self._addrs_of(peer))

    def _add_peer(self, slot: Any, peer_id: str, addrs: Sequence[str]) -> None:
        slot.id = peer_bytes(peer_id)
        connected = peer_id in self._host.peers() or peer_id == self._host.peer_id
        slot.connection = Message.CONNECTED if connected else Message.NOT_CONNECTED
        for addr in addrs[: self.limits.addrs_per_peer]:
            with suppress(Exception):
                slot.addrs.append(multiaddr.Multiaddr(addr).to_bytes())

    # -- asking -----------------------------------------------------------------------------------

    async def _request(self, peer_id: str, addrs: Sequence[str], message: Any) -> Any:
        """Send one request to ``peer_id`` (dialled at ``addrs`` if not connected); its answer
        (``None`` for ``ADD_PROVIDER``). Raises :class:`NetError` or :class:`DhtError`."""
        self.stats.requests_sent += 1
        with trio.fail_after(self.limits.request_timeout):
            if peer_id not in self._host.peers():
                await self._dial(peer_id, addrs)
                self._dialled[peer_id] = trio.current_time()
            elif peer_id in self._dialled:
                self._dialled[peer_id] = trio.current_time()
            stream = await self._host.open_stream(peer_id, list(PROTOCOLS))
            try:
                await stream.write(frame(message.SerializeToString()))
                if message.type == Message.ADD_PROVIDER:
                    # No answer is due (go-libp2p sends none, py-libp2p an echo): half-close
                    # and wait for the peer to close, so the record is in before we go on.
                    await stream.close_write()
                    while await stream.read(_READ):
                        pass
                    await stream.close()
                    return None
                decoder = FrameDecoder(self.limits.max_answer)
                while True:
                    data = await stream.read(_READ)
                    if not data:
                        raise DhtError("the stream ended before an answer")
                    frames = decoder.feed(data)
                    if frames:
                        await stream.close()
                        return _parse(frames[0])
            except BaseException:
                with trio.CancelScope(shield=True):
                    await stream.reset()
                raise

    async def _dial(self, peer_id: str, addrs: Sequence[str]) -> None:
        last: Exception | None = None
        for addr in _dialable(addrs)[:3]:
            try:
                await self._host.connect(f"{addr}/p2p/{peer_id}")
                return
            except (NetError, ValueError) as exc:
                last = exc
        raise NetError(f"cannot dial {peer_id}: {last or 'no address'}")

    async def _ask(self, peer_id: str, addrs: Sequence[str], message: Any) -> Any | None:
        try:
            answer = await self._request(peer_id, addrs, message)
        except (NetError, DhtError, ProtocolError, trio.TooSlowError) as exc:
            self.stats.requests_failed += 1
            log.debug("dht: %s did not answer: %s", peer_id, exc)
            self._failed(peer_id)
            return None
        self.add_peer(peer_id, addrs)
        return answer

    def _is_gridnode(self, peer_id: str) -> bool:
        """Whether the peer said (in identify) that it speaks a gridnode protocol."""
        if self._network is None:
            return True
        try:
            protocols = self._network.peerstore.get_protocols(ID.from_base58(peer_id))
        except Exception:
            return False
        return any(str(p).startswith("/gridnode/") for p in protocols)

    async def _hang_up(self) -> None:
        """For ever: close the connections this DHT opened only to ask (to an IPFS DHT server,
        say) once neither side used them for ``dialled_idle_seconds``, so lookups do not fill
        the node's connections; a gridnode's is kept (the node syncs over it)."""
        idle = self.limits.dialled_idle_seconds
        while True:
            await trio.sleep(max(0.5, idle / 4))
            now = trio.current_time()
            for peer_id, last in list(self._dialled.items()):
                if peer_id not in self._host.peers():
                    del self._dialled[peer_id]
                elif now - last >= idle:
                    del self._dialled[peer_id]
                    if not self._is_gridnode(peer_id):
                        self.stats.hung_up += 1
                        await self._host.disconnect(peer_id)

    def _seeds(self, key: int) -> dict[str, tuple[str, ...]]:
        """Where a lookup starts: the closest peers of the table, and while the table holds
        fewer than k, the connected peers too (a probe that failed, say to a peer too busy to
        answer in time, must not leave a node that is connected unable to look anything up)."""
        seeds = {p: self._addrs_of(p) for p, _ in self.closest(key, self.limits.k)}
        if len(seeds) < self.limits.k:
            for peer in self._host.peers()[: self.limits.k]:
                if peer not in seeds:
                    seeds[peer] = self._addrs_of(peer)
        return seeds

    async def _lookup(
        self,
        key: bytes,
        message: Any,
        on_answer: Callable[[str, Any], bool] | None = None,
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Iterative lookup of ``key``: ask the closest peers known, ``alpha`` at a time, about
        ever closer ones, until the k closest have answered, ``on_answer`` says stop, or
        ``lookup_peers`` were asked. Returns the peers that answered, closest first."""
        self.stats.lookups += 1
        limits = self.limits
        target = kad_key(key)
        candidates = self._seeds(target)
        self.last_lookup_asked = asked = set[str]()
        answered: dict[str, tuple[str, ...]] = {}
        stop = False

        async def ask(peer: str) -> None:
            nonlocal stop
            answer = await self._ask(peer, candidates[peer], message)
            if answer is None:
                return
            answered[peer] = candidates[peer]
            for closer in list(answer.closerPeers)[: limits.k]:
                try:
                    other = _peer_text(bytes(closer.id))
                except DhtError:
                    continue
                addrs = _addrs(closer.addrs, limits.addrs_per_peer)
                if other != self._host.peer_id and other not in candidates and addrs:
                    candidates[other] = addrs
            if on_answer is not None and on_answer(peer, answer):
                stop = True

        with trio.move_on_after(limits.lookup_seconds):
            while not stop and len(asked) < limits.lookup_peers:
                ranked = sorted(candidates, key=lambda p: kad_key(peer_bytes(p)) ^ target)
                closest_k = ranked[: limits.k]
                if all(p in answered for p in closest_k):
                    break
                room = min(limits.alpha, limits.lookup_peers - len(asked))
                batch = [p for p in closest_k if p not in asked][:room]
                if not batch:
                    break
                asked.update(batch)
                async with trio.open_nursery() as nursery:
                    for peer in batch:
                        nursery.start_soon(ask, peer)
        ranked = sorted(answered, key=lambda p: kad_key(peer_bytes(p)) ^ target)
        return [(p, answered[p]) for p in ranked[: limits.k]]

    async def refresh(self) -> int:
        """Look up this node's own id (finds its neighbours, fills the table); the table size."""
        self._last_refresh = trio.current_time()
        await self._lookup(self._own, Message(type=Message.FIND_NODE, key=self._own))
        return self.table_size

    async def provide(self, cid: CID | str) -> int:
        """Tell the k peers closest to ``cid`` that this node holds it (and answer for it here);
        how many took the record."""
        key = CID.parse(cid).multihash
        self._providing.add(key)
        self.stats.provides += 1
        closest = await self._lookup(key, Message(type=Message.FIND_NODE, key=key))
        message = Message(type=Message.ADD_PROVIDER, key=key)
        self._add_peer(message.providerPeers.add(), self._host.peer_id, self._own_addrs())
        sent = 0

        async def send(peer: str, addrs: tuple[str, ...]) -> None:
            nonlocal sent
            try:
                await self._request(peer, addrs, message)
                sent += 1
            except (NetError, DhtError, ProtocolError, trio.TooSlowError) as exc:
                log.debug("dht: provide to %s failed: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer, addrs in closest:
                nursery.start_soon(send, peer, addrs)
        return sent

    def unprovide(self, cid: CID | str) -> None:
        """Stop answering for ``cid`` here (records sent to others expire on their own)."""
        self._providing.discard(CID.parse(cid).multihash)

    async def find_providers(self, cid: CID | str, count: int = 20) -> list[Provider]:
        """Peers that hold ``cid`` (not this node), from this node's records and a lookup; at
        most ``count``, those with addresses first."""
        key = CID.parse(cid).multihash
        found: dict[str, Provider] = {
            p.peer_id: p for p in self._local(key) if p.peer_id != self._host.peer_id
        }
        if len(found) < count:

            def on_answer(_peer: str, answer: Any) -> bool:
                for slot in list(answer.providerPeers)[: self.limits.k]:
                    try:
                        provider = _peer_text(bytes(slot.id))
                    except DhtError:
                        continue
                    if provider == self._host.peer_id:
                        continue
                    addrs = _addrs(slot.addrs, self.limits.addrs_per_peer)
                    known = found.get(provider)
                    if known is None or (addrs and not known.addrs):
                        found[provider] = Provider(provider, addrs)
                return len(found) >= count

            await self._lookup(key, Message(type=Message.GET_PROVIDERS, key=key), on_answer)
        self.stats.providers_found += len(found)
        ranked = sorted(found.values(), key=lambda p: not p.addrs)
        return ranked[:count]

    # -- learning peers ---------------------------------------------------------------------------

    def _on_connected(self, peer_id: str) -> None:
        if self._probe_send is None or peer_id == self._host.peer_id:
            return
        with suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._probe_send.send_nowait(peer_id)

    async def _probe(self, receive: trio.MemoryReceiveChannel[str]) -> None:
        """Each newly connected peer is asked for the peers near this node: one that answers is
        a DHT server and goes in the table; then (at most once a minute) a refresh."""
        async for peer_id in receive:
            if peer_id in self.table():
                continue
            answer = await self._ask(
                peer_id, self._addrs_of(peer_id), Message(type=Message.FIND_NODE, key=self._own)
            )
            if answer is None:
                continue
            if not self._refreshing and trio.current_time() - self._last_refresh > 60.0:
                self._refreshing = True
                try:
                    await self.refresh()
                finally:
                    self._refreshing = False

    async def _maintain(self) -> None:
        while True:
            await trio.sleep(self.config.refresh_interval)
            self.sweep()
            with trio.move_on_after(self.config.refresh_interval):
                await self.refresh()


def _parse(payload: bytes) -> Any:
    message = Message()
    try:
        message.ParseFromString(payload)
    except Exception as exc:
        raise DhtError(f"not a kad-dht message: {exc}") from None
    return message


class _Notifee:
    """py-libp2p's network notifications: a new connection is queued for a probe."""

    def __init__(self, dht: Dht) -> None:
        self._dht = dht

    async def connected(self, _network: Any, conn: Any) -> None:
        self._dht._on_connected(str(conn.muxed_conn.peer_id))

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


@asynccontextmanager
async def run_dht(host: Host, network: Any, config: DhtConfig) -> AsyncIterator[Dht]:
    """Run the DHT of ``host`` (``network``: py-libp2p's swarm, for connection notices) for the
    duration of the block."""
    dht = Dht(host, config)
    dht._network = network
    if config.auto:
        dht.mount((LAN_PROTOCOL,))
    elif config.serve:
        dht.mount()
    send, receive = trio.open_memory_channel[str](64)
    dht._probe_send = send
    network.register_notifee(_Notifee(dht))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dht._probe, receive)
        nursery.start_soon(dht._maintain)
        nursery.start_soon(dht._hang_up)
        if config.auto:
            nursery.start_soon(dht._follow_reachability)
        for peer in host.peers():
            dht._on_connected(peer)
        try:
            yield dht
        finally:
            dht._probe_send = None
            nursery.cancel_scope.cancel()
