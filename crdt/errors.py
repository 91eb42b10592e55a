"""The one exception tree of gridnode.

Every error gridnode raises on bad input is a :class:`GridnodeError`, so an embedder can catch one
type; the subclasses say which rule was broken. Errors about bytes carry the ``offset`` at which the
problem was found (``None`` where no single position applies).
"""

from __future__ import annotations

__all__ = [
    "BlockTooLarge",
    "CarHashMismatch",
    "CarLimitExceeded",
    "CarTruncated",
    "CarUnverifiable",
    "DagCborDecodeError",
    "DagCborEncodeError",
    "DagPbDecodeError",
    "DagPbEncodeError",
    "DecodeError",
    "DepthExceeded",
    "DuplicateHamtName",
    "DuplicateMapKey",
    "EncodeError",
    "EntryError",
    "GridnodeError",
    "HamtTooDeep",
    "HashMismatch",
    "IdentityError",
    "IndefiniteLength",
    "InvalidAclOp",
    "InvalidBlock",
    "InvalidCID",
    "InvalidCar",
    "InvalidClock",
    "InvalidDidKey",
    "InvalidEntry",
    "InvalidFloat",
    "InvalidHamt",
    "InvalidKey",
    "InvalidManifest",
    "InvalidMultibase",
    "InvalidMultihash",
    "InvalidOperation",
    "InvalidOrbitAccess",
    "InvalidOrbitAddress",
    "InvalidOrbitBlock",
    "InvalidOrbitEntry",
    "InvalidOrbitIdentity",
    "InvalidOrbitManifest",
    "InvalidQuery",
    "InvalidSignature",
    "InvalidSkipLinks",
    "InvalidUnixFSNode",
    "InvalidUtf8",
    "InvalidVarint",
    "LogError",
    "MapKeyOrder",
    "NonCanonicalEncoding",
    "NonStringMapKey",
    "NotADirectory",
    "NotAFile",
    "NotUnixFS",
    "OrbitBadClock",
    "OrbitBadIdentitySignature",
    "OrbitBadSignature",
    "OrbitEntryTooLarge",
    "OrbitError",
    "OrbitHashMismatch",
    "OrbitIdentityMismatch",
    "OrbitKeyMismatch",
    "OrbitPendingLimit",
    "OrbitRefused",
    "OrbitRefusedAncestor",
    "OrbitUnauthorized",
    "OrbitUnknownIdentity",
    "OrbitUnsupported",
    "OrbitWrongLog",
    "PendingLimitExceeded",
    "PendingRefused",
    "RejectedAncestor",
    "TrailingBytes",
    "Truncated",
    "Unauthorized",
    "UnixFSDecodeError",
    "UnixFSEncodeError",
    "UnixFSTooDeep",
    "UnknownAuthor",
    "UnknownIndex",
    "UnknownProfile",
    "UnsupportedCarVersion",
    "UnsupportedCodec",
    "UnsupportedHash",
    "UnsupportedTag",
    "UnsupportedType",
    "WrongDatabase",
]


class GridnodeError(Exception):
    """Root of every error gridnode raises for bad input or a refused operation."""


