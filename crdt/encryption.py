"""Encrypted databases: payload encryption and per-reader key wrapping (docs/spec.md, "Encrypted
databases and blind replicas").

A manifest with ``"encryption": "xchacha20poly1305/x25519-sealed"`` names an encrypted database.
Its store operations travel as *envelopes*, its keys as *key operations*, both ordinary entry
payloads, signed by their authors like any other::

    {"op": "enc", "kid": bytes(16), "nonce": bytes(24), "ct": bytes}       a store operation
    {"op": "key", "kid": bytes(16), "wraps": [[did, bytes(80)], ...]}      a new key (rotation)
    {"op": "wrap", "kid": bytes(16), "wraps": [[did, bytes(80)], ...]}     an existing key, for more readers

- ``ct`` is XChaCha20-Poly1305 (IETF) of the DAG-CBOR encoding of the store operation under the
  32-byte database key named by ``kid``, with the associated data ``"gridnode/enc/1\\0" ||
  manifest CID (binary) || kid || author (UTF-8)``: a ciphertext cannot be moved to another
  database, key or author.
- ``kid`` is the first 16 bytes of SHA-256(``"gridnode/dbkey/1\\0" || key``).
- a wrap is libsodium's sealed box (``crypto_box_seal``) of the key to the X25519 key converted
  from the reader's ed25519 ``did:key``: ``epk(32) || crypto_box(key, nonce, reader, esk)(48)``
  with ``nonce = BLAKE2b-192(epk || reader)``, so any libsodium opens it with the reader's key.

Signatures cover the ciphertext: a replica without the key (a *blind replica*) verifies authors,
clocks and access exactly as a reader does, stores, reconciles and serves the log, and folds no
store operation. A reader decrypts on apply (:class:`crdt.database.Database` with a
:class:`Keyring`).

Pure, as the rest of :mod:`crdt`: every key, nonce and ephemeral secret is passed in by the caller
(the node draws them from ``os.urandom``). Nothing here logs or formats a key or a plaintext.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import nacl.bindings as sodium
import nacl.exceptions

from crdt.errors import DecodeError, DecryptionFailed, InvalidDidKey, InvalidEnvelope
from crdt.identity import Keypair, public_key_from_did
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.manifest import ENCRYPTION_SCHEME

__all__ = [
    "ENCRYPTION_SCHEME",
    "KEY_BYTES",
    "KID_BYTES",
    "NONCE_BYTES",
    "WRAP_BYTES",
    "KeyOp",
    "Keyring",
    "associated_data",
    "decrypt_payload",
    "encrypt_payload",
    "is_envelope",
    "is_key_op",
    "key_id",
    "key_op",
    "open_key",
    "parse_envelope",
    "parse_key_op",
    "seal_key",
    "x25519_public_from_did",
    "x25519_secret_from_seed",
]

#: The manifest's ``encryption`` value (ENCRYPTION_SCHEME) is the only scheme there is.
KEY_BYTES: Final = 32
KID_BYTES: Final = 16
NONCE_BYTES: Final = 24
#: A sealed 32-byte key: ephemeral public key (32), MAC (16), key (32).
WRAP_BYTES: Final = 32 + 16 + KEY_BYTES
#: Most wraps in one key operation (an entry is at most 1 MiB; a wrap costs about 140 bytes).
MAX_WRAPS: Final = 4096
ENVELOPE_OP: Final = "enc"
KEY_OP: Final = "key"
WRAP_OP: Final = "wrap"
_AAD_TAG: Final = b"gridnode/enc/1\x00"
_KID_TAG: Final = b"gridnode/dbkey/1\x00"
_EPHEMERAL_TAG: Final = b"gridnode/wrap-ephemeral/1\x00"
_ENVELOPE_KEYS: Final = frozenset({"op", "kid", "nonce", "ct"})
_KEY_OP_KEYS: Final = frozenset({"op", "kid", "wraps"})


def key_id(key: bytes) -> bytes:
    """The 16-byte name of a database key (a hash: it tells nothing about the key)."""
    _check_key(key)
    return hashlib.sha256(_KID_TAG + key).digest()[:KID_BYTES]


def _check_key(key: bytes) -> None:
    if type(key) is not bytes or len(key) != KEY_BYTES:
        raise InvalidEnvelope("a database key has 32 bytes")


def x25519_public_from_did(did: str) -> bytes:
    """The X25519 public key of an ed25519 ``did:key`` (the birational map libsodium uses)."""
    try:
        return sodium.crypto_sign_ed25519_pk_to_curve25519(public_key_from_did(did))
    except nacl.exceptions.RuntimeError:
        raise InvalidDidKey(f"{did} is not a point that converts to X25519") from None


def x25519_secret_from_seed(keypair: Keypair) -> bytes:
    """The X25519 secret key of an ed25519 keypair (libsodium's conversion)."""
    return sodium.crypto_sign_ed25519_sk_to_curve25519(keypair.seed + keypair.public_key)


def associated_data(db: CID, kid: bytes, author: str) -> bytes:
    """What an envelope's ciphertext is bound to besides its key."""
    return _AAD_TAG + db.bytes + kid + author.encode()


# -- envelopes ----------------------------------------------------------------------------------


def is_envelope(payload: Any) -> bool:
    """Whether a payload is meant as an envelope (then it must be a well-formed one)."""
    return type(payload) is dict and payload.get("op") == ENVELOPE_OP


def parse_envelope(payload: Any) -> tuple[bytes, bytes, bytes]:
    """``(kid, nonce, ct)`` of a well-formed envelope; :class:`InvalidEnvelope` otherwise."""
    if type(payload) is not dict or payload.keys() != _ENVELOPE_KEYS:
        raise InvalidEnvelope(f"an envelope has exactly the keys {sorted(_ENVELOPE_KEYS)}")
    kid, nonce, ct = payload["kid"], payload["nonce"], payload["ct"]
    if payload["op"] != ENVELOPE_OP:
        raise InvalidEnvelope("not an envelope")
    if type(kid) is not bytes or len(kid) != KID_BYTES:
        raise InvalidEnvelope("kid must be 16 bytes")
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise InvalidEnvelope("nonce must be 24 bytes")
    if type(ct) is not bytes or len(ct) < 16:
        raise InvalidEnvelope("ct must be bytes holding at least the 16-byte tag")
    return kid, nonce, ct


def encrypt_payload(
    payload: Any, *, key: bytes, nonce: bytes, db: CID, author: str
) -> dict[str, Any]:
    """The envelope of a store operation. ``nonce``: 24 fresh random bytes (never reused with
    the same key: XChaCha20's nonces are wide enough to draw at random)."""
    _check_key(key)
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise InvalidEnvelope("nonce must be 24 bytes")
    kid = key_id(key)
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        encode(payload), associated_data(db, kid, author), nonce, key
    )
    return {"op": ENVELOPE_OP, "kid": kid, "nonce": nonce, "ct": ct}


