"""Pulls: a node fetching a replicated database's entries from one peer over
``/gridnode/sync/1.1.0`` (:mod:`gridnode.node.sync`), in turn and without waste.

:class:`Pulls` is the room of :class:`~gridnode.node.replication.Replication` that decides when
and from whom a pull runs, and runs it:

- at most one pull per database and peer at a time; a pull asked for while one runs is merged
  into the next run;
- whole-database pulls (a new connection, a summary that differs, the slow round) run
  :data:`PEER_PULLS` at a time per peer, the others waiting in order, one entry per database;
- a pull for announced heads goes to the announcement's origin if connected, else to the peer
  that forwarded it (:meth:`Pulls.pull_source`), waits while a pull of the same database from
  another peer runs (:data:`DEFER_SECONDS`), and is not run when nothing it was for is still
  lacking;
- heads or parents asked of a peer :data:`~gridnode.node.sync.MAX_ASKS` times in vain no longer
  make the node pull from that peer (:data:`MAX_ASKED_PEERS` pairs remembered);
- a pull that goes :data:`PULL_SECONDS` without joining a batch is cut off; a peer that breaks
  the protocol gets a strike, a pull that merely fails does not; at the storage bound no pull
  runs and a running one stops between two batches.

Each pull is recorded in :class:`~gridnode.node.stats.NodeStats` (``syncs``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import trio

from crdt.ipld.cid import CID
from gridnode.net import Host, Stream
from gridnode.node.stats import CountJoin, NodeStats, PeerSync, trim_oldest
from gridnode.node.sync import EXCHANGE_FAILED, MAX_ASKS, PullReport, pull
from gridnode.quota import StorageQuota
from gridnode.repo import StoredDatabase
from gridnode.storage.worker import StorageWorker
from protocols.errors import ProtocolError, SendLimitError
from protocols.wire import PROTOCOL_ID

if TYPE_CHECKING:
    from gridnode.node.replication import Replica

__all__ = [
    "DEFER_SECONDS",
    "MAX_ASKED_PEERS",
    "MISSING_GRACE",
    "PEER_PULLS",
    "PULL_SECONDS",
    "Pulls",
]

log = logging.getLogger(__name__)

#: (peer, database) pairs whose asked CIDs a node remembers (the oldest are forgotten first).
MAX_ASKED_PEERS: Final = 1024
#: The longest one pull may go without joining a batch of entries: a peer that trickles bytes
#: cannot hold a pull open for ever, while a long honest catch-up (1M entries take minutes) is
#: never cut off as long as it moves.
PULL_SECONDS: Final = 300.0
#: Seconds a pull for announced heads waits, at most, while a pull of the same database from
#: another peer runs (that pull most likely brings them).
DEFER_SECONDS: Final = 2.0
#: Seconds a pull asked for only because inline entries came before their parents waits first:
#: at a few writes a second announcements overtake one another, and the parents' own
#: announcement usually follows within milliseconds.
MISSING_GRACE: Final = 0.25
#: Whole-database pulls (:meth:`Pulls.start_pull`) that run at once from one peer; the rest
#: wait their turn. A node holding 1,000 databases started 1,000 pulls at every connection,
#: which on a loaded machine timed out, dropped the connection and started again (issue 21,
#: item 4). Pulls for announced heads are not queued: they are the latency path.
PEER_PULLS: Final = 8


class Pulls:
    """When and from whom each replicated database is pulled; made by
    :class:`~gridnode.node.replication.Replication`, which shares its replicas with it."""

    def __init__(
        self,
        replicas: dict[str, Replica],
        host: Host,
        nursery: trio.Nursery,
        worker: StorageWorker,
        stats: NodeStats,
        quota: StorageQuota,
        *,
        announce: Callable[[str], Awaitable[None]],
        may_read: Callable[[str, StoredDatabase], Awaitable[bool]],
        strike: Callable[[str, str], Awaitable[None]],
        count_join: CountJoin,
    ) -> None:
        #: Canonical address -> replica: :class:`Replication`'s own dict, not a copy.
        self._replicas = replicas
        self.host = host
        self._nursery = nursery
        self._worker = worker
        self._stats = stats
        self._quota = quota
        self._announce = announce
        self._may_read = may_read
        self._strike = strike
        self._count_join = count_join
        #: (peer, address) -> how often each CID was asked of that peer (see sync.pull).
        self._asked: dict[tuple[str, str], dict[CID, int]] = {}
        #: Per peer, the whole-database pulls waiting their turn (an ordered set of addresses;
        #: at most one entry per database held) and how many of them run (<= PEER_PULLS).
        self._waiting: dict[str, dict[str, None]] = {}
        self._in_flight: dict[str, int] = {}

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
                if self._quota.full():
                    self._quota.refuse()  # at the bound: counted, not logged (once was)
                    replica.queued.pop(peer, None)
                    return
                report = await self._pull_once(peer, replica.database)
                if report is not None and report.applied:
                    await self._announce(address)
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
                        quota=self._quota,
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
        except EXCHANGE_FAILED as exc:
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
            self._quota.refuse()
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
