"""Unsigned varints, multibase (base32, base58btc, base16), multihash and multicodec helpers."""

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import (
    InvalidMultibase,
    InvalidMultihash,
    InvalidVarint,
    UnsupportedCodec,
    UnsupportedHash,
)
from crdt.ipld.multiformats import (
    CODEC_NAMES,
    CODECS,
    base32_decode,
    base32_encode,
    base58_decode,
    base58_encode,
    codec_code,
    decode_varint,
    encode_varint,
    hash_name,
    multibase_decode,
    multihash_digest,
    multihash_split,
)

# -- varints ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hex_form"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (255, "ff01"),
        (300, "ac02"),
        (16383, "ff7f"),
        (16384, "808001"),
        (0x71, "71"),
        (0x0129, "a902"),
        (0xB220, "a0e402"),
        (2**63 - 1, "ffffffffffffffff7f"),
    ],
)
def test_varint_vectors(value, hex_form):
    assert encode_varint(value).hex() == hex_form
    assert decode_varint(bytes.fromhex(hex_form)) == (value, len(hex_form) // 2)
    # At an offset, followed by other bytes.
    assert decode_varint(b"\xff" + bytes.fromhex(hex_form) + b"\x80", 1) == (
        value,
        1 + len(hex_form) // 2,
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**63 - 1), st.binary(max_size=4))
def test_varint_round_trip(value, tail):
    data = encode_varint(value)
    assert 1 <= len(data) <= 9
    assert decode_varint(data + tail) == (value, len(data))


@pytest.mark.parametrize(
    ("data", "offset", "error_offset"),
    [
        pytest.param(b"", 0, 0, id="empty"),
        pytest.param(b"\x01", 1, 1, id="offset-at-end"),
        pytest.param(b"\x80", 0, 0, id="truncated-1"),
        pytest.param(b"\xff\xff", 0, 0, id="truncated-2"),
        pytest.param(b"\xff" * 9, 0, 0, id="truncated-9"),
        pytest.param(b"\x80\x00", 0, 0, id="non-minimal-0"),
        pytest.param(b"\x81\x00", 0, 0, id="non-minimal-1"),
        pytest.param(b"\xff\x80\x00", 0, 0, id="non-minimal-3-bytes"),
        pytest.param(b"\x01\x80\x00", 1, 1, id="non-minimal-at-offset"),
        pytest.param(b"\xff" * 9 + b"\x01", 0, 0, id="10-bytes"),
        pytest.param(b"\x80" * 9 + b"\x01", 0, 0, id="10-bytes-small-value"),
        pytest.param(b"\xff" * 20, 0, 0, id="20-bytes"),
    ],
)
def test_bad_varints(data, offset, error_offset):
    with pytest.raises(InvalidVarint) as info:
        decode_varint(data, offset)
    assert info.value.offset == error_offset


@pytest.mark.parametrize("value", [-1, 2**63, 2**64])
def test_varint_encode_range(value):
    with pytest.raises(ValueError):
        encode_varint(value)


# -- base58btc -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"", ""),
        (b"\x00", "1"),
        (b"\x00\x00\x00", "111"),
        (b"\x00\x00\x01", "112"),
        (b"\x01", "2"),
        (b"\x39", "z"),
        (b"\x3a", "21"),
        (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
        (bytes.fromhex("0000287fb4cd"), "11233QC4"),
        (
            b"The quick brown fox jumps over the lazy dog.",
            "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z",
        ),
    ],
)
def test_base58_vectors(raw, text):
    assert base58_encode(raw) == text
    assert base58_decode(text) == raw


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 5), st.binary(max_size=48))
def test_base58_round_trip_keeps_leading_zeros(zeros, data):
    raw = b"\x00" * zeros + data
    text = base58_encode(raw)
    assert base58_decode(text) == raw
    assert len(text) - len(text.lstrip("1")) == len(raw) - len(raw.lstrip(b"\x00"))


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("0", 0),
        ("O", 0),
        ("I", 0),
        ("l", 0),
        ("12+", 2),
        ("abc ", 3),
        ("\u00e9", 0),
        ("1\u00e9", 1),
    ],
)
def test_base58_foreign_characters(text, offset):
    with pytest.raises(InvalidMultibase) as info:
        base58_decode(text)
    assert info.value.offset == offset


