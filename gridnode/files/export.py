"""Reading files and directories back: ``cat`` (a file's bytes, or a range of them), ``ls`` (a
directory's entries, basic or HAMT-sharded), ``get`` (a file or a whole directory tree written to
disk) and paths under a CID (``CID/a/b.png``), over any *block source*.

A block source is an object with ``async get_many(cids) -> dict[CID, bytes]`` (what it lacks is
left out): the local file store (:class:`EndpointSource`, over the CLI's endpoint, offline or
through a running node), or helper d's bitswap fetcher (gridnode/files/fetch.py), which fetches
from peers with parallel wants. Every block is re-hashed against its CID here, whatever the source
said: a block that does not hash to its CID is :class:`~crdt.errors.HashMismatch`; one the source
lacks is :class:`~gridnode.errors.MissingBlock`.

Memory stays bounded whatever the size of the file: the reader goes down the DAG one path at a
time (:func:`crdt.unixfs.reader.file_pieces`: one level of pieces per node on the path), asking
the source for at most :data:`WINDOW` children at once. The UnixFS rules (sizes that add up,
safe entry names, depth) are :mod:`crdt.unixfs.reader`'s; a directory tree deeper than
:data:`MAX_DIR_DEPTH` is refused.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from crdt.errors import GridnodeError, UnixFSTooDeep
from crdt.ipld.cid import CID
from crdt.unixfs.reader import (
    Entry,
    NextShard,
    UnixFSNode,
    check_piece,
    decode_node,
    directory_entries,
    file_pieces,
    find_entry,
    hamt_children,
    hamt_lookup,
)
from gridnode.errors import InvalidRequest, MissingBlock, NotFound

__all__ = [
    "MAX_DIR_DEPTH",
    "WINDOW",
    "BlockSource",
    "EndpointSource",
    "Listed",
    "cat",
    "get",
    "ls",
    "resolve",
]

#: Children asked of the source at once while reading a file (parallel wants for a fetcher).
WINDOW: Final = 16
#: The deepest directory tree ``get`` writes and a path walks.
MAX_DIR_DEPTH: Final = 256
#: The most HAMT shards one lookup walks down (a 256-fanout HAMT of 2**64 entries is 8 deep).
MAX_SHARD_DEPTH: Final = 64


class BlockSource(Protocol):
    async def get_many(self, cids: Sequence[CID]) -> dict[CID, bytes]: ...


class EndpointSource:
    """The local file store as a block source, through the CLI's endpoint (the data directory,
    or the running node's API: one block per request; with ``peers``, the running node asks its
    peers for a block it lacks)."""

    def __init__(self, endpoint: Any, *, peers: bool = False) -> None:
        self.endpoint = endpoint
        self.peers = peers
        #: Blocks read, and their bytes (for progress).
        self.blocks = 0
        self.bytes = 0

    async def get_many(self, cids: Sequence[CID]) -> dict[CID, bytes]:
        found = {}
        for cid in cids:
            try:
                block = (
                    self.endpoint.files_block(cid, peers=True)
                    if self.peers
                    else self.endpoint.files_block(cid)
                )
            except MissingBlock:
                continue
            found[cid] = block
            self.blocks += 1
            self.bytes += len(block)
        return found


async def fetch(source: BlockSource, cids: Sequence[CID]) -> dict[CID, bytes]:
    """The blocks of ``cids``, every one re-hashed; :class:`MissingBlock` for one not found."""
    wanted = list(dict.fromkeys(cids))
    found = await source.get_many(wanted) if wanted else {}
    for cid in wanted:
        block = found.get(cid)
        if block is None:
            raise MissingBlock(f"block {cid} is not in the file store (nor found by the source)")
        cid.verify(block)
    return found


async def node_of(source: BlockSource, cid: CID) -> UnixFSNode:
    return decode_node(cid, (await fetch(source, [cid]))[cid])


# -- paths ----------------------------------------------------------------------------------------


def split_path(text: str) -> tuple[CID, list[str]]:
    """``CID``, ``CID/a/b``, ``/ipfs/CID/a/b``: the root CID and the names below it."""
    parts = [p for p in text.removeprefix("/ipfs/").split("/") if p]
    if not parts:
        raise InvalidRequest("give a CID, or a path CID/name/...")
    try:
        root = CID.parse(parts[0])
    except GridnodeError as exc:
        raise InvalidRequest(f"not a CID: {parts[0]!r} ({exc})") from None
    if len(parts) - 1 > MAX_DIR_DEPTH:
        raise InvalidRequest(f"a path of more than {MAX_DIR_DEPTH} names")
    return root, parts[1:]


async def lookup(source: BlockSource, directory: UnixFSNode, name: str) -> Entry | None:
    """The entry ``name`` of a basic or HAMT directory, or ``None``."""
    if directory.kind == "directory":
        return find_entry(directory, name)
    node, consumed = directory, 0
    for _ in range(MAX_SHARD_DEPTH):
        found = hamt_lookup(node, name, consumed)
        if not isinstance(found, NextShard):
            return found
        node, consumed = await node_of(source, found.cid), found.consumed
    raise UnixFSTooDeep(f"HAMT deeper than {MAX_SHARD_DEPTH} shards")


async def resolve(source: BlockSource, path: str) -> UnixFSNode:
    """The node a path names (``CID`` or ``CID/a/b``); :class:`NotFound` for a name not there."""
    root, names = split_path(path)
    node = await node_of(source, root)
    walked = str(root)
    for name in names:
        if node.kind not in ("directory", "hamt"):
            raise NotFound(f"{walked} is a {node.kind}, not a directory: no {name!r} in it")
        entry = await lookup(source, node, name)
        if entry is None:
            raise NotFound(f"no {name!r} in {walked}")
        node = await node_of(source, entry.cid)
        walked += "/" + name
    return node


# -- cat ------------------------------------------------------------------------------------------


async def cat(
    source: BlockSource, node: UnixFSNode, offset: int = 0, length: int | None = None
) -> AsyncIterator[bytes]:
    """The bytes ``offset`` .. ``offset + length`` of the file ``node`` (to its end when
    ``length`` is None), in order, a block's worth at a time."""
    if offset < 0 or (length is not None and length < 0):
        raise InvalidRequest("offset and length are not negative")
    # One frame per level of the path being read: its remaining pieces.
    stack = [iter(file_pieces(node, offset, length))]
    while stack:
        pieces = list(_take(stack[-1], WINDOW))
        if not pieces:
            stack.pop()
            continue
        wanted = [p.cid for p in pieces if p.cid is not None]
        blocks = await fetch(source, wanted) if wanted else {}
        for position, piece in enumerate(pieces):
            if piece.cid is None:
                assert piece.data is not None
                yield piece.data
                continue
            child = decode_node(piece.cid, blocks[piece.cid])
            check_piece(piece, child)
            below = file_pieces(child, piece.start, piece.length, piece.depth)
            if child.links:
                # Go down now; the rest of this window comes after the child's bytes.
                rest = pieces[position + 1 :]
                stack.append(_chain(rest, stack.pop()))
                stack.append(iter(below))
                break
            for leaf in below:
                assert leaf.data is not None
                yield leaf.data


