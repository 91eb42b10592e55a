"""The errors of the node layer (``gridnode/``): one tree under :class:`GridnodeError`.

Three modules hold every error gridnode raises, one per floor: :mod:`crdt.errors` (bytes,
blocks, entries, the log, stores), :mod:`protocols.errors` (what a peer sends on the wire) and
this one (the data directory, storage, the network, the local API, the seeder, Kubo). An embedder
catches :class:`GridnodeError` for all of them, or one of the names below (docs/embedding.md).

The names say what went wrong, never how a transport reports it: the local API maps them to HTTP
statuses in :mod:`gridnode.api.errors`, and its client maps the statuses back to these classes.
"""

from __future__ import annotations

from typing import Any

from crdt.errors import GridnodeError, HashMismatch, IdentityError, InvalidOperation

__all__ = [
    "BackupCommandFailed",
    "BackupError",
    "BackupMismatch",
    "BackupNotFound",
    "BackupsBlind",
    "ConfigError",
    "CorruptBlock",
    "DagTooLarge",
    "DhtError",
    "DialError",
    "FeatureOff",
    "FetchIncomplete",
    "GridnodeError",
    "InvalidJsonValue",
    "InvalidOperation",
    "InvalidRequest",
    "KeyFileError",
    "KuboError",
    "KuboRefused",
    "KuboUnreachable",
    "MissingBlock",
    "NetError",
    "NodeStopped",
    "NodeUnavailable",
    "NotAWriter",
    "NotAcceptable",
    "NotCaughtUp",
    "NotFound",
    "ProtocolNotSupported",
    "RangeNotSatisfiable",
    "RecoverError",
    "RelayRefused",
    "RequestTooLarge",
    "SeedConfigError",
    "SeedError",
    "SourceUnavailable",
    "StorageError",
    "StorageFull",
    "StorageLimitReached",
    "StreamError",
    "TableNotEmpty",
    "TokenRefused",
    "UnknownDatabase",
    "UnknownPin",
    "UnmappableValue",
    "UnsupportedColumn",
    "WrongStoreType",
]


# -- requests: what a caller (CLI, API client, embedder) asked for --------------------------------


class NotFound(GridnodeError, LookupError):
    """No such database, key, document or set member."""


class UnknownDatabase(NotFound):
    """No database with that address (or name) in this data directory, or on any peer asked."""


class MissingBlock(NotFound):
    """A block a file or directory needs is not in the node's file store (a DAG held in part:
    fetch it from peers, or add it again)."""


class UnknownPin(NotFound):
    """No local pin with that name or CID."""


class InvalidRequest(GridnodeError, ValueError):
    """A request that is malformed: bad JSON, a missing or bad parameter, an empty write."""


class RequestTooLarge(InvalidRequest):
    """A request body over the size the node reads."""


class InvalidJsonValue(InvalidRequest):
    """JSON text that is malformed, or a value with no place in the IPLD data model (or in JSON)."""


class WrongStoreType(GridnodeError, TypeError):
    """A verb the database's store type does not have (``inc`` on a keyvalue database, say)."""


class NotAWriter(GridnodeError, PermissionError):
    """This node's key may not write the database: an admin names writers."""


class FeatureOff(GridnodeError):
    """A capability the node's config turns off (``bitswap = false``, say)."""


class NotCaughtUp(GridnodeError, TimeoutError):
    """``db follow --wait`` gave up: no sync of the database completed in time."""


# -- the node and its local API -------------------------------------------------------------------


class NodeUnavailable(GridnodeError):
    """The node's local API cannot be reached, or the data directory is held by another process."""


class TokenRefused(GridnodeError, PermissionError):
    """The local API refused the request: no token, or not the node's."""


class NodeStopped(GridnodeError, RuntimeError):
    """The embedded node is not running: it was stopped, it failed, or it never started."""


class NotAcceptable(InvalidRequest):
    """A request for a form of answer the node does not give (the gateway serves a database's
    blocks raw or as CARs, nothing else)."""


class RangeNotSatisfiable(InvalidRequest):
    """A ``Range`` header that names no byte of the file asked for (the gateway answers 416)."""


# -- storage --------------------------------------------------------------------------------------


class StorageError(GridnodeError):
    """The node's SQLite file cannot be used (locked, corrupt, from a newer gridnode, ...)."""


class StorageFull(StorageError):
    """The disk holding the node's SQLite file is full: the write was refused and nothing of it
    was kept. Writes succeed again once space is freed; what was written before is intact."""


