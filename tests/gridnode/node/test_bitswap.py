"""Bitswap between real hosts on 127.0.0.1: a gridnode serves the blocks of the databases it
replicates and does not keep private, fetches a database from bitswap peers (``Node.restore``),
and shrugs off a hostile peer. The JavaScript and Kubo peers are in tests/interop."""

from __future__ import annotations

import os
import re
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio

from crdt.ipld.cid import CID
from gridnode.api.metrics import exposition, node_families
from gridnode.net import open_host
from gridnode.node import open_node
from gridnode.repo import Repo
from protocols.bitswap import (
    DONT_HAVE,
    HAVE,
    PROTOCOLS,
    WANT_BLOCK,
    WANT_HAVE,
    BitswapMessage,
    WantEntry,
    decode_message,
    frame_message,
)
from protocols.wire import FrameDecoder

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
QUIET = 1e9  # no periodic announcements: what moves, moves by bitswap


def make_node_dir(path: Path, entries: int = 30) -> dict:
    """A data dir with a public database of ``entries`` writes, a private one and an unfollowed
    one; what the tests need to know about them."""
    repo = Repo(path)
    public = repo.create_database("public", "keyvalue")
    public.write_many([{"op": "put", "key": f"k{i}", "value": i} for i in range(entries)])
    private = repo.create_database("private", "keyvalue")
    private.write({"op": "put", "key": "secret", "value": 1})
    repo.set_private(private.address, True)
    gone = repo.create_database("gone", "keyvalue")
    gone.write({"op": "put", "key": "old", "value": 1})
    repo.set_replicated(gone.address, False)
    facts = {
        "address": public.address,
        "roots": [public.manifest.cid, *public.heads],
        "digest": public.digest(),
        "entries": [e.cid for e in public.entries()],
        "private": [private.manifest.cid, *private.heads],
        "gone": [gone.manifest.cid, *gone.heads],
    }
    repo.close()
    return facts


class RawPeer:
    """A bare libp2p host speaking bitswap by hand: what it receives lands in ``received``."""

    def __init__(self, host):
        self.host = host
        self.received: list[BitswapMessage] = []
        self.arrived = trio.Event()
        for protocol in PROTOCOLS:
            host.set_stream_handler(protocol, self._serve)

    async def _serve(self, stream):
        decoder = FrameDecoder()
        while data := await stream.read(65536):
            for payload in decoder.feed(data):
                self.received.append(decode_message(payload))
                self.arrived.set()

    async def send(self, peer_id: str, *frames: bytes):
        stream = await self.host.open_stream(peer_id, PROTOCOLS)
        for data in frames:
            await stream.write(data)
        await stream.close()

    async def wait_for(self, predicate, timeout: float = 10.0):
        with trio.fail_after(timeout):
            while not predicate(self.received):
                self.arrived = trio.Event()
                await self.arrived.wait()

    def blocks(self) -> dict[CID, bytes]:
        return {c: b for m in self.received for c, b in m.blocks}

    def presences(self) -> dict[CID, int]:
        return {c: k for m in self.received for c, k in m.presences}


@asynccontextmanager
async def node_and_raw_peer(path: Path):
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            open_node(path, listen=LOOPBACK, announce_interval=QUIET)
        )
        host = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
        await host.connect(node.addrs[0])
        yield node, RawPeer(host)


def test_restore_fetches_a_whole_database_by_bitswap(tmp_path):
    facts = make_node_dir(tmp_path / "a", entries=300)

    async def main():
        async with (
            open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=QUIET) as a,
            open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=QUIET) as b,
        ):
            await b.connect(a.addrs[0])
            report = await b.restore(facts["roots"], [a.peer_id], timeout=60)
            assert report.applied == 300 and report.rejected == [] and report.pending == 0
            assert await b.read(facts["address"], lambda d: d.digest()) == facts["digest"]
            assert b.replicating(facts["address"])
            assert b.stats.counters.applied["bitswap"] == 300
            assert a.bitswap.stats.blocks_sent == 301  # the entries and the manifest, once each
            assert b.bitswap.stats.blocks_received == 301
            assert b.bitswap.stats.unasked_blocks == 0
            # And /metrics says so.
            text = exposition(node_families(b, [], 0, "test"))
            found = re.search(r"(?m)^gridnode_bitswap_blocks_received_total (\S+)$", text)
            assert found is not None and float(found.group(1)) == 301

    trio.run(main)


