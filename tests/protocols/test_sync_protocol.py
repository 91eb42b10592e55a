import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.ipld import CID, encode
from protocols.gossip import MAX_ANNOUNCEMENT, Announcement, parse_announcement
from protocols.sync import (
    BlocksArrived,
    BlocksAsked,
    Budget,
    HeadsArrived,
    HeadsAsked,
    Refused,
    Role,
    SyncConnection,
)
from protocols.wire import (
    MAX_FRAME,
    Blocks,
    FrameDecoder,
    ProtocolError,
    encode_message,
    frame,
    parse_message,
)

DB = CID.for_block(b"manifest")
A, B, C = (CID.for_block(bytes([i])) for i in range(3))


def pair():
    return SyncConnection(Role.PULLER), SyncConnection(Role.SERVER)


def test_a_full_exchange_in_memory():
    puller, server = pair()
    (event,) = server.receive(puller.ask_heads(DB, now=0))
    assert event == HeadsAsked(DB)
    (event,) = puller.receive(server.heads(DB, [A, B]))
    assert event == HeadsArrived(DB, (A, B))
    (event,) = server.receive(puller.want(DB, [A], have=[C], now=1))
    assert event == BlocksAsked(DB, (A,), (C,))
    (event,) = puller.receive(server.blocks(DB, [(A, b"\x00")], more=False))
    assert event == BlocksArrived(DB, ((A, b"\x00"),), False)
    assert puller.stats.round_trips == 1 and puller.stats.blocks_received == 1
    assert puller.stats.bytes_sent == server.stats.bytes_received
    assert server.stats.bytes_sent == puller.stats.bytes_received


def test_a_long_answer_is_streamed():
    puller, server = pair()
    server.receive(puller.want(DB, [A], have=[], now=0))
    data = server.blocks(DB, [(B, b"1")], more=True) + server.blocks(DB, [(A, b"2")], more=False)
    events = puller.receive(data)
    assert [e.more for e in events] == [True, False]
    assert not puller.waiting
    with pytest.raises(ProtocolError):
        puller.receive(server.blocks(DB, [], more=False))  # nothing was asked any more


def test_bytes_may_arrive_one_at_a_time():
    puller, server = pair()
    data = puller.ask_heads(DB, now=0)
    events = []
    for byte in data:
        events += server.receive(bytes([byte]))
    assert events == [HeadsAsked(DB)]


def test_unsolicited_answers_are_violations():
    puller, server = pair()
    with pytest.raises(ProtocolError):
        puller.receive(server.heads(DB, [A]))  # never asked
    puller, server = pair()
    puller.ask_heads(DB, now=0)
    with pytest.raises(ProtocolError):
        puller.receive(server.blocks(DB, [], more=False))  # asked heads, got blocks
    puller, server = pair()
    puller.ask_heads(DB, now=0)
    with pytest.raises(ProtocolError):
        puller.receive(server.heads(CID.for_block(b"other"), [A]))  # another database
    with pytest.raises(ProtocolError):
        server.receive(encode_message(Blocks(DB, (), False)))  # a server is never sent blocks


def test_refusal_and_one_request_at_a_time():
    puller, server = pair()
    puller.ask_heads(DB, now=0)
    with pytest.raises(ProtocolError):
        puller.want(DB, [A], [], now=0)
    assert puller.receive(server.refuse("private")) == [Refused("private")]
    assert not puller.waiting


def test_budgets_and_timeouts():
    puller = SyncConnection(Role.PULLER, budget=Budget(answer_timeout=5, max_rounds=2))
    puller.want(DB, [A], [], now=0)
    puller.check_time(4.9)
    with pytest.raises(ProtocolError):
        puller.check_time(5.1)
    server = SyncConnection(Role.SERVER, budget=Budget(max_requests=3, max_bytes_received=10_000))
    ask = SyncConnection(Role.PULLER).ask_heads(DB, 0)
    for _ in range(3):
        server.receive(ask)
    with pytest.raises(ProtocolError):
        server.receive(ask)
    greedy = SyncConnection(Role.SERVER, budget=Budget(max_bytes_received=100))
    with pytest.raises(ProtocolError):
        greedy.receive(b"\x00" * 101)


def test_frames_over_the_limit_are_refused_before_buffering():
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(b"\xff\xff\xff\x7f")  # claims ~268 MB
    with pytest.raises(ProtocolError):
        frame(b"x" * (MAX_FRAME + 1))


