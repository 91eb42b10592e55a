"""CAR v1 and v2 (ipld.io/specs/transport/car/carv1 and carv2), read and written over buffers.

Readers take any bytes-like object (``bytes``, ``memoryview``, a ``memoryview`` of an ``mmap``),
so a large file is read without loading it. Every length is checked against what remains before
anything is sliced, so a hostile length can neither hang the reader nor exhaust memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from crdt.errors import (
    CarHashMismatch,
    CarTruncated,
    DecodeError,
    HashMismatch,
    InvalidCar,
    UnsupportedCarVersion,
    UnsupportedHash,
)
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.ipld.multiformats import decode_varint, encode_varint

__all__ = [
    "CAR_V2_PRAGMA",
    "CarHeader",
    "car_section_bytes",
    "car_v1_header_bytes",
    "iter_blocks",
    "read_car",
    "read_header",
    "write_car",
]

Buffer = bytes | bytearray | memoryview

#: The 11 bytes that open every CAR v2: a v1-style header ``{"version": 2}``.
CAR_V2_PRAGMA: Final = bytes.fromhex("0aa16776657273696f6e02")
_V2_HEADER: Final = struct.Struct("<16sQQQ")
_V2_DATA_OFFSET: Final = len(CAR_V2_PRAGMA) + _V2_HEADER.size
#: A v1 header larger than this is refused (real ones are tens of bytes per root).
MAX_HEADER_BYTES: Final = 1024 * 1024
DEFAULT_MAX_BLOCK: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class CarHeader:
    """What a CAR says about itself. For v1 the v2 fields describe the whole buffer."""

    version: int
    roots: tuple[CID, ...]
    data_offset: int = 0
    data_size: int = 0
    index_offset: int = 0
    characteristics: bytes = bytes(16)


def _read_v1_header(data: Buffer, start: int, end: int) -> tuple[tuple[CID, ...], int, int]:
    """Parse the v1 header at ``start``; return roots, the version it states and where sections begin."""
    try:
        length, pos = decode_varint(data, start)
    except DecodeError as exc:
        raise CarTruncated(f"header length: {exc.reason}", start) from None
    if length == 0:
        raise InvalidCar("header length is zero", start)
    if length > MAX_HEADER_BYTES:
        raise InvalidCar(f"header length {length} exceeds {MAX_HEADER_BYTES}", start)
    if pos + length > end:
        raise CarTruncated(f"header claims {length} bytes but {end - pos} remain", start)
    try:
        header = decode(bytes(data[pos : pos + length]))
    except DecodeError as exc:
        raise InvalidCar(f"header is not DAG-CBOR: {exc.reason}", pos + (exc.offset or 0)) from None
    if type(header) is not dict:
        raise InvalidCar("header is not a map", pos)
    version = header.get("version")
    if type(version) is not int:
        raise InvalidCar("header has no integer version", pos)
    if version == 2 and set(header) == {"version"}:
        return (), 2, pos + length
    if version != 1:
        raise UnsupportedCarVersion(f"CAR version {version} is not supported", pos)
    if set(header) != {"roots", "version"}:
        raise InvalidCar(f"v1 header keys must be roots and version, not {sorted(header)}", pos)
    roots = header["roots"]
    if type(roots) is not list or not all(type(r) is CID for r in roots):
        raise InvalidCar("roots must be a list of links", pos)
    return tuple(roots), 1, pos + length


def _locate(data: Buffer) -> tuple[CarHeader, int, int]:
    """The header, and the span [start, end) of the sections of the v1 payload."""
    end = len(data)
    if end == 0:
        raise CarTruncated("empty input", 0)
    if bytes(data[: len(CAR_V2_PRAGMA)]) == CAR_V2_PRAGMA:
        if end < _V2_DATA_OFFSET:
            raise CarTruncated("v2 header truncated", len(CAR_V2_PRAGMA))
        characteristics, data_offset, data_size, index_offset = _V2_HEADER.unpack_from(
            data, len(CAR_V2_PRAGMA)
        )
        if data_offset < _V2_DATA_OFFSET or data_offset > end:
            raise InvalidCar(f"v2 data offset {data_offset} outside the file", len(CAR_V2_PRAGMA))
        if data_size > end - data_offset:
            raise CarTruncated(
                f"v2 data size {data_size} exceeds the {end - data_offset} bytes after its offset",
                len(CAR_V2_PRAGMA),
            )
        if index_offset and not data_offset + data_size <= index_offset <= end:
            raise InvalidCar(f"v2 index offset {index_offset} is impossible", len(CAR_V2_PRAGMA))
        payload_end = data_offset + data_size
        roots, inner, sections = _read_v1_header(data, data_offset, payload_end)
        if inner != 1:
            raise InvalidCar("v2 payload is not a CAR v1", data_offset)
        header = CarHeader(2, roots, data_offset, data_size, index_offset, characteristics)
        return header, sections, payload_end
    roots, version, sections = _read_v1_header(data, 0, end)
    if version != 1:
        raise InvalidCar("v2 pragma followed by something other than the v2 header", 0)
    return CarHeader(1, roots, 0, end, 0), sections, end


def read_header(data: Buffer) -> CarHeader:
    """The header of a CAR v1 or v2."""
    return _locate(data)[0]


def iter_blocks(
    data: Buffer, *, verify: bool = True, max_block_size: int = DEFAULT_MAX_BLOCK
) -> Iterator[tuple[CID, bytes]]:
    """Every ``(cid, block)`` of the CAR in file order, each checked against its CID."""
    _header, pos, end = _locate(data)
    while pos < end:
        start = pos
        try:
            length, pos = decode_varint(data, pos)
        except DecodeError as exc:
            raise CarTruncated(f"section length: {exc.reason}", start) from None
        if length == 0:
            raise InvalidCar("section of length zero", start)
        if length > end - pos:
            raise CarTruncated(f"section claims {length} bytes but {end - pos} remain", start)
        section_end = pos + length
        try:
            cid, block_start = CID.read(data, pos)
        except DecodeError as exc:
            raise InvalidCar(f"section CID: {exc.reason}", start) from None
        if block_start > section_end:
            raise CarTruncated("section CID runs past the section", start)
        if section_end - block_start > max_block_size:
            raise InvalidCar(
                f"block of {section_end - block_start} bytes exceeds {max_block_size}", start
            )
        block = bytes(data[block_start:section_end])
        if verify:
            try:
                cid.verify(block)
            except HashMismatch:
                raise CarHashMismatch(f"block does not hash to {cid}", start) from None
            except UnsupportedHash as exc:
                raise InvalidCar(f"cannot verify {cid}: {exc}", start) from None
        yield cid, block
        pos = section_end


def read_car(
    data: Buffer, *, verify: bool = True, max_block_size: int = DEFAULT_MAX_BLOCK
) -> tuple[CarHeader, list[tuple[CID, bytes]]]:
    """The header and all blocks of a CAR (for files that fit in memory)."""
    return read_header(data), list(iter_blocks(data, verify=verify, max_block_size=max_block_size))


def car_v1_header_bytes(roots: Sequence[CID]) -> bytes:
    """A CAR v1 header: varint length, then ``{"roots": [...], "version": 1}``."""
    header = encode({"roots": list(roots), "version": 1})
    return encode_varint(len(header)) + header


def car_section_bytes(cid: CID, block: bytes) -> bytes:
    """One CAR section: varint length, binary CID, block."""
    raw = cid.bytes
    return encode_varint(len(raw) + len(block)) + raw + block


def write_car(
    roots: Sequence[CID], blocks: Iterable[tuple[CID, bytes]], *, version: int = 1
) -> bytes:
    """A whole CAR in memory. Version 2 wraps the v1 payload, without an index."""
    parts = [car_v1_header_bytes(roots)]
    parts.extend(car_section_bytes(cid, block) for cid, block in blocks)
    payload = b"".join(parts)
    if version == 1:
        return payload
    if version != 2:
        raise UnsupportedCarVersion(f"cannot write CAR version {version}")
    header = _V2_HEADER.pack(bytes(16), _V2_DATA_OFFSET, len(payload), 0)
    return CAR_V2_PRAGMA + header + payload
