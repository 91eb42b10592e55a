"""The catalog schema (protocols/catalog.py): what a follower takes from a catalog's keys and
what it refuses, item by item (never the whole catalog)."""

import pytest

from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from protocols.catalog import (
    MAX_DATABASES,
    MAX_FILES,
    MAX_PEERS,
    canonical_address,
    canonical_file,
    database_key,
    file_key,
    marker_value,
    parse_catalog,
    peer_key,
)

PEER = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWNwJGudHeQrDL2amLcCuDP9rgnQAH9NZAursnW4HzaNq8"


def _address(n: int) -> str:
    return "/gridnode/" + str(CID.for_block(n.to_bytes(4, "big")))


def test_a_catalog_lists_databases_and_peers_in_key_order():
    a, b = _address(1), _address(2)
    items = [
        (database_key(b), {"name": "bee", "description": "the second"}),
        ("catalog", marker_value("project")),
        (peer_key(PEER), {}),
        (database_key(a), {"name": "ay"}),
        ("later:bafy", {"name": "later schema"}),  # unknown prefixes are left alone
    ]
    view = parse_catalog(items)
    assert view.is_catalog and view.name == "project"
    assert [d.address for d in view.databases] == sorted([a, b])
    assert {d.address: (d.name, d.description) for d in view.databases} == {
        a: ("ay", ""),
        b: ("bee", "the second"),
    }
    assert view.peers == (PEER,)
    assert view.refused == ()
    assert view.addresses == {a, b}


def test_without_the_marker_it_is_not_a_catalog():
    view = parse_catalog([(database_key(_address(1)), {})])
    assert not view.is_catalog
    assert not parse_catalog([("catalog", {"schema": 2, "name": "x"})]).is_catalog


def test_a_bare_cid_key_names_the_same_database_once():
    address = _address(7)
    bare = "db:" + address.removeprefix("/gridnode/")
    view = parse_catalog([("catalog", marker_value("c")), (bare, {}), (database_key(address), {})])
    assert [d.address for d in view.databases] == [address]


@pytest.mark.parametrize(
    "key, value",
    [
        ("db:not-a-cid", {}),
        ("db:" + _address(1), "not a map"),
        ("db:" + _address(1), {"name": 5}),
        ("db:" + _address(1), {"name": "x" * 10_000}),
        ("peer:not/a/multiaddr", {}),
        ("peer:/ip4/1.2.3.4/tcp/1 /p2p/x", {}),
        ("peer:/" + "x" * 600, {}),
        ("file:not-a-cid", {}),
        ("file:" + str(CID.for_block(b"x")), {}),  # dag-cbor: not a UnixFS root
        ("file:" + "b" * 600, {}),
        ("file:" + str(CID.for_block(b"x", codec=0x55)), [1]),
        ("file:" + str(CID.for_block(b"x", codec=0x55)), {"description": 1}),
    ],
)
def test_a_malformed_item_is_refused_alone(key, value):
    good = _address(2)
    view = parse_catalog([("catalog", marker_value("c")), (key, value), (database_key(good), {})])
    assert view.is_catalog
    assert [d.address for d in view.databases] == [good]
    assert view.peers == ()
    assert len(view.refused) == 1 and view.refused[0][0] == key[:512]


def test_bounds_on_databases_and_peers():
    items = [("catalog", marker_value("big"))]
    items += [(database_key(_address(i)), {}) for i in range(MAX_DATABASES + 5)]
    items += [(peer_key(f"/ip4/10.0.0.{i}/tcp/1"), {}) for i in range(MAX_PEERS + 3)]
    view = parse_catalog(items)
    assert len(view.databases) == MAX_DATABASES
    assert len(view.peers) == MAX_PEERS
    assert len(view.refused) == 5 + 3


def test_keys_for_writers():
    address = _address(3)
    assert database_key(address.removeprefix("/gridnode/")) == "db:" + address
    assert canonical_address(address) == address
    with pytest.raises(ValueError):
        peer_key("not a multiaddr")


def _file(n: int, codec: int = 0x55) -> str:
    return str(CID.for_block(n.to_bytes(4, "big"), codec=codec))


def test_a_catalog_lists_files_and_directories_once_each():
    raw, pb = _file(1), _file(2, codec=0x70)
    v0 = str(CID.from_parts(0, 0x70, CID.parse(pb).multihash))
    items = [
        ("catalog", marker_value("assets")),
        (file_key(raw), {"name": "logo.png", "description": "the logo"}),
        ("file:/ipfs/" + raw, {"name": "the same, spelt with /ipfs/"}),
        (file_key(v0), {}),
        (file_key(pb), {"name": "site"}),
    ]
    view = parse_catalog(items)
    assert view.refused == ()
    assert view.file_cids == {raw, pb, v0}  # a CIDv0 stays v0: Kubo pins it under that name
    named = {f.cid: f.name for f in view.files}
    assert named[pb] == "site" and named[raw] in {"logo.png", "the same, spelt with /ipfs/"}
    assert view.databases == ()


def test_file_keys_for_writers_and_the_bound_on_files():
    raw = _file(9)
    assert file_key("/ipfs/" + raw) == "file:" + raw
    assert canonical_file(raw) == raw
    with pytest.raises(GridnodeError):
        file_key("nope")
    items = [("catalog", marker_value("big"))]
    items += [(file_key(_file(i)), {}) for i in range(MAX_FILES + 2)]
    view = parse_catalog(items)
    assert len(view.files) == MAX_FILES
    assert len(view.refused) == 2
