"""The few protobuf wire-format pieces dag-pb and UnixFS need: varints, keys, length-delimited fields.

Protobuf varints differ from multiformats varints: up to 10 bytes (64 bits of value), and a
redundant encoding (a trailing ``0x80 ... 0x00``) is not an error on the wire. Encoding is always
minimal. Decoding raises ``error`` (a :class:`crdt.errors.DecodeError` subclass chosen by the
caller) with the offset where the problem was found.
"""

from __future__ import annotations

from typing import Final

from crdt.errors import DecodeError

__all__ = [
    "MAX_UINT64",
    "WIRE_FIXED32",
    "WIRE_FIXED64",
    "WIRE_LEN",
    "WIRE_VARINT",
    "encode_uvarint",
    "read_key",
    "read_len",
    "read_uvarint",
    "skip_field",
]

MAX_UINT64: Final = (1 << 64) - 1
WIRE_VARINT: Final = 0
WIRE_FIXED64: Final = 1
WIRE_LEN: Final = 2
WIRE_FIXED32: Final = 5

_SMALL: Final = [bytes([i]) for i in range(0x80)]


def encode_uvarint(value: int) -> bytes:
    """The minimal varint of ``0 <= value < 2**64`` (callers check the range)."""
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(data: bytes | memoryview, pos: int, error: type[DecodeError]) -> tuple[int, int]:
    """One varint at ``pos``: ``(value, offset after it)``; at most 10 bytes and 64 bits."""
    end = len(data)
    if pos >= end:
        raise error("varint truncated", pos)
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    start = pos
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise error("varint truncated", start)
        if shift >= 70:
            raise error("varint longer than 10 bytes", start)
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            if value > MAX_UINT64:
                raise error("varint above 2**64 - 1", start)
            return value, pos
        shift += 7


def read_key(data: bytes | memoryview, pos: int, error: type[DecodeError]) -> tuple[int, int, int]:
    """A field key at ``pos``: ``(field number, wire type, offset after it)``."""
    key, after = read_uvarint(data, pos, error)
    field, wire = key >> 3, key & 7
    if field == 0 or field > 0x1FFFFFFF:
        raise error(f"invalid field number {field}", pos)
    return field, wire, after


def read_len(data: bytes | memoryview, pos: int, error: type[DecodeError]) -> tuple[int, int]:
    """A length-delimited field's body at ``pos`` (its length prefix): ``(start, end)``."""
    length, start = read_uvarint(data, pos, error)
    end = start + length
    if end > len(data):
        raise error(f"field of {length} bytes runs past the end", pos)
    return start, end


def skip_field(data: bytes | memoryview, pos: int, wire: int, error: type[DecodeError]) -> int:
    """Skip a field's value of wire type ``wire`` starting at ``pos``; the offset after it."""
    if wire == WIRE_VARINT:
        return read_uvarint(data, pos, error)[1]
    if wire == WIRE_LEN:
        return read_len(data, pos, error)[1]
    if wire in (WIRE_FIXED64, WIRE_FIXED32):
        end = pos + (8 if wire == WIRE_FIXED64 else 4)
        if end > len(data):
            raise error("fixed-width field truncated", pos)
        return end
    raise error(f"unsupported wire type {wire}", pos)
