"""Property: revocation that holds (docs/spec.md §8) is a function of the set of entries. Random
histories of grants, revocations and writes among several keys, written concurrently on replicas
that check nothing (so invalid entries are in them too), then delivered to fresh replicas in random
orders and batches: every one reaches the same valid set, access state and store state, and a
rebuild from scratch gives the state the incremental joins gave."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.database import Database
from crdt.identity import Keypair
from crdt.manifest import create_manifest

KEYS = [Keypair.from_seed(bytes([60 + i]) * 32) for i in range(5)]
MANIFEST = create_manifest(
    "revocation-props", "keyvalue", admins=[KEYS[0].did], writers=[KEYS[1].did]
)


def history(seed: int, steps: int) -> list:
    rng = random.Random(seed)
    writers = [Database(MANIFEST) for _ in range(3)]
    for db in writers:
        db.log._authorise = lambda *a: None  # anything may be signed; validity is judged on join
    for step in range(steps):
        db = rng.choice(writers)
        action = rng.random()
        if action < 0.2:
            # Catch up with part of another replica (the oldest entries first, as a sync does).
            other = rng.choice(writers).log.order()
            db.join(other[: rng.randrange(len(other) + 1)])
            continue
        access = db.log.access
        if action < 0.6:
            # Mostly an admin of this replica's view, sometimes a revoked one or anyone.
            pool = [k for k in KEYS if k.did in access.admins]
        else:
            pool = [k for k in KEYS if access.may_write(k.did)]
        author = rng.choice(pool if pool and rng.random() < 0.8 else KEYS)
        if action < 0.6:
            payload = {
                "op": rng.choice(["grant", "revoke", "revoke"]),
                "role": rng.choice(["writer", "admin"]),
                "did": rng.choice(KEYS).did,
            }
        else:
            payload = {"op": "put", "key": f"k{rng.randrange(3)}", "value": step}
        db.write(author, payload)
    everything = {}
    for db in writers:
        everything.update({e.cid: e for e in db.log.order()})
    return list(everything.values())


def deliver(entries: list, rng: random.Random) -> Database:
    db = Database(MANIFEST)
    shuffled = list(entries)
    rng.shuffle(shuffled)
    batches = rng.randrange(1, 5)
    cuts = sorted(rng.randrange(len(shuffled) + 1) for _ in range(batches - 1))
    for low, high in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
        db.join(shuffled[low:high])
    return db


def verdicts(db: Database) -> tuple:
    log = db.log
    return (
        log.heads,
        tuple(e.cid for e in log.order()),
        frozenset(c for c in log.order_cids() if log.is_valid(c)),
        tuple(sorted(log.access.describe().items())),
        db.store.digest(),
        db.digest(),
    )


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(5, 45))
def test_every_delivery_order_reaches_the_same_state(seed, steps):
    entries = history(seed, steps)
    rng = random.Random(seed ^ 0x5EED)
    dbs = [deliver(entries, rng) for _ in range(4)]
    first = verdicts(dbs[0])
    for db in dbs[1:]:
        assert verdicts(db) == first
    # Rebuilding the store from scratch gives what the incremental joins gave.
    db = dbs[-1]
    before = db.store.digest()
    db.rebuild()
    assert db.store.digest() == before == db.store.recompute_digest()
    # And judging every entry again changes nothing.
    assert not db.log.reevaluate()


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_one_entry_at_a_time_equals_all_at_once(seed):
    entries = history(seed, 35)
    rng = random.Random(seed)
    one_by_one = Database(MANIFEST)
    shuffled = list(entries)
    rng.shuffle(shuffled)
    for entry in shuffled:
        one_by_one.join([entry])
    at_once = Database(MANIFEST)
    at_once.join(sorted(entries, key=lambda e: e.clock))
    assert verdicts(one_by_one) == verdicts(at_once)


def test_histories_exercise_the_rule():
    """The generator does make histories where the rule acts (not only trivially valid ones)."""
    voided = revoked_writes = 0
    for seed in range(40):
        entries = history(seed, 40)
        db = deliver(entries, random.Random(seed))
        invalid = [e for e in db.log.order() if not db.log.is_valid(e.cid)]
        voided += len(invalid)
        revoked_writes += sum(
            1 for e in invalid if "concurrent" in (db.log.invalidity(e.cid) or "")
        )
    assert voided > 20 and revoked_writes > 0
