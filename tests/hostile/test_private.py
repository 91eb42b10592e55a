"""A private database stays private (issue 18, item 5): on live nodes on 127.0.0.1, a stranger
(its own libp2p host and key) asks the sync protocol for a private database's heads, entries and
manifest and gets ``refused`` and no byte of any entry; subscribed to the database's topic name it
hears nothing; an honest node that is not a reader cannot follow it; its reader and its writer
(their node keys named in the manifest) replicate it and get each other's new writes.

Before the fix (main, the database made private with the node-local flag ``Repo.set_private``):
the stranger got the heads, every entry (the secret value among them) and the manifest with
three requests, heard every announcement on the topic, and the outsider node followed it.
"""

from __future__ import annotations

import math
from contextlib import AsyncExitStack

import trio

from crdt.identity import Keypair
from gridnode import ops
from gridnode.net import open_host
from gridnode.net.identity import did_of_peer
from gridnode.node import Node, open_node
from gridnode.node.replication import REFUSALS_PER_MINUTE
from gridnode.repo import Repo
from protocols.gossip import topic_for
from protocols.reconcile import TOP
from protocols.sync import Event, Refused, Role, SyncConnection
from protocols.wire import PROTOCOL_ID, HeadsRequest, encode_message
from tests.hostile.attacker import LOOPBACK, converged

STRANGER_SEED = bytes([83]) * 32
SECRET = "the launch code is 0000"


def make_dirs(tmp_path):
    """Data dirs of the owner, a writer, a reader and an outsider; the private database's
    address (made by the owner, writer and reader named in its manifest)."""
    names = ["owner", "writer", "reader", "outsider"]
    dirs = {name: tmp_path / name for name in names}
    dids = {}
    for name, path in dirs.items():
        with Repo(path) as repo:
            dids[name] = repo.did
    with Repo(dirs["owner"]) as repo:
        db = repo.create_database(
            "secrets", "keyvalue", writers=[dids["writer"]], readers=[dids["reader"]]
        )
        db.write({"op": "put", "key": "code", "value": SECRET})
    return dirs, db.address


async def start(stack: AsyncExitStack, path, bootstrap=()) -> Node:
    return await stack.enter_async_context(
        open_node(path, listen=LOOPBACK, bootstrap=list(bootstrap), announce_interval=math.inf)
    )


async def ask(host, node: Node, request) -> tuple[list[Event], bytes]:
    """Send one request on a fresh sync stream; the events answering it and every byte read."""
    conn = SyncConnection(Role.PULLER)
    stream = await host.open_stream(node.peer_id, PROTOCOL_ID)
    received = b""
    events: list[Event] = []
    try:
        await stream.write(request(conn))
        with trio.fail_after(10):
            while conn.waiting:
                data = await stream.read(65536)
                if not data:
                    break
                received += data
                events += conn.receive(data, trio.current_time())
    finally:
        await stream.close()
    return events, received


def test_a_stranger_gets_refused_and_no_entry(tmp_path):
    dirs, address = make_dirs(tmp_path)

    async def main():
        async with AsyncExitStack() as stack:
            owner = await start(stack, dirs["owner"])
            db = owner.database(address)
            manifest_cid, head = db.manifest.cid, db.heads[0]
            entry_block = await owner.worker.run(db.block, head)
            host = await stack.enter_async_context(open_host(STRANGER_SEED, LOOPBACK))
            await host.connect(owner.addrs[0])
            requests = {
                "heads?": lambda c: c.ask_heads(manifest_cid, trio.current_time()),
                "sync": lambda c: c.sync(manifest_cid, [], [[TOP, "ids", []]], trio.current_time()),
                "want": lambda c: c.want(
                    manifest_cid, [manifest_cid, head], [], trio.current_time()
                ),
            }
            for name, request in requests.items():
                events, received = await ask(host, owner, request)
                assert events == [Refused("unknown database")], (name, events)
                assert SECRET.encode() not in received, name
                assert entry_block not in received and db.manifest.block not in received, name
            # Counted, and no strike: an honest peer may simply not be a reader.
            assert owner.stats.counters.private_refused == 3
            assert owner.stats.strikes.get(host.peer_id, 0) == 0
            # Bounded: past REFUSALS_PER_MINUTE a minute, the stream ends at the first refusal.
            for _ in range(REFUSALS_PER_MINUTE):
                await ask(host, owner, requests["heads?"])
            stream = await host.open_stream(owner.peer_id, PROTOCOL_ID)
            await stream.write(encode_message(HeadsRequest(manifest_cid)) * 4)
            answered = b""
            with trio.fail_after(10):
                while data := await stream.read(65536):
                    answered += data
            # One refusal, then the server ended the stream (it answered none of the rest).
            assert answered == SyncConnection(Role.SERVER).refuse("unknown database")
            assert owner.stats.strikes.get(host.peer_id, 0) == 0
            assert host.peer_id in owner.peers()
            # Neither bitswap nor the gateway serve its blocks (the manifest included).
            served = await owner.worker.run(owner.repo.served_blocks, [manifest_cid, head])
            assert served == {manifest_cid: None, head: None}

    trio.run(main)


