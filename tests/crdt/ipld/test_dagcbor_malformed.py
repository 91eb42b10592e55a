"""Crafted inputs that strict DAG-CBOR refuses, each with the error class and offset expected.

Both decoders are run: :func:`decode_strict` must raise exactly the class named, at the offset
named; :func:`decode` must raise the same class (it hands refused input to the strict reader).
"""

import sys
import time

import pytest

from crdt.errors import (
    DagCborDecodeError,
    DecodeError,
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

# Every test here runs on both confirmations of canonical form (conftest.py).
pytestmark = pytest.mark.usefixtures("decode_path")

# The binary CIDv1 (dag-cbor, sha2-256) of the block b"x", written out so these inputs do not
# depend on the CID code under test.
CID_HEX = "017112202d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
LINK_HEX = "d82a582500" + CID_HEX  # tag 42, 37-byte string, 0x00 prefix, CID

Base = DagCborDecodeError  # the class itself, for inputs that are not CBOR at all


def case(name, hex_input, error, offset, max_depth=None):
    return pytest.param(hex_input, error, offset, max_depth, id=name)


MALFORMED = [
    # -- maps: duplicates and order
    case("dup-key", "a2616101616102", DuplicateMapKey, 4),
    case("dup-key-nested", "a16178a2616101616102", DuplicateMapKey, 7),
    case("dup-empty-key", "a2600160f6", DuplicateMapKey, 3),
    case("dup-key-third", "a3616101616202616203", DuplicateMapKey, 7),
    case("order-same-length-1", "a2616201616102", MapKeyOrder, 4),
    case("order-same-length-2", "a2626162016261610f", MapKeyOrder, 5),
    case("order-shorter-after-longer", "a2626161016162f6", MapKeyOrder, 5),
    case("order-1-after-24-bytes", "a27818" + "61" * 24 + "016161f6", MapKeyOrder, 28),
    case("order-utf8-bytewise", "a262c3a9016261610f", MapKeyOrder, 5),  # "é" then "aa"
    # -- integers not in their shortest form, every width, both signs
    case("uint-0-in-24", "1800", NonCanonicalEncoding, 0),
    case("uint-23-in-24", "1817", NonCanonicalEncoding, 0),
    case("uint-255-in-25", "1900ff", NonCanonicalEncoding, 0),
    case("uint-65535-in-26", "1a0000ffff", NonCanonicalEncoding, 0),
    case("uint-2^32-1-in-27", "1b00000000ffffffff", NonCanonicalEncoding, 0),
    case("nint-23-in-24", "3817", NonCanonicalEncoding, 0),
    case("nint-255-in-25", "3900ff", NonCanonicalEncoding, 0),
    case("nint-65535-in-26", "3a0000ffff", NonCanonicalEncoding, 0),
    case("nint-2^32-1-in-27", "3b00000000ffffffff", NonCanonicalEncoding, 0),
    case("uint-in-list", "82011805", NonCanonicalEncoding, 2),
    # -- lengths not in their shortest form
    case("bytes-len-24", "5801ff", NonCanonicalEncoding, 0),
    case("bytes-len-25", "590001ff", NonCanonicalEncoding, 0),
    case("bytes-len-26", "5a00000001ff", NonCanonicalEncoding, 0),
    case("bytes-len-27", "5b0000000000000001ff", NonCanonicalEncoding, 0),
    case("text-len-24", "780161", NonCanonicalEncoding, 0),
    case("text-len-25", "79000161", NonCanonicalEncoding, 0),
    case("array-len-24", "980101", NonCanonicalEncoding, 0),
    case("array-len-25", "990000", NonCanonicalEncoding, 0),
    case("map-len-24", "b8016161f6", NonCanonicalEncoding, 0),
    case("map-len-26", "ba00000000", NonCanonicalEncoding, 0),
    case("key-len-24", "a178016101", NonCanonicalEncoding, 1),
    # -- indefinite lengths and the break byte
    case("indef-bytes", "5f4101ff", IndefiniteLength, 0),
    case("indef-text", "7f6161ff", IndefiniteLength, 0),
    case("indef-array", "9f01ff", IndefiniteLength, 0),
    case("indef-map", "bf616101ff", IndefiniteLength, 0),
    case("indef-empty-array-in-list", "819fff", IndefiniteLength, 1),
    case("break-alone", "ff", Base, 0),
    case("break-in-list", "81ff", Base, 1),
    # Additional information 31 means "indefinite" only for strings, arrays and maps; for integers
    # and tags it is not well-formed CBOR (RFC 8949 section 3).
    case("uint-info-31", "1f", Base, 0),
    case("nint-info-31", "3f", Base, 0),
    case("tag-info-31", "df", Base, 0),
    # -- tags
    case("tag-0-datetime", "c074323031332d30332d32315432303a30343a30305a", UnsupportedTag, 0),
    case("tag-1-epoch", "c11a514b67b0", UnsupportedTag, 0),
    case("tag-2-bignum", "c249010000000000000000", UnsupportedTag, 0),
    case("tag-3-negative-bignum", "c34101", UnsupportedTag, 0),
    case("tag-55799-self-describe", "d9d9f7a0", UnsupportedTag, 0),
    case("tag-28-shareable", "d81c80", UnsupportedTag, 0),
    case("tag-256-stringref", "d9010081626161", UnsupportedTag, 0),
    case("tag-43", "d82b" + "582500" + CID_HEX, UnsupportedTag, 0),
    case("tag-42-in-2-bytes", "d9002a582500" + CID_HEX, NonCanonicalEncoding, 0),
    case("tag-42-in-4-bytes", "da0000002a582500" + CID_HEX, NonCanonicalEncoding, 0),
    case("tag-42-text", "d82a6161", UnsupportedTag, 2),
    case("tag-42-int", "d82a00", UnsupportedTag, 2),
    case("tag-42-no-prefix", "d82a5824" + CID_HEX, UnsupportedTag, 2),
    case("tag-42-prefix-01", "d82a582501" + CID_HEX, UnsupportedTag, 2),
    case("tag-42-empty-bytes", "d82a40", UnsupportedTag, 2),
    case("tag-42-prefix-only", "d82a4100", UnsupportedTag, 2),
    case("tag-42-cid-version-2", "d82a582500" + "02" + CID_HEX[2:], UnsupportedTag, 2),
    case("tag-42-cid-truncated-digest", "d82a582400" + CID_HEX[:-2], UnsupportedTag, 2),
    case("tag-42-cid-trailing-byte", "d82a582600" + CID_HEX + "00", UnsupportedTag, 2),
    case("tag-42-cid-bad-varint", "d82a4400818000", UnsupportedTag, 2),
    case("tag-42-nested", "d82ad82a582500" + CID_HEX, UnsupportedTag, 2),
    case("tag-42-bytes-length-in-2-bytes", "d82a59002500" + CID_HEX, NonCanonicalEncoding, 2),
    case("tag-42-in-map-value", "a16161d82a4101", UnsupportedTag, 5),
    # -- map keys that are not text
    case("key-int", "a101f6", NonStringMapKey, 1),
    case("key-negative-int", "a120f6", NonStringMapKey, 1),
    case("key-bytes", "a14161f6", NonStringMapKey, 1),
    case("key-array", "a18001", NonStringMapKey, 1),
    case("key-map", "a1a001", NonStringMapKey, 1),
    case("key-null", "a1f6f6", NonStringMapKey, 1),
    case("key-link", "a1" + LINK_HEX + "01", NonStringMapKey, 1),
    case("key-int-second", "a261610102f6", NonStringMapKey, 4),
    # -- floats
    case("float64-nan", "fb7ff8000000000000", InvalidFloat, 0),
    case("float64-nan-payload", "fb7ff0000000000001", InvalidFloat, 0),
    case("float64-negative-nan", "fbfff8000000000000", InvalidFloat, 0),
    case("float64-inf", "fb7ff0000000000000", InvalidFloat, 0),
    case("float64-neg-inf", "fbfff0000000000000", InvalidFloat, 0),
    case("float16-one", "f93c00", InvalidFloat, 0),
    case("float16-zero", "f90000", InvalidFloat, 0),
    case("float16-nan", "f97e00", InvalidFloat, 0),
    case("float32-one", "fa3f800000", InvalidFloat, 0),
    case("float32-zero", "fa00000000", InvalidFloat, 0),
    case("float32-inf", "fa7f800000", InvalidFloat, 0),
    case("float16-in-list", "8201f93c00", InvalidFloat, 2),
    # -- simple values outside the data model
    case("undefined", "f7", UnsupportedType, 0),
    case("simple-0", "e0", UnsupportedType, 0),
    case("simple-16", "f0", UnsupportedType, 0),
    case("simple-19", "f3", UnsupportedType, 0),
    case("simple-32-two-bytes", "f820", UnsupportedType, 0),
    case("simple-255-two-bytes", "f8ff", UnsupportedType, 0),
    case("false-in-two-bytes", "f814", UnsupportedType, 0),
    case("undefined-as-map-value", "a16161f7", UnsupportedType, 3),
    # -- reserved additional information 28..30
    case("uint-info-28", "1c", Base, 0),
    case("nint-info-29", "3d", Base, 0),
    case("bytes-info-30", "5e", Base, 0),
    case("text-info-28", "7c", Base, 0),
    case("array-info-29", "9d", Base, 0),
    case("map-info-30", "be", Base, 0),
    case("tag-info-28", "dc", Base, 0),
    case("simple-info-28", "fc", Base, 0),
    case("simple-info-29", "fd", Base, 0),
    case("simple-info-30", "fe", Base, 0),
    # -- trailing bytes
    case("trailing-int", "0101", TrailingBytes, 1),
    case("trailing-map", "a0a0", TrailingBytes, 1),
    case("trailing-after-list", "820102ff", TrailingBytes, 3),
    case("trailing-zero-after-link", LINK_HEX + "00", TrailingBytes, 41),
    # -- truncated input
    case("empty", "", Truncated, 0),
    case("uint-24-no-arg", "18", Truncated, 0),
    case("uint-25-half-arg", "1901", Truncated, 0),
    case("uint-26-short-arg", "1a000100", Truncated, 0),
    case("uint-27-short-arg", "1b00000001", Truncated, 0),
    case("float64-short", "fb3ff0", Truncated, 0),
    case("bytes-short", "4201", Truncated, 0),
    case("text-short", "6261", Truncated, 0),
    case("list-short", "8201", Truncated, 0),
    case("list-item-short", "820118", Truncated, 2),
    case("map-no-value", "a16161", Truncated, 3),
    case("tag-no-number", "d8", Truncated, 0),
    case("tag-42-no-content", "d82a", Truncated, 2),
    case("tag-42-cid-short", "d82a582500" + CID_HEX[:-2], Truncated, 2),
    # -- lengths far beyond the input (must fail at once, without allocating)
    case("array-2^64-1", "9bffffffffffffffff", Truncated, 0),
    case("map-2^64-1", "bbffffffffffffffff", Truncated, 0),
    case("bytes-2^64-1", "5bffffffffffffffff", Truncated, 0),
    case("text-2^64-1", "7bffffffffffffffff", Truncated, 0),
    case("array-2^32-1", "9affffffff", Truncated, 0),
    case("bytes-2^31-1", "5a7fffffff61", Truncated, 0),
    case("map-2^32-1-in-list", "81baffffffff", Truncated, 1),
    case("array-2^63-in-map", "a161619b8000000000000000", Truncated, 3),
    # -- invalid UTF-8
    case("utf8-overlong-slash", "62c0af", InvalidUtf8, 1),
    case("utf8-overlong-3-byte", "63e080af", InvalidUtf8, 1),
    case("utf8-lone-high-surrogate", "63eda080", InvalidUtf8, 1),
    case("utf8-lone-low-surrogate", "63edb080", InvalidUtf8, 1),
    case("utf8-beyond-10ffff", "64f4908080", InvalidUtf8, 1),
    case("utf8-ff", "61ff", InvalidUtf8, 1),
    case("utf8-lone-continuation", "6180", InvalidUtf8, 1),
    case("utf8-cut-sequence", "62e282", InvalidUtf8, 1),
    case("utf8-bad-after-ascii", "636162ff", InvalidUtf8, 3),
    case("utf8-bad-in-key", "a162c0af01", InvalidUtf8, 2),
    # -- nesting
    case("depth-101-arrays", "81" * 100 + "80", DepthExceeded, 100),
    case("depth-101-maps", "a16161" * 100 + "a0", DepthExceeded, 300),
    case("depth-unterminated-100000", "81" * 100_000, DepthExceeded, 100),
    case("depth-4-arrays-bound-3", "81818180", DepthExceeded, 3, 3),
    case("depth-3-maps-bound-2", "a16161a16161a0", DepthExceeded, 6, 2),
    case("depth-list-in-map-bound-1", "a1616180", DepthExceeded, 3, 1),
    case("depth-any-container-bound-0", "80", DepthExceeded, 0, 0),
]


def test_enough_cases():
    assert len(MALFORMED) >= 40


def kwargs(max_depth):
    return {} if max_depth is None else {"max_depth": max_depth}


@pytest.mark.parametrize(("hex_input", "error", "offset", "max_depth"), MALFORMED)
def test_malformed(hex_input, error, offset, max_depth):
    data = bytes.fromhex(hex_input)
    with pytest.raises(DagCborDecodeError) as strict:
        decode_strict(data, **kwargs(max_depth))
    assert type(strict.value) is error, strict.value
    assert strict.value.offset == offset, strict.value
    with pytest.raises(DagCborDecodeError) as fast:
        decode(data, **kwargs(max_depth))
    assert type(fast.value) is error, fast.value
    assert fast.value.offset == offset


def test_errors_belong_to_the_tree():
    with pytest.raises(DagCborDecodeError) as info:
        decode(b"\xff")
    assert isinstance(info.value, DecodeError)
    assert isinstance(info.value, GridnodeError)
    assert isinstance(info.value, ValueError)
    assert info.value.reason and "offset 0" in str(info.value)


# -- every prefix of a valid document is truncated -------------------------------------------------

DOCUMENTS = {
    "mixed-map": {
        "a": [1, 2.5, "three", b"four", None, True, False, -300, 2**40],
        "bb": {"c": CID.for_block(b"x"), "d": []},
        "long key exceeding 23 bytes": "x" * 30,
    },
    "nested-lists": [[[[1]], []], [-(2**64), 2**64 - 1], {"": {}}],
    "links": [CID.for_block(b"a"), CID.parse("QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY")],
    "long-strings": {"b": b"\x00" * 300, "t": "\u00e9" * 200},
}


@pytest.mark.parametrize("document", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_every_prefix_is_truncated(document):
    data = encode(document)
    assert decode(data) == document
    for cut in range(len(data)):
        for decoder in (decode_strict, decode):
            with pytest.raises(Truncated):
                decoder(data[:cut])


# -- cheap refusal ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hex_input",
    [
        "9bffffffffffffffff",
        "bbffffffffffffffff",
        "5bffffffffffffffff",
        "7bffffffffffffffff",
        "9a7fffffff" + "00" * 1000,
        "5a7fffffff" + "00" * 1000,
        "81" * 50 + "9bffffffffffffffff",
    ],
)
def test_huge_lengths_are_refused_quickly(hex_input):
    data = bytes.fromhex(hex_input)
    for decoder in (decode_strict, decode):
        started = time.perf_counter()
        with pytest.raises(Truncated):
            decoder(data)
        assert time.perf_counter() - started < 1.0


# -- depth -----------------------------------------------------------------------------------------


def nested_lists(depth: int) -> bytes:
    return b"\x81" * (depth - 1) + b"\x80"


@pytest.mark.parametrize("decoder", [decode, decode_strict])
def test_depth_bound_is_inclusive(decoder):
    value = decoder(nested_lists(100))
    for _ in range(99):
        (value,) = value
    assert value == []
    assert decoder(nested_lists(3), max_depth=3) == [[[]]]
    assert decoder(b"\x01", max_depth=0) == 1  # scalars have no depth
    with pytest.raises(DepthExceeded):
        decoder(nested_lists(4), max_depth=3)


@pytest.mark.parametrize("decoder", [decode, decode_strict])
def test_bound_above_the_interpreter_limit_still_raises_depth_exceeded(decoder):
    # The caller allows more nesting than Python's recursion can follow: the refusal must still be
    # a DepthExceeded, never a RecursionError.
    data = nested_lists(sys.getrecursionlimit() + 100)
    with pytest.raises(DepthExceeded):
        decoder(data, max_depth=10**6)
