"""The sync protocol's state machine for one stream (sans-IO, in the manner of h11).

The driver (``gridnode.node.sync``) feeds received bytes to :meth:`SyncConnection.receive` and gets
events back; it answers events by calling methods that return the bytes to send. The machine
knows nothing of sockets, storage or clocks: time comes in as ``now`` arguments.

One stream, two roles:

- the **puller** (who opened the stream) sends ``sync`` (its heads and the first message of a
  set reconciliation, :mod:`protocols.reconcile`), then ``ranges`` while reconciliation goes on,
  and, for anything the server's heads show is still lacking, ``want``: each is one round trip;
- the **server** answers ``sync`` with ``heads``, ``entries`` (what the puller lacks) and
  ``ranges``; each ``ranges`` with ``entries`` and ``ranges``; each ``want`` with ``blocks``;
  and ``heads?`` (asked alone) with ``heads``.

Everything a peer can make us spend is bounded: the size of each message (a frame, and the count
limits :func:`~protocols.wire.parse_message` checks), the bytes read per unit of time (at most
``Budget.max_bytes_received`` per ``Budget.window`` seconds: the driver reads no further until
the window ends, :meth:`SyncConnection.room`, so an honest peer sending a long history is slowed,
never refused), and per stream the requests served, rounds, and time waiting for an answer.
Overstepping raises :class:`ProtocolError`; the driver then closes the stream (and may disconnect
the peer). What we send is held to the same message limits (:class:`SendLimitError`, raised before
anything is sent): a node never builds a message its own peers must refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from crdt.ipld.cid import CID
from protocols.errors import SendLimitError
from protocols.wire import (
    MAX_HEADS,
    MAX_WANT,
    Blocks,
    Entries,
    FrameDecoder,
    Heads,
    HeadsRequest,
    Message,
    ProtocolError,
    Ranges,
    Refusal,
    Sync,
    Want,
    encode_message,
    parse_message,
)

__all__ = [
    "BlocksArrived",
    "BlocksAsked",
    "Budget",
    "EntriesArrived",
    "Event",
    "HeadsArrived",
    "HeadsAsked",
    "RangesArrived",
    "RangesAsked",
    "Refused",
    "Role",
    "SendLimitError",
    "SyncAsked",
    "SyncConnection",
    "SyncStats",
]


class Role(Enum):
    PULLER = "puller"
    SERVER = "server"


@dataclass(frozen=True)
class Budget:
    """What one stream may cost us."""

    #: Bytes read from a peer per ``window`` seconds (64 MiB/s). Memory is bounded per message
    #: (a frame); this bounds the work a peer gives us per unit of time. The driver reads no more
    #: until the window ends, so a peer sending faster is slowed down, not refused: a stream's
    #: lifetime has no byte limit (an honest 1.5 GB history comes on one stream).
    max_bytes_received: int = 256 * 1024 * 1024
    window: float = 4.0
    #: Requests a server answers on one stream.
    max_requests: int = 100_000
    #: Rounds a puller makes on one stream before giving up.
    max_rounds: int = 10_000
    #: Seconds to wait for an answer.
    answer_timeout: float = 30.0


DEFAULT_BUDGET: Final = Budget()


@dataclass
class SyncStats:
    """Accounting for one stream."""

    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    round_trips: int = 0
    blocks_received: int = 0
    blocks_sent: int = 0
    #: Bytes of the entry blocks themselves (the rest of the bytes is protocol overhead).
    block_bytes_received: int = 0
    block_bytes_sent: int = 0
    #: Reconciliation messages (``sync`` and ``ranges``) among the messages.
    reconcile_messages: int = 0

    @property
    def overhead_bytes(self) -> int:
        """Bytes on the stream beyond the entry blocks carried, both ways."""
        return (
            self.bytes_sent
            + self.bytes_received
            - self.block_bytes_sent
            - self.block_bytes_received
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "round_trips": self.round_trips,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "entries_received": self.blocks_received,
            "entries_sent": self.blocks_sent,
            "overhead_bytes": self.overhead_bytes,
        }


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadsAsked:
    """(server) The peer asks for our heads of ``db``: answer with :meth:`SyncConnection.heads`."""

    db: CID


@dataclass(frozen=True)
class BlocksAsked:
    """(server) The peer wants these entries and their ancestors: answer with
    :meth:`SyncConnection.blocks`."""

    db: CID
    cids: tuple[CID, ...]
    have: tuple[CID, ...]


@dataclass(frozen=True)
class HeadsArrived:
    """(puller) The peer's heads of ``db``: find the ones we lack, then :meth:`want` or stop."""

    db: CID
    heads: tuple[CID, ...]


@dataclass(frozen=True)
class BlocksArrived:
    """(puller) Entry blocks, parents before children: verify and join them. While ``more``, more
    blocks messages follow for the same want; after the last, :meth:`want` what is still
    missing, or stop."""

    db: CID
    blocks: tuple[tuple[CID, bytes], ...]
    more: bool


