import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.reconcile import TOP, Reconciler, SortedItems, fingerprint_of
from protocols.wire import ProtocolError


def item(n: int) -> bytes:
    # clock (8 bytes) + a 36-byte pseudo CID, as in gridnode
    return n.to_bytes(8, "big") + b"\x01\x71\x12\x20" + (n * 7919).to_bytes(32, "big")


def run(a_items, b_items, **options):
    """Reconcile two sets in memory; return both reconcilers and the round trips."""
    a = Reconciler(SortedItems(a_items), **options)
    b = Reconciler(SortedItems(b_items), **options)
    message = a.initiate()
    messages = 1
    sides = [b, a]
    turn = 0
    while message is not None:
        message = sides[turn % 2].receive(message)
        messages += message is not None
        turn += 1
    return a, b, math.ceil(messages / 2)


def check(a_items, b_items, **options):
    a, b, trips = run(a_items, b_items, **options)
    assert a.need == set(b_items) - set(a_items)
    assert b.need == set(a_items) - set(b_items)
    assert a.have == b.need or a.have <= b.need
    return trips


@settings(max_examples=200, deadline=None)
@given(
    common=st.sets(st.integers(0, 10_000), max_size=300),
    only_a=st.sets(st.integers(10_001, 20_000), max_size=40),
    only_b=st.sets(st.integers(20_001, 30_000), max_size=40),
    threshold=st.integers(1, 20),
    branching=st.integers(2, 16),
)
def test_any_two_sets(common, only_a, only_b, threshold, branching):
    a_items = [item(n) for n in common | only_a]
    b_items = [item(n) for n in common | only_b]
    check(a_items, b_items, threshold=threshold, branching=branching)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (range(0), range(0)),  # both empty
        (range(1000), range(1000)),  # equal
        (range(1000), range(0)),  # one-sided
        (range(0), range(500)),
        (range(0, 1000, 2), range(1, 1000, 2)),  # disjoint, interleaved
    ],
    ids=["empty", "equal", "a-only", "b-only", "disjoint"],
)
def test_edge_sets(a, b):
    check([item(n) for n in a], [item(n) for n in b])


def test_equal_sets_take_one_round_trip():
    items = [item(n) for n in range(5000)]
    assert check(items, items) == 1


def test_one_difference_in_100k_is_logarithmic():
    base = [item(n) for n in range(100_000)]
    extra = item(10**9)
    trips = check(base, [*base, extra])
    assert trips <= math.ceil(math.log(100_000, 16)) + 2, trips


def test_a_few_recent_differences_are_cheap():
    base = [item(n) for n in range(20_000)]
    trips = check([*base, item(20_000)], [*base, item(20_001), item(20_002)])
    assert trips <= math.ceil(math.log(20_000, 16)) + 2


def test_hostile_peer_with_inconsistent_fingerprints_is_dropped():
    from crdt.ipld import encode

    honest = Reconciler(SortedItems([item(n) for n in range(10_000)]), max_rounds=8)
    # The liar answers every round with a fresh random fingerprint for everything, so nothing is
    # ever settled: the honest side gives up after its round budget.
    with pytest.raises(ProtocolError):
        for _ in range(100):
            assert honest.receive(encode([[TOP, "fp", os.urandom(16)]])) is not None
    assert honest.rounds == 9


@pytest.mark.parametrize(
    "body",
    [
        [],
        [[b"\x00", "skip"]],
        [[TOP, "fp", b"short"]],
        [[TOP, "bogus"]],
        [[b"\x02", "skip"], [b"\x01", "skip"], [TOP, "skip"]],
    ],
    ids=["empty", "not-covering", "bad-fp", "bad-mode", "descending"],
)
def test_malformed_messages(body):
    from crdt.ipld import encode

    with pytest.raises(ProtocolError):
        Reconciler(SortedItems([])).receive(encode(body))


def test_fingerprint_depends_on_count_and_sum():
    assert fingerprint_of(1, 5) != fingerprint_of(2, 5)
    assert fingerprint_of(1, 5) != fingerprint_of(1, 6)
    items = SortedItems([item(n) for n in range(100)])
    assert items.fingerprint(b"", TOP) == SortedItems(
        [item(n) for n in reversed(range(100))]
    ).fingerprint(b"", TOP)


# -- pull roles: the server sends what the puller lacks ------------------------------------------


def pull(puller_items, server_items, **options):
    """Run a pull; return what the server sent, the round trips, and both reconcilers."""
    puller = Reconciler(SortedItems(puller_items), role="puller", **options)
    server = Reconciler(SortedItems(server_items), role="server", **options)
    sent: list[bytes] = []
    message = puller.initiate_ranges()
    trips = 0
    while message is not None:
        trips += 1
        answer = server.receive_ranges(message)
        sent.extend(server.outbox)
        if answer is None:
            break
        message = puller.receive_ranges(answer)
    return sent, trips, puller, server


