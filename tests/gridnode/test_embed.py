"""gridnode.embed: a node in a thread, driven from asyncio and from synchronous code.

Real nodes on 127.0.0.1; every test checks that the node's thread is gone afterwards.
"""

import asyncio
import json
import math
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import trio

import gridnode
from crdt.errors import InvalidOperation
from gridnode import api, errors
from gridnode.config import CONFIG_FILE

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def node_threads():
    return [t for t in threading.enumerate() if t.name.startswith("gridnode node")]


@pytest.fixture(autouse=True)
def no_thread_left():
    before = set(node_threads())
    yield
    assert set(node_threads()) == before


def test_import_gridnode_stays_light():
    code = "import sys, gridnode; print('gridnode.node' in sys.modules, 'libp2p' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert gridnode.open_node.__module__ == "gridnode.node"
    assert issubclass(gridnode.NodeStopped, gridnode.GridnodeError)
    assert set(gridnode.__all__) <= set(dir(gridnode))
    with pytest.raises(AttributeError):
        gridnode.no_such_name  # noqa: B018


def test_asyncio_node_writes_reads_and_serves_the_cli(tmp_path):
    data_dir = tmp_path / "node"

    async def main():
        async with gridnode.asyncio_node(
            data_dir, listen=LOOPBACK, announce_interval=math.inf
        ) as node:
            assert node.peer_id.startswith("12D3KooW") and node.did.startswith("did:key:z6Mk")
            assert node.addrs[0].startswith("/ip4/127.0.0.1/tcp/")
            notes = await node.create_database("notes", "keyvalue")
            # Many calls at once from many asyncio tasks.
            await asyncio.gather(*(node.put(notes, f"k{i}", i) for i in range(20)))
            assert await node.get(notes, "k7") == 7
            assert await node.get("notes", "k19") == 19  # by name too
            with pytest.raises(errors.NotFound, match="no key 'nope'"):
                await node.get(notes, "nope")
            with pytest.raises(gridnode.NotFound, match="no database 'nosuchdb'"):
                await node.get("nosuchdb", "k")
            with pytest.raises(InvalidOperation):
                await node.write(notes, [{"op": "inc", "by": 1}])
            docs = await node.create_database("people", "documents", indexes=["age"])
            await node.put_document(docs, {"_id": "alice", "age": 33})
            await node.put_document(docs, {"_id": "bob", "age": 25})
            assert [d["_id"] for d in await node.query(docs, "age", gte=30)] == ["alice"]
            await node.delete(docs, "bob")
            assert [d["_id"] for d in await node.query(docs)] == ["alice"]
            hits = await node.create_database("hits", "counter")
            assert await node.inc(hits, 5) == 5 and await node.value(hits) == 5
            feed = await node.create_database("feed", "events")
            await node.add(feed, "a")
            assert [i["value"] for i in await node.items(feed)] == ["a"]
            info = await node.info(notes)
            assert info["entries"] == 20 and info["digest"] == await node.digest(notes)
            secret = await node.create_database("secret", "keyvalue", private=True, readers=[])
            assert (await node.info(secret))["private"] is True
            assert await node.peers() == []
            assert await node.call(lambda n: n.read(notes, len)) == 20
            # The gridnode commands work through the embedded node's API meanwhile.
            status = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "gridnode.cli",
                    "--data-dir",
                    str(data_dir),
                    "status",
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            report = json.loads(status.stdout)
            assert report["running"] is True and report["peer_id"] == node.peer_id
            assert report["api"] == node.api_url
            return notes

    notes = asyncio.run(main())
    # Stopped: the data is on disk, the API files gone.
    assert not (data_dir / api.API_FILE).exists()
    with gridnode.start_node(data_dir, listen=LOOPBACK, api=False) as node:
        assert node.get(notes, "k0") == 0 and node.api_url is None


