"""Signed snapshots between real nodes on 127.0.0.1: publish, follow from one and read at once,
verify the history behind it; and every way a snapshot can be wrong (forged, untrusted, a wrong
chunk, stale, a state the history does not reproduce), each ending with reads from the verified
history and the signer reported."""

import time
from contextlib import AsyncExitStack

import trio

from crdt.database import Database
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.snapshot import DOMAIN, build_snapshot
from gridnode.node import open_node
from gridnode.storage.snapshots import delete_blocks, set_published_root
from tests.gridnode.node.test_replication import converged

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
KEYS = 300


async def _pair(stack, tmp_path, *, keys=KEYS, config_b=""):
    a = await stack.enter_async_context(
        open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=0.5)
    )
    if config_b:
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "gridnode.toml").write_text(config_b)
    b = await stack.enter_async_context(
        open_node(tmp_path / "b", listen=LOOPBACK, bootstrap=a.addrs, announce_interval=0.5)
    )
    db = await a.create_database("records", "keyvalue")
    for start in range(0, keys, 100):
        await a.write(
            db.address,
            [{"op": "put", "key": f"k{i}", "value": i} for i in range(start, start + 100)],
        )
    with trio.fail_after(10):
        while not b.peers():
            await trio.sleep(0.05)
    return a, b, db.address


async def _offer(node, address, built):
    """Make ``node`` offer ``built`` as its newest snapshot of ``address`` (as a publisher that
    went wrong would)."""

    def keep():
        sql = node.repo.sql
        with sql.transaction():
            for cid, block in built.chunks:
                sql.put_block(cid.bytes, block)
            sql.put_block(built.root_cid.bytes, built.root)
            set_published_root(sql, address, built.root_cid.bytes)

    await node.worker.run(keep)


async def _memory_copy(node, address):
    """The database ``node`` holds, as a crdt Database in memory (to build a doctored state)."""

    def copy():
        stored = node.repo.database(address)
        db = Database(stored.manifest)
        db.join(list(stored.entries()))
        return db

    return await node.worker.run(copy)


async def _wait_state(node, address, state, timeout=30):
    with trio.fail_after(timeout):
        while (node.snapshots.status(address) or {}).get("state") != state:
            await trio.sleep(0.05)


