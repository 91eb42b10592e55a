import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.entry import create_entry
from crdt.errors import (
    InvalidAclOp,
    InvalidClock,
    InvalidSkipLinks,
    PendingLimitExceeded,
    RejectedAncestor,
    WrongDatabase,
)
from crdt.log import Log, order_key
from tests.crdt.dag import ADMIN, WRITERS, history, manifest

W0, W1, W2 = WRITERS


def test_append_builds_a_chain_with_derived_clocks():
    log = Log(manifest())
    first = log.append(W0, {"op": "put", "key": "a", "value": 1})
    second = log.append(W1, {"op": "put", "key": "a", "value": 2})
    assert first.clock == 1 and first.next == ()
    assert second.clock == 2 and second.next == (first.cid,)
    assert log.heads == (second.cid,)
    assert [e.cid for e in log.order()] == [first.cid, second.cid]


def test_out_of_order_delivery_waits_and_reports_missing():
    source = Log(manifest())
    entries = [source.append(W0, {"i": i}) for i in range(5)]
    log = Log(manifest())
    result = log.join(entries[2:])
    assert result.applied == []
    assert log.pending_count == 3
    assert log.missing == {entries[1].cid}
    result = log.join([entries[1]])
    assert result.applied == [] and log.missing == {entries[0].cid}
    result = log.join([entries[0]])
    assert [e.cid for e in result.applied] == [e.cid for e in entries]
    assert log.pending_count == 0 and log.missing == frozenset()
    assert log.heads == source.heads


def test_duplicates_are_counted_not_applied_twice():
    source = Log(manifest())
    entry = source.append(W0, "x")
    log = Log(manifest())
    result = log.join([entry, entry, entry])
    assert len(result.applied) == 1 and result.duplicates == 2
    assert log.join([entry]).duplicates == 1


def test_forged_clock_is_rejected_with_its_descendants():
    m = manifest()
    source = Log(m)
    root = source.append(W0, "root")
    # OrbitDB issue 512: one entry claiming a huge clock. Here it is refused.
    forged = create_entry(W1, db=m.cid, clock=2**54, next=[root.cid], payload="jump")
    child = create_entry(W1, db=m.cid, clock=2**54 + 1, next=[forged.cid], payload="after")
    log = Log(m)
    result = log.join([child, root, forged])
    rejected = dict(result.rejected)
    assert isinstance(rejected[forged.cid], InvalidClock)
    assert isinstance(rejected[child.cid], RejectedAncestor)
    assert log.heads == (root.cid,)
    assert log.pending_count == 0
    # Later arrivals below a rejected entry are refused at once.
    grandchild = create_entry(W1, db=m.cid, clock=2**54 + 2, next=[child.cid], payload="x")
    assert isinstance(dict(log.join([grandchild]).rejected)[grandchild.cid], RejectedAncestor)


def test_too_small_clock_is_rejected():
    m = manifest()
    log = Log(m)
    a = log.append(W0, "a")
    b = log.append(W0, "b")
    stale = create_entry(W1, db=m.cid, clock=2, next=[a.cid, b.cid], payload="x")
    assert isinstance(dict(log.join([stale]).rejected)[stale.cid], InvalidClock)


def test_wrong_database():
    other = manifest(store="events")
    foreign = Log(other).append(W0, "x")
    result = Log(manifest()).join([foreign])
    assert isinstance(dict(result.rejected)[foreign.cid], WrongDatabase)


def test_skip_links_are_checked():
    m = manifest()
    log = Log(m)
    entries = [log.append(W0, i) for i in range(3)]
    assert entries[1].skip == ()  # clock 2: distance 2 would reach clock 0
    fourth = log.append(W0, 3)
    assert fourth.clock == 4 and fourth.skip == (entries[1].cid,)  # clock 4 -> clock 2
    wrong = create_entry(
        W0, db=m.cid, clock=4, next=[entries[2].cid], payload=3, skip=[entries[0].cid]
    )
    missing = create_entry(W0, db=m.cid, clock=4, next=[entries[2].cid], payload="m")
    result = Log(m).join([*entries, wrong, missing])
    rejected = dict(result.rejected)
    assert isinstance(rejected[wrong.cid], InvalidSkipLinks)
    assert isinstance(rejected[missing.cid], InvalidSkipLinks)


def test_walking_back_is_logarithmic():
    log = Log(manifest())
    for i in range(4096):
        log.append(W0 if i % 3 else W1, i)
    head = log.heads[0]
    assert log.get(head).clock == 4096
    bound = math.ceil(math.log2(4096)) ** 2
    for target in (1, 2, 1000, 2047, 3000, 4095):
        path = log.walk_back(head, target)
        assert log.get(path[-1]).clock == target
        assert len(path) <= bound, (target, len(path))
    assert len(log.walk_back(head, 1)) <= 13


def test_a_join_reports_as_pending_only_what_still_waits():
    """Children offered before their parents in one batch: applied, not reported pending."""
    m = manifest()
    source = Log(m)
    chain = [source.append(W0, i) for i in range(6)]
    log = Log(m)
    result = log.join(list(reversed(chain[1:])))  # the root is missing: all five wait
    assert sorted(result.pending) == sorted(e.cid for e in chain[1:])
    result = Log(m).join(list(reversed(chain)))  # newest first, root last: all apply
    assert len(result.applied) == 6 and result.pending == []
    assert log.join([chain[0]]).pending == [] and len(log) == 6


