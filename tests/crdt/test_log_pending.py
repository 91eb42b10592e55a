"""What may wait for missing parents (crdt/log.py, issue 18 item 2): bytes per database and per
source, authors no known grant could authorise refused, expiry with the time passed in, and the
missing parents kept as an index rather than recomputed from the pending set."""

from __future__ import annotations

import os
import random

from crdt.entry import create_entry
from crdt.errors import PendingLimitExceeded, UnknownAuthor
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from crdt.log import Log
from crdt.manifest import PUBLIC
from crdt.space import MemorySpace
from tests.crdt.dag import ADMIN, OUTSIDER, WRITERS, manifest
from tests.crdt.spaces import CountingSpace, EncodedSpace

W0 = WRITERS[0]


def orphan(m, key: Keypair, size: int = 100, parent: CID | None = None):
    """A validly signed entry (clock 2) whose parent nobody has."""
    return create_entry(
        key,
        db=m.cid,
        clock=2,
        next=[parent or CID.for_block(os.urandom(16))],
        payload={"op": "put", "key": "k", "value": os.urandom(size)},
    )


def strict(m, **kw) -> Log:
    return Log(m, refuse_unknown_authors=True, **kw)


def brute_missing(log: Log) -> frozenset[CID]:
    """What main computed on every call: every waited-for parent not itself pending."""
    found = set()
    for key, _ in log.space.table("log.waiting").range():
        parent, _end = CID.read(key, 0)
        if not log.is_pending(parent) and parent not in log:
            found.add(parent)
    return frozenset(found)


def test_pending_bytes_are_bounded_per_database():
    m = manifest()
    log = Log(m, max_pending_bytes=10_000, max_pending_bytes_per_source=10**9)
    result = log.join([orphan(m, W0, 1_000) for _ in range(30)], source="p1", now=1.0)
    assert log.pending_bytes <= 10_000
    assert 0 < len(result.pending) == log.pending_count < 30
    assert len(result.dropped) == 30 - len(result.pending)
    assert all(isinstance(err, PendingLimitExceeded) for _, err in result.dropped)
    assert "bytes already wait" in str(result.dropped[0][1])
    # Dropped is not rejected: offered again once there is room, it waits.
    assert all(log.rejection(cid) is None for cid, _ in result.dropped)


def test_pending_bytes_are_bounded_per_source():
    m = manifest()
    log = Log(m, max_pending_bytes=10**9, max_pending_bytes_per_source=5_000)
    flood = log.join([orphan(m, W0, 1_000) for _ in range(20)], source="attacker", now=1.0)
    assert log.pending_from("attacker")[1] <= 5_000
    assert flood.dropped and all(isinstance(e, PendingLimitExceeded) for _, e in flood.dropped)
    assert "'attacker'" in str(flood.dropped[0][1])
    # Another peer still has its own allowance.
    honest = log.join([orphan(m, WRITERS[1], 1_000) for _ in range(3)], source="honest", now=1.0)
    assert len(honest.pending) == 3 and not honest.dropped
    count, size = log.pending_from("honest")
    assert count == 3 and size == log.pending_bytes - log.pending_from("attacker")[1]


def test_orphans_of_authors_no_grant_names_are_refused_not_kept():
    m = manifest()
    log = strict(m)
    strangers = [orphan(m, Keypair.from_seed(os.urandom(32)), 500) for _ in range(50)]
    result = log.join(strangers, source="attacker", now=1.0)
    assert result.pending == [] and log.pending_count == 0 and log.pending_bytes == 0
    assert len(result.dropped) == 50
    assert all(isinstance(err, UnknownAuthor) for _, err in result.dropped)
    # Not a verdict: nothing is remembered as rejected, and nothing is fetched for them.
    assert all(log.rejection(e.cid) is None for e in strangers)
    assert log.missing_count == 0 and log.missing == frozenset()
    # Entries by a manifest writer or admin still wait for their parents.
    assert len(log.join([orphan(m, W0), orphan(m, ADMIN)], now=1.0).pending) == 2


def test_a_database_open_to_everyone_lets_anyone_wait():
    m = manifest(writers=[PUBLIC])
    log = strict(m)
    assert len(log.join([orphan(m, OUTSIDER)], now=1.0).pending) == 1
    # ... but an ACL entry still needs an author who could administer.
    acl = create_entry(
        OUTSIDER,
        db=m.cid,
        clock=2,
        next=[CID.for_block(b"gone")],
        payload={"op": "grant", "role": "admin", "did": OUTSIDER.did},
    )
    assert isinstance(log.join([acl], now=1.0).dropped[0][1], UnknownAuthor)


