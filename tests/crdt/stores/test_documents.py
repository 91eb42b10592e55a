"""The documents store: LWW documents by id, and index queries that agree with a scan."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import InvalidManifest, InvalidOperation, InvalidQuery, UnknownIndex
from crdt.stores import DocumentsStore, open_store, value_key
from tests.crdt.spaces import CountingSpace
from tests.crdt.stores.causal import (
    OPTIONS,
    WRITERS,
    causal_order,
    chain,
    document,
    entry,
    random_history,
    total_order,
    unsigned_entry,
)

MISSING = object()


def put(doc):
    return {"op": "put", "doc": doc}


def delete(doc_id):
    return {"op": "del", "id": doc_id}


def _fold(entries, options=None, space=None):
    store = DocumentsStore(OPTIONS["documents"] if options is None else options, space)
    for e in entries:
        store.apply(e)
    return store


def _field(doc, path):
    value = doc
    for part in path.split("."):
        if type(value) is not dict or part not in value:
            return MISSING
        value = value[part]
    return value


def scan(
    docs,
    index_by,
    field,
    eq=MISSING,
    gt=MISSING,
    gte=MISSING,
    lt=MISSING,
    lte=MISSING,
    limit=None,
    reverse=False,
):
    """What a query must return, by brute force over the visible documents."""
    hits = []
    for doc in docs:
        v = _field(doc, field)
        if v is MISSING:
            continue
        k = value_key(v)
        if eq is not MISSING and k != value_key(eq):
            continue
        if gt is not MISSING and not k > value_key(gt):
            continue
        if gte is not MISSING and not k >= value_key(gte):
            continue
        if lt is not MISSING and not k < value_key(lt):
            continue
        if lte is not MISSING and not k <= value_key(lte):
            continue
        hits.append((k, value_key(doc[index_by]), doc))
    hits.sort(key=lambda h: (h[0], h[1]), reverse=reverse)
    return [doc for _, _, doc in hits][:limit]


def test_put_get_overwrite_delete_and_the_index_follows(make_space):
    store = DocumentsStore({"indexes": ["age", "address.city"]}, make_space())
    a1 = entry(put({"_id": "ann", "age": 30, "address": {"city": "Oslo"}}))
    b = entry(put({"_id": "bob", "age": 25}), [a1])
    a2 = entry(put({"_id": "ann", "age": 41, "address": {"city": "Rome"}}), [b])
    for e in (a1, b):
        store.apply(e)
    assert [d["_id"] for d in store.query("age", gte=20)] == ["bob", "ann"]
    assert [d["_id"] for d in store.query("address.city", eq="Oslo")] == ["ann"]
    store.apply(a2)
    assert store.get("ann")["age"] == 41 and len(store) == 2
    assert store.query("age", eq=30) == [] and store.query("address.city", eq="Oslo") == []
    assert [d["_id"] for d in store.query("age", gt=40)] == ["ann"]
    gone = entry(delete("ann"), [a2])
    store.apply(gone)
    assert store.get("ann") is None and "ann" not in store and "bob" in store and len(store) == 1
    assert store.query("age", gt=0) == [{"_id": "bob", "age": 25}]
    assert store.query("address.city") == []
    assert store.winner("ann") == (gone.clock, gone.cid)
    # The id field is always indexed.
    assert store.indexes == ("_id", "age", "address.city")
    assert store.query("_id", gte="b") == [{"_id": "bob", "age": 25}]
    assert store.state() == [
        {"id": "ann", "clock": gone.clock, "entry": gone.cid},
        {"id": "bob", "clock": b.clock, "entry": b.cid, "doc": {"_id": "bob", "age": 25}},
    ]


def test_ids_may_be_integers_or_strings_and_sort_numbers_first(make_space):
    store = _fold(chain([put({"_id": i}) for i in ["b", 10, "10", 2, -1, "a"]]), None, make_space())
    assert list(store.ids()) == [-1, 2, 10, "10", "a", "b"]
    assert [d["_id"] for d in store.docs()] == [-1, 2, 10, "10", "a", "b"]
    assert 10 in store and "10" in store and 10.0 not in store and True not in store
    assert store.get(1.5) is None


def test_a_custom_id_field(make_space):
    store = open_store("documents", {"indexBy": "key", "indexes": ["n"]}, make_space())
    assert store.apply(entry(put({"key": "k1", "n": 1, "_id": "ignored"})))
    assert not store.apply(entry(put({"_id": "no key"})))
    DocumentsStore.check_op(put({"key": 5}), {"indexBy": "key"})
    with pytest.raises(InvalidOperation):
        DocumentsStore.check_op(put({"_id": 5}), {"indexBy": "key"})
    assert store.get("k1")["n"] == 1 and store.query("key", eq="k1")[0]["n"] == 1


def test_an_id_field_with_a_dot_is_a_top_level_field(make_space):
    store = DocumentsStore({"indexBy": "meta.id", "indexes": ["meta.n"]}, make_space())
    assert store.apply(entry(put({"meta.id": "x", "meta": {"id": "not this", "n": 4}})))
    assert list(store.ids()) == ["x"] and store.query("meta.id", eq="x")[0]["meta"]["n"] == 4
    assert [d["meta.id"] for d in store.query("meta.n", gt=3)] == ["x"]


def test_bad_options_and_queries_are_refused():
    for options in (
        {"indexBy": ""},
        {"indexBy": 3},
        {"indexes": "n"},
        {"indexes": [1]},
        {"indexes": [""]},
    ):
        with pytest.raises(InvalidManifest):
            DocumentsStore(options)
    store = _fold([entry(put({"_id": 1, "n": 1}))])
    with pytest.raises(UnknownIndex, match="no index on 'age'"):
        store.query("age", eq=1)
    for kwargs in ({"eq": 1, "gt": 0}, {"gt": 0, "gte": 0}, {"lt": 0, "lte": 0}, {"limit": -1}):
        with pytest.raises(InvalidQuery):
            store.query("n", **kwargs)
    with pytest.raises(InvalidQuery):
        store.query("n", eq=object())


def test_queries_compare_numbers_across_int_and_float_and_kinds_in_a_fixed_order(make_space):
    docs = [{"_id": i, "v": v} for i, v in enumerate([1, 1.0, 1.5, "1", None, True, [1], b"1"])]
    store = _fold(chain([put(d) for d in docs]), {"indexes": ["v"]}, make_space())
    assert [d["_id"] for d in store.query("v", eq=1)] == [0, 1]
    assert [d["_id"] for d in store.query("v", gt=1)] == [2, 3, 7, 6]
    assert [d["_id"] for d in store.query("v", eq=None)] == [4]
    assert [d["_id"] for d in store.query("v")] == [4, 5, 0, 1, 2, 3, 7, 6]
    assert [d["_id"] for d in store.query("v", reverse=True, limit=2)] == [6, 7]


def test_filter_scans_in_id_order(make_space):
    store = _fold(chain([put({"_id": i, "n": i % 3}) for i in range(10)]), {}, make_space())
    assert [d["_id"] for d in store.filter(lambda d: d["n"] == 1)] == [1, 4, 7]
    assert [d["_id"] for d in store.filter(lambda d: d["n"] == 1, limit=2)] == [1, 4]
    assert store.filter(lambda d: True, limit=0) == []


def test_a_query_reads_only_the_documents_it_returns():
    space = CountingSpace()
    store = DocumentsStore({"indexes": ["n"]}, space)
    for i in range(20_000):
        store.apply(unsigned_entry(put({"_id": i, "n": (i * 7919) % 20_000}), 1, i))
    space.reset()
    assert [d["n"] for d in store.query("n", gte=100, limit=10)] == list(range(100, 110))
    assert space.reads == 10 + 10  # ten index rows, ten documents
    space.reset()
    assert [d["n"] for d in store.query("n", eq=5)] == [5]
    assert space.reads == 2
    space.reset()
    by_n = {(i * 7919) % 20_000: i for i in range(20_000)}
    assert list(store.query_ids("n", lt=3, reverse=True)) == [by_n[2], by_n[1], by_n[0]]
    assert space.reads == 3  # ids come from the index alone
    space.reset()
    assert [d["_id"] for d in store.query("_id", gt=100, limit=5)] == [101, 102, 103, 104, 105]
    assert space.reads == 5  # the id field's index is the documents table itself
    space.reset()
    assert store.get(7)["_id"] == 7 and 8 in store and len(store) == 20_000
    assert space.reads == 3 and space.counts["len"] == 0
    space.reset()
    store.filter(lambda d: False)
    assert space.reads == 20_000


fields = st.sampled_from(["_id", "n", "tag", "a.b"])
probe = st.sampled_from(
    [*range(-3, 4), 0.5, 1.0, 2**63, "", "0", "3", "a", "zz", None, True, False, [1], {}, b""]
)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 40), data=st.data())
def test_index_queries_equal_a_scan_of_the_visible_documents(seed, size, data, make_space):
    rng = random.Random(seed)
    entries = random_history(rng, "documents", size)
    store = _fold(causal_order(rng, entries), None, make_space())
    # The visible documents are the fold in total order.
    model: dict[object, dict] = {}
    for e in total_order(entries):
        if not DocumentsStore(OPTIONS["documents"]).apply(e):
            continue
        p = e.payload
        if p["op"] == "put":
            model[p["doc"]["_id"]] = p["doc"]
        else:
            model.pop(p["id"], None)
    assert {i: store.get(i) for i in model} == model and len(store) == len(model)
    assert list(store.ids()) == sorted(model, key=value_key)
    docs = list(model.values())
    for _ in range(8):
        field = data.draw(fields)
        kwargs = {}
        if data.draw(st.booleans()):
            kwargs["eq"] = data.draw(probe)
        else:
            for low, high in (("gt", "gte"), ("lt", "lte")):
                which = data.draw(st.sampled_from([None, low, high]))
                if which:
                    kwargs[which] = data.draw(probe)
        limit = data.draw(st.none() | st.integers(0, 4))
        reverse = data.draw(st.booleans())
        expected = scan(docs, "_id", field, limit=limit, reverse=reverse, **kwargs)
        assert store.query(field, limit=limit, reverse=reverse, **kwargs) == expected


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ops=st.integers(1, 200))
def test_indexes_survive_many_overwrites_and_deletes(seed, ops, make_space):
    # Unsigned entries (stores do not verify), so the histories can be long and churn hard.
    rng = random.Random(seed)
    space = make_space()
    store = DocumentsStore(OPTIONS["documents"], space)
    model: dict[object, tuple] = {}
    for n in range(ops):
        doc_id = rng.choice([0, 1, 2, "x", "y"])
        clock = rng.randint(1, 30)
        if rng.random() < 0.3:
            e = unsigned_entry(delete(doc_id), clock, n, WRITERS[0].did)
            doc = None
        else:
            doc = document(rng, doc_id)
            e = unsigned_entry(put(doc), clock, n, WRITERS[0].did)
        store.apply(e)
        key = (e.clock, e.cid.bytes)
        if doc_id not in model or model[doc_id][0] < key:
            model[doc_id] = (key, doc)
    live = [doc for _, doc in model.values() if doc is not None]
    for field in ("_id", "n", "tag", "a.b"):
        assert store.query(field) == scan(live, "_id", field)
        table = "documents.docs" if field == "_id" else f"documents.index.{field}"
        assert len(space.table(table)) == len(scan(live, "_id", field))
    assert len(space.table("documents.deleted")) == sum(doc is None for _, doc in model.values())
