"""The DAG-CBOR encoder by example, then properties of encoder and decoders (hypothesis).

Python's ``==`` says ``0.0 == -0.0``, ``1 == 1.0`` and ``True == 1``; where that matters these tests
compare encodings, which tell all of them apart.
"""

import collections
import enum
import fractions
import math
import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt.errors import DagCborDecodeError, DagCborEncodeError, DepthExceeded, Truncated
from crdt.ipld import CID, decode, decode_strict, encode

# Every test here runs on both confirmations of canonical form (conftest.py).
pytestmark = pytest.mark.usefixtures("decode_path")

# -- the encoder by example ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hex_output"),
    [
        (0, "00"),
        (1, "01"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65535, "19ffff"),
        (65536, "1a00010000"),
        (2**32 - 1, "1affffffff"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (-1, "20"),
        (-24, "37"),
        (-25, "3818"),
        (-256, "38ff"),
        (-257, "390100"),
        (-65536, "39ffff"),
        (-65537, "3a00010000"),
        (-(2**32), "3affffffff"),
        (-(2**32) - 1, "3b0000000100000000"),
        (-(2**64), "3bffffffffffffffff"),
    ],
    ids=str,
)
def test_integers_at_every_width_boundary(value, hex_output):
    data = encode(value)
    assert data.hex() == hex_output
    assert decode(data) == value and type(decode(data)) is int


@pytest.mark.parametrize(
    ("value", "hex_output"),
    [
        (0.5, "fb3fe0000000000000"),
        (1.0, "fb3ff0000000000000"),
        (0.0, "fb0000000000000000"),
        (-0.0, "fb8000000000000000"),
        (1.5, "fb3ff8000000000000"),  # fits a float16, still 9 bytes
        (-1.1, "fbbff199999999999a"),
        (5e-324, "fb0000000000000001"),
        (1.7976931348623157e308, "fb7fefffffffffffff"),
    ],
    ids=repr,
)
def test_floats_are_always_nine_bytes(value, hex_output):
    data = encode(value)
    assert data.hex() == hex_output
    assert encode(decode(data)) == data
    assert encode(decode_strict(data)) == data


@pytest.mark.parametrize(
    ("value", "hex_output"),
    [
        (None, "f6"),
        (True, "f5"),
        (False, "f4"),
        ("", "60"),
        ("a", "6161"),
        ("\u00e9", "62c3a9"),
        ("a" * 23, "77" + "61" * 23),
        ("a" * 24, "7818" + "61" * 24),
        ("a" * 256, "790100" + "61" * 256),
        (b"", "40"),
        (b"\x01\x02", "420102"),
        (b"\x00" * 24, "5818" + "00" * 24),
        ([], "80"),
        ([1, [2, 3]], "8201820203"),
        ((1, 2), "820102"),
        ((), "80"),
        (bytearray(b"\x01"), "4101"),
        (memoryview(b"\x01\x02"), "420102"),
        ({}, "a0"),
    ],
    ids=repr,
)
def test_simple_forms(value, hex_output):
    assert encode(value).hex() == hex_output


def test_list_of_24_items_has_a_two_byte_head():
    assert encode([0] * 24).hex() == "9818" + "00" * 24
    assert encode({str(i): 0 for i in range(24)})[:2] == b"\xb8\x18"


def test_map_keys_sort_length_first_then_bytewise():
    value = {"bb": 1, "b": 2, "a": 3, "": 4, "aaa": 5, "z": 6, "\u00e9": 7, "ab": 8}
    data = encode(value)
    expected = ["", "a", "b", "z", "ab", "bb", "\u00e9", "aaa"]  # "é" is 2 bytes: c3 a9 > "bb"
    assert list(decode(data)) == expected
    assert list(decode_strict(data)) == expected
    assert encode({"b": 1, "a": 2, "aa": 3}).hex() == "a3616102616201626161" + "03"
    # A 24-byte key has a two-byte head and so sorts after every shorter key.
    long_key = "a" * 24
    assert list(decode(encode({long_key: 0, "z" * 23: 1}))) == ["z" * 23, long_key]


