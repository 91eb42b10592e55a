"""UnixFS files built and read back by hand for the fetch tests (the importer's byte-exactness with
Kubo is tested in tests/crdt/unixfs; here any valid UnixFS file will do): raw leaves under a
balanced tree of dag-pb File nodes, and a reader that walks one and returns its bytes."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from crdt.ipld.cid import CID
from crdt.ipld.dagpb import PBLink, PBNode, decode_node, encode_node
from crdt.unixfs.data import DataType, UnixFSData, decode_data, encode_data

RAW, DAG_PB = 0x55, 0x70


def build_file(
    data: bytes, *, chunk: int = 1 << 20, max_links: int = 1024
) -> tuple[CID, dict[CID, bytes]]:
    """A UnixFS file: raw leaves of ``chunk`` bytes, at most ``max_links`` links a node."""
    blocks: dict[CID, bytes] = {}
    level: list[tuple[CID, int, int]] = []  # (cid, file bytes, tsize)
    for start in range(0, max(1, len(data)), chunk):
        piece = data[start : start + chunk]
        cid = CID.for_block(piece, codec="raw")
        blocks[cid] = piece
        level.append((cid, len(piece), len(piece)))
    while len(level) > 1:
        up = []
        for start in range(0, len(level), max_links):
            group = level[start : start + max_links]
            meta = UnixFSData(
                DataType.File,
                filesize=sum(size for _c, size, _t in group),
                blocksizes=tuple(size for _c, size, _t in group),
            )
            node = encode_node(
                PBNode(tuple(PBLink(c, "", t) for c, _s, t in group), encode_data(meta))
            )
            cid = CID.for_block(node, codec="dag-pb")
            blocks[cid] = node
            up.append((cid, meta.filesize or 0, len(node) + sum(t for _c, _s, t in group)))
        level = up
    return level[0][0], blocks


def read_file(root: CID, get: Callable[[CID], bytes | None] | Mapping[CID, bytes]) -> bytes:
    """The bytes of the UnixFS file at ``root`` (depth first; raw or dag-pb leaves)."""
    lookup = get.get if isinstance(get, Mapping) else get
    out = bytearray()
    stack = [root]
    while stack:
        cid = stack.pop()
        block = lookup(cid)
        assert block is not None, f"missing block {cid}"
        if cid.codec == RAW:
            out += block
            continue
        node = decode_node(block)
        meta = decode_data(node.data or b"")
        assert meta.type in (DataType.File, DataType.Raw), meta.type
        out += meta.data or b""
        stack.extend(link.cid for link in reversed(node.links))
    return bytes(out)


def pseudo_random(size: int, seed: int = 1) -> bytes:
    """``size`` deterministic bytes that do not compress or repeat by chunk."""
    import hashlib

    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed.to_bytes(8, "big") + counter.to_bytes(8, "big")).digest() * 32
        counter += 1
    return bytes(out[:size])
