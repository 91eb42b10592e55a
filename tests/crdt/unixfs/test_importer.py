"""The UnixFS importer: IPIP-499's test CIDs for both profiles (inputs regenerated from Kubo's
ChaCha20 generator, kubo_random.py), the go-car UnixFS fixture, go's balanced layout against an
independent re-statement of it, streaming in any pieces, bounded memory, refused input."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import UnixFSEncodeError, UnknownProfile
from crdt.ipld.car import read_car
from crdt.ipld.cid import CID
from crdt.ipld.dagpb import PBLink, PBNode, decode_node, encode_node, node_cid
from crdt.unixfs.data import DataType, UnixFSData, decode_data, encode_data
from crdt.unixfs.importer import DirectoryImporter, FileImporter, import_bytes, import_symlink
from crdt.unixfs.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile
from tests.crdt.unixfs.kubo_random import file_names, random_bytes, random_pieces

V0 = "unixfs-v0-2015"
V1 = "unixfs-v1-2025"
MIB = 1 << 20
KIB256 = 256 * 1024


def import_stream(size: int, seed: str, profile: str) -> tuple[CID, int]:
    """Import ``size`` bytes of Kubo's keystream for ``seed``, dropping blocks as they come;
    the root and how many blocks came out."""
    importer = FileImporter(profile)
    count = 0
    for piece in random_pieces(size, seed):
        count += len(importer.write(piece))
    root = importer.close()
    assert root.size == size
    return root.cid, count + len(root.blocks)


# -- IPIP-499 test fixtures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "cid"),
    [
        (V0, "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"),
        (V1, "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"),
    ],
)
def test_ipip499_small_file(profile: str, cid: str):
    assert str(import_bytes(b"hello world", profile).cid) == cid


@pytest.mark.parametrize(
    ("profile", "size", "seed", "cid"),
    [
        (V0, KIB256, "chunk-v0-seed", "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE"),
        (V0, KIB256 + 1, "chunk-v0-seed", "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ"),
        (V1, MIB, "chunk-v1-seed", "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta"),
        (
            V1,
            MIB + 1,
            "chunk-v1-seed",
            "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64",
        ),
        (V0, 174 * KIB256, "v0-seed", "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2"),
        (V0, 174 * KIB256 + 1, "v0-seed", "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW"),
    ],
)
def test_ipip499_files(profile: str, size: int, seed: str, cid: str):
    root, _count = import_stream(size, seed, profile)
    assert str(root) == cid


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "cid", "blocks"),
    [
        (1024 * MIB, "bafybeihmf37wcuvtx4hpu7he5zl5qaf2ineo2lqlfrapokkm5zzw7zyhvm", 1025),
        (1024 * MIB + 1, "bafybeibdsi225ugbkmpbdohnxioyab6jsqrmkts3twhpvfnzp77xtzpyhe", 1028),
    ],
)
def test_ipip499_one_gib_files(size: int, cid: str, blocks: int):
    # 1 GiB of keystream, imported and dropped piece by piece (the memory stays a few MiB)
    root, count = import_stream(size, "v1-2025-seed", V1)
    assert str(root) == cid
    assert count == blocks  # 1024 leaves + the root; 1025 leaves + 2 inner nodes + the root


@pytest.mark.parametrize(
    ("profile", "seed", "count", "length", "last", "cid", "sharded"),
    [
        (
            V0,
            "hamt-unixfs-v0-2015",
            4096,
            30,
            30,
            "QmX5GtRk3TSSEHtdrykgqm4eqMEn3n2XhfkFAis5fjyZmN",
            False,
        ),
        (
            V0,
            "hamt-unixfs-v0-2015",
            4033,
            31,
            31,
            "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP",
            True,
        ),
        (
            V1,
            "hamt-unixfs-v1-2025",
            4766,
            11,
            21,
            "bafybeic3h7rwruealwxkacabdy45jivq2crwz6bufb5ljwupn36gicplx4",
            False,
        ),
        (
            V1,
            "hamt-unixfs-v1-2025",
            4766,
            11,
            22,
            "bafybeiegvuterwurhdtkikfhbxcldohmxp566vpjdofhzmnhv6o4freidu",
            True,
        ),
    ],
)
def test_ipip499_directories_at_and_over_the_hamt_threshold(
    profile: str, seed: str, count: int, length: int, last: int, cid: str, sharded: bool
):
    # Kubo's fixture: `count` files holding b"x" named from the seed's keystream
    x = import_bytes(b"x", profile)
    directory = DirectoryImporter(profile)
    for name in file_names(seed, count, length, last):
        directory.add(name, x.cid, x.tsize)
    root = directory.close()
    assert str(root.cid) == cid
    assert root.sharded is sharded
    assert root.blocks[-1][0] == root.cid
    kind = decode_data(decode_node(root.blocks[-1][1]).data or b"").type
    assert kind == (DataType.HAMTShard if sharded else DataType.Directory)
    if not sharded and profile == V1:
        assert len(root.blocks[-1][1]) == 256 * 1024  # block-bytes exactly at the threshold


# -- the go-car UnixFS fixture (tests/fixtures/go-car, licence beside it) -------------------------


def test_go_car_simple_unixfs_is_rebuilt_block_for_block():
    car = Path(__file__).parents[2] / "fixtures" / "go-car" / "simple-unixfs.car"
    header, blocks = read_car(car.read_bytes())
    # the tree it holds: /a/1/A.txt = "a1A\n", ..., /c/9/I.txt = "c9I\n"
    made: dict[CID, bytes] = {}
    top = DirectoryImporter(V0)
    for i, letter in enumerate("abc"):
        middle = DirectoryImporter(V0)
        for digit in range(3 * i + 1, 3 * i + 4):
            name = "ABCDEFGHI"[digit - 1]
            file = import_bytes(f"{letter}{digit}{name}\n".encode(), V0)
            made.update(file.blocks)
            inner = DirectoryImporter(V0)
            inner.add(f"{name}.txt", file.cid, file.tsize)
            done = inner.close()
            made.update(done.blocks)
            middle.add(str(digit), done.cid, done.tsize)
        done = middle.close()
        made.update(done.blocks)
        top.add(letter, done.cid, done.tsize)
    root = top.close()
    made.update(root.blocks)
    assert (root.cid,) == header.roots
    assert made == dict(blocks)


# -- gateway-conformance fixtures (tests/fixtures/gateway-conformance, licences beside them) -----

GATEWAY = Path(__file__).parents[2] / "fixtures" / "gateway-conformance"
#: Kubo's add options these fixtures were made with: CIDv1, raw leaves, 256-byte chunks
SMALL_V1 = replace(PROFILES[V1], name="v1-256", chunk_size=256, max_links=174)


def multiblock_txt(blocks: dict[CID, bytes]) -> bytes:
    """The fixtures' 1026-byte text, read from its five raw leaves in the CAR."""
    leaves = [
        "bafkreie5noke3mb7hqxukzcy73nl23k6lxszxi5w3dtmuwz62wnvkpsscm",
        "bafkreih4ephajybraj6wnxsbwjwa77fukurtpl7oj7t7pfq545duhot7cq",
        "bafkreigu7buvm3cfunb35766dn7tmqyh2um62zcio63en2btvxuybgcpue",
        "bafkreicll3huefkc3qnrzeony7zcfo7cr3nbx64hnxrqzsixpceg332fhe",
        "bafkreifst3pqztuvj57lycamoi7z34b4emf7gawxs74nwrc2c7jncmpaqm",
    ]
    return b"".join(blocks[CID.parse(leaf)] for leaf in leaves)


