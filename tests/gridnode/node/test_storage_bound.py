"""Real nodes on 127.0.0.1 at their storage bound (``max_storage``): the next database is refused
cleanly, a pull in flight stops between two batches, and the node keeps running and serving."""

import logging
import re
from contextlib import AsyncExitStack

import pytest
import trio

from gridnode.api.metrics import exposition, node_families
from gridnode.errors import StorageLimitReached
from gridnode.node import open_node
from gridnode.node.sync import CHUNK_BYTES

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


async def connected(node):
    with trio.fail_after(10):
        while not node.peers():
            await trio.sleep(0.05)


async def entries(node, address):
    return await node.read(address, len)


def test_a_node_at_the_bound_refuses_the_next_database_and_keeps_running(
    tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="gridnode.quota")

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=0.5)
            )
            first = await a.create_database("first", "keyvalue", public=True)
            second = await a.create_database("second", "keyvalue", public=True)
            for db in (first, second):
                await a.write(db.address, [{"op": "put", "key": "k", "value": db.address}])
            # b's bound from its config (the environment overrides gridnode.toml): a fresh
            # data dir takes some 50 KiB, so 1 byte is past it from the start.
            monkeypatch.setenv("GRIDNODE_MAX_STORAGE", "1")
            b = await stack.enter_async_context(
                open_node(tmp_path / "b", listen=LOOPBACK, bootstrap=a.addrs, announce_interval=0.5)
            )
            monkeypatch.delenv("GRIDNODE_MAX_STORAGE")
            await connected(b)
            assert b.storage()["full"] is True and b.storage()["max"] == 1
            with pytest.raises(StorageLimitReached, match="cannot follow " + first.address):
                await b.follow(first.address)
            assert not b.replicating(first.address)
            with pytest.raises(StorageLimitReached):
                await b.import_car(b"not even read")
            # Still running: connected, its own writes go through, it answers reads.
            assert a.peer_id in b.peers()
            own = await b.create_database("own", "events")
            await b.write(own.address, [{"op": "add", "value": "written at the bound"}])
            assert await entries(b, own.address) == 1
            assert b.storage_refusals >= 2  # and pulls of "own" from a, not run
            # Raised (as a restart with a new max_storage does): the same follow goes through.
            b.max_storage = b.storage()["used"] + 10 * 1024 * 1024
            await b.follow(first.address)
            with trio.fail_after(20):
                while await entries(b, first.address) < 1:
                    await trio.sleep(0.05)
            assert b.storage()["full"] is False
            # Lowered to what it uses: the next database is refused again.
            b.max_storage = b.storage()["used"]
            with pytest.raises(StorageLimitReached):
                await b.follow(second.address)
            assert b.replicating(first.address) and not b.replicating(second.address)

    trio.run(main)
    lines = [
        (r.levelname, r.getMessage().split(":")[0])
        for r in caplog.records
        if r.name == "gridnode.quota"
    ]
    # Reached at start, cleared when raised, reached again (a minute not passed: not logged).
    assert lines == [("WARNING", "storage bound reached"), ("INFO", "storage back under its bound")]


def test_a_pull_in_flight_stops_between_batches_at_the_bound(tmp_path):
    value = "x" * 4000
    count = 3000  # some 12 MB of entries: about a dozen blocks messages of CHUNK_BYTES

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=0.3)
            )
            db = await a.create_database("big", "keyvalue", public=True)
            for start in range(0, count, 500):
                await a.write(
                    db.address,
                    [
                        {"op": "put", "key": f"k{i}", "value": value}
                        for i in range(start, start + 500)
                    ],
                )
            b = await stack.enter_async_context(
                open_node(tmp_path / "b", listen=LOOPBACK, bootstrap=a.addrs, announce_interval=0.3)
            )
            await connected(b)
            allowance = 3 * CHUNK_BYTES
            b.max_storage = bound = b.storage()["used"] + allowance
            await b.follow(db.address)
            with trio.fail_after(30):
                while not b.storage()["full"]:
                    await trio.sleep(0.05)
                while b.replication.pulling(db.address):
                    await trio.sleep(0.05)
            held = await entries(b, db.address)
            assert 0 < held < count
            # Past the bound by at most one batch (its blocks, their index and store rows).
            assert b.storage()["used"] <= bound + 3 * CHUNK_BYTES
            sync = b.stats.syncs[(a.peer_id, db.address)]
            assert sync.error is not None and sync.error.startswith("StorageLimitReached")
            assert not sync.complete
            # Not the peer's fault: no strike, still connected; and no further pull runs while
            # full (announcements and anti-entropy rounds come and go).
            assert b.stats.strikes.get(a.peer_id, 0) == 0 and a.peer_id in b.peers()
            pulls = sync.pulls
            await trio.sleep(3.5)  # past an anti-entropy round (10 announce intervals)
            assert b.stats.syncs[(a.peer_id, db.address)].pulls == pulls
            assert await entries(b, db.address) == held
            assert b.storage_refusals >= 1

            # A small write rides inline in a's announcements: not joined while full either.
            def kept(d):
                return len(d), d.pending_count

            before = await b.read(db.address, kept)
            await a.write(db.address, [{"op": "put", "key": "last", "value": 1}])
            await trio.sleep(1.0)
            assert await b.read(db.address, kept) == before
            # Room again: the next announcement's pull completes it.
            b.max_storage = 0
            with trio.fail_after(30):
                while await entries(b, db.address) < count + 1:
                    await trio.sleep(0.05)
            assert await b.read(db.address, lambda d: d.digest()) == await a.read(
                db.address, lambda d: d.digest()
            )

    trio.run(main)


def test_a_restore_is_refused_at_the_bound_and_the_metrics_say_so(tmp_path):
    async def main():
        async with (
            open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=1e9) as a,
            open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=1e9) as b,
        ):
            db = await a.create_database("kept", "keyvalue")
            await a.write(
                db.address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(20)]
            )
            roots = [db.manifest.cid, *(await a.read(db.address, lambda d: list(d.heads)))]
            await b.connect(a.addrs[0])
            b.max_storage = 1
            with pytest.raises(StorageLimitReached, match="cannot restore"):
                await b.restore(roots, [a.peer_id], timeout=10)
            assert not b.replicating(db.address)
            assert a.bitswap.stats.blocks_sent == 0  # refused before anything was asked
            storage = b.storage()
            text = exposition(
                node_families(
                    b,
                    [],
                    storage["used"],
                    "test",
                    max_storage=storage["max"],
                    storage_refusals=b.storage_refusals,
                )
            )
            assert re.search(r"(?m)^gridnode_storage_full 1$", text)
            assert re.search(r"(?m)^gridnode_storage_max_bytes 1$", text)
            assert re.search(r"(?m)^gridnode_storage_refusals_total 1$", text)
            b.max_storage = 0
            report = await b.restore(roots, [a.peer_id], timeout=30)
            assert report.applied == 20 and b.replicating(db.address)

    trio.run(main)


def test_a_node_started_at_its_bound_says_so_at_once(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="gridnode.quota")
    monkeypatch.setenv("GRIDNODE_MAX_STORAGE", "1")

    async def main():
        async with open_node(tmp_path / "alone", listen=LOOPBACK, announce_interval=1e9):
            messages = [r.getMessage() for r in caplog.records if r.name == "gridnode.quota"]
            assert len(messages) == 1 and messages[0].startswith("storage bound reached")

    trio.run(main)
