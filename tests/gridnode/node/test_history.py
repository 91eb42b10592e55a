"""The node's last hour (gridnode.node.history): the series the dashboard draws, kept for an hour
and no longer, and the peers' latency, bounded (per round, per peer in flight, in time) and
forgotten with the connection. Time on trio's MockClock; one test with two real nodes."""

import math

import trio
import trio.testing

from gridnode.errors import StreamError
from gridnode.node import open_node
from gridnode.node.history import MAX_PINGED, PING_TIMEOUT, SPAN, STEP, History, Sample, totals_of
from gridnode.node.stats import NodeStats, PeerSync, ServedTotals
from protocols.sync import SyncStats

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def test_the_series_are_per_step_differences_with_a_live_last_point():
    history = History()
    history.record(0.0, Sample(applied=0, bytes_in=0, bytes_out=0, peers=0))
    history.record(10.0, Sample(applied=5, bytes_in=100, bytes_out=40, peers=1))
    history.record(20.0, Sample(applied=5, bytes_in=150, bytes_out=40, peers=2))
    points = history.series(23.0, Sample(applied=7, bytes_in=150, bytes_out=41, peers=2))
    assert points == [
        {"seconds_ago": 13.0, "entries_applied": 5, "bytes_in": 100, "bytes_out": 40, "peers": 1},
        {"seconds_ago": 3.0, "entries_applied": 0, "bytes_in": 50, "bytes_out": 0, "peers": 2},
        {"seconds_ago": 0.0, "entries_applied": 2, "bytes_in": 0, "bytes_out": 1, "peers": 2},
    ]
    # A node's first seconds: one sample, and the point up to now.
    fresh = History()
    fresh.record(0.0, Sample(0, 0, 0, 0))
    assert fresh.series(4.0, Sample(3, 0, 0, 1)) == [
        {"seconds_ago": 0.0, "entries_applied": 3, "bytes_in": 0, "bytes_out": 0, "peers": 1}
    ]


def test_a_counter_that_goes_down_counts_zero_not_negative():
    # Per-peer records beyond MAX_PEER_RECORDS are forgotten, and their totals with them.
    history = History()
    history.record(0.0, Sample(applied=10, bytes_in=1000, bytes_out=500, peers=3))
    [point] = history.series(10.0, Sample(applied=12, bytes_in=200, bytes_out=100, peers=1))
    assert point["bytes_in"] == point["bytes_out"] == 0 and point["entries_applied"] == 2


def test_an_hour_is_kept_and_no_more():
    history = History()
    for i in range(1000):
        history.record(i * STEP, Sample(applied=i, bytes_in=0, bytes_out=0, peers=0))
    assert len(history.samples) == int(SPAN / STEP) + 1
    now = 999 * STEP
    points = history.series(now, Sample(applied=999, bytes_in=0, bytes_out=0, peers=0))
    assert len(points) == int(SPAN / STEP)
    assert all(p["seconds_ago"] <= SPAN for p in points)
    assert all(p["entries_applied"] == 1 for p in points)
    # Samples older than the span are left out even before the deque drops them (a node whose
    # sampling paused, say).
    assert history.series(now + 2 * SPAN, Sample(999, 0, 0, 0)) == []


def test_the_totals_are_the_node_stats_own_counters():
    stats = NodeStats()
    stats.counters.applied["write"] += 3
    stats.counters.applied["sync"] += 4
    pull = PeerSync("p", "/gridnode/x", total_bytes_received=100, total_bytes_sent=7)
    running = PeerSync("q", "/gridnode/x", running=True, bytes_so_far=30, total_bytes_received=5)
    stats.syncs = {("p", "/gridnode/x"): pull, ("q", "/gridnode/x"): running}
    stats.served = {"r": ServedTotals(bytes_sent=60, bytes_received=9)}
    assert totals_of(stats, 2) == Sample(applied=7, bytes_in=144, bytes_out=67, peers=2)
    # A served stream still open counts what it carried so far (a peer's stream lasts).
    open_stream = SyncStats(bytes_sent=1000, bytes_received=20)
    stats.serving[id(open_stream)] = open_stream
    assert totals_of(stats, 2) == Sample(applied=7, bytes_in=164, bytes_out=1067, peers=2)


class FakeHost:
    """Connected peers, each answering a ping after its own delay (``inf``: never)."""

    def __init__(self, delays):
        self.delays = dict(delays)
        self.pings: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def peers(self):
        return list(self.delays)

    async def ping(self, peer, timeout):
        self.pings.append(peer)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            delay = self.delays[peer]
            if delay > timeout:
                await trio.sleep(timeout)
                raise StreamError(f"no answer from {peer}")
            await trio.sleep(delay)
            return delay * 1000.0
        finally:
            self.in_flight -= 1


