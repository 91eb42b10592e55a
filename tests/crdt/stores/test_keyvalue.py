"""The key-value store: last writer (greatest ``(clock, CID)``) wins, per key."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.stores import KeyValueStore
from tests.crdt.stores.causal import (
    WRITERS,
    causal_order,
    entry,
    order_key,
    random_history,
    total_order,
)


def put(key, value):
    return {"op": "put", "key": key, "value": value}


def delete(key):
    return {"op": "del", "key": key}


def test_put_get_delete(make_space):
    store = KeyValueStore(space=make_space())
    a = entry(put("a", 1))
    b = entry(put("b", {"x": [1]}), [a])
    c = entry(delete("a"), [b])
    for e in (a, b):
        store.apply(e)
    assert store.get("a") == 1 and store["b"] == {"x": [1]} and "a" in store and len(store) == 2
    assert store.keys() == ["a", "b"] and store.items() == [("a", 1), ("b", {"x": [1]})]
    assert list(store) == ["a", "b"]
    store.apply(c)
    assert "a" not in store and store.get("a", "gone") == "gone" and len(store) == 1
    with pytest.raises(KeyError):
        store["a"]
    assert store.winner("a") == (c.clock, c.cid) and store.winner("zz") is None
    assert store.state() == {
        "a": {"clock": 3, "entry": c.cid},
        "b": {"clock": 2, "entry": b.cid, "value": {"x": [1]}},
    }
    assert 1 not in store


def test_concurrent_puts_the_greater_cid_wins_on_every_replica(make_space):
    root = entry(put("k", "root"))
    left = entry(put("k", "left"), [root], WRITERS[1])
    right = entry(put("k", "right"), [root], WRITERS[2])
    winner = max(left, right, key=order_key)
    for order in ([root, left, right], [root, right, left]):
        store = KeyValueStore(space=make_space())
        for e in order:
            store.apply(e)
        assert store.get("k") == winner.payload["value"]


def test_a_later_clock_wins_over_a_greater_cid(make_space):
    root = entry(put("other", 0))
    deep = entry(put("k", "deep"), [entry(put("x", 0), [root])])  # clock 3
    shallow = entry(put("k", "shallow"), [root], WRITERS[1])  # clock 2, concurrent
    for order in ([deep, shallow], [shallow, deep]):
        store = KeyValueStore(space=make_space())
        for e in order:
            store.apply(e)
        assert store.get("k") == "deep"


def test_a_winning_delete_is_a_tombstone_that_late_older_puts_cannot_undo(make_space):
    root = entry(put("k", 1))
    gone = entry(delete("k"), [entry(put("y", 2), [root])])
    late = entry(put("k", "concurrent but older"), [root], WRITERS[1])
    store = KeyValueStore(space=make_space())
    for e in (root, gone, late):
        store.apply(e)
    assert "k" not in store and store.winner("k") == (gone.clock, gone.cid)
    again = entry(put("k", "back"), [gone, late])
    store.apply(again)
    assert store.get("k") == "back"


def test_put_none_is_not_a_delete(make_space):
    store = KeyValueStore(space=make_space())
    store.apply(entry(put("k", None)))
    assert "k" in store and store.get("k", "default") is None and len(store) == 1


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 40))
def test_state_is_the_fold_in_total_order(seed, size, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, "keyvalue", size)
    store = KeyValueStore(space=make_space())
    for e in causal_order(rng, entries):
        store.apply(e)
    model: dict[str, object] = {}
    last: dict[str, object] = {}
    for e in total_order(entries):
        if not KeyValueStore().apply(e):
            continue
        p = e.payload
        last[p["key"]] = (e.clock, e.cid)
        if p["op"] == "put":
            model[p["key"]] = p["value"]
        else:
            model.pop(p["key"], None)
    assert store.items() == sorted(model.items())
    assert {k: store.winner(k) for k in last} == last
