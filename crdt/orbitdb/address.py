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

from functools import lru_cache
from typing import Final

from crdt.errors import DecodeError, InvalidOrbitAddress
from crdt.ipld.cid import CID
from crdt.ipld.multiformats import base58_decode

__all__ = ["ADDRESS_PREFIX", "format_address", "format_hash", "parse_address", "parse_hash"]

ADDRESS_PREFIX: Final = "/orbitdb/"
#: CIDv1, dag-cbor, sha2-256, 32-byte digest: 36 bytes, 49 characters in base58btc (``z`` + 48).
_CID_PREFIX: Final = b"\x01\x71\x12\x20"
_CID_BYTES: Final = 36
_HASH_LENGTH: Final = 49


def parse_hash(text: object) -> CID:
    """The CID a ``zdpu...`` hash string names (CIDv1, dag-cbor, sha2-256, base58btc, the one
    form OrbitDB writes). Raises :class:`InvalidOrbitAddress` for anything else."""
    if not isinstance(text, str) or len(text) != _HASH_LENGTH or text[0] != "z":
        raise InvalidOrbitAddress(f"not a base58btc CIDv1 dag-cbor hash string: {text!r:.80}")
    return _parse_hash(text)


@lru_cache(maxsize=65536)
def _parse_hash(text: str) -> CID:
    # Entries name their recent ancestors in next and refs, so each hash is read about as many
    # times as refs are written (OrbitDB: 16): the cache makes a log's decode linear in hashes.
    try:
        raw = base58_decode(text[1:])
    except DecodeError:
        raise InvalidOrbitAddress(f"not base58btc: {text!r}") from None
    # 48 digits with no leading '1' spell one 36-byte value: the spelling is canonical exactly
    # when the value is a CIDv1 dag-cbor sha2-256.
    if len(raw) != _CID_BYTES or raw[:4] != _CID_PREFIX:
        raise InvalidOrbitAddress(f"not a CIDv1 dag-cbor sha2-256: {text}")
    return CID.parse(raw)


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
