"""Adding a file encrypted to age recipients (``gridnode add --encrypt-to``, ``gridnode backup``).

The plaintext is read once, a 64 KiB chunk at a time, and encrypted by
:func:`gridnode.age.encrypt_to` into a temporary file (mode 0600, in a private temporary
directory, removed whatever happens); that file, the age ciphertext, is then added as any file is
(:func:`gridnode.files.add.add`). Memory stays constant whatever the size; the disk holds the
ciphertext once more until the add ends. The CID printed and pinned is the ciphertext's: a node
holding it, serving it or replicating it never sees a plaintext byte, and ``gridnode cat CID |
age -d -i KEYFILE`` gives the plaintext back.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gridnode.age import Plaintext, encrypt_to, recipients_of
from gridnode.files.add import Added, add

__all__ = ["EncryptedAdd", "add_encrypted", "encrypt_to_temporary"]


@dataclass(frozen=True)
class EncryptedAdd:
    """An encrypted add: what the add of the ciphertext made, and the plaintext's size and
    SHA-256 (hex)."""

    added: Added
    plaintext: Plaintext

    def as_json(self) -> dict[str, Any]:
        return {
            **self.added.as_json(),
            "encrypted": True,
            "plaintext_size": self.plaintext.size,
            "plaintext_sha256": self.plaintext.sha256,
        }


def encrypt_to_temporary(
    recipients: Sequence[str], source: BinaryIO, directory: Path
) -> tuple[Path, Plaintext]:
    """Encrypt ``source`` to ``recipients`` into a new file in ``directory``: its path and what
    went through."""
    fd, name = tempfile.mkstemp(prefix="encrypted-", suffix=".age", dir=directory)
    with os.fdopen(fd, "wb") as sink:
        plaintext = encrypt_to(recipients, source, sink)
        sink.flush()
    return Path(name), plaintext


def add_encrypted(
    endpoint: Any,
    source: str | BinaryIO,
    recipients: Sequence[str],
    *,
    profile: str | None = None,
    pin: bool = True,
    name: str | None = None,
    read: Callable[[int], None] | None = None,
) -> EncryptedAdd:
    """Encrypt ``source`` (a file's path, ``-`` for stdin, or a binary stream) to the age
    ``recipients`` (``age1...``, at least one) and add the ciphertext to the file store of
    ``endpoint``, pinned as ``name`` (default: its CID) unless ``pin`` is false. ``read`` is told
    the bytes of ciphertext added as they are read. Recipients are checked before anything is
    read."""
    recipients_of(recipients)  # an AgeError now, before any byte is read or written
    with tempfile.TemporaryDirectory(prefix="gridnode-encrypt-") as directory:
        if isinstance(source, str):
            if source == "-":
                path, plaintext = encrypt_to_temporary(
                    recipients, sys.stdin.buffer, Path(directory)
                )
            else:
                with open(source, "rb") as stream:
                    path, plaintext = encrypt_to_temporary(recipients, stream, Path(directory))
        else:
            path, plaintext = encrypt_to_temporary(recipients, source, Path(directory))
        kwargs: dict[str, Any] = {} if profile is None else {"profile": profile}
        added = add(endpoint, str(path), pin=pin, name=name, read=read, **kwargs)
    return EncryptedAdd(added, plaintext)