def _take(it: Any, n: int) -> list[Any]:
    out = []
    for item in it:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _chain(first: list[Any], then: Any) -> Any:
    yield from first
    yield from then


# -- ls -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """One entry of ``ls``: its name, CID and the size its parent's link gives (Tsize)."""

    name: str
    cid: CID
    tsize: int | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "cid": self.cid, "tsize": self.tsize}


async def ls(source: BlockSource, node: UnixFSNode) -> AsyncIterator[Listed]:
    """The entries of a directory (basic: in the node's order; HAMT: in bucket order, shard by
    shard, one shard in memory per level)."""
    if node.kind == "directory":
        for entry in directory_entries(node):
            yield Listed(entry.name, entry.cid, entry.tsize)
        return
    if node.kind != "hamt":
        raise InvalidRequest(f"{node.cid} is a {node.kind}, not a directory")
    stack: list[Any] = [iter(hamt_children(node, 0))]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        if isinstance(child, Entry):
            yield Listed(child.name, child.cid, child.tsize)
            continue
        if len(stack) >= MAX_SHARD_DEPTH:
            raise UnixFSTooDeep(f"HAMT deeper than {MAX_SHARD_DEPTH} shards")
        shard = await node_of(source, child.cid)
        stack.append(iter(hamt_children(shard, child.consumed)))


# -- get ------------------------------------------------------------------------------------------


async def get(
    source: BlockSource,
    node: UnixFSNode,
    target: Path,
    *,
    written: Callable[[int], None] | None = None,
) -> int:
    """Write the file or directory tree ``node`` at ``target`` (which must not exist: nothing is
    overwritten); return the bytes of file data written. A file goes to ``target.tmp`` first and
    is renamed when whole; a directory's entries are created inside it (names checked safe by the
    reader); a symlink is made as a symlink."""
    if target.exists() or target.is_symlink():
        raise InvalidRequest(f"{target} exists: give a new path (-o)")
    total = 0
    # (node, where, depth): depth-first, one directory's entries at a time.
    work: list[tuple[UnixFSNode, Path, int]] = [(node, target, 0)]
    while work:
        item, where, depth = work.pop()
        if item.kind in ("file", "raw"):
            total += await _write_file(source, item, where, written)
        elif item.kind == "symlink":
            os.symlink(item.data.decode("utf-8", "surrogateescape"), where)
        else:
            if depth >= MAX_DIR_DEPTH:
                raise UnixFSTooDeep(f"directory tree deeper than {MAX_DIR_DEPTH} levels")
            where.mkdir(mode=0o755)
            entries = [entry async for entry in ls(source, item)]
            for entry in reversed(entries):
                work.append((await node_of(source, entry.cid), where / entry.name, depth + 1))
    return total


async def _write_file(
    source: BlockSource, node: UnixFSNode, where: Path, written: Callable[[int], None] | None
) -> int:
    tmp = where.with_name(where.name + ".tmp")
    total = 0
    try:
        with tmp.open("xb") as out:
            async for chunk in cat(source, node):
                out.write(chunk)
                total += len(chunk)
                if written is not None:
                    written(len(chunk))
        tmp.replace(where)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return total
