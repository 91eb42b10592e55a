"""The importer's output read back through the reader (helper e's crdt/unixfs/reader.py): every
byte range of a file, every entry of a basic or sharded directory, every link of every block.
Two independent halves that must agree on what a UnixFS DAG means."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.ipld.cid import CID
from crdt.unixfs.importer import DirectoryImporter, import_bytes
from crdt.unixfs.profiles import PROFILES, Profile
from crdt.unixfs.reader import (
    Entry,
    NextShard,
    check_piece,
    decode_node,
    directory_entries,
    file_pieces,
    hamt_lookup,
    links_of,
)

SMALL = [
    replace(PROFILES["unixfs-v1-2025"], chunk_size=5, max_links=3),
    replace(PROFILES["unixfs-v0-2015"], chunk_size=4, max_links=2),
]


def read_range(blocks: dict[CID, bytes], root: CID, offset: int, length: int | None) -> bytes:
    out = bytearray()
    stack = file_pieces(decode_node(root, blocks[root]), offset, length)[::-1]
    while stack:
        piece = stack.pop()
        if piece.cid is None:
            assert piece.data is not None
            out += piece.data
            continue
        child = decode_node(piece.cid, blocks[piece.cid])
        check_piece(piece, child)
        stack += file_pieces(child, piece.start, piece.length, piece.depth)[::-1]
    return bytes(out)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(SMALL), st.binary(max_size=120), st.integers(0, 130), st.integers(0, 130))
def test_any_range_of_an_imported_file_reads_back(profile: Profile, data: bytes, a: int, n: int):
    root = import_bytes(data, profile)
    blocks = dict(root.blocks)
    assert read_range(blocks, root.cid, 0, None) == data
    assert read_range(blocks, root.cid, a, n) == data[a : a + n]
    assert decode_node(root.cid, blocks[root.cid]).size == len(data)
    # every block's links are in the DAG, and the DAG is exactly the blocks made
    reached = {root.cid}
    frontier = [root.cid]
    while frontier:
        for link in links_of(frontier[-1], blocks[frontier.pop()]):
            if link not in reached:
                reached.add(link)
                frontier.append(link)
    assert reached == set(blocks)


def test_basic_and_sharded_directories_read_back():
    for threshold, sharded in [(1 << 30, False), (0, True)]:
        profile = replace(PROFILES["unixfs-v1-2025"], hamt_threshold=threshold)
        files = {f"name {i}": import_bytes(f"content {i}".encode(), profile) for i in range(300)}
        directory = DirectoryImporter(profile)
        for name, file in files.items():
            directory.add(name, file.cid, file.tsize)
        root = directory.close()
        assert root.sharded is sharded
        blocks = dict(root.blocks)
        top = decode_node(root.cid, blocks[root.cid])
        if not sharded:
            entries = directory_entries(top)
            assert [e.name for e in entries] == sorted(files)
            assert all(e.cid == files[e.name].cid for e in entries)
            continue

        def lookup(name: str, blocks: dict[CID, bytes] = blocks, top=top) -> Entry | None:
            node, consumed = top, 0
            while True:
                found = hamt_lookup(node, name, consumed)
                if not isinstance(found, NextShard):
                    return found
                node, consumed = decode_node(found.cid, blocks[found.cid]), found.consumed

        for name, file in files.items():
            found = lookup(name)
            assert found is not None
            assert (found.name, found.cid, found.tsize) == (name, file.cid, file.tsize)
        assert lookup("not there") is None
