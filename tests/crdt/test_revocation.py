"""Revocation that holds (docs/spec.md §8, issue 18 item 4): the rank rule, concurrent entries of a
revoked key, and what happens to entries built on invalid ones."""

import random

import pytest

from crdt.access import NO_RANK
from crdt.database import Database
from crdt.errors import Unauthorized
from crdt.identity import Keypair
from crdt.log import Log
from crdt.manifest import create_manifest

A = Keypair.from_seed(bytes([31]) * 32)  # the manifest's admin
M = Keypair.from_seed(bytes([32]) * 32)  # an admin A grants, then revokes
M2 = Keypair.from_seed(bytes([33]) * 32)  # M's accomplice
B = Keypair.from_seed(bytes([34]) * 32)
W = Keypair.from_seed(bytes([35]) * 32)  # an honest writer


def manifest(**kw):
    kw.setdefault("admins", [A.did])
    kw.setdefault("writers", [W.did])
    return create_manifest("revocation", "keyvalue", **kw)


def grant(role, key):
    return {"op": "grant", "role": role, "did": key.did}


def revoke(role, key):
    return {"op": "revoke", "role": role, "did": key.did}


def put(key, value):
    return {"op": "put", "key": key, "value": value}


def fork(db):
    other = Database(db.manifest)
    other.join(db.log.order())
    return other


def unchecked(db):
    """An attacker's replica: signs whatever it is told to (its own checks are off)."""
    db.log._authorise = lambda *a: None
    return db


def replicas(m, entries, seeds=range(6)):
    """Fresh databases given ``entries`` in several orders and batchings."""
    found = []
    for seed in seeds:
        rng = random.Random(seed)
        shuffled = list(entries)
        rng.shuffle(shuffled)
        db = Database(m)
        cut = rng.randrange(len(shuffled) + 1)
        db.join(shuffled[:cut])
        db.join(shuffled[cut:])
        found.append(db)
    return found


def takeover():
    """The attack of issue 18 item 4: A revokes M; M, on a head from before, grants admin to M2;
    M2 revokes A and grants admin back to M."""
    m = manifest()
    base = Database(m)
    base.grant(A, "admin", M.did)
    base.write(W, put("k", "before"))
    attacker = unchecked(fork(base))
    honest = fork(base)
    revocation = honest.revoke(A, "admin", M.did)
    honest_write = honest.write(W, put("k", "after the revocation"))
    backdated = attacker.grant(M, "admin", M2.did)
    coup = attacker.revoke(M2, "admin", A.did)
    restore = attacker.grant(M2, "admin", M.did)
    own = attacker.write(M2, put("k", "the attacker's"))
    entries = [*base.log.order(), revocation, honest_write, backdated, coup, restore, own]
    return m, entries, locals()


def test_a_revoked_admin_does_not_take_the_database_over():
    m, entries, e = takeover()
    for db in replicas(m, entries):
        access = db.log.access
        assert A.did in access.admins
        assert M.did not in access.admins and M2.did not in access.admins
        for name in ("backdated", "coup", "restore", "own"):
            assert not db.log.is_valid(e[name].cid), name
            assert e[name].cid in db.log  # kept in the DAG, out of the state
        assert db.log.is_valid(e["revocation"].cid)
        assert db.store.get("k") == "after the revocation"
    # And A still administers: a new grant is accepted.
    db.grant(A, "writer", B.did)
    assert B.did in db.log.access.writers