def test_a_dids_named_by_an_applied_grant_may_wait_even_after_a_revoke():
    m = manifest(writers=[W0.did])
    fresh = Keypair.from_seed(bytes([77]) * 32)
    source = Log(m)
    source.append(ADMIN, {"op": "grant", "role": "writer", "did": fresh.did})
    source.append(ADMIN, {"op": "revoke", "role": "writer", "did": fresh.did})
    log = strict(m)
    log.join(source.order())
    # A branch that has not seen the revoke may still be built on: fresh's orphan waits.
    assert len(log.join([orphan(m, fresh)], now=1.0).pending) == 1


def test_a_chain_of_waiting_grants_from_a_known_admin_is_kept_and_applies():
    m = manifest(writers=[W0.did])
    m2 = Keypair.from_seed(bytes([81]) * 32)  # made admin by ADMIN
    w = Keypair.from_seed(bytes([82]) * 32)  # made writer by m2
    source = Log(m)
    root = source.append(W0, "root")
    g1 = source.append(ADMIN, {"op": "grant", "role": "admin", "did": m2.did})
    g2 = source.append(m2, {"op": "grant", "role": "writer", "did": w.did})
    e = source.append(w, {"op": "put", "key": "k", "value": 1})
    log = strict(m)
    # Each offered on its own (a child only after its grant), the root missing: all wait.
    for entry in (g1, g2, e):
        result = log.join([entry], source="peer", now=1.0)
        assert result.pending == [entry.cid], result.dropped
    assert log.missing == {root.cid}
    log.join([root], now=2.0)
    assert len(log) == 4 and log.pending_count == 0 and log.heads == (e.cid,)
    # Within one batch the order does not matter: the refused are offered again at its end.
    again = strict(m)
    result = again.join([e, g2, g1], now=1.0)
    assert sorted(result.pending) == sorted([g1.cid, g2.cid, e.cid]) and not result.dropped


def test_a_chain_of_fresh_keys_granting_each_other_is_refused():
    m = manifest(writers=[W0.did])
    x, y, z = (Keypair.from_seed(bytes([90 + i]) * 32) for i in range(3))
    forged = Log(m)
    root = forged.append(W0, "root")
    forged._authorise = lambda *a: None  # the attacker's replica skips the access check
    gx = forged.append(x, {"op": "grant", "role": "admin", "did": y.did})
    gy = forged.append(y, {"op": "grant", "role": "writer", "did": z.did})
    ez = forged.append(z, {"op": "put", "key": "k", "value": 1})
    log = strict(m)
    result = log.join([gx, gy, ez], source="attacker", now=1.0)
    assert result.pending == [] and log.pending_count == 0
    assert {c for c, err in result.dropped if isinstance(err, UnknownAuthor)} == {
        gx.cid,
        gy.cid,
        ez.cid,
    }
    # With the root they are judged, and rejected for good.
    log.join([root, gx, gy, ez], now=1.0)
    assert "not an admin" in (log.rejection(gx.cid) or "")
    assert len(log) == 1


def test_a_waiting_grant_by_a_stranger_names_nobody():
    m = manifest(writers=[W0.did])
    x = Keypair.from_seed(bytes([95]) * 32)
    y = Keypair.from_seed(bytes([96]) * 32)
    grant = create_entry(
        x,
        db=m.cid,
        clock=2,
        next=[CID.for_block(b"gone")],
        payload={"op": "grant", "role": "writer", "did": y.did},
    )
    log = strict(m)
    log.join([grant], now=1.0)
    assert isinstance(log.join([orphan(m, y)], now=1.0).dropped[0][1], UnknownAuthor)


