"""OrbitDB addresses and hash strings (@orbitdb/core 4.0.0, ``src/address.js``, ``oplog/entry.js``).

An OrbitDB database address is ``/orbitdb/<manifest CID>``; OrbitDB writes the CID in base58btc
(``zdpu...``: CIDv1, dag-cbor, sha2-256) and the address string itself is the ``id`` of every
entry of the database's log. Entries name other blocks (``next``, ``refs``, ``identity``) by the
same kind of string, not by links.

OrbitDB's own parser is lax (it strips every ``/`` and ``\\``, and accepts base32 CIDs, which then
give the log another ``id``); gridnode accepts exactly the form OrbitDB writes, so one database has
one address and one log id.
"""

from __future__ import annotations

from typing import Final

from crdt.errors import DecodeError, InvalidOrbitAddress
from crdt.ipld.cid import CID

__all__ = ["ADDRESS_PREFIX", "format_address", "format_hash", "parse_address", "parse_hash"]

ADDRESS_PREFIX: Final = "/orbitdb/"
_DAG_CBOR: Final = 0x71
_SHA2_256: Final = 0x12
#: A base58btc CIDv1 dag-cbor sha2-256 is 50 characters (``z`` + 49); longer text is refused
#: before it is decoded.
_MAX_HASH_LENGTH: Final = 64


def parse_hash(text: object) -> CID:
    """The CID a ``zdpu...`` hash string names (CIDv1, dag-cbor, sha2-256, base58btc, the one
    form OrbitDB writes). Raises :class:`InvalidOrbitAddress` for anything else."""
    if not isinstance(text, str) or len(text) > _MAX_HASH_LENGTH or not text.startswith("z"):
        raise InvalidOrbitAddress(f"not a base58btc CIDv1 hash string: {text!r:.80}")
    try:
        cid = CID.parse(text)
    except DecodeError as error:
        raise InvalidOrbitAddress(f"not a CID: {text!r}: {error}") from None
    if cid.version != 1 or cid.codec != _DAG_CBOR or cid.hash_code != _SHA2_256:
        raise InvalidOrbitAddress(f"not a CIDv1 dag-cbor sha2-256: {text}")
    if cid.encode("base58btc") != text:  # pragma: no cover - base58 has one spelling per value
        raise InvalidOrbitAddress(f"not the canonical spelling: {text}")
    return cid


def format_hash(cid: CID) -> str:
    """The hash string OrbitDB writes for a block's CID (base58btc, ``zdpu...``)."""
    return cid.encode("base58btc")


def parse_address(text: str) -> CID:
    """The manifest CID of an address ``/orbitdb/zdpu...``. Raises :class:`InvalidOrbitAddress`."""
    if not isinstance(text, str) or not text.startswith(ADDRESS_PREFIX):
        raise InvalidOrbitAddress(f"an OrbitDB address starts with {ADDRESS_PREFIX}: {text!r:.80}")
    return parse_hash(text[len(ADDRESS_PREFIX) :])


def format_address(manifest: CID) -> str:
    """The address of the database whose manifest is ``manifest``: ``/orbitdb/zdpu...``; also
    the ``id`` of every entry of its log."""
    return ADDRESS_PREFIX + format_hash(manifest)
