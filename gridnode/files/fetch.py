"""Fetch a whole DAG (a UnixFS file or directory) from peers over bitswap, verifying every block.

:class:`DagFetcher` walks a DAG from its root: it asks peers for blocks it lacks, checks each one
received against its CID (off the event loop), stores it, reads its links and asks for those next.
Several batches of wants are in flight at once (``parallel`` times ``batch`` CIDs); with several
peers each batch is asked first of one of them in turn, so their bandwidth adds up, then of all
for what that one did not send. The walk is depth first, leftmost child first, so a file arrives
roughly in order and what is known but not yet asked stays small: at most the depth times one
node's links.

Blocks already held locally are not asked for; their links are followed (a fetch that stopped
half way resumes where it stopped). Raw blocks have no links and a held raw block is not even
read.

What it refuses (a hostile or lying DAG, or one too large for this node), with
:class:`~gridnode.errors.DagTooLarge`: more than ``max_blocks`` blocks, ``max_bytes`` bytes,
``max_depth`` levels or ``max_pending`` CIDs known and not yet fetched. A block that is not
what its CID says, or that its codec cannot decode, stops the fetch with the decoder's typed
error (a :class:`~crdt.errors.GridnodeError`). Blocks no peer sent within ``stall`` seconds of
being asked: :class:`~gridnode.errors.FetchIncomplete` (what arrived stays stored).

The sizes a dag-pb node states for its links (``tsize``) are hints for the progress bar only;
no bound trusts them. Memory: at most ``parallel`` times ``batch`` blocks in hand at once.

The block stores and the way blocks are fetched are callables, so the same walk serves the
running node (bitswap, the storage worker) and tests (a dict).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import trio

from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from crdt.ipld.dagpb import DAG_PB, decode_node
from gridnode.errors import DagTooLarge, FetchIncomplete

__all__ = [
    "RAW",
    "DagFetcher",
    "FetchBlocks",
    "FetchLimits",
    "FetchProgress",
    "LinksOf",
    "LocalBlocks",
    "stated_size",
]

log = logging.getLogger(__name__)

RAW: Final = 0x55
#: Seconds the one peer a batch is asked of first has, before every peer is asked.
FIRST_ASK_SECONDS: Final = 5.0
DAG_CBOR: Final = 0x71

#: ``await fetch_blocks(cids, peers, timeout)`` -> the blocks received (a CID missing: not sent).
FetchBlocks = Callable[[list[CID], list[str], float], Awaitable[dict[CID, bytes]]]
#: ``links(cid, block)`` -> the CIDs the block links to, in order (a typed error if it does not
#: decode). For UnixFS: :func:`crdt.unixfs.reader.links_of`.
LinksOf = Callable[[CID, bytes], Sequence[CID]]


class LocalBlocks(Protocol):
    """Where fetched blocks go (the node's file store, through its storage worker)."""

    async def has_many(self, cids: list[CID]) -> set[CID]: ...

    async def get_many(self, cids: list[CID]) -> dict[CID, bytes]: ...

    async def put_blocks(self, blocks: list[tuple[CID, bytes]]) -> None: ...


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on one DAG fetch (see the module docstring)."""

    max_blocks: int = 16_000_000
    max_bytes: int = 1 << 40
    max_depth: int = 64
    #: CIDs known (links read) and not yet fetched: what the walk holds in memory.
    max_pending: int = 1_000_000


@dataclass
class FetchProgress:
    """How far one DAG fetch is (read by status and the dashboard while it runs)."""

    root: CID
    #: Blocks of the DAG in hand so far (received, or already held), and their bytes.
    blocks: int = 0
    bytes: int = 0
    #: Of those, what came from peers.
    fetched_blocks: int = 0
    fetched_bytes: int = 0
    #: The DAG's size as its root states it (sum of its links' tsize, or a raw block's size):
    #: a hint for a progress bar, never trusted; ``None`` until the root is in hand.
    expected_bytes: int | None = None
    #: CIDs known and not yet in hand.
    pending: int = 0
    done: bool = False
    started: float = field(default_factory=trio.current_time)
    finished: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "blocks": self.blocks,
            "bytes": self.bytes,
            "fetched_blocks": self.fetched_blocks,
            "fetched_bytes": self.fetched_bytes,
            "expected_bytes": self.expected_bytes,
            "pending": self.pending,
            "done": self.done,
        }


def stated_size(cid: CID, block: bytes) -> int:
    """The bytes of the DAG under a block as the block states them: a dag-pb node's own size
    plus its links' ``tsize`` (a hint: a peer may lie), any other block's own size."""
    if cid.codec == DAG_PB:
        return len(block) + sum(link.tsize or 0 for link in decode_node(block).links)
    return len(block)


def _verify(blocks: dict[CID, bytes]) -> None:
    for cid, block in blocks.items():
        cid.verify(block)  # HashMismatch (or UnsupportedHash): a typed crdt error


def _first_error(group: BaseExceptionGroup[Any]) -> GridnodeError | None:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            inner = _first_error(error)
            if inner is not None:
                return inner
        elif isinstance(error, GridnodeError):
            return error
    return None


class DagFetcher:
    """Fetches DAGs into ``local`` with ``fetch_blocks`` (see the module docstring)."""

    def __init__(
        self,
        fetch_blocks: FetchBlocks,
        local: LocalBlocks,
        links: LinksOf,
        *,
        parallel: int = 4,
        batch: int = 8,
        stall: float = 30.0,
        limits: FetchLimits | None = None,
    ) -> None:
        if parallel < 1 or batch < 1:
            raise ValueError("parallel and batch are at least 1")
        self._fetch_blocks = fetch_blocks
        self._local = local
        self._links = links
        self.parallel = parallel
        self.batch = batch
        self.stall = stall
        self.limits = limits or FetchLimits()

    async def fetch(
        self,
        root: CID,
        peers: Sequence[str],
        *,
        progress: FetchProgress | None = None,
        changed: Callable[[FetchProgress], None] | None = None,
    ) -> FetchProgress:
        """Fetch the DAG under ``root`` from ``peers`` (in the order given; all are asked for
        every block) until every block is held; return (and update, if given) its progress;
        ``changed(progress)`` is called after each batch."""
        walk = _Walk(self, root, list(dict.fromkeys(peers)), progress or FetchProgress(root))
        walk.changed_cb = changed
        await walk.run()
        return walk.progress


@dataclass
class _Walk:
    fetcher: DagFetcher
    root: CID
    peers: list[str]
    progress: FetchProgress
    changed_cb: Callable[[FetchProgress], None] | None = None
    #: (cid, depth), depth first: the next CID to take is at the end.
    stack: list[tuple[CID, int]] = field(default_factory=list)
    in_flight: int = 0
    wake: trio.Event = field(default_factory=trio.Event)
    #: Blocks visited: a DAG may link one block many times (a file of zeros does), and each
    #: visit counts against ``max_blocks`` (a DAG of shared nodes cannot make the walk endless).
    visits: int = 1
    #: Peers asked first for a batch, in turn (see :meth:`_ask`).
    preferred: list[str] = field(default_factory=list)
    turn: int = 0

    async def run(self) -> None:
        self.stack.append((self.root, 0))
        self.preferred = list(self.peers)
        self.progress.pending = 1
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.fetcher.parallel):
                    nursery.start_soon(self._worker)
        except BaseExceptionGroup as group:
            # One worker's typed error stops the others: the caller sees that error alone.
            error = _first_error(group)
            if error is None:
                raise
            raise error from None
        self.progress.pending = 0
        self.progress.done = True
        self.progress.finished = trio.current_time()
        self._changed()

    def _changed(self) -> None:
        if self.changed_cb is not None:
            self.changed_cb(self.progress)

    async def _worker(self) -> None:
        while True:
            if not self.stack:
                if self.in_flight == 0:
                    self.wake.set()
                    return
                self.wake = trio.Event() if self.wake.is_set() else self.wake
                await self.wake.wait()
                continue
            take = self.stack[-self.fetcher.batch :]
            del self.stack[-self.fetcher.batch :]
            take.reverse()  # leftmost first
            self.in_flight += 1
            try:
                await self._step(take)
            finally:
                self.in_flight -= 1
                self.wake.set()

    async def _ask(self, missing: list[CID]) -> dict[CID, bytes]:
        """Ask for ``missing``: with several peers, first one of them (in turn, so batches in
        flight go to different peers and their bandwidth adds up), then every peer for what it
        did not send. A peer that sent nothing of a batch is asked first no more."""
        fetch, stall = self.fetcher._fetch_blocks, self.fetcher.stall
        if len(self.peers) < 2 or not self.preferred:
            return await fetch(missing, self.peers, stall)
        peer = self.preferred[self.turn % len(self.preferred)]
        self.turn += 1
        got = await fetch(missing, [peer], min(stall, FIRST_ASK_SECONDS))
        rest = [cid for cid in missing if cid not in got]
        if not got and peer in self.preferred:
            self.preferred.remove(peer)
        if rest:
            got.update(await fetch(rest, self.peers, stall))
        return got

    async def _step(self, take: list[tuple[CID, int]]) -> None:
        limits = self.fetcher.limits
        local = self.fetcher._local
        # One CID twice in a batch (a file of repeated chunks): fetched once, visited twice.
        cids = [cid for cid, _depth in take]
        depth_of = dict(take)
        held = await local.has_many(list(depth_of))
        # A held raw block has no links: not even read.
        to_read = [c for c in depth_of if c in held and c.codec != RAW]
        blocks = await local.get_many(to_read) if to_read else {}
        self.progress.blocks += sum(1 for c in cids if c in held and c.codec == RAW)
        missing = [c for c in depth_of if c not in held or (c.codec != RAW and c not in blocks)]
        if missing:
            got = await self._ask(missing)
            got = {c: got[c] for c in missing if c in got}
            await trio.to_thread.run_sync(_verify, got)
            lost = [c for c in missing if c not in got]
            if lost:
                if got:
                    await local.put_blocks(list(got.items()))
                raise FetchIncomplete(
                    f"{len(lost)} blocks of {self.root} not sent by any of {len(self.peers)} "
                    f"peers within {self.fetcher.stall:g} s (one: {lost[0]})"
                )
            fetched = sum(len(b) for b in got.values())
            if self.progress.bytes + fetched > limits.max_bytes:
                raise DagTooLarge(f"{self.root} has more than {limits.max_bytes} bytes")
            await local.put_blocks(list(got.items()))
            self.progress.fetched_blocks += len(got)
            self.progress.fetched_bytes += fetched
            blocks.update(got)
        children: list[tuple[CID, int]] = []
        for cid in cids:
            block = blocks.get(cid)
            if block is None:
                continue  # a held raw block
            self.progress.blocks += 1
            self.progress.bytes += len(block)
            if cid == self.root and self.progress.expected_bytes is None:
                self.progress.expected_bytes = stated_size(cid, block)
            if cid.codec == RAW:
                continue
            links = self.fetcher._links(cid, block)
            if links and depth_of[cid] + 1 > limits.max_depth:
                raise DagTooLarge(f"{self.root} is more than {limits.max_depth} levels deep")
            self.visits += len(links)
            if self.visits > limits.max_blocks:
                raise DagTooLarge(f"{self.root} has more than {limits.max_blocks} blocks")
            children.extend((link, depth_of[cid] + 1) for link in links)
        if self.visits > limits.max_blocks:
            raise DagTooLarge(f"{self.root} has more than {limits.max_blocks} blocks")
        if self.progress.bytes > limits.max_bytes:
            raise DagTooLarge(f"{self.root} has more than {limits.max_bytes} bytes")
        children.reverse()  # the leftmost child is taken first
        self.stack.extend(children)
        if len(self.stack) > limits.max_pending:
            raise DagTooLarge(f"{self.root}: more than {limits.max_pending} links to follow")
        self.progress.pending = len(self.stack)
        self._changed()
