"""``gridnode add`` throughput (MB/s) and peak RSS for files of 100 MiB and 2 GiB (issue 23).

Each run is a real ``gridnode add FILE`` process on a fresh data directory (offline: no node
running, so the CLI writes the file store itself; ``--running`` also measures it through a
running node's API, the CLI sending batches of blocks to the node), default profile
(unixfs-v1-2025), ``durability = "full"``. The input is random bytes written once to a file
beside the data directory (in the page cache by the time it is read: what is measured is the
import and the store, not the disk reading the input). Peak RSS is the child's
``ru_maxrss``. Goals: >= 200 MB/s, RSS <= 100 MB at any size.

    .venv/bin/python bench/bench_files_add.py --sizes 100M,2G --dir /tmp/bench-files-add
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

MIB = 1 << 20
#: The ``gridnode`` command beside this Python (the virtual environment's).
GRIDNODE = str(Path(sys.executable).with_name("gridnode"))


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def _input(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    with path.open("wb") as out:
        left = size
        while left:
            n = min(left, 16 * MIB)
            out.write(os.urandom(n))
            left -= n


def _gridnode(data_dir: Path, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [GRIDNODE, "--data-dir", str(data_dir), "--log-level", "error", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,  # type: ignore[arg-type]
    )


def _hwm(pid: int) -> int | None:
    """The peak RSS (VmHWM) of a running process, MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def add_once(work: Path, file: Path, size: int, running: bool) -> dict[str, object]:
    data_dir = work / "node"
    shutil.rmtree(data_dir, ignore_errors=True)
    subprocess.run(
        [GRIDNODE, "--data-dir", str(data_dir), "init"],
        check=True,
        capture_output=True,
    )
    node = None
    if running:
        node = _gridnode(data_dir, "start", "--listen", "/ip4/127.0.0.1/tcp/0")
        deadline = time.monotonic() + 60
        while not (data_dir / "api").exists():
            if time.monotonic() > deadline:
                raise SystemExit("the node did not start")
            time.sleep(0.2)
    node_before = _hwm(node.pid) if node is not None else None
    # The command's start-up (Python, imports, opening the endpoint): an add of an empty file.
    empty = work / "empty"
    empty.write_bytes(b"")
    started = time.perf_counter()
    subprocess.run(
        [GRIDNODE, "--data-dir", str(data_dir), "--log-level", "error", "add", "-q", str(empty)],
        capture_output=True,
        check=True,
    )
    startup = time.perf_counter() - started
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(
        [
            GRIDNODE,
            "--data-dir",
            str(data_dir),
            "--log-level",
            "error",
            "add",
            "-q",
            str(file),
        ],
        capture_output=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode())
    node_rss = None
    if node is not None:
        node_rss = _hwm(node.pid)
        node.terminate()
        node.wait(60)
    result = {
        "size_mib": size // MIB,
        "mode": "running node" if running else "offline",
        "seconds": round(seconds, 2),
        "mb_s": round(size / seconds / 1e6, 1),
        "startup_seconds": round(startup, 2),
        # Less reliable on a loaded machine (the start-up varies as much as it lasts).
        "mb_s_after_startup": (
            round(size / (seconds - startup) / 1e6, 1) if seconds > 2 * startup else None
        ),
        # ru_maxrss of all children so far: the largest of any, so each run is measured in a
        # process of its own (this script runs one add per --sizes entry; see main()).
        "cli_peak_rss_mib": round(max(rss_kib, before) / 1024, 1),
        "node_peak_rss_mib": node_rss,
        "node_rss_before_mib": node_before,
        "cid": done.stdout.decode().strip(),
    }
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100M,2G", help="file sizes, comma-separated")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-files-add"), help="where")
    parser.add_argument("--running", action="store_true", help="also through a running node")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.one:
        size, mode, file = _size(args.one[0]), args.one[1], Path(args.one[2])
        print(json.dumps(add_once(args.dir, file, size, mode == "running")), flush=True)
        return
    for text in args.sizes.split(","):
        size = _size(text)
        file = args.dir / f"input-{text}"
        _input(file, size)
        for mode in ["offline", "running"] if args.running else ["offline"]:
            # One measuring process per run: ru_maxrss of children is a high-water mark.
            subprocess.run(
                [sys.executable, __file__, "--dir", str(args.dir), "--one", text, mode, str(file)],
                check=True,
            )
        file.unlink()
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
