"""CAR v1/v2: the go-car fixtures, round trips, crafted malformed archives, and fuzzing."""

import mmap
import struct
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt.errors import (
    CarHashMismatch,
    CarLimitExceeded,
    CarTruncated,
    CarUnverifiable,
    DecodeError,
    InvalidCar,
    UnsupportedCarVersion,
)
from crdt.ipld import CID, encode
from crdt.ipld.car import (
    CAR_V2_DATA_OFFSET,
    CAR_V2_PRAGMA,
    DEFAULT_MAX_BLOCK_SIZE,
    MAX_HEADER_BYTES,
    CarHeader,
    car_section_bytes,
    car_v1_header_bytes,
    car_v2_header_bytes,
    iter_blocks,
    read_car,
    read_header,
    write_car,
)
from crdt.ipld.multiformats import decode_varint, encode_varint

GO_CAR = Path(__file__).parents[2] / "fixtures" / "go-car"

SAMPLE_ROOT = "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy"
UNIXFS_ROOT = "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT"
SAMPLE_V1_SIZE = 479907


def fixture(name: str) -> bytes:
    return (GO_CAR / name).read_bytes()


def header_of(value: object) -> bytes:
    """A CARv1 header holding any DAG-CBOR value."""
    body = encode(value)
    return encode_varint(len(body)) + body


def v2_prefix(
    data_offset: int, data_size: int, index_offset: int = 0, characteristics: bytes = bytes(16)
) -> bytes:
    """A CARv2 pragma and header with arbitrary (possibly impossible) fields."""
    return (
        CAR_V2_PRAGMA + characteristics + struct.pack("<QQQ", data_offset, data_size, index_offset)
    )


def raw_block(data: bytes, hash: str = "sha2-256") -> tuple[CID, bytes]:
    return CID.for_block(data, codec="raw", hash=hash), data


def cbor_block(value: object, hash: str = "sha2-256") -> tuple[CID, bytes]:
    data = encode(value)
    return CID.for_block(data, hash=hash), data


# Small building blocks for crafted archives.
EMPTY_V1_HEADER = header_of({"roots": [], "version": 1})  # 18 bytes: sections start at offset 18
CID_X, BLOCK_X = cbor_block({"x": 1})
SECTION_X = car_section_bytes(CID_X, BLOCK_X)
SMALL_V1 = EMPTY_V1_HEADER + SECTION_X
SHA512_CID = CID.parse(b"\x01\x55\x13\x40" + bytes(64))  # sha2-512: gridnode cannot compute it


def small_blocks() -> list[tuple[CID, bytes]]:
    """Blocks of every hash gridnode verifies, one large enough for a two-byte section length."""
    return [
        cbor_block({"hello": "world"}),
        raw_block(b"raw bytes"),
        cbor_block({"list": [1, 2, 3]}, hash="blake2b-256"),
        raw_block(b"inline", hash="identity"),
        raw_block(bytes(range(256)) * 2),
        raw_block(b""),
    ]


# -- the go-car fixtures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version", "root", "count", "layout"),
    [
        ("sample-v1.car", 1, SAMPLE_ROOT, 1049, (0, SAMPLE_V1_SIZE, 0)),
        ("sample-wrapped-v2.car", 2, SAMPLE_ROOT, 1049, (51, SAMPLE_V1_SIZE, 51 + SAMPLE_V1_SIZE)),
        ("simple-unixfs.car", 1, UNIXFS_ROOT, 22, (0, 1933, 0)),
        ("simple-unixfs-missing-blocks.car", 1, UNIXFS_ROOT, 17, (0, 1620, 0)),
    ],
)
def test_valid_fixtures(name, version, root, count, layout):
    data = fixture(name)
    header, blocks = read_car(data)
    assert header.version == version
    assert [str(r) for r in header.roots] == [root]
    assert (header.data_offset, header.data_size, header.index_offset) == layout
    assert header.characteristics == bytes(16)
    assert header.has_index == (version == 2)
    assert len(blocks) == count
    assert len({cid for cid, _ in blocks}) == count  # no duplicates
    assert header.roots[0] in dict(blocks)  # the root block is present in each
    assert all(cid.matches(block) for cid, block in blocks)
    assert read_header(data) == header
    assert list(iter_blocks(memoryview(data))) == blocks


