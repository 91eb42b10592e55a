"""The OrbitDB follower's own parts, without JavaScript (tests/interop/test_orbitdb.py runs it
against a real OrbitDB): the blocks and follows kept in SQLite (gridnode/storage/orbitdb.py),
served by CID; catalog items ``orbitdb:``; the heads protocol refusing a malformed or oversized
stream, and a fifth stream at once (typed, counted, the peer struck) while the node keeps
running."""

from __future__ import annotations

import math

import trio

from crdt.ipld import dagcbor
from crdt.ipld.cid import CID
from gridnode.errors import StreamError
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
        repo.orbit.follow(OTHER, [], 4.0, catalog=True)  # followed by hand first: stays so
        assert not repo.orbit.for_catalog(OTHER)
        third = "/orbitdb/zdpuAmbNhGGF6a8dKhPzbWvU4rv6KumrqqoeCNQNyMuMb9Yvv"
        repo.orbit.follow(third, [], 5.0, catalog=True)
        assert repo.orbit.for_catalog(third)
        repo.orbit.follow(third, [], 6.0)  # by hand too: kept when the catalog drops it
        assert not repo.orbit.for_catalog(third)
        assert repo.orbit.unfollow(third)
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
                    got = b""
                    try:
                        stream = await b.host.open_stream(a.peer_id, heads_protocol(ADDRESS))
                        await stream.write(data)
                        await stream.close_write()
                        while chunk := await stream.read(65536):
                            got += chunk
                    except StreamError:  # a reset: what a refused stream gets
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
                # Four heads streams open at once are served; a fifth is reset and counted.
                held = [
                    await b.host.open_stream(a.peer_id, heads_protocol(ADDRESS)) for _ in range(4)
                ]
                await trio.sleep(0.2)
                assert await send(b"") == b""
                with trio.fail_after(10):
                    while a.orbitdb.stats.bad_streams < 3:
                        await trio.sleep(0.05)
                for stream in held:
                    await stream.close_write()
                    assert await stream.read(10) == b""  # served: no heads, then closed
                assert await send(b"") == b""
                assert a.orbitdb.stats.bad_streams == 3

    trio.run(main)


def forged_database(length: int):
    """An OrbitDB-shaped events database built in Python (tests/crdt/orbitdb/forge.py): one
    writer in its access list, a chain of ``length`` entries; ``(address, blocks, entries,
    writer)`` with ``blocks`` as ``(cid, kind, bytes)``."""
    from crdt.orbitdb.address import format_address, format_hash
    from tests.crdt.orbitdb import forge

    author = forge.writer(1)
    access_cid, access_block = forge.access([author.id])
    manifest_cid, manifest_block = forge.manifest("forged-events", "events", access_cid)
    address = format_address(manifest_cid)
    entries = []
    parent: list[str] = []
    for n in range(length):
        cid, block = forge.entry(author, manifest_cid, {"op": "ADD", "value": n}, n + 1, parent)
        entries.append((cid, block))
        parent = [format_hash(cid)]
    blocks = [
        (manifest_cid, "manifest", manifest_block),
        (access_cid, "access", access_block),
        (author.cid, "identity", author.data),
        *((cid, "entry", block) for cid, block in entries),
    ]
    return address, manifest_cid, blocks, entries, author


