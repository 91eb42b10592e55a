"""The keys of encrypted databases this node holds, on disk beside the node key.

``DATA_DIR/database-keys.json``, mode 0600 from its first byte, JSON::

    {"kind": "gridnode-database-keys", "keys": {"<address>": {"<kid hex>": "<key hex>"}}}

Every key here is also sealed to this node in its database's log (a key operation wraps it for
the node's ``did:key``), so the file is a cache the node refills from the log when it opens a
database, and what ``gridnode key export`` takes with the node key. It is replaced whole (a
temporary file, fsync, rename), never edited in place. Its contents are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from gridnode.errors import KeyFileError

__all__ = ["DATABASE_KEYS_FILE", "load_database_keys", "save_database_keys"]

log = logging.getLogger(__name__)

DATABASE_KEYS_FILE: Final = "database-keys.json"
_KIND: Final = "gridnode-database-keys"

#: address -> kid -> key
Keys = dict[str, dict[bytes, bytes]]


def load_database_keys(data_dir: Path) -> Keys:
    """Every database key the node holds (none if the file does not exist)."""
    path = data_dir / DATABASE_KEYS_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by others (mode %o); use chmod 600", path, mode & 0o777)
    try:
        document = json.loads(path.read_text("ascii"))
        if document.get("kind") != _KIND:
            raise KeyFileError(f"{path} is not a gridnode database key file")
        return {
            address: {bytes.fromhex(kid): bytes.fromhex(key) for kid, key in keys.items()}
            for address, keys in document["keys"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        # Say what is wrong without echoing the file's contents, which hold secrets.
        raise KeyFileError(f"{path} is not a readable key file ({type(exc).__name__})") from None


def save_database_keys(data_dir: Path, address: str, keys: Mapping[bytes, bytes]) -> None:
    """Add ``keys`` (kid -> key) of the database ``address`` to the file, durably."""
    current = load_database_keys(data_dir)
    held = current.setdefault(address, {})
    if all(held.get(kid) == key for kid, key in keys.items()):
        return
    held.update(keys)
    document = {
        "kind": _KIND,
        "keys": {
            a: {kid.hex(): key.hex() for kid, key in sorted(k.items())}
            for a, k in sorted(current.items())
        },
    }
    data = (json.dumps(document, indent=2) + "\n").encode("ascii")
    path = data_dir / DATABASE_KEYS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