def test_sample_v1_statistics_match_go_car_inspect():
    # go-car's TestInspect states these for sample-v1.car (and its indexless v2 twin).
    _, blocks = read_car(fixture("sample-v1.car"))
    assert Counter(cid.codec for cid, _ in blocks) == {0x71: 1043, 0x55: 6}
    assert Counter(cid.hash_code for cid, _ in blocks) == {
        0xB220: 1043,
        0x00: 6,
    }  # blake2b-256, identity
    assert min(len(b) for _, b in blocks) == 1 and max(len(b) for _, b in blocks) == 1342
    assert min(len(c.bytes) for c, _ in blocks) == 14 and max(len(c.bytes) for c, _ in blocks) == 38


def test_wrapped_v2_wraps_sample_v1_byte_for_byte():
    v1, v2 = fixture("sample-v1.car"), fixture("sample-wrapped-v2.car")
    header = read_header(v2)
    assert v2[header.data_offset : header.data_offset + header.data_size] == v1
    assert read_car(v2)[1] == read_car(v1)[1]
    assert read_header(v1).roots == header.roots
    # It carries an index right after the payload, which gridnode skips: the first varint names
    # its format, 0x0401 (MultihashIndexSorted).
    assert decode_varint(v2, header.index_offset)[0] == 0x0401


def test_missing_blocks_fixture_is_a_readable_but_incomplete_dag():
    full = dict(read_car(fixture("simple-unixfs.car"))[1])
    partial = dict(read_car(fixture("simple-unixfs-missing-blocks.car"))[1])
    assert partial.items() <= full.items()
    missing = full.keys() - partial.keys()
    assert len(missing) == 5
    # Each missing block is linked (its binary CID appears inside a dag-pb block) from the full DAG,
    # and some are linked from blocks that are present: the partial DAG has dangling links.
    assert all(any(cid.bytes in block for block in full.values()) for cid in missing)
    assert any(cid.bytes in block for cid in missing for block in partial.values())


@pytest.mark.parametrize(
    "name", ["sample-v1.car", "simple-unixfs.car", "simple-unixfs-missing-blocks.car"]
)
def test_rewriting_a_v1_fixture_is_byte_identical(name):
    # The fixtures are canonical: a strict DAG-CBOR header with "roots" before "version", minimal
    # varints, one section per block in file order. So writing the blocks back reproduces them.
    data = fixture(name)
    header, blocks = read_car(data)
    assert write_car(header.roots, blocks) == data
    incremental = car_v1_header_bytes(header.roots) + b"".join(
        car_section_bytes(c, b) for c, b in blocks
    )
    assert incremental == data


def test_rewriting_the_wrapped_v2_differs_only_by_the_index():
    data = fixture("sample-wrapped-v2.car")
    header, blocks = read_car(data)
    written = write_car(header.roots, blocks, version=2)
    end = header.data_offset + header.data_size
    assert len(written) == end
    index_field = slice(43, 51)
    assert written[index_field] == bytes(8)
    assert written[: index_field.start] == data[: index_field.start]
    assert written[index_field.stop :] == data[index_field.stop : end]


@pytest.mark.parametrize(
    ("name", "error", "offset", "words"),
    [
        # e0 e0 e0 e0 a7 06: a header length of 216830324832 bytes in a 38-byte file
        ("badheaderlength.car", CarTruncated, 0, "header length 216830324832 exceeds the 32 bytes"),
        # a valid zero-root header, then the same 6-byte varint as a section length at offset 18
        (
            "badsectionlength.car",
            CarTruncated,
            18,
            "section length 216830324832 exceeds the 46 bytes",
        ),
        # 0x12 (18) header bytes announced, 15 present (and roots would be null): not the v2 pragma
        ("sample-corrupt-pragma.car", CarTruncated, 0, "header length 18 exceeds the 15 bytes"),
    ],
)
def test_corrupt_fixtures_are_rejected(name, error, offset, words):
    with pytest.raises(InvalidCar) as excinfo:
        read_car(fixture(name))
    assert type(excinfo.value) is error
    assert excinfo.value.offset == offset
    assert words in str(excinfo.value)


