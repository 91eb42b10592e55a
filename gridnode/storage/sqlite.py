"""The node's SQLite file: blocks by CID, the tables of every database's log and store, the
node's ``meta`` values and its list of databases.

This room owns every SQL statement of the node and the only ``import sqlite3`` (a test,
tests/test_layers.py, holds the rest of the code base to that): the rooms above speak its
vocabulary (a meta value, a databases row, a block, a table of a space), never SQL, so the
schema can change here alone. It refuses to let a ``sqlite3`` exception out: every failure of
SQLite (a damaged or foreign file, a file locked by another process, a failed read, write or
commit) comes out as :class:`~gridnode.errors.StorageError` naming the file, or
:class:`~gridnode.errors.StorageFull` when the disk is full.

One file per node (``DATA_DIR/gridnode.sqlite``), WAL journal. With ``durability="full"`` (the
default: ``synchronous=FULL``) a transaction is on disk when ``COMMIT`` returns, so a write
acknowledged after its commit survives a crash, a SIGKILL or a power cut; with
``durability="process"`` (``synchronous=NORMAL``) a commit is in the operating system's hands, not
fsynced: it survives the process (a crash, a SIGKILL), not a power cut (the WAL is fsynced at
checkpoints only). Throughput comes from putting many writes in one transaction (group commit,
:mod:`gridnode.node.writes`), not from weaker durability.

The crdt layer's :class:`~crdt.space.Table` maps onto one SQL table ``kv(tid, key, value)``; each
(space, table name) pair has a small integer ``tid``. Values are DAG-CBOR, except integers, stored
as SQLite integers. The table name ``blocks`` in any space is the node-wide ``blocks`` table: raw
block bytes by binary CID, shared by every database and by the IPFS-facing parts of the node.

A connection is not shared between threads at once: the node reaches it through one worker thread
at a time (``trio.to_thread.run_sync`` with a limiter of 1; see docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import cbor2

from crdt.ipld import CID
from gridnode.errors import CorruptBlock, StorageError, StorageFull

__all__ = [
    "DB_FILE",
    "CorruptBlock",
    "SqliteFile",
    "SqliteSpace",
    "StorageError",
    "StorageFull",
    "Tables",
]

log = logging.getLogger(__name__)

DB_FILE: Final = "gridnode.sqlite"
SCHEMA_VERSION: Final = 1

# ``databases`` once had a column ``followed`` (never read: whether the node replicates a
# database is a ``meta`` row, ``unfollowed:<address>``). New files are made without it; a file
# made before keeps it, harmlessly: it has a default, and every statement here names its columns.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
-- A rowid table with a unique index on the CID, not a WITHOUT ROWID table keyed by it: inserts
-- then append to the table and touch only the small index at a random place (2.5x faster at
-- 400k blocks of 400 bytes, measured; docs/decisions.md).
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY,
    cid BLOB NOT NULL UNIQUE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tables (
    tid INTEGER PRIMARY KEY,
    space TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (space, name)
);
CREATE TABLE IF NOT EXISTS kv (
    tid INTEGER NOT NULL,
    key BLOB NOT NULL,
    value NOT NULL,
    PRIMARY KEY (tid, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS databases (
    address TEXT PRIMARY KEY,
    manifest_cid BLOB NOT NULL,
    name TEXT NOT NULL,
    store TEXT NOT NULL
) WITHOUT ROWID;
"""


#: Free bytes below which an I/O error of SQLite is taken for a full disk.
_FULL_BELOW: Final = 1 << 20


