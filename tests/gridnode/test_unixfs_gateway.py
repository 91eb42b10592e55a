"""The gateway's UnixFS answers (gridnode.api.unixfs) over a block source, on the
gateway-conformance project's fixture CARs (tests/fixtures/gateway-conformance, with its licence)
and DAGs built here: paths, files, Range, directories, listings, CARs, hostile DAGs."""

import contextlib
from pathlib import Path

import pytest
import trio

from crdt.ipld import dagpb
from crdt.ipld.car import read_car
from crdt.ipld.cid import CID
from crdt.unixfs.data import DataType, UnixFSData, encode_data
from gridnode.api import unixfs
from gridnode.errors import GridnodeError, InvalidRequest, NotFound

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gateway-conformance"
DIR_LISTING = "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i"
FILE_ZL = "bafkreialihlqnf5uwo4byh4n3cmwlntwqzxxs2fg5vanqdi3d7tb2l5xkm"


class Blocks:
    """A block source over a dict; counts the calls and the CIDs asked."""

    def __init__(self, blocks):
        self.blocks = dict(blocks)
        self.calls = 0
        self.asked = 0

    async def get_many(self, cids):
        self.calls += 1
        self.asked += len(cids)
        return {c: self.blocks[c] for c in cids if c in self.blocks}


def fixture(name):
    header, blocks = read_car((FIXTURES / name).read_bytes())
    return header.roots[0], Blocks(blocks)


def go(fn, *args):
    async def bounded():
        with trio.fail_after(30):
            return await fn(*args)

    return trio.run(bounded)


def asked(root, slash=False, method="GET", query=None, **headers):
    return unixfs.Asked(
        method=method,
        shown_root=str(root),
        trailing_slash=slash,
        query=query or {},
        accept=headers.pop("accept", None),
        **headers,
    )


async def body(answer):
    parts = list(answer.parts)
    if answer.stream is not None:
        while chunk := await answer.stream.next_chunk():
            parts.extend(chunk)
    return b"".join(parts)


def get(source, root, names, **kwargs):
    async def run():
        answer = await unixfs.answer(source, root, names, asked(root, **kwargs))
        return answer, await body(answer)

    return go(run)


def header(answer, name):
    found = [v.decode() for k, v in answer.headers if k == name.encode()]
    return found[0] if found else None


# -- paths and files ------------------------------------------------------------------------------


def test_a_file_under_utf8_names_with_its_roots_and_etag():
    root, source = fixture("dir-listing.car")
    assert str(root) == DIR_LISTING
    answer, data = get(source, root, ["ą", "ę", "file-źł.txt"])
    assert answer.status == 200
    assert data == b"I am a txt file on path with utf8\n"
    assert answer.content_type == "text/plain; charset=utf-8"
    assert header(answer, "etag") == f'"{FILE_ZL}"'
    assert header(answer, "cache-control") == "public, max-age=29030400, immutable"
    assert header(answer, "x-ipfs-path") == f"/ipfs/{root}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt"
    roots = header(answer, "x-ipfs-roots").split(",")
    assert roots[0] == DIR_LISTING and roots[-1] == FILE_ZL and len(roots) == 4
    assert header(answer, "accept-ranges") == "bytes"
    assert header(answer, "content-security-policy").startswith("sandbox")
    assert answer.length == 34


def test_a_name_that_is_not_there_is_404_and_so_is_a_name_below_a_file():
    root, source = fixture("dir-listing.car")
    with pytest.raises(NotFound):
        get(source, root, ["i-do-not-exist"])
    with pytest.raises(NotFound):
        get(source, root, ["api", "file.txt", "below"])


def test_a_percent_encoded_name_is_a_name():
    root, source = fixture("dir-with-percent-encoded-filename.car")
    _answer, data = get(source, root, ["Portugal%2C+España=Peninsula Ibérica.txt"])
    assert data == b"hello from a percent encoded filename\n"


def test_a_multi_block_file_whole_and_in_every_range():
    root, source = fixture("dir-with-files.car")
    _answer, whole = get(source, root, ["multiblock.txt"])
    assert len(whole) == 1026 and whole.startswith(b"Lorem ipsum")
    for start, end in [(0, 0), (0, 255), (255, 256), (100, 900), (1000, 1025), (1025, 1025)]:
        answer, data = get(source, root, ["multiblock.txt"], range=f"bytes={start}-{end}")
        assert answer.status == 206
        assert data == whole[start : end + 1]
        assert header(answer, "content-range") == f"bytes {start}-{end}/1026"
        assert answer.length == end - start + 1
    answer, data = get(source, root, ["multiblock.txt"], range="bytes=-10")
    assert data == whole[-10:] and answer.status == 206


