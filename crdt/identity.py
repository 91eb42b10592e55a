"""Identities: ed25519 keys named by ``did:key`` (https://w3c-ccg.github.io/did-method-key/).

An author's ``did:key`` is ``did:key:z`` + base58btc(0xed 0x01 + the 32-byte public key): the
multicodec varint for ed25519-pub, then the key. Pure: keys are made from seeds the caller supplies
(the node draws them from the OS in :mod:`gridnode.keystore`), never from randomness here.
"""

from __future__ import annotations

from typing import Final

import nacl.exceptions
import nacl.signing

from crdt.errors import InvalidDidKey, InvalidKey, InvalidMultibase, InvalidSignature
from crdt.ipld.multiformats import base58_decode, base58_encode

__all__ = ["DID_KEY_PREFIX", "Keypair", "did_from_public_key", "public_key_from_did", "verify"]

DID_KEY_PREFIX: Final = "did:key:z"
#: The unsigned varint of multicodec 0xed (ed25519-pub).
_ED25519_PUB: Final = b"\xed\x01"
#: ``did:key:z6Mk`` + 44 more base58 characters is every ed25519 did:key.
_DID_LENGTH: Final = 56


def did_from_public_key(public_key: bytes) -> str:
    """The ``did:key`` naming a 32-byte ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidKey(f"an ed25519 public key has 32 bytes, not {len(public_key)}")
    return DID_KEY_PREFIX + base58_encode(_ED25519_PUB + public_key)


_public_keys: dict[str, bytes] = {}
_CACHE_LIMIT: Final = 4096


def public_key_from_did(did: str) -> bytes:
    """The 32-byte ed25519 public key a ``did:key`` names; :class:`InvalidDidKey` otherwise."""
    cached = _public_keys.get(did)
    if cached is not None:
        return cached
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise InvalidDidKey(f"not an ed25519 did:key: {str(did)[:80]!r}")
    if len(did) != _DID_LENGTH:
        raise InvalidDidKey(f"an ed25519 did:key has {_DID_LENGTH} characters, not {len(did)}")
    try:
        raw = base58_decode(did[len(DID_KEY_PREFIX) :])
    except InvalidMultibase as exc:
        raise InvalidDidKey(f"did:key is not base58btc: {exc.reason}") from None
    if len(raw) != 34 or raw[:2] != _ED25519_PUB:
        raise InvalidDidKey("did:key does not name an ed25519 public key (multicodec 0xed)")
    key = raw[2:]
    if did_from_public_key(key) != did:  # pragma: no cover - base58 is a bijection at this length
        raise InvalidDidKey("did:key is not in canonical form")
    if len(_public_keys) >= _CACHE_LIMIT:
        _public_keys.clear()
    _public_keys[did] = key
    return key


_verify_keys: dict[bytes, nacl.signing.VerifyKey] = {}


def verify(author: str | bytes, message: bytes, signature: bytes) -> None:
    """Check an ed25519 signature by ``author`` (a did:key or a raw public key).

    Raises :class:`InvalidSignature` if it does not verify, :class:`InvalidDidKey` if the author is
    not a usable key.
    """
    public_key = public_key_from_did(author) if isinstance(author, str) else author
    verify_key = _verify_keys.get(public_key)
    if verify_key is None:
        try:
            verify_key = nacl.signing.VerifyKey(public_key)
        except (nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
            raise InvalidKey(f"unusable ed25519 public key: {exc}") from None
        if len(_verify_keys) >= _CACHE_LIMIT:
            _verify_keys.clear()
        _verify_keys[public_key] = verify_key
    if len(signature) != 64:
        raise InvalidSignature(f"an ed25519 signature has 64 bytes, not {len(signature)}")
    try:
        verify_key.verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        raise InvalidSignature("signature does not verify") from None


class Keypair:
    """An ed25519 signing key and its identity. Made from a 32-byte seed.

    The seed never appears in ``repr`` or ``str``; :attr:`seed` hands it out for the keystore only.
    """

    __slots__ = ("_signing_key", "did", "public_key")

    did: str
    public_key: bytes

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise InvalidKey("an ed25519 seed has 32 bytes")
        self._signing_key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._signing_key.verify_key)
        self.did = did_from_public_key(self.public_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        """The keypair for a 32-byte seed (RFC 8032's private key)."""
        return cls(seed)

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed. Handle with care: write it only with mode 0600."""
        return bytes(self._signing_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ed25519 signature of ``message``."""
        return self._signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"Keypair(did={self.did!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keypair) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)
