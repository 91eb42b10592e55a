"""A catch-up as a user runs it: two `gridnode start` processes, `gridnode db follow --wait`.

    BENCH_TMP=/work python bench/bench_follow.py -n 100000      # ~2 min to write, then the run
    python bench/bench_follow.py --quick                        # 2,000 entries (CI smoke run)

The source data dir gets ``n`` ~400-byte events (written offline, in transactions of 1,000),
then both nodes start on 127.0.0.1 (the follower bootstrapped from the source) and the clock
runs from `db follow ADDRESS --wait` until it exits. Then: the follower's CPU time and peak
resident memory (VmHWM, from /proc), and the two digests, which must be equal.
``--reuse DIR`` keeps the written source between runs (DIR/source is made once).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridnode.repo import Repo

GRIDNODE = [sys.executable, "-c", "from gridnode.cli import main; main()"]


def prepare(data_dir: Path, n: int) -> str:
    with Repo(data_dir) as repo:
        for address, name, _store in repo.databases():
            if name == "bench":
                return address
        db = repo.create_database("bench", "events", public=True)
        for first in range(0, n, 1000):
            db.write_many(
                [
                    {"op": "add", "value": {"n": i, "text": "x" * 200, "tags": ["bench", "sync"]}}
                    for i in range(first, min(n, first + 1000))
                ]
            )
        return db.address


def cli(data_dir: Path, *args: str, timeout: float = 60) -> str:
    return subprocess.run(
        [*GRIDNODE, "--data-dir", str(data_dir), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    ).stdout.strip()


def start(data_dir: Path, log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    out = log.open("wb")
    proc = subprocess.Popen(
        [
            *GRIDNODE,
            "--data-dir",
            str(data_dir),
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            *args,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        listening = re.search(r"listening: (\S+)", text)
        if listening and "dashboard" in text:
            return proc, listening.group(1)
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


def run(
    root: Path, source: Path, address: str, timeout: float, spy: Path | None = None
) -> dict[str, float]:
    follower = root / "follower"
    shutil.rmtree(follower, ignore_errors=True)
    cli(follower, "init")
    procs = []
    try:
        src, addr = start(source, root / "source.log")
        procs.append(src)
        fol, _ = start(follower, root / "follower.log", "--bootstrap", addr)
        procs.append(fol)
        if spy is not None:  # a py-spy profile of the follower during the catch-up
            procs.append(
                subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "-r",
                        "100",
                        "-f",
                        "raw",
                        "-o",
                        str(spy),
                        "-p",
                        str(fol.pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        cpu0, _ = proc_stats(fol.pid)
        t0 = time.perf_counter()
        cli(follower, "db", "follow", address, "--wait", "--timeout", str(timeout), timeout=timeout)
        seconds = time.perf_counter() - t0
        cpu1, hwm = proc_stats(fol.pid)
        if spy is not None:
            procs[-1].send_signal(signal.SIGINT)
            procs[-1].wait(timeout=60)
        src_cpu, src_hwm = proc_stats(src.pid)
        digests = {cli(d, "db", "digest", address, timeout=300) for d in (source, follower)}
        assert len(digests) == 1, f"replicas differ: {digests}"
        return {
            "seconds": seconds,
            "follower_cpu_s": cpu1 - cpu0,
            "follower_peak_mb": hwm,
            "source_peak_mb": src_hwm,
            "source_cpu_s": src_cpu,
        }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2,000 entries, 1 repetition")
    parser.add_argument("-n", type=int, default=100_000, help="entries (default 100,000)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions (default 1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one catch-up")
    parser.add_argument("--reuse", type=Path, help="a directory that keeps the written source")
    parser.add_argument("--spy", type=Path, help="write a py-spy profile of the follower here")
    args = parser.parse_args()
    n, reps = (2_000, 1) if args.quick else (args.n, args.reps)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = args.reuse or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        source = root / "source"
        if not (source / "gridnode.toml").exists():
            cli(source, "init")
        t = time.perf_counter()
        address = prepare(source, n)
        print(f"# {n:,} events; source ready in {time.perf_counter() - t:.1f} s")
        print()
        print("| rep | seconds | entries/s | follower CPU s | follower peak RSS MB |")
        print("|---:|---:|---:|---:|---:|")
        for rep in range(reps):
            r = run(root, source, address, args.timeout, args.spy)
            print(
                f"| {rep + 1} | {r['seconds']:.2f} | {n / r['seconds']:,.0f} | "
                f"{r['follower_cpu_s']:.1f} | {r['follower_peak_mb']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