def test_a_range_past_the_end_is_416_with_the_size():
    root, source = fixture("dir-with-files.car")
    answer, _ = get(source, root, ["multiblock.txt"], range="bytes=1026-")
    assert answer.status == 416
    assert header(answer, "content-range") == "bytes */1026"


def test_if_range_with_another_etag_gets_the_whole_file():
    root, source = fixture("dir-with-files.car")
    answer, data = get(source, root, ["hello.txt"], range="bytes=0-1", if_range='"something-else"')
    assert answer.status == 200 and data == b"hello world\n"
    etag = header(answer, "etag")
    answer, data = get(source, root, ["hello.txt"], range="bytes=0-1", if_range=etag)
    assert answer.status == 206 and data == b"he"


def test_if_none_match_is_304_without_reading_the_file():
    root, source = fixture("dir-with-files.car")
    answer, _ = get(source, root, ["hello.txt"])
    etag = header(answer, "etag")
    for sent in (etag, f"W/{etag}", f'"x", {etag}', "*"):
        answer, data = get(source, root, ["hello.txt"], if_none_match=sent)
        assert answer.status == 304 and data == b""


def test_head_has_the_length_and_type_and_no_body():
    root, source = fixture("dir-with-files.car")
    answer, data = get(source, root, ["multiblock.txt"], method="HEAD")
    assert answer.status == 200 and data == b"" and answer.length == 1026
    assert answer.content_type == "text/plain; charset=utf-8"


def test_filename_and_download_set_the_disposition_and_the_type():
    root, source = fixture("dir-with-files.car")
    answer, _ = get(source, root, ["hello.txt"], query={"filename": "hi ą.json"})
    assert answer.content_type == "application/json; charset=utf-8"
    assert header(answer, "content-disposition") == (
        "inline; filename=\"hi _.json\"; filename*=UTF-8''hi%20%C4%85.json"
    )
    answer, _ = get(source, root, ["hello.txt"], query={"filename": 'a"\r\nX-Evil: 1\\.txt'})
    assert header(answer, "content-disposition") == (
        "inline; filename=\"a___X-Evil: 1_.txt\"; filename*=UTF-8''a%22%0D%0AX-Evil%3A%201%5C.txt"
    )
    answer, _ = get(source, root, ["hello.txt"], query={"download": "true"})
    assert header(answer, "content-disposition").startswith('attachment; filename="hello.txt"')


def test_a_raw_root_is_a_file_and_sniffed_without_a_name():
    cid = CID.for_block(b"\x89PNG\r\n\x1a\n rest", codec="raw")
    source = Blocks({cid: b"\x89PNG\r\n\x1a\n rest"})
    answer, data = get(source, cid, [])
    assert answer.content_type == "image/png" and data.startswith(b"\x89PNG")


def test_a_missing_block_is_404_but_a_range_that_avoids_it_is_served():
    root, source = fixture("file-3k-and-3-blocks-missing-block.car")
    with pytest.raises(NotFound):
        get(source, root, [])
    answer, data = get(source, root, [], range="bytes=0-1023")
    assert answer.status == 206 and len(data) == 1024
    answer, data = get(source, root, [], range="bytes=2048-3071")
    assert answer.status == 206 and len(data) == 1024


def test_a_symlink_is_its_target():
    root, source = fixture("symlink.car")
    answer, data = get(source, root, ["bar"])
    assert data == b"foo" and answer.content_type == "inode/symlink"
    _answer, data = get(source, root, ["foo"])
    assert data == b"content\n"


# -- directories ----------------------------------------------------------------------------------


def test_a_directory_without_its_slash_redirects_to_it():
    root, source = fixture("dir-listing.car")
    answer, _ = get(source, root, ["ą", "ę"])
    assert answer.status == 301
    assert header(answer, "location") == f"/ipfs/{root}/%C4%85/%C4%99/"
    answer, _ = get(source, root, [], query={"filename": "x"})
    assert header(answer, "location") == f"/ipfs/{root}/?filename=x"


