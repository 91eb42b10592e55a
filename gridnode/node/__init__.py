"""The running node: storage, the libp2p host and replication, in one trio nursery.

    async with open_node(data_dir) as node:
        await node.write(address, [{"op": "put", "key": "k", "value": 1}])

Replication of each database:

- the node subscribes to the database's gossipsub topic and announces its heads there whenever
  they change and again every ``announce_interval`` seconds (anti-entropy: a peer that missed a
  message, or connected later, still hears of new heads);
- an announcement naming heads the node lacks makes it pull from that peer over
  ``/gridnode/sync/1.0.0`` (at most one pull per database and peer at a time; a pull asked for
  while one runs is run again right after);
- small head entries ride along inside announcements and are joined directly.

Gossip is a hint; the stream protocol is the delivery path. Every block is verified and judged by
the log before it is kept, whatever its path.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

from crdt.entry import Entry, decode_entry
from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from crdt.manifest import decode_manifest, parse_address
from gridnode import ops
from gridnode.errors import FeatureOff, InvalidRequest, UnknownDatabase
from gridnode.net import Host, Stream, open_host
from gridnode.net.bitswap import Bitswap
from gridnode.ops import CreateRequest
from gridnode.repo import ImportReport, Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker
from gridnode.node.sync import MAX_ASKS, PullReport, fetch_manifest, pull, serve
from protocols.gossip import (
    PEERS_TOPIC,
    Announcement,
    PeerRecord,
    parse_announcement,
    parse_peer_record,
    topic_for,
)
from protocols.sync import SyncStats
from protocols.wire import PROTOCOL_ID, ProtocolError

__all__ = [
    "MAX_EVENTS",
    "MAX_STRIKES",
    "Node",
    "NodeCounters",
    "NodeEvent",
    "NodeStats",
    "PeerSync",
    "open_node",
]

#: Protocol violations after which a peer is disconnected.
MAX_STRIKES = 3
#: Recent rejections and errors a node remembers (``Node.events``).
MAX_EVENTS = 200
#: (peer, database) pairs whose asked CIDs a node remembers (the oldest are forgotten first).
MAX_ASKED_PEERS = 1024
#: Peers (or bootstrap addresses) a node remembers to dial again when it has too few.
MAX_KNOWN_PEERS = 256
#: Seconds before the first redial of a lost peer; doubled after each failure, up to the most.
REDIAL_FIRST = 1.0
REDIAL_MOST = 300.0

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class PeerSync:
    """The last pull from one peer for one database."""

    peer: str
    address: str
    at: float = 0.0
    applied: int = 0
    rejected: int = 0
    round_trips: int = 0
    messages: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    entries_received: int = 0
    #: Bytes beyond the entry blocks themselves, both ways (framing, CIDs, reconciliation).
    overhead_bytes: int = 0
    complete: bool = False
    error: str | None = None
    #: Whether this pull is running; ``bytes_so_far`` is what it has received up to now.
    running: bool = False
    bytes_so_far: int = 0
    #: Totals over every pull from this peer for this database since the node started.
    pulls: int = 0
    total_applied: int = 0
    total_round_trips: int = 0
    total_messages: int = 0
    total_bytes_sent: int = 0
    total_bytes_received: int = 0
    total_entries_received: int = 0


@dataclass
class ServedTotals:
    """What this node served one peer (as the server side of its pulls) since it started."""

    streams: int = 0
    messages: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    entries_sent: int = 0


@dataclass(frozen=True)
class NodeEvent:
    """A rejection or an error, as the dashboard lists them (``Node.events``)."""

    #: Wall-clock time (seconds since the epoch).
    at: float
    #: ``rejected`` (an entry), ``refused`` (an announcement), ``sync-failed``, ``strike``,
    #: ``disconnected``, ``connect-failed``.
    kind: str
    text: str
    peer: str | None = None
    address: str | None = None


@dataclass
class NodeCounters:
    """Counts since the node started; they only grow (``GET /metrics``)."""

    #: Entries applied, by where they came from: ``write``, ``sync``, ``gossip``, ``import``.
    applied: Counter[str] = field(default_factory=Counter)
    #: Entries rejected, by reason (the error's class name, e.g. ``InvalidSignature``).
    rejected: Counter[str] = field(default_factory=Counter)
    gossip_received: int = 0
    gossip_published: int = 0
    sync_failures: int = 0


@dataclass
class NodeStats:
    """What a running node has done and seen since it started: what the API's ``/status``,
    ``/peers`` and ``/events``, the dashboard and ``/metrics`` read (and nothing else of the
    node's state)."""

    #: (peer, address) -> the last pull.
    syncs: dict[tuple[str, str], PeerSync] = field(default_factory=dict)
    #: What this node served each peer (the server side of their pulls).
    served: dict[str, ServedTotals] = field(default_factory=dict)
    #: Protocol violations per peer; at MAX_STRIKES the peer is disconnected.
    strikes: dict[str, int] = field(default_factory=dict)
    #: The last MAX_EVENTS rejections and errors, oldest first.
    events: deque[NodeEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    counters: NodeCounters = field(default_factory=NodeCounters)
    #: Gossip announcements refused by the topic validator.
    rejected_announcements: int = 0
    #: Bitswap's counters (``None`` when the config turns bitswap off).
    bitswap: Any = None


class _Metered:
    """A sync stream that counts the bytes a running pull has received so far."""

    def __init__(self, stream: Stream, status: PeerSync) -> None:
        self._stream = stream
        self._status = status

    async def read(self, max_bytes: int) -> bytes:
        data = await self._stream.read(max_bytes)
        self._status.bytes_so_far += len(data)
        return data

    async def write(self, data: bytes) -> None:
        await self._stream.write(data)

    async def close(self) -> None:
        await self._stream.close()


@dataclass
class _Replica:
    database: StoredDatabase
    topic: str
    running: set[str] = field(default_factory=set)
    again: set[str] = field(default_factory=set)
    subscription: Any = None
    #: A gap fill over bitswap is under way (:meth:`Node._fill_gaps`).
    filling: bool = False


class Node:
    """A running gridnode. Made by :func:`open_node`."""

    def __init__(
        self,
        repo: Repo,
        host: Host,
        nursery: trio.Nursery,
        *,
        announce_interval: float,
        target_peers: int = 8,
    ) -> None:
        self.repo = repo
        self.host = host
        self.worker = StorageWorker()
        self.announce_interval = announce_interval
        #: Connections the node seeks through peer exchange (it accepts more from others).
        self.target_peers = target_peers
        self._nursery = nursery
        self._replicas: dict[str, _Replica] = {}
        #: What the node has done and seen, for the API, the dashboard and /metrics.
        self.stats = NodeStats()
        #: (peer, address) -> how often each CID was asked of that peer (gridnode.node.sync.pull).
        self.asked: dict[tuple[str, str], dict[CID, int]] = {}
        #: Peers to dial again when below ``target_peers``: peer id (or, for a bootstrap address
        #: without one, the address) -> its multiaddrs. Bootstrap peers, peers dialled, peers
        #: named by peer records; not peers disconnected for protocol violations.
        self.known: dict[str, tuple[str, ...]] = {}
        self._redial: dict[str, tuple[float, float]] = {}
        self._dialing: set[str] = set()
        #: Bitswap with IPFS peers (``None`` when the config turns it off).
        self.bitswap: Bitswap | None = None

    def note(
        self, kind: str, text: str, *, peer: str | None = None, address: str | None = None
    ) -> None:
        """Remember a rejection or an error in :attr:`events`."""
        self.stats.events.append(NodeEvent(time.time(), kind, text, peer, address))

    def count_join(self, source: str, report: Any, *, peer: str | None = None) -> None:
        """Count what a join did (an :class:`~gridnode.repo.ImportReport` or a
        :class:`~gridnode.node.sync.PullReport`): applied by source, rejected by reason."""
        self.stats.counters.applied[source] += report.applied
        if report.applied and self.bitswap is not None:
            self.bitswap.blocks_added()
        for cid, reason in report.rejected:
            self.stats.counters.rejected[reason.split(":", 1)[0].strip() or "unknown"] += 1
            self.note("rejected", f"{cid}: {reason}", peer=peer, address=report.address)

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    @property
    def addrs(self) -> list[str]:
        return self.host.addrs

    def peers(self) -> list[str]:
        return self.host.peers()

    def remember(self, key: str, addrs: Sequence[str]) -> None:
        """Keep ``addrs`` of a peer (``key``: its id, or a bootstrap address) to dial it again
        whenever the node has fewer than ``target_peers`` connections."""
        if key == self.peer_id or self.stats.strikes.get(key, 0) >= MAX_STRIKES:
            return
        self.known.pop(key, None)
        while len(self.known) >= MAX_KNOWN_PEERS:
            del self.known[next(iter(self.known))]
        self.known[key] = tuple(addrs)[:8]

    async def connect(self, multiaddr: str) -> str | None:
        """Dial a peer; log and return ``None`` if it cannot be reached. A peer dialled (or
        tried) is remembered, and dialled again whenever it is lost (:meth:`remember`)."""
        key = _peer_of(multiaddr) or multiaddr
        if key not in self.known:
            self.remember(key, [multiaddr])
        try:
            peer = await self.host.connect(multiaddr)
        except GridnodeError as exc:
            log.warning("cannot connect to %s: %s", multiaddr, exc)
            self.note("connect-failed", f"{multiaddr}: {exc}")
            return None
        if key != peer:
            # A bootstrap address without a peer id: from now on known by the id it answered with.
            self.known.pop(key, None)
            self.remember(peer, [multiaddr])
        self._redial.pop(peer, None)
        log.info("connected to %s", peer)
        for address in list(self._replicas):
            self._nursery.start_soon(self._pull, peer, address)
        self._nursery.start_soon(self._publish_peer_record)
        return peer

    # -- databases ----------------------------------------------------------------------------

    def database(self, address: str) -> StoredDatabase:
        """A replicated database. Read it through :meth:`read` (or ``node.worker``) while the node
        runs: its storage is only ever used from the storage worker."""
        return self._replica(address).database

    async def read(self, address: str, fn: Callable[[StoredDatabase], T]) -> T:
        """``fn(database)`` in the storage worker, e.g. ``await node.read(a, lambda d: d.digest())``."""
        return await self.worker.run(fn, self._replica(address).database)

    def _replica(self, address: str) -> _Replica:
        canonical = "/gridnode/" + str(parse_address(address))
        return self._replicas[canonical]

    async def replicate(self, database: StoredDatabase) -> None:
        """Start replicating a database this node keeps."""
        if database.address in self._replicas:
            return
        if not await self.worker.run(self.repo.replicated, database.address):
            await self.worker.run(self.repo.set_replicated, database.address, True)
        replica = _Replica(database, topic_for(database.manifest.cid))
        self._replicas[database.address] = replica
        self.host.set_topic_validator(replica.topic, self._validator(database))
        subscription = replica.subscription = await self.host.subscribe(replica.topic)
        self._nursery.start_soon(self._listen, replica, subscription)
        for peer in self.peers():
            self._nursery.start_soon(self._pull, peer, database.address)
        await self.announce(database.address)

    def replicating(self, address: str) -> bool:
        """Whether this node replicates the database at ``address`` now."""
        try:
            return "/gridnode/" + str(parse_address(address)) in self._replicas
        except GridnodeError:
            return False

    async def unfollow(self, address: str) -> StoredDatabase:
        """Stop replicating a database: leave its gossip topic, start no more pulls of it. Its
        data stays, and so does the choice: the node's next start does not replicate it either,
        until :meth:`follow` or :meth:`replicate` does. Raises :class:`~gridnode.repo.UnknownDatabase` if it is not replicated."""
        canonical = "/gridnode/" + str(parse_address(address))
        replica = self._replicas.pop(canonical, None)
        if replica is None:
            raise UnknownDatabase(f"this node does not replicate {canonical}")
        if replica.subscription is not None:
            await replica.subscription.aclose()
        # Durable: the node's next start leaves it alone too.
        await self.worker.run(self.repo.set_replicated, canonical, False)
        log.info("stopped replicating %s", canonical)
        return replica.database

    def _validator(self, database: StoredDatabase) -> Any:
        db = database.manifest.cid

        def validate(peer: str, data: bytes) -> bool:
            try:
                parse_announcement(data, db)
            except ProtocolError as exc:
                self.stats.rejected_announcements += 1
                log.info("refused an announcement from %s: %s", peer, exc)
                self.note("refused", f"announcement: {exc}", peer=peer, address=database.address)
                return False
            return True

        return validate

    async def create(self, request: CreateRequest) -> StoredDatabase:
        """Create the database ``request`` describes, with this node's key as admin, and
        replicate it (:func:`gridnode.ops.create`)."""
        database = await self.worker.run(ops.create, self.repo, request)
        await self.replicate(database)
        return database

    async def create_database(
        self,
        name: str,
        store: str,
        *,
        writers: Sequence[str] = (),
        public: bool = False,
        indexes: Sequence[str] = (),
        index_by: str | None = None,
        private: bool = False,
    ) -> StoredDatabase:
        """:meth:`create` from arguments (checked as ``POST /db`` checks its body). ``private``:
        never serve its blocks to the IPFS world (:meth:`~gridnode.repo.Repo.private`)."""
        request = CreateRequest.from_json(
            {
                "name": name,
                "type": store,
                "writers": list(writers),
                "public": public,
                "indexes": list(indexes),
                "index_by": index_by,
                "private": private,
            }
        )
        return await self.create(request)

    async def follow(self, address: str, *, timeout: float = 30.0) -> StoredDatabase:
        """Keep and replicate a database another node has: fetch its manifest from a connected
        peer (verified against the address), then sync. Raises
        :class:`~gridnode.repo.UnknownDatabase` if no connected peer has it."""
        db = parse_address(address)
        canonical = "/gridnode/" + str(db)
        if canonical in self._replicas:
            return self._replicas[canonical].database
        try:
            database = await self.worker.run(self.repo.database, canonical)
        except UnknownDatabase:
            database = None
        if database is None:
            with trio.move_on_after(timeout):
                for peer in self.peers():
                    block = await self._fetch_manifest(peer, db)
                    if block is None:
                        continue
                    try:
                        manifest = decode_manifest(db, block)
                    except GridnodeError as exc:
                        log.warning("peer %s sent a bad manifest for %s: %s", peer, canonical, exc)
                        continue
                    database = await self.worker.run(self.repo.add_database, manifest)
                    break
        if database is None:
            raise UnknownDatabase(f"no connected peer keeps {canonical}")
        await self.replicate(database)
        return database

    async def restore(
        self, roots: Sequence[CID], peers: Sequence[str] | None = None, *, timeout: float = 120.0
    ) -> ImportReport:
        """Fetch a database from IPFS peers over bitswap and keep and replicate it.

        ``roots`` are the manifest's CID, then heads: the roots of the CAR ``gridnode export``
        writes and ``gridnode pin`` pins. The node asks ``peers`` (default: every connected
        peer) for them, then for every entry they link to (parents and skip links), level by
        level; everything received is hashed against its CID, and the entries are verified and
        joined as a CAR import is. Entries not found within ``timeout`` seconds stay missing
        (the database then waits for them like any other gap). Raises
        :class:`~gridnode.repo.UnknownDatabase` if the manifest cannot be had.
        """
        if self.bitswap is None:
            raise FeatureOff(
                "bitswap is off in this node's config: 'bitswap = true' in gridnode.toml turns it "
                "on (then restart the node)"
            )
        if not roots:
            raise InvalidRequest("restore needs the manifest's CID (then the heads)")
        asked = list(self.peers() if peers is None else peers)
        manifest_cid, heads = roots[0], list(dict.fromkeys(roots[1:]))
        deadline = trio.current_time() + timeout
        got = await self.bitswap.fetch(
            [manifest_cid, *heads], asked, timeout=max(0.0, deadline - trio.current_time())
        )
        block = got.pop(manifest_cid, None)
        if block is None:
            raise UnknownDatabase(f"no peer asked sent the manifest {manifest_cid}")
        manifest = decode_manifest(manifest_cid, block)
        report = ImportReport(address=manifest.address)
        try:
            existing: StoredDatabase | None = await self.worker.run(
                self.repo.database, manifest.address
            )
        except UnknownDatabase:
            existing = None
        entries = await self._walk(
            got, asked, deadline, report, None if existing is None else existing.unknown
        )
        if existing is None:
            database = await self.worker.run(self.repo.add_database, manifest)
        else:
            database = existing
        report = await self.worker.run(database.join_entries, entries, report)
        self.count_join("bitswap", report)
        await self.replicate(database)
        return report

    async def _walk(
        self,
        first: dict[CID, bytes],
        peers: Sequence[str],
        deadline: float,
        report: ImportReport,
        unknown: Callable[[list[CID]], list[CID]] | None = None,
    ) -> list[Entry]:
        """The entries ``first`` holds and every entry they link to (parents, skip links) that
        ``peers`` send over bitswap by ``deadline``, fetched level by level (newest first; the
        join puts parents first).

        Each level is verified (hash, structure, signature) off the event loop as it arrives,
        once: the links of a verified entry are what the walk follows, and the caller joins the
        verified entries as they are. An invalid block goes into ``report.rejected``. Given
        ``unknown`` (a database's :meth:`~gridnode.repo.StoredDatabase.unknown`), the walk does
        not fetch what the database already holds.
        """
        assert self.bitswap is not None

        def verify(level: list[tuple[CID, bytes]]) -> list[Entry]:
            verified = []
            for cid, data in level:
                try:
                    verified.append(decode_entry(cid, data))
                except GridnodeError as exc:
                    report.rejected.append((str(cid), f"{type(exc).__name__}: {exc}"))
            return verified

        entries: list[Entry] = []
        seen = set(first)
        level = list(first.items())
        while level:
            verified = await trio.to_thread.run_sync(verify, level)
            entries += verified
            links = []
            for entry in verified:
                for link in (*entry.next, *entry.skip):
                    if link not in seen:
                        seen.add(link)
                        links.append(link)
            if links and unknown is not None:
                links = await self.worker.run(unknown, links)
            left = deadline - trio.current_time()
            if not links or left <= 0:
                break
            level = list((await self.bitswap.fetch(links, peers, timeout=left)).items())
        return entries

    async def _fill_gaps(self, replica: _Replica) -> None:
        """Fetch over bitswap, from every connected peer, the parents that pending entries wait
        for (and their own past, as far as it is missing): when no gridnode peer has them any
        more, an IPFS node that pinned the database (Kubo, say) still may. Runs with the
        periodic announcements, for a database no pull is running for."""
        if self.bitswap is None or replica.filling or replica.running:
            return
        peers = self.peers()
        database = replica.database
        if not peers:
            return
        replica.filling = True
        try:
            missing = await self.worker.run(lambda: sorted(database.missing))
            if not missing:
                return
            deadline = trio.current_time() + GAP_FILL_SECONDS
            got = await self.bitswap.fetch(missing[:MAX_GAP_FILL], peers, timeout=GAP_ASK_SECONDS)
            if not got:
                return
            report = ImportReport(address=database.address)
            entries = await self._walk(got, peers, deadline, report, database.unknown)
            report = await self.worker.run(database.join_entries, entries, report)
            self.count_join("bitswap", report)
            log.info(
                "filled gaps of %s over bitswap: %d entries applied",
                database.address,
                report.applied,
            )
            if report.applied:
                await self.announce(database.address)
        except GridnodeError as exc:
            log.warning("filling the gaps of %s over bitswap: %s", database.address, exc)
        finally:
            replica.filling = False

    async def _fetch_manifest(self, peer: str, db: CID) -> bytes | None:
        try:
            with trio.fail_after(10):
                stream = await self.host.open_stream(peer, PROTOCOL_ID)
                try:
                    return await fetch_manifest(stream, db)
                finally:
                    await stream.close()
        except _EXCHANGE_FAILED as exc:
            log.info("no manifest of %s from %s: %s", db, peer, exc)
            return None

    async def write(
        self,
        ref: str,
        payloads: Sequence[Any],
        labels: Sequence[str] | None = None,
        *,
        meta: Mapping[str, str | int | bytes] | None = None,
    ) -> list[Entry]:
        """Write operations with the node key to the database ``ref`` (an address, a CID or a
        unique name): checked and committed by :func:`gridnode.ops.write` in the storage worker
        (durable when this returns), then counted and announced. Every writer of a running node
        comes here: the API, the embed facades, the seeder."""

        def check_and_write() -> tuple[StoredDatabase, list[Entry]]:
            database = ops.resolve(self.repo, ref)
            return database, ops.write(database, list(payloads), labels, meta=meta)

        database, entries = await self.worker.run(check_and_write)
        await self.replicate(database)
        self.stats.counters.applied["write"] += len(entries)
        if entries and self.bitswap is not None:
            self.bitswap.blocks_added()
        if entries:
            await self.announce(database.address)
        return entries

    async def import_car(self, data: bytes | memoryview) -> ImportReport:
        """Import a CAR (:func:`gridnode.ops.import_car`), replicate its database, announce what
        it added."""
        report = await self.worker.run(ops.import_car, self.repo, data)
        self.count_join("import", report)
        database = await self.worker.run(self.repo.database, report.address)
        await self.replicate(database)
        if report.applied:
            await self.announce(database.address)
        return report

    async def announce(self, address: str) -> None:
        """Publish this node's heads of a database (with small head entries inline); nothing
        for a database it no longer replicates."""
        replica = self._replicas.get("/gridnode/" + str(parse_address(address)))
        if replica is None:
            return
        database = replica.database

        def heads_and_blocks() -> tuple[list[Any], list[tuple[Any, bytes]]]:
            heads = list(database.heads)
            return heads, database.blocks_of(heads)

        heads, blocks = await self.worker.run(heads_and_blocks)
        if not heads:
            return
        message = Announcement(database.manifest.cid, tuple(heads), tuple(blocks)).encode()
        await self.host.publish(replica.topic, message)
        self.stats.counters.gossip_published += 1

    async def _announce_periodically(self) -> None:
        rounds = 0
        while True:
            await trio.sleep(self.announce_interval)
            for address in list(self._replicas):
                await self.announce(address)
                replica = self._replicas.get(address)
                if replica is not None and self.bitswap is not None:
                    self._nursery.start_soon(self._fill_gaps, replica)
            rounds += 1
            if rounds % 3 == 0:
                await self._publish_peer_record()

    # -- staying connected --------------------------------------------------------------------

    async def _keep_connected(self) -> None:
        """While below ``target_peers`` connections, dial known peers that are not connected:
        a peer lost (a restart, a network cut) is dialled again, a bootstrap peer that was not up
        yet too; each with its own backoff, from REDIAL_FIRST doubling to REDIAL_MOST seconds."""
        while True:
            await trio.sleep(REDIAL_FIRST / 2)
            connected = set(self.peers())
            if len(connected) >= self.target_peers:
                continue
            now = trio.current_time()
            for key, addrs in list(self.known.items()):
                if key in connected or key in self._dialing:
                    continue
                due, wait = self._redial.get(key, (now, REDIAL_FIRST))
                if now < due:
                    continue
                self._redial[key] = (now + wait, min(wait * 2, REDIAL_MOST))
                self._dialing.add(key)
                self._nursery.start_soon(self._redial_one, key, addrs)

    async def _redial_one(self, key: str, addrs: tuple[str, ...]) -> None:
        try:
            for addr in addrs:
                if await self.connect(addr) is not None:
                    log.info("reconnected to %s", key)
                    return
        finally:
            self._dialing.discard(key)

    # -- peer exchange ------------------------------------------------------------------------

    async def _publish_peer_record(self) -> None:
        await self.host.publish(PEERS_TOPIC, PeerRecord(self.peer_id, tuple(self.addrs)).encode())
        self.stats.counters.gossip_published += 1

    def _peer_record_validator(self, origin: str, data: bytes) -> bool:
        try:
            parse_peer_record(data, origin)
        except ProtocolError:
            return False
        return True

    async def _dial_discovered(self) -> None:
        """Dial gridnode nodes found on the LAN by mDNS, while below ``target_peers``."""
        async with self.host.discovered() as found:
            async for peer, addrs in found:
                if peer in self.peers() or len(self.peers()) >= self.target_peers:
                    continue
                for addr in addrs:
                    if await self.connect(addr) is not None:
                        log.info("found %s on the local network", peer)
                        break

    async def _exchange_peers(self, subscription: Any) -> None:
        """Dial peers other nodes' records name, while below ``target_peers`` connections."""
        async for origin, data in subscription:
            if origin != self.peer_id:
                self.stats.counters.gossip_received += 1
            if origin == self.peer_id:
                continue
            try:
                record = parse_peer_record(data, origin)
            except ProtocolError:
                continue
            full_addrs = [a if "/p2p/" in a else f"{a}/p2p/{origin}" for a in record.addrs]
            self.remember(origin, full_addrs)
            if origin in self.peers() or len(self.peers()) >= self.target_peers:
                continue
            for addr in record.addrs:
                full = addr if "/p2p/" in addr else f"{addr}/p2p/{origin}"
                if await self.connect(full) is not None:
                    log.info("learnt of %s through gossip", origin)
                    break

    # -- receiving ----------------------------------------------------------------------------

    async def _listen(self, replica: _Replica, subscription: Any) -> None:
        db = replica.database.manifest.cid
        async for peer, data in subscription:
            if peer == self.peer_id:
                continue
            self.stats.counters.gossip_received += 1
            try:
                announcement = parse_announcement(data, db)
            except ProtocolError:
                continue
            database = replica.database
            unknown = await self.worker.run(database.unknown, list(announcement.heads))
            if unknown:
                # Join the inline head entries we lack (a transaction only when there are some).
                lacking = set(unknown)
                inline = [(c, b) for c, b in announcement.blocks if c in lacking]
                if inline:
                    try:
                        joined = await self.worker.run(database.join_blocks, inline)
                    except GridnodeError as exc:
                        # The disk is full, say: this announcement is dropped, not the node.
                        log.warning(
                            "cannot keep entries gossiped for %s: %s", database.address, exc
                        )
                        self.note("store-failed", str(exc), peer=peer, address=database.address)
                        continue
                    self.count_join("gossip", joined, peer=peer)
                    unknown = await self.worker.run(database.unknown, list(announcement.heads))
            # Heads and parents this peer was asked for MAX_ASKS times in vain do not make us pull
            # again (it claims what it cannot serve, or nobody has them: orphans wait, bounded).
            given_up = self.asked.get((peer, database.address), {})
            unknown = [c for c in unknown if given_up.get(c, 0) < MAX_ASKS]
            missing = await self.worker.run(_has_missing, database, given_up)
            if unknown or missing:
                self._nursery.start_soon(self._pull, peer, database.address)

    async def _pull(self, peer: str, address: str) -> None:
        replica = self._replicas.get(address)
        if replica is None:
            return
        if peer in replica.running:
            replica.again.add(peer)
            return
        replica.running.add(peer)
        try:
            while True:
                replica.again.discard(peer)
                report = await self._pull_once(peer, replica.database)
                if report is not None and report.applied:
                    await self.announce(address)
                if peer not in replica.again:
                    return
        finally:
            replica.running.discard(peer)

    async def _pull_once(self, peer: str, database: StoredDatabase) -> PullReport | None:
        previous = self.stats.syncs.get((peer, database.address))
        status = PeerSync(peer, database.address, at=trio.current_time())
        if previous is not None:
            status.pulls = previous.pulls
            status.total_applied = previous.total_applied
            status.total_round_trips = previous.total_round_trips
            status.total_messages = previous.total_messages
            status.total_bytes_sent = previous.total_bytes_sent
            status.total_bytes_received = previous.total_bytes_received
            status.total_entries_received = previous.total_entries_received
        status.pulls += 1
        status.running = True
        self.stats.syncs[(peer, database.address)] = status
        _bound(self.stats.syncs)
        try:
            with trio.fail_after(300):
                stream = await self.host.open_stream(peer, PROTOCOL_ID)
                try:
                    report = await pull(
                        _Metered(stream, status),
                        database,
                        self.worker,
                        asked=self._asked_of(peer, database.address),
                    )
                finally:
                    await stream.close()
        except ProtocolError as exc:
            status.error = f"{type(exc).__name__}: {exc}"
            self.stats.counters.sync_failures += 1
            self.note("sync-failed", status.error, peer=peer, address=database.address)
            await self._strike(peer, status.error)
            return None
        except _EXCHANGE_FAILED as exc:
            status.error = f"{type(exc).__name__}: {exc}"
            log.info("sync of %s with %s failed: %s", database.address, peer, status.error)
            self.stats.counters.sync_failures += 1
            self.note("sync-failed", status.error, peer=peer, address=database.address)
            return None
        finally:
            status.running = False
        self.count_join("sync", report, peer=peer)
        status.applied = report.applied
        status.rejected = len(report.rejected)
        stats = report.stats
        status.round_trips = stats.round_trips
        status.messages = stats.messages_sent + stats.messages_received
        status.bytes_sent = stats.bytes_sent
        status.bytes_received = stats.bytes_received
        status.entries_received = stats.blocks_received
        status.overhead_bytes = stats.overhead_bytes
        status.complete = report.complete
        status.total_applied += report.applied
        status.total_round_trips += stats.round_trips
        status.total_messages += status.messages
        status.total_bytes_sent += stats.bytes_sent
        status.total_bytes_received += stats.bytes_received
        status.total_entries_received += stats.blocks_received
        if report.applied or report.rejected:
            log.info(
                "synced %s from %s: %d applied, %d rejected, %d round trips",
                database.address,
                peer,
                report.applied,
                len(report.rejected),
                report.stats.round_trips,
            )
        return report

    def _asked_of(self, peer: str, address: str) -> dict[CID, int]:
        key = (peer, address)
        found = self.asked.pop(key, None)
        while len(self.asked) >= MAX_ASKED_PEERS:
            del self.asked[next(iter(self.asked))]
        found = self.asked[key] = {} if found is None else found
        return found

    async def _strike(self, peer: str, reason: str) -> None:
        """Count a protocol violation; disconnect a peer that keeps misbehaving."""
        strikes = self.stats.strikes[peer] = self.stats.strikes.get(peer, 0) + 1
        _bound(self.stats.strikes)
        log.info("protocol violation by %s (%d/%d): %s", peer, strikes, MAX_STRIKES, reason)
        self.note("strike", f"protocol violation {strikes}/{MAX_STRIKES}: {reason}", peer=peer)
        if strikes >= MAX_STRIKES:
            log.warning("disconnecting %s after %d protocol violations", peer, strikes)
            self.note("disconnected", f"after {strikes} protocol violations", peer=peer)
            self.known.pop(peer, None)  # and not dialled again
            await self.host.disconnect(peer)

    async def _serve_stream(self, stream: Stream) -> None:
        stats = SyncStats()
        try:
            await serve(stream, self.repo, self.worker, stats=stats)
        except ProtocolError as exc:
            await stream.reset()
            await self._strike(stream.remote_peer_id, str(exc))
        except (GridnodeError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("sync stream from %s ended: %s", stream.remote_peer_id, exc)
        else:
            await stream.close()
        finally:
            served = self.stats.served.setdefault(stream.remote_peer_id, ServedTotals())
            _bound(self.stats.served)
            served.streams += 1
            served.messages += stats.messages_sent + stats.messages_received
            served.bytes_sent += stats.bytes_sent
            served.bytes_received += stats.bytes_received
            served.entries_sent += stats.blocks_sent


#: How an exchange with a peer fails without it breaking the protocol: bad or refused input, a
#: time limit, a stream that went away.
_EXCHANGE_FAILED = (
    GridnodeError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)

#: Gap filling over bitswap: missing parents asked for at once, how long peers have to answer
#: that first ask, and how long the whole fill (the walk down the missing past) may take.
MAX_GAP_FILL = 1024
GAP_ASK_SECONDS = 5.0
GAP_FILL_SECONDS = 60.0


#: Per-peer records (strikes, syncs, what was served) kept at most; the oldest go first, so a
#: peer coming back under ever new keys cannot grow them without end.
MAX_PEER_RECORDS = 4096


def _bound(records: dict[Any, Any]) -> None:
    while len(records) > MAX_PEER_RECORDS:
        del records[next(iter(records))]


def _peer_of(multiaddr: str) -> str | None:
    """The peer id a multiaddr ends with (``.../p2p/<id>``), if any."""
    _head, sep, tail = multiaddr.rpartition("/p2p/")
    return tail.split("/", 1)[0] if sep and tail else None


def _has_missing(database: StoredDatabase, given_up: dict[CID, int]) -> bool:
    return any(given_up.get(c, 0) < MAX_ASKS for c in database.missing)


@asynccontextmanager
async def open_node(
    data_dir: Path,
    *,
    listen: Sequence[str] | None = None,
    bootstrap: Sequence[str] | None = None,
    announce_interval: float | None = None,
    target_peers: int | None = None,
) -> AsyncIterator[Node]:
    """Open the data directory (initialising it if new), start the host and replicate every
    database in it. Leaving the block closes everything, cleanly. Arguments left ``None``
    come from the data directory's config (``gridnode.toml``, docs/config.md)."""
    repo = await trio.to_thread.run_sync(Repo, data_dir)
    try:
        config = repo.config
        if announce_interval is None:
            announce_interval = config.announce_interval
        if target_peers is None:
            target_peers = config.target_peers
        async with (
            open_host(
                repo.keypair.seed,
                list(listen or config.listen),
                max_connections=config.max_connections,
                mdns=config.mdns,
            ) as host,
            trio.open_nursery() as nursery,
        ):
            node = Node(
                repo, host, nursery, announce_interval=announce_interval, target_peers=target_peers
            )
            host.set_stream_handler(PROTOCOL_ID, node._serve_stream)
            if config.bitswap:
                node.bitswap = Bitswap(
                    host,
                    nursery,
                    lambda cids: node.worker.run(repo.served_blocks, cids),
                    violation=node._strike,
                )
                node.bitswap.mount()
                node.stats.bitswap = node.bitswap.stats
            host.set_topic_validator(PEERS_TOPIC, node._peer_record_validator)
            nursery.start_soon(node._exchange_peers, await host.subscribe(PEERS_TOPIC))
            for address, _name, _store in repo.databases():
                try:
                    database = repo.database(address)
                except GridnodeError as exc:
                    # Kept, but its store cannot open (options it cannot use): the node runs
                    # without it rather than not at all.
                    log.error("not replicating %s: %s", address, exc)
                    node.note("refused", f"cannot open the database: {exc}", address=address)
                    continue
                if not repo.replicated(address):
                    log.info("not replicating %s: unfollowed", address)
                    continue
                await node.replicate(database)
            for multiaddr in bootstrap if bootstrap is not None else config.bootstrap:
                nursery.start_soon(node.connect, multiaddr)
            nursery.start_soon(node._keep_connected)
            if math.isfinite(announce_interval):
                nursery.start_soon(node._announce_periodically)
            if host.mdns:
                nursery.start_soon(node._dial_discovered)
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()
    finally:
        repo.close()
