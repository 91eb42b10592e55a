"""The file store's rows in the node's SQLite file: which file blocks the node holds (their bytes
inline, or in the block directory beside the file), the local pins by name, the leases of adds in
progress, and the running totals ``max_storage`` counts.

Every SQL statement of the file store is here (tests/test_layers.py holds the rest of the code base
to that); :class:`gridnode.files.store.FileStore` speaks this module's vocabulary (a block row, a
pin row, a lease) and owns the block directory. File blocks are kept apart from the databases'
``blocks`` table: a database's blocks belong to its log, which never loses them, while a file
block goes when no pin needs it (``gridnode gc``).

The tables are made when the store is first opened (``CREATE TABLE IF NOT EXISTS``): an older
file gains them and keeps its schema version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from gridnode.storage.sqlite import Tables, _failure

__all__ = ["BlockRow", "FileTables", "PinRow"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS file_blocks (
    id INTEGER PRIMARY KEY,
    cid BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    data BLOB,
    lease INTEGER
);
CREATE TABLE IF NOT EXISTS file_pins (
    name TEXT PRIMARY KEY,
    cid BLOB NOT NULL,
    recursive INTEGER NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_pins_cid ON file_pins (cid);
CREATE TABLE IF NOT EXISTS file_leases (id INTEGER PRIMARY KEY, renewed REAL NOT NULL);
CREATE TABLE IF NOT EXISTS file_usage (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    blocks INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    outside INTEGER NOT NULL
);
INSERT OR IGNORE INTO file_usage (id, blocks, bytes, outside) VALUES (0, 0, 0, 0);
"""

#: ``(binary cid, size, inline bytes or None)``: one file block as stored.
BlockRow = tuple[bytes, int, bytes | None]
#: ``(name, binary cid, recursive, created)``: one local pin.
PinRow = tuple[str, bytes, bool, float]

#: Parameters per ``IN (...)`` query (SQLite allows 32766; smaller keeps each statement short).
_CHUNK: Final = 500