class DecodeError(GridnodeError, ValueError):
    """Bytes from outside that do not decode. ``offset`` is where the problem was found."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.reason = message
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at offset {offset})")


class EncodeError(GridnodeError, ValueError):
    """A value that cannot be encoded in the IPLD data model."""


# -- multiformats -------------------------------------------------------------------------------


class InvalidVarint(DecodeError):
    """An unsigned varint that is truncated, too long or not minimally encoded."""


class InvalidMultibase(DecodeError):
    """A multibase string with an unknown prefix or characters outside its alphabet."""


class InvalidMultihash(DecodeError):
    """A multihash whose length prefix does not match its digest, or an impossible length."""


class InvalidCID(DecodeError):
    """Text or bytes that are not a CID."""


class UnsupportedHash(GridnodeError, ValueError):
    """A multihash function gridnode cannot compute (it can still carry such CIDs as links)."""


class UnsupportedCodec(GridnodeError, ValueError):
    """A multicodec name or code gridnode does not know where it must know it."""


# -- dag-cbor -----------------------------------------------------------------------------------


class DagCborDecodeError(DecodeError):
    """Bytes that are not strict DAG-CBOR."""


class Truncated(DagCborDecodeError):
    """The input ends inside an item, or a length claims more bytes than the input holds."""


class TrailingBytes(DagCborDecodeError):
    """Bytes left over after the single top-level item."""


class NonCanonicalEncoding(DagCborDecodeError):
    """An integer, length or tag number not written in its shortest form."""


class IndefiniteLength(DagCborDecodeError):
    """An indefinite-length string, array or map (forbidden in DAG-CBOR)."""


class UnsupportedTag(DagCborDecodeError):
    """A tag other than 42, or a tag 42 that does not hold a 0x00-prefixed CID."""


class InvalidFloat(DagCborDecodeError):
    """A float that is not 64-bit, or is NaN or an infinity."""


class NonStringMapKey(DagCborDecodeError):
    """A map key that is not a text string."""


class DuplicateMapKey(DagCborDecodeError):
    """The same key twice in one map."""


class MapKeyOrder(DagCborDecodeError):
    """Map keys not in canonical order (shorter first, then bytewise)."""


class InvalidUtf8(DagCborDecodeError):
    """A text string that is not valid UTF-8."""


class DepthExceeded(DagCborDecodeError):
    """Arrays and maps nested deeper than the decoder's bound."""


class UnsupportedType(DagCborDecodeError):
    """A CBOR item outside the DAG-CBOR data model (undefined, simple values, ...)."""


class DagCborEncodeError(EncodeError):
    """A Python value outside the IPLD data model, or beyond its limits."""


# -- blocks, CAR --------------------------------------------------------------------------------


class InvalidBlock(GridnodeError, ValueError):
    """A block that cannot be accepted."""


class HashMismatch(InvalidBlock):
    """A block whose bytes do not hash to the CID it was offered under."""


class BlockTooLarge(InvalidBlock):
    """A block larger than the configured bound."""


class InvalidCar(DecodeError):
    """A CAR file that cannot be read."""


class CarTruncated(InvalidCar):
    """A CAR whose header or a section claims more bytes than remain."""


class UnsupportedCarVersion(InvalidCar):
    """A CAR of a version other than 1 or 2."""


class CarHashMismatch(InvalidCar):
    """A CAR section whose block does not hash to its CID."""


# -- identities and entries ---------------------------------------------------------------------


class IdentityError(GridnodeError, ValueError):
    """A key or identity that cannot be used."""


class InvalidDidKey(IdentityError):
    """Text that is not an ed25519 ``did:key``."""


class InvalidKey(IdentityError):
    """Key material of the wrong length or form."""


class EntryError(GridnodeError, ValueError):
    """A log entry that cannot be accepted."""


class InvalidEntry(EntryError):
    """A block that decodes but is not a well-formed entry (missing field, wrong type, ...)."""


class InvalidSignature(EntryError):
    """An entry whose signature does not verify against its author's key."""


# -- the log and access control -----------------------------------------------------------------


class InvalidManifest(GridnodeError, ValueError):
    """A database manifest that is malformed or names an unknown store type."""


class LogError(GridnodeError, ValueError):
    """An entry the log cannot accept."""


class WrongDatabase(LogError):
    """An entry that belongs to another database."""


class InvalidClock(LogError):
    """An entry whose clock is not 1 + the highest clock of its parents."""


class InvalidSkipLinks(LogError):
    """An entry whose skip links are not the ones its position implies."""


class Unauthorized(LogError):
    """An entry whose author may not write (or administer) according to its causal past."""


class InvalidAclOp(LogError):
    """An access-control entry that is not a well-formed grant or revoke."""


class RejectedAncestor(LogError):
    """An entry that descends from a rejected entry."""


class PendingRefused(LogError):
    """An entry whose parents are missing, not kept to wait for them: not a verdict on the entry
    (it may be offered again later, e.g. once its parents or the grants naming its author are
    known)."""


class PendingLimitExceeded(PendingRefused):
    """Too many entries, or bytes, wait for missing parents (in total, from one author or from
    one source)."""