def test_a_directory_listing():
    root, source = fixture("dir-listing.car")
    answer, page = get(source, root, ["ą", "ę"], slash=True)
    text = page.decode()
    assert answer.status == 200 and answer.content_type == "text/html; charset=utf-8"
    assert header(answer, "etag").startswith('"DirIndex-')
    assert header(answer, "etag").endswith(f'_CID-{header(answer, "x-ipfs-roots").split(",")[-1]}"')
    assert "Index of" in text
    assert f'<a href="/ipfs/{root}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt">file-źł.txt</a>' in text
    assert f'<a href="/ipfs/{root}/%C4%85/%C4%99/..">..</a>' in text
    assert FILE_ZL in text
    # the root's listing has no link up
    _answer, page = get(source, root, [], slash=True)
    assert f'<a href="/ipfs/{root}/">..</a>' not in page.decode() and ">..</a>" not in page.decode()
    assert all(name in page.decode() for name in ("api", "ipfs", "ipns", "ą"))
    answer, _ = get(source, root, ["ą", "ę"], slash=True, if_none_match=header(answer, "etag"))
    assert answer.status == 304


def test_a_directory_with_index_html_serves_it_with_the_directorys_etag():
    root, source = fixture("gateway-cache.car")
    answer, data = get(source, root, ["root2", "root3", "root4"], slash=True)
    assert answer.status == 200 and data == b"hello\n"
    assert answer.content_type == "text/html; charset=utf-8"
    roots = header(answer, "x-ipfs-roots").split(",")
    assert len(roots) == 4
    assert header(answer, "etag") == f'"{roots[-1]}"'
    assert header(answer, "x-ipfs-path") == f"/ipfs/{root}/root2/root3/root4/"
    answer, data = get(source, root, ["root2", "root3", "root4", "index.html"])
    assert data == b"hello\n" and len(header(answer, "x-ipfs-roots").split(",")) == 5


# -- raw and CAR ----------------------------------------------------------------------------------


def test_format_raw_is_the_block_at_the_end_of_the_path():
    root, source = fixture("gateway-cache.car")
    answer, data = get(
        source, root, ["root2", "root3", "root4"], slash=True, query={"format": "raw"}
    )
    cid = CID.parse(header(answer, "x-ipfs-roots").split(",")[-1])
    assert answer.content_type == "application/vnd.ipld.raw"
    assert data == source.blocks[cid]
    assert header(answer, "etag") == f'"{cid}.raw"'
    with pytest.raises(InvalidRequest):
        get(source, root, [], query={"format": "tar"})


def _car_blocks(data):
    header_, blocks = read_car(data)
    return list(header_.roots), [c for c, _ in blocks]


def test_car_scopes_on_a_path():
    root, source = fixture("subdir-with-mixed-block-files.car")
    subdir = go(unixfs.resolve, source, root, ["subdir"]).cid
    multi = go(unixfs.resolve, source, root, ["subdir", "multiblock.txt"])
    _answer, data = get(source, root, ["subdir"], query={"format": "car", "dag-scope": "block"})
    roots, cids = _car_blocks(data)
    assert roots == [root] and cids == [root, subdir]
    _answer, data = get(
        source,
        root,
        ["subdir", "multiblock.txt"],
        accept="application/vnd.ipld.car",
        query={"dag-scope": "entity"},
    )
    roots, cids = _car_blocks(data)
    assert cids[:3] == [root, subdir, multi.cid]
    assert cids[3:] == [link.cid for link in multi.node.links]
    _answer, data = get(source, root, [], query={"format": "car"})
    _roots, cids = _car_blocks(data)
    assert set(cids) == set(source.blocks)  # the whole DAG (dups=y: shared blocks repeated)


# -- hostile DAGs ---------------------------------------------------------------------------------


def _file_node(children, inline=b"", sizes=None):
    links = tuple(dagpb.PBLink(c, "", s) for c, s in children)
    data = UnixFSData(
        DataType.File,
        inline or None,
        len(inline) + sum(s for _, s in children) if sizes is None else sizes,
        tuple(s for _, s in children),
    )
    block = dagpb.encode_node(dagpb.PBNode(links, encode_data(data)))
    return CID.for_block(block, codec="dag-pb"), block


def test_a_node_whose_sizes_lie_is_a_typed_error():
    leaf = b"x" * 100
    leaf_cid = CID.for_block(leaf, codec="raw")
    # the parent says the child holds 200 bytes; it holds 100
    cid, block = _file_node([(leaf_cid, 200)])
    source = Blocks({leaf_cid: leaf, cid: block})
    with pytest.raises(GridnodeError):
        get(source, cid, [])
    # a filesize that disagrees with the blocksizes
    cid, block = _file_node([(leaf_cid, 100)], sizes=5000)
    source = Blocks({leaf_cid: leaf, cid: block})
    with pytest.raises(GridnodeError):
        get(source, cid, [])


