"""Whole-database operations: seconds and peak RSS of each, each in a fresh process.

    python bench/bench_whole_db.py --n 100000            # build 100k entries, measure every op
    python bench/bench_whole_db.py --n 1000 --quick      # CI smoke run
    python bench/bench_whole_db.py --dir D --reuse       # measure again on an existing build

A database of ``--n`` events of ~400 bytes (``--store keyvalue``: puts to n distinct keys) is
written straight into a data dir with the repo API (``write_many``, 5,000 entries per
transaction). Then each operation runs in a process of its own, so that its peak RSS
(``ru_maxrss``) is its own and the page cache, not the interpreter, holds the file:

- ``open``: open the data dir and the database (a restart), then the first ``digest``;
- ``digest``: the state digest of the open database (``gridnode db digest``);
- ``export``: the CAR export to a file (``gridnode export``);
- ``verify``: re-hash and re-verify every stored block (``gridnode db verify``);
- ``worker``: ``digest`` and ``verify`` run through a :class:`~gridnode.storage.StorageWorker`
  the way a running node runs them, while a probe task asks the worker for a trivial call every
  10 ms: the longest the probe waited is how long the pass held the node's storage away from
  everything else.

``base`` is the peak RSS of a process that imports gridnode and opens the data dir (what every
operation's figure includes). With ``--catchup``, a fresh node also catches the database up from
a ``gridnode`` node serving it in another process (bench/bench_sync.py's harness) and reports
both processes' peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPS = ["base", "open", "digest", "export", "verify", "worker"]


def peak_mb() -> float:
    """This process's peak RSS in MiB: ``VmHWM``, which starts afresh at exec (``ru_maxrss``
    carries the RSS of the parent at fork: a parent that built the database would count)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(data_dir: Path, n: int, store: str) -> tuple[str, float]:
    """A data dir holding one public database of ``n`` entries; its address and the seconds."""
    from gridnode.repo import Repo

    text = "x" * 300
    with Repo(data_dir) as repo:
        db = repo.create_database("bench", store, public=True)
        start = time.perf_counter()
        batch = 5000
        for first in range(0, n, batch):
            last = min(n, first + batch)
            if store == "events":
                ops = [
                    {"op": "add", "value": {"n": i, "text": text, "tags": ["bench", "whole"]}}
                    for i in range(first, last)
                ]
            else:
                ops = [
                    {"op": "put", "key": f"k{i:09d}", "value": {"n": i, "text": text}}
                    for i in range(first, last)
                ]
            db.write_many(ops)
        return db.address, time.perf_counter() - start


def run_op(op: str, data_dir: Path, address: str) -> dict[str, Any]:
    """One operation, in this (fresh) process."""
    from gridnode import ops as gops
    from gridnode.repo import Repo

    out: dict[str, Any] = {"op": op}
    start = time.perf_counter()
    with Repo(data_dir) as repo:
        database = repo.database(address)
        opened = time.perf_counter()
        if op == "base":
            out["seconds"] = opened - start
        elif op == "open":
            digest = database.digest()
            out["seconds"] = time.perf_counter() - start
            out["open_seconds"] = opened - start
            out["digest"] = digest.hex()
        elif op == "digest":
            t0 = time.perf_counter()
            database.digest()
            out["seconds"] = time.perf_counter() - t0
        elif op == "export":
            target = data_dir.parent / "export.car"
            t0 = time.perf_counter()
            count = database.export_car(target)
            out["seconds"] = time.perf_counter() - t0
            out["blocks"] = count
            out["bytes"] = target.stat().st_size
            target.unlink()
        elif op == "verify":
            t0 = time.perf_counter()
            report = gops.run_read("verify", database, {})
            out["seconds"] = time.perf_counter() - t0
            out["blocks"] = report["blocks"]
            out["damaged"] = len(report["damaged"])
        elif op == "worker":
            out.update(_through_worker(database))
        else:
            raise SystemExit(f"unknown op {op}")
    out["peak_mb"] = peak_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    return out


