import contextlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import RejectedAncestor, Unauthorized
from crdt.log import Log
from crdt.manifest import create_manifest
from tests.crdt.dag import ADMIN, OUTSIDER, WRITERS

W0, W1, W2 = WRITERS


def closed():
    return create_manifest("acl", "keyvalue", admins=[ADMIN.did], writers=[W0.did])


def fork(log):
    """A second replica holding what ``log`` holds now."""
    other = Log(log.manifest)
    other.join(log.order())
    return other


def everywhere(manifest, entries, seed=0):
    """Deliver ``entries`` to fresh replicas in several orders; return their logs."""
    rng = random.Random(seed)
    logs = []
    for _ in range(4):
        shuffled = list(entries)
        rng.shuffle(shuffled)
        log = Log(manifest)
        log.join(shuffled)
        logs.append(log)
    return logs


def test_outsider_is_rejected_everywhere():
    m = closed()
    log = Log(m)
    root = log.append(W0, "ok")
    try:
        log.append(OUTSIDER, "x")
        raise AssertionError("an outsider wrote")
    except Unauthorized:
        pass
    # The outsider signs an entry on top of the root itself and offers it.
    outsider_log = Log(m)
    outsider_log.join([root])
    outsider_log._authorise = lambda *a: None  # the attacker's own replica skips the check
    forged = outsider_log.append(OUTSIDER, "x")
    child = outsider_log.append(OUTSIDER, "y")
    for replica in everywhere(m, [root, forged, child]):
        assert replica.heads == (root.cid,)
        assert "may not write" in replica.rejection(forged.cid)
        assert "was rejected" in replica.rejection(child.cid)


def test_grant_then_write_then_revoke():
    m = closed()
    log = Log(m)
    log.append(ADMIN, {"op": "grant", "role": "writer", "did": W1.did})
    wrote = log.append(W1, "hello")
    log.append(ADMIN, {"op": "revoke", "role": "writer", "did": W1.did})
    try:
        log.append(W1, "again")
        raise AssertionError("revoked writer wrote")
    except Unauthorized:
        pass
    assert wrote.cid in log
    assert W1.did not in log.access.writers


def test_write_concurrent_with_revocation_is_kept_but_void_everywhere():
    """docs/spec.md §8: a write concurrent with the revocation of its author's role is invalid
    (revocation holds); it stays in the DAG (its block, its place in the order) but counts for
    nothing. Before issue 18 it was valid: the backdating rule."""
    m = closed()
    base = Log(m)
    base.append(ADMIN, {"op": "grant", "role": "writer", "did": W1.did})
    writer_side = fork(base)
    admin_side = fork(base)
    concurrent = writer_side.append(W1, "written before seeing the revocation")
    revoke = admin_side.append(ADMIN, {"op": "revoke", "role": "writer", "did": W1.did})
    # After seeing the revocation, W1's next write is rejected on every replica.
    writer_side.join([revoke])
    writer_side._authorise = lambda *a: None
    after = writer_side.append(W1, "written after seeing the revocation")
    after_child = writer_side.append(W1, "and its child")
    entries = [*base.order(), concurrent, revoke, after, after_child]
    for replica in everywhere(m, entries, seed=1):
        assert concurrent.cid in replica
        assert not replica.is_valid(concurrent.cid)
        assert "revoked" in replica.invalidity(concurrent.cid)
        assert revoke.cid in replica and replica.is_valid(revoke.cid)
        assert after.cid not in replica and isinstance(replica.rejection(after.cid), str)
        assert "may not write" in replica.rejection(after.cid)
        assert after_child.cid not in replica
        assert W1.did not in replica.access.writers


