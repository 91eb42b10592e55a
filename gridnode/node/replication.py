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
  ``/gridnode/sync/1.1.0`` (:mod:`gridnode.node.pulls` decides when and from whom, and runs the
  pull: at most one per database and peer at a time; one asked for while one runs is run again
  right after). Peers that connect, whichever
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
from gridnode.node.pulls import Pulls
from gridnode.node.stats import CountJoin, NodeStats, ServedTotals, trim_oldest
from gridnode.node.summaries import Summaries
from gridnode.node.sync import EXCHANGE_FAILED, fetch_manifest, serve
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

__all__ = ["Replica", "Replication"]

log = logging.getLogger(__name__)

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
        #: When and from whom each replica is pulled (a room of its own).
        self.pulls = Pulls(
            self._replicas,
            host,
            nursery,
            worker,
            stats,
            repo.quota,
            announce=self.announce,
            may_read=self._may_read,
            strike=strike,
            count_join=count_join,
        )

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
        except (*EXCHANGE_FAILED, NetError) as exc:
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
            await self.pulls.pull_announced(peer, message.forwarder, database, unknown)

    # -- pulling ------------------------------------------------------------------------------

    def peer_connected(self, peer: str) -> None:
        """A peer just connected, whichever side dialled: meet it (:meth:`Summaries.meet`)."""
        self._nursery.start_soon(self.summaries.meet, peer)

    def start_pull(self, peer: str, address: str) -> None:
        """Pull a replicated database from ``peer`` in its turn (:meth:`Pulls.start_pull`)."""
        self.pulls.start_pull(peer, address)

    def pulling(self, address: str) -> bool:
        """Whether a pull of the database at ``address`` runs now, from any peer."""
        replica = self._replicas.get(address) or self._replicas.get(_canonical(address))
        return replica is not None and bool(replica.running)

    async def _fetch_manifest(self, peer: str, manifest_cid: CID) -> bytes | None:
        try:
            with trio.fail_after(MANIFEST_SECONDS):
                stream = await self.host.open_stream(peer, PROTOCOL_ID)
                try:
                    return await fetch_manifest(stream, manifest_cid)
                finally:
                    await stream.close()
        except EXCHANGE_FAILED as exc:
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
