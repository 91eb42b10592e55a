"""Summaries: what a node tells each peer of every public database it holds, and what it hears.

A summary (``/gridnode/summary/1.0.0``, :class:`protocols.gossip.Summary`, docs/spec.md §10) names
each public database a node holds by a short key, with a key of its newest heads. A node sends
its summary

- to a peer as soon as they are connected, whichever side dialled (:meth:`Summaries.meet`), and
- to every connected peer in each slow round (anti-entropy: :mod:`gridnode.node.replication`).

A node that hears a summary pulls from that peer the databases whose heads differ from its own.
So peers that hold the same databases meet without a pull (before, a connection pulled every
database: 1,000 pulls at once for a node holding 1,000, issue 21), and a missed announcement
still reaches every connected peer. What a summary cannot stand for is pulled directly when
peers meet: private databases (never named in a summary), databases with entries waiting for
parents, databases without heads here, and every database from a peer that does not serve
summaries (an older version).

What it refuses: a summary sooner than :data:`SUMMARY_GAP` after the same peer's last (reset
unread, counted); a malformed one (a strike); from any summary, at most
:data:`MAX_SUMMARY_PULLS` pulls, and none for a database it does not replicate publicly. The
pulls themselves take their turn (:meth:`gridnode.node.replication.Replication.start_pull`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import trio

from gridnode.errors import ProtocolNotSupported
from gridnode.net import Host, NetError, Stream
from gridnode.node.stats import NodeStats, trim_oldest
from gridnode.node.sync import EXCHANGE_FAILED
from gridnode.quota import StorageQuota
from gridnode.storage.worker import StorageWorker
from protocols.errors import ProtocolError
from protocols.gossip import (
    MAX_ANNOUNCED_HEADS,
    MAX_SUMMARY,
    MAX_SUMMARY_ITEMS,
    SUMMARY_PROTOCOL_ID,
    Summary,
    heads_key,
    parse_summary,
)

if TYPE_CHECKING:
    from gridnode.node.replication import Replica

__all__ = ["MAX_SUMMARY_PULLS", "SUMMARY_GAP", "Summaries"]

log = logging.getLogger(__name__)

#: Pulls one summary may start at most (the databases it shows differ in, picked at random):
#: a stranger's summary claiming every database differs costs this many pulls, not one each.
MAX_SUMMARY_PULLS: Final = 64
#: Seconds a peer's summaries must be apart; one sooner is read, not acted on, and counted.
SUMMARY_GAP: Final = 1.0
#: How long sending or receiving one summary may take.
SUMMARY_SECONDS: Final = 10.0


class Summaries:
    """The summaries of one running node; made by its :class:`~gridnode.node.replication.
    Replication`, which hands it the replicas and how to start a pull."""

    def __init__(
        self,
        host: Host,
        worker: StorageWorker,
        stats: NodeStats,
        quota: StorageQuota,
        *,
        replicas: Callable[[], list[Replica]],
        start_pull: Callable[[str, str], None],
        strike: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self._host = host
        self._worker = worker
        self._stats = stats
        self._quota = quota
        self._replicas = replicas
        self._start_pull = start_pull
        self._strike = strike
        #: Per peer, when (trio time) its last summary was acted on.
        self._summarised: dict[str, float] = {}
        #: Which slice of the public replicas the next summary names (more than
        #: MAX_SUMMARY_ITEMS go in turns).
        self._summary_turn = 0

    async def summary(self) -> bytes | None:
        """This node's summary: each public replica with heads, keyed (one slice of them, in
        turns, if there are more than a summary holds); ``None`` if there is none."""
        public = [r for r in self._replicas() if not r.private]
        if len(public) > MAX_SUMMARY_ITEMS:
            slices = math.ceil(len(public) / MAX_SUMMARY_ITEMS)
            first = (self._summary_turn % slices) * MAX_SUMMARY_ITEMS
            public = public[first : first + MAX_SUMMARY_ITEMS]
            self._summary_turn += 1

        def items() -> list[tuple[bytes, bytes]]:
            found = []
            for replica in public:
                heads = replica.database.newest_heads(MAX_ANNOUNCED_HEADS)
                if heads:
                    found.append((replica.key, heads_key(heads)))
            return found

        found = await self._worker.run(items)
        return Summary(tuple(found)).encode() if found else None

    async def send(self, peer: str, message: bytes) -> bool:
        """Send ``peer`` this node's summary; ``False`` if it does not serve summaries (an
        older version, which re-announces every interval instead)."""
        try:
            with trio.fail_after(SUMMARY_SECONDS):
                stream = await self._host.open_stream(peer, SUMMARY_PROTOCOL_ID)
                try:
                    await stream.write(message)
                finally:
                    await stream.close()
        except ProtocolNotSupported:
            log.debug("%s does not serve summaries", peer)
            return False
        except (*EXCHANGE_FAILED, NetError) as exc:
            log.debug("could not send %s a summary: %s", peer, exc)  # gone, or too slow
            return True
        self._stats.counters.summaries_sent += 1
        return True

    async def heard(self, stream: Stream) -> None:
        """A peer's summary: pull from it each database this node replicates publicly whose
        heads differ from the peer's; at most :data:`MAX_SUMMARY_PULLS` of them, and nothing
        for a summary sooner than :data:`SUMMARY_GAP` after the peer's last one."""
        peer = stream.remote_peer_id
        now = trio.current_time()
        last = self._summarised.get(peer)
        if last is not None and now - last < SUMMARY_GAP:
            # Too soon: not even read (a flood costs the flooder a stream each, not our CPU).
            self._stats.counters.summaries_refused += 1
            await stream.reset()
            return
        self._summarised.pop(peer, None)  # re-inserted last: the oldest are forgotten first
        self._summarised[peer] = now
        trim_oldest(self._summarised)
        data = b""
        with trio.move_on_after(SUMMARY_SECONDS):
            while len(data) <= MAX_SUMMARY:
                chunk = await stream.read(MAX_SUMMARY + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        try:
            summary = parse_summary(data)
        except ProtocolError as exc:
            await self._strike(peer, f"summary: {exc}")
            return
        self._stats.counters.summaries_received += 1
        if self._quota.full():
            return  # at the bound: a hint only (the next summary comes once it clears)
        public = {r.key: r for r in self._replicas() if not r.private}
        theirs = [(public[db], heads) for db, heads in summary.items if db in public]
        if not theirs:
            return

        def differing() -> list[str]:
            return [
                replica.database.address
                for replica, heads in theirs
                if heads_key(replica.database.newest_heads(MAX_ANNOUNCED_HEADS)) != heads
            ]

        addresses = await self._worker.run(differing)
        if len(addresses) > MAX_SUMMARY_PULLS:
            addresses = random.sample(addresses, MAX_SUMMARY_PULLS)
        for address in addresses:
            self._start_pull(peer, address)

    async def meet(self, peer: str) -> None:
        """Send a peer just connected this node's summary at once (it pulls from us what
        differs, and sends us its own for the same), and pull from it only what a summary
        cannot stand for: private databases, databases with entries waiting for parents, and
        those without heads here. A peer that does not serve summaries (an older version) is
        pulled from for every database, as before. Either way the pulls take their turn
        (:data:`PEER_PULLS` at once)."""
        with trio.move_on_after(SUMMARY_SECONDS):
            while peer not in self._host.peers():  # told from inside the connection's set-up
                await trio.sleep(0.01)
        message = await self.summary()
        speaks = True if message is None else await self.send(peer, message)
        replicas = list(self._replicas())

        def due() -> list[str]:
            return [
                r.database.address
                for r in replicas
                if not speaks or r.private or r.database.missing_count or not r.database.heads
            ]

        for address in await self._worker.run(due):
            self._start_pull(peer, address)
