"""The node's last hour, in memory: what the dashboard's charts draw, and each peer's latency.

:class:`History` keeps a sample of the node's own counters every :data:`STEP` seconds, at most
:data:`SPAN` seconds of them (360 samples): entries applied (every source: writes, pulls, gossip,
imports, bitswap), bytes received and sent (sync streams both ways, as puller and as server,
including the running pulls' and the open served streams' bytes so far, and bitswap's block
bytes sent), and connected peers.
The figures come from :class:`~gridnode.node.stats.NodeStats` and nothing else; the series the
API shows (:meth:`History.series`) are the differences between consecutive samples, plus one
point for the time since the last sample, so a chart has something to draw from the node's first
seconds. A counter that goes down (per-peer records forgotten beyond ``MAX_PEER_RECORDS``)
counts as zero for that step, never as a negative figure.

Latency: on every step, and within :data:`NEW_PEER_CHECK` of a peer connecting, the node pings its connected peers
(``/ipfs/ping/1.0.0``, :meth:`~gridnode.net.Host.ping`), at most :data:`MAX_PINGED` of them per
round, one ping in flight per peer, each bounded by :data:`PING_TIMEOUT`. The last round trip is
kept per peer while it is connected (a peer that does not answer has ``None``); a disconnected
peer is forgotten at the next round, so the table never outgrows the connections.

Refused here: anything kept across restarts, any figure a peer supplies (a peer only echoes 32
bytes, and a wrong echo is a failed ping), and any clock but the one passed in (trio's, so the
tests run on ``trio.testing.MockClock``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final

import trio

from gridnode.errors import NetError
from gridnode.logs import LogLimiter

if TYPE_CHECKING:
    from gridnode.net import Host
    from gridnode.node.stats import NodeStats

__all__ = [
    "MAX_PINGED",
    "PING_TIMEOUT",
    "SPAN",
    "STEP",
    "History",
    "Sample",
    "totals_of",
]

log = logging.getLogger(__name__)

#: Seconds between two samples (and two rounds of pings).
STEP: Final = 10.0
#: Seconds of samples kept: the last hour.
SPAN: Final = 3600.0
#: Peers pinged per round at most (the default ``max_connections`` is 64).
MAX_PINGED: Final = 64
#: Seconds between two looks for connected peers not pinged yet.
NEW_PEER_CHECK: Final = 1.0
#: Seconds a ping may take before the peer counts as not answering (less than a step, so rounds
#: never pile up).
PING_TIMEOUT: Final = 5.0


@dataclass(frozen=True)
class Sample:
    """The node's counters at one moment (cumulative, except ``peers``)."""

    applied: int
    bytes_in: int
    bytes_out: int
    peers: int


def totals_of(stats: NodeStats, peers: int) -> Sample:
    """The counters :class:`History` samples, read from ``stats``."""
    applied = sum(stats.counters.applied.values())
    bytes_in = bytes_out = 0
    for sync in stats.syncs.values():
        bytes_in += sync.total_bytes_received + (sync.bytes_so_far if sync.running else 0)
        bytes_out += sync.total_bytes_sent
    for served in stats.served.values():
        bytes_in += served.bytes_received
        bytes_out += served.bytes_sent
    for open_stream in stats.serving.values():
        bytes_in += open_stream.bytes_received
        bytes_out += open_stream.bytes_sent
    if stats.bitswap is not None:
        bytes_out += stats.bitswap.block_bytes_sent
    return Sample(applied, bytes_in, bytes_out, peers)