class UnknownAuthor(PendingRefused):
    """An entry whose parents are missing, by an author that no manifest role and no grant this
    replica knows (applied or waiting) could authorise, in a database not open to everyone."""


# -- stores -------------------------------------------------------------------------------------


class InvalidOperation(GridnodeError, ValueError):
    """A payload that is not a well-formed operation of the database's store type.

    Raised to a writer before it signs; a store that meets such a payload in a replicated entry
    ignores it instead (the entry stays in the log, valid but without effect). When it names one
    op of a write, ``index`` is that op's position in the write and ``reason`` what is wrong.
    """

    def __init__(
        self, message: str = "", *, index: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.index = index
        self.reason = message if reason is None else reason


class InvalidQuery(GridnodeError, ValueError):
    """A read a store cannot answer as asked (conflicting bounds, an unknown position, ...)."""


class UnknownIndex(InvalidQuery):
    """A query on a document field the database declares no index for."""


# -- CAR (continued) ----------------------------------------------------------------------------


class CarLimitExceeded(InvalidCar):
    """A CAR header or block larger than the reader's bound (the file may be well formed)."""


class CarUnverifiable(InvalidCar):
    """A CAR block whose CID uses a hash function gridnode cannot compute, read with verification."""


# -- snapshots ----------------------------------------------------------------------------------


class InvalidSnapshot(InvalidBlock):
    """A snapshot block (its signed root or a chunk of rows) that cannot be accepted: malformed,
    forged, of another database, or whose rows do not hash to what the root signs."""


class UntrustedSnapshot(InvalidSnapshot):
    """A well-formed snapshot this replica will not serve from: a signer it does not trust, or
    an age outside the bounds it was configured with."""


# -- dag-pb and UnixFS (issue 23) ---------------------------------------------------------------


class DagPbDecodeError(DecodeError):
    """Bytes that are not a strict dag-pb node (the dag-pb spec's decoding rules)."""


class DagPbEncodeError(EncodeError):
    """A dag-pb node that cannot be encoded (a negative or too large size, ...)."""


class UnixFSDecodeError(DecodeError):
    """A UnixFS ``Data`` message (the protobuf in a dag-pb node's Data) that is malformed."""


class UnixFSEncodeError(EncodeError):
    """A UnixFS value that cannot be encoded, or an import refused (an invalid or duplicate
    directory entry name, a size out of range, ...)."""


# -- UnixFS HAMT directories and the reader (issue 23) -----------------------------------------


class InvalidUnixFSNode(UnixFSDecodeError):
    """A UnixFS node whose parts disagree, or disagree with its parent: blocksizes that do not
    match the links or the filesize, a child of another size than its parent says, an unsafe or
    repeated directory entry name, a HAMT shard of another hash or without a fanout."""


class UnixFSTooDeep(InvalidUnixFSNode):
    """A file DAG deeper than the reader's bound."""


class NotUnixFS(UnixFSDecodeError):
    """A block read as UnixFS that is not: another codec, a dag-pb node without UnixFS Data, or
    a UnixFS Metadata node."""


class NotAFile(InvalidQuery):
    """File bytes asked of a UnixFS node that is not a file (a directory, a symlink)."""


class NotADirectory(InvalidQuery):
    """Directory entries asked of a UnixFS node that is not that kind of directory."""


class InvalidHamt(InvalidUnixFSNode):
    """A UnixFS HAMT shard whose parts disagree: fanout, bitfield, link names and order, or an
    entry in a bucket its name does not hash to."""


class HamtTooDeep(InvalidHamt):
    """A HAMT deeper than the 64 bits of its name hash allow (go refuses such a directory)."""


class DuplicateHamtName(UnixFSEncodeError):
    """A directory entry name given twice to a HAMT builder."""


class UnknownProfile(UnixFSEncodeError):
    """A UnixFS import profile name that is not one of ``crdt.unixfs.profiles.PROFILES``."""


# -- encrypted databases ------------------------------------------------------------------------


class EncryptionError(GridnodeError, ValueError):
    """An encrypted database's payload or key operation that cannot be used as asked."""


class InvalidEnvelope(EncryptionError):
    """A payload or key operation of an encrypted database that is not well formed (wrong keys,
    types or lengths); the entry stays in the log, valid but without effect on the store."""


class DecryptionFailed(EncryptionError):
    """Ciphertext that does not open with the key it names: tampered, truncated, or sealed to
    another key. Never says anything about the plaintext."""


class MissingDatabaseKey(EncryptionError):
    """This node holds no key for an encrypted database (or not the one asked for): it may
    replicate the database blind, but cannot write to it or read it."""


# -- OrbitDB's blocks, read and verified (issue 25, crdt/orbitdb) ---------------------------------


class OrbitError(GridnodeError, ValueError):
    """An @orbitdb/core 4 block, entry or address gridnode refuses (crdt/orbitdb)."""


class InvalidOrbitAddress(OrbitError):
    """Text that is not ``/orbitdb/<base58btc CIDv1 dag-cbor sha2-256>``, or a hash string that
    is not a ``zdpu...`` CID where OrbitDB writes one."""


class InvalidOrbitBlock(OrbitError):
    """An OrbitDB block that does not decode: not strict DAG-CBOR, or not the shape its kind has."""


class OrbitHashMismatch(InvalidOrbitBlock):
    """An OrbitDB block whose bytes do not hash to the CID it was offered under."""


class InvalidOrbitEntry(InvalidOrbitBlock):
    """An entry block with a missing, extra or mistyped field (``id``, ``payload``, ``next``,
    ``refs``, ``clock``, ``v``, ``key``, ``identity``, ``sig``)."""


class OrbitEntryTooLarge(InvalidOrbitEntry):
    """An entry block larger than the bound, or with more ``next`` or ``refs`` than the bound."""


class InvalidOrbitIdentity(InvalidOrbitBlock):
    """An identity block that is not ``{id, publicKey, signatures{id, publicKey}, type}``."""


class InvalidOrbitManifest(InvalidOrbitBlock):
    """A manifest block that is not ``{name, type, accessController[, meta]}``."""


class InvalidOrbitAccess(InvalidOrbitBlock):
    """An IPFS access controller block that is not ``{type: 'ipfs', write: [ids]}``."""


class OrbitUnsupported(OrbitError):
    """A well-formed OrbitDB block of a kind gridnode does not read: another database type, the
    ``orbitdb`` access controller, an identity type other than ``publickey``, encrypted entries."""


class OrbitRefused(OrbitError):
    """A well-formed entry or identity that fails verification."""


class OrbitBadSignature(OrbitRefused):
    """An entry whose ``sig`` does not verify with its ``key`` over its signed bytes."""


class OrbitBadIdentitySignature(OrbitRefused):
    """An identity whose ``signatures.id`` or ``signatures.publicKey`` does not verify."""


class OrbitKeyMismatch(OrbitRefused):
    """An entry whose ``key`` is not its identity's ``publicKey`` (OrbitDB 4.0.0 does not check
    this; gridnode does)."""


class OrbitIdentityMismatch(OrbitRefused):
    """An entry verified against an identity block other than the one its ``identity`` names."""


class OrbitUnknownIdentity(OrbitRefused):
    """An entry whose identity block is not known (could not be fetched)."""


class OrbitUnauthorized(OrbitRefused):
    """An entry whose identity's ``id`` is not in the access controller's ``write`` list (nor is
    ``'*'``)."""


class OrbitWrongLog(OrbitRefused):
    """An entry whose ``id`` is not the address of the database it was offered for."""


class OrbitBadClock(OrbitRefused):
    """An entry whose clock OrbitDB would not write: ``clock.id`` other than ``key``, a time out
    of [1, 2**53 - 1], or a time other than 1 + the highest time of its ``next`` entries."""


class OrbitRefusedAncestor(OrbitRefused):
    """An entry one of whose ``next`` entries was refused: it can never join the log."""


class OrbitPendingLimit(OrbitError):
    """Too many entries, or bytes, wait for their ``next`` entries: not a verdict on the entry
    (it may be offered again once its parents are in)."""
