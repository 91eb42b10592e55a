"""dag-pb (multicodec 0x70): the protobuf nodes UnixFS files and directories are made of.

Per the IPLD dag-pb spec (ipld.io/specs/codecs/dag-pb/spec)::

    message PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }
    message PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }

:func:`encode_node` writes the canonical form: every link (Hash, then Name and Tsize when
present) before the Data field. Links are written in the order given: sorting a directory's
entries by name is the producer's job (the UnixFS importer does it), as in go-codec-dagpb.

:func:`decode_node` is strict, as the spec and go-codec-dagpb are: only those fields, each with its
wire type, links' fields in order Hash, Name, Tsize and each at most once, every link before the
Data field, Data at most once, a Hash that is exactly one CID. ``None`` and empty are kept
apart (an absent Name or Data is not an empty one) so a decoded node encodes back to the same
bytes. A Name must be valid UTF-8. Anything else raises :class:`DagPbDecodeError` with the offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from crdt.errors import DagPbDecodeError, DagPbEncodeError, InvalidCID
from crdt.ipld.cid import CID
from crdt.ipld.protobuf import (
    MAX_UINT64,
    WIRE_LEN,
    WIRE_VARINT,
    encode_uvarint,
    read_key,
    read_len,
    read_uvarint,
)

__all__ = ["DAG_PB", "PBLink", "PBNode", "decode_node", "encode_node", "node_cid"]

#: The dag-pb multicodec.
DAG_PB: Final = 0x70

_E = DagPbDecodeError


@dataclass(frozen=True, slots=True)
class PBLink:
    """One link: the child's CID, its name (``None``: no Name field) and the cumulative size of
    the child's DAG in bytes (``None``: no Tsize field)."""

    cid: CID
    name: str | None = None
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A dag-pb node: its links in order and its Data (``None``: no Data field)."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def _encode_link(link: PBLink) -> bytes:
    raw = link.cid.bytes
    parts = [b"\x0a", encode_uvarint(len(raw)), raw]
    if link.name is not None:
        name = link.name.encode("utf-8")
        parts += [b"\x12", encode_uvarint(len(name)), name]
    if link.tsize is not None:
        if not 0 <= link.tsize <= MAX_UINT64:
            raise DagPbEncodeError(f"link Tsize {link.tsize} outside 0..2**64-1")
        parts += [b"\x18", encode_uvarint(link.tsize)]
    return b"".join(parts)


def encode_node(node: PBNode) -> bytes:
    """The canonical dag-pb bytes of ``node`` (links in the order given, then Data)."""
    parts: list[bytes] = []
    for link in node.links:
        try:
            body = _encode_link(link)
        except UnicodeEncodeError as exc:
            raise DagPbEncodeError(f"link name is not encodable as UTF-8: {exc.reason}") from None
        parts += [b"\x12", encode_uvarint(len(body)), body]
    if node.data is not None:
        parts += [b"\x0a", encode_uvarint(len(node.data)), bytes(node.data)]
    return b"".join(parts)


def _decode_link(data: bytes, pos: int, end: int) -> PBLink:
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0  # the highest field number read so far: fields come in order, each once
    view = memoryview(data)[:end]
    while pos < end:
        field, wire, after = read_key(view, pos, _E)
        if field <= last:
            what = "duplicate" if field == last else "out of order"
            raise _E(f"link field {field} {what}", pos)
        if field == 1 and wire == WIRE_LEN:
            start, stop = read_len(view, after, _E)
            if start == stop:
                raise _E("link with an empty Hash", pos)
            try:
                found, used = CID.read(data[start:stop], 0)
            except InvalidCID as exc:
                raise _E(f"link Hash is not a CID: {exc.reason}", start) from None
            if used != stop - start:
                raise _E("link Hash has bytes after its CID", start + used)
            cid, pos = found, stop
        elif field == 2 and wire == WIRE_LEN:
            if cid is None:
                raise _E("link Name before its Hash", pos)
            start, stop = read_len(view, after, _E)
            try:
                name = data[start:stop].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _E(f"link Name is not UTF-8: {exc.reason}", start + exc.start) from None
            pos = stop
        elif field == 3 and wire == WIRE_VARINT:
            if cid is None:
                raise _E("link Tsize before its Hash", pos)
            tsize, pos = read_uvarint(view, after, _E)
        else:
            raise _E(f"unexpected field {field} (wire type {wire}) in a link", pos)
        last = field
    if cid is None:
        raise _E("link without a Hash", end)
    return PBLink(cid, name, tsize)


def decode_node(block: bytes | bytearray | memoryview) -> PBNode:
    """Decode one dag-pb block, strictly (see the module docstring)."""
    data = bytes(block)
    links: list[PBLink] = []
    payload: bytes | None = None
    pos = 0
    end = len(data)
    while pos < end:
        field, wire, after = read_key(data, pos, _E)
        if field == 2 and wire == WIRE_LEN:
            if payload is not None:
                raise _E("a link after the Data field", pos)
            start, stop = read_len(data, after, _E)
            links.append(_decode_link(data, start, stop))
            pos = stop
        elif field == 1 and wire == WIRE_LEN:
            if payload is not None:
                raise _E("duplicate Data field", pos)
            start, stop = read_len(data, after, _E)
            payload = data[start:stop]
            pos = stop
        else:
            raise _E(f"unexpected field {field} (wire type {wire}) in a node", pos)
    return PBNode(tuple(links), payload)


def node_cid(block: bytes | memoryview, version: int = 1) -> CID:
    """The CID of an encoded dag-pb block: CIDv0 (``Qm...``) or CIDv1, sha2-256."""
    cid = CID.for_block(block, codec=DAG_PB)
    return CID.from_parts(0, DAG_PB, cid.multihash) if version == 0 else cid