@pytest.mark.parametrize(
    "body",
    [
        {"t": "nope"},
        {"t": "heads?"},
        {"t": "heads?", "db": "not a link"},
        {"t": "heads", "db": DB, "heads": ["x"]},
        {"t": "heads", "db": DB, "heads": [A] * 1025},
        {"t": "want", "db": DB, "cids": [], "have": []},
        {"t": "want", "db": DB, "cids": [A], "have": [A], "extra": 1},
        {"t": "blocks", "db": DB, "blocks": [[A]], "more": False},
        {"t": "blocks", "db": DB, "blocks": [[A, "text"]], "more": False},
        {"t": "blocks", "db": DB, "blocks": [], "more": 1},
        {"t": "refused", "reason": 5},
        [1, 2],
    ],
    ids=repr,
)
def test_malformed_messages(body):
    with pytest.raises(ProtocolError):
        parse_message(encode(body))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(data):
    connection = SyncConnection(Role.SERVER)
    with contextlib.suppress(ProtocolError):
        connection.receive(data)


def test_announcements():
    announcement = Announcement(DB, (A, B), ((A, b"x" * 10),))
    assert parse_announcement(announcement.encode(), DB) == announcement
    big = Announcement(
        DB, (A,), tuple((CID.for_block(bytes([i])), b"y" * 10_000) for i in range(10))
    )
    parsed = parse_announcement(big.encode())
    assert len(parsed.blocks) < 10 and parsed.heads == (A,)
    with pytest.raises(ProtocolError):
        parse_announcement(announcement.encode(), CID.for_block(b"another topic"))
    with pytest.raises(ProtocolError):
        parse_announcement(b"\x00" * (MAX_ANNOUNCEMENT + 1))
    with pytest.raises(ProtocolError):
        parse_announcement(encode({"t": "heads", "db": DB, "heads": "x", "blocks": []}))


def test_a_reconciling_pull_exchange_in_memory():
    from protocols.sync import EntriesArrived, RangesArrived, RangesAsked, SyncAsked

    puller, server = pair()
    (event,) = server.receive(puller.sync(DB, [A], [[b"\xff" * 48, "ids", []]], now=0))
    assert event == SyncAsked(DB, (A,), [[b"\xff" * 48, "ids", []]])
    # Before the heads, neither entries nor ranges are accepted.
    with pytest.raises(ProtocolError):
        SyncConnection(Role.PULLER).receive(server.entries(DB, [b"x"]))
    events = puller.receive(
        server.heads(DB, [B])
        + server.entries(DB, [b"one", b"two"])
        + server.ranges(DB, [[b"\xff" * 48, "fp", bytes(16)]])
    )
    assert events == [
        HeadsArrived(DB, (B,)),
        EntriesArrived(DB, (b"one", b"two")),
        RangesArrived(DB, [[b"\xff" * 48, "fp", bytes(16)]]),
    ]
    assert not puller.waiting
    (event,) = server.receive(puller.reconcile(DB, [[b"\xff" * 48, "skip"]], now=1))
    assert isinstance(event, RangesAsked)
    assert puller.receive(server.ranges(DB, [])) == [RangesArrived(DB, [])]
    stats = puller.stats
    assert stats.round_trips == 2 and stats.blocks_received == 2 and stats.block_bytes_received == 6
    assert stats.overhead_bytes == stats.bytes_sent + stats.bytes_received - 6
    assert stats.reconcile_messages == 4


def test_a_streamed_answer_restarts_the_answer_timeout():
    puller = SyncConnection(Role.PULLER, budget=Budget(answer_timeout=5))
    server = SyncConnection(Role.SERVER)
    server.receive(puller.want(DB, [A], [], now=0))
    puller.receive(server.blocks(DB, [(B, b"1")], more=True), now=20)
    puller.check_time(24)  # 4 s after the last message, though 24 s after the question
    with pytest.raises(ProtocolError):
        puller.check_time(26)


