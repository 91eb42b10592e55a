"""Replication: the databases a node replicates, and how their entries travel between nodes.

For each replicated database (a *replica*):

- the node subscribes to the database's gossipsub topic and announces its heads there whenever
  they change, and once more at the next ``announce_interval`` tick; an unchanged database is
  not announced again (what an idle node sends grows with change, not with what it holds);
- every :data:`ANTI_ENTROPY_ROUNDS` intervals (the slow round) it sends each connected peer its
  *summary* (:mod:`gridnode.node.summaries`: a peer pulls the databases whose heads differ from
  its own, so one that missed an announcement still hears of new heads); private databases,
  never named in a summary, and databases with missing parents are pulled from one connected
  peer in turn;
- an announcement naming heads the node lacks makes it pull from that peer over
  ``/gridnode/sync/1.1.0`` (:mod:`gridnode.node.sync`; at most one pull per database and peer at
  a time; a pull asked for while one runs is run again right after). Peers that connect, whichever
  side dialled, exchange summaries (:meth:`~gridnode.node.summaries.Summaries.meet`) and pull
  what differs; whole-database pulls run :data:`PEER_PULLS` at a time per peer;
- small head entries ride along inside announcements and are joined directly;
- the node serves the sync stream to its peers, for every database it keeps.

A *private* database (its manifest has ``readers``: docs/spec.md §10, "Private databases") has no
topic: its name is never published where every peer sees it. The node pulls it only from
connected peers that may read it (:meth:`~gridnode.repo.StoredDatabase.may_read`: the did:key of
the peer's authenticated id is an admin, a writer or a reader), on connection, and when such a
peer tells it of new heads directly, over a ``/gridnode/heads/1.0.0`` stream: what announcing is
for a public database, sent to those readers alone. The server side refuses every request for it
from anyone else (:func:`gridnode.node.sync.serve`).

Gossip is a hint; the stream protocol is the delivery path. Every block is verified and judged by
the log before it is kept, whatever its path. Each pull and each served stream is accounted for in
:class:`~gridnode.node.stats.NodeStats` (``syncs``, ``served``).

What it refuses:

- announcements that do not parse, or name another database than their topic's: the topic
  validator drops them before gossipsub forwards them, and counts them;
- a request for a private database from a peer that may not read it: answered ``refused`` as if
  the node did not keep it, and counted (``private_refused``), with no strike (an honest peer may
  simply not be a reader); past :data:`REFUSALS_PER_MINUTE` of them a minute, the peer's stream
  is ended at its next such request;
- a direct heads announcement from a peer that may not read the database, or for a database that
  is not private: dropped and counted;
- a peer that breaks the sync protocol, in either role, gets a strike (the ``strike`` it was made
  with: :meth:`gridnode.node.peers.Peering.strike`); a pull that merely fails (a time limit, a
  stream gone, a refusal) does not;
- heads or parents a peer was asked for :data:`~gridnode.node.sync.MAX_ASKS` times in vain no
  longer make the node pull from that peer (it claims what it cannot serve, or nobody has them:
  orphans wait, bounded), so a lying peer costs a few round trips, not one pull per announcement;
- orphans beyond what may wait: entries whose parents are missing are joined with the peer they
  came from as their source, so the log bounds what waits in bytes per peer and per database and
  keeps none by an author no known grant could authorise (docs/spec.md §7); what waits expires
  after ``pending_seconds`` (a pass every :data:`EXPIRE_INTERVAL`), and deciding whether an
  announcement calls for a pull reads counters, not the pending set.

At the storage bound (``max_storage``: :mod:`gridnode.quota`) it follows no database
(:class:`~gridnode.errors.StorageLimitReached`), starts no pull, joins no gossiped entries, and a
pull running stops between two batches (what it joined stays; the peer gets no strike).

A replica's choice is durable: :meth:`Replication.unfollow` records it in the repo, and the next
start does not replicate that database either until it is followed again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import trio

from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from crdt.manifest import Manifest, decode_manifest, parse_address
from gridnode.errors import UnknownDatabase
from gridnode.logs import LogLimiter
from gridnode.net import Host, NetError, Stream, Subscription
from gridnode.net.identity import did_of_peer
from gridnode.node.budget import Budgets
from gridnode.node.stats import CountJoin, NodeStats, PeerSync, ServedTotals, trim_oldest
from gridnode.node.summaries import Summaries
from gridnode.node.sync import MAX_ASKS, PullReport, fetch_manifest, pull, serve
from gridnode.repo import Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker, serving
from protocols.errors import ProtocolError, SendLimitError
from protocols.gossip import (
    DIRECT_HEADS_PROTOCOL_ID,
    INLINE_BUDGET,
    MAX_ANNOUNCED_HEADS,
    MAX_ANNOUNCEMENT,
    SUMMARY_PROTOCOL_ID,
    Announcement,
    database_key,
    parse_announcement,
    topic_for,
)
from protocols.sync import SyncStats
from protocols.wire import PROTOCOL_ID

__all__ = ["MAX_ASKED_PEERS", "PULL_SECONDS", "Replica", "Replication"]

log = logging.getLogger(__name__)

#: (peer, database) pairs whose asked CIDs a node remembers (the oldest are forgotten first).
MAX_ASKED_PEERS: Final = 1024
#: The longest one pull may go without joining a batch of entries: a peer that trickles bytes
#: cannot hold a pull open for ever, while a long honest catch-up (1M entries take minutes) is
#: never cut off as long as it moves.
PULL_SECONDS: Final = 300.0
#: How long a peer has to send a manifest asked for (:meth:`Replication.follow`).
MANIFEST_SECONDS: Final = 10.0
#: Connected peers asked at once for a manifest by a follow.
MANIFEST_PEERS: Final = 16
#: Requests for private databases it may not read that a peer gets answered a minute (sync
#: requests and direct announcements together); past them its streams are ended at once.
REFUSALS_PER_MINUTE: Final = 16
#: How long sending or receiving one direct heads announcement may take.
DIRECT_SECONDS: Final = 10.0
#: Seconds between two passes expiring entries that waited too long for their parents (at most a
#: quarter of ``pending_seconds``).
EXPIRE_INTERVAL: Final = 60.0
#: Every this many announce intervals comes the slow round (anti-entropy): the node sends each
#: connected peer its summary (``/gridnode/summary/1.0.0``), and pulls each private database,
#: and each with entries waiting for parents, from one connected peer (in turn). A lost or
#: never-delivered announcement then costs latency, never a replica that stays behind while
#: connected; an unchanged database costs 16 bytes of a summary, not an announcement and a pull.
ANTI_ENTROPY_ROUNDS: Final = 10
#: Seconds a pull for announced heads waits, at most, while a pull of the same database from
#: another peer runs (that pull most likely brings them).
DEFER_SECONDS: Final = 2.0
#: Seconds a pull asked for only because inline entries came before their parents waits first:
#: at a few writes a second announcements overtake one another, and the parents' own
#: announcement usually follows within milliseconds.
MISSING_GRACE: Final = 0.25
#: Whole-database pulls (:meth:`Replication.start_pull`) that run at once from one peer; the
#: rest wait their turn. A node holding 1,000 databases started 1,000 pulls at every
#: connection, which on a loaded machine timed out, dropped the connection and started again
#: (issue 21, item 4). Pulls for announced heads are not queued: they are the latency path.
PEER_PULLS: Final = 8

#: How an exchange with a peer fails without it breaking the protocol: bad or refused input, a
#: time limit, a stream that went away.
_EXCHANGE_FAILED = (
    GridnodeError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


@dataclass
class Replica:
    """One replicated database: its gossip topic, and the pulls of it running now."""

    database: StoredDatabase
    topic: str
    #: Peers a pull of this database runs from now.
    running: set[str] = field(default_factory=set)
    #: Pulls asked for and not yet run, by peer: the heads an announcement named (a pull is
    #: run only if some are still lacking, or parents are missing, when its turn comes), or
    #: ``None`` for a pull run whatever (a new connection, anti-entropy, a direct announcement).
    queued: dict[str, frozenset[CID] | None] = field(default_factory=dict)
    #: Set when no pull of this database runs (announced pulls wait for it: :meth:`Replication._pull`).
    idle: trio.Event = field(default_factory=trio.Event)
    subscription: Subscription | None = None
    #: A private database: no topic; pulled from, and told of new heads, its readers alone.
    private: bool = False
    #: Its key in summaries (:func:`protocols.gossip.database_key`).
    key: bytes = b""

    def __post_init__(self) -> None:
        self.key = database_key(self.database.manifest.cid)


class Replication:
    """The replicas of one running node; made by :class:`~gridnode.node.Node`."""

    def __init__(
        self,
        repo: Repo,
        host: Host,
        nursery: trio.Nursery,
        worker: StorageWorker,
        stats: NodeStats,
        *,
        announce_interval: float,
        strike: Callable[[str, str], Awaitable[None]],
        count_join: CountJoin,
        budgets: Budgets | None = None,
    ) -> None:
        self.repo = repo
        #: Per-peer worker time and bytes; serving is charged to the peer served.
        self._budgets = budgets or Budgets()
        self.host = host
        #: Seconds between two announcements of every replica's heads (``inf``: only on change).
        self.announce_interval = announce_interval
        self._nursery = nursery
        self._worker = worker
        self._stats = stats
        #: Refused announcements are logged a few per peer and interval (then one summary): a
        #: peer must not set the log's volume. The stats count every one.
        self._refusals = LogLimiter()
        self._strike = strike
        self._count_join = count_join
        #: Canonical address -> replica.
        self._replicas: dict[str, Replica] = {}
        #: (peer, address) -> how often each CID was asked of that peer (see sync.pull).
        self._asked: dict[tuple[str, str], dict[CID, int]] = {}
        #: Per peer, the requests for private databases it may not read, a minute (a window
        #: counter: the same one the logs use).
        self._private_refusals = LogLimiter(lines=REFUSALS_PER_MINUTE, interval=60.0)
        #: Databases announced since the last interval: announced once more then (a second
        #: chance for a lost message), and only they.
        self._changed: set[str] = set()
        #: Summaries: what a node tells its peers of all it holds, and what it hears.
        self.summaries = Summaries(
            host,
            worker,
            stats,
            repo.quota,
            replicas=lambda: list(self._replicas.values()),
            start_pull=self.start_pull,
            strike=strike,
        )
        #: Per peer, the whole-database pulls waiting their turn (an ordered set of addresses;
        #: at most one entry per database held) and how many of them run (<= PEER_PULLS).
        self._waiting: dict[str, dict[str, None]] = {}
        self._in_flight: dict[str, int] = {}

    async def start(self) -> None:
        """Serve the sync stream, replicate every database the repo keeps and has not
        unfollowed, and announce their heads every ``announce_interval``."""
        self.host.set_stream_handler(PROTOCOL_ID, self.serve_stream)
        self.host.set_stream_handler(DIRECT_HEADS_PROTOCOL_ID, self._heard_directly)
        self.host.set_stream_handler(SUMMARY_PROTOCOL_ID, self.summaries.heard)
        for address, _name, _store in self.repo.databases():
            try:
                database = self.repo.database(address)
            except GridnodeError as exc:
                # Kept, but its store cannot open (options it cannot use): the node runs
                # without it rather than not at all.
                log.error("not replicating %s: %s", address, exc)
                self._stats.note("refused", f"cannot open the database: {exc}", address=address)
                continue
            if not self.repo.replicated(address):
                log.info("not replicating %s: unfollowed", address)
                continue
            await self.replicate(database)
        if math.isfinite(self.announce_interval):
            self._nursery.start_soon(self._announce_periodically)
        self._nursery.start_soon(self._expire_pending_periodically)

    # -- the replica set ----------------------------------------------------------------------

    def replicating(self, address: str) -> bool:
        """Whether the database at ``address`` is replicated now (``False`` for a malformed
        address)."""
        if address in self._replicas:  # canonical: no parsing (rooms ask every round)
            return True
        try:
            return _canonical(address) in self._replicas
        except GridnodeError:
            return False

    def addresses(self) -> list[str]:
        """The addresses of the databases replicated now."""
        return list(self._replicas)

    def databases(self) -> list[StoredDatabase]:
        """The databases replicated now."""
        return [replica.database for replica in self._replicas.values()]

    def database(self, address: str) -> StoredDatabase:
        """The replicated database at ``address``; ``KeyError`` if it is not replicated."""
        replica = self._replicas.get(address) or self._replicas[_canonical(address)]
        return replica.database

    def pulling(self, address: str) -> bool:
        """Whether a pull of the database at ``address`` runs now, from any peer."""
        replica = self._replicas.get(address) or self._replicas.get(_canonical(address))
        return replica is not None and bool(replica.running)

    async def replicate(self, database: StoredDatabase) -> None:
        """Start replicating a database this node keeps: subscribe to its topic, pull it from
        every connected peer, announce its heads."""
        if database.address in self._replicas:
            return
        if not await self._worker.run(self.repo.replicated, database.address):
            await self._worker.run(self.repo.set_replicated, database.address, True)
        private = await self._worker.run(lambda: database.private)
        replica = Replica(database, topic_for(database.manifest.cid), private=private)
        self._replicas[database.address] = replica
        if not private:
            # A private database's topic would name it to every peer subscribed to it.
            self.host.set_topic_validator(replica.topic, self._validator(database))
            subscription = replica.subscription = await self.host.subscribe(replica.topic)
            self._nursery.start_soon(self._listen, replica, subscription)
        for peer in self.host.peers():
            self.start_pull(peer, database.address)
        await self.announce(database.address)

    async def unfollow(self, address: str) -> StoredDatabase:
        """Stop replicating a database: leave its topic, start no more pulls of it; durable.
        Raises :class:`~gridnode.errors.UnknownDatabase` if it is not replicated."""
        canonical = _canonical(address)
        replica = self._replicas.pop(canonical, None)
        if replica is None:
            raise UnknownDatabase(f"this node does not replicate {canonical}")
        if replica.subscription is not None:
            await replica.subscription.aclose()
        # Durable: the node's next start leaves it alone too.
        await self._worker.run(self.repo.set_replicated, canonical, False)
        log.info("stopped replicating %s", canonical)
        return replica.database

    async def follow(self, address: str, *, timeout: float) -> StoredDatabase:
        """Keep and replicate a database another node has: its manifest from the first
        connected peer that sends one matching the address, then sync. Raises
        :class:`~gridnode.errors.UnknownDatabase` if no connected peer has it."""
        manifest_cid = parse_address(address)
        canonical = "/gridnode/" + str(manifest_cid)
        if canonical in self._replicas:
            return self._replicas[canonical].database
        # Even one kept but unfollowed: following it again would pull what it lacks.
        self.repo.quota.check(f"follow {canonical}")
        try:
            database = await self._worker.run(self.repo.database, canonical)
        except UnknownDatabase:
            database = None
        if database is None:
            manifest = await self._manifest_from_any(manifest_cid, timeout)
            if manifest is not None:
                database = await self._worker.run(self.repo.add_database, manifest)
        if database is None:
            raise UnknownDatabase(f"no connected peer keeps {canonical}")
        await self.replicate(database)
        return database

    async def _manifest_from_any(self, manifest_cid: CID, timeout: float) -> Manifest | None:
        """The manifest from the first of the connected peers (at most
        :data:`MANIFEST_PEERS`, asked at once) that sends one matching its CID. At once, not in
        turn: one peer whose streams stall would otherwise hold up every follow until the
        timeout, and the peers that keep the database behind it would never be asked (seen in
        the six-node catalog test, tests/faults/test_catalogs.py)."""
        found: list[Manifest] = []

        async def ask(peer: str, scope: trio.CancelScope) -> None:
            block = await self._fetch_manifest(peer, manifest_cid)
            if block is None:
                return
            try:
                manifest = decode_manifest(manifest_cid, block)
            except GridnodeError as exc:
                log.warning("peer %s sent a bad manifest for %s: %s", peer, manifest_cid, exc)
                return
            found.append(manifest)
            scope.cancel()

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for peer in self.host.peers()[:MANIFEST_PEERS]:
                    nursery.start_soon(ask, peer, nursery.cancel_scope)
        return found[0] if found else None

    def _validator(self, database: StoredDatabase) -> Callable[[str, bytes], bool]:
        manifest_cid = database.manifest.cid

        def validate(peer: str, data: bytes) -> bool:
            try:
                parse_announcement(data, manifest_cid)
            except ProtocolError as exc:
                self._stats.rejected_announcements += 1
                now = time.monotonic()  # validators may run outside trio's run
                if self._refusals.allow(peer, now):
                    log.info("refused an announcement from %s: %s", peer, exc)
                more = self._refusals.unreported(peer, now)
                if more:
                    log.info(
                        "%d more announcements refused from %s (not logged one by one)", more, peer
                    )
                self._stats.note(
                    "refused", f"announcement: {exc}", peer=peer, address=database.address
                )
                return False
            return True

        return validate

    # -- announcing ---------------------------------------------------------------------------

    async def announce(self, address: str) -> None:
        """Publish this node's heads of a database (with small head entries inline), now and
        once more at the next interval; nothing for a database it no longer replicates. Called
        when its heads changed: an unchanged database is not announced again (the slow round's
        summaries stand for it)."""
        replica = self._replicas.get(_canonical(address))
        if replica is None:
            return
        self._changed.add(replica.database.address)
        await self._publish_heads(replica)

    async def _publish_heads(self, replica: Replica) -> None:
        if replica.private:
            await self._announce_to_readers(replica)
            return
        database = replica.database

        def heads_and_blocks() -> tuple[list[CID], list[tuple[CID, bytes]]]:
            # The newest heads only (an announcement holds MAX_ANNOUNCED_HEADS; pulls find the
            # rest), and their blocks only while they could still ride inline: the cost of an
            # announcement does not grow with the number of heads.
            heads = database.newest_heads(MAX_ANNOUNCED_HEADS)
            blocks: list[tuple[CID, bytes]] = []
            size = 0
            for cid in heads:
                if size > INLINE_BUDGET:
                    break
                for found in database.blocks_of([cid]):
                    blocks.append(found)
                    size += len(found[1])
            return heads, blocks

        heads, blocks = await self._worker.run(heads_and_blocks)
        if not heads:
            return
        message = Announcement(database.manifest.cid, tuple(heads), tuple(blocks)).encode()
        await self.host.publish(replica.topic, message)
        self._stats.counters.gossip_published += 1

    async def _announce_to_readers(self, replica: Replica) -> None:
        """Tell each connected peer that may read a private database of its heads, each over a
        stream of its own (what the topic is for a public database)."""
        database = replica.database
        heads = await self._worker.run(database.newest_heads, MAX_ANNOUNCED_HEADS)
        if not heads:
            return
        message = Announcement(database.manifest.cid, tuple(heads)).encode()
        for peer in self.host.peers():
            if await self._may_read(peer, database):
                self._nursery.start_soon(self._send_directly, peer, message)

    async def _send_directly(self, peer: str, message: bytes) -> None:
        try:
            with trio.fail_after(DIRECT_SECONDS):
                stream = await self.host.open_stream(peer, DIRECT_HEADS_PROTOCOL_ID)
                try:
                    await stream.write(message)
                finally:
                    await stream.close()
        except (*_EXCHANGE_FAILED, NetError) as exc:
            # A hint lost: the reader pulls on its next connection or announcement.
            log.debug("could not tell %s of new heads: %s", peer, exc)

    async def _heard_directly(self, stream: Stream) -> None:
        """A peer tells of its heads of a private database: pull from it, if it may read it
        (otherwise it has no business holding it) and the database is one this node keeps
        private."""
        peer = stream.remote_peer_id
        data = b""
        with trio.move_on_after(DIRECT_SECONDS):
            while len(data) <= MAX_ANNOUNCEMENT:
                chunk = await stream.read(MAX_ANNOUNCEMENT + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        try:
            announcement = parse_announcement(data)
        except ProtocolError as exc:
            await self._strike(peer, f"direct announcement: {exc}")
            return
        address = "/gridnode/" + str(announcement.db)
        replica = self._replicas.get(address)
        if replica is None or not replica.private:
            # Not one this node keeps private (perhaps not yet followed): nothing to pull.
            log.debug("direct announcement from %s for %s: not kept private here", peer, address)
            return
        if not await self._may_read(peer, replica.database):
            self._refuse_private(peer, address, "direct announcement from a peer not a reader")
            return
        self.start_pull(peer, address)

    def _refuse_private(self, peer: str, address: str, text: str) -> bool:
        """Count a request for a private database refused to ``peer``; whether it may still ask
        (at most :data:`REFUSALS_PER_MINUTE` a minute)."""
        self._stats.counters.private_refused += 1
        allowed = self._private_refusals.allow(peer, time.monotonic())
        if allowed:  # past its budget, a peer must not fill the events with its refusals
            self._stats.note("refused", text, peer=peer, address=address)
        return allowed

    async def _may_read(self, peer: str, database: StoredDatabase) -> bool:
        """Whether ``peer`` (by the did:key its peer id names) may read ``database``."""
        did = did_of_peer(peer)
        return await self._worker.run(database.may_read, did)

    async def _announce_periodically(self) -> None:
        rounds = 0
        while True:
            await trio.sleep(self.announce_interval)
            changed, self._changed = self._changed, set()
            for address in changed:
                replica = self._replicas.get(address)
                if replica is not None:
                    await self._publish_heads(replica)
            rounds += 1
            if rounds % ANTI_ENTROPY_ROUNDS == 0:
                await self._slow_round(rounds // ANTI_ENTROPY_ROUNDS)

    async def _slow_round(self, turn: int) -> None:
        """Anti-entropy: tell each connected peer this node's summary, and pull what summaries
        cannot stand for from one connected peer, a different one each turn."""
        peers = sorted(self.host.peers())
        if not peers:
            return
        message = await self.summaries.summary()
        if message is not None:
            for peer in peers:
                self._nursery.start_soon(self.summaries.send, peer, message)
        await self._pull_in_turn(turn, peers)

    async def _pull_in_turn(self, turn: int, peers: list[str]) -> None:
        """Pull each private database (a summary never names one), and each with entries
        waiting for missing parents (its heads may match the peer's), from one connected peer
        (a private database only from peers that may read it: :meth:`_pull` checks)."""
        replicas = [r for r in self._replicas.values()]

        def due() -> list[str]:
            return [r.database.address for r in replicas if r.private or r.database.missing_count]

        for address in await self._worker.run(due):
            self.start_pull(peers[turn % len(peers)], address)

    async def _expire_pending_periodically(self) -> None:
        # Entries waiting for parents that never come are dropped after ``pending_seconds``
        # (wall-clock: the age survives a restart, and opening a database expires them too).
        limit = self.repo.config.pending_seconds
        while True:
            await trio.sleep(min(EXPIRE_INTERVAL, limit / 4))
            for address in list(self._replicas):
                replica = self._replicas.get(address)
                if replica is None:
                    continue
                try:
                    await self._worker.run(replica.database.expire_pending)
                except GridnodeError as exc:
                    log.warning("cannot expire pending entries of %s: %s", address, exc)

    async def _listen(self, replica: Replica, subscription: Subscription) -> None:
        database = replica.database
        manifest_cid = database.manifest.cid
        async for message in subscription:
            peer, data = message
            if peer == self.host.peer_id:
                continue
            self._stats.counters.gossip_received += 1
            try:
                announcement = parse_announcement(data, manifest_cid)
            except ProtocolError:
                continue
            unknown = await self._worker.run(database.unknown, list(announcement.heads))
            if unknown and self.repo.quota.full():
                continue  # at the bound: a hint only (anti-entropy pulls once it clears)
            if unknown:
                # Join the inline head entries we lack (a transaction only when there are some).
                lacking = set(unknown)
                inline = [(c, b) for c, b in announcement.blocks if c in lacking]
                if inline:
                    try:
                        joined = await self._worker.run(
                            partial(database.join_blocks, inline, source=peer)
                        )
                    except GridnodeError as exc:
                        # The disk is full, say: this announcement is dropped, not the node.
                        log.warning(
                            "cannot keep entries gossiped for %s: %s", database.address, exc
                        )
                        self._stats.note(
                            "store-failed", str(exc), peer=peer, address=database.address
                        )
                        continue
                    self._count_join("gossip", joined, peer=peer)
                    unknown = await self._worker.run(database.unknown, list(announcement.heads))
            await self.pull_announced(peer, message.forwarder, database, unknown)

    # -- pulling ------------------------------------------------------------------------------

    def peer_connected(self, peer: str) -> None:
        """A peer just connected, whichever side dialled: meet it (:meth:`Summaries.meet`)."""
        self._nursery.start_soon(self.summaries.meet, peer)

    def start_pull(self, peer: str, address: str) -> None:
        """Pull the database at ``address`` (replicated) from ``peer``, in the background,
        whatever it holds; if a pull of it from that peer runs, it runs once more right after
        instead. At most :data:`PEER_PULLS` of these run at once per peer; the others wait, one
        entry per database however often asked."""
        self._waiting.setdefault(peer, {})[address] = None
        self._dispatch(peer)

    def _dispatch(self, peer: str) -> None:
        waiting = self._waiting.get(peer, {})
        while waiting and self._in_flight.get(peer, 0) < PEER_PULLS:
            address = next(iter(waiting))
            del waiting[address]
            self._in_flight[peer] = self._in_flight.get(peer, 0) + 1
            self._nursery.start_soon(self._pull_in_turn_of, peer, address)
        if not waiting and not self._in_flight.get(peer):
            self._waiting.pop(peer, None)
            self._in_flight.pop(peer, None)

    async def _pull_in_turn_of(self, peer: str, address: str) -> None:
        try:
            await self._pull(peer, address, None)
        finally:
            self._in_flight[peer] -= 1
            self._dispatch(peer)

    def pull_source(self, origin: str, forwarder: str) -> str | None:
        """Whom to pull what an announcement names from: its origin if connected (it holds
        what it announced), else the connected peer that forwarded it (which has it, or pulls
        it and announces it in turn), else nobody (``None``: the next announcement, or
        anti-entropy, will do). Never a peer that is not connected: among 30 nodes most origins
        are not, and pulls aimed at them failed by the tens of thousands (issue 21)."""
        connected = self.host.peers()
        if origin in connected:
            return origin
        if forwarder != self.host.peer_id and forwarder in connected:
            return forwarder
        return None

    async def pull_announced(
        self, origin: str, forwarder: str, database: StoredDatabase, unknown: list[CID]
    ) -> None:
        """An announcement from ``origin``, received from ``forwarder``, named heads of which
        this node lacks ``unknown`` (after joining its inline entries): pull them from
        :meth:`pull_source`, unless given up on with that peer, and parents still missing
        otherwise (entries that came inline before their parents: the parents' own
        announcement is likely on its way, so that pull waits :data:`MISSING_GRACE` first)."""
        source = self.pull_source(origin, forwarder)
        if source is None:
            self._stats.counters.pulls_unrouted += 1
            return
        given_up = self._asked.get((source, database.address), {})
        unknown = [c for c in unknown if given_up.get(c, 0) < MAX_ASKS]
        if not unknown and not await self._worker.run(_has_missing, database, given_up):
            return
        delay = 0.0 if unknown else MISSING_GRACE
        self._nursery.start_soon(self._pull, source, database.address, frozenset(unknown), delay)

    async def _pull(
        self, peer: str, address: str, wanted: frozenset[CID] | None, delay: float = 0.0
    ) -> None:
        """Run (or queue) a pull of ``address`` from ``peer``: ``wanted`` the heads it is for
        (``None``: run it whatever). At most one pull per database and peer runs; one asked for
        meanwhile is merged into the next. A pull for announced heads also waits while a pull of
        the database from another peer runs (up to :data:`DEFER_SECONDS`): that one most likely
        brings the same heads, and the waiting pull then finds nothing lacking and is not run.
        So a burst of announcements of the same heads, by the origin and by every peer that
        got them, costs one pull, not one per announcement."""
        replica = self._replicas.get(address)
        if replica is None:
            return
        if replica.private and not await self._may_read(peer, replica.database):
            return  # a peer that may not read it has no business holding it, nor asking us
        queued = replica.queued
        previous = queued.get(peer, frozenset())
        queued[peer] = None if wanted is None or previous is None else previous | wanted
        if peer in replica.running:
            return  # that pull's loop runs this one next
        if wanted is not None:
            deadline = trio.current_time() + DEFER_SECONDS
            if delay:
                await trio.sleep(delay)
            while replica.running and trio.current_time() < deadline:
                if replica.idle.is_set():
                    replica.idle = trio.Event()
                with trio.move_on_at(deadline):
                    await replica.idle.wait()
            if peer in replica.running or peer not in queued:
                return  # run, or merged into a pull that ran, meanwhile
        await self._drain(replica, peer)

    async def _drain(self, replica: Replica, peer: str) -> None:
        """Run the pulls queued for ``peer`` until none is left."""
        address = replica.database.address
        if not replica.running:
            replica.idle = trio.Event()
        replica.running.add(peer)
        try:
            while peer in replica.queued and address in self._replicas:
                wanted = replica.queued.pop(peer)
                if wanted is not None and not await self._still_lacking(replica, peer, wanted):
                    self._stats.counters.pulls_saved += 1
                    continue
                if self.repo.quota.full():
                    self.repo.quota.refuse()  # at the bound: counted, not logged (once was)
                    replica.queued.pop(peer, None)
                    return
                report = await self._pull_once(peer, replica.database)
                if report is not None and report.applied:
                    await self.announce(address)
                if report is not None and report.ended and report.applied:
                    # The server closed the stream it saw idle while this node was still joining
                    # its answer: the pull made progress, so it goes on on a new stream.
                    replica.queued[peer] = None
                    continue
                if report is not None and report.stopped:
                    replica.queued.pop(peer, None)
                    return
        finally:
            replica.running.discard(peer)
            if not replica.running:
                replica.idle.set()

    async def _still_lacking(self, replica: Replica, peer: str, wanted: frozenset[CID]) -> bool:
        """Whether a pull for ``wanted`` heads from ``peer`` would still fetch anything: some
        are unknown here and not given up on with that peer, or parents are missing."""
        database = replica.database
        given_up = self._asked.get((peer, database.address), {})
        if wanted:
            unknown = await self._worker.run(database.unknown, list(wanted))
            if any(given_up.get(c, 0) < MAX_ASKS for c in unknown):
                return True
        return await self._worker.run(_has_missing, database, given_up)

    async def _pull_once(self, peer: str, database: StoredDatabase) -> PullReport | None:
        key = (peer, database.address)
        status = PeerSync.begin(
            peer, database.address, trio.current_time(), self._stats.syncs.get(key)
        )
        self._stats.syncs[key] = status
        trim_oldest(self._stats.syncs)
        try:
            with trio.fail_after(PULL_SECONDS) as scope:

                def moved() -> None:
                    scope.deadline = trio.current_time() + PULL_SECONDS

                stream = await self.host.open_stream(peer, PROTOCOL_ID)
                try:
                    report = await pull(
                        _Metered(stream, status),
                        database,
                        self._worker,
                        asked=self._asked_of(peer, database.address),
                        source=peer,
                        quota=self.repo.quota,
                        progress=moved,
                    )
                finally:
                    await stream.close()
        except SendLimitError as exc:
            # Our own message would have broken a limit: not sent, and not the peer's fault.
            status.error = f"{type(exc).__name__}: {exc}"
            log.warning("sync of %s with %s stopped: %s", database.address, peer, exc)
            self._stats.counters.sync_failures += 1
            self._stats.note("sync-failed", status.error, peer=peer, address=database.address)
            return None
        except ProtocolError as exc:
            status.error = f"{type(exc).__name__}: {exc}"
            self._stats.counters.sync_failures += 1
            self._stats.note("sync-failed", status.error, peer=peer, address=database.address)
            await self._strike(peer, status.error)
            return None
        except _EXCHANGE_FAILED as exc:
            status.error = f"{type(exc).__name__}: {exc}"
            log.info("sync of %s with %s failed: %s", database.address, peer, status.error)
            self._stats.counters.sync_failures += 1
            self._stats.note("sync-failed", status.error, peer=peer, address=database.address)
            return None
        finally:
            status.running = False
        self._count_join("sync", report, peer=peer)
        status.finish(report)
        if report.stopped is not None:
            # Not a failure of the peer's: the quota logged the bound once; the record says why.
            self.repo.quota.refuse()
            status.error = f"StorageLimitReached: {report.stopped}"
            self._stats.note("storage-full", report.stopped, peer=peer, address=database.address)
        if report.ended is not None:
            status.error = f"StreamEnded: {report.ended}"
            log.info("sync of %s with %s ended early: %s", database.address, peer, report.ended)
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
        found = self._asked.pop(key, None)  # re-inserted last: the most recent pull goes last
        while len(self._asked) >= MAX_ASKED_PEERS:
            del self._asked[next(iter(self._asked))]
        found = self._asked[key] = {} if found is None else found
        return found

    async def _fetch_manifest(self, peer: str, manifest_cid: CID) -> bytes | None:
        try:
            with trio.fail_after(MANIFEST_SECONDS):
                stream = await self.host.open_stream(peer, PROTOCOL_ID)
                try:
                    return await fetch_manifest(stream, manifest_cid)
                finally:
                    await stream.close()
        except _EXCHANGE_FAILED as exc:
            log.info("no manifest of %s from %s: %s", manifest_cid, peer, exc)
            return None

    # -- serving ------------------------------------------------------------------------------

    async def serve_stream(self, stream: Stream) -> None:
        """Answer a peer's pulls on one inbound sync stream (the host's handler for it)."""
        counted = SyncStats()
        peer = stream.remote_peer_id

        def refused(address: str) -> bool:
            return self._refuse_private(peer, address, "sync request from a peer not a reader")

        self._stats.serving[id(counted)] = counted  # the dashboard's bytes, while it runs
        try:
            with serving(peer):
                await serve(
                    _Charged(stream, self._budgets, peer),
                    self.repo,
                    self._worker,
                    stats=counted,
                    reader=did_of_peer(peer),
                    refused=refused,
                )
        except SendLimitError as exc:
            # Our answer would have broken a limit: not sent, and not the peer's fault.
            log.warning("sync stream from %s stopped: %s", peer, exc)
            await stream.reset()
        except ProtocolError as exc:
            await stream.reset()
            await self._strike(stream.remote_peer_id, str(exc))
        except (GridnodeError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("sync stream from %s ended: %s", stream.remote_peer_id, exc)
        else:
            await stream.close()
        finally:
            del self._stats.serving[id(counted)]
            served = self._stats.served.setdefault(stream.remote_peer_id, ServedTotals())
            trim_oldest(self._stats.served)
            served.add(counted)


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


class _Charged:
    """A served sync stream whose writes are charged to the peer's byte budget (and wait while
    it is in debt)."""

    def __init__(self, stream: Stream, budgets: Budgets, peer: str) -> None:
        self._stream = stream
        self._budgets = budgets
        self._peer = peer

    async def read(self, max_bytes: int) -> bytes:
        return await self._stream.read(max_bytes)

    async def write(self, data: bytes) -> None:
        await self._budgets.send(self._peer, len(data))
        await self._stream.write(data)

    async def close(self) -> None:
        await self._stream.close()


def _canonical(address: str) -> str:
    """``/gridnode/<manifest CID>`` for any form of a database address."""
    return "/gridnode/" + str(parse_address(address))


def _has_missing(database: StoredDatabase, given_up: dict[CID, int]) -> bool:
    """Whether pending entries wait for a parent not yet given up on with this peer. Costs one
    counter read, plus a lookup per CID given up on (at most ``sync.MAX_ASKED``): never a pass
    over the pending set, which an outsider's orphans could make large."""
    count = database.missing_count
    if not count:
        return False
    hopeless = [cid for cid, asks in given_up.items() if asks >= MAX_ASKS]
    if count > len(hopeless):
        return True  # more are missing than were ever given up on
    return count > sum(1 for cid in hopeless if database.is_missing(cid))
