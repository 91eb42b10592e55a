"""Replicas interleaving writes, syncs, grants and revocations (hypothesis state machine)."""

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crdt.errors import Unauthorized
from crdt.log import Log
from crdt.manifest import create_manifest
from tests.crdt.dag import ADMIN, WRITERS

KEYS = [ADMIN, *WRITERS]
MANIFEST = create_manifest("stateful", "keyvalue", admins=[ADMIN.did], writers=[WRITERS[0].did])


class Replicas(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.logs = [Log(MANIFEST) for _ in range(3)]
        self.written = 0
        self.refused = 0

    @rule(replica=st.integers(0, 2), author=st.integers(0, 3), value=st.integers(-(2**63), 2**63))
    def write(self, replica, author, value):
        log = self.logs[replica]
        key = KEYS[author]
        allowed = log.access.may_write(key.did)
        try:
            entry = log.append(key, {"op": "put", "key": "k", "value": value})
        except Unauthorized:
            assert not allowed
            self.refused += 1
            return
        assert allowed and entry.cid in log and log.heads == (entry.cid,)
        self.written += 1

    @rule(
        replica=st.integers(0, 2),
        grant=st.booleans(),
        role=st.sampled_from(["writer", "admin"]),
        whom=st.integers(1, 3),
        by=st.integers(0, 3),
    )
    def administer(self, replica, grant, role, whom, by):
        log = self.logs[replica]
        payload = {"op": "grant" if grant else "revoke", "role": role, "did": KEYS[whom].did}
        access = log.access
        # The rank rule (docs/spec.md §8): an admin revokes only the roles of keys ranked below
        # it, or its own.
        allowed = access.may_administer(KEYS[by].did) and (
            grant or by == whom or access.rank(KEYS[by].did) < access.rank(KEYS[whom].did)
        )
        try:
            log.append(KEYS[by], payload)
        except Unauthorized:
            assert not allowed
            return
        assert allowed
        holds = KEYS[whom].did in (log.access.admins if role == "admin" else log.access.writers)
        assert holds == grant

    @rule(source=st.integers(0, 2), dest=st.integers(0, 2), seed=st.integers(0, 1000))
    def sync(self, source, dest, seed):
        entries = self.logs[source].order()
        random.Random(seed).shuffle(entries)
        result = self.logs[dest].join(entries)
        # Everything a correct replica applied is valid everywhere.
        assert not result.rejected
        assert self.logs[dest].pending_count == 0

    @precondition(lambda self: self.written > 0)
    @rule(seed=st.integers(0, 1000))
    def full_sync_converges(self, seed):
        everything = {e.cid: e for log in self.logs for e in log.order()}
        for log in self.logs:
            delivery = list(everything.values())
            random.Random(seed).shuffle(delivery)
            log.join(delivery)
        first = self.logs[0]
        for other in self.logs[1:]:
            assert other.heads == first.heads
            assert [e.cid for e in other.order()] == [e.cid for e in first.order()]
            assert other.access.describe() == first.access.describe()

    @invariant()
    def replay_gives_the_same_log(self):
        for log in self.logs:
            fresh = Log(MANIFEST)
            entries = log.order()
            random.Random(len(entries)).shuffle(entries)
            fresh.join(entries)
            assert fresh.heads == log.heads
            assert fresh.access.describe() == log.access.describe()


TestReplicas = Replicas.TestCase
TestReplicas.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)


SET_MANIFEST = create_manifest("stateful-set", "set", admins=[ADMIN.did], writers=[WRITERS[0].did])


class SetReplicas(RuleBasedStateMachine):
    """The same, over whole databases with an OR-set: state digests must agree, not only logs."""

    def __init__(self):
        super().__init__()
        from crdt.database import Database

        self.make = lambda: Database(SET_MANIFEST)
        self.dbs = [self.make() for _ in range(3)]

    @rule(
        replica=st.integers(0, 2),
        author=st.integers(0, 3),
        element=st.integers(0, 3),
        remove=st.booleans(),
    )
    def write(self, replica, author, element, remove):
        db = self.dbs[replica]
        if remove:
            payload = {"op": "remove", "value": element, "tags": db.store.tags_for(element)}
        else:
            payload = {"op": "add", "value": element}
        try:
            db.write(KEYS[author], payload)
        except Unauthorized:
            assert not db.log.access.may_write(KEYS[author].did)
            return
        assert (element in db.store) != remove

    @rule(replica=st.integers(0, 2), grant=st.booleans(), whom=st.integers(1, 3))
    def administer(self, replica, grant, whom):
        db = self.dbs[replica]
        (db.grant if grant else db.revoke)(ADMIN, "writer", KEYS[whom].did)

    @rule(source=st.integers(0, 2), dest=st.integers(0, 2), seed=st.integers(0, 1000))
    def sync(self, source, dest, seed):
        entries = self.dbs[source].log.order()
        random.Random(seed).shuffle(entries)
        assert not self.dbs[dest].join(entries).rejected

    @invariant()
    def replay_gives_the_same_digest(self):
        for db in self.dbs:
            fresh = self.make()
            entries = db.log.order()
            random.Random(len(entries)).shuffle(entries)
            fresh.join(entries)
            assert fresh.digest() == db.digest()
            assert fresh.store.state() == db.store.state()

    @rule()
    def full_sync_converges(self):
        everything = [e for db in self.dbs for e in db.log.order()]
        for db in self.dbs:
            db.join(everything)
        assert len({db.digest() for db in self.dbs}) == 1


TestSetReplicas = SetReplicas.TestCase
TestSetReplicas.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