def test_badsectionlength_has_a_valid_header_with_no_roots():
    # An empty roots array is accepted (go-car v2 and js-car accept and write it).
    assert read_header(fixture("badsectionlength.car")) == CarHeader(1, (), 0, 70, 0, bytes(16))
    with pytest.raises(CarTruncated):
        read_header(fixture("badheaderlength.car"))


# -- writing and reading back -------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_write_then_read_back(version, kind):
    blocks = [cbor_block({"n": i}) for i in range(20)] + small_blocks()
    roots = [blocks[3][0], blocks[0][0]]
    data = write_car(roots, blocks, version=version)
    header, found = read_car(kind(data))
    assert header.version == version
    assert header.roots == tuple(roots)
    assert found == blocks  # same blocks, same order
    assert all(type(block) is bytes for _, block in found)
    if version == 2:
        assert data[:11] == CAR_V2_PRAGMA
        assert (header.data_offset, header.data_size, header.index_offset) == (
            51,
            len(data) - 51,
            0,
        )
        assert data[51:] == write_car(roots, blocks)


def test_incremental_writer_matches_write_car():
    blocks = small_blocks()
    roots = [blocks[0][0]]
    v1 = car_v1_header_bytes(roots) + b"".join(car_section_bytes(c, b) for c, b in blocks)
    assert v1 == write_car(roots, blocks)
    assert car_v2_header_bytes(len(v1)) + v1 == write_car(roots, blocks, version=2)
    assert len(car_v2_header_bytes(0)) == CAR_V2_DATA_OFFSET == 51


def test_empty_archives_round_trip():
    for version in (1, 2):
        assert read_car(write_car([], [], version=version)) == (
            read_header(write_car([], [], version=version)),
            [],
        )
        header, blocks = read_car(write_car([CID_X], [], version=version))
        assert header.roots == (CID_X,) and blocks == []


def test_duplicate_blocks_and_cidv0_roots_are_kept():
    v0 = CID.parse(UNIXFS_ROOT)
    data = write_car([v0], [(CID_X, BLOCK_X), (CID_X, BLOCK_X)])
    header, blocks = read_car(data)
    assert header.roots == (v0,) and header.roots[0].version == 0
    assert blocks == [(CID_X, BLOCK_X), (CID_X, BLOCK_X)]


def test_writer_refuses_bad_arguments():
    with pytest.raises(TypeError):
        write_car([str(CID_X)], [])  # a root must be a CID, not its text
    with pytest.raises(TypeError):
        write_car([], [(CID_X.bytes, BLOCK_X)])
    with pytest.raises(UnsupportedCarVersion):
        write_car([], [], version=3)
    with pytest.raises(ValueError):
        car_v2_header_bytes(-1)
    with pytest.raises(ValueError):
        car_v2_header_bytes(10, index_offset=60)  # inside the payload
    with pytest.raises(ValueError):
        car_v2_header_bytes(10, characteristics=bytes(15))
    assert read_header(
        car_v2_header_bytes(18, index_offset=69) + EMPTY_V1_HEADER + b"\x81\x08"
    ).has_index


# -- truncation ------------------------------------------------------------------------------------


def test_every_truncation_of_a_v1_is_car_truncated_or_a_section_boundary():
    blocks = small_blocks()
    data = write_car([blocks[0][0]], blocks)
    boundaries = {len(car_v1_header_bytes([blocks[0][0]]))}
    for cid, block in blocks:
        boundaries.add(max(boundaries) + len(car_section_bytes(cid, block)))
    assert max(boundaries) == len(data)
    for cut in range(len(data)):
        if cut in boundaries:  # a CARv1 cut after a whole section is itself a valid CARv1
            assert read_car(data[:cut])[1] == blocks[: sorted(boundaries).index(cut)]
            continue
        with pytest.raises(InvalidCar) as excinfo:
            read_car(data[:cut])
        assert type(excinfo.value) is CarTruncated, (cut, excinfo.value)