def test_a_gridnode_serves_orbitdb_to_another_by_gossip_and_anti_entropy_and_refuses_forgeries(
    tmp_path,
):
    """A holds a database; B follows it from A (heads protocol and bitswap between gridnodes);
    an entry A learns from C's heads stream A publishes on the topic and B has it by gossip; the
    next, A publishing nothing, reaches B by anti-entropy alone; C pushes B a head signed by a key
    that is not its identity's (OrbitDB accepts it) and one by a writer not in the access list:
    both refused, typed and counted, B's answers unchanged."""
    from crdt.orbitdb.address import format_hash
    from tests.crdt.orbitdb import forge

    address, manifest_cid, blocks, entries, author = forged_database(7)
    with Repo(tmp_path / "a") as repo:
        repo.orbit.follow(address, [], 1.0)
        repo.orbit.put_blocks(address, [(c.bytes, kind, b) for c, kind, b in blocks[:-2]])
    last_cid, last_block = entries[-1]
    stranger = forge.writer(2)

    async def push(node, peer: str, block: bytes) -> list[bytes]:
        stream = await node.host.open_stream(peer, heads_protocol(address))
        await stream.write(block)
        await stream.close_write()
        got = b""
        while chunk := await stream.read(65536):
            got += chunk
        from protocols.orbitdb import split_items

        return split_items(got)

    async def main() -> None:
        with trio.fail_after(90):
            async with (
                open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=math.inf) as a,
                open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=math.inf) as b,
                open_node(tmp_path / "c", listen=LOOPBACK, announce_interval=math.inf) as c,
            ):
                while a.orbitdb.replica(address).view is None:
                    await trio.sleep(0.05)
                assert len(a.orbitdb.replica(address).view) == 5  # kept, verified again
                b.orbitdb.interval = 1e9  # one round at the start, then none: gossip only
                summary = await b.orbitdb.follow(address, [a.addrs[0]], timeout=30)
                while len(b.orbitdb.replica(address).view) < 5:
                    await b.orbitdb.replica(address).changed.wait()
                assert b.orbitdb.answer(address, "all") == a.orbitdb.answer(address, "all")
                assert summary["type"] == "events"
                while b.peer_id not in a.host.topic_peers(address):
                    await trio.sleep(0.05)
                await trio.sleep(2.5)  # a gossipsub heartbeat or two: B in A's mesh
                # A learns a sixth entry from C's heads stream and publishes it on the topic:
                # B, which runs no more exchanges, has it by gossip.
                assert await c.connect(a.addrs[0]) == a.peer_id
                theirs = await push(c, a.peer_id, entries[-2][1])
                assert [format_hash(CID.for_block(h)) for h in theirs] == [
                    format_hash(entries[-3][0])
                ]
                while len(b.orbitdb.replica(address).view) < 6:
                    await b.orbitdb.replica(address).changed.wait()
                assert a.orbitdb.stats.heads_published == 1
                # A seventh, A publishing nothing now: B has it by anti-entropy alone.
                a.orbitdb.announce = False
                await push(c, a.peer_id, last_block)
                while len(a.orbitdb.replica(address).view) < 7:
                    await a.orbitdb.replica(address).changed.wait()
                assert a.orbitdb.stats.heads_published == 1
                assert len(b.orbitdb.replica(address).view) == 6
                # B's next round (following again runs one now; else every interval).
                await b.orbitdb.follow(address, [a.addrs[0]], timeout=0)
                with trio.fail_after(30):
                    while len(b.orbitdb.replica(address).view) < 7:
                        await b.orbitdb.replica(address).changed.wait()
                assert b.orbitdb.replica(address).summary()["heads"] == [format_hash(last_cid)]
                answer = b.orbitdb.answer(address, "all")
                assert [item["value"] for item in answer] == list(range(7))
                # Forgeries, pushed to B by C: B answers with its head and refuses them.
                known = next(cid for cid, kind, _b in blocks if kind == "identity")
                impostor = forge.Writer(author.id_key, author.key, known, author.data)
                _cid, mismatched = forge.entry(
                    impostor,
                    manifest_cid,
                    {"op": "ADD", "value": "forged"},
                    7,
                    [format_hash(last_cid)],
                    signer=forge.private_key(99),
                )
                await c.worker.run(
                    c.repo.orbit.put_blocks,
                    "/orbitdb/elsewhere",
                    [(stranger.cid.bytes, "identity", stranger.data)],
                )
                _cid, unauthorised = forge.entry(
                    stranger, manifest_cid, {"op": "ADD", "value": "x"}, 7, [format_hash(last_cid)]
                )
                assert await c.connect(b.addrs[0]) == b.peer_id
                assert await push(c, b.peer_id, mismatched) == [last_block]
                assert await push(c, b.peer_id, unauthorised) == [last_block]
                refused = b.orbitdb.stats.refused
                while refused["OrbitKeyMismatch"] + refused["OrbitUnauthorized"] < 2:
                    await trio.sleep(0.05)
                assert refused["OrbitKeyMismatch"] == 1
                assert refused["OrbitUnauthorized"] == 1
                assert b.orbitdb.stats.refused_by_peer[c.peer_id] == 2
                assert b.orbitdb.answer(address, "all") == answer
                assert b.orbitdb.replica(address).summary()["refused"] == 2

    trio.run(main)


