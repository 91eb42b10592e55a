"""Framing and messages of gridnode's stream protocol ``/gridnode/sync/1.1.0`` (sans-IO).

A stream carries frames: an unsigned varint length, then that many bytes of one DAG-CBOR map.
Every map has a type ``t``. docs/spec.md §10 lists the messages; :func:`parse_message` checks
each against its shape and limits, so the rest of the node only ever sees well-formed ones, and
:func:`encode_message` checks the same limits before sending (:class:`SendLimitError`), so the
node never sends what its peers must refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from crdt.errors import DecodeError, InvalidVarint
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.ipld.multiformats import decode_varint, encode_varint
from protocols.errors import ProtocolError, SendLimitError

__all__ = [
    "MAX_FRAME",
    "MAX_WANT",
    "Blocks",
    "Entries",
    "FrameDecoder",
    "Heads",
    "HeadsRequest",
    "Message",
    "ProtocolError",
    "Ranges",
    "Refusal",
    "SendLimitError",
    "Sync",
    "Want",
    "encode_message",
    "frame",
    "parse_message",
]

PROTOCOL_ID: Final = "/gridnode/sync/1.1.0"
#: The largest frame accepted (a blocks message holds at most this much).
MAX_FRAME: Final = 4 * 1024 * 1024
#: Most CIDs in one want.
MAX_WANT: Final = 1024
#: Most heads in one heads, sync or want (``have``) message. A node with more heads sends its
#: newest MAX_HEADS (highest clock): reconciliation carries every entry whatever heads say.
MAX_HEADS: Final = 1024
#: Most blocks in one blocks (or entries) message.
MAX_BLOCKS: Final = 8192
#: Most ranges in one reconciliation message.
MAX_RANGES: Final = 4096


def frame(payload: bytes) -> bytes:
    """One frame: varint length + payload; :class:`SendLimitError` (nothing sent) if the peer
    would refuse its length."""
    if len(payload) > MAX_FRAME:
        raise SendLimitError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return encode_varint(len(payload)) + payload


class FrameDecoder:
    """Bytes in, frame payloads out; refuses a length over the limit before buffering it."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete frame payload."""
        self._buffer += data
        frames = []
        buffer = self._buffer
        while buffer:
            try:
                length, start = decode_varint(buffer, 0)
            except InvalidVarint as exc:
                if exc.reason == "varint truncated" and len(buffer) < 9:
                    break  # the length itself has not fully arrived
                raise ProtocolError(f"bad frame length: {exc.reason}") from None
            if length > self.max_frame:
                raise ProtocolError(f"frame of {length} bytes exceeds {self.max_frame}")
            if len(buffer) < start + length:
                break
            frames.append(bytes(buffer[start : start + length]))
            del buffer[: start + length]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadsRequest:
    """``{"t": "heads?", "db": link}``: what are your heads of this database?"""

    db: CID


@dataclass(frozen=True)
class Heads:
    """``{"t": "heads", "db": link, "heads": [link]}``: my heads (empty if I do not have it)."""

    db: CID
    heads: tuple[CID, ...]


@dataclass(frozen=True)
class Want:
    """``{"t": "want", "db": link, "cids": [link], "have": [link]}``: send me these entries and
    their ancestors, except what ``have`` (my heads) already covers."""

    db: CID
    cids: tuple[CID, ...]
    have: tuple[CID, ...]


@dataclass(frozen=True)
class Blocks:
    """``{"t": "blocks", "db": link, "blocks": [[link, bytes]], "more": bool}``: entry blocks in
    an order where parents come before children; ``more``: ask again for the rest."""

    db: CID
    blocks: tuple[tuple[CID, bytes], ...]
    more: bool


@dataclass(frozen=True)
class Refusal:
    """``{"t": "refused", "reason": text}``: the request is refused (unknown or private db, budget)."""

    reason: str


@dataclass(frozen=True)
class Sync:
    """``{"t": "sync", "db": link, "heads": [link], "ranges": [...]}``: start a pull: my heads,
    and the first reconciliation message (:mod:`protocols.reconcile`). The answer: ``heads``,
    then ``entries`` messages, then ``ranges``."""

    db: CID
    heads: tuple[CID, ...]
    ranges: list[Any]


@dataclass(frozen=True)
class Ranges:
    """``{"t": "ranges", "db": link, "ranges": [...]}``: the next reconciliation message. From a
    server it ends an answer; an empty list says every range is settled."""

    db: CID
    ranges: list[Any]


@dataclass(frozen=True)
class Entries:
    """``{"t": "entries", "db": link, "blocks": [bytes]}``: entry blocks the puller lacks, parents
    before children. Their CIDs are not sent: the receiver hashes each block (CIDv1, dag-cbor,
    sha2-256), as it must to verify it anyway."""

    db: CID
    blocks: tuple[bytes, ...]


Message = HeadsRequest | Heads | Want | Blocks | Refusal | Sync | Ranges | Entries


