import base64
import hashlib
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import (
    GridnodeError,
    HashMismatch,
    InvalidCID,
    InvalidMultibase,
    InvalidVarint,
    UnsupportedCodec,
    UnsupportedHash,
)
from crdt.ipld import CID, decode
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
    for codec, hash_name, prefix in [
        ("dag-cbor", "sha2-256", "bafyrei"),
        ("raw", "sha2-256", "bafkrei"),
        ("raw", "blake2b-256", "bafk2bzace"),
    ]:
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


# -- known vectors: the CIDs the ipld-codec-fixtures name their cid-* directories after --------------

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ipld-codec-fixtures" / "fixtures"
NAMED_CIDS = sorted(
    p.name[4:] for p in FIXTURES.glob("cid-*") if p.name not in ("cid-arrayof", "cid-mapof")
)


def b32(raw: bytes) -> str:
    """Multibase base32 lower, computed with the standard library (independent of the code tested)."""
    return "b" + base64.b32encode(raw).decode().rstrip("=").lower()


def test_named_cid_fixtures_are_present():
    assert len(NAMED_CIDS) == 16


@pytest.mark.parametrize("name", NAMED_CIDS)
def test_fixture_cid_vectors(name):
    (block,) = (FIXTURES / f"cid-{name}").glob("*.dag-cbor")
    link = decode(block.read_bytes())
    cid = CID.parse(name)
    assert cid == link
    if name.startswith("Qm"):
        assert cid.version == 0 and str(cid) == name and len(cid.bytes) == 34
        assert cid.encode("base58btc") == name  # a v0 has one text form
        assert cid.to_v1().bytes == b"\x01\x70" + cid.bytes
    elif name.startswith("b"):
        assert cid.version == 1 and str(cid) == name
        assert CID.parse("B" + name[1:].upper()) == cid
    else:
        assert name.startswith("z")
        assert cid.version == 1 and cid.encode("base58btc") == name
    assert str(cid) == (name if cid.version == 0 else b32(cid.bytes))
    assert CID.parse(cid.bytes) == cid
    assert CID.parse(str(cid)) == cid
    assert CID.parse(cid.encode("base58btc")) == cid
    assert CID.read(b"\xff" + cid.bytes + b"\xff", 1) == (cid, 1 + len(cid.bytes))
    assert cid.multihash == cid.bytes[-len(cid.multihash) :]
    assert cid.multihash.endswith(cid.digest)


# The dag-json twin of cid-mapof pairs each base58btc CIDv1 with its base32 form.
@pytest.mark.parametrize(
    ("z", "b"),
    [
        ("z8mWaJ1dZ9fH5EetPuRsj8jj26pXsgpsr", "baf4bcfgio3hovkftaer3yx6jsnm6navhg4yimwi"),
        (
            "zdj7Wd8AMwqnhJGQCbFxBVodGSBG84TM7Hs1rcJuQMwTyfEDS",
            "bafybeidskjjd4zmr7oh6ku6wp72vvbxyibcli2r6if3ocdcy7jjjusvl2u",
        ),
        (
            "zdpuAtX7ZibcWdSKQwiDCkPjWwRvtcKCPku9H7LhgA4qJW4Wk",
            "bafyreidykglsfhoixmivffc5uwhcgshx4j465xwqntbmu43nb2dzqwfvae",
        ),
    ],
)
def test_base58btc_and_base32_forms_agree(z, b):
    assert CID.parse(z) == CID.parse(b)
    assert str(CID.parse(z)) == b
    assert CID.parse(b).encode("base58btc") == z


@pytest.mark.parametrize("name", [n for n in NAMED_CIDS if n.startswith("Qm")])
def test_v0_to_v1(name):
    v0 = CID.parse(name)
    v1 = v0.to_v1()
    assert (v1.version, v1.codec, v1.hash_code, v1.multihash) == (1, 0x70, 0x12, v0.multihash)
    assert str(v1) == b32(b"\x01\x70" + v0.bytes)
    assert str(v1).startswith("bafybei")
    assert v1 != v0 and v1.to_v1() is v1
    assert CID.from_parts(0, 0x70, v0.multihash) == v0


def test_v0_vector_bytes():
    cid = CID.parse(V0)
    assert cid.bytes.hex() == "122022ad631c69ee983095b5b8acd029ff94aff1dc6c48837878589a92b90dfea317"
    assert cid.digest == cid.bytes[2:]


