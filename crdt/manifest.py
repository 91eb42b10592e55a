"""Database manifests: the block that names a database, its store type and its initial access rules.

The database address is ``/gridnode/<manifest CID>``. Since the CID is the hash of the manifest,
nobody can change a database's rules after others joined it, except by the access-control entries
the rules themselves allow (:mod:`crdt.access`).

A manifest with a ``readers`` list is a *private* database's: every replica reads the same block,
so every replica agrees that it is private and who besides its admins and writers may read it
(the node enforces it: :meth:`gridnode.repo.StoredDatabase.may_read`). Refused: a private
database that anyone may write (``"*"``): it could take writes from strangers that no reader is
allowed to fetch from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from crdt.errors import DecodeError, InvalidDidKey, InvalidManifest
from crdt.identity import public_key_from_did
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode

__all__ = [
    "ADDRESS_PREFIX",
    "PUBLIC",
    "STORE_TYPE_NAMES",
    "Manifest",
    "create_manifest",
    "decode_manifest",
    "parse_address",
]

ADDRESS_PREFIX: Final = "/gridnode/"
#: In a writer list: anyone may write (ACL changes still need an admin).
PUBLIC: Final = "*"
STORE_TYPE_NAMES: Final = frozenset({"events", "keyvalue", "documents", "counter", "set"})
MANIFEST_KIND: Final = "gridnode/manifest"
MAX_MANIFEST_BYTES: Final = 64 * 1024
_KEYS: Final = frozenset(
    {"v", "kind", "name", "store", "admins", "writers", "options", "nonce", "readers", "encryption"}
)
#: Keys a manifest may leave out.
_OPTIONAL: Final = frozenset({"nonce", "readers", "encryption"})
#: The one value of ``encryption`` (:data:`crdt.encryption.ENCRYPTION_SCHEME`).
ENCRYPTION_SCHEME: Final = "xchacha20poly1305/x25519-sealed"


@dataclass(frozen=True)
class Manifest:
    """A decoded manifest and the block it came from."""

    cid: CID
    name: str
    store: str
    admins: tuple[str, ...]
    writers: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    nonce: bytes = b""
    block: bytes = b""
    #: Whether the database is private (the manifest has a ``readers`` list, maybe empty).
    private: bool = False
    #: Who may read a private database besides its admins and writers.
    readers: tuple[str, ...] = ()
    #: Whether store operations are encrypted (the manifest has ``encryption``): replicas
    #: without the key replicate it blind (:mod:`crdt.encryption`).
    encrypted: bool = False

    @property
    def address(self) -> str:
        """``/gridnode/<cid>``: how users name the database."""
        return ADDRESS_PREFIX + str(self.cid)

    @property
    def public(self) -> bool:
        """Whether the manifest lets anyone write from the start."""
        return PUBLIC in self.writers


def _check_dids(values: object, name: str, allow_public: bool) -> tuple[str, ...]:
    if type(values) is not list:
        raise InvalidManifest(f"{name} must be a list of did:key strings")
    for value in values:
        if value == PUBLIC and allow_public:
            continue
        if type(value) is not str:
            raise InvalidManifest(f"{name} holds a {type(value).__name__}")
        try:
            public_key_from_did(value)
        except InvalidDidKey as exc:
            raise InvalidManifest(f"{name}: {exc}") from None
    if list(values) != sorted(set(values)):
        raise InvalidManifest(f"{name} must be sorted and without duplicates")
    return tuple(values)


def _body(
    name: str,
    store: str,
    admins: Iterable[str],
    writers: Iterable[str],
    options: Mapping[str, Any] | None,
    nonce: bytes,
    readers: Iterable[str] | None,
    encrypted: bool = False,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "kind": MANIFEST_KIND,
        "name": name,
        "store": store,
        "admins": sorted(set(admins)),
        "writers": sorted(set(writers)),
        "options": dict(options or {}),
    }
    if nonce:
        body["nonce"] = nonce
    if readers is not None:
        body["readers"] = sorted(set(readers))
    if encrypted:
        body["encryption"] = ENCRYPTION_SCHEME
    return body


def create_manifest(
    name: str,
    store: str,
    *,
    admins: Iterable[str] = (),
    writers: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
    nonce: bytes = b"",
    readers: Iterable[str] | None = None,
    encrypted: bool = False,
) -> Manifest:
    """Make a manifest block. ``writers`` may contain ``"*"`` for a public-write database.

    ``nonce`` tells apart databases that are otherwise identical (the node passes random bytes).
    ``readers`` (``did:key``s, maybe none) makes the database private: only its admins, writers
    and readers may read it. ``encrypted`` makes its store operations ciphertext that only the
    holders of its key read (:mod:`crdt.encryption`); anyone may still replicate it, blind.
    """
    block = encode(_body(name, store, admins, writers, options, nonce, readers, encrypted))
    return decode_manifest(CID.for_block(block), block)


def decode_manifest(cid: CID, block: bytes) -> Manifest:
    """Check and decode a manifest block offered under ``cid``."""
    if len(block) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest of {len(block)} bytes exceeds {MAX_MANIFEST_BYTES}")
    cid.verify(block)
    try:
        body = decode(block)
    except DecodeError as exc:
        raise InvalidManifest(f"manifest is not DAG-CBOR: {exc}") from None
    if type(body) is not dict:
        raise InvalidManifest("manifest is not a map")
    if not body.keys() <= _KEYS or not body.keys() >= _KEYS - _OPTIONAL:
        raise InvalidManifest(
            f"manifest fields must be {sorted(_KEYS)} ({' and '.join(sorted(_OPTIONAL))} optional)"
        )
    if body["v"] != 1 or body["kind"] != MANIFEST_KIND:
        raise InvalidManifest("not a version 1 gridnode manifest")
    if type(body["name"]) is not str or not 0 < len(body["name"]) <= 256:
        raise InvalidManifest("name must be a string of 1 to 256 characters")
    if type(body["store"]) is not str or body["store"] not in STORE_TYPE_NAMES:
        raise InvalidManifest(f"unknown store type {body['store']!r}")
    admins = _check_dids(body["admins"], "admins", allow_public=False)
    writers = _check_dids(body["writers"], "writers", allow_public=True)
    if not admins and not writers:
        raise InvalidManifest("a database needs at least one admin or writer")
    if type(body["options"]) is not dict:
        raise InvalidManifest("options must be a map")
    nonce = body.get("nonce", b"")
    if type(nonce) is not bytes or ("nonce" in body and not nonce) or len(nonce) > 64:
        raise InvalidManifest("nonce must be 1 to 64 bytes when present")
    private = "readers" in body
    readers = _check_dids(body["readers"], "readers", allow_public=False) if private else ()
    if private and PUBLIC in writers:
        raise InvalidManifest('a private database (readers) cannot let anyone write ("*")')
    encrypted = "encryption" in body
    if encrypted and body["encryption"] != ENCRYPTION_SCHEME:
        raise InvalidManifest(f"unknown encryption {body['encryption']!r}")
    if encrypted and PUBLIC in writers:
        raise InvalidManifest('an encrypted database cannot let anyone write ("*")')
    return Manifest(
        cid=cid,
        name=body["name"],
        store=body["store"],
        admins=admins,
        writers=writers,
        options=body["options"],
        nonce=nonce,
        block=block,
        private=private,
        readers=readers,
        encrypted=encrypted,
    )


def parse_address(address: str) -> CID:
    """The manifest CID named by ``/gridnode/<cid>`` (or a bare CID)."""
    text = address[len(ADDRESS_PREFIX) :] if address.startswith(ADDRESS_PREFIX) else address
    return CID.parse(text)
