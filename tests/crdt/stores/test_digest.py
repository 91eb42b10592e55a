"""The state digest is kept as entries apply (docs/spec.md §17) and always equals a recompute
from the state's rows: in every delivery order, with duplicates, malformed ops and meta ops, over
memory and over an encoded space, and after the store is opened again over its space."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.stores import STORE_TYPES, open_store
from crdt.stores.base import SUM_BYTES, digest_of_sum, row_hash
from tests.crdt.stores.causal import (
    MALFORMED,
    OPTIONS,
    PAYLOADS,
    WRITERS,
    causal_order,
    entry,
    history,
    total_order,
)
from tests.crdt.stores.test_meta import MALFORMED_META, meta_payload

STORES = sorted(STORE_TYPES)
TAKES_META = {"documents", "keyvalue"}


def _payloads(store_type):
    """The store's own ops, with meta ops where the store takes them and malformed ops."""
    data = PAYLOADS[store_type]

    def make(rng, store):
        roll = rng.random()
        if store_type in TAKES_META and roll < 0.2:
            return meta_payload(rng)
        if roll < 0.27:
            return rng.choice(MALFORMED[store_type] + MALFORMED_META)
        return data(rng, store)

    return make


def _check(store):
    assert store.digest() == store.recompute_digest()
    assert store.sum_indexed


@pytest.mark.parametrize("store_type", STORES)
@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 40))
def test_the_kept_digest_equals_a_recompute_in_any_delivery_order(
    store_type, seed, size, make_space
):
    rng = random.Random(seed)
    entries = history(rng, store_type, OPTIONS[store_type], _payloads(store_type), size)
    reference = open_store(store_type, OPTIONS[store_type], make_space())
    for e in total_order(entries):
        reference.apply(e)
        _check(reference)
    shuffled = list(entries)
    rng.shuffle(shuffled)
    # Causal, any order at all, and every entry twice (duplicates anywhere after the first).
    noisy = list(shuffled)
    for e in entries:
        noisy.insert(rng.randint(noisy.index(e) + 1, len(noisy)), e)
    for order in (causal_order(rng, entries), shuffled, noisy):
        space = make_space()
        other = open_store(store_type, OPTIONS[store_type], space)
        for e in order:
            other.apply(e)
            _check(other)
        assert other.digest() == reference.digest()
        assert other.state() == reference.state()
        # Opened again over its space: the same digest, read and not recomputed.
        again = open_store(store_type, OPTIONS[store_type], space)
        assert again.digest() == other.digest() == again.recompute_digest()
    # An ignored (malformed) op changes nothing.
    before = reference.digest()
    for payload in MALFORMED[store_type]:
        assert reference.apply(entry(payload, [], rng.choice(WRITERS))) is False
    assert reference.digest() == before


@pytest.mark.parametrize("store_type", STORES)
def test_an_empty_store_has_the_digest_of_an_empty_sum(store_type, make_space):
    store = open_store(store_type, OPTIONS[store_type], make_space())
    assert store.digest() == digest_of_sum(store_type, 0) == store.recompute_digest()
    assert list(store.state_rows()) == [] and store.sum_indexed


@pytest.mark.parametrize("store_type", STORES)
def test_a_state_written_before_the_sum_is_indexed_once(store_type, make_space):
    rng = random.Random(21)
    entries = history(rng, store_type, OPTIONS[store_type], _payloads(store_type), 30)
    space = make_space()
    store = open_store(store_type, OPTIONS[store_type], space)
    for e in entries:
        store.apply(e)
    expected = store.digest()
    if not list(store.state_rows()):
        pytest.skip("this history left no state")
    # What an older version left: the rows without the sum.
    space.table(f"{store_type}.meta").delete(b"statesum")
    old = open_store(store_type, OPTIONS[store_type], space)
    assert not old.sum_indexed
    old.index_sum()
    assert old.sum_indexed and old.digest() == expected


def test_row_hashes_frame_their_parts():
    # The lengths keep (b"ab", b"c") and (b"a", b"bc") apart.
    assert row_hash("keyvalue", b"keys", b"ab", b"c") != row_hash("keyvalue", b"keys", b"a", b"bc")
    assert row_hash("set", b"tags", b"k", b"") != row_hash("keyvalue", b"tags", b"k", b"")
    assert 0 <= row_hash("events", b"feed", b"k", b"") < 2 ** (8 * SUM_BYTES)


#: The digests of ``history(random.Random(20261205), type, OPTIONS, payloads, 60)`` (meta ops and
#: malformed ops among them), applied in total order: they pin the construction of docs/spec.md
#: §17, which replicas compare.
GOLDEN = {
    "counter": "2d0fa10994e0ed6cb72825da6f02bbe94143c89de07d9ab3775bae49ab8ab172",
    "documents": "2bbeb0bcf06f313684c3ffd2af0ae41bf381026aefca22631306f8cf8d2dfb3d",
    "events": "cd7835b1c6a2d4464570d581816d38b6be8bbefaf65598a860c1179a2772c0dd",
    "keyvalue": "a9c7a2c7dca4e2eceac316fa6885a9bcce40ec014ed35892185c55e543fed73e",
    "set": "8d2ce5eeeabd1ecd33f1d54f791b06b3dc0f7624b74087719260774a9b532b53",
}


@pytest.mark.parametrize("store_type", STORES)
def test_digests_are_pinned(store_type, make_space):
    rng = random.Random(20261205)
    entries = history(rng, store_type, OPTIONS[store_type], _payloads(store_type), 60)
    store = open_store(store_type, OPTIONS[store_type], make_space())
    for e in total_order(entries):
        store.apply(e)
    assert store.digest().hex() == GOLDEN[store_type]
