"""The JavaScript behaviours crdt/orbitdb/stores.py reproduces that the fixtures of the real
OrbitDB touch only in part: String(key) as the property name, ===, inherited property names,
payloads that are not operations, the iterator's refusals."""

from __future__ import annotations

import pytest

from crdt.errors import InvalidQuery
from crdt.ipld import CID, encode
from crdt.orbitdb import decode_entry, materialise
from crdt.orbitdb.stores import INHERITED_PROPERTIES, Materialiser, js_property_name
from tests.crdt.orbitdb import forge

ALICE = forge.writer(1)
BOB = forge.writer(2)
LOG = CID.for_block(encode("log"))


def chain(*payloads, author=ALICE):
    """One writer's entries, each after the previous one."""
    entries, previous = [], None
    for time, payload in enumerate(payloads, start=1):
        next_ = [previous.hash] if previous else []
        previous = decode_entry(*forge.entry(author, LOG, payload, time, next_))
        entries.append(previous)
    return entries


def put(key, value):
    return {"op": "PUT", "key": key, "value": value}


def delete(key):
    return {"op": "DEL", "key": key, "value": None}


@pytest.mark.parametrize(
    "value, name",
    [
        ("a", "a"),
        (1, "1"),
        (-7, "-7"),
        (2**60, "1152921504606846976"),
        (1.0, "1"),
        (1.5, "1.5"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (1e-7, "1e-7"),
        (1.23e-18, "1.23e-18"),
        (0.000001, "0.000001"),
        (123456789012345680000.0, "123456789012345680000"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ([1, [2, None], "a"], "1,2,,a"),
        ([], ""),
        ({"a": 1}, "[object Object]"),
        (b"\x01\x02", "1,2"),
    ],
)
def test_property_names_are_javascripts_string(value, name):
    assert js_property_name(value) == name


def test_keyvalue_get_compares_with_triple_equals_and_all_with_property_names():
    state = materialise(
        "keyvalue",
        chain(put(1, "number"), put("1", "string"), put("toString", "inherited"), put(True, "t")),
    )
    assert [(a["key"], a["value"]) for a in state.all()] == [("1", "string"), (True, "t")]
    assert state.get(1) == "number" and state.get("1") == "string"
    assert state.get(1.0) == "number"
    assert state.get("toString") == "inherited"
    assert state.get(True) == "t" and state.get("true") is None
    assert state.get([1]) is None


def test_documents_get_finds_only_listed_documents():
    state = materialise("documents", chain(put(1, {"_id": 1}), put("1", {"_id": "1"})))
    assert state.get("1") == {"hash": state.values()[1].hash, "key": "1", "value": {"_id": "1"}}
    assert state.get(1) is None  # the newer "1" hides it, and "1" !== 1
    hidden = materialise("documents", chain(put("constructor", {"_id": "constructor"})))
    assert hidden.all() == [] and hidden.get("constructor") is None
    assert "constructor" in INHERITED_PROPERTIES


def test_deletes_and_overwrites_decide_by_the_newest_entry():
    state = materialise(
        "documents", chain(put("a", {"v": 1}), put("b", {"v": 2}), delete("a"), put("b", {"v": 3}))
    )
    assert [d["value"] for d in state.all()] == [{"v": 3}]
    assert state.get("a") is None
    assert state.query(lambda doc: True) == [{"v": 3}]


def test_payloads_that_are_not_operations_are_listed_by_events_only():
    payloads = ["text", 5, [1], {"op": "ADD", "key": None, "value": "x"}, {"no": "op"}]
    entries = chain(*payloads)
    events = materialise("events", entries)
    assert events.all() == [
        {"hash": entries[0].hash},
        {"hash": entries[1].hash},
        {"hash": entries[2].hash},
        {"hash": entries[3].hash, "value": "x"},
        {"hash": entries[4].hash},
    ]
    assert events.get(entries[3].hash) == "x" and events.get(entries[0].hash) is None
    assert events.get(5) is None
    for kind in ("documents", "keyvalue"):
        assert materialise(kind, entries).all() == []


def test_concurrent_writers_order_by_time_then_clock_id():
    a = chain("a1", "a2", author=ALICE)
    b = chain("b1", author=BOB)
    state = materialise("events", a + b)
    first = sorted([a[0], b[0]], key=lambda e: e.clock_id)
    assert [e.hash for e in state.values()] == [first[0].hash, first[1].hash, a[1].hash]
    assert [e.hash for e in state.heads()] == [a[1].hash, b[0].hash]
    assert state.traverse([a[1]]) == [a[1], a[0]]


def test_iterator_refusals_and_unknown_kinds():
    state = materialise("events", chain("x", "y"))
    with pytest.raises(InvalidQuery):
        state.iterator(lt="zdpuAnotheld")
    assert state.iterator(lte="zdpuAnotheld") == []
    assert len(state.iterator(gt="zdpuAnotheld")) == 2
    assert state.entry(state.values()[0].hash) is state.values()[0]
    assert state.values()[0].hash in state and "x" not in state
    with pytest.raises(ValueError):
        Materialiser("feed")