def test_a_deep_tree_is_refused_and_memory_stays_bounded():
    leaf = b"y" * 10
    cid = CID.for_block(leaf, codec="raw")
    blocks = {cid: leaf}
    for _ in range(unixfs.MAX_DEPTH + 5):
        cid, block = _file_node([(cid, 10)])
        blocks[cid] = block
    with pytest.raises(GridnodeError):
        get(Blocks(blocks), cid, [])


def test_a_large_file_streams_a_batch_at_a_time():
    leaf = bytes(range(256)) * 1024  # 256 KiB
    leaf_cid = CID.for_block(leaf, codec="raw")
    count = 40  # 10 MiB
    cid, block = _file_node([(leaf_cid, len(leaf))] * count)
    source = Blocks({leaf_cid: leaf, cid: block})

    async def run():
        answer = await unixfs.answer(source, cid, [], asked(cid))
        assert answer.stream is not None and answer.length == count * len(leaf)
        total = 0
        chunks = 0
        while chunk := await answer.stream.next_chunk():
            size = sum(len(p) for p in chunk)
            assert size <= unixfs.BATCH_BYTES + len(leaf)
            total += size
            chunks += 1
        return total, chunks

    total, chunks = go(run)
    assert total == count * len(leaf)
    assert chunks >= count * len(leaf) // (unixfs.BATCH_BYTES + len(leaf))


# -- HAMT-sharded directories ---------------------------------------------------------------------


def test_a_name_in_a_hamt_reads_only_the_shards_on_its_way():
    root, source = fixture("single-layer-hamt-with-multi-block-files.car")
    answer, data = get(source, root, ["999.txt"])
    assert answer.status == 200 and len(data) == 1026 and data.startswith(b"Lorem ipsum")
    source.asked = 0
    resolved = go(unixfs.resolve, source, root, ["1.txt"])
    assert source.asked <= 3  # the root shard, one child shard, the file: never all 243 blocks
    assert resolved.node.kind == "file" and len(resolved.path_blocks) == 2
    with pytest.raises(NotFound):
        get(source, root, ["1001.txt"])


def test_a_hamt_listing_has_every_entry_sorted_and_is_bounded(monkeypatch):
    root, source = fixture("single-layer-hamt-with-multi-block-files.car")
    answer, page = get(source, root, [], slash=True)
    text = page.decode()
    assert answer.status == 200 and text.count('class="ipfs-hash"') == 1000 + 1
    assert text.index(">1.txt<") < text.index(">10.txt<") < text.index(">999.txt<")
    monkeypatch.setattr(unixfs, "MAX_LISTING", 10)
    _answer, page = get(source, root, [], slash=True)
    assert page.decode().count('class="ipfs-hash"') == 10 + 1
    assert "more entries not listed" in page.decode()


def test_the_entity_of_a_hamt_is_its_shards():
    root, source = fixture("single-layer-hamt-with-multi-block-files.car")
    _answer, data = get(source, root, [], query={"format": "car", "dag-scope": "entity"})
    _roots, cids = _car_blocks(data)
    assert cids[0] == root and all(c.codec == 0x70 for c in cids)
    kinds = {go(unixfs.resolve, source, c, []).node.kind for c in cids}
    assert kinds == {"hamt"}
    _answer, data = get(source, root, ["5.txt"], query={"format": "car", "dag-scope": "block"})
    _roots, cids = _car_blocks(data)
    assert len(cids) == 3 and cids[0] == root  # root shard, the shard on the way, the file


@pytest.mark.parametrize("profile", ["unixfs-v1-2025", "unixfs-v0-2015"])
def test_a_file_the_importer_built_reads_back_in_any_range(profile):
    """Raw leaves (v1) and dag-pb leaves under CIDv0 (v0), across leaf boundaries."""
    import random

    from crdt.unixfs import FileImporter

    data = random.Random(5).randbytes(3 * 1024 * 1024 + 12345)
    importer = FileImporter(profile)
    blocks = importer.write(data)
    root = importer.close()
    source = Blocks([*blocks, *root.blocks])
    _answer, whole = get(source, root.cid, [])
    assert whole == data
    leaf = 1024 * 1024 if profile == "unixfs-v1-2025" else 256 * 1024
    for start, end in [(leaf - 10, leaf + 10), (0, 2 * leaf), (len(data) - 100, len(data) - 1)]:
        answer, part = get(source, root.cid, [], range=f"bytes={start}-{end}")
        assert answer.status == 206 and part == data[start : end + 1]


