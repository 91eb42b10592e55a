import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt.ipld import CID
from crdt.log import Log
from gridnode.storage import SqliteStore
from tests.crdt.dag import history, manifest

SPACES = itertools.count()


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "node.sqlite")
    yield s
    assert s.integrity_check() == "ok"
    s.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.binary(max_size=3), st.integers(-5, 5)), max_size=80),
    low=st.binary(max_size=2),
    high=st.binary(max_size=2),
    limit=st.none() | st.integers(0, 300),
)
def test_sqlite_table_matches_a_dict(store, ops, low, high, limit):
    with store.transaction():
        table = store.space(f"s{next(SPACES)}").table("t")
        model = {}
        for put, key, n in ops:
            value = n if n >= 0 else {"n": n, "b": key}
            if put:
                table.put(key, value)
                model[key] = value
            else:
                assert table.delete(key) == (key in model)
                model.pop(key, None)
        expected = sorted((k, v) for k, v in model.items() if low <= k < high)
        assert list(table.range(low, high)) == expected
        assert list(table.range(low, high, reverse=True)) == expected[::-1]
        if limit is not None:
            assert list(table.range(low, high, limit=limit)) == expected[:limit]
        assert len(table) == len(model)
        assert all(table.get(k) == v for k, v in model.items())


def test_range_survives_writes_during_iteration(store):
    with store.transaction():
        table = store.space("x").table("t")
        for i in range(1000):
            table.put(i.to_bytes(2, "big"), i)
        seen = []
        for key, value in table.range():
            seen.append(value)
            table.delete(key)
            table.put(b"\xff" + key, value)  # later keys of the same table, written mid-read
            if len(seen) > 3000:
                break
        assert seen[:1000] == list(range(1000))


def test_rollback_leaves_nothing(store):
    space = store.space("db")
    with pytest.raises(RuntimeError), store.transaction():
        space.table("t").put(b"k", 1)
        space.table("blocks").put(b"cid", b"data")
        raise RuntimeError("crash in the middle")
    with store.transaction():
        assert space.table("t").get(b"k") is None
        assert space.table("blocks").get(b"cid") is None
        space.table("t").put(b"k", 2)
    assert store.space("db").table("t").get(b"k") == 2


def test_log_over_sqlite_survives_reopen(tmp_path):
    m = manifest()
    entries = {e.cid: e for log in history(random.Random(9), m, 80) for e in log.order()}
    delivery = list(entries.values())
    random.Random(1).shuffle(delivery)
    path = tmp_path / "node.sqlite"
    first = SqliteStore(path)
    with first.transaction():
        log = Log(m, space=first.space(m.address))
        log.join(delivery[:40])
        heads, pending = log.heads, log.pending_count
    first.close()
    second = SqliteStore(path)
    with second.transaction():
        log = Log(m, space=second.space(m.address))
        assert log.heads == heads and log.pending_count == pending
        log.join(delivery[40:])
    reference = Log(m)
    reference.join(delivery)
    assert log.heads == reference.heads
    assert list(log.order_cids()) == list(reference.order_cids())
    assert isinstance(log.get(log.heads[0]).cid, CID)
    assert second.integrity_check() == "ok"
    second.close()