def test_gateway_conformance_subdir_with_mixed_block_files_is_rebuilt():
    header, blocks = read_car((GATEWAY / "subdir-with-mixed-block-files.car").read_bytes())
    stored = dict(blocks)
    ascii_txt = stored[CID.parse("bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm")]
    made: dict[CID, bytes] = {}
    subdir = DirectoryImporter(SMALL_V1)
    for name, content in [
        ("ascii.txt", ascii_txt),
        ("hello.txt", b"hello world\n"),
        ("multiblock.txt", multiblock_txt(stored)),
    ]:
        file = import_bytes(content, SMALL_V1)
        made.update(file.blocks)
        subdir.add(name, file.cid, file.tsize)
    inner = subdir.close()
    made.update(inner.blocks)
    top = DirectoryImporter(SMALL_V1)
    top.add("subdir", inner.cid, inner.tsize)
    root = top.close()
    made.update(root.blocks)
    assert (root.cid,) == header.roots
    assert made == stored


def test_gateway_conformance_single_layer_hamt_is_rebuilt():
    # 1000 entries "1.txt".."1000.txt" naming one multi-block file, sharded though small (the
    # fixture was made with sharding forced: a threshold of 0 here)
    header, blocks = read_car(
        (GATEWAY / "single-layer-hamt-with-multi-block-files.car").read_bytes()
    )
    stored = dict(blocks)
    file = import_bytes(multiblock_txt(stored), SMALL_V1)
    assert str(file.cid) == "bafybeigcisqd7m5nf3qmuvjdbakl5bdnh4ocrmacaqkpuh77qjvggmt2sa"
    directory = DirectoryImporter(replace(SMALL_V1, hamt_threshold=0))
    for i in range(1, 1001):
        directory.add(f"{i}.txt", file.cid, file.tsize)
    root = directory.close()
    assert root.sharded and (root.cid,) == header.roots
    made = dict(file.blocks) | dict(root.blocks)
    assert made == stored  # 237 shards, the file's root and its 5 leaves


