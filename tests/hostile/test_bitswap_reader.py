"""(f) Bitswap answers for a reader who never reads: a peer wants large blocks again and again and
reads a trickle (16 KiB every 0.5 s, so its stream window is never quite shut). What the node queues for it stays under
``max_queued`` bytes, it is dropped within ``write_timeout``, its queue is freed, and an honest
peer fetching meanwhile still gets its blocks.

:func:`slow_reader_attack` is the scenario; ``bench/bitswap_slow_reader.py`` runs it with the
node's default limits and reports RSS (the before/after figure in docs/reliability.md)."""

from __future__ import annotations

import gc
import os
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import trio

from crdt.ipld.cid import CID
from gridnode.net import open_host
from gridnode.net.bitswap import Bitswap, BitswapConfig
from protocols.bitswap import MAX_BLOCK, PROTOCOLS, BitswapMessage, WantEntry, frame_message
from tests.hostile.attacker import LOOPBACK, rss_bytes

BLOCK = 1024 * 1024
BLOCKS = 16


@dataclass
class Outcome:
    rss_before: int = 0
    rss_peak: int = 0
    #: RSS once the attacker has left, the server still running.
    rss_left: int = 0
    #: RSS once everything has stopped.
    rss_after: int = 0
    #: Seconds the attack ran (it stops early past ``rss_cap``).
    ran: float = 0.0
    #: ``(seconds since the attack began, bytes queued for the attacker)``, sampled.
    queued: list[tuple[float, int]] = field(default_factory=list)
    dropped_after: float | None = None
    queued_after: int | None = None
    honest_got: int = 0
    wants_sent: int = 0


async def slow_reader_attack(
    config: BitswapConfig | None = None,
    *,
    seconds: float = 10.0,
    rss_cap: int = 768 * 1024 * 1024,
) -> Outcome:
    """A server with ``BLOCKS`` blocks of 1 MiB; an attacker that re-wants them all every 0.1 s
    for ``seconds`` and reads a trickle; an honest peer that fetches 4 of them meanwhile. Stops early
    if RSS grows by ``rss_cap`` (today's main would take the machine)."""
    store = {
        CID.for_block(data, "raw"): data for data in (os.urandom(BLOCK) for _ in range(BLOCKS))
    }
    cids = list(store)

    async def lookup(wanted: list[CID]) -> dict[CID, bytes | None]:
        # A fresh copy of each block, as a read from storage would be.
        return {c: bytes(bytearray(store[c])) if c in store else None for c in wanted}

    async def nothing(wanted: list[CID]) -> dict[CID, bytes | None]:
        return dict.fromkeys(wanted)

    async def trickle(stream) -> None:
        # 16 KiB every 0.5 s: enough window granted that the muxer's own zero-window timer
        # (py-libp2p's yamux gives up after 5 s of none) never fires; far too little to take
        # the answers it asked for.
        while await stream.read(16 * 1024):
            await trio.sleep(0.5)

    out = Outcome()
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        server_host = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
        server = Bitswap(server_host, nursery, lookup, config=config)
        server.mount()
        honest_host = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
        honest = Bitswap(honest_host, nursery, nothing)
        honest.mount()
        await honest_host.connect(server_host.addrs[0])
        got: dict[CID, bytes] = {}

        async with open_host(os.urandom(32), LOOPBACK) as evil:
            for protocol in PROTOCOLS:
                evil.set_stream_handler(protocol, trickle)
            await evil.connect(server_host.addrs[0])
            gc.collect()
            out.rss_before = out.rss_peak = rss_bytes()
            wants = frame_message(BitswapMessage(wants=tuple(WantEntry(c, 1) for c in cids)))
            stream = await evil.open_stream(server_host.peer_id, PROTOCOLS)
            start = trio.current_time()

            async def honest_fetch() -> None:
                await trio.sleep(0.5)  # once the attacker's queue is full
                got.update(await honest.fetch(cids[:4], [server_host.peer_id], timeout=30))

            async with trio.open_nursery() as attack:
                attack.start_soon(honest_fetch)
                while (elapsed := trio.current_time() - start) < seconds:
                    try:
                        await stream.write(wants)
                        out.wants_sent += 1
                    except Exception:  # reset by the server: want again on a new stream
                        stream = await evil.open_stream(server_host.peer_id, PROTOCOLS)
                    rss = rss_bytes()
                    out.rss_peak = max(out.rss_peak, rss)
                    if hasattr(server, "queued_bytes"):
                        out.queued.append((elapsed, server.queued_bytes(evil.peer_id)))
                        if (
                            out.dropped_after is None
                            and getattr(server.stats, "slow_readers_dropped", 0) > 0
                        ):
                            out.dropped_after = elapsed
                    if rss - out.rss_before > rss_cap:
                        break
                    await trio.sleep(0.1)
            out.ran = trio.current_time() - start
            evil_id = evil.peer_id
        # The attacker has left.
        with trio.move_on_after(5):
            while hasattr(server, "queued_bytes") and server.queued_bytes(evil_id):
                await trio.sleep(0.1)
        await trio.sleep(1)
        gc.collect()
        out.rss_left = rss_bytes()
        if hasattr(server, "queued_bytes"):
            out.queued_after = server.queued_bytes(evil_id)
        out.honest_got = sum(1 for c in cids[:4] if got.get(c) == store[c])
        nursery.cancel_scope.cancel()
    gc.collect()
    out.rss_after = rss_bytes()
    return out


MAX_QUEUED = 4 * 1024 * 1024
WRITE_TIMEOUT = 3.0


def test_a_reader_who_never_reads_holds_bounded_memory_and_is_dropped(tmp_path):
    config = BitswapConfig(max_queued=MAX_QUEUED, write_timeout=WRITE_TIMEOUT)
    out = trio.run(slow_reader_attack, config)
    mib = 2**20
    print(
        f"\na reader who reads a trickle wanted {BLOCKS} x 1 MiB blocks {out.wants_sent} times: "
        f"queued at most {max(q for _t, q in out.queued) / mib:.1f} MiB (bound "
        f"{MAX_QUEUED / mib:.0f} MiB), dropped after {out.dropped_after} s, queued after "
        f"{out.queued_after} B; RSS +{(out.rss_peak - out.rss_before) / mib:.0f} MiB at peak, "
        f"+{(out.rss_left - out.rss_before) / mib:.0f} MiB after it left; honest got {out.honest_got}/4"
    )
    # Charged when queued: never more than the bound (plus one block when the queue was empty).
    assert max(q for _t, q in out.queued) <= MAX_QUEUED + MAX_BLOCK
    # Dropped within the write timeout (and the want sent just after it), each time it comes back.
    assert out.dropped_after is not None and out.dropped_after <= WRITE_TIMEOUT + 2
    # Once gone, nothing of it is held.
    assert out.queued_after == 0
    assert out.honest_got == 4
    assert out.rss_peak - out.rss_before < 256 * mib