# -- for_block, verify -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [b"", b"hello", bytes(range(256)) * 5])
def test_for_block_against_hashlib(block):
    sha = hashlib.sha256(block).digest()
    blake = hashlib.blake2b(block, digest_size=32).digest()
    expected = {
        ("dag-cbor", "sha2-256"): b"\x01\x71\x12\x20" + sha,
        ("raw", "sha2-256"): b"\x01\x55\x12\x20" + sha,
        ("raw", "blake2b-256"): b"\x01\x55\xa0\xe4\x02\x20" + blake,
        ("dag-cbor", "blake2b-256"): b"\x01\x71\xa0\xe4\x02\x20" + blake,
        ("dag-json", "sha2-256"): b"\x01\xa9\x02\x12\x20" + sha,
        ("dag-pb", "sha2-256"): b"\x01\x70\x12\x20" + sha,
    }
    for (codec, hash_name), raw in expected.items():
        cid = CID.for_block(block, codec=codec, hash=hash_name)
        assert cid.bytes == raw
        assert str(cid) == b32(raw)
        assert CID.parse(str(cid)) == cid and CID.parse(raw) == cid
        assert cid.hash_name == hash_name and cid.codec_name == codec
        cid.verify(block)
        cid.verify(memoryview(block))
        assert cid.matches(block)
        with pytest.raises(HashMismatch):
            cid.verify(block + b"\x00")
        assert not cid.matches(block + b"\x00")
    assert str(CID.for_block(block, codec="raw", hash="blake2b-256")).startswith("bafk2bzace")


def test_verify_checks_the_whole_multihash():
    block = b"block"
    good = CID.for_block(block, codec="raw")
    # Same digest bytes under another hash function code: not a match.
    other_code = CID.parse(b"\x01\x55\x13\x20" + good.digest)
    with pytest.raises(UnsupportedHash):
        other_code.verify(block)
    assert not other_code.matches(block)
    # sha2-256 truncated to 16 bytes is a different multihash: refused, never a prefix match.
    short = CID.parse(b"\x01\x55\x12\x10" + good.digest[:16])
    with pytest.raises(HashMismatch):
        short.verify(block)


def test_identity_cid():
    cid = CID.for_block(b"\x01\x02\x03", codec="raw", hash="identity")
    assert cid.bytes == b"\x01\x55\x00\x03\x01\x02\x03"
    assert cid.digest == b"\x01\x02\x03"
    cid.verify(b"\x01\x02\x03")
    with pytest.raises(HashMismatch):
        cid.verify(b"\x01\x02")
    with pytest.raises(UnsupportedHash):
        CID.for_block(bytes(129), codec="raw", hash="identity")


def test_for_block_refuses_unknown_names():
    with pytest.raises(UnsupportedHash):
        CID.for_block(b"x", hash="md5")
    with pytest.raises(UnsupportedCodec):
        CID.for_block(b"x", codec="no-such-codec")
    with pytest.raises(UnsupportedCodec):
        CID.for_block(b"x", codec=0x123456)
    assert CID.for_block(b"x", codec=0x55) == CID.for_block(b"x", codec="raw")


# -- malformed CIDs ----------------------------------------------------------------------------------

GOOD = bytes.fromhex("017112202d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x02" + GOOD[1:], id="version-2"),
        pytest.param(b"\x03" + GOOD[1:], id="version-3"),
        pytest.param(b"\x00" + GOOD[1:], id="version-0-explicit"),
        pytest.param(b"\x81\x00" + GOOD[1:], id="version-varint-non-minimal"),
        pytest.param(b"\x01\xf1\x00" + GOOD[2:], id="codec-varint-non-minimal"),
        pytest.param(b"\x01\x71\x92\x00\x20" + GOOD[4:], id="hash-varint-non-minimal"),
        pytest.param(b"\x01\x71\x12\xa0\x00" + GOOD[4:], id="length-varint-non-minimal"),
        pytest.param(b"\x01\xff" * 5 + b"\x01\x71\x12\x20" + GOOD[4:], id="junk-varints"),
        pytest.param(
            b"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" + GOOD[2:], id="codec-varint-10-bytes"
        ),
        pytest.param(GOOD[:-1], id="digest-short-by-one"),
        pytest.param(GOOD[:4], id="multihash-without-digest"),
        pytest.param(GOOD[:3], id="multihash-without-length"),
        pytest.param(GOOD[:2], id="no-multihash"),
        pytest.param(GOOD[:1], id="version-only"),
        pytest.param(b"\x01\x55\x12\x40" + bytes(32), id="digest-length-beyond-input"),
        pytest.param(b"\x01\x55\x00\x81\x01" + bytes(129), id="identity-digest-over-128"),
        pytest.param(b"\x01\x55\x13\x81\x01" + bytes(129), id="digest-over-128"),
        pytest.param(GOOD + b"\x00", id="trailing-byte"),
        pytest.param(GOOD + GOOD, id="two-cids"),
        pytest.param(CID.parse(V0).bytes + b"\x00", id="v0-trailing-byte"),
        pytest.param(CID.parse(V0).bytes[:-1], id="v0-truncated"),
        pytest.param(b"\x12\x20", id="v0-prefix-only"),
        pytest.param(b"", id="empty"),
    ],
)
def test_malformed_binary_cid(raw):
    with pytest.raises(InvalidCID):
        CID.parse(raw)
    with pytest.raises(InvalidCID):
        CID.parse(bytearray(raw))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b32(b"\x02" + GOOD[1:]), id="b-version-2"),
        pytest.param(b32(b"\x03" + GOOD[1:]), id="b-version-3"),
        pytest.param(V0[:-1], id="v0-45-chars"),
        pytest.param(V0 + "1", id="v0-47-chars"),
        pytest.param(V0[:-1] + "0", id="v0-with-0"),
        pytest.param(V0[:-1] + "O", id="v0-with-O"),
        pytest.param(V0[:-1] + "I", id="v0-with-I"),
        pytest.param(V0[:-1] + "l", id="v0-with-l"),
        pytest.param("Qm" + "z" * 44, id="v0-length-not-a-v0"),
        pytest.param("Qm" + "1" * 44, id="v0-length-zeros"),
        pytest.param(V1[:-1] + "1", id="b-with-1"),
        pytest.param(V1[:-1] + "8", id="b-with-8"),
        pytest.param(V1[:10] + "A" + V1[11:], id="b-mixed-case"),
        pytest.param(V1 + "=", id="b-padded"),
        pytest.param(V1[:20] + " " + V1[20:], id="b-with-space"),
        pytest.param(V1 + "\n", id="b-with-newline"),
        pytest.param(V1[:-1] + "\u00e9", id="b-non-ascii"),
        pytest.param(V1[:-1], id="b-impossible-length"),
        pytest.param(V1[:-2], id="b-digest-short"),
        pytest.param(V1 + "aa", id="b-trailing-byte"),
        pytest.param("B" + V1[1:], id="B-lower-case"),
        pytest.param("b" + V1[1:].upper(), id="b-upper-case"),
        pytest.param("z" + V0, id="z-v0"),
        pytest.param("z0" + V1[2:], id="z-with-0"),
        pytest.param("f" + GOOD.hex()[:-1], id="f-odd-length"),
        pytest.param("f" + GOOD.hex() + "00", id="f-trailing-byte"),
        pytest.param("f" + GOOD.hex()[:8] + " " + GOOD.hex()[8:], id="f-with-space"),
        pytest.param("f" + GOOD.hex() + "\n", id="f-with-newline"),
        pytest.param("f" + GOOD.hex().upper(), id="f-upper-case"),
        pytest.param("F" + GOOD.hex(), id="F-lower-case"),
        pytest.param("m" + base64.b64encode(GOOD).decode().rstrip("="), id="unsupported-base64"),
        pytest.param("u" + V1, id="unknown-prefix"),
        pytest.param(" " + V1, id="leading-space"),
        pytest.param("b", id="prefix-only"),
        pytest.param("", id="empty"),
    ],
)
def test_malformed_cid_text(text):
    with pytest.raises(InvalidCID):
        CID.parse(text)


