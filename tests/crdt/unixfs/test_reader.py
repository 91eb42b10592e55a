"""crdt/unixfs/reader.py: UnixFS read one block at a time, on CARs Kubo and go-car wrote (go-car's
unixfs fixtures, gateway-conformance's HAMT, multi-block, raw-leaf and symlink fixtures) and on
nodes built by hand to lie in every way a node can."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from crdt.errors import (
    DagPbDecodeError,
    GridnodeError,
    InvalidHamt,
    InvalidQuery,
    InvalidUnixFSNode,
    NotADirectory,
    NotAFile,
    NotUnixFS,
    UnixFSDecodeError,
    UnixFSTooDeep,
    UnsupportedCodec,
)
from crdt.ipld import dagcbor
from crdt.ipld.car import read_car
from crdt.ipld.cid import CID
from crdt.ipld.dagpb import PBLink, PBNode, encode_node, node_cid
from crdt.unixfs import hamt
from crdt.unixfs.data import DataType, UnixFSData, UnixTime, encode_data
from crdt.unixfs.reader import (
    MAX_DEPTH,
    Entry,
    NextShard,
    Piece,
    UnixFSNode,
    check_piece,
    decode_node,
    directory_entries,
    file_pieces,
    find_entry,
    hamt_children,
    hamt_lookup,
    links_of,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def load(path: str) -> tuple[CID, dict[CID, bytes]]:
    header, blocks = read_car((FIXTURES / path).read_bytes())
    return header.roots[0], dict(blocks)


# -- a sans-IO walker, as a caller writes it ------------------------------------------------------


class Missing(Exception):
    pass


def node_at(blocks: dict[CID, bytes], cid: CID) -> UnixFSNode:
    if cid not in blocks:
        raise Missing(cid)
    return decode_node(cid, blocks[cid])


def read_range(
    blocks: dict[CID, bytes], node: UnixFSNode, offset: int = 0, length: int | None = None
) -> bytes:
    return b"".join(_read(blocks, node, offset, length, 0))


def _read(blocks, node, offset, length, depth):
    for piece in file_pieces(node, offset, length, depth):
        if piece.cid is None:
            assert piece.data is not None
            yield piece.data
        else:
            child = node_at(blocks, piece.cid)
            check_piece(piece, child)
            yield from _read(blocks, child, piece.start, piece.length, piece.depth)


def resolve(blocks: dict[CID, bytes], root: CID, path: str) -> tuple[CID, list[CID]]:
    """The CID at ``path`` and the HAMT shards below a directory root walked to get there."""
    cid, shards = root, []
    for segment in [s for s in path.split("/") if s]:
        node = node_at(blocks, cid)
        if node.kind == "directory":
            entry = find_entry(node, segment)
        else:
            consumed = 0
            found = hamt_lookup(node, segment, consumed)
            while isinstance(found, NextShard):
                shards.append(found.cid)
                found = hamt_lookup(node_at(blocks, found.cid), segment, found.consumed)
            entry = found
        if entry is None:
            raise KeyError(path)
        cid = entry.cid
    return cid, shards


def listing(blocks: dict[CID, bytes], cid: CID, consumed: int = 0) -> list[Entry]:
    node = node_at(blocks, cid)
    if node.kind == "directory":
        return directory_entries(node)
    out: list[Entry] = []
    for child in hamt_children(node, consumed):
        if isinstance(child, NextShard):
            out += listing(blocks, child.cid, child.consumed)
        else:
            out.append(child)
    return out


# -- go-car's unixfs fixtures ---------------------------------------------------------------------


def test_go_car_simple_unixfs_tree():
    root, blocks = load("go-car/simple-unixfs.car")
    assert str(root) == "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT"
    assert [e.name for e in listing(blocks, root)] == ["a", "b", "c"]
    files = {}
    for top, numbers in (("a", "123"), ("b", "456"), ("c", "789")):
        for number, letter in zip(numbers, "ABCDEFGHI"[int(numbers[0]) - 1 :], strict=False):
            path = f"{top}/{number}/{letter}.txt"
            cid, _ = resolve(blocks, root, path)
            files[path] = read_range(blocks, node_at(blocks, cid))
    assert files["a/1/A.txt"] == b"a1A\n"
    assert files["c/9/I.txt"] == b"c9I\n"
    assert len(files) == 9 and all(len(v) == 4 for v in files.values())


def test_go_car_missing_blocks_are_named_not_guessed():
    root, blocks = load("go-car/simple-unixfs-missing-blocks.car")
    cid, _ = resolve(blocks, root, "a/2/B.txt")
    assert read_range(blocks, node_at(blocks, cid)) == b"a2B\n"
    with pytest.raises(Missing):
        resolve(blocks, root, "b/4/D.txt")


def test_every_block_of_the_go_car_fixture_decodes_and_links_match():
    _root, blocks = load("go-car/simple-unixfs.car")
    for cid, block in blocks.items():
        node = decode_node(cid, block)
        assert links_of(cid, block) == [link.cid for link in node.links]


# -- gateway-conformance: a HAMT of 1000 multi-block files ----------------------------------------

HAMT_ROOT = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"
HAMT_FILE = "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa"
# The shards below the root that a lookup of 402.txt passes (gateway-conformance's own test).
HAMT_PATH_402 = [
    "bafybeideiqxgeyxk26wxqkggniwjmrjizsprlqza4vak6giyevg6k5nht4",
    "bafybeiapvu3jqyfk2xkzbadquejv4lrry4flddc6en4xadar55pgfuy6ga",
]


@pytest.fixture(scope="module")
def hamt_car():
    return load("gateway-conformance/single-layer-hamt-with-multi-block-files.car")


def test_hamt_lookup_walks_the_shards_go_walks(hamt_car):
    root, blocks = hamt_car
    assert str(root) == HAMT_ROOT
    assert decode_node(root, blocks[root]).kind == "hamt"
    _cid, shards = resolve(blocks, root, "402.txt")
    assert [str(s) for s in shards] == HAMT_PATH_402
    assert str(resolve(blocks, root, "111.txt")[0]) == HAMT_FILE


def test_hamt_listing_has_every_file_once(hamt_car):
    root, blocks = hamt_car
    entries = listing(blocks, root)
    names = [e.name for e in entries]
    assert len(names) == len(set(names)) == 1000
    assert set(names) == {f"{i}.txt" for i in range(1, 1001)}
    for name in ("1.txt", "500.txt", "1000.txt"):
        assert resolve(blocks, root, name)[0] == next(e.cid for e in entries if e.name == name)
    with pytest.raises(KeyError):
        resolve(blocks, root, "1001.txt")


def test_hamt_rebuilt_from_its_entries_is_the_same_dag(hamt_car):
    root, blocks = hamt_car
    entries = [hamt.HamtEntry(e.name, e.cid, e.tsize or 0) for e in listing(blocks, root)]

    def encode(shard: hamt.Shard) -> tuple[CID, bytes]:
        data = UnixFSData(
            DataType.HAMTShard, data=shard.bitfield, hash_type=0x22, fanout=shard.fanout
        )
        links = tuple(PBLink(x.cid, x.name, x.tsize) for x in shard.links)
        block = encode_node(PBNode(links, encode_data(data)))
        return node_cid(block, 1), block

    built = hamt.build_hamt(entries, encode)
    assert built.cid == root
    assert all(blocks[cid] == block for cid, block in built.blocks)


def test_multi_block_file_reads_whole_and_by_range(hamt_car):
    _root, blocks = hamt_car
    node = node_at(blocks, CID.parse(HAMT_FILE))
    assert node.kind == "file" and node.size == 1026 and len(node.links) == 5
    whole = read_range(blocks, node)
    assert len(whole) == 1026 and whole.startswith(b"Lorem ipsum dolor sit amet")
    rng = random.Random(23)
    for _ in range(200):
        offset = rng.randrange(0, 1100)
        length = rng.randrange(0, 600)
        assert read_range(blocks, node, offset, length) == whole[offset : offset + length]
    assert read_range(blocks, node, 1026) == b""
    assert read_range(blocks, node, 5000, 10) == b""


def test_pieces_are_one_step_down_and_name_only_the_children_in_range(hamt_car):
    _root, blocks = hamt_car
    node = node_at(blocks, CID.parse(HAMT_FILE))
    sizes = node.blocksizes
    pieces = file_pieces(node, sizes[0] - 1, 2)
    assert [p.cid for p in pieces] == [node.links[0].cid, node.links[1].cid]
    assert [(p.offset, p.start, p.length, p.size) for p in pieces] == [
        (sizes[0] - 1, sizes[0] - 1, 1, sizes[0]),
        (sizes[0], 0, 1, sizes[1]),
    ]
    assert all(p.depth == 1 for p in pieces)
    assert file_pieces(node, 0, 0) == []


# -- gateway-conformance: raw leaves, symlinks, a missing block -----------------------------------


def test_raw_leaves_and_a_subdirectory():
    root, blocks = load("gateway-conformance/subdir-with-mixed-block-files.car")
    cid, _ = resolve(blocks, root, "subdir/hello.txt")
    node = node_at(blocks, cid)
    assert node.kind == "raw" and node.size == 12
    assert read_range(blocks, node) == b"hello world\n"
    assert read_range(blocks, node, 6, 5) == b"world"
    assert [e.name for e in listing(blocks, resolve(blocks, root, "subdir")[0])] == [
        "ascii.txt",
        "hello.txt",
        "multiblock.txt",
    ]


def test_symlink():
    root, blocks = load("gateway-conformance/symlink.car")
    entries = {e.name: e.cid for e in listing(blocks, root)}
    kinds = {name: node_at(blocks, cid).kind for name, cid in entries.items()}
    assert "symlink" in kinds.values()
    link = next(node_at(blocks, entries[n]) for n, k in kinds.items() if k == "symlink")
    assert link.data and link.size == len(link.data)
    with pytest.raises(NotAFile):
        file_pieces(link)


def test_a_missing_middle_block_only_matters_to_ranges_over_it():
    root, blocks = load("gateway-conformance/file-3k-and-3-blocks-missing-block.car")
    node = node_at(blocks, root)
    assert node.size == 3072 and node.blocksizes == (1024, 1024, 1024)
    assert len(read_range(blocks, node, 0, 1024)) == 1024
    assert len(read_range(blocks, node, 2048)) == 1024
    with pytest.raises(Missing):
        read_range(blocks, node, 1000, 100)


# -- hand-built nodes -----------------------------------------------------------------------------


def pb(data: UnixFSData | None, links: tuple[PBLink, ...] = ()) -> tuple[CID, bytes]:
    block = encode_node(PBNode(links, None if data is None else encode_data(data)))
    return node_cid(block, 1), block


def raw(content: bytes) -> tuple[CID, bytes]:
    return CID.for_block(content, "raw"), content


def file_node(
    inline: bytes | None,
    children: list[tuple[CID, int]],
    filesize: int | None = -1,
) -> tuple[CID, bytes]:
    size = len(inline or b"") + sum(s for _, s in children)
    data = UnixFSData(
        DataType.File,
        data=inline,
        filesize=size if filesize == -1 else filesize,
        blocksizes=tuple(s for _, s in children),
    )
    return pb(data, tuple(PBLink(c, "", s) for c, s in children))


def build_tree(rng: random.Random, content: bytes, blocks: dict[CID, bytes], depth: int = 0):
    """A random file DAG over ``content``: raw or dag-pb leaves, inline data, uneven fan-out."""
    if depth >= 3 or len(content) < 8 or rng.random() < 0.2:
        if rng.random() < 0.5:
            cid, block = raw(content)
        else:
            cid, block = file_node(content, [])
        blocks[cid] = block
        return cid, len(content)
    inline_len = rng.choice([0, 0, rng.randrange(0, len(content) // 4 + 1)])
    rest = content[inline_len:]
    cuts = sorted(rng.sample(range(1, len(rest)), k=min(len(rest) - 1, rng.randrange(1, 5))))
    parts = [rest[a:b] for a, b in zip([0, *cuts], [*cuts, len(rest)], strict=True)]
    children = [build_tree(rng, part, blocks, depth + 1) for part in parts]
    cid, block = file_node(content[:inline_len] or None, children)
    blocks[cid] = block
    return cid, len(content)


def test_random_trees_read_back_every_range():
    rng = random.Random(2326)
    for _ in range(30):
        content = rng.randbytes(rng.randrange(1, 400))
        blocks: dict[CID, bytes] = {}
        root, _ = build_tree(rng, content, blocks)
        node = node_at(blocks, root)
        assert node.size == len(content)
        assert read_range(blocks, node) == content
        for _ in range(20):
            offset = rng.randrange(0, len(content) + 5)
            length = rng.randrange(0, len(content) + 5)
            assert read_range(blocks, node, offset, length) == content[offset : offset + length]


def test_inline_data_comes_before_the_children():
    blocks = {}
    leaf = raw(b"WORLD")
    blocks[leaf[0]] = leaf[1]
    cid, block = file_node(b"hello ", [(leaf[0], 5)])
    node = decode_node(cid, block)
    assert node.data == b"hello " and node.size == 11
    assert read_range(blocks, node) == b"hello WORLD"
    assert read_range(blocks, node, 4, 4) == b"o WO"


def test_an_empty_file():
    cid, block = pb(UnixFSData(DataType.File, filesize=0))
    node = decode_node(cid, block)
    assert node.kind == "file" and node.size == 0
    assert file_pieces(node) == []


def test_legacy_unixfs_raw_leaf_is_file_bytes():
    cid, block = pb(UnixFSData(DataType.Raw, data=b"abc", filesize=3))
    node = decode_node(cid, block)
    assert node.kind == "file" and read_range({}, node) == b"abc"


def test_a_filesize_that_lies_is_refused():
    leaf = raw(b"12345")
    with pytest.raises(InvalidUnixFSNode):
        decode_node(*file_node(None, [(leaf[0], 5)], filesize=6))
    with pytest.raises(InvalidUnixFSNode):
        decode_node(*file_node(b"ab", [], filesize=1))


def test_blocksizes_must_match_the_links():
    leaf = raw(b"12345")
    data = UnixFSData(DataType.File, filesize=5, blocksizes=(5,))
    with pytest.raises(InvalidUnixFSNode):
        decode_node(*pb(data, (PBLink(leaf[0], "", 5), PBLink(leaf[0], "", 5))))
    with pytest.raises(InvalidUnixFSNode):
        decode_node(*pb(data))


def test_a_child_of_another_size_than_promised_is_refused():
    leaf = raw(b"1234")
    parent = decode_node(*file_node(None, [(leaf[0], 5)]))  # says 5, holds 4
    piece = file_pieces(parent)[0]
    with pytest.raises(InvalidUnixFSNode):
        check_piece(piece, decode_node(*leaf))


def test_a_child_that_is_not_a_file_is_refused():
    directory = pb(UnixFSData(DataType.Directory))
    parent = decode_node(*file_node(None, [(directory[0], 5)]))
    piece = file_pieces(parent)[0]
    with pytest.raises(InvalidUnixFSNode):
        check_piece(piece, decode_node(*directory))


def test_a_file_dag_deeper_than_the_bound_is_refused():
    leaf_cid, leaf = raw(b"x")
    blocks = {leaf_cid: leaf}
    cid = leaf_cid
    for _ in range(MAX_DEPTH + 1):
        cid, block = file_node(None, [(cid, 1)])
        blocks[cid] = block
    with pytest.raises(UnixFSTooDeep):
        read_range(blocks, node_at(blocks, cid))


def test_negative_ranges_are_refused():
    node = decode_node(*raw(b"abc"))
    with pytest.raises(InvalidQuery):
        file_pieces(node, -1)
    with pytest.raises(InvalidQuery):
        file_pieces(node, 0, -1)


def test_zero_sized_children_are_skipped():
    empty = raw(b"")
    leaf = raw(b"ab")
    node = decode_node(*file_node(None, [(empty[0], 0), (leaf[0], 2), (empty[0], 0)]))
    assert [p.cid for p in file_pieces(node)] == [leaf[0]]


def test_directory_of_a_file_is_refused():
    with pytest.raises(NotADirectory):
        directory_entries(decode_node(*raw(b"abc")))
    with pytest.raises(NotADirectory):
        hamt_children(decode_node(*pb(UnixFSData(DataType.Directory))))
    with pytest.raises(NotAFile):
        file_pieces(decode_node(*pb(UnixFSData(DataType.Directory))))


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/etc", "a\x00b", None])
def test_unsafe_entry_names_are_refused(name):
    leaf = raw(b"x")
    node = decode_node(*pb(UnixFSData(DataType.Directory), (PBLink(leaf[0], name, 1),)))
    with pytest.raises(InvalidUnixFSNode):
        directory_entries(node)


def test_duplicate_entry_names_are_refused():
    leaf = raw(b"x")
    links = (PBLink(leaf[0], "a", 1), PBLink(leaf[0], "a", 1))
    with pytest.raises(InvalidUnixFSNode):
        directory_entries(decode_node(*pb(UnixFSData(DataType.Directory), links)))


def test_directory_entries_and_find_entry():
    a, b = raw(b"a"), raw(b"bb")
    links = (PBLink(a[0], "a.txt", 1), PBLink(b[0], "b.txt", None))
    node = decode_node(*pb(UnixFSData(DataType.Directory), links))
    assert node.kind == "directory" and node.size is None
    assert directory_entries(node) == [Entry("a.txt", a[0], 1), Entry("b.txt", b[0], None)]
    assert find_entry(node, "b.txt") == Entry("b.txt", b[0], None)
    assert find_entry(node, "c.txt") is None


def shard_data(**fields: object) -> UnixFSData:
    values: dict[str, object] = {"data": b"", "hash_type": 0x22, "fanout": 256}
    values.update(fields)
    return UnixFSData(DataType.HAMTShard, **values)  # type: ignore[arg-type]


def test_hamt_shard_header_is_checked():
    with pytest.raises(InvalidUnixFSNode):
        decode_node(*pb(shard_data(hash_type=0x12)))
    with pytest.raises(InvalidUnixFSNode):
        decode_node(*pb(shard_data(hash_type=None)))
    with pytest.raises(InvalidUnixFSNode):
        decode_node(*pb(shard_data(fanout=None)))
    with pytest.raises(InvalidHamt):
        decode_node(*pb(shard_data(fanout=100)))
    empty = decode_node(*pb(shard_data()))
    assert empty.kind == "hamt" and hamt_children(empty) == []
    assert hamt_lookup(empty, "anything") is None


def test_hamt_entry_with_an_unsafe_name_is_refused():
    leaf = raw(b"x")
    name = ".."
    index = hamt.bucket_index(hamt.name_hash(name), 0, 8)
    link = PBLink(leaf[0], hamt.link_prefix(index, 256) + name, 1)
    node = decode_node(*pb(shard_data(data=hamt.encode_bitfield([index])), (link,)))
    with pytest.raises(InvalidUnixFSNode):
        hamt_children(node)
    with pytest.raises(InvalidUnixFSNode):
        hamt_lookup(node, name)


def test_hamt_entry_in_the_wrong_bucket_is_refused():
    leaf = raw(b"x")
    index = (hamt.bucket_index(hamt.name_hash("a"), 0, 8) + 1) % 256
    link = PBLink(leaf[0], hamt.link_prefix(index, 256) + "a", 1)
    node = decode_node(*pb(shard_data(data=hamt.encode_bitfield([index])), (link,)))
    with pytest.raises(InvalidHamt):
        hamt_children(node)


def test_symlink_with_links_is_refused():
    leaf = raw(b"x")
    with pytest.raises(InvalidUnixFSNode):
        decode_node(*pb(UnixFSData(DataType.Symlink, data=b"t"), (PBLink(leaf[0], "", 1),)))


def test_what_is_not_unixfs():
    with pytest.raises(NotUnixFS):
        decode_node(*pb(None))  # dag-pb without Data
    with pytest.raises(NotUnixFS):
        decode_node(*pb(UnixFSData(DataType.Metadata)))
    block = dagcbor.encode({"a": 1})
    with pytest.raises(NotUnixFS):
        decode_node(CID.for_block(block), block)


def test_malformed_blocks_raise_decode_errors():
    cid = CID.for_block(b"\xff\xff", "dag-pb")
    with pytest.raises(DagPbDecodeError):
        decode_node(cid, b"\xff\xff")
    bad_data = encode_node(PBNode((), b"\x08\x09"))  # Type 9
    with pytest.raises(UnixFSDecodeError):
        decode_node(CID.for_block(bad_data, "dag-pb"), bad_data)


def test_every_reader_error_is_a_unixfs_decode_error_or_a_query_error():
    for error in (InvalidUnixFSNode, UnixFSTooDeep, NotUnixFS, InvalidHamt):
        assert issubclass(error, UnixFSDecodeError)
    for error in (NotAFile, NotADirectory):
        assert issubclass(error, InvalidQuery)


# -- links_of -------------------------------------------------------------------------------------


def test_links_of_each_codec():
    a, b = raw(b"a"), raw(b"b")
    cid, block = pb(UnixFSData(DataType.Directory), (PBLink(a[0], "x", 1), PBLink(b[0], "y", 1)))
    assert links_of(cid, block) == [a[0], b[0]]
    assert links_of(*a) == []
    value = {"z": [a[0], {"deep": [[b[0]]]}], "a": a[0], "n": 1, "s": "text"}
    block = dagcbor.encode(value)
    assert links_of(CID.for_block(block), block) == [a[0], a[0], b[0]]
    other = CID.for_block(b"{}", "dag-json")
    with pytest.raises(UnsupportedCodec):
        links_of(other, b"{}")


def test_piece_is_a_plain_value():
    assert Piece(0, 3, data=b"abc") == Piece(0, 3, b"abc")


def test_a_child_shard_that_is_not_a_shard_is_a_bad_dag_not_a_bad_question():
    leaf = decode_node(*raw(b"x"))
    with pytest.raises(NotADirectory):
        hamt_lookup(leaf, "a")  # asked of a file: the question is wrong
    with pytest.raises(InvalidHamt):
        hamt_lookup(leaf, "a", consumed=8)  # reached through a NextShard: the DAG is wrong
    with pytest.raises(InvalidHamt):
        hamt_children(leaf, consumed=8)


def test_mode_and_mtime_are_kept():
    data = UnixFSData(DataType.File, data=b"x", filesize=1, mode=0o644, mtime=UnixTime(1, 2))
    node = decode_node(*pb(data))
    assert node.mode == 0o644 and node.mtime == UnixTime(1, 2)
    node = decode_node(*pb(UnixFSData(DataType.Directory, mode=0o755)))
    assert node.mode == 0o755 and node.mtime is None


# -- hostile bytes: only typed errors ---------------------------------------------------------------


def probe(cid: CID, block: bytes) -> None:
    """Everything a caller may ask of one block; only GridnodeErrors may come out."""
    with contextlib.suppress(GridnodeError):
        links_of(cid, block)
    node = decode_node(cid, block)
    if node.kind in ("file", "raw"):
        for offset, length in ((0, None), (1, 3), (1000, 5000), (10**12, 1)):
            pieces = file_pieces(node, offset, length)
            for piece in pieces:
                with contextlib.suppress(GridnodeError):
                    check_piece(piece, node)
    elif node.kind == "directory":
        directory_entries(node)
    elif node.kind == "hamt":
        for consumed in (0, 8, 56, 64):
            with contextlib.suppress(GridnodeError):
                hamt_children(node, consumed)
            with contextlib.suppress(GridnodeError):
                hamt_lookup(node, "402.txt", consumed)


def mutations(block: bytes, rng: random.Random, count: int):
    for _ in range(count):
        data = bytearray(block)
        action = rng.randrange(4)
        if action == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif action == 1:
            del data[rng.randrange(len(data) + 1) :]
        elif action == 2:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randrange(1, 4))
        elif data:
            data[rng.randrange(len(data))] = rng.choice([0x00, 0x7F, 0x80, 0xFF])
        yield bytes(data)


def test_mutated_blocks_give_typed_errors_only(hamt_car):
    rng = random.Random(499)
    samples: list[tuple[CID, bytes]] = []
    root, blocks = hamt_car
    samples += [(root, blocks[root]), *list(blocks.items())[:12]]
    _root, simple = load("go-car/simple-unixfs.car")
    samples += list(simple.items())[:6]
    _root, symlinks = load("gateway-conformance/symlink.car")
    samples += list(symlinks.items())
    # Any other exception fails the test: every input ends in a return or a typed refusal.
    tried = refused = 0
    for cid, block in samples:
        for mutated in mutations(block, rng, 60):
            tried += 1
            try:
                probe(cid, mutated)
            except GridnodeError:
                refused += 1
    assert refused > tried // 4, (refused, tried)  # and mutations are mostly caught
