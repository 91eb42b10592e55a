"""UnixFS's ``Data`` message: the protobuf inside a dag-pb node's Data field (UnixFS spec)::

    message Data {
      enum DataType { Raw = 0; Directory = 1; File = 2; Metadata = 3; Symlink = 4; HAMTShard = 5; }
      required DataType Type = 1;
      optional bytes Data = 2;
      optional uint64 filesize = 3;
      repeated uint64 blocksizes = 4;
      optional uint64 hashType = 5;
      optional uint64 fanout = 6;
      optional uint32 mode = 7;
      optional UnixTime mtime = 8;
    }
    message UnixTime { required int64 Seconds = 1; optional fixed32 FractionalNanoseconds = 2; }

:func:`encode_data` writes the fields in field-number order, each blocksize as its own field (not
packed), as go-unixfs and js-ipfs-unixfs do, so nodes are byte-identical with Kubo's.

:func:`decode_data` is strict where the message is unambiguous: a Type that is known, each
singular field at most once with its declared wire type, values in range (mode in 32 bits,
nanoseconds below 10**9), no truncation. ``blocksizes`` is read packed or not, as protobuf
allows. Fields this version does not know are skipped (protobuf's forward compatibility, as
go-unixfs does). Errors are :class:`UnixFSDecodeError` with the offset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from crdt.errors import UnixFSDecodeError, UnixFSEncodeError
from crdt.ipld.protobuf import (
    MAX_UINT64,
    WIRE_FIXED32,
    WIRE_LEN,
    WIRE_VARINT,
    encode_uvarint,
    read_key,
    read_len,
    read_uvarint,
    skip_field,
)

__all__ = [
    "HASH_MURMUR3_X64_64",
    "DataType",
    "UnixFSData",
    "UnixTime",
    "decode_data",
    "encode_data",
]

#: The multihash code of murmur3-x64-64, the only ``hashType`` HAMT shards use.
HASH_MURMUR3_X64_64: Final = 0x22

_E = UnixFSDecodeError
_MAX_UINT32: Final = (1 << 32) - 1
_MIN_INT64: Final = -(1 << 63)
_MAX_INT64: Final = (1 << 63) - 1


class DataType(enum.IntEnum):
    Raw = 0
    Directory = 1
    File = 2
    Metadata = 3
    Symlink = 4
    HAMTShard = 5


@dataclass(frozen=True, slots=True)
class UnixTime:
    """A modification time: seconds since the epoch (may be negative) and optional nanoseconds."""

    seconds: int
    nanos: int | None = None


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """One UnixFS ``Data`` message. ``None`` is an absent field (never written)."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: UnixTime | None = None


def _uint(value: int, what: str, top: int = MAX_UINT64) -> bytes:
    if not 0 <= value <= top:
        raise UnixFSEncodeError(f"{what} {value} outside 0..{top}")
    return encode_uvarint(value)


def encode_data(value: UnixFSData) -> bytes:
    """The protobuf bytes of ``value``, fields in number order (as go-unixfs writes them)."""
    parts = [b"\x08", _uint(int(value.type), "Type", 5)]
    if value.data is not None:
        parts += [b"\x12", encode_uvarint(len(value.data)), bytes(value.data)]
    if value.filesize is not None:
        parts += [b"\x18", _uint(value.filesize, "filesize")]
    for size in value.blocksizes:
        parts += [b"\x20", _uint(size, "blocksize")]
    if value.hash_type is not None:
        parts += [b"\x28", _uint(value.hash_type, "hashType")]
    if value.fanout is not None:
        parts += [b"\x30", _uint(value.fanout, "fanout")]
    if value.mode is not None:
        parts += [b"\x38", _uint(value.mode, "mode", _MAX_UINT32)]
    if value.mtime is not None:
        seconds = value.mtime.seconds
        if not _MIN_INT64 <= seconds <= _MAX_INT64:
            raise UnixFSEncodeError(f"mtime seconds {seconds} outside int64")
        body = b"\x08" + encode_uvarint(seconds & MAX_UINT64)
        if value.mtime.nanos is not None:
            nanos = value.mtime.nanos
            if not 0 <= nanos <= 999_999_999:
                raise UnixFSEncodeError(f"mtime nanoseconds {nanos} outside 0..999999999")
            body += b"\x15" + nanos.to_bytes(4, "little")
        parts += [b"\x42", encode_uvarint(len(body)), body]
    return b"".join(parts)


