"""The OrbitDB heads stream's framing (protocols/orbitdb.py): the protocol name OrbitDB 4.0.0
serves, and the split of raw back-to-back head blocks into whole CBOR items, bounded."""

from __future__ import annotations

import pytest

from crdt.ipld import dagcbor
from protocols.errors import OrbitHeadsError, ProtocolError
from protocols.orbitdb import heads_protocol, split_items

ADDRESS = "/orbitdb/zdpuAnRoo2P3QYPpEpsCAXoyQsyD544bQshXkUXy75beLU1YZ"


def test_the_protocol_is_named_as_orbitdb_names_it():
    # sync.js: pathJoin('/orbitdb/heads/', address), the doubled slash collapsed.
    assert heads_protocol(ADDRESS) == "/orbitdb/heads/orbitdb/" + ADDRESS.split("/")[2]
    with pytest.raises(ValueError):
        heads_protocol("/gridnode/bafy")


def entry(n: int) -> bytes:
    return dagcbor.encode(
        {
            "id": ADDRESS,
            "payload": {"op": "PUT", "key": f"k{n}", "value": {"n": n, "big": "x" * (n * 300)}},
            "next": [f"zdpu{n}"],
            "refs": [],
            "clock": {"id": "02ab", "time": n + 1},
            "v": 2,
            "key": "02ab",
            "identity": "zdpuid",
            "sig": "3044",
        }
    )


def test_back_to_back_blocks_split_into_each_block():
    blocks = [entry(n) for n in range(5)]
    assert split_items(b"".join(blocks)) == blocks
    assert split_items(b"") == []
    # Every kind of item OrbitDB's dag-cbor may hold: negative ints, floats, bools, null, tags.
    odd = dagcbor.encode({"a": [-1, 1.5, True, None, b"\x00\x01"], "b": 2**40})
    assert split_items(odd + blocks[0]) == [odd, blocks[0]]


@pytest.mark.parametrize(
    "data",
    [
        entry(3)[:-1],  # the last block cut short
        entry(3) + entry(4)[:10],
        b"\x5f\x41\x00\xff",  # an indefinite-length byte string
        b"\xbf\xff",  # an indefinite-length map
        b"\x1c",  # reserved additional information
        b"\x81" * 100 + b"\x00",  # nested deeper than any entry
    ],
)
def test_what_does_not_split_into_whole_blocks_is_refused(data):
    with pytest.raises(OrbitHeadsError) as raised:
        split_items(data)
    assert isinstance(raised.value, ProtocolError)


def test_more_blocks_than_allowed_are_refused():
    with pytest.raises(OrbitHeadsError, match="more than 3"):
        split_items(b"\x00" * 4, max_items=3)
    assert split_items(b"\x00" * 3, max_items=3) == [b"\x00"] * 3
