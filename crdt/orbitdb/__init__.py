"""OrbitDB 4 (@orbitdb/core 4.0.0) as gridnode reads it, pure: addresses (:mod:`.address`), strict
block decoders (:mod:`.blocks`), verification stricter than OrbitDB's (:mod:`.verify`) and the
events, documents and keyvalue databases' answers (:mod:`.stores`). No I/O: the node fetches the
blocks (gridnode/orbitdb) and hands them here. ``docs/spec.md``, "OrbitDB 4 formats as gridnode
reads them"."""

from crdt.orbitdb.address import format_address, format_hash, parse_address, parse_hash
from crdt.orbitdb.blocks import (
    OrbitAccess,
    OrbitEntry,
    OrbitIdentity,
    OrbitManifest,
    decode_access,
    decode_entry,
    decode_identity,
    decode_manifest,
    signed_bytes,
)
from crdt.orbitdb.log import OrbitLog
from crdt.orbitdb.stores import Materialiser, log_order, materialise
from crdt.orbitdb.verify import check_clock, verify_entry, verify_identity, verify_signature

__all__ = [
    "Materialiser",
    "OrbitAccess",
    "OrbitEntry",
    "OrbitIdentity",
    "OrbitLog",
    "OrbitManifest",
    "check_clock",
    "decode_access",
    "decode_entry",
    "decode_identity",
    "decode_manifest",
    "format_address",
    "format_hash",
    "log_order",
    "materialise",
    "parse_address",
    "parse_hash",
    "signed_bytes",
    "verify_entry",
    "verify_identity",
    "verify_signature",
]
