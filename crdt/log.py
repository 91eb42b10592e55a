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

**Storage.** All of the log's state lives in tables of a :class:`~crdt.space.Space` (memory by
default, the node's SQLite file in a node), so reopening a log reads a few counters and nothing
else. Tables, keys and values:

====================  ====================================  ==========================================
table                 key                                   value
====================  ====================================  ==========================================
``blocks``            binary CID                            the entry block (shared with other uses)
``log.meta``          binary CID                            ``[clock, author, next, skip, acl key]``
``log.order``         clock (8 bytes, big-endian) + CID     ``1``
``log.heads``         binary CID                            ``1``
``log.pending``       binary CID                            author
``log.waiting``       parent CID + child CID                ``1``
``log.pauthor``       author (UTF-8)                        pending entries by that author
``log.rejected``      binary CID                            ``[sequence, reason]``
``log.rejseq``        sequence (8 bytes)                    binary CID (oldest first, for eviction)
``log.pos``           author + 0x00 + clock (8 bytes)       CID of the first entry seen there
``log.equiv``         author + 0x00 + clock (8 bytes) + CID ``1``
``log.acl``           access-state key                      CIDs of its ACL entries
``log.aclop``         binary CID                            ``[op, role, did, key of its past]``
``log.info``          name                                  counter
``log.sums``          level (1 byte) + bucket (8 bytes)     ``[count, hash sum]`` (:mod:`crdt.rangesums`)
====================  ====================================  ==========================================
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from crdt.access import AccessState, AclOp, is_acl_payload, parse_acl_op
from crdt.entry import MAX_PARENTS, Entry, create_entry, entry_from_block
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
from crdt.rangesums import RangeSums
from crdt.space import MemorySpace, Space, absent_keys, prefix_end

__all__ = ["Equivocation", "JoinResult", "Log", "order_key"]

DEFAULT_MAX_PENDING: Final = 100_000
DEFAULT_MAX_PENDING_PER_AUTHOR: Final = 20_000
DEFAULT_MAX_REJECTED: Final = 100_000
#: Decoded entries kept in memory (recently applied or read).
ENTRY_CACHE: Final = 4096

_u64 = struct.Struct(">Q")


def order_key(entry: Entry) -> tuple[int, bytes]:
    """The total order: by clock, then by binary CID."""
    return entry.clock, entry.cid.bytes


@dataclass
class JoinResult:
    """What one :meth:`Log.join` did."""

    #: Entries applied, in the order they were applied (a causal order).
    applied: list[Entry] = field(default_factory=list)
    #: Entries still waiting for parents when the join ended.
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


@dataclass(frozen=True, slots=True)
class _Meta:
    """What the log keeps of an applied entry to judge its descendants."""

    cid: CID
    clock: int
    author: str
    next: tuple[CID, ...]
    skip: tuple[CID, ...]
    acl: bytes


def _position(author: str, clock: int) -> bytes:
    return author.encode("utf-8") + b"\x00" + _u64.pack(clock)


