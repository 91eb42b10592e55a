import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import CarHashMismatch, CarTruncated, InvalidCar, UnsupportedCarVersion
from crdt.ipld import CID, encode
from crdt.ipld.car import (
    CAR_V2_PRAGMA,
    car_section_bytes,
    car_v1_header_bytes,
    iter_blocks,
    read_car,
    read_header,
    write_car,
)
from crdt.ipld.multiformats import encode_varint

GO_CAR = Path(__file__).parents[2] / "fixtures" / "go-car"


def fixture(name):
    return (GO_CAR / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "version", "blocks"),
    [
        ("sample-v1.car", 1, 1049),
        ("sample-wrapped-v2.car", 2, 1049),
        ("simple-unixfs.car", 1, 22),
        ("simple-unixfs-missing-blocks.car", 1, 17),
    ],
)
def test_valid_fixtures(name, version, blocks):
    header, found = read_car(fixture(name))
    assert header.version == version
    assert len(header.roots) == 1
    assert len(found) == blocks
    assert all(cid.matches(block) for cid, block in found)


def test_v1_and_wrapped_v2_hold_the_same_blocks():
    v1_header, v1_blocks = read_car(fixture("sample-v1.car"))
    v2_header, v2_blocks = read_car(fixture("sample-wrapped-v2.car"))
    assert v1_header.roots == v2_header.roots
    assert v1_blocks == v2_blocks
    assert v2_header.index_offset > v2_header.data_offset  # it carries an index, which we skip
    # sample-v1 uses Filecoin's blake2b-256 multihash
    assert 0xB220 in {cid.hash_code for cid, _ in v1_blocks}


@pytest.mark.parametrize("name", ["sample-v1.car", "simple-unixfs.car", "simple-unixfs-missing-blocks.car"])
def test_rewriting_a_v1_fixture_is_byte_identical(name):
    data = fixture(name)
    header, blocks = read_car(data)
    assert write_car(header.roots, blocks) == data


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("badheaderlength.car", InvalidCar, "header length"),
        ("badsectionlength.car", CarTruncated, "section claims"),
        ("sample-corrupt-pragma.car", CarTruncated, "header claims"),
    ],
)
def test_corrupt_fixtures_are_rejected(name, error, words):
    with pytest.raises(error) as excinfo:
        read_car(fixture(name))
    assert words in str(excinfo.value)


@pytest.mark.parametrize("version", [1, 2])
def test_write_then_read(version):
    blocks = [(CID.for_block(encode({"n": i})), encode({"n": i})) for i in range(20)]
    blocks.append((CID.for_block(b"raw bytes", codec="raw"), b"raw bytes"))
    data = write_car([blocks[0][0]], blocks, version=version)
    header, found = read_car(data)
    assert header.version == version and header.roots == (blocks[0][0],)
    assert found == blocks
    assert read_car(memoryview(data))[1] == blocks


def small_car():
    block = encode({"hello": "world"})
    return write_car([CID.for_block(block)], [(CID.for_block(block), block)])


def test_every_truncation_is_a_car_error_or_a_section_boundary():
    data = small_car()
    _, blocks = read_car(data)
    boundaries = {len(car_v1_header_bytes([blocks[0][0]]))}  # a CAR cut after a whole section is valid
    for cut in range(len(data)):
        if cut in boundaries:
            assert read_car(data[:cut])[1] == []
            continue
        with pytest.raises(InvalidCar):
            read_car(data[:cut])


def test_hash_mismatch():
    block = encode({"a": 1})
    data = car_v1_header_bytes([]) + car_section_bytes(CID.for_block(block), encode({"a": 2}))
    with pytest.raises(CarHashMismatch):
        read_car(data)
    assert len(read_car(data, verify=False)[1]) == 1


def header_of(value):
    body = encode(value)
    return encode_varint(len(body)) + body


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", CarTruncated),
        (b"\x00", InvalidCar),  # header length zero
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", InvalidCar),  # varint over 9 bytes
        (header_of({"roots": [], "version": 3}), UnsupportedCarVersion),
        (header_of({"roots": [], "version": 1, "extra": 1}), InvalidCar),
        (header_of({"roots": ["not a link"], "version": 1}), InvalidCar),
        (header_of({"version": 1}), InvalidCar),
        (header_of([1]), InvalidCar),
        (header_of({"version": 2}), InvalidCar),  # a v2 pragma without the rest
        (header_of({"roots": [], "version": 1}) + b"\x00", InvalidCar),  # zero-length section
        (header_of({"roots": [], "version": 1}) + b"\x05\x01\x71", CarTruncated),
        (header_of({"roots": [], "version": 1}) + b"\x03\x01\x71\x12", InvalidCar),  # CID cut short
        (CAR_V2_PRAGMA + b"\x00" * 10, CarTruncated),
        (CAR_V2_PRAGMA + bytes(16) + (10**6).to_bytes(8, "little") + bytes(16), InvalidCar),
        (CAR_V2_PRAGMA + bytes(16) + (51).to_bytes(8, "little") + (10**9).to_bytes(8, "little") + bytes(8), CarTruncated),
    ],
)
def test_crafted_malformed(data, error):
    with pytest.raises(error):
        read_car(data)


def test_oversized_block_is_refused():
    block = b"x" * 1000
    data = write_car([], [(CID.for_block(block, codec="raw"), block)])
    with pytest.raises(InvalidCar):
        read_car(data, max_block_size=999)


def test_v2_payload_must_be_v1():
    inner = header_of({"version": 2})
    data = CAR_V2_PRAGMA + bytes(16) + (51).to_bytes(8, "little") + len(inner).to_bytes(8, "little") + bytes(8) + inner
    with pytest.raises(InvalidCar):
        read_header(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_car_errors(data):
    with contextlib.suppress(InvalidCar):
        read_car(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutations_raise_only_car_errors(data):
    original = bytearray(fixture("simple-unixfs.car"))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(original) - 1))
        original[pos] = data.draw(st.integers(0, 255))
    try:
        for _ in iter_blocks(bytes(original)):
            pass
    except InvalidCar:
        pass
