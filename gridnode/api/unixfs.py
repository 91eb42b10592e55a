"""The gateway's UnixFS answers: files and directories under ``/ipfs/{cid}/...``, as the IPFS
HTTP path gateway specs describe (docs/http.md).

A request names a root CID and a path below it. :func:`resolve` walks the path one name at a
time through basic directories and HAMT-sharded ones (:mod:`crdt.unixfs.reader` decodes each
node; a HAMT lookup reads only the shards on the name's way). What it finds is answered:

- **a file** (or a raw block): its bytes, with a content type from the name's extension or
  sniffed from its first bytes (:mod:`gridnode.api.httpbits`), ``Accept-Ranges: bytes``, and a
  single ``Range`` (206 with ``Content-Range``, 416 when no byte of it is in the file);
- **a directory**: at a path without a trailing ``/``, a 301 to the one with it (relative links
  in its pages then work); then its ``index.html`` if it has one, else an HTML listing;
- ``?format=raw``: the block the path ends at; ``?format=car``: a CAR v1 of it (``dag-scope``
  ``block``, ``entity`` or ``all``) with the blocks of the path before it, so a client verifies
  the path too.

Etags: a file's and an index.html's is its CID (``"<cid>"``), a listing's names the listing's
template and the directory (``"DirIndex-<version>_CID-<cid>"``). Everything under ``/ipfs/`` is
immutable (``Cache-Control: public, max-age=29030400, immutable``), a listing for a week.

**Bounded memory.** A file is read a batch of blocks at a time (:data:`BATCH_BYTES`, one
storage-worker call per batch): :class:`FileReader` holds the pieces still to read (CIDs and
offsets, at most the tree's depth times its fan-out) and one batch, never the file. Answers of
at most :data:`LIGHT_BYTES` are read whole and sent at once; larger ones are streamed with their
length known (``Content-Length``), at most :data:`gridnode.api.asgi.MAX_FILE_STREAMS` at a time
(503 past that). A hostile DAG gets a typed error: a tree deeper than :data:`MAX_DEPTH`, a node
whose sizes disagree with its children's (the reader's checks, and the byte count of the answer
against the size it announced: a stream that would send a byte more or less is cut), a path
longer than :data:`MAX_PATH_NAMES`, a listing is cut at :data:`MAX_LISTING` entries.

Where blocks come from is a :class:`BlockSource` (``get_many``): in the node, the blocks it serves
(its file store, ``repo.files``, then :meth:`gridnode.repo.Repo.served_blocks`; each re-hashed
against its CID as it is read), read in the storage worker, one call per batch
(:class:`RepoBlocks`).

Refused here: HTTP plumbing (:mod:`gridnode.api.asgi`), parsing headers
(:mod:`gridnode.api.httpbits`), and decoding blocks (:mod:`crdt.unixfs.reader`).
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import quote, urlencode

from crdt.errors import DecodeError, InvalidUnixFSNode, UnixFSTooDeep
from crdt.ipld.car import car_section_bytes, car_v1_header_bytes
from crdt.ipld.cid import CID
from crdt.unixfs import reader
from crdt.unixfs.reader import Entry, Piece
from gridnode import jsonvalue
from gridnode.api import httpbits
from gridnode.api.errors import ERROR_HEADER
from gridnode.api.gateway import CAR, RAW, wanted_format
from gridnode.api.httpbits import ByteRange, ListedEntry
from gridnode.errors import InvalidRequest, NotFound, RangeNotSatisfiable

if TYPE_CHECKING:
    from gridnode.node import Node
    from gridnode.repo import Repo

__all__ = [
    "BATCH_BYTES",
    "CACHE_BYTES",
    "CACHE_NODES",
    "DAG_PB",
    "LIGHT_BYTES",
    "MAX_DEPTH",
    "MAX_LISTING",
    "MAX_LISTING_SHARDS",
    "MAX_PATH_NAMES",
    "RAW_CODEC",
    "Answer",
    "Asked",
    "BlockSource",
    "CarWriter",
    "FileReader",
    "NodeCache",
    "RepoBlocks",
    "Resolved",
    "answer",
    "car_type",
    "is_unixfs",
    "list_directory",
    "read_head",
    "resolve",
]

DAG_PB: Final = 0x70
RAW_CODEC: Final = 0x55
#: Bytes of blocks one storage-worker call reads for a streamed answer (about).
BATCH_BYTES: Final = 2 * 1024 * 1024
#: Answers of at most this many bytes are read whole and sent at once (not streamed).
LIGHT_BYTES: Final = 256 * 1024
#: Blocks a CAR answer asks the source for at once (the rest of its memory: their bytes).
CAR_BATCH: Final = 16
#: Decoded inner nodes a node keeps (:class:`NodeCache`), and the bytes of their blocks.
CACHE_NODES: Final = 1024
CACHE_BYTES: Final = 32 * 1024 * 1024
#: A file tree or a HAMT deeper than this is refused.
MAX_DEPTH: Final = 64
#: A path with more names than this is refused.
MAX_PATH_NAMES: Final = 256
#: A listing shows at most this many entries.
MAX_LISTING: Final = 5000
#: A listing reads at most this many HAMT shards.
MAX_LISTING_SHARDS: Final = 4096
#: Immutable answers' cache lifetime (a year less a few days, as IPFS gateways send).
IMMUTABLE: Final = "public, max-age=29030400, immutable"
#: A directory listing's: its page may change with the gateway's version.
LISTING_CACHE: Final = "public, max-age=604800, stale-while-revalidate=2678400"


class BlockSource(Protocol):
    """Where blocks come from: each asked CID's verified block, absent when not held."""

    async def get_many(self, cids: Sequence[CID]) -> dict[CID, bytes]: ...


