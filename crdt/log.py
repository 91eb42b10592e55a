"""The op log: a Merkle-DAG of signed entries for one database.

Entries given to the log are already decoded and signature-checked (:func:`crdt.entry.decode_entry`
or :func:`crdt.entry.create_entry`). The log decides the rest, using only each entry's causal past,
so every correct replica reaches the same verdict whatever order entries arrive in:

- **causality**: an entry is applied only once all its parents are; until then it waits in a
  bounded pending set, and :attr:`Log.missing` names the parents to fetch. An entry descending from
  a rejected one is rejected too (not one descending from a kept but *invalid* one, below).
- **what may wait**: waiting is bounded in entries (in all and per author) and in bytes (in all
  and per *source*, an opaque name the caller gives a join: the node passes the peer it came
  from), except the caller's *own sources* (``own_sources``: deliveries it asked for itself, by
  hash, as the node's bitswap walk and CAR import are), which no count or byte cap bounds: a
  history fetched from its heads down waits whole until its root arrives; with
  ``refuse_unknown_authors`` (the node's setting) only an entry whose author could
  still be authorised waits: a manifest admin or writer, or a DID some grant names (applied, or
  itself waiting), or anyone in a database open to everyone. A waiting grant names its DID for
  others only if its own author could administer (so a chain of fresh keys granting each other
  must start at a known admin). An entry that may not wait is not a verdict: it is returned in
  :attr:`JoinResult.dropped`, to offer again later.
  Waiting entries expire (:meth:`Log.expire_pending`, with the time passed in: the log reads no
  clock). :attr:`Log.missing` is kept as entries come and go, never recomputed from the pending
  set, so asking what is missing costs the same at 10 or 100,000 waiting entries.
- **clock**: checked, not trusted: 1 for a root, else exactly 1 + the highest parent clock.
- **skip links**: exactly those its position implies (below), so walks stay logarithmic and a
  writer cannot plant misleading shortcuts.
- **access**, in two steps (docs/spec.md §8). *On arrival* an entry is rejected if its author
  could not hold the role it needs whatever turns out valid: not in the state of the grants and
  certain revocations of its causal past (:meth:`AccessState.arrival`). Otherwise it is applied
  (kept in the DAG: heads, order, sync) and *judged*: valid if its author holds the role in the
  state of the **valid** ACL entries of its causal past and no valid revocation of that role is
  concurrent with it (:func:`crdt.access.resolve`). Invalid entries stay in the log, so honest
  entries built on them keep their parents, but count for nothing: :meth:`Log.is_valid`, the
  access state and (:mod:`crdt.database`) the store leave them out. An arriving ACL entry can
  change the verdict on entries applied earlier; the log then judges every entry again
  (:meth:`Log.reevaluate`) and says so (:meth:`Log.take_changed`).
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
``log.pending``       binary CID                            ``[author, source, bytes, since ms]``
``log.psince``        since ms (8 bytes) + CID              ``1`` (pending by age, for expiry)
``log.waiting``       parent CID + child CID                ``1``
``log.missing``       binary CID                            ``1``: parents waited for, not held
``log.pauthor``       author (UTF-8)                        pending entries by that author
``log.psource``       source (UTF-8)                        ``[pending entries, bytes]`` from it
``log.named``         role + 0x00 + DID                     ``1``: named by an applied grant
``log.pnamed``        role + 0x00 + DID                     pending grants naming it
``log.rejected``      binary CID                            ``[sequence, reason]``
``log.rejseq``        sequence (8 bytes)                    binary CID (oldest first, for eviction)
``log.pos``           author + 0x00 + clock (8 bytes)       CID of the first entry seen there
``log.equiv``         author + 0x00 + clock (8 bytes) + CID ``1``
``log.acl``           access-state key                      CIDs of its ACL entries
``log.aclop``         binary CID                            ``[op, role, did, key of its past,
                                                            author, clock, certain]``
``log.invalid``       binary CID                            why the applied entry is invalid
``log.info``          name                                  counter
``log.sums``          level (1 byte) + bucket (8 bytes)     ``[count, hash sum]`` (:mod:`crdt.rangesums`)
====================  ====================================  ==========================================
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from crdt.access import (
    AccessState,
    AclOp,
    Resolution,
    is_acl_payload,
    parse_acl_op,
    resolve,
)
from crdt.entry import MAX_PARENTS, Entry, create_entry, entry_from_block
from crdt.errors import (
    InvalidAclOp,
    InvalidClock,
    InvalidSkipLinks,
    LogError,
    PendingLimitExceeded,
    PendingRefused,
    RejectedAncestor,
    Unauthorized,
    UnknownAuthor,
    WrongDatabase,
)
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from crdt.manifest import PUBLIC, Manifest
from crdt.rangesums import RangeSums
from crdt.space import MemorySpace, Space, absent_keys, prefix_end

__all__ = ["Equivocation", "JoinResult", "Log", "order_key"]

DEFAULT_MAX_PENDING: Final = 100_000
DEFAULT_MAX_PENDING_PER_AUTHOR: Final = 20_000
#: Bytes of entry blocks waiting for parents, in all and from one source.
DEFAULT_MAX_PENDING_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_PENDING_BYTES_PER_SOURCE: Final = 16 * 1024 * 1024
#: Bytes of waiting entries kept decoded in memory (the rest are read back from the space).
PENDING_CACHE_BYTES: Final = 8 * 1024 * 1024
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

    #: Entries applied, in the order they were applied (a causal order); valid or not.
    applied: list[Entry] = field(default_factory=list)
    #: Those of ``applied`` that are invalid when the join ended (kept, but of no effect).
    invalid: set[CID] = field(default_factory=set)
    #: Entries still waiting for parents when the join ended.
    pending: list[CID] = field(default_factory=list)
    #: Entries refused for good, with the reason.
    rejected: list[tuple[CID, LogError]] = field(default_factory=list)
    #: Entries with missing parents not kept to wait (the pending set is full, or no known grant
    #: could authorise the author); offer them again later.
    dropped: list[tuple[CID, PendingRefused]] = field(default_factory=list)
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


def _named_key(role: str, did: str) -> bytes:
    return role.encode("utf-8") + b"\x00" + did.encode("utf-8")


def _grant_of(entry: Entry) -> tuple[str, str] | None:
    """``(role, did)`` if the entry is a well-formed grant."""
    if not is_acl_payload(entry.payload):
        return None
    parsed = parse_acl_op(entry.payload)
    if parsed is None or parsed[0] != "grant":
        return None
    return parsed[1], parsed[2]


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A ``log.pending`` row."""

    author: str
    source: str
    size: int | None  # None: a row written before sizes were kept (see index_pending)
    since: int  # milliseconds

    @classmethod
    def of(cls, row: Any) -> _Waiting:
        if isinstance(row, str):  # written before issue 18: the author alone
            return cls(row, "", None, 0)
        return cls(str(row[0]), str(row[1]), int(row[2]), int(row[3]))


