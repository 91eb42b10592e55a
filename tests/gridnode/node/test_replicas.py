"""Who holds what (gridnode/node/replicas.py): real nodes on 127.0.0.1 state what they hold,
signed, on each public database's replicas topic; every node counts the holders, in sync or
behind; private databases publish nothing; forged, foreign and flooding statements are refused;
statements expire (MockClock)."""

from contextlib import AsyncExitStack

import trio
import trio.testing

from crdt.identity import Keypair
from crdt.ipld.cid import CID
from gridnode.node import NodeStats, open_node
from gridnode.node.replicas import (
    STATEMENTS_PER_MINUTE,
    ReplicaStatements,
    statement_ttl,
)
from gridnode.repo import Repo
from protocols.replicas import ReplicaStatement, peer_id_of_key, sign_statement, topic_for
from tests.gridnode.node.test_replication import LOOPBACK, converged, make_shared

INTERVAL = 0.5


async def start(stack, path, bootstrap=()):
    return await stack.enter_async_context(
        open_node(path, listen=LOOPBACK, bootstrap=list(bootstrap), announce_interval=INTERVAL)
    )


async def wait_for(check, timeout=20.0):
    """``await check()`` until it is truthy; its last value in the failure otherwise."""
    last = None
    with trio.move_on_after(timeout):
        while True:
            last = await check()
            if last is True:
                return
            await trio.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {last}")


def test_holders_in_sync_then_behind_then_expired(tmp_path):
    dirs, address = make_shared(tmp_path, ["a", "b", "c"])

    async def main():
        async with AsyncExitStack() as stack:
            a = await start(stack, dirs[0])
            b = await start(stack, dirs[1], a.addrs)
            c = await start(stack, dirs[2], a.addrs)
            await a.write(address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(10)])
            await converged([a, b, c], address)
            database = await a.worker.run(a.repo.database, address)

            async def both_in_sync():
                found = await a.replica_summary(database)
                counts = (found["holders"], found["in_sync"], found["newest_entries"])
                return counts == (2, 2, 10) or found

            await wait_for(both_in_sync)
            # c stops replicating: its last statement stands (10 entries) until it expires,
            # while a and b go on to 15.
            await c.unfollow(address)
            await a.write(address, [{"op": "put", "key": f"n{i}", "value": i} for i in range(5)])
            await converged([a, b], address)

            async def c_behind():
                found = await a.replica_summary(database)
                return (
                    found["holders"] == 2
                    and found["in_sync"] == 1
                    and found["behind"] == {c.peer_id: 5}
                ) or found

            await wait_for(c_behind)
            found = await a.replica_summary(database)
            by_peer = {p["peer_id"]: p for p in found["peers"]}
            assert by_peer[b.peer_id]["in_sync"] and by_peer[b.peer_id]["entries"] == 15
            assert by_peer[c.peer_id]["entries"] == 10
            # b sees the same from where it stands (a is a holder there, this node not counted).
            found_b = await b.replica_summary(await b.worker.run(b.repo.database, address))
            assert found_b["holders"] == 2 and found_b["newest_entries"] == 15

            async def c_forgotten():
                found = await a.replica_summary(database)
                return (found["holders"], found["in_sync"], found["behind"]) == (1, 1, {}) or found

            await wait_for(c_forgotten, timeout=statement_ttl(INTERVAL) + 10)
            assert a.stats.counters.statements_published > 0
            assert a.stats.counters.rejected_statements == 0

    trio.run(main)


