"""Catalogs on real nodes (127.0.0.1): a community node given only catalog addresses and the
primary's multiaddr follows what they list, takes up what is added, unfollows what is removed
(keeping the data), and never unfollows what the operator followed by hand or another catalog
lists; it dials the catalogs' seed peers."""

import time
from contextlib import AsyncExitStack

import trio

from gridnode.node import open_node
from protocols.catalog import database_key, marker_value, peer_key

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
INTERVAL = 0.5


async def _make_catalog(node, name):
    catalog = await node.create_database(name, "keyvalue")
    await node.write(
        catalog.address, [{"op": "put", "key": "catalog", "value": marker_value(name)}]
    )
    return catalog.address


async def _add(node, catalog, address):
    await node.write(catalog, [{"op": "put", "key": database_key(address), "value": {"name": "x"}}])


async def _remove(node, catalog, address):
    await node.write(catalog, [{"op": "del", "key": database_key(address)}])


async def _until(predicate, timeout=30.0):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def _same_digest(a, b, address, timeout=30.0):
    with trio.fail_after(timeout):
        while True:
            if b.replicating(address):
                da = await a.read(address, lambda d: d.digest())
                db = await b.read(address, lambda d: d.digest())
                if da == db:
                    return
            await trio.sleep(0.05)


def test_several_catalogs_add_later_remove(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(tmp_path / "primary", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            seed = await stack.enter_async_context(
                open_node(tmp_path / "seed", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            one = await _make_catalog(primary, "one")
            two = await _make_catalog(primary, "two")
            dbs = []
            for i in range(5):
                database = await primary.create_database(f"d{i}", "keyvalue")
                await primary.write(
                    database.address, [{"op": "put", "key": f"k{j}", "value": j} for j in range(20)]
                )
                dbs.append(database.address)
            d0, d1, d2, d3, hand = dbs
            # one: d0, d1, hand and a seed peer; two: d1, d2.
            for address in (d0, d1, hand):
                await _add(primary, one, address)
            for address in (d1, d2):
                await _add(primary, two, address)
            await primary.write(one, [{"op": "put", "key": peer_key(seed.addrs[0]), "value": {}}])

            follower = await stack.enter_async_context(
                open_node(
                    tmp_path / "follower",
                    listen=LOOPBACK,
                    bootstrap=primary.addrs,
                    announce_interval=INTERVAL,
                    catalogs=[one, two],
                )
            )
            for address in (d0, d1, d2, hand):
                await _same_digest(primary, follower, address)
            assert not follower.replicating(d3)
            # The catalog's seed peer was dialled.
            await _until(lambda: seed.peer_id in follower.peers())
            # The operator follows one of them by hand too: no catalog unfollows it from now on.
            await follower.follow(hand)
            assert sorted(follower.catalogs.listing(d1)) == sorted([one, two])

            # Added later: followed within about one announce interval.
            started = time.monotonic()
            await _add(primary, two, d3)
            await _until(lambda: follower.replicating(d3), timeout=10 * INTERVAL)
            assert time.monotonic() - started < 6 * INTERVAL
            await _same_digest(primary, follower, d3)

            # Removed from one: d0 is unfollowed (its data kept), d1 stays (two lists it),
            # hand stays (followed by hand).
            for address in (d0, d1, hand):
                await _remove(primary, one, address)
            await _until(lambda: not follower.replicating(d0), timeout=10 * INTERVAL)
            await trio.sleep(3 * INTERVAL)
            assert follower.replicating(d1) and follower.replicating(hand)
            assert follower.catalogs.listing(d1) == [two]
            kept = await follower.worker.run(follower.repo.database, d0)
            assert await follower.worker.run(len, kept) == 20

            # A database removed and listed again is followed again.
            await _add(primary, two, d0)
            await _until(lambda: follower.replicating(d0), timeout=10 * INTERVAL)

            # The operator unfollows a listed database by hand: no catalog follows it again,
            # even when the catalog changes, until the operator follows it.
            await follower.unfollow(d2)
            await _add(primary, one, d2)
            await trio.sleep(4 * INTERVAL)
            assert not follower.replicating(d2)
            await follower.follow(d2)
            assert follower.replicating(d2)

    trio.run(main)


def test_catalog_remembered_across_restart_without_peers(tmp_path):
    """A follower restarted with no peer reachable still reads its kept catalog and unfollows
    nothing; what it follows stays followed."""

    async def main():
        async with open_node(
            tmp_path / "primary", listen=LOOPBACK, announce_interval=INTERVAL
        ) as primary:
            catalog = await _make_catalog(primary, "c")
            database = await primary.create_database("d", "events")
            await primary.write(database.address, [{"op": "add", "value": 1}])
            await _add(primary, catalog, database.address)
            async with open_node(
                tmp_path / "follower",
                listen=LOOPBACK,
                bootstrap=primary.addrs,
                announce_interval=INTERVAL,
                catalogs=[catalog],
            ) as follower:
                await _same_digest(primary, follower, database.address)
        async with open_node(
            tmp_path / "follower", listen=LOOPBACK, announce_interval=INTERVAL, catalogs=[catalog]
        ) as follower:
            with trio.fail_after(10):
                await follower.catalogs.changed.wait()
            assert follower.replicating(database.address)
            assert follower.catalogs.as_json()[0]["databases"] == [database.address]

    trio.run(main)


def test_a_follow_is_not_held_up_by_peers_that_stall(tmp_path):
    """A follow asks its connected peers for the manifest at once: peers whose sync streams never
    answer (dialled first) do not keep it from the one that has it (sequential asks took
    MANIFEST_SECONDS per stalled peer, past the follow's timeout)."""
    from gridnode.net import open_host
    from protocols.wire import PROTOCOL_ID
    from tests.gridnode.net.hosts import seed

    async def stall(stream):
        await trio.sleep_forever()

    async def main():
        async with AsyncExitStack() as stack:
            stallers = []
            for i in range(3):
                host = await stack.enter_async_context(open_host(seed(40 + i), LOOPBACK))
                host.set_stream_handler(PROTOCOL_ID, stall)
                stallers.append(host)
            keeper = await stack.enter_async_context(
                open_node(tmp_path / "keeper", listen=LOOPBACK)
            )
            database = await keeper.create_database("d", "keyvalue")
            follower = await stack.enter_async_context(
                open_node(tmp_path / "follower", listen=LOOPBACK)
            )
            for host in stallers:
                assert await follower.connect(host.addrs[0]) is not None
            assert await follower.connect(keeper.addrs[0]) is not None
            started = time.monotonic()
            await follower.follow(database.address, timeout=5)
            assert time.monotonic() - started < 5
            assert follower.replicating(database.address)

    trio.run(main)


def test_drop_unlisted_deletes_what_a_catalog_made_the_node_follow(tmp_path):
    """With ``drop_unlisted = true`` a database no followed catalog lists any more is deleted
    (its manifest, entries and tables), not only unfollowed; listed again, it is fetched anew."""
    from gridnode.errors import UnknownDatabase

    follower_dir = tmp_path / "follower"
    follower_dir.mkdir()
    (follower_dir / "gridnode.toml").write_text("drop_unlisted = true\n")

    async def main():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(tmp_path / "primary", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            catalog = await _make_catalog(primary, "c")
            database = await primary.create_database("d", "keyvalue")
            await primary.write(
                database.address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(30)]
            )
            await _add(primary, catalog, database.address)
            follower = await stack.enter_async_context(
                open_node(
                    follower_dir,
                    listen=LOOPBACK,
                    bootstrap=primary.addrs,
                    announce_interval=INTERVAL,
                    catalogs=[catalog],
                )
            )
            await _same_digest(primary, follower, database.address)
            manifest = database.manifest.cid.bytes
            assert await follower.worker.run(follower.repo.sql.get_block, manifest) is not None

            await _remove(primary, catalog, database.address)
            await _until(lambda: not follower.replicating(database.address), timeout=10)

            def gone():
                try:
                    follower.repo.database(database.address)
                except UnknownDatabase:
                    return follower.repo.sql.get_block(manifest) is None
                return False

            with trio.fail_after(10):
                while not await follower.worker.run(gone):
                    await trio.sleep(0.05)
            listed = [a for a, _n, _s in await follower.worker.run(follower.repo.databases)]
            assert database.address not in listed

            await _add(primary, catalog, database.address)
            await _same_digest(primary, follower, database.address)

    trio.run(main)


def test_refused_items_are_logged_a_few_lines_a_minute(caplog):
    """A catalog full of malformed items costs a few log lines per catalog and minute, not one
    per item (the catalog comes from a peer like any database)."""
    import logging

    from gridnode.logs import LogLimiter
    from gridnode.node.catalogs import Catalogs
    from protocols.catalog import parse_catalog

    view = parse_catalog(
        [("catalog", marker_value("c"))] + [(f"db:bad{i}", {}) for i in range(500)]
    )
    assert len(view.refused) == 500
    room = object.__new__(Catalogs)
    room._refusals = LogLimiter(lines=3, interval=60.0)

    async def main():
        with caplog.at_level(logging.WARNING, logger="gridnode.node.catalogs"):
            for _ in range(10):
                room._log_refused("/gridnode/x", view)

    trio.run(main)
    assert 1 <= len(caplog.records) <= 3
