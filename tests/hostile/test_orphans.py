"""(h) Orphan floods from outsiders (issue 18, item 2): a peer anyone may connect to answers the
honest node's pulls with validly signed entries whose parents nobody has, most by fresh keys no
grant names, some by EVE (a writer whose key the attacker holds). What waits for parents stays
under the per-peer byte cap, the fresh keys' entries are not kept at all, the SQLite file and RSS
stay bounded, the refusals are counted and logged a few lines per interval, honest writes still
replicate, and a chain of grants from the real admin that arrives before its root waits and
applies when the root comes. After a restart past ``pending_seconds`` nothing is left waiting,
and a running node expires what waited too long.

:func:`orphan_flood` is the scenario; ``bench/bench_orphans.py`` runs it with bigger numbers
(the before/after figures in docs/reliability.md). It uses nothing newer than main's API, so the
same script measures both."""

from __future__ import annotations

import gc
import logging
import os
import re
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from crdt.entry import create_entry
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from crdt.log import Log
from gridnode.net import open_host
from gridnode.node import Node, open_node
from gridnode.repo import Repo
from protocols.gossip import Announcement, topic_for
from protocols.sync import BlocksAsked, HeadsAsked, RangesAsked, Role, SyncAsked, SyncConnection
from protocols.wire import PROTOCOL_ID
from tests.hostile.attacker import EVE, LOOPBACK, converged, make_dirs, random_cid, rss_bytes

MIB = 1024 * 1024
#: One entries message of the attacker's answers (under the 4 MiB frame limit).
MESSAGE_BYTES = 3 * MIB


def sqlite_bytes(data_dir: Path) -> int:
    """The node's SQLite file with its WAL."""
    return sum(p.stat().st_size for p in data_dir.glob("gridnode.sqlite*") if p.name[-4:] != "-shm")


def pending_stored(database: Any) -> tuple[int, int]:
    """``(entries, bytes)`` waiting for parents, read from the log's own table (so the same
    reading works on main, which kept no byte counter)."""
    log_ = database._db.log
    blocks = log_.space.table("blocks")
    count = size = 0
    for key, _ in log_.space.table("log.pending").range():
        count += 1
        size += len(blocks.get(key) or b"")
    return count, size


def orphan(manifest_cid: CID, key: Keypair, size: int) -> bytes:
    entry = create_entry(
        key,
        db=manifest_cid,
        clock=2,
        next=[random_cid()],
        payload={"op": "put", "key": "orphan", "value": os.urandom(size)},
    )
    return entry.block


@dataclass
class Outcome:
    sent_fresh: int = 0
    sent_writer: int = 0
    sent_bytes: int = 0
    file_before: int = 0
    file_after: int = 0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    #: (entries, bytes) waiting for parents on the honest node after the flood.
    pending: tuple[int, int] = (0, 0)
    rejected: Counter[str] = field(default_factory=Counter)
    #: WARNING lines of the repo's rejection log during the flood.
    rejection_lines: int = 0
    honest_converged: bool = False
    chain_waited: int = 0
    chain_applied: bool = False
    flood_seconds: float = 0.0
    address: str = ""
    dirs: list[Path] = field(default_factory=list)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "rejected" in record.getMessage():
            self.count += 1


async def _answer_pulls(stream: Any, batches: list[list[bytes]], served: dict[str, int]) -> None:
    """A sync server that answers each ``sync`` with the next batch of entries and heads it
    cannot serve, and every other request with nothing."""
    conn = SyncConnection(Role.SERVER)
    while True:
        data = await stream.read(65536)
        if not data:
            return
        for event in conn.receive(data):
            if isinstance(event, HeadsAsked):
                await stream.write(conn.heads(event.db, []))
            elif isinstance(event, SyncAsked):
                await stream.write(conn.heads(event.db, [random_cid()]))
                batch = batches.pop(0) if batches else []
                message: list[bytes] = []
                for block in batch:
                    if message and sum(map(len, message)) + len(block) > MESSAGE_BYTES:
                        await stream.write(conn.entries(event.db, message))
                        message = []
                    message.append(block)
                if message:
                    await stream.write(conn.entries(event.db, message))
                await stream.write(conn.ranges(event.db, []))
                served["batches"] += bool(batch)
            elif isinstance(event, BlocksAsked):
                await stream.write(conn.blocks(event.db, [], more=False))
            elif isinstance(event, RangesAsked):
                await stream.write(conn.ranges(event.db, []))


