"""The UnixFS importer: bytes and directory entries in, blocks byte-identical with Kubo's out.

Pure and streaming. :class:`FileImporter` takes a file's bytes in pieces of any size and returns
each block as soon as it is final, so whatever the file's size it holds at most one chunk of bytes
and, per tree level, ``max_links`` links (a few dozen KiB); the caller stores the blocks and
forgets them. :class:`DirectoryImporter` takes a directory's entries (name, CID, Tsize) once their
DAGs are built and makes one basic directory node, or a HAMT of shards when the profile's
threshold is passed (:mod:`crdt.unixfs.hamt`).

The file layout is go's ``balanced`` builder (boxo ``ipld/unixfs/importer/balanced``), which
IPIP-499 names: fixed-size chunks become leaves (raw blocks, or dag-pb nodes holding a UnixFS
``File`` with the bytes); leaves are grouped ``max_links`` at a time under ``File`` nodes, those in
turn ``max_links`` at a time, and so on, every leaf at the same depth: the smallest depth whose
capacity ``max_links ** depth`` holds every chunk. A file of one chunk is that leaf alone; an
empty file is an empty leaf. A node is only made once the next chunk shows that its level is full
(or at :meth:`FileImporter.close`), which builds exactly go's tree without knowing the file's
size in advance. Links of file nodes carry an empty Name and the child's Tsize (its block's length
plus its own links' Tsizes); the node's UnixFS ``blocksizes`` are the children's file sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from crdt.errors import UnixFSEncodeError
from crdt.ipld.cid import CID
from crdt.ipld.dagpb import PBLink, PBNode, decode_node, encode_node, node_cid
from crdt.ipld.protobuf import encode_uvarint
from crdt.unixfs.data import (
    HASH_MURMUR3_X64_64,
    DataType,
    UnixFSData,
    UnixTime,
    decode_data,
    encode_data,
)
from crdt.unixfs.hamt import HamtEntry, Shard, build_hamt
from crdt.unixfs.profiles import Profile, get_profile

__all__ = [
    "Block",
    "DirectoryImporter",
    "DirectoryRoot",
    "FileImporter",
    "FileRoot",
    "import_bytes",
    "import_symlink",
    "link_block_bytes",
    "links_bytes",
]

#: One block: its CID and bytes.
Block = tuple[CID, bytes]

_RAW: Final = 0x55
_EMPTY_FILE_LEAF: Final = encode_node(
    PBNode((), encode_data(UnixFSData(DataType.File, filesize=0)))
)


@dataclass(frozen=True, slots=True)
class FileRoot:
    """A finished file: its root CID, its size in bytes, the Tsize of its whole DAG (what a
    directory link to it carries) and the blocks :meth:`FileImporter.close` emitted (the root
    last; :func:`import_bytes`: every block of the file)."""

    cid: CID
    size: int
    tsize: int
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DirectoryRoot:
    """A finished directory: its root CID, the Tsize of its DAG and its own blocks (one basic
    directory node, or the HAMT shards, root last)."""

    cid: CID
    tsize: int
    blocks: list[Block] = field(default_factory=list)
    sharded: bool = False


def _check_attributes(
    mode: int | None, mtime: UnixTime | None
) -> tuple[int | None, UnixTime | None]:
    """Optional metadata (IPIP-499: opt-in): ``mode`` the Unix permission bits (0..0o7777, as
    Kubo's ``--mode``/``--preserve-mode`` store them), ``mtime`` a :class:`UnixTime`."""
    if mode is not None and not 0 <= mode <= 0o7777:
        raise UnixFSEncodeError(f"mode {mode:#o} is not permission bits (0..0o7777)")
    if mtime is not None:
        encode_data(UnixFSData(DataType.File, mtime=mtime))  # range checks, typed errors
    return mode, mtime


@dataclass(frozen=True, slots=True)
class _Link:
    cid: CID
    tsize: int  # the child's DAG size (the dag-pb link's Tsize)
    filesize: int  # the file bytes under the child (the parent's blocksize for it)


class FileImporter:
    """Chunks a file and builds its balanced DAG as the bytes arrive (see the module docstring).

    ``write`` returns the blocks finished so far, ``close`` the rest with the root. Blocks come
    out leaves first, each parent after all its children.
    """

    def __init__(
        self,
        profile: Profile | str | None = None,
        *,
        mode: int | None = None,
        mtime: UnixTime | None = None,
    ) -> None:
        self.profile = get_profile(profile)
        self._chunk = self.profile.chunk_size
        self._max_links = self.profile.max_links
        self._buffer = bytearray()
        self._levels: list[list[_Link]] = []  # pending links at each level; 0: the leaves
        self._size = 0
        self._closed = False
        self._mode, self._mtime = _check_attributes(mode, mtime)
        # Metadata needs a dag-pb root, so (as Kubo) no raw leaves at all then; and the first
        # leaf is held back until a second one shows it is not the root.
        self._attributes = mode is not None or mtime is not None
        self._raw_leaves = self.profile.raw_leaves and not self._attributes
        self._first: tuple[Block, bytes] | None = None

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> list[Block]:
        """Add the file's next bytes; the blocks that became final."""
        if self._closed:
            raise ValueError("write after close")
        out: list[Block] = []
        view = memoryview(data).cast("B")
        self._size += len(view)
        chunk = self._chunk
        pos = 0
        buffer = self._buffer
        if buffer:
            take = min(chunk - len(buffer), len(view))
            buffer += view[:take]
            pos = take
            if len(buffer) < chunk:
                return out
            self._leaf(buffer, out)
            buffer.clear()
        end = len(view)
        while end - pos >= chunk:
            self._leaf(view[pos : pos + chunk], out)
            pos += chunk
        if pos < end:
            buffer += view[pos:]
        return out

    def close(self) -> FileRoot:
        """Finish the file: its root, with the blocks not yet returned (the root last)."""
        if self._closed:
            raise ValueError("close after close")
        self._closed = True
        out: list[Block] = []
        if self._buffer or not self._levels:  # the last partial chunk, or the empty file's leaf
            self._leaf(self._buffer, out)
            self._buffer = bytearray()
        levels = self._levels
        depth = 0
        # Every level below the top holds at least one link (a flush always leaves the link
        # that caused it): fold them upwards until one link remains at the top; a node made of
        # the top level's links is the root.
        while True:
            top = len(levels) - 1
            if depth == top and len(levels[depth]) == 1:
                root = levels[depth][0]
                break
            links, levels[depth] = levels[depth], []
            if depth == top:
                root = self._node(links, out, root=True)
                break
            self._push(depth + 1, self._node(links, out), out)
            depth += 1
        if self._first is not None:  # a file of one chunk with metadata: that leaf, with it
            _block, chunk = self._first
            self._first = None
            block = self._leaf_block(chunk, attributes=True)
            cid = node_cid(block, self.profile.cid_version)
            out.append((cid, block))
            root = _Link(cid, len(block), len(chunk))
        return FileRoot(root.cid, root.filesize, root.tsize, out)

    # -- building -------------------------------------------------------------------------------

    def _leaf(self, chunk: bytes | bytearray | memoryview, out: list[Block]) -> None:
        size = len(chunk)
        if self._raw_leaves:
            data = bytes(chunk)
            cid = CID.for_block(data, codec=_RAW)
            out.append((cid, data))
            self._push(0, _Link(cid, size, size), out)
            return
        block = self._leaf_block(chunk)
        cid = node_cid(block, self.profile.cid_version)
        if self._attributes:
            if not self._levels:  # the first leaf: the root if no other comes
                self._first = ((cid, block), bytes(chunk))
                self._push(0, _Link(cid, len(block), size), out)
                return
            if self._first is not None:
                out.append(self._first[0])
                self._first = None
        out.append((cid, block))
        self._push(0, _Link(cid, len(block), size), out)

    def _leaf_block(self, chunk: bytes | bytearray | memoryview, attributes: bool = False) -> bytes:
        """A dag-pb leaf: UnixFS {Type: File, Data: chunk, filesize: len} (and the metadata)."""
        size = len(chunk)
        if attributes:
            unixfs = UnixFSData(
                DataType.File,
                data=bytes(chunk) or None,
                filesize=size,
                mode=self._mode,
                mtime=self._mtime,
            )
            return encode_node(PBNode((), encode_data(unixfs)))
        if not size:
            return _EMPTY_FILE_LEAF
        # Written with one copy of the chunk (encode_node(PBNode((), encode_data(...))) makes
        # the same bytes with two more; tests hold the two equal).
        varint = encode_uvarint(size)
        inner = 4 + 2 * len(varint) + size
        return b"".join(
            (b"\x0a", encode_uvarint(inner), b"\x08\x02\x12", varint, chunk, b"\x18", varint)
        )

    def _push(self, depth: int, link: _Link, out: list[Block]) -> None:
        """Add a link at ``depth``; a full level becomes a node one level up first."""
        levels = self._levels
        if depth == len(levels):
            levels.append([])
        if len(levels[depth]) == self._max_links:
            links, levels[depth] = levels[depth], []
            self._push(depth + 1, self._node(links, out), out)
        levels[depth].append(link)

    def _node(self, links: list[_Link], out: list[Block], root: bool = False) -> _Link:
        filesize = sum(link.filesize for link in links)
        unixfs = UnixFSData(
            DataType.File,
            filesize=filesize,
            blocksizes=tuple(link.filesize for link in links),
            mode=self._mode if root else None,
            mtime=self._mtime if root else None,
        )
        if self._first is not None:  # the held-back first leaf is a child after all
            out.append(self._first[0])
            self._first = None
        node = PBNode(
            tuple(PBLink(link.cid, "", link.tsize) for link in links), encode_data(unixfs)
        )
        block = encode_node(node)
        cid = node_cid(block, self.profile.cid_version)
        out.append((cid, block))
        return _Link(cid, len(block) + sum(link.tsize for link in links), filesize)


def import_bytes(
    data: bytes | bytearray | memoryview, profile: Profile | str | None = None
) -> FileRoot:
    """Import a whole file held in memory; the root's ``blocks`` are every block of the file."""
    importer = FileImporter(profile)
    blocks = importer.write(data)
    root = importer.close()
    return FileRoot(root.cid, root.size, root.tsize, blocks + root.blocks)


def import_symlink(
    target: str, profile: Profile | str | None = None, *, mtime: UnixTime | None = None
) -> FileRoot:
    """A symbolic link kept as a link (IPIP-499: symlinks preserved, as ``ipfs add -r`` does): one
    dag-pb node holding a UnixFS ``Symlink`` whose Data is the target's UTF-8 bytes (not resolved,
    not checked), and ``mtime`` if given (Kubo stores no mode on a symlink). ``size`` is the
    target's length in bytes."""
    _check_attributes(None, mtime)
    try:
        raw = target.encode("utf-8")
    except UnicodeEncodeError:
        raise UnixFSEncodeError(f"symlink target {target!r} is not valid Unicode") from None
    if not raw or b"\0" in raw:
        raise UnixFSEncodeError(f"invalid symlink target {target!r}")
    unixfs = UnixFSData(DataType.Symlink, data=raw, mtime=mtime)
    block = encode_node(PBNode((), encode_data(unixfs)))
    cid = node_cid(block, get_profile(profile).cid_version)
    return FileRoot(cid, len(raw), len(block), [(cid, block)])


# -- directories --------------------------------------------------------------------------------


def _check_name(name: str) -> bytes:
    if not isinstance(name, str):
        raise UnixFSEncodeError(f"directory entry name must be a str, not {type(name).__name__}")
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise UnixFSEncodeError(f"invalid directory entry name {name!r}")
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnixFSEncodeError(f"directory entry name {name!r} is not valid Unicode") from None


def links_bytes(entries: list[tuple[bytes, CID, int]]) -> int:
    """IPIP-499's ``links-bytes`` estimate: the names' UTF-8 lengths plus the binary CIDs'."""
    return sum(len(name) + len(cid.bytes) for name, cid, _ in entries)


def _varint_len(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def link_block_bytes(name: bytes, cid: CID, tsize: int) -> int:
    """What one named link with a Tsize adds to a dag-pb node's encoded length."""
    raw = len(cid.bytes)
    inner = 3 + _varint_len(raw) + raw + _varint_len(len(name)) + len(name) + _varint_len(tsize)
    return 1 + _varint_len(inner) + inner


class DirectoryImporter:
    """Collects a directory's entries; :meth:`close` makes its node(s).

    The entries stay in memory until ``close`` (a directory's links must be sorted by name), a
    few hundred bytes each. The profile's size estimate is kept as entries arrive, so a directory
    that will be sharded never has its (large) basic node built. Names are UTF-8, non-empty,
    without ``/`` or NUL, not ``.`` or ``..``, and unique (:class:`UnixFSEncodeError` otherwise).
    """

    def __init__(
        self,
        profile: Profile | str | None = None,
        *,
        mode: int | None = None,
        mtime: UnixTime | None = None,
    ) -> None:
        self.profile = get_profile(profile)
        self._entries: list[tuple[bytes, CID, int]] = []
        self._names: set[bytes] = set()
        self._mode, self._mtime = _check_attributes(mode, mtime)
        self._data = encode_data(UnixFSData(DataType.Directory, mode=mode, mtime=mtime))
        self._links_estimate = profile_links = self.profile.hamt_estimate == "links-bytes"
        # the estimate of the basic node: links-bytes, or its exact encoded length (its Data
        # field: the key, the length, the UnixFS bytes)
        self._estimate = 0 if profile_links else 2 + len(self._data)
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def estimate(self) -> int:
        """The profile's estimate of the basic directory node so far (sharded once above the
        profile's ``hamt_threshold``)."""
        return self._estimate

    def add(self, name: str, cid: CID, tsize: int) -> None:
        if self._closed:
            raise ValueError("add after close")
        raw = _check_name(name)
        if raw in self._names:
            raise UnixFSEncodeError(f"directory entry name {name!r} given twice")
        if not 0 <= tsize < 1 << 64:
            raise UnixFSEncodeError(f"Tsize {tsize} of {name!r} outside 0..2**64-1")
        self._names.add(raw)
        self._entries.append((raw, cid, tsize))
        if self._links_estimate:
            self._estimate += len(raw) + len(cid.bytes)
        else:
            self._estimate += link_block_bytes(raw, cid, tsize)

    def close(self) -> DirectoryRoot:
        if self._closed:
            raise ValueError("close after close")
        self._closed = True
        entries = sorted(self._entries, key=lambda entry: entry[0])
        self._entries = []
        self._names = set()
        profile = self.profile
        if self._estimate <= profile.hamt_threshold:
            links = tuple(PBLink(cid, name.decode(), tsize) for name, cid, tsize in entries)
            block = encode_node(PBNode(links, self._data))
            cid = node_cid(block, profile.cid_version)
            tsize = len(block) + sum(tsize for _, _, tsize in entries)
            return DirectoryRoot(cid, tsize, [(cid, block)])
        built = build_hamt(
            (HamtEntry(name.decode(), cid, tsize) for name, cid, tsize in entries),
            self._encode_shard,
            profile.hamt_fanout,
        )
        blocks = list(built.blocks)
        cid, tsize = built.cid, built.tsize
        if self._mode is not None or self._mtime is not None:
            # the root shard carries the metadata (boxo's Shard.SetStat); nothing links to it
            node = decode_node(blocks[-1][1])
            unixfs = replace(decode_data(node.data or b""), mode=self._mode, mtime=self._mtime)
            block = encode_node(PBNode(node.links, encode_data(unixfs)))
            cid = node_cid(block, profile.cid_version)
            tsize += len(block) - len(blocks[-1][1])
            blocks[-1] = (cid, block)
        return DirectoryRoot(cid, tsize, blocks, sharded=True)

    def _encode_shard(self, shard: Shard) -> tuple[CID, bytes]:
        unixfs = UnixFSData(
            DataType.HAMTShard,
            data=shard.bitfield,
            hash_type=HASH_MURMUR3_X64_64,
            fanout=shard.fanout,
        )
        links = tuple(PBLink(link.cid, link.name, link.tsize) for link in shard.links)
        block = encode_node(PBNode(links, encode_data(unixfs)))
        return node_cid(block, self.profile.cid_version), block
