"""Verification of OrbitDB 4 entries and identities, stricter than OrbitDB (``docs/spec.md``,
"OrbitDB 4 formats as gridnode reads them").

OrbitDB signs with secp256k1 ECDSA over the SHA-256 of the message, the signature DER-encoded and
written as lowercase hex (``key-store.js`` ``signMessage``, through @libp2p/crypto, which verifies
with @noble/curves: low-S only). :func:`verify_signature` does the same with libsecp256k1
(``coincurve``), which also refuses high-S signatures and non-strict DER.

An entry is accepted when, in this order (one error type each):

1. its ``id`` is the database's address (:class:`OrbitWrongLog`);
2. the identity block it was checked against is the one its ``identity`` names
   (:class:`OrbitIdentityMismatch`);
3. its ``key`` is that identity's ``publicKey`` (:class:`OrbitKeyMismatch`): **OrbitDB does not
   check this** (it verifies ``sig`` with ``key`` and write access with ``identity``, so anyone can
   sign with their own key and name a writer's identity);
4. its clock is what OrbitDB writes: ``clock.id == key``, time in [1, 2**53 - 1]
   (:class:`OrbitBadClock`); with its ``next`` entries known, :func:`check_clock` also requires
   time = 1 + their highest time;
5. the identity's ``id`` may write (:class:`OrbitUnauthorized`);
6. the identity's two signatures verify (:class:`OrbitBadIdentitySignature`), as OrbitDB's
   ``publickey`` provider checks them: ``signatures.id`` by ``publicKey`` over ``id``, and
   ``signatures.publicKey`` by ``id`` (itself a public key) over ``publicKey + signatures.id``;
7. ``sig`` verifies with ``key`` over :func:`crdt.orbitdb.blocks.signed_bytes`
   (:class:`OrbitBadSignature`).
"""

from __future__ import annotations

from collections.abc import Sequence

from coincurve import PublicKey

from crdt.errors import (
    OrbitBadClock,
    OrbitBadIdentitySignature,
    OrbitBadSignature,
    OrbitIdentityMismatch,
    OrbitKeyMismatch,
    OrbitUnauthorized,
    OrbitWrongLog,
)
from crdt.ipld.cid import CID
from crdt.orbitdb.address import format_address
from crdt.orbitdb.blocks import (
    MAX_CLOCK_TIME,
    OrbitAccess,
    OrbitEntry,
    OrbitIdentity,
    signed_bytes,
)

__all__ = ["check_clock", "verify_entry", "verify_identity", "verify_signature"]


def verify_signature(signature: str, public_key: str, data: bytes) -> bool:
    """Whether ``signature`` (hex DER ECDSA) by ``public_key`` (hex, compressed secp256k1) signs
    the SHA-256 of ``data``: OrbitDB's ``verifyMessage`` without its cache. Never raises."""
    try:
        key = PublicKey(bytes.fromhex(public_key))
        return bool(key.verify(bytes.fromhex(signature), data))
    except (ValueError, TypeError):
        return False


def verify_identity(identity: OrbitIdentity) -> None:
    """Check an identity's two signatures as OrbitDB's ``Identities.verifyIdentity`` and the
    ``publickey`` provider do. Raises :class:`OrbitBadIdentitySignature`."""
    if not verify_signature(identity.signature_id, identity.public_key, identity.id.encode()):
        raise OrbitBadIdentitySignature(f"identity {identity.hash}: signatures.id does not verify")
    signed = (identity.public_key + identity.signature_id).encode()
    if not verify_signature(identity.signature_public_key, identity.id, signed):
        raise OrbitBadIdentitySignature(
            f"identity {identity.hash}: signatures.publicKey does not verify"
        )


def verify_entry(
    entry: OrbitEntry,
    identity: OrbitIdentity,
    access: OrbitAccess,
    address: CID | str,
    *,
    identity_verified: bool = False,
) -> None:
    """Check one decoded entry against its identity block, the database's access controller and
    its address (a manifest CID or ``/orbitdb/...``), in the order the module docstring gives.
    ``identity_verified`` skips the identity's signatures when the caller has already checked
    that identity block (:func:`verify_identity`). Raises an :class:`OrbitRefused` subclass."""
    expected = address if isinstance(address, str) else format_address(address)
    if entry.id != expected:
        raise OrbitWrongLog(f"entry {entry.hash} belongs to {entry.id!r:.80}, not {expected}")
    if entry.identity != identity.hash:
        raise OrbitIdentityMismatch(
            f"entry {entry.hash} names identity {entry.identity}, not {identity.hash}"
        )
    if entry.key != identity.public_key:
        raise OrbitKeyMismatch(
            f"entry {entry.hash} is signed by key {entry.key}, its identity's key is "
            f"{identity.public_key}"
        )
    if entry.clock_id != entry.key:
        raise OrbitBadClock(f"entry {entry.hash}: clock id is not its key")
    if not 1 <= entry.clock_time <= MAX_CLOCK_TIME:
        raise OrbitBadClock(f"entry {entry.hash}: clock time {entry.clock_time} out of range")
    if not access.allows(identity.id):
        raise OrbitUnauthorized(f"entry {entry.hash}: identity {identity.id} may not write")
    if not identity_verified:
        verify_identity(identity)
    if not verify_signature(entry.sig, entry.key, signed_bytes(entry)):
        raise OrbitBadSignature(f"entry {entry.hash}: sig does not verify with its key")


def check_clock(entry: OrbitEntry, parents: Sequence[OrbitEntry]) -> None:
    """Check an entry's clock time against its ``next`` entries (``parents``, all of them, in any
    order): OrbitDB writes 1 + the highest parent time (1 for an entry without ``next``). Raises
    :class:`OrbitBadClock`; ``ValueError`` if ``parents`` are not exactly ``entry.next``."""
    if sorted(p.hash for p in parents) != sorted(entry.next):
        raise ValueError("parents are not the entry's next entries")
    expected = 1 + max((p.clock_time for p in parents), default=0)
    if entry.clock_time != expected:
        raise OrbitBadClock(
            f"entry {entry.hash}: clock time {entry.clock_time}, its next entries imply {expected}"
        )
