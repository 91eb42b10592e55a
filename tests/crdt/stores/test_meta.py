"""The store-level meta op: a last-writer-wins fact about the database, never part of its data."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import InvalidOperation
from crdt.stores import STORE_TYPES, open_store
from tests.crdt.spaces import dump
from tests.crdt.stores.causal import (
    OPTIONS,
    PAYLOADS,
    WRITERS,
    causal_order,
    chain,
    entry,
    fold,
    history,
    order_key,
    total_order,
    value,
)

TAKES_META = ["documents", "keyvalue"]
SCHEMA = {
    "version": 1,
    "table": "public.items",
    "key": "id",
    "columns": [{"name": "id", "type": "bigint", "typname": "int8", "nullable": False}],
    "excluded": [],
    "primary_key": ["id"],
}


def meta(key, val):
    return {"op": "meta", "key": key, "value": val}


#: Meta keys that collide with each other and with the data's key names.
META_KEYS = ["postgres.table", "k0", "_id"]
MALFORMED_META = [
    {"op": "meta", "key": "k"},
    {"op": "meta", "value": 1},
    {"op": "meta", "key": "", "value": 1},
    {"op": "meta", "key": 1, "value": 1},
    {"op": "meta", "key": "k", "value": 1, "extra": 1},
]


def meta_payload(rng):
    return meta(rng.choice(META_KEYS), value(rng))


def data_op(store_type):
    if store_type == "keyvalue":
        return {"op": "put", "key": "postgres.table", "value": "data"}
    return {"op": "put", "doc": {"_id": "postgres.table", "n": 1}}


@pytest.mark.parametrize("store_type", TAKES_META)
def test_a_meta_op_is_read_with_meta_and_is_not_data(store_type, make_space):
    store = open_store(store_type, OPTIONS[store_type], make_space())
    empty_state, empty_digest = store.state(), store.digest()
    assert store.meta("postgres.table") is None and store.meta_state() == {}
    (e,) = chain([meta("postgres.table", SCHEMA)])
    assert store.apply(e) is True
    assert store.meta("postgres.table") == SCHEMA
    assert store.meta("other") is None and store.meta(1) is None  # type: ignore[arg-type]
    # Not a key, not a document: the data's state and count do not see it...
    assert (
        len(store) == 0 and list(store.items() if store_type == "keyvalue" else store.docs()) == []
    )
    # ...but the whole state (what decides merges) and the digest replicas compare do.
    meta_state = {"postgres.table": {"clock": 1, "entry": e.cid, "value": SCHEMA}}
    assert store.meta_state() == meta_state
    assert store.state() == {"state": empty_state, "meta": meta_state}
    assert store.digest() != empty_digest
    # A data op on a name equal to the meta key is data, and leaves the meta alone.
    store.apply(entry(data_op(store_type), [e]))
    assert len(store) == 1 and store.meta("postgres.table") == SCHEMA


@pytest.mark.parametrize("store_type", TAKES_META)
def test_the_digest_of_a_store_without_meta_is_unchanged(store_type, make_space):
    store = fold(store_type, chain([data_op(store_type)]), OPTIONS[store_type], make_space())
    # The state of a store without meta keys is the data's alone (what the digest hashed before
    # docs/spec.md §17, and what §17's rows stand for: no meta op's row among them).
    without = fold(store_type, [], OPTIONS[store_type], make_space())
    assert not isinstance(store.state(), dict) or "meta" not in store.state()
    assert all(part != b"metaop" for part, _key, _fp in store.state_rows())
    assert store.digest() == store.recompute_digest() != without.digest()


@pytest.mark.parametrize("store_type", TAKES_META)
def test_the_later_meta_op_wins_in_any_order_and_a_repeat_changes_nothing(store_type, make_space):
    first, second = chain([meta("postgres.table", {"v": 1}), meta("postgres.table", {"v": 2})])
    for order in ([first, second], [second, first], [second, first, second, first]):
        store = fold(store_type, order, OPTIONS[store_type], make_space())
        assert store.meta("postgres.table") == {"v": 2}


@pytest.mark.parametrize("store_type", TAKES_META)
def test_concurrent_meta_ops_the_greater_cid_wins_on_every_replica(store_type, make_space):
    (root,) = chain([meta("k", "root")])
    left = entry(meta("k", "left"), [root], WRITERS[1])
    right = entry(meta("k", "right"), [root], WRITERS[2])
    winner = max(left, right, key=order_key)
    states = []
    for order in ([root, left, right], [root, right, left], [right, left, root]):
        store = fold(store_type, order, OPTIONS[store_type], make_space())
        assert store.meta("k") == winner.payload["value"]
        states.append((store.meta_state(), store.digest(), dump(store.space)))
    assert states[0] == states[1] == states[2]


@pytest.mark.parametrize("store_type", TAKES_META)
def test_check_op_takes_a_well_formed_meta_op_and_refuses_others(store_type):
    cls = STORE_TYPES[store_type]
    cls.check_op(meta("postgres.table", SCHEMA), OPTIONS[store_type])
    cls.check_op(meta("k", None), OPTIONS[store_type])
    for bad in MALFORMED_META:
        with pytest.raises(InvalidOperation, match="meta op"):
            cls.check_op(bad, OPTIONS[store_type])
        store = open_store(store_type, OPTIONS[store_type])
        (e,) = chain([bad])
        assert store.apply(e) is False and store.meta_state() == {}


@pytest.mark.parametrize("store_type", sorted(set(STORE_TYPES) - set(TAKES_META)))
def test_other_store_types_refuse_the_meta_op(store_type):
    with pytest.raises(InvalidOperation):
        STORE_TYPES[store_type].check_op(meta("k", 1), OPTIONS[store_type])
    store = open_store(store_type, OPTIONS[store_type])
    before = store.digest()
    (e,) = chain([meta("k", 1)])
    assert store.apply(e) is False
    assert store.meta("k") is None and store.digest() == before


@pytest.mark.parametrize("store_type", TAKES_META)
def test_a_store_reopened_over_its_space_keeps_its_meta_and_clear_forgets_it(
    store_type, make_space
):
    space = make_space()
    fold(store_type, chain([meta("postgres.table", SCHEMA)]), OPTIONS[store_type], space)
    again = open_store(store_type, OPTIONS[store_type], space)
    assert again.meta("postgres.table") == SCHEMA
    again.clear()
    assert again.meta("postgres.table") is None and again.meta_state() == {}


def _mixed(store_type):
    """Meta ops (a few malformed) among the store's own ops."""
    data = PAYLOADS[store_type]

    def make(rng, store):
        roll = rng.random()
        if roll < 0.3:
            return meta_payload(rng)
        if roll < 0.35:
            return rng.choice(MALFORMED_META)
        return data(rng, store)

    return make


