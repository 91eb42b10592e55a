import itertools
import random
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt.ipld import CID
from crdt.log import Log
from gridnode.storage import SqliteFile, StorageError
from tests.crdt.dag import history, manifest

SPACES = itertools.count()


@pytest.fixture
def sqlite_file(tmp_path):
    s = SqliteFile(tmp_path / "node.sqlite")
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
def test_sqlite_table_matches_a_dict(sqlite_file, ops, low, high, limit):
    with sqlite_file.transaction():
        table = sqlite_file.space(f"s{next(SPACES)}").table("t")
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


def test_range_survives_writes_during_iteration(sqlite_file):
    with sqlite_file.transaction():
        table = sqlite_file.space("x").table("t")
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


def test_rollback_leaves_nothing(sqlite_file):
    space = sqlite_file.space("db")
    with pytest.raises(RuntimeError), sqlite_file.transaction():
        space.table("t").put(b"k", 1)
        space.table("blocks").put(b"cid", b"data")
        raise RuntimeError("crash in the middle")
    with sqlite_file.transaction():
        assert space.table("t").get(b"k") is None
        assert space.table("blocks").get(b"cid") is None
        space.table("t").put(b"k", 2)
    assert sqlite_file.space("db").table("t").get(b"k") == 2


def test_log_over_sqlite_survives_reopen(tmp_path):
    m = manifest()
    entries = {e.cid: e for log in history(random.Random(9), m, 80) for e in log.order()}
    delivery = list(entries.values())
    random.Random(1).shuffle(delivery)
    path = tmp_path / "node.sqlite"
    first = SqliteFile(path)
    with first.transaction():
        log = Log(m, space=first.space(m.address))
        log.join(delivery[:40])
        heads, pending = log.heads, log.pending_count
    first.close()
    second = SqliteFile(path)
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


# -- what the file refuses: SQLite's failures come out as the node's StorageError ----------------


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path):
    path = tmp_path / "node.sqlite"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(StorageError, match="not a gridnode SQLite file") as raised:
        SqliteFile(path)
    assert not isinstance(raised.value, sqlite3.Error)
    assert str(path) in str(raised.value)


def test_a_file_of_another_schema_is_a_storage_error(tmp_path):
    path = tmp_path / "node.sqlite"
    SqliteFile(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 99 WHERE name = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="schema 99"):
        SqliteFile(path)


def test_a_file_locked_by_another_writer_is_a_storage_error(tmp_path):
    path = tmp_path / "node.sqlite"
    holder, waiter = SqliteFile(path), SqliteFile(path)
    waiter.conn.execute("PRAGMA busy_timeout = 50")  # not the 10 s a node waits
    with holder.transaction():
        holder.set_meta("held", 1)
        with pytest.raises(StorageError, match="locked by another process"), waiter.transaction():
            pass
    with waiter.transaction():
        waiter.set_meta("held", 2)
    assert holder.meta("held") == 2
    holder.close()
    waiter.close()


def test_a_failed_read_is_a_storage_error(tmp_path):
    sqlite_file = SqliteFile(tmp_path / "node.sqlite")
    table = sqlite_file.space("db").table("t")
    sqlite_file.close()
    for read in (
        lambda: sqlite_file.meta("x"),
        lambda: sqlite_file.get_block(b"cid"),
        lambda: sqlite_file.database_rows(),
        lambda: table.get(b"k"),
        lambda: list(table.range()),
        lambda: len(table),
        lambda: table.put(b"k", 1),  # outside a transaction: written at once
    ):
        with pytest.raises(StorageError):
            read()


def test_meta_rows_and_database_rows(sqlite_file):
    assert sqlite_file.meta("a") is None
    with sqlite_file.transaction():
        sqlite_file.set_meta("a", "text")
        sqlite_file.set_meta("b", 7)
    sqlite_file.set_meta("a", b"bytes")
    assert (sqlite_file.meta("a"), sqlite_file.meta("b")) == (b"bytes", 7)
    sqlite_file.delete_meta("a")
    sqlite_file.delete_meta("never there")
    assert sqlite_file.meta("a") is None
    with pytest.raises(RuntimeError), sqlite_file.transaction():
        sqlite_file.set_meta("b", 8)
        sqlite_file.add_database_row("/gridnode/x", b"cid-x", "x", "events")
        raise RuntimeError("crash in the middle")
    assert sqlite_file.meta("b") == 7 and sqlite_file.database_rows() == []
    with sqlite_file.transaction():
        sqlite_file.add_database_row("/gridnode/y", b"cid-y", "b", "keyvalue")
        sqlite_file.add_database_row("/gridnode/x", b"cid-x", "a", "events")
        sqlite_file.add_database_row("/gridnode/x", b"other", "c", "counter")  # kept as it was
    assert sqlite_file.database_rows() == [
        ("/gridnode/x", "a", "events"),
        ("/gridnode/y", "b", "keyvalue"),
    ]
    assert sqlite_file.manifest_cid_of("/gridnode/x") == b"cid-x"
    assert sqlite_file.manifest_cid_of("/gridnode/z") is None


def test_databases_rows_without_and_with_the_old_followed_column(tmp_path):
    new = SqliteFile(tmp_path / "new.sqlite")
    columns = [row[1] for row in new.conn.execute("PRAGMA table_info(databases)")]
    assert columns == ["address", "manifest_cid", "name", "store"]
    new.close()
    # A file made before the column was dropped keeps it; rows are written and read as ever.
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE databases (address TEXT PRIMARY KEY, manifest_cid BLOB NOT NULL, "
        "name TEXT NOT NULL, store TEXT NOT NULL, followed INTEGER NOT NULL DEFAULT 1) "
        "WITHOUT ROWID"
    )
    conn.execute("INSERT INTO databases VALUES ('/gridnode/a', x'01', 'a', 'events', 1)")
    conn.commit()
    conn.close()
    old = SqliteFile(path)
    old.add_database_row("/gridnode/b", b"\x02", "b", "set")
    assert old.database_rows() == [("/gridnode/a", "a", "events"), ("/gridnode/b", "b", "set")]
    assert old.manifest_cid_of("/gridnode/b") == b"\x02"
    old.close()