def decrypt_payload(envelope: Any, *, key: bytes, db: CID, author: str) -> Any:
    """The store operation inside an envelope. :class:`DecryptionFailed` when the ciphertext does
    not open (another key, database or author; altered or cut short), :class:`InvalidEnvelope`
    when the envelope or the plaintext is malformed."""
    kid, nonce, ct = parse_envelope(envelope)
    _check_key(key)
    if key_id(key) != kid:
        raise DecryptionFailed("the envelope names another key")
    try:
        plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ct, associated_data(db, kid, author), nonce, key
        )
    except nacl.exceptions.CryptoError:
        raise DecryptionFailed("ciphertext does not open with its key") from None
    try:
        return decode(plain)
    except DecodeError:
        # The message names no byte of the plaintext.
        raise InvalidEnvelope("the plaintext is not DAG-CBOR") from None


# -- key wrapping -------------------------------------------------------------------------------


def _ephemeral(seed: bytes, did: str) -> bytes:
    return hashlib.sha256(_EPHEMERAL_TAG + seed + did.encode()).digest()


def seal_key(key: bytes, did: str, ephemeral_secret: bytes) -> bytes:
    """``key`` sealed to the reader ``did`` (libsodium's ``crypto_box_seal`` format, with the
    ephemeral secret passed in: 32 random bytes, never used twice)."""
    _check_key(key)
    if type(ephemeral_secret) is not bytes or len(ephemeral_secret) != 32:
        raise InvalidEnvelope("an ephemeral secret has 32 bytes")
    reader = x25519_public_from_did(did)
    epk = sodium.crypto_scalarmult_base(ephemeral_secret)
    nonce = hashlib.blake2b(epk + reader, digest_size=24).digest()
    return epk + sodium.crypto_box(key, nonce, reader, ephemeral_secret)


def open_key(sealed: bytes, keypair: Keypair) -> bytes:
    """The key a wrap seals to ``keypair``; :class:`DecryptionFailed` if it is sealed to another
    key or damaged."""
    if type(sealed) is not bytes or len(sealed) != WRAP_BYTES:
        raise InvalidEnvelope("a wrap has 80 bytes")
    secret = x25519_secret_from_seed(keypair)
    public = sodium.crypto_scalarmult_base(secret)
    try:
        key: bytes = sodium.crypto_box_seal_open(sealed, public, secret)
    except nacl.exceptions.CryptoError:
        raise DecryptionFailed("the wrap does not open with this key") from None
    return key