def test_a_private_database_publishes_no_statement(tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    with Repo(b_dir) as repo:
        b_did = repo.did
    with Repo(a_dir) as repo:
        db = repo.create_database("secrets", "keyvalue", writers=[b_did], readers=[])
        db.write({"op": "put", "key": "k", "value": 1})
        manifest, address = db.manifest, db.address
    with Repo(b_dir) as repo:
        repo.add_database(manifest)

    async def main():
        async with AsyncExitStack() as stack:
            a = await start(stack, a_dir)
            b = await start(stack, b_dir, a.addrs)
            await converged([a, b], address)
            await trio.sleep(3 * INTERVAL + 1)  # several rounds of statements, were there any
            found = await a.replica_summary(await a.worker.run(a.repo.database, address))
            assert found["private"] and found["holders"] == 0
            assert a.stats.counters.statements_published == 0
            assert b.stats.counters.statements_published == 0

    trio.run(main)


def test_forged_foreign_and_flooding_statements_are_refused(tmp_path):
    dirs, address = make_shared(tmp_path, ["a", "b", "m"])
    db = CID.parse(address.removeprefix("/gridnode/"))
    # Fewer lies than gossipsub's invalid-message allowance (10), so each reaches the validator.
    forged, foreign, replayed = 3, 3, 3

    async def main():
        async with AsyncExitStack() as stack:
            a = await start(stack, dirs[0])
            b = await start(stack, dirs[1], a.addrs)
            m = await start(stack, dirs[2], a.addrs)  # the attacker: a real node holding it
            await a.write(address, [{"op": "put", "key": "k", "value": 1}])
            await converged([a, b, m], address)
            database = await a.worker.run(a.repo.database, address)

            async def all_heard():
                found = await a.replica_summary(database)
                return found["in_sync"] == 2 or found

            await wait_for(all_heard)
            keypair: Keypair = m.repo.keypair
            heads = tuple(await a.worker.run(lambda: database.heads))
            topic = topic_for(db)
            late = 2**52  # later than any real statement: it would replace b's were it kept
            for i in range(forged):
                # m claims to be b holding a million entries, signed with m's own key.
                unsigned = ReplicaStatement(b.peer_id, db, heads, 1_000_000, late + i)
                lie = ReplicaStatement(
                    b.peer_id, db, heads, 1_000_000, late + i, keypair.sign(unsigned.signed_bytes())
                )
                await m.host.publish(topic, lie.encode())
            other = Keypair(bytes([200]) * 32)
            for i in range(foreign):
                # m's own name over a signature by a key that is not m's.
                unsigned = ReplicaStatement(m.peer_id, db, heads, 999, late + i)
                bad = ReplicaStatement(
                    m.peer_id, db, heads, 999, late + i, other.sign(unsigned.signed_bytes())
                )
                await m.host.publish(topic, bad.encode())

            for i in range(replayed):
                # A statement b really signed (say, before it left), sent on by m: were it
                # kept, m could keep a departed holder counted for ever.
                genuine = sign_statement(b.repo.keypair, db, heads, 1_000_000, late + i)
                await m.host.publish(topic, genuine.encode())

            async def lies_refused():
                count = a.stats.counters.rejected_statements
                return count == forged + foreign + replayed or count

            await wait_for(lies_refused)
            found = await a.replica_summary(database)
            by_peer = {p["peer_id"]: p for p in found["peers"]}
            # Nothing of the lies stands: b holds what b said, m what it signed.
            assert by_peer[b.peer_id]["entries"] == 1
            assert by_peer[m.peer_id]["entries"] == 1
            assert found["newest_entries"] == 1 and found["holders"] == 2
            # A flood of genuine statements: past the minute's allowance each is refused
            # unverified, and gossipsub then stops taking m's messages on the topic at all.
            for i in range(2 * STATEMENTS_PER_MINUTE):
                honest = sign_statement(keypair, db, heads, 1, late + i)
                await m.host.publish(topic, honest.encode())

            async def flood_refused():
                count = a.stats.counters.rejected_statements
                return (
                    count > forged + foreign + replayed
                    and a.host.gossip_score(m.peer_id, topic) < 0
                ) or (
                    count,
                    a.host.gossip_score(m.peer_id, topic),
                )

            await wait_for(flood_refused)
            assert len(a.replicas.aggregator) == 2  # one statement per peer, whatever m sent

    trio.run(main)


class _Host:
    """Enough of a host for the room's expiry: no topics, no peers."""

    peer_id = peer_id_of_key(Keypair(bytes([1]) * 32).public_key)


def test_statements_expire_on_the_nodes_clock():
    heard_from = Keypair(bytes([2]) * 32)
    db = CID.for_block(b"a manifest")

    async def main():
        async with trio.open_nursery() as nursery:
            room = ReplicaStatements(
                None,  # type: ignore[arg-type]  (no database is replicated: never read)
                _Host(),  # type: ignore[arg-type]
                nursery,
                None,  # type: ignore[arg-type]
                NodeStats(),
                keypair=Keypair(bytes([1]) * 32),
                addresses=list,
                announce_interval=lambda: 10.0,
            )
            ttl = statement_ttl(10.0)
            assert ttl == 305.0  # three slow rounds of 100 s, and 5 s
            statement = sign_statement(heard_from, db, [db], 3, 1)
            assert room.heard(statement.peer, statement.encode(), db)
            # Not from the peer it names: not kept.
            assert not room.heard(_Host.peer_id, statement.encode(), db)
            await trio.sleep(ttl - 1)
            await room.tick()
            assert room.aggregator.summary(db, trio.current_time()).holders == 1
            await trio.sleep(1)
            await room.tick()
            assert len(room.aggregator) == 0
            assert room.aggregator.summary(db, trio.current_time()).holders == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
