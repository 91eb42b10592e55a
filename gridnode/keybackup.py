"""Key backups: the node key (and the database keys it holds) in an age file, for a cold copy.

``gridnode key export --to age1...`` writes one age file (:mod:`gridnode.age`) whose plaintext is
one JSON document, so an operator with only the standard ``age`` tool can read it
(``age -d -i operator.txt node-key.age | jq``) and rebuild ``node.key`` by hand::

    {"kind": "gridnode-key-backup", "version": 1, "did": "did:key:z6Mk...",
     "node_key": {"kind": "gridnode-ed25519-seed", "did": "did:key:z6Mk...", "seed": "<hex>"},
     "database_keys": {"<database address>": {"<kid hex>": "<key hex>"}}}

``node_key`` is byte for byte the document of the ``node.key`` file (:mod:`gridnode.keystore`).
``database_keys`` holds the keys of the encrypted databases this node can read, as
:mod:`gridnode.databasekeys` keeps them (``{"<address>": {"<kid hex>": "<key hex>"}}``); import
adds them back there. A reader's database keys are also wrapped to its node key in each database's log
(docs/spec.md, "Private databases"), so the node key alone regains them from any replica; the
copies here spare that walk and cover keys whose wrapping was never replicated.

Import never overwrites a key: the data directory's ``node.key`` is created from the backup, or,
if it exists, must be the same key (anything else is refused, since replacing a node's identity
under its databases is not a restore). Errors never quote the document: it holds secrets.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from crdt.errors import InvalidKey
from crdt.identity import Keypair
from gridnode.age import decrypt_with, encrypt_to
from gridnode.databasekeys import load_database_keys, save_database_keys
from gridnode.errors import KeyFileError
from gridnode.keystore import KEY_FILE, create_key, load_key
from protocols.age import X25519Identity, X25519Recipient

__all__ = [
    "KIND",
    "MAX_BACKUP",
    "KeyBackup",
    "Restored",
    "collect",
    "held_database_keys",
    "read_backup",
    "restore",
    "take_database_keys",
    "write_backup",
]

KIND: Final = "gridnode-key-backup"
_VERSION: Final = 1
_NODE_KEY_KIND: Final = "gridnode-ed25519-seed"
#: The largest decrypted backup read: keys are small; a larger plaintext is not a key backup,
#: and reading it whole into memory is refused.
MAX_BACKUP: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class KeyBackup:
    """What a key backup holds: the node's keypair and the database keys, by address."""

    keypair: Keypair
    database_keys: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the seed
        return f"KeyBackup(did={self.keypair.did!r}, database_keys={len(self.database_keys)})"

    def document(self) -> dict[str, Any]:
        did = self.keypair.did
        return {
            "kind": KIND,
            "version": _VERSION,
            "did": did,
            "node_key": {"kind": _NODE_KEY_KIND, "did": did, "seed": self.keypair.seed.hex()},
            "database_keys": dict(self.database_keys),
        }


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` did: the DID restored and whether ``node.key`` was written."""

    did: str
    created: bool
    database_keys: Mapping[str, Any]


def write_backup(
    backup: KeyBackup, recipients: Sequence[str | X25519Recipient], sink: BinaryIO
) -> None:
    """Encrypt ``backup`` to ``recipients`` (``age1...``) as an age file written to ``sink``."""
    plaintext = json.dumps(backup.document(), indent=2, sort_keys=True).encode() + b"\n"
    encrypt_to(recipients, io.BytesIO(plaintext), sink)


class _Bounded(io.RawIOBase):
    """A sink that refuses to grow past :data:`MAX_BACKUP`."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if len(self.data) + len(b) > MAX_BACKUP:
            raise KeyFileError("this age file is larger than any gridnode key backup")
        self.data += b
        return len(b)


def read_backup(source: BinaryIO, identities: Sequence[X25519Identity]) -> KeyBackup:
    """Decrypt and check a key backup. Raises an ``AgeError`` child for a wrong identity or a
    damaged file, :class:`KeyFileError` for a file that decrypts but is no key backup."""
    sink = _Bounded()
    decrypt_with(identities, source, sink)  # type: ignore[arg-type]
    try:
        document = json.loads(bytes(sink.data))
        if not isinstance(document, dict) or document.get("kind") != KIND:
            raise KeyFileError("this age file holds no gridnode key backup")
        if document.get("version") != _VERSION:
            raise KeyFileError(f"unsupported key backup version {document.get('version')!r}")
        node_key = document["node_key"]
        if node_key["kind"] != _NODE_KEY_KIND:
            raise KeyFileError("the key backup's node key is of an unknown kind")
        keypair = Keypair(bytes.fromhex(node_key["seed"]))
        database_keys = document.get("database_keys", {})
        if not isinstance(database_keys, dict):
            raise KeyFileError("the key backup's database_keys is not an object")
    except KeyFileError:
        raise
    except (ValueError, KeyError, TypeError, InvalidKey, UnicodeDecodeError) as exc:
        raise KeyFileError(f"the key backup is malformed ({type(exc).__name__})") from None
    if document.get("did") != keypair.did or node_key.get("did") != keypair.did:
        raise KeyFileError("the key backup names another DID than its seed yields")
    return KeyBackup(keypair, database_keys)


def held_database_keys(data_dir: Path) -> dict[str, Any]:
    """The database keys ``data_dir`` holds (:mod:`gridnode.databasekeys`), by database address:
    ``{"<address>": {"<kid hex>": "<key hex>"}}``."""
    return {
        address: {kid.hex(): key.hex() for kid, key in sorted(keys.items())}
        for address, keys in sorted(load_database_keys(data_dir).items())
    }


def _parse_database_keys(database_keys: Mapping[str, Any]) -> dict[str, dict[bytes, bytes]]:
    """A backup's ``database_keys``, checked whole before anything is written (errors never
    quote a key)."""
    parsed: dict[str, dict[bytes, bytes]] = {}
    for address, keys in database_keys.items():
        if not isinstance(address, str) or not address.startswith("/gridnode/"):
            raise KeyFileError("the key backup names a database that is not a gridnode address")
        if not isinstance(keys, dict):
            raise KeyFileError(f"the key backup's keys of {address} are not an object")
        try:
            parsed[address] = {bytes.fromhex(kid): bytes.fromhex(key) for kid, key in keys.items()}
        except (TypeError, ValueError, AttributeError):
            raise KeyFileError(f"the key backup's keys of {address} are not hex") from None
        if any(len(key) != 32 for key in parsed[address].values()):
            raise KeyFileError(f"a key of {address} in the key backup is not 32 bytes")
    return parsed


def take_database_keys(data_dir: Path, database_keys: Mapping[str, Any]) -> None:
    """Add restored database keys to ``data_dir``'s (:mod:`gridnode.databasekeys`); the whole
    set is checked first, so a malformed one writes nothing."""
    for address, keys in _parse_database_keys(database_keys).items():
        if keys:
            save_database_keys(data_dir, address, keys)


def collect(data_dir: Path) -> KeyBackup:
    """The backup of ``data_dir``: its ``node.key`` and the database keys its keystore holds."""
    path = data_dir / KEY_FILE
    if not path.is_file():
        raise KeyFileError(f"{data_dir} has no node key ({KEY_FILE}); nothing to export")
    return KeyBackup(load_key(path), held_database_keys(data_dir))


def restore(backup: KeyBackup, data_dir: Path) -> Restored:
    """Write the backup's node key as ``data_dir/node.key`` unless that same key is there, and
    hand its database keys to the keystore. Another key already there is refused, first."""
    path = data_dir / KEY_FILE
    present = load_key(path) if path.exists() else None
    if present is not None and present.did != backup.keypair.did:
        raise KeyFileError(
            f"{path} holds another key ({present.did}); refusing to replace it with "
            f"{backup.keypair.did} (import into an empty data directory)"
        )
    _parse_database_keys(backup.database_keys)  # refused whole before anything is written
    if present is None:
        create_key(path, backup.keypair.seed)
    take_database_keys(data_dir, backup.database_keys)
    return Restored(backup.keypair.did, present is None, backup.database_keys)
