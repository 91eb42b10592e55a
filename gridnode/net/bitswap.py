"""Bitswap on the node's libp2p host: serve blocks to IPFS peers, fetch blocks from them.

The protocol's state machines are :mod:`protocols.bitswap`; this is the trio adapter around them:
it reads and writes length-prefixed messages on ``/ipfs/bitswap/1.2.0`` (and ``1.1.0``) streams,
looks blocks up through a callback (the node's: only databases it serves, see
:meth:`gridnode.repo.Repo.served_blocks`), and paces each peer.

Limits, per peer: messages of at most 4 MiB (larger ones are a protocol violation), at most
``max_streams`` inbound streams at once (its messages handled one at a time), at most 4096
wants remembered, and a byte allowance
(``rate`` bytes a second, ``burst`` at once) shared by the blocks sent and the lookups asked
for; a peer past it waits, others do not. Serving is read-only: nothing a peer sends is
stored by serving, and blocks it sends that nobody asked for are dropped.

Outbound, per peer: answers are charged to the peer's queue budget (``max_queued`` bytes) when
they are queued, not when written; what does not fit waits, still wanted, and is looked up
again as the queue drains (lookups go in batches that stop when the budget is full, so a lookup
never holds more than a batch of blocks). A peer whose stream does not take an answer within
``write_timeout`` seconds is a reader who does not read: its stream is reset, its queued answers
and want-list are dropped (their memory freed) and it is reported as a violation.

Answers go on a stream this node opens to the asking peer (the protocol's rule); it stays open
for ``idle`` seconds for the next answers.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Final, Protocol

import trio

from crdt.ipld.cid import CID
from gridnode.errors import NetError
from gridnode.net.host import Host
from gridnode.net.stream import Stream
from protocols.bitswap import (
    MAX_MESSAGE,
    MAX_QUEUED,
    PROTOCOLS,
    Allowance,
    BitswapMessage,
    Fetch,
    Ledger,
    decode_message,
    frame_message,
)
from protocols.errors import ProtocolError
from protocols.wire import FrameDecoder

__all__ = ["Bitswap", "BitswapConfig", "BitswapStats", "BlockLookup"]

log = logging.getLogger(__name__)


class PeerBudgets(Protocol):
    """The node's per-peer budgets (:class:`gridnode.node.budget.Budgets`), shared by every
    protocol: storage calls made inside ``serving(peer)`` are charged to ``peer``, and ``send``
    charges bytes and waits while the peer is in debt."""

    def serving(self, peer: str) -> AbstractContextManager[None]: ...

    async def send(self, peer: str, size: int) -> None: ...


#: ``await lookup(cids)`` -> ``{cid: block or None}``: the blocks this node serves.
BlockLookup = Callable[[list[CID]], Awaitable[dict[CID, bytes | None]]]
#: ``await violation(peer, reason)``: a peer broke the protocol.
Violation = Callable[[str, str], Awaitable[None]]

#: CIDs asked of the peers at once by :meth:`Bitswap.fetch`.
MAX_IN_FLIGHT: Final = 1024
# What one looked-up CID costs of a peer's allowance, in bytes.
_LOOKUP_COST: Final = 256
_READ: Final = 64 * 1024
# CIDs looked up at once when answering: at most this many blocks (2 MiB each at worst) are in
# hand before the queue budget decides what is queued and what waits.
_LOOKUP_BATCH: Final = 16


@dataclass(frozen=True)
class BitswapConfig:
    """Per-peer limits of the bitswap service."""

    #: Bytes a second each peer may take (blocks sent, lookups at 256 bytes each).
    rate: float = 16 * 1024 * 1024
    #: Bytes a peer may take at once before the rate applies.
    burst: float = 32 * 1024 * 1024
    #: Inbound bitswap streams a peer may hold open at once (Helia opens one per want-list
    #: message); a peer's messages are handled one at a time whatever stream they came on.
    max_streams: int = 32
    #: Seconds an outbound stream stays open without anything to send.
    idle: float = 10.0
    #: Peers whose want-lists are remembered; the least recently active go first.
    max_peers: int = 4096
    #: Bytes of answers queued for a peer and not yet written (charged when queued).
    max_queued: int = MAX_QUEUED
    #: Seconds a peer's stream may take to accept one answer (at most 4 MiB) before the peer is
    #: dropped as a reader who does not read.
    write_timeout: float = 30.0


@dataclass
class BitswapStats:
    """What the bitswap service did, since the node started."""

    messages_received: int = 0
    messages_sent: int = 0
    wants_received: int = 0
    blocks_sent: int = 0
    block_bytes_sent: int = 0
    presences_sent: int = 0
    blocks_received: int = 0
    unasked_blocks: int = 0
    violations: int = 0
    #: Peers dropped because their stream did not take our answers within ``write_timeout``.
    slow_readers_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Peer:
    ledger: Ledger
    allowance: Allowance
    outbox: deque[BitswapMessage] = field(default_factory=deque)
    more: trio.Event = field(default_factory=trio.Event)
    sending: bool = False
    streams_in: int = 0
    handling: trio.Lock = field(default_factory=trio.Lock)


@dataclass
class _Waiter:
    fetch: Fetch
    changed: trio.Event = field(default_factory=trio.Event)


class Bitswap:
    """The bitswap service of one host; :meth:`mount` makes it serve."""

    def __init__(
        self,
        host: Host,
        nursery: trio.Nursery,
        lookup: BlockLookup,
        *,
        violation: Violation | None = None,
        config: BitswapConfig | None = None,
        budgets: PeerBudgets | None = None,
    ) -> None:
        self._host = host
        self._nursery = nursery
        self._lookup = lookup
        self._violation = violation
        #: The node's per-peer budgets, shared with its other protocols (lookups and bytes sent
        #: are charged to the peer served); ``None``: bitswap's own allowance only.
        self._budgets = budgets
        self.config = config or BitswapConfig()
        self._peers: dict[str, _Peer] = {}
        self._waiters: list[_Waiter] = []
        self._recheck_due = False
        self._rechecking = False
        self.stats = BitswapStats()

    def mount(self) -> None:
        """Serve ``/ipfs/bitswap/1.2.0`` and ``1.1.0`` streams."""
        for protocol in PROTOCOLS:
            self._host.set_stream_handler(protocol, self._serve)

    # -- per peer -------------------------------------------------------------------------------

    def _peer(self, peer_id: str) -> _Peer:
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            peer = _Peer(
                Ledger(max_queued=self.config.max_queued),
                Allowance(self.config.rate, self.config.burst),
            )
            while len(self._peers) >= self.config.max_peers:
                del self._peers[next(iter(self._peers))]
        self._peers[peer_id] = peer  # most recently active last
        return peer

    def wanted_by(self, peer_id: str) -> list[CID]:
        """What ``peer_id`` has asked for and not received (its waiting wants)."""
        peer = self._peers.get(peer_id)
        return [] if peer is None else peer.ledger.waiting()

    def queued_bytes(self, peer_id: str | None = None) -> int:
        """Bytes of answers queued and not yet written: for ``peer_id``, or for every peer."""
        if peer_id is not None:
            peer = self._peers.get(peer_id)
            return 0 if peer is None else peer.ledger.queued
        return sum(peer.ledger.queued for peer in self._peers.values())

    # -- inbound ----------------------------------------------------------------------------------

    async def _serve(self, stream: Stream) -> None:
        peer_id = stream.remote_peer_id
        peer = self._peer(peer_id)
        if peer.streams_in >= self.config.max_streams:
            log.info("bitswap: %s opened more than %d streams; refused", peer_id, peer.streams_in)
            await stream.reset()
            return
        peer.streams_in += 1
        decoder = FrameDecoder(MAX_MESSAGE)
        try:
            while True:
                data = await stream.read(_READ)
                if not data:
                    return
                for payload in decoder.feed(data):
                    message = decode_message(payload)
                    async with peer.handling:
                        await self._handle(peer_id, message)
        except ProtocolError as exc:
            self.stats.violations += 1
            log.info("bitswap: bad message from %s: %s", peer_id, exc)
            await stream.reset()
            if self._violation is not None:
                await self._violation(peer_id, f"bitswap: {exc}")
        finally:
            peer.streams_in -= 1

    async def _handle(self, peer_id: str, message: BitswapMessage) -> None:
        self.stats.messages_received += 1
        if message.blocks or message.presences:
            taken = 0
            for waiter in self._waiters:
                new = waiter.fetch.receive(peer_id, message)
                taken += len(new)
                waiter.changed.set()
            self.stats.blocks_received += taken
            self.stats.unasked_blocks += max(0, len(message.blocks) - taken)
        if message.wants or message.full:
            peer = self._peer(peer_id)
            self.stats.wants_received += len(message.wants)
            cids = peer.ledger.receive(message)
            if cids:
                await self._answer(peer_id, peer, cids)

    async def _answer(self, peer_id: str, peer: _Peer, cids: list[CID]) -> None:
        # Blocks in hand are packed into answers once they fill a message or the queue's room,
        # so small blocks still travel many to a message.
        found: dict[CID, bytes | None] = {}
        in_hand = 0
        for start in range(0, len(cids), _LOOKUP_BATCH):
            if self._peers.get(peer_id) is not peer:
                return  # dropped meanwhile
            if in_hand >= min(MAX_MESSAGE, peer.ledger.room()):
                self._send(peer_id, peer, peer.ledger.answer(found))
                found, in_hand = {}, 0
            if peer.ledger.queued >= peer.ledger.max_queued:
                # Full: the rest waits, wanted, until the queue drains.
                peer.ledger.hold(cids[start:])
                break
            batch = cids[start : start + _LOOKUP_BATCH]
            delay = peer.allowance.delay(len(batch) * _LOOKUP_COST, trio.current_time())
            if delay > 0:
                await trio.sleep(delay)
            if self._budgets is None:
                got = await self._lookup(batch)
            else:
                with self._budgets.serving(peer_id):
                    got = await self._lookup(batch)
            found.update(got)
            in_hand += sum(len(b) for b in got.values() if b is not None)
        self._send(peer_id, peer, peer.ledger.answer(found))

    def blocks_added(self) -> None:
        """The node has new blocks: look again for the wants that are waiting."""
        self._recheck_due = True
        if not self._rechecking and any(p.ledger.wants for p in self._peers.values()):
            self._rechecking = True
            self._nursery.start_soon(self._recheck)

    async def _recheck(self) -> None:
        try:
            while self._recheck_due:
                self._recheck_due = False
                for peer_id, peer in list(self._peers.items()):
                    waiting = peer.ledger.waiting()
                    if waiting:
                        await self._answer(peer_id, peer, waiting)
        finally:
            self._rechecking = False

    # -- outbound ---------------------------------------------------------------------------------

    def _send(self, peer_id: str, peer: _Peer, messages: Sequence[BitswapMessage]) -> None:
        if not messages:
            return
        peer.outbox.extend(messages)
        peer.more.set()
        if not peer.sending:
            peer.sending = True
            self._nursery.start_soon(self._sender, peer_id, peer)

    async def _sender(self, peer_id: str, peer: _Peer) -> None:
        stream: Stream | None = None
        try:
            while True:
                if not peer.outbox and peer.ledger.held:
                    # The queue drained: answer what waited for room.
                    await self._answer(peer_id, peer, peer.ledger.take_held())
                if not peer.outbox:
                    peer.more = trio.Event()
                    with trio.move_on_after(self.config.idle):
                        await peer.more.wait()
                    if not peer.outbox:
                        return
                message = peer.outbox.popleft()
                data = frame_message(message)
                delay = peer.allowance.delay(len(data), trio.current_time())
                if delay > 0:
                    await trio.sleep(delay)
                if self._budgets is not None:
                    await self._budgets.send(peer_id, len(data))
                with trio.fail_after(self.config.write_timeout):
                    if stream is None:
                        stream = await self._host.open_stream(peer_id, PROTOCOLS)
                    await stream.write(data)
                peer.ledger.sent(message)
                self.stats.messages_sent += 1
                self.stats.blocks_sent += len(message.blocks)
                self.stats.block_bytes_sent += sum(len(b) for _c, b in message.blocks)
                self.stats.presences_sent += len(message.presences)
        except trio.TooSlowError:
            self.stats.slow_readers_dropped += 1
            log.info(
                "bitswap: %s took no answer in %g s; dropped with %d bytes queued",
                peer_id,
                self.config.write_timeout,
                peer.ledger.queued,
            )
            self._drop(peer_id, peer)
            if stream is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await stream.reset()
                stream = None
            if self._violation is not None:
                await self._violation(
                    peer_id, f"bitswap: took no answer in {self.config.write_timeout:g} s"
                )
        except (NetError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("bitswap: cannot send to %s: %s", peer_id, exc)
            peer.outbox.clear()
            peer.ledger.drop_queue()  # its wants stay, to be answered when it comes back
        finally:
            peer.sending = False
            if stream is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await stream.close()

    def _drop(self, peer_id: str, peer: _Peer) -> None:
        """Forget what is queued for ``peer`` and what it wants: its memory is freed."""
        peer.outbox.clear()
        peer.ledger.drop_queue()
        peer.ledger.wants.clear()
        if self._peers.get(peer_id) is peer:
            del self._peers[peer_id]

    # -- fetching ---------------------------------------------------------------------------------

    async def fetch(
        self, cids: Sequence[CID], peers: Sequence[str], *, timeout: float = 30.0
    ) -> dict[CID, bytes]:
        """Ask ``peers`` for ``cids``; return the blocks received (each checked against its CID),
        within ``timeout`` seconds. A CID that every peer said it lacks, or that none sent in
        time, is missing from the answer. At most :data:`MAX_IN_FLIGHT` CIDs are asked at once
        (a server remembers only so many wants per peer)."""
        got: dict[CID, bytes] = {}
        wanted = list(dict.fromkeys(cids))
        with trio.move_on_after(timeout):
            for start in range(0, len(wanted), MAX_IN_FLIGHT):
                got.update(await self._fetch_some(wanted[start : start + MAX_IN_FLIGHT], peers))
        return got

    async def _fetch_some(self, cids: Sequence[CID], peers: Sequence[str]) -> dict[CID, bytes]:
        waiter = _Waiter(Fetch())
        waiter.fetch.want(cids)
        peers = list(dict.fromkeys(peers))
        self._waiters.append(waiter)
        try:
            for peer_id in peers:
                ask = waiter.fetch.ask(peer_id, limit=MAX_IN_FLIGHT)
                if ask is not None:
                    self._send(peer_id, self._peer(peer_id), [ask])
            while not waiter.fetch.done:
                lacking = set(waiter.fetch.failed(peers))
                if lacking >= set(waiter.fetch.wanted):
                    break
                for peer_id in peers:
                    cancel = waiter.fetch.cancels(peer_id)
                    if cancel is not None:
                        self._send(peer_id, self._peer(peer_id), [cancel])
                waiter.changed = trio.Event()
                await waiter.changed.wait()
        finally:
            self._waiters.remove(waiter)
            cancel = waiter.fetch.abandon()
            if cancel is not None:
                for peer_id in peers:
                    self._send(peer_id, self._peer(peer_id), [cancel])
        return dict(waiter.fetch.got)