def test_private_and_unfollowed_databases_are_never_served(tmp_path):
    facts = make_node_dir(tmp_path / "a")

    async def main():
        async with node_and_raw_peer(tmp_path / "a") as (node, peer):
            hidden = facts["private"] + facts["gone"]
            shown = facts["roots"][:2]
            wants = [WantEntry(c, 1, False, WANT_BLOCK, True) for c in hidden + shown]
            await peer.send(node.peer_id, frame_message(BitswapMessage(wants=tuple(wants))))
            await peer.wait_for(lambda r: len(peer.blocks()) + len(peer.presences()) >= 6)
            assert set(peer.blocks()) == set(shown)
            assert peer.presences() == dict.fromkeys(hidden, DONT_HAVE)
            # A fetch by a gridnode gets nothing either: every peer said DONT_HAVE.
            assert node.bitswap is not None

    trio.run(main)


def test_want_have_and_a_want_that_waits(tmp_path):
    facts = make_node_dir(tmp_path / "a", entries=3)

    async def main():
        async with node_and_raw_peer(tmp_path / "a") as (node, peer):
            head = facts["roots"][1]
            await peer.send(
                node.peer_id,
                frame_message(BitswapMessage(wants=(WantEntry(head, 1, False, WANT_HAVE, True),))),
            )
            await peer.wait_for(lambda r: head in peer.presences())
            assert peer.presences()[head] == HAVE and peer.blocks() == {}
            # A block the node lacks, wanted without asking for DONT_HAVE: no answer; the want
            # waits in the node's ledger (the next test sees it answered).
            unknown = CID.for_block(b"\xa1\x61\x62\x01")
            await peer.send(
                node.peer_id,
                frame_message(BitswapMessage(wants=(WantEntry(unknown, 1),))),
            )
            await trio.sleep(0.3)
            assert node.bitswap.wanted_by(peer.host.peer_id) == [unknown]
            assert unknown not in peer.blocks() and unknown not in peer.presences()

    trio.run(main)


def test_a_waiting_want_is_answered_when_the_entry_arrives(tmp_path):
    facts = make_node_dir(tmp_path / "a", entries=5)

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=QUIET)
            )
            b = await stack.enter_async_context(
                open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=QUIET)
            )
            host = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
            peer = RawPeer(host)
            await b.connect(a.addrs[0])
            await host.connect(b.addrs[0])
            # b does not have a's database yet; the raw peer wants its head from b.
            head = facts["roots"][1]
            await peer.send(b.peer_id, frame_message(BitswapMessage(wants=(WantEntry(head, 1),))))
            with trio.fail_after(10):
                while b.bitswap.wanted_by(host.peer_id) != [head]:
                    await trio.sleep(0.02)
            await b.restore(facts["roots"], [a.peer_id], timeout=30)
            await peer.wait_for(lambda r: head in peer.blocks())
            assert b.bitswap.wanted_by(host.peer_id) == []

    trio.run(main)


def test_a_hostile_bitswap_peer_is_struck_and_changes_nothing(tmp_path):
    facts = make_node_dir(tmp_path / "a", entries=5)

    async def main():
        async with node_and_raw_peer(tmp_path / "a") as (node, peer):
            before = await node.read(facts["address"], lambda d: (d.digest(), len(d)))
            # Blocks nobody asked for (one a valid entry of another database) are dropped.
            stray = [(CID.for_block(b"\xa0"), b"\xa0")]
            await peer.send(node.peer_id, frame_message(BitswapMessage(blocks=tuple(stray))))
            with trio.fail_after(10):
                while node.bitswap.stats.unasked_blocks < 1:
                    await trio.sleep(0.02)
            # Garbage, then a frame longer than the 4 MiB limit.
            await peer.send(node.peer_id, b"\x05\x0a\x03\xff\xff\xff")
            await peer.send(node.peer_id, b"\xff\xff\xff\x7f")
            with trio.fail_after(10):
                while node.stats.strikes.get(peer.host.peer_id, 0) < 2:
                    await trio.sleep(0.02)
            assert node.bitswap.stats.violations == 2
            assert any("bitswap" in e.text for e in node.stats.events if e.kind == "strike")
            after = await node.read(facts["address"], lambda d: (d.digest(), len(d)))
            assert after == before
            # It still serves an honest request.
            head = facts["roots"][1]
            await peer.send(
                node.peer_id, frame_message(BitswapMessage(wants=(WantEntry(head, 1),)))
            )
            await peer.wait_for(lambda r: head in peer.blocks())

    trio.run(main)


