"""The log keeps everything in its space: a new Log over the same space continues exactly."""

import random

from crdt.entry import create_entry
from crdt.log import Log
from tests.crdt.dag import ADMIN, WRITERS, history, manifest
from tests.crdt.spaces import EncodedSpace


def test_reopened_log_continues():
    m = manifest()
    rng = random.Random(5)
    source = history(rng, m, 120)
    entries = {e.cid: e for log in source for e in log.order()}
    delivery = list(entries.values())
    rng.shuffle(delivery)
    space = EncodedSpace()
    first = Log(m, space=space)
    first.join(delivery[: len(delivery) // 2])
    pending_before = first.pending_count
    second = Log(m, space=space)  # a restart: nothing but the space carries over
    assert second.pending_count == pending_before
    assert second.heads == first.heads and len(second) == len(first)
    second.join(delivery[len(delivery) // 2 :])
    reference = Log(m)
    reference.join(delivery)
    assert second.heads == reference.heads
    assert list(second.order_cids()) == list(reference.order_cids())
    assert second.pending_count == 0 and not second.missing


def test_reopened_log_keeps_access_rejections_and_equivocations():
    m = manifest(writers=[WRITERS[0].did])
    space = EncodedSpace()
    log = Log(m, space=space)
    root = log.append(WRITERS[0], "root")
    log.append(ADMIN, {"op": "grant", "role": "writer", "did": WRITERS[1].did})
    log.append(WRITERS[1], "granted")
    log.append(ADMIN, {"op": "revoke", "role": "writer", "did": WRITERS[0].did})
    fork_a = create_entry(WRITERS[2], db=m.cid, clock=2, next=[root.cid], payload="a")
    log.join([fork_a])  # WRITERS[2] may not write: rejected
    equivocal = [create_entry(ADMIN, db=m.cid, clock=2, next=[root.cid], payload=p) for p in "xy"]
    log.join(equivocal)
    reopened = Log(m, space=space)
    assert reopened.access.describe() == log.access.describe()
    assert WRITERS[0].did not in reopened.access.writers
    assert WRITERS[1].did in reopened.access.writers
    assert "may not write" in reopened.rejection(fork_a.cid)
    assert reopened.equivocations == log.equivocations and reopened.equivocations
    assert reopened.join([fork_a]).duplicates == 1
    reopened.append(WRITERS[1], "after restart")
    try:
        reopened.append(WRITERS[0], "revoked")
        raise AssertionError("revoked writer wrote after a restart")
    except Exception as exc:
        assert "may not write" in str(exc)


def test_rejected_memory_is_bounded():
    m = manifest()
    log = Log(m, max_rejected=5)
    foreign = manifest(store="events")
    for i in range(12):
        log.join([create_entry(WRITERS[0], db=foreign.cid, clock=1, payload=i)])
    assert log._count(b"rejected") == 5
    assert len(log._rejected_t) == 5
