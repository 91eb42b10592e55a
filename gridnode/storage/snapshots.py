"""The published snapshots' rows of the node's SQLite file: which root is a database's newest
(a ``meta`` row), and dropping the blocks of one it replaced. The blocks themselves go in the
``blocks`` table like every other block."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from gridnode.storage.sqlite import SqliteFile, _failure

__all__ = ["delete_blocks", "published_root", "set_published_root"]

_PUBLISHED: Final = "snapshot:"


def published_root(file: SqliteFile, address: str) -> bytes | None:
    """The binary CID of the newest snapshot root this node published of ``address``."""
    value = file.meta(_PUBLISHED + address)
    return value if type(value) is bytes else None


def set_published_root(file: SqliteFile, address: str, root: bytes) -> None:
    file.set_meta(_PUBLISHED + address, root)


def delete_blocks(file: SqliteFile, cids: Sequence[bytes]) -> None:
    """Delete blocks by binary CID (the chunks and root of a replaced snapshot)."""
    try:
        file.conn.executemany("DELETE FROM blocks WHERE cid = ?", [(c,) for c in cids])
    except sqlite3.Error as exc:
        raise _failure(file.path, exc) from exc
