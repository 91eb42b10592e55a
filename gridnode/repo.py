"""A node's data directory: its key, its config and its SQLite file, and the databases in it.

This room owns the databases of a node as the rooms above see them: :class:`Repo` (the data
directory, which databases it keeps, replicates, keeps private) and :class:`StoredDatabase` (a
crdt :class:`~crdt.database.Database` on the node's SQLite file: writes, joins, blocks, CARs).
It is the synchronous core the offline CLI uses directly and the running node reaches through
its storage worker. Every write is one SQLite transaction: entries, blocks, heads, store state
and the write's ``meta`` values commit together or not at all, and a call returns only once its
transaction is durable.

It holds no SQL and does not import ``sqlite3``: rows of the file are read and written through
:class:`~gridnode.storage.SqliteFile`'s methods (its vocabulary: meta values, databases rows,
blocks), whose failures come out as :class:`~gridnode.errors.StorageError`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from crdt.database import Database
from crdt.encryption import Keyring
from crdt.entry import MAX_ENTRY_BYTES, Entry, decode_entry
from crdt.errors import GridnodeError, HashMismatch, InvalidCar, InvalidCID, InvalidManifest
from crdt.identity import Keypair
from crdt.ipld.car import car_section_bytes, car_v1_header_bytes, iter_blocks, read_header
from crdt.ipld.cid import CID
from crdt.manifest import PUBLIC, Manifest, create_manifest, decode_manifest, parse_address
from crdt.rangesums import LogItems
from crdt.snapshot import decode_root
from crdt.stores import Store, open_store
from gridnode.config import Config, load_config, write_default_config
from gridnode.databasekeys import load_database_keys, save_database_keys
from gridnode.datadir import make_private
from gridnode.errors import InvalidRequest, UnknownDatabase
from gridnode.files.store import BLOCK_DIR, FileStore
from gridnode.keystore import load_or_create_key
from gridnode.logs import LogLimiter
from gridnode.quota import StorageQuota
from gridnode.storage import DB_FILE, CorruptBlock, SqliteFile
from gridnode.storage.orbitdb import OrbitTables
from gridnode.storage.snapshots import published_root

__all__ = [
    "BITSWAP_SOURCE",
    "IMPORT_SOURCE",
    "OWN_SOURCES",
    "CarChunks",
    "ImportReport",
    "Repo",
    "StoredDatabase",
    "UnknownDatabase",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Entries read at a time by the passes over a whole log (CAR export, verify): one query each,
#: so memory stays bounded whatever the size of the database.
PAGE = 256

#: The sources of joins the node asked for itself, by hash: blocks its bitswap walk fetched down
#: from heads, and the blocks of a CAR file it imports. Every other source is a peer id.
BITSWAP_SOURCE = "bitswap"
IMPORT_SOURCE = "import"
OWN_SOURCES = frozenset({BITSWAP_SOURCE, IMPORT_SOURCE})
#: ``meta`` rows naming the databases the node no longer replicates.
_UNFOLLOWED = "unfollowed:"
_PRIVATE = "private:"
_FOR_CATALOG = "catalog-followed:"
_DECLINED = "catalog-declined:"


@dataclass
class ImportReport:
    """What a join of outside blocks (a CAR import, a sync batch) did."""

    address: str = ""
    applied: int = 0
    duplicates: int = 0
    pending: int = 0
    #: ``(cid text, reason)`` for every block refused.
    rejected: list[tuple[str, str]] = field(default_factory=list)


class StoredDatabase:
    """One database of a :class:`Repo`: a crdt :class:`~crdt.database.Database` on SQLite."""

    def __init__(self, repo: Repo, manifest: Manifest) -> None:
        self.repo = repo
        self.manifest = manifest
        self.address = manifest.address
        #: A store assembled from a signed snapshot that reads are served from while the history
        #: behind it arrives and is verified (gridnode/node/snapshots.py); ``None``: reads come
        #: from the database's own, verified store.
        self.view: Store | None = None
        self._db = self._open()

    def _open(self) -> Database:
        config = self.repo.config
        self._space = self.repo.sql.space(self.address)
        keyring = None
        if self.manifest.encrypted:
            # The keys this node holds; the database adds those sealed to it in its log.
            keyring = Keyring(self.repo.keypair, self.repo.database_keys(self.address))
        database = Database(
            self.manifest,
            space=self._space,
            keyring=keyring,
            max_pending_bytes=config.pending_bytes,
            max_pending_bytes_per_source=config.pending_bytes_per_peer,
            # What is refused is fetched again by sync once the grants naming its author are
            # known (docs/spec.md §7), so an outsider's orphans are not kept at all.
            refuse_unknown_authors=True,
            # What the node fetched by hash itself, walking down from heads (bitswap) or read
            # from a file (import), waits whole for its root: no cap drops its lowest entries.
            own_sources=OWN_SOURCES,
        )
        if not database.log.sums_complete:
            # A log written before range sums existed: compute them once.
            with self.repo.sql.transaction():
                database.log.rebuild_sums()
        if not database.log.pending_indexed:
            # Likewise the pending set's sizes, sources, ages and missing parents.
            with self.repo.sql.transaction():
                database.log.index_pending(time.time())
        if not database.log.judged_current:
            # A log written before revocations held (docs/spec.md §8): judge it once.
            with self.repo.sql.transaction():
                database.upgrade()
        if not database.store.sum_indexed:
            # A store written before its state sum was kept (docs/spec.md §17): sum it once.
            with self.repo.sql.transaction():
                database.store.index_sum()
        if database.rekey_needed:
            # Keys came (an import, a wrap opened now) since the store was folded, or left.
            with self.repo.sql.transaction():
                database.rebuild()
        self._save_keys(database)
        return database

    def _save_keys(self, database: Database) -> None:
        """Keep the keys the database learnt (from wraps sealed to this node) in the keystore."""
        keyring = database.keyring
        if keyring is not None and keyring.learned:
            save_database_keys(self.repo.data_dir, self.address, dict(keyring.learned))
            keyring.learned.clear()

    def expire_pending(self, now: float | None = None) -> int:
        """Drop the entries that waited for parents longer than the config's
        ``pending_seconds`` (``now``: wall-clock seconds, the clock joins stamp them with);
        return how many. Run when the database opens and periodically by a running node."""
        log_ = self._db.log
        if not log_.pending_count:
            return 0
        now = time.time() if now is None else now
        cutoff = now - self.repo.config.pending_seconds
        expired = self._transaction(lambda database: database.log.expire_pending(cutoff))
        if expired:
            log.info(
                "%d entries of %s waited over %.0f s for their parents: dropped",
                len(expired),
                self.address,
                self.repo.config.pending_seconds,
            )
        return len(expired)

    def _transaction(self, work: Callable[[Database], T]) -> T:
        try:
            with self.repo.sql.transaction():
                result = work(self._db)
            self._save_keys(self._db)
            return result
        except BaseException:
            # The rollback undid the disk; drop the in-memory caches that saw the same changes.
            self.reload()
            raise

    def reload(self) -> None:
        """Drop what this database caches in memory and read it again from the file: after the
        rollback of a transaction that wrote to it (a group commit's, :func:`gridnode.ops.write_group`)."""
        self._db = self._open()

    @property
    def store(self) -> Store:
        """The store, for reads (queries are answered from the materialised state): a signed
        snapshot's (:attr:`view`) while one is served, else the database's own."""
        view = self.view
        return self._db.store if view is None else view

    @property
    def database(self) -> Database:
        """The crdt database itself (its own store, never the :attr:`view`): to build a
        snapshot of it; use it only in the storage worker."""
        return self._db

    def applied(self, cids: Sequence[CID]) -> list[CID]:
        """Those of ``cids`` this database has applied."""
        log = self._db.log
        return [c for c in cids if c in log]

    @property
    def heads(self) -> tuple[CID, ...]:
        return self._db.log.heads

    def newest_heads(self, limit: int) -> list[CID]:
        """At most ``limit`` heads, highest clock first (for messages bounded in heads)."""
        return self._db.log.newest_heads(limit)

    def __len__(self) -> int:
        return len(self._db.log)

    def digest(self) -> bytes:
        return self._db.digest()

    def entries(self) -> Iterator[Entry]:
        """Applied entries in the total order."""
        for cid in self._db.log.order_cids():
            entry = self._db.log.get(cid)
            assert entry is not None
            yield entry

    def plaintext(self, entry: Entry) -> Any:
        """An entry's payload as written, decrypted when this node holds its key
        (:meth:`crdt.database.Database.plaintext`)."""
        return self._db.plaintext(entry)

    def unknown(self, cids: Sequence[CID]) -> list[CID]:
        """Those of ``cids`` this database neither applied, nor holds pending, nor rejected."""
        log = self._db.log
        return [
            c for c in cids if c not in log and not log.is_pending(c) and log.rejection(c) is None
        ]

    @property
    def missing(self) -> frozenset[CID]:
        """Parents that pending entries wait for: what to fetch (all of them: prefer
        :meth:`first_missing` and :attr:`missing_count`, whose cost does not grow with them)."""
        return self._db.log.missing

    @property
    def missing_count(self) -> int:
        """How many parents pending entries wait for (a counter)."""
        return self._db.log.missing_count

    def is_missing(self, cid: CID) -> bool:
        return self._db.log.is_missing(cid)

    def first_missing(self, limit: int, skip: Callable[[CID], bool] | None = None) -> list[CID]:
        """Up to ``limit`` missing parents (by binary CID), leaving out those ``skip`` names;
        reads no further than it needs."""
        found: list[CID] = []
        if limit <= 0:
            return found
        for cid in self._db.log.iter_missing():
            if skip is not None and skip(cid):
                continue
            found.append(cid)
            if len(found) >= limit:
                break
        return found

    @property
    def pending_count(self) -> int:
        """Entries waiting for parents."""
        return self._db.log.pending_count

    @property
    def pending_bytes(self) -> int:
        """Bytes of the entries waiting for parents."""
        return self._db.log.pending_bytes

    def pending_from(self, source: str) -> tuple[int, int]:
        """``(entries, bytes)`` waiting for parents that came from ``source`` (a peer id)."""
        return self._db.log.pending_from(source)

    def ancestry(
        self, wanted: Sequence[CID], have: Sequence[CID], limit: int
    ) -> tuple[list[CID], bool]:
        """What a peer with heads ``have`` needs to hold ``wanted`` (see :meth:`crdt.log.Log.ancestry`)."""
        return self._db.log.ancestry(wanted, have, limit=limit)

    def ancestry_steps(
        self, wanted: Sequence[CID], have: Sequence[CID], limit: int
    ) -> Generator[None, None, tuple[list[CID], bool]]:
        """:meth:`ancestry` in bounded steps, for :meth:`~gridnode.storage.worker.StorageWorker.run_steps`."""
        return self._db.log.ancestry_steps(wanted, have, limit=limit)

    @property
    def items(self) -> _Items:
        """The applied entries as a set to reconcile (:mod:`protocols.reconcile`); call it only
        in the storage worker's thread."""
        return _Items(self)

    def item_blocks(self, items: Sequence[bytes]) -> list[bytes]:
        """The blocks of reconciliation items (clock + binary CID), in the order given; a block
        that no longer hashes to its CID is reported and left out (:meth:`block`)."""
        blocks = self._db.log.space.table("blocks")
        found = []
        for item in items:
            block = blocks.get(item[8:])
            if block is not None and self._intact(CID.parse(item[8:]), block):
                found.append(bytes(block))
        return found

    def blocks_of(self, cids: Sequence[CID]) -> list[tuple[CID, bytes]]:
        """The blocks of applied entries (others are skipped), to serve to peers; a block that
        no longer hashes to its CID is reported and left out (:meth:`block`)."""
        found = []
        for cid in cids:
            block = self._db.log.block(cid)
            if block is not None and self._intact(cid, block):
                found.append((cid, block))
        return found

    def stored_blocks(self) -> Iterator[tuple[CID, bytes | None]]:
        """``(cid, block)`` of the manifest, then of every applied entry in the total order, as
        the bytes stand in the SQLite file now (``None`` if missing), unchecked: what
        :func:`gridnode.ops.verify` re-hashes and re-verifies. Read a page at a time
        (:meth:`order_blocks`): memory stays bounded whatever the size of the log."""
        yield self.manifest.cid, self.repo.sql.get_block(self.manifest.cid.bytes)
        after = None
        while True:
            page = self.order_blocks(after)
            for _position, cid, block in page:
                yield cid, block
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def order_blocks(
        self, after: bytes | None = None, limit: int = 0
    ) -> list[tuple[bytes, CID, bytes | None]]:
        """One page (``limit`` entries, default :data:`PAGE`) of the applied entries in the total
        order after the position ``after`` (clock as 8 bytes big-endian + binary CID; ``None``:
        from the start): ``(position, cid, block)``, the block as stored (``None`` if missing),
        unchecked. One query for the page; nothing decoded, nothing cached."""
        table = self._space.table("log.order")
        return [
            (key, CID.parse(key[8:]), block)
            for key, block in table.blocks_after(after, limit or PAGE, 8)
        ]

    def block(self, cid: CID) -> bytes | None:
        """The stored block of an applied entry, checked against its CID (a sha256, cheap);
        raises :class:`~gridnode.storage.CorruptBlock` if the bytes on disk were damaged."""
        block = self._db.log.block(cid)
        if block is not None and not self._intact(cid, block):
            raise CorruptBlock(f"stored block {cid} of {self.address} does not hash to its CID")
        return block

    def _intact(self, cid: CID, block: bytes) -> bool:
        try:
            cid.verify(block)
        except HashMismatch:
            log.error(
                "stored block %s of %s does not hash to its CID: %s is damaged; the block is "
                "not served",
                cid,
                self.address,
                self.repo.sql.path,
            )
            return False
        return True

    @property
    def encrypted(self) -> bool:
        """Whether its store operations are ciphertext (docs/spec.md, "Encrypted databases")."""
        return self.manifest.encrypted

    @property
    def blind(self) -> bool:
        """Whether this node replicates the encrypted database without any of its keys."""
        return self._db.blind

    def readers(self) -> list[str]:
        """Who holds the current key of an encrypted database (empty for any other)."""
        return self._db.readers() if self.encrypted else []

    def create_key(self, readers: Iterable[str]) -> Entry:
        """Introduce a fresh key for ``readers`` (and this node): at creation."""
        key, seed = os.urandom(32), os.urandom(32)
        return self._transaction(
            lambda database: database.create_key(self.repo.keypair, key, readers, seed)
        )

    def add_reader(self, did: str) -> Entry:
        """Wrap the current key for ``did`` (an admin's operation)."""
        seed = os.urandom(32)
        return self._transaction(lambda database: database.add_reader(self.repo.keypair, did, seed))

    def remove_reader(self, did: str) -> Entry:
        """Rotate the key, leaving ``did`` out: it cannot read entries written after this."""
        key, seed = os.urandom(32), os.urandom(32)
        return self._transaction(
            lambda database: database.remove_reader(self.repo.keypair, did, key, seed)
        )

    def change_access(self, action: str, role: str, did: str) -> Entry:
        """Write a ``grant`` or ``revoke`` of ``role`` (``admin`` or ``writer``) for ``did``,
        signed by this node (an admin's operation; the log's access rules decide if it counts)."""
        if action == "grant":
            return self._transaction(lambda d: d.grant(self.repo.keypair, role, did))
        return self._transaction(lambda d: d.revoke(self.repo.keypair, role, did))

    def may_write(self, did: str | None = None) -> bool:
        return self._db.log.access.may_write(did or self.repo.keypair.did)

    @property
    def private(self) -> bool:
        """Whether only its readers may read it: its manifest says so (every replica agrees),
        or this node was told so (the node-local flag of a database made before manifests had
        ``readers``)."""
        return self.manifest.private or self.repo.flagged_private(self.address)

    def may_read(self, did: str | None) -> bool:
        """Whether the peer whose key is ``did`` may read this database (``None``: a peer whose
        key is not an ed25519 did:key): anyone may read a database that is not private; a
        private one, its admins and writers as this replica's access state has them (a granted
        writer may read, a revoked one no longer; ``"*"`` grants nobody reading) and the
        manifest's readers."""
        if not self.private:
            return True
        if did is None:
            return False
        access = self._db.log.access
        return did in self.manifest.readers or did in access.admins or did in access.writers

    def write(self, payload: Any) -> Entry:
        """Sign and apply one operation with the node key; durable when this returns."""
        return self.write_many([payload])[0]

    def write_many(
        self,
        payloads: Iterable[Any],
        keypair: Keypair | None = None,
        *,
        meta: Mapping[str, str | int | bytes] | None = None,
    ) -> list[Entry]:
        """Sign and apply many operations in one transaction (a bulk load). ``meta`` values are
        kept in the node's ``meta`` table in that same transaction (e.g. a seeder's position)."""
        key = keypair or self.repo.keypair

        encrypted = self.manifest.encrypted

        def work(database: Database) -> list[Entry]:
            entries = [
                database.write(key, p, nonce=os.urandom(24) if encrypted else None)
                for p in payloads
            ]
            for name, value in (meta or {}).items():
                self.repo.sql.set_meta(name, value)
            return entries

        return self._transaction(work)

    def verify_blocks(
        self, blocks: Iterable[tuple[CID, bytes]]
    ) -> tuple[list[Entry], ImportReport]:
        """Check outside entry blocks (hash, structure, signature): the valid entries, and a report
        naming the invalid ones. Touches no storage, so it may run in any thread, in parallel
        with :meth:`join_entries` of an earlier batch."""
        report = ImportReport(address=self.address)
        entries = []
        for cid, block in blocks:
            if cid == self.manifest.cid:
                continue
            try:
                entries.append(decode_entry(cid, block))
            except GridnodeError as exc:
                report.rejected.append((str(cid), f"{type(exc).__name__}: {exc}"))
        return entries, report

    def verify_entry_blocks(self, blocks: Iterable[bytes]) -> tuple[list[Entry], ImportReport]:
        """Like :meth:`verify_blocks`, for blocks sent without their CIDs: each is named by its
        own hash (CIDv1, dag-cbor, sha2-256)."""
        report = ImportReport(address=self.address)
        entries = []
        for block in blocks:
            if len(block) > MAX_ENTRY_BYTES:
                report.rejected.append(("(oversized block)", f"BlockTooLarge: {len(block)} bytes"))
                continue
            cid = CID.for_block(block)
            try:
                entries.append(decode_entry(cid, block))
            except GridnodeError as exc:
                report.rejected.append((str(cid), f"{type(exc).__name__}: {exc}"))
        return entries, report

    def join_entries(
        self,
        entries: list[Entry],
        report: ImportReport | None = None,
        *,
        source: str = "",
        now: float | None = None,
    ) -> ImportReport:
        """Join verified entries in one transaction; the log judges each (clock, access, ...).

        Parents go before children (by clock), whatever order the entries came in: joined
        children first, a long history would wait for its root in the pending set, which is
        bounded. (Entries already in causal order, as a sync sends them, cost a linear pass.)
        ``source`` names where they came from (a peer id): what waits for parents is bounded in
        bytes per source; ``now`` (wall-clock seconds, default the current time) is when."""
        report = report or ImportReport(address=self.address)
        ordered = sorted(entries, key=lambda entry: entry.clock)
        when = time.time() if now is None else now
        result = self._transaction(lambda database: database.join(ordered, source=source, now=when))
        report.applied += len(result.applied)
        report.duplicates += result.duplicates
        report.pending += len(result.pending)
        for cid, error in result.rejected:
            report.rejected.append((str(cid), f"{type(error).__name__}: {error}"))
        for cid, error in result.dropped:
            report.rejected.append((str(cid), f"{type(error).__name__}: {error}"))
        self.repo.log_rejections(self.address, report.rejected)
        return report

    def join_blocks(self, blocks: Iterable[tuple[CID, bytes]], *, source: str = "") -> ImportReport:
        """Verify outside entry blocks (hash, structure, signature) and join the valid ones
        (parents first: :meth:`join_entries`)."""
        entries, report = self.verify_blocks(blocks)
        return self.join_entries(entries, report, source=source)

    def car_parts(self) -> Iterator[bytes]:
        """The database's full history as CAR v1 bytes: the header (roots: the manifest CID, then
        the heads; docs/spec.md §9), the manifest's section, then every applied entry's in the
        total order. Each stored block is checked against its CID first: a damaged one raises
        :class:`~gridnode.storage.CorruptBlock` (what `export` and the gateway send is never
        damaged)."""
        yield car_v1_header_bytes([self.manifest.cid, *self.heads])
        yield car_section_bytes(self.manifest.cid, self.manifest.block)
        entries = self.stored_blocks()
        next(entries)  # the manifest, above
        for cid, block in entries:
            yield self._section(cid, block)

    def _section(self, cid: CID, block: bytes | None) -> bytes:
        """The CAR section of a stored entry block, checked against its CID first."""
        if block is None:
            raise CorruptBlock(f"stored block {cid} of {self.address} is missing from the file")
        if not self._intact(cid, block):
            raise CorruptBlock(f"stored block {cid} of {self.address} does not hash to its CID")
        return car_section_bytes(cid, block)

    def car_chunks(self) -> CarChunks:
        """:meth:`car_parts` read a chunk at a time (:class:`CarChunks`), for an answer that
        streams: each chunk is one short storage-worker call, so other calls run between them."""
        return CarChunks(self)

    def export_car(self, path: Path) -> int:
        """Write the manifest and every applied entry as a CAR v1; return the block count.

        Roots: the manifest CID, then the heads (docs/spec.md §9).
        """
        tmp = path.with_name(path.name + ".tmp")
        count = -1  # the header is not a block
        try:
            with tmp.open("wb") as out:
                for part in self.car_parts():
                    out.write(part)
                    count += 1
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(path)
        return count


class CarChunks:
    """A database's CAR (:meth:`StoredDatabase.car_parts`: header, manifest, every applied entry
    in the total order, each block re-hashed), read by :meth:`next_chunk` a bounded number of
    bytes at a time, in the storage worker. What it holds between chunks is a position in the
    total order, not the CAR.

    The header's roots are the heads when it was made, and every applied entry is in the total
    order at a fixed position, so the CAR holds the whole causal past of its roots whatever is
    joined meanwhile. An entry joined while the chunks are read may be in it too (if its position
    is after the cursor): a valid entry past the roots, which an importer verifies and joins like
    any other. :attr:`blocks` counts the blocks when it was made."""

    def __init__(self, database: StoredDatabase) -> None:
        self._database = database
        self._head: list[bytes] | None = [
            car_v1_header_bytes([database.manifest.cid, *database.heads]),
            car_section_bytes(database.manifest.cid, database.manifest.block),
        ]
        self._after: bytes | None = None
        self._done = False
        #: The manifest and the applied entries when the reader was made.
        self.blocks = 1 + len(database)

    def next_chunk(self, limit: int) -> list[bytes]:
        """The next parts, about ``limit`` bytes (at least one part); ``[]`` at the end. A stored
        block that does not hash to its CID raises :class:`~gridnode.storage.CorruptBlock`."""
        parts: list[bytes] = []
        if self._head is not None:
            parts, self._head = self._head, None
        if self._done:
            return parts
        size = sum(len(p) for p in parts)
        database = self._database
        while True:
            page = database.order_blocks(self._after)
            for position, cid, block in page:
                parts.append(database._section(cid, block))
                size += len(parts[-1])
                self._after = position
                if size >= limit:
                    return parts
            if len(page) < PAGE:
                self._done = True
                return parts


class _Items:
    """The reconciliation view of a stored database's log, always of its current in-memory log
    (a rolled-back transaction replaces it)."""

    def __init__(self, database: StoredDatabase) -> None:
        self._database = database

    def _view(self) -> LogItems:
        return LogItems(self._database._db.log)

    def count(self, low: bytes, high: bytes) -> int:
        return self._view().count(low, high)

    def fingerprint(self, low: bytes, high: bytes) -> bytes:
        return self._view().fingerprint(low, high)

    def items(self, low: bytes, high: bytes) -> list[bytes]:
        return self._view().items(low, high)

    def split(self, low: bytes, high: bytes, parts: int) -> list[bytes]:
        return self._view().split(low, high, parts)

    def recent_bounds(self) -> list[bytes]:
        return self._view().recent_bounds()


class Repo:
    """A node's data directory. Use as a context manager, or call :meth:`close`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        make_private(data_dir)
        self.keypair, created = load_or_create_key(data_dir)
        if created:
            log.info("new node identity %s", self.keypair.did)
        write_default_config(data_dir)
        self.config: Config = load_config(data_dir)
        self.sql = SqliteFile(data_dir / DB_FILE, durability=self.config.durability)
        #: The blocks of files and directories and their local pins (gridnode/files/store.py).
        self.files = FileStore(self.sql, data_dir / BLOCK_DIR, durability=self.config.durability)
        #: The OrbitDB databases followed and their verified blocks (gridnode/orbitdb/).
        self.orbit = OrbitTables(self.sql)
        #: ``max_storage`` against the file's size and the file store's block directory: what
        #: follows, restores, imports, pulls and file adds ask before they add anything.
        self.quota = StorageQuota(self.bytes_used, self.config.max_storage, log_transitions=False)
        self._open: dict[str, StoredDatabase] = {}
        #: The CIDs (root and chunks) of each published snapshot root served, by root CID.
        self._snapshot_blocks: dict[bytes, frozenset[CID]] = {}
        # Rejected entries are logged a few per database and interval, then summed up: whoever
        # sends entries must not set the log's volume (the reports still name every one).
        self._rejections = LogLimiter()
        self._rejections_lock = threading.Lock()

    def bytes_used(self) -> int:
        """What ``max_storage`` counts: the SQLite file with its WAL (file blocks kept inline
        included), plus the file store's block directory (a running total, no directory walk)."""
        return self.sql.bytes_on_disk() + self.files.outside_bytes()

    def log_rejections(self, address: str, rejected: Sequence[tuple[str, str]]) -> None:
        """Log refused blocks of ``address``: a few lines per interval, then a summary."""
        if not rejected:
            return
        now = time.monotonic()
        with self._rejections_lock:
            shown = [item for item in rejected if self._rejections.allow(address, now)]
            more = self._rejections.unreported(address, now)
        for cid_text, reason in shown:
            log.warning("rejected %s for %s: %s", cid_text, address, reason)
        if more:
            log.warning(
                "%d more entries rejected for %s (not logged one by one: at most %d lines "
                "per %.0f s)",
                more,
                address,
                self._rejections.lines,
                self._rejections.interval,
            )

    def close(self) -> None:
        self.sql.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def did(self) -> str:
        return self.keypair.did

    def meta(self, name: str) -> Any:
        """A value kept in the node's ``meta`` table (by :meth:`StoredDatabase.write_many`), or
        ``None``."""
        return self.sql.meta(name)

    def replicated(self, address: str) -> bool:
        """Whether the node replicates this database when it runs (every database does, until
        it is unfollowed; following it again undoes that)."""
        return self.meta(_UNFOLLOWED + address) is None

    def set_replicated(self, address: str, replicated: bool) -> None:
        """Record (durably) whether the node replicates this database when it runs."""
        with self.sql.transaction():
            if replicated:
                self.sql.delete_meta(_UNFOLLOWED + address)
            else:
                self.sql.set_meta(_UNFOLLOWED + address, 1)

    def private(self, address: str) -> bool:
        """Whether this database is private (:attr:`StoredDatabase.private`): the node
        replicates it only with its readers, never on a gossip topic, and never serves its
        blocks to the IPFS world (bitswap, the gateway). A database that does not open counts
        as private: nothing of it is served to anyone who asks by CID."""
        try:
            return self.database(address).private
        except GridnodeError:
            return True

    def flagged_private(self, address: str) -> bool:
        """Whether the node was told to keep this database private (:meth:`set_private`)."""
        return self.meta(_PRIVATE + address) is not None

    def set_private(self, address: str, private: bool) -> None:
        """Record (durably) whether the node keeps this database private."""
        with self.sql.transaction():
            if private:
                self.sql.set_meta(_PRIVATE + address, 1)
            else:
                self.sql.delete_meta(_PRIVATE + address)

    def followed_for_catalog(self, address: str) -> bool:
        """Whether the node follows this database because a catalog lists it (not by hand):
        only such a database is unfollowed when no followed catalog lists it any more."""
        return self.meta(_FOR_CATALOG + address) is not None

    def set_followed_for_catalog(self, address: str, by_catalog: bool) -> None:
        """Record (durably) whether a catalog, not the operator, made the node follow it."""
        with self.sql.transaction():
            if by_catalog:
                self.sql.set_meta(_FOR_CATALOG + address, 1)
            else:
                self.sql.delete_meta(_FOR_CATALOG + address)

    def declined(self, address: str) -> bool:
        """Whether the operator unfollowed this database by hand: no catalog follows it again
        until the operator does."""
        return self.meta(_DECLINED + address) is not None

    def set_declined(self, address: str, declined: bool) -> None:
        """Record (durably) whether the operator unfollowed this database by hand."""
        with self.sql.transaction():
            if declined:
                self.sql.set_meta(_DECLINED + address, 1)
            else:
                self.sql.delete_meta(_DECLINED + address)

    def served(self) -> list[StoredDatabase]:
        """The databases whose blocks the node serves to anyone who asks by CID (bitswap, the
        gateway): those it replicates and does not keep private. A database whose store cannot
        open is left out."""
        found = []
        for address, _name, _store in self.databases():
            if not self.replicated(address) or self.private(address):
                continue
            try:
                found.append(self.database(address))
            except GridnodeError:
                continue
        return found

    def served_blocks(self, cids: Sequence[CID]) -> dict[CID, bytes | None]:
        """``cid -> block`` for each CID, from the databases the node serves (:meth:`served`):
        their manifests and applied entries, and from the file store (every block it holds:
        pinned files and directories), each block checked against its CID; ``None`` where none
        has it (or its copy is damaged)."""
        found: dict[CID, bytes | None] = dict.fromkeys(cids)
        for database in self.served():
            lacking = [cid for cid, block in found.items() if block is None]
            if not lacking:
                break
            for cid in lacking:
                if cid == database.manifest.cid:
                    found[cid] = database.manifest.block
            for cid, block in database.blocks_of(lacking):
                found[cid] = block
            for cid in self._snapshot_cids(database.address) & set(lacking):
                stored = self.sql.get_block(cid.bytes)
                if stored is not None and cid.matches(stored):
                    found[cid] = stored
        lacking = [cid for cid, block in found.items() if block is None]
        if lacking:
            # The OrbitDB databases followed: their blocks, verified when kept, served to any
            # OrbitDB peer (an OrbitDB database is public to whoever knows its address).
            kept = self.orbit.get_many([cid.bytes for cid in lacking])
            for cid in lacking:
                held = kept.get(cid.bytes)
                if held is not None and cid.matches(held):
                    found[cid] = held
        lacking = [cid for cid, block in found.items() if block is None]
        if lacking:
            # The file store's blocks: files and directories are public by nature (a CID anyone
            # may ask for); each re-hashed, a damaged one not served.
            for cid in self.files.has_many(lacking):
                try:
                    found[cid] = self.files.get(cid)
                except CorruptBlock:
                    log.error("file block %s is damaged: not served", cid)
        return found

    def _snapshot_cids(self, address: str) -> frozenset[CID]:
        """The root and chunk CIDs of the newest snapshot this node published of ``address``
        (docs/spec.md §16): served by CID like the entries, so anyone (bitswap, the gateway)
        fetches a snapshot's blocks, from several holders at once."""
        root = published_root(self.sql, address)
        if root is None:
            return frozenset()
        known = self._snapshot_blocks.get(root)
        if known is None:
            cid = CID.parse(root)
            block = self.sql.get_block(root)
            try:
                header = decode_root(cid, block) if block is not None else None
            except GridnodeError:
                header = None
            known = frozenset([cid, *header.chunks]) if header is not None else frozenset()
            if len(self._snapshot_blocks) >= 256:
                self._snapshot_blocks.clear()
            self._snapshot_blocks[root] = known
        return known

    # -- databases ----------------------------------------------------------------------------

    def create_database(
        self,
        name: str,
        store: str,
        *,
        writers: Sequence[str] = (),
        admins: Sequence[str] | None = None,
        public: bool = False,
        options: dict[str, Any] | None = None,
        readers: Sequence[str] | None = None,
        encrypted: bool = False,
        key_readers: Sequence[str] = (),
    ) -> StoredDatabase:
        """A new database with this node's key as admin (and writer); private if ``readers`` is
        given (maybe empty: its admins and writers read it). ``encrypted``: its store operations
        are sealed with a fresh key, wrapped for this node, its writers and ``key_readers``."""
        writer_list = [PUBLIC] if public else [self.did, *writers]
        if public:
            writer_list += list(writers)
        manifest = create_manifest(
            name,
            store,
            admins=[self.did] if admins is None else admins,
            writers=writer_list,
            options=options,
            nonce=os.urandom(8),
            readers=readers,
            encrypted=encrypted,
        )
        database = self.add_database(manifest)
        if encrypted:
            database.create_key([*key_readers, *(w for w in writers if w != PUBLIC)])
        return database

    def database_keys(self, address: str) -> dict[bytes, bytes]:
        """The keys of the encrypted database ``address`` this node holds (kid -> key)."""
        return load_database_keys(self.data_dir).get(address, {})

    def add_database(self, manifest: Manifest) -> StoredDatabase:
        """Keep (or follow) a database given its manifest.

        Raises :class:`~crdt.errors.InvalidManifest`, keeping nothing, if its store cannot open
        with the manifest's options (a peer's manifest is outside input like any other)."""
        try:
            open_store(manifest.store, manifest.options)
        except GridnodeError as exc:
            raise InvalidManifest(f"{manifest.address}: its store does not open: {exc}") from None
        with self.sql.transaction():
            self.sql.put_block(manifest.cid.bytes, manifest.block)
            self.sql.add_database_row(
                manifest.address, manifest.cid.bytes, manifest.name, manifest.store
            )
        return self.database(manifest.address)

    def database(self, address: str) -> StoredDatabase:
        """An existing database by address (``/gridnode/<cid>`` or the bare CID)."""
        # An open database named exactly as it is kept: no parsing (every write names one).
        opened = self._open.get(address) or self._open.get("/gridnode/" + address)
        if opened is not None:
            return opened
        try:
            cid = parse_address(address)
        except InvalidCID as exc:
            raise UnknownDatabase(f"not a database address: {address!r} ({exc.reason})") from None
        canonical = "/gridnode/" + str(cid)
        opened = self._open.get(canonical)
        if opened is not None:
            return opened
        manifest_cid = self.sql.manifest_cid_of(canonical)
        block = None if manifest_cid is None else self.sql.get_block(manifest_cid)
        if block is None:
            raise UnknownDatabase(f"no database {canonical} in {self.data_dir}")
        stored = StoredDatabase(self, decode_manifest(cid, block))
        self._open[canonical] = stored
        # Entries that waited for their parents past the limit while the node was stopped.
        stored.expire_pending()
        return stored

    def drop_database(self, address: str) -> int:
        """Delete a database this node keeps and does not replicate: its manifest, its entries
        (applied and waiting), its tables and its ``meta`` rows; return the blocks deleted. The
        file's pages are reused by later writes (SQLite does not shrink the file)."""
        database = self.database(address)
        if self.replicated(database.address):
            raise InvalidRequest(f"{database.address} is replicated: unfollow it first")
        # Waiting entries go the log's own way (their blocks with them); then every applied one.
        database.expire_pending(now=1e15)
        blocks = [database.manifest.cid.bytes]
        blocks += [cid.bytes for cid, _block in database.stored_blocks()][1:]
        with self.sql.transaction():
            self.sql.delete_database(database.address, blocks)
            for prefix in (_UNFOLLOWED, _PRIVATE, _FOR_CATALOG, _DECLINED):
                self.sql.delete_meta(prefix + database.address)
        self._open.pop(database.address, None)
        return len(blocks)

    def databases(self) -> list[tuple[str, str, str]]:
        """``(address, name, store type)`` of every database here, by name."""
        return self.sql.database_rows()

    # -- CAR import ---------------------------------------------------------------------------

    def import_car(self, data: bytes | memoryview) -> ImportReport:
        """Import a CAR written by :meth:`StoredDatabase.export_car` (or a peer).

        The whole file is read and every block hash checked before anything changes: a bad file
        changes nothing. Then the manifest is kept and every entry verified and joined.
        """
        header = read_header(data)
        blocks = list(iter_blocks(data))
        if not header.roots:
            raise InvalidCar("a gridnode CAR names its manifest as the first root")
        by_cid = dict(blocks)
        manifest_cid = header.roots[0]
        manifest_block = by_cid.get(manifest_cid)
        if manifest_block is None:
            raise InvalidCar(f"the manifest {manifest_cid} is not in the file")
        try:
            manifest = decode_manifest(manifest_cid, manifest_block)
        except InvalidManifest as exc:
            raise InvalidCar(f"the first root is not a gridnode manifest: {exc}") from None
        database = self.add_database(manifest)
        return database.join_blocks(blocks, source=IMPORT_SOURCE)
