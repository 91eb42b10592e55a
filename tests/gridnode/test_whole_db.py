"""Whole-database operations on a data dir: the state digest kept as entries apply (read, not
computed, at a restart), and the passes over a whole database (CAR export, verify) streamed."""

from __future__ import annotations

import pytest

from gridnode.repo import Repo

WRITES = {
    "events": lambda i: {"op": "add", "value": {"n": i}},
    "keyvalue": lambda i: {"op": "put", "key": f"k{i % 7}", "value": i},
    "documents": lambda i: {"op": "put", "doc": {"_id": i % 5, "n": i}},
    "counter": lambda i: {"op": "inc", "by": i - 3},
    "set": lambda i: {"op": "add", "value": i % 4},
}


@pytest.mark.parametrize("store", sorted(WRITES))
def test_the_digest_after_a_restart_is_the_digest_before(tmp_path, store):
    with Repo(tmp_path) as repo:
        db = repo.create_database("d", store)
        for first in range(0, 30, 10):
            db.write_many([WRITES[store](i) for i in range(first, first + 10)])
        address, digest = db.address, db.digest()
        assert db.store.digest() == db.store.recompute_digest()
    with Repo(tmp_path) as repo:
        db = repo.database(address)
        assert db.digest() == digest
        assert db.store.digest() == db.store.recompute_digest()


@pytest.mark.parametrize("store", sorted(WRITES))
def test_a_store_written_before_the_state_sum_gets_it_once_when_opened(tmp_path, store):
    with Repo(tmp_path) as repo:
        db = repo.create_database("d", store)
        db.write_many([WRITES[store](i) for i in range(12)])
        address, digest = db.address, db.digest()
        # What an older gridnode left in the file: the store's rows, no state sum.
        with repo.sql.transaction():
            repo.sql.space(address).table(f"{store}.meta").delete(b"statesum")
    with Repo(tmp_path) as repo:
        db = repo.database(address)
        assert db.store.sum_indexed
        assert db.digest() == digest
        db.write(WRITES[store](99))
        assert db.store.digest() == db.store.recompute_digest()