@pytest.mark.parametrize("store_type", TAKES_META)
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), size=st.integers(0, 40))
def test_meta_and_data_converge_in_any_delivery_order(store_type, seed, size, make_space):
    rng = random.Random(seed)
    entries = history(rng, store_type, OPTIONS[store_type], _mixed(store_type), size)
    reference = fold(store_type, total_order(entries), OPTIONS[store_type], make_space())
    shuffled = list(entries)
    rng.shuffle(shuffled)
    for order in (causal_order(rng, entries), shuffled, shuffled + shuffled[::-1]):
        other = fold(store_type, order, OPTIONS[store_type], make_space())
        assert other.state() == reference.state()
        assert other.digest() == reference.digest()
        assert len(other) == len(reference)
        assert dump(other.space) == dump(reference.space)
    # The winner of each meta key is the greatest of its well-formed ops in the total order.
    winners = {}
    for e in total_order(entries):
        p = e.payload
        if p.get("op") == "meta" and len(p) == 3 and type(p.get("key")) is str and p["key"]:
            winners[p["key"]] = p["value"]
    assert {k: reference.meta(k) for k in winners} == winners
    assert set(reference.meta_state()) == set(winners)
    # A prefix of the history with a different state has a different digest.
    if size > 1:
        cut = rng.randrange(1, size)
        prefix = fold(store_type, entries[:cut], OPTIONS[store_type], make_space())
        assert (prefix.state() == reference.state()) == (prefix.digest() == reference.digest())
