"""The OrbitDB databases a node follows, in the node's SQLite file: which it follows (with the
peers it was told to ask), and every block it verified for them (manifest, access controller,
identities, entries), served by CID over bitswap to OrbitDB peers.

Every SQL statement of the OrbitDB replicas is here (tests/test_layers.py holds the rest of the
code base to that); :mod:`gridnode.orbitdb` speaks this module's vocabulary. A block is stored
once per database that holds it (an identity may write to several); unfollowing a database drops
its rows. The tables are made when first opened (``CREATE TABLE IF NOT EXISTS``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from gridnode.storage.sqlite import Tables

__all__ = ["ORBIT_KINDS", "OrbitTables"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS orbitdb_follows (
    address TEXT PRIMARY KEY,
    peers TEXT NOT NULL,
    created REAL NOT NULL,
    catalog INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orbitdb_blocks (
    address TEXT NOT NULL,
    cid BLOB NOT NULL,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (address, cid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS orbitdb_blocks_cid ON orbitdb_blocks (cid);
"""

#: What a stored block is to its database.
ORBIT_KINDS: Final = ("manifest", "access", "identity", "entry")

_CHUNK: Final = 500


class OrbitTables(Tables):
    """The OrbitDB replicas' tables in ``sql`` (made if missing). Writes join the open
    transaction; every SQLite failure comes out as a :class:`~gridnode.errors.StorageError`."""

    SCHEMA = _SCHEMA
    WHAT = "the OrbitDB tables of"

    # -- follows ------------------------------------------------------------------------------

    def follow(
        self, address: str, peers: Sequence[str], created: float, *, catalog: bool = False
    ) -> None:
        """Follow ``address`` (again: its peers are replaced by ``peers``). ``catalog``: only
        because a catalog lists it (a follow by hand clears that for good)."""
        with self.sql.transaction():
            self._rows(
                "INSERT INTO orbitdb_follows (address, peers, created, catalog) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET peers = excluded.peers, "
                "catalog = min(orbitdb_follows.catalog, excluded.catalog)",
                (address, json.dumps(list(peers)), created, int(catalog)),
            )

    def for_catalog(self, address: str) -> bool:
        """Whether ``address`` is followed only because a catalog lists it."""
        rows = self._rows("SELECT catalog FROM orbitdb_follows WHERE address = ?", (address,))
        return bool(rows and rows[0][0])

    def unfollow(self, address: str) -> bool:
        """Stop following ``address`` and drop its blocks; whether it was followed."""
        with self.sql.transaction():
            known = bool(self._rows("SELECT 1 FROM orbitdb_follows WHERE address = ?", (address,)))
            self._rows("DELETE FROM orbitdb_follows WHERE address = ?", (address,))
            self._rows("DELETE FROM orbitdb_blocks WHERE address = ?", (address,))
        return known

    def follows(self) -> list[tuple[str, list[str], float]]:
        """``(address, peers, created)`` of every database followed, oldest first."""
        rows = self._rows("SELECT address, peers, created FROM orbitdb_follows ORDER BY created")
        return [(str(a), [str(p) for p in json.loads(p)], float(c)) for a, p, c in rows]

    # -- blocks -------------------------------------------------------------------------------

    def put_blocks(self, address: str, blocks: Sequence[tuple[bytes, str, bytes]]) -> None:
        """Keep ``(binary cid, kind, bytes)`` blocks for ``address`` (verified by the caller)."""
        for _cid, kind, _data in blocks:
            if kind not in ORBIT_KINDS:
                raise ValueError(f"unknown OrbitDB block kind {kind!r}")
        with self.sql.transaction():
            self._many(
                "INSERT OR IGNORE INTO orbitdb_blocks (address, cid, kind, data) "
                "VALUES (?, ?, ?, ?)",
                [(address, cid, kind, data) for cid, kind, data in blocks],
            )

    def blocks(self, address: str, kind: str) -> list[tuple[bytes, bytes]]:
        """``(binary cid, bytes)`` of every block of ``kind`` kept for ``address``."""
        rows = self._rows(
            "SELECT cid, data FROM orbitdb_blocks WHERE address = ? AND kind = ?", (address, kind)
        )
        return [(bytes(c), bytes(d)) for c, d in rows]

    def get_many(self, cids: Sequence[bytes]) -> dict[bytes, bytes]:
        """The blocks among ``cids`` (binary) kept for any followed database."""
        found: dict[bytes, bytes] = {}
        for start in range(0, len(cids), _CHUNK):
            chunk = cids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(
                f"SELECT cid, data FROM orbitdb_blocks WHERE cid IN ({marks})", list(chunk)
            )
            for cid, data in rows:
                found[bytes(cid)] = bytes(data)
        return found