def test_inner_nodes_are_decoded_once_and_the_cache_is_bounded():
    root, source = fixture("dir-with-files.car")
    source.nodes = unixfs.NodeCache()
    _answer, first = get(source, root, ["multiblock.txt"], range="bytes=300-310")
    asked = source.asked
    _answer, again = get(source, root, ["multiblock.txt"], range="bytes=300-310")
    assert again == first
    assert source.asked - asked == 1  # the one leaf; the directory and the file's root cached
    # leaves are never cached; the oldest node goes first past the bounds
    cache = unixfs.NodeCache(entries=2, size=10**6)
    nodes = [go(unixfs.resolve, source, root, [n]).node for n in ("multiblock.txt", "hello.txt")]
    directory = go(unixfs.resolve, source, root, []).node
    cache.put(nodes[1], source.blocks[nodes[1].cid])
    assert cache.get(nodes[1].cid) is None  # a raw leaf
    cache.put(directory, source.blocks[root])
    cache.put(nodes[0], source.blocks[nodes[0].cid])
    assert cache.get(root) is not None  # now the most recent
    third = go(
        unixfs.resolve,
        Blocks(fixture("dir-listing.car")[1].blocks),
        fixture("dir-listing.car")[0],
        [],
    ).node
    cache.put(third, b"x" * 10)
    assert cache.get(nodes[0].cid) is None and cache.get(root) is not None
    small = unixfs.NodeCache(entries=10, size=100)
    small.put(directory, source.blocks[root])  # larger than the whole cache: not kept
    assert small.get(root) is None


def test_a_dag_pb_block_that_is_not_unixfs_is_still_served_raw_and_as_a_car():
    leaf = b"leaf bytes"
    leaf_cid = CID.for_block(leaf, codec="raw")
    block = dagpb.encode_node(dagpb.PBNode((dagpb.PBLink(leaf_cid, "x", len(leaf)),), None))
    cid = CID.for_block(block, codec="dag-pb")
    source = Blocks({cid: block, leaf_cid: leaf})
    answer, data = get(source, cid, [], query={"format": "raw"})
    assert answer.status == 200 and data == block
    _answer, data = get(source, cid, [], query={"format": "car"})
    assert _car_blocks(data) == ([cid], [cid, leaf_cid])
    _answer, data = get(source, cid, [], query={"format": "car", "dag-scope": "entity"})
    assert _car_blocks(data) == ([cid], [cid])
    with pytest.raises(GridnodeError):  # not a file or a directory to show
        get(source, cid, [])


def test_a_path_of_too_many_names_is_refused_before_a_block_is_read():
    root, source = fixture("dir-listing.car")
    with pytest.raises(InvalidRequest):
        get(source, root, ["a"] * (unixfs.MAX_PATH_NAMES + 1))
    assert source.calls == 0


def test_mutated_blocks_end_in_an_answer_or_a_typed_error():
    """Hostile roots: each fixture block with bytes flipped, cut or inserted (re-hashed under its
    own CID, as a stranger would send it), asked as a file, a directory, a listing, a range, a
    CAR: every request ends in an answer or a GridnodeError, never another exception."""
    import random

    rng = random.Random(23)
    blocks = {}
    for name in ("dir-with-files.car", "single-layer-hamt-with-multi-block-files.car"):
        blocks.update(fixture(name)[1].blocks)
    inner = [(c, b) for c, b in blocks.items() if c.codec == 0x70][:40]
    cases = 0
    for _cid, block in inner:
        for _ in range(8):
            data = bytearray(block)
            how = rng.randrange(3)
            at = rng.randrange(len(data))
            if how == 0:
                data[at] ^= 1 << rng.randrange(8)
            elif how == 1:
                data = data[:at]
            else:
                data[at:at] = bytes([rng.randrange(256)])
            mutated = bytes(data)
            root = CID.for_block(mutated, codec="dag-pb")
            source = Blocks({**blocks, root: mutated})
            for names, kwargs in (
                ([], {}),
                ([], {"slash": True}),
                (["multiblock.txt"], {}),
                (["1.txt"], {"range": "bytes=5-600"}),
                ([], {"query": {"format": "car", "dag-scope": "entity"}}),
                ([], {"method": "HEAD"}),
            ):
                cases += 1
                with contextlib.suppress(GridnodeError):
                    get(source, root, names, **kwargs)
    assert cases == len(inner) * 8 * 6


def test_only_if_cached_is_412_for_a_root_not_held_and_a_normal_answer_otherwise():
    root, source = fixture("dir-with-files.car")
    answer, _ = get(source, root, ["hello.txt"], only_if_cached=True)
    assert answer.status == 200
    absent = CID.for_block(b"nobody has this", codec="raw")
    answer, _ = get(source, absent, [], only_if_cached=True)
    assert answer.status == 412
    with pytest.raises(NotFound):
        get(source, absent, [])