async def orphan_flood(
    tmp_path: Path, *, fresh: int = 160, writer: int = 80, size: int = 256 * 1024
) -> Outcome:
    """Two honest nodes a and b share a database (admin a, writers b and EVE); the attacker
    connects to a and answers its pulls with ``fresh`` orphans by fresh keys and ``writer``
    orphans by EVE, ``size`` bytes of payload each, then with a chain of grants from a's key
    whose root it holds back, then with that root."""
    out = Outcome()
    dirs, address, _ = make_dirs(tmp_path)
    out.dirs, out.address = dirs, address
    lines = _Lines()
    repo_log = logging.getLogger("gridnode.repo")
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_node(dirs[0], listen=LOOPBACK, announce_interval=0.5)
        )
        b = await stack.enter_async_context(
            open_node(dirs[1], listen=LOOPBACK, bootstrap=a.addrs, announce_interval=0.5)
        )
        await a.write(address, [{"op": "put", "key": "seed", "value": "honest"}])
        await converged([a, b], address)
        database = a.database(address)
        manifest = database.manifest
        mcid = manifest.cid

        # Everything is generated before the measurement starts.
        blocks = [orphan(mcid, Keypair.from_seed(os.urandom(32)), size) for _ in range(fresh)]
        blocks += [orphan(mcid, EVE, size) for _ in range(writer)]
        out.sent_fresh, out.sent_writer = fresh, writer
        out.sent_bytes = sum(map(len, blocks))
        per_batch = max(1, (16 * MIB) // (size + 512))
        batches = [blocks[i : i + per_batch] for i in range(0, len(blocks), per_batch)]
        # A chain from the real admin (a's key, as another replica of a's would write it):
        # root, a grants admin to M2, M2 grants writer to W, W writes. Sent root last.
        m2 = Keypair.from_seed(bytes([121]) * 32)
        w = Keypair.from_seed(bytes([122]) * 32)
        chain_log = Log(manifest)
        chain_log.join(await a.read(address, lambda d: list(d.entries())))
        root = chain_log.append(a.repo.keypair, {"op": "put", "key": "chain", "value": 0})
        g1 = chain_log.append(a.repo.keypair, {"op": "grant", "role": "admin", "did": m2.did})
        g2 = chain_log.append(m2, {"op": "grant", "role": "writer", "did": w.did})
        last = chain_log.append(w, {"op": "put", "key": "chain", "value": 3})
        del blocks, chain_log

        host = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
        served = {"batches": 0}
        host.set_stream_handler(PROTOCOL_ID, lambda s: _answer_pulls(s, batches, served))
        topic = topic_for(mcid)

        async def deliver(expected: int) -> None:
            """Announce a fresh head until a pulls and takes the next batch."""
            with trio.fail_after(60):
                while served["batches"] < expected:
                    await host.publish(topic, Announcement(mcid, (random_cid(),), ()).encode())
                    with trio.move_on_after(1.0):
                        while served["batches"] < expected:
                            await trio.sleep(0.02)

        gc.collect()
        out.file_before = sqlite_bytes(dirs[0])
        out.rss_before = out.rss_peak = rss_bytes()
        repo_log.addHandler(lines)
        started = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:

                async def sample() -> None:
                    while True:
                        out.rss_peak = max(out.rss_peak, rss_bytes())
                        await trio.sleep(0.05)

                nursery.start_soon(sample)
                await host.connect(a.addrs[0])
                await host.subscribe(topic)
                flood = len(batches)
                await deliver(flood)
                # Let the last join finish.
                await trio.sleep(0.5)
                nursery.cancel_scope.cancel()
        finally:
            repo_log.removeHandler(lines)
        out.flood_seconds = trio.current_time() - started
        gc.collect()
        out.rss_after = rss_bytes()
        out.file_after = sqlite_bytes(dirs[0])
        out.rejection_lines = lines.count
        out.pending = await a.read(address, pending_stored)
        out.rejected = Counter(a.stats.counters.rejected)

        # Honest replication goes on.
        await b.write(address, [{"op": "put", "key": "after", "value": "flood"}])
        await a.write(address, [{"op": "put", "key": "after-a", "value": "flood"}])
        try:
            await converged([a, b], address, timeout=30)
            out.honest_converged = True
        except trio.TooSlowError:
            out.honest_converged = False

        # The chain waits for its root, then applies.
        before = (await a.read(address, pending_stored))[0]
        batches.append([g1.block, g2.block, last.block])
        await deliver(served["batches"] + 1)
        await trio.sleep(0.3)
        out.chain_waited = (await a.read(address, pending_stored))[0] - before
        batches.append([root.block])
        await deliver(served["batches"] + 1)
        with trio.move_on_after(10):
            while not out.chain_applied:
                out.chain_applied = await a.read(address, lambda d: last.cid in d._db.log)
                await trio.sleep(0.05)
    return out


async def _pending_after_restart(data_dir: Path, address: str) -> tuple[int, int]:
    def read() -> tuple[int, int]:
        with Repo(data_dir) as repo:
            return pending_stored(repo.database(address))

    return await trio.to_thread.run_sync(read)


def _set_config(data_dir: Path, key: str, value: str) -> None:
    path = data_dir / "gridnode.toml"
    text = re.sub(rf"(?m)^{key} = .*$", "", path.read_text())
    path.write_text(f"{text}\n{key} = {value}\n")


def test_an_orphan_flood_from_outsiders_is_refused_bounded_and_expires(tmp_path):
    out = trio.run(orphan_flood, tmp_path)
    mib = MIB
    print(
        f"\nsent {out.sent_fresh} orphans by fresh keys and {out.sent_writer} by EVE, "
        f"{out.sent_bytes / mib:.0f} MiB in {out.flood_seconds:.1f} s; pending after: "
        f"{out.pending[0]} entries, {out.pending[1] / mib:.1f} MiB; SQLite "
        f"+{(out.file_after - out.file_before) / mib:.1f} MiB; RSS "
        f"+{(out.rss_peak - out.rss_before) / mib:.0f} MiB at peak, "
        f"+{(out.rss_after - out.rss_before) / mib:.0f} MiB after; rejected {dict(out.rejected)}; "
        f"{out.rejection_lines} rejection log lines"
    )
    # Nothing by a fresh key waits; EVE's orphans wait up to the per-peer cap (16 MiB).
    assert out.pending[1] <= 16 * mib
    assert out.pending[0] <= out.sent_writer
    assert out.rejected["UnknownAuthor"] >= out.sent_fresh
    assert out.rejected["PendingLimitExceeded"] >= 1
    # The file and memory do not grow with what was sent (60 MiB).
    assert out.file_after - out.file_before <= 32 * mib
    assert out.rss_peak - out.rss_before <= 100 * mib  # main: +157 MiB
    # Hundreds of refusals, a few log lines (5 per interval and database, then a summary).
    assert 1 <= out.rejection_lines <= 12
    assert out.honest_converged
    # The admin's chain waited for its root (3 entries) and applied when it came.
    assert out.chain_waited == 3 and out.chain_applied

    # Restarted after pending_seconds: nothing is left waiting.
    _set_config(out.dirs[0], "pending_seconds", "0.5")
    trio.run(trio.sleep, 0.6)
    assert trio.run(_pending_after_restart, out.dirs[0], out.address) == (0, 0)


def test_a_running_node_expires_entries_that_waited_too_long(tmp_path):
    dirs, address, _ = make_dirs(tmp_path)
    _set_config(dirs[0], "pending_seconds", "0.8")

    async def main() -> None:
        async with open_node(dirs[0], listen=LOOPBACK, announce_interval=0.5) as a:
            node: Node = a
            database = node.database(address)
            mcid = database.manifest.cid
            entries, report = database.verify_entry_blocks(
                [orphan(mcid, EVE, 1000) for _ in range(20)]
            )
            await node.worker.run(database.join_entries, entries, report)
            assert (await node.read(address, pending_stored))[0] == 20
            with trio.fail_after(5):
                while (await node.read(address, pending_stored))[0]:
                    await trio.sleep(0.05)
            assert await node.read(address, lambda d: d._db.log.missing) == frozenset()

    trio.run(main)
