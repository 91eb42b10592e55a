"""The op log: a Merkle-DAG of signed entries for one database.

Entries given to the log are already decoded and signature-checked (:func:`crdt.entry.decode_entry`
or :func:`crdt.entry.create_entry`). The log decides the rest, using only each entry's causal past,
so every correct replica reaches the same verdict whatever order entries arrive in:

- **causality**: an entry is applied only once all its parents are; until then it waits in a
  bounded pending set, and :attr:`Log.missing` names the parents to fetch. An entry descending from
  a rejected one is rejected too.
- **clock**: checked, not trusted: 1 for a root, else exactly 1 + the highest parent clock.
- **skip links**: exactly those its position implies (below), so walks stay logarithmic and a
  writer cannot plant misleading shortcuts.
- **access**: its author may write (or, for an ACL entry, administer) according to the access
  state of its causal past (:mod:`crdt.access`).
- **equivocation**: two entries by one author with the same clock are both kept (they are signed
  and valid), ordered like any others, and recorded in :attr:`Log.equivocations`.

The **total order** of entries is by ``(clock, binary CID)``. Parents have smaller clocks than
their children, so it is a topological order, and it needs nothing but the entries themselves.

**Skip links.** The *spine parent* of an entry is its parent with the highest clock (ties: the
smallest binary CID); its clock is always the entry's clock minus one. Following spine parents
gives the entry's *spine*, one ancestor per clock value. An entry with clock ``c`` carries a skip
link to its spine ancestor at clock ``c - 2**j`` for every ``j >= 1`` with ``2**j`` dividing ``c``
and ``2**j < c``. Walking back along the spine from clock ``c`` to clock ``t`` then takes
O(log(c)**2) steps, never one per entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from crdt.access import AccessState, AclOp, is_acl_payload, parse_acl_op
from crdt.entry import MAX_PARENTS, Entry, create_entry
from crdt.errors import (
    InvalidAclOp,
    InvalidClock,
    InvalidSkipLinks,
    LogError,
    PendingLimitExceeded,
    RejectedAncestor,
    Unauthorized,
    WrongDatabase,
)
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from crdt.manifest import Manifest

__all__ = ["Equivocation", "JoinResult", "Log", "order_key"]

DEFAULT_MAX_PENDING: Final = 100_000
DEFAULT_MAX_PENDING_PER_AUTHOR: Final = 20_000
DEFAULT_MAX_REJECTED: Final = 100_000


def order_key(entry: Entry) -> tuple[int, bytes]:
    """The total order: by clock, then by binary CID."""
    return entry.clock, entry.cid.bytes


@dataclass
class JoinResult:
    """What one :meth:`Log.join` did."""

    #: Entries applied, in the order they were applied (a causal order).
    applied: list[Entry] = field(default_factory=list)
    #: Entries now waiting for parents.
    pending: list[CID] = field(default_factory=list)
    #: Entries refused for good, with the reason.
    rejected: list[tuple[CID, LogError]] = field(default_factory=list)
    #: Entries not kept because the pending set is full; offer them again later.
    dropped: list[tuple[CID, PendingLimitExceeded]] = field(default_factory=list)
    #: Entries the log already had (applied, pending or rejected).
    duplicates: int = 0


@dataclass(frozen=True)
class Equivocation:
    """One author signed several entries at the same clock."""

    author: str
    clock: int
    cids: tuple[CID, ...]


class Log:
    """The op log of one database."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_per_author: int = DEFAULT_MAX_PENDING_PER_AUTHOR,
        max_rejected: int = DEFAULT_MAX_REJECTED,
    ) -> None:
        self.manifest = manifest
        self.max_pending = max_pending
        self.max_pending_per_author = max_pending_per_author
        self.max_rejected = max_rejected
        self._initial = AccessState(manifest)
        self._entries: dict[CID, Entry] = {}
        self._after: dict[CID, AccessState] = {}
        self._heads: set[CID] = set()
        self._pending: dict[CID, Entry] = {}
        self._waiting: dict[CID, set[CID]] = {}
        self._pending_by_author: Counter[str] = Counter()
        self._rejected: dict[CID, str] = {}
        self._positions: dict[tuple[str, int], CID] = {}
        self._equivocations: dict[tuple[str, int], set[CID]] = {}

    # -- reading ------------------------------------------------------------------------------

    @property
    def db(self) -> CID:
        """The manifest CID every entry of this log names."""
        return self.manifest.cid

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, cid: object) -> bool:
        return cid in self._entries

    def get(self, cid: CID) -> Entry | None:
        """An applied entry."""
        return self._entries.get(cid)

    @property
    def heads(self) -> tuple[CID, ...]:
        """Applied entries no other applied entry names as a parent, by binary CID."""
        return tuple(sorted(self._heads))

    @property
    def clock(self) -> int:
        """The highest clock applied (0 for an empty log)."""
        return max((self._entries[h].clock for h in self._heads), default=0)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def is_pending(self, cid: CID) -> bool:
        return cid in self._pending

    @property
    def missing(self) -> frozenset[CID]:
        """Parents that pending entries wait for and the log has not seen: what to fetch."""
        return frozenset(p for p in self._waiting if p not in self._pending)

    def rejection(self, cid: CID) -> str | None:
        """Why an entry was rejected, if it was (remembered for the last ``max_rejected``)."""
        return self._rejected.get(cid)

    @property
    def equivocations(self) -> list[Equivocation]:
        """Every (author, clock) with more than one entry, in a deterministic order."""
        return [
            Equivocation(author, clock, tuple(sorted(cids)))
            for (author, clock), cids in sorted(self._equivocations.items())
        ]

    @property
    def access(self) -> AccessState:
        """The access state of everything applied (what a new local entry would be judged by)."""
        return self._state_of(self._heads)

    def access_at(self, cid: CID) -> AccessState:
        """The access state after an applied entry (its causal past and itself)."""
        return self._after[cid]

    def order(self) -> list[Entry]:
        """All applied entries in the total order."""
        return sorted(self._entries.values(), key=order_key)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.order())

    # -- writing ------------------------------------------------------------------------------

    def append(self, keypair: Keypair, payload: Any) -> Entry:
        """Write a new entry on top of the current heads, signed by ``keypair``.

        Raises :class:`~crdt.errors.Unauthorized` if the key may not write (or administer, for an
        ACL payload) here.
        """
        heads = [self._entries[h] for h in self._heads]
        if len(heads) > MAX_PARENTS:
            heads = sorted(heads, key=order_key)[-MAX_PARENTS:]
        state = self._state_of(e.cid for e in heads)
        self._authorise(state, keypair.did, payload)
        clock = max((e.clock for e in heads), default=0) + 1
        entry = create_entry(
            keypair,
            db=self.db,
            clock=clock,
            next=[e.cid for e in heads],
            payload=payload,
            skip=sorted(self._skip_links(clock, heads)),
        )
        result = self.join([entry])
        if result.rejected:  # pragma: no cover - the checks above make this unreachable
            raise result.rejected[0][1]
        return entry

    def join(self, entries: Iterable[Entry]) -> JoinResult:
        """Offer entries (in any order, with duplicates); apply every one whose past is complete."""
        result = JoinResult()
        for entry in entries:
            self._offer(entry, result)
        return result

    # -- internals ----------------------------------------------------------------------------

    def _offer(self, entry: Entry, result: JoinResult) -> None:
        cid = entry.cid
        if cid in self._entries or cid in self._pending or cid in self._rejected:
            result.duplicates += 1
            return
        if entry.db != self.db:
            self._reject(entry, WrongDatabase(f"entry belongs to {entry.db}"), result)
            return
        missing = []
        for parent in entry.next:
            if parent in self._entries:
                continue
            if parent in self._rejected:
                self._reject(entry, RejectedAncestor(f"parent {parent} was rejected"), result)
                return
            missing.append(parent)
        if not missing:
            self._apply_from(entry, result)
            return
        if len(self._pending) >= self.max_pending:
            error = PendingLimitExceeded(f"{self.max_pending} entries already wait for parents")
            result.dropped.append((cid, error))
            return
        if self._pending_by_author[entry.author] >= self.max_pending_per_author:
            error = PendingLimitExceeded(
                f"{self.max_pending_per_author} entries by {entry.author} already wait for parents"
            )
            result.dropped.append((cid, error))
            return
        self._pending[cid] = entry
        self._pending_by_author[entry.author] += 1
        for parent in missing:
            self._waiting.setdefault(parent, set()).add(cid)
        result.pending.append(cid)

    def _unpend(self, cid: CID) -> Entry | None:
        entry = self._pending.pop(cid, None)
        if entry is not None:
            self._pending_by_author[entry.author] -= 1
            if not self._pending_by_author[entry.author]:
                del self._pending_by_author[entry.author]
        return entry

    def _apply_from(self, first: Entry, result: JoinResult) -> None:
        stack = [first]
        while stack:
            entry = stack.pop()
            try:
                after = self._check(entry)
            except LogError as error:
                self._reject(entry, error, result)
                continue
            self._apply(entry, after)
            result.applied.append(entry)
            for child_cid in sorted(self._waiting.pop(entry.cid, ())):
                child = self._pending.get(child_cid)
                if child is not None and all(p in self._entries for p in child.next):
                    self._unpend(child_cid)
                    stack.append(child)

    def _reject(self, entry: Entry, error: LogError, result: JoinResult) -> None:
        # The entry and everything pending below it are refused for good.
        stack: list[tuple[CID, LogError]] = [(entry.cid, error)]
        while stack:
            cid, reason = stack.pop()
            self._unpend(cid)
            self._rejected[cid] = str(reason)
            if len(self._rejected) > self.max_rejected:
                del self._rejected[next(iter(self._rejected))]
            result.rejected.append((cid, reason))
            for child in self._waiting.pop(cid, ()):
                if child in self._pending:
                    stack.append((child, RejectedAncestor(f"parent {cid} was rejected")))

    def _state_of(self, cids: Iterable[CID]) -> AccessState:
        states = [self._after[c] for c in cids]
        if not states:
            return self._initial
        return states[0].merge(states[1:])

    @staticmethod
    def _authorise(state: AccessState, author: str, payload: Any) -> None:
        if is_acl_payload(payload):
            if not state.may_administer(author):
                raise Unauthorized(f"{author} is not an admin")
            if parse_acl_op(payload) is None:
                raise InvalidAclOp(f"malformed access-control operation {payload!r:.200}")
        elif not state.may_write(author):
            raise Unauthorized(f"{author} may not write")

    def _check(self, entry: Entry) -> AccessState:
        """Judge an entry whose parents are all applied; return the access state after it."""
        parents = [self._entries[p] for p in entry.next]
        expected = max((p.clock for p in parents), default=0) + 1
        if entry.clock != expected:
            raise InvalidClock(f"clock {entry.clock} where the parents imply {expected}")
        if set(entry.skip) != self._skip_links(entry.clock, parents):
            raise InvalidSkipLinks("skip links differ from the ones the entry's position implies")
        state = self._state_of(entry.next)
        self._authorise(state, entry.author, entry.payload)
        parsed = parse_acl_op(entry.payload) if is_acl_payload(entry.payload) else None
        if parsed is not None:
            op, role, did = parsed
            return state.with_op(AclOp(entry.cid, op, role, did, state.ops))
        return state

    def _apply(self, entry: Entry, after: AccessState) -> None:
        cid = entry.cid
        self._entries[cid] = entry
        self._after[cid] = after
        self._heads.difference_update(entry.next)
        self._heads.add(cid)
        position = (entry.author, entry.clock)
        first = self._positions.setdefault(position, cid)
        if first != cid:
            self._equivocations.setdefault(position, {first}).add(cid)

    # -- spine and skip links -----------------------------------------------------------------

    def _spine_parent(self, entry: Entry) -> Entry:
        best: Entry | None = None
        for parent_cid in entry.next:
            parent = self._entries[parent_cid]
            if best is None or parent.clock > best.clock or (
                parent.clock == best.clock and parent.cid.bytes < best.cid.bytes
            ):
                best = parent
        assert best is not None, "a root has no spine parent"
        return best

    def _skip_links(self, clock: int, parents: Sequence[Entry]) -> set[CID]:
        if not parents:
            return set()
        spine = parents[0]
        for parent in parents[1:]:
            if parent.clock > spine.clock or (
                parent.clock == spine.clock and parent.cid.bytes < spine.cid.bytes
            ):
                spine = parent
        links = set()
        step = 2
        while clock % step == 0 and step < clock:
            links.add(self._ancestor_at(spine, clock - step).cid)
            step *= 2
        return links

    def _ancestor_at(self, entry: Entry, target: int) -> Entry:
        """The spine ancestor of ``entry`` (or itself) whose clock is ``target``."""
        found = entry
        for step in self._walk(entry, target):
            found = step
        return found

    def _walk(self, entry: Entry, target: int) -> Iterator[Entry]:
        while entry.clock > target:
            best = self._spine_parent(entry)
            for link in entry.skip:
                candidate = self._entries[link]
                if target <= candidate.clock < best.clock:
                    best = candidate
            entry = best
            yield entry

    def walk_back(self, cid: CID, target_clock: int) -> list[CID]:
        """The entries visited walking back along the spine from ``cid`` to ``target_clock``."""
        return [e.cid for e in self._walk(self._entries[cid], max(target_clock, 1))]
