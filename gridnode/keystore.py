"""The node's private key on disk.

The key file holds the ed25519 seed and the ``did:key`` it yields. It is created once, with mode
0600 from the first byte (never chmod-ed after the fact), and never overwritten. Its contents are
never logged.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Final

from crdt.errors import InvalidKey
from crdt.identity import Keypair
from gridnode.errors import KeyFileError

__all__ = ["KEY_FILE", "KeyFileError", "create_key", "load_key", "load_or_create_key"]

log = logging.getLogger(__name__)

KEY_FILE: Final = "node.key"
_KIND: Final = "gridnode-ed25519-seed"


def create_key(path: Path, seed: bytes | None = None) -> Keypair:
    """Write a new key file at ``path`` (which must not exist) and return its keypair."""
    keypair = Keypair(seed if seed is not None else os.urandom(32))
    document = {"kind": _KIND, "did": keypair.did, "seed": keypair.seed.hex()}
    data = (json.dumps(document, indent=2) + "\n").encode("ascii")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # A temporary file left by a crash is removed (unlink removes a symlink, not its target);
    # O_EXCL|O_NOFOLLOW then make sure the seed goes into a file this call created, not into a
    # file or a symlink someone else put there.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask only downwards; make sure
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if the target exists: an existing key is never replaced.
        os.link(tmp, path)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    log.info("created node key %s for %s", path, keypair.did)
    return keypair


def load_key(path: Path) -> Keypair:
    """Read a key file written by :func:`create_key`."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "key file %s is readable by others (mode %o); use chmod 600", path, mode & 0o777
        )
    try:
        document = json.loads(path.read_text("ascii"))
        if document.get("kind") != _KIND:
            raise KeyFileError(f"{path} is not a gridnode key file")
        keypair = Keypair(bytes.fromhex(document["seed"]))
    except (ValueError, KeyError, TypeError, InvalidKey, UnicodeDecodeError) as exc:
        # Say what is wrong without echoing the file's contents, which hold the secret.
        raise KeyFileError(f"{path} is not a readable key file ({type(exc).__name__})") from None
    if document.get("did") != keypair.did:
        raise KeyFileError(f"{path} names {document.get('did')!r} but its seed is another key")
    return keypair


def load_or_create_key(data_dir: Path) -> tuple[Keypair, bool]:
    """The node key under ``data_dir``, created on first use; the flag says whether it was new."""
    path = data_dir / KEY_FILE
    if path.exists():
        return load_key(path), False
    return create_key(path), True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
