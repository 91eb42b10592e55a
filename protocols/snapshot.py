"""``/gridnode/snapshot/1.0.0``: asking a peer for a database's newest signed snapshot, then for
its chunks. Sans-IO: the requests and answers as bytes, their bounds checked on both sides; the
snapshot's own format and checks are :mod:`crdt.snapshot`'s, the stream adapter is
``gridnode/node/snapshots.py``.

One request per stream, each a frame (:func:`protocols.wire.frame`) holding a DAG-CBOR map:

- ``{"t": "snapshot?", "db": <manifest link>}``: answered by one frame, ``{"root": <bytes>,
  "manifest": <bytes>}`` (the signed root block and the database's manifest block, so that a
  node holding nothing of the database can start from the snapshot before its first sync) or
  ``{}`` (none to offer);
- ``{"t": "chunks?", "root": <root link>, "from": <int>, "count": <int, 1..16>}``: answered by
  up to ``count`` frames, each the block of chunk ``from``, ``from + 1``, ... of that root, then
  the end of the stream. Fewer (even none): the server has no more of them (it may hold a newer
  snapshot by now); the asker tries another peer.

A server answers only for databases it replicates and does not keep private.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from crdt.errors import DecodeError
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from protocols.errors import ProtocolError
from protocols.wire import MAX_FRAME

__all__ = [
    "MAX_CHUNKS_ASKED",
    "PROTOCOL_ID",
    "ChunksRequest",
    "SnapshotRequest",
    "encode_request",
    "encode_root_answer",
    "parse_request",
    "parse_root_answer",
]

PROTOCOL_ID: Final = "/gridnode/snapshot/1.0.0"
#: Most chunks one request asks for (each up to 4 MiB: one frame).
MAX_CHUNKS_ASKED: Final = 16


@dataclass(frozen=True)
class SnapshotRequest:
    """What is your newest snapshot of this database?"""

    database: CID


@dataclass(frozen=True)
class ChunksRequest:
    """Send chunks ``start`` .. ``start + count - 1`` of the snapshot ``root``."""

    root: CID
    start: int
    count: int


def encode_request(request: SnapshotRequest | ChunksRequest) -> bytes:
    if isinstance(request, SnapshotRequest):
        return encode({"t": "snapshot?", "db": request.database})
    if not (request.start >= 0 and 1 <= request.count <= MAX_CHUNKS_ASKED):
        raise ProtocolError(f"ask for 1 to {MAX_CHUNKS_ASKED} chunks from a place >= 0")
    return encode(
        {"t": "chunks?", "root": request.root, "from": request.start, "count": request.count}
    )


def parse_request(payload: bytes) -> SnapshotRequest | ChunksRequest:
    """A request frame's payload; :class:`ProtocolError` if it is none."""
    try:
        value = decode(payload)
    except DecodeError as exc:
        raise ProtocolError(f"snapshot request is not DAG-CBOR: {exc}") from None
    if (
        type(value) is dict
        and value.get("t") == "snapshot?"
        and set(value) == {"t", "db"}
        and type(value["db"]) is CID
    ):
        return SnapshotRequest(value["db"])
    if (
        type(value) is dict
        and value.get("t") == "chunks?"
        and set(value)
        == {
            "t",
            "root",
            "from",
            "count",
        }
    ):
        start, count = value["from"], value["count"]
        if (
            type(value["root"]) is CID
            and type(start) is int
            and type(count) is int
            and 0 <= start < (1 << 32)
            and 1 <= count <= MAX_CHUNKS_ASKED
        ):
            return ChunksRequest(value["root"], start, count)
    raise ProtocolError("not a snapshot request")


def encode_root_answer(offer: tuple[bytes, bytes] | None) -> bytes:
    """The answer offering ``(root block, manifest block)``, or none."""
    return encode({} if offer is None else {"root": offer[0], "manifest": offer[1]})


def parse_root_answer(payload: bytes) -> tuple[bytes, bytes] | None:
    """``(root block, manifest block)`` a peer offers, or ``None``; :class:`ProtocolError` if
    the answer is none."""
    try:
        value = decode(payload)
    except DecodeError as exc:
        raise ProtocolError(f"snapshot answer is not DAG-CBOR: {exc}") from None
    if value == {}:
        return None
    if (
        type(value) is dict
        and set(value) == {"root", "manifest"}
        and type(value["root"]) is bytes
        and type(value["manifest"]) is bytes
        and len(value["root"]) + len(value["manifest"]) < MAX_FRAME
    ):
        return value["root"], value["manifest"]
    raise ProtocolError("not a snapshot answer")
