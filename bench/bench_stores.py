"""Throughput of the store types, and document index queries at a million documents, on one core.

    python bench/bench_stores.py            # full run: 100,000 signed entries per store, 1M docs
    python bench/bench_stores.py --quick    # smoke run, as CI does (a few seconds)

Entries are created (and, for the apply benchmarks, signed) once, before any timing: a store's
``apply`` takes entries the log has already verified, so what is timed is the fold alone. Each
apply figure is the median of 3 runs into a fresh store, once in the log's total order and once in
a random order (the worst case for the ordered structures: every insert lands mid-feed).

Stores keep their state in the tables of a space (``crdt.space``); here a ``MemorySpace``. The
"table ops" column counts the table calls (get, put, delete, range rows read) per entry applied,
in total order: each costs a few microseconds in the node's SQLite space, so it is the figure that
carries over.

The million-document store is built from unsigned entries (made-up CIDs, empty signatures), since
``apply`` never verifies and signing a million entries would only make the run slower.

The entries made up front are moved out of the garbage collector's sight (``gc.freeze``) before
timing: a node streams entries through and does not hold a hundred thousand in a list, so the
collector scanning them again and again would be a cost of the benchmark, not of the stores. The
objects the stores create while timed are collected as usual.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.entry import Entry, create_entry
from crdt.identity import Keypair
from crdt.ipld import CID
from crdt.space import MemorySpace, Space, Table
from crdt.stores import DocumentsStore, Store, open_store

WRITERS = [Keypair.from_seed(bytes([70 + i]) * 32) for i in range(3)]
DB = CID.for_block(b"bench manifest")
DOC_OPTIONS = {"indexBy": "_id", "indexes": ["n", "group"]}


class CountingTable:
    """A table that counts the calls made on it (a range counts one per row read)."""

    def __init__(self, inner: Table, counts: Counter[str]) -> None:
        self.inner, self.counts = inner, counts

    def get(self, key: bytes) -> Any:
        self.counts["ops"] += 1
        return self.inner.get(key)

    def put(self, key: bytes, value: Any) -> None:
        self.counts["ops"] += 1
        self.inner.put(key, value)

    def delete(self, key: bytes) -> bool:
        self.counts["ops"] += 1
        return self.inner.delete(key)

    def range(self, *args: Any, **kwargs: Any) -> Iterator[tuple[bytes, Any]]:
        for row in self.inner.range(*args, **kwargs):
            self.counts["ops"] += 1
            yield row

    def __len__(self) -> int:
        return len(self.inner)


class CountingSpace:
    """A :class:`MemorySpace` whose tables count the calls made on them."""

    def __init__(self) -> None:
        self.inner = MemorySpace()
        self.counts: Counter[str] = Counter()

    def table(self, name: str) -> CountingTable:
        return CountingTable(self.inner.table(name), self.counts)


def new_store(kind: str, space: Space | None = None) -> Store:
    """An empty store of ``kind`` (documents with the benchmark's indexes) over ``space``."""
    return open_store(kind, DOC_OPTIONS if kind == "documents" else None, space or MemorySpace())


def payload(kind: str, i: int, keys: int, rng: random.Random, replica: Store) -> Any:
    """Op number ``i`` of a store type, shaped like an application's (a tenth deletes/removes).
    ``replica`` is the writer's view, so a set remove names the add tags it has observed."""
    if kind == "events":
        return {"op": "add", "value": {"seq": i, "text": f"event number {i}"}}
    if kind == "keyvalue":
        key = f"key/{rng.randrange(keys)}"
        if rng.random() < 0.1:
            return {"op": "del", "key": key}
        return {"op": "put", "key": key, "value": {"seq": i, "v": rng.random()}}
    if kind == "documents":
        doc_id = f"doc/{rng.randrange(keys)}"
        if rng.random() < 0.1:
            return {"op": "del", "id": doc_id}
        return {"op": "put", "doc": document(doc_id, rng)}
    if kind == "counter":
        return {"op": "inc", "by": rng.randint(-10, 10)}
    if kind == "set":
        value = f"member/{rng.randrange(keys)}"
        if rng.random() < 0.1:
            tags = replica.tags_for(value)  # type: ignore[attr-defined]
            return {"op": "remove", "value": value, "tags": tags}
        return {"op": "add", "value": value}
    raise ValueError(kind)  # pragma: no cover


def document(doc_id: Any, rng: random.Random) -> dict[str, Any]:
    return {
        "_id": doc_id,
        "n": rng.randrange(1_000_000),
        "group": rng.randrange(1000),
        "name": f"user {doc_id}",
        "active": rng.random() < 0.5,
    }


def signed_history(kind: str, n: int, seed: int = 1) -> list[Entry]:
    """``n`` signed entries by three writers taking turns: a chain, except that every tenth
    entry has a concurrent sibling (same parents, same clock), merged by the entry after."""
    rng = random.Random(seed)
    keys = max(10, n // 10)
    replica = new_store(kind)
    out: list[Entry] = []
    parents: list[Entry] = []
    sibling: Entry | None = None
    for i in range(n):
        e = create_entry(
            WRITERS[i % 3],
            db=DB,
            clock=1 + max((p.clock for p in parents), default=0),
            next=[p.cid for p in parents],
            payload=payload(kind, i, keys, rng, replica),
        )
        out.append(e)
        if kind == "set":
            replica.apply(e)
        if i % 10 == 5:
            sibling = e  # the next entry gets the same parents
        elif sibling is not None:
            parents, sibling = [sibling, e], None
        else:
            parents = [e]
    return out


def unsigned_docs(n: int, seed: int = 2) -> Iterator[Entry]:
    """``n`` document puts as unsigned entries (made-up CIDs, no signature), ids 0..n-1."""
    rng = random.Random(seed)
    author = WRITERS[0].did
    for i in range(n):
        yield Entry(
            cid=CID.for_block(i.to_bytes(8, "big")),
            db=DB,
            author=author,
            clock=i + 1,
            next=(),
            skip=(),
            payload={"op": "put", "doc": document(i, rng)},
            signature=b"",
            block=b"",
        )


def fold_rate(kind: str, entries: list[Entry], reps: int = 3) -> float:
    """Entries per second applying ``entries`` to a fresh store: median of ``reps`` runs."""
    rates = []
    for _ in range(reps):
        store = new_store(kind)
        start = time.perf_counter()
        for e in entries:
            store.apply(e)
        rates.append(len(entries) / (time.perf_counter() - start))
    return statistics.median(rates)


def latency(fn: Callable[[], object], reps: int) -> float:
    """Median seconds of ``fn`` over ``reps`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:,.1f} ms"
    return f"{seconds:,.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny run for CI: checks it works")
    args = parser.parse_args()
    n, docs = (2_000, 20_000) if args.quick else (100_000, 1_000_000)

    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}); one core"
    )
    print()
    print(f"## Applying {n:,} verified entries (3 writers, signed before timing; median of 3)")
    print()
    print("In total order every put of a key beats the one before (for documents: index entries")
    print("out and in); in a random order many arrive already beaten and only compare, but")
    print("events land mid-feed and every access is scattered over memory.")
    print()
    print(
        "| store | in total order (entries/s) | in random order (entries/s) | table ops/entry "
        "| live items | sign time |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("events", "keyvalue", "documents", "counter", "set"):
        start = time.perf_counter()
        entries = signed_history(kind, n)
        signing = time.perf_counter() - start
        assert len({e.cid for e in entries}) == len(entries)
        ordered = sorted(entries, key=lambda e: (e.clock, e.cid.bytes))
        shuffled = list(entries)
        random.Random(3).shuffle(shuffled)
        gc.collect()
        gc.freeze()
        in_order = fold_rate(kind, ordered)
        any_order = fold_rate(kind, shuffled)
        gc.unfreeze()
        counting = CountingSpace()
        check = new_store(kind, counting)
        for e in ordered:
            check.apply(e)
        ops = counting.counts["ops"] / len(ordered)
        print(
            f"| {kind} | {in_order:,.0f} | {any_order:,.0f} | {ops:.1f} | {len(check):,} | "
            f"{_fmt_time(signing)} |",
            flush=True,
        )
    del entries, ordered, shuffled, check
    gc.collect()

    print()
    print(f"## Documents: queries at {docs:,} documents (indexes on `n` and `group`)")
    print()
    made = list(unsigned_docs(docs))
    gc.collect()
    gc.freeze()
    store = DocumentsStore(DOC_OPTIONS, MemorySpace())
    start = time.perf_counter()
    for e in made:
        store.apply(e)
    build = time.perf_counter() - start
    del made
    print(
        f"Built from {docs:,} **unsigned** entries (made-up CIDs, no signatures: `apply` does "
        f"not verify), made before timing, in {build:,.1f} s ({docs / build:,.0f} docs/s into "
        "3 indexes: `_id`, `n`, `group`)."
    )
    print()
    probe = store.get(docs // 2)
    assert probe is not None
    n_value, group = probe["n"], probe["group"]
    low, high = 500_000, 501_000  # values of n are uniform in [0, 1,000,000)

    def in_range(d: dict[str, Any]) -> bool:
        return bool(low <= d["n"] < high)

    cases: list[tuple[str, Callable[[], list[Any]], int]] = [
        ("get by id", lambda: [store.get(docs // 2)], 10_000),
        (f"query n == {n_value} (index)", lambda: store.query("n", eq=n_value), 2_000),
        (
            f"filter n == {n_value} (full scan)",
            lambda: store.filter(lambda d: d["n"] == n_value),
            3,
        ),
        (
            f"query {low} <= n < {high}, limit 10 (index)",
            lambda: store.query("n", gte=low, lt=high, limit=10),
            2_000,
        ),
        (
            f"filter {low} <= n < {high}, limit 10 (scan until 10 found)",
            lambda: store.filter(in_range, limit=10),
            5,
        ),
        (
            f"query {low} <= n < {high} (index, all)",
            lambda: store.query("n", gte=low, lt=high),
            200,
        ),
        (f"filter {low} <= n < {high} (full scan)", lambda: store.filter(in_range), 3),
        (
            f"query group == {group}, limit 10 (index)",
            lambda: store.query("group", eq=group, limit=10),
            2_000,
        ),
        (
            "query _id > 1000, limit 10, reverse (index)",
            lambda: store.query("_id", gt=1000, limit=10, reverse=True),
            2_000,
        ),
    ]
    print("| read | results | median latency |")
    print("|---|---:|---:|")
    for name, fn, reps in cases:
        result = fn()
        seconds = latency(fn, min(reps, 20) if args.quick else reps)
        print(f"| {name} | {len(result):,} | {_fmt_time(seconds)} |", flush=True)
    scan = sorted(store.filter(in_range), key=lambda d: (d["n"], d["_id"]))
    assert store.query("n", gte=low, lt=high) == scan, "index and scan disagree"


if __name__ == "__main__":
    main()
