"""The sync protocol's state machine for one stream (sans-IO, in the manner of h11).

The driver (``gridnode.sync``) feeds received bytes to :meth:`SyncConnection.receive` and gets
events back; it answers events by calling methods that return the bytes to send. The machine
knows nothing of sockets, storage or clocks: time comes in as ``now`` arguments.

One stream, two roles:

- the **puller** (who opened the stream) asks ``heads?``, then sends ``want`` for what it lacks,
  as often as needed: each ``want`` is one round trip;
- the **server** answers ``heads?`` with ``heads`` and each ``want`` with ``blocks``.

Everything a peer can make us spend is bounded per stream: frame size, bytes received, requests
served, rounds, and time waiting for an answer. Overstepping raises :class:`ProtocolError`; the
driver then closes the stream (and may disconnect the peer).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from crdt.ipld.cid import CID
from protocols.wire import (
    MAX_WANT,
    Blocks,
    FrameDecoder,
    Heads,
    HeadsRequest,
    Message,
    ProtocolError,
    Refusal,
    Want,
    encode_message,
    parse_message,
)

__all__ = [
    "BlocksArrived",
    "BlocksAsked",
    "Budget",
    "Event",
    "HeadsArrived",
    "HeadsAsked",
    "Refused",
    "Role",
    "SyncConnection",
    "SyncStats",
]


class Role(Enum):
    PULLER = "puller"
    SERVER = "server"


@dataclass(frozen=True)
class Budget:
    """What one stream may cost us."""

    #: Bytes a peer may send us on one stream.
    max_bytes_received: int = 512 * 1024 * 1024
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
class Refused:
    """The peer refused our last request."""

    reason: str


Event = HeadsAsked | BlocksAsked | HeadsArrived | BlocksArrived | Refused


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

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Bytes from the peer in; events out. Raises :class:`ProtocolError` on a violation."""
        self.stats.bytes_received += len(data)
        if self.stats.bytes_received > self.budget.max_bytes_received:
            raise ProtocolError(f"peer sent over {self.budget.max_bytes_received} bytes")
        events: list[Event] = []
        for payload in self._decoder.feed(data):
            self.stats.messages_received += 1
            events.append(self._handle(parse_message(payload)))
        return events

    def _handle(self, message: Message) -> Event:
        if self.role is Role.SERVER:
            self._requests_served += 1
            if self._requests_served > self.budget.max_requests:
                raise ProtocolError(f"over {self.budget.max_requests} requests on one stream")
            if isinstance(message, HeadsRequest):
                return HeadsAsked(message.db)
            if isinstance(message, Want):
                return BlocksAsked(message.db, message.cids, message.have)
            raise ProtocolError(f"a server does not accept {type(message).__name__}")
        if isinstance(message, Refusal):
            if self._awaiting is None:
                raise ProtocolError("refusal of a request never made")
            self._awaiting = None
            return Refused(message.reason)
        if isinstance(message, Heads) and self._awaiting is HeadsRequest:
            self._check_db(message.db)
            self._awaiting = None
            return HeadsArrived(message.db, message.heads)
        if isinstance(message, Blocks) and self._awaiting is Want:
            self._check_db(message.db)
            # A server streams a long answer as several blocks messages; the last says more=False.
            if not message.more:
                self._awaiting = None
            self.stats.blocks_received += len(message.blocks)
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

    def want(self, db: CID, cids: list[CID], have: list[CID], now: float) -> bytes:
        """(puller) Ask for entries (at most :data:`~protocols.wire.MAX_WANT` per call)."""
        if self.stats.round_trips >= self.budget.max_rounds:
            raise ProtocolError(f"gave up after {self.budget.max_rounds} rounds")
        self._ask(Want, db, now)
        self.stats.round_trips += 1
        return self._send(Want(db, tuple(cids[:MAX_WANT]), tuple(have[:MAX_WANT])))

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
        """When the awaited answer is overdue (``None`` if nothing is awaited)."""
        return None if self._awaiting is None else self._asked_at + self.budget.answer_timeout

    def check_time(self, now: float) -> None:
        """Raise :class:`ProtocolError` if an answer is overdue."""
        deadline = self.deadline()
        if deadline is not None and now > deadline:
            raise ProtocolError(f"no answer within {self.budget.answer_timeout} s")

    # -- server -------------------------------------------------------------------------------

    def heads(self, db: CID, heads: list[CID]) -> bytes:
        """(server) Our heads of ``db`` (empty if we do not keep it)."""
        return self._send(Heads(db, tuple(heads)))

    def blocks(self, db: CID, blocks: list[tuple[CID, bytes]], more: bool) -> bytes:
        """(server) Entry blocks answering a want, parents before children. A long answer is
        several calls, all but the last with ``more=True``."""
        self.stats.blocks_sent += len(blocks)
        return self._send(Blocks(db, tuple(blocks), more))

    def refuse(self, reason: str) -> bytes:
        """(server) Refuse the request just received."""
        return self._send(Refusal(reason))

    def _send(self, message: Message) -> bytes:
        data = encode_message(message)
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(data)
        return data