def test_pending_limits_per_author_and_total():
    m = manifest()
    source = Log(m)
    chain = [source.append(W0, i) for i in range(10)]
    other = Log(m)
    other.join(chain[:1])
    branch = [other.append(W1, i) for i in range(10)]
    log = Log(m, max_pending=6, max_pending_per_author=4)
    result = log.join(chain[1:] + branch[1:])  # everything waits for the two roots
    assert len(result.pending) == 6
    assert len(result.dropped) == 12
    assert all(isinstance(err, PendingLimitExceeded) for _, err in result.dropped)
    assert "by " + W0.did in str(result.dropped[0][1])
    # Once the roots arrive, what was kept applies; the dropped entries can be offered again.
    log.join([chain[0]])
    log.join(chain + branch)
    assert len(log) == 20 and log.pending_count == 0
    assert log.heads == tuple(sorted({chain[-1].cid, branch[-1].cid}))


def test_equivocation_is_recorded_and_deterministic():
    m = manifest()
    log = Log(m)
    root = log.append(W0, "root")
    fork_a = create_entry(W1, db=m.cid, clock=2, next=[root.cid], payload="a")
    fork_b = create_entry(W1, db=m.cid, clock=2, next=[root.cid], payload="b")
    replicas = [Log(m), Log(m)]
    replicas[0].join([root, fork_a, fork_b])
    replicas[1].join([fork_b, root, fork_a])
    for replica in replicas:
        (eq,) = replica.equivocations
        assert eq.author == W1.did and eq.clock == 2
        assert set(eq.cids) == {fork_a.cid, fork_b.cid}
    assert [e.cid for e in replicas[0].order()] == [e.cid for e in replicas[1].order()]
    assert replicas[0].equivocations == replicas[1].equivocations


def test_order_is_topological_and_total():
    logs = history(random.Random(3), manifest(), 200)
    merged = Log(manifest())
    for log in logs:
        merged.join(log.order())
    order = merged.order()
    position = {e.cid: i for i, e in enumerate(order)}
    for entry in order:
        for parent in entry.next:
            assert position[parent] < position[entry.cid]
    assert order == sorted(order, key=order_key)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(5, 60), batch=st.integers(1, 20))
def test_any_delivery_order_converges(seed, steps, batch):
    rng = random.Random(seed)
    m = manifest()
    logs = history(rng, m, steps)
    everything = {e.cid: e for log in logs for e in log.order()}
    reference = Log(m)
    reference.join(sorted(everything.values(), key=order_key))
    for _ in range(3):
        delivery = list(everything.values()) * 2
        rng.shuffle(delivery)
        replica = Log(m)
        for start in range(0, len(delivery), batch):
            replica.join(delivery[start : start + batch])
        assert replica.heads == reference.heads
        assert [e.cid for e in replica.order()] == [e.cid for e in reference.order()]
        assert replica.pending_count == 0 and not replica.missing
        assert replica.equivocations == reference.equivocations


def test_local_append_respects_parent_limit():
    m = manifest()
    log = Log(m)
    root = log.append(W0, "root")
    for i in range(300):
        side = Log(m)
        side.join([root])
        log.join([side.append(W1, i)])
    assert len(log.heads) == 300
    merge = log.append(W0, "merge")
    assert len(merge.next) == 256
    assert merge.clock == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"op": "grant"},
        {"op": "grant", "role": "god", "did": W2.did},
        {"op": "revoke", "role": "admin", "did": "*"},
        {"op": "grant", "role": "writer", "did": "did:key:nope"},
        {"op": "grant", "role": "writer", "did": W2.did, "extra": 1},
    ],
)
def test_malformed_acl_ops(bad):
    m = manifest()
    log = Log(m)
    with pytest.raises(InvalidAclOp):
        log.append(ADMIN, bad)
    # Signed anyway by an admin and offered remotely: rejected the same way on every replica.
    forged = create_entry(ADMIN, db=m.cid, clock=1, payload=bad)
    assert isinstance(dict(Log(m).join([forged]).rejected)[forged.cid], InvalidAclOp)


def test_ancestry_gives_a_lagging_peer_what_it_lacks_parents_first():
    logs = history(random.Random(11), manifest(), 150)
    source = Log(manifest())
    for log in logs:
        source.join(log.order())
    order = source.order()
    lagging = Log(manifest())
    lagging.join(order[:40])
    cids, more = source.ancestry(source.heads, lagging.heads)
    assert not more
    position = {e.cid: i for i, e in enumerate(order)}
    assert cids == sorted(cids, key=lambda c: position[c])  # parents before children
    result = lagging.join([source.get(c) for c in cids])
    # What the floor skipped shows up as missing parents: ask for them, as a puller does.
    while lagging.missing:
        extra, _ = source.ancestry(sorted(lagging.missing), lagging.heads)
        lagging.join([source.get(c) for c in extra])
    assert lagging.heads == source.heads and len(lagging) == len(source)
    assert not result.rejected


def test_ancestry_limit_sends_the_lowest_first():
    log = Log(manifest())
    for i in range(50):
        log.append(W0, i)
    cids, more = log.ancestry(log.heads, [], limit=10)
    assert more and [log.get(c).clock for c in cids] == list(range(1, 11))
    assert log.ancestry(log.heads, log.heads) == ([], False)