def test_base32_text_with_non_zero_padding_bits_is_refused():
    # 36 bytes are 288 bits, written in 58 base32 characters (290 bits): the last 2 bits are padding
    # and must be zero, else two texts would name one CID.
    assert V1[-1] == "m"  # index 12, 0b01100
    for last in "nop":  # 0b01101, 0b01110, 0b01111: same bytes, non-zero padding
        with pytest.raises(InvalidCID):
            CID.parse(V1[:-1] + last)


def test_errors_are_gridnode_errors():
    with pytest.raises(GridnodeError):
        CID.parse("not a cid")
    with pytest.raises(TypeError):
        CID.parse(12)  # type: ignore[arg-type]


def test_from_parts_checks_its_input():
    cid = CID.parse(V1)
    assert CID.from_parts(1, cid.codec, cid.multihash) == cid
    with pytest.raises(InvalidCID):
        CID.from_parts(2, cid.codec, cid.multihash)
    with pytest.raises(InvalidCID):
        CID.from_parts(0, 0x71, cid.multihash)  # a v0 is always dag-pb
    with pytest.raises(InvalidCID):
        CID.from_parts(0, 0x70, cid.multihash[:-1])
    with pytest.raises(InvalidCID):
        CID.from_parts(1, cid.codec, cid.multihash[:-1])


def test_read_walks_concatenated_cids():
    cids = [CID.parse(V0), CID.parse(V1), CID.for_block(b"x", codec="raw", hash="blake2b-256")]
    data = b"".join(c.bytes for c in cids)
    offset, found = 0, []
    while offset < len(data):
        cid, offset = CID.read(data, offset)
        found.append(cid)
    assert found == cids
    assert CID.read(memoryview(data), len(cids[0].bytes))[0] == cids[1]


def test_pickle_and_encode_choices():
    cid = CID.parse(V1)
    assert pickle.loads(pickle.dumps(cid)) == cid
    assert repr(cid) == f"CID({V1!r})"
    assert cid.encode() == cid.encode("base32") == V1
    with pytest.raises(ValueError):
        cid.encode("base64")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48))
def test_binary_parse_round_trips_or_refuses(raw):
    try:
        cid = CID.parse(raw)
    except InvalidCID:
        return
    assert cid.bytes == raw
    assert CID.parse(str(cid)) == cid
    assert CID.parse(cid.encode("base58btc")) == cid


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from("bBzfFQ"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567QmABCDEF1", max_size=64),
)
def test_text_parse_round_trips_or_refuses(prefix, body):
    text = prefix + body
    try:
        cid = CID.parse(text)
    except InvalidCID:
        return
    if text[0] == "b" or text.startswith("Qm"):
        assert str(cid) == text  # the canonical forms: one text per CID
    assert CID.parse(str(cid)) == cid