def test_every_truncation_of_a_v2_is_car_truncated():
    data = write_car([CID_X], small_blocks(), version=2)
    for cut in range(len(data)):
        with pytest.raises(CarTruncated):
            read_car(data[:cut])


# -- crafted malformed archives -------------------------------------------------------------------


def _bad_tag_42_header() -> bytes:
    # {"roots": [42(h'00 02 55 00')], "version": 1}: the tagged bytes are not a CID (version 2).
    body = b"\xa2\x65roots\x81\xd8\x2a\x44\x00\x02\x55\x00\x67version\x01"
    return encode_varint(len(body)) + body


_V2_SMALL = len(SMALL_V1)
_CRAFTED = [
    # (id, data, exact error class, offset)
    ("empty", b"", CarTruncated, 0),
    ("header-length-zero", b"\x00", InvalidCar, 0),
    ("header-length-truncated", b"\x80", CarTruncated, 0),
    ("header-length-truncated-4", b"\xff\xff\xff\xff", CarTruncated, 0),
    ("header-length-not-minimal", b"\x81\x00\xa0", InvalidCar, 0),
    ("header-length-over-9-bytes", b"\xff" * 9 + b"\x01" + bytes(30), InvalidCar, 0),
    ("header-length-2**63-1", encode_varint(2**63 - 1) + EMPTY_V1_HEADER, CarTruncated, 0),
    ("header-longer-than-input", b"\x05\xa0", CarTruncated, 0),
    ("header-trailing-bytes", b"\x02\xa0\xa0", InvalidCar, 2),
    ("header-keys-out-of-order", b"\x11\xa2\x67version\x01\x65roots\x80", InvalidCar, 11),
    ("header-float16", b"\x03\xf9\x3c\x00", InvalidCar, 1),
    ("header-bad-tag-42", _bad_tag_42_header(), InvalidCar, 11),
    ("header-not-a-map", header_of([1, 2]), InvalidCar, 1),
    ("header-no-version", header_of({"roots": []}), InvalidCar, 1),
    ("header-version-string", header_of({"roots": [], "version": "1"}), InvalidCar, 1),
    ("header-version-bool", header_of({"roots": [], "version": True}), InvalidCar, 1),
    ("header-version-float", header_of({"roots": [], "version": 1.0}), InvalidCar, 1),
    ("header-version-0", header_of({"roots": [], "version": 0}), UnsupportedCarVersion, 1),
    ("header-version-3", header_of({"roots": [], "version": 3}), UnsupportedCarVersion, 1),
    (
        "header-version-3-other-keys",
        header_of({"version": 3, "index": 1}),
        UnsupportedCarVersion,
        1,
    ),
    ("header-version-negative", header_of({"roots": [], "version": -1}), UnsupportedCarVersion, 1),
    (
        "header-version-huge",
        header_of({"roots": [], "version": 2**64 - 1}),
        UnsupportedCarVersion,
        1,
    ),
    ("header-version-2-with-roots", header_of({"roots": [], "version": 2}), InvalidCar, 1),
    ("header-extra-key", header_of({"roots": [], "version": 1, "extra": 1}), InvalidCar, 1),
    ("header-no-roots", header_of({"version": 1}), InvalidCar, 1),
    ("header-roots-null", header_of({"roots": None, "version": 1}), InvalidCar, 1),
    ("header-roots-map", header_of({"roots": {}, "version": 1}), InvalidCar, 1),
    ("header-root-not-a-link", header_of({"roots": [CID_X, "x"], "version": 1}), InvalidCar, 1),
    ("header-root-bytes", header_of({"roots": [CID_X.bytes], "version": 1}), InvalidCar, 1),
    ("section-length-zero", EMPTY_V1_HEADER + b"\x00", InvalidCar, 18),
    ("section-length-truncated", EMPTY_V1_HEADER + b"\x80", CarTruncated, 18),
    ("section-length-not-minimal", EMPTY_V1_HEADER + b"\x80\x00" + bytes(10), InvalidCar, 18),
    (
        "section-length-2**63-1",
        EMPTY_V1_HEADER + encode_varint(2**63 - 1) + SECTION_X,
        CarTruncated,
        18,
    ),
    ("section-longer-than-rest", EMPTY_V1_HEADER + SECTION_X[:-1], CarTruncated, 18),
    ("section-cid-version-2", EMPTY_V1_HEADER + b"\x04\x02\x55\x00\x00", InvalidCar, 18),
    ("section-cid-version-0-varint", EMPTY_V1_HEADER + b"\x04\x00\x55\x00\x00", InvalidCar, 18),
    ("section-cid-truncated", EMPTY_V1_HEADER + b"\x03\x01\x71\x12", InvalidCar, 18),
    ("section-cid-past-section", EMPTY_V1_HEADER + b"\x0a" + CID_X.bytes, InvalidCar, 18),
    (
        "section-hash-mismatch",
        EMPTY_V1_HEADER + car_section_bytes(CID_X, encode({"x": 2})),
        CarHashMismatch,
        18,
    ),
    (
        "section-empty-block-mismatch",
        EMPTY_V1_HEADER + car_section_bytes(CID_X, b""),
        CarHashMismatch,
        18,
    ),
    (
        "section-unsupported-hash",
        EMPTY_V1_HEADER + car_section_bytes(SHA512_CID, b"x"),
        CarUnverifiable,
        18,
    ),
    (
        "section-identity-mismatch",
        EMPTY_V1_HEADER + car_section_bytes(raw_block(b"abc", "identity")[0], b"abd"),
        CarHashMismatch,
        18,
    ),
    (
        "section-identity-block-too-long-to-inline",
        EMPTY_V1_HEADER + car_section_bytes(raw_block(b"abc", "identity")[0], b"x" * 200),
        CarHashMismatch,
        18,
    ),
    ("second-section-bad", SMALL_V1 + b"\x00", InvalidCar, len(SMALL_V1)),
    ("pragma-prefix-only", CAR_V2_PRAGMA[:8], CarTruncated, 0),
    ("pragma-only", CAR_V2_PRAGMA, CarTruncated, 11),
    ("v2-header-truncated", CAR_V2_PRAGMA + bytes(39), CarTruncated, 11),
    (
        "pragma-version-3",
        bytes.fromhex("0aa16776657273696f6e03") + bytes(40) + SMALL_V1,
        UnsupportedCarVersion,
        1,
    ),
    (
        "pragma-corrupt-key",
        bytes.fromhex("0aa16776657273696f6f02") + bytes(40) + SMALL_V1,
        InvalidCar,
        1,
    ),
    ("pragma-wrong-length", bytes.fromhex("0ba16776657273696f6e02") + bytes(40), InvalidCar, 11),
    ("v2-data-offset-zero", v2_prefix(0, _V2_SMALL) + SMALL_V1, InvalidCar, 27),
    ("v2-data-offset-inside-header", v2_prefix(50, _V2_SMALL) + SMALL_V1, InvalidCar, 27),
    ("v2-data-offset-beyond-end", v2_prefix(10**6, 0) + SMALL_V1, CarTruncated, 27),
    ("v2-data-offset-2**64-1", v2_prefix(2**64 - 1, 2**64 - 1) + SMALL_V1, CarTruncated, 27),
    ("v2-data-size-beyond-end", v2_prefix(51, 10**9) + SMALL_V1, CarTruncated, 35),
    ("v2-data-size-2**64-1", v2_prefix(51, 2**64 - 1) + SMALL_V1, CarTruncated, 35),
    ("v2-data-size-zero", v2_prefix(51, 0) + SMALL_V1, CarTruncated, 51),
    ("v2-data-size-cuts-header", v2_prefix(51, 5) + SMALL_V1, CarTruncated, 51),
    (
        "v2-data-size-cuts-section",
        v2_prefix(51, _V2_SMALL - 1) + SMALL_V1 + b"\x81\x08",
        CarTruncated,
        51 + 18,
    ),
    # the payload ends inside a two-byte section length whose second byte lies beyond it
    (
        "v2-data-size-cuts-length",
        v2_prefix(51, 19) + EMPTY_V1_HEADER + b"\x80\x01",
        CarTruncated,
        51 + 18,
    ),
    (
        "v2-index-inside-payload",
        v2_prefix(51, _V2_SMALL, 60) + SMALL_V1 + b"\x81\x08",
        InvalidCar,
        43,
    ),
    (
        "v2-index-beyond-end",
        v2_prefix(51, _V2_SMALL, 10**6) + SMALL_V1 + b"\x81\x08",
        CarTruncated,
        43,
    ),
    ("v2-index-at-end", v2_prefix(51, _V2_SMALL, 51 + _V2_SMALL) + SMALL_V1, CarTruncated, 43),
    ("v2-payload-is-v2", v2_prefix(51, 11) + CAR_V2_PRAGMA, InvalidCar, 52),
    (
        "v2-payload-version-3",
        v2_prefix(51, 18) + header_of({"roots": [], "version": 3}),
        UnsupportedCarVersion,
        52,
    ),
    (
        "v2-payload-extra-key",
        v2_prefix(51, 21) + header_of({"a": 0, "roots": [], "version": 1}),
        InvalidCar,
        52,
    ),
    (
        "v2-payload-hash-mismatch",
        v2_prefix(51, _V2_SMALL) + EMPTY_V1_HEADER + car_section_bytes(CID_X, encode({"x": 2})),
        CarHashMismatch,
        51 + 18,
    ),
]


