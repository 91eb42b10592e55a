"""OrbitDB 4's blocks, decoded strictly (@orbitdb/core 4.0.0: ``oplog/entry.js``,
``identities/identity.js``, ``manifest-store.js``, ``access-controllers/ipfs.js``).

Every block is strict DAG-CBOR (:func:`crdt.ipld.dagcbor.decode`) under a CIDv1 dag-cbor sha2-256
whose hash is checked first. The shapes, exactly as OrbitDB writes them (``docs/spec.md``,
"OrbitDB 4 formats as gridnode reads them")::

    entry     {id, payload, next: [hash], refs: [hash], clock: {id, time}, v: 2,
               key, identity: hash, sig}
    identity  {id, publicKey, signatures: {id, publicKey}, type: 'publickey'}
    manifest  {name, type, accessController: '/ipfs/<hash>'[, meta]}
    access    {type: 'ipfs', write: [identity id | '*']}

where a *hash* is a ``zdpu...`` string (:func:`crdt.orbitdb.address.parse_hash`), keys are the
lowercase hex of a compressed secp256k1 public key (33 bytes) and signatures the lowercase hex of a
DER ECDSA signature. A field missing, extra or of another type is refused: OrbitDB signs only
``{id, payload, next, refs, clock, v}``, so an extra field would let anyone make new CIDs of a
signed entry.

Decoding checks one block; whether it verifies (signatures, key-identity binding, write access,
log id, clock against parents) is :mod:`crdt.orbitdb.verify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from crdt.errors import (
    DecodeError,
    InvalidOrbitAccess,
    InvalidOrbitAddress,
    InvalidOrbitBlock,
    InvalidOrbitEntry,
    InvalidOrbitIdentity,
    InvalidOrbitManifest,
    OrbitEntryTooLarge,
    OrbitHashMismatch,
    OrbitUnsupported,
)
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.orbitdb.address import format_hash, parse_hash

__all__ = [
    "ENTRY_VERSION",
    "MAX_CLOCK_TIME",
    "MAX_ENTRY_BYTES",
    "MAX_IDENTITY_BYTES",
    "MAX_NEXT",
    "MAX_REFS",
    "MAX_SMALL_BLOCK_BYTES",
    "MAX_WRITERS",
    "STORE_TYPES",
    "OrbitAccess",
    "OrbitEntry",
    "OrbitIdentity",
    "OrbitManifest",
    "decode_access",
    "decode_entry",
    "decode_identity",
    "decode_manifest",
    "signed_bytes",
]

ENTRY_VERSION: Final = 2
#: Largest entry block accepted (the payload is most of it).
MAX_ENTRY_BYTES: Final = 1024 * 1024
#: Largest identity block (OrbitDB's are about 400 bytes).
MAX_IDENTITY_BYTES: Final = 4096
#: Largest manifest or access controller block.
MAX_SMALL_BLOCK_BYTES: Final = 256 * 1024
#: Most ``next`` one entry may name: the heads its writer saw (OrbitDB writes one per head).
MAX_NEXT: Final = 256
#: Most ``refs``: OrbitDB writes referencesCount - 1 of them (default 16, so 15).
MAX_REFS: Final = 1024
#: Most ids in an access controller's write list.
MAX_WRITERS: Final = 10_000
#: OrbitDB's clock time is a JavaScript number: exact up to Number.MAX_SAFE_INTEGER.
MAX_CLOCK_TIME: Final = 2**53 - 1
#: The database types gridnode materialises (``keyvalue-indexed`` writes type ``keyvalue``).
STORE_TYPES: Final = frozenset({"events", "documents", "keyvalue"})

_DAG_CBOR: Final = 0x71
_SHA2_256: Final = 0x12
_ENTRY_KEYS: Final = frozenset(
    {"id", "payload", "next", "refs", "clock", "v", "key", "identity", "sig"}
)
_IDENTITY_KEYS: Final = frozenset({"id", "publicKey", "signatures", "type"})
_HEX: Final = frozenset("0123456789abcdef")
_PUBLIC_KEY_HEX: Final = 66  # 33 bytes, compressed secp256k1
_MAX_SIGNATURE_HEX: Final = 144  # DER ECDSA signature: at most 72 bytes
_MIN_SIGNATURE_HEX: Final = 16


@dataclass(frozen=True, slots=True)
class OrbitEntry:
    """One decoded OrbitDB log entry. ``hash`` is its ``zdpu...`` string (OrbitDB's ``entry.hash``);
    ``next``, ``refs`` and ``identity`` are the strings the block holds."""

    cid: CID
    hash: str
    id: str
    payload: Any
    next: tuple[str, ...]
    refs: tuple[str, ...]
    clock_id: str
    clock_time: int
    v: int
    key: str
    identity: str
    sig: str
    block: bytes

    @property
    def sort_key(self) -> tuple[int, str, str]:
        """OrbitDB's LastWriteWins order (clock time, then clock id), then the hash: the total
        order gridnode sorts by (:mod:`crdt.orbitdb.stores`)."""
        return (self.clock_time, self.clock_id, self.hash)


@dataclass(frozen=True, slots=True)
class OrbitIdentity:
    """One decoded identity block (``publickey`` type)."""

    cid: CID
    hash: str
    id: str
    public_key: str
    signature_id: str
    signature_public_key: str
    type: str


@dataclass(frozen=True, slots=True)
class OrbitManifest:
    """A database manifest. ``access_controller`` is the CID its ``/ipfs/<hash>`` names; ``meta``
    is ``None`` when the manifest has none."""

    cid: CID
    name: str
    type: str
    access_controller: CID
    meta: Any


@dataclass(frozen=True, slots=True)
class OrbitAccess:
    """An IPFS access controller: the identity ids that may write, or ``'*'`` for anyone."""

    cid: CID
    write: tuple[str, ...]

    def allows(self, identity_id: str) -> bool:
        """Whether an identity of this id may write (OrbitDB: ``write.includes(id) ||
        write.includes('*')``)."""
        return "*" in self.write or identity_id in self.write


def _block(cid: CID, data: bytes, limit: int, error: type[InvalidOrbitBlock]) -> Any:
    """The value of a block after the bound, the CID kind and the hash are checked."""
    if len(data) > limit:
        too_large = OrbitEntryTooLarge if error is InvalidOrbitEntry else error
        raise too_large(f"block of {len(data)} bytes, more than {limit}")
    if cid.version != 1 or cid.codec != _DAG_CBOR or cid.hash_code != _SHA2_256:
        raise error(f"not a CIDv1 dag-cbor sha2-256: {cid}")
    if not cid.matches(data):
        raise OrbitHashMismatch(f"block does not hash to {format_hash(cid)}")
    try:
        return decode(data)
    except DecodeError as problem:
        raise error(f"not strict DAG-CBOR: {problem}") from None


def _is_hex(text: object, low: int, high: int) -> bool:
    return (
        isinstance(text, str)
        and low <= len(text) <= high
        and len(text) % 2 == 0
        and _HEX.issuperset(text)
    )


def _is_public_key(text: object) -> bool:
    return (
        _is_hex(text, _PUBLIC_KEY_HEX, _PUBLIC_KEY_HEX)
        and isinstance(text, str)
        and text[:2] in ("02", "03")
    )


def _is_signature(text: object) -> bool:
    return _is_hex(text, _MIN_SIGNATURE_HEX, _MAX_SIGNATURE_HEX)


def _hashes(value: object, name: str, bound: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidOrbitEntry(f"{name} is not a list")
    if len(value) > bound:
        raise OrbitEntryTooLarge(f"{len(value)} {name}, more than {bound}")
    for item in value:
        try:
            parse_hash(item)
        except InvalidOrbitAddress as problem:
            raise InvalidOrbitEntry(f"{name}: {problem}") from None
    if len(set(value)) != len(value):
        raise InvalidOrbitEntry(f"{name} names one entry twice")
    return tuple(value)


def decode_entry(cid: CID, data: bytes) -> OrbitEntry:
    """Decode an entry block offered under ``cid``: bounded, hash checked, strict DAG-CBOR, exact
    shape. Raises an :class:`InvalidOrbitBlock` subclass (never verifies signatures)."""
    value = _block(cid, data, MAX_ENTRY_BYTES, InvalidOrbitEntry)
    if isinstance(value, bytes):
        raise OrbitUnsupported("an encrypted entry (OrbitDB's replication encryption)")
    if not isinstance(value, dict):
        raise InvalidOrbitEntry("an entry is a map")
    if value.keys() != _ENTRY_KEYS:
        missing = sorted(_ENTRY_KEYS - value.keys())
        extra = sorted(value.keys() - _ENTRY_KEYS)
        raise InvalidOrbitEntry(f"entry fields: missing {missing}, extra {extra}")
    if value["v"] != ENTRY_VERSION or type(value["v"]) is not int:
        raise InvalidOrbitEntry(f"entry version {value['v']!r}, not {ENTRY_VERSION}")
    if not isinstance(value["id"], str) or not value["id"]:
        raise InvalidOrbitEntry("entry id is not a non-empty string")
    if value["payload"] is None:
        raise InvalidOrbitEntry("entry payload is null (OrbitDB never writes one)")
    clock = value["clock"]
    if not isinstance(clock, dict) or clock.keys() != {"id", "time"}:
        raise InvalidOrbitEntry("clock is not {id, time}")
    if not isinstance(clock["id"], str):
        raise InvalidOrbitEntry("clock id is not a string")
    if type(clock["time"]) is not int:
        raise InvalidOrbitEntry("clock time is not an integer")
    if not _is_public_key(value["key"]):
        raise InvalidOrbitEntry("key is not the hex of a compressed secp256k1 public key")
    if not _is_signature(value["sig"]):
        raise InvalidOrbitEntry("sig is not the hex of a DER signature")
    try:
        parse_hash(value["identity"])
    except InvalidOrbitAddress as problem:
        raise InvalidOrbitEntry(f"identity: {problem}") from None
    next_ = _hashes(value["next"], "next", MAX_NEXT)
    refs = _hashes(value["refs"], "refs", MAX_REFS)
    return OrbitEntry(
        cid=cid,
        hash=format_hash(cid),
        id=value["id"],
        payload=value["payload"],
        next=next_,
        refs=refs,
        clock_id=clock["id"],
        clock_time=clock["time"],
        v=value["v"],
        key=value["key"],
        identity=value["identity"],
        sig=value["sig"],
        block=bytes(data),
    )


def signed_bytes(entry: OrbitEntry) -> bytes:
    """The bytes OrbitDB signs for an entry: the DAG-CBOR of ``{id, payload, next, refs, clock,
    v}`` (``oplog/entry.js``, ``create`` and ``verify``)."""
    return encode(
        {
            "id": entry.id,
            "payload": entry.payload,
            "next": list(entry.next),
            "refs": list(entry.refs),
            "clock": {"id": entry.clock_id, "time": entry.clock_time},
            "v": entry.v,
        }
    )


def decode_identity(cid: CID, data: bytes) -> OrbitIdentity:
    """Decode an identity block: ``{id, publicKey, signatures: {id, publicKey}, type}``. Raises
    :class:`InvalidOrbitIdentity`, or :class:`OrbitUnsupported` for a type other than
    ``publickey``."""
    value = _block(cid, data, MAX_IDENTITY_BYTES, InvalidOrbitIdentity)
    if not isinstance(value, dict) or value.keys() != _IDENTITY_KEYS:
        raise InvalidOrbitIdentity("an identity is {id, publicKey, signatures, type}")
    signatures = value["signatures"]
    if not isinstance(signatures, dict) or signatures.keys() != {"id", "publicKey"}:
        raise InvalidOrbitIdentity("signatures is not {id, publicKey}")
    if not isinstance(value["type"], str):
        raise InvalidOrbitIdentity("type is not a string")
    if value["type"] != "publickey":
        raise OrbitUnsupported(f"identity type {value['type']!r:.40}, not 'publickey'")
    if not _is_public_key(value["id"]):
        raise InvalidOrbitIdentity("id is not the hex of a compressed secp256k1 public key")
    if not _is_public_key(value["publicKey"]):
        raise InvalidOrbitIdentity("publicKey is not the hex of a compressed secp256k1 key")
    if not _is_signature(signatures["id"]) or not _is_signature(signatures["publicKey"]):
        raise InvalidOrbitIdentity("a signature is not the hex of a DER signature")
    return OrbitIdentity(
        cid=cid,
        hash=format_hash(cid),
        id=value["id"],
        public_key=value["publicKey"],
        signature_id=signatures["id"],
        signature_public_key=signatures["publicKey"],
        type=value["type"],
    )


def decode_manifest(cid: CID, data: bytes) -> OrbitManifest:
    """Decode a manifest block: ``{name, type, accessController: '/ipfs/<hash>'[, meta]}``.
    Raises :class:`InvalidOrbitManifest`, or :class:`OrbitUnsupported` for a database type
    outside :data:`STORE_TYPES` or an access controller other than ``ipfs``."""
    value = _block(cid, data, MAX_SMALL_BLOCK_BYTES, InvalidOrbitManifest)
    if not isinstance(value, dict):
        raise InvalidOrbitManifest("a manifest is a map")
    required = {"name", "type", "accessController"}
    if not required <= value.keys() or not value.keys() <= required | {"meta"}:
        raise InvalidOrbitManifest("a manifest is {name, type, accessController[, meta]}")
    name, kind, access = value["name"], value["type"], value["accessController"]
    if not isinstance(name, str) or not name:
        raise InvalidOrbitManifest("name is not a non-empty string")
    if not isinstance(kind, str) or not kind:
        raise InvalidOrbitManifest("type is not a non-empty string")
    if not isinstance(access, str):
        raise InvalidOrbitManifest("accessController is not a string")
    if kind not in STORE_TYPES:
        raise OrbitUnsupported(f"database type {kind!r:.40}")
    if not access.startswith("/ipfs/"):
        raise OrbitUnsupported(f"access controller {access!r:.60} (only /ipfs/ is read)")
    try:
        access_cid = parse_hash(access[len("/ipfs/") :])
    except InvalidOrbitAddress as problem:
        raise InvalidOrbitManifest(f"accessController: {problem}") from None
    return OrbitManifest(
        cid=cid, name=name, type=kind, access_controller=access_cid, meta=value.get("meta")
    )


def decode_access(cid: CID, data: bytes) -> OrbitAccess:
    """Decode an IPFS access controller block: ``{type: 'ipfs', write: [id | '*']}``. Raises
    :class:`InvalidOrbitAccess`."""
    value = _block(cid, data, MAX_SMALL_BLOCK_BYTES, InvalidOrbitAccess)
    if not isinstance(value, dict) or value.keys() != {"type", "write"}:
        raise InvalidOrbitAccess("an access controller is {type, write}")
    if value["type"] != "ipfs":
        raise OrbitUnsupported(f"access controller type {value['type']!r:.40}")
    write = value["write"]
    if not isinstance(write, list) or not all(isinstance(w, str) for w in write):
        raise InvalidOrbitAccess("write is not a list of strings")
    if len(write) > MAX_WRITERS:
        raise InvalidOrbitAccess(f"{len(write)} writers, more than {MAX_WRITERS}")
    return OrbitAccess(cid=cid, write=tuple(write))