def test_rank_rule():
    db = Database(manifest())
    db.grant(A, "admin", M.did)  # M: rank 1
    db.grant(M, "admin", M2.did)  # M2: rank 2
    db.grant(A, "admin", B.did)  # B: rank 1
    access = db.log.access
    assert [access.rank(k.did) for k in (A, M, M2, B, W)] == [0, 1, 2, 1, NO_RANK]
    with pytest.raises(Unauthorized, match="rank"):
        db.revoke(M, "admin", A.did)  # below the manifest's admin
    with pytest.raises(Unauthorized, match="rank"):
        db.revoke(M, "admin", B.did)  # the same rank
    with pytest.raises(Unauthorized, match="rank"):
        db.revoke(M2, "writer", M.did)  # any role of a higher-ranked admin
    db.revoke(M, "writer", W.did)  # a writer has no rank
    db.revoke(M, "admin", M2.did)  # rank 2 is below rank 1
    db.revoke(B, "admin", B.did)  # one's own role, always
    assert db.log.access.admins == {A.did, M.did}
    # A forged revocation against the rank rule is kept but void, on every replica.
    forger = unchecked(fork(db))
    forged = forger.revoke(M, "admin", A.did)
    for replica in replicas(db.manifest, [*db.log.order(), forged]):
        assert not replica.log.is_valid(forged.cid)
        assert "rank" in replica.log.invalidity(forged.cid)
        assert A.did in replica.log.access.admins


def test_the_lowest_rank_among_valid_grants_counts():
    db = Database(manifest())
    db.grant(A, "admin", M.did)
    db.grant(M, "admin", M2.did)
    assert db.log.access.rank(M2.did) == 2
    db.grant(A, "admin", M2.did)  # granted again, by rank 0
    assert db.log.access.rank(M2.did) == 1
    with pytest.raises(Unauthorized, match="rank"):
        db.revoke(M, "admin", M2.did)


def test_writes_concurrent_with_a_revocation_are_void_and_rebuilt_out_of_the_store():
    m = manifest()
    base = Database(m)
    base.grant(A, "writer", B.did)
    writer = fork(base)
    admin = fork(base)
    offline = [writer.write(B, put("b", i)) for i in range(3)]
    revocation = admin.revoke(A, "writer", B.did)
    # The writer's replica applied its writes; the revocation arrives: they are voided there too.
    assert writer.store.get("b") == 2
    writer.join([revocation])
    assert writer.store.get("b") is None
    # Folded again from nothing: the kept state digest is the rows' (docs/spec.md §17).
    assert writer.store.digest() == writer.store.recompute_digest()
    assert all(not writer.log.is_valid(e.cid) for e in offline)
    for db in replicas(m, [*base.log.order(), *offline, revocation]):
        assert db.store.get("b") is None
        assert db.digest() == writer.digest()


def test_entries_in_the_past_of_the_revocation_stay_valid():
    db = Database(manifest())
    db.grant(A, "writer", B.did)
    before = db.write(B, put("b", 1))
    db.revoke(A, "writer", B.did)
    assert db.log.is_valid(before.cid) and db.store.get("b") == 1


def test_an_honest_entry_on_top_of_an_invalid_one_stays_valid():
    """Descendants are judged on their own: W's write on top of M's voided grant applies; M2's,
    whose authority came only from that grant, does not."""
    m, entries, e = takeover()
    merged = Database(m)
    merged.join(entries)
    honest_on_top = merged.write(W, put("w", "built on the attacker's branch"))
    assert e["own"].cid in merged.log.heads or honest_on_top.cid in merged.log.heads
    for db in replicas(m, [*entries, honest_on_top]):
        assert db.log.is_valid(honest_on_top.cid)
        assert db.store.get("w") == "built on the attacker's branch"
        assert not db.log.is_valid(e["own"].cid)


def test_a_revoked_admins_later_entries_that_only_it_voided_are_judged_again():
    """M (rank 1) revokes writer W; W's next write is kept (the revocation is not certain); when A's
    revocation of M arrives, concurrent with M's, W's write becomes valid on every replica."""
    m = manifest()
    base = Database(m)
    base.grant(A, "admin", M.did)
    honest, bad = fork(base), fork(base)
    revocation = honest.revoke(A, "admin", M.did)
    m_revokes_w = bad.revoke(M, "writer", W.did)
    w_side = unchecked(fork(bad))
    w_write = w_side.write(W, put("w", "still a writer"))
    entries = [*base.log.order(), revocation, m_revokes_w, w_write]
    # Without A's revocation, W's write is kept but void.
    partial = Database(m)
    partial.join([*base.log.order(), m_revokes_w, w_write])
    assert w_write.cid in partial.log and not partial.log.is_valid(w_write.cid)
    partial.join([revocation])
    assert partial.log.is_valid(w_write.cid) and partial.store.get("w") == "still a writer"
    for db in replicas(m, entries):
        assert not db.log.is_valid(m_revokes_w.cid)
        assert db.log.is_valid(w_write.cid)
        assert db.digest() == partial.digest()