def _through_worker(database: Any) -> dict[str, Any]:
    """``digest`` and ``verify`` through a storage worker, as a running node runs them, with a
    probe measuring how long a concurrent trivial call waited."""
    import trio

    from gridnode import ops as gops
    from gridnode.storage.worker import StorageWorker

    async def main() -> dict[str, Any]:
        worker = StorageWorker()
        result: dict[str, Any] = {}
        for name in ("digest", "verify"):
            waits: list[float] = []
            done = trio.Event()

            async def probe(waits: list[float] = waits, done: trio.Event = done) -> None:
                while not done.is_set():
                    t0 = time.perf_counter()
                    await worker.run(len, database)
                    waits.append(time.perf_counter() - t0)
                    await trio.sleep(0.01)

            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)
                await trio.sleep(0.02)  # the probe's first call is in
                if name == "digest":
                    await worker.run(database.digest)
                else:
                    steps = getattr(gops, "verify_steps", None)
                    if steps is None:  # a version without a stepped verify: one call
                        await worker.run(gops.run_read, "verify", database, {})
                    else:
                        await worker.run_steps(steps(database))
                done.set()
            result[f"{name}_seconds"] = time.perf_counter() - t0
            result[f"{name}_max_wait"] = max(waits)
        result["seconds"] = result["digest_seconds"] + result["verify_seconds"]
        return result

    return trio.run(main)


def measure(op: str, data_dir: Path, address: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--op", op, "--dir", str(data_dir), "--address", address],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{op} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def catch_up(root: Path, data_dir: Path, address: str, n: int) -> dict[str, Any]:
    """A fresh node catches up from a node serving ``data_dir`` in another process."""
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--catchup-child",
            "--dir",
            str(data_dir),
            "--address",
            address,
            "--n",
            str(n),
            "--root",
            str(root),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"catch-up failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _catchup_child(root: Path, data_dir: Path, address: str, n: int) -> dict[str, Any]:
    import trio

    import bench.bench_sync as bs

    serve_peak = root / "serve-peak"
    result = trio.run(bs.catch_up, root, data_dir, address, n)
    out = {"op": "catchup", "seconds": result["seconds"], "peak_mb": peak_mb()}
    if serve_peak.exists():
        out["source_peak_mb"] = float(serve_peak.read_text())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--store", choices=["events", "keyvalue"], default="events")
    parser.add_argument("--quick", action="store_true", help="1,000 entries")
    parser.add_argument("--dir", type=Path, help="the data dir (kept; default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="measure an existing build in --dir")
    parser.add_argument("--address", help="the database's address (with --reuse or --op)")
    parser.add_argument("--op", choices=OPS, help="run one operation in this process")
    parser.add_argument("--ops", default=",".join(OPS), help="operations to measure")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each operation")
    parser.add_argument("--catchup", action="store_true", help="also a catch-up over loopback")
    parser.add_argument("--catchup-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.op:
        print(json.dumps(run_op(args.op, args.dir, args.address)))
        return
    if args.catchup_child:
        print(json.dumps(_catchup_child(args.root, args.dir, args.address, args.n)))
        return

    n = 1000 if args.quick else args.n
    tmp = None
    if args.dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-whole-db-"))
        data_dir = tmp / "node"
    else:
        data_dir = args.dir
    try:
        if args.reuse:
            address = args.address or (data_dir / "address").read_text().strip()
        else:
            address, seconds = build(data_dir, n, args.store)
            (data_dir / "address").write_text(address)
            print(f"built {n} {args.store} entries in {seconds:.1f} s ({n / seconds:.0f}/s)")
        size = (data_dir / "gridnode.sqlite").stat().st_size
        print(f"database {address}: {size / 2**20:.0f} MiB on disk")
        for op in args.ops.split(","):
            for _ in range(args.repeat):
                r = measure(op, data_dir, address)
                extra = {k: v for k, v in r.items() if k not in ("op", "seconds", "peak_mb")}
                print(f"{op:8} {r['seconds']:8.2f} s  peak {r['peak_mb']:7.0f} MiB  {extra}")
        if args.catchup:
            r = catch_up(data_dir.parent, data_dir, address, n)
            print(f"catchup  {r['seconds']:8.2f} s  peak {r['peak_mb']:7.0f} MiB  {r}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
