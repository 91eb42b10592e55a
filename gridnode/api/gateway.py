"""A read-only IPFS Trustless Gateway over the node's blocks (``GET``/``HEAD /ipfs/{cid}``,
docs/http.md).

Answers are raw blocks (``application/vnd.ipld.raw``) or CAR v1 streams
(``application/vnd.ipld.car``), never anything decoded: the client checks every byte against the
CIDs it asked for and need not trust the node. That is why it answers without the token.

Only what the node replicates is served: the manifest and the applied entries of the databases it
replicates and does not keep private. An unfollowed or private database's blocks, pending or
rejected entries, and anything else in the SQLite file are not (404), as if the node did not have
them; bitswap serves exactly the same blocks. The verified blocks of the OrbitDB databases the
node follows are served too, each alone (``dag-scope`` makes no difference: OrbitDB names blocks
by hash strings, not links). A stored block that no longer hashes to its CID is
never sent (:class:`~gridnode.errors.CorruptBlock`, raised by the repo's reads).

``dag-scope=block`` is the one block. ``dag-scope=all`` is, for an entry, the entry and every
block it links to through ``db``, ``next`` and ``skip`` (its manifest and causal past), depth
first, without duplicates; for a manifest, the whole database as ``gridnode export`` writes it
(roots: the manifest, then the heads; that one changes as the database grows), streamed from
storage a chunk at a time (:class:`~gridnode.repo.CarChunks`, :mod:`gridnode.api.asgi`).

Refused here: deserialised answers of a database's blocks (JSON, HTML: 406), CAR v2, paths below
a database's CID, and an entry's CAR over :data:`MAX_GATEWAY_CAR_BYTES` (413 rather than built; a
manifest's is streamed, so unbounded). UnixFS CIDs (dag-pb, raw: files and directories) are
:mod:`gridnode.api.unixfs`'s, paths, files and listings included. Errors are
:mod:`gridnode.errors`'; their statuses are :mod:`gridnode.api.errors`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from crdt.entry import entry_from_block
from crdt.errors import InvalidCID
from crdt.ipld.car import car_section_bytes, car_v1_header_bytes
from crdt.ipld.cid import CID
from gridnode.errors import InvalidRequest, NotAcceptable, NotFound, RequestTooLarge
from gridnode.repo import CarChunks, Repo, StoredDatabase

__all__ = [
    "CAR",
    "MAX_GATEWAY_CAR_BYTES",
    "RAW",
    "Served",
    "choose_format",
    "find",
    "parse_cid",
    "serve",
    "wanted_format",
]

RAW: Final = "application/vnd.ipld.raw"
CAR: Final = "application/vnd.ipld.car"
#: A CAR answer larger than this is refused (413) rather than built.
MAX_GATEWAY_CAR_BYTES: Final = 256 * 1024 * 1024
#: Cache lifetime of immutable answers (a year less a few days, as IPFS gateways send).
IMMUTABLE: Final = "public, max-age=29030400, immutable"
_SCOPES: Final = frozenset({"block", "entity", "all"})
_FORMATS: Final = {"raw": RAW, "car": CAR}


@dataclass
class Served:
    """A gateway answer: the bytes (as parts, or ``chunks`` to read a chunk at a time in the
    storage worker), content type, and headers."""

    parts: list[bytes]
    content_type: str
    etag: str
    cache_control: str
    blocks: int
    chunks: CarChunks | None = None


def parse_cid(text: str) -> CID:
    try:
        return CID.parse(text)
    except (InvalidCID, ValueError) as exc:
        raise InvalidRequest(f"not a valid CID: {text!r} ({exc})") from None


def wanted_format(accept: str | None, format_param: str | None) -> str | None:
    """``RAW`` or ``CAR`` when the request asks for one (``?format=`` wins, then ``Accept``),
    ``None`` when it names neither; 400 for an unknown ``?format=``."""
    if format_param is not None:
        chosen = _FORMATS.get(format_param)
        if chosen is None:
            raise InvalidRequest(f"format must be raw or car, not {format_param!r}")
        return chosen
    for item in (accept or "").split(","):
        media, *params = [p.strip() for p in item.split(";")]
        values = dict(p.partition("=")[::2] for p in params)
        if values.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        if media.lower() == RAW:
            return RAW
        if media.lower() == CAR and values.get("version", "1").strip() == "1":
            return CAR
    return None


def choose_format(accept: str | None, format_param: str | None) -> str:
    """``RAW`` or ``CAR`` from ``?format=`` (which wins) or the ``Accept`` header; 400 for an
    unknown format, 406 when neither names a verifiable type (this gateway never deserialises)."""
    chosen = wanted_format(accept, format_param)
    if chosen is None:
        raise NotAcceptable(
            f"this is a trustless gateway: ask for {RAW} or {CAR} (Accept header or "
            "?format=raw|car)",
        )
    return chosen


def find(repo: Repo, cid: CID) -> tuple[StoredDatabase, bytes, bool] | None:
    """The served database (replicated, not private) holding ``cid``, its block, and whether it
    is that database's manifest; ``None`` if none has it."""
    for database in repo.served():
        if database.manifest.cid == cid:
            return database, database.manifest.block, True
        block = database.block(cid)
        if block is not None:
            return database, block, False
    return None


