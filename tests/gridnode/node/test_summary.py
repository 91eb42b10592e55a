"""Announcements that grow with change, and summaries in the slow round (docs/spec.md §10)."""

from contextlib import AsyncExitStack

import trio

from gridnode.net import NetError
from gridnode.node import open_node, pulls, replication, summaries
from gridnode.repo import Repo
from protocols.gossip import (
    SUMMARY_PROTOCOL_ID,
    Summary,
    database_key,
    parse_summary,
)
from tests.gridnode.node.test_replication import LOOPBACK, converged, make_shared


def announced_on_db_topics(node):
    """Wrap ``node.host.publish``: the list it returns grows by the topic of each heads
    announcement the node publishes (replica statements and peer records go elsewhere)."""
    topics = []
    publish = node.host.publish

    async def counting(topic, data):
        if topic.startswith("/gridnode/db/"):
            topics.append(topic)
        await publish(topic, data)

    node.host.publish = counting
    return topics


def test_a_change_is_announced_and_pulled_and_then_not_announced_again(tmp_path, monkeypatch):
    """A write is announced (and once more at the next interval), and its peer gets it from
    that alone (no slow round runs here); then, unchanged, the database is not announced
    again, interval after interval."""
    monkeypatch.setattr(replication, "ANTI_ENTROPY_ROUNDS", 1_000_000)
    dirs, address = make_shared(tmp_path, ["a", "b"])

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(dirs[0], listen=LOOPBACK, announce_interval=0.2)
            )
            b = await stack.enter_async_context(
                open_node(dirs[1], listen=LOOPBACK, bootstrap=a.addrs, announce_interval=0.2)
            )
            await a.write(address, [{"op": "put", "key": "k", "value": 0}])
            await converged([a, b], address)
            # Settled: the pulls of the connection have ended, and the announcement b made of
            # what one of them applied (if it did: gossip may have been first) has had its
            # second chance at the next interval.
            with trio.fail_after(10):
                while a.replication.pulling(address) or b.replication.pulling(address):
                    await trio.sleep(0.05)
            await trio.sleep(0.5)
            published = announced_on_db_topics(b)
            # Nothing changed at b for a few intervals: nothing announced.
            await trio.sleep(1.0)
            assert published == []
            await b.write(address, [{"op": "put", "key": "k", "value": 1}])
            await converged([a, b], address, timeout=10)
            assert await a.read(address, lambda d: d.store.get("k")) == 1
            # The write's announcement and its second chance at the next interval; no more.
            await trio.sleep(2.0)
            assert published == [published[0]] * 2

    trio.run(main)


def test_a_missed_announcement_converges_through_the_summary(tmp_path):
    """Every announcement of b's lost: a hears of b's write from b's summary in the slow round
    (not from an announcement, nor from a pull of every database) and pulls it."""
    dirs, address = make_shared(tmp_path, ["a", "b"])

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(dirs[0], listen=LOOPBACK, announce_interval=0.2)
            )
            b = await stack.enter_async_context(
                open_node(dirs[1], listen=LOOPBACK, bootstrap=a.addrs, announce_interval=0.2)
            )
            await a.write(address, [{"op": "put", "key": "k", "value": "start"}])
            await converged([a, b], address)

            async def lost(topic, data):
                return None  # a fault: b's announcements never leave it

            b.host.publish = lost
            heard = a.stats.counters.summaries_received
            await b.write(address, [{"op": "put", "key": "from-b", "value": 1}])
            await converged([a, b], address, timeout=replication.ANTI_ENTROPY_ROUNDS * 0.2 * 5)
            assert await a.read(address, lambda d: d.store.get("from-b")) == 1
            assert a.stats.counters.summaries_received > heard

    trio.run(main)