@dataclass(frozen=True, slots=True)
class KeyOp:
    """A parsed key operation: ``op`` is ``"key"`` (a new key) or ``"wrap"`` (more readers)."""

    op: str
    kid: bytes
    wraps: Mapping[str, bytes]


def is_key_op(payload: Any) -> bool:
    """Whether a payload is meant as a key operation (then it must be a well-formed one)."""
    return type(payload) is dict and payload.get("op") in (KEY_OP, WRAP_OP)


def parse_key_op(payload: Any) -> KeyOp:
    """A well-formed key operation, or :class:`InvalidEnvelope`."""
    if type(payload) is not dict or payload.keys() != _KEY_OP_KEYS:
        raise InvalidEnvelope(f"a key operation has exactly the keys {sorted(_KEY_OP_KEYS)}")
    op, kid, wraps = payload["op"], payload["kid"], payload["wraps"]
    if op not in (KEY_OP, WRAP_OP):
        raise InvalidEnvelope("not a key operation")
    if type(kid) is not bytes or len(kid) != KID_BYTES:
        raise InvalidEnvelope("kid must be 16 bytes")
    if type(wraps) is not list or not 0 < len(wraps) <= MAX_WRAPS:
        raise InvalidEnvelope(f"wraps must be a list of 1 to {MAX_WRAPS} [did, wrap] pairs")
    found: dict[str, bytes] = {}
    previous = ""
    for item in wraps:
        if type(item) is not list or len(item) != 2:
            raise InvalidEnvelope("a wrap is a [did, bytes] pair")
        did, sealed = item
        if type(did) is not str or type(sealed) is not bytes or len(sealed) != WRAP_BYTES:
            raise InvalidEnvelope("a wrap is a did:key and 80 bytes")
        if did <= previous:
            raise InvalidEnvelope("wraps must be sorted by did, without duplicates")
        try:
            public_key_from_did(did)
        except InvalidDidKey as exc:
            raise InvalidEnvelope(f"wraps: {exc}") from None
        previous = did
        found[did] = sealed
    return KeyOp(op, kid, found)


def key_op(key: bytes, readers: Iterable[str], seed: bytes, *, new: bool = True) -> dict[str, Any]:
    """The payload giving ``key`` to ``readers``: ``new`` for a key introduced now (creation or
    rotation; it becomes the key later entries use), else a wrap of an existing key for more
    readers. ``seed``: 32 random bytes, from which each wrap's ephemeral secret is derived."""
    if type(seed) is not bytes or len(seed) != 32:
        raise InvalidEnvelope("the wrap seed has 32 bytes")
    dids = sorted(set(readers))
    if not dids:
        raise InvalidEnvelope("a key operation names at least one reader")
    wraps = [[did, seal_key(key, did, _ephemeral(seed, did))] for did in dids]
    return {"op": KEY_OP if new else WRAP_OP, "kid": key_id(key), "wraps": wraps}


class Keyring:
    """The database keys one identity holds, and how it learns more from key operations.

    Holds secrets: it has no ``repr`` that shows them, and :attr:`learned` lists the keys learnt
    since the holder last saved them (the node writes them to its keystore).
    """

    __slots__ = ("_keys", "keypair", "learned")

    def __init__(self, keypair: Keypair, keys: Mapping[bytes, bytes] | None = None) -> None:
        self.keypair = keypair
        self._keys: dict[bytes, bytes] = {}
        for kid, key in (keys or {}).items():
            if key_id(key) != kid:
                raise InvalidEnvelope("a stored database key does not match its kid")
            self._keys[kid] = key
        self.learned: list[tuple[bytes, bytes]] = []

    @property
    def did(self) -> str:
        return self.keypair.did

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def key(self, kid: bytes) -> bytes | None:
        return self._keys.get(kid)

    def kids(self) -> list[bytes]:
        return sorted(self._keys)

    def add(self, key: bytes) -> bytes:
        """Hold ``key`` (one this identity made itself); its kid."""
        kid = key_id(key)
        if kid not in self._keys:
            self._keys[kid] = key
            self.learned.append((kid, key))
        return kid

    def learn(self, op: KeyOp) -> bool:
        """Open the wrap ``op`` holds for this identity, if any and not known yet; whether a key
        was learnt. A wrap that does not open, or opens to a key of another kid, teaches nothing
        (a writer's mistake or malice must not stop a reader)."""
        sealed = op.wraps.get(self.keypair.did)
        if sealed is None or op.kid in self._keys:
            return False
        try:
            key = open_key(sealed, self.keypair)
        except DecryptionFailed:
            return False
        if len(key) != KEY_BYTES or key_id(key) != op.kid:
            return False
        self._keys[op.kid] = key
        self.learned.append((op.kid, key))
        return True

    def __repr__(self) -> str:
        return f"Keyring(did={self.keypair.did!r}, keys={len(self._keys)})"