def serve(repo: Repo, cid: CID, kind: str, scope: str) -> Served:
    """What ``GET /ipfs/{cid}`` answers; run in the storage worker (one consistent state)."""
    if scope not in _SCOPES:
        raise InvalidRequest(f"dag-scope must be block, entity or all, not {scope!r}")
    found = find(repo, cid)
    if found is None:
        # An OrbitDB database followed (gridnode/orbitdb/): its verified blocks, one at a time
        # (OrbitDB names blocks by hash strings, not links: a block's DAG is the block).
        held = repo.orbit.get_many([cid.bytes]).get(cid.bytes)
        if held is None or not cid.matches(held):
            raise NotFound(f"no block {cid} in the databases this node serves")
        if kind == RAW:
            return Served([held], RAW, f'"{cid}.raw"', IMMUTABLE, 1)
        parts = [car_v1_header_bytes([cid]), car_section_bytes(cid, held)]
        return Served(parts, _car_type("dfs"), f'W/"{cid}.car.block"', IMMUTABLE, 1)
    database, block, is_manifest = found
    if kind == RAW:
        return Served([block], RAW, f'"{cid}.raw"', IMMUTABLE, 1)
    if scope != "all":
        parts = [car_v1_header_bytes([cid]), car_section_bytes(cid, block)]
        return Served(parts, _car_type("dfs"), f'W/"{cid}.car.block"', IMMUTABLE, 1)
    if is_manifest:
        # What `gridnode export` writes, each block checked, streamed a chunk at a time: never
        # the whole database in memory (so no size limit: the answer holds a chunk).
        chunks = database.car_chunks()
        heads = ".".join(str(h) for h in database.heads)
        # The database grows: revalidate, and the Etag names the state (its heads).
        return Served(
            [], _car_type("unk"), f'W/"{cid}.car.all.{heads}"', "no-cache", chunks.blocks, chunks
        )
    parts = [car_v1_header_bytes([cid])]
    size = len(parts[0])
    for link, data in _depth_first(database, cid, block):
        parts.append(car_section_bytes(link, data))
        size = _check_size(size, parts[-1])
    return Served(parts, _car_type("dfs"), f'W/"{cid}.car.all"', IMMUTABLE, len(parts) - 1)


def _car_type(order: str) -> str:
    return f"{CAR}; version=1; order={order}; dups=n"


def _check_size(size: int, part: bytes) -> int:
    size += len(part)
    if size > MAX_GATEWAY_CAR_BYTES:
        raise RequestTooLarge(f"the CAR would be over {MAX_GATEWAY_CAR_BYTES} bytes")
    return size


def _depth_first(database: StoredDatabase, root: CID, block: bytes) -> list[tuple[CID, bytes]]:
    """The entry ``root`` and what it links to (manifest, parents, skip links), depth first in
    link order, each block once."""
    seen = {root}
    out: list[tuple[CID, bytes]] = []
    stack: list[tuple[CID, bytes]] = [(root, block)]
    while stack:
        cid, data = stack.pop()
        out.append((cid, data))
        if cid == database.manifest.cid:
            continue
        entry = entry_from_block(cid, data)  # stored, so verified when it came in
        children = []
        for link in (entry.db, *entry.next, *entry.skip):
            if link in seen:
                continue
            seen.add(link)
            manifest = database.manifest
            child = manifest.block if link == manifest.cid else database.block(link)
            if child is not None:
                children.append((link, child))
        stack.extend(reversed(children))
    return out
