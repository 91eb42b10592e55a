"""The one write path (gridnode.ops.write) and the store-level meta op."""

import pytest

from crdt.errors import InvalidOperation
from gridnode import ops
from gridnode.repo import Repo

SCHEMA = {"version": 1, "table": "public.items", "key": "id", "columns": [], "excluded": []}


@pytest.mark.parametrize("store", ["documents", "keyvalue"])
def test_write_takes_the_meta_op_on_documents_and_keyvalue(tmp_path, store):
    meta = {"op": "meta", "key": "postgres.table", "value": SCHEMA}
    with Repo(tmp_path) as repo:
        db = repo.create_database("items", store)
        (entry,) = ops.write(db, [meta])
        assert entry.payload == meta and entry.author == repo.did
        assert db.store.meta("postgres.table") == SCHEMA and len(db.store) == 0
        address, digest = db.address, db.digest()
    # Kept in the node's SQLite file like the rest of the state.
    with Repo(tmp_path) as repo:
        db = repo.database(address)
        assert db.store.meta("postgres.table") == SCHEMA and db.digest() == digest


def test_write_refuses_a_malformed_meta_op_and_one_on_other_store_types(tmp_path):
    with Repo(tmp_path) as repo:
        docs = repo.create_database("items", "documents")
        good = {"op": "put", "doc": {"_id": 1}}
        with pytest.raises(InvalidOperation, match=r"ops\[1\]: a meta op") as caught:
            ops.write(docs, [good, {"op": "meta", "key": "", "value": 1}])
        assert caught.value.index == 1
        assert len(docs) == 0
        events = repo.create_database("log", "events")
        with pytest.raises(InvalidOperation, match=r"ops\[0\]"):
            ops.write(events, [{"op": "meta", "key": "k", "value": 1}])
        assert len(events) == 0
