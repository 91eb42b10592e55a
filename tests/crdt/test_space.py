import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.ipld import CID
from crdt.sortkey import sort_key
from crdt.space import MemorySpace, prefix_end
from crdt.stores.base import value_key

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.binary(max_size=6)
    | st.binary(max_size=4).map(CID.for_block),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


def compare(a, b):
    ka, kb = value_key(a), value_key(b)
    return (ka > kb) - (ka < kb)


@settings(max_examples=500, deadline=None)
@given(st.lists(VALUES, min_size=2, max_size=8))
def test_sort_key_orders_like_value_key(values):
    by_value = sorted(values, key=functools.cmp_to_key(compare))
    by_bytes = sorted(values, key=sort_key)
    assert [value_key(v) for v in by_value] == [value_key(v) for v in by_bytes]
    for a in values:
        for b in values:
            assert (sort_key(a) == sort_key(b)) == (value_key(a) == value_key(b))


def test_sort_key_edges():
    assert sort_key(1) == sort_key(1.0)
    assert sort_key(-0.0) == sort_key(0.0)
    assert sort_key(2**53) < sort_key(2**53 + 1) < sort_key(2**53 + 2)
    assert sort_key(2**64 - 1) > sort_key(1.8e19) > sort_key(2**63)
    assert sort_key("a") < sort_key("a\x00") < sort_key("ab") < sort_key("b")
    assert sort_key(["a"]) < sort_key(["a", None]) < sort_key(["b"])
    # Self-delimiting: a suffix never changes the order of two keys.
    assert sort_key("a") + b"\xff" < sort_key("a\x00") + b"\x00"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.binary(max_size=3)), max_size=60),
    st.binary(max_size=2),
    st.binary(max_size=2),
)
def test_memory_table_matches_a_dict(ops, low, high):
    table = MemorySpace().table("t")
    model = {}
    for put, key in ops:
        if put:
            table.put(key, key.hex())
            model[key] = key.hex()
        else:
            assert table.delete(key) == (key in model)
            model.pop(key, None)
    assert len(table) == len(model)
    expected = sorted((k, v) for k, v in model.items() if low <= k < high)
    assert list(table.range(low, high)) == expected
    assert list(table.range(low, high, reverse=True)) == expected[::-1]
    assert list(table.range(low, high, limit=2)) == expected[:2]
    assert list(table.range()) == sorted(model.items())


def test_prefix_end():
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None
