"""LogItems (bucketed range sums over a log) against a brute-force sum over the same items."""

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.log import Log
from crdt.rangesums import TOP, LogItems, fingerprint_of, item_hash
from crdt.space import MemorySpace
from tests.crdt.dag import WRITERS, history, manifest

u64 = struct.Struct(">Q").pack


def brute(items, low, high):
    inside = [i for i in items if low <= i < high]
    return len(inside), sum(item_hash(i) for i in inside) % (1 << 256)


def merged(seed: int, steps: int) -> Log:
    """A log holding several replicas' concurrent histories: clocks with many entries."""
    logs = history(random.Random(seed), manifest(), steps)
    log = Log(manifest())
    for other in logs:
        log.join(other.order())
    return log


def bounds_for(rng: random.Random, items: list[bytes], top: int) -> bytes:
    kind = rng.randrange(5)
    if kind == 0 or not items:
        return u64(rng.randrange(0, top + 40))  # a clock boundary
    if kind == 1:
        return rng.choice(items)  # exactly an item
    if kind == 2:
        return rng.choice(items)[
            : rng.randrange(0, 44)
        ]  # a prefix of one, perhaps shorter than a clock
    if kind == 3:
        return rng.choice(items) + b"\x00"  # just above one
    return TOP if rng.random() < 0.5 else b""


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(0, 120))
def test_aggregates_equal_brute_force(seed, steps):
    log = merged(seed, steps)
    view = LogItems(log)
    items = view.items(b"", TOP)
    assert len(items) == len(log)
    rng = random.Random(seed)
    for _ in range(60):
        a, b = bounds_for(rng, items, log.clock), bounds_for(rng, items, log.clock)
        low, high = min(a, b), max(a, b)
        assert view.aggregate(low, high) == brute(items, low, high), (low.hex(), high.hex())
        assert view.fingerprint(low, high) == fingerprint_of(*brute(items, low, high))
        assert view.items(low, high) == [i for i in items if low <= i < high]


def test_long_linear_log_uses_every_level():
    # 5000 entries: buckets of 16, 256 and 4096 clocks all take part.
    log = Log(manifest())
    for i in range(5000):
        log.append(WRITERS[0], {"op": "put", "key": "k", "value": i})
    view = LogItems(log)
    items = view.items(b"", TOP)
    rng = random.Random(7)
    for low, high in [(b"", TOP), (u64(1), u64(4097)), (u64(4096), TOP), (u64(17), u64(4999))]:
        assert view.aggregate(low, high) == brute(items, low, high)
    for _ in range(200):
        a, b = bounds_for(rng, items, log.clock), bounds_for(rng, items, log.clock)
        low, high = min(a, b), max(a, b)
        assert view.aggregate(low, high) == brute(items, low, high)


@pytest.mark.parametrize("steps", [0, 30, 200])
def test_split_cuts_inside_and_ascending(steps):
    log = merged(steps, steps)
    view = LogItems(log)
    items = view.items(b"", TOP)
    rng = random.Random(steps)
    for _ in range(100):
        a, b = bounds_for(rng, items, log.clock), bounds_for(rng, items, log.clock)
        low, high = min(a, b), max(a, b)
        cuts = view.split(low, high, 16)
        assert len(cuts) <= 15
        assert all(low < c < high for c in cuts)
        assert cuts == sorted(set(cuts))
        if view.count(low, high) > 1:
            # A range holding two or more items can always be cut (else reconciliation stalls).
            assert cuts


def test_rebuild_matches_incremental():
    log = merged(3, 150)
    before = {k: v for k, v in log.space.table("log.sums").range()}
    log.rebuild_sums()
    after = {k: v for k, v in log.space.table("log.sums").range()}
    assert before == after and before
    assert log.sums_complete


def test_an_old_log_without_sums_is_detected_and_rebuilt():
    space = MemorySpace()
    log = Log(manifest(), space=space)
    for i in range(40):
        log.append(WRITERS[0], {"op": "put", "key": "k", "value": i})
    # What a log written before log.sums existed looks like.
    for key in [k for k, _ in space.table("log.sums").range()]:
        space.table("log.sums").delete(key)
    space.table("log.info").delete(b"sums")
    reopened = Log(manifest(), space=space)
    assert not reopened.sums_complete
    reopened.rebuild_sums()
    assert reopened.sums_complete
    view = LogItems(reopened)
    items = view.items(b"", TOP)
    assert view.aggregate(b"", TOP) == brute(items, b"", TOP)
