"""The running node: storage, the libp2p host and replication, in one trio nursery.

    async with open_node(data_dir) as node:
        await node.write(address, [{"op": "put", "key": "k", "value": 1}])

:class:`Node` is a facade: what the API, the embed facades, the seeder and the CLI call. It does
one thing itself, the write (below); everything else it hands to a room with one job:

- :mod:`~gridnode.node.peers` (``node.peering``): dialing, known peers and redial with backoff,
  peer exchange, mDNS, strikes and disconnecting;
- :mod:`~gridnode.node.replication` (``node.replication``): the replicas, their gossip topics and
  validators, announcing, pulls, serving the sync stream;
- :mod:`~gridnode.node.sync`: the sync stream's driver (puller and server) the replication room
  runs;
- :mod:`~gridnode.node.restore` (``node.restorer``): bitswap restores and gap filling;
- :mod:`~gridnode.node.replicas` (``node.replicas``): this node's signed replica statements
  and what it heard of its peers' (who holds what);
- :mod:`~gridnode.node.catalogs` (``node.catalogs``): the followed catalogs, and the databases
  they make the node follow and unfollow;
- :mod:`~gridnode.node.files` (``node.files``): the files and directories the catalogs list (and
  the databases with ``pinLinks`` link to), fetched over bitswap and pinned;
- :mod:`~gridnode.node.stats` (``node.stats``): what the node has done and seen, the one thing of
  it the API, the dashboard and ``/metrics`` read;
- :mod:`~gridnode.node.history` (``node.history``, also ``stats.history``): the last hour of the
  node's counters and its peers' latency, for the dashboard's charts.

The rooms talk through this facade or through what they are made with, never through each other's
private state; nothing outside this package reaches a private attribute of :class:`Node`.

**One write path.** :meth:`Node.write` runs :func:`gridnode.ops.write` (checks, then the commit)
in the storage worker, then replicates, counts, tells bitswap and announces. It is the only place
a running node writes: the API, the embed facades and the seeder all come here.

**One node per data directory.** :func:`open_node` holds ``DATA_DIR/node.lock`` exclusively
(:func:`gridnode.datadir.node_lock`) for the node's whole life, so a second node on the same
directory, in this process or another, raises :class:`~gridnode.errors.NodeUnavailable` instead of
writing behind the first one's back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from crdt.entry import Entry
from crdt.ipld.cid import CID
from gridnode import ops
from gridnode.datadir import node_lock
from gridnode.errors import UnknownDatabase
from gridnode.files.fetch import FetchProgress
from gridnode.net import Host, RelayLimits, open_host
from gridnode.net.bitswap import Bitswap
from gridnode.net.dht import DhtConfig
from gridnode.node.budget import Budgets
from gridnode.node.catalogs import Catalogs
from gridnode.node.files import FileReplication
from gridnode.node.history import History
from gridnode.node.peers import MAX_STRIKES, Peering
from gridnode.node.providers import Providers
from gridnode.node.reachability import meet_through_relays, republish_on_change
from gridnode.node.replicas import ReplicaStatements
from gridnode.node.replication import Replication
from gridnode.node.restore import Restorer
from gridnode.node.snapshots import Snapshots
from gridnode.node.stats import (
    MAX_EVENTS,
    NodeCounters,
    NodeEvent,
    NodeStats,
    PeerSync,
    ServedTotals,
)
from gridnode.node.sync import PullReport
from gridnode.node.writes import GroupCommit, databases_of
from gridnode.ops import CreateRequest, WriteRequest, Written
from gridnode.orbitdb import OrbitFollower
from gridnode.repo import ImportReport, Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker

log = logging.getLogger(__name__)

__all__ = [
    "MAX_EVENTS",
    "MAX_STRIKES",
    "Node",
    "NodeCounters",
    "NodeEvent",
    "NodeStats",
    "PeerSync",
    "ServedTotals",
    "open_node",
]

T = TypeVar("T")

#: Seconds between two announcements of a database that writes keep changing (group commit's
#: announcements, :meth:`Node._announce_written`): what a stream of writes costs in gossip is
#: bounded, and a peer hears of a write at most this much later than it would alone.
WRITE_ANNOUNCE_GAP: Final = 0.05


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
        bitswap: bool = False,
        catalogs: Sequence[str] = (),
        dht_reprovide_interval: float = 43200.0,
    ) -> None:
        self.repo = repo
        # A running node logs reaching and clearing max_storage (an offline command does not).
        repo.quota.log_transitions = True
        self.host = host
        #: Every remote peer's allowance of storage-worker time and bytes, over all protocols.
        self.budgets = Budgets()
        self.worker = StorageWorker(self.budgets)
        #: Every write goes through it: concurrent writes share a commit (group commit).
        self.writes = GroupCommit(repo, self.worker, self._written)
        #: Databases written whose new heads are not announced yet, and whether the task that
        #: announces them runs (:meth:`_announce_written`).
        self._to_announce: set[str] = set()
        self._announcing = False
        #: What the node has done and seen, for the API, the dashboard and /metrics.
        #: The last hour's counters and the peers' latency, for the dashboard.
        self.history = History()
        self.stats = NodeStats(budgets=self.budgets, worker=self.worker, history=self.history)
        self._nursery = nursery
        #: The rooms (each module's docstring says what it owns and refuses).
        self.peering = Peering(
            host, nursery, self.stats, target_peers=target_peers, connected=self._connected
        )
        #: Bitswap with IPFS peers (``None`` when the config turns it off).
        self.bitswap: Bitswap | None = None
        if bitswap:
            self.bitswap = Bitswap(
                host,
                nursery,
                lambda cids: self.worker.run(repo.served_blocks, cids),
                violation=self.peering.strike,
                budgets=self.budgets,
            )
            self.stats.bitswap = self.bitswap.stats
        self.replication = Replication(
            repo,
            host,
            nursery,
            self.worker,
            self.stats,
            announce_interval=announce_interval,
            strike=self.peering.strike,
            count_join=self.count_join,
            budgets=self.budgets,
        )
        self.replicas = ReplicaStatements(
            repo,
            host,
            nursery,
            self.worker,
            self.stats,
            keypair=repo.keypair,
            addresses=self.replication.addresses,
            announce_interval=lambda: self.replication.announce_interval,
        )
        self.announce_interval = announce_interval  # and peer records every third round
        self.restorer = Restorer(
            repo,
            nursery,
            self.worker,
            self.bitswap,
            self.replication,
            peers=host.peers,
            count_join=self.count_join,
        )
        #: Signed snapshots: publish, serve, follow from one (gridnode/node/snapshots.py).
        self.snapshots = Snapshots(
            repo,
            host,
            nursery,
            self.worker,
            self.stats,
            self.budgets,
            addresses=self.replication.addresses,
            pulling=self.replication.pulling,
        )
        self.catalogs = Catalogs(
            repo,
            nursery,
            self.worker,
            self.replication,
            self.peering,
            list(catalogs),
            announce_interval=announce_interval,
            snapshots=self.snapshots,
        )
        #: Files the catalogs list and the databases link to, fetched and pinned
        #: (gridnode/node/files.py).
        self.files = FileReplication(
            repo,
            nursery,
            self.worker,
            self.bitswap,
            peers=host.peers,
            catalogs=lambda: list(self.catalogs.views.values()),
            catalogs_read=lambda: all(a in self.catalogs.views for a in self.catalogs.addresses),
            databases=self.replication.databases,
        )
        #: The OrbitDB databases followed and served (gridnode/orbitdb/), read-only.
        self.orbitdb = OrbitFollower(
            repo,
            host,
            nursery,
            self.worker,
            self.bitswap,
            strike=self.peering.strike,
            note=self.stats.note,
            connect=self.connect,
            budgets=self.budgets,
        )
        self.catalogs.orbitdb = self.orbitdb
        #: Provider records and holder lookups on the DHT (``None`` when config ``dht`` is off).
        self.providers: Providers | None = None
        if host.dht is not None:
            host.dht.violation = self.peering.strike  # a malformed DHT message is a strike
            self.providers = Providers(
                host.dht,
                nursery,
                self.worker,
                self.replication.databases,
                host.connect,
                reprovide_interval=dht_reprovide_interval,
            )

    async def _start(self, bootstrap: Sequence[str]) -> None:
        if self.bitswap is not None:
            self.bitswap.mount()
        # A node started at its bound says so now, not at its first peer's pull.
        self.repo.quota.full()
        # Databases first: a peer dialled then is pulled from for every one of them.
        await self.replication.start()
        await self.replicas.start()
        await self.peering.start(bootstrap)
        self.restorer.start()
        self.snapshots.start()
        self._nursery.start_soon(self.history.run, self.host, self.stats, trio.current_time)
        self.catalogs.start()
        self.files.start()
        await self.orbitdb.start()
        if self.providers is not None:
            self.providers.start()
        self._nursery.start_soon(republish_on_change, self.host, self.peering.publish_record)
        if self.host.relay_client is not None:
            self._nursery.start_soon(
                meet_through_relays, self.host, self.peering.known, self.peering.connect
            )

    def _connected(self, peer: str) -> None:
        self.replication.peer_connected(peer)

    # -- what the node is -----------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    @property
    def addrs(self) -> list[str]:
        return self.host.addrs

    @property
    def announced_addrs(self) -> list[str]:
        """Where peers are told to reach this node (config ``announce``, docs/config.md)."""
        return self.host.announced_addrs

    @property
    def announce_interval(self) -> float:
        """Seconds between two announcements of every replica's heads (``inf``: only when they
        change); set when the node opens."""
        return self.replication.announce_interval

    @announce_interval.setter
    def announce_interval(self, value: float) -> None:
        # Takes effect after the current round; a node opened with ``inf`` starts no rounds.
        self.replication.announce_interval = value
        self.peering.record_interval = 3 * value

    @property
    def target_peers(self) -> int:
        """Connections the node seeks through redialling, peer exchange and mDNS (it accepts
        more from others)."""
        return self.peering.target_peers

    @target_peers.setter
    def target_peers(self, value: int) -> None:
        self.peering.target_peers = value

    # -- stats ----------------------------------------------------------------------------------

    def note(
        self, kind: str, text: str, *, peer: str | None = None, address: str | None = None
    ) -> None:
        """Remember a rejection or an error in ``stats.events``."""
        self.stats.note(kind, text, peer=peer, address=address)

    def count_join(
        self, source: str, report: ImportReport | PullReport, *, peer: str | None = None
    ) -> None:
        """Count what a join did (an :class:`~gridnode.repo.ImportReport` or a
        :class:`~gridnode.node.sync.PullReport`): applied by source, rejected by reason; tell
        bitswap of new blocks (peers waiting for them get them)."""
        self.stats.count_join(source, report, peer=peer)
        if report.applied and self.bitswap is not None:
            self.bitswap.blocks_added()

    # -- storage --------------------------------------------------------------------------------

    def storage(self) -> dict[str, int | bool]:
        """``{"used", "max", "full"}``: bytes the SQLite file and its WAL take, ``max_storage``
        (``0``: no bound), and whether the node is at it (:class:`~gridnode.quota.StorageQuota`:
        then it follows, restores, imports and pulls nothing)."""
        return self.repo.quota.status()

    @property
    def max_storage(self) -> int:
        """The storage bound in bytes (``0``: none); set from the config when the node opens."""
        return self.repo.quota.limit

    @max_storage.setter
    def max_storage(self, value: int) -> None:
        # Checked at the next follow, pull or batch; raising it lets pulls start again.
        self.repo.quota.limit = value

    @property
    def storage_refusals(self) -> int:
        """Follows, restores, imports refused and pulls not run because the node was full."""
        return self.repo.quota.refusals

    # -- files ----------------------------------------------------------------------------------

    async def fetch_file(
        self,
        root: CID,
        peers: Sequence[str] | None = None,
        *,
        pin: str | None = None,
        max_bytes: int | None = None,
        progress: FetchProgress | None = None,
    ) -> FetchProgress:
        """Fetch a file or directory (any DAG) from ``peers`` (default: every connected peer)
        over bitswap into the file store, every block verified, and pin it as ``pin``
        (:meth:`gridnode.node.files.FileReplication.fetch`)."""
        return await self.files.fetch(root, peers, pin=pin, max_bytes=max_bytes, progress=progress)

    # -- peers ----------------------------------------------------------------------------------

    def peers(self) -> list[str]:
        return self.host.peers()

    def peer_addrs(self, peer: str) -> list[str]:
        """A few of the addresses known for ``peer`` (what the dashboard lists)."""
        return self.host.peer_addrs(peer)

    @property
    def known(self) -> dict[str, tuple[str, ...]]:
        """Peers the node dials again when below ``target_peers`` (:attr:`Peering.known`)."""
        return self.peering.known

    def remember(self, key: str, addrs: Sequence[str]) -> None:
        """Keep ``addrs`` of a peer (``key``: its id, or a bootstrap address) to dial it again
        whenever the node has fewer than ``target_peers`` connections."""
        self.peering.remember(key, addrs)

    async def connect(self, multiaddr: str) -> str | None:
        """Dial a peer; log and return ``None`` if it cannot be reached. A peer dialled (or
        tried) is remembered, and dialled again whenever it is lost (:meth:`remember`)."""
        return await self.peering.connect(multiaddr)

    # -- databases ------------------------------------------------------------------------------

    def database(self, address: str) -> StoredDatabase:
        """A replicated database. Read it through :meth:`read` (or ``node.worker``) while the node
        runs: its storage is only ever used from the storage worker."""
        return self.replication.database(address)

    async def read(self, address: str, fn: Callable[[StoredDatabase], T]) -> T:
        """``fn(database)`` in the storage worker, e.g. ``await node.read(a, lambda d: d.digest())``."""
        return await self.worker.run(fn, self.replication.database(address))

    async def replicate(self, database: StoredDatabase) -> None:
        """Start replicating a database this node keeps."""
        await self.replication.replicate(database)

    def replicating(self, address: str) -> bool:
        """Whether this node replicates the database at ``address`` now."""
        return self.replication.replicating(address)

    async def unfollow(self, address: str) -> StoredDatabase:
        """Stop replicating a database: leave its gossip topic, start no more pulls of it. Its
        data stays, and so does the choice: the node's next start does not replicate it either,
        until :meth:`follow` or :meth:`replicate` does. Raises
        :class:`~gridnode.errors.UnknownDatabase` if it is not replicated."""
        database = await self.replication.unfollow(address)
        await self.catalogs.unfollowed_by_hand(database.address)
        return database

    async def follow(
        self, address: str, *, timeout: float = 30.0, snapshot: bool = True
    ) -> StoredDatabase:
        """Keep and replicate a database another node has: fetch its manifest from a connected
        peer (verified against the address), then sync. A database the node holds nothing of
        yet is served from the newest trusted signed snapshot its peers offer, at once, while
        the history behind it arrives and is verified (:mod:`gridnode.node.snapshots`);
        ``snapshot=False`` (or config ``snapshots = false``): verify everything first. Raises
        :class:`~gridnode.errors.UnknownDatabase` if no connected peer has it,
        :class:`~gridnode.errors.StorageLimitReached` if the node is at ``max_storage`` (and
        does not replicate it already). With the DHT on, a database no connected peer keeps is
        looked up there by its manifest CID, and its holders dialled (:mod:`gridnode.node.
        providers`) before giving up."""
        try:
            return await self._follow(address, timeout, snapshot)
        except UnknownDatabase:
            if self.providers is None:
                raise
            if not await self.providers.connect_holders(address, timeout):
                raise
        return await self._follow(address, timeout, snapshot)

    async def _follow(self, address: str, timeout: float, snapshot: bool) -> StoredDatabase:
        if snapshot and await self.snapshots.fresh(address):
            # Reads served from the snapshot before the first pull starts.
            await self.snapshots.follow_from_snapshot(address, timeout=timeout)
        database = await self.replication.follow(address, timeout=timeout)
        await self.catalogs.followed_by_hand(database.address)
        if self.providers is not None:
            self.providers.poke()
        return database

    async def change_reader(self, ref: str, action: str, did: str) -> dict[str, Any]:
        """Add (wrap the key for) or remove (rotate the key without) a reader of an encrypted
        database (:func:`gridnode.ops.change_reader`), then announce the key operation."""
        database = await self.worker.run(ops.resolve, self.repo, ref)
        answer: dict[str, Any] = await self.worker.run(ops.change_reader, database, action, did)
        await self.announce(database.address)
        return answer

    async def change_access(self, ref: str, action: str, role: str, did: str) -> dict[str, Any]:
        """Grant or revoke an admin's or a writer's role (:func:`gridnode.ops.change_access`),
        then announce the entry."""
        database = await self.worker.run(ops.resolve, self.repo, ref)
        answer: dict[str, Any] = await self.worker.run(
            ops.change_access, database, action, role, did
        )
        await self.announce(database.address)
        return answer

    async def announce(self, address: str) -> None:
        """Publish this node's heads of a database (with small head entries inline); nothing
        for a database it no longer replicates."""
        await self.replication.announce(address)

    async def replica_summary(self, database: StoredDatabase) -> dict[str, Any]:
        """Who holds ``database``, as far as this node heard (:mod:`gridnode.node.replicas`)."""
        return await self.replicas.summary(database)

    async def replica_counts(self, addresses: list[str]) -> dict[str, dict[str, Any]]:
        """The ``replicas`` of each database's ``/status`` row, by address."""
        return await self.replicas.counts(addresses)

    async def create(self, request: CreateRequest) -> StoredDatabase:
        """Create the database ``request`` describes, with this node's key as admin, and
        replicate it (:func:`gridnode.ops.create`)."""
        database = await self.worker.run(ops.create, self.repo, request)
        await self.replicate(database)
        if self.providers is not None:
            self.providers.poke()
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
        readers: Sequence[str] = (),
        encrypted: bool = False,
        admins: Sequence[str] = (),
        pin_links: int | None = None,
    ) -> StoredDatabase:
        """:meth:`create` from arguments (checked as ``POST /db`` checks its body). ``admins``:
        more admins besides this node (a key kept offline, docs/keys.md). ``private``:
        only its admins, writers and ``readers`` (did:keys) may read it; it is never announced
        on a gossip topic nor served to the IPFS world (docs/spec.md §10, "Private
        databases")."""
        request = CreateRequest.from_json(
            {
                "name": name,
                "type": store,
                "writers": list(writers),
                "public": public,
                "indexes": list(indexes),
                "index_by": index_by,
                "private": private,
                "readers": list(readers),
                "encrypted": encrypted,
                "admins": list(admins),
                "pin_links": pin_links,
            }
        )
        return await self.create(request)

    async def restore(
        self, roots: Sequence[CID], peers: Sequence[str] | None = None, *, timeout: float = 120.0
    ) -> ImportReport:
        """Fetch a database from IPFS peers over bitswap and keep and replicate it.

        ``roots`` are the manifest's CID, then heads: the roots of the CAR ``gridnode export``
        writes and ``gridnode pin remote`` pins. The node asks ``peers`` (default: every connected
        peer) for them, then for every entry they link to (parents and skip links), level by
        level; everything received is hashed against its CID, and the entries are verified and
        joined as a CAR import is. Entries not found within ``timeout`` seconds stay missing
        (the database then waits for them like any other gap). Raises
        :class:`~gridnode.errors.UnknownDatabase` if the manifest cannot be had,
        :class:`~gridnode.errors.FeatureOff` if the config turns bitswap off,
        :class:`~gridnode.errors.StorageLimitReached` if the node is at ``max_storage``.
        """
        return await self.restorer.restore(roots, peers, timeout=timeout)

    async def write(
        self,
        ref: str,
        payloads: Sequence[Any],
        labels: Sequence[str] | None = None,
        *,
        meta: Mapping[str, str | int | bytes] | None = None,
    ) -> list[Entry]:
        """Write operations with the node key to the database ``ref`` (an address, a CID or a
        unique name): checked and committed as :func:`gridnode.ops.write` does, in the storage
        worker, together with the writes that arrive meanwhile (group commit,
        :mod:`gridnode.node.writes`: one transaction, one fsync, one announcement per database);
        durable (as the config's ``durability`` says) when this returns, then counted and
        announced. Every writer of a running node comes here: the API, the embed facades, the
        seeder. A write refused by its checks raises its own error; its group-mates commit."""
        written = await self.writes.write(WriteRequest(ref, list(payloads), labels, meta))
        return written.entries

    async def write_and_answer(self, ref: str, payloads: Sequence[Any]) -> dict[str, Any]:
        """:meth:`write`, returning what the API answers (:func:`gridnode.ops.written`, read right
        after the commit, in the same storage call)."""
        written = await self.writes.write(WriteRequest(ref, list(payloads), answer=True))
        assert written.answer is not None
        return written.answer

    async def _written(self, group: list[Written]) -> None:
        """What follows a group's commit (:mod:`gridnode.node.writes`): count, tell bitswap,
        replicate each database written (if it is not yet), and have each announced once, by
        :meth:`_announce_written`, not waiting for it."""
        entries = sum(len(w.entries) for w in group)
        self.stats.counters.applied["write"] += entries
        if entries and self.bitswap is not None:
            self.bitswap.blocks_added()
        for database, wrote in databases_of(group):
            if not self.replicating(database.address):
                await self.replicate(database)
            if wrote:
                self._to_announce.add(database.address)
        if self._to_announce and not self._announcing:
            try:
                self._nursery.start_soon(self._announce_written)
            except RuntimeError:  # the node is closing: the writes are durable, nobody to tell
                return
            self._announcing = True

    async def _announce_written(self) -> None:
        """Announce the databases writes changed, one at a time, until none waits (group
        commit's announcements: :mod:`gridnode.node.writes`)."""
        try:
            while self._to_announce:
                waiting, self._to_announce = self._to_announce, set()
                for address in waiting:
                    try:
                        await self.announce(address)
                    except Exception as exc:  # the write is durable; the next round announces it
                        log.warning("announcing %s failed: %s", address, ops.describe_error(exc))
                if self._to_announce:
                    # Written again meanwhile: under a stream of writes, one announcement per
                    # database per WRITE_ANNOUNCE_GAP (a lone write is announced at once).
                    await trio.sleep(WRITE_ANNOUNCE_GAP)
        finally:
            self._announcing = False

    async def import_car(self, data: bytes | memoryview) -> ImportReport:
        """Import a CAR (:func:`gridnode.ops.import_car`; refused at ``max_storage``), replicate
        its database, announce what it added."""
        report = await self.worker.run(ops.import_car, self.repo, data)
        self.count_join("import", report)
        database = await self.worker.run(self.repo.database, report.address)
        await self.replicate(database)
        if report.applied:
            await self.announce(database.address)
        return report