def test_a_summary_names_public_databases_only(tmp_path):
    """A private database's name never leaves the node in a summary (docs/spec.md §10)."""
    with Repo(tmp_path / "a") as repo:
        public = repo.create_database("public", "keyvalue")
        secret = repo.create_database("secret", "keyvalue", readers=[])
        for database in (public, secret):
            database.write_many([{"op": "put", "key": "k", "value": 1}])
        keys = {database_key(public.manifest.cid)}, database_key(secret.manifest.cid)

    async def main():
        async with open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=60) as a:
            message = await a.replication.summaries.summary()
            names = {db for db, _heads in parse_summary(message).items}
            assert names == keys[0]
            assert keys[1] not in names

    trio.run(main)


def test_a_hostile_summary_is_bounded(tmp_path, monkeypatch):
    """A peer's summary claiming every database differs starts at most MAX_SUMMARY_PULLS
    pulls; databases the node does not hold start none; one sooner than SUMMARY_GAP after the
    last is not acted on; a malformed one is a strike."""
    monkeypatch.setattr(summaries, "MAX_SUMMARY_PULLS", 2)
    monkeypatch.setattr(summaries, "SUMMARY_GAP", 30.0)
    with Repo(tmp_path / "a") as repo:
        held = []
        for i in range(5):
            database = repo.create_database(f"db{i}", "keyvalue")
            database.write_many([{"op": "put", "key": "k", "value": i}])
            held.append(database_key(database.manifest.cid))

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=60)
            )
            b = await stack.enter_async_context(
                open_node(tmp_path / "b", listen=LOOPBACK, bootstrap=a.addrs, announce_interval=60)
            )
            with trio.fail_after(10):
                while b.peer_id not in a.peers():
                    await trio.sleep(0.05)
            pulls = []
            a.replication.summaries._start_pull = lambda peer, address: pulls.append(
                (peer, address)
            )
            bogus = [(key, b"\x00" * 8) for key in held]
            strangers = [(i.to_bytes(8, "big"), b"\x01" * 8) for i in range(1000)]

            async def send(data):
                try:
                    stream = await b.host.open_stream(a.peer_id, SUMMARY_PROTOCOL_ID)
                    try:
                        await stream.write(data)
                    finally:
                        await stream.close()
                except NetError:
                    pass  # a summary too soon: a resets the stream unread

            await send(Summary(tuple(strangers + bogus)).encode())
            with trio.fail_after(10):
                while a.stats.counters.summaries_received < 1:
                    await trio.sleep(0.05)
            await trio.sleep(0.2)
            assert len(pulls) == 2
            assert {peer for peer, _ in pulls} == {b.peer_id}
            # At once again: refused, unread, no pull.
            await send(Summary(tuple(bogus)).encode())
            with trio.fail_after(10):
                while a.stats.counters.summaries_refused < 1:
                    await trio.sleep(0.05)
            assert len(pulls) == 2
            # Malformed (once the gap has passed): a strike.
            a.replication.summaries._summarised.clear()
            await send(b"\xa1\x61t\x67summary")
            with trio.fail_after(10):
                while a.stats.strikes.get(b.peer_id, 0) < 1:
                    await trio.sleep(0.05)
            assert len(pulls) == 2

    trio.run(main)


def _many(tmp_path, names, count, *, written_by=("a",)):
    """Data dirs for ``names`` sharing ``count`` public keyvalue databases made by the first;
    the nodes in ``written_by`` hold one entry in each (the same one), the others none."""
    dirs = [tmp_path / name for name in names]
    repos = {name: Repo(d) for name, d in zip(names, dirs, strict=True)}
    addresses = []
    first = repos[names[0]]
    for i in range(count):
        database = first.create_database(f"db{i}", "keyvalue")
        entries = database.write_many([{"op": "put", "key": "k", "value": i}])
        blocks = database.blocks_of([e.cid for e in entries])
        for name in names[1:]:
            copy = repos[name].add_database(database.manifest)
            if name in written_by:
                copy.join_blocks(blocks)
        addresses.append(database.address)
    for repo in repos.values():
        repo.close()
    return dirs, addresses


def _count_pulls(node):
    """Wrap ``node.replication.pulls._pull_once``: the dict it returns counts the pulls run and the
    most ever running at once."""
    seen = {"pulls": 0, "running": 0, "most": 0}
    pull_once = node.replication.pulls._pull_once

    async def counting(peer, database):
        seen["pulls"] += 1
        seen["running"] += 1
        seen["most"] = max(seen["most"], seen["running"])
        try:
            return await pull_once(peer, database)
        finally:
            seen["running"] -= 1

    node.replication.pulls._pull_once = counting
    return seen


