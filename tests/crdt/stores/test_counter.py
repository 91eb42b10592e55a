"""The counter store: a PN-counter of per-author totals."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.ipld import encode
from crdt.stores import CounterStore
from tests.crdt.stores.causal import WRITERS, causal_order, chain, entry, random_history


def inc(by):
    return {"op": "inc", "by": by}


def test_increments_and_decrements_per_author(make_space):
    store = CounterStore(space=make_space())
    a = chain([inc(5), inc(-2), inc(0)], WRITERS[0])
    b = chain([inc(-10)], WRITERS[1])
    for e in a + b:
        assert store.apply(e)
    assert store.value == int(store) == -7
    assert len(store) == 2
    assert store.contributions() == {WRITERS[0].did: (5, 2), WRITERS[1].did: (0, 10)}
    assert store.state() == {WRITERS[0].did: {"p": 5, "n": 2}, WRITERS[1].did: {"p": 0, "n": 10}}
    store.apply(a[0])
    assert store.value == -7


def test_totals_beyond_64_bits_stay_encodable_and_canonical(make_space):
    store = CounterStore(space=make_space())
    for e in chain([inc(2**53)] * 2049, WRITERS[0]):
        store.apply(e)
    assert store.value == 2049 * 2**53 > 2**64
    assert store.state()[WRITERS[0].did] == {"p": str(2049 * 2**53), "n": 0}
    encode(store.state())


def test_the_extremes_of_a_step_are_accepted(make_space):
    store = CounterStore(space=make_space())
    assert store.apply(entry(inc(2**53)))
    assert store.apply(entry(inc(-(2**53)), writer=WRITERS[1]))
    assert store.value == 0


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 40))
def test_value_is_the_sum_of_the_well_formed_steps(seed, size, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, "counter", size)
    store = CounterStore(space=make_space())
    for e in causal_order(rng, entries):
        store.apply(e)
    steps = [e for e in entries if CounterStore().apply(e)]
    assert store.value == sum(e.payload["by"] for e in steps)
    for w in WRITERS:
        mine = [e.payload["by"] for e in steps if e.author == w.did]
        if mine:
            p, n = store.contributions()[w.did]
            assert p == sum(b for b in mine if b > 0) and n == -sum(b for b in mine if b < 0)