@contextlib.asynccontextmanager
async def open_node(
    data_dir: Path,
    *,
    listen: Sequence[str] | None = None,
    bootstrap: Sequence[str] | None = None,
    announce_interval: float | None = None,
    target_peers: int | None = None,
    catalogs: Sequence[str] | None = None,
) -> AsyncIterator[Node]:
    """Take the data directory (initialising it if new), start the host and replicate every
    database in it. Leaving the block closes everything, cleanly, and lets go of the directory.
    Arguments left ``None`` come from the data directory's config (``gridnode.toml``,
    docs/config.md).

    Raises :class:`~gridnode.errors.NodeUnavailable` if another node holds the directory (in this
    process or another), or offline commands keep it busy for more than ten seconds."""
    with contextlib.ExitStack() as held:
        # node_lock waits with time.sleep (for offline commands to finish): in a thread, so the
        # rest of this trio program, another node say, keeps running meanwhile. Not abandoned on
        # cancellation: a thread left behind could take the lock after we stopped waiting, and
        # nothing would ever let go of it.
        await trio.to_thread.run_sync(held.enter_context, node_lock(data_dir))
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
                    announce=config.announce,
                    announce_private=config.announce_private,
                    dht=DhtConfig(serve=config.dht_mode == "server", auto=config.dht_mode == "auto")
                    if config.dht
                    else None,
                    relay_service=_relay_limits(config),
                    relay_client=config.relay_client,
                    hole_punching=config.hole_punching,
                    autonat=config.autonat,
                ) as host,
                trio.open_nursery() as nursery,
            ):
                node = Node(
                    repo,
                    host,
                    nursery,
                    announce_interval=announce_interval,
                    target_peers=target_peers,
                    bitswap=config.bitswap,
                    catalogs=config.catalogs if catalogs is None else catalogs,
                    dht_reprovide_interval=config.dht_reprovide_interval,
                )
                await node._start(bootstrap if bootstrap is not None else config.bootstrap)
                try:
                    yield node
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            repo.close()


def _relay_limits(config: Any) -> RelayLimits | None:
    """The hop service's bounds from the config, ``None`` if it is off."""
    if not config.relay_service:
        return None
    return RelayLimits(
        max_reservations=config.relay_max_reservations,
        max_circuits_per_peer=config.relay_max_circuits_per_peer,
        circuit_seconds=config.relay_circuit_seconds,
        circuit_bytes=config.relay_circuit_bytes,
    )