def test_links_are_tag_42_with_a_zero_prefix():
    v1 = CID.for_block(b"x")
    assert encode(v1) == bytes.fromhex("d82a582500") + v1.bytes
    v0 = CID.parse("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY")
    assert encode(v0) == bytes.fromhex("d82a582300") + v0.bytes
    raw_identity = CID.for_block(b"", codec="raw", hash="identity")
    assert encode(raw_identity) == bytes.fromhex("d82a45000155" + "0000")
    for cid in (v1, v0, raw_identity):
        assert decode(encode(cid)) == cid
        assert decode_strict(encode([cid]))[0] == cid


class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


def test_subclasses_of_data_model_types_encode_as_their_base():
    assert encode(Color.RED) == encode(1)
    assert encode(Text("k")) == encode("k")
    assert encode({Text("b"): 1, "a": 2}) == encode({"a": 2, "b": 1})
    assert encode(collections.OrderedDict([("b", 1), ("a", 2)])) == encode({"a": 2, "b": 1})


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        [1.0, math.nan],
        {"a": math.inf},
        2**64,
        -(2**64) - 1,
        2**100,
        [2**64],
        {1: 2},
        {b"k": 1},
        {None: 1},
        {(1,): 2},
        {1.5: 2},
        {"a": {2: 3}},
        {1, 2},
        frozenset(),
        object(),
        1j,
        Decimal("1.5"),
        fractions.Fraction(1, 2),
        "\ud800",
        "a\udfffb",
        ["\udc00"],
        {"\ud800": 1},
        type,
        len,
        Ellipsis,
    ],
    ids=repr,
)
def test_encoder_refuses_what_is_outside_the_data_model(value):
    with pytest.raises(DagCborEncodeError):
        encode(value)


def nested(depth: int, leaf=None):
    value = [] if leaf is None else leaf
    for _ in range(depth - 1):
        value = [value]
    return value


def test_encoder_depth_bound():
    assert encode(nested(100)) == b"\x81" * 99 + b"\x80"
    with pytest.raises(DagCborEncodeError):
        encode(nested(101))
    assert encode(nested(3), max_depth=3) == bytes.fromhex("818180")
    with pytest.raises(DagCborEncodeError):
        encode(nested(4), max_depth=3)
    with pytest.raises(DagCborEncodeError):
        encode({"a": {"b": {}}}, max_depth=2)
    assert encode(1, max_depth=0) == b"\x01"
    with pytest.raises(DagCborEncodeError):
        encode([], max_depth=0)
    # Deeper than the interpreter can recurse, with a bound that allows it: still the error tree.
    with pytest.raises(DagCborEncodeError):
        encode(nested(100_000), max_depth=10**6)


def test_self_referencing_list_is_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(DagCborEncodeError):
        encode(loop)


# -- strategies ------------------------------------------------------------------------------------

cids = st.builds(
    CID.for_block,
    st.binary(max_size=16),
    codec=st.sampled_from(["dag-cbor", "raw", "dag-pb"]),
    hash=st.sampled_from(["sha2-256", "blake2b-256", "identity"]),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -(2**64)])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | cids
)
ipld_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=30,
)


def depth(value) -> int:
    if type(value) is list:
        return 1 + max(map(depth, value), default=0)
    if type(value) is dict:
        return 1 + max(map(depth, value.values()), default=0)
    return 0


def shuffled(value, rng: random.Random):
    """The same value with every map rebuilt in a random insertion order."""
    if type(value) is dict:
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if type(value) is list:
        return [shuffled(v, rng) for v in value]
    return value


# -- round trips -----------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(ipld_values)
def test_round_trip(value):
    data = encode(value)
    for decoder in (decode, decode_strict):
        back = decoder(data)
        assert back == value
        assert encode(back) == data  # tells 0.0 from -0.0, 1 from 1.0 and True from 1


