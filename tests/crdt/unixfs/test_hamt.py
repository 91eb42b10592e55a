"""crdt/unixfs/hamt.py: the murmur3 name hash, buckets per level, shards built as Kubo builds them
and read back strictly.

The reference CIDs are Kubo's own (test/sharness/t0260-sharding.sh): 2000 files ``file1`` ..
``file2000``, each holding ``"<i>\\n"``, added with sharding forced on, as CIDv0 with dag-pb leaves
and as CIDv1 with raw leaves. At fanout 256 that HAMT has two levels of shards.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import DuplicateHamtName, HamtTooDeep, InvalidHamt, UnixFSDecodeError
from crdt.ipld.cid import CID
from crdt.ipld.dagpb import PBLink, PBNode, decode_node, encode_node, node_cid
from crdt.unixfs import hamt
from crdt.unixfs.data import DataType, UnixFSData, decode_data, encode_data
from crdt.unixfs.hamt import (
    HamtChild,
    HamtEntry,
    Shard,
    bucket_index,
    build_hamt,
    decode_bitfield,
    encode_bitfield,
    fanout_bits,
    link_prefix,
    lookup_child,
    murmur3_x64_128,
    name_hash,
    prefix_width,
    read_shard,
)

KUBO_SHARDED_V0 = "QmSCJD1KYLhVVHqBK3YyXuoEqHt7vggyJhzoFYbT8v1XYL"
KUBO_SHARDED_V1 = "bafybeibiemewfzzdyhq2l74wrd6qj2oz42usjlktgnlqv4yfawgouaqn4u"
KUBO_FILE100_V0 = "QmZ3RfWk1u5LEGYLHA633B5TNJy3Du27K6Fny9wcxpowGS"


# -- the hash -----------------------------------------------------------------------------------

# MurmurHash3 x64 128 reference values (the table the Go implementation Kubo uses tests against):
# seed, h1, h2, input.
MURMUR3_VECTORS = [
    (0x00, 0x0000000000000000, 0x0000000000000000, ""),
    (0x00, 0xCBD8A7B341BD9B02, 0x5B1E906A48AE1D19, "hello"),
    (0x00, 0x342FAC623A5EBC8E, 0x4CDCBC079642414D, "hello, world"),
    (0x00, 0xB89E5988B737AFFC, 0x664FC2950231B2CB, "19 Jan 2038 at 3:14:07 AM"),
    (0x00, 0xCD99481F9EE902C9, 0x695DA1A38987B6E7, "The quick brown fox jumps over the lazy dog."),
    (0x01, 0x4610ABE56EFF5CB5, 0x51622DAA78F83583, ""),
    (0x01, 0xA78DDFF5ADAE8D10, 0x128900EF20900135, "hello"),
    (0x01, 0x8B95F808840725C6, 0x1597ED5422BD493B, "hello, world"),
    (0x2A, 0xF02AA77DFA1B8523, 0xD1016610DA11CBB9, ""),
    (0x2A, 0xFD8F19EBDC8C6B6A, 0xD30FDC310FA08FF9, "19 Jan 2038 at 3:14:07 AM"),
    (0x2A, 0x74F33C659CDA5AF7, 0x4EC7A891CAF316F0, "The quick brown fox jumps over the lazy dog."),
]


@pytest.mark.parametrize(("seed", "h1", "h2", "text"), MURMUR3_VECTORS)
def test_murmur3_x64_128_reference_values(seed, h1, h2, text):
    assert murmur3_x64_128(text.encode(), seed) == (h1, h2)


def test_name_hash_is_the_first_half_big_endian():
    assert name_hash("hello") == bytes.fromhex("cbd8a7b341bd9b02")
    assert name_hash(b"hello") == name_hash("hello")
    # UTF-8 bytes, as go's []byte(name)
    assert name_hash("é") == murmur3_x64_128("é".encode())[0].to_bytes(8, "big")


@pytest.mark.parametrize("length", range(0, 40))
def test_murmur3_every_tail_length_is_consistent_with_blocks(length):
    # Each tail length (0..15 after whole blocks) takes its own branch; all must stay in 64 bits.
    data = bytes(range(length))
    h1, h2 = murmur3_x64_128(data)
    assert 0 <= h1 < 2**64 and 0 <= h2 < 2**64
    assert murmur3_x64_128(data + b"\x00") != (h1, h2)  # the length is mixed in


# -- bits and buckets ---------------------------------------------------------------------------

HASH = bytes([255, 127, 79, 45, 116, 99, 35, 17])


def test_bucket_index_reads_bytes_most_significant_first():
    assert [bucket_index(HASH, 8 * i, 8) for i in range(8)] == list(HASH)


def test_bucket_index_uneven_widths_continue_where_the_last_stopped():
    consumed = 0
    out = []
    for bits in (4, 4, 3, 3, 3, 15):
        out.append(bucket_index(HASH, consumed, bits))
        consumed += bits
    assert out == [15, 15, 3, 7, 6, 20269]


def test_bucket_index_past_the_hash_is_too_deep():
    assert bucket_index(HASH, 56, 8) == 17
    with pytest.raises(HamtTooDeep):
        bucket_index(HASH, 57, 8)
    with pytest.raises(HamtTooDeep):
        bucket_index(HASH, 64, 1)


@pytest.mark.parametrize(
    ("fanout", "bits", "width"), [(2, 1, 1), (16, 4, 1), (256, 8, 2), (1024, 10, 3)]
)
def test_fanout_bits_and_prefix_width(fanout, bits, width):
    assert fanout_bits(fanout) == bits
    assert prefix_width(fanout) == width


@pytest.mark.parametrize("fanout", [0, 1, 3, 255, 2048, -256, True, 256.0, "256"])
def test_invalid_fanouts_are_refused(fanout):
    with pytest.raises(InvalidHamt):
        fanout_bits(fanout)


def test_link_prefix_is_padded_upper_case_hex():
    assert link_prefix(10, 256) == "0A"
    assert link_prefix(255, 256) == "FF"
    assert link_prefix(10, 16) == "A"
    assert link_prefix(5, 1024) == "005"


def test_bitfield_round_trip_and_form():
    assert encode_bitfield([]) == b""
    assert encode_bitfield([0]) == b"\x01"
    assert encode_bitfield([9, 0]) == b"\x02\x01"
    assert encode_bitfield([255]) == b"\x80" + bytes(31)
    indexes = (0, 7, 8, 100, 200, 255)
    assert decode_bitfield(encode_bitfield(indexes), 256) == indexes


def test_bitfield_leading_zero_bytes_are_read_but_not_written():
    assert decode_bitfield(b"\x00\x00\x05", 256) == (0, 2)


def test_bitfield_longer_than_the_fanout_or_past_it_is_refused():
    with pytest.raises(InvalidHamt):
        decode_bitfield(bytes(33), 256)
    with pytest.raises(InvalidHamt):
        decode_bitfield(b"\x10", 4)  # bucket 4 of a fanout-4 shard


# -- building, against Kubo ---------------------------------------------------------------------


def shard_block(version: int):
    """The encoder Kubo's shards need: dag-pb node, UnixFS HAMTShard data, CID of ``version``."""

    def encode(shard: Shard) -> tuple[CID, bytes]:
        data = UnixFSData(
            DataType.HAMTShard,
            data=shard.bitfield,
            hash_type=hamt.MURMUR3_X64_64,
            fanout=shard.fanout,
        )
        links = tuple(PBLink(link.cid, link.name, link.tsize) for link in shard.links)
        block = encode_node(PBNode(links, encode_data(data)))
        return node_cid(block, version), block

    return encode


