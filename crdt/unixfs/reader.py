"""Reading UnixFS, one block at a time: what a node is, which children cover a byte range, what a
directory holds, where a name is in a HAMT, and which CIDs any block links to.

Sans-IO: every function takes a block (or a decoded :class:`UnixFSNode`) and answers about that
block alone; fetching the children it names is the caller's job (a local store, bitswap, a CAR).
A reader walks a file by calling :func:`file_pieces` on the root, fetching the child pieces,
checking each child against its piece (:func:`check_piece`) and calling :func:`file_pieces` on
it in turn, so it never holds more than one level of one path in memory.

What a node promises is checked where it can be, because blocks come from strangers:

- a file node's ``blocksizes`` are one per link, its ``filesize`` (when written) is its inline
  data plus their sum, and each child, once fetched, is a file or raw block of exactly the size
  its parent gave it (:func:`check_piece`): a lying size is an :class:`InvalidUnixFSNode`, never
  a short or long read;
- a file DAG deeper than :data:`MAX_DEPTH` levels is refused (:class:`UnixFSTooDeep`);
- a directory's entry names are unique, non-empty, and neither ``.``, ``..`` nor contain ``/``
  or NUL (a name that could walk out of the directory an export writes to is refused);
- HAMT shards are read by :func:`crdt.unixfs.hamt.read_shard`, which checks bitfield, names,
  order and that every entry sits in its own bucket.

Kinds: ``"file"`` (UnixFS File, and the legacy UnixFS Raw leaf, which holds file bytes the same
way), ``"raw"`` (a raw-codec block: all of it is file bytes), ``"directory"``, ``"hamt"`` (a HAMT
shard: the root of a sharded directory, or a shard inside one) and ``"symlink"``. UnixFS
Metadata nodes and other codecs are :class:`NotUnixFS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from crdt.errors import (
    InvalidHamt,
    InvalidQuery,
    InvalidUnixFSNode,
    NotADirectory,
    NotAFile,
    NotUnixFS,
    UnixFSTooDeep,
    UnsupportedCodec,
)
from crdt.ipld import dagcbor
from crdt.ipld.cid import CID
from crdt.ipld.dagpb import DAG_PB, PBLink
from crdt.ipld.dagpb import decode_node as decode_pb
from crdt.unixfs import hamt
from crdt.unixfs.data import DataType, UnixTime, decode_data

__all__ = [
    "DAG_CBOR",
    "MAX_DEPTH",
    "RAW",
    "Entry",
    "Kind",
    "NextShard",
    "Piece",
    "UnixFSNode",
    "check_piece",
    "decode_node",
    "directory_entries",
    "file_pieces",
    "find_entry",
    "hamt_children",
    "hamt_lookup",
    "links_of",
]

RAW: Final = 0x55
DAG_CBOR: Final = 0x71
#: The deepest file DAG read: a balanced DAG of 174-link nodes is 8 levels deep at 2**64 bytes; a
#: trickle DAG grows deeper but stays far below this for any file that can exist.
MAX_DEPTH: Final = 64

Kind = Literal["file", "raw", "directory", "hamt", "symlink"]


@dataclass(frozen=True, slots=True)
class UnixFSNode:
    """One decoded UnixFS block.

    ``size`` is the number of file bytes under a ``"file"`` or ``"raw"`` node (the symlink
    target's length for ``"symlink"``, ``None`` for directories). ``data`` is the bytes the node
    holds itself: a file's inline bytes, a raw block, a symlink's target, a HAMT shard's
    bitfield. ``blocksizes`` (files) gives the file bytes under each link; ``fanout`` (HAMT) the
    shard's width.
    """

    cid: CID
    kind: Kind
    size: int | None
    links: tuple[PBLink, ...] = ()
    data: bytes = b""
    blocksizes: tuple[int, ...] = ()
    fanout: int | None = None
    mode: int | None = None
    mtime: UnixTime | None = None


def decode_node(cid: CID, block: bytes | bytearray | memoryview) -> UnixFSNode:
    """Decode ``block`` (whose CID is ``cid``: its codec says how; the hash is not checked here)
    as UnixFS, checking what the node alone can show. :class:`NotUnixFS` for a block of another
    codec, a dag-pb node without UnixFS data, or a Metadata node."""
    if cid.codec == RAW:
        data = bytes(block)
        return UnixFSNode(cid, "raw", len(data), data=data)
    if cid.codec != DAG_PB:
        raise NotUnixFS(f"a {cid.codec_name or hex(cid.codec)} block is not UnixFS")
    pb = decode_pb(block)
    if pb.data is None:
        raise NotUnixFS("a dag-pb node without UnixFS Data")
    fs = decode_data(pb.data)
    payload = fs.data or b""
    mode, mtime = fs.mode, fs.mtime
    if fs.type in (DataType.File, DataType.Raw):
        if len(fs.blocksizes) != len(pb.links):
            raise InvalidUnixFSNode(
                f"file node has {len(pb.links)} links but {len(fs.blocksizes)} blocksizes"
            )
        size = len(payload) + sum(fs.blocksizes)
        if fs.filesize is not None and fs.filesize != size:
            raise InvalidUnixFSNode(
                f"file node says filesize {fs.filesize}; its data and blocksizes make {size}"
            )
        return UnixFSNode(
            cid, "file", size, pb.links, payload, fs.blocksizes, mode=mode, mtime=mtime
        )
    if fs.type == DataType.Directory:
        return UnixFSNode(cid, "directory", None, pb.links, mode=mode, mtime=mtime)
    if fs.type == DataType.HAMTShard:
        if fs.hash_type != hamt.MURMUR3_X64_64:
            raise InvalidUnixFSNode(f"HAMT shard with hashType {fs.hash_type}, not murmur3 (0x22)")
        if fs.fanout is None:
            raise InvalidUnixFSNode("HAMT shard without a fanout")
        hamt.fanout_bits(fs.fanout)
        return UnixFSNode(
            cid, "hamt", None, pb.links, payload, fanout=fs.fanout, mode=mode, mtime=mtime
        )
    if fs.type == DataType.Symlink:
        if pb.links:
            raise InvalidUnixFSNode("symlink node with links")
        return UnixFSNode(cid, "symlink", len(payload), data=payload, mode=mode, mtime=mtime)
    raise NotUnixFS(f"UnixFS {fs.type.name} nodes are not read")


# -- files ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a byte range of a file: either ``data`` held in the node itself (``cid`` is None),
    or bytes ``start`` .. ``start + length`` of the child file ``cid``, which its parent says is
    ``size`` bytes long and which sits ``depth`` levels below the root. ``offset`` is where the
    piece begins in the file whose node was asked."""

    offset: int
    length: int
    data: bytes | None = None
    cid: CID | None = None
    start: int = 0
    size: int = 0
    depth: int = 0


def file_pieces(
    node: UnixFSNode, offset: int = 0, length: int | None = None, depth: int = 0
) -> list[Piece]:
    """The pieces that cover bytes ``offset`` .. ``offset + length`` of the file ``node`` (to
    its end when ``length`` is None; a range past the end is cut to it), in order, one level
    down. ``depth`` is the node's own depth (a :class:`Piece`'s ``depth`` for a child)."""
    if node.kind not in ("file", "raw"):
        raise NotAFile(f"a {node.kind} is not a file")
    if offset < 0 or (length is not None and length < 0):
        raise InvalidQuery(f"byte range {offset}+{length} is negative")
    assert node.size is not None
    end = node.size if length is None else min(node.size, offset + length)
    if offset >= end:
        return []
    pieces: list[Piece] = []
    inline = len(node.data)
    if offset < inline:
        cut = min(end, inline)
        pieces.append(Piece(offset, cut - offset, data=node.data[offset:cut], depth=depth))
    pos = inline
    for link, size in zip(node.links, node.blocksizes, strict=True):
        if pos >= end:
            break
        child_end = pos + size
        if child_end > offset and size:
            if depth + 1 > MAX_DEPTH:
                raise UnixFSTooDeep(f"file DAG deeper than {MAX_DEPTH} levels")
            first = max(offset, pos)
            last = min(end, child_end)
            pieces.append(Piece(first, last - first, None, link.cid, first - pos, size, depth + 1))
        pos = child_end
    return pieces


def check_piece(piece: Piece, child: UnixFSNode) -> None:
    """Check a fetched child against the piece that named it: a file (or raw block) of exactly
    the size its parent promised. :class:`InvalidUnixFSNode` otherwise."""
    if child.kind not in ("file", "raw"):
        raise InvalidUnixFSNode(f"a file's child {child.cid} is a {child.kind}")
    if child.size != piece.size:
        raise InvalidUnixFSNode(
            f"a file's child {child.cid} holds {child.size} bytes; its parent says {piece.size}"
        )


# -- directories ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry: its name, the CID it links to and the Tsize the link gives."""

    name: str
    cid: CID
    tsize: int | None


@dataclass(frozen=True, slots=True)
class NextShard:
    """A child shard of a HAMT directory: read it with :func:`hamt_children` or
    :func:`hamt_lookup` passing ``consumed`` (the hash bits the shards above it took)."""

    cid: CID
    consumed: int
    tsize: int | None


def _check_name(name: str | None) -> str:
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise InvalidUnixFSNode(f"directory entry name {name!r} is not allowed")
    return name


def directory_entries(node: UnixFSNode) -> list[Entry]:
    """The entries of a basic (not sharded) directory, in the node's order. Names must be unique
    and safe (see the module docstring)."""
    if node.kind != "directory":
        raise NotADirectory(f"a {node.kind} is not a basic directory")
    seen: set[str] = set()
    out = []
    for link in node.links:
        name = _check_name(link.name)
        if name in seen:
            raise InvalidUnixFSNode(f"directory entry name {name!r} appears twice")
        seen.add(name)
        out.append(Entry(name, link.cid, link.tsize))
    return out


def find_entry(node: UnixFSNode, name: str) -> Entry | None:
    """The entry ``name`` of a basic directory, or None (the whole node is checked first)."""
    for entry in directory_entries(node):
        if entry.name == name:
            return entry
    return None


def _shard(node: UnixFSNode, consumed: int, check_buckets: bool) -> tuple[hamt.HamtChild, ...]:
    if node.kind != "hamt":
        if consumed:  # reached through a NextShard: the DAG is wrong, not the question
            raise InvalidHamt(f"a HAMT's child shard {node.cid} is a {node.kind}")
        raise NotADirectory(f"a {node.kind} is not a HAMT shard")
    assert node.fanout is not None
    links = [(link.name, link.cid, link.tsize) for link in node.links]
    return hamt.read_shard(links, node.data, node.fanout, consumed if check_buckets else None)


def hamt_children(node: UnixFSNode, consumed: int = 0) -> list[Entry | NextShard]:
    """A HAMT shard's links in bucket order: its entries and its child shards to read next.
    ``consumed`` is the hash bits the shards above took (0 for the directory's root shard)."""
    children = _shard(node, consumed, True)
    assert node.fanout is not None
    below = consumed + hamt.fanout_bits(node.fanout)
    out: list[Entry | NextShard] = []
    for child in children:
        if child.name is None:
            out.append(NextShard(child.cid, below, child.tsize))
        else:
            out.append(Entry(_check_name(child.name), child.cid, child.tsize))
    return out


def hamt_lookup(node: UnixFSNode, name: str, consumed: int = 0) -> Entry | NextShard | None:
    """Where ``name`` is from this HAMT shard: its entry, the child shard to look in next, or
    None when the directory has no such name.

    The shard's structure is checked as for a listing, but the other entries' names are not
    hashed: the answer comes from ``name``'s own bucket, as go's and js's, and an entry filed in
    a wrong bucket cannot be found this way (a listing refuses it)."""
    children = _shard(node, consumed, False)
    assert node.fanout is not None
    child = hamt.lookup_child(children, name, node.fanout, consumed)
    if child is None:
        return None
    if child.name is None:
        return NextShard(child.cid, consumed + hamt.fanout_bits(node.fanout), child.tsize)
    return Entry(_check_name(child.name), child.cid, child.tsize)


# -- links of any block ---------------------------------------------------------------------------


def links_of(cid: CID, block: bytes | bytearray | memoryview) -> list[CID]:
    """The CIDs a block links to, in order (duplicates kept): a dag-pb node's links, none for a
    raw block, every CID inside a DAG-CBOR value. The block is decoded strictly; its hash is not
    checked here. :class:`UnsupportedCodec` for any other codec."""
    if cid.codec == RAW:
        return []
    if cid.codec == DAG_PB:
        return [link.cid for link in decode_pb(block).links]
    if cid.codec == DAG_CBOR:
        out: list[CID] = []
        stack: list[Any] = [dagcbor.decode(block)]
        while stack:
            value = stack.pop()
            if isinstance(value, CID):
                out.append(value)
            elif isinstance(value, dict):
                stack.extend(reversed(list(value.values())))
            elif isinstance(value, list):
                stack.extend(reversed(value))
        return out
    raise UnsupportedCodec(f"cannot read the links of a {cid.codec_name or hex(cid.codec)} block")
