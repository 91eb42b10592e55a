"""UnixFS ``Data`` messages: the bytes go-unixfs writes, round trips, and strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.errors import UnixFSDecodeError, UnixFSEncodeError
from crdt.ipld.dagpb import PBNode, encode_node, node_cid
from crdt.unixfs.data import (
    HASH_MURMUR3_X64_64,
    DataType,
    UnixFSData,
    UnixTime,
    decode_data,
    encode_data,
)


def test_known_nodes_have_kubos_cids():
    # the empty directory and the empty file every IPFS implementation knows
    empty_dir = encode_data(UnixFSData(DataType.Directory))
    assert empty_dir == b"\x08\x01"
    assert str(node_cid(encode_node(PBNode(data=empty_dir)), 0)) == (
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    )
    empty_file = encode_data(UnixFSData(DataType.File, filesize=0))
    assert empty_file == b"\x08\x02\x18\x00"
    assert str(node_cid(encode_node(PBNode(data=empty_file)), 0)) == (
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    )


def test_fields_are_written_in_number_order_blocksizes_unpacked():
    value = UnixFSData(
        DataType.File,
        data=b"ab",
        filesize=300,
        blocksizes=(1, 299),
        hash_type=None,
        fanout=None,
        mode=0o644,
        mtime=UnixTime(-1, 5),
    )
    raw = encode_data(value)
    assert raw == (
        b"\x08\x02"
        + b"\x12\x02ab"
        + b"\x18\xac\x02"
        + b"\x20\x01\x20\xab\x02"
        + b"\x38\xa4\x03"
        + b"\x42\x10\x08"
        + b"\xff" * 9
        + b"\x01\x15\x05\x00\x00\x00"
    )
    assert decode_data(raw) == value


def test_hamt_shard_fields():
    value = UnixFSData(
        DataType.HAMTShard, data=b"\x01\x00", hash_type=HASH_MURMUR3_X64_64, fanout=256
    )
    assert encode_data(value) == b"\x08\x05\x12\x02\x01\x00\x28\x22\x30\x80\x02"
    assert decode_data(encode_data(value)) == value


def test_packed_blocksizes_are_read():
    assert decode_data(b"\x08\x02\x22\x03\x01\xac\x02").blocksizes == (1, 300)


def test_unknown_fields_are_skipped():
    assert decode_data(b"\x08\x02\x48\x07\x52\x01x\x5d\x00\x00\x00\x00") == UnixFSData(
        DataType.File
    )


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "no Type"),
        (b"\x12\x00", "no Type, some Data"),
        (b"\x08\x06", "unknown Type"),
        (b"\x08\x02\x08\x02", "duplicate Type"),
        (b"\x08\x02\x12\x00\x12\x00", "duplicate Data"),
        (b"\x08\x02\x18\x01\x18\x01", "duplicate filesize"),
        (b"\x08\x02\x30\x01\x30\x01", "duplicate fanout"),
        (b"\x08\x02\x1a\x00", "filesize with wire type 2"),
        (b"\x0a\x00", "Type with wire type 2"),
        (b"\x08\x02\x12\x05ab", "Data truncated"),
        (b"\x08\x02\x38\x80\x80\x80\x80\x10", "mode above 32 bits"),
        (b"\x08\x02\x42\x00", "mtime without Seconds"),
        (b"\x08\x02\x42\x07\x08\x00\x15\x00\xca\x9a\x3b", "nanoseconds of 10**9"),
        (b"\x08\x02\x42\x04\x08\x00\x15\x00", "nanoseconds truncated"),
        (b"\x08\x02\x42\x04\x08\x00\x08\x00", "duplicate Seconds"),
        (b"\x08\x02\x22\x02\x80", "packed blocksizes truncated"),
        (b"\x08\x02\x4b", "group wire type"),
        (b"\x08", "key without value"),
        (b"\x08\x02\x18" + b"\xff" * 10 + b"\x01", "varint of 11 bytes"),
    ],
)
def test_malformed_data_is_refused(raw: bytes, why: str):
    with pytest.raises(UnixFSDecodeError) as info:
        decode_data(raw)
    assert info.value.offset is not None, why


@pytest.mark.parametrize(
    "value",
    [
        UnixFSData(DataType.File, filesize=-1),
        UnixFSData(DataType.File, blocksizes=(1 << 64,)),
        UnixFSData(DataType.File, mode=1 << 32),
        UnixFSData(DataType.File, mtime=UnixTime(1 << 63)),
        UnixFSData(DataType.File, mtime=UnixTime(0, 10**9)),
    ],
)
def test_out_of_range_values_are_not_encoded(value: UnixFSData):
    with pytest.raises(UnixFSEncodeError):
        encode_data(value)


u64 = st.integers(0, (1 << 64) - 1)
values = st.builds(
    UnixFSData,
    st.sampled_from(list(DataType)),
    st.none() | st.binary(max_size=30),
    st.none() | u64,
    st.lists(u64, max_size=4).map(tuple),
    st.none() | u64,
    st.none() | u64,
    st.none() | st.integers(0, (1 << 32) - 1),
    st.none()
    | st.builds(
        UnixTime, st.integers(-(1 << 63), (1 << 63) - 1), st.none() | st.integers(0, 10**9 - 1)
    ),
)


@given(values)
def test_round_trip(value: UnixFSData):
    assert decode_data(encode_data(value)) == value


@given(st.binary(max_size=60))
def test_arbitrary_bytes_raise_only_typed_errors(raw: bytes):
    try:
        value = decode_data(raw)
    except UnixFSDecodeError:
        return
    assert decode_data(encode_data(value)) == value