def test_cancelling_an_asyncio_call_cancels_it_in_the_node(tmp_path):
    async def main():
        async with gridnode.asyncio_node(tmp_path, listen=LOOPBACK) as node:
            entered, left = threading.Event(), threading.Event()

            async def slow(n):
                entered.set()
                try:
                    await trio.sleep(60)
                finally:
                    left.set()

            task = asyncio.ensure_future(node.call(slow))
            await asyncio.to_thread(entered.wait, 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(left.wait, 30)
            # The node is fine afterwards.
            assert await node.peers() == []

    asyncio.run(main())


def test_calls_running_when_the_node_stops_raise_node_stopped(tmp_path):
    started = threading.Event()

    async def forever(n):
        started.set()
        await trio.sleep_forever()

    node = gridnode.start_node(tmp_path, listen=LOOPBACK)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(node.call, forever)
        assert started.wait(30)
        node.close()
        with pytest.raises(gridnode.NodeStopped):
            pending.result(30)
    with pytest.raises(gridnode.NodeStopped):
        node.peers()
    node.close()  # idempotent


def test_sync_node_is_thread_safe_and_two_nodes_replicate(tmp_path):
    with gridnode.start_node(tmp_path / "a", listen=LOOPBACK, announce_interval=0.2) as a:
        address = a.create_database("shared", "keyvalue", public=True)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: a.put(address, f"k{i}", i), range(40)))
        assert a.info(address)["entries"] == 40
        with gridnode.start_node(
            tmp_path / "b", listen=LOOPBACK, bootstrap=[a.addrs[0]], announce_interval=0.2
        ) as b:
            assert b.call(_wait_for_peer, a.peer_id) == a.peer_id
            assert b.follow(address) == address
            b.put(address, "from-b", True)
            assert b.call(_wait_for_entries, address, 41) == 41
            assert a.call(_wait_for_entries, address, 41) == 41
            assert a.digest(address) == b.digest(address)
            assert a.get(address, "from-b") is True


async def _wait_for_peer(node, peer):
    with trio.fail_after(30):
        while peer not in node.peers():
            await trio.sleep(0.05)
    return peer


async def _wait_for_entries(node, address, count):
    with trio.fail_after(30):
        while (n := await node.read(address, len)) < count:
            await trio.sleep(0.05)
    return n


def test_start_errors_are_the_typed_errors(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / CONFIG_FILE).write_text("target_peers = -1\n")
    with pytest.raises(gridnode.ConfigError, match="target_peers"):
        gridnode.start_node(tmp_path / "bad", listen=LOOPBACK)

    async def bad_asyncio():
        async with gridnode.asyncio_node(tmp_path / "bad", listen=LOOPBACK):
            pass

    with pytest.raises(gridnode.ConfigError, match="target_peers"):
        asyncio.run(bad_asyncio())
    # A second node on the same data directory is refused, the first one goes on.
    with gridnode.start_node(tmp_path / "one", listen=LOOPBACK) as first:
        with pytest.raises(errors.NodeUnavailable, match="already running"):
            gridnode.start_node(tmp_path / "one", listen=LOOPBACK)
        assert first.peers() == []


def test_an_error_in_the_block_stops_the_node_and_propagates(tmp_path):
    class Boom(Exception):
        pass

    async def main():
        async with gridnode.asyncio_node(tmp_path, listen=LOOPBACK) as node:
            await node.create_database("x", "set")
            raise Boom

    with pytest.raises(Boom):
        asyncio.run(main())
    with pytest.raises(Boom), gridnode.start_node(tmp_path, listen=LOOPBACK):
        raise Boom
    assert not (tmp_path / api.API_FILE).exists()


def test_sync_node_follows_from_a_snapshot_or_not(tmp_path):
    with gridnode.start_node(tmp_path / "a", listen=LOOPBACK, announce_interval=0.2) as a:
        address = a.create_database("records", "keyvalue", public=True)
        for i in range(20):
            a.put(address, f"k{i}", i)
        a.call(_publish_snapshot, address)
        for name, snapshot in (("b", True), ("c", False)):
            with gridnode.start_node(
                tmp_path / name, listen=LOOPBACK, bootstrap=[a.addrs[0]], announce_interval=0.2
            ) as other:
                assert other.call(_wait_for_peer, a.peer_id) == a.peer_id
                assert other.follow(address, snapshot=snapshot) == address
                served = other.call(_snapshot_state, address)
                assert (served is not None) is snapshot
                assert other.call(_wait_for_entries, address, 20) == 20


async def _publish_snapshot(node, address):
    return await node.snapshots.publish(address)


async def _snapshot_state(node, address):
    return node.snapshots.status(address)