class Log:
    """The op log of one database, its state in a :class:`~crdt.space.Space`."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        space: Space | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_per_author: int = DEFAULT_MAX_PENDING_PER_AUTHOR,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_pending_bytes_per_source: int = DEFAULT_MAX_PENDING_BYTES_PER_SOURCE,
        max_rejected: int = DEFAULT_MAX_REJECTED,
        refuse_unknown_authors: bool = False,
        own_sources: Collection[str] = (),
    ) -> None:
        self.manifest = manifest
        #: Sources the caller fetched by hash itself: no count or byte cap bounds what they wait
        #: (a capped walk down from the heads would drop its lowest entries and fetch them again
        #: without end). The author check still applies.
        self.own_sources = frozenset(own_sources)
        self.max_pending = max_pending
        self.max_pending_per_author = max_pending_per_author
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_bytes_per_source = max_pending_bytes_per_source
        #: Refuse to keep waiting an entry no known grant could authorise (:class:`UnknownAuthor`).
        #: Only where what is refused is offered again once its grants are known, as the node's
        #: sync does (a replica fed by one-shot deliveries would lose valid entries).
        self.refuse_unknown_authors = refuse_unknown_authors
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
        self._psince_t = table("log.psince")
        self._psource_t = table("log.psource")
        self._missing_t = table("log.missing")
        self._named_t = table("log.named")
        self._pnamed_t = table("log.pnamed")
        self._rejected_t = table("log.rejected")
        self._rejseq_t = table("log.rejseq")
        self._pos_t = table("log.pos")
        self._equiv_t = table("log.equiv")
        self._acl_t = table("log.acl")
        self._aclop_t = table("log.aclop")
        self._invalid_t = table("log.invalid")
        self._info_t = table("log.info")
        #: Per-bucket counts and hash sums of the applied entries, for set reconciliation.
        self.sums = RangeSums(table("log.sums"))
        self._initial = AccessState(manifest)
        self._states: dict[bytes, AccessState] = {b"": self._initial}
        self._meta_cache: dict[CID, _Meta] = {}
        self._entry_cache: dict[CID, Entry] = {}
        self._pending_cache: dict[CID, Entry] = {}
        self._pending_cache_bytes = 0
        self._counts: dict[bytes, int] = {}
        self._dirty_counts: set[bytes] = set()
        #: ``log.psource`` rows read so far, and those changed and not yet written.
        self._sources: dict[str, tuple[int, int]] = {}
        self._dirty_sources: set[str] = set()
        #: ``log.psince`` and ``log.missing`` rows made during the current call and not yet
        #: written: an entry that waits and is applied within one join costs neither index a
        #: sorted insert and removal (joins in random order pass most entries through here).
        self._new_since: dict[bytes, bytes] = {}
        self._new_missing: set[bytes] = set()
        self._heads: set[CID] = {CID.parse(k) for k, _ in self._heads_t.range()}
        # The heads as the table holds them: the table is written once per call that changes
        # the heads (:meth:`_flush_counts`), not once per entry (a catch-up in causal order
        # would otherwise put and delete every entry's row in turn).
        self._stored_heads: set[CID] = set(self._heads)
        for name in (b"pending", b"pbytes", b"missing", b"pindex"):
            self._count(name)  # read once: the pending path reads them straight from _counts
        self._by_author = 0
        self._fresh_positions: set[bytes] = set()
        # CIDs of a join's batch that the missing table did not hold when it began (one query):
        # nothing adds to that table before the join ends (new ones wait in _new_missing).
        self._absent_from_missing: set[bytes] = set()
        # Every ACL entry applied, and which are valid: loaded on first need (a log that is only
        # read never needs them).
        self._acl_ops: dict[CID, AclOp] | None = None
        self._resolution: Resolution | None = None
        self._plain_cache: bool | None = None
        self._judged: dict[bytes, AccessState] = {}
        self._stale = False  # an ACL entry changed verdicts on applied entries: judge them again
        self._changed = False  # verdicts on earlier entries changed since take_changed()

    # -- counters -----------------------------------------------------------------------------

    def _count(self, name: bytes) -> int:
        # Counters are read once and then kept in memory; changes are written when the call
        # that made them ends (:meth:`_flush_counts`), in the same transaction as what they count.
        value = self._counts.get(name)
        if value is None:
            stored = self._info_t.get(name)
            value = self._counts[name] = int(stored) if stored is not None else 0
        return value

    def _bump(self, name: bytes, delta: int) -> None:
        counts = self._counts
        value = counts.get(name)
        counts[name] = (self._count(name) if value is None else value) + delta
        self._dirty_counts.add(name)

    def _flush_counts(self) -> None:
        heads, stored = self._heads, self._stored_heads
        if heads != stored:
            for gone in stored - heads:
                self._heads_t.delete(gone.bytes)
            for new in heads - stored:
                self._heads_t.put(new.bytes, 1)
            self._stored_heads = set(heads)
        for key in self._new_since.values():
            self._psince_t.put(key, 1)
        self._new_since.clear()
        for raw in self._new_missing:
            self._missing_t.put(raw, 1)
        self._new_missing.clear()
        for name in self._dirty_counts:
            self._info_t.put(name, self._counts[name])
        self._dirty_counts.clear()
        for source in self._dirty_sources:
            key = source.encode("utf-8")
            entries, total = self._sources[source]
            if entries > 0:
                self._psource_t.put(key, [entries, total])
            else:
                self._psource_t.delete(key)
                del self._sources[source]
        self._dirty_sources.clear()

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

    def newest_heads(self, limit: int) -> list[CID]:
        """At most ``limit`` heads, highest clock first (ties by binary CID): what a message
        that holds only so many heads names (the rest are found by reconciliation)."""
        metas = sorted(
            (self._need_meta(h) for h in self._heads), key=lambda m: (-m.clock, m.cid.bytes)
        )
        return [m.cid for m in metas[:limit]]

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
    def pending_bytes(self) -> int:
        """Bytes of the entry blocks waiting for parents."""
        return self._count(b"pbytes")

    def pending_from(self, source: str) -> tuple[int, int]:
        """``(entries, bytes)`` waiting for parents that came from ``source``."""
        found = self._sources.get(source)
        if found is None:
            row = self._psource_t.get(source.encode("utf-8"))
            found = (0, 0) if row is None else (int(row[0]), int(row[1]))
            self._sources[source] = found
        return found

    @property
    def missing(self) -> frozenset[CID]:
        """Parents that pending entries wait for and the log has not seen: what to fetch."""
        return frozenset(self.iter_missing())

    @property
    def missing_count(self) -> int:
        """How many parents pending entries wait for (read from a counter, not counted)."""
        return self._count(b"missing")

    def is_missing(self, cid: CID) -> bool:
        """Whether a pending entry waits for ``cid`` and the log has not seen it."""
        return self._missing_t.get(cid.bytes) is not None

    def iter_missing(self) -> Iterator[CID]:
        """The missing parents (:attr:`missing`), by binary CID, read lazily."""
        for key, _ in self._missing_t.range():
            yield CID.parse(key)

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
        """The access state of the valid ACL entries applied (what a new local entry is judged
        by), with ranks."""
        return self._judged_state_of(self._heads)

    @property
    def invalid_count(self) -> int:
        """Applied entries that are invalid (docs/spec.md §8)."""
        return self._count(b"invalid")

    def is_valid(self, cid: CID) -> bool:
        """Whether an applied entry is valid (counts in the store and the access state)."""
        if not self._count(b"invalid"):
            return True
        return self._invalid_t.get(cid.bytes) is None

    def invalidity(self, cid: CID) -> str | None:
        """Why an applied entry is invalid, ``None`` if it is valid."""
        row = self._invalid_t.get(cid.bytes)
        return None if row is None else str(row)

    def take_changed(self) -> bool:
        """Whether verdicts on entries applied before the last join or append changed since the
        last call (the store must then be folded again from the valid entries)."""
        changed, self._changed = self._changed, False
        return changed

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
        self._authorise(self._judged_state_of(m.cid for m in heads), keypair.did, payload)
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
        if self._stale:
            self.reevaluate()
        self._flush_counts()
        return entry

    def join(self, entries: Iterable[Entry], *, source: str = "", now: float = 0.0) -> JoinResult:
        """Offer entries (in any order, with duplicates); apply every one whose past is complete.

        ``source`` names where they came from (the pending bytes of each source are bounded) and
        ``now`` is the time in seconds, kept with the entries that wait (:meth:`expire_pending`).
        """
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
        if fresh and self._count(b"missing"):
            self._absent_from_missing = absent_keys(self._missing_t, list(fresh))
        try:
            for entry in batch:
                self._offer(entry, result, fresh, source, now)
            # An entry refused as by an unknown author may be let in by what came later in the
            # same batch (the grant naming it, or a rejected parent, which decides it): offer
            # those again while that changes anything.
            refused = {c for c, err in result.dropped if isinstance(err, UnknownAuthor)}
            while refused:
                result.dropped = [d for d in result.dropped if d[0] not in refused]
                again = {e.cid: e for e in batch if e.cid in refused}
                for entry in again.values():
                    self._offer(entry, result, None, source, now)
                still = {c for c, err in result.dropped if isinstance(err, UnknownAuthor)}
                if len(still) >= len(refused):
                    break  # nothing came of it
                refused = still
        finally:
            self._fresh_positions = set()
            self._absent_from_missing = set()
            self.sums.flush()
            self._flush_counts()
        if self._stale:
            self.reevaluate()
        if self._count(b"invalid"):
            result.invalid = {e.cid for e in result.applied if not self.is_valid(e.cid)}
        if result.pending:
            # An entry that waited for a parent offered later in the same batch was applied
            # meanwhile: it is not pending any more (nor rejected).
            result.pending = [c for c in result.pending if self._pending_t.get(c.bytes) is not None]
        return result

    # -- internals ----------------------------------------------------------------------------

    def _offer(
        self,
        entry: Entry,
        result: JoinResult,
        fresh: set[bytes] | None = None,
        source: str = "",
        now: float = 0.0,
    ) -> None:
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
        error = self._may_not_wait(entry, source)
        if error is not None:
            result.dropped.append((cid, error))
            return
        self._pend(entry, missing, source, now)
        result.pending.append(cid)

    # -- the pending set ----------------------------------------------------------------------

    def _named(self, role: str, did: str) -> bool:
        key = _named_key(role, did)
        return self._named_t.get(key) is not None or self._pnamed_t.get(key) is not None

    def could_be_authorised(self, author: str, payload: Any) -> bool:
        """Whether some history this log could still come to hold might let ``author`` write
        ``payload``: a manifest role, a DID named by a grant (applied or waiting), or a database
        open to everyone. What waits for parents must pass this; it is not the access verdict
        (that is judged on the entry's causal past once it is complete)."""
        manifest = self.manifest
        if author in manifest.admins or self._named("admin", author):
            return True
        if is_acl_payload(payload):
            return False
        return (
            manifest.public
            or author in manifest.writers
            or self._named("writer", author)
            or self._named("writer", PUBLIC)
        )

    def _may_not_wait(self, entry: Entry, source: str) -> PendingRefused | None:
        """Why an entry whose parents are missing may not wait for them (``None``: it may)."""
        if self.refuse_unknown_authors and not self.could_be_authorised(
            entry.author, entry.payload
        ):
            return UnknownAuthor(
                f"{entry.author} is named by no grant this replica knows, in a database not "
                "open to everyone: not kept to wait for missing parents"
            )
        # What _pend updates next: the author's and the source's waiting counts.
        by_author = self._pauthor_t.get(entry.author.encode("utf-8")) or 0
        self._by_author = by_author
        found = self._sources.get(source)
        from_source = (found or self.pending_from(source))[1]
        if source in self.own_sources:
            return None
        counts = self._counts
        if counts[b"pending"] >= self.max_pending:
            return PendingLimitExceeded(f"{self.max_pending} entries already wait for parents")
        if by_author >= self.max_pending_per_author:
            return PendingLimitExceeded(
                f"{self.max_pending_per_author} entries by {entry.author} already wait for parents"
            )
        size = len(entry.block)
        if counts[b"pbytes"] + size > self.max_pending_bytes:
            return PendingLimitExceeded(
                f"{self.pending_bytes} bytes already wait for parents (at most "
                f"{self.max_pending_bytes})"
            )
        if from_source + size > self.max_pending_bytes_per_source:
            return PendingLimitExceeded(
                f"{from_source} bytes from {source!r:.80} already wait for parents (at most "
                f"{self.max_pending_bytes_per_source} per source)"
            )
        return None

    def _pend(self, entry: Entry, missing: list[CID], source: str, now: float) -> None:
        cid = entry.cid
        raw = cid.bytes
        size = len(entry.block)
        since = max(0, int(now * 1000))
        counts = self._counts
        if not counts[b"pindex"]:
            self._mark_indexed()
        self._blocks.put(raw, entry.block)
        self._pending_t.put(raw, [entry.author, source, size, since])
        self._new_since[raw] = _u64.pack(since) + raw
        self._pauthor_t.put(entry.author.encode("utf-8"), self._by_author + 1)
        entries, total = self._sources[source]  # read by _may_not_wait
        self._sources[source] = (entries + 1, total + size)
        self._dirty_sources.add(source)
        counts[b"pending"] += 1
        counts[b"pbytes"] += size
        self._dirty_counts.update((b"pending", b"pbytes"))
        if is_acl_payload(entry.payload):
            grant = _grant_of(entry)
            if grant is not None:
                # Its author could administer (it passed _may_not_wait as an ACL entry), so the
                # DID it names could come to hold the role.
                key = _named_key(*grant)
                self._pnamed_t.put(key, (self._pnamed_t.get(key) or 0) + 1)
        if (
            len(self._pending_cache) < 4 * ENTRY_CACHE
            and self._pending_cache_bytes + size <= PENDING_CACHE_BYTES
        ):
            self._pending_cache[cid] = entry
            self._pending_cache_bytes += size
        if counts[b"missing"]:
            self._not_missing(cid)  # children may wait for it: held now, no longer to fetch
        for parent in missing:
            self._waiting_t.put(parent.bytes + raw, 1)
            if self._pending_t.get(parent.bytes) is None:
                self._now_missing(parent)

    def _add_from(self, source: str, count: int, size: int) -> None:
        entries, total = self.pending_from(source)
        self._sources[source] = (entries + count, total + size)
        self._dirty_sources.add(source)

    def _now_missing(self, cid: CID) -> None:
        raw = cid.bytes
        if raw not in self._new_missing and self._missing_t.get(raw) is None:
            self._new_missing.add(raw)
            self._bump(b"missing", 1)

    def _is_missing(self, raw: bytes) -> bool:
        if raw in self._new_missing:
            return True
        if not self._count(b"missing") or raw in self._absent_from_missing:
            return False
        return self._missing_t.get(raw) is not None

    def _not_missing(self, cid: CID) -> None:
        # Called for every entry applied while anything waits: the counter first, no lookup
        # when nothing is missing.
        if not (self._counts.get(b"missing") or self._count(b"missing")):
            return
        raw = cid.bytes
        if raw in self._new_missing:
            self._new_missing.discard(raw)
            self._bump(b"missing", -1)
        elif self._missing_t.delete(raw):
            self._bump(b"missing", -1)

    def _waited_for(self, cid: CID) -> bool:
        prefix = cid.bytes
        return any(True for _ in self._waiting_t.range(prefix, prefix_end(prefix), limit=1))

    def _unpend(self, cid: CID, *, parents_applied: bool = False) -> Entry | None:
        """Take an entry out of the pending set; return it (``None`` if it was not pending).
        ``parents_applied``: its parents all are, so no waiting row of it is left."""
        raw = cid.bytes
        row = self._pending_t.get(raw)
        if row is None:
            return None
        if isinstance(row, str):  # written before issue 18: the author alone
            author, source, stored_size, since = row, "", None, 0
        else:
            author, source, stored_size, since = row
        entry = self._pending_cache.pop(cid, None)
        if entry is None:
            block = self._blocks.get(raw)
            assert block is not None, "a pending entry's block is stored"
            entry = entry_from_block(cid, block)
        else:
            self._pending_cache_bytes -= len(entry.block)
        size = len(entry.block) if stored_size is None else stored_size
        self._pending_t.delete(raw)
        if self._new_since.pop(raw, None) is None:
            self._psince_t.delete(_u64.pack(since) + raw)
        author_key = author.encode("utf-8")
        left = (self._pauthor_t.get(author_key) or 1) - 1
        if left:
            self._pauthor_t.put(author_key, left)
        else:
            self._pauthor_t.delete(author_key)
        self._add_from(source, -1, -size)
        counts = self._counts
        counts[b"pending"] -= 1
        counts[b"pbytes"] -= size
        self._dirty_counts.update((b"pending", b"pbytes"))
        grant = _grant_of(entry) if is_acl_payload(entry.payload) else None
        if grant is not None:
            key = _named_key(*grant)
            named = (self._pnamed_t.get(key) or 1) - 1
            if named:
                self._pnamed_t.put(key, named)
            else:
                self._pnamed_t.delete(key)
        if not parents_applied:
            # What it waited for: no longer waited for by it (nor missing, if by nothing else).
            for parent in entry.next:
                if self._waiting_t.delete(parent.bytes + raw) and not self._waited_for(parent):
                    self._not_missing(parent)
        return entry

    def expire_pending(self, before: float) -> list[CID]:
        """Drop the entries that have waited since before ``before`` (seconds, the clock the
        joins' ``now`` came from); return them. Not a verdict: offered again, they wait again."""
        self._flush_counts()
        expired = []
        for key, _ in list(self._psince_t.range(None, _u64.pack(max(0, int(before * 1000))))):
            cid = CID.parse(key[8:])
            if self._unpend(cid) is None:  # pragma: no cover - the two tables change together
                self._psince_t.delete(key)
                continue
            self._blocks.delete(cid.bytes)
            if self._waited_for(cid):
                self._now_missing(cid)  # its waiting children need it fetched again
            expired.append(cid)
        self._flush_counts()
        return expired

    # -- the pending indexes of a log from before issue 18 ------------------------------------

    def _mark_indexed(self) -> None:
        if not (self._counts.get(b"pindex") or self._count(b"pindex")):
            self._bump(b"pindex", 1)

    @property
    def pending_indexed(self) -> bool:
        """Whether the pending set's indexes (sizes, sources, ages, missing parents, names
        granted) are kept; a log written before they existed needs :meth:`index_pending`."""
        return self._count(b"pindex") > 0 or (
            self._count(b"entries") == 0 and self._count(b"pending") == 0
        )

    def index_pending(self, now: float) -> None:
        """Build the pending indexes of a log from an older version, once: its waiting entries
        count as received at ``now``, from source ``""``."""
        since = max(0, int(now * 1000))
        for name in ("log.psince", "log.psource", "log.missing", "log.named", "log.pnamed"):
            table = self.space.table(name)
            for key in [k for k, _ in table.range()]:
                table.delete(key)
        self._sources.clear()
        self._dirty_sources.clear()
        self._counts[b"pbytes"] = 0
        self._info_t.put(b"pbytes", 0)
        self._counts[b"missing"] = 0
        self._info_t.put(b"missing", 0)
        for raw, row in list(self._pending_t.range()):
            cid = CID.parse(raw)
            block = self._blocks.get(raw)
            assert block is not None, "a pending entry's block is stored"
            entry = entry_from_block(cid, block)
            waiting = _Waiting.of(row)
            size = len(entry.block)
            self._pending_t.put(raw, [entry.author, waiting.source, size, since])
            self._psince_t.put(_u64.pack(since) + raw, 1)
            self._add_from(waiting.source, 1, size)
            self._bump(b"pbytes", size)
            grant = _grant_of(entry)
            if grant is not None:
                key = _named_key(*grant)
                self._pnamed_t.put(key, (self._pnamed_t.get(key) or 0) + 1)
        for key, _ in list(self._waiting_t.range()):
            parent, end = CID.read(key, 0)
            if self._pending_t.get(key[end:]) is None:
                self._waiting_t.delete(key)  # its child was applied or rejected meanwhile
            elif self._pending_t.get(parent.bytes) is None:
                self._now_missing(parent)
        for _raw, (op, role, did, _past) in self._aclop_t.range():
            if op == "grant":
                self._named_t.put(_named_key(role, did), 1)
        self._mark_indexed()
        self._flush_counts()

    def _children_waiting_on(self, parent: CID, *, was_pending: bool = True) -> list[CID]:
        if not self._count(b"pending"):
            return []  # nothing waits: skip the range read (the common case)
        if not was_pending and self._counts.get(b"pindex") and not self._is_missing(parent.bytes):
            # What is waited for is pending or missing (the pending indexes keep the missing):
            # an entry that was neither has no children waiting. A catch-up that began with a
            # head from an announcement (pending until its past arrives) skips a range read
            # per entry here.
            return []
        prefix = parent.bytes
        rows = list(self._waiting_t.range(prefix, prefix_end(prefix)))
        children = []
        for key, _ in rows:
            self._waiting_t.delete(key)
            children.append(CID.parse(key[len(prefix) :]))
        if rows:
            self._not_missing(parent)  # applied or rejected: nothing to fetch any more
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
            # ``first`` came from outside (neither applied nor pending: _offer checked); the
            # others were pending until now.
            for child_cid in self._children_waiting_on(entry.cid, was_pending=entry is not first):
                row = self._pending_t.get(child_cid.bytes)
                if row is None:
                    continue
                child = self._pending_cache.get(child_cid)
                if child is None:
                    block = self._blocks.get(child_cid.bytes)
                    assert block is not None
                    child = entry_from_block(child_cid, block)
                if all(self._meta(p) is not None for p in child.next):
                    self._unpend(child_cid, parents_applied=True)
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
            ops[cid] = self._aclop_from_row(cid, stored)
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
            parsed = parse_acl_op(payload)
            if parsed is None:
                raise InvalidAclOp(f"malformed access-control operation {payload!r:.200}")
            op, _role, did = parsed
            if state.ranked and op == "revoke" and did not in (author, PUBLIC):
                mine, theirs = state.rank(author), state.rank(did)
                if not mine < theirs:
                    raise Unauthorized(
                        f"{author} (rank {mine}) may not revoke {did} (rank {theirs})"
                    )
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
        self._authorise(state.arrival(), entry.author, entry.payload)
        return self._state_after(entry, state)

    def _state_after(self, entry: Entry, state: AccessState) -> AccessState:
        """The access state after an authorised entry whose causal past has ``state``."""
        parsed = parse_acl_op(entry.payload) if is_acl_payload(entry.payload) else None
        if parsed is None:
            return state
        op, role, did = parsed
        certain = op == "revoke" and state.certain_revoke(entry.author, did)
        acl = AclOp(entry.cid, op, role, did, state.ops, entry.author, entry.clock, certain)
        self._aclop_t.put(
            entry.cid.bytes,
            [op, role, did, self._keep_state(state), entry.author, entry.clock, certain],
        )
        if self._acl_ops is not None:
            self._acl_ops[entry.cid] = acl
        # An entry whose parents are all the heads has every applied entry in its past: it can
        # change no verdict on them (the usual case: a revocation written here, or synced from an
        # up-to-date peer), so no re-evaluation.
        self._resolution_after(acl, self._heads <= set(entry.next))
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
            self._mark_indexed()  # likewise the pending indexes (older logs: index_pending)
            self._bump(b"judged", 1)  # judged under docs/spec.md §8 since the first entry
        if is_acl_payload(entry.payload):
            grant = _grant_of(entry)
            if grant is not None:
                # Named by a grant for good (a revoke does not unname: a branch that has not
                # seen it may still be built on), so entries by this DID may wait for parents.
                self._named_t.put(_named_key(*grant), 1)
        self.sums.add(item)
        for parent in entry.next:
            self._heads.discard(parent)
        self._heads.add(cid)
        self._bump(b"entries", 1)
        self._cache_entry(entry)
        reason = self._judge(entry.cid, entry.author, acl_key, is_acl_payload(entry.payload))
        if reason is not None:
            self._invalid_t.put(raw, reason[:500])
            self._bump(b"invalid", 1)
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

    # -- judging (docs/spec.md §8) ------------------------------------------------------------

    def _aclop_from_row(self, cid: CID, row: Any) -> AclOp:
        op, role, did, past_key = row[:4]
        past = self._state(past_key).ops
        if len(row) >= 7:
            return AclOp(cid, op, role, did, past, row[4], row[5], bool(row[6]))
        # A row written before ranks existed: author and clock are in the entry's meta.
        meta = self._need_meta(cid)
        certain = op == "revoke" and self._state(past_key).certain_revoke(meta.author, did)
        return AclOp(cid, op, role, did, past, meta.author, meta.clock, certain)

    def _all_acl_ops(self) -> dict[CID, AclOp]:
        if self._acl_ops is None:
            self._acl_ops = {
                CID.parse(raw): self._aclop_from_row(CID.parse(raw), row)
                for raw, row in self._aclop_t.range()
            }
        return self._acl_ops

    def _resolved(self) -> Resolution:
        if self._resolution is None:
            self._resolution = resolve(self.manifest, self._all_acl_ops())
            self._plain_cache = None
        return self._resolution

    def _plain(self) -> bool:
        """Whether every ACL entry is valid, none voids concurrent entries and every revocation
        is certain: then a write's arrival check was its whole judgement (the common case)."""
        if self._plain_cache is None:
            resolution = self._resolved()
            ops = self._all_acl_ops()
            self._plain_cache = (
                not resolution.holds
                and len(resolution.valid) == len(ops)
                and all(a.op == "grant" or a.certain for a in ops.values())
            )
        return self._plain_cache

    def _resolution_after(self, acl: AclOp, sees_all: bool) -> None:
        """Resolve again with one more ACL entry; mark the log stale if verdicts on entries
        applied before it (or the revocations that void concurrent entries) changed, unless it
        ``sees_all`` the applied entries (then none is concurrent with it)."""
        before = self._resolved()
        ops = self._all_acl_ops()
        ops[acl.cid] = acl
        after = resolve(self.manifest, ops)
        self._resolution = after
        self._plain_cache = None
        self._judged = {}
        if sees_all:
            return
        if (
            after.valid - {acl.cid} != before.valid
            or set(after.holds) != set(before.holds)
            or any(set(after.holds[k]) != set(before.holds[k]) for k in after.holds)
        ):
            self._stale = True

    def _judged_state(self, key: bytes, state: AccessState | None = None) -> AccessState:
        """The state of the valid ACL entries among those of access-state ``key`` (``state``,
        if already at hand), with ranks."""
        found = self._judged.get(key)
        if found is None:
            resolution = self._resolved()
            ops = (state or self._state(key)).ops_of()
            valid = {c: a for c, a in ops.items() if c in resolution.valid}
            found = self._judged[key] = AccessState(self.manifest, valid, resolution.ranks)
        return found

    def _judged_state_of(self, cids: Iterable[CID]) -> AccessState:
        keys = {self._need_meta(c).acl for c in cids}
        if len(keys) <= 1:
            return self._judged_state(keys.pop() if keys else b"")
        merged = self._state_of_keys(keys)
        return self._judged_state(merged.key, merged)

    def _state_of_keys(self, keys: set[bytes]) -> AccessState:
        if not keys:
            return self._initial
        states = [self._state(k) for k in sorted(keys)]
        return states[0].merge(states[1:])

    def _judge(
        self,
        cid: CID,
        author: str,
        acl_key: bytes,
        is_acl: bool,
        pasts: dict[CID, set[CID]] | None = None,
    ) -> str | None:
        """Why an applied entry is invalid, or ``None``. ``acl_key`` names the state *after* it
        (for an ACL entry, its own op included). ``pasts``: the causal pasts of revocations
        computed so far (given when judging entries applied earlier, which may be in them)."""
        resolution = self._resolved()
        if is_acl:
            return resolution.reasons.get(cid)
        if self._plain():
            return None  # the valid state is the arrival state, and nothing voids: it held
        state = self._judged_state(acl_key)
        if state.public:
            return None
        seen = self._state(acl_key).ops
        for role, members in (("writer", state.writers), ("admin", state.admins)):
            if author not in members:
                continue
            for revocation in resolution.holds.get((role, author), ()):
                if revocation.cid in seen:
                    continue
                if pasts is None or cid not in self._past_of(revocation.cid, pasts):
                    break  # concurrent with a revocation of this role
            else:
                return None
        if author in state.writers or author in state.admins:
            return f"{author} was revoked by a concurrent revocation"
        return f"{author} may not write in the valid access state of its past"

    def _past_of(self, cid: CID, pasts: dict[CID, set[CID]]) -> set[CID]:
        found = pasts.get(cid)
        if found is None:
            found = set()
            stack = list(self._need_meta(cid).next)
            while stack:
                parent = stack.pop()
                if parent in found:
                    continue
                found.add(parent)
                stack.extend(self._need_meta(parent).next)
            pasts[cid] = found
        return found

    def reevaluate(self) -> bool:
        """Judge every applied entry again (after an ACL entry changed verdicts); return whether
        any verdict changed. Runs in the total order, in time linear in the log."""
        self._stale = False
        self._resolution = None
        self._judged = {}
        acl_ops = self._all_acl_ops()
        pasts: dict[CID, set[CID]] = {}
        changed = False
        for cid in self.order_cids():
            meta = self._need_meta(cid)
            reason = self._judge(cid, meta.author, meta.acl, cid in acl_ops, pasts)
            old = self._invalid_t.get(cid.bytes) if self._count(b"invalid") else None
            if reason is None and old is not None:
                self._invalid_t.delete(cid.bytes)
                self._bump(b"invalid", -1)
                changed = True
            elif reason is not None and old is None:
                self._invalid_t.put(cid.bytes, reason[:500])
                self._bump(b"invalid", 1)
                changed = True
        self._changed = self._changed or changed
        self._flush_counts()
        return changed

    @property
    def judged_current(self) -> bool:
        """Whether the verdicts were made under today's rule (docs/spec.md §8); a log written
        before it must be :meth:`reevaluate`-d once (:meth:`mark_judged`)."""
        return self._count(b"judged") > 0 or self._count(b"entries") == 0

    def mark_judged(self) -> None:
        if not self._count(b"judged"):
            self._bump(b"judged", 1)
            self._flush_counts()

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
        self._flush_counts()

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