def _check_outgoing(message: Message) -> None:
    # What we send must be what our peers accept (parse_message): a sender that builds a message
    # over a limit would have an honest peer refuse it and strike us.
    over = None
    if isinstance(message, (Heads, Sync)) and len(message.heads) > MAX_HEADS:
        over = f"{len(message.heads)} heads (at most {MAX_HEADS})"
    elif isinstance(message, Want):
        if not 0 < len(message.cids) <= MAX_WANT:
            over = f"a want of {len(message.cids)} CIDs (1 to {MAX_WANT})"
        elif len(message.have) > MAX_HEADS:
            over = f"a have of {len(message.have)} heads (at most {MAX_HEADS})"
    elif isinstance(message, (Sync, Ranges)) and len(message.ranges) > MAX_RANGES:
        over = f"{len(message.ranges)} ranges (at most {MAX_RANGES})"
    elif isinstance(message, (Blocks, Entries)) and len(message.blocks) > MAX_BLOCKS:
        over = f"{len(message.blocks)} blocks (at most {MAX_BLOCKS})"
    if over is not None:
        raise SendLimitError(f"not sending {type(message).__name__}: {over}")


def encode_message(message: Message) -> bytes:
    """The frame of a message; :class:`SendLimitError` (nothing sent) for a message over a limit
    its peer checks."""
    _check_outgoing(message)
    body: dict[str, Any]
    if isinstance(message, HeadsRequest):
        body = {"t": "heads?", "db": message.db}
    elif isinstance(message, Heads):
        body = {"t": "heads", "db": message.db, "heads": list(message.heads)}
    elif isinstance(message, Want):
        body = {
            "t": "want",
            "db": message.db,
            "cids": list(message.cids),
            "have": list(message.have),
        }
    elif isinstance(message, Blocks):
        body = {
            "t": "blocks",
            "db": message.db,
            "blocks": [[cid, block] for cid, block in message.blocks],
            "more": message.more,
        }
    elif isinstance(message, Sync):
        body = {
            "t": "sync",
            "db": message.db,
            "heads": list(message.heads),
            "ranges": message.ranges,
        }
    elif isinstance(message, Ranges):
        body = {"t": "ranges", "db": message.db, "ranges": message.ranges}
    elif isinstance(message, Entries):
        body = {"t": "entries", "db": message.db, "blocks": list(message.blocks)}
    else:
        body = {"t": "refused", "reason": message.reason[:500]}
    return frame(encode(body))


def _ranges(value: Any) -> list[Any]:
    # The shape of each range is checked by the reconciler (protocols.reconcile.parse_ranges).
    if type(value) is not list or len(value) > MAX_RANGES:
        raise ProtocolError(f"ranges must be a list of at most {MAX_RANGES}")
    return value


def _links(value: Any, name: str, limit: int) -> tuple[CID, ...]:
    if type(value) is not list or len(value) > limit:
        raise ProtocolError(f"{name} must be a list of at most {limit} links")
    if not all(type(v) is CID for v in value):
        raise ProtocolError(f"{name} must hold links only")
    return tuple(value)


_SHAPES: Final = {
    "heads?": {"t", "db"},
    "heads": {"t", "db", "heads"},
    "want": {"t", "db", "cids", "have"},
    "blocks": {"t", "db", "blocks", "more"},
    "refused": {"t", "reason"},
    "sync": {"t", "db", "heads", "ranges"},
    "ranges": {"t", "db", "ranges"},
    "entries": {"t", "db", "blocks"},
}


def parse_message(payload: bytes) -> Message:
    """Decode and check one frame payload; :class:`ProtocolError` for anything malformed."""
    try:
        body = decode(payload)
    except DecodeError as exc:
        raise ProtocolError(f"message is not DAG-CBOR: {exc}") from None
    if type(body) is not dict:
        raise ProtocolError("message is not a map")
    kind = body.get("t")
    shape = _SHAPES.get(kind) if type(kind) is str else None
    if shape is None or set(body) != shape:
        raise ProtocolError(f"unknown or malformed message of type {kind!r:.40}")
    if kind == "refused":
        if type(body["reason"]) is not str:
            raise ProtocolError("reason must be text")
        return Refusal(body["reason"][:500])
    db = body["db"]
    if type(db) is not CID:
        raise ProtocolError("db must be a link")
    if kind == "heads?":
        return HeadsRequest(db)
    if kind == "heads":
        return Heads(db, _links(body["heads"], "heads", MAX_HEADS))
    if kind == "want":
        cids = _links(body["cids"], "cids", MAX_WANT)
        if not cids:
            raise ProtocolError("a want names at least one CID")
        return Want(db, cids, _links(body["have"], "have", MAX_HEADS))
    if kind == "sync":
        return Sync(db, _links(body["heads"], "heads", MAX_HEADS), _ranges(body["ranges"]))
    if kind == "ranges":
        return Ranges(db, _ranges(body["ranges"]))
    raw_blocks = body["blocks"]
    if kind == "entries":
        if type(raw_blocks) is not list or len(raw_blocks) > MAX_BLOCKS:
            raise ProtocolError(f"blocks must be a list of at most {MAX_BLOCKS} byte strings")
        if not all(type(b) is bytes for b in raw_blocks):
            raise ProtocolError("each entry block is a byte string")
        return Entries(db, tuple(raw_blocks))
    if type(raw_blocks) is not list or len(raw_blocks) > MAX_BLOCKS:
        raise ProtocolError(f"blocks must be a list of at most {MAX_BLOCKS} pairs")
    pairs = []
    for pair in raw_blocks:
        if (
            type(pair) is not list
            or len(pair) != 2
            or type(pair[0]) is not CID
            or type(pair[1]) is not bytes
        ):
            raise ProtocolError("each block is a [link, bytes] pair")
        pairs.append((pair[0], pair[1]))
    if type(body["more"]) is not bool:
        raise ProtocolError("more must be a boolean")
    return Blocks(db, tuple(pairs), body["more"])
