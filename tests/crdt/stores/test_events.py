"""The events store: a feed in the log's total order, with CID-bounded ranges."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import InvalidQuery
from crdt.stores import EventsStore
from tests.crdt.spaces import CountingSpace
from tests.crdt.stores.causal import (
    WRITERS,
    causal_order,
    chain,
    entry,
    random_history,
    total_order,
    unsigned_entry,
)

seeds = st.integers(0, 2**32 - 1)


def _events(entries):
    return [e for e in total_order(entries) if EventsStore().apply(e)]


def test_a_feed_in_order(make_space):
    entries = chain([{"op": "add", "value": i} for i in range(5)])
    store = EventsStore(space=make_space())
    for e in reversed(entries):  # even backwards
        assert store.apply(e)
    assert list(store) == [(e.cid, i) for i, e in enumerate(entries)]
    assert [v for _, v in store.iter(forward=False)] == [4, 3, 2, 1, 0]
    assert len(store) == 5 and entries[2].cid in store and store.get(entries[2].cid) == 2
    assert "x" not in store
    assert [v for _, v in store.iter(gt=entries[1].cid, limit=2)] == [2, 3]
    assert [v for _, v in store.iter(gte=entries[1].cid, lte=entries[3].cid)] == [1, 2, 3]
    assert [v for _, v in store.iter(forward=False, lt=entries[3].cid, limit=2)] == [2, 1]
    assert [v for _, v in store.iter(gt=entries[3].cid, lt=entries[1].cid)] == []
    assert list(store.iter(limit=0)) == []
    assert store.state() == [[e.clock, e.cid, i] for i, e in enumerate(entries)]


def test_concurrent_events_sort_by_cid_within_a_clock(make_space):
    root = entry({"op": "add", "value": "root"})
    branches = [entry({"op": "add", "value": w.did[-4:]}, [root], w) for w in WRITERS]
    store = EventsStore(space=make_space())
    for e in [root, *branches]:
        store.apply(e)
    expected = [root, *sorted(branches, key=lambda e: e.cid.bytes)]
    assert [cid for cid, _ in store] == [e.cid for e in expected]


@settings(max_examples=150, deadline=None)
@given(seed=seeds, size=st.integers(0, 40))
def test_the_order_is_the_total_order_whatever_the_arrival_order(seed, size, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, "events", size)
    store = EventsStore(space=make_space())
    for e in causal_order(rng, entries):
        store.apply(e)
    expected = [(e.cid, e.payload["value"]) for e in _events(entries)]
    assert list(store) == expected
    assert list(store.iter(forward=False)) == expected[::-1]


@settings(max_examples=150, deadline=None)
@given(seed=seeds, size=st.integers(1, 30), data=st.data())
def test_ranges_match_slicing_the_feed(seed, size, data, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, "events", size)
    store = EventsStore(space=make_space())
    for e in causal_order(rng, entries):
        store.apply(e)
    feed = [(e.cid, e.payload["value"]) for e in _events(entries)]
    if not feed:
        return
    positions = st.none() | st.integers(0, len(feed) - 1)
    lower, upper = data.draw(positions), data.draw(positions)
    lower_inclusive, upper_inclusive = data.draw(st.booleans()), data.draw(st.booleans())
    forward = data.draw(st.booleans())
    limit = data.draw(st.none() | st.integers(0, 5))
    kwargs = {}
    start, stop = 0, len(feed)
    if lower is not None:
        kwargs["gte" if lower_inclusive else "gt"] = feed[lower][0]
        start = lower if lower_inclusive else lower + 1
    if upper is not None:
        kwargs["lte" if upper_inclusive else "lt"] = feed[upper][0]
        stop = upper + 1 if upper_inclusive else upper
    expected = feed[start:stop] if start < stop else []
    if not forward:
        expected = expected[::-1]
    if limit is not None:
        expected = expected[:limit]
    assert list(store.iter(forward=forward, limit=limit, **kwargs)) == expected


def test_bad_ranges_are_refused(make_space):
    entries = chain([{"op": "add", "value": i} for i in range(3)])
    store = EventsStore(space=make_space())
    for e in entries:
        store.apply(e)
    stranger = entry({"op": "add", "value": "not applied"}, writer=WRITERS[1])
    malformed = entry({"op": "nope"}, entries[-1:])
    store.apply(malformed)
    for kwargs in (
        {"gt": stranger.cid},
        {"lte": malformed.cid},  # in the log, but not an event
        {"gt": entries[0].cid, "gte": entries[1].cid},
        {"lt": entries[0].cid, "lte": entries[1].cid},
        {"limit": -1},
        {"limit": 1.5},
    ):
        with pytest.raises(InvalidQuery):
            store.iter(**kwargs)


def test_a_limited_read_touches_only_what_it_returns():
    space = CountingSpace()
    store = EventsStore(space=space)
    entries = [unsigned_entry({"op": "add", "value": n}, n + 1, n) for n in range(30_000)]
    for e in entries[::-1]:
        store.apply(e)
    space.reset()
    newest = list(store.iter(forward=False, limit=10))
    assert [v for _, v in newest] == list(range(29_999, 29_989, -1))
    assert space.reads == 10
    space.reset()
    middle = list(store.iter(gt=entries[15_000].cid, limit=3))
    assert [v for _, v in middle] == [15_001, 15_002, 15_003]
    assert space.reads == 1 + 3  # the bound's position, then the events
    space.reset()
    assert store.get(entries[7].cid) == 7 and entries[8].cid in store and len(store) == 30_000
    assert space.reads == 2 + 1 + 1 and space.counts["len"] == 0