def test_nodes_that_hold_the_same_databases_meet_without_a_pull(tmp_path):
    """Two nodes with the same 30 public databases exchange summaries when they connect and
    pull none of them (before, a connection started a pull of every database on both sides:
    at 1,000 databases, 1,000 pulls, issue 21); then a database that differs is pulled."""
    dirs, addresses = _many(tmp_path, ["a", "b"], 30, written_by=("a", "b"))

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(dirs[0], listen=LOOPBACK, announce_interval=60)
            )
            pulls_a = _count_pulls(a)
            b = await stack.enter_async_context(
                open_node(dirs[1], listen=LOOPBACK, bootstrap=a.addrs, announce_interval=60)
            )
            pulls_b = _count_pulls(b)
            with trio.fail_after(10):
                while a.stats.counters.summaries_received < 1 or (
                    b.stats.counters.summaries_received < 1
                ):
                    await trio.sleep(0.05)
            await trio.sleep(0.5)
            assert pulls_a["pulls"] == pulls_b["pulls"] == 0
            # A write whose announcement is lost: a's next summary (its slow round, run here by
            # hand) makes b pull that database, and only it.
            a.host.publish = lambda topic, data: trio.sleep(0)
            await a.write(addresses[7], [{"op": "put", "key": "k", "value": "new"}])
            a.replication.summaries._summarised.clear()
            b.replication.summaries._summarised.clear()
            await a.replication._slow_round(1)
            await converged([a, b], addresses[7], timeout=10)
            assert await b.read(addresses[7], lambda d: d.store.get("k")) == "new"
            assert pulls_b["pulls"] == 1

    trio.run(main)


def test_pulls_at_a_connection_take_their_turn(tmp_path, monkeypatch):
    """A node that lacks 12 databases a peer has pulls all 12 when they connect, never more
    than PEER_PULLS at once from that peer. (No announcements: gossipsub would hand b a's
    recent ones when b joins the topics, and they would deliver some of the databases.)"""
    monkeypatch.setattr(pulls, "PEER_PULLS", 3)

    async def silent(self, replica):
        return None

    monkeypatch.setattr(replication.Replication, "_publish_heads", silent)
    dirs, addresses = _many(tmp_path, ["a", "b"], 12)

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(dirs[0], listen=LOOPBACK, announce_interval=60)
            )
            b = await stack.enter_async_context(
                open_node(dirs[1], listen=LOOPBACK, announce_interval=60)
            )
            pulls_b = _count_pulls(b)
            await b.connect(a.addrs[0])
            for address in addresses:
                await converged([a, b], address, timeout=20)
            assert pulls_b["pulls"] >= 12
            assert pulls_b["most"] <= 3
            with trio.fail_after(20):  # pulls a's summary asked for may still run
                while b.replication.pulls._in_flight:
                    await trio.sleep(0.05)
            assert b.replication.pulls._waiting == {}
            assert pulls_b["most"] <= 3

    trio.run(main)


def test_a_peer_without_summaries_is_pulled_from_for_every_database(tmp_path):
    """A peer that does not serve summaries (an older version) is pulled from for every
    database at a connection, as before summaries existed."""
    dirs, _addresses = _many(tmp_path, ["a", "b"], 4, written_by=("a", "b"))

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(dirs[0], listen=LOOPBACK, announce_interval=60)
            )
            a.host._host.remove_stream_handler(SUMMARY_PROTOCOL_ID)
            b = await stack.enter_async_context(
                open_node(dirs[1], listen=LOOPBACK, announce_interval=60)
            )
            pulls_b = _count_pulls(b)
            await b.connect(a.addrs[0])
            with trio.fail_after(20):
                while pulls_b["pulls"] < 4 or pulls_b["running"]:
                    await trio.sleep(0.05)
            assert pulls_b["pulls"] == 4

    trio.run(main)