@dataclass(frozen=True)
class SyncAsked:
    """(server) The peer starts a pull: answer with :meth:`SyncConnection.heads`, then entries
    and ranges (what the reconciler makes of ``ranges``)."""

    db: CID
    heads: tuple[CID, ...]
    ranges: list[Any]


@dataclass(frozen=True)
class RangesAsked:
    """(server) The next reconciliation message: answer with entries, then ranges."""

    db: CID
    ranges: list[Any]


@dataclass(frozen=True)
class EntriesArrived:
    """(puller) Entry blocks (no CIDs: hash them), parents before children: verify and join."""

    db: CID
    blocks: tuple[bytes, ...]


@dataclass(frozen=True)
class RangesArrived:
    """(puller) The server's reconciliation message, which ends its answer (empty: settled)."""

    db: CID
    ranges: list[Any]


@dataclass(frozen=True)
class Refused:
    """The peer refused our last request."""

    reason: str


Event = (
    HeadsAsked
    | BlocksAsked
    | SyncAsked
    | RangesAsked
    | HeadsArrived
    | BlocksArrived
    | EntriesArrived
    | RangesArrived
    | Refused
)


class SyncConnection:
    """The protocol state of one stream."""

    def __init__(self, role: Role, *, budget: Budget = DEFAULT_BUDGET) -> None:
        self.role = role
        self.budget = budget
        self.stats = SyncStats()
        self._decoder = FrameDecoder()
        #: (puller) what we asked and have not had an answer to, and since when.
        self._awaiting: type[Message] | None = None
        self._db: CID | None = None
        self._asked_at = 0.0
        self._requests_served = 0
        #: (puller) after sync: the heads message has not come yet.
        self._heads_due = False
        #: Bytes received in the window that started at ``_window_start``.
        self._window_start = 0.0
        self._window_bytes = 0
        #: Until when the driver was told to read no further (the answer timeout waits too).
        self._throttled_until = 0.0

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, data: bytes, now: float | None = None) -> list[Event]:
        """Bytes from the peer in; events out. Raises :class:`ProtocolError` on a violation.

        ``now``: a message arriving while an answer is awaited restarts the answer timeout, so
        a long answer streamed as many messages is bounded by its silences, not its length; and
        a new byte window starts once the last one has passed. A driver reads at most
        :meth:`room` bytes: more than the window allows is a :class:`ProtocolError`."""
        if now is not None:
            self._roll_window(now)
        self.stats.bytes_received += len(data)
        self._window_bytes += len(data)
        if self._window_bytes > self.budget.max_bytes_received:
            raise ProtocolError(
                f"peer sent over {self.budget.max_bytes_received} bytes in {self.budget.window} s"
            )
        events: list[Event] = []
        for payload in self._decoder.feed(data):
            self.stats.messages_received += 1
            if now is not None and self._awaiting is not None:
                self._asked_at = now
            events.append(self._handle(parse_message(payload)))
        return events

    def _roll_window(self, now: float) -> None:
        if now >= self._window_start + self.budget.window:
            self._window_start = now
            self._window_bytes = 0

    def room(self, now: float) -> int:
        """Bytes the driver may read now; 0: read nothing before :meth:`resume_at`."""
        self._roll_window(now)
        room = max(self.budget.max_bytes_received - self._window_bytes, 0)
        if not room:
            self._throttled_until = self.resume_at()
        return room

    def resume_at(self) -> float:
        """When the current byte window ends (reading may go on)."""
        return self._window_start + self.budget.window

    def _handle(self, message: Message) -> Event:
        if self.role is Role.SERVER:
            self._requests_served += 1
            if self._requests_served > self.budget.max_requests:
                raise ProtocolError(f"over {self.budget.max_requests} requests on one stream")
            if isinstance(message, HeadsRequest):
                return HeadsAsked(message.db)
            if isinstance(message, Want):
                return BlocksAsked(message.db, message.cids, message.have)
            if isinstance(message, Sync):
                self.stats.reconcile_messages += 1
                return SyncAsked(message.db, message.heads, message.ranges)
            if isinstance(message, Ranges):
                self.stats.reconcile_messages += 1
                return RangesAsked(message.db, message.ranges)
            raise ProtocolError(f"a server does not accept {type(message).__name__}")
        if isinstance(message, Refusal):
            if self._awaiting is None:
                raise ProtocolError("refusal of a request never made")
            self._awaiting = None
            self._heads_due = False
            return Refused(message.reason)
        if isinstance(message, Heads) and (self._awaiting is HeadsRequest or self._heads_due):
            self._check_db(message.db)
            if self._heads_due:
                self._heads_due = False
            else:
                self._awaiting = None
            return HeadsArrived(message.db, message.heads)
        if (
            isinstance(message, Entries)
            and self._awaiting in (Sync, Ranges)
            and not self._heads_due
        ):
            self._check_db(message.db)
            self.stats.blocks_received += len(message.blocks)
            self.stats.block_bytes_received += sum(map(len, message.blocks))
            return EntriesArrived(message.db, message.blocks)
        if isinstance(message, Ranges) and self._awaiting in (Sync, Ranges) and not self._heads_due:
            self._check_db(message.db)
            self._awaiting = None
            self.stats.reconcile_messages += 1
            return RangesArrived(message.db, message.ranges)
        if isinstance(message, Blocks) and self._awaiting is Want:
            self._check_db(message.db)
            # A server streams a long answer as several blocks messages; the last says more=False.
            if not message.more:
                self._awaiting = None
            self.stats.blocks_received += len(message.blocks)
            self.stats.block_bytes_received += sum(len(b) for _, b in message.blocks)
            return BlocksArrived(message.db, message.blocks, message.more)
        raise ProtocolError(f"unexpected {type(message).__name__} from the server")

    def _check_db(self, db: CID) -> None:
        if db != self._db:
            raise ProtocolError(f"answer about {db}, asked about {self._db}")

    # -- puller -------------------------------------------------------------------------------

    def ask_heads(self, db: CID, now: float) -> bytes:
        """(puller) Ask for the peer's heads of ``db``."""
        self._ask(HeadsRequest, db, now)
        return self._send(HeadsRequest(db))

    def sync(self, db: CID, heads: list[CID], ranges: list[Any], now: float) -> bytes:
        """(puller) Start a pull: our heads and the reconciliation's first message."""
        self._ask(Sync, db, now)
        self._count_round()
        self._heads_due = True
        self.stats.reconcile_messages += 1
        return self._send(Sync(db, tuple(heads[:MAX_HEADS]), ranges))

    def reconcile(self, db: CID, ranges: list[Any], now: float) -> bytes:
        """(puller) The next reconciliation message."""
        self._ask(Ranges, db, now)
        self._count_round()
        self.stats.reconcile_messages += 1
        return self._send(Ranges(db, ranges))

    def _count_round(self) -> None:
        if self.stats.round_trips >= self.budget.max_rounds:
            raise ProtocolError(f"gave up after {self.budget.max_rounds} rounds")
        self.stats.round_trips += 1

    def want(self, db: CID, cids: list[CID], have: list[CID], now: float) -> bytes:
        """(puller) Ask for entries (at most :data:`~protocols.wire.MAX_WANT` per call; of
        ``have``, only an optimisation, the first :data:`~protocols.wire.MAX_HEADS`: pass the
        newest first)."""
        self._ask(Want, db, now)
        self._count_round()
        return self._send(Want(db, tuple(cids[:MAX_WANT]), tuple(have[:MAX_HEADS])))

    def _ask(self, kind: type[Message], db: CID, now: float) -> None:
        if self.role is not Role.PULLER:
            raise ProtocolError("only the puller asks")
        if self._awaiting is not None:
            raise ProtocolError("one request at a time")
        self._awaiting = kind
        self._db = db
        self._asked_at = now

    @property
    def waiting(self) -> bool:
        """Whether an answer is awaited."""
        return self._awaiting is not None

    def deadline(self) -> float | None:
        """When the awaited answer is overdue (``None`` if nothing is awaited). Time spent not
        reading (:meth:`room`) does not count against the peer."""
        if self._awaiting is None:
            return None
        return max(self._asked_at, self._throttled_until) + self.budget.answer_timeout

    def check_time(self, now: float) -> None:
        """Raise :class:`ProtocolError` if an answer is overdue."""
        deadline = self.deadline()
        if deadline is not None and now > deadline:
            raise ProtocolError(f"no answer within {self.budget.answer_timeout} s")

    # -- server -------------------------------------------------------------------------------

    def heads(self, db: CID, heads: list[CID]) -> bytes:
        """(server) Our heads of ``db`` (empty if we do not keep it): at most
        :data:`~protocols.wire.MAX_HEADS`, the newest (a node with more sends those; the puller
        gets every entry by reconciliation all the same)."""
        return self._send(Heads(db, tuple(heads)))

    def blocks(self, db: CID, blocks: list[tuple[CID, bytes]], more: bool) -> bytes:
        """(server) Entry blocks answering a want, parents before children. A long answer is
        several calls, all but the last with ``more=True``."""
        self.stats.blocks_sent += len(blocks)
        self.stats.block_bytes_sent += sum(len(b) for _, b in blocks)
        return self._send(Blocks(db, tuple(blocks), more))

    def entries(self, db: CID, blocks: list[bytes]) -> bytes:
        """(server) Entry blocks the puller lacks, parents before children (one frame's worth)."""
        self.stats.blocks_sent += len(blocks)
        self.stats.block_bytes_sent += sum(map(len, blocks))
        return self._send(Entries(db, tuple(blocks)))

    def ranges(self, db: CID, ranges: list[Any]) -> bytes:
        """(server) The reconciliation's answer, which ends the answer to ``sync`` or ``ranges``
        (an empty list: everything is settled)."""
        self.stats.reconcile_messages += 1
        return self._send(Ranges(db, ranges))

    def refuse(self, reason: str) -> bytes:
        """(server) Refuse the request just received."""
        return self._send(Refusal(reason))

    def _send(self, message: Message) -> bytes:
        data = encode_message(message)
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(data)
        return data