# -- base32 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [  # RFC 4648 section 10, lower case, padding removed
        (b"", ""),
        (b"f", "my"),
        (b"fo", "mzxq"),
        (b"foo", "mzxw6"),
        (b"foob", "mzxw6yq"),
        (b"fooba", "mzxw6ytb"),
        (b"foobar", "mzxw6ytboi"),
    ],
)
def test_base32_vectors(raw, text):
    assert base32_encode(raw) == text
    assert base32_decode(text) == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_base32_round_trip(raw):
    text = base32_encode(raw)
    assert text == base64.b32encode(raw).decode().rstrip("=").lower()
    assert base32_decode(text) == raw
    assert multibase_decode("b" + text) == raw
    assert multibase_decode("B" + text.upper()) == raw


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("MY", id="upper-case"),
        pytest.param("m1", id="digit-1"),
        pytest.param("m8", id="digit-8"),
        pytest.param("my======", id="padding"),
        pytest.param("m y", id="space"),
        pytest.param("a", id="length-1"),
        pytest.param("abc", id="length-3"),
        pytest.param("abcdef", id="length-6"),
        pytest.param("mz", id="padding-bits-not-zero-2"),
        pytest.param("mzxr", id="padding-bits-not-zero-4"),
        pytest.param("mzxw7", id="padding-bits-not-zero-5"),
        pytest.param("mzxw6yr", id="padding-bits-not-zero-7"),
    ],
)
def test_base32_refusals(text):
    with pytest.raises(InvalidMultibase):
        base32_decode(text)


# -- multibase -------------------------------------------------------------------------------------


def test_multibase_prefixes():
    raw = b"\x01\x71\xff"
    assert multibase_decode("b" + base32_encode(raw)) == raw
    assert multibase_decode("B" + base32_encode(raw).upper()) == raw
    assert multibase_decode("z" + base58_encode(raw)) == raw
    assert multibase_decode("f0171ff") == raw
    assert multibase_decode("F0171FF") == raw
    assert multibase_decode("b") == b""


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("x00", id="unknown-prefix"),
        pytest.param("m" + base64.b64encode(b"ab").decode(), id="base64-unsupported"),
        pytest.param("Bmzxw6", id="B-with-lower-case"),
        pytest.param("bMZXW6", id="b-with-upper-case"),
        pytest.param("f017", id="f-odd-length"),
        pytest.param("f01 71", id="f-with-space"),
        pytest.param("f0171\n", id="f-with-newline"),
        pytest.param("f01FF", id="f-with-upper-case"),
        pytest.param("F01ff", id="F-with-lower-case"),
        pytest.param("f0g", id="f-non-hex"),
        pytest.param("z0", id="z-non-base58"),
    ],
)
def test_multibase_refusals(text):
    with pytest.raises(InvalidMultibase):
        multibase_decode(text)


# -- multihash and multicodec ----------------------------------------------------------------------

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_multihash_vectors():
    assert multihash_digest(b"", 0x12).hex() == "1220" + EMPTY_SHA256
    blake = hashlib.blake2b(b"abc", digest_size=32).digest()
    assert multihash_digest(b"abc", 0xB220) == bytes.fromhex("a0e40220") + blake
    assert multihash_digest(b"abc", 0x00) == b"\x00\x03abc"
    assert multihash_digest(memoryview(b"abc"), 0x00) == b"\x00\x03abc"
    assert hash_name(0x12) == "sha2-256" and hash_name(0xB220) == "blake2b-256"
    assert hash_name(0x13) is None


def test_multihash_split():
    mh = multihash_digest(b"", 0x12)
    assert multihash_split(mh) == (0x12, bytes.fromhex(EMPTY_SHA256), 34)
    assert multihash_split(b"\xaa" + mh + b"\xbb", 1) == (0x12, bytes.fromhex(EMPTY_SHA256), 35)
    assert multihash_split(b"\x00\x00") == (0, b"", 2)  # an empty identity digest


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x12", id="no-length"),
        pytest.param(b"\x12\x20" + bytes(31), id="digest-short"),
        pytest.param(b"\x12\x80", id="length-truncated"),
        pytest.param(b"\x12\x80\x00", id="length-non-minimal"),
        pytest.param(b"\x92\x00\x00", id="code-non-minimal"),
        pytest.param(b"\x00\x81\x01" + bytes(129), id="identity-over-128"),
        pytest.param(b"\x12\x81\x01" + bytes(129), id="digest-over-128"),
        pytest.param(b"\x12\xff\xff\xff\xff\x0f", id="digest-length-huge"),
    ],
)
def test_bad_multihashes(data):
    with pytest.raises((InvalidMultihash, InvalidVarint)):
        multihash_split(data)


def test_multihash_digest_refusals():
    with pytest.raises(UnsupportedHash):
        multihash_digest(b"x", 0x13)
    with pytest.raises(UnsupportedHash):
        multihash_digest(bytes(129), 0x00)
    assert multihash_digest(bytes(128), 0x00) == b"\x00\x80\x01" + bytes(128)


def test_codecs():
    assert codec_code("dag-cbor") == 0x71
    assert codec_code("raw") == 0x55
    assert codec_code("dag-json") == 0x0129
    assert codec_code(0x70) == 0x70
    assert all(CODEC_NAMES[code] == name for name, code in CODECS.items())
    with pytest.raises(UnsupportedCodec):
        codec_code("cbor")
    with pytest.raises(UnsupportedCodec):
        codec_code(0x51)
