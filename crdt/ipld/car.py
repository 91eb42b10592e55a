"""CAR v1 and v2 archives (ipld.io/specs/transport/car/carv1 and carv2), read and written in memory.

Readers take a bytes-like buffer: ``bytes``, ``bytearray`` or a one-dimensional unsigned-byte
``memoryview`` -- in particular ``memoryview(mmap_object)``, so a caller can read a file of any size
without loading it. Nothing is copied but the header and one block at a time.

Reading is strict and safe on hostile input:

* every length is checked against the bytes that remain *before* anything is sliced, so a forged
  length can neither exhaust memory nor make the reader hang;
* every problem raises a subclass of :class:`~crdt.errors.InvalidCar` whose ``offset`` is an absolute
  position in the buffer (the start of the header or of the section at fault, or of the CARv2
  header field at fault); errors from the CID, varint and DAG-CBOR layers are wrapped, so a caller
  catches one type.

Choices where the specifications leave room (each is tested):

* **Roots.** The CARv1 spec asks for "one or more" roots but lists the count as unresolved; go-car v2
  and js-car read and write headers with no roots (go-car's own ``badsectionlength.car`` fixture has
  one). An empty ``roots`` array is therefore accepted, and may be written. Roots are not required
  to appear among the blocks (the spec says readers do not check), and CIDv0 roots are accepted.
* **Header keys.** A version-1 header must be a map with exactly the keys ``roots`` and ``version``
  (the spec's schema). A header whose version is neither 1 nor 2 raises
  :class:`~crdt.errors.UnsupportedCarVersion` whatever its other keys, since a later version may
  define others. A ``{"version": 2}`` header is only valid as the CARv2 pragma at the very start.
* **Sections.** A zero-length section is refused (some writers pad files with zeros, which go-car
  can optionally read as the end; gridnode does not guess). Zero blocks and duplicate blocks are
  accepted (both are unresolved in the spec).
* **CARv2.** The 40-byte header is read as the spec lays it out (16 bytes of characteristics, then
  data offset, data size and index offset as little-endian uint64). The characteristics are
  reported, not interpreted. The data offset may leave padding after the header. The payload must
  lie inside the buffer and must itself be a CARv1 (version exactly 1). A non-zero index offset must
  point at or after the end of the payload and before the end of the buffer; the index itself is not
  read. Bytes between the payload and the index, or after the payload when there is no index, are
  ignored (the spec allows padding there).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from crdt.errors import (
    CarHashMismatch,
    CarLimitExceeded,
    CarTruncated,
    CarUnverifiable,
    DecodeError,
    HashMismatch,
    InvalidCar,
    UnsupportedCarVersion,
    UnsupportedHash,
)
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.ipld.multiformats import MAX_VARINT_BYTES, decode_varint, encode_varint

__all__ = [
    "CAR_V2_DATA_OFFSET",
    "CAR_V2_HEADER_SIZE",
    "CAR_V2_PRAGMA",
    "DEFAULT_MAX_BLOCK_SIZE",
    "MAX_HEADER_BYTES",
    "CarBuffer",
    "CarHeader",
    "car_section_bytes",
    "car_v1_header_bytes",
    "car_v2_header_bytes",
    "iter_blocks",
    "read_car",
    "read_header",
    "write_car",
]

#: What the readers accept: a ``memoryview`` must be one-dimensional, contiguous, of format ``B``.
CarBuffer: TypeAlias = bytes | bytearray | memoryview

#: The 11 bytes that open every CARv2: varint 10, then the DAG-CBOR map ``{"version": 2}``.
CAR_V2_PRAGMA: Final = bytes.fromhex("0aa16776657273696f6e02")
_V2_FIELDS: Final = struct.Struct("<16sQQQ")
#: Size of the fixed CARv2 header that follows the pragma.
CAR_V2_HEADER_SIZE: Final = _V2_FIELDS.size
#: Where a CARv2 written without padding has its CARv1 payload: right after pragma and header.
CAR_V2_DATA_OFFSET: Final = len(CAR_V2_PRAGMA) + CAR_V2_HEADER_SIZE
# Absolute offsets of the CARv2 header fields, reported in errors about them.
_AT_DATA_OFFSET: Final = len(CAR_V2_PRAGMA) + 16
_AT_DATA_SIZE: Final = _AT_DATA_OFFSET + 8
_AT_INDEX_OFFSET: Final = _AT_DATA_SIZE + 8

#: A CARv1 header longer than this is refused (a header takes about 40 bytes per root).
MAX_HEADER_BYTES: Final = 1024 * 1024
#: Default bound on a single block (the usual IPFS bound on a block is 1-4 MiB).
DEFAULT_MAX_BLOCK_SIZE: Final = 4 * 1024 * 1024

_HEADER_KEYS: Final = frozenset({"roots", "version"})
_IDENTITY: Final = 0x00
_U64_LIMIT: Final = 1 << 64


@dataclass(frozen=True)
class CarHeader:
    """What a CAR says about itself.

    ``version`` is 1 or 2 and ``roots`` the roots of the (inner) CARv1 header, in order. For a CARv2
    the other fields are those of its 40-byte header. For a CARv1 they describe the buffer as if it
    were a CARv2 payload: ``data_offset`` 0, ``data_size`` the buffer's length, ``index_offset`` 0
    (no index) and ``characteristics`` 16 zero bytes.
    """

    version: int
    roots: tuple[CID, ...]
    data_offset: int = 0
    data_size: int = 0
    index_offset: int = 0
    characteristics: bytes = bytes(16)

    @property
    def has_index(self) -> bool:
        """Whether a CARv2 declares an index after its payload (gridnode does not read it)."""
        return self.index_offset != 0


# -- reading -------------------------------------------------------------------------------------


def _check_buffer(data: CarBuffer) -> None:
    """Refuse (as a programming error) a memoryview whose items are not single unsigned bytes."""
    if isinstance(data, memoryview) and (
        data.ndim != 1 or data.format != "B" or not data.c_contiguous
    ):
        raise TypeError(
            "a CAR memoryview must be 1-dimensional, contiguous and of format 'B' "
            f"(got ndim={data.ndim}, format={data.format!r}); use .cast('B')"
        )


def _read_length(data: CarBuffer, pos: int, end: int, what: str) -> tuple[int, int]:
    """Read the varint at ``pos`` without looking at or past ``end``; return it and where it ends."""
    if pos >= end:
        raise CarTruncated(f"{what} length missing", pos)
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    window = bytes(data[pos : min(pos + MAX_VARINT_BYTES, end)])
    if len(window) < MAX_VARINT_BYTES and all(byte & 0x80 for byte in window):
        raise CarTruncated(f"{what} length truncated", pos)
    try:
        value, used = decode_varint(window, 0)
    except DecodeError as exc:
        raise InvalidCar(f"{what} length: {exc.reason}", pos) from None
    return value, pos + used


def _read_v1_header(
    data: CarBuffer, start: int, end: int, *, nested: bool
) -> tuple[tuple[CID, ...], int]:
    """Parse the CARv1 header at ``start`` (nothing at or after ``end`` is read).

    Return the roots and the offset of the first section. ``nested`` says this is the payload of a
    CARv2, which only changes what an error says.
    """
    length, pos = _read_length(data, start, end, "header")
    if length == 0:
        raise InvalidCar("header length is zero", start)
    if length > end - pos:
        raise CarTruncated(
            f"header length {length} exceeds the {end - pos} bytes that remain", start
        )
    if length > MAX_HEADER_BYTES:
        raise CarLimitExceeded(f"header length {length} exceeds {MAX_HEADER_BYTES}", start)
    stop = pos + length
    try:
        header = decode(data[pos:stop])
    except DecodeError as exc:
        at = pos + (exc.offset or 0)
        raise InvalidCar(f"header is not DAG-CBOR: {exc.reason}", at) from None
    if type(header) is not dict:
        raise InvalidCar(f"header is a {_kind(header)}, not a map", pos)
    if "version" not in header:
        raise InvalidCar("header has no version", pos)
    version = header["version"]
    if type(version) is not int:
        raise InvalidCar(f"header version is a {_kind(version)}, not an integer", pos)
    if version == 2:
        if nested:
            raise InvalidCar("the CARv2 data payload is itself a CARv2; it must be a CARv1", pos)
        raise InvalidCar("a version 2 header is only valid as the CARv2 pragma at offset 0", pos)
    if version != 1:
        raise UnsupportedCarVersion(f"CAR version {version} is not supported (only 1 and 2)", pos)
    if header.keys() != _HEADER_KEYS:
        extra = sorted(header.keys() - _HEADER_KEYS)
        if extra:
            raise InvalidCar(f"CARv1 header has keys other than roots and version: {extra}", pos)
        raise InvalidCar("CARv1 header has no roots", pos)
    roots = header["roots"]
    if type(roots) is not list:
        raise InvalidCar(f"header roots is a {_kind(roots)}, not a list", pos)
    for index, root in enumerate(roots):
        if type(root) is not CID:
            raise InvalidCar(f"header root {index} is a {_kind(root)}, not a link", pos)
    return tuple(roots), stop


def _kind(value: object) -> str:
    """The IPLD data-model kind of a decoded value, for error messages."""
    kinds = {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        bytes: "bytes",
        list: "list",
        dict: "map",
        CID: "link",
    }
    return kinds.get(type(value), type(value).__name__)


def _locate(data: CarBuffer) -> tuple[CarHeader, int, int]:
    """The header, and the span ``[start, end)`` of the sections of the CARv1 payload."""
    _check_buffer(data)
    size = len(data)
    if size == 0:
        raise CarTruncated("empty input", 0)
    if bytes(data[: len(CAR_V2_PRAGMA)]) != CAR_V2_PRAGMA:
        roots, start = _read_v1_header(data, 0, size, nested=False)
        return CarHeader(1, roots, 0, size, 0, bytes(16)), start, size
    if size < CAR_V2_DATA_OFFSET:
        raise CarTruncated(
            f"CARv2 header truncated: {size - len(CAR_V2_PRAGMA)} of {CAR_V2_HEADER_SIZE} bytes",
            len(CAR_V2_PRAGMA),
        )
    characteristics, data_offset, data_size, index_offset = _V2_FIELDS.unpack_from(
        data, len(CAR_V2_PRAGMA)
    )
    if data_offset < CAR_V2_DATA_OFFSET:
        raise InvalidCar(
            f"CARv2 data offset {data_offset} points inside the pragma and header", _AT_DATA_OFFSET
        )
    if data_offset > size:
        raise CarTruncated(
            f"CARv2 data offset {data_offset} is beyond the end of the {size} bytes",
            _AT_DATA_OFFSET,
        )
    if data_size > size - data_offset:
        raise CarTruncated(
            f"CARv2 data size {data_size} exceeds the {size - data_offset} bytes after the data "
            "offset",
            _AT_DATA_SIZE,
        )
    payload_end = data_offset + data_size
    if index_offset != 0:
        if index_offset < payload_end:
            raise InvalidCar(
                f"CARv2 index offset {index_offset} is before the end of the data payload "
                f"({payload_end})",
                _AT_INDEX_OFFSET,
            )
        if index_offset >= size:
            raise CarTruncated(
                f"CARv2 index offset {index_offset} is not inside the {size} bytes",
                _AT_INDEX_OFFSET,
            )
    roots, start = _read_v1_header(data, data_offset, payload_end, nested=True)
    header = CarHeader(2, roots, data_offset, data_size, index_offset, bytes(characteristics))
    return header, start, payload_end


def _verify(cid: CID, block: bytes, offset: int) -> None:
    try:
        cid.verify(block)
    except HashMismatch:
        raise CarHashMismatch(f"block does not hash to its CID {cid}", offset) from None
    except UnsupportedHash as exc:
        if cid.hash_code == _IDENTITY:
            # An identity CID inlines at most 128 bytes; a longer block cannot be its content.
            raise CarHashMismatch(f"block does not match identity CID {cid}", offset) from None
        raise CarUnverifiable(f"cannot verify {cid}: {exc}", offset) from None


def _sections(
    data: CarBuffer, pos: int, end: int, verify: bool, max_block_size: int
) -> Iterator[tuple[CID, bytes]]:
    """The sections in ``[pos, end)``, one at a time."""
    while pos < end:
        start = pos
        length, pos = _read_length(data, pos, end, "section")
        if length == 0:
            raise InvalidCar("section length is zero", start)
        if length > end - pos:
            raise CarTruncated(
                f"section length {length} exceeds the {end - pos} bytes that remain", start
            )
        section_end = pos + length
        try:
            cid, block_start = CID.read(data, pos)
        except DecodeError as exc:
            raise InvalidCar(f"section CID: {exc.reason}", start) from None
        if block_start > section_end:
            raise InvalidCar(
                f"section CID of {block_start - pos} bytes is longer than the section ({length})",
                start,
            )
        if section_end - block_start > max_block_size:
            raise CarLimitExceeded(
                f"block of {section_end - block_start} bytes exceeds {max_block_size}", start
            )
        block = bytes(data[block_start:section_end])
        if verify:
            _verify(cid, block, start)
        yield cid, block
        pos = section_end


def read_header(data: CarBuffer) -> CarHeader:
    """Read and check the header of a CARv1 or CARv2 (and, for v2, its payload's CARv1 header).

    Raises a subclass of :class:`~crdt.errors.InvalidCar`; no block is read.
    """
    return _locate(data)[0]


def iter_blocks(
    data: CarBuffer, *, verify: bool = True, max_block_size: int = DEFAULT_MAX_BLOCK_SIZE
) -> Iterator[tuple[CID, bytes]]:
    """Every ``(cid, block)`` of the CAR's (v1 payload's) sections, in file order.

    The header is checked when this is called; each section when the iterator reaches it, so a
    caller may act on the blocks before a later one turns out to be bad. With ``verify`` each block
    must hash to its CID (:class:`~crdt.errors.CarHashMismatch`; a hash function gridnode cannot
    compute raises :class:`~crdt.errors.CarUnverifiable`). A block longer than ``max_block_size``
    bytes raises :class:`~crdt.errors.CarLimitExceeded`.
    """
    if max_block_size < 0:
        raise ValueError("max_block_size must be non-negative")
    _header, start, end = _locate(data)
    return _sections(data, start, end, verify, max_block_size)


def read_car(
    data: CarBuffer, *, verify: bool = True, max_block_size: int = DEFAULT_MAX_BLOCK_SIZE
) -> tuple[CarHeader, list[tuple[CID, bytes]]]:
    """The header and all blocks of a CAR, for archives that fit in memory (see :func:`iter_blocks`)."""
    if max_block_size < 0:
        raise ValueError("max_block_size must be non-negative")
    header, start, end = _locate(data)
    return header, list(_sections(data, start, end, verify, max_block_size))


# -- writing -------------------------------------------------------------------------------------


def car_v1_header_bytes(roots: Sequence[CID]) -> bytes:
    """A CARv1 header: the varint length, then DAG-CBOR ``{"roots": [...], "version": 1}``.

    ``roots`` may be empty (see the module doc). Followed by :func:`car_section_bytes` for each
    block, it makes a CARv1 that can be written to a file piece by piece.
    """
    listed = list(roots)
    for root in listed:
        if not isinstance(root, CID):
            raise TypeError(f"a CAR root must be a CID, not {type(root).__name__}")
    body = encode({"roots": listed, "version": 1})
    return encode_varint(len(body)) + body


def car_section_bytes(cid: CID, block: bytes | bytearray | memoryview) -> bytes:
    """One CAR section: the varint length of what follows, the binary CID, the block.

    The block is written as given; checking that it hashes to ``cid`` is the caller's business.
    """
    if not isinstance(cid, CID):
        raise TypeError(f"a section CID must be a CID, not {type(cid).__name__}")
    raw = cid.bytes
    return b"".join((encode_varint(len(raw) + len(block)), raw, block))


def car_v2_header_bytes(
    data_size: int, *, index_offset: int = 0, characteristics: bytes = bytes(16)
) -> bytes:
    """The 51 bytes that open a CARv2 whose CARv1 payload of ``data_size`` bytes follows at once.

    ``index_offset`` is 0 for no index, else where an index starts (at or after the payload's end).
    A streaming writer can write this with a guessed size and overwrite it when the size is known.
    """
    if not 0 <= data_size < _U64_LIMIT - CAR_V2_DATA_OFFSET:
        raise ValueError(f"CARv2 data size {data_size} is out of range")
    if index_offset != 0 and not CAR_V2_DATA_OFFSET + data_size <= index_offset < _U64_LIMIT:
        raise ValueError(f"CARv2 index offset {index_offset} is not after the data payload")
    if len(characteristics) != 16:
        raise ValueError("CARv2 characteristics are exactly 16 bytes")
    fields = _V2_FIELDS.pack(bytes(characteristics), CAR_V2_DATA_OFFSET, data_size, index_offset)
    return CAR_V2_PRAGMA + fields


def write_car(
    roots: Sequence[CID], blocks: Iterable[tuple[CID, bytes]], *, version: int = 1
) -> bytes:
    """A whole CAR in memory: the header, then one section per block, in the order given.

    ``version=2`` wraps that CARv1 in a CARv2 with zero characteristics, the payload at offset 51
    and no index. Blocks are not hashed: pass ones that match their CIDs, or readers that verify
    will refuse the archive.
    """
    if version not in (1, 2):
        raise UnsupportedCarVersion(f"cannot write CAR version {version} (only 1 and 2)")
    payload = bytearray(car_v1_header_bytes(roots))
    for cid, block in blocks:
        payload += car_section_bytes(cid, block)
    if version == 1:
        return bytes(payload)
    return car_v2_header_bytes(len(payload)) + payload
