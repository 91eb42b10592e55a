"""The signed log entry: one operation of one database, as a DAG-CBOR block.

An entry is a map with exactly these keys (``docs/spec.md`` gives the bytes)::

    v          1                              format version
    db         link                           the database (its manifest's CID)
    next       [link, ...]                    causal parents: strictly ascending by binary CID
    skip       [link, ...]                    optional skip links (absent when empty)
    clock      int                            Lamport time: 1 for a root, else 1 + max(parents)
    author     "did:key:z6Mk..."              the ed25519 key that signed
    payload    any IPLD value                 the operation
    signature  bytes (64)                     ed25519 over the canonical encoding of the rest

In canonical key order ``signature`` (the only key of 9 bytes) comes last, so the signed bytes are
the block minus its last 76 bytes with the map head decremented: verifying never re-encodes.

Whether the clock equals what the parents imply is checked by the log, which knows the parents;
here only what one block can show is checked (a root has clock 1, a child a clock of at least 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from crdt.errors import BlockTooLarge, InvalidDidKey, InvalidEntry, UnsupportedCodec
from crdt.identity import Keypair, public_key_from_did, verify
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, decode_trusted, encode

__all__ = [
    "ENTRY_VERSION",
    "MAX_CLOCK",
    "MAX_ENTRY_BYTES",
    "MAX_PARENTS",
    "MAX_SKIP",
    "Entry",
    "create_entry",
    "decode_entry",
    "entry_from_block",
]

ENTRY_VERSION: Final = 1
#: Largest entry block accepted (the payload is most of it).
MAX_ENTRY_BYTES: Final = 1024 * 1024
#: Most causal parents one entry may name (a merge of that many concurrent heads).
MAX_PARENTS: Final = 256
#: Most skip links one entry may carry.
MAX_SKIP: Final = 32
#: Clocks fit in SQLite's signed 64-bit integers with room to spare.
MAX_CLOCK: Final = (1 << 62) - 1

_DAG_CBOR: Final = 0x71
_REQUIRED: Final = frozenset({"v", "db", "next", "clock", "author", "payload", "signature"})
_ALLOWED: Final = _REQUIRED | {"skip"}
# "signature" as a map key, then the head of a 64-byte byte string.
_SIGNATURE_TAIL: Final = b"\x69signature\x58\x40"
_TAIL_LENGTH: Final = len(_SIGNATURE_TAIL) + 64


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded, verified entry, with the block it came from."""

    cid: CID
    db: CID
    author: str
    clock: int
    next: tuple[CID, ...]
    skip: tuple[CID, ...]
    payload: Any
    signature: bytes
    block: bytes

    @property
    def is_root(self) -> bool:
        """Whether the entry has no causal parents."""
        return not self.next


def _check_links(value: object, name: str, limit: int) -> tuple[CID, ...]:
    if type(value) is not list:
        raise InvalidEntry(f"{name} must be a list of links")
    if len(value) > limit:
        raise InvalidEntry(f"{name} has {len(value)} links; at most {limit}")
    previous: bytes = b""
    for link in value:
        if type(link) is not CID:
            raise InvalidEntry(f"{name} holds a {type(link).__name__}, not a link")
        if link.codec != _DAG_CBOR or link.version != 1:
            raise InvalidEntry(f"{name} link {link} is not a dag-cbor CIDv1")
        raw = link.bytes
        if raw <= previous:
            raise InvalidEntry(f"{name} links must be strictly ascending by binary CID")
        previous = raw
    return tuple(value)


def _check_body(body: dict[str, Any]) -> None:
    keys = body.keys()
    if not keys >= _REQUIRED:
        missing = ", ".join(sorted(_REQUIRED - keys))
        raise InvalidEntry(f"entry lacks {missing}")
    if not keys <= _ALLOWED:
        extra = ", ".join(sorted(keys - _ALLOWED))
        raise InvalidEntry(f"entry has unknown fields {extra}")
    if body["v"] != ENTRY_VERSION or type(body["v"]) is not int:
        raise InvalidEntry(f"unsupported entry version {body['v']!r}")
    if type(body["db"]) is not CID:
        raise InvalidEntry("db must be a link to the database manifest")
    clock = body["clock"]
    if type(clock) is not int or not 1 <= clock <= MAX_CLOCK:
        raise InvalidEntry(f"clock must be an integer in [1, {MAX_CLOCK}], not {clock!r}")
    author = body["author"]
    if type(author) is not str:
        raise InvalidEntry("author must be a did:key string")
    try:
        public_key_from_did(author)
    except InvalidDidKey as exc:
        raise InvalidEntry(f"author: {exc}") from None


