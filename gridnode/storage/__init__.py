"""The node's disk: one SQLite file holding blocks, logs and materialised store state."""

from gridnode.storage.sqlite import (
    DB_FILE,
    CorruptBlock,
    SqliteSpace,
    SqliteStore,
    StorageError,
    StorageFull,
)

__all__ = ["DB_FILE", "CorruptBlock", "SqliteSpace", "SqliteStore", "StorageError", "StorageFull"]
