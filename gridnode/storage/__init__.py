"""The node's disk: one SQLite file holding blocks, logs, materialised store state, the node's
``meta`` values and its list of databases.

This room owns all of the node's SQL and its only use of ``sqlite3``; the rooms above call
:class:`SqliteFile`'s methods and catch :class:`StorageError` (never a ``sqlite3`` exception).
:class:`StorageWorker` (:mod:`gridnode.storage.worker`) is how the trio node reaches the file.
"""

from gridnode.storage.sqlite import (
    DB_FILE,
    CorruptBlock,
    SqliteFile,
    SqliteSpace,
    StorageError,
    StorageFull,
)

__all__ = ["DB_FILE", "CorruptBlock", "SqliteFile", "SqliteSpace", "StorageError", "StorageFull"]