def test_revoke_wins_over_concurrent_grant():
    m = closed()
    base = Log(m)
    base.append(ADMIN, {"op": "grant", "role": "admin", "did": W2.did})
    base.append(ADMIN, {"op": "grant", "role": "writer", "did": W1.did})
    a, b = fork(base), fork(base)
    revoke = a.append(ADMIN, {"op": "revoke", "role": "writer", "did": W1.did})
    grant = b.append(W2, {"op": "grant", "role": "writer", "did": W1.did})
    for replica in everywhere(m, [*base.order(), revoke, grant], seed=2):
        assert W1.did not in replica.access.writers
    # A later grant that has seen the revocation restores the role.
    merged = fork(base)
    merged.join([revoke, grant])
    merged.append(ADMIN, {"op": "grant", "role": "writer", "did": W1.did})
    assert W1.did in merged.access.writers
    merged.append(W1, "back")


def test_admin_can_be_revoked_and_then_cannot_administer():
    m = closed()
    log = Log(m)
    log.append(ADMIN, {"op": "grant", "role": "admin", "did": W2.did})
    log.append(W2, {"op": "grant", "role": "writer", "did": W1.did})
    log.append(ADMIN, {"op": "revoke", "role": "admin", "did": W2.did})
    try:
        log.append(W2, {"op": "revoke", "role": "writer", "did": W1.did})
        raise AssertionError("revoked admin administered")
    except Unauthorized:
        pass
    assert W1.did in log.access.writers


def test_writer_cannot_grant():
    log = Log(closed())
    try:
        log.append(W0, {"op": "grant", "role": "writer", "did": W1.did})
        raise AssertionError("a writer granted")
    except Unauthorized:
        pass


def test_public_write_database():
    m = create_manifest("open", "events", admins=[ADMIN.did], writers=["*"])
    log = Log(m)
    log.append(OUTSIDER, "anyone may write")
    try:
        log.append(OUTSIDER, {"op": "grant", "role": "writer", "did": W0.did})
        raise AssertionError("an outsider administered")
    except Unauthorized:
        pass
    log.append(ADMIN, {"op": "revoke", "role": "writer", "did": "*"})
    try:
        log.append(OUTSIDER, "closed now")
        raise AssertionError("wrote after the database was closed")
    except Unauthorized:
        pass


def test_rejected_ancestor_applies_across_authors():
    m = closed()
    attacker = Log(m)
    attacker._authorise = lambda *a: None
    bad = attacker.append(OUTSIDER, "bad")
    honest_on_top = attacker.append(W0, "built on a bad entry")
    log = Log(m)
    result = log.join([honest_on_top, bad])
    reasons = dict(result.rejected)
    assert isinstance(reasons[bad.cid], Unauthorized)
    assert isinstance(reasons[honest_on_top.cid], RejectedAncestor)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(5, 50))
def test_access_decisions_do_not_depend_on_delivery(seed, steps):
    rng = random.Random(seed)
    m = create_manifest("acl", "keyvalue", admins=[ADMIN.did], writers=[W0.did])
    replicas = [Log(m) for _ in range(3)]
    keys = [ADMIN, W0, W1, W2]
    attempted = 0
    for _ in range(steps):
        log = rng.choice(replicas)
        action = rng.random()
        if action < 0.25:
            log.join(rng.choice(replicas).order())
            continue
        author = rng.choice(keys)
        if action < 0.5:
            payload = {
                "op": rng.choice(["grant", "revoke"]),
                "role": rng.choice(["writer", "admin"]),
                "did": rng.choice([W0, W1, W2]).did,
            }
        else:
            payload = {"op": "put", "key": "k", "value": attempted}
        log._authorise = lambda *a: (
            None
        )  # every replica may try anything; validity is judged on join
        with contextlib.suppress(Exception):
            log.append(author, payload)
        del log._authorise
        attempted += 1
    everything = {}
    for log in replicas:
        everything.update({e.cid: e for e in log.order()})
    # Also offer the entries some replica rejected locally: they must be rejected everywhere.
    logs = everywhere(m, list(everything.values()), seed=seed)
    first = logs[0]
    for other in logs[1:]:
        assert other.heads == first.heads
        assert other.access.describe() == first.access.describe()
        assert [e.cid for e in other.order()] == [e.cid for e in first.order()]
