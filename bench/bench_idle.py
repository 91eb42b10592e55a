"""Idle cost of a node by the number of databases it holds (issue 21, item 4).

Two ``gridnode start`` processes on loopback, the second bootstrapped from the first, both holding
the same N small keyvalue databases (one entry each, written by the first node; the second holds
them as a follower: same manifests, same entries, so neither lacks anything). After they connect
and a warm-up, nothing is written: the CPU time each process uses over the window (utime + stime
from /proc) is what anti-entropy, gossipsub upkeep and the node's timers cost while idle.

    python bench/bench_idle.py                      # N = 0, 200, 1000; 60 s windows
    python bench/bench_idle.py --sizes 0,200 --seconds 30 --warmup 20

``--announce-interval`` sets both nodes' ``announce_interval`` (default: the config's default).
Prints one JSON line per size and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gridnode.datadir import api_files
from gridnode.repo import Repo

_TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds per slice of the window.
SLICE = 10.0
#: The CLI, run by this interpreter (so a checkout's venv runs its own code).
GRIDNODE = [sys.executable, "-c", "from gridnode.cli import main; main()"]


def prepare(root: Path, n: int) -> tuple[Path, Path]:
    """Two data dirs holding the same ``n`` databases with one entry each."""
    first, second = root / "a", root / "b"
    with Repo(first) as a, Repo(second) as b:
        for i in range(n):
            database = a.create_database(f"idle-{i}", "keyvalue", writers=[b.did])
            database.write_many([{"op": "put", "key": "k", "value": i}])
            blocks = database.blocks_of(list(database.heads))
            copy = b.add_database(database.manifest)
            copy.join_blocks(blocks)
    return first, second


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat (utime, stime): indexes 11 and 12 after the command name.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cli_json(data_dir: Path, env: dict[str, str], *verb: str) -> list:
    """The JSON lines a CLI verb prints (``[]`` if it fails or takes over a minute: a node
    opening 1,000 databases may not answer at once)."""
    try:
        out = subprocess.run(
            [*GRIDNODE, "--data-dir", str(data_dir), *verb, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return []


def addrs(data_dir: Path, env: dict[str, str]) -> list[str]:
    found = cli_json(data_dir, env, "status")
    return found[0].get("addrs", []) if found else []


#: Counters read from each node's ``/metrics`` at both ends of the window: what it sent and
#: heard, whatever the machine's load (CPU figures move with it; these do not).
COUNTERS = {
    "gridnode_gossip_messages_published_total": "gossip_sent",
    "gridnode_gossip_messages_received_total": "gossip_heard",
    "gridnode_replica_statements_published_total": "statements_sent",
    "gridnode_sync_pulls_total": "pulls",
}


def counters(data_dir: Path) -> dict[str, float]:
    """The :data:`COUNTERS` of the node running on ``data_dir`` (``{}`` if it does not answer)."""
    found = api_files(data_dir)
    if found is None:
        return {}
    url, token = found
    request = urllib.request.Request(
        url.rstrip("/") + "/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in COUNTERS:
            values[COUNTERS[name]] = float(value)
    return values


def start(data_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*GRIDNODE, "--data-dir", str(data_dir), "start"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=env,
    )


def wait_for(check, seconds: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def measure(
    n: int,
    seconds: float,
    warmup: float,
    interval: float | None,
    cache: Path | None,
    statements: bool = True,
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        if cache is None:
            first, second = prepare(root, n)
        else:
            # Preparing 1,000 databases takes minutes (a transaction per step): done once, and
            # each run starts from a copy.
            kept = cache / f"n{n}"
            if not (kept / "done").exists():
                shutil.rmtree(kept, ignore_errors=True)
                prepare(kept, n)
                (kept / "done").touch()
            first, second = root / "a", root / "b"
            shutil.copytree(kept / "a", first)
            shutil.copytree(kept / "b", second)
        prepared = time.perf_counter() - t0
        env = {**os.environ, "GRIDNODE_LISTEN": "/ip4/127.0.0.1/tcp/0"}
        if not statements:
            # Diagnostic: what is left without replica statements (a sitecustomize that makes
            # their room's start a no-op in both node processes).
            (root / "sitecustomize.py").write_text(
                "from gridnode.node import replicas\n\n\n"
                "async def _off(self):\n    return None\n\n\n"
                "replicas.ReplicaStatements.start = _off\n"
            )
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p
            )
        if interval is not None:
            env["GRIDNODE_ANNOUNCE_INTERVAL"] = str(interval)
        a = start(first, env, root / "a.log")
        b = None
        try:
            addr = wait_for(lambda: addrs(first, env), 300, "the first node")[0]
            b = start(second, {**env, "GRIDNODE_BOOTSTRAP": addr}, root / "b.log")
            wait_for(lambda: cli_json(second, env, "peers"), 300, "the connection")
            time.sleep(warmup)
            before = [counters(first), counters(second)]
            start_a, start_b, t = cpu_seconds(a.pid), cpu_seconds(b.pid), time.monotonic()
            # In 10 s slices too: the median slice is the idle cost even when the window holds
            # a burst (a connection dropped under load and every database pulled again).
            slices: list[float] = []
            last, at = cpu_seconds(a.pid) + cpu_seconds(b.pid), t
            while (now := time.monotonic()) - t < seconds:
                time.sleep(min(SLICE, seconds - (now - t)))
                used = cpu_seconds(a.pid) + cpu_seconds(b.pid)
                slices.append(100 * (used - last) / 2 / (time.monotonic() - at))
                last, at = used, time.monotonic()
            used_a, used_b = cpu_seconds(a.pid) - start_a, cpu_seconds(b.pid) - start_b
            elapsed = time.monotonic() - t
            after = [counters(first), counters(second)]
            # Per node and minute, the two nodes averaged.
            per_minute = {
                name: round(
                    sum(
                        later.get(name, 0) - earlier.get(name, 0)
                        for earlier, later in zip(before, after, strict=True)
                    )
                    / 2
                    * 60
                    / elapsed,
                    1,
                )
                for name in COUNTERS.values()
            }
            connected = bool(cli_json(second, env, "peers"))
        finally:
            for proc in (b, a):
                if proc is not None:
                    proc.terminate()
            for proc in (b, a):
                if proc is not None:
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        logs = [(root / name).read_text(errors="replace") for name in ("a.log", "b.log")]
        return {
            "databases": n,
            # Connections made (a dropped one is redialled) and pulls failed, over the whole
            # run: an idle figure is only one if these stay near 1 and 0 in the window.
            "connections": sum(log.count("node.peers: connected to") for log in logs),
            "pulls_failed": sum(log.count("failed: ") for log in logs),
            "seconds": round(elapsed, 1),
            "first_core_pct": round(100 * used_a / elapsed, 2),
            "second_core_pct": round(100 * used_b / elapsed, 2),
            "still_connected": connected,
            # Per node (the two averaged), % of a core: the median 10 s slice.
            "median_slice_pct": round(statistics.median(slices), 2),
            "per_node_minute": per_minute,
            "prepare_s": round(prepared, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0,200,1000", help="comma-separated database counts")
    parser.add_argument("--seconds", type=float, default=60.0, help="the idle window measured")
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds after connecting before the window"
    )
    parser.add_argument(
        "--announce-interval", type=float, default=None, help="both nodes' announce_interval"
    )
    parser.add_argument(
        "--no-statements",
        action="store_true",
        help="diagnostic: both nodes without replica statements (what else idling costs)",
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="keep prepared data dirs here, reuse them"
    )
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        row = measure(
            n,
            args.seconds,
            args.warmup,
            args.announce_interval,
            args.cache,
            statements=not args.no_statements,
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| databases | first node, % of a core | second node | median 10 s slice, per node |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['databases']} | {row['first_core_pct']} | {row['second_core_pct']} "
            f"| {row['median_slice_pct']} |"
        )


if __name__ == "__main__":
    main()