def test_a_sender_never_builds_a_message_its_peer_refuses():
    """Every limit parse_message checks on receipt is checked before sending (SendLimitError,
    nothing sent): an honest node never makes its peer refuse and strike it."""
    from protocols.sync import SendLimitError
    from protocols.wire import MAX_BLOCKS, MAX_HEADS, MAX_RANGES, Entries, Heads, Ranges, Want

    many = [CID.for_block(i.to_bytes(4, "big")) for i in range(MAX_HEADS + 1)]
    server = SyncConnection(Role.SERVER)
    with pytest.raises(SendLimitError):
        server.heads(DB, many)
    assert parse_message(server.heads(DB, many[:MAX_HEADS])[3:]) == Heads(DB, tuple(many[:-1]))
    too_many_ranges = [[bytes([1, i // 256, i % 256]), "skip"] for i in range(MAX_RANGES + 1)]
    for message in [
        Heads(DB, tuple(many)),
        Want(DB, (), ()),
        Want(DB, (A,), tuple(many)),
        Ranges(DB, too_many_ranges),
        Entries(DB, (b"x",) * (MAX_BLOCKS + 1)),
        Entries(DB, (b"x" * MAX_FRAME,)),
    ]:
        with pytest.raises(SendLimitError):
            encode_message(message)
    # The puller's own heads (sync) and have (want) are cut to what the server accepts.
    puller = SyncConnection(Role.PULLER)
    sent = puller.sync(DB, many, [[b"\xff" * 9, "skip"]], now=0)
    (asked,) = SyncConnection(Role.SERVER).receive(sent)
    assert len(asked.heads) == MAX_HEADS


def test_received_bytes_are_limited_per_window_not_per_stream():
    """The byte budget is a rate: past it, the driver reads nothing more until the window ends
    (the peer is slowed down, not refused), and a stream's lifetime has no byte limit."""
    budget = Budget(max_bytes_received=1000, window=2.0, answer_timeout=5.0)
    puller = SyncConnection(Role.PULLER, budget=budget)
    server = SyncConnection(Role.SERVER)
    server.receive(puller.want(DB, [A], [], now=0))
    answer = b"".join(server.blocks(DB, [(A, b"z" * 300)], more=True) for _ in range(20))
    answer += server.blocks(DB, [], more=False)
    now, received, events = 0.0, 0, []
    while received < len(answer):
        room = puller.room(now)
        if not room:
            assert puller.resume_at() > now
            now = puller.resume_at()  # the driver sleeps until the window ends
            continue
        chunk = answer[received : received + min(room, 100)]
        received += len(chunk)
        events += puller.receive(chunk, now)
        puller.check_time(now)  # pausing is not the peer's silence
    assert received > 5 * budget.max_bytes_received
    assert events[-1] == BlocksArrived(DB, (), False)
    assert now >= 2 * budget.window
    # A driver that reads past the room it was given is told so.
    greedy = SyncConnection(Role.SERVER, budget=budget)
    with pytest.raises(ProtocolError):
        greedy.receive(b"\x00" * 1001, now=0)


def test_an_announcement_of_many_heads_is_bounded_and_linear(monkeypatch):
    """3,000 heads with small inline blocks: at most MAX_ANNOUNCED_HEADS heads go, the longest
    first run of blocks that fits INLINE_BUDGET rides along, and each block is encoded once (the
    old encoder re-encoded the whole message once per dropped block)."""
    import protocols.gossip as gossip

    heads = tuple(CID.for_block(i.to_bytes(4, "big")) for i in range(3000))
    announcement = Announcement(DB, heads, tuple((h, b"e" * 100) for h in heads))
    calls = 0
    real_encode = gossip.encode

    def counting(value):
        nonlocal calls
        calls += 1
        return real_encode(value)

    monkeypatch.setattr(gossip, "encode", counting)
    data = announcement.encode()
    parsed = parse_announcement(data, DB)
    assert parsed.heads == heads[: gossip.MAX_ANNOUNCED_HEADS]
    assert len(data) <= gossip.INLINE_BUDGET
    kept = len(parsed.blocks)
    assert parsed.blocks == announcement.blocks[:kept] and kept > 0
    one_more = Announcement(DB, parsed.heads, announcement.blocks[: kept + 1])
    assert len(real_encode_full(one_more)) > gossip.INLINE_BUDGET  # the longest run that fits
    assert calls <= kept + 3


def real_encode_full(announcement):
    """An announcement encoded whole, nothing dropped."""
    return encode(
        {
            "t": "heads",
            "db": announcement.db,
            "heads": list(announcement.heads),
            "blocks": [[c, b] for c, b in announcement.blocks],
        }
    )