# -- the balanced layout ------------------------------------------------------------------------


def reference_root(chunks: list[bytes], profile: Profile) -> CID:
    """go's balanced builder restated: grow the root one level at a time, filling each new level
    depth-first (boxo importer/balanced: Layout and fillNodeRec)."""
    pending = iter(chunks)
    remaining = [len(chunks)]

    def leaf() -> tuple[CID, int, int]:
        remaining[0] -= 1
        data = next(pending)
        if profile.raw_leaves:
            return CID.for_block(data, codec="raw"), len(data), len(data)
        unixfs = UnixFSData(DataType.File, data=data or None, filesize=len(data))
        block = encode_node(PBNode((), encode_data(unixfs)))
        return node_cid(block, profile.cid_version), len(block), len(data)

    def node(children: list[tuple[CID, int, int]]) -> tuple[CID, int, int]:
        sizes = tuple(c[2] for c in children)
        unixfs = UnixFSData(DataType.File, filesize=sum(sizes), blocksizes=sizes)
        links = tuple(PBLink(c[0], "", c[1]) for c in children)
        block = encode_node(PBNode(links, encode_data(unixfs)))
        return (
            node_cid(block, profile.cid_version),
            len(block) + sum(c[1] for c in children),
            sum(sizes),
        )

    def fill(children: list[tuple[CID, int, int]], depth: int) -> tuple[CID, int, int]:
        while len(children) < profile.max_links and remaining[0]:
            children.append(leaf() if depth == 1 else fill([], depth - 1))
        return node(children)

    root = leaf()
    depth = 1
    while remaining[0]:
        root = fill([root], depth)
        depth += 1
    return root[0]


TINY = [
    replace(PROFILES[V1], name="tiny-v1", chunk_size=3, max_links=3),
    replace(PROFILES[V0], name="tiny-v0", chunk_size=2, max_links=2),
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TINY), st.binary(max_size=200), st.data())
def test_layout_matches_go_and_any_pieces_give_the_same_dag(profile: Profile, data: bytes, draw):
    chunks = [data[i : i + profile.chunk_size] for i in range(0, len(data), profile.chunk_size)]
    expected = reference_root(chunks or [b""], profile)
    whole = import_bytes(data, profile)
    assert whole.cid == expected
    assert whole.size == len(data)
    # the same bytes written in arbitrary pieces: the same blocks, in the same order
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=8)))
    importer = FileImporter(profile)
    blocks = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        blocks += importer.write(data[start:end])
    root = importer.close()
    assert blocks + root.blocks == whole.blocks
    assert root.cid == expected and root.tsize == whole.tsize
    # every block is emitted once, children before parents, the root last
    seen: set[CID] = set()
    for cid, block in whole.blocks:
        if cid.codec == 0x70:
            assert {link.cid for link in decode_node(block).links} <= seen
        seen.add(cid)
    assert whole.blocks[-1][0] == whole.cid
    # the root's Tsize is every block's length
    assert whole.tsize == sum(len(block) for _, block in whole.blocks)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, 70000])
def test_dag_pb_leaves_are_the_generic_encoding(size: int):
    data = random_bytes(size, "leaf")
    root = import_bytes(data, replace(PROFILES[V0], chunk_size=1 << 17))
    unixfs = UnixFSData(DataType.File, data=data or None, filesize=size)
    assert root.blocks == [(root.cid, encode_node(PBNode((), encode_data(unixfs))))]


def test_empty_file():
    assert str(import_bytes(b"", V0).cid) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert str(import_bytes(b"", V1).cid) == (
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    )


def test_blocks_come_out_as_soon_as_final_and_pending_links_stay_bounded():
    profile = replace(PROFILES[V1], chunk_size=16, max_links=4)
    importer = FileImporter(profile)
    for _ in range(1, 200):
        out = importer.write(bytes(16))
        # each chunk's leaf at once, plus the node(s) a full level turned into
        assert out and out[0][0].codec == 0x55
        assert all(len(level) <= 4 for level in importer._levels)
    assert importer.close().size == 199 * 16


def test_memory_does_not_grow_with_the_file():
    importer = FileImporter(V0)
    piece = random_bytes(MIB, "memory")
    importer.write(piece)  # warm up
    tracemalloc.start()
    try:
        for _ in range(48):
            importer.write(piece)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    importer.close()
    assert peak < 4 * MIB  # one piece of blocks in flight, not 48 MiB