@pytest.mark.parametrize(
    ("data", "error", "offset"), [case[1:] for case in _CRAFTED], ids=[case[0] for case in _CRAFTED]
)
def test_crafted_malformed(data, error, offset):
    with pytest.raises(InvalidCar) as excinfo:
        read_car(data)
    exc = excinfo.value
    assert type(exc) is error, exc
    assert exc.offset == offset, exc
    assert isinstance(exc, DecodeError) and isinstance(exc, ValueError)
    # The same error whichever way the buffer is handed over.
    with pytest.raises(error):
        read_car(memoryview(data))
    with pytest.raises(error):
        list(iter_blocks(bytearray(data)))


def test_header_errors_surface_when_iter_blocks_is_called():
    with pytest.raises(UnsupportedCarVersion):
        iter_blocks(header_of({"roots": [], "version": 3}))  # no next() needed


def test_blocks_before_a_bad_section_are_yielded_first():
    data = SMALL_V1 + car_section_bytes(CID_X, b"forged")
    blocks = iter_blocks(data)
    assert next(blocks) == (CID_X, BLOCK_X)
    with pytest.raises(CarHashMismatch) as excinfo:
        next(blocks)
    assert excinfo.value.offset == len(SMALL_V1)


def test_verify_false_skips_hashing_only():
    forged = EMPTY_V1_HEADER + car_section_bytes(CID_X, b"forged")
    assert read_car(forged, verify=False)[1] == [(CID_X, b"forged")]
    unverifiable = EMPTY_V1_HEADER + car_section_bytes(SHA512_CID, b"x")
    assert read_car(unverifiable, verify=False)[1] == [(SHA512_CID, b"x")]
    with pytest.raises(InvalidCar):
        read_car(EMPTY_V1_HEADER + b"\x00", verify=False)


