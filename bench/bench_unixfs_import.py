"""The pure UnixFS importer alone (crdt/unixfs/importer.py): MB/s and peak RSS, no storage.

    python bench/bench_unixfs_import.py              # 256 MiB and 2 GiB, both profiles
    python bench/bench_unixfs_import.py --sizes 64   # other sizes, in MiB
    python bench/bench_unixfs_import.py --quick      # 8 MiB (CI smoke run)
    python bench/bench_unixfs_import.py --json

Each run imports ``size`` bytes written in 1 MiB pieces from one reused buffer of pseudo-random
bytes (generated once, so the input costs nothing per MiB), dropping the blocks the importer
returns: what is measured is chunking, hashing (sha2-256 of every block), dag-pb and UnixFS
encoding and the balanced layout. Each size runs in a fresh subprocess so its peak RSS
(``ru_maxrss``) is its own. ``gridnode add`` adds reading the file and storing the blocks
(bench/bench_files_add.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MIB = 1 << 20
PROFILES = ("unixfs-v1-2025", "unixfs-v0-2015")


def one(size_mib: int, profile: str) -> dict[str, object]:
    from crdt.unixfs.importer import FileImporter

    piece = os.urandom(MIB)
    importer = FileImporter(profile)
    blocks = 0
    start = time.perf_counter()
    cpu = time.process_time()
    for _ in range(size_mib):
        blocks += len(importer.write(piece))
    root = importer.close()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    blocks += len(root.blocks)
    assert root.size == size_mib * MIB
    return {
        "profile": profile,
        "mib": size_mib,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "mb_per_s": round(size_mib * MIB / seconds / 1e6, 1),
        "blocks": blocks,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 2048], help="sizes in MiB")
    parser.add_argument("--quick", action="store_true", help="8 MiB only (checks it works)")
    parser.add_argument("--json", action="store_true", help="one JSON object, no table")
    parser.add_argument("--one", nargs=2, metavar=("MIB", "PROFILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1])))
        return
    sizes = [8] if args.quick else args.sizes
    rows = []
    for size in sizes:
        for profile in PROFILES:
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(size), profile],
                capture_output=True,
                text=True,
                check=True,
                timeout=3600,
            )
            rows.append(json.loads(done.stdout))
    if args.json:
        print(json.dumps({"runs": rows}))
        return
    print("| profile | MiB | seconds | CPU s | MB/s | blocks | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['profile']} | {r['mib']} | {r['seconds']} | {r['cpu_seconds']} | "
            f"{r['mb_per_s']} | {r['blocks']} | {r['peak_rss_mb']} |"
        )


if __name__ == "__main__":
    main()
