"""A peer that floods a node's sync server with the most expensive requests it can make cheaply
(issue 18 item 8): ``want`` of the heads with an empty ``have`` (a 100-byte message that makes the
server walk and send its whole log), and reconciliation messages of MAX_RANGES fingerprints that
all mismatch (~120 KB that make it split and describe every range). Each stream asks, reads the
whole answer (so the server's writes never stall: the worst case for its CPU), and asks again.

Used by tests/hostile/test_fairness.py and bench/bench_fairness.py.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from typing import Any

import trio

from crdt.ipld import CID
from gridnode.net import Host, NetError
from protocols.errors import ProtocolError
from protocols.reconcile import TOP
from protocols.sync import Role, SyncConnection
from protocols.wire import MAX_RANGES, PROTOCOL_ID

#: How long a flood stream waits for one answer before giving up on it.
ANSWER_SECONDS = 60.0


def mismatching_ranges(top_clock: int, n: int = MAX_RANGES) -> list[list[Any]]:
    """``n`` fingerprint ranges spread over clocks 1..top_clock, each with a random fingerprint:
    the server must split every one of them and describe the parts."""
    highs = sorted({struct.pack(">Q", 1 + k * top_clock // n) for k in range(1, n)})
    ranges: list[list[Any]] = [[high, "fp", os.urandom(16)] for high in highs]
    ranges.append([TOP, "fp", os.urandom(16)])
    return ranges


async def _answered(stream: Any, conn: SyncConnection) -> None:
    while conn.waiting:
        data = await stream.read(256 * 1024)
        if not data:
            return
        conn.receive(data, trio.current_time())


async def flood_wants(
    host: Host, peer: str, db: CID, heads: list[CID], counts: Counter[str]
) -> None:
    """Ask ``want`` of the heads with an empty ``have`` again and again, until cancelled."""
    while True:
        try:
            stream = await host.open_stream(peer, PROTOCOL_ID)
            try:
                for _ in range(8):
                    conn = SyncConnection(Role.PULLER)
                    await stream.write(conn.want(db, heads, [], trio.current_time()))
                    with trio.fail_after(ANSWER_SECONDS):
                        await _answered(stream, conn)
                    counts["wants answered"] += 1
            finally:
                await stream.close()
        except (NetError, ProtocolError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            counts[f"want stream failed: {type(exc).__name__}"] += 1
            await trio.sleep(0.05)


async def flood_ranges(
    host: Host, peer: str, db: CID, top_clock: int, counts: Counter[str]
) -> None:
    """Start a reconciliation with MAX_RANGES mismatching fingerprints, again and again."""
    while True:
        try:
            stream = await host.open_stream(peer, PROTOCOL_ID)
            try:
                conn = SyncConnection(Role.PULLER)
                message = conn.sync(db, [], mismatching_ranges(top_clock), trio.current_time())
                counts["ranges bytes sent"] += len(message)
                await stream.write(message)
                with trio.fail_after(ANSWER_SECONDS):
                    await _answered(stream, conn)
                counts["ranges answered"] += 1
            finally:
                await stream.close()
        except (NetError, ProtocolError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            # (Our own puller side may refuse the server's answer: it was still computed.)
            counts[f"ranges stream failed: {type(exc).__name__}"] += 1
            await trio.sleep(0.05)


async def flood(
    host: Host,
    peer: str,
    db: CID,
    heads: list[CID],
    top_clock: int,
    counts: Counter[str],
    *,
    want_streams: int = 8,
    ranges_streams: int = 8,
) -> None:
    """Run every flood stream until cancelled."""
    async with trio.open_nursery() as nursery:
        for _ in range(want_streams):
            nursery.start_soon(flood_wants, host, peer, db, heads, counts)
        for _ in range(ranges_streams):
            nursery.start_soon(flood_ranges, host, peer, db, top_clock, counts)
