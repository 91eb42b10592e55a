"""The pure UnixFS reader and HAMT (crdt/unixfs/reader.py, hamt.py), CPU only, blocks in memory.

    python bench/bench_unixfs_read.py            # 64 MiB file, 100,000-entry HAMT
    python bench/bench_unixfs_read.py --quick    # 8 MiB, 10,000 entries (smoke run)
    python bench/bench_unixfs_read.py --json

What it measures, each checked against the bytes or names it was built from:

- *read*: a whole file read through ``decode_node`` / ``file_pieces`` / ``check_piece`` from a
  dict of blocks (a balanced DAG as Kubo builds with raw leaves: 256 KiB chunks, 174 links per
  node), with and without the sha2-256 check of every block a store does on ``get``;
- *ranges*: random 64 KiB range reads (the pieces one level at a time, as the gateway does);
- *hamt*: name hashes per second, building a HAMT of N entries (shards encoded as dag-pb), and
  looking 1,000 names up from the root (every shard on the way decoded
  afresh: no cache) and listing the whole directory through ``hamt_lookup``/``hamt_children``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from typing import Any

from crdt.ipld.cid import CID
from crdt.ipld.dagpb import PBLink, PBNode, encode_node, node_cid
from crdt.unixfs import hamt
from crdt.unixfs.data import DataType, UnixFSData, encode_data
from crdt.unixfs.reader import (
    NextShard,
    UnixFSNode,
    check_piece,
    decode_node,
    file_pieces,
    hamt_children,
    hamt_lookup,
)

CHUNK = 256 * 1024
LINKS = 174


def build_file(data: bytes, blocks: dict[CID, bytes]) -> CID:
    level: list[tuple[CID, int, int]] = []  # cid, file bytes, tsize
    for pos in range(0, len(data), CHUNK):
        chunk = data[pos : pos + CHUNK]
        cid = CID.for_block(chunk, "raw")
        blocks[cid] = chunk
        level.append((cid, len(chunk), len(chunk)))
    while len(level) > 1:
        parents = []
        for i in range(0, len(level), LINKS):
            group = level[i : i + LINKS]
            size = sum(s for _, s, _ in group)
            fs = UnixFSData(DataType.File, filesize=size, blocksizes=tuple(s for _, s, _ in group))
            links = tuple(PBLink(c, "", t) for c, _, t in group)
            block = encode_node(PBNode(links, encode_data(fs)))
            cid = node_cid(block, 1)
            blocks[cid] = block
            parents.append((cid, size, len(block) + sum(t for _, _, t in group)))
        level = parents
    return level[0][0]


def get(blocks: dict[CID, bytes], cid: CID, verify: bool) -> bytes:
    block = blocks[cid]
    if verify and hashlib.sha256(block).digest() != cid.digest:
        raise AssertionError("hash mismatch")
    return block


def read(
    blocks: dict[CID, bytes], node: UnixFSNode, offset: int, length: int | None, verify: bool
) -> list[bytes]:
    out: list[bytes] = []
    # Depth first, in file order: pending pieces on a stack, each node's pushed reversed.
    pending: list[Any] = [(node, offset, length, 0)]
    while pending:
        item = pending.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        current, start, size, depth = item
        later: list[Any] = []
        for piece in file_pieces(current, start, size, depth):
            if piece.cid is None:
                assert piece.data is not None
                later.append(piece.data)
            else:
                child = decode_node(piece.cid, get(blocks, piece.cid, verify))
                check_piece(piece, child)
                later.append((child, piece.start, piece.length, piece.depth))
        pending.extend(reversed(later))
    return out


def shard_block(shard: hamt.Shard) -> tuple[CID, bytes]:
    fs = UnixFSData(
        DataType.HAMTShard, data=shard.bitfield, hash_type=hamt.MURMUR3_X64_64, fanout=shard.fanout
    )
    links = tuple(PBLink(x.cid, x.name, x.tsize) for x in shard.links)
    block = encode_node(PBNode(links, encode_data(fs)))
    return node_cid(block, 1), block


def lookup(blocks: dict[CID, bytes], root: CID, name: str) -> CID | None:
    found = hamt_lookup(decode_node(root, blocks[root]), name)
    while isinstance(found, NextShard):
        found = hamt_lookup(decode_node(found.cid, blocks[found.cid]), name, found.consumed)
    return None if found is None else found.cid


def listing(blocks: dict[CID, bytes], cid: CID, consumed: int = 0) -> int:
    count = 0
    for child in hamt_children(decode_node(cid, blocks[cid]), consumed):
        count += listing(blocks, child.cid, child.consumed) if isinstance(child, NextShard) else 1
    return count


class Timer:
    """Wall-clock and CPU seconds of a block (the machine may be shared: CPU time is the figure
    that does not depend on other processes)."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def rate(results: dict[str, Any], key: str, amount: float, timer: Timer, scale: float = 1) -> None:
    results[key] = round(amount / timer.wall / scale)
    results[key + "_cpu"] = round(amount / timer.cpu / scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    mib = 8 if args.quick else 64
    entries_n = 10_000 if args.quick else 100_000
    results: dict[str, Any] = {}

    rng = random.Random(23)
    data = rng.randbytes(mib * 1024 * 1024)
    blocks: dict[CID, bytes] = {}
    root = build_file(data, blocks)
    node = decode_node(root, blocks[root])
    for verify in (False, True):
        with Timer() as timer:
            got = b"".join(read(blocks, node, 0, None, verify))
        assert got == data
        rate(results, f"read_MBps{'_verified' if verify else ''}", len(data), timer, 1e6)
    count = 200
    with Timer() as timer:
        for _ in range(count):
            offset = rng.randrange(0, len(data) - 65536)
            got = b"".join(read(blocks, node, offset, 65536, True))
            assert got == data[offset : offset + 65536]
    rate(results, "range_64KiB_per_s_verified", count, timer)

    names = [f"photo-{i:07d}.jpg" for i in range(entries_n)]
    with Timer() as timer:
        for name in names:
            hamt.name_hash(name)
    rate(results, "name_hashes_per_s", len(names), timer)
    target = CID.for_block(b"x", "raw")
    entries = [hamt.HamtEntry(name, target, 1) for name in names]
    with Timer() as timer:
        built = hamt.build_hamt(entries, shard_block)
    rate(results, "hamt_build_entries_per_s", entries_n, timer)
    results["hamt_shards"] = len(built.blocks)
    shards = dict(built.blocks)
    sample = names[:: max(1, entries_n // 1000)]
    with Timer() as timer:
        for name in sample:
            assert lookup(shards, built.cid, name) == target
    rate(results, "hamt_lookups_per_s", len(sample), timer)
    with Timer() as timer:
        assert listing(shards, built.cid) == entries_n
    rate(results, "hamt_list_entries_per_s", entries_n, timer)

    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:36} {value:>12,}")


if __name__ == "__main__":
    main()