class History:
    """Samples of the node's counters over the last :data:`SPAN` seconds, and its peers'
    latency. Time is passed in (trio's clock)."""

    def __init__(self, *, step: float = STEP, span: float = SPAN) -> None:
        self.step = step
        self.span = span
        #: (time, sample), oldest first; one more than the span holds, to difference the first.
        self.samples: deque[tuple[float, Sample]] = deque(maxlen=int(span / step) + 1)
        #: peer id -> the last round trip in milliseconds (``None``: no answer), connected peers.
        self.latency: dict[str, float | None] = {}
        self._pinging: set[str] = set()
        self._failures = LogLimiter()

    # -- the series ---------------------------------------------------------------------------

    def record(self, now: float, sample: Sample) -> None:
        """Keep ``sample`` taken at ``now``; samples older than the span fall off."""
        self.samples.append((now, sample))

    def series(self, now: float, current: Sample) -> list[dict[str, Any]]:
        """The last hour as points, oldest first: per step, ``entries_applied``, ``bytes_in``
        and ``bytes_out`` during it and ``peers`` at its end; ``seconds_ago`` is the step's
        end. The last point runs from the last sample to ``now`` (``current``)."""
        taken = [(at, s) for at, s in self.samples if now - at <= self.span]
        if not taken or now > taken[-1][0]:
            taken.append((now, current))
        points = []
        for (_, before), (at, after) in pairwise(taken):
            points.append(
                {
                    "seconds_ago": round(max(0.0, now - at), 3),
                    "entries_applied": max(0, after.applied - before.applied),
                    "bytes_in": max(0, after.bytes_in - before.bytes_in),
                    "bytes_out": max(0, after.bytes_out - before.bytes_out),
                    "peers": after.peers,
                }
            )
        return points

    def as_json(self, now: float, stats: NodeStats, peers: int) -> dict[str, Any]:
        """``/status``'s ``history``: the step, the span and :meth:`series` up to ``now``
        (``stats`` and ``peers``: the counters now)."""
        points = self.series(now, totals_of(stats, peers))
        return {"step": self.step, "span": self.span, "points": points}

    # -- latency ------------------------------------------------------------------------------

    async def ping(self, host: Host, peer: str) -> None:
        """Ping ``peer`` once, unless a ping to it is in flight; keep the round trip."""
        if peer in self._pinging:
            return
        self._pinging.add(peer)
        try:
            latency: float | None = await host.ping(peer, PING_TIMEOUT)
        except NetError as exc:  # no answer in time, or a wrong echo: no figure
            now = trio.current_time()
            if self._failures.allow(peer, now):
                log.info("%s", exc)
            more = self._failures.unreported(peer, now)
            if more:
                log.info("%d more failed pings to %s (not logged one by one)", more, peer)
            latency = None
        finally:
            self._pinging.discard(peer)
        if peer in host.peers():
            self.latency[peer] = latency

    def start_pings(self, nursery: trio.Nursery, host: Host, *, new_only: bool = False) -> None:
        """Forget peers no longer connected; start pings (in ``nursery``) to connected peers, or
        only to those never pinged yet (``new_only``), never more than :data:`MAX_PINGED` in
        flight."""
        connected = host.peers()
        for gone in set(self.latency) - set(connected):
            del self.latency[gone]
        room = MAX_PINGED - len(self._pinging)
        for peer in sorted(connected):
            if room <= 0:
                break
            if peer in self._pinging or (new_only and peer in self.latency):
                continue
            self._pinging.add(peer)  # now, so that the next call does not count it again
            nursery.start_soon(self._ping_started, host, peer)
            room -= 1

    async def _ping_started(self, host: Host, peer: str) -> None:
        self._pinging.discard(peer)
        await self.ping(host, peer)

    async def ping_round(self, host: Host) -> None:
        """:meth:`start_pings` to every connected peer, and wait for the answers."""
        async with trio.open_nursery() as nursery:
            self.start_pings(nursery, host)

    async def run(self, host: Host, stats: NodeStats, clock: Callable[[], float]) -> None:
        """Sample and ping every peer every step, and a newly connected peer (either way: a
        dialled one or one that dialled us) within :data:`NEW_PEER_CHECK` seconds; for ever
        (the node's nursery cancels it)."""
        async with trio.open_nursery() as nursery:
            next_sample = clock()
            while True:
                now = clock()
                if now >= next_sample:
                    self.record(now, totals_of(stats, len(host.peers())))
                    self.start_pings(nursery, host)
                    next_sample += self.step
                else:
                    self.start_pings(nursery, host, new_only=True)
                await trio.sleep_until(min(next_sample, clock() + NEW_PEER_CHECK))
