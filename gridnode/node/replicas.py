"""Who holds what: this node's signed replica statements, and what it heard of everyone else's.

For each public database the node replicates, it subscribes to the database's replicas topic
(:func:`protocols.replicas.topic_for`) and publishes there a statement signed with its key
(:mod:`protocols.replicas`: peer id, heads, entry count, time): when its heads changed (at most
once per :data:`STATEMENT_GAP` seconds per database) and otherwise every slow round
(:data:`REFRESH_ROUNDS` announce intervals, at most :data:`REFRESH_MAX` seconds), so a holder
stays counted while it runs and is forgotten ``ttl`` seconds after it stops (three refreshes and
a margin). An unchanged statement is refreshed as rarely as that because its cost is per
database: a signature and a gossip message every refresh for each one held, which made replica
statements most of an idle node's CPU (docs/benchmarks.md, "Issue 21, item 4"). What it hears goes into a
:class:`~protocols.replicas.ReplicaAggregator`; :meth:`ReplicaStatements.summary` answers
``GET /db/{db}/replicas``, ``gridnode replicas`` and the ``replicas`` of each ``/status`` row.

A private database has no replicas topic and no statement: its name and its holders are never
published where every peer sees them (docs/spec.md §10, "Private databases"). The topics are a
separate subscription from the heads topic, so a node that does not know statements neither
receives them nor refuses them.

What it refuses (in the topic validator, before gossipsub forwards anything): a statement that
does not parse or verify, names another database than its topic or another peer than its sender
(:func:`protocols.replicas.parse_statement`), and, past :data:`STATEMENTS_PER_MINUTE` from one
peer for one database, every further one that minute (a flood costs the flooder, not this node's
memory or CPU: nothing past the limit is verified). Each refusal is counted
(``stats.counters.rejected_statements``) and logged a few lines per peer a minute.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

from crdt.errors import GridnodeError
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from crdt.manifest import parse_address
from gridnode.logs import LogLimiter
from gridnode.net import Host, NetError, Subscription
from gridnode.node.stats import NodeStats
from gridnode.repo import Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker
from protocols.errors import ReplicaStatementError, SendLimitError
from protocols.replicas import (
    MAX_STATEMENT_HEADS,
    ReplicaAggregator,
    ReplicaStatement,
    parse_statement,
    sign_statement,
    topic_for,
)

__all__ = [
    "REFRESH_MAX",
    "REFRESH_ROUNDS",
    "STATEMENTS_PER_MINUTE",
    "STATEMENT_GAP",
    "TICK",
    "ReplicaStatements",
    "statement_ttl",
]

log = logging.getLogger(__name__)

#: Seconds between two looks at what changed (subscriptions to open or close, heads to state).
TICK: Final = 1.0
#: A database's statement goes out at most once per this many seconds, however often it changes.
STATEMENT_GAP: Final = 1.0
#: An unchanged statement is refreshed every this many announce intervals (the slow round of
#: :mod:`gridnode.node.replication`).
REFRESH_ROUNDS: Final = 10
#: A statement is refreshed at least this often (seconds), even with ``announce_interval = inf``.
REFRESH_MAX: Final = 300.0
#: Statements accepted from one peer for one database a minute (a refresh a second, and room).
STATEMENTS_PER_MINUTE: Final = 90


def statement_ttl(announce_interval: float) -> float:
    """How long a statement counts after it was heard: three refreshes and a five-second
    margin, so one or two lost messages do not drop a holder."""
    return 3 * _refresh(announce_interval) + 5.0


def _refresh(announce_interval: float) -> float:
    return min(max(REFRESH_ROUNDS * announce_interval, STATEMENT_GAP), REFRESH_MAX)


@dataclass
class _Stated:
    """What this node last stated of one database, and when (trio time)."""

    entries: int
    heads: tuple[CID, ...]
    at: float


class ReplicaStatements:
    """The node's statements and the aggregate of its peers'; made by :class:`~gridnode.node.Node`.

    ``addresses``: the databases replicated now (the replication room's)."""

    def __init__(
        self,
        repo: Repo,
        host: Host,
        nursery: trio.Nursery,
        worker: StorageWorker,
        stats: NodeStats,
        *,
        keypair: Keypair,
        addresses: Callable[[], list[str]],
        announce_interval: Callable[[], float],
    ) -> None:
        self.repo = repo
        self.host = host
        self._nursery = nursery
        self._worker = worker
        self._stats = stats
        self._keypair = keypair
        self._addresses = addresses
        self._announce_interval = announce_interval
        self.aggregator = ReplicaAggregator(ttl=statement_ttl(announce_interval()))
        #: Canonical address -> the open subscription of its replicas topic.
        self._subscriptions: dict[str, Subscription] = {}
        #: Canonical address -> whether it is private (asked of the database once).
        self._private: dict[str, bool] = {}
        self._stated: dict[str, _Stated] = {}
        self._flood = LogLimiter(lines=STATEMENTS_PER_MINUTE, interval=60.0, max_keys=4096)
        self._refusals = LogLimiter()

    async def start(self) -> None:
        self._nursery.start_soon(self._run)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except (GridnodeError, NetError) as exc:
                # A database that cannot be read this round is stated the next one.
                log.warning("replica statements: %s", exc)
            await trio.sleep(TICK)

    async def tick(self) -> None:
        """One round: follow the replica set (open and close topics), state what changed or is
        due, forget expired statements. What the databases hold is read in one call to the
        storage worker for all of them."""
        now = trio.current_time()
        self.aggregator.ttl = statement_ttl(self._announce_interval())
        self.aggregator.expire(now)
        wanted = set(self._addresses())
        for address in list(self._subscriptions):
            if address not in wanted:
                await self._subscriptions.pop(address).aclose()
                self._stated.pop(address, None)
        held = await self._worker.run(self._own_all, sorted(wanted)) if wanted else {}
        for address, (entries, heads) in held.items():
            if address not in self._subscriptions:
                await self._subscribe(address)
            await self._state(address, entries, heads, now)

    def _own_all(self, addresses: list[str]) -> dict[str, tuple[int, tuple[CID, ...]]]:
        """Entry count and newest heads of each public database of ``addresses`` (in the
        storage worker). One that cannot be opened now is left out this round."""
        found = {}
        for address in addresses:
            try:
                database = self.repo.database(address)
                if self._private.setdefault(address, database.private):
                    continue
                found[address] = (len(database), tuple(database.newest_heads(MAX_STATEMENT_HEADS)))
            except GridnodeError as exc:
                log.debug("no statement of %s this round: %s", address, exc)
        return found

    async def _subscribe(self, address: str) -> None:
        db = parse_address(address)
        topic = topic_for(db)
        self.host.set_topic_validator(topic, self._validator(db, address))
        subscription = self._subscriptions[address] = await self.host.subscribe(topic)
        self._nursery.start_soon(self._listen, db, subscription)

    async def _state(self, address: str, entries: int, heads: tuple[CID, ...], now: float) -> None:
        """Publish this node's statement of ``address`` if its heads changed (and the last one
        is :data:`STATEMENT_GAP` old) or a refresh is due."""
        last = self._stated.get(address)
        if last is not None:
            changed = (entries, heads) != (last.entries, last.heads)
            if now - last.at < (STATEMENT_GAP if changed else self._refresh()):
                return
        statement = sign_statement(
            self._keypair, parse_address(address), heads, entries, int(time.time() * 1000)
        )
        try:
            message = statement.encode()
        except SendLimitError as exc:  # cannot happen for heads cut to the bound; say so if it does
            log.warning("not stating %s: %s", address, exc)
            return
        await self.host.publish(topic_for(statement.db), message)
        self._stated[address] = _Stated(entries, heads, now)
        self._stats.counters.statements_published += 1

    def _refresh(self) -> float:
        interval = self._announce_interval()
        return _refresh(interval if math.isfinite(interval) else REFRESH_MAX)

    def _validator(self, db: CID, address: str) -> Callable[[str, bytes], bool]:
        def validate(peer: str, data: bytes) -> bool:
            now = time.monotonic()  # validators may run outside trio's run
            if peer == self.host.peer_id:
                return True
            if not self._flood.allow(f"{peer} {db}", now):
                self._refuse(peer, address, f"more than {STATEMENTS_PER_MINUTE} a minute", now)
                return False
            try:
                parse_statement(data, origin=peer, topic_db=db)
            except ReplicaStatementError as exc:
                self._refuse(peer, address, str(exc), now)
                return False
            return True

        return validate

    def _refuse(self, peer: str, address: str, text: str, now: float) -> None:
        self._stats.counters.rejected_statements += 1
        if self._refusals.allow(peer, now):
            log.info("refused a replica statement from %s: %s", peer, text)
            self._stats.note("refused", f"replica statement: {text}", peer=peer, address=address)
        more = self._refusals.unreported(peer, now)
        if more:
            log.info(
                "%d more replica statements refused from %s (not logged one by one)", more, peer
            )

    async def _listen(self, db: CID, subscription: Subscription) -> None:
        async for peer, data in subscription:
            if peer == self.host.peer_id:
                continue
            self.heard(peer, data, db)

    def heard(self, peer: str, data: bytes, db: CID) -> bool:
        """Keep a statement ``peer`` sent on ``db``'s topic (verified again: the validator's
        answer is not carried along); whether it was kept."""
        try:
            statement = parse_statement(data, origin=peer, topic_db=db)
        except ReplicaStatementError:
            return False  # refused and counted by the validator already
        return self.aggregator.record(statement, trio.current_time())

    def own_statement(self, database: StoredDatabase) -> ReplicaStatement:
        """This node's statement of a database it keeps, unsigned (in the storage worker)."""
        return ReplicaStatement(
            self.host.peer_id,
            database.manifest.cid,
            tuple(database.newest_heads(MAX_STATEMENT_HEADS)),
            len(database),
            0,
        )

    async def summary(self, database: StoredDatabase) -> dict[str, Any]:
        """Who holds ``database``, from what this node heard: the counts of ``/status`` rows,
        the newest heads' entry count, and each holder."""
        own = await self._worker.run(self.own_statement, database)
        found = self.aggregator.summary(database.manifest.cid, trio.current_time(), own=own)
        private = await self._worker.run(_is_private, database)
        return {
            "address": database.address,
            "private": private,
            "entries": own.entries,
            **found.as_dict(),
            "peers": found.peers,
        }

    async def counts(self, addresses: list[str]) -> dict[str, dict[str, Any]]:
        """The ``replicas`` of each ``/status`` row, by address, with one call to the storage
        worker for all of them (a database whose store cannot open counts no holder)."""

        def own_statements() -> dict[str, ReplicaStatement | None]:
            found: dict[str, ReplicaStatement | None] = {}
            for address in addresses:
                try:
                    found[address] = self.own_statement(self.repo.database(address))
                except GridnodeError:
                    found[address] = None
            return found

        now = trio.current_time()
        out = {}
        for address, own in (await self._worker.run(own_statements)).items():
            if own is None:
                out[address] = {"holders": 0, "in_sync": 0, "behind": {}, "newest_entries": 0}
            else:
                out[address] = self.aggregator.summary(own.db, now, own=own).as_dict()
        return out


def _is_private(database: StoredDatabase) -> bool:
    return database.private