def test_a_fetch_takes_no_forged_block(tmp_path):
    """A peer that answers a want with some other block: the fetch does not take it (the CID is
    computed from the data) and ends with nothing once the time is up."""
    wanted = CID.for_block(b"\xa1\x61\x61\x01")

    async def main():
        async with AsyncExitStack() as stack:
            node = await stack.enter_async_context(
                open_node(tmp_path / "n", listen=LOOPBACK, announce_interval=QUIET)
            )
            host = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
            liar = RawPeer(host)
            await host.connect(node.addrs[0])

            async def answer_with_lies():
                await liar.wait_for(lambda r: any(m.wants for m in r))
                forged = b"\xa1\x61\x61\x02"
                await liar.send(
                    node.peer_id,
                    frame_message(BitswapMessage(blocks=((CID.for_block(forged), forged),))),
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_with_lies)
                got = await node.bitswap.fetch([wanted], [host.peer_id], timeout=2)
            assert got == {}
            assert node.bitswap.stats.unasked_blocks == 1
            # Cancelled at the end.
            await liar.wait_for(lambda r: any(e.cancel for m in r for e in m.wants))
            asked = [e for m in liar.received for e in m.wants]
            assert asked[0].cid == wanted and asked[0].send_dont_have and not asked[0].cancel
            assert [e.cid for e in asked if e.cancel] == [wanted]

    trio.run(main)


def test_bitswap_off_serves_nothing(tmp_path):
    make_node_dir(tmp_path / "a", entries=1)
    config = tmp_path / "a" / "gridnode.toml"
    config.write_text(re.sub(r"(?m)^(# )?bitswap = true", "bitswap = false", config.read_text()))

    async def main():
        async with node_and_raw_peer(tmp_path / "a") as (node, peer):
            assert node.bitswap is None
            from gridnode.errors import ProtocolNotSupported

            try:
                await peer.host.open_stream(node.peer_id, PROTOCOLS)
            except ProtocolNotSupported:
                pass
            else:
                raise AssertionError("a node with bitswap off accepted a bitswap stream")

    trio.run(main)


def test_db_create_private_offline_and_in_a_running_node(tmp_path):
    """``db create --private`` (offline) and ``Node.create_database(private=True)`` record the choice, ``db info`` shows it,
    and the gateway and bitswap then leave that database out."""
    from tests.gridnode.test_cli_db import json_out, out

    out(tmp_path / "d", "init")
    offline = out(tmp_path / "d", "db", "create", "hidden", "--type", "keyvalue", "--private")
    shown = out(tmp_path / "d", "db", "create", "shown", "--type", "keyvalue")
    assert json_out(tmp_path / "d", "db", "info", offline.strip())["private"] is True
    assert json_out(tmp_path / "d", "db", "info", shown.strip())["private"] is False
    repo = Repo(tmp_path / "d")
    try:
        assert [d.address for d in repo.served()] == [shown.strip()]
        hidden = repo.database(offline.strip()).manifest.cid
        assert repo.served_blocks([hidden]) == {hidden: None}
    finally:
        repo.close()

    async def main():
        async with open_node(tmp_path / "d", listen=LOOPBACK, announce_interval=QUIET) as node:
            db = await node.create_database("later", "events", private=True)
            assert await node.worker.run(node.repo.private, db.address)
            found = await node.worker.run(node.repo.served_blocks, [db.manifest.cid])
            assert found == {db.manifest.cid: None}

    trio.run(main)


def test_a_want_list_flood_is_bounded(tmp_path):
    """131,072 wants for blocks nobody has: the node remembers at most 4096 of them for the
    peer, answers nothing it was not asked to, and still serves an honest want."""
    facts = make_node_dir(tmp_path / "a", entries=2)

    async def main():
        async with node_and_raw_peer(tmp_path / "a") as (node, peer):
            for _ in range(8):
                flood = tuple(
                    WantEntry(CID.for_block(os.urandom(8), "raw"), 1) for _ in range(16384)
                )
                await peer.send(node.peer_id, frame_message(BitswapMessage(wants=flood)))
            with trio.fail_after(30):
                while node.bitswap.stats.wants_received < 8 * 16384:
                    await trio.sleep(0.05)
            assert len(node.bitswap.wanted_by(peer.host.peer_id)) == 4096
            head = facts["roots"][1]
            await peer.send(
                node.peer_id, frame_message(BitswapMessage(wants=(WantEntry(head, 1),)))
            )
            await peer.wait_for(lambda r: head in peer.blocks(), timeout=30)
            assert peer.presences() == {}  # DONT_HAVE was never asked for

    trio.run(main)


def test_inbound_streams_per_peer_are_capped(tmp_path):
    from gridnode.errors import StreamError
    from gridnode.net.bitswap import BitswapConfig

    make_node_dir(tmp_path / "a", entries=1)
    cap = BitswapConfig().max_streams

    async def main():
        async with node_and_raw_peer(tmp_path / "a") as (node, peer):
            streams = [await peer.host.open_stream(node.peer_id, PROTOCOLS) for _ in range(cap)]
            with trio.fail_after(10):
                while node.bitswap._peers[peer.host.peer_id].streams_in < cap:
                    await trio.sleep(0.02)
            # One more is reset by the node (as soon as it is negotiated, or on the first read).
            with trio.fail_after(10):
                try:
                    extra = await peer.host.open_stream(node.peer_id, PROTOCOLS)
                    data = await extra.read(10)
                except StreamError:
                    data = None
            assert data is None
            for stream in streams:
                await stream.close()

    trio.run(main)


