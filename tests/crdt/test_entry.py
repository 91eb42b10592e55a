import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.entry import MAX_ENTRY_BYTES, create_entry, decode_entry, signing_bytes
from crdt.errors import (
    BlockTooLarge,
    DagCborDecodeError,
    HashMismatch,
    InvalidEntry,
    InvalidSignature,
    UnsupportedCodec,
)
from crdt.identity import Keypair
from crdt.ipld import CID, decode, encode

ALICE = Keypair.from_seed(bytes(32))
MALLORY = Keypair.from_seed(bytes([7]) * 32)
DB = CID.for_block(encode({"name": "test", "type": "events"}))


def reblock(body):
    block = encode(body)
    return CID.for_block(block), block


def test_root_and_child_round_trip():
    root = create_entry(ALICE, db=DB, clock=1, payload={"op": "add", "value": "hello"})
    child = create_entry(ALICE, db=DB, clock=2, next=[root.cid], payload=[1, 2.5, None, b"\x00"])
    for entry in (root, child):
        decoded = decode_entry(entry.cid, entry.block)
        assert decoded == entry
        assert decoded.author == ALICE.did
    assert child.next == (root.cid,)
    assert root.is_root and not child.is_root


def test_block_layout_matches_generic_encoding():
    parents = [CID.for_block(bytes([i])) for i in range(3)]
    entry = create_entry(ALICE, db=DB, clock=9, next=parents, skip=[parents[0]], payload={"k": "v"})
    body = decode(entry.block)
    assert list(body) == ["v", "db", "next", "skip", "clock", "author", "payload", "signature"]
    assert body["next"] == sorted(parents)
    assert encode(body) == entry.block
    signature = body.pop("signature")
    assert signature == entry.signature
    assert encode(body) == signing_bytes(
        db=DB, author=ALICE.did, clock=9, next=parents, skip=[parents[0]], payload={"k": "v"}
    )


def test_payload_is_returned_in_canonical_form():
    entry = create_entry(ALICE, db=DB, clock=1, payload={"t": (1, 2)})
    assert entry.payload == {"t": [1, 2]}
    assert decode_entry(entry.cid, entry.block).payload == entry.payload


def test_wrong_cid_is_a_hash_mismatch():
    entry = create_entry(ALICE, db=DB, clock=1, payload="x")
    other = CID.for_block(b"something else")
    with pytest.raises(HashMismatch):
        decode_entry(other, entry.block)


def test_raw_codec_is_refused():
    entry = create_entry(ALICE, db=DB, clock=1, payload="x")
    with pytest.raises(UnsupportedCodec):
        decode_entry(CID.for_block(entry.block, codec="raw"), entry.block)


def test_malformed_cbor_is_its_own_error():
    block = bytes.fromhex("a2616101616101")  # duplicate key
    with pytest.raises(DagCborDecodeError):
        decode_entry(CID.for_block(block), block)


def test_forged_signature():
    entry = create_entry(ALICE, db=DB, clock=1, payload="x")
    body = decode(entry.block)
    body["signature"] = MALLORY.sign(b"anything")
    with pytest.raises(InvalidSignature):
        decode_entry(*reblock(body))


def test_author_swap_is_caught():
    # Mallory signs a body naming Alice as author.
    body = decode(create_entry(MALLORY, db=DB, clock=1, payload="x").block)
    body["author"] = ALICE.did
    del body["signature"]
    body["signature"] = MALLORY.sign(encode(body))
    with pytest.raises(InvalidSignature):
        decode_entry(*reblock(body))


def test_tampered_payload_fails_signature():
    body = decode(create_entry(ALICE, db=DB, clock=1, payload="pay alice 1").block)
    body["payload"] = "pay alice 1000"
    with pytest.raises(InvalidSignature):
        decode_entry(*reblock(body))


def _valid_body(**changes):
    body = decode(create_entry(ALICE, db=DB, clock=1, payload="x").block)
    body.update(changes)
    return body


PARENT = CID.for_block(b"parent")


@pytest.mark.parametrize(
    ("changes", "drop"),
    [
        ({"v": 2}, None),
        ({"v": "1"}, None),
        ({"db": "not a link"}, None),
        ({"clock": 0}, None),
        ({"clock": -1}, None),
        ({"clock": 1.0}, None),
        ({"clock": 2}, None),  # a root must have clock 1
        ({"clock": 1, "next": [PARENT]}, None),  # a child must have clock >= 2
        ({"clock": 1 << 62}, None),
        ({"author": "did:web:example.com"}, None),
        ({"author": 5}, None),
        ({"next": "x"}, None),
        ({"next": [b"not a link"]}, None),
        ({"next": [CID.for_block(b"p", codec="raw")], "clock": 2}, None),
        ({"next": [PARENT, PARENT], "clock": 2}, None),  # duplicate parent
        ({"next": sorted([PARENT, DB], reverse=True), "clock": 2}, None),  # unsorted
        (
            {"next": [CID.for_block(bytes([i % 256, i // 256])) for i in range(257)], "clock": 2},
            None,
        ),
        ({"skip": []}, None),
        ({"extra": 1}, None),
        ({"signature": b"short"}, None),
        ({}, "payload"),
        ({}, "author"),
        ({}, "signature"),
    ],
)
def test_structural_errors(changes, drop):
    body = _valid_body(**changes)
    if drop:
        del body[drop]
    with pytest.raises(InvalidEntry):
        decode_entry(*reblock(body))


def test_non_map_entry():
    with pytest.raises(InvalidEntry):
        decode_entry(*reblock([1, 2, 3]))


def test_oversized_block():
    with pytest.raises(BlockTooLarge):
        create_entry(ALICE, db=DB, clock=1, payload=b"x" * MAX_ENTRY_BYTES)
    big = encode({"payload": b"x" * (MAX_ENTRY_BYTES + 1)})
    with pytest.raises(BlockTooLarge):
        decode_entry(CID.for_block(big), big)


@settings(max_examples=60, deadline=None)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=12,
    ),
    clock=st.integers(2, 1000),
    parents=st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=5, unique=True),
)
def test_any_payload_round_trips(payload, clock, parents):
    links = [CID.for_block(p) for p in parents]
    entry = create_entry(ALICE, db=DB, clock=clock, next=links, payload=payload)
    assert decode_entry(entry.cid, entry.block) == entry


@settings(max_examples=150, deadline=None)
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_bit_flip_is_refused(position, flip):
    entry = create_entry(ALICE, db=DB, clock=2, next=[PARENT], payload={"op": "put", "key": "k"})
    block = bytearray(entry.block)
    block[position % len(block)] ^= flip
    mutated = bytes(block)
    # Offered under its true CID, a mutated block must still fail decoding or verification.
    with pytest.raises((DagCborDecodeError, InvalidEntry, InvalidSignature)):
        decode_entry(CID.for_block(mutated), mutated)
    # Offered under the original CID, it fails the hash check first.
    with pytest.raises(HashMismatch):
        decode_entry(entry.cid, mutated)