def test_pending_entries_expire_with_the_time_passed_in():
    m = manifest()
    log = Log(m, space=EncodedSpace())
    source = Log(m)
    chain = [source.append(W0, i) for i in range(4)]
    early = log.join([orphan(m, W0, 200) for _ in range(5)], source="a", now=1_000.0)
    late = log.join(chain[2:], source="b", now=5_000.0)  # wait for chain[1]
    assert log.pending_count == 7 and log.missing_count == 6
    assert log.expire_pending(999.0) == []
    expired = log.expire_pending(2_000.0)
    assert sorted(expired) == sorted(early.pending)
    assert log.pending_count == 2 and log.pending_from("a") == (0, 0)
    assert log.missing == {chain[1].cid}
    assert all(log.space.table("blocks").get(c.bytes) is None for c in expired)
    # The middle of a waiting chain expires: its child now waits for it again (it is missing).
    log.join([orphan(m, W0)], source="c", now=9_000.0)
    assert sorted(log.expire_pending(6_000.0)) == sorted(late.pending)
    assert log.pending_count == 1 and log.pending_bytes == log.pending_from("c")[1]
    assert log.missing_count == 1 == len(brute_missing(log))
    # Expired is not rejected: offered again, the chain applies once its past is there.
    log.join(chain, now=10_000.0)
    assert len(log) == 4 and log.heads == (chain[-1].cid,)


def test_missing_is_an_index_its_readers_never_scan_the_pending_set():
    m = manifest()
    space = CountingSpace()
    log = Log(m, space=space)
    log.join([orphan(m, W0, 10) for _ in range(2_000)], now=1.0)
    assert log.pending_count == 2_000
    space.counts.clear()
    assert log.missing_count == 2_000
    assert next(log.iter_missing(), None) is not None
    assert space.counts["reads"] <= 2  # a counter and one row, whatever the pending set holds


def test_missing_stays_exact_through_any_delivery_order():
    m = manifest()
    rng = random.Random(7)
    source = Log(m)
    for i in range(120):
        writer = WRITERS[rng.randrange(3)]
        if rng.random() < 0.2:
            branch = Log(m)
            branch.join(source.order()[: rng.randrange(1, len(source) + 1)])
            source.join([branch.append(writer, i)])
        else:
            source.append(writer, i)
    entries = source.order()
    for seed in range(4):
        delivery = list(entries) * 2
        random.Random(seed).shuffle(delivery)
        log = Log(m)
        now = 0.0
        for start in range(0, len(delivery), 9):
            now += 1.0
            log.join(delivery[start : start + 9], now=now)
            if start % 45 == 0:
                log.expire_pending(now - 3.0)
            assert log.missing == brute_missing(log)
            assert log.missing_count == len(log.missing)
        log.join(entries, now=now)
        assert len(log) == len(entries) and log.pending_count == 0
        assert log.missing_count == 0 and log.pending_bytes == 0


def test_a_log_written_before_the_indexes_is_indexed_once():
    m = manifest()
    space = MemorySpace()
    log = Log(m, space=space)
    waiting = [orphan(m, W0, 300) for _ in range(4)]
    log.join(waiting, source="x", now=5.0)
    # Make it look like a log of an older version: author-only rows, no indexes.
    for entry in waiting:
        space.table("log.pending").put(entry.cid.bytes, entry.author)
    for name in ("log.psince", "log.psource", "log.missing", "log.named", "log.pnamed"):
        table = space.table(name)
        for key in [k for k, _ in table.range()]:
            table.delete(key)
    for name in (b"pindex", b"pbytes", b"missing"):
        space.table("log.info").delete(name)
    old = Log(m, space=space)
    assert not old.pending_indexed
    old.index_pending(100.0)
    assert old.pending_indexed and Log(m, space=space).pending_indexed
    assert old.pending_count == 4 and old.missing_count == 4
    assert old.pending_bytes == sum(len(e.block) for e in waiting)
    assert old.pending_from("") == (4, old.pending_bytes)
    assert old.expire_pending(50.0) == [] and len(old.expire_pending(101.0)) == 4
    assert old.pending_count == 0 and old.missing_count == 0 and old.pending_bytes == 0


def chain(m, key: Keypair, length: int, size: int = 500):
    """A valid history of ``length`` entries by ``key`` (skip links and all), root first."""
    writer = Log(m)
    return [
        writer.append(key, {"op": "put", "key": f"k{n}", "value": os.urandom(size)})
        for n in range(length)
    ]