def test_a_restore_from_a_lying_peer_applies_nothing_invalid(tmp_path):
    """The peer serves a database whose head (signed by a writer) links a parent with a forged
    signature and an outsider's entry: each block hashes to its CID, so bitswap takes them,
    and the restore's checks refuse them; nothing invalid is applied."""
    from crdt.entry import create_entry
    from crdt.identity import Keypair
    from crdt.ipld import decode, encode
    from crdt.manifest import create_manifest

    writer, outsider = Keypair.from_seed(b"w" * 32), Keypair.from_seed(b"o" * 32)
    manifest = create_manifest("lies", "events", admins=[writer.did], writers=[writer.did])
    root = create_entry(writer, db=manifest.cid, clock=1, payload={"op": "add", "value": 0})
    body = decode(
        create_entry(
            writer, db=manifest.cid, clock=2, next=[root.cid], payload={"op": "add", "value": 1}
        ).block
    )
    body["signature"] = bytes(64)
    forged = encode(body)
    forged_cid = CID.for_block(forged)
    foreign = create_entry(
        outsider, db=manifest.cid, clock=2, next=[root.cid], payload={"op": "add", "value": 2}
    )
    head = create_entry(
        writer,
        db=manifest.cid,
        clock=3,
        next=[forged_cid, foreign.cid],
        payload={"op": "add", "value": 3},
    )
    served = {
        manifest.cid: manifest.block,
        head.cid: head.block,
        forged_cid: forged,
        foreign.cid: foreign.block,
        root.cid: root.block,
    }

    async def main():
        async with node_and_raw_peer(tmp_path / "n") as (node, liar):

            async def answer():
                answered = 0
                while True:
                    await liar.wait_for(lambda r, seen=answered: len(r) > seen, timeout=30)
                    for message in liar.received[answered:]:
                        blocks = tuple(
                            (e.cid, served[e.cid])
                            for e in message.wants
                            if e.cid in served and not e.cancel
                        )
                        if blocks:
                            await liar.send(
                                node.peer_id, frame_message(BitswapMessage(blocks=blocks))
                            )
                    answered = len(liar.received)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer)
                report = await node.restore(
                    [manifest.cid, head.cid], [liar.host.peer_id], timeout=20
                )
                nursery.cancel_scope.cancel()
            reasons = dict(report.rejected)
            assert reasons[str(forged_cid)].startswith("InvalidSignature")
            assert reasons[str(foreign.cid)].startswith("Unauthorized")
            applied = await node.read(manifest.address, lambda d: [e.cid for e in d.entries()])
            assert applied == [root.cid]  # the one valid entry whose past is valid
            assert report.applied == 1

    trio.run(main)


def test_a_published_snapshot_is_fetched_by_bitswap(tmp_path):
    """A snapshot's root and chunks are IPLD blocks served by CID like the entries (spec §16),
    so a plain bitswap peer fetches them; a chunk of a replaced snapshot is no longer served."""
    from crdt.snapshot import decode_root

    async def main():
        async with node_and_raw_peer(tmp_path / "a") as (node, peer):
            db = await node.create_database("records", "keyvalue")
            await node.write(
                db.address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(40)]
            )
            published = await node.snapshots.publish(db.address)
            root = CID.parse(published["root"])
            block = dict(await node.worker.run(node.repo.served_blocks, [root]))[root]
            header = decode_root(root, block)
            wanted = [root, *header.chunks]
            wants = [WantEntry(c, 1, False, WANT_BLOCK, True) for c in wanted]
            await peer.send(node.peer_id, frame_message(BitswapMessage(wants=tuple(wants))))
            await peer.wait_for(lambda r: len(peer.blocks()) >= len(wanted))
            assert set(peer.blocks()) == set(wanted)
            assert all(c.matches(b) for c, b in peer.blocks().items())
            # A newer snapshot replaces it: the old chunks go, and are not served.
            await node.write(db.address, [{"op": "put", "key": "later", "value": 1}])
            await node.snapshots.publish(db.address)
            peer.received.clear()
            old = [WantEntry(c, 1, False, WANT_BLOCK, True) for c in wanted]
            await peer.send(node.peer_id, frame_message(BitswapMessage(wants=tuple(old))))
            await peer.wait_for(lambda r: len(peer.presences()) >= len(wanted))
            assert peer.presences() == dict.fromkeys(wanted, DONT_HAVE)

    trio.run(main)
