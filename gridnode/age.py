"""age files on the node's side: fresh randomness, streams and identity files around
:mod:`protocols.age` (the format itself, pure).

:func:`encrypt_to` and :func:`decrypt_with` copy a binary stream to another in 64 KiB pieces, so
memory stays constant whatever the size; they return the plaintext's size and SHA-256, which a
caller records (a backup's catalog entry) without reading the file twice. Every file key,
ephemeral secret and payload nonce comes from ``os.urandom`` here and is used once.

An identity file is what ``age-keygen`` writes: ``#`` comments, blank lines, and one
``AGE-SECRET-KEY-1...`` per line. Its contents never reach a log or an error message.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from protocols.age import (
    CHUNK_SIZE,
    FILE_KEY_SIZE,
    NONCE_SIZE,
    Decryptor,
    Encryptor,
    X25519Identity,
    X25519Recipient,
    parse_identity,
    parse_recipient,
)
from protocols.errors import AgeError

__all__ = [
    "AgeError",
    "Plaintext",
    "decrypt_to_file",
    "decrypt_with",
    "encrypt_to",
    "generate_identity",
    "read_identity_file",
    "recipients_of",
]


@dataclass(frozen=True)
class Plaintext:
    """What went through: the plaintext's size in bytes and its SHA-256 (hex)."""

    size: int
    sha256: str


def generate_identity() -> X25519Identity:
    """A new X25519 identity, as ``age-keygen`` makes one."""
    return X25519Identity(os.urandom(32))


def recipients_of(recipients: Iterable[str | X25519Recipient]) -> list[X25519Recipient]:
    """Recipients from ``age1...`` strings (or already parsed); at least one."""
    parsed = [r if isinstance(r, X25519Recipient) else parse_recipient(r) for r in recipients]
    if not parsed:
        raise AgeError("no age recipient given")
    return parsed


def read_identity_file(path: Path) -> list[X25519Identity]:
    """The identities in an ``age-keygen`` identity file; errors name the line, never its text."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgeError(f"cannot read identity file {path} ({type(exc).__name__})") from None
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(parse_identity(line))
        except AgeError:
            raise AgeError(f"{path} line {number} is not an age X25519 identity") from None
    if not identities:
        raise AgeError(f"{path} holds no age identity")
    return identities


def encrypt_to(
    recipients: Sequence[str | X25519Recipient], source: BinaryIO, sink: BinaryIO
) -> Plaintext:
    """Encrypt everything ``source`` reads into an age file written to ``sink``, readable by each
    of ``recipients`` (``age1...``), e.g. with ``age -d -i KEYFILE``. Neither stream is closed.

    This is what ``gridnode add --encrypt-to`` and ``gridnode backup`` call; a caller that needs
    the file whole before it is used (adding it to the node) writes ``sink`` to a temporary file.
    """
    parsed = recipients_of(recipients)
    encryptor = Encryptor(
        parsed,
        file_key=os.urandom(FILE_KEY_SIZE),
        ephemeral_secrets=[os.urandom(32) for _ in parsed],
        nonce=os.urandom(NONCE_SIZE),
    )
    digest = hashlib.sha256()
    size = 0
    sink.write(encryptor.header())
    while piece := source.read(CHUNK_SIZE):
        digest.update(piece)
        size += len(piece)
        sink.write(encryptor.update(piece))
    sink.write(encryptor.finish())
    return Plaintext(size, digest.hexdigest())


def decrypt_with(
    identities: Sequence[X25519Identity], source: BinaryIO, sink: BinaryIO
) -> Plaintext:
    """Decrypt the age file ``source`` reads, writing its plaintext to ``sink`` as each chunk
    verifies. Raises an :class:`AgeError` child on a wrong key or a damaged or truncated file;
    what was written before that is verified but incomplete, so a caller writing a file writes a
    temporary one and keeps it only when this returns."""
    decryptor = Decryptor(identities)
    digest = hashlib.sha256()
    size = 0

    def out(plain: bytes) -> None:
        nonlocal size
        if plain:
            digest.update(plain)
            size += len(plain)
            sink.write(plain)

    while piece := source.read(CHUNK_SIZE):
        out(decryptor.receive(piece))
    out(decryptor.finish())
    return Plaintext(size, digest.hexdigest())


def decrypt_to_file(
    identities: Sequence[X25519Identity], source: BinaryIO, path: Path, *, overwrite: bool = False
) -> Plaintext:
    """Decrypt the age file ``source`` reads into ``path``, which appears only once the whole
    file verified (a temporary file beside it, mode 0600, fsynced, then renamed): a wrong key or a
    damaged or truncated file leaves nothing behind. An existing ``path`` is refused unless
    ``overwrite``. This is what a restore (``gridnode backup restore -o FILE``) calls."""
    if path.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "refusing to overwrite an existing file", str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            result = decrypt_with(identities, source, sink)
            sink.flush()
            os.fsync(sink.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path appeared meanwhile: never replaced
    finally:
        tmp.unlink(missing_ok=True)
    return result
