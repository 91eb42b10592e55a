"""TEMPORARY stand-in for crdt/unixfs/reader.py (helper wt23-e), with the subset of its agreed
interface the gateway uses, so the gateway can be built and tested before the reader lands.
Replaced by ``from crdt.unixfs import reader`` when it does."""

from __future__ import annotations

from dataclasses import dataclass

from crdt.errors import UnixFSDecodeError
from crdt.ipld import dagpb
from crdt.ipld.cid import CID
from crdt.unixfs.data import DataType, decode_data

InvalidUnixFS = UnixFSDecodeError

_KINDS = {
    DataType.Raw: "file",
    DataType.File: "file",
    DataType.Directory: "directory",
    DataType.HAMTShard: "hamt",
    DataType.Symlink: "symlink",
    DataType.Metadata: "metadata",
}


@dataclass(frozen=True)
class UnixFSNode:
    cid: CID
    kind: str
    size: int
    data: bytes | None
    links: tuple[dagpb.PBLink, ...]
    blocksizes: tuple[int, ...]
    fanout: int | None


@dataclass(frozen=True)
class Piece:
    cid: CID | None
    data: bytes
    offset: int
    length: int


@dataclass(frozen=True)
class Entry:
    name: str
    cid: CID
    tsize: int | None


@dataclass(frozen=True)
class HamtStep:
    cid: CID
    shard: bool


@dataclass(frozen=True)
class HamtItem:
    name: str
    cid: CID
    tsize: int | None
    shard: bool


def decode_node(cid: CID, block: bytes) -> UnixFSNode:
    if cid.codec == 0x55:
        return UnixFSNode(cid, "raw", len(block), block, (), (), None)
    if cid.codec != 0x70:
        raise InvalidUnixFS(f"{cid} is not dag-pb or raw")
    pb = dagpb.decode_node(block)
    if pb.data is None:
        raise InvalidUnixFS(f"{cid} has no UnixFS Data")
    data = decode_data(pb.data)
    kind = _KINDS[data.type]
    size = 0
    if kind == "file":
        inline = len(data.data or b"")
        if len(data.blocksizes) != len(pb.links):
            raise InvalidUnixFS(f"{cid}: {len(pb.links)} links, {len(data.blocksizes)} blocksizes")
        size = inline + sum(data.blocksizes)
        if data.filesize is not None and data.filesize != size:
            raise InvalidUnixFS(f"{cid}: filesize {data.filesize}, its parts {size}")
    return UnixFSNode(cid, kind, size, data.data, pb.links, data.blocksizes, data.fanout)


def file_pieces(node: UnixFSNode, offset: int, length: int) -> list[Piece]:
    end = offset + length
    out: list[Piece] = []
    if node.kind == "raw" or not node.links:
        data = node.data or b""
        return [Piece(None, data[offset:end], 0, min(end, len(data)) - offset)]
    pos = 0
    data = node.data or b""
    if data:
        if offset < len(data):
            out.append(Piece(None, data[offset:end], 0, 0))
        pos = len(data)
    for link, size in zip(node.links, node.blocksizes, strict=True):
        start, stop = max(offset, pos), min(end, pos + size)
        if start < stop:
            out.append(Piece(link.cid, b"", start - pos, stop - start))
        pos += size
        if pos >= end:
            break
    return out


def directory_entries(node: UnixFSNode) -> list[Entry]:
    return [Entry(link.name or "", link.cid, link.tsize) for link in node.links]


def hamt_lookup(root: UnixFSNode, node: UnixFSNode, name: str, level: int) -> HamtStep | None:
    raise InvalidUnixFS("HAMT not yet")


def hamt_children(node: UnixFSNode) -> list[HamtItem]:
    raise InvalidUnixFS("HAMT not yet")


def links_of(cid: CID, block: bytes) -> list[CID]:
    if cid.codec == 0x55:
        return []
    return [link.cid for link in dagpb.decode_node(block).links]
