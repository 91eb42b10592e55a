"""The node's file store (``repo.files``): the blocks of files and directories by CID, the local
pins by name, garbage collection, and what ``max_storage`` counts of them.

Where the bytes live (docs/decisions.md, "Issue 23, the file store"): a block of at least
:data:`INLINE_BELOW` bytes (file chunks) is a file of its own in the *block directory*
``DATA_DIR/blocks/<xx>/<cid hex>``; a smaller one (directory nodes, the inner nodes of a file's
tree, small files) is kept inline in the SQLite file. Which blocks the node holds, the pins and
the totals are rows of the SQLite file (:class:`gridnode.storage.files.FileTables`).

Crash safety: a batch of blocks (:meth:`FileStore.put_blocks`) writes each outside block to a
temporary file, fsyncs it (``durability = "full"``), renames it into place and fsyncs its
directory, and only then commits the rows naming them, in one transaction. A crash leaves at
worst block files no row names (removed by the next :meth:`FileStore.gc`), never a row whose
file is missing or short. Every read re-hashes the block: a damaged one is
:class:`~gridnode.errors.CorruptBlock`, never served.

Garbage collection keeps every block reachable from a pin (recursive pins: the whole DAG, its
links read by :func:`links_of`; direct pins: the block itself) and every block an add in progress
wrote (its *lease*, renewed at each batch, expires :data:`LEASE_SECONDS` after the last one: an
add that died lets its blocks go). A database's blocks are not file blocks: they are in its log,
which gc never touches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from crdt.errors import GridnodeError, InvalidCID, UnsupportedCodec
from crdt.ipld.cid import CID
from crdt.unixfs import reader
from gridnode.errors import CorruptBlock, InvalidRequest, MissingBlock, UnknownPin
from gridnode.storage import SqliteFile
from gridnode.storage.files import FileTables

__all__ = [
    "BLOCK_DIR",
    "INLINE_BELOW",
    "LEASE_SECONDS",
    "FileStore",
    "GcReport",
    "Pin",
    "links_of",
]

log = logging.getLogger(__name__)

#: The block directory, beside the SQLite file.
BLOCK_DIR: Final = "blocks"
#: Blocks this size and larger go to the block directory; smaller ones stay in the SQLite file.
INLINE_BELOW: Final = 4096
#: Seconds after its last batch that an add's blocks stay safe from gc without a pin.
LEASE_SECONDS: Final = 600.0
#: Block files older than this that no row names are removed by gc (younger ones may be a batch
#: being written right now, its rows not committed yet).
ORPHAN_SECONDS: Final = 3600.0
#: The largest block the store takes (bitswap's and Kubo's limit is 2 MiB; IPIP-499's chunks
#: are 1 MiB).
MAX_BLOCK: Final = 2 * 1024 * 1024 + 1024

RAW: Final = 0x55
DAG_PB: Final = 0x70
DAG_CBOR: Final = 0x71


def links_of(cid: CID, block: bytes) -> list[CID]:
    """The CIDs a block links to, in order (:func:`crdt.unixfs.reader.links_of`: raw none, dag-pb
    its links, dag-cbor its CIDs), and none for a codec gridnode does not read. Raises a
    :class:`~crdt.errors.GridnodeError` for a block its codec cannot read."""
    try:
        return reader.links_of(cid, block)
    except UnsupportedCodec:
        return []


@dataclass(frozen=True)
class Pin:
    """A local pin: ``name`` (unique; the CID's text when none was given) keeps ``cid``."""

    name: str
    cid: CID
    recursive: bool
    created: float

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "cid": str(self.cid),
            "recursive": self.recursive,
            "created": self.created,
        }


@dataclass(frozen=True)
class GcReport:
    """What :meth:`FileStore.gc` removed and kept."""

    blocks: int
    bytes: int
    kept_blocks: int
    kept_bytes: int
    orphan_files: int = 0
    #: The pins changed while it ran (another process): it stopped early; run it again.
    interrupted: bool = False