class NodeCache:
    """Decoded inner nodes (those with links: a file's tree, directories, HAMT shards) with their
    blocks, the most recently used kept, at most :data:`CACHE_NODES` of them and
    :data:`CACHE_BYTES` of blocks. Decoding a 1024-link node costs tens of milliseconds in pure
    Python: a player's every Range read would decode the file's root again. The content is
    immutable (its CID), so a cached node is never stale; leaves are never cached."""

    def __init__(self, entries: int | None = None, size: int | None = None) -> None:
        self._entries = CACHE_NODES if entries is None else entries
        self._limit = CACHE_BYTES if size is None else size
        self._held: OrderedDict[CID, tuple[reader.UnixFSNode, bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, cid: CID) -> tuple[reader.UnixFSNode, bytes] | None:
        found = self._held.get(cid)
        if found is not None:
            self._held.move_to_end(cid)
        return found

    def put(self, node: reader.UnixFSNode, block: bytes) -> None:
        if not node.links or node.cid in self._held or len(block) > self._limit:
            return
        self._held[node.cid] = (node, block)
        self._bytes += len(block)
        while len(self._held) > self._entries or self._bytes > self._limit:
            _cid, (_node, old) = self._held.popitem(last=False)
            self._bytes -= len(old)


#: Each running node's cache of decoded nodes (gone with the node).
_CACHES: Final[weakref.WeakKeyDictionary[object, NodeCache]] = weakref.WeakKeyDictionary()


class RepoBlocks:
    """The blocks a running node serves (:meth:`gridnode.repo.Repo.served_blocks`), read in
    its storage worker, one call per batch; with the node's :class:`NodeCache`."""

    def __init__(self, node: Node) -> None:
        self._node = node
        cache = _CACHES.get(node)
        if cache is None:
            cache = _CACHES[node] = NodeCache()
        self.nodes = cache

    async def get_many(self, cids: Sequence[CID]) -> dict[CID, bytes]:
        found: dict[CID, bytes] = await self._node.worker.run(_served, self._node.repo, list(cids))
        return found


def _served(repo: Repo, cids: list[CID]) -> dict[CID, bytes]:
    """The file store first (UnixFS blocks are its; a database's are DAG-CBOR), then the rest of
    what the node serves."""
    found = repo.files.get_many([cid for cid in cids if is_unixfs(cid)])
    rest = [cid for cid in cids if cid not in found]
    if rest:
        found.update((c, b) for c, b in repo.served_blocks(rest).items() if b is not None)
    return found


def is_unixfs(cid: CID) -> bool:
    """Whether the gateway reads ``cid`` as UnixFS (dag-pb, or a raw block: a file's bytes)."""
    return cid.codec in (DAG_PB, RAW_CODEC)


async def _one(source: BlockSource, cid: CID, what: str) -> bytes:
    block = (await source.get_many([cid])).get(cid)
    if block is None:
        raise NotFound(f"block {cid} ({what}) is not held by this node")
    return block


def _cache(source: BlockSource) -> NodeCache | None:
    cache = getattr(source, "nodes", None)
    return cache if isinstance(cache, NodeCache) else None


def _decode(source: BlockSource, cid: CID, block: bytes) -> reader.UnixFSNode:
    """``reader.decode_node``, the result kept in the source's cache if it has one."""
    node = reader.decode_node(cid, block)
    cache = _cache(source)
    if cache is not None:
        cache.put(node, block)
    return node


async def _node(source: BlockSource, cid: CID, what: str) -> tuple[reader.UnixFSNode, bytes]:
    """The decoded node of ``cid`` and its block: from the cache, else read and decoded."""
    cache = _cache(source)
    found = None if cache is None else cache.get(cid)
    if found is not None:
        return found
    block = await _one(source, cid, what)
    return _decode(source, cid, block), block


# -- paths ----------------------------------------------------------------------------------------


@dataclass
class Resolved:
    """Where a path led: the CID and block it ends at, its decoded node, the CIDs of each name
    on the way (``X-Ipfs-Roots``) and every block read on the way (HAMT shards too, for a CAR)."""

    cid: CID
    block: bytes
    #: ``None``: a dag-pb block that is not UnixFS, asked raw or as a CAR without a path.
    node: reader.UnixFSNode | None
    roots: list[CID]
    path_blocks: list[tuple[CID, bytes]] = field(default_factory=list)


async def resolve(source: BlockSource, root: CID, names: Sequence[str]) -> Resolved:
    """Walk ``names`` from ``root``; :class:`NotFound` for a name that is not there (or a name
    below a file), a typed error for a node that is not valid UnixFS."""
    if len(names) > MAX_PATH_NAMES:
        raise InvalidRequest(f"a path of more than {MAX_PATH_NAMES} names")
    node, block = await _node(source, root, "the root")
    cid = root
    roots = [root]
    path_blocks: list[tuple[CID, bytes]] = []
    for depth, name in enumerate(names):
        where = "/".join(names[:depth]) or "the root"
        path_blocks.append((cid, block))
        if node.kind == "directory":
            entry = reader.find_entry(node, name)
            found = None if entry is None else entry.cid
        elif node.kind == "hamt":
            found = await _hamt_find(source, cid, node, name, path_blocks)
        else:
            raise NotFound(f"{where} is a {node.kind}, not a directory: no {name!r} in it")
        if found is None:
            raise NotFound(f"no {name!r} in {where}")
        cid = found
        node, block = await _node(source, cid, "/".join(names[: depth + 1]))
        roots.append(cid)
    return Resolved(cid, block, node, roots, path_blocks)


async def _hamt_find(
    source: BlockSource,
    cid: CID,
    node: reader.UnixFSNode,
    name: str,
    path_blocks: list[tuple[CID, bytes]],
) -> CID | None:
    """The CID ``name`` has in the HAMT rooted at ``node``, reading the shards on its way (the
    hash's 64 bits bound the depth: :func:`crdt.unixfs.hamt.bucket_index` refuses more)."""
    consumed = 0
    while True:
        step = reader.hamt_lookup(node, name, consumed)
        if step is None:
            return None
        if isinstance(step, Entry):
            return step.cid
        node, block = await _node(source, step.cid, f"a shard of {cid}")
        if node.kind != "hamt":
            raise InvalidUnixFSNode(f"{step.cid} in the HAMT {cid} is a {node.kind}")
        path_blocks.append((step.cid, block))
        consumed = step.consumed


async def list_directory(
    source: BlockSource, node: reader.UnixFSNode
) -> tuple[list[ListedEntry], bool]:
    """A directory's entries (at most :data:`MAX_LISTING`) and whether there were more; a HAMT's
    shards are read a level's batch at a time, and the entries sorted by name."""
    if node.kind == "directory":
        entries = reader.directory_entries(node)
        listed = [ListedEntry(e.name, str(e.cid), e.tsize) for e in entries[:MAX_LISTING]]
        return listed, len(entries) > MAX_LISTING
    out: list[ListedEntry] = []
    # Shards to read, in order: (CID, consumed), read CAR_BATCH at a time; decoded on use.
    pending: deque[tuple[CID, int]] = deque()
    shards = 0
    shard: reader.UnixFSNode | None = node
    consumed = 0
    while True:
        if shard is not None:
            for child in reader.hamt_children(shard, consumed):
                if isinstance(child, Entry):
                    out.append(ListedEntry(child.name, str(child.cid), child.tsize))
                    if len(out) >= MAX_LISTING:
                        return sorted(out, key=lambda e: e.name), True
                else:
                    shards += 1
                    if shards > MAX_LISTING_SHARDS:  # shards with hardly an entry in them
                        return sorted(out, key=lambda e: e.name), True
                    pending.append((child.cid, child.consumed))
        if not pending:
            return sorted(out, key=lambda e: e.name), False
        cid, consumed = pending.popleft()
        shard, _block = await _node(source, cid, "a shard of the directory")
        if shard.kind != "hamt":
            raise InvalidUnixFSNode(f"{cid} in a HAMT is a {shard.kind}")


# -- files ----------------------------------------------------------------------------------------


class FileReader:
    """A byte range of a file, read a batch of blocks at a time (:meth:`next_chunk`): what it
    holds between batches is the pieces still to read, in order, never the bytes sent."""

    def __init__(self, source: BlockSource, node: reader.UnixFSNode, start: int, length: int):
        self._source = source
        self.expected = length
        self.sent = 0
        self._pending: deque[Piece] = deque(reader.file_pieces(node, start, length))

    async def next_chunk(self) -> list[bytes]:
        """The next bytes (about :data:`BATCH_BYTES`), ``[]`` at the end. A block not held is
        :class:`NotFound`; a node whose sizes lie is the reader's typed error, and so is a file
        that turns out longer or shorter than its root said."""
        out: list[bytes] = []
        size = 0
        while self._pending and size < BATCH_BYTES:
            while self._pending and self._pending[0].cid is None:
                data = self._pending.popleft().data or b""
                out.append(data)
                size += len(data)
            if not self._pending or size >= BATCH_BYTES:
                break
            batch: list[Piece] = []
            planned = 0
            while self._pending and self._pending[0].cid is not None:
                piece = self._pending[0]
                if batch and planned + piece.length > BATCH_BYTES:
                    break
                batch.append(piece)
                planned += piece.length
                self._pending.popleft()
            cache = _cache(self._source)
            cached = {}
            if cache is not None:
                for piece in batch:
                    assert piece.cid is not None
                    hit = cache.get(piece.cid)
                    if hit is not None:
                        cached[piece.cid] = hit[0]
            wanted = list({p.cid: None for p in batch if p.cid and p.cid not in cached})
            blocks = await self._source.get_many(wanted) if wanted else {}
            front: list[Piece] = []
            for piece in batch:
                assert piece.cid is not None
                child = cached.get(piece.cid)
                if child is None:
                    block = blocks.get(piece.cid)
                    if block is None:
                        raise NotFound(f"block {piece.cid} of the file is not held by this node")
                    child = _decode(self._source, piece.cid, block)
                reader.check_piece(piece, child)
                front.extend(reader.file_pieces(child, piece.start, piece.length, piece.depth))
            self._pending.extendleft(reversed(front))
        self.sent += size
        if self.sent > self.expected or (not self._pending and self.sent != self.expected):
            raise InvalidUnixFSNode(
                f"the file has {self.sent} bytes where its root says {self.expected}"
            )
        return [b for b in out if b]


async def read_head(source: BlockSource, node: reader.UnixFSNode) -> bytes:
    """The first :data:`httpbits.SNIFF_BYTES` of a file (to sniff its type)."""
    length = min(httpbits.SNIFF_BYTES, node.size or 0)
    file = FileReader(source, node, 0, length)
    parts: list[bytes] = []
    while chunk := await file.next_chunk():
        parts.extend(chunk)
    return b"".join(parts)


# -- CARs -----------------------------------------------------------------------------------------


class CarWriter:
    """A CAR v1 of a path's blocks, then the DAG its end roots (as ``dag-scope`` says), read a
    batch of blocks at a time, depth first, in link order, blocks repeated where the DAG repeats
    them (``dups=y``: no set of the blocks sent is kept, so memory does not grow with the DAG)."""

    def __init__(self, source: BlockSource, root: CID, resolved: Resolved, scope: str) -> None:
        self._source = source
        self._head: list[bytes] = [car_v1_header_bytes([root])]
        self._head.extend(car_section_bytes(c, b) for c, b in resolved.path_blocks)
        self._head.append(car_section_bytes(resolved.cid, resolved.block))
        self._pending: deque[tuple[CID, int]] = deque()
        node = resolved.node
        if scope == "all" or (
            scope == "entity" and node is not None and node.kind in ("file", "hamt")
        ):
            whole = scope == "all" or (node is not None and node.kind == "file")
            self._pending.extend(
                (c, 1) for c in self._children(resolved.cid, resolved.block, whole)
            )
        self._scope = scope
        self._cache: dict[CID, bytes] = {}

    def _children(self, cid: CID, block: bytes, whole: bool) -> list[CID]:
        if whole:
            return list(reader.links_of(cid, block))
        # the entity of a HAMT: its shards, not its entries (the bucket checks need no depth)
        node = reader.decode_node(cid, block)
        return [link.cid for link in node.links if link.name and _is_shard_link(node, link.name)]

    async def next_chunk(self) -> list[bytes]:
        out, self._head = self._head, []
        size = sum(len(p) for p in out)
        while self._pending and size < BATCH_BYTES:
            # The next few blocks in one storage call; those not sent yet wait in the cache.
            wanted = [c for c, _ in list(self._pending)[:CAR_BATCH] if c not in self._cache]
            if wanted:
                self._cache.update(await self._source.get_many(wanted))
            cid, depth = self._pending.popleft()
            block = self._cache.pop(cid, None)
            if block is None:
                raise NotFound(f"block {cid} of the DAG is not held by this node")
            out.append(car_section_bytes(cid, block))
            size += len(out[-1])
            whole = self._scope == "all" or cid.codec == RAW_CODEC
            if not whole:
                whole = reader.decode_node(cid, block).kind != "hamt"
            children = self._children(cid, block, whole)
            if children and depth >= MAX_DEPTH:
                raise UnixFSTooDeep(f"a DAG deeper than {MAX_DEPTH} levels")
            # depth first: this block's children go before its siblings
            self._pending.extendleft((c, depth + 1) for c in reversed(children))
        return out


def _is_shard_link(node: reader.UnixFSNode, name: str) -> bool:
    """Whether a HAMT shard's link of this name is a child shard (its name is the bucket's
    prefix alone) rather than an entry."""
    assert node.fanout is not None
    return len(name) == len(f"{node.fanout - 1:X}")


def car_type() -> str:
    return "application/vnd.ipld.car; version=1; order=dfs; dups=y"


@dataclass
class Answer:
    """What a UnixFS request answers, before the HTTP plumbing (:mod:`gridnode.api.handlers`)."""

    status: int
    content_type: str
    headers: list[tuple[bytes, bytes]]
    parts: list[bytes] = field(default_factory=list)
    #: Read the rest a chunk at a time (a file or a CAR): ``None`` when ``parts`` is all.
    stream: FileReader | CarWriter | None = None
    length: int | None = None
    pool: str = "file"
    #: What was answered: ``"file"``, ``"listing"`` or ``""`` (anything else), for the counts.
    what: str = ""


def byte_range(
    range_header: str | None, if_range: str | None, etag: str, size: int
) -> ByteRange | None:
    """The range to answer: none when ``If-Range`` names another version (an Etag not ours)."""
    if if_range is not None and if_range.strip() != etag:
        return None
    return httpbits.parse_range(range_header, size)


@dataclass
class Asked:
    """What of a request decides a UnixFS answer."""

    method: str
    #: The root as the path wrote it (``X-Ipfs-Path``, links in a listing).
    shown_root: str
    trailing_slash: bool
    query: dict[str, str]
    accept: str | None
    range: str | None = None
    if_range: str | None = None
    if_none_match: str | None = None
    #: ``Cache-Control: only-if-cached``: 412 rather than 404 when the root is not held.
    only_if_cached: bool = False


def _path_text(asked: Asked, names: Sequence[str]) -> str:
    text = "/ipfs/" + "/".join([asked.shown_root, *(quote(n, safe="") for n in names)])
    return text + "/" if asked.trailing_slash else text


async def answer(source: BlockSource, root: CID, names: Sequence[str], asked: Asked) -> Answer:
    """The answer to ``GET``/``HEAD /ipfs/<root>/<names...>`` (the module docstring)."""
    chosen = wanted_format(asked.accept, asked.query.get("format"))
    if asked.only_if_cached and root not in await source.get_many([root]):
        # (this gateway never fetches from elsewhere: what it lacks, it lacks)
        body = jsonvalue.dumps({"error": f"{root} is not held by this node"}).encode() + b"\n"
        return Answer(412, "application/json", [], [body])
    if chosen is not None and not names:
        # A block or a DAG by CID: any dag-pb block, UnixFS or not (a trustless gateway's).
        block = await _one(source, root, "the root")
        try:
            unixfs_node: reader.UnixFSNode | None = _decode(source, root, block)
        except DecodeError:  # not UnixFS, or not even dag-pb: still its block, and its links
            unixfs_node = None
        resolved = Resolved(root, block, unixfs_node, [root])
    else:
        resolved = await resolve(source, root, names)
    headers = [
        (b"x-ipfs-path", _path_text(asked, names).encode("ascii")),
        (b"x-ipfs-roots", ",".join(str(c) for c in resolved.roots).encode("ascii")),
        (b"x-content-type-options", b"nosniff"),
        (b"vary", b"Accept"),
    ]
    if chosen == RAW:
        etag = f'"{resolved.cid}.raw"'
        headers += [(b"etag", etag.encode()), (b"cache-control", IMMUTABLE.encode())]
        if httpbits.etag_matches(asked.if_none_match, etag):
            return Answer(304, RAW, headers)
        return Answer(200, RAW, headers, [resolved.block], length=len(resolved.block))
    if chosen == CAR:
        scope = asked.query.get("dag-scope", "all")
        if scope not in ("block", "entity", "all"):
            raise InvalidRequest(f"dag-scope must be block, entity or all, not {scope!r}")
        where = hashlib.sha256("/".join(names).encode()).hexdigest()[:16]
        etag = f'W/"{root}.car.{scope}.{where}"'
        headers += [(b"etag", etag.encode()), (b"cache-control", IMMUTABLE.encode())]
        if httpbits.etag_matches(asked.if_none_match, etag):
            return Answer(304, car_type(), headers)
        writer = CarWriter(source, root, resolved, scope)
        return Answer(200, car_type(), headers, stream=writer, pool="car")
    node = resolved.node
    assert node is not None  # resolve() decodes every node on the way
    if node.kind in ("file", "raw"):
        name = names[-1] if names else None
        return await _file(source, resolved.cid, node, name, asked, headers)
    if node.kind == "symlink":
        etag = f'"{resolved.cid}"'
        headers += [(b"etag", etag.encode()), (b"cache-control", IMMUTABLE.encode())]
        target = node.data
        return Answer(200, "inode/symlink", headers, [target], length=len(target))
    if node.kind not in ("directory", "hamt"):
        raise InvalidRequest(
            f"{resolved.cid} is UnixFS {node.kind}, which the gateway does not serve"
        )
    if not asked.trailing_slash:
        location = _path_text(asked, names) + "/"
        if asked.query:
            location += "?" + urlencode(asked.query)
        headers.append((b"location", location.encode("ascii")))
        return Answer(301, "text/plain; charset=utf-8", headers)
    index = await _index_html(source, resolved)
    if index is not None:
        index_cid, index_node = index
        return await _file(
            source, index_cid, index_node, "index.html", asked, headers, etag_cid=resolved.cid
        )
    return await _listing(source, resolved, names, asked, headers)


async def _index_html(
    source: BlockSource, resolved: Resolved
) -> tuple[CID, reader.UnixFSNode] | None:
    node = resolved.node
    assert node is not None
    if node.kind == "directory":
        entry = reader.find_entry(node, "index.html")
        found = None if entry is None else entry.cid
    else:
        found = await _hamt_find(source, resolved.cid, node, "index.html", [])
    if found is None:
        return None
    index, _block = await _node(source, found, "index.html")
    if index.kind not in ("file", "raw"):
        return None
    return found, index


async def _listing(
    source: BlockSource,
    resolved: Resolved,
    names: Sequence[str],
    asked: Asked,
    headers: list[tuple[bytes, bytes]],
) -> Answer:
    etag = f'"DirIndex-{httpbits.LISTING_VERSION}_CID-{resolved.cid}"'
    headers += [(b"etag", etag.encode()), (b"cache-control", LISTING_CACHE.encode())]
    kind = "text/html; charset=utf-8"
    if httpbits.etag_matches(asked.if_none_match, etag):
        return Answer(304, kind, headers, what="listing")
    assert resolved.node is not None
    entries, truncated = await list_directory(source, resolved.node)
    page = httpbits.listing_html(
        asked.shown_root, names, str(resolved.cid), None, entries, truncated
    )
    return Answer(200, kind, headers, [page], length=len(page), what="listing")


#: Deserialised answers run in a sandbox: a page served here gets an origin of its own, so it
#: cannot read the API's other answers or the dashboard's storage on this same origin.
SANDBOX: Final = (
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads "
    "allow-pointer-lock allow-presentation allow-popups-to-escape-sandbox"
)


async def _file(
    source: BlockSource,
    cid: CID,
    node: reader.UnixFSNode,
    name: str | None,
    asked: Asked,
    headers: list[tuple[bytes, bytes]],
    etag_cid: CID | None = None,
) -> Answer:
    size = node.size or 0
    etag = f'"{etag_cid or cid}"'
    headers += [
        (b"etag", etag.encode()),
        (b"cache-control", IMMUTABLE.encode()),
        (b"accept-ranges", b"bytes"),
        (b"content-security-policy", SANDBOX.encode()),
    ]
    filename = asked.query.get("filename")
    download = asked.query.get("download") in ("true", "1")
    if filename is not None or download:
        shown = filename or name or str(cid)
        how = "attachment" if download else "inline"
        # printable ASCII only (no quote, backslash, CR or LF: nothing that ends the header)
        fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in shown)
        disposition = f"{how}; filename=\"{fallback}\"; filename*=UTF-8''{quote(shown, safe='')}"
        headers.append((b"content-disposition", disposition.encode("ascii")))
    named = filename or name
    kind = httpbits.type_by_name(named)
    if httpbits.etag_matches(asked.if_none_match, etag):
        return Answer(304, kind or "application/octet-stream", headers, what="file")
    try:
        wanted = byte_range(asked.range, asked.if_range, etag, size)
    except RangeNotSatisfiable as exc:
        headers.append((b"content-range", f"bytes */{size}".encode()))
        body = jsonvalue.dumps({"error": str(exc)}).encode() + b"\n"
        headers.append((ERROR_HEADER.encode(), b"RangeNotSatisfiable"))
        return Answer(416, "application/json", headers, [body])
    status, start, length = 200, 0, size
    if wanted is not None:
        status, start, length = 206, wanted.start, wanted.length
        headers.append((b"content-range", wanted.content_range().encode()))
    if asked.method == "HEAD":
        if kind is None:
            kind = httpbits.content_type(named, await read_head(source, node))
        return Answer(status, kind, headers, length=length, what="file")
    if length <= LIGHT_BYTES:
        reader_ = FileReader(source, node, start, length)
        parts: list[bytes] = []
        while chunk := await reader_.next_chunk():
            parts.extend(chunk)
        if kind is None:
            head = b"".join(parts)[: httpbits.SNIFF_BYTES] if start == 0 else None
            if head is None or (len(head) < httpbits.SNIFF_BYTES and length < size):
                head = await read_head(source, node)
            kind = httpbits.content_type(named, head)
        return Answer(status, kind, headers, parts, length=length, what="file")
    if kind is None:
        kind = httpbits.content_type(named, await read_head(source, node))
    return Answer(
        status,
        kind,
        headers,
        stream=FileReader(source, node, start, length),
        length=length,
        what="file",
    )
