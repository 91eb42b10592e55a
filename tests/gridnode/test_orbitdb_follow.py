"""The OrbitDB follower's own parts, without JavaScript (tests/interop/test_orbitdb.py runs it
against a real OrbitDB): the blocks and follows kept in SQLite (gridnode/storage/orbitdb.py),
served by CID; catalog items ``orbitdb:``; the heads protocol refusing a malformed or oversized
stream (typed, counted, the peer struck) while the node keeps running."""

from __future__ import annotations

import math

import trio

from crdt.ipld import dagcbor
from crdt.ipld.cid import CID
from gridnode.node import open_node
from gridnode.repo import Repo
from protocols.catalog import ORBITDB_PREFIX, orbitdb_key, parse_catalog
from protocols.orbitdb import MAX_HEADS_BYTES, heads_protocol

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
ADDRESS = "/orbitdb/zdpuAnRoo2P3QYPpEpsCAXoyQsyD544bQshXkUXy75beLU1YZ"
OTHER = "/orbitdb/zdpuAnARzALBrUEJiF9FwfWB9xddhv65pkLDWopJ7Vq35hvfW"


def test_follows_and_blocks_are_kept_served_by_cid_and_dropped(tmp_path):
    block = dagcbor.encode({"name": "x", "type": "events", "accessController": "/ipfs/zdpu"})
    cid = CID.for_block(block, "dag-cbor")
    with Repo(tmp_path / "g") as repo:
        repo.orbit.follow(ADDRESS, ["/ip4/127.0.0.1/tcp/1/p2p/QmPeer"], 1.0)
        repo.orbit.follow(OTHER, [], 2.0)
        repo.orbit.follow(ADDRESS, [], 3.0)  # again: its peers replaced, its place kept
        assert repo.orbit.follows() == [(ADDRESS, [], 1.0), (OTHER, [], 2.0)]
        repo.orbit.put_blocks(ADDRESS, [(cid.bytes, "manifest", block)])
        repo.orbit.put_blocks(ADDRESS, [(cid.bytes, "manifest", block)])  # idempotent
        assert repo.orbit.blocks(ADDRESS, "manifest") == [(cid.bytes, block)]
        assert repo.served_blocks([cid]) == {cid: block}  # bitswap serves it
        assert repo.orbit.unfollow(ADDRESS)
        assert not repo.orbit.unfollow(ADDRESS)
        assert repo.served_blocks([cid]) == {cid: None}
        assert [a for a, _p, _c in repo.orbit.follows()] == [OTHER]


def test_catalog_items_of_orbitdb_databases():
    key = orbitdb_key(ADDRESS)
    assert key == ORBITDB_PREFIX + ADDRESS
    view = parse_catalog(
        [
            ("catalog", {"schema": 1, "name": "c"}),
            (key, {"name": "docs", "description": "an OrbitDB database"}),
            (ORBITDB_PREFIX + "/orbitdb/notacid", {}),
            (ORBITDB_PREFIX + "/gridnode/bafy", {}),
            (orbitdb_key(OTHER), "not a map"),
        ]
    )
    assert view.orbitdb_addresses == {ADDRESS}
    assert [item.name for item in view.orbitdb] == ["docs"]
    assert len(view.refused) == 3
    assert view.addresses == frozenset()  # not a gridnode database


def test_a_bad_heads_stream_is_refused_counted_and_struck(tmp_path):
    async def main() -> None:
        with trio.fail_after(60):
            async with (
                open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=math.inf) as a,
                open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=math.inf) as b,
            ):
                await a.orbitdb.follow(ADDRESS, [], timeout=0)
                assert await b.connect(a.addrs[0]) == a.peer_id

                async def send(data: bytes) -> bytes:
                    stream = await b.host.open_stream(a.peer_id, heads_protocol(ADDRESS))
                    got = b""
                    try:
                        await stream.write(data)
                        await stream.close_write()
                        while chunk := await stream.read(65536):
                            got += chunk
                    except Exception:  # a reset: what a refused stream gets
                        pass
                    return got

                # Not CBOR: refused.
                assert await send(b"\xff\xff\xff") == b""
                # Over the bound: refused before it ends.
                await send(b"\x00" * (MAX_HEADS_BYTES + 10))
                with trio.fail_after(10):
                    while a.orbitdb.stats.bad_streams < 2:
                        await trio.sleep(0.05)
                assert a.orbitdb.stats.refused["OrbitHeadsError"] == 2
                assert a.orbitdb.stats.refused_by_peer[b.peer_id] == 2
                assert a.stats.strikes.get(b.peer_id, 0) >= 1
                # A well-formed stream of no heads is served (both sides have none).
                assert await send(b"") == b""
                assert a.orbitdb.stats.bad_streams == 2
                assert a.orbitdb.summaries()[0]["address"] == ADDRESS

    trio.run(main)