class FileStore:
    """The file blocks and pins of one data directory. Synchronous: the running node calls it
    from its storage worker, the offline CLI directly. ``durability`` is the config's: ``full``
    fsyncs every block file before its row commits, ``process`` leaves that to the system."""

    def __init__(
        self,
        sql: SqliteFile,
        root: Path,
        *,
        durability: str = "full",
        inline_below: int = INLINE_BELOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sql = sql
        self.tables = FileTables(sql)
        self.root = root
        self.durability = durability
        self.inline_below = inline_below
        self._clock = clock
        self._made: set[Path] = set()
        self._serial = 0

    # -- where a block file is ----------------------------------------------------------------

    def path_of(self, cid: CID) -> Path:
        """The block file of ``cid`` (whether or not it is there)."""
        name = cid.bytes.hex()
        return self.root / name[-2:] / name

    def _shard(self, path: Path) -> Path:
        shard = path.parent
        if shard not in self._made:
            shard.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._made.add(shard)
        return shard

    # -- blocks -------------------------------------------------------------------------------

    def put_blocks(
        self,
        blocks: Sequence[tuple[CID, bytes]],
        *,
        lease: int | None = None,
        verified: bool = False,
    ) -> int:
        """Keep blocks (each checked against its CID first: a mismatch raises
        :class:`~crdt.errors.HashMismatch` and keeps nothing); return how many were new. Durable
        when it returns. ``lease`` (:meth:`begin`) keeps them from gc until it ends.
        ``verified``: the caller hashed every block already (a CAR read with verification, this
        process's own importer): not hashed twice."""
        for cid, block in blocks:
            if len(block) > MAX_BLOCK:
                raise InvalidRequest(f"block {cid} has {len(block)} bytes (at most {MAX_BLOCK})")
            if not verified:
                cid.verify(block)
        unique: dict[bytes, tuple[CID, bytes]] = {}
        for cid, block in blocks:
            unique.setdefault(cid.bytes, (cid, block))
        inline = self.inline_below
        # The block files first, outside the transaction (SQLite's write lock is held only for
        # the rows): those not held now. Another process writing the same block meanwhile
        # writes the same bytes under its own temporary name; the rename is atomic.
        held = self.tables.present(list(unique))
        written = {
            key for key, (_cid, block) in unique.items() if key not in held and len(block) >= inline
        }
        self._write_files([unique[key] for key in written])
        with self.sql.transaction():
            held = self.tables.present(list(unique))
            new = [pair for key, pair in unique.items() if key not in held]
            # Gone since the first look (a gc in another process): written now, in the lock.
            self._write_files(
                [(c, b) for c, b in new if len(b) >= inline and c.bytes not in written]
            )
            rows = [
                (cid.bytes, len(block), None if len(block) >= inline else bytes(block))
                for cid, block in new
            ]
            self.tables.insert(rows, lease)
            if lease is not None:
                if held:
                    self.tables.claim(list(held), lease)
                self.tables.renew_lease(lease, self._clock())
        return len(new)

    def _write_files(self, blocks: Sequence[tuple[CID, bytes]]) -> None:
        """Each block to its file: all written to temporary files, then each fsynced and
        renamed into place, then each directory fsynced once (``durability = "full"``; the
        writes go to the disk together before the first fsync waits). A file already there (an
        earlier batch's whose rows never committed) is replaced by the same bytes."""
        if not blocks:
            return
        sync = self.durability == "full"
        shards: set[Path] = set()
        done: list[tuple[int, Path, Path]] = []
        try:
            for cid, block in blocks:
                path = self.path_of(cid)
                shards.add(self._shard(path))
                self._serial += 1
                tmp = path.with_name(f"{path.name}.{os.getpid()}-{self._serial}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                done.append((fd, tmp, path))
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
            while done:
                fd, tmp, path = done[0]
                if sync:
                    os.fsync(fd)
                done.pop(0)
                os.close(fd)
                os.replace(tmp, path)
        finally:
            for fd, tmp, _path in done:
                with contextlib.suppress(OSError):
                    os.close(fd)
                with contextlib.suppress(OSError):
                    tmp.unlink()
        if sync:
            for shard in shards:
                fd = os.open(shard, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def get(self, cid: CID) -> bytes | None:
        """The block of ``cid``, re-hashed (:class:`~gridnode.errors.CorruptBlock` if damaged or
        its file is gone), or ``None`` if the store does not hold it."""
        row = self.tables.get(cid.bytes)
        if row is None:
            return None
        size, data = row
        if data is None:
            try:
                data = self.path_of(cid).read_bytes()
            except FileNotFoundError:
                raise CorruptBlock(
                    f"file block {cid} is listed but its file {self.path_of(cid)} is missing"
                ) from None
        if len(data) != size or not cid.matches(data):
            raise CorruptBlock(f"file block {cid} does not hash to its CID: it is damaged")
        return data

    def get_many(self, cids: Iterable[CID]) -> dict[CID, bytes]:
        """The blocks held of ``cids`` (each re-hashed), absent ones left out."""
        found = {}
        for cid in cids:
            block = self.get(cid)
            if block is not None:
                found[cid] = block
        return found

    def has_many(self, cids: Iterable[CID]) -> set[CID]:
        """Those of ``cids`` the store holds (rows only: not re-hashed)."""
        by_bytes = {cid.bytes: cid for cid in cids}
        return {by_bytes[b] for b in self.tables.present(list(by_bytes))}

    def usage(self) -> tuple[int, int]:
        """``(blocks, bytes)`` the store holds (block sizes; one row read)."""
        blocks, size, _outside = self.tables.usage()
        return blocks, size

    def outside_bytes(self) -> int:
        """Bytes of the blocks in the block directory (the inline ones are in the SQLite file's
        size already): what ``max_storage`` adds to the file's size."""
        return self.tables.usage()[2]

    # -- leases: an add in progress ------------------------------------------------------------

    def begin(self) -> int:
        """A new lease for an add: pass it to :meth:`put_blocks`; :meth:`end` it (after the pin)."""
        with self.sql.transaction():
            return self.tables.new_lease(self._clock())

    def end(self, lease: int) -> None:
        with self.sql.transaction():
            self.tables.end_lease(lease)

    @contextlib.contextmanager
    def lease(self) -> Iterator[int]:
        """:meth:`begin` ... :meth:`end` around a block of code."""
        lease = self.begin()
        try:
            yield lease
        finally:
            self.end(lease)

    # -- pins ---------------------------------------------------------------------------------

    def pin(self, cid: CID, name: str | None = None, recursive: bool = True) -> Pin:
        """Pin ``cid`` under ``name`` (default: the CID's text); a pin of that name is moved to
        ``cid``. The block (recursive: every block of its DAG) must be held, else
        :class:`~gridnode.errors.MissingBlock` names the first one missing and nothing changes."""
        name = str(cid) if name is None else name
        if not name or len(name) > 256 or any(ch in name for ch in "\0\n\r"):
            raise InvalidRequest("a pin name has 1 to 256 characters, no NUL or line breaks")
        if recursive:
            self._walk([cid], missing_ok=False)
        elif not self.has_many([cid]):
            raise MissingBlock(f"{cid} is not in the file store")
        created = self._clock()
        with self.sql.transaction():
            self.tables.set_pin(name, cid.bytes, recursive, created)
        return Pin(name, cid, recursive, created)

    def unpin(self, name_or_cid: str) -> int:
        """Remove the pin of that name, or else every pin of that CID; how many were removed
        (:class:`~gridnode.errors.UnknownPin` if none). Its blocks go at the next :meth:`gc`."""
        with self.sql.transaction():
            removed = self.tables.delete_pin(name_or_cid)
            if not removed:
                try:
                    cid = CID.parse(name_or_cid)
                except InvalidCID:
                    cid = None
                if cid is not None:
                    removed = self.tables.delete_pins_of(cid.bytes)
        if not removed:
            raise UnknownPin(f"no pin named {name_or_cid!r} and no pin of that CID")
        return removed

    def pins(self) -> list[Pin]:
        """Every local pin, by name."""
        return [
            Pin(name, CID.parse(cid), recursive, created)
            for name, cid, recursive, created in self.tables.pins()
        ]

    def pinned(self, cid: CID) -> bool:
        """Whether ``cid`` is a pin's root."""
        return any(pin.cid == cid for pin in self.pins())

    # -- reachability and gc ------------------------------------------------------------------

    def _walk(self, roots: Iterable[CID], *, missing_ok: bool) -> set[bytes]:
        """The binary CIDs of every block reachable from ``roots`` that the store holds. A raw
        block is not read (it has no links). A missing block raises
        :class:`~gridnode.errors.MissingBlock` unless ``missing_ok``; a block that does not decode
        ends that branch (logged)."""
        seen: set[bytes] = set()
        stack = list(roots)
        while stack:
            cid = stack.pop()
            key = cid.bytes
            if key in seen:
                continue
            if cid.codec == RAW:
                if self.tables.present([key]):
                    seen.add(key)
                elif not missing_ok:
                    raise MissingBlock(f"block {cid} is not in the file store")
                continue
            block = self.get(cid)
            if block is None:
                if not missing_ok:
                    raise MissingBlock(f"block {cid} is not in the file store")
                continue
            seen.add(key)
            try:
                children = links_of(cid, block)
            except GridnodeError as exc:
                log.warning(
                    "file block %s does not decode (%s): its links are not followed", cid, exc
                )
                continue
            stack.extend(c for c in children if c.bytes not in seen)
        return seen

    def reachable(self) -> set[bytes]:
        """The binary CIDs of every held block some pin keeps."""
        keep: set[bytes] = set()
        recursive = []
        for pin in self.pins():
            if pin.recursive:
                recursive.append(pin.cid)
            else:
                keep.add(pin.cid.bytes)
        keep |= self._walk(recursive, missing_ok=True)
        return keep

    def gc(self) -> GcReport:
        """Remove every block no pin keeps and no live add wrote; then the block files no row
        names that are older than :data:`ORPHAN_SECONDS` (left by a crash).

        Another process may pin or add meanwhile (two offline commands): each batch of
        deletions checks, in its transaction, that the pins did not change since they were read
        (else the sweep stops there: ``interrupted``, run it again) and leaves a block an add
        claimed since (its lease)."""
        signature = self.tables.pins_signature()
        keep = self.reachable()
        now = self._clock()
        with self.sql.transaction():
            live = self.tables.live_leases(now - LEASE_SECONDS)
        doomed: list[bytes] = []
        after = 0
        while True:
            page = self.tables.page(after, 1000)
            for _id, key, _size, _inline, lease in page:
                if key in keep or (lease is not None and lease in live):
                    continue
                doomed.append(key)
            if len(page) < 1000:
                break
            after = page[-1][0]
        removed = removed_bytes = 0
        interrupted = False
        for start in range(0, len(doomed), 1000):
            with self.sql.transaction():
                if self.tables.pins_signature() != signature:
                    interrupted = True
                    break
                gone = self.tables.delete(doomed[start : start + 1000])
            # The rows are gone (committed) before the files: a crash in between leaves orphan
            # files, which the pass below removes.
            for key, size, inline in gone:
                removed_bytes += size
                if not inline:
                    with contextlib.suppress(FileNotFoundError):
                        self.path_of(CID.parse(key)).unlink()
            removed += len(gone)
        orphans = self._remove_orphans(now)
        blocks, size = self.usage()
        return GcReport(removed, removed_bytes, blocks, size, orphans, interrupted)

    def _remove_orphans(self, now: float) -> int:
        """Remove block files (and temporary files) no row names, older than :data:`ORPHAN_SECONDS`."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir():
                continue
            names = sorted(p.name for p in shard.iterdir())
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                keys: list[tuple[bytes, str]] = []
                for name in chunk:
                    try:
                        keys.append((bytes.fromhex(name.split(".", 1)[0]), name))
                    except ValueError:
                        continue
                held = self.tables.present([k for k, n in keys if not n.endswith(".tmp")])
                for key, name in keys:
                    if key in held and not name.endswith(".tmp"):
                        continue
                    path = shard / name
                    try:
                        if now - path.stat().st_mtime < ORPHAN_SECONDS:
                            continue
                        path.unlink()
                    except FileNotFoundError:
                        continue
                    removed += 1
        return removed
