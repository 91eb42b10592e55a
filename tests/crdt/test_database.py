"""Whole databases (log + access + store): replicas converge to identical digests."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.database import Database
from crdt.errors import Unauthorized
from crdt.manifest import create_manifest
from tests.crdt.dag import ADMIN, OUTSIDER, WRITERS

STORE_TYPES = ["events", "keyvalue", "documents", "counter", "set"]
OPTIONS = {"documents": {"indexBy": "_id", "indexes": ["n"]}}


def random_op(rng, db):
    kind = db.manifest.store
    value = rng.choice([rng.randrange(100), f"v{rng.randrange(5)}", None, [1, "x"], {"a": b"\x00"}])
    if kind == "events":
        return {"op": "add", "value": value}
    if kind == "keyvalue":
        key = f"k{rng.randrange(4)}"
        return (
            {"op": "del", "key": key}
            if rng.random() < 0.2
            else {"op": "put", "key": key, "value": value}
        )
    if kind == "documents":
        doc_id = f"d{rng.randrange(4)}"
        if rng.random() < 0.2:
            return {"op": "del", "id": doc_id}
        return {"op": "put", "doc": {"_id": doc_id, "n": rng.randrange(10), "v": value}}
    if kind == "counter":
        return {"op": "inc", "by": rng.randrange(-5, 6)}
    element = f"e{rng.randrange(4)}"
    if rng.random() < 0.3:
        return {"op": "remove", "value": element, "tags": db.store.tags_for(element)}
    return {"op": "add", "value": element}


def simulate(kind, seed, steps):
    rng = random.Random(seed)
    manifest = create_manifest(
        kind,
        kind,
        admins=[ADMIN.did],
        writers=[w.did for w in WRITERS[:2]],
        options=OPTIONS.get(kind, {}),
    )
    replicas = [Database(manifest) for _ in range(3)]
    for _ in range(steps):
        i = rng.randrange(3)
        db = replicas[i]
        roll = rng.random()
        if roll < 0.2:
            db.join(rng.choice(replicas).log.order())
        elif roll < 0.25:
            db.grant(ADMIN, "writer", WRITERS[2].did)
        elif roll < 0.3:
            db.revoke(ADMIN, "writer", WRITERS[1].did)
        else:
            key = [ADMIN, *WRITERS][rng.randrange(4)]
            try:
                db.write(key, random_op(rng, db))
            except Unauthorized:
                assert not db.log.access.may_write(key.did)
    return manifest, replicas


@pytest.mark.parametrize("kind", STORE_TYPES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(5, 60))
def test_replicas_converge(kind, seed, steps):
    manifest, replicas = simulate(kind, seed, steps)
    everything = {e.cid: e for db in replicas for e in db.log.order()}
    rng = random.Random(seed)
    digests = set()
    states = []
    for db in [*replicas, Database(manifest), Database(manifest)]:
        delivery = list(everything.values()) * 2
        rng.shuffle(delivery)
        for start in range(0, len(delivery), 7):
            db.join(delivery[start : start + 7])
        assert db.log.pending_count == 0
        digests.add(db.digest())
        states.append(db.store.state())
    assert len(digests) == 1
    assert all(state == states[0] for state in states)


def test_outsider_writes_never_change_state():
    manifest = create_manifest("kv", "keyvalue", writers=[WRITERS[0].did])
    honest = Database(manifest)
    honest.write(WRITERS[0], {"op": "put", "key": "a", "value": 1})
    before = honest.digest()
    attacker = Database(manifest)
    attacker.join(honest.log.order())
    attacker.log._authorise = lambda *a: None
    forged = attacker.write(OUTSIDER, {"op": "put", "key": "a", "value": 666})
    result = honest.join([forged])
    assert result.rejected and honest.digest() == before
    assert honest.store.get("a") == 1


def test_malformed_op_is_kept_in_the_log_but_ignored_by_the_store():
    manifest = create_manifest("kv", "keyvalue", writers=[WRITERS[0].did])
    writer = Database(manifest)
    writer.write(WRITERS[0], {"op": "put", "key": "a", "value": 1})
    # A writer bypassing the local check signs a malformed op: it is valid in the log, a no-op.
    entry = writer.log.append(WRITERS[0], {"op": "put", "key": 5})
    replica = Database(manifest)
    replica.join(writer.log.order())
    assert entry.cid in replica.log
    assert [e.cid for e in replica.ignored] == [entry.cid]
    assert replica.store.get("a") == 1
