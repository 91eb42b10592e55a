"""The libp2p peer id follows from the node's ed25519 seed, as in every libp2p implementation."""

import pytest

from crdt.errors import InvalidKey
from crdt.identity import Keypair
from crdt.ipld.multiformats import base58_encode
from gridnode.net import open_host, peer_id_from_seed
from tests.gridnode.net.hosts import LOCAL, run

# Peer ids rust-libp2p derives for ``Keypair::ed25519_from_bytes([n; 32])`` (pinned in the tests of
# several rust-libp2p projects). js-libp2p and go-libp2p follow the same peer-id spec.
OTHER_IMPLEMENTATIONS = {
    bytes(32): "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
    bytes([1]) * 32: "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5",
    bytes([2]) * 32: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq",
}


def spec_peer_id(public_key: bytes) -> str:
    """The libp2p peer-id spec, written out: identity multihash (0x00, length) of the protobuf
    PublicKey {Type: Ed25519 (1), Data: key}, in base58btc."""
    protobuf = b"\x08\x01\x12\x20" + public_key
    return base58_encode(bytes([0x00, len(protobuf)]) + protobuf)


@pytest.mark.parametrize("seed", sorted(OTHER_IMPLEMENTATIONS), ids=lambda s: f"{s[0]}x32")
def test_peer_id_matches_the_spec_and_other_implementations(seed):
    peer_id = peer_id_from_seed(seed)
    assert peer_id == OTHER_IMPLEMENTATIONS[seed]
    assert peer_id == spec_peer_id(Keypair(seed).public_key)
    assert peer_id.startswith("12D3KooW")  # an ed25519 key inlined by the identity multihash


def test_host_peer_id_is_stable_across_restarts():
    seed = bytes(32)

    async def once():
        async with open_host(seed, LOCAL) as host:
            assert all(addr.endswith("/p2p/" + host.peer_id) for addr in host.addrs)
            return host.peer_id

    first = run(once)
    second = run(once)
    assert first == second == peer_id_from_seed(seed) == OTHER_IMPLEMENTATIONS[seed]
    assert peer_id_from_seed(bytes([1]) * 32) != first


def test_seed_must_be_32_bytes():
    with pytest.raises(InvalidKey):
        peer_id_from_seed(bytes(31))

    async def main():
        async with open_host(b"short", LOCAL):
            pass

    with pytest.raises(InvalidKey):
        run(main)


def test_a_peer_id_names_the_did_key_of_the_same_ed25519_key():
    """What private databases check (gridnode.node.sync.serve): the did:key of a connection's
    authenticated peer id is the key the peer's node signs entries with."""
    from gridnode.net.identity import did_of_peer

    for seed, peer_id in OTHER_IMPLEMENTATIONS.items():
        assert did_of_peer(peer_id) == Keypair(seed).did
    # Not ed25519 peer ids: a hashed RSA key (Qm...), not base58, far too long.
    assert did_of_peer("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N") is None
    assert did_of_peer("not base58 at all 0OIl") is None
    assert did_of_peer("1" * 1000) is None
