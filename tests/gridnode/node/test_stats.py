"""The node's records (gridnode.node.stats): what a pull, a served stream and a join leave in them."""

from crdt.ipld.cid import CID
from gridnode.node.stats import NodeStats, PeerSync, ServedTotals
from gridnode.node.sync import PullReport
from gridnode.repo import ImportReport
from protocols.sync import SyncStats


def test_a_pull_keeps_the_totals_of_the_pulls_before_it_and_clears_the_rest():
    first = PeerSync.begin("peer", "/gridnode/x", 10.0, None)
    assert first.running and first.pulls == 1 and first.started == 10.0
    stats = SyncStats(
        messages_sent=2,
        messages_received=3,
        bytes_sent=100,
        bytes_received=1000,
        round_trips=2,
        blocks_received=7,
        block_bytes_received=700,
    )
    first.finish(PullReport("/gridnode/x", applied=7, stats=stats, complete=True))
    first.running = False
    assert (first.applied, first.messages, first.entries_received) == (7, 5, 7)
    assert first.overhead_bytes == 400 and first.complete

    second = PeerSync.begin("peer", "/gridnode/x", 20.0, first)
    assert second.pulls == 2 and second.started == 20.0 and second.running
    # The last pull's figures start again; the totals (monotonic, for /metrics) carry on.
    assert (second.applied, second.messages, second.complete) == (0, 0, False)
    assert (second.total_applied, second.total_messages, second.total_bytes_received) == (
        7,
        5,
        1000,
    )
    second.finish(PullReport("/gridnode/x", applied=1, stats=SyncStats(bytes_received=10)))
    assert second.total_applied == 8 and second.total_bytes_received == 1010


def test_a_served_stream_counts_what_it_carried():
    served = ServedTotals()
    served.add(SyncStats(messages_sent=4, messages_received=1, bytes_sent=50, blocks_sent=3))
    served.add(SyncStats(bytes_received=9))
    assert served == ServedTotals(
        streams=2, messages=5, bytes_sent=50, bytes_received=9, entries_sent=3
    )


def test_a_join_is_counted_by_source_and_each_rejection_by_reason_and_as_an_event():
    stats = NodeStats()
    cid = str(CID.for_block(b"x"))
    report = ImportReport(
        address="/gridnode/x",
        applied=2,
        rejected=[(cid, "InvalidSignature: bad"), (cid, "Unauthorized: no")],
    )
    stats.count_join("sync", report, peer="p")
    stats.count_join("import", ImportReport(address="/gridnode/x", applied=1))
    assert stats.counters.applied == {"sync": 2, "import": 1}
    assert stats.counters.rejected == {"InvalidSignature": 1, "Unauthorized": 1}
    assert [(e.kind, e.peer, e.address) for e in stats.events] == [
        ("rejected", "p", "/gridnode/x"),
        ("rejected", "p", "/gridnode/x"),
    ]
    assert all(e.at > 1_600_000_000 for e in stats.events)  # wall-clock time
