"""The gridnode side of bench/run.py, and the payloads both systems write.

One role per process, as in bench/orbitdb/bench.mjs (the same roles, parameters and JSON
results), so that both systems are measured the same way:

    python bench/workloads.py write     '{"dir": ..., "type": "documents"|"events", "payloads": FILE,
                                          "warmup": K, "gets": [...], "queries": [...], "budget": S,
                                          "batch": 0}'
    python bench/workloads.py reopen    '{"dir": ..., "address": ..., "key": ...}'
    python bench/workloads.py serve     '{"dir": ..., "address": ...}'
    python bench/workloads.py replicate '{"dir": ..., "peer": MULTIADDR, "address": ..., "n": N, "timeout": S}'

Storage is gridnode's default: one SQLite file per node, WAL, ``synchronous=FULL``. With
``"batch": 0`` every operation is its own ``write`` call, one signed entry in one durable
transaction (acknowledged once on disk), like OrbitDB's ``db.put`` per operation; ``"batch": B``
uses ``write_many`` with B operations per transaction instead. ``"synchronous": "NORMAL"`` lowers
SQLite's durability to OrbitDB's (extra information only).
"""

from __future__ import annotations

import json
import random
import resource
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Secondary indexes of the documents database (what the indexed query uses). OrbitDB's
#: documents store has none.
INDEXES = ["n", "group"]


def make_documents(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` documents of ~180 bytes (as JSON), the same for a given seed."""
    rng = random.Random(seed)
    letters = string.ascii_letters
    return [
        {
            "_id": f"doc{i:08d}",
            "n": i,
            "group": i % 1000,
            "title": f"Record {i}",
            "text": "".join(rng.choices(letters, k=100)),
            "tags": rng.sample(["red", "green", "blue", "black", "white"], 2),
        }
        for i in range(n)
    ]


def make_events(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` event values of ~270 bytes (as JSON), the same for a given seed."""
    rng = random.Random(seed + 1)
    letters = string.ascii_letters
    return [
        {"n": i, "text": "".join(rng.choices(letters, k=200)), "tags": ["bench", "sync"]}
        for i in range(n)
    ]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _latencies(args: list[Any], fn: Any, budget: float) -> list[float]:
    """Microseconds of ``fn(arg)`` for each arg, until all ran or ``budget`` seconds passed
    (at least 3 samples)."""
    samples: list[float] = []
    start = time.perf_counter()
    for arg in args:
        t = time.perf_counter()
        found = fn(arg)
        samples.append((time.perf_counter() - t) * 1e6)
        if not found:
            raise AssertionError(f"no result for {arg!r}")
        if len(samples) >= 3 and time.perf_counter() - start > budget:
            break
    return samples


def _ops(kind: str, payloads: list[Any]) -> list[dict[str, Any]]:
    if kind == "documents":
        return [{"op": "put", "doc": doc} for doc in payloads]
    return [{"op": "add", "value": value} for value in payloads]


def _create(repo: Any, name: str, kind: str) -> Any:
    options = {"indexes": INDEXES} if kind == "documents" else None
    return repo.create_database(name, kind, public=True, options=options)


def write(p: dict[str, Any]) -> dict[str, Any]:
    from gridnode.repo import Repo

    payloads = [json.loads(line) for line in Path(p["payloads"]).read_text().splitlines() if line]
    ops = _ops(p["type"], payloads)
    batch = int(p.get("batch") or 0)
    with Repo(Path(p["dir"])) as repo:
        if p.get("synchronous"):
            # Bench only: e.g. NORMAL, where a WAL commit is not fsynced (a process crash loses
            # nothing, a power loss may lose the last commits): OrbitDB's LevelDB writes.
            repo.sql.conn.execute(f"PRAGMA synchronous={p['synchronous']}")
        if p.get("warmup"):
            warm = _create(repo, "warmup", p["type"])
            for op in ops[: p["warmup"]]:
                warm.write(op)
        db = _create(repo, "bench", p["type"])
        start = time.perf_counter()
        if batch:
            for first in range(0, len(ops), batch):
                db.write_many(ops[first : first + batch])
        else:
            for op in ops:
                db.write(op)
        seconds = time.perf_counter() - start
        result: dict[str, Any] = {"seconds": seconds, "ops": len(ops), "address": db.address}
        store = db.store
        if p.get("gets"):
            result["get_us"] = _latencies(p["gets"], store.get, p.get("budget", 5))
        if p.get("queries"):
            result["query_us"] = _latencies(
                p["queries"], lambda n: len(store.query("n", eq=n)), p.get("budget", 5)
            )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def reopen(p: dict[str, Any]) -> dict[str, Any]:
    loading = time.perf_counter()
    from gridnode.repo import Repo

    loaded = time.perf_counter() - loading
    start = time.perf_counter()
    repo = Repo(Path(p["dir"]))
    doc = repo.database(p["address"]).store.get(p["key"])
    seconds = time.perf_counter() - start
    if doc is None:
        raise AssertionError(f"no document {p['key']} after reopen")
    rss = rss_mb()
    repo.close()
    return {"seconds": seconds, "rss_mb": rss, "import_seconds": loaded}


async def _serve(p: dict[str, Any]) -> None:
    import trio

    from gridnode.node import open_node

    async with open_node(
        Path(p["dir"]), listen=["/ip4/127.0.0.1/tcp/0"], announce_interval=5
    ) as node:
        print(json.dumps({"addr": str(node.addrs[0])}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)


def serve(p: dict[str, Any]) -> None:
    import trio

    trio.run(_serve, p)


async def _replicate(p: dict[str, Any]) -> dict[str, Any]:
    import trio

    from gridnode.node import open_node

    n, address = p["n"], p["address"]
    async with open_node(
        Path(p["dir"]), listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=[p["peer"]], announce_interval=5
    ) as node:
        with trio.fail_after(30):
            while not node.peers():
                await trio.sleep(0.01)
        start = time.perf_counter()
        database = await node.follow(address)
        with trio.fail_after(p.get("timeout", 600)):
            while await node.worker.run(len, database) < n:
                await trio.sleep(0.01)
        seconds = time.perf_counter() - start
        with trio.fail_after(60):  # the pull's own accounting lands when it returns
            while not (
                done := [
                    s for (_p, a), s in node.stats.syncs.items() if a == address and s.total_applied
                ]
            ):
                await trio.sleep(0.01)
        return {
            "seconds": seconds,
            "round_trips": done[0].total_round_trips,
            "bytes": done[0].total_bytes_received,
        }


def replicate(p: dict[str, Any]) -> dict[str, Any]:
    import trio

    return trio.run(_replicate, p)


ROLES = {"write": write, "reopen": reopen, "serve": serve, "replicate": replicate}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ROLES:
        sys.exit(f"usage: python bench/workloads.py {'|'.join(ROLES)} JSON")
    result = ROLES[sys.argv[1]](json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