def test_mutual_concurrent_revocations_resolve_the_same_everywhere():
    """Two admins, each ranked above the other in its own past, revoke each other concurrently:
    one answer on every replica (the revocation of higher priority stands)."""
    m = manifest(admins=[A.did, B.did])
    base = Database(m)
    left, right = fork(base), fork(base)
    left.grant(A, "admin", M.did)
    left.grant(M, "admin", M2.did)
    r1 = left.revoke(M, "admin", M2.did)
    right.grant(B, "admin", M2.did)
    right.grant(M2, "admin", M.did)
    r2 = right.revoke(M2, "admin", M.did)
    entries = [*left.log.order(), *right.log.order()]
    dbs = replicas(m, entries, seeds=range(8))
    verdicts = {(db.log.is_valid(r1.cid), db.log.is_valid(r2.cid)) for db in dbs}
    assert len(verdicts) == 1 and verdicts.pop() != (True, True)
    assert len({db.digest() for db in dbs}) == 1


def test_self_revocation_does_not_void_its_own_concurrent_entries():
    m = manifest()
    base = Database(m)
    base.grant(A, "admin", M.did)
    one, two = fork(base), fork(base)
    quit_ = one.revoke(M, "admin", M.did)
    meanwhile = two.grant(M, "writer", B.did)
    for db in replicas(m, [*base.log.order(), quit_, meanwhile]):
        assert db.log.is_valid(meanwhile.cid) and db.log.is_valid(quit_.cid)
        assert M.did not in db.log.access.admins and B.did in db.log.access.writers


def test_reopened_log_keeps_its_verdicts():
    from crdt.space import MemorySpace

    m, entries, e = takeover()
    space = MemorySpace()
    db = Database(m, space=space)
    db.join(entries)
    again = Database(m, space=space)
    assert not again.log.is_valid(e["coup"].cid)
    assert again.digest() == db.digest()
    again.write(W, put("x", 1))
    assert A.did in again.log.access.admins


def test_a_log_from_before_the_rule_is_judged_once():
    m, entries, e = takeover()
    db = Database(m)
    db.join(entries)
    # As a log written before the rule: every entry valid, the store folded from all of them.
    log = db.log
    for key, _ in list(log._invalid_t.range()):
        log._invalid_t.delete(key)
    log._bump(b"invalid", -log.invalid_count)
    log._bump(b"judged", -1)
    db.store.clear()
    for entry in log.order():
        db._fold([entry])
    assert not log.judged_current
    assert db.upgrade()
    assert log.judged_current and not log.is_valid(e["coup"].cid)
    fresh = Database(m)
    fresh.join(entries)
    assert db.digest() == fresh.digest()


def test_joined_log_as_old_api_still_rejects_outsiders():
    log = Log(manifest())
    log.append(W, put("k", 1))
    outsider = unchecked(Database(log.manifest))
    outsider.join(log.order())
    forged = outsider.write(B, put("k", 2))
    result = log.join([forged])
    assert [c for c, _ in result.rejected] == [forged.cid]


def test_a_revocation_that_sees_everything_judges_nothing_again():
    """The honest path: a revocation written on (or synced onto) all the heads has every applied
    entry in its past, so it voids none of them: no re-evaluation of the log, no store rebuild."""
    db = Database(manifest())
    db.grant(A, "writer", B.did)
    for i in range(5):
        db.write(B, put("b", i))
    calls = []
    original = db.log.reevaluate
    db.log.reevaluate = lambda: calls.append(1) or original()
    revocation = db.revoke(A, "writer", B.did)
    other = Database(db.manifest)
    other.join(db.log.order()[:-1])
    other.log.reevaluate = lambda: calls.append(1) or original()
    other.join([revocation])
    assert calls == [] and db.store.get("b") == 4 and other.digest() == db.digest()