@settings(max_examples=300, deadline=None)
@given(ipld_values, st.randoms(use_true_random=False))
def test_encoding_ignores_insertion_order(value, rng):
    assert encode(shuffled(value, rng)) == encode(value)


@settings(max_examples=300, deadline=None)
@given(ipld_values, st.integers(0, 5))
def test_depth_bound_agrees_everywhere(value, bound):
    data = encode(value)
    if depth(value) <= bound:
        assert encode(value, max_depth=bound) == data
        assert encode(decode(data, max_depth=bound)) == data
        assert encode(decode_strict(data, max_depth=bound)) == data
    else:
        with pytest.raises(DagCborEncodeError):
            encode(value, max_depth=bound)
        for decoder in (decode, decode_strict):
            with pytest.raises(DepthExceeded):
                decoder(data, max_depth=bound)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_is_nine_bytes_and_exact(f):
    data = encode(f)
    assert len(data) == 9 and data[0] == 0xFB
    back = decode(data)
    assert type(back) is float and math.copysign(1.0, back) == math.copysign(1.0, f) and back == f


# -- differential: the fast path and the strict reader agree on every input -------------------------


def outcome(decoder, data: bytes):
    """``("ok", encoding of the value)`` or ``("error", class, offset)``; anything else fails."""
    try:
        value = decoder(data)
    except DagCborDecodeError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(data), exc
        return ("error", type(exc), exc.offset)
    except Exception as exc:  # pragma: no cover - reported as a failure
        pytest.fail(f"{decoder.__name__} raised {type(exc).__name__}: {exc} on {data.hex()}")
    return ("ok", encode(value))


def assert_agree(data: bytes) -> None:
    fast = outcome(decode, data)
    strict = outcome(decode_strict, data)
    assert fast == strict, data.hex()
    if fast[0] == "ok":
        assert fast[1] == data  # only canonical input is accepted
        assert decode(data) == decode_strict(data)


# Bytes that mean something to a CBOR reader: heads of every major type and width, the CID prefix.
INTERESTING = list(
    bytes.fromhex(
        "00 01 17 18 19 1a 1b 1f 20 38 40 41 58 5f 60 61 78 7f 80 81 82 98 9f a0 a1 a2 b8 bf "
        "c0 c2 d8 2a d9 f4 f5 f6 f7 f8 f9 fa fb ff 71 12 55 70 c3 ed"
    )
)
cbor_ish = st.lists(st.sampled_from(INTERESTING) | st.integers(0, 255), max_size=48).map(bytes)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_decoders_agree_on_random_bytes(data):
    assert_agree(data)


@settings(max_examples=500, deadline=None)
@given(cbor_ish)
def test_decoders_agree_on_cbor_like_bytes(data):
    assert_agree(data)


mutations = st.sampled_from(["set", "xor-bit", "insert", "delete", "truncate", "duplicate"])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ipld_values,
    st.lists(
        st.tuples(mutations, st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3
    ),
)
def test_decoders_agree_on_mutated_encodings(value, edits):
    data = bytearray(encode(value))
    for kind, where, byte in edits:
        pos = where % (len(data) + 1)
        if kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data.insert(pos, byte)
        elif pos == len(data):
            continue  # nothing at the end to change
        elif kind == "set":
            data[pos] = byte
        elif kind == "xor-bit":
            data[pos] ^= 1 << (byte % 8)
        elif kind == "delete":
            del data[pos]
        else:  # duplicate a run of bytes in place
            data[pos:pos] = data[pos : pos + 1 + byte % 8]
    assert_agree(bytes(data))


@settings(max_examples=200, deadline=None)
@given(ipld_values)
def test_every_truncation_is_truncated(value):
    data = encode(value)
    for cut in range(len(data)):
        fast, strict = outcome(decode, data[:cut]), outcome(decode_strict, data[:cut])
        assert fast == strict
        assert fast[:2] == ("error", Truncated)