def _full_disk(path: Path, exc: BaseException) -> StorageFull | None:
    """A :class:`StorageFull` for ``exc`` if it is SQLite's ``SQLITE_FULL``, or an I/O error on a
    disk with (almost) no space left; else ``None``."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    full = code == sqlite3.SQLITE_FULL
    if not full and code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        try:
            full = shutil.disk_usage(path.parent).free < _FULL_BELOW
        except OSError:
            full = False
    if not full:
        return None
    log.error(
        "disk full: cannot write to %s (%s); writes are refused until space is freed", path, exc
    )
    return StorageFull(
        f"the disk holding {path} is full: the write was refused, nothing of it kept"
    )


def _failure(path: Path, exc: sqlite3.Error, doing: str = "SQLite failed on") -> StorageError:
    """The :class:`StorageError` a failure of SQLite on the file at ``path`` becomes (raise it
    ``from exc``): callers catch the node's errors, never ``sqlite3``'s."""
    full = _full_disk(path, exc)
    if full is not None:
        return full
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        why = "it is locked by another process (another gridnode on this data directory?)"
    elif primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        why = "it is damaged or is not a gridnode SQLite file"
    else:
        why = None
    return StorageError(f"{doing} {path}: {why} ({exc})" if why else f"{doing} {path}: {exc}")


# Stored values are our own: they were checked before they were written and never leave the
# node in this form, so they are written with cbor2's C encoder (links as tag 42) rather than the
# strict canonical codec, and read back without the strict checks: 3-5x faster both ways.


def _default(encoder: Any, value: Any) -> None:
    if type(value) is CID:
        encoder.encode(cbor2.CBORTag(42, b"\x00" + value.bytes))
    else:
        raise StorageError(f"cannot store a {type(value).__name__}")


def _tag(tag: Any, immutable: bool) -> Any:
    if tag.tag == 42:
        return CID.parse(tag.value[1:])
    raise StorageError(f"unexpected tag {tag.tag} in stored data")


def _encode(value: Any) -> Any:
    if type(value) is int and -(1 << 63) <= value < (1 << 63):
        return value
    return cbor2.dumps(value, default=_default)


def _decode(raw: Any) -> Any:
    if type(raw) is int:
        return raw
    return cbor2.loads(raw, tag_hook=_tag)


#: SQLite's ``synchronous`` for each ``durability`` (docs/config.md): FULL fsyncs the WAL at every
#: commit; NORMAL (in WAL mode) only at checkpoints.
_SYNCHRONOUS: Final = {"full": "FULL", "process": "NORMAL"}


class SqliteFile:
    """One node's SQLite file. Use :meth:`transaction` around every group of writes.

    Raises :class:`~gridnode.errors.StorageError` if the file cannot be opened: damaged, not a
    SQLite file, locked, or of another schema."""

    def __init__(self, path: Path, *, durability: str = "full") -> None:
        if durability not in _SYNCHRONOUS:
            raise StorageError(f"unknown durability {durability!r} (full or process)")
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create the file 0600 before SQLite does (its -wal and -shm take the main file's mode):
        # SQLite would make it 0644 under the usual umask.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            os.chmod(path, 0o600)
        conn = None
        try:
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
            conn.execute("PRAGMA foreign_keys=OFF")
            # A 64 MiB page cache (the default is 2 MiB): random CIDs as keys touch pages all over.
            conn.execute("PRAGMA cache_size=-65536")
            # Checkpoint the WAL every ~80 MiB rather than every 4 MiB: batches of random-keyed
            # inserts re-dirty the same pages, and fewer checkpoints write each page fewer times.
            conn.execute("PRAGMA wal_autocheckpoint=20000")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise StorageError(
                    f"{path} has schema {row[0]}; this gridnode reads {SCHEMA_VERSION}"
                )
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _failure(path, exc, "cannot open") from exc
            raise
        self.conn = conn
        self._tids: dict[tuple[str, str], int] = {}
        self._dirty: set[_Buffered] = set()
        self._depth = 0

    def bytes_on_disk(self) -> int:
        """The file and its write-ahead log, in bytes: two ``stat`` calls, no SQL (cheap enough
        to ask before every batch a pull joins). The WAL counts at its size on disk, which
        stays at its high-water mark between checkpoints: this is what the disk gives up."""
        size = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(OSError):
                size += path.stat().st_size
        return size

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (durable on return), or ``ROLLBACK`` on error.

        Nested use joins the outer transaction.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        self._depth = 1
        try:
            yield
            self.flush()
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, sqlite3.Error):
                raise _failure(self.path, exc) from exc
            raise
        self._depth = 0
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # A full disk fails the COMMIT itself (the WAL cannot grow): nothing of it is kept.
            self._abandon()
            raise _failure(self.path, exc) from exc

    def _abandon(self) -> None:
        """Roll back the open transaction (if SQLite has not already) and forget its writes."""
        self._depth = 0
        for table in self._dirty:
            table.discard()
        self._dirty.clear()
        # The ``tables`` rows written in it are gone: let the next use write them again.
        self._tids.clear()
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise _failure(self.path, exc) from exc

    def flush(self) -> None:
        """Write every table's buffered writes (done before COMMIT and before range reads)."""
        for table in self._dirty:
            table.flush()
        self._dirty.clear()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def table_id(self, space: str, name: str) -> int:
        """The id of a (space, table) pair: derived from the names, so a rollback cannot
        leave a cached id pointing at nothing (``tables`` only lists them)."""
        tid = self._tids.get((space, name))
        if tid is None:
            digest = hashlib.sha256(f"{space}\0{name}".encode()).digest()
            tid = int.from_bytes(digest[:8], "big") >> 1
            try:
                self.conn.execute(
                    "INSERT OR IGNORE INTO tables (tid, space, name) VALUES (?, ?, ?)",
                    (tid, space, name),
                )
            except sqlite3.Error as exc:
                raise _failure(self.path, exc) from exc
            self._tids[(space, name)] = tid
        return tid

    def space(self, name: str) -> SqliteSpace:
        """The tables of one database (``name`` is its address)."""
        return SqliteSpace(self, name)

    def synchronous(self) -> str:
        """SQLite's ``synchronous`` setting of the connection, by name (``FULL``, ``NORMAL``)."""
        try:
            value = int(self.conn.execute("PRAGMA synchronous").fetchone()[0])
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(value, str(value))

    def integrity_check(self) -> str:
        """SQLite's own check of the file: ``"ok"``, or what it found damaged."""
        try:
            return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc

    # -- meta: the node's own named values ------------------------------------------------------

    def meta(self, name: str) -> Any:
        """The value of the ``meta`` row ``name``, or ``None``."""
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        return None if row is None else row[0]

    def set_meta(self, name: str, value: str | int | bytes) -> None:
        """Write the ``meta`` row ``name`` (in the open transaction, if any)."""
        try:
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)
            )
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc

    def delete_meta(self, name: str) -> None:
        """Delete the ``meta`` row ``name``, if there is one."""
        try:
            self.conn.execute("DELETE FROM meta WHERE name = ?", (name,))
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc

    # -- databases: one row per database the node keeps ----------------------------------------

    def add_database_row(self, address: str, manifest_cid: bytes, name: str, store: str) -> None:
        """List a database (its manifest block is put by :meth:`put_block`); a database already
        listed keeps its row."""
        try:
            self.conn.execute(
                "INSERT OR IGNORE INTO databases (address, manifest_cid, name, store) "
                "VALUES (?, ?, ?, ?)",
                (address, manifest_cid, name, store),
            )
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc

    def manifest_cid_of(self, address: str) -> bytes | None:
        """The binary manifest CID of the database listed at ``address``, or ``None``."""
        try:
            row = self.conn.execute(
                "SELECT manifest_cid FROM databases WHERE address = ?", (address,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        return None if row is None else bytes(row[0])

    def database_rows(self) -> list[tuple[str, str, str]]:
        """``(address, name, store type)`` of every listed database, by name then address."""
        try:
            rows = self.conn.execute(
                "SELECT address, name, store FROM databases ORDER BY name, address"
            ).fetchall()
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        return [(str(a), str(n), str(s)) for a, n, s in rows]

    def delete_database(self, address: str, blocks: list[bytes]) -> None:
        """Forget a database (in the open transaction, if any): its row, every table of its
        space and their rows, and the ``blocks`` (binary CIDs) the caller names as its own."""
        try:
            self.conn.execute(
                "DELETE FROM kv WHERE tid IN (SELECT tid FROM tables WHERE space = ?)", (address,)
            )
            self.conn.execute("DELETE FROM tables WHERE space = ?", (address,))
            self.conn.execute("DELETE FROM databases WHERE address = ?", (address,))
            self.conn.executemany("DELETE FROM blocks WHERE cid = ?", [(c,) for c in blocks])
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        for key in [k for k in self._tids if k[0] == address]:
            del self._tids[key]

    # -- blocks -------------------------------------------------------------------------------

    def get_block(self, cid: bytes) -> bytes | None:
        try:
            row = self.conn.execute("SELECT data FROM blocks WHERE cid = ?", (cid,)).fetchone()
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc
        return None if row is None else bytes(row[0])

    def put_block(self, cid: bytes, data: bytes) -> None:
        try:
            self.conn.execute("INSERT OR IGNORE INTO blocks (cid, data) VALUES (?, ?)", (cid, data))
        except sqlite3.Error as exc:
            raise _failure(self.path, exc) from exc


_GONE: Final = object()
#: A table writes its buffer out once it holds this many rows, even inside a transaction.
_BUFFER_LIMIT: Final = 20_000


class _Buffered:
    """Write-behind for one table: puts and deletes wait in a dict and go to SQLite in one
    ``executemany`` each, before COMMIT or before a range read of the table. Reads see them."""

    def __init__(self, file: SqliteFile) -> None:
        self._file = file
        self._conn = file.conn
        self._buffer: dict[bytes, Any] = {}

    def _stage(self, key: bytes, value: Any) -> None:
        buffer = self._buffer
        if not buffer:
            self._file._dirty.add(self)
        buffer[key] = value
        if len(buffer) >= _BUFFER_LIMIT or not self._file.in_transaction:
            self.flush()

    def discard(self) -> None:
        self._buffer.clear()

    def flush(self) -> None:
        if not self._buffer:
            return
        puts = [(k, v) for k, v in self._buffer.items() if v is not _GONE]
        gone = [(k,) for k, v in self._buffer.items() if v is _GONE]
        self._buffer.clear()
        try:
            self._write(puts, gone)
        except sqlite3.Error as exc:
            raise _failure(self._file.path, exc) from exc

    def _write(self, puts: list[tuple[bytes, Any]], gone: list[tuple[bytes]]) -> None:
        raise NotImplementedError

    def _rows(self, sql: str, args: Any) -> list[Any]:
        """The rows of a read of this table."""
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _failure(self._file.path, exc) from exc


class _BlockTable(_Buffered):
    """The ``blocks`` table seen as a crdt Table of raw bytes."""

    def get(self, key: bytes) -> Any | None:
        staged = self._buffer.get(key)
        if staged is not None:
            return None if staged is _GONE else staged
        return self._file.get_block(key)

    def put(self, key: bytes, value: Any) -> None:
        self._stage(key, bytes(value))

    def delete(self, key: bytes) -> bool:
        existed = self.get(key) is not None
        self._stage(key, _GONE)
        return existed

    def _write(self, puts: list[tuple[bytes, Any]], gone: list[tuple[bytes]]) -> None:
        if puts:
            # Content-addressed: a CID already stored has these very bytes.
            self._conn.executemany("INSERT OR IGNORE INTO blocks (cid, data) VALUES (?, ?)", puts)
        if gone:
            self._conn.executemany("DELETE FROM blocks WHERE cid = ?", gone)

    def range(
        self,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, Any]]:
        self.flush()
        sql, args = _range_sql("SELECT cid, data FROM blocks", "cid", [], low, high, reverse, limit)
        for key, data in self._rows(sql, args):
            yield bytes(key), bytes(data)

    def __len__(self) -> int:
        self.flush()
        return int(self._rows("SELECT count(*) FROM blocks", ())[0][0])


def _range_sql(
    select: str,
    column: str,
    args: list[Any],
    low: bytes | None,
    high: bytes | None,
    reverse: bool,
    limit: int | None,
) -> tuple[str, list[Any]]:
    clauses = []
    if low is not None:
        clauses.append(f"{column} >= ?")
        args.append(low)
    if high is not None:
        clauses.append(f"{column} < ?")
        args.append(high)
    sql = select
    if clauses:
        sql += (" AND " if " WHERE " in select else " WHERE ") + " AND ".join(clauses)
    sql += f" ORDER BY {column} {'DESC' if reverse else 'ASC'}"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(max(limit, 0))
    return sql, args


class SqliteTable(_Buffered):
    """One crdt Table stored as the rows of ``kv`` with its ``tid``."""

    def __init__(self, file: SqliteFile, tid: int) -> None:
        super().__init__(file)
        self._tid = tid

    def get(self, key: bytes) -> Any | None:
        staged = self._buffer.get(key)
        if staged is not None:
            return None if staged is _GONE else staged
        try:
            row = self._conn.execute(
                "SELECT value FROM kv WHERE tid = ? AND key = ?", (self._tid, key)
            ).fetchone()
        except sqlite3.Error as exc:
            raise _failure(self._file.path, exc) from exc
        return None if row is None else _decode(row[0])

    def absent(self, keys: list[bytes]) -> set[bytes]:
        """Those of ``keys`` not in the table (staged writes included), in a few queries."""
        buffer = self._buffer
        unsure = [k for k in keys if k not in buffer]
        missing = {k for k in keys if buffer.get(k) is _GONE}
        for start in range(0, len(unsure), 500):
            chunk = unsure[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                f"SELECT key FROM kv WHERE tid = ? AND key IN ({marks})", (self._tid, *chunk)
            )
            found = {bytes(row[0]) for row in rows}
            missing.update(k for k in chunk if k not in found)
        return missing

    def put(self, key: bytes, value: Any) -> None:
        self._stage(key, value)

    def delete(self, key: bytes) -> bool:
        existed = self.get(key) is not None
        self._stage(key, _GONE)
        return existed

    def _write(self, puts: list[tuple[bytes, Any]], gone: list[tuple[bytes]]) -> None:
        tid = self._tid
        if puts:
            self._conn.executemany(
                "INSERT OR REPLACE INTO kv (tid, key, value) VALUES (?, ?, ?)",
                [(tid, k, _encode(v)) for k, v in puts],
            )
        if gone:
            self._conn.executemany(
                "DELETE FROM kv WHERE tid = ? AND key = ?", [(tid, k) for (k,) in gone]
            )

    def range(
        self,
        low: bytes | None = None,
        high: bytes | None = None,
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, Any]]:
        # Pages of rows, each its own query: callers may write to this table while iterating,
        # and no cursor stays open across their writes.
        left = limit
        while left is None or left > 0:
            self.flush()
            page = 256 if left is None else min(left, 256)
            sql, args = _range_sql(
                "SELECT key, value FROM kv WHERE tid = ?",
                "key",
                [self._tid],
                low,
                high,
                reverse,
                page,
            )
            rows = self._rows(sql, args)
            for key, value in rows:
                yield bytes(key), _decode(value)
            if len(rows) < page:
                return
            last = bytes(rows[-1][0])
            if reverse:
                high = last
            else:
                low = last + b"\x00"
            if left is not None:
                left -= len(rows)

    def __len__(self) -> int:
        self.flush()
        return int(self._rows("SELECT count(*) FROM kv WHERE tid = ?", (self._tid,))[0][0])

    def blocks_after(
        self, after: bytes | None, limit: int, cid_from: int
    ) -> list[tuple[bytes, bytes | None]]:
        """``(key, block)`` of at most ``limit`` rows with keys above ``after`` (all if
        ``None``), in key order, each with the block whose binary CID is the key from byte
        ``cid_from`` on (``None`` if the file lacks it): one query, no values decoded. For
        passes over a whole log (``log.order``: clock + CID) a page at a time."""
        self._file.flush()
        sql = (
            "SELECT kv.key, blocks.data FROM kv LEFT JOIN blocks ON blocks.cid = substr(kv.key, ?)"
            " WHERE kv.tid = ?"
        )
        args: list[Any] = [cid_from + 1, self._tid]
        if after is not None:
            sql += " AND kv.key > ?"
            args.append(after)
        sql += " ORDER BY kv.key LIMIT ?"
        args.append(max(limit, 0))
        return [
            (bytes(key), None if data is None else bytes(data))
            for key, data in self._rows(sql, args)
        ]


