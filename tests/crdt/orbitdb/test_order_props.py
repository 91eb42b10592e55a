"""The sort that crdt/orbitdb/stores.py answers with equals OrbitDB's own traversal on random
logs: ``traverse`` below is log.js's algorithm line by line (a stack sorted with LastWriteWins
each round, popped from the end, entries fetched a level ahead), with V8's stable sort. Random
DAGs of several writers with the clocks OrbitDB writes (1 + the highest next); documents and
keyvalue answers compared with a port of databases/documents.js's iterator over that traversal."""

from __future__ import annotations

from functools import cmp_to_key

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.ipld import CID, encode
from crdt.orbitdb import OrbitEntry, format_hash, materialise
from crdt.orbitdb.stores import INHERITED_PROPERTIES, js_property_name

KEYS = ["02" + f"{i:02x}" * 32 for i in range(1, 5)]


def last_write_wins(a: OrbitEntry, b: OrbitEntry) -> int:
    """conflict-resolution.js: clock time, then clock id; 0 where OrbitDB returns ``a`` (an
    object, which sort reads as NaN, i.e. 0)."""
    if a.clock_time != b.clock_time:
        return -1 if a.clock_time < b.clock_time else 1
    if a.clock_id != b.clock_id:
        return -1 if a.clock_id < b.clock_id else 1
    return 0


def sort(stack):
    """Array.prototype.sort: undefined (None) last, the rest stable under the comparator."""
    present = sorted((e for e in stack if e is not None), key=cmp_to_key(last_write_wins))
    return present + [None] * (len(stack) - len(present))


def traverse(held: dict[str, OrbitEntry], roots: list[OrbitEntry]):
    stack = sort(list(roots))
    traversed: set[str] = set()
    fetched: set[str] = set()
    to_fetch: list[str] = []

    def not_indexed(h):
        return h not in traversed and h not in fetched

    while stack:
        stack = sort(stack)
        entry = stack.pop()
        if entry is None or entry.hash in traversed:
            continue
        yield entry
        traversed.add(entry.hash)
        fetched.add(entry.hash)
        to_fetch = [h for h in [*to_fetch, *entry.next] if not_indexed(h)]
        nexts = []
        for h in to_fetch:
            if h not in traversed and h not in fetched:
                fetched.add(h)
                nexts.append(held.get(h))
            else:
                nexts.append(None)
        union: list[str] = []
        for e in nexts:
            if e is not None:
                for h in e.next:
                    if h not in union:
                        union.append(h)
        to_fetch = [h for h in union if not_indexed(h)]
        stack = [*nexts, *stack]


def heads(held: dict[str, OrbitEntry]) -> list[OrbitEntry]:
    named = {h for e in held.values() for h in e.next}
    return sorted((e for h, e in held.items() if h not in named), key=cmp_to_key(last_write_wins))[
        ::-1
    ]


def documents_iterator(held):
    keys: set[str] = set()
    for entry in traverse(held, heads(held)):
        payload = entry.payload
        op, key, value = payload.get("op"), payload.get("key"), payload.get("value")
        name = js_property_name(key)
        seen = name in keys or name in INHERITED_PROPERTIES
        if op == "PUT" and not seen:
            keys.add(name)
            yield {"hash": entry.hash, "key": key, "value": value}
        elif op == "DEL" and not seen:
            keys.add(name)


def make(key: str, time: int, next_: list[str], payload, n: int) -> OrbitEntry:
    cid = CID.for_block(encode([key, time, next_, n]))
    return OrbitEntry(
        cid=cid,
        hash=format_hash(cid),
        id="/orbitdb/x",
        payload=payload,
        next=tuple(next_),
        refs=(),
        clock_id=key,
        clock_time=time,
        v=2,
        key=key,
        identity="",
        sig="",
        block=b"",
    )


operations = st.tuples(
    st.sampled_from(["PUT", "PUT", "DEL"]),
    st.sampled_from(["a", "b", "c", 1, "1", "toString"]),
    st.integers(0, 9),
)


@st.composite
def logs(draw):
    """Writers that each append after a random subset of the entries they have seen (a writer
    always sees its own previous entry, as OrbitDB's heads include it)."""
    writers = draw(st.integers(1, len(KEYS)))
    held: dict[str, OrbitEntry] = {}
    last: dict[int, str] = {}
    for n in range(draw(st.integers(1, 30))):
        writer = draw(st.integers(0, writers - 1))
        others = sorted(held)
        chosen = draw(st.lists(st.sampled_from(others), unique=True, max_size=3)) if others else []
        next_ = sorted({*chosen, *([last[writer]] if writer in last else [])})
        # Also entries the others descend from: more general than OrbitDB's heads.
        time = 1 + max((held[h].clock_time for h in next_), default=0)
        op, key, value = draw(operations)
        entry = make(KEYS[writer], time, next_, {"op": op, "key": key, "value": value}, n)
        held[entry.hash] = entry
        last[writer] = entry.hash
    return held


def has_ties(held) -> bool:
    clocks = [(e.clock_time, e.clock_id) for e in held.values()]
    return len(set(clocks)) < len(clocks)


@settings(max_examples=300, deadline=None)
@given(logs())
def test_the_sort_is_orbitdbs_traversal(held):
    state = materialise("documents", held.values())
    reference = list(traverse(held, heads(held)))
    assert {e.hash for e in reference} == set(held)
    if not has_ties(held):
        assert [e.hash for e in state.traverse()] == [e.hash for e in reference]
        assert state.documents_iterator() == list(documents_iterator(held))
        assert [e.hash for e in state.heads()] == [e.hash for e in heads(held)]
    # Ties only reorder entries of one clock id and time: the (time, id) sequence is the same.
    assert [e.sort_key[:2] for e in state.traverse()] == [e.sort_key[:2] for e in reference]


@settings(max_examples=200, deadline=None)
@given(logs(), st.data())
def test_lte_and_lt_list_the_causal_past_in_traversal_order(held, data):
    state = materialise("events", held.values())
    root = held[data.draw(st.sampled_from(sorted(held)))]
    reference = list(traverse(held, [root]))
    below = list(traverse(held, [held[h] for h in root.next]))
    if not has_ties(held):
        assert [e.hash for e in state.iterator(lte=root.hash)] == [e.hash for e in reference]
        assert [e.hash for e in state.iterator(lt=root.hash)] == [e.hash for e in below]