def test_symlinks_are_preserved_as_ipip499s_vector():
    # IPIP-499's "preserved symlink" vector (gateway-conformance's symlink.car): bar -> foo
    file = import_bytes(b"content\n", V0)
    link = import_symlink("foo", V0)
    assert decode_data(decode_node(link.blocks[0][1]).data or b"") == UnixFSData(
        DataType.Symlink, data=b"foo"
    )
    directory = DirectoryImporter(V0)
    directory.add("foo", file.cid, file.tsize)
    directory.add("bar", link.cid, link.tsize)
    assert str(directory.close().cid) == "QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt"
    assert import_symlink("foo", V1).cid == link.cid.to_v1()
    for bad in ["", "a\0b", "\udc80"]:
        with pytest.raises(UnixFSEncodeError):
            import_symlink(bad)


# -- directories ---------------------------------------------------------------------------------


def test_empty_directories_have_the_well_known_cids():
    assert (
        str(DirectoryImporter(V0).close().cid) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    )
    assert str(DirectoryImporter(V1).close().cid) == (
        "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    )


def test_directory_links_are_sorted_by_name_bytes_and_tsize_adds_up():
    file = import_bytes(b"content", V1)
    directory = DirectoryImporter(V1)
    for name in ["b", "a", "é", "Z", "aa"]:
        directory.add(name, file.cid, file.tsize)
    root = directory.close()
    node = decode_node(root.blocks[0][1])
    assert [link.name for link in node.links] == ["Z", "a", "aa", "b", "é"]
    assert root.tsize == len(root.blocks[0][1]) + 5 * file.tsize
    assert decode_data(node.data or b"") == UnixFSData(DataType.Directory)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=300), st.integers(0, (1 << 64) - 1)),
        max_size=20,
        unique_by=lambda entry: entry[0],
    )
)
def test_the_block_bytes_estimate_is_the_basic_nodes_length(entries):
    entries = [(n, t) for n, t in entries if n not in (".", "..") and not set(n) & {"/", "\0"}]
    entries = [(n, t) for n, t in entries if not any(0xD800 <= ord(c) <= 0xDFFF for c in n)]
    directory = DirectoryImporter(V1)
    v0_file = import_bytes(b"x", V0).cid  # 34-byte CIDs as well as 36-byte ones
    for i, (name, tsize) in enumerate(entries):
        directory.add(name, v0_file if i % 2 else import_bytes(b"y", V1).cid, tsize)
    estimate = directory.estimate
    root = directory.close()
    assert not root.sharded
    assert estimate == len(root.blocks[0][1])


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "nul\0", "\udc80"])
def test_invalid_names_are_refused(name: str):
    with pytest.raises(UnixFSEncodeError):
        DirectoryImporter(V1).add(name, import_bytes(b"", V1).cid, 0)


def test_duplicate_names_and_bad_sizes_are_refused():
    file = import_bytes(b"x", V1)
    directory = DirectoryImporter(V1)
    directory.add("a", file.cid, 1)
    with pytest.raises(UnixFSEncodeError):
        directory.add("a", file.cid, 1)
    with pytest.raises(UnixFSEncodeError):
        directory.add("b", file.cid, -1)
    assert len(directory) == 1


def test_use_after_close_is_an_error():
    importer = FileImporter(V1)
    importer.close()
    with pytest.raises(ValueError):
        importer.write(b"x")
    with pytest.raises(ValueError):
        importer.close()
    directory = DirectoryImporter(V1)
    directory.close()
    with pytest.raises(ValueError):
        directory.add("a", import_bytes(b"", V1).cid, 0)


# -- profiles ------------------------------------------------------------------------------------


def test_profiles():
    assert DEFAULT_PROFILE == V1 and get_profile() is PROFILES[V1]
    v1, v0 = PROFILES[V1], PROFILES[V0]
    assert (v1.cid_version, v1.raw_leaves, v1.chunk_size, v1.max_links) == (1, True, MIB, 1024)
    assert (v0.cid_version, v0.raw_leaves, v0.chunk_size, v0.max_links) == (0, False, KIB256, 174)
    assert (v1.hamt_estimate, v0.hamt_estimate) == ("block-bytes", "links-bytes")
    assert v1.hamt_threshold == v0.hamt_threshold == 256 * 1024
    assert v1.hamt_fanout == v0.hamt_fanout == 256
    with pytest.raises(UnknownProfile):
        get_profile("unixfs-v2-2030")
    with pytest.raises(ValueError):
        replace(v0, raw_leaves=True)