def kubo_entries(version: int) -> list[HamtEntry]:
    entries = []
    for i in range(1, 2001):
        content = f"{i}\n".encode()
        if version == 0:
            unixfs = UnixFSData(DataType.File, data=content, filesize=len(content))
            block = encode_node(PBNode((), encode_data(unixfs)))
            entries.append(HamtEntry(f"file{i}", node_cid(block, 0), len(block)))
        else:
            entries.append(HamtEntry(f"file{i}", CID.for_block(content, "raw"), len(content)))
    return entries


@pytest.fixture(scope="module")
def kubo_v0():
    entries = kubo_entries(0)
    return entries, build_hamt(entries, shard_block(0))


def test_kubo_sharded_directory_cidv0(kubo_v0):
    entries, built = kubo_v0
    assert str(entries[99].cid) == KUBO_FILE100_V0
    assert str(built.cid) == KUBO_SHARDED_V0
    assert built.blocks[-1][0] == built.cid
    assert len(built.blocks) > 1  # two levels: child shards below the root


def test_kubo_sharded_directory_cidv1_raw_leaves():
    built = build_hamt(kubo_entries(1), shard_block(1))
    assert str(built.cid) == KUBO_SHARDED_V1


def test_tsize_is_blocks_plus_entries(kubo_v0):
    entries, built = kubo_v0
    assert built.tsize == sum(len(b) for _, b in built.blocks) + sum(e.tsize for e in entries)


