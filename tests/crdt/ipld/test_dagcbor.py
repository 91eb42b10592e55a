import base64
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import (
    DagCborDecodeError,
    DagCborEncodeError,
    DepthExceeded,
    DuplicateMapKey,
    GridnodeError,
    IndefiniteLength,
    InvalidFloat,
    InvalidUtf8,
    MapKeyOrder,
    NonCanonicalEncoding,
    NonStringMapKey,
    TrailingBytes,
    Truncated,
    UnsupportedTag,
    UnsupportedType,
)
from crdt.ipld import CID, decode, decode_strict, encode

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ipld-codec-fixtures"
CASES = sorted(p for p in (FIXTURES / "fixtures").iterdir() if p.is_dir())


def cbor_file(case):
    (path,) = case.glob("*.dag-cbor")
    return path


def test_all_128_fixtures_are_present():
    assert len(CASES) == 128


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_fixture_round_trips_and_cid_matches(case):
    path = cbor_file(case)
    data = path.read_bytes()
    value = decode(data)
    assert decode_strict(data) == value
    assert encode(value) == data
    name = path.name.split(".")[0]
    assert str(CID.for_block(data)) == name
    assert str(CID.parse(name)) == name


def from_dag_json(value):
    """The IPLD data model value of parsed DAG-JSON (links and bytes in their reserved form)."""
    if isinstance(value, dict):
        if set(value) == {"/"}:
            inner = value["/"]
            if isinstance(inner, str):
                return CID.parse(inner)
            if isinstance(inner, dict) and set(inner) == {"bytes"}:
                text = inner["bytes"]
                return base64.b64decode(text + "=" * (-len(text) % 4))
        return {k: from_dag_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dag_json(v) for v in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_dag_json_twin_holds_the_same_value(case):
    (json_path,) = case.glob("*.dag-json")
    expected = from_dag_json(json.loads(json_path.read_bytes()))
    # Encodings are compared, not values, so that 1 and 1.0 or 0.0 and -0.0 are told apart.
    assert encode(expected) == cbor_file(case).read_bytes()


NEGATIVE = json.loads(
    (FIXTURES / "negative-fixtures" / "dag-cbor" / "decode" / "duplicate-keys.json").read_text()
)


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda c: c["name"])
def test_negative_fixtures(case):
    data = bytes.fromhex(case["hex"])
    for decoder in (decode, decode_strict):
        with pytest.raises(DuplicateMapKey):
            decoder(data)


