"""Properties every store type must have: the state is a function of the set of entries applied.

Histories come from three writers with concurrent branches and merges (``causal.history``);
about one payload in ten is malformed and must be ignored the same way everywhere.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import InvalidManifest, InvalidOperation
from crdt.stores import STORE_TYPES, Store, open_store
from tests.crdt.spaces import dump
from tests.crdt.stores.causal import (
    MALFORMED,
    OPTIONS,
    PAYLOADS,
    WRITERS,
    causal_order,
    chain,
    entry,
    fold,
    random_history,
    total_order,
)

STORES = sorted(STORE_TYPES)
SETTINGS = settings(max_examples=100, deadline=None)
sizes = st.integers(min_value=0, max_value=40)
#: Histories are drawn from a seeded generator: hypothesis picks (and shrinks) seed and size.
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def _fold(store_type: str, entries: list, make_space) -> Store:
    return fold(store_type, entries, OPTIONS[store_type], make_space())


def test_store_types_and_open_store():
    assert STORES == ["counter", "documents", "events", "keyvalue", "set"]
    for name, cls in STORE_TYPES.items():
        store = open_store(name)
        assert isinstance(store, cls) and store.type_name == name
        assert len(store) == 0 and isinstance(store.digest(), bytes) and len(store.digest()) == 32
    with pytest.raises(InvalidManifest, match="unknown store type"):
        open_store("graph", {})


@pytest.mark.parametrize("store_type", STORES)
@SETTINGS
@given(seed=seeds, size=sizes)
def test_any_causal_order_gives_the_same_state(store_type, seed, size, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, store_type, size)
    reference = _fold(store_type, total_order(entries), make_space)
    for _ in range(2):
        other = _fold(store_type, causal_order(rng, entries), make_space)
        assert other.state() == reference.state()
        assert other.digest() == reference.digest()
        assert len(other) == len(reference)


@pytest.mark.parametrize("store_type", STORES)
@SETTINGS
@given(seed=seeds, size=sizes)
def test_any_order_at_all_gives_the_same_state(store_type, seed, size, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, store_type, size)
    reference = _fold(store_type, entries, make_space)
    shuffled = list(entries)
    rng.shuffle(shuffled)
    other = _fold(store_type, shuffled, make_space)
    assert other.state() == reference.state()
    assert other.digest() == reference.digest()
    # Not only the state: every row of every table is a function of the entries applied.
    assert dump(other.space) == dump(reference.space)


@pytest.mark.parametrize("store_type", STORES)
@SETTINGS
@given(seed=seeds, size=sizes)
def test_duplicates_change_nothing(store_type, seed, size, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, store_type, size)
    reference = _fold(store_type, entries, make_space)
    # Every entry at least once, some several times, duplicates anywhere after the first copy.
    noisy = list(entries)
    for _ in range(size):
        e = rng.choice(entries)
        noisy.insert(rng.randint(noisy.index(e) + 1, len(noisy)), e)
    store = _fold(store_type, noisy, make_space)
    assert store.digest() == reference.digest()
    before = store.digest()
    for e in entries:
        assert store.apply(e) == reference.apply(e)
    assert store.digest() == before == reference.digest()


@pytest.mark.parametrize("store_type", STORES)
@SETTINGS
@given(seed=seeds, size=st.integers(1, 25))
def test_malformed_ops_change_nothing(store_type, seed, size, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, store_type, size)
    store = _fold(store_type, entries, make_space)
    before = store.digest(), store.state(), len(store)
    for payload in MALFORMED[store_type]:
        bad = entry(payload, [rng.choice(entries)], rng.choice(WRITERS))
        assert store.apply(bad) is False
        assert (store.digest(), store.state(), len(store)) == before
        with pytest.raises(InvalidOperation):
            type(store).check_op(payload, OPTIONS[store_type])


@pytest.mark.parametrize("store_type", STORES)
def test_well_formed_ops_pass_check_op(store_type, make_space):
    rng = random.Random(7)
    store = open_store(store_type, OPTIONS[store_type], make_space())
    for _ in range(200):
        payload = PAYLOADS[store_type](rng, store)
        type(store).check_op(payload, OPTIONS[store_type])
        assert store.apply(chain([payload])[0]) is True


@pytest.mark.parametrize("store_type", STORES)
@SETTINGS
@given(seed=seeds, size=st.integers(2, 30))
def test_states_that_differ_in_entries_that_matter_have_different_digests(
    store_type, seed, size, make_space
):
    rng = random.Random(seed)
    # Replicas that hold different prefixes of a history either agree on the state or differ in
    # digest: the digest never hides a difference in state.
    entries = random_history(rng, store_type, size)
    cut = rng.randrange(1, size)
    a = _fold(store_type, entries[:cut], make_space)
    b = _fold(store_type, entries, make_space)
    assert (a.state() == b.state()) == (a.digest() == b.digest())