def test_a_stranger_on_the_topic_hears_nothing(tmp_path):
    dirs, address = make_dirs(tmp_path)

    async def main():
        async with AsyncExitStack() as stack:
            owner = await stack.enter_async_context(
                open_node(dirs["owner"], listen=LOOPBACK, announce_interval=0.2)
            )
            manifest_cid = owner.database(address).manifest.cid
            host = await stack.enter_async_context(open_host(STRANGER_SEED, LOOPBACK))
            heard = []
            async with await host.subscribe(topic_for(manifest_cid)) as subscription:
                await host.connect(owner.addrs[0])

                async def listen():
                    async for message in subscription:
                        heard.append(message)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(listen)
                    for i in range(10):
                        await owner.write(address, [{"op": "put", "key": f"k{i}", "value": i}])
                        await trio.sleep(0.3)
                    nursery.cancel_scope.cancel()
            assert heard == []

    trio.run(main)


def test_reader_and_writer_replicate_and_an_outsider_cannot_follow(tmp_path):
    dirs, address = make_dirs(tmp_path)

    async def main():
        async with AsyncExitStack() as stack:
            owner = await start(stack, dirs["owner"])
            reader = await start(stack, dirs["reader"], owner.addrs)
            writer = await start(stack, dirs["writer"], owner.addrs)
            outsider = await start(stack, dirs["outsider"], owner.addrs)
            with trio.fail_after(20):
                while len(owner.peers()) < 3:
                    await trio.sleep(0.05)
            assert did_of_peer(reader.peer_id) == Keypair.from_seed(reader.repo.keypair.seed).did

            # The reader follows it (the manifest, then the entries) and sees it is private.
            await reader.follow(address, timeout=10)
            await converged([owner, reader], address)
            assert await reader.read(address, lambda d: d.store.get("code")) == SECRET
            info = await reader.read(address, ops.info)
            assert info["private"] and info["readers"] == [reader.repo.did]
            # Its new writes reach the reader (told directly: no topic, no periodic announce).
            await owner.write(address, [{"op": "put", "key": "new", "value": "from owner"}])
            await converged([owner, reader], address)

            # The writer follows it and writes; the owner and the reader get the write.
            await writer.follow(address, timeout=10)
            await converged([owner, writer], address)
            assert (await writer.read(address, ops.info))["private"]
            await writer.write(address, [{"op": "put", "key": "w", "value": "from writer"}])
            await converged([owner, writer, reader], address)
            assert await reader.read(address, lambda d: d.store.get("w")) == "from writer"

            # An honest node that is neither admin, writer nor reader: refused, not struck.
            try:
                await outsider.follow(address, timeout=3)
            except ops.UnknownDatabase:
                pass
            else:
                raise AssertionError("an outsider followed a private database")
            assert owner.stats.counters.private_refused >= 1
            assert owner.stats.strikes.get(outsider.peer_id, 0) == 0
            assert not outsider.replicating(address)

    trio.run(main)