# (hex, error class, offset reported by the strict reader)
MALFORMED = [
    ("a2616101616102", DuplicateMapKey, 4),
    ("a2616201616101", MapKeyOrder, 4),
    ("a262626201616101", MapKeyOrder, 5),  # "a" after "bb"
    ("a2626262016161f6", MapKeyOrder, 5),  # shorter key after a longer one
    ("1817", NonCanonicalEncoding, 0),
    ("1900ff", NonCanonicalEncoding, 0),
    ("1a0000ffff", NonCanonicalEncoding, 0),
    ("1b00000000ffffffff", NonCanonicalEncoding, 0),
    ("3817", NonCanonicalEncoding, 0),
    ("5801ff", NonCanonicalEncoding, 0),
    ("780161", NonCanonicalEncoding, 0),
    ("980101", NonCanonicalEncoding, 0),
    ("b8016161f6", NonCanonicalEncoding, 0),
    ("5f4101ff", IndefiniteLength, 0),
    ("7f6161ff", IndefiniteLength, 0),
    ("9f01ff", IndefiniteLength, 0),
    ("bf6161f6ff", IndefiniteLength, 0),
    ("ff", DagCborDecodeError, 0),
    ("c074323031332d30332d32315432303a30343a30305a", UnsupportedTag, 0),
    ("c11a514b67b0", UnsupportedTag, 0),
    ("c24101", UnsupportedTag, 0),
    ("d9d9f701", UnsupportedTag, 0),
    ("d9002a4100", NonCanonicalEncoding, 0),  # tag 42 written in two bytes
    ("d82a6161", UnsupportedTag, 2),  # tag 42 around text
    ("d82a4101", UnsupportedTag, 2),  # no 0x00 prefix
    ("d82a420012", UnsupportedTag, 2),  # not a CID after the prefix
    ("d82ad82a4100", UnsupportedTag, 2),
    ("a101f6", NonStringMapKey, 1),
    ("a14100f6", NonStringMapKey, 1),
    ("a18001f6", NonStringMapKey, 1),
    ("fb7ff8000000000000", InvalidFloat, 0),
    ("fb7ff0000000000000", InvalidFloat, 0),
    ("fbfff0000000000000", InvalidFloat, 0),
    ("f93c00", InvalidFloat, 0),
    ("fa3f800000", InvalidFloat, 0),
    ("f7", UnsupportedType, 0),
    ("e0", UnsupportedType, 0),
    ("f0", UnsupportedType, 0),
    ("f820", UnsupportedType, 0),
    ("1c", DagCborDecodeError, 0),
    ("3d", DagCborDecodeError, 0),
    ("9e", DagCborDecodeError, 0),
    ("0101", TrailingBytes, 1),
    ("a0a0", TrailingBytes, 1),
    ("9bffffffffffffffff", Truncated, 0),
    ("bbffffffffffffffff", Truncated, 0),
    ("5bffffffffffffffff", Truncated, 0),
    ("7a7fffffff61", Truncated, 0),
    ("62c0af", InvalidUtf8, 1),  # overlong '/'
    ("63eda080", InvalidUtf8, 1),  # UTF-8 of a lone surrogate
    ("", Truncated, 0),
    ("18", Truncated, 0),
    ("1b0000", Truncated, 0),
    ("fb3ff0", Truncated, 0),
    ("8201", Truncated, 0),  # the list claims more items than bytes remain
]


@pytest.mark.parametrize(
    ("hex_input", "error", "offset"), MALFORMED, ids=[m[0] or "empty" for m in MALFORMED]
)
def test_malformed_inputs(hex_input, error, offset):
    data = bytes.fromhex(hex_input)
    with pytest.raises(error) as strict:
        decode_strict(data)
    if offset is not None:
        assert strict.value.offset == offset
    with pytest.raises(error) as fast:
        decode(data)
    assert type(fast.value) is type(strict.value)


def test_every_prefix_of_a_document_is_truncated():
    data = encode({"a": [1, 2.5, "three", b"four", None, True], "bb": {"c": CID.for_block(b"x")}})
    for cut in range(len(data)):
        with pytest.raises(Truncated):
            decode(data[:cut])


def nested(depth):
    return bytes([0x81] * (depth - 1) + [0x80])


def test_depth_bound():
    assert decode(nested(100)) is not None
    for decoder in (decode, decode_strict):
        with pytest.raises(DepthExceeded):
            decoder(nested(101))
        with pytest.raises(DepthExceeded):
            decoder(nested(5), max_depth=4)
        with pytest.raises(DepthExceeded):
            decoder(bytes([0x81] * 100_000))  # no recursion error, no crash
    value: list = []
    for _ in range(150):
        value = [value]
    with pytest.raises(DagCborEncodeError):
        encode(value)


@pytest.mark.parametrize(
    ("value", "hex_output"),
    [
        (0, "00"),
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
        (-(2**64), "3bffffffffffffffff"),
        (0.5, "fb3fe0000000000000"),
        (1.0, "fb3ff0000000000000"),
        (-0.0, "fb8000000000000000"),
        (True, "f5"),
        (False, "f4"),
        (None, "f6"),
        ("", "60"),
        ("a" * 24, "7818" + "61" * 24),
        (b"", "40"),
        ((1, 2), "820102"),
        (bytearray(b"\x01"), "4101"),
        (memoryview(b"\x01"), "4101"),
        ({"b": 1, "a": 2, "aa": 3}, "a3616102616201626161" + "03"),
    ],
)
def test_encoder_forms(value, hex_output):
    assert encode(value).hex() == hex_output