def test_a_fresh_follower_serves_reads_from_the_snapshot_then_verifies_it(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            published = await a.snapshots.publish(address)
            assert published["entries"] == KEYS
            assert published["signer"] == a.repo.did
            followed = await b.follow(address)
            # At once: the reads come from the snapshot, whatever sync has done yet.
            status = b.snapshots.status(address)
            assert status["state"] == "serving"
            assert status["status"].startswith("serving from snapshot, history verified ")
            assert followed.view is not None
            assert await b.read(address, lambda d: d.store.get(f"k{KEYS - 1}")) == KEYS - 1
            assert await b.read(address, lambda d: len(d.store)) == KEYS
            await _wait_state(b, address, "verified")
            assert followed.view is None
            assert b.snapshots.status(address)["verified_percent"] == 100
            await converged([a, b], address)
            assert await b.read(address, lambda d: d.store.get("k7")) == 7

    trio.run(main)


def test_history_moved_past_the_snapshot_is_verified_at_its_heads(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            await a.snapshots.publish(address)
            await a.write(address, [{"op": "put", "key": "later", "value": 1}])
            await b.follow(address)
            await _wait_state(b, address, "verified")
            await converged([a, b], address)
            assert await b.read(address, lambda d: d.store.get("later")) == 1

    trio.run(main)


def test_no_snapshot_verifies_everything_before_serving(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            await a.snapshots.publish(address)
            followed = await b.follow(address, snapshot=False)
            assert b.snapshots.status(address) is None
            assert followed.view is None
            await converged([a, b], address)

    trio.run(main)


def test_a_snapshot_whose_state_the_history_does_not_reproduce_is_dropped(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            # The admin signs a state with one value changed: every check of the snapshot
            # alone passes (its rows give the digest it signs), only the history disagrees. The
            # state digest (spec §17) hashes the deciding entry, not the value, so the rows
            # themselves are what the history's differ in.
            doctored = await _memory_copy(a, address)
            row = doctored.space.table("keyvalue.keys").get(b"k5")
            doctored.space.table("keyvalue.keys").put(b"k5", [row[0], row[1], "forged"])
            await _offer(
                a, address, build_snapshot(doctored, a.repo.keypair, created=int(time.time()))
            )
            followed = await b.follow(address)
            assert b.snapshots.status(address)["state"] == "serving"
            assert await b.read(address, lambda d: d.store.get("k5")) == "forged"
            await _wait_state(b, address, "dropped")
            status = b.snapshots.status(address)
            assert "other rows than it carries" in status["status"]
            assert a.repo.did in status["status"]  # the signer, reported
            assert followed.view is None
            await converged([a, b], address)
            assert await b.read(address, lambda d: d.store.get("k5")) == 5
            events = [e.text for e in b.stats.events if e.kind == "snapshot"]
            assert any("dropped" in t and a.repo.did in t for t in events)

    trio.run(main)


def test_rows_that_are_not_the_state_the_root_signs_are_dropped(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            # The root signs the honest digests but lists chunks of a doctored state: the
            # history would agree with the digests, so the rows themselves must be checked.
            honest = build_snapshot(await _memory_copy(a, address), a.repo.keypair, created=0)
            doctored = await _memory_copy(a, address)
            row = doctored.space.table("keyvalue.keys").get(b"k9")
            doctored.space.table("keyvalue.keys").put(b"k9", [row[0], row[1], "forged"])
            rows = build_snapshot(doctored, a.repo.keypair, created=0)
            body = decode(honest.root)["snapshot"]
            body["chunks"] = [c for c, _ in rows.chunks]
            body["rows"] = rows.header.rows
            body["created"] = int(time.time())
            root = encode(
                {"snapshot": body, "signature": a.repo.keypair.sign(DOMAIN + encode(body))}
            )
            forged = type(honest)(CID.for_block(root), root, honest.header, rows.chunks)
            await _offer(a, address, forged)
            followed = await b.follow(address)
            await _wait_state(b, address, "dropped")
            # Value-blind state digests (spec §17) let such rows pass the check of the rows
            # against the root; the history's rows at its heads then differ from them.
            reason = b.snapshots.status(address)["status"]
            assert "not the state it signs" in reason or "other rows than it carries" in reason
            assert followed.view is None
            await converged([a, b], address)
            assert await b.read(address, lambda d: d.store.get("k9")) == 9

    trio.run(main)


def test_a_snapshot_of_heads_the_history_never_holds_is_dropped_as_stale(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            # Heads nobody ever announced: an entry signed but never published.
            doctored = await _memory_copy(a, address)
            doctored.write(a.repo.keypair, {"op": "put", "key": "ghost", "value": 1})
            await _offer(
                a, address, build_snapshot(doctored, a.repo.keypair, created=int(time.time()))
            )
            followed = await b.follow(address)
            assert await b.read(address, lambda d: d.store.get("ghost")) == 1
            await _wait_state(b, address, "dropped")
            assert "does not hold its heads" in b.snapshots.status(address)["status"]
            assert followed.view is None
            assert await b.read(address, lambda d: d.store.get("ghost")) is None

    trio.run(main)


def test_a_forged_or_untrusted_snapshot_is_never_served(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            copy = await _memory_copy(a, address)
            # Signed by a key that is no admin of the database.
            stranger = Keypair.from_seed(bytes([77]) * 32)
            await _offer(a, address, build_snapshot(copy, stranger, created=int(time.time())))
            followed = await b.follow(address)
            assert b.snapshots.status(address) is None
            assert followed.view is None
            assert any("not an admin" in e.text for e in b.stats.events)
            await converged([a, b], address)

    trio.run(main)


def test_a_snapshot_with_a_forged_signature_is_refused(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            built = build_snapshot(
                await _memory_copy(a, address), a.repo.keypair, created=int(time.time())
            )
            top = decode(built.root)
            top["snapshot"]["entries"] = 1  # changed after signing
            root = encode(top)
            forged = type(built)(CID.for_block(root), root, built.header, built.chunks)
            await _offer(a, address, forged)
            followed = await b.follow(address)
            assert b.snapshots.status(address) is None
            assert followed.view is None
            assert any("signature" in e.text for e in b.stats.events if e.kind == "refused")

    trio.run(main)


def test_a_wrong_chunk_stops_the_snapshot_not_the_follow(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path)
            copy = await _memory_copy(a, address)
            built = build_snapshot(copy, a.repo.keypair, created=int(time.time()), chunk_bytes=1024)
            assert len(built.chunks) > 1
            await _offer(a, address, built)
            bad_cid = built.chunks[-1][0]

            def swap():
                sql = a.repo.sql
                with sql.transaction():
                    delete_blocks(sql, [bad_cid.bytes])
                    sql.put_block(bad_cid.bytes, built.chunks[0][1])

            await a.worker.run(swap)
            followed = await b.follow(address)
            assert b.snapshots.status(address) is None
            assert followed.view is None
            assert any("chunk" in e.text for e in b.stats.events if e.kind == "refused")
            await converged([a, b], address)

    trio.run(main)


def test_a_snapshot_younger_than_the_minimum_age_is_not_used(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path, config_b="snapshot_min_age = 3600\n")
            await a.snapshots.publish(address)
            followed = await b.follow(address)
            assert b.snapshots.status(address) is None
            assert followed.view is None
            assert any("younger" in e.text for e in b.stats.events)

    trio.run(main)


def test_a_snapshot_older_than_the_maximum_age_is_not_used(tmp_path):
    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(stack, tmp_path, config_b="snapshot_max_age = 60\n")
            old = int(time.time()) - 3600
            await _offer(
                a,
                address,
                build_snapshot(await _memory_copy(a, address), a.repo.keypair, created=old),
            )
            await b.follow(address)
            assert b.snapshots.status(address) is None
            assert any("older" in e.text for e in b.stats.events)

    trio.run(main)


def test_a_trusted_signer_that_is_no_admin_is_served(tmp_path):
    designated = Keypair.from_seed(bytes([78]) * 32)

    async def main():
        async with AsyncExitStack() as stack:
            a, b, address = await _pair(
                stack, tmp_path, config_b=f'snapshot_signers = ["{designated.did}"]\n'
            )
            copy = await _memory_copy(a, address)
            await _offer(a, address, build_snapshot(copy, designated, created=int(time.time())))
            await b.follow(address)
            assert b.snapshots.status(address)["signer"] == designated.did
            await _wait_state(b, address, "verified")

    trio.run(main)


def test_snapshots_on_a_schedule_follow_the_heads(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "gridnode.toml").write_text("snapshot_interval = 0.2\n")

    async def main():
        async with open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=0.5) as a:
            db = await a.create_database("records", "keyvalue")
            await a.write(db.address, [{"op": "put", "key": "x", "value": 1}])

            async def published():
                return await a.worker.run(lambda: a.snapshots.published(db))

            with trio.fail_after(10):
                while (first := await published()) is None:
                    await trio.sleep(0.05)
            await a.write(db.address, [{"op": "put", "key": "y", "value": 2}])
            with trio.fail_after(10):
                while (second := await published())["root"] == first["root"]:
                    await trio.sleep(0.05)
            assert second["entries"] == 2
            # The replaced snapshot's root block is gone from the file.
            old = CID.parse(first["root"]).bytes
            assert await a.worker.run(a.repo.sql.get_block, old) is None

    trio.run(main)


def test_the_domain_separates_snapshot_signatures():
    assert DOMAIN.startswith(b"gridnode snapshot")


def test_a_database_a_catalog_lists_starts_from_its_snapshot(tmp_path):
    """A catalog's new replica follows what it lists the way 'db follow' does: from the newest
    trusted snapshot, reads at once, the history verified behind it."""
    from tests.gridnode.node.test_catalogs import INTERVAL, _add, _make_catalog

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            catalog = await _make_catalog(a, "c")
            db = await a.create_database("records", "keyvalue")
            await a.write(
                db.address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(50)]
            )
            await _add(a, catalog, db.address)
            await a.snapshots.publish(db.address)
            b = await stack.enter_async_context(
                open_node(
                    tmp_path / "b",
                    listen=LOOPBACK,
                    bootstrap=a.addrs,
                    announce_interval=INTERVAL,
                    catalogs=[catalog],
                )
            )
            with trio.fail_after(30):
                while b.snapshots.status(db.address) is None:
                    await trio.sleep(0.05)
            await _wait_state(b, db.address, "verified")
            await converged([a, b], db.address)
            assert await b.read(db.address, lambda d: d.store.get("k49")) == 49

    trio.run(main)