def test_block_size_bound():
    cid, block = raw_block(b"x" * 1000)
    data = write_car([], [(cid, block)])
    assert read_car(data, max_block_size=1000)[1] == [(cid, block)]
    with pytest.raises(CarLimitExceeded) as excinfo:
        read_car(data, max_block_size=999)
    assert excinfo.value.offset == len(car_v1_header_bytes([]))
    big = raw_block(bytes(DEFAULT_MAX_BLOCK_SIZE + 1))
    with pytest.raises(CarLimitExceeded):
        read_car(write_car([], [big]))
    with pytest.raises(ValueError):
        read_car(data, max_block_size=-1)


def test_header_size_bound():
    # A header longer than MAX_HEADER_BYTES is refused before it is decoded.
    body = bytes(MAX_HEADER_BYTES + 1)
    with pytest.raises(CarLimitExceeded):
        read_header(encode_varint(len(body)) + body)


def test_memoryview_of_wider_items_is_refused():
    with pytest.raises(TypeError):
        read_car(memoryview(SMALL_V1).cast("B", (len(SMALL_V1),)).cast("c"))


def test_v2_padding_characteristics_and_trailing_bytes():
    payload = write_car([CID_X], [(CID_X, BLOCK_X)])
    characteristics = b"\x80" + bytes(15)
    padding = b"\xff" * 9
    data = v2_prefix(60, len(payload), 0, characteristics) + padding + payload + b"\x00garbage"
    header, blocks = read_car(data)
    assert (header.version, header.roots, header.data_offset, header.data_size) == (
        2,
        (CID_X,),
        60,
        len(payload),
    )
    assert header.characteristics == characteristics and not header.has_index
    assert blocks == [(CID_X, BLOCK_X)]


