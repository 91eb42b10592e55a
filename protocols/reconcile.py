"""Range-based set reconciliation (sans-IO), after Meyer (arXiv 2212.13567) and Negentropy.

Two peers hold sets of items: byte strings in one total order (for gridnode, an entry's 8-byte
big-endian clock followed by its binary CID, so the order is the log's total order). They find the
symmetric difference in a number of round trips that grows with log(n), not with n:

- the initiator sends one range covering everything, with its fingerprint;
- a peer receiving a range whose fingerprint matches its own says nothing more about it; on a
  mismatch it splits the range into ``branching`` parts and sends their fingerprints, or, for a
  range holding at most ``threshold`` of its items, the items themselves;
- a peer receiving a list of items for a range learns which of them it lacks, and answers with
  the items of that range the other lacks. That range is then settled on both sides.

A message holds at most ``MAX_RANGES`` ranges (and ``MAX_IDS`` items): a longer answer keeps its
first ranges and sends the rest of the space as one fingerprint, reconciled in later rounds.

A message is a list of ranges that together cover the whole item space, in order; each names its
exclusive upper bound and one of: ``skip`` (settled), ``fp`` (a fingerprint), ``ids`` (my items
here; answer with yours the sender lacks), ``have`` (the items you lack here; settled), ``want``
(send me these items of yours; settled).

Two ways to play it. *Symmetric* (no role): each side ends knowing what it lacks (:attr:`need`)
and what the other lacks (:attr:`have`). *Pull* (roles ``puller`` and ``server``, what the sync
protocol uses): the server sends the puller every item it lacks, as entries, in the same answer
that settles the range (:attr:`outbox` collects them), and never learns more of the puller's set
than it needs; the puller answers a server's ``ids`` with ``want``. The puller's first message
looks closely at the newest items (:meth:`ItemSet.recent_bounds`), so replicas that differ by a
few recent entries settle in one round trip.

The fingerprint of a range is ``sha256(count || sum of sha256(item) mod 2**256)[:16]``: the sum
can be kept per prefix (or per tree node), so a node with a million items answers a range query
without scanning them. docs/spec.md §11 argues why a writer grinding CIDs gains nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from crdt.errors import DecodeError
from crdt.ipld.dagcbor import decode, encode
from crdt.rangesums import TOP, fingerprint_of, item_hash
from protocols import wire
from protocols.errors import ProtocolError

__all__ = [
    "TOP",
    "ItemSet",
    "Reconciler",
    "SortedItems",
    "fingerprint_of",
    "item_hash",
    "parse_ranges",
]

_MOD: Final = 1 << 256
MAX_ITEM: Final = 64
MAX_IDS: Final = 65_536
#: Bytes of ranges one message carries at most (a frame holds 4 MiB; the rest is for the envelope).
MAX_MESSAGE_BYTES: Final = 3 * 1024 * 1024

Role = Literal["puller", "server"] | None


class ItemSet(Protocol):
    """What reconciliation needs of the local items (lower bound inclusive, upper exclusive)."""

    def count(self, low: bytes, high: bytes) -> int: ...

    def fingerprint(self, low: bytes, high: bytes) -> bytes: ...

    def items(self, low: bytes, high: bytes) -> list[bytes]: ...

    def split(self, low: bytes, high: bytes, parts: int) -> list[bytes]:
        """Up to ``parts - 1`` inner bounds cutting the range into smaller parts."""
        ...

    def recent_bounds(self) -> list[bytes]:
        """Ascending cuts for the first message: finer towards the newest items."""
        ...


class SortedItems:
    """An :class:`ItemSet` over a sorted list, with prefix sums: every query is O(log n)."""

    def __init__(self, items: Sequence[bytes]) -> None:
        self._items = sorted(set(items))
        self._prefix = [0]
        for item in self._items:
            self._prefix.append((self._prefix[-1] + item_hash(item)) % _MOD)

    def _span(self, low: bytes, high: bytes) -> tuple[int, int]:
        return bisect.bisect_left(self._items, low), bisect.bisect_left(self._items, high)

    def count(self, low: bytes, high: bytes) -> int:
        start, end = self._span(low, high)
        return max(end - start, 0)

    def fingerprint(self, low: bytes, high: bytes) -> bytes:
        start, end = self._span(low, high)
        end = max(end, start)
        return fingerprint_of(end - start, self._prefix[end] - self._prefix[start])

    def items(self, low: bytes, high: bytes) -> list[bytes]:
        start, end = self._span(low, high)
        return self._items[start:end]

    def split(self, low: bytes, high: bytes, parts: int) -> list[bytes]:
        start, end = self._span(low, high)
        n = end - start
        bounds: list[bytes] = []
        for k in range(1, parts):
            index = start + n * k // parts
            if start < index < end:
                bound = self._items[index]
                if bound > low and (not bounds or bound > bounds[-1]):
                    bounds.append(bound)
        return bounds

    def recent_bounds(self) -> list[bytes]:
        n = len(self._items)
        cuts = []
        span = 16
        while span < n:
            cuts.append(self._items[n - span])
            span *= 16
        return sorted(set(cuts))


@dataclass
class _Range:
    high: bytes
    mode: str
    payload: bytes | list[bytes] | None = None


@dataclass
class Reconciler:
    """One side of a reconciliation. Feed each received message to :meth:`receive`; send what it
    returns until it returns ``None``. Then :attr:`need` holds the items the peer has and this side
    lacks, :attr:`have` those this side has and the peer lacks (as far as this side learnt)."""

    items: ItemSet
    threshold: int = 16
    branching: int = 16
    max_rounds: int = 64
    role: Role = None
    need: set[bytes] = field(default_factory=set)
    have: set[bytes] = field(default_factory=set)
    #: (server) Items to send the peer with the answer to the message just received.
    outbox: list[bytes] = field(default_factory=list)
    rounds: int = 0

    def initiate(self) -> bytes:
        """The first message (the initiator's), encoded."""
        return encode(self.initiate_ranges())

    def initiate_ranges(self) -> list[list[Any]]:
        """The first message as an IPLD value: the whole space, finer towards the newest items."""
        out: list[_Range] = []
        low = b""
        for bound in [*self.items.recent_bounds(), TOP]:
            if bound > low:
                out.extend(self._describe(low, bound))
                low = bound
        # The newest range goes as an id list even when it is a little over the threshold (its
        # first clock may hold several entries): most warm syncs then settle in this round trip.
        last_low = out[-2].high if len(out) > 1 else b""
        if out[-1].mode == "fp" and self.items.count(last_low, TOP) <= 4 * self.threshold:
            out[-1] = _Range(TOP, "ids", self.items.items(last_low, TOP))
        return self._to_value(self._bounded(out))

    def receive(self, message: bytes) -> bytes | None:
        """Process the peer's encoded message; return the encoded answer, or ``None`` when all
        is settled."""
        try:
            value = decode(message)
        except DecodeError as exc:
            raise ProtocolError(f"reconciliation message is not DAG-CBOR: {exc}") from None
        answer = self.receive_ranges(value)
        return None if answer is None else encode(answer)

    def receive_ranges(self, value: Any) -> list[list[Any]] | None:
        """Process the peer's message (an IPLD value, checked here); return the answer, or
        ``None`` when every range is settled."""
        steps = self.receive_steps(value)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                answer: list[list[Any]] | None = stop.value
                return answer

    def receive_steps(self, value: Any) -> Generator[None, None, list[list[Any]] | None]:
        """:meth:`receive_ranges` as a generator that yields after each range, so a server can
        answer a message of thousands of ranges in bounded slices; it returns the answer."""
        self.rounds += 1
        if self.rounds > self.max_rounds:
            raise ProtocolError(f"reconciliation took over {self.max_rounds} rounds")
        ranges = parse_ranges(value)
        self.outbox = []
        out: list[_Range] = []
        low = b""
        for incoming in ranges:
            yield
            high = incoming.high
            mode = incoming.mode
            if mode == "skip":
                out.append(_Range(high, "skip"))
            elif mode == "have":
                assert isinstance(incoming.payload, list)
                self.need.update(i for i in incoming.payload if low <= i < high)
                out.append(_Range(high, "skip"))
            elif mode == "want":
                if self.role != "server":
                    raise ProtocolError("only a server is asked to send items")
                assert isinstance(incoming.payload, list)
                held = set(self.items.items(low, high))
                asked = [i for i in incoming.payload if low <= i < high and i in held]
                self.have.update(asked)
                self.outbox.extend(asked)
                out.append(_Range(high, "skip"))
            elif mode == "ids":
                assert isinstance(incoming.payload, list)
                theirs = {i for i in incoming.payload if low <= i < high}
                mine = self.items.items(low, high)
                lacking = sorted(theirs.difference(mine))
                self.need.update(lacking)
                missing = [i for i in mine if i not in theirs]
                self.have.update(missing)
                if self.role == "server":
                    self.outbox.extend(missing)
                    out.append(_Range(high, "skip"))
                elif self.role == "puller":
                    out.append(_Range(high, "want", lacking) if lacking else _Range(high, "skip"))
                else:
                    out.append(_Range(high, "have", missing))
            else:
                if incoming.payload == self.items.fingerprint(low, high):
                    out.append(_Range(high, "skip"))
                else:
                    out.extend(self._split(low, high))
            low = high
        if all(r.mode == "skip" for r in out):
            return None
        return self._to_value(self._bounded(out))

    def _describe(self, low: bytes, high: bytes) -> list[_Range]:
        if self.items.count(low, high) <= self.threshold:
            return [_Range(high, "ids", self.items.items(low, high))]
        return [_Range(high, "fp", self.items.fingerprint(low, high))]

    def _split(self, low: bytes, high: bytes) -> list[_Range]:
        if self.items.count(low, high) <= self.threshold:
            return [_Range(high, "ids", self.items.items(low, high))]
        out: list[_Range] = []
        start = low
        for bound in [*self.items.split(low, high, self.branching), high]:
            part = self._describe(start, bound)
            # Neighbouring empty parts merge into one: "I have nothing from here to there".
            if (
                part[0].mode == "ids"
                and not part[0].payload
                and out
                and out[-1].mode == "ids"
                and not out[-1].payload
            ):
                out[-1] = part[0]
            else:
                out.extend(part)
            start = bound
        return out

    def _bounded(self, ranges: list[_Range]) -> list[_Range]:
        """The message as the peer accepts it (:func:`parse_ranges`): at most ``MAX_RANGES``
        ranges, ``MAX_IDS`` items and ``MAX_MESSAGE_BYTES``. A longer answer keeps its first
        ranges and sends the rest of the space as one fingerprint, which the peer splits again
        next round (as Negentropy does under a frame size limit): a large honest divergence
        takes a few more round trips instead of a message the peer must refuse."""
        ranges = _merge_skips(ranges)

        def cost(r: _Range) -> tuple[int, int]:
            items = r.payload if isinstance(r.payload, list) else []
            return len(items), len(r.high) + 24 + sum(len(i) + 2 for i in items)

        costs = [cost(r) for r in ranges]
        if (
            len(ranges) <= wire.MAX_RANGES
            and sum(c[0] for c in costs) <= MAX_IDS
            and sum(c[1] for c in costs) <= MAX_MESSAGE_BYTES
        ):
            return ranges
        kept: list[_Range] = []
        ids = size = 0
        for r, (n, b) in zip(ranges, costs, strict=True):
            ids += n
            size += b
            if len(kept) >= wire.MAX_RANGES - 1 or ids > MAX_IDS or size > MAX_MESSAGE_BYTES:
                break
            kept.append(r)
        low = kept[-1].high if kept else b""
        # Items of the ranges cut off go later, when the peer asks for them again.
        self.outbox = [i for i in self.outbox if i < low]
        return [*kept, _Range(TOP, "fp", self.items.fingerprint(low, TOP))]

    # -- wire form ----------------------------------------------------------------------------

    @staticmethod
    def _to_value(ranges: list[_Range]) -> list[list[Any]]:
        body = []
        for r in _merge_skips(ranges):
            entry: list[Any] = [r.high, r.mode]
            if r.payload is not None:
                entry.append(r.payload)
            body.append(entry)
        return body


def _merge_skips(ranges: list[_Range]) -> list[_Range]:
    # Consecutive skips merge into one: a settled stretch costs one bound, not one per range.
    merged: list[_Range] = []
    for r in ranges:
        if r.mode == "skip" and merged and merged[-1].mode == "skip":
            merged[-1] = r
        else:
            merged.append(r)
    return merged


def parse_ranges(body: Any) -> list[_Range]:
    """Check a received list of ranges; :class:`ProtocolError` for anything malformed."""
    if type(body) is not list or not 0 < len(body) <= wire.MAX_RANGES:
        raise ProtocolError("a reconciliation message is a list of ranges")
    ranges = []
    previous = b""
    total_ids = 0
    for entry in body:
        if type(entry) is not list or len(entry) not in (2, 3) or type(entry[0]) is not bytes:
            raise ProtocolError("a range is [upper bound, mode, payload?]")
        high, mode = entry[0], entry[1]
        if len(high) > len(TOP) or high <= previous:
            raise ProtocolError("range bounds must ascend")
        previous = high
        payload = entry[2] if len(entry) == 3 else None
        if mode == "skip" and payload is None:
            ranges.append(_Range(high, mode))
        elif mode == "fp" and type(payload) is bytes and len(payload) == 16:
            ranges.append(_Range(high, mode, payload))
        elif mode in ("ids", "have", "want") and type(payload) is list:
            total_ids += len(payload)
            if total_ids > MAX_IDS or not all(
                type(i) is bytes and len(i) <= MAX_ITEM for i in payload
            ):
                raise ProtocolError("item lists too long or malformed")
            ranges.append(_Range(high, mode, payload))
        else:
            raise ProtocolError(f"malformed range of mode {mode!r:.20}")
    if ranges[-1].high != TOP:
        raise ProtocolError("the ranges must cover the whole item space")
    return ranges