def test_the_shape_does_not_depend_on_the_order(kubo_v0):
    entries, built = kubo_v0
    shuffled = list(entries)
    random.Random(7).shuffle(shuffled)
    assert build_hamt(shuffled, shard_block(0)).cid == built.cid


def test_emit_hands_over_each_block_children_first(kubo_v0):
    entries, built = kubo_v0
    emitted: list[tuple[CID, bytes]] = []
    streamed = build_hamt(
        entries, shard_block(0), emit=lambda cid, block: emitted.append((cid, block))
    )
    assert streamed.blocks == () and streamed.cid == built.cid and streamed.tsize == built.tsize
    assert tuple(emitted) == built.blocks


@settings(max_examples=60, deadline=None)
@given(
    names=st.sets(st.text(min_size=1, max_size=12), min_size=1, max_size=120),
    fanout=st.sampled_from([2, 4, 16, 256]),
    seed=st.integers(0, 2**32),
)
def test_any_names_build_a_hamt_that_reads_back(names, fanout, seed):
    entries = [HamtEntry(name, CID.for_block(name.encode(), "raw"), 1) for name in sorted(names)]
    built = build_hamt(entries, shard_block(1), fanout=fanout)
    blocks = dict(built.blocks)
    assert sorted(walk(blocks, built.cid)) == sorted((e.name, e.cid) for e in entries)
    for entry in entries:
        assert resolve(blocks, built.cid, entry.name) == entry.cid
    assert resolve(blocks, built.cid, "\x00absent") is None or "\x00absent" in names
    random.Random(seed).shuffle(entries)
    assert build_hamt(entries, shard_block(1), fanout=fanout).cid == built.cid


def test_duplicate_names_are_refused():
    cid = CID.for_block(b"x", "raw")
    with pytest.raises(DuplicateHamtName):
        build_hamt([HamtEntry("a", cid, 1), HamtEntry("a", cid, 1)], shard_block(1))


def test_names_sharing_the_whole_hash_are_too_deep(monkeypatch):
    monkeypatch.setattr(hamt, "name_hash", lambda name: bytes(8))
    cid = CID.for_block(b"x", "raw")
    with pytest.raises(HamtTooDeep):
        build_hamt([HamtEntry("a", cid, 1), HamtEntry("b", cid, 1)], shard_block(1))


def test_small_fanout_builds_deep_trees_that_read_back():
    cid = CID.for_block(b"x", "raw")
    entries = [HamtEntry(f"n{i}", cid, 1) for i in range(40)]
    built = build_hamt(entries, shard_block(1), fanout=4)
    blocks = dict(built.blocks)
    for entry in entries:
        assert resolve(blocks, built.cid, entry.name) == entry.cid


# -- reading ------------------------------------------------------------------------------------


def children_of(block: bytes, consumed: int | None) -> tuple[tuple[HamtChild, ...], int]:
    node = decode_node(block)
    assert node.data is not None
    data = decode_data(node.data)
    assert data.type == DataType.HAMTShard and data.fanout is not None
    links = [(link.name, link.cid, link.tsize) for link in node.links]
    return read_shard(links, data.data or b"", data.fanout, consumed), data.fanout