class SqliteSpace:
    """The tables of one database in the node's SQLite file."""

    __slots__ = ("_file", "_tables", "name")

    def __init__(self, file: SqliteFile, name: str) -> None:
        self._file = file
        self.name = name
        self._tables: dict[str, Any] = {}

    def table(self, name: str) -> Any:
        table = self._tables.get(name)
        if table is None:
            if name == "blocks":
                table = _BlockTable(self._file)
            else:
                table = SqliteTable(self._file, self._file.table_id(self.name, name))
            self._tables[name] = table
        return table


class Tables:
    """The tables of one concern in an open :class:`SqliteFile`, made from :attr:`SCHEMA` if
    missing. Writes join the open transaction (``sql.transaction()``); every SQLite failure
    comes out as a :class:`~gridnode.errors.StorageError`."""

    #: The ``CREATE ... IF NOT EXISTS`` statements of the tables.
    SCHEMA: str = ""
    #: What they are, for the error when they cannot be made ("cannot open WHAT <path>").
    WHAT: str = "the tables of"

    def __init__(self, sql: SqliteFile) -> None:
        self.sql = sql
        self._conn = sql.conn
        try:
            self._conn.executescript(self.SCHEMA)
        except sqlite3.Error as exc:
            raise _failure(sql.path, exc, f"cannot open {self.WHAT}") from exc

    def _rows(self, statement: str, args: Sequence[object] = ()) -> list[Any]:
        try:
            return self._conn.execute(statement, args).fetchall()
        except sqlite3.Error as exc:
            raise _failure(self.sql.path, exc) from exc

    def _many(self, statement: str, rows: Iterable[Sequence[object]]) -> int:
        """Run ``statement`` for each of ``rows``; the rows it changed."""
        try:
            return int(self._conn.executemany(statement, rows).rowcount)
        except sqlite3.Error as exc:
            raise _failure(self.sql.path, exc) from exc
