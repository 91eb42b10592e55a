"""The inputs of IPIP-499's test CIDs, regenerated as Kubo's test code generates them.

Kubo (test/cli/testutils/random_deterministic.go) derives a ChaCha20 key from a seed string with
sha2-256, uses an all-zero 96-bit nonce with the block counter starting at 0 (RFC 8439's layout,
Go's ``chacha20.NewUnauthenticatedCipher``), and returns the keystream: ``size`` bytes of it make
a test file. Directory fixtures (test/cli/add_test.go, ``createDeterministicFiles``) take the same
keystream of a seed for file names: each name byte is ``AlphabetEasy[b % len(AlphabetEasy)]`` and
every file holds ``b"x"``. Only the generator is reproduced here; nothing of Kubo's is copied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

#: Kubo's test alphabet for easy file names (its "0" appears twice: 39 symbols).
ALPHABET_EASY = "abcdefghijklmnopqrstuvwxyz01234567890-_"


class KuboRandom:
    """The keystream of ``seed``, read in pieces (each read continues where the last ended)."""

    def __init__(self, seed: str) -> None:
        key = hashlib.sha256(seed.encode()).digest()
        # cryptography's ChaCha20 nonce is the 32-bit little-endian counter then the 96-bit nonce
        self._encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()

    def read(self, size: int) -> bytes:
        return self._encryptor.update(bytes(size))


def random_bytes(size: int, seed: str) -> bytes:
    return KuboRandom(seed).read(size)


def random_pieces(size: int, seed: str, piece: int = 1 << 20) -> Iterator[bytes]:
    """``random_bytes(size, seed)`` in pieces of ``piece`` bytes (the last shorter)."""
    stream = KuboRandom(seed)
    while size > 0:
        n = min(piece, size)
        yield stream.read(n)
        size -= n


def file_names(seed: str, count: int, length: int, last_length: int) -> list[str]:
    """Kubo's deterministic names: ``count`` names of ``length`` symbols, the last one of
    ``last_length``."""
    stream = KuboRandom(seed)
    names = []
    for i in range(count):
        n = last_length if i == count - 1 else length
        names.append("".join(ALPHABET_EASY[b % len(ALPHABET_EASY)] for b in stream.read(n)))
    return names