def resolve(blocks: dict[CID, bytes], root: CID, name: str) -> CID | None:
    cid, consumed = root, 0
    while True:
        children, fanout = children_of(blocks[cid], consumed)
        found = lookup_child(children, name, fanout, consumed)
        if found is None:
            return None
        if found.name is not None:
            return found.cid
        cid, consumed = found.cid, consumed + fanout_bits(fanout)


def walk(blocks: dict[CID, bytes], cid: CID, consumed: int = 0) -> list[tuple[str, CID]]:
    children, fanout = children_of(blocks[cid], consumed)
    out = []
    for child in children:
        if child.name is None:
            out += walk(blocks, child.cid, consumed + fanout_bits(fanout))
        else:
            out.append((child.name, child.cid))
    return out


def test_every_name_resolves_and_absent_ones_do_not(kubo_v0):
    entries, built = kubo_v0
    blocks = dict(built.blocks)
    for entry in entries[::37] + entries[-3:]:
        assert resolve(blocks, built.cid, entry.name) == entry.cid
    for missing in ("file0", "file2001", "", "FILE1", "file1 "):
        assert resolve(blocks, built.cid, missing) is None


def test_a_walk_lists_every_entry_once(kubo_v0):
    entries, built = kubo_v0
    listed = walk(dict(built.blocks), built.cid)
    assert sorted(listed) == sorted((e.name, e.cid) for e in entries)


CID_A = CID.for_block(b"a", "raw")


def links_for(*names: str | None) -> list[tuple[str | None, CID, int | None]]:
    return [(name, CID_A, 1) for name in names]


def bucket_of(name: str, consumed: int = 0, fanout: int = 256) -> int:
    return bucket_index(name_hash(name), consumed, fanout_bits(fanout))


def test_read_shard_accepts_a_consistent_shard():
    names = sorted(["alpha", "beta", "gamma"], key=bucket_of)
    buckets = [bucket_of(n) for n in names]
    links = links_for(*(link_prefix(b, 256) + n for b, n in zip(buckets, names, strict=True)))
    children = read_shard(links, encode_bitfield(buckets), 256, 0)
    assert [(c.index, c.name) for c in children] == list(zip(buckets, names, strict=True))
    assert lookup_child(children, "beta", 256, 0) == children[names.index("beta")]
    assert lookup_child(children, "delta", 256, 0) is None


def test_read_shard_refuses_more_links_than_the_bitfield_names():
    with pytest.raises(InvalidHamt):
        read_shard(links_for("00", "01"), encode_bitfield([0]), 256)


def test_read_shard_refuses_a_prefix_of_another_bucket():
    with pytest.raises(InvalidHamt):
        read_shard(links_for("01"), encode_bitfield([0]), 256)


def test_read_shard_refuses_links_out_of_bucket_order():
    with pytest.raises(InvalidHamt):
        read_shard(links_for("05", "02"), encode_bitfield([2, 5]), 256)


def test_read_shard_refuses_lower_case_and_missing_names():
    with pytest.raises(InvalidHamt):
        read_shard(links_for("0a"), encode_bitfield([10]), 256)
    with pytest.raises(InvalidHamt):
        read_shard(links_for(None), encode_bitfield([10]), 256)
    with pytest.raises(InvalidHamt):
        read_shard(links_for("A"), encode_bitfield([10]), 256)


def test_read_shard_refuses_an_entry_in_a_bucket_it_does_not_hash_to():
    right = bucket_of("alpha")
    wrong = (right + 1) % 256
    links = links_for(link_prefix(wrong, 256) + "alpha")
    # Without the depth, the position cannot be checked; with it, it is.
    assert read_shard(links, encode_bitfield([wrong]), 256)[0].name == "alpha"
    with pytest.raises(InvalidHamt):
        read_shard(links, encode_bitfield([wrong]), 256, 0)


def test_read_shard_refuses_a_child_shard_below_the_last_level():
    with pytest.raises(HamtTooDeep):
        read_shard(links_for("07"), encode_bitfield([7]), 256, 56)
    with pytest.raises(HamtTooDeep):
        read_shard(links_for("07"), encode_bitfield([7]), 256, 64)


def test_hamt_errors_are_unixfs_decode_errors():
    assert issubclass(InvalidHamt, UnixFSDecodeError)
    assert issubclass(HamtTooDeep, InvalidHamt)