def test_cid_encodes_as_tag_42_with_prefix():
    cid = CID.for_block(b"x")
    assert encode(cid) == b"\xd8\x2a\x58\x25\x00" + cid.bytes
    assert decode(encode(cid)) == cid


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        2**64,
        -(2**64) - 1,
        {1: 2},
        {b"k": 1},
        {(1,): 2},
        {1, 2},
        object(),
        1j,
        "\ud800",
    ],
    ids=repr,
)
def test_encoder_refuses_what_is_outside_the_data_model(value):
    with pytest.raises(DagCborEncodeError):
        encode(value)


def test_error_tree():
    for error in (Truncated, DuplicateMapKey, UnsupportedTag, DagCborEncodeError):
        assert issubclass(error, GridnodeError)


def cids():
    return st.binary(max_size=16).map(CID.for_block)


IPLD_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | cids(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(IPLD_VALUES)
def test_round_trip(value):
    data = encode(value)
    assert encode(decode(data)) == data
    assert encode(decode_strict(data)) == data


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**63), min_size=2, max_size=8),
    st.randoms(),
)
def test_insertion_order_does_not_matter(mapping, rng):
    items = list(mapping.items())
    rng.shuffle(items)
    assert encode(dict(items)) == encode(mapping)


def agree(data):
    """Both decoders accept with equal encodings, or both refuse with the same error class."""
    try:
        fast = encode(decode(data))
    except DagCborDecodeError as exc:
        fast = type(exc)
    try:
        strict = encode(decode_strict(data))
    except DagCborDecodeError as exc:
        strict = type(exc)
    assert fast == strict
    if isinstance(fast, bytes):
        assert fast == data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_decoders_agree_on_random_bytes(data):
    agree(data)


@settings(max_examples=500, deadline=None)
@given(IPLD_VALUES, st.data())
def test_decoders_agree_on_mutations(value, draw):
    data = bytearray(encode(value))
    kind = draw.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    pos = draw.draw(st.integers(0, len(data)))
    byte = draw.draw(st.integers(0, 255))
    if kind == "flip" and pos < len(data):
        data[pos] = byte
    elif kind == "insert":
        data.insert(pos, byte)
    elif kind == "delete" and pos < len(data):
        del data[pos]
    else:
        data = data[:pos]
    agree(bytes(data))


def test_libipld_confirms_canonical_form_on_the_fast_path(monkeypatch):
    # The compiled round trip is what decode asks first: without it answering, the pure-Python
    # re-encoding runs (and still decides alone when libipld is switched off).
    from crdt.ipld import dagcbor

    calls = []
    real = dagcbor._ipld_encode
    monkeypatch.setattr(dagcbor, "_ipld_encode", lambda v: calls.append(1) or real(v))
    python_encodes = []
    real_encode = dagcbor.encode
    monkeypatch.setattr(
        dagcbor, "encode", lambda v, **k: python_encodes.append(1) or real_encode(v, **k)
    )
    data = real_encode({"a": [1, "x", CID.for_block(b"x")], "b": b"\x00\x01"})
    assert decode(data) == {"a": [1, "x", CID.for_block(b"x")], "b": b"\x00\x01"}
    assert calls and not python_encodes
    monkeypatch.setattr(dagcbor, "use_libipld", False)
    assert decode(data) == {"a": [1, "x", CID.for_block(b"x")], "b": b"\x00\x01"}
    assert python_encodes


def test_bytes_that_look_like_a_cid_stay_bytes():
    # libipld reads a link as the CID's bytes and writes bytes that parse as a CID as a link: its
    # round trip of a plain byte string holding a CID differs from the input, and the
    # pure-Python path must decide (bytes, not a link; and a link stays a link).
    raw = CID.for_block(b"x").bytes
    as_bytes = encode({"b": raw})
    assert decode(as_bytes) == {"b": raw}
    assert type(decode(as_bytes)["b"]) is bytes
    as_link = encode({"b": CID.for_block(b"x")})
    assert type(decode(as_link)["b"]) is CID
    assert decode(bytes.fromhex("a1616258") + bytes((len(raw),)) + raw) == {"b": raw}