def check_pull(puller_items, server_items, **options):
    sent, trips, _puller, _server = pull(puller_items, server_items, **options)
    assert sorted(sent) == sorted(set(server_items) - set(puller_items))
    assert len(sent) == len(set(sent)), "an item was sent twice"
    return trips


@settings(max_examples=200, deadline=None)
@given(
    common=st.sets(st.integers(0, 10_000), max_size=300),
    only_puller=st.sets(st.integers(10_001, 20_000), max_size=40),
    only_server=st.sets(st.integers(0, 30_000), max_size=40),
    threshold=st.integers(1, 20),
    branching=st.integers(2, 16),
)
def test_pull_sends_exactly_what_the_puller_lacks(
    common, only_puller, only_server, threshold, branching
):
    check_pull(
        [item(n) for n in common | only_puller],
        [item(n) for n in common | only_server],
        threshold=threshold,
        branching=branching,
    )


@pytest.mark.parametrize(
    ("puller", "server"),
    [
        (range(0), range(0)),
        (range(1000), range(1000)),
        (range(1000), range(0)),
        (range(0), range(5000)),
        (range(0, 1000, 2), range(1, 1000, 2)),
    ],
    ids=["empty", "equal", "puller-only", "server-only (cold)", "disjoint"],
)
def test_pull_edge_sets(puller, server):
    check_pull([item(n) for n in puller], [item(n) for n in server])


def test_cold_pull_is_one_round_trip():
    assert check_pull([], [item(n) for n in range(100_000)]) == 1


@pytest.mark.parametrize("d", [1, 10, 100, 1000])
def test_warm_pull_behind_by_recent_entries_is_one_round_trip(d):
    base = [item(n) for n in range(100_000)]
    assert check_pull(base, base + [item(100_000 + k) for k in range(d)]) == 1


def test_warm_pull_with_entries_on_both_sides_is_one_round_trip():
    base = [item(n) for n in range(100_000)]
    assert check_pull([*base, item(200_000)], [*base, item(200_001), item(200_002)]) == 1


def test_pull_one_old_difference_in_100k_is_logarithmic():
    base = [item(n) for n in range(100_000)]
    trips = check_pull([i for i in base if i != item(123)], base)
    assert trips <= math.ceil(math.log(100_000, 16)) + 2, trips


def test_a_puller_never_asks_for_a_server_item_it_was_not_offered():
    # A server names only items it has; the puller's want lists come from those.
    server = Reconciler(SortedItems([item(n) for n in range(100)]), role="server")
    with pytest.raises(ProtocolError):
        Reconciler(SortedItems([]), role="puller").receive_ranges([[TOP, "want", [item(1)]]])
    # Asked for items it does not hold, a server sends none of them.
    assert server.receive_ranges([[TOP, "want", [item(1), item(10**6)]]]) is None
    assert server.outbox == [item(1)]


def test_hostile_server_with_inconsistent_fingerprints_is_dropped():
    puller = Reconciler(SortedItems([item(n) for n in range(10_000)]), role="puller", max_rounds=8)
    with pytest.raises(ProtocolError):
        for _ in range(100):
            assert puller.receive_ranges([[TOP, "fp", os.urandom(16)]]) is not None
    assert puller.rounds == 9


def test_a_large_honest_divergence_is_split_into_messages_within_limits():
    """Two honest replicas with 80,000 concurrent entries each (issue 18 item 7): an answer of
    more ranges than MAX_RANGES keeps its first ranges and sends the rest of the space as one
    fingerprint, so every message passes the receiver's limits and the pull completes; the
    puller joins what it receives before answering, as gridnode's does."""
    from crdt.ipld import CID
    from protocols.wire import MAX_FRAME, MAX_RANGES, Ranges, encode_message

    n = 80_000
    puller_items = [item(i) for i in range(0, 2 * n, 2)]
    server_items = [item(i) for i in range(1, 2 * n, 2)]
    puller = Reconciler(SortedItems(puller_items), role="puller")
    server = Reconciler(SortedItems(server_items), role="server")
    held = set(puller_items)
    sent: list[bytes] = []
    sizes = []
    message = puller.initiate_ranges()
    trips = 0
    while message is not None:
        trips += 1
        sizes.append(len(message))
        answer = server.receive_ranges(message)  # parse_ranges: the receiver's limits
        sent.extend(server.outbox)
        held.update(server.outbox)
        if answer is None:
            break
        sizes.append(len(answer))
        assert len(encode_message(Ranges(CID.for_block(b"db"), answer))) <= MAX_FRAME
        puller.items = SortedItems(held)
        message = puller.receive_ranges(answer)
    assert max(sizes) <= MAX_RANGES
    assert max(sizes) == MAX_RANGES, "the case must need splitting"
    assert sorted(sent) == sorted(server_items), "every item the puller lacked, once"
    print(f"\n80k vs 80k: {trips} round trips, largest message {max(sizes)} ranges")