def test_own_sources_wait_whole_whatever_the_caps():
    # A walk down from the heads (the node's bitswap fetch) delivers a history children first, in
    # rounds. Capped like a peer, its lowest entries would be dropped, fetched again and dropped
    # again without end; as an own source the whole history waits and applies with its root.
    m = manifest()
    history = chain(m, W0, 60)
    limits = dict(
        max_pending=10,
        max_pending_per_author=10,
        max_pending_bytes=4_000,
        max_pending_bytes_per_source=2_000,
    )
    capped = strict(m, **limits)
    own = strict(m, own_sources={"bitswap"}, **limits)
    rounds = [history[start : start + 15] for start in (45, 30, 15, 0)]
    dropped = []
    for batch in rounds:
        dropped += capped.join(batch, source="bitswap", now=1.0).dropped
        assert own.join(batch, source="bitswap", now=1.0).dropped == []
    assert dropped and all(isinstance(e, PendingLimitExceeded) for _, e in dropped)
    assert len(capped) < 60
    assert len(own) == 60 and own.pending_count == 0 and own.pending_bytes == 0
    assert own.pending_from("bitswap") == (0, 0)


def test_own_sources_still_refuse_unknown_authors_and_leave_peers_capped():
    m = manifest()
    log = strict(m, own_sources={"bitswap"}, max_pending_bytes_per_source=3_000)
    stranger = log.join([orphan(m, OUTSIDER, 100)], source="bitswap", now=1.0)
    assert [type(e) for _, e in stranger.dropped] == [UnknownAuthor]
    peer = log.join([orphan(m, W0, 1_000) for _ in range(5)], source="peer", now=1.0)
    assert len(peer.pending) == 2 and len(peer.dropped) == 3
    own = log.join([orphan(m, W0, 1_000) for _ in range(5)], source="bitswap", now=1.0)
    assert len(own.pending) == 5 and not own.dropped
    assert log.pending_from("bitswap")[0] == 5


class _RangeCountingTable:
    def __init__(self, inner, calls, name):
        self._inner, self._calls, self._name = inner, calls, name

    def __getattr__(self, attr):
        return getattr(self._inner, attr)

    def __len__(self) -> int:
        return len(self._inner)

    def range(self, *args, **kwargs):
        self._calls[self._name] += 1
        return self._inner.range(*args, **kwargs)


class _RangeCountingSpace:
    """A memory space that counts the range reads of each table."""

    def __init__(self) -> None:
        self.inner = MemorySpace()
        self.calls: dict[str, int] = {}
        self._tables: dict[str, _RangeCountingTable] = {}

    def table(self, name: str) -> _RangeCountingTable:
        if name not in self._tables:
            self.calls[name] = 0
            self._tables[name] = _RangeCountingTable(self.inner.table(name), self.calls, name)
        return self._tables[name]


def test_a_catch_up_begun_with_the_announced_head_reads_no_waiting_rows_per_entry():
    # As on the network: the head arrives first (inline in an announcement) and waits for its
    # past; the sync then brings the whole history in causal order.
    m = manifest()
    source = Log(m)
    entries = [source.append(W0, {"op": "put", "key": f"k{i}", "value": i}) for i in range(300)]
    space = _RangeCountingSpace()
    log = Log(m, space=space)
    log.join([entries[-1]], source="peer")
    assert log.pending_count == 1 and log.missing == frozenset({entries[-2].cid})
    before = space.calls["log.waiting"]
    result = log.join(entries, source="peer")
    assert len(log) == 300 and log.pending_count == 0 and not log.missing
    assert len(result.applied) == 300 and result.duplicates == 1  # the head: it was pending
    assert log.heads == (entries[-1].cid,)
    # The entry that was missing finds its waiting child; no other applied entry looks.
    assert space.calls["log.waiting"] - before <= 2


def test_pending_chains_are_released_whatever_arrives_first():
    m = manifest()
    source = Log(m)
    entries = [source.append(W0, {"op": "put", "key": f"k{i}", "value": i}) for i in range(60)]
    rng = random.Random(7)
    for _ in range(20):
        log = Log(m)
        early = rng.sample(entries, rng.randrange(1, 20))
        log.join(early, source="peer")
        rest = [e for e in entries if e not in early]
        rng.shuffle(rest)
        cut = rng.randrange(len(rest) + 1)
        log.join(sorted(rest[:cut], key=lambda e: e.clock), source="peer")
        assert log.missing == brute_missing(log)
        log.join(rest[cut:], source="peer")
        assert len(log) == 60 and log.pending_count == 0 and not log.missing
        assert log.heads == source.heads