class FileTables(Tables):
    """The file store's tables in ``sql`` (made if missing). Writes join the open transaction
    (``sql.transaction()``); every SQLite failure comes out as a
    :class:`~gridnode.errors.StorageError`."""

    SCHEMA = _SCHEMA
    WHAT = "the file store of"

    # -- blocks -------------------------------------------------------------------------------

    def present(self, cids: Sequence[bytes]) -> set[bytes]:
        """Those of ``cids`` (binary) that have a row."""
        found: set[bytes] = set()
        for start in range(0, len(cids), _CHUNK):
            chunk = cids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(f"SELECT cid FROM file_blocks WHERE cid IN ({marks})", chunk)
            found.update(bytes(r[0]) for r in rows)
        return found

    def insert(self, rows: Sequence[BlockRow], lease: int | None) -> None:
        """Add block rows (none of them present: :meth:`present` first, in the same
        transaction) and count them in the totals."""
        if not rows:
            return
        self._many(
            "INSERT INTO file_blocks (cid, size, data, lease) VALUES (?, ?, ?, ?)",
            [(cid, size, data, lease) for cid, size, data in rows],
        )
        total = sum(size for _cid, size, _data in rows)
        outside = sum(size for _cid, size, data in rows if data is None)
        self._rows(
            "UPDATE file_usage SET blocks = blocks + ?, bytes = bytes + ?, outside = outside + ? "
            "WHERE id = 0",
            (len(rows), total, outside),
        )

    def claim(self, cids: Sequence[bytes], lease: int) -> None:
        """Put blocks already held under ``lease`` too (an add that wrote them again)."""
        self._many("UPDATE file_blocks SET lease = ? WHERE cid = ?", [(lease, c) for c in cids])

    def get(self, cid: bytes) -> tuple[int, bytes | None] | None:
        """``(size, inline bytes or None)`` of a block, or ``None`` without a row."""
        rows = self._rows("SELECT size, data FROM file_blocks WHERE cid = ?", (cid,))
        if not rows:
            return None
        size, data = rows[0]
        return int(size), None if data is None else bytes(data)

    def page(self, after: int, limit: int) -> list[tuple[int, bytes, int, bool, int | None]]:
        """``(id, cid, size, inline, lease)`` of at most ``limit`` rows with ids above ``after``,
        by id: a pass over every block a page at a time."""
        rows = self._rows(
            "SELECT id, cid, size, data IS NOT NULL, lease FROM file_blocks WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [
            (int(i), bytes(c), int(s), bool(inline), None if lease is None else int(lease))
            for i, c, s, inline, lease in rows
        ]

    def delete(self, cids: Sequence[bytes]) -> list[tuple[bytes, int, bool]]:
        """Delete the rows of those of ``cids`` that no lease in ``file_leases`` holds (in the
        open transaction; another process's add may have claimed one since the caller looked)
        and take them off the totals: ``(cid, size, whether its bytes were inline)`` of each
        deleted."""
        gone: list[tuple[bytes, int, bool]] = []
        gone_bytes = gone_outside = 0
        for start in range(0, len(cids), _CHUNK):
            chunk = cids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                f"SELECT cid, size, data IS NOT NULL FROM file_blocks WHERE cid IN ({marks}) "
                "AND (lease IS NULL OR lease NOT IN (SELECT id FROM file_leases))",
                chunk,
            )
            doomed = [bytes(cid) for cid, _size, _inline in rows]
            for cid, size, inline in rows:
                gone.append((bytes(cid), int(size), bool(inline)))
                gone_bytes += int(size)
                gone_outside += 0 if inline else int(size)
            if doomed:
                self._rows(
                    f"DELETE FROM file_blocks WHERE cid IN ({','.join('?' * len(doomed))})",
                    doomed,
                )
        self._rows(
            "UPDATE file_usage SET blocks = blocks - ?, bytes = bytes - ?, outside = outside - ? "
            "WHERE id = 0",
            (len(gone), gone_bytes, gone_outside),
        )
        return gone

    def pins_signature(self) -> tuple[int, float]:
        """A value that changes when a pin is added, moved or removed (count and sum of the
        creation times): gc checks it did not change between its mark and its sweep."""
        rows = self._rows("SELECT count(*), total(created) FROM file_pins")
        return int(rows[0][0]), float(rows[0][1])

    def usage(self) -> tuple[int, int, int]:
        """``(blocks, bytes, bytes kept outside the SQLite file)``: running totals, one row read."""
        rows = self._rows("SELECT blocks, bytes, outside FROM file_usage WHERE id = 0")
        blocks, size, outside = rows[0]
        return int(blocks), int(size), int(outside)

    # -- pins ---------------------------------------------------------------------------------

    def set_pin(self, name: str, cid: bytes, recursive: bool, created: float) -> None:
        """Pin ``cid`` under ``name`` (a pin of that name is replaced)."""
        self._rows(
            "INSERT OR REPLACE INTO file_pins (name, cid, recursive, created) VALUES (?, ?, ?, ?)",
            (name, cid, int(recursive), created),
        )

    def delete_pin(self, name: str) -> int:
        """Remove the pin ``name``; how many were removed (0 or 1)."""
        try:
            return int(self._conn.execute("DELETE FROM file_pins WHERE name = ?", (name,)).rowcount)
        except sqlite3.Error as exc:
            raise _failure(self.sql.path, exc) from exc

    def delete_pins_of(self, cid: bytes) -> int:
        """Remove every pin of ``cid``; how many."""
        try:
            return int(self._conn.execute("DELETE FROM file_pins WHERE cid = ?", (cid,)).rowcount)
        except sqlite3.Error as exc:
            raise _failure(self.sql.path, exc) from exc

    def pins(self) -> list[PinRow]:
        """Every pin, by name."""
        rows = self._rows("SELECT name, cid, recursive, created FROM file_pins ORDER BY name")
        return [(str(n), bytes(c), bool(r), float(t)) for n, c, r, t in rows]

    # -- leases: adds in progress, whose blocks gc leaves alone -------------------------------

    def new_lease(self, now: float) -> int:
        rows = self._rows("INSERT INTO file_leases (renewed) VALUES (?) RETURNING id", (now,))
        return int(rows[0][0])

    def renew_lease(self, lease: int, now: float) -> None:
        self._rows("UPDATE file_leases SET renewed = ? WHERE id = ?", (now, lease))

    def end_lease(self, lease: int) -> None:
        self._rows("DELETE FROM file_leases WHERE id = ?", (lease,))

    def live_leases(self, since: float) -> set[int]:
        """Leases renewed at ``since`` or later; older ones are deleted (their add died)."""
        self._rows("DELETE FROM file_leases WHERE renewed < ?", (since,))
        return {int(r[0]) for r in self._rows("SELECT id FROM file_leases")}
