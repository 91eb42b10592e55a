"""``/gridnode/snapshot/1.0.0``'s messages (protocols/snapshot.py): round trips and refusals."""

import pytest

from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import encode
from protocols.errors import ProtocolError
from protocols.snapshot import (
    MAX_CHUNKS_ASKED,
    ChunksRequest,
    SnapshotRequest,
    encode_request,
    encode_root_answer,
    parse_request,
    parse_root_answer,
)

CID_A = CID.for_block(b"\xa1\x61\x61\x01")


def test_requests_round_trip():
    for request in (SnapshotRequest(CID_A), ChunksRequest(CID_A, 3, MAX_CHUNKS_ASKED)):
        assert parse_request(encode_request(request)) == request


def test_answers_round_trip():
    assert parse_root_answer(encode_root_answer(None)) is None
    assert parse_root_answer(encode_root_answer((b"root", b"manifest"))) == (b"root", b"manifest")


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        encode({"t": "snapshot?"}),
        encode({"t": "snapshot?", "db": "text"}),
        encode({"t": "snapshot?", "db": CID_A, "more": 1}),
        encode({"t": "chunks?", "root": CID_A, "from": 0, "count": 0}),
        encode({"t": "chunks?", "root": CID_A, "from": 0, "count": MAX_CHUNKS_ASKED + 1}),
        encode({"t": "chunks?", "root": CID_A, "from": -1, "count": 1}),
        encode({"t": "chunks?", "root": CID_A, "from": True, "count": 1}),
        encode({"t": "other", "db": CID_A}),
    ],
)
def test_malformed_requests_are_refused(payload):
    with pytest.raises(ProtocolError):
        parse_request(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00",
        encode({"root": "text", "manifest": b""}),
        encode({"root": b"x"}),
        encode({"root": b"x", "manifest": b"m", "more": 1}),
        encode([]),
    ],
)
def test_malformed_answers_are_refused(payload):
    with pytest.raises(ProtocolError):
        parse_root_answer(payload)


def test_a_request_beyond_the_bounds_is_not_sent():
    with pytest.raises(ProtocolError):
        encode_request(ChunksRequest(CID_A, 0, MAX_CHUNKS_ASKED + 1))