def run(main):
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_every_step_a_sample_and_a_round_of_pings_bounded_in_time():
    host = FakeHost({"fast": 0.002, "slow": 0.5, "silent": math.inf})
    stats = NodeStats()
    history = History()

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(history.run, host, stats, trio.current_time)
            await trio.sleep(PING_TIMEOUT + 1)
            # The silent peer gave up after PING_TIMEOUT, well within the step.
            assert history.latency == {"fast": 2.0, "slow": 500.0, "silent": None}
            stats.counters.applied["sync"] += 9
            await trio.sleep(3 * STEP)
            nursery.cancel_scope.cancel()
        assert len(history.samples) == 4
        assert [at for at, _ in history.samples] == [0.0, STEP, 2 * STEP, 3 * STEP]
        assert [s.applied for _, s in history.samples] == [0, 9, 9, 9]
        assert [s.peers for _, s in history.samples] == [3, 3, 3, 3]
        assert host.pings.count("silent") == 4

    assert PING_TIMEOUT < STEP
    run(main)


def test_a_disconnected_peer_is_forgotten_and_one_ping_per_peer_is_in_flight():
    host = FakeHost({"a": 1.0, "b": 0.001})
    history = History()

    async def main():
        async with trio.open_nursery() as nursery:
            # A peer connecting again and again while its ping is out: one ping, not many.
            for _ in range(10):
                nursery.start_soon(history.ping, host, "a")
            await trio.sleep(0)
        assert host.pings == ["a"] and history.latency == {"a": 1000.0}
        del host.delays["a"]
        await history.ping_round(host)
        assert history.latency == {"b": 1.0}
        # A ping that answers after its peer left keeps nothing.
        host.delays["c"] = 0.5

        async def leave():
            await trio.sleep(0.1)
            del host.delays["c"]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(history.ping, host, "c")
            nursery.start_soon(leave)
        assert "c" not in history.latency

    run(main)


def test_at_most_max_pinged_peers_per_round():
    host = FakeHost({f"p{i:04}": 0.001 for i in range(MAX_PINGED * 3)})
    history = History()

    async def main():
        await history.ping_round(host)

    run(main)
    assert len(host.pings) == MAX_PINGED == len(history.latency)


def test_two_real_nodes_know_each_others_latency_and_addresses(tmp_path):
    async def main():
        async with open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=math.inf) as a:
            b_node = open_node(
                tmp_path / "b", listen=LOOPBACK, bootstrap=a.addrs, announce_interval=math.inf
            )
            async with b_node as b:
                # Pinged within NEW_PEER_CHECK of connecting, both the side that dialled and
                # the side that was dialled, not at the next round.
                with trio.fail_after(STEP / 2):
                    while a.history.latency.get(b.peer_id) is None:
                        await trio.sleep(0.05)
                    while b.history.latency.get(a.peer_id) is None:
                        await trio.sleep(0.05)
                latency = a.history.latency[b.peer_id]
                assert isinstance(latency, float) and 0 < latency < PING_TIMEOUT * 1000
                assert 0 < await b.host.ping(a.peer_id, PING_TIMEOUT) < PING_TIMEOUT * 1000
                # b dialled a's listening address: b's peerstore holds it.
                assert set(b.peer_addrs(a.peer_id)) >= set(a.addrs)
                unknown = "12D3KooWHDeT1cxZtRBevpvQKKVBQqa56aQa4rfHBajSreyU2ibz"
                assert a.peer_addrs(unknown) == []  # never stored: nothing, not an error
                assert a.stats.history is a.history
                assert len(a.history.samples) >= 1

    trio.run(main)


def test_a_peer_that_never_answers_is_logged_at_a_bounded_rate(caplog):
    host = FakeHost({"silent": math.inf})
    history = History(step=1.0)

    async def main():
        with trio.move_on_after(600):  # 600 rounds, ten minutes
            await history.run(host, NodeStats(), trio.current_time)

    with caplog.at_level("INFO", logger="gridnode.node.history"):
        run(main)
    assert len(host.pings) > 100
    lines = [r.getMessage() for r in caplog.records]
    # At most 5 lines and one summary per minute, not one per ping.
    assert 0 < len(lines) <= 6 * 11, len(lines)
    assert any("more failed pings to silent" in line for line in lines)
    assert history.latency == {"silent": None}