def _decode_time(data: bytes, pos: int, end: int) -> UnixTime:
    view = memoryview(data)[:end]
    seconds: int | None = None
    nanos: int | None = None
    while pos < end:
        field, wire, after = read_key(view, pos, _E)
        if field == 1 and wire == WIRE_VARINT:
            if seconds is not None:
                raise _E("duplicate mtime Seconds", pos)
            raw, pos = read_uvarint(view, after, _E)
            seconds = raw - (1 << 64) if raw > _MAX_INT64 else raw
        elif field == 2 and wire == WIRE_FIXED32:
            if nanos is not None:
                raise _E("duplicate mtime FractionalNanoseconds", pos)
            if after + 4 > end:
                raise _E("mtime FractionalNanoseconds truncated", after)
            nanos = int.from_bytes(data[after : after + 4], "little")
            if nanos > 999_999_999:
                raise _E(f"mtime nanoseconds {nanos} above 999999999", after)
            pos = after + 4
        elif field in (1, 2):
            raise _E(f"mtime field {field} has wire type {wire}", pos)
        else:
            pos = skip_field(view, after, wire, _E)
    if seconds is None:
        raise _E("mtime without Seconds", end)
    return UnixTime(seconds, nanos)


_VARINT_FIELDS: Final = {3: "filesize", 5: "hash_type", 6: "fanout", 7: "mode"}


def decode_data(block: bytes | bytearray | memoryview) -> UnixFSData:
    """Decode a UnixFS ``Data`` message, strictly (see the module docstring)."""
    data = bytes(block)
    kind: DataType | None = None
    payload: bytes | None = None
    ints: dict[str, int] = {}
    blocksizes: list[int] = []
    mtime: UnixTime | None = None
    pos = 0
    end = len(data)
    while pos < end:
        field, wire, after = read_key(data, pos, _E)
        if field == 1 and wire == WIRE_VARINT:
            if kind is not None:
                raise _E("duplicate Type", pos)
            raw, pos = read_uvarint(data, after, _E)
            try:
                kind = DataType(raw)
            except ValueError:
                raise _E(f"unknown UnixFS Type {raw}", after) from None
        elif field == 2 and wire == WIRE_LEN:
            if payload is not None:
                raise _E("duplicate Data", pos)
            start, pos = read_len(data, after, _E)
            payload = data[start:pos]
        elif field in _VARINT_FIELDS and wire == WIRE_VARINT:
            name = _VARINT_FIELDS[field]
            if name in ints:
                raise _E(f"duplicate {name}", pos)
            value, pos = read_uvarint(data, after, _E)
            if field == 7 and value > _MAX_UINT32:
                raise _E(f"mode {value} above 32 bits", after)
            ints[name] = value
        elif field == 4 and wire == WIRE_VARINT:
            value, pos = read_uvarint(data, after, _E)
            blocksizes.append(value)
        elif field == 4 and wire == WIRE_LEN:  # packed
            start, pos = read_len(data, after, _E)
            view = memoryview(data)[:pos]
            while start < pos:
                value, start = read_uvarint(view, start, _E)
                blocksizes.append(value)
        elif field == 8 and wire == WIRE_LEN:
            if mtime is not None:
                raise _E("duplicate mtime", pos)
            start, pos = read_len(data, after, _E)
            mtime = _decode_time(data, start, pos)
        elif 1 <= field <= 8:
            raise _E(f"field {field} has wire type {wire}", pos)
        else:
            pos = skip_field(data, after, wire, _E)
    if kind is None:
        raise _E("UnixFS Data without a Type", end)
    return UnixFSData(
        type=kind,
        data=payload,
        filesize=ints.get("filesize"),
        blocksizes=tuple(blocksizes),
        hash_type=ints.get("hash_type"),
        fanout=ints.get("fanout"),
        mode=ints.get("mode"),
        mtime=mtime,
    )
