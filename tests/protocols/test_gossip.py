"""Summaries (protocols/gossip.py): keys, encoding and the limits a receiver checks."""

import pytest

from crdt.ipld import CID, encode
from protocols.errors import ProtocolError, SendLimitError
from protocols.gossip import (
    MAX_ANNOUNCED_HEADS,
    MAX_SUMMARY,
    MAX_SUMMARY_ITEMS,
    Summary,
    database_key,
    heads_key,
    parse_summary,
)


def cids(n, salt=b""):
    return [CID.for_block(salt + i.to_bytes(4, "big")) for i in range(n)]


def test_a_summary_round_trips():
    items = tuple((database_key(c), heads_key([c])) for c in cids(5))
    assert parse_summary(Summary(items).encode()) == Summary(items)


def test_keys_are_eight_bytes_and_depend_on_every_announced_head():
    heads = cids(3)
    assert len(database_key(heads[0])) == 8
    assert heads_key(heads) == heads_key(list(heads))
    assert heads_key(heads) != heads_key(heads[:2])
    assert heads_key(heads) != heads_key(list(reversed(heads)))
    assert database_key(heads[0]) != database_key(heads[1])
    # Beyond the announced heads, what a summary keys is what an announcement names.
    many = cids(MAX_ANNOUNCED_HEADS + 1)
    assert heads_key(many) == heads_key(many[:MAX_ANNOUNCED_HEADS])


def test_the_largest_summary_fits_the_byte_limit():
    items = tuple((i.to_bytes(8, "big"), i.to_bytes(8, "big")) for i in range(MAX_SUMMARY_ITEMS))
    data = Summary(items).encode()
    assert len(data) <= MAX_SUMMARY
    assert len(parse_summary(data).items) == MAX_SUMMARY_ITEMS


def test_a_sender_never_builds_a_summary_its_peer_refuses():
    items = tuple((b"k" * 8, b"h" * 8) for _ in range(MAX_SUMMARY_ITEMS + 1))
    with pytest.raises(SendLimitError):
        Summary(items).encode()


@pytest.mark.parametrize(
    "body",
    [
        {"t": "heads", "dbs": []},
        {"t": "summary"},
        {"t": "summary", "dbs": [], "more": 1},
        {"t": "summary", "dbs": {}},
        {"t": "summary", "dbs": [[b"k" * 8]]},
        {"t": "summary", "dbs": [[b"k" * 8, b"h" * 7]]},
        {"t": "summary", "dbs": [[b"k" * 9, b"h" * 8]]},
        {"t": "summary", "dbs": [["k" * 8, b"h" * 8]]},
        {"t": "summary", "dbs": [[b"k" * 8, b"h" * 8]] * (MAX_SUMMARY_ITEMS + 1)},
    ],
)
def test_a_malformed_summary_is_refused(body):
    with pytest.raises(ProtocolError):
        parse_summary(encode(body))


def test_bytes_beyond_the_limit_or_not_dag_cbor_are_refused():
    with pytest.raises(ProtocolError):
        parse_summary(b"\x00" * (MAX_SUMMARY + 1))
    with pytest.raises(ProtocolError):
        parse_summary(b"\xff\x00")