class StorageLimitReached(GridnodeError):
    """The node uses ``max_storage`` bytes or more (its SQLite file with its WAL): it follows,
    restores and imports no database, and joins nothing more from peers, until the bound is
    raised or space is freed. Not a failure of the file: what it holds is intact, it still serves
    it, and the node's own writes still succeed (docs/config.md, ``max_storage``)."""


class CorruptBlock(StorageError, HashMismatch):
    """A block read from the node's SQLite file no longer hashes to its CID (the file was damaged
    on disk): it is never served or exported."""


class ConfigError(GridnodeError, ValueError):
    """A setting with a wrong type or value; the message names the key."""


class KeyFileError(IdentityError):
    """A key file that cannot be read or does not match the identity it names."""


# -- the network ----------------------------------------------------------------------------------


class NetError(GridnodeError):
    """A network operation that failed: a peer that cannot be reached, a stream that broke."""


class DialError(NetError):
    """No connection to the peer: bad address, nobody listening, wrong peer id, refused handshake."""


class RelayRefused(DialError):
    """A circuit relay said no: no reservation for us (full), or no circuit to that peer."""


class StreamError(NetError):
    """A stream could not be opened, or broke (was reset) while in use."""


class ProtocolNotSupported(StreamError):
    """The peer is connected but does not speak the requested stream protocol."""


class DhtError(NetError):
    """A DHT peer sent what kad-dht does not allow, or what this node's DHT bounds refuse."""


class FetchIncomplete(NetError):
    """A DAG fetch over bitswap gave up: blocks that no peer asked sent in time (what arrived is
    kept; fetching again resumes)."""


class DagTooLarge(GridnodeError):
    """A DAG fetch stopped at a bound: more blocks, bytes or depth than it allows, or the node's
    ``max_storage`` (a file too large for this node, or a hostile DAG)."""


# -- Kubo -----------------------------------------------------------------------------------------


class KuboError(GridnodeError):
    """A call to Kubo's RPC API failed."""


class KuboUnreachable(KuboError):
    """No answer from Kubo: nothing listens there, or it timed out."""


class KuboRefused(KuboError):
    """Kubo answered with an error status (or an answer that is not what its API returns)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# -- the seeder -----------------------------------------------------------------------------------


class SeedError(GridnodeError):
    """The seeder cannot go on."""


class SeedConfigError(SeedError, ValueError):
    """A seed source is misconfigured (a missing option, an unknown table, key or column, a
    database of the wrong type); the message names what."""


class UnsupportedColumn(SeedConfigError):
    """A selected column's PostgreSQL type has no IPLD mapping (docs/seeding.md lists the
    types that have one): exclude the column, or change its type."""

    def __init__(self, table: str, column: str, type_name: str) -> None:
        self.table = table
        self.column = column
        self.type_name = type_name
        super().__init__(
            f"{table}.{column}: the PostgreSQL type {type_name} has no IPLD mapping "
            f"(exclude the column with --exclude {column}, or change its type)"
        )


class UnmappableValue(SeedError, ValueError):
    """A value in a row cannot be represented in IPLD (a NaN or infinite float or numeric, an
    infinite timestamp, an integer beyond 64 bits in a JSON value, ...). Names the row's key and
    the column; the seeder stops there (its position is not advanced), so nothing is skipped
    silently."""

    def __init__(self, table: str, key: Any, column: str, reason: str) -> None:
        self.table = table
        self.key = key
        self.column = column
        self.reason = reason
        super().__init__(f"{table} row {key!r}, column {column}: {reason}")


class SourceUnavailable(SeedError):
    """PostgreSQL cannot be reached (the seeder retries until it can)."""


class RecoverError(SeedError):
    """A table cannot be recovered from a database (no recorded schema, a target table that is
    not empty, rows that do not compare equal after loading); the message names what."""


class TableNotEmpty(RecoverError):
    """The table to recover into already holds rows (``--force`` empties it first)."""


# -- backups (gridnode backup: gridnode/backup.py) -------------------------------------------------


class BackupError(GridnodeError):
    """A backup could not be made, recorded or restored; the message says which step."""


class BackupCommandFailed(BackupError):
    """The command a backup runs (``--command``) exited with an error: nothing was added nor
    recorded."""


class BackupNotFound(BackupError, NotFound):
    """No backup record has that name (or CID) in the backups databases this node holds."""


class BackupMismatch(BackupError):
    """What a restore decrypted is not what the backup record says (its SHA-256 or its size):
    nothing was written."""


class BackupsBlind(BackupNotFound):
    """This node holds the backups database only blind (encrypted, no key for it): it keeps and
    serves the backups, and cannot read a record; a reader's node lists and restores them."""
