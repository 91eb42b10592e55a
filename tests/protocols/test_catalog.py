"""The catalog schema (protocols/catalog.py): what a follower takes from a catalog's keys and
what it refuses, item by item (never the whole catalog)."""

import pytest

from crdt.ipld.cid import CID
from protocols.catalog import (
    MAX_DATABASES,
    MAX_PEERS,
    canonical_address,
    database_key,
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
        ("file:bafy", {"name": "later schema"}),  # unknown prefixes are left alone
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
