"""Test support for the stores: signed entries and random multi-writer causal histories.

A history is built by simulated replicas, one per writer. Each writes entries whose parents are a
random non-empty subset of its current heads (so concurrent branches stay open for a while), and
now and then learns everything another replica knows (a merge). Each replica keeps a store of the
type under test, fed in causal order, so payloads can depend on what the writer has observed (an
OR-set remove names the add tags its writer saw).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from crdt.entry import Entry, create_entry
from crdt.identity import Keypair
from crdt.ipld import CID
from crdt.space import Space
from crdt.stores import Store, open_store

WRITERS = [Keypair.from_seed(bytes([40 + i]) * 32) for i in range(3)]
DB = CID.for_block(b"a test manifest")

# A payload maker: (rng, the writing replica's store) -> payload
PayloadMaker = Callable[[random.Random, Store], Any]


def order_key(entry: Entry) -> tuple[int, bytes]:
    return entry.clock, entry.cid.bytes


def entry(
    payload: Any,
    parents: Sequence[Entry] = (),
    writer: Keypair = WRITERS[0],
) -> Entry:
    """A signed entry with the clock its parents imply."""
    clock = 1 + max((p.clock for p in parents), default=0)
    return create_entry(writer, db=DB, clock=clock, next=[p.cid for p in parents], payload=payload)


def unsigned_entry(payload: Any, clock: int, n: int, author: str = WRITERS[0].did) -> Entry:
    """An entry with a made-up CID and no signature, for tests that need many entries fast
    (stores never verify: the log did)."""
    cid = CID.for_block(n.to_bytes(8, "big") + clock.to_bytes(8, "big"))
    return Entry(
        cid=cid,
        db=DB,
        author=author,
        clock=clock,
        next=(),
        skip=(),
        payload=payload,
        signature=b"",
        block=b"",
    )


def chain(payloads: Iterable[Any], writer: Keypair = WRITERS[0]) -> list[Entry]:
    """Entries each the child of the one before."""
    out: list[Entry] = []
    for payload in payloads:
        out.append(entry(payload, out[-1:], writer))
    return out


class _Replica:
    def __init__(self, store: Store) -> None:
        self.known: set[CID] = set()
        self.heads: list[Entry] = []
        self.store = store


def history(
    rng: random.Random,
    store_type: str,
    options: dict[str, Any] | None,
    make_payload: PayloadMaker,
    size: int,
    merge_rate: float = 0.25,
) -> list[Entry]:
    """``size`` entries by three writers, in the (causal) order they were created."""
    replicas = [_Replica(open_store(store_type, options)) for _ in WRITERS]
    created: list[Entry] = []
    by_cid: dict[CID, Entry] = {}
    while len(created) < size:
        i = rng.randrange(len(replicas))
        me = replicas[i]
        if rng.random() < merge_rate:
            other = replicas[rng.randrange(len(replicas))]
            new = [e for e in created if e.cid in other.known and e.cid not in me.known]
            for e in new:  # ``created`` is a causal order, so ``new`` is too
                me.known.add(e.cid)
                me.store.apply(e)
            parents_of_heads = {p for e in me.known for p in by_cid[e].next}
            me.heads = [by_cid[c] for c in me.known if c not in parents_of_heads]
            me.heads.sort(key=order_key)
            continue
        parents: list[Entry] = []
        if me.heads:
            parents = rng.sample(me.heads, rng.randint(1, len(me.heads)))
        new_entry = entry(make_payload(rng, me.store), parents, WRITERS[i])
        created.append(new_entry)
        by_cid[new_entry.cid] = new_entry
        me.known.add(new_entry.cid)
        me.store.apply(new_entry)
        me.heads = [h for h in me.heads if h not in parents] + [new_entry]
    return created


def causal_order(rng: random.Random, entries: Sequence[Entry]) -> list[Entry]:
    """A random topological order of ``entries`` (each after all its parents among them)."""
    present = {e.cid for e in entries}
    waiting = {e.cid: sum(1 for p in e.next if p in present) for e in entries}
    children: dict[CID, list[Entry]] = {}
    for e in entries:
        for p in e.next:
            children.setdefault(p, []).append(e)
    ready = [e for e in entries if waiting[e.cid] == 0]
    out: list[Entry] = []
    while ready:
        e = ready.pop(rng.randrange(len(ready)))
        out.append(e)
        for child in children.get(e.cid, ()):
            waiting[child.cid] -= 1
            if waiting[child.cid] == 0:
                ready.append(child)
    assert len(out) == len(entries)
    return out


def fold(
    store_type: str,
    entries: Iterable[Entry],
    options: dict[str, Any] | None = None,
    space: Space | None = None,
) -> Store:
    """A new store (over ``space``, if given) with ``entries`` applied in the order given."""
    store = open_store(store_type, options, space)
    for e in entries:
        store.apply(e)
    return store


def total_order(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=order_key)


# -- random values and payloads ------------------------------------------------------------------

LINKS = [CID.for_block(bytes([i])) for i in range(3)]

#: A small pool, so values repeat: equal values across ops, 1 next to 1.0 and True, nesting.
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    -7,
    2.5,
    2**63,
    -(2**64),
    "",
    "a",
    "b",
    "é",
    b"",
    b"\x00",
    [],
    [1, "a"],
    [[1], None],
    {},
    {"a": 1},
    {"a": {"b": [1, 2]}, "c": b"x"},
    *LINKS,
]


def value(rng: random.Random) -> Any:
    return rng.choice(VALUES)


def malformed(rng: random.Random, store_type: str) -> Any:
    """A payload no store of ``store_type`` accepts."""
    return rng.choice(MALFORMED[store_type])


MALFORMED: dict[str, list[Any]] = {
    "events": [
        None,
        1,
        [],
        {},
        {"op": "put", "value": 1},
        {"op": "add"},
        {"op": "add", "value": 1, "extra": 2},
        {"value": 1},
    ],
    "keyvalue": [
        None,
        "put",
        {"op": "put", "key": "a"},
        {"op": "put", "key": 1, "value": 1},
        {"op": "put", "key": b"a", "value": 1},
        {"op": "del"},
        {"op": "del", "key": None},
        {"op": "del", "key": "a", "value": 1},
        {"op": "add", "key": "a", "value": 1},
        {"op": "put", "key": "a", "value": 1, "x": 1},
    ],
    "documents": [
        None,
        {"op": "put"},
        {"op": "put", "doc": None},
        {"op": "put", "doc": [1]},
        {"op": "put", "doc": {"name": "no id"}},
        {"op": "put", "doc": {"_id": 1.5}},
        {"op": "put", "doc": {"_id": True}},
        {"op": "put", "doc": {"_id": None}},
        {"op": "put", "doc": {"_id": [1]}},
        {"op": "put", "doc": {"_id": "x"}, "extra": 1},
        {"op": "del"},
        {"op": "del", "id": 2.0},
        {"op": "del", "id": False},
        {"op": "update", "doc": {"_id": "x"}},
    ],
    "counter": [
        None,
        {"op": "inc"},
        {"op": "inc", "by": 1.0},
        {"op": "inc", "by": True},
        {"op": "inc", "by": "1"},
        {"op": "inc", "by": None},
        {"op": "inc", "by": 2**53 + 1},
        {"op": "inc", "by": -(2**53) - 1},
        {"op": "dec", "by": 1},
        {"op": "inc", "by": 1, "x": 0},
    ],
    "set": [
        None,
        {"op": "add"},
        {"op": "add", "value": 1, "tags": []},
        {"op": "remove", "value": 1},
        {"op": "remove", "value": 1, "tags": None},
        {"op": "remove", "value": 1, "tags": [b"not a cid"]},
        {"op": "remove", "value": 1, "tags": LINKS[0]},
        {"op": "delete", "value": 1, "tags": []},
    ],
}


def events_payload(rng: random.Random, store: Store) -> Any:
    return {"op": "add", "value": value(rng)}


def keyvalue_payload(rng: random.Random, store: Store) -> Any:
    key = f"k{rng.randrange(5)}"
    if rng.random() < 0.3:
        return {"op": "del", "key": key}
    return {"op": "put", "key": key, "value": value(rng)}


DOC_IDS: list[Any] = [0, 1, 2, 10, -3, "0", "1", "a", "b", "zz"]


def document(rng: random.Random, doc_id: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": doc_id}
    if rng.random() < 0.85:
        doc["n"] = rng.choice([*range(-3, 4), 0.5, 1.0, -2.5, 2**63, "3", None, True, [1]])
    if rng.random() < 0.7:
        doc["tag"] = value(rng)
    if rng.random() < 0.6:
        doc["a"] = rng.choice([{"b": rng.randrange(4)}, {"b": "x"}, {"c": 1}, 5, {"b": None}])
    return doc


def documents_payload(rng: random.Random, store: Store) -> Any:
    doc_id = rng.choice(DOC_IDS)
    if rng.random() < 0.25:
        return {"op": "del", "id": doc_id}
    return {"op": "put", "doc": document(rng, doc_id)}


def counter_payload(rng: random.Random, store: Store) -> Any:
    by = rng.choice([rng.randint(-5, 5), rng.randint(-5, 5), 2**53, -(2**53), 0])
    return {"op": "inc", "by": by}


SET_VALUES: list[Any] = [1, 1.0, "1", "a", b"a", None, [1], {"k": [1]}, LINKS[0]]


def set_payload(rng: random.Random, store: Store) -> Any:
    item = rng.choice(SET_VALUES)
    if rng.random() < 0.4:
        members = store.values()  # type: ignore[attr-defined]
        if members and rng.random() < 0.8:
            item = rng.choice(members)
        tags = store.tags_for(item)  # type: ignore[attr-defined]
        if tags and rng.random() < 0.3:  # a remove that saw only some of the adds
            tags = rng.sample(tags, rng.randint(1, len(tags)))
        return {"op": "remove", "value": item, "tags": tags}
    return {"op": "add", "value": item}


PAYLOADS: dict[str, PayloadMaker] = {
    "events": events_payload,
    "keyvalue": keyvalue_payload,
    "documents": documents_payload,
    "counter": counter_payload,
    "set": set_payload,
}

OPTIONS: dict[str, dict[str, Any] | None] = {
    "events": None,
    "keyvalue": None,
    "documents": {"indexes": ["n", "tag", "a.b"]},
    "counter": None,
    "set": None,
}


def with_malformed(maker: PayloadMaker, store_type: str, rate: float = 0.1) -> PayloadMaker:
    def make(rng: random.Random, store: Store) -> Any:
        if rng.random() < rate:
            return malformed(rng, store_type)
        return maker(rng, store)

    return make


def random_history(rng: random.Random, store_type: str, size: int) -> list[Entry]:
    """A history of ``size`` entries of ``store_type`` ops, about one in ten malformed."""
    maker = with_malformed(PAYLOADS[store_type], store_type)
    return history(rng, store_type, OPTIONS[store_type], maker, size)