class Log:
    """The op log of one database, its state in a :class:`~crdt.space.Space`."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        space: Space | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_per_author: int = DEFAULT_MAX_PENDING_PER_AUTHOR,
        max_rejected: int = DEFAULT_MAX_REJECTED,
    ) -> None:
        self.manifest = manifest
        self.max_pending = max_pending
        self.max_pending_per_author = max_pending_per_author
        self.max_rejected = max_rejected
        self.space = space if space is not None else MemorySpace()
        table = self.space.table
        self._blocks = table("blocks")
        self._meta_t = table("log.meta")
        self._order_t = table("log.order")
        self._heads_t = table("log.heads")
        self._pending_t = table("log.pending")
        self._waiting_t = table("log.waiting")
        self._pauthor_t = table("log.pauthor")
        self._rejected_t = table("log.rejected")
        self._rejseq_t = table("log.rejseq")
        self._pos_t = table("log.pos")
        self._equiv_t = table("log.equiv")
        self._acl_t = table("log.acl")
        self._aclop_t = table("log.aclop")
        self._info_t = table("log.info")
        #: Per-bucket counts and hash sums of the applied entries, for set reconciliation.
        self.sums = RangeSums(table("log.sums"))
        self._initial = AccessState(manifest)
        self._states: dict[bytes, AccessState] = {b"": self._initial}
        self._meta_cache: dict[CID, _Meta] = {}
        self._entry_cache: dict[CID, Entry] = {}
        self._pending_cache: dict[CID, Entry] = {}
        self._counts: dict[bytes, int] = {}
        self._heads: set[CID] = {CID.parse(k) for k, _ in self._heads_t.range()}
        self._fresh_positions: set[bytes] = set()

    # -- counters -----------------------------------------------------------------------------

    def _count(self, name: bytes) -> int:
        # Counters are read once and then kept in memory; every change is written through, in
        # the same transaction as the change it counts.
        value = self._counts.get(name)
        if value is None:
            stored = self._info_t.get(name)
            value = self._counts[name] = int(stored) if stored is not None else 0
        return value

    def _bump(self, name: bytes, delta: int) -> None:
        value = self._count(name) + delta
        self._counts[name] = value
        self._info_t.put(name, value)

    # -- reading ------------------------------------------------------------------------------

    @property
    def db(self) -> CID:
        """The manifest CID every entry of this log names."""
        return self.manifest.cid

    def __len__(self) -> int:
        return self._count(b"entries")

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, CID) and self._meta(cid) is not None

    def get(self, cid: CID) -> Entry | None:
        """An applied entry."""
        entry = self._entry_cache.get(cid)
        if entry is not None:
            return entry
        if self._meta(cid) is None:
            return None
        block = self._blocks.get(cid.bytes)
        if block is None:  # pragma: no cover - the block is written with the entry
            return None
        entry = entry_from_block(cid, block)
        self._cache_entry(entry)
        return entry

    def _cache_entry(self, entry: Entry) -> None:
        cache = self._entry_cache
        if len(cache) >= ENTRY_CACHE:
            cache.pop(next(iter(cache)))
        cache[entry.cid] = entry

    def _meta(self, cid: CID) -> _Meta | None:
        meta = self._meta_cache.get(cid)
        if meta is not None:
            return meta
        row = self._meta_t.get(cid.bytes)
        if row is None:
            return None
        meta = _Meta(cid, row[0], row[1], tuple(row[2]), tuple(row[3]), row[4])
        self._cache_meta(meta)
        return meta

    def _cache_meta(self, meta: _Meta) -> None:
        cache = self._meta_cache
        if len(cache) >= 4 * ENTRY_CACHE:
            cache.pop(next(iter(cache)))
        cache[meta.cid] = meta

    def _need_meta(self, cid: CID) -> _Meta:
        meta = self._meta(cid)
        assert meta is not None, f"{cid} is not applied"
        return meta

    @property
    def heads(self) -> tuple[CID, ...]:
        """Applied entries no other applied entry names as a parent, by binary CID."""
        return tuple(sorted(self._heads))

    @property
    def clock(self) -> int:
        """The highest clock applied (0 for an empty log)."""
        return max((self._need_meta(h).clock for h in self._heads), default=0)

    @property
    def pending_count(self) -> int:
        return self._count(b"pending")

    def is_pending(self, cid: CID) -> bool:
        return self._pending_t.get(cid.bytes) is not None

    @property
    def missing(self) -> frozenset[CID]:
        """Parents that pending entries wait for and the log has not seen: what to fetch."""
        found: set[CID] = set()
        for key, _ in self._waiting_t.range():
            parent, _end = CID.read(key, 0)
            if self._pending_t.get(parent.bytes) is None:
                found.add(parent)
        return frozenset(found)

    def rejection(self, cid: CID) -> str | None:
        """Why an entry was rejected, if it was (remembered for the last ``max_rejected``)."""
        row = self._rejected_t.get(cid.bytes)
        return None if row is None else str(row[1])

    @property
    def equivocations(self) -> list[Equivocation]:
        """Every (author, clock) with more than one entry, in a deterministic order."""
        groups: dict[tuple[str, int], list[CID]] = {}
        for key, _ in self._equiv_t.range():
            split = key.index(b"\x00")
            author = key[:split].decode("utf-8")
            clock = _u64.unpack_from(key, split + 1)[0]
            cid = CID.parse(key[split + 9 :])
            groups.setdefault((author, clock), []).append(cid)
        return [
            Equivocation(author, clock, tuple(sorted(cids)))
            for (author, clock), cids in sorted(groups.items())
        ]

    @property
    def access(self) -> AccessState:
        """The access state of everything applied (what a new local entry would be judged by)."""
        return self._state_of(self._heads)

    def order_cids(self, *, after: tuple[int, bytes] | None = None) -> Iterator[CID]:
        """CIDs of applied entries in the total order (after a ``(clock, cid bytes)`` position)."""
        low = None if after is None else _u64.pack(after[0]) + after[1] + b"\x00"
        for key, _ in self._order_t.range(low):
            yield CID.parse(key[8:])

    def order(self) -> list[Entry]:
        """All applied entries in the total order."""
        entries = []
        for cid in self.order_cids():
            entry = self.get(cid)
            assert entry is not None
            entries.append(entry)
        return entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.order())

    # -- writing ------------------------------------------------------------------------------

    def append(self, keypair: Keypair, payload: Any) -> Entry:
        """Write a new entry on top of the current heads, signed by ``keypair``.

        Raises :class:`~crdt.errors.Unauthorized` if the key may not write (or administer, for an
        ACL payload) here, :class:`~crdt.errors.InvalidAclOp` for a malformed ACL payload.
        """
        heads = [self._need_meta(h) for h in self._heads]
        if len(heads) > MAX_PARENTS:
            heads = sorted(heads, key=lambda m: (m.clock, m.cid.bytes))[-MAX_PARENTS:]
        state = self._state_of(m.cid for m in heads)
        self._authorise(state, keypair.did, payload)
        clock = max((m.clock for m in heads), default=0) + 1
        entry = create_entry(
            keypair,
            db=self.db,
            clock=clock,
            next=[m.cid for m in heads],
            payload=payload,
            skip=sorted(self._skip_links(clock, heads)),
        )
        # A new entry names the current heads as parents, so it cannot be known already, nothing
        # can wait for it, and it was built to pass every check: apply it directly.
        self._apply(entry, self._state_after(entry, state))
        self.sums.flush()
        return entry

    def join(self, entries: Iterable[Entry]) -> JoinResult:
        """Offer entries (in any order, with duplicates); apply every one whose past is complete."""
        result = JoinResult()
        batch = list(entries)
        # One batched lookup per table instead of three point lookups per entry: the CIDs that
        # no table knows yet. Each is taken once; a repeat within the batch checks in full.
        raws = [e.cid.bytes for e in batch if e.cid not in self._meta_cache]
        fresh = absent_keys(self._meta_t, raws) if len(raws) > 8 else set()
        if fresh:
            fresh &= absent_keys(self._pending_t, list(fresh))
            fresh &= absent_keys(self._rejected_t, list(fresh))
        # Positions (author, clock) no entry has taken yet: the equivocation check skips its
        # lookup for those.
        self._fresh_positions = (
            absent_keys(
                self._pos_t, [_position(e.author, e.clock) for e in batch if e.cid.bytes in fresh]
            )
            if fresh
            else set()
        )
        try:
            for entry in batch:
                self._offer(entry, result, fresh)
        finally:
            self._fresh_positions = set()
            self.sums.flush()
        if result.pending:
            # An entry that waited for a parent offered later in the same batch was applied
            # meanwhile: it is not pending any more (nor rejected).
            result.pending = [c for c in result.pending if self._pending_t.get(c.bytes) is not None]
        return result

    # -- internals ----------------------------------------------------------------------------

    def _offer(self, entry: Entry, result: JoinResult, fresh: set[bytes] | None = None) -> None:
        cid = entry.cid
        raw = cid.bytes
        if fresh is not None and raw in fresh:
            fresh.discard(raw)
        elif (
            self._meta(cid) is not None
            or self._pending_t.get(raw) is not None
            or self._rejected_t.get(raw) is not None
        ):
            result.duplicates += 1
            return
        if entry.db != self.db:
            self._reject(entry.cid, WrongDatabase(f"entry belongs to {entry.db}"), result)
            return
        missing = []
        for parent in entry.next:
            if self._meta(parent) is not None:
                continue
            if self._rejected_t.get(parent.bytes) is not None:
                self._reject(cid, RejectedAncestor(f"parent {parent} was rejected"), result)
                return
            missing.append(parent)
        if not missing:
            self._apply_from(entry, result)
            return
        if self.pending_count >= self.max_pending:
            error = PendingLimitExceeded(f"{self.max_pending} entries already wait for parents")
            result.dropped.append((cid, error))
            return
        author_key = entry.author.encode("utf-8")
        by_author = self._pauthor_t.get(author_key) or 0
        if by_author >= self.max_pending_per_author:
            error = PendingLimitExceeded(
                f"{self.max_pending_per_author} entries by {entry.author} already wait for parents"
            )
            result.dropped.append((cid, error))
            return
        self._blocks.put(raw, entry.block)
        self._pending_t.put(raw, entry.author)
        self._pauthor_t.put(author_key, by_author + 1)
        self._bump(b"pending", 1)
        if len(self._pending_cache) < 4 * ENTRY_CACHE:
            self._pending_cache[cid] = entry
        for parent in missing:
            self._waiting_t.put(parent.bytes + raw, 1)
        result.pending.append(cid)

    def _unpend(self, cid: CID) -> Entry | None:
        """Take an entry out of the pending set; return it (``None`` if it was not pending)."""
        raw = cid.bytes
        author = self._pending_t.get(raw)
        if author is None:
            return None
        self._pending_t.delete(raw)
        author_key = str(author).encode("utf-8")
        left = (self._pauthor_t.get(author_key) or 1) - 1
        if left:
            self._pauthor_t.put(author_key, left)
        else:
            self._pauthor_t.delete(author_key)
        self._bump(b"pending", -1)
        if not self._count(b"pending"):
            # Nothing waits any more: drop what is left of the waiting rows (those of children
            # that were applied or rejected while they still waited on another parent).
            for key, _ in list(self._waiting_t.range()):
                self._waiting_t.delete(key)
        entry = self._pending_cache.pop(cid, None)
        if entry is None:
            block = self._blocks.get(raw)
            assert block is not None, "a pending entry's block is stored"
            entry = entry_from_block(cid, block)
        return entry

    def _children_waiting_on(self, parent: CID) -> list[CID]:
        if not self._count(b"pending"):
            return []  # nothing waits: skip the range read (the common case)
        prefix = parent.bytes
        rows = list(self._waiting_t.range(prefix, prefix_end(prefix)))
        children = []
        for key, _ in rows:
            self._waiting_t.delete(key)
            children.append(CID.parse(key[len(prefix) :]))
        return sorted(children)

    def _apply_from(self, first: Entry, result: JoinResult) -> None:
        stack = [first]
        while stack:
            entry = stack.pop()
            try:
                after = self._check(entry)
            except LogError as error:
                self._reject(entry.cid, error, result)
                continue
            self._apply(entry, after)
            result.applied.append(entry)
            for child_cid in self._children_waiting_on(entry.cid):
                row = self._pending_t.get(child_cid.bytes)
                if row is None:
                    continue
                child = self._pending_cache.get(child_cid)
                if child is None:
                    block = self._blocks.get(child_cid.bytes)
                    assert block is not None
                    child = entry_from_block(child_cid, block)
                if all(self._meta(p) is not None for p in child.next):
                    self._unpend(child_cid)
                    stack.append(child)

    def _reject(self, cid: CID, error: LogError, result: JoinResult) -> None:
        # The entry and everything pending below it are refused for good.
        stack: list[tuple[CID, LogError]] = [(cid, error)]
        while stack:
            rejected, reason = stack.pop()
            if self._unpend(rejected) is not None:
                self._blocks.delete(rejected.bytes)
            self._remember_rejection(rejected, str(reason))
            result.rejected.append((rejected, reason))
            for child in self._children_waiting_on(rejected):
                if self._pending_t.get(child.bytes) is not None:
                    stack.append((child, RejectedAncestor(f"parent {rejected} was rejected")))

    def _remember_rejection(self, cid: CID, reason: str) -> None:
        sequence = self._count(b"rejseq")
        self._bump(b"rejseq", 1)
        self._rejected_t.put(cid.bytes, [sequence, reason[:500]])
        self._rejseq_t.put(_u64.pack(sequence), cid.bytes)
        self._bump(b"rejected", 1)
        if self._count(b"rejected") > self.max_rejected:
            for key, oldest in self._rejseq_t.range(limit=1):
                self._rejseq_t.delete(key)
                self._rejected_t.delete(oldest)
                self._bump(b"rejected", -1)

    # -- access states ------------------------------------------------------------------------

    def _state(self, key: bytes) -> AccessState:
        state = self._states.get(key)
        if state is not None:
            return state
        row = self._acl_t.get(key)
        assert row is not None, "every access state an entry names is stored"
        ops: dict[CID, AclOp] = {}
        for raw in row:
            cid = CID.parse(raw)
            stored = self._aclop_t.get(raw)
            assert stored is not None, "every ACL entry a state names is stored"
            op, role, did, past_key = stored
            ops[cid] = AclOp(cid, op, role, did, self._state(past_key).ops)
        state = AccessState(self.manifest, ops)
        self._states[key] = state
        return state

    def _keep_state(self, state: AccessState) -> bytes:
        key = state.key
        if key not in self._states:
            self._states[key] = state
            if self._acl_t.get(key) is None:
                self._acl_t.put(key, sorted(c.bytes for c in state.ops))
        return key

    def _state_of(self, cids: Iterable[CID]) -> AccessState:
        keys = {self._need_meta(c).acl for c in cids}
        if not keys:
            return self._initial
        states = [self._state(k) for k in sorted(keys)]
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
        parents = [self._need_meta(p) for p in entry.next]
        expected = max((p.clock for p in parents), default=0) + 1
        if entry.clock != expected:
            raise InvalidClock(f"clock {entry.clock} where the parents imply {expected}")
        if set(entry.skip) != self._skip_links(entry.clock, parents):
            raise InvalidSkipLinks("skip links differ from the ones the entry's position implies")
        state = self._state_of(entry.next)
        self._authorise(state, entry.author, entry.payload)
        return self._state_after(entry, state)

    def _state_after(self, entry: Entry, state: AccessState) -> AccessState:
        """The access state after an authorised entry whose causal past has ``state``."""
        parsed = parse_acl_op(entry.payload) if is_acl_payload(entry.payload) else None
        if parsed is None:
            return state
        op, role, did = parsed
        acl = AclOp(entry.cid, op, role, did, state.ops)
        self._aclop_t.put(entry.cid.bytes, [op, role, did, self._keep_state(state)])
        return state.with_op(acl)

    def _apply(self, entry: Entry, after: AccessState) -> None:
        cid = entry.cid
        raw = cid.bytes
        acl_key = self._keep_state(after)
        self._blocks.put(raw, entry.block)
        self._meta_t.put(
            raw,
            [entry.clock, entry.author, list(entry.next), list(entry.skip), acl_key],
        )
        self._cache_meta(_Meta(cid, entry.clock, entry.author, entry.next, entry.skip, acl_key))
        item = _u64.pack(entry.clock) + raw
        self._order_t.put(item, 1)
        if not self._count(b"entries"):
            self._bump(b"sums", 1)  # kept since the first entry (older logs: rebuild_sums)
        self.sums.add(item)
        for parent in entry.next:
            if parent in self._heads:
                self._heads.discard(parent)
                self._heads_t.delete(parent.bytes)
        self._heads.add(cid)
        self._heads_t.put(raw, 1)
        self._bump(b"entries", 1)
        self._cache_entry(entry)
        position = _position(entry.author, entry.clock)
        if position in self._fresh_positions:
            self._fresh_positions.discard(position)  # taken now: a second one checks in full
            first = None
        else:
            first = self._pos_t.get(position)
        if first is None:
            self._pos_t.put(position, raw)
        elif first != raw:
            self._equiv_t.put(position + first, 1)
            self._equiv_t.put(position + raw, 1)

    @property
    def sums_complete(self) -> bool:
        """Whether ``log.sums`` covers every applied entry (a log made before it existed does
        not, until :meth:`rebuild_sums`)."""
        return self._count(b"sums") > 0 or self._count(b"entries") == 0

    def rebuild_sums(self) -> None:
        """Recompute ``log.sums`` from ``log.order`` (once, for a log from an older version)."""
        table = self.space.table("log.sums")
        for key in [k for k, _ in table.range()]:
            table.delete(key)
        self.sums = RangeSums(table)
        for key, _ in self._order_t.range():
            self.sums.add(key)
        self.sums.flush()
        if not self._count(b"sums"):
            self._bump(b"sums", 1)

    # -- spine and skip links -----------------------------------------------------------------

    def _spine_parent(self, meta: _Meta) -> _Meta:
        best: _Meta | None = None
        for parent_cid in meta.next:
            parent = self._need_meta(parent_cid)
            if (
                best is None
                or parent.clock > best.clock
                or (parent.clock == best.clock and parent.cid.bytes < best.cid.bytes)
            ):
                best = parent
        assert best is not None, "a root has no spine parent"
        return best

    def _skip_links(self, clock: int, parents: Sequence[_Meta]) -> set[CID]:
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

    def _ancestor_at(self, meta: _Meta, target: int) -> _Meta:
        """The spine ancestor of ``meta`` (or itself) whose clock is ``target``."""
        found = meta
        for step in self._walk(meta, target):
            found = step
        return found

    def _walk(self, meta: _Meta, target: int) -> Iterator[_Meta]:
        while meta.clock > target:
            best = self._spine_parent(meta)
            for link in meta.skip:
                candidate = self._need_meta(link)
                if target <= candidate.clock < best.clock:
                    best = candidate
            meta = best
            yield meta

    def ancestry(
        self, wanted: Iterable[CID], have: Iterable[CID], *, limit: int = 200_000
    ) -> tuple[list[CID], bool]:
        """:meth:`ancestry_steps` run to its end."""
        steps = self.ancestry_steps(wanted, have, limit=limit)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                result: tuple[list[CID], bool] = stop.value
                return result

    def ancestry_steps(
        self, wanted: Iterable[CID], have: Iterable[CID], *, limit: int = 200_000, step: int = 64
    ) -> Generator[None, None, tuple[list[CID], bool]]:
        """What a peer whose heads are ``have`` needs to hold ``wanted``: the applied entries among
        ``wanted`` and their ancestors that are not in the causal past of ``have``, in the total
        order (parents first).

        Two walks go down the DAG together, highest clock first: one from ``wanted``, one from the
        ``have`` entries this log knows. Since children have higher clocks than parents, an entry
        is reached by the ``have`` walk, if at all, before it is taken, so what is taken is exactly
        what the peer lacks (as far as this log knows its heads). The walk ends when nothing from
        ``wanted`` is left to visit. At most ``limit`` entries, the lowest first; the flag says
        whether there were more.

        It yields after every ``step`` entries visited, so a caller can run the walk in bounded
        slices (the storage worker serves other peers between them); if the log changes between
        two slices the answer is as of some moment of the walk, which a puller checks anyway.
        """
        marks: dict[CID, bool] = {}  # True: reached from have (the peer has it)
        heap: list[tuple[int, bytes, CID]] = []
        wanted_left = 0

        def reach(cid: CID, from_have: bool) -> None:
            nonlocal wanted_left
            mark = marks.get(cid)
            if mark is True or (mark is False and not from_have):
                return
            meta = self._meta(cid)
            if meta is None:
                return
            if mark is None:
                heapq.heappush(heap, (-meta.clock, cid.bytes, cid))
            elif from_have:
                wanted_left -= 1  # was to be taken; the peer has it after all
            if not from_have:
                wanted_left += 1
            marks[cid] = from_have

        for cid in have:
            reach(cid, True)
        for cid in wanted:
            reach(cid, False)
        found: list[_Meta] = []
        visited = 0
        while heap and wanted_left > 0:
            visited += 1
            if visited % step == 0:
                yield  # a bounded piece of the walk is done (the caller may pause here)
            _clock, _raw, cid = heapq.heappop(heap)
            from_have = marks[cid]
            if not from_have:
                wanted_left -= 1
            meta = self._meta(cid)
            if meta is None:
                continue  # gone between two steps (the log changed meanwhile)
            if not from_have:
                found.append(meta)
            for parent in meta.next:
                reach(parent, from_have)
        found.sort(key=lambda m: (m.clock, m.cid.bytes))
        return [m.cid for m in found[:limit]], len(found) > limit

    def block(self, cid: CID) -> bytes | None:
        """The block of an applied entry."""
        if self._meta(cid) is None:
            return None
        block = self._blocks.get(cid.bytes)
        return None if block is None else bytes(block)

    def walk_back(self, cid: CID, target_clock: int) -> list[CID]:
        """The entries visited walking back along the spine from ``cid`` to ``target_clock``."""
        return [m.cid for m in self._walk(self._need_meta(cid), max(target_clock, 1))]
