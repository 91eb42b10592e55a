"""The shared parts: the sorted key structure and the total order over IPLD values."""

from __future__ import annotations

import bisect
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import sortedkeys as base_module
from crdt.errors import InvalidQuery
from crdt.ipld import CID, encode
from crdt.stores import SortedKeys, value_key

# -- SortedKeys ------------------------------------------------------------------------------------


def _expected(keys: list[int], low, high, reverse: bool) -> list[int]:
    out = []
    for k in keys:
        if low is not None and (k < low[0] or (k == low[0] and not low[1])):
            continue
        if high is not None and (k > high[0] or (k == high[0] and not high[1])):
            continue
        out.append(k)
    return out[::-1] if reverse else out


bound = st.none() | st.tuples(st.integers(-5, 205), st.booleans())


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 200)), max_size=300),
    queries=st.lists(st.tuples(bound, bound, st.booleans()), max_size=10),
)
def test_sorted_keys_match_a_sorted_list(ops, queries):
    # Tiny chunks, so that a few hundred keys exercise splits and merges.
    saved = base_module._CHUNK, base_module._SMALL
    base_module._CHUNK, base_module._SMALL = 4, 2  # type: ignore[misc]
    try:
        _check_sorted_keys(ops, queries)
    finally:
        base_module._CHUNK, base_module._SMALL = saved  # type: ignore[misc]


def _check_sorted_keys(ops, queries):
    keys = SortedKeys()
    model: list[int] = []
    for add, k in ops:
        present = k in model
        if add and not present:
            keys.add(k)
            bisect.insort(model, k)
        elif not add:
            assert keys.remove(k) is present
            if present:
                model.remove(k)
        assert len(keys) == len(model)
    assert list(keys) == model
    for k in range(0, 201, 7):
        assert (k in keys) is (k in model)
    for low, high, reverse in queries:
        assert list(keys.irange(low, high, reverse=reverse)) == _expected(model, low, high, reverse)
    # Chunks stay sorted, non-empty and bounded, with their maxima recorded.
    chunks = keys._chunks
    assert all(chunks) and [c[-1] for c in chunks] == keys._maxes
    assert all(len(c) <= 2 * base_module._CHUNK for c in chunks)


def test_sorted_keys_in_order_appends_and_bulk():
    keys = SortedKeys()
    for k in range(10_000):
        keys.add((k, b"x"))
    assert len(keys._chunks) > 4
    assert list(keys.irange(((9_990, b""), True))) == [(k, b"x") for k in range(9_990, 10_000)]
    rng = random.Random(3)
    order = list(range(10_000))
    rng.shuffle(order)
    for k in order[:9_000]:
        assert keys.remove((k, b"x"))
    assert list(keys) == sorted((k, b"x") for k in order[9_000:])
    assert not keys.remove((order[0], b"x"))
    assert not keys.remove((10**9, b"x"))


# -- value_key ------------------------------------------------------------------------------------

ipld_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.sampled_from([CID.for_block(b"a"), CID.for_block(b"b")]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(ipld_values, max_size=8))
def test_value_key_is_a_total_order_consistent_with_encoding(values):
    keyed = sorted(values, key=value_key)  # never a TypeError: any two keys compare
    keys = [value_key(v) for v in keyed]
    assert keys == sorted(keys)
    for a in values:
        for b in values:
            if encode(a) == encode(b):
                assert value_key(a) == value_key(b)


def test_value_key_order_of_kinds_and_within_kinds():
    ordered = [
        None,
        False,
        True,
        -(2**64),
        -1.5,
        0,
        1,
        2.5,
        2**64 - 1,
        "",
        "A",
        "a",
        "é",  # code point order: after every ASCII letter, like its UTF-8 bytes
        "\U0001f600",
        b"",
        b"\x00",
        b"\xff",
        [],
        [None],
        [0],
        [0, 0],
        [1],
        {},
        {"a": 1},
        {"a": 1, "b": 0},
        {"b": 0},
        CID.for_block(b"x"),
    ]
    keys = [value_key(v) for v in ordered]
    for a, b in itertools.pairwise(keys):
        assert a < b
    assert value_key(1) == value_key(1.0) and value_key([1]) == value_key([1.0])
    assert value_key(2**53 + 1) > value_key(float(2**53))  # exact, not rounded through floats
    assert value_key((1, 2)) == value_key([1, 2])
    links = sorted([CID.for_block(bytes([i])) for i in range(5)])
    assert sorted(links, key=value_key) == links


def test_value_key_refuses_what_is_not_ipld():
    for bad in (object(), {1, 2}, complex(1, 2), [object()]):
        with pytest.raises(InvalidQuery):
            value_key(bad)
