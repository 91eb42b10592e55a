"""State kept in a space: a new store over the space an earlier one wrote continues where it
stopped, opening reads nothing, and everything put is plain IPLD data."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import DagCborEncodeError
from crdt.ipld.dagcbor import encode
from crdt.stores import STORE_TYPES, open_store
from tests.crdt.spaces import CountingSpace, EncodedSpace, dump
from tests.crdt.stores.causal import (
    OPTIONS,
    WRITERS,
    causal_order,
    chain,
    entry,
    fold,
    random_history,
    total_order,
    unsigned_entry,
)

STORES = sorted(STORE_TYPES)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@pytest.mark.parametrize("store_type", STORES)
@settings(max_examples=60, deadline=None)
@given(seed=seeds, size=st.integers(0, 40), data=st.data())
def test_a_new_store_over_the_same_space_continues(store_type, seed, size, data, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, store_type, size)
    options = OPTIONS[store_type]
    reference = fold(store_type, total_order(entries), options, make_space())
    arrival = causal_order(rng, entries)
    cut = data.draw(st.integers(0, len(arrival)))
    space = make_space()
    first = fold(store_type, arrival[:cut], options, space)
    second = open_store(store_type, options, space)
    # The second instance sees what the first did before it applies anything.
    assert second.digest() == first.digest() and len(second) == len(first)
    for e in arrival[cut:]:
        second.apply(e)
    assert second.state() == reference.state()
    assert second.digest() == reference.digest()
    assert len(second) == len(reference)
    assert dump(space) == dump(reference.space)
    # Entries the first instance applied are still no-ops for the second.
    for e in arrival[:cut]:
        second.apply(e)
    assert second.digest() == reference.digest()


def _queries(store):
    """What each store type answers beyond its state, for comparing two instances."""
    kind = store.type_name
    if kind == "events":
        return list(store), list(store.iter(forward=False, limit=3))
    if kind == "keyvalue":
        return store.items(), [store.winner(k) for k in ("k0", "k1", "k2", "k3", "k4")]
    if kind == "documents":
        return [
            (field, store.query(field), list(store.query_ids(field, reverse=True, limit=2)))
            for field in store.indexes
        ]
    if kind == "counter":
        return store.value, store.contributions()
    return store.values(), [store.tags_for(v) for v in store.values()]


@pytest.mark.parametrize("store_type", STORES)
def test_reopened_stores_answer_queries_alike(store_type, make_space):
    rng = random.Random(11)
    entries = random_history(rng, store_type, 60)
    options = OPTIONS[store_type]
    space = make_space()
    fold(store_type, entries[:30], options, space)
    store = fold(store_type, entries[30:], options, space)
    reference = fold(store_type, entries, options)
    assert _queries(store) == _queries(reference)
    assert _queries(open_store(store_type, options, space)) == _queries(reference)


@pytest.mark.parametrize("store_type", STORES)
def test_opening_reads_nothing_and_len_reads_one_row(store_type):
    rng = random.Random(5)
    space = CountingSpace()
    fold(store_type, random_history(rng, store_type, 40), OPTIONS[store_type], space)
    space.reset()
    store = open_store(store_type, OPTIONS[store_type], space)
    assert space.reads == space.writes == 0
    len(store)
    assert space.reads <= 1 and space.counts["len"] == 0


@pytest.mark.parametrize("store_type", STORES)
def test_tables_are_named_after_the_store_type(store_type):
    space = EncodedSpace()
    fold(store_type, random_history(random.Random(3), store_type, 40), OPTIONS[store_type], space)
    assert space.names() and all(n.startswith(f"{store_type}.") for n in space.names())


def test_the_encoded_space_refuses_what_dag_cbor_cannot_hold():
    table = EncodedSpace().table("t")
    for bad in ({1, 2}, 2**64, -(2**64) - 1, float("nan"), {1: "int key"}, object()):
        with pytest.raises(DagCborEncodeError):
            table.put(b"k", bad)
    table.put(b"k", [1, (2, 3)])
    assert table.get(b"k") == [1, [2, 3]]
    assert table.get(b"k") is not table.get(b"k")  # a fresh object on every read


@pytest.mark.parametrize("store_type", STORES)
@settings(max_examples=40, deadline=None)
@given(seed=seeds, size=st.integers(0, 40))
def test_stores_put_only_encodable_values(store_type, seed, size):
    # The encoded space raises DagCborEncodeError on any put DAG-CBOR cannot hold.
    rng = random.Random(seed)
    entries = random_history(rng, store_type, size)
    store = fold(store_type, causal_order(rng, entries), OPTIONS[store_type], EncodedSpace())
    store.state()


def test_counter_sums_beyond_64_bits_are_stored_as_text():
    # Totals and the value outgrow DAG-CBOR integers, either way.
    space = EncodedSpace()
    store = open_store("counter", None, space)
    ups = chain([{"op": "inc", "by": 2**53}] * 2049, WRITERS[0])
    downs = chain([{"op": "inc", "by": -(2**53)}] * 4100, WRITERS[1])
    for e in ups:
        store.apply(e)
    assert store.value == 2049 * 2**53
    for e in downs:
        store.apply(e)
    assert store.value == (2049 - 4100) * 2**53 < -(2**64)
    reopened = open_store("counter", None, space)
    assert reopened.value == store.value and len(reopened) == 2
    assert reopened.state()[WRITERS[1].did] == {"p": 0, "n": str(4100 * 2**53)}


def test_a_documents_store_over_many_unsigned_entries_reopens():
    space = EncodedSpace()
    options = {"indexes": ["n"]}
    first = open_store("documents", options, space)
    for i in range(300):
        first.apply(unsigned_entry({"op": "put", "doc": {"_id": i % 50, "n": i}}, i + 1, i))
    again = open_store("documents", options, space)
    assert [d["n"] for d in again.query("n", gte=290)] == list(range(290, 300))
    again.apply(entry({"op": "del", "id": 49}, writer=WRITERS[2]))  # clock 1: older, no effect
    assert len(again) == 50
    again.apply(unsigned_entry({"op": "del", "id": 49}, 1000, 1000))
    assert len(open_store("documents", options, space)) == 49


#: Digests of the states the stores reached before they kept their state in a space (computed
#: with that code, over ``random_history(random.Random(20261124), type, 80)`` applied in a causal
#: order): the move did not change what replicas compare. They were SHA-256 of the DAG-CBOR of
#: :meth:`~crdt.stores.Store.state` (the construction before docs/spec.md §17): the state is
#: still held to them, and the digest of §17 to its own pins (tests/crdt/stores/test_digest.py).
GOLDEN = {
    "counter": "a0c405ae8828e18ba5aebb39578afefa219b460aa9d2178d388ca025991bdcac",
    "documents": "3530c0f03c7c54cd4520ab0491f2d9adae6b84274de4b6c1d16a8be3232b3869",
    "events": "c35efcea73d1e16853eb7c11a48fd9e6aa108ce2ea28ac1345fbe84258f5b632",
    "keyvalue": "8426396e53d5eeb87e12126c1be0ec87c22ddf80611fff1b05047d00da2bcfe3",
    "set": "de480da7e3c40d4ccb51f624efe1f9c0dd3e6087b1d835d0d888eaf91f1ce42a",
}


@pytest.mark.parametrize("store_type", STORES)
def test_digests_are_those_of_the_stores_before_spaces(store_type, make_space):
    rng = random.Random(20261124)
    entries = random_history(rng, store_type, 80)
    store = fold(store_type, causal_order(rng, entries), OPTIONS[store_type], make_space())
    assert hashlib.sha256(encode(store.state())).hexdigest() == GOLDEN[store_type]
    assert store.digest() == store.recompute_digest()