def test_reading_through_mmap(tmp_path):
    path = tmp_path / "sample.car"
    path.write_bytes(fixture("sample-wrapped-v2.car")[:-1] + b"\x00")  # the index is not read
    with (
        path.open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
    ):
        view = memoryview(mapped)
        header, blocks = read_car(view)
        view.release()
    assert header.version == 2 and len(blocks) == 1049
    # After an error mid-way the view can still be released and the map closed.
    bad = bytearray(fixture("sample-v1.car"))
    bad[-1] ^= 1
    path.write_bytes(bad)
    with (
        path.open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
    ):
        view = memoryview(mapped)
        with pytest.raises(CarHashMismatch):
            for _ in iter_blocks(view):
                pass
        view.release()


# -- fuzzing ---------------------------------------------------------------------------------------


def read_or_refuse(data: bytes) -> None:
    """Read ``data``: it either raises an InvalidCar subclass or is a CAR that rewrites exactly."""
    try:
        header, blocks = read_car(data)
    except InvalidCar:
        return
    assert all(cid.matches(block) for cid, block in blocks)
    payload = data[header.data_offset : header.data_offset + header.data_size]
    # Strict decoding accepts only canonical forms, so an accepted CARv1 payload is reproduced.
    assert write_car(header.roots, blocks) == payload


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_car_errors(data):
    read_or_refuse(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_after_a_v1_header_raise_only_car_errors(tail):
    read_or_refuse(EMPTY_V1_HEADER + tail)


@FUZZ
@given(st.binary(min_size=40, max_size=40), st.binary(max_size=200))
def test_random_v2_headers_raise_only_car_errors(fields, tail):
    read_or_refuse(CAR_V2_PRAGMA + fields + tail)


_MUTATION_BASES = [
    write_car([CID_X], small_blocks()),
    write_car([CID_X], small_blocks(), version=2),
    fixture("simple-unixfs.car"),
]


@FUZZ
@given(st.sampled_from(_MUTATION_BASES), st.data())
def test_mutations_raise_only_car_errors(base, data):
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["set", "insert", "delete", "flip"]))
        pos = data.draw(st.integers(0, len(mutated) - 1))
        if action == "set":
            mutated[pos] = data.draw(st.integers(0, 255))
        elif action == "insert":
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del mutated[pos : pos + data.draw(st.integers(1, 8))]
        else:
            mutated[pos] ^= 1 << data.draw(st.integers(0, 7))
        if not mutated:
            break
    read_or_refuse(bytes(mutated))


_ipld_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.sampled_from([CID_X, SHA512_CID, CID.parse(UNIXFS_ROOT)]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["roots", "version", "extra"]),
        st.integers(-2, 4)
        | st.lists(st.sampled_from([CID_X, SHA512_CID]), max_size=3)
        | _ipld_values,
    )
    | _ipld_values
)
def test_arbitrary_headers_are_refused_unless_well_formed(value):
    data = header_of(value) + SECTION_X
    try:
        header, blocks = read_car(data)
    except InvalidCar:
        well_formed = (
            type(value) is dict
            and value.keys() == {"roots", "version"}
            and type(value["version"]) is int
            and value["version"] == 1
            and type(value["roots"]) is list
            and all(type(r) is CID for r in value["roots"])
        )
        assert not well_formed
        return
    assert value == {"roots": list(header.roots), "version": 1}
    assert blocks == [(CID_X, BLOCK_X)]
