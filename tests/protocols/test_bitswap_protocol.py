"""protocols.bitswap: the message codec (checked against Google's protobuf runtime with the
bitswap schema py-libp2p ships), the serving ledger, the per-peer allowance and the fetch."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.bitswap.pb import bitswap_pb2 as pb

from crdt.ipld.cid import CID
from crdt.ipld.multiformats import encode_varint
from protocols.bitswap import (
    DONT_HAVE,
    HAVE,
    MAX_BLOCK,
    MAX_ITEMS,
    MAX_MESSAGE,
    WANT_BLOCK,
    WANT_HAVE,
    Allowance,
    BitswapError,
    BitswapMessage,
    Fetch,
    Ledger,
    WantEntry,
    block_prefix,
    decode_message,
    encode_message,
    frame_message,
    message_cost,
)
from protocols.wire import ProtocolError


def cid_of(data: bytes, codec: str = "dag-cbor") -> CID:
    return CID.for_block(data, codec)


BLOCKS = [bytes([0xA1, 0x61, 0x61, i]) for i in range(8)]  # {"a": i} in dag-cbor
CIDS = [cid_of(b) for b in BLOCKS]

blocks_st = st.lists(st.binary(max_size=64), max_size=5, unique=True)
entries_st = st.lists(
    st.builds(
        WantEntry,
        st.sampled_from(CIDS),
        st.integers(-(2**31), 2**31 - 1),
        st.booleans(),
        st.sampled_from([WANT_BLOCK, WANT_HAVE]),
        st.booleans(),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(
    entries_st,
    st.booleans(),
    blocks_st,
    st.lists(st.tuples(st.sampled_from(CIDS), st.sampled_from([HAVE, DONT_HAVE])), max_size=4),
    st.integers(0, 2**31 - 1),
)
def test_round_trip_agrees_with_protobuf(entries, full, datas, presences, pending):
    blocks = tuple((cid_of(d, "raw"), d) for d in datas)
    message = BitswapMessage(tuple(entries), full, blocks, tuple(presences), pending)
    wire = encode_message(message)
    assert decode_message(wire) == message
    # Google's runtime reads what we write, field by field ...
    parsed = pb.Message()
    parsed.ParseFromString(wire)
    assert [e.block for e in parsed.wantlist.entries] == [e.cid.bytes for e in entries]
    assert [e.priority for e in parsed.wantlist.entries] == [e.priority for e in entries]
    assert [e.cancel for e in parsed.wantlist.entries] == [e.cancel for e in entries]
    assert [e.wantType for e in parsed.wantlist.entries] == [e.want_type for e in entries]
    assert [e.sendDontHave for e in parsed.wantlist.entries] == [e.send_dont_have for e in entries]
    assert parsed.wantlist.full == full
    assert [(p.prefix, p.data) for p in parsed.payload] == [(block_prefix(c), d) for c, d in blocks]
    assert [(p.cid, p.type) for p in parsed.blockPresences] == [(c.bytes, k) for c, k in presences]
    assert parsed.pendingBytes == pending
    # ... and we read what it writes (its field order and defaults, not ours).
    assert decode_message(parsed.SerializeToString()) == message


def test_block_prefix_is_version_codec_hash_length():
    assert block_prefix(CIDS[0]) == bytes([0x01, 0x71, 0x12, 0x20])
    assert block_prefix(cid_of(b"x", "raw")) == bytes([0x01, 0x55, 0x12, 0x20])
    v0 = CID.parse(b"\x12\x20" + hashlib.sha256(b"x").digest())
    assert block_prefix(v0) == bytes([0x00, 0x70, 0x12, 0x20])


def test_a_block_gets_the_cid_its_data_hashes_to():
    # The sender's prefix says how to hash; the CID comes from the data, never from the sender.
    message = pb.Message()
    block = message.payload.add()
    block.prefix = bytes([0x01, 0x71, 0x12, 0x20])
    block.data = BLOCKS[3]
    decoded = decode_message(message.SerializeToString())
    assert decoded.blocks == ((CIDS[3], BLOCKS[3]),)


def test_blocks_of_bitswap_1_0_are_cidv0():
    message = pb.Message()
    message.blocks.append(b"plain")
    ((cid, data),) = decode_message(message.SerializeToString()).blocks
    assert cid.version == 0 and data == b"plain" and cid.matches(b"plain")


def test_a_block_hashed_with_an_unknown_function_is_dropped_and_counted():
    message = pb.Message()
    block = message.payload.add()
    block.prefix = bytes([0x01, 0x55]) + encode_varint(0x1E) + bytes([0x20])  # blake3
    block.data = b"x"
    decoded = decode_message(message.SerializeToString())
    assert decoded.blocks == () and decoded.unverifiable == 1


def test_unknown_fields_are_skipped():
    wire = encode_message(BitswapMessage(presences=((CIDS[0], HAVE),)))
    extra = (
        bytes([0x30 | 0, 0x05]) + bytes([0x3D]) + b"\x00\x00\x00\x00" + bytes([0x41]) + b"\x00" * 8
    )
    assert decode_message(extra + wire).presences == ((CIDS[0], HAVE),)


def _entry_bytes(payload: bytes) -> bytes:
    wantlist = bytes([0x0A]) + encode_varint(len(payload)) + payload
    return bytes([0x0A]) + encode_varint(len(wantlist)) + wantlist


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\x0a", "truncated"),
        (b"\x0a\x05\x01", "runs past"),
        (b"\x08\x01", "wire type 0, not 2"),
        (b"\x00\x01", "field number 0"),
        (b"\x2a\x01\x00", "wire type 2, not 0"),
        (b"\x0b", "wire type 3"),
        (b"\x28" + b"\xff" * 11, "longer than 10 bytes"),
        (_entry_bytes(b"\x10\x01"), "without a CID"),
        (_entry_bytes(b"\x0a\x03abc"), "not a CID"),
        (_entry_bytes(b"\x0a\x24" + CIDS[0].bytes + b"\x20\x07"), "unknown want type"),
        (_entry_bytes(b"\x0a\x25" + CIDS[0].bytes + b"\x00"), "bytes after the CID"),
        (b"\x1a\x03\x12\x01x", "without a prefix"),
        (b"\x1a\x06\x0a\x02\x01\x71\x12\x00", "bad block prefix"),
        (b"\x1a\x08\x0a\x04\x01\x71\x12\x10\x12\x00", "digest length 16"),
        (b"\x1a\x08\x0a\x04\x05\x71\x12\x20\x12\x00", "CID version 5"),
        (b"\x22\x02\x10\x01", "presence without a CID"),
        (b"\x22\x28\x0a\x24" + CIDS[0].bytes + b"\x10\x05", "unknown block presence type"),
    ],
)
def test_malformed_messages_are_typed_errors(wire, reason):
    with pytest.raises(BitswapError) as caught:
        decode_message(wire)
    assert isinstance(caught.value, ProtocolError)
    assert reason in str(caught.value)


def test_limits_on_size_and_count():
    with pytest.raises(BitswapError, match="exceeds"):
        decode_message(b"\x00" * (MAX_MESSAGE + 1))
    big = pb.Message()
    block = big.payload.add()
    block.prefix = bytes([0x01, 0x55, 0x12, 0x20])
    block.data = b"\x00" * (MAX_BLOCK + 1)
    with pytest.raises(BitswapError, match="block of"):
        decode_message(big.SerializeToString())
    many = pb.Message()
    for _ in range(MAX_ITEMS + 1):
        many.blockPresences.add(cid=CIDS[0].bytes)
    with pytest.raises(BitswapError, match="more than"):
        decode_message(many.SerializeToString())
    with pytest.raises(BitswapError, match="exceeds"):
        frame_message(
            BitswapMessage(
                blocks=tuple(
                    (cid_of(bytes([i]) * MAX_BLOCK, "raw"), bytes([i]) * MAX_BLOCK)
                    for i in range(3)
                )
            )
        )


def test_frames_are_uvarint_length_prefixed():
    message = BitswapMessage(presences=((CIDS[1], DONT_HAVE),))
    payload = encode_message(message)
    assert frame_message(message) == encode_varint(len(payload)) + payload


# -- the ledger -----------------------------------------------------------------------------------


def want(
    cid: CID, kind: int = WANT_BLOCK, dont_have: bool = False, cancel: bool = False
) -> WantEntry:
    return WantEntry(cid, 1, cancel, kind, dont_have)


def test_ledger_answers_blocks_haves_and_dont_haves():
    ledger = Ledger()
    asked = ledger.receive(
        BitswapMessage(
            wants=(
                want(CIDS[0]),
                want(CIDS[1], WANT_HAVE),
                want(CIDS[2], dont_have=True),
                want(CIDS[3]),
            )
        )
    )
    assert asked == CIDS[:4]
    found = {CIDS[0]: BLOCKS[0], CIDS[1]: BLOCKS[1], CIDS[2]: None, CIDS[3]: None}
    (answer,) = ledger.answer(found)
    assert answer.blocks == ((CIDS[0], BLOCKS[0]),)
    assert answer.presences == ((CIDS[1], HAVE), (CIDS[2], DONT_HAVE))
    # What it lacks without being asked to say so waits, to be looked up again later.
    assert ledger.waiting() == [CIDS[3]]
    assert ledger.answer({CIDS[3]: None}) == []
    (later,) = ledger.answer({CIDS[3]: BLOCKS[3]})
    assert later.blocks == ((CIDS[3], BLOCKS[3]),) and ledger.waiting() == []
    # A block is sent once.
    assert ledger.answer({CIDS[0]: BLOCKS[0]}) == []


def test_ledger_cancel_full_and_no_downgrade():
    ledger = Ledger()
    ledger.receive(BitswapMessage(wants=(want(CIDS[0]), want(CIDS[1]))))
    ledger.receive(BitswapMessage(wants=(want(CIDS[0], cancel=True),)))
    assert ledger.waiting() == [CIDS[1]]
    ledger.receive(BitswapMessage(wants=(want(CIDS[1], WANT_HAVE),)))
    assert ledger.wants[CIDS[1]].want_type == WANT_BLOCK
    ledger.receive(BitswapMessage(wants=(want(CIDS[2]),), full=True))
    assert ledger.waiting() == [CIDS[2]]
    assert ledger.answer({CIDS[0]: BLOCKS[0]}) == []  # cancelled: nothing sent


def test_ledger_remembers_at_most_max_wants():
    ledger = Ledger(max_wants=3)
    asked = ledger.receive(BitswapMessage(wants=tuple(want(c) for c in CIDS[:5])))
    assert ledger.waiting() == CIDS[2:5] and ledger.dropped == 2
    assert asked == CIDS[2:5]


def test_ledger_packs_messages_and_never_sends_an_oversized_block():
    ledger = Ledger()
    datas = [bytes([i]) * 1000 for i in range(10)]
    cids = [cid_of(d, "raw") for d in datas]
    ledger.receive(BitswapMessage(wants=tuple(want(c) for c in cids)))
    messages = ledger.answer(dict(zip(cids, datas, strict=True)), max_message=2500)
    assert [len(m.blocks) for m in messages] == [2] * 5
    assert all(len(encode_message(m)) <= 2500 for m in messages)
    huge = b"\x00" * (MAX_BLOCK + 1)
    ledger.receive(BitswapMessage(wants=(want(CIDS[0], dont_have=True),)))
    (answer,) = ledger.answer({CIDS[0]: huge})
    assert answer.blocks == () and answer.presences == ((CIDS[0], DONT_HAVE),)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40_000), min_size=1, max_size=60),
    bound=st.integers(1, 100_000),
    writes=st.lists(st.integers(0, 3), min_size=1, max_size=200),
)
def test_queued_bytes_never_exceed_the_bound_and_held_wants_are_served_as_it_drains(
    sizes, bound, writes
):
    # A peer that reads slowly (or never): whatever it wants, what is queued for it stays under
    # the bound (one block may exceed it only when the queue was empty); the rest waits, wanted,
    # and is answered as the queue drains. Nothing is answered DONT_HAVE for lack of room.
    datas = [i.to_bytes(4, "big") * (1 + size // 4) for i, size in enumerate(sizes)]
    cids = [cid_of(d, "raw") for d in datas]
    blocks = dict(zip(cids, datas, strict=True))
    biggest = max(len(d) for d in datas) + 64
    ledger = Ledger(max_queued=bound)
    ledger.receive(BitswapMessage(wants=tuple(want(c, dont_have=True) for c in cids)))
    outbox = list(ledger.answer(blocks))
    delivered: list[CID] = []

    def check() -> None:
        assert ledger.queued == sum(message_cost(m) for m in outbox)
        assert ledger.queued <= max(bound, biggest)
        if ledger.queued > bound:
            assert len(outbox) == 1 and len(outbox[0].blocks) == 1

    check()
    for n in [*writes, *[1] * (2 * len(cids))]:  # then a reader that reads everything
        for _ in range(min(n, len(outbox))):
            message = outbox.pop(0)
            ledger.sent(message)
            assert not message.presences  # every block is there: no DONT_HAVE
            delivered += [c for c, _b in message.blocks]
        if not outbox:
            held = ledger.take_held()
            outbox += ledger.answer({c: blocks[c] for c in held})
        check()
    assert sorted(delivered, key=cids.index) == cids and ledger.queued == 0
    assert ledger.waiting() == [] and ledger.held == {}


def test_a_full_queue_holds_wants_and_a_dropped_queue_is_released():
    data = b"x" * 1000
    others = [cid_of(bytes([i]) * 1000, "raw") for i in range(5)]
    ledger = Ledger(max_queued=2500)
    ledger.receive(BitswapMessage(wants=tuple(want(c) for c in others)))
    (first,) = ledger.answer({c: bytes([i]) * 1000 for i, c in enumerate(others)})
    assert len(first.blocks) == 2 and ledger.queued == 2 * (1000 + 64)
    assert list(ledger.held) == others[2:] and ledger.waiting() == others[2:]
    # A cancelled held want is not looked up again.
    ledger.receive(BitswapMessage(wants=(want(others[4], cancel=True),)))
    ledger.sent(first)
    assert ledger.queued == 0 and ledger.take_held() == others[2:4]
    ledger.receive(BitswapMessage(wants=(want(cid_of(data, "raw")),)))
    ledger.answer({cid_of(data, "raw"): data})
    ledger.drop_queue()
    assert ledger.queued == 0 and ledger.held == {}


def test_allowance_is_a_token_bucket():
    allowance = Allowance(rate=100.0, burst=200.0)
    assert allowance.delay(150, now=0.0) == 0.0
    assert allowance.delay(100, now=0.0) == pytest.approx(0.5)  # 50 short: half a second
    assert allowance.delay(10, now=10.0) == 0.0  # refilled, capped at the burst
    assert allowance.tokens == pytest.approx(190.0)


# -- fetching -------------------------------------------------------------------------------------


def test_fetch_takes_only_what_it_asked_for():
    fetch = Fetch()
    fetch.want(CIDS[:2])
    ask = fetch.ask("A")
    assert ask is not None
    assert [(e.cid, e.want_type, e.send_dont_have, e.cancel) for e in ask.wants] == [
        (CIDS[0], WANT_BLOCK, True, False),
        (CIDS[1], WANT_BLOCK, True, False),
    ]
    assert fetch.ask("A") is None  # asked already
    assert fetch.ask("B") is not None
    new = fetch.receive("A", BitswapMessage(blocks=((CIDS[0], BLOCKS[0]), (CIDS[5], BLOCKS[5]))))
    assert new == [(CIDS[0], BLOCKS[0])] and fetch.unasked == 1
    assert fetch.got == {CIDS[0]: BLOCKS[0]} and CIDS[5] not in fetch.got
    # B was asked for CIDS[0] too: it gets a cancel, A does not.
    cancel = fetch.cancels("B")
    assert cancel is not None and [(e.cid, e.cancel) for e in cancel.wants] == [(CIDS[0], True)]
    assert fetch.cancels("A") is None
    # A duplicate is neither new nor unasked.
    assert fetch.receive("B", BitswapMessage(blocks=((CIDS[0], BLOCKS[0]),))) == []
    assert fetch.unasked == 1
    fetch.receive("A", BitswapMessage(presences=((CIDS[1], DONT_HAVE),)))
    assert fetch.failed(["A", "B"]) == []
    fetch.receive("B", BitswapMessage(presences=((CIDS[1], DONT_HAVE),)))
    assert fetch.failed(["A", "B"]) == [CIDS[1]] and not fetch.done
    fetch.receive("B", BitswapMessage(blocks=((CIDS[1], BLOCKS[1]),)))
    assert fetch.done and fetch.sources == {"A": 1, "B": 1}