def test_the_orbitdb_verbs_need_a_running_node_and_say_so(tmp_path):
    from click.testing import CliRunner

    from gridnode.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["--data-dir", str(tmp_path), "init"]).exit_code == 0
    for args in (["orbitdb", "list"], ["orbitdb", "follow", ADDRESS], ["orbitdb", "all", ADDRESS]):
        done = runner.invoke(main, ["--data-dir", str(tmp_path), *args])
        assert done.exit_code == 1, done.output
        assert "needs a running node" in done.output
    done = runner.invoke(main, ["--data-dir", str(tmp_path), "db", "get", ADDRESS, "k"])
    assert done.exit_code == 1
    assert "is an OrbitDB database: it is read through a running node" in done.output
    assert "Traceback" not in done.output


def test_the_gateway_serves_the_kept_orbitdb_blocks(tmp_path):
    from tests.gridnode.test_api import raw, serving

    address, _manifest, blocks, _entries, _author = forged_database(2)
    with Repo(tmp_path / "g") as repo:
        repo.orbit.follow(address, [], 1.0)
        repo.orbit.put_blocks(address, [(c.bytes, kind, b) for c, kind, b in blocks])

    async def main() -> None:
        with trio.fail_after(30):
            async with serving(tmp_path / "g") as (_node, client):
                for cid, _kind, block in blocks:
                    status, body, _headers = await raw(client, "GET", f"/ipfs/{cid}?format=raw")
                    assert status == 200 and body == block
                status, body, _headers = await raw(
                    client, "GET", f"/ipfs/{blocks[-1][0]}?format=car"
                )
                assert status == 200 and body.endswith(blocks[-1][2])  # a CAR of the block
                stranger = CID.for_block(dagcbor.encode({"not": "kept"}))
                status, _body, _headers = await raw(client, "GET", f"/ipfs/{stranger}?format=raw")
                assert status == 404

    trio.run(main)


def test_following_needs_bitswap(tmp_path):
    import pytest

    from gridnode.errors import FeatureOff

    Repo(tmp_path / "g").close()
    config = tmp_path / "g" / "gridnode.toml"
    config.write_text(config.read_text().replace("# bitswap = true", "bitswap = false"))

    async def main() -> None:
        with trio.fail_after(30):
            async with open_node(tmp_path / "g", listen=LOOPBACK, announce_interval=math.inf) as n:
                assert n.bitswap is None
                with pytest.raises(FeatureOff, match="bitswap is off"):
                    await n.orbitdb.follow(ADDRESS, [], timeout=0)
                assert n.orbitdb.summaries() == []

    trio.run(main)


def test_a_bad_peer_is_refused_and_a_database_not_yet_fetched_says_so(tmp_path):
    """``POST /orbitdb/follow`` refuses a peer that is no multiaddr ending in /p2p/<id> before
    following anything; a followed database whose manifest no peer has sent yet answers the db
    reads with one clear 404 (not a 'None database' mismatch)."""
    import json

    from tests.gridnode.test_api import raw, serving

    async def main() -> None:
        with trio.fail_after(60):
            async with serving(tmp_path / "g") as (node, client):
                body = json.dumps({"address": ADDRESS, "peers": ["not-a-multiaddr"]})
                status, answer, _ = await raw(client, "POST", "/orbitdb/follow", body.encode())
                assert status == 400 and "peers[0]" in answer["error"], answer
                assert node.orbitdb.summaries() == []
                body = json.dumps({"address": ADDRESS, "timeout": 0})
                status, answer, _ = await raw(client, "POST", "/orbitdb/follow", body.encode())
                assert status == 200 and answer["type"] is None and answer["entries"] == 0
                quoted = ADDRESS.replace("/", "%2F")
                for path in (f"/db/{quoted}", f"/db/{quoted}/get?key=k"):
                    status, answer, _ = await raw(client, "GET", path)
                    assert status == 404, (path, status, answer)
                    assert "no peer has sent its manifest yet" in answer["error"], answer

    trio.run(main)
