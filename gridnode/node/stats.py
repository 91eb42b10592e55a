"""What a running node has done and seen since it started, in one place: :class:`NodeStats`.

The API's ``/status``, ``/peers`` and ``/events``, the dashboard and ``/metrics`` read
``node.stats`` and nothing else of the node's state; the node's rooms write it as they work. The
records follow three rules:

- **bounded**: per-peer records (pulls, what was served, strikes) keep at most
  :data:`MAX_PEER_RECORDS` peers and forget the oldest first (:func:`trim_oldest`), so a peer
  coming back under ever new ids cannot grow them without end; the events keep the last
  :data:`MAX_EVENTS`.
- **monotonic where Prometheus needs it**: :class:`NodeCounters`, the ``total_...`` of each
  :class:`PeerSync` and :class:`ServedTotals` only grow while the node runs (``/metrics`` exposes
  them as counters); the rest describes the last pull and may go down.
- **two clocks, each named**: :attr:`PeerSync.started` is trio's clock (``trio.current_time()``:
  "seconds ago" must not jump with the wall clock), :attr:`NodeEvent.at` is wall-clock time (what
  an operator compares with a log line).

Nothing here is kept across restarts, and nothing here decides anything, with one exception: the
strikes, which the peers room (:mod:`gridnode.node.peers`) both counts and reads back to decide
whom to disconnect; they live here so that ``/peers`` shows them.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from gridnode.net.bitswap import BitswapStats
    from gridnode.node.budget import Budgets
    from gridnode.node.history import History
    from gridnode.node.sync import PullReport
    from gridnode.repo import ImportReport
    from gridnode.storage.worker import StorageWorker
    from protocols.sync import SyncStats

__all__ = [
    "MAX_EVENTS",
    "MAX_PEER_RECORDS",
    "CountJoin",
    "NodeCounters",
    "NodeEvent",
    "NodeStats",
    "PeerSync",
    "ServedTotals",
    "trim_oldest",
]

#: Recent rejections and errors a node remembers (``NodeStats.events``).
MAX_EVENTS: Final = 200
#: Per-peer records (strikes, syncs, what was served) kept at most; the oldest go first.
MAX_PEER_RECORDS = 4096


def trim_oldest(records: dict[Any, Any]) -> None:
    """Forget the oldest of ``records`` (insertion order) beyond :data:`MAX_PEER_RECORDS`."""
    while len(records) > MAX_PEER_RECORDS:
        del records[next(iter(records))]


@dataclass
class PeerSync:
    """The last pull from one peer for one database, and the totals over every pull of it."""

    peer: str
    address: str
    #: When the last pull began, on trio's clock (``trio.current_time()``), not the wall clock:
    #: only ever compared with trio's clock (the API's ``seconds_ago``).
    started: float = 0.0
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

    @classmethod
    def begin(cls, peer: str, address: str, started: float, previous: PeerSync | None) -> PeerSync:
        """The record of a pull starting now: the last pull's figures cleared, its totals kept
        (they only grow, ``/metrics`` counts them)."""
        status = cls(peer, address, started=started, running=True)
        if previous is not None:
            status.pulls = previous.pulls
            status.total_applied = previous.total_applied
            status.total_round_trips = previous.total_round_trips
            status.total_messages = previous.total_messages
            status.total_bytes_sent = previous.total_bytes_sent
            status.total_bytes_received = previous.total_bytes_received
            status.total_entries_received = previous.total_entries_received
        status.pulls += 1
        return status

    def finish(self, report: PullReport) -> None:
        """Take in what a pull that ran to its end did."""
        stats = report.stats
        self.applied = report.applied
        self.rejected = len(report.rejected)
        self.round_trips = stats.round_trips
        self.messages = stats.messages_sent + stats.messages_received
        self.bytes_sent = stats.bytes_sent
        self.bytes_received = stats.bytes_received
        self.entries_received = stats.blocks_received
        self.overhead_bytes = stats.overhead_bytes
        self.complete = report.complete
        self.total_applied += report.applied
        self.total_round_trips += stats.round_trips
        self.total_messages += self.messages
        self.total_bytes_sent += stats.bytes_sent
        self.total_bytes_received += stats.bytes_received
        self.total_entries_received += stats.blocks_received


@dataclass
class ServedTotals:
    """What this node served one peer (as the server side of its pulls) since it started."""

    streams: int = 0
    messages: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    entries_sent: int = 0

    def add(self, stream: SyncStats) -> None:
        """Count one served stream (also one that ended in an error: what it carried counts)."""
        self.streams += 1
        self.messages += stream.messages_sent + stream.messages_received
        self.bytes_sent += stream.bytes_sent
        self.bytes_received += stream.bytes_received
        self.entries_sent += stream.blocks_sent


@dataclass(frozen=True)
class NodeEvent:
    """A rejection or an error, as the dashboard lists them (``NodeStats.events``)."""

    #: Wall-clock time (seconds since the epoch).
    at: float
    #: ``rejected`` (an entry), ``refused`` (an announcement), ``sync-failed``, ``strike``,
    #: ``disconnected``, ``connect-failed``, ``store-failed``, ``storage-full`` (a pull stopped at
    #: ``max_storage``).
    kind: str
    text: str
    peer: str | None = None
    address: str | None = None


@dataclass
class NodeCounters:
    """Counts since the node started; they only grow (``GET /metrics``)."""

    #: Entries applied, by where they came from: ``write``, ``sync``, ``gossip``, ``import``,
    #: ``bitswap``.
    applied: Counter[str] = field(default_factory=Counter)
    #: Entries rejected, by reason (the error's class name, e.g. ``InvalidSignature``).
    rejected: Counter[str] = field(default_factory=Counter)
    gossip_received: int = 0
    gossip_published: int = 0
    sync_failures: int = 0
    #: Pulls asked for by an announcement and not run: what it named had come meanwhile (by
    #: another pull, or inline in another announcement).
    pulls_saved: int = 0
    #: Announcements naming heads this node lacks that came from no connected peer it could
    #: pull them from (their origin not connected, and forwarded by no peer still connected).
    pulls_unrouted: int = 0
    #: Protocol violations counted against peers (``strikes`` below decays; this does not).
    strikes: int = 0
    #: Requests for a private database refused to a peer that may not read it (sync requests,
    #: direct heads announcements): no strike, an honest peer may simply not be a reader.
    private_refused: int = 0
    #: Replica statements this node published, and those it refused (gridnode/node/replicas.py).
    statements_published: int = 0
    rejected_statements: int = 0
    #: Summaries (docs/spec.md §10) sent to peers, heard from them, and heard too soon after
    #: the same peer's last one (not read, not acted on).
    summaries_sent: int = 0
    summaries_received: int = 0
    summaries_refused: int = 0


@dataclass
class GatewayStats:
    """The gateway's UnixFS answers (``/ipfs/{cid}/...`` of files and directories,
    :mod:`gridnode.api.unixfs`) since the node started."""

    #: Requests answered, whatever the status (304s and errors too).
    requests: int = 0
    #: Files answered (200 or 206), and of them by a Range (206).
    files: int = 0
    ranges: int = 0
    #: Directory listings answered.
    listings: int = 0
    #: Bytes the answers to GET announced (Content-Length; a cut stream sent fewer).
    bytes: int = 0
    #: Requests for something the node does not hold (404).
    not_found: int = 0


@dataclass
class NodeStats:
    """What a running node has done and seen since it started: what the API's ``/status``,
    ``/peers`` and ``/events``, the dashboard and ``/metrics`` read (and nothing else of the
    node's state)."""

    #: (peer, address) -> the last pull.
    syncs: dict[tuple[str, str], PeerSync] = field(default_factory=dict)
    #: What this node served each peer (the server side of their pulls).
    served: dict[str, ServedTotals] = field(default_factory=dict)
    #: The served sync streams still open, by ``id``: what each carried so far (a stream is
    #: added to :attr:`served` when it ends, and a peer's stream lasts as long as it pulls).
    serving: dict[int, SyncStats] = field(default_factory=dict)
    #: Protocol violations per peer, decaying (one forgiven per ``STRIKE_DECAY`` s); at
    #: ``MAX_STRIKES`` the peer is disconnected and banned (:mod:`gridnode.node.peers`).
    strikes: dict[str, int] = field(default_factory=dict)
    #: The last MAX_EVENTS rejections and errors, oldest first.
    events: deque[NodeEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    counters: NodeCounters = field(default_factory=NodeCounters)
    #: Gossip announcements refused by the topic validator.
    rejected_announcements: int = 0
    #: Bitswap's counters (``None`` when the config turns bitswap off).
    bitswap: BitswapStats | None = None
    #: Every remote peer's storage-worker time and bytes (:mod:`gridnode.node.budget`).
    budgets: Budgets | None = None
    #: The storage worker, whose ``usage`` is per tag (peer or ``local``).
    worker: StorageWorker | None = None
    #: The last hour's samples and the peers' latency (:mod:`gridnode.node.history`).
    history: History | None = None
    #: The gateway's UnixFS answers.
    gateway: GatewayStats = field(default_factory=GatewayStats)

    def budget_figures(self) -> list[dict[str, Any]]:
        """Per peer: worker seconds used and left, bytes sent and left, seconds throttled."""
        return [] if self.budgets is None else list(self.budgets.figures())

    def note(
        self, kind: str, text: str, *, peer: str | None = None, address: str | None = None
    ) -> None:
        """Remember a rejection or an error in :attr:`events`, stamped with the wall clock."""
        self.events.append(NodeEvent(time.time(), kind, text, peer, address))

    def count_join(
        self, source: str, report: ImportReport | PullReport, *, peer: str | None = None
    ) -> None:
        """Count what a join did: applied by ``source``, rejected by reason (each rejection
        also an event)."""
        self.counters.applied[source] += report.applied
        for cid, reason in report.rejected:
            self.counters.rejected[reason.split(":", 1)[0].strip() or "unknown"] += 1
            self.note("rejected", f"{cid}: {reason}", peer=peer, address=report.address)


class CountJoin(Protocol):
    """``count_join(source, report, peer=...)``: how a room reports what a join did (the node's
    :meth:`~gridnode.node.Node.count_join`: counted here, and bitswap told of new blocks)."""

    def __call__(
        self, source: str, report: ImportReport | PullReport, *, peer: str | None = None
    ) -> None: ...
