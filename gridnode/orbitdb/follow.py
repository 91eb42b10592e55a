"""Following OrbitDB databases: heads in, blocks fetched and verified, kept, served back.

For each followed database (address ``/orbitdb/<cid>``) the node:

- subscribes to the gossipsub topic named by the address (OrbitDB publishes each new head entry
  block there) and serves ``/orbitdb/heads/orbitdb/<cid>`` (:mod:`protocols.orbitdb`): on a
  stream either side opens, both write their head blocks raw, then close;
- runs the heads exchange itself with every peer it connects to and, every
  :attr:`OrbitFollower.interval` seconds, with every peer subscribed to the topic and every peer
  it was told to follow from. @orbitdb/core 4.0.0 exchanges heads once per peer and never
  re-announces (orbitdb #1255): gridnode's anti-entropy does not wait for it;
- fetches the manifest, the IPFS access controller, the identities and every entry reachable from
  the heads (``next`` and ``refs``) over bitswap from the peers that offered them and the topic's
  peers, in parallel batches, bounded per round (:mod:`gridnode.orbitdb.ingest`);
- verifies each with :mod:`crdt.orbitdb` (hash, strict shape, identity signatures, the entry's
  key is its identity's key, write access, the log id, the clock against its ``next``), in clock
  order so a child is taken only after its parents; an entry whose parent was refused is refused
  too; an entry whose parents could not be fetched yet waits for the next exchange;
- keeps what verifies (:mod:`gridnode.storage.orbitdb`), which bitswap then serves to anyone, and
  materialises the log (:class:`crdt.orbitdb.stores.Materialiser`) for ``db get/query/iter``.

Refusals are counted per reason and per peer (:class:`OrbitStats`), logged a few lines per
interval (:class:`~gridnode.logs.LogLimiter`) and noted in the node's events; a malformed heads
stream strikes the peer. Gridnode never writes an OrbitDB entry.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

from crdt.errors import GridnodeError, InvalidOrbitAddress, OrbitError
from crdt.ipld.cid import CID
from crdt.orbitdb.address import format_address, format_hash, parse_address
from crdt.orbitdb.blocks import (
    decode_access,
    decode_manifest,
)
from crdt.orbitdb.log import OrbitLog
from gridnode.errors import FeatureOff, NetError, ProtocolNotSupported, UnknownDatabase
from gridnode.logs import LogLimiter
from gridnode.net.bitswap import Bitswap
from gridnode.net.host import Host
from gridnode.net.stream import Stream
from gridnode.node.budget import Budgets
from gridnode.orbitdb.ingest import OrbitIngest
from gridnode.orbitdb.state import Note, OrbitReplica, OrbitStats, Strike
from gridnode.repo import Repo
from gridnode.storage.worker import StorageWorker
from protocols.errors import OrbitHeadsError
from protocols.orbitdb import MAX_HEADS, MAX_HEADS_BYTES, heads_protocol, split_items

__all__ = ["OrbitFollower", "OrbitReplica", "OrbitStats"]

log = logging.getLogger(__name__)

#: Seconds between two heads exchanges with the topic's peers (anti-entropy).
EXCHANGE_INTERVAL: Final = 30.0
#: Seconds after a connection before the heads exchange with it (its gossipsub subscriptions,
#: which say which databases it has, come first).
CONNECT_SETTLE: Final = 1.0
#: Seconds one heads stream may take, both ways.
HEADS_TIMEOUT: Final = 20.0
#: Head blocks waiting to be taken in, per database.
MAX_QUEUED_HEADS: Final = 1024
#: Rounds of anti-entropy between two dials of a named peer that could not be dialled.
REDIAL_ROUNDS: Final = 10
#: Heads streams one peer may have open to this node at once (over all databases).
MAX_STREAMS_PER_PEER: Final = 4
#: Peers whose refusals are counted one by one (the total counts every refusal).
MAX_PEERS_COUNTED: Final = 4096
#: Heads exchanges running at once, over all databases and peers.
MAX_EXCHANGES: Final = 8


class OrbitFollower:
    """The OrbitDB databases a node follows (``node.orbitdb``)."""

    def __init__(
        self,
        repo: Repo,
        host: Host,
        nursery: trio.Nursery,
        worker: StorageWorker,
        bitswap: Bitswap | None,
        *,
        strike: Strike | None = None,
        note: Note | None = None,
        connect: Callable[[str], Awaitable[str | None]] | None = None,
        budgets: Budgets | None = None,
        interval: float = EXCHANGE_INTERVAL,
    ) -> None:
        self._repo = repo
        self._host = host
        self._nursery = nursery
        self._worker = worker
        self._bitswap = bitswap
        self._strike = strike
        self._note = note
        self._connect = connect
        #: The node's per-peer budgets: head bytes sent and the storage work of taking in what
        #: a peer offered are charged to that peer.
        self._budgets = budgets
        #: Seconds between two rounds of anti-entropy with the topic's peers.
        self.interval = interval
        #: Whether new heads learnt another way than the topic are published on it.
        self.announce = True
        self.replicas: dict[str, OrbitReplica] = {}
        self.stats = OrbitStats()
        self._limiter = LogLimiter()
        self._exchanges = trio.Semaphore(MAX_EXCHANGES)
        #: Heads streams each peer has open to this node now.
        self._streams_in: Counter[str] = Counter()
        #: When a named peer that could not be dialled may be dialled again.
        self._redial: dict[str, float] = {}
        #: Fetching, verifying and keeping what heads reach (a room of its own).
        self._ingest = OrbitIngest(
            repo,
            host,
            worker,
            bitswap,
            self.stats,
            refuse=self._refuse,
            peers_of=self._peers_of,
            budgets=budgets,
        )

    # -- life -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow every database the data directory follows, and exchange heads with every
        peer that connects."""
        self._host.watch_connections(self._peer_connected)
        for address, peers, _created in await self._worker.run(self._repo.orbit.follows):
            self._launch(address, peers)

    def _peer_connected(self, peer: str) -> None:
        if self.replicas:
            self._nursery.start_soon(self._connected_round, peer)

    async def _connected_round(self, peer: str) -> None:
        """Heads with a peer that just connected, for each followed database it subscribes to
        (or that a follow named it for), once its subscriptions had time to arrive."""
        await trio.sleep(CONNECT_SETTLE)
        for replica in list(self.replicas.values()):
            if peer in self._host.topic_peers(replica.address) or peer in self._peers_of(replica):
                self._nursery.start_soon(self._exchange, replica, peer)

    def _launch(self, address: str, peers: Sequence[str]) -> OrbitReplica:
        replica = OrbitReplica(address, list(peers))
        self.replicas[address] = replica
        self._nursery.start_soon(self._run, replica)
        return replica

    async def follow(
        self,
        address: str,
        peers: Sequence[str] = (),
        *,
        timeout: float = 30.0,
        for_catalog: bool = False,
    ) -> dict[str, Any]:
        """Follow ``address`` (``/orbitdb/<cid>``), dialling ``peers`` (multiaddrs) for it;
        wait up to ``timeout`` seconds for its first entries; its summary. ``for_catalog``: a
        catalog lists it (it is unfollowed when no followed catalog does, unless followed by
        hand too).

        Raises :class:`~crdt.errors.InvalidOrbitAddress` for a malformed address,
        :class:`~gridnode.errors.FeatureOff` if the config turns bitswap off."""
        address = format_address(parse_address(address))
        if self._bitswap is None:
            raise FeatureOff("bitswap is off in the config: OrbitDB databases come over bitswap")
        await self._worker.run(
            functools.partial(
                self._repo.orbit.follow, address, list(peers), time.time(), catalog=for_catalog
            )
        )
        replica = self.replicas.get(address)
        if replica is None:
            replica = self._launch(address, peers)
        else:
            replica.peers = list(peers)
            replica.wake.set()  # a round of heads exchanges now
        with trio.move_on_after(timeout):
            for multiaddr in peers:
                await self._dial(multiaddr)
            while replica.view is None or not len(replica.view):
                await replica.changed.wait()
        return replica.summary()

    async def unfollow(self, address: str) -> dict[str, Any]:
        """Stop following ``address`` and forget its blocks; its last summary."""
        address = format_address(parse_address(address))
        replica = self.replicas.pop(address, None)
        if replica is not None:
            # Its tasks stop first (a write of its blocks under way ends before the delete,
            # which waits its turn in the storage worker behind it).
            replica.scope.cancel()
        known = await self._worker.run(self._repo.orbit.unfollow, address)
        if replica is None and not known:
            raise UnknownDatabase(f"not following {address}")
        return replica.summary() if replica is not None else {"address": address}

    def summaries(self) -> list[dict[str, Any]]:
        """Every followed database's summary."""
        return [replica.summary() for replica in self.replicas.values()]

    def replica(self, address: str) -> OrbitReplica:
        """The followed database at ``address`` (raises UnknownDatabase)."""
        try:
            address = format_address(parse_address(address))
        except InvalidOrbitAddress as exc:
            raise UnknownDatabase(str(exc)) from exc
        replica = self.replicas.get(address)
        if replica is None:
            raise UnknownDatabase(f"not following {address}")
        return replica

    async def _dial(self, multiaddr: str) -> None:
        """Dial a peer a follow named, unless connected already or failed lately (a writer
        that is gone is tried again every :data:`REDIAL_ROUNDS` rounds, not every round)."""
        if self._connect is None:
            return
        peer = multiaddr.rsplit("/p2p/", 1)[-1] if "/p2p/" in multiaddr else None
        if peer is not None and peer in self._host.peers():
            return
        now = trio.current_time()
        if now < self._redial.get(multiaddr, -1.0):
            return
        try:
            connected = await self._connect(multiaddr)
        except GridnodeError as exc:
            connected = None
            log.info("orbitdb: cannot dial %s: %s", multiaddr, exc)
        if connected is None:
            self._redial[multiaddr] = now + REDIAL_ROUNDS * max(self.interval, 1.0)
        else:
            self._redial.pop(multiaddr, None)

    # -- one database ---------------------------------------------------------------------------

    async def _run(self, replica: OrbitReplica) -> None:
        address = replica.address
        protocol = heads_protocol(address)
        with replica.scope:
            self._host.set_stream_handler(protocol, lambda s: self._serve_heads(replica, s))
            try:
                await self._load(replica)
                subscription = await self._host.subscribe(address)
                async with subscription, trio.open_nursery() as nursery:
                    nursery.start_soon(self._gossip, replica, subscription)
                    nursery.start_soon(self._take_in, replica)
                    nursery.start_soon(self._anti_entropy, replica)
            finally:
                self._host.remove_stream_handler(protocol)

    async def _load(self, replica: OrbitReplica) -> None:
        """The blocks kept for ``replica`` into memory (each decoded and verified again)."""
        address = replica.address
        kept: dict[str, list[tuple[bytes, bytes]]] = {}
        for kind in ("manifest", "access", "identity", "entry"):
            kept[kind] = await self._worker.run(self._repo.orbit.blocks, address, kind)
        if not kept["manifest"] or not kept["access"]:
            return
        (mcid, mblock), (acid, ablock) = kept["manifest"][0], kept["access"][0]

        def rebuild() -> OrbitLog:
            log_ = OrbitLog(
                decode_manifest(CID.parse(mcid), mblock), decode_access(CID.parse(acid), ablock)
            )
            for cid, block in kept["identity"]:
                log_.add_identity(CID.parse(cid), block)
            for cid, block in kept["entry"]:  # any order: the log waits for parents
                log_.add_entry(CID.parse(cid), block)
            return log_

        try:
            replica.log = await trio.to_thread.run_sync(rebuild)
        except (OrbitError, ValueError) as exc:
            log.error("orbitdb: the blocks kept for %s do not verify: %s", address, exc)
            replica.error = f"kept blocks do not verify: {exc}"
            return
        replica._changed()

    async def _gossip(self, replica: OrbitReplica, subscription: Any) -> None:
        async for message in subscription:
            self.stats.gossip_heads += 1
            peers = [message.peer_id]
            forwarder = getattr(message, "forwarder", None)
            if forwarder and forwarder != message.peer_id:
                peers.insert(0, forwarder)
            self._queue(replica, [message.data], peers, gossiped=True)

    def _queue(
        self,
        replica: OrbitReplica,
        blocks: Sequence[bytes],
        peers: Sequence[str],
        *,
        gossiped: bool = False,
    ) -> None:
        """Heads heard, to be taken in by the database's one ingesting task (bounded).
        ``gossiped``: heard on the topic (gossipsub forwards those itself)."""
        for block in blocks:
            if len(replica.queued) >= MAX_QUEUED_HEADS:
                self.stats.heads_dropped += 1
                break
            replica.queued.setdefault(
                format_hash(CID.for_block(block, "dag-cbor")), (block, tuple(peers), gossiped)
            )
        replica.more.set()

    async def _take_in(self, replica: OrbitReplica) -> None:
        """The database's ingesting task: the queued heads, a batch at a time."""
        while True:
            await replica.more.wait()
            replica.more = trio.Event()
            while replica.queued:
                batch, replica.queued = replica.queued, {}
                by_peers: dict[tuple[tuple[str, ...], bool], list[bytes]] = {}
                for block, peers, gossiped in batch.values():
                    by_peers.setdefault((peers, gossiped), []).append(block)
                for (peers, gossiped), blocks in by_peers.items():
                    await self._ingest.ingest(
                        replica, blocks, peers, announce=not gossiped and self.announce
                    )

    async def _anti_entropy(self, replica: OrbitReplica) -> None:
        while True:
            for multiaddr in replica.peers:
                await self._dial(multiaddr)
            peers = set(self._host.topic_peers(replica.address))
            peers.update(self._peers_of(replica))
            async with trio.open_nursery() as nursery:
                for peer in sorted(peers):
                    nursery.start_soon(self._exchange, replica, peer)
            with trio.move_on_after(self.interval):
                await replica.wake.wait()
            replica.wake = trio.Event()

    def _peers_of(self, replica: OrbitReplica) -> list[str]:
        """Connected peers among those the follow named (by their ``/p2p/`` part)."""
        connected = set(self._host.peers())
        named = [m.rsplit("/p2p/", 1)[-1] for m in replica.peers if "/p2p/" in m]
        return [p for p in named if p in connected]

    # -- the heads protocol -----------------------------------------------------------------------

    async def _exchange(self, replica: OrbitReplica, peer: str) -> None:
        """Open the heads protocol to ``peer``: send ours, read theirs, take them in."""
        if replica.scope.cancel_called:
            return
        async with self._exchanges:
            try:
                with trio.fail_after(HEADS_TIMEOUT):
                    stream = await self._host.open_stream(peer, heads_protocol(replica.address))
            except ProtocolNotSupported:
                return  # it does not have this database open
            except (NetError, trio.TooSlowError) as exc:
                log.debug("orbitdb: heads with %s: %s", peer, exc)
                return
            heads = await self._talk(replica, stream)
            await stream.close()  # ours: released (a reset one stays reset)
            self.stats.heads_exchanges += 1
        if heads:
            self._queue(replica, heads, [peer])

    async def _serve_heads(self, replica: OrbitReplica, stream: Stream) -> None:
        peer = stream.remote_peer_id
        if self._streams_in[peer] >= MAX_STREAMS_PER_PEER:
            self.stats.bad_streams += 1
            self._refuse(replica, peer, "OrbitHeadsError", "too many heads streams at once")
            await stream.reset()
            return
        self._streams_in[peer] += 1
        try:
            heads = await self._talk(replica, stream)
        finally:
            self._streams_in[peer] -= 1
            if not self._streams_in[peer]:
                del self._streams_in[peer]
        self.stats.heads_exchanges += 1
        if heads:
            self._queue(replica, heads, [stream.remote_peer_id])

    async def _talk(self, replica: OrbitReplica, stream: Stream) -> list[bytes]:
        """Write our head blocks one by one and close our side, while reading the peer's up to
        its end (bounded): the peer's head blocks."""
        peer = stream.remote_peer_id
        received = bytearray()
        failed: list[str] = []

        async def send() -> None:
            heads = [] if replica.log is None else replica.log.heads()
            try:
                for entry in heads[:MAX_HEADS]:
                    if self._budgets is not None:
                        await self._budgets.send(peer, len(entry.block))
                    await stream.write(entry.block)
                    self.stats.heads_sent += 1
                await stream.close_write()
            except NetError as exc:
                broken.append(str(exc))

        async def receive() -> None:
            try:
                while True:
                    chunk = await stream.read(65536)
                    if not chunk:
                        return
                    received.extend(chunk)
                    if len(received) > MAX_HEADS_BYTES:
                        failed.append(f"more than {MAX_HEADS_BYTES} bytes of heads")
                        return
            except NetError as exc:
                broken.append(str(exc))

        broken: list[str] = []
        heads: list[bytes] = []
        with trio.move_on_after(HEADS_TIMEOUT) as timer:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                nursery.start_soon(receive)
        if timer.cancelled_caught:
            failed.append(f"no end within {HEADS_TIMEOUT:g} s")
        if broken and not failed:
            log.debug("orbitdb: heads stream with %s: %s", peer, broken[0])
            await stream.reset()
            return []
        if not failed:
            try:
                heads = split_items(bytes(received))
            except OrbitHeadsError as exc:
                failed.append(str(exc))
        if failed:
            self.stats.bad_streams += 1
            self._refuse(replica, peer, "OrbitHeadsError", failed[0])
            await stream.reset()
            if self._strike is not None:
                await self._strike(peer, f"orbitdb heads: {failed[0]}")
            return []
        self.stats.heads_received += len(heads)
        return heads

    # -- refusals ------------------------------------------------------------------------------

    def _refuse(self, replica: OrbitReplica, peer: str | None, reason: str, text: str) -> None:
        self.stats.refused[reason] += 1
        replica.refused += 1
        by_peer = self.stats.refused_by_peer
        if peer is not None and (peer in by_peer or len(by_peer) < MAX_PEERS_COUNTED):
            by_peer[peer] += 1
        if self._limiter.allow(replica.address, time.monotonic()):
            log.warning(
                "orbitdb: refused for %s from %s: %s: %s", replica.address, peer, reason, text
            )
        if self._note is not None:
            self._note("orbitdb", f"{reason}: {text}", peer=peer, address=replica.address)

    # -- answers --------------------------------------------------------------------------------

    def answer(self, address: str, op: str, key: Any = None, amount: int = -1) -> Any:
        """What OrbitDB's ``all()`` (``op='all'``), ``get(key)`` or ``iterator({amount})``
        answers for the followed database at ``address``."""
        replica = self.replica(address)
        view = replica.view
        if view is None:
            raise UnknownDatabase(
                f"{replica.address} is followed, but no peer has sent its manifest yet"
            )
        kind = replica.manifest.type if replica.manifest is not None else ""
        if op == "all":
            return view.events_all() if kind == "events" else view.all()
        if op == "get":
            return view.get(key)
        if op == "iter":
            if kind == "events":
                return view.events_iterator(amount)
            if kind == "documents":
                return view.documents_iterator(amount)
            return view.all()
        raise ValueError(f"unknown OrbitDB answer {op!r}")
