"""The set store: an add-wins observed-remove set."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.ipld import CID, encode
from crdt.stores import SetStore
from tests.crdt.spaces import CountingSpace
from tests.crdt.stores.causal import WRITERS, causal_order, entry, random_history


def add(value):
    return {"op": "add", "value": value}


def remove(value, tags):
    return {"op": "remove", "value": value, "tags": tags}


def _fold(entries, make_space):
    store = SetStore(space=make_space())
    for e in entries:
        store.apply(e)
    return store


def test_add_and_observed_remove(make_space):
    a = entry(add("x"))
    store = _fold([a], make_space)
    assert "x" in store and len(store) == 1 and store.tags_for("x") == [a.cid]
    r = entry(remove("x", store.tags_for("x")), [a])
    store.apply(r)
    assert "x" not in store and len(store) == 0 and store.tags_for("x") == []
    # Adding it again is a new tag, which the old remove did not see.
    again = entry(add("x"), [r])
    store.apply(again)
    assert "x" in store and store.tags_for("x") == [again.cid]


def test_add_wins_over_a_concurrent_remove(make_space):
    a = entry(add("x"))
    r = entry(remove("x", [a.cid]), [a], WRITERS[0])
    concurrent = entry(add("x"), [a], WRITERS[1])  # has not seen the remove
    for order in ([a, r, concurrent], [a, concurrent, r], [concurrent, r, a], [r, a, concurrent]):
        store = _fold(order, make_space)
        assert "x" in store and store.tags_for("x") == [concurrent.cid]


def test_concurrent_removes_of_the_same_adds_are_one_removal(make_space):
    a = entry(add(7))
    r1 = entry(remove(7, [a.cid]), [a], WRITERS[1])
    r2 = entry(remove(7, [a.cid]), [a], WRITERS[2])
    assert 7 not in _fold([a, r1, r2], make_space) and 7 not in _fold([r2, a], make_space)


def test_a_remove_that_arrives_before_its_add_still_cancels_it(make_space):
    a = entry(add({"k": 1}))
    r = entry(remove({"k": 1}, [a.cid]), [a])
    store = _fold([r, a], make_space)
    assert len(store) == 0 and store.digest() == _fold([a, r], make_space).digest()


def test_a_remove_cancels_only_tags_of_its_own_value(make_space):
    x = entry(add("x"))
    y = entry(add("y"), [x])
    r = entry(remove("y", [x.cid, y.cid]), [y])  # names x's tag too, under y
    store = _fold([x, y, r], make_space)
    assert store.values() == ["x"]


def test_equal_values_are_one_member_and_members_sort_by_encoding(make_space):
    cid = CID.for_block(b"z")
    values = ["b", 1, 1.0, b"a", [1, {"a": None}], {"b": 1, "a": 2}, cid, None, True]
    store = _fold([entry(add(v), writer=WRITERS[i % 3]) for i, v in enumerate(values)], make_space)
    store.apply(entry(add({"a": 2, "b": 1}), writer=WRITERS[2]))  # same map, other key order
    assert len(store) == len(values)
    assert store.values() == sorted(values, key=encode)
    assert list(store) == store.values()
    assert {"a": 2, "b": 1} in store and 1.0 in store and 2 not in store
    assert object() not in store and store.tags_for(object()) == []


def test_a_remove_with_no_tags_is_a_harmless_op(make_space):
    a = entry(add("x"))
    store = _fold([a, entry(remove("x", []), [a]), entry(remove("nothing", []), [a])], make_space)
    assert store.values() == ["x"]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 40))
def test_membership_is_an_uncancelled_add(seed, size, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, "set", size)
    store = _fold(causal_order(rng, entries), make_space)
    ops = [e for e in entries if SetStore().apply(e)]
    cancelled = {
        (encode(e.payload["value"]), t)
        for e in ops
        if e.payload["op"] == "remove"
        for t in e.payload["tags"]
    }
    members = {
        encode(e.payload["value"]): e.payload["value"]
        for e in ops
        if e.payload["op"] == "add" and (encode(e.payload["value"]), e.cid) not in cancelled
    }
    assert store.values() == [members[k] for k in sorted(members)]
    for key, value in members.items():
        assert sorted(store.tags_for(value)) == sorted(
            e.cid
            for e in ops
            if e.payload["op"] == "add"
            and encode(e.payload["value"]) == key
            and (key, e.cid) not in cancelled
        )


def test_reads_touch_only_live_tags_and_members():
    space = CountingSpace()
    store = SetStore(space=space)
    parents: list = []
    for _ in range(50):  # fifty add/remove cycles of "x": fifty cancelled tags
        a = entry(add("x"), parents)
        store.apply(a)
        r = entry(remove("x", [a.cid]), [a])
        store.apply(r)
        parents = [r]
    for v in range(20):
        store.apply(entry(add(v), parents))
        store.apply(entry(remove(v, store.tags_for(v)), parents))
    last = entry(add("x"), parents)
    store.apply(last)
    space.reset()
    assert store.tags_for("x") == [last.cid] and space.reads == 1
    space.reset()
    assert store.values() == ["x"] and space.reads == 1
    space.reset()
    assert len(store) == 1 and "x" in store and space.reads == 2
    assert len(store.state()) == 21