def decode_entry(cid: CID, block: bytes, *, max_size: int = MAX_ENTRY_BYTES) -> Entry:
    """Turn a block offered under ``cid`` into a verified :class:`Entry`.

    Checks, in order, each with its own error: size (:class:`~crdt.errors.BlockTooLarge`),
    codec and hash (:class:`~crdt.errors.HashMismatch`), DAG-CBOR
    (:class:`~crdt.errors.DagCborDecodeError`), structure (:class:`~crdt.errors.InvalidEntry`),
    signature (:class:`~crdt.errors.InvalidSignature`).
    """
    if len(block) > max_size:
        raise BlockTooLarge(f"entry block of {len(block)} bytes exceeds {max_size}")
    if cid.codec != _DAG_CBOR:
        raise UnsupportedCodec(f"an entry is dag-cbor; {cid} has codec 0x{cid.codec:x}")
    cid.verify(block)
    body = decode(block)
    if type(body) is not dict:
        raise InvalidEntry("entry is not a map")
    _check_body(body)
    parents = _check_links(body["next"], "next", MAX_PARENTS)
    skip: tuple[CID, ...] = ()
    if "skip" in body:
        skip = _check_links(body["skip"], "skip", MAX_SKIP)
        if not skip:
            raise InvalidEntry("an empty skip list must be left out")
    clock: int = body["clock"]
    if parents and clock < 2:
        raise InvalidEntry("an entry with parents has a clock of at least 2")
    if not parents and clock != 1:
        raise InvalidEntry(f"a root entry has clock 1, not {clock}")
    signature = body["signature"]
    if type(signature) is not bytes or len(signature) != 64:
        raise InvalidEntry("signature must be 64 bytes")
    # Canonical order puts "signature" last (see the module doc), so the signed bytes are a slice.
    if (
        block[-_TAIL_LENGTH:-64] != _SIGNATURE_TAIL
    ):  # pragma: no cover - implied by the checks above
        raise InvalidEntry("signature is not the last field")
    signed = bytes((block[0] - 1,)) + block[1:-_TAIL_LENGTH]
    verify(body["author"], signed, signature)
    return Entry(
        cid=cid,
        db=body["db"],
        author=body["author"],
        clock=clock,
        next=parents,
        skip=skip,
        payload=body["payload"],
        signature=signature,
        block=block,
    )


def entry_from_block(cid: CID, block: bytes) -> Entry:
    """Rebuild an :class:`Entry` from a block that was verified when it was stored.

    No hash, structure or signature check: use :func:`decode_entry` for anything from outside.
    """
    body = decode_trusted(block)
    return Entry(
        cid=cid,
        db=body["db"],
        author=body["author"],
        clock=body["clock"],
        next=tuple(body["next"]),
        skip=tuple(body.get("skip", ())),
        payload=body["payload"],
        signature=body["signature"],
        block=block,
    )


def signing_bytes(
    *,
    db: CID,
    author: str,
    clock: int,
    next: Sequence[CID],
    payload: Any,
    skip: Sequence[CID] = (),
) -> bytes:
    """The canonical encoding of an entry without its signature: what the author signs."""
    body: dict[str, Any] = {
        "v": ENTRY_VERSION,
        "db": db,
        "next": sorted(set(next)),
        "clock": clock,
        "author": author,
        "payload": payload,
    }
    if skip:
        body["skip"] = sorted(set(skip))
    return encode(body)


def create_entry(
    keypair: Keypair,
    *,
    db: CID,
    clock: int,
    next: Sequence[CID] = (),
    payload: Any = None,
    skip: Sequence[CID] = (),
) -> Entry:
    """Build, sign and encode an entry. Parents and skip links are sorted and deduplicated.

    The caller (the log) chooses the clock; it must be 1 for a root and 1 + the highest parent
    clock otherwise, or replicas will reject the entry.
    """
    parents = tuple(sorted(set(next)))
    skips = tuple(sorted(set(skip)))
    if not 1 <= clock <= MAX_CLOCK:
        raise InvalidEntry(f"clock must be in [1, {MAX_CLOCK}]")
    if len(parents) > MAX_PARENTS or len(skips) > MAX_SKIP:
        raise InvalidEntry("too many parents or skip links")
    signed = signing_bytes(
        db=db, author=keypair.did, clock=clock, next=parents, payload=payload, skip=skips
    )
    signature = keypair.sign(signed)
    block = bytes((signed[0] + 1,)) + signed[1:] + _SIGNATURE_TAIL + signature
    if len(block) > MAX_ENTRY_BYTES:
        raise BlockTooLarge(f"entry block of {len(block)} bytes exceeds {MAX_ENTRY_BYTES}")
    # The payload is handed back as a replica will decode it (tuples become lists, subclasses
    # their base types), so the writer's own state equals every other replica's.
    return Entry(
        cid=CID.for_block(block),
        db=db,
        author=keypair.did,
        clock=clock,
        next=parents,
        skip=skips,
        payload=decode_trusted(block)["payload"],
        signature=signature,
        block=block,
    )
