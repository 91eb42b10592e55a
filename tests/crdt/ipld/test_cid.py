import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import HashMismatch, InvalidCID, InvalidMultibase, InvalidVarint
from crdt.ipld import CID
from crdt.ipld.multiformats import (
    base32_decode,
    base32_encode,
    base58_decode,
    base58_encode,
    decode_varint,
    encode_varint,
)

V0 = "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJBY"  # from the ipld-codec-fixtures names
V1 = "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwlm"


def test_v0_parse_and_format():
    cid = CID.parse(V0)
    assert cid.version == 0 and cid.codec == 0x70 and cid.hash_code == 0x12
    assert str(cid) == V0
    assert len(cid.bytes) == 34
    v1 = cid.to_v1()
    assert v1.version == 1 and v1.multihash == cid.multihash
    assert str(v1).startswith("bafybei")


def test_v1_in_every_base():
    cid = CID.parse(V1)
    assert cid.version == 1 and cid.codec == 0x71 and cid.codec_name == "dag-cbor"
    z = cid.encode("base58btc")
    assert z.startswith("z") and CID.parse(z) == cid
    assert CID.parse("B" + V1[1:].upper()) == cid
    assert CID.parse("f" + cid.bytes.hex()) == cid
    assert CID.parse(cid.bytes) == cid
    assert str(CID.parse(z)) == V1


def test_for_block_and_verify():
    block = b"hello"
    for codec, hash_name, prefix in [("dag-cbor", "sha2-256", "bafyrei"), ("raw", "sha2-256", "bafkrei"),
                                      ("raw", "blake2b-256", "bafk2bzace")]:
        cid = CID.for_block(block, codec=codec, hash=hash_name)
        assert str(cid).startswith(prefix)
        cid.verify(block)
        assert cid.matches(block) and not cid.matches(b"hellO")
        with pytest.raises(HashMismatch):
            cid.verify(b"other")
    identity = CID.for_block(b"\x01\x02", codec="raw", hash="identity")
    assert identity.digest == b"\x01\x02"


def test_cids_are_ordered_hashable_and_immutable():
    a, b = CID.for_block(b"a"), CID.for_block(b"b")
    assert sorted([b, a]) == sorted([a, b])
    assert len({a, CID.parse(str(a))}) == 1
    with pytest.raises(AttributeError):
        a.version = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJB",  # v0 one char short
        "QmQg1v4o9xdT3Q14wh4S7dxZkDjyZ9ssFzFzyep1YrVJB0",  # '0' is not base58
        "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwl1",  # '1' is not base32
        "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morw",  # truncated digest
        "xafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwlm",  # unknown multibase
        "",
        "b",
    ],
)
def test_bad_cid_text(text):
    with pytest.raises(InvalidCID):
        CID.parse(text)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x02\x71\x12\x20" + bytes(32),  # version 2
        b"\x03\x71\x12\x20" + bytes(32),
        b"\x01\x71\x12\x20" + bytes(31),  # short digest
        b"\x01\x71\x12\x20" + bytes(33),  # trailing byte
        b"\x81\x00\x71\x12\x20" + bytes(32),  # non-minimal version varint
        b"\x01\x71\x12\xff\x01" + bytes(8),  # digest length beyond the bound
        b"",
    ],
)
def test_bad_binary_cids(raw):
    with pytest.raises(InvalidCID):
        CID.parse(raw)


def test_v0_only_in_base58_without_prefix():
    with pytest.raises(InvalidCID):
        CID.parse("b" + base32_encode(CID.parse(V0).bytes))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**63 - 1))
def test_varint_round_trip(n):
    data = encode_varint(n)
    assert decode_varint(data) == (n, len(data))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x80\x00", b"\xff" * 9 + b"\x01", b"\x81\x80"])
def test_bad_varints(data):
    with pytest.raises(InvalidVarint):
        decode_varint(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_bases_round_trip(data):
    assert base58_decode(base58_encode(data)) == data
    assert base32_decode(base32_encode(data)) == data


def test_base58_leading_zeros_and_bad_chars():
    assert base58_encode(b"\x00\x00\x01") == "112"
    with pytest.raises(InvalidMultibase):
        base58_decode("0OIl")
    with pytest.raises(InvalidMultibase):
        base32_decode("a")  # impossible length
