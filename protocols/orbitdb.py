"""OrbitDB 4's replication wire, sans-IO: the heads stream protocol's name and framing.

@orbitdb/core 4.0.0 (``src/sync.js``) serves ``/orbitdb/heads<address>`` (the path join of
``/orbitdb/heads/`` and the database address ``/orbitdb/<cid>``). On a stream both sides write each
of their head entry blocks as it is (dag-cbor bytes, no length prefix, no other framing), then
close their side. A reader gets the blocks back by splitting what it read into whole CBOR items:
each block is one CBOR data item, so its length is known from its own headers. The entry blocks
also travel alone as the data of gossipsub messages on the topic named by the address.

What this module reads is bounded by the caller (bytes per stream, items per stream); a stream
that does not split into whole items is a :class:`~protocols.errors.OrbitHeadsError`.
"""

from __future__ import annotations

from typing import Final

from protocols.errors import OrbitHeadsError

__all__ = [
    "MAX_HEADS",
    "MAX_HEADS_BYTES",
    "TOPIC_PREFIX",
    "heads_protocol",
    "split_items",
]

#: The address prefix of every OrbitDB database (and the gossipsub topic is the address itself).
TOPIC_PREFIX: Final = "/orbitdb/"
#: Bytes gridnode reads from one heads stream before it gives up on the peer (OrbitDB sends a
#: database's heads only: one per concurrent writer, each an entry of a few KiB at most).
MAX_HEADS_BYTES: Final = 1 << 20
#: Head blocks gridnode takes from one heads stream.
MAX_HEADS: Final = 256
#: Nesting gridnode follows while measuring one item (OrbitDB's entries nest a few levels).
_MAX_DEPTH: Final = 64


def heads_protocol(address: str) -> str:
    """The heads stream protocol of database ``address`` (``/orbitdb/<cid>``), as OrbitDB names
    it: ``/orbitdb/heads/orbitdb/<cid>``."""
    if not address.startswith(TOPIC_PREFIX):
        raise ValueError(f"not an OrbitDB address: {address!r}")
    return "/orbitdb/heads" + address


def split_items(data: bytes, max_items: int = MAX_HEADS) -> list[bytes]:
    """The whole CBOR data items ``data`` holds back to back, each as its own bytes.

    Only the items' extents are read here (the blocks are decoded strictly later); indefinite
    lengths, reserved additional information, more than ``max_items`` items or a last item cut
    short raise :class:`~protocols.errors.OrbitHeadsError`."""
    items: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(items) >= max_items:
            raise OrbitHeadsError(f"more than {max_items} head blocks on one stream")
        end = _item_end(data, offset, 0)
        items.append(bytes(data[offset:end]))
        offset = end
    return items


def _item_end(data: bytes, offset: int, depth: int) -> int:
    if depth > _MAX_DEPTH:
        raise OrbitHeadsError("a head block nests too deeply")
    major, value, offset = _header(data, offset)
    if major in (2, 3):  # byte and text strings
        end = offset + value
        if end > len(data):
            raise OrbitHeadsError("a head block is cut short")
        return end
    if major == 4:
        for _ in range(value):
            offset = _item_end(data, offset, depth + 1)
        return offset
    if major == 5:
        for _ in range(2 * value):
            offset = _item_end(data, offset, depth + 1)
        return offset
    if major == 6:  # a tag: one item follows
        return _item_end(data, offset, depth + 1)
    return offset  # integers and simple values: the header was all


def _header(data: bytes, offset: int) -> tuple[int, int, int]:
    if offset >= len(data):
        raise OrbitHeadsError("a head block is cut short")
    first = data[offset]
    major, info = first >> 5, first & 0x1F
    offset += 1
    if info < 24:
        return major, info, offset
    if info > 27:
        raise OrbitHeadsError(f"a head block uses CBOR additional information {info}")
    size = 1 << (info - 24)
    if offset + size > len(data):
        raise OrbitHeadsError("a head block is cut short")
    value = int.from_bytes(data[offset : offset + size], "big")
    if major == 7:
        value = 0  # floats and simple values carry no length
    return major, value, offset + size
