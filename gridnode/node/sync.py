"""Driving ``/gridnode/sync/1.1.0`` over a real stream: the puller and the server.

The protocol's decisions are in :mod:`protocols.sync` and :mod:`protocols.reconcile`; this
module moves bytes between them, a stream and the storage (through the
:class:`~gridnode.storage.worker.StorageWorker`, one batch per call). Every block that arrives is
verified (hash, structure, signature) and judged by the log (clock, skip links, access) before
anything is kept.

Both ends read a stream no faster than its byte window allows (:meth:`SyncConnection.room
<protocols.sync.SyncConnection.room>`): a peer sending faster waits, and is never refused for
the length of what it sends. What this node sends keeps to the limits its peers check (its newest
heads, reconciliation answers cut to the range limit, blocks messages of at most ``MAX_BLOCKS``).

A pull is a set reconciliation (the server sends what the puller lacks as it goes), then a check
against the server's heads: anything still lacking (the server wrote meanwhile, or reconciliation
was cut short) is fetched by ``want``, which walks the DAG. Reconciliation is the fast path;
the heads make a pull complete whatever it did.

It refuses to know who the peer is: a stream in, a report (:class:`PullReport`, a
:class:`~protocols.sync.SyncStats`) out, and a :class:`~protocols.errors.ProtocolError` when the
peer breaks the protocol. Whom to pull from, when, and what a violation costs the peer are the
replication room's (:mod:`gridnode.node.replication`); so the driver runs as well over a trio
memory stream in a test as over libp2p. The server is told one thing of the peer, the ``did:key``
its authenticated peer id names, because a private database is served to its readers only: every
request for one is checked before anything of it is read, and refused otherwise (docs/spec.md
§10, "Private databases").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol

import trio

from crdt.entry import MAX_ENTRY_BYTES, Entry
from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from gridnode.errors import StorageLimitReached, StreamError, UnknownDatabase
from gridnode.net.stream import single_exception
from gridnode.quota import StorageQuota
from gridnode.repo import ImportReport, Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker
from protocols.errors import ProtocolError
from protocols.reconcile import Reconciler
from protocols.sync import (
    BlocksArrived,
    BlocksAsked,
    Budget,
    EntriesArrived,
    Event,
    HeadsArrived,
    HeadsAsked,
    RangesArrived,
    RangesAsked,
    Refused,
    Role,
    SyncAsked,
    SyncConnection,
    SyncStats,
)
from protocols.wire import MAX_BLOCKS, MAX_FRAME, MAX_HEADS, MAX_WANT

__all__ = [
    "EXCHANGE_FAILED",
    "MAX_REFUSALS",
    "ByteStream",
    "PullReport",
    "fetch_manifest",
    "pull",
    "serve",
]

log = logging.getLogger(__name__)

#: How an exchange with a peer (a pull, a manifest asked for, a direct announcement) fails
#: without the peer breaking the protocol: bad or refused input, a time limit, a stream that
#: went away.
EXCHANGE_FAILED: Final = (
    GridnodeError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
#: Bytes of blocks per blocks message (a frame holds at most MAX_FRAME).
CHUNK_BYTES: Final = 1024 * 1024
READ_SIZE: Final = 256 * 1024
#: Entries one want is answered with before the puller must ask again.
ANSWER_LIMIT: Final = 200_000
#: Blocks read per storage-worker call when serving (~5 ms: other peers' calls run between).
SERVE_BATCH: Final = 128
#: Databases one sync stream may reconcile.
MAX_SESSIONS: Final = 16
#: Seconds a server waits for the next request on a sync stream before it closes it.
IDLE_TIMEOUT: Final = 120.0
#: Times a CID is asked of one peer (over all pulls) before that peer is no longer asked for it.
MAX_ASKS: Final = 3
#: CIDs whose asks are remembered per peer and database (the oldest are forgotten first).
MAX_ASKED: Final = 10_000
#: Requests for private databases a peer may not read that one sync stream is answered (with
#: ``refused``) before the server ends the stream.
MAX_REFUSALS: Final = 8


class _Ended(StreamError):
    """The peer closed the stream cleanly while this side awaited an answer (outside a pull, a
    stream failure like any other)."""


class ByteStream(Protocol):
    """What the sync driver needs of a stream (a libp2p stream, a trio stream in tests)."""

    async def read(self, max_bytes: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


@dataclass
class PullReport:
    """What one pull did."""

    address: str
    applied: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    stats: SyncStats = field(default_factory=SyncStats)
    complete: bool = False
    refused: str | None = None
    #: Why this node stopped the pull before it was done (the storage bound reached): what was
    #: joined up to then is kept, the rest is not fetched.
    stopped: str | None = None
    #: Set when the server ended the stream (a clean close) while an answer was awaited: what
    #: was joined is kept. A server may close a stream it saw idle (:data:`IDLE_TIMEOUT`) while
    #: a slow puller was still joining the last answer; that is no breach of the protocol, and
    #: the caller pulls again at once if this pull made progress.
    ended: str | None = None


async def _read(stream: ByteStream, conn: SyncConnection) -> bytes:
    """Read what the connection's byte window has room for, waiting for the next window when it
    has none: a peer sending faster than the budget is slowed down, never refused."""
    while not (room := conn.room(trio.current_time())):
        await trio.sleep_until(conn.resume_at())
    return await stream.read(min(READ_SIZE, room))


async def _next_events(stream: ByteStream, conn: SyncConnection) -> list[Event]:
    """Read until the connection yields events; honour the answer deadline."""
    while True:
        deadline = conn.deadline()
        with trio.fail_at(deadline) if deadline is not None else trio.CancelScope():
            data = await _read(stream, conn)
        if not data:
            raise _Ended("the peer closed the stream while an answer was awaited")
        events = conn.receive(data, trio.current_time())
        if events:
            return events


async def pull(
    stream: ByteStream,
    database: StoredDatabase,
    worker: StorageWorker,
    *,
    budget: Budget | None = None,
    now: Callable[[], float] = trio.current_time,
    asked: dict[CID, int] | None = None,
    source: str = "",
    quota: StorageQuota | None = None,
    progress: Callable[[], None] | None = None,
) -> PullReport:
    """Fetch from the peer at the other end of ``stream`` what ``database`` lacks, and join it.

    ``asked`` counts how often each CID was asked of this peer; pass the same dict to every pull
    from one peer, and a CID it failed to send :data:`MAX_ASKS` times is not asked of it again
    (a peer claiming heads it cannot serve, or parents nobody has, costs a few round trips, not
    one more per pull for ever). ``source`` names the peer for the log's pending bounds.

    At the storage bound (``quota`` full, asked before each batch is joined) the pull stops
    between two batches: every batch joined before is kept (one transaction each), nothing more
    is read, and the report says why (:attr:`PullReport.stopped`); the caller closes the
    stream. A server that closes the stream while an answer is awaited ends the pull the same
    way (:attr:`PullReport.ended`). ``progress()`` is called after each batch is joined."""
    conn = SyncConnection(Role.PULLER, budget=budget or Budget())
    report = PullReport(address=database.address, stats=conn.stats)
    try:
        return await _pull(
            stream, database, worker, conn, report, now, asked, source, quota, progress
        )
    except StorageLimitReached as exc:
        report.stopped = str(exc)
        return report
    except _Ended as exc:
        report.ended = str(exc)
        return report


async def _pull(
    stream: ByteStream,
    database: StoredDatabase,
    worker: StorageWorker,
    conn: SyncConnection,
    report: PullReport,
    now: Callable[[], float],
    asked: dict[CID, int] | None,
    source: str,
    quota: StorageQuota | None,
    progress: Callable[[], None] | None,
) -> PullReport:
    manifest_cid = database.manifest.cid
    pending_events: list[Event] = []

    async def next_event() -> Event:
        if not pending_events:
            pending_events.extend(await _next_events(stream, conn))
        return pending_events.pop(0)

    reconciler = Reconciler(database.items, role="puller")

    def start() -> tuple[list[CID], list[Any]]:
        return database.newest_heads(MAX_HEADS), reconciler.initiate_ranges()

    heads, first = await worker.run(start)
    await stream.write(conn.sync(manifest_cid, heads, first, now()))
    event = await next_event()
    if isinstance(event, Refused):
        report.refused = event.reason
        return report
    assert isinstance(event, HeadsArrived)
    server_heads = list(event.heads)
    while True:
        last = await _receive_answer(next_event, database, worker, report, source, quota, progress)
        if isinstance(last, Refused):
            report.refused = last.reason
            return report
        assert isinstance(last, RangesArrived)
        if not last.ranges:
            break
        reply = await worker.run(reconciler.receive_ranges, last.ranges)
        if reply is None:
            break
        await stream.write(conn.reconcile(manifest_cid, reply, now()))

    # What we still lack: server heads we have never seen, and parents our pending entries wait
    # for. Reconciliation leaves nothing of the kind unless the server wrote meanwhile.
    if asked is None:
        asked = {}
    given_up = asked

    def hopeless(cid: CID) -> bool:
        return given_up.get(cid, 0) >= MAX_ASKS

    def lacking() -> list[CID]:
        # The missing parents read only as far as one want needs, never all of them.
        heads = set(server_heads)
        return database.unknown(server_heads) + database.first_missing(
            MAX_WANT, lambda c: c in heads or hopeless(c)
        )

    wanted = [c for c in await worker.run(lacking) if not hopeless(c)]
    while wanted:
        for cid in wanted:
            asked[cid] = asked.get(cid, 0) + 1
        have = await worker.run(database.newest_heads, MAX_HEADS)
        await stream.write(conn.want(manifest_cid, wanted[:MAX_WANT], have, now()))
        last = await _receive_answer(next_event, database, worker, report, source, quota, progress)
        if isinstance(last, Refused):
            report.refused = last.reason
            return report
        # A CID asked for three times and still missing is not coming from this peer.
        wanted = await worker.run(database.first_missing, MAX_WANT, hopeless)
    while len(asked) > MAX_ASKED:
        del asked[next(iter(asked))]
    report.complete = not await worker.run(lambda: database.missing_count)
    return report


async def _receive_answer(
    next_event: Callable[[], Awaitable[Event]],
    database: StoredDatabase,
    worker: StorageWorker,
    report: PullReport,
    source: str = "",
    quota: StorageQuota | None = None,
    progress: Callable[[], None] | None = None,
) -> Event:
    """Take the messages answering one request (blocks or entries), until the one that ends it
    (the last blocks message, a ranges message, or a refusal), and return that one.

    A pipeline of three stages: this task reads and verifies (signatures are checked in a thread
    of their own, which runs in parallel since libsodium releases the GIL), while a second task
    joins the previous batch in the storage worker. Every join is done before this returns."""
    send, receive = trio.open_memory_channel[tuple[list[Entry], ImportReport]](2)

    async def joiner() -> None:
        async with receive:
            async for entries, checked in receive:
                if quota is not None:
                    quota.check(f"join more entries of {database.address}")
                joined = await worker.run(
                    partial(database.join_entries, entries, checked, source=source)
                )
                report.applied += joined.applied
                report.duplicates += joined.duplicates
                report.rejected.extend(joined.rejected)
                if progress is not None:
                    progress()

    last: Event | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(joiner)
            async with send:
                while True:
                    event = await next_event()
                    if isinstance(event, EntriesArrived):
                        if event.blocks:
                            verified = await trio.to_thread.run_sync(
                                database.verify_entry_blocks, list(event.blocks)
                            )
                            await send.send(verified)
                        continue
                    if isinstance(event, BlocksArrived):
                        if event.blocks:
                            checked = await trio.to_thread.run_sync(
                                database.verify_blocks, list(event.blocks)
                            )
                            await send.send(checked)
                        if event.more:
                            continue
                    last = event
                    break
    except BaseExceptionGroup as group:
        # The nursery wraps even a lone failure (a reset stream, a protocol violation) in a
        # group; callers handle the error itself.
        lone = single_exception(group)
        if lone is None:
            raise
        raise lone from None
    assert last is not None
    return last


async def fetch_manifest(
    stream: ByteStream, manifest_cid: CID, *, now: Callable[[], float] = trio.current_time
) -> bytes | None:
    """Ask the peer for a database's manifest block; ``None`` if it does not keep the database.

    The caller checks the block (:func:`crdt.manifest.decode_manifest` verifies its hash)."""
    conn = SyncConnection(Role.PULLER)
    await stream.write(conn.want(manifest_cid, [manifest_cid], [], now()))
    found = None
    while conn.waiting:
        for event in await _next_events(stream, conn):
            if isinstance(event, Refused):
                return None
            if isinstance(event, BlocksArrived):
                for cid, block in event.blocks:
                    if cid == manifest_cid:
                        found = block
    return found


async def serve(
    stream: ByteStream,
    repo: Repo,
    worker: StorageWorker,
    *,
    budget: Budget | None = None,
    stats: SyncStats | None = None,
    idle_timeout: float = IDLE_TIMEOUT,
    reader: str | None = None,
    refused: Callable[[str], bool] | None = None,
) -> SyncStats:
    """Answer one peer's requests on ``stream`` until it closes it. The accounting goes into
    ``stats`` (if given) as it happens, so it survives a stream that ends in an error.

    ``reader`` is the peer's ``did:key`` (``None`` if its key is not ed25519): a private
    database it may not read (:meth:`~gridnode.repo.StoredDatabase.may_read`) is answered
    ``refused`` as if this node did not keep it, before anything of it is read, so a stranger
    learns neither its entries nor that it is here. ``refused(address)`` is told of each such
    refusal and says whether the peer may still ask (its budget, the caller's); the stream ends
    when it may not, or after :data:`MAX_REFUSALS` on this stream."""
    conn = SyncConnection(Role.SERVER, budget=budget or Budget())
    if stats is not None:
        conn.stats = stats
    sessions: dict[CID, tuple[StoredDatabase, Reconciler]] = {}
    refusals = 0

    async def readable(manifest_cid: CID) -> StoredDatabase | None:
        """The database asked for; ``None`` once the request is refused (not kept here, or
        private and the peer not one of its readers)."""
        nonlocal refusals
        database, private = await worker.run(_readable, repo, manifest_cid, reader)
        if database is not None:
            return database
        await stream.write(conn.refuse("unknown database"))
        if private:
            refusals += 1
            more = refused is None or refused("/gridnode/" + str(manifest_cid))
            if not more or refusals >= MAX_REFUSALS:
                raise _Refusing
        return None

    # A peer asking too often for what it may not read: the stream ends, with no strike.
    with contextlib.suppress(_Refusing):
        await _serve_requests(stream, conn, repo, worker, sessions, readable, idle_timeout)
    return conn.stats


class _Refusing(Exception):
    """A peer asked for private databases it may not read too often: its stream ends."""


async def _serve_requests(
    stream: ByteStream,
    conn: SyncConnection,
    repo: Repo,
    worker: StorageWorker,
    sessions: dict[CID, tuple[StoredDatabase, Reconciler]],
    readable: Callable[[CID], Awaitable[StoredDatabase | None]],
    idle_timeout: float,
) -> SyncStats:
    while True:
        data = b""
        with trio.move_on_after(idle_timeout):
            data = await _read(stream, conn)
        if not data:
            # Closed by the peer, or silent for idle_timeout: a stream held open and idle costs
            # this node memory and a handler, so it ends (the peer opens another when it needs).
            return conn.stats
        for event in conn.receive(data, trio.current_time()):
            if isinstance(event, HeadsAsked):
                if await readable(event.db) is not None:
                    heads = await worker.run(_heads_of, repo, event.db)
                    await stream.write(conn.heads(event.db, heads or []))
            elif isinstance(event, BlocksAsked):
                if await readable(event.db) is not None:
                    await _answer_want(stream, conn, repo, worker, event)
            elif isinstance(event, SyncAsked):
                database = await readable(event.db)
                if database is None:
                    continue
                if event.db not in sessions and len(sessions) >= MAX_SESSIONS:
                    raise ProtocolError(f"over {MAX_SESSIONS} databases on one stream")
                session = sessions[event.db] = (database, Reconciler(database.items, role="server"))
                heads = await worker.run(_heads_of, repo, event.db)
                await stream.write(conn.heads(event.db, heads or []))
                await _answer_ranges(stream, conn, worker, event.db, session, event.ranges)
            elif isinstance(event, RangesAsked):
                found = sessions.get(event.db)
                if found is None:
                    raise ProtocolError("ranges for a database never synced on this stream")
                await _answer_ranges(stream, conn, worker, event.db, found, event.ranges)


async def _answer_ranges(
    stream: ByteStream,
    conn: SyncConnection,
    worker: StorageWorker,
    manifest_cid: CID,
    session: tuple[StoredDatabase, Reconciler],
    ranges: list[Any],
) -> None:
    """Reconcile one message: send the entries the puller lacks, then the ranges left open."""
    database, reconciler = session
    answer = await worker.run_steps(reconciler.receive_steps(ranges))
    outbox = reconciler.outbox
    reconciler.outbox = []
    chunk: list[bytes] = []
    size = 0
    for start in range(0, len(outbox), SERVE_BATCH):
        blocks = await worker.run(database.item_blocks, outbox[start : start + SERVE_BATCH])
        for block in blocks:
            if (size + len(block) > CHUNK_BYTES or len(chunk) >= MAX_BLOCKS) and chunk:
                await stream.write(conn.entries(manifest_cid, chunk))
                chunk, size = [], 0
            chunk.append(block)
            size += len(block)
    if chunk:
        await stream.write(conn.entries(manifest_cid, chunk))
    await stream.write(conn.ranges(manifest_cid, answer or []))


def _readable(
    repo: Repo, manifest_cid: CID, reader: str | None
) -> tuple[StoredDatabase | None, bool]:
    """``(database, False)`` if ``reader`` may read it, ``(None, True)`` if it is private and
    ``reader`` may not, ``(None, False)`` if this node does not keep it."""
    try:
        database = repo.database("/gridnode/" + str(manifest_cid))
    except UnknownDatabase:
        return None, False
    if not database.may_read(reader):
        return None, True
    return database, False


def _heads_of(repo: Repo, manifest_cid: CID) -> list[CID] | None:
    # The newest MAX_HEADS: a heads message holds no more (protocols.wire), and reconciliation
    # brings the puller every entry whatever the heads name.
    try:
        return repo.database("/gridnode/" + str(manifest_cid)).newest_heads(MAX_HEADS)
    except UnknownDatabase:
        return None


async def _answer_want(
    stream: ByteStream, conn: SyncConnection, repo: Repo, worker: StorageWorker, ask: BlocksAsked
) -> None:
    try:
        database = await worker.run(repo.database, "/gridnode/" + str(ask.db))
    except UnknownDatabase:
        await stream.write(conn.refuse("unknown database"))
        return
    cids, _truncated = await worker.run_steps(
        database.ancestry_steps(list(ask.cids), list(ask.have), ANSWER_LIMIT)
    )
    wants_manifest = ask.db in ask.cids
    chunk: list[tuple[CID, bytes]] = []
    size = 0
    if wants_manifest:
        chunk.append((database.manifest.cid, database.manifest.block))
        size += len(database.manifest.block)
    start = 0
    while start < len(cids):
        batch = cids[start : start + SERVE_BATCH]
        start += len(batch)
        blocks = await worker.run(database.blocks_of, batch)
        for cid, block in blocks:
            if (size + len(block) > CHUNK_BYTES or len(chunk) >= MAX_BLOCKS) and chunk:
                await stream.write(conn.blocks(ask.db, chunk, more=True))
                chunk, size = [], 0
            chunk.append((cid, block))
            size += len(block)
    await stream.write(conn.blocks(ask.db, chunk, more=False))


assert CHUNK_BYTES + MAX_ENTRY_BYTES + 64 * 1024 < MAX_FRAME, "a chunk plus one entry fits a frame"
