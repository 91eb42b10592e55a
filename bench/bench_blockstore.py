"""Where file blocks live: the SQLite file, or a flat block directory beside it (issue 23).

Runs the node's own :class:`gridnode.files.store.FileStore` both ways over the same blocks:

- ``sqlite``: every block inline in the SQLite file (``inline_below`` past any block size);
- ``directory``: blocks of 4 KiB and more as files in ``DATA_DIR/blocks`` (the default).

For each: add ``--gib`` GiB of 1 MiB raw blocks (IPIP-499's chunk size) in batches of 64 (as
``gridnode add`` writes them), ``durability = "full"``; read every block back re-hashed, with
the page cache dropped for the store's files first (``posix_fadvise(DONTNEED)``: a cold read);
crash: a child process adding blocks is SIGKILLed mid-batch, the store reopened, SQLite's
integrity check run and every block acknowledged before the kill read back and re-hashed;
then gc of half the blocks (unpinned) and what the disk gets back. Prints one JSON line per
backend and a table. The data directories are removed at the end.

    .venv/bin/python bench/bench_blockstore.py --gib 10 --dir /tmp/bench-blockstore
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from crdt.ipld.cid import CID
from gridnode.files.store import FileStore
from gridnode.storage import SqliteFile

MIB = 1 << 20
BATCH = 64


def _block(seed: bytes, n: int) -> bytes:
    return n.to_bytes(8, "big") + seed[8:]


def _store(path: Path, backend: str) -> tuple[SqliteFile, FileStore]:
    sql = SqliteFile(path / "gridnode.sqlite", durability="full")
    inline = 1 << 40 if backend == "sqlite" else 4096
    return sql, FileStore(sql, path / "blocks", durability="full", inline_below=inline)


def _disk(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def _drop_cache(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def child(path: Path, backend: str, start: int) -> None:
    """Add blocks forever from number ``start``, printing each batch's last number once durable."""
    _sql, store = _store(path, backend)
    seed = os.urandom(MIB)
    n = start
    while True:
        batch = []
        for _ in range(BATCH):
            block = _block(seed, n)
            batch.append((CID.for_block(block, "raw"), block))
            n += 1
        store.put_blocks(batch)
        print(json.dumps({"acked": [str(c) for c, _b in batch]}), flush=True)


def run(path: Path, backend: str, gib: float) -> dict[str, object]:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    sql, store = _store(path, backend)
    seed = os.urandom(MIB)
    count = int(gib * 1024)
    cids: list[CID] = []
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        batch = []
        for n in range(first, min(first + BATCH, count)):
            block = _block(seed, n)
            batch.append((CID.for_block(block, "raw"), block))
        store.put_blocks(batch)
        cids.extend(c for c, _b in batch)
    add_seconds = time.perf_counter() - started
    total = count * MIB
    sql.close()
    _drop_cache(path)
    sql, store = _store(path, backend)
    started = time.perf_counter()
    read = 0
    for cid in cids:
        block = store.get(cid)
        assert block is not None
        read += len(block)
    read_seconds = time.perf_counter() - started
    disk_full = _disk(path)
    # gc: pin every other block, remove the rest.
    for cid in cids[::2]:
        store.tables.set_pin(str(cid), cid.bytes, False, 0.0)
    started = time.perf_counter()
    report = store.gc()
    gc_seconds = time.perf_counter() - started
    sql.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    disk_after_gc = _disk(path)
    sql.close()
    crash = crash_test(path, backend, count)
    result = {
        "backend": backend,
        "gib": gib,
        "add_mb_s": round(total / add_seconds / 1e6, 1),
        "read_cold_mb_s": round(read / read_seconds / 1e6, 1),
        "disk_bytes": disk_full,
        "gc_removed": report.blocks,
        "gc_seconds": round(gc_seconds, 2),
        "disk_after_gc": disk_after_gc,
        **crash,
    }
    shutil.rmtree(path, ignore_errors=True)
    return result


def run_interleaved(root: Path, gib: float) -> list[dict[str, object]]:
    """Both stores at once, a batch to one then a batch to the other (and likewise for the
    reads): on a machine shared with other work, both see the same load over time."""
    backends = ["sqlite", "directory"]
    stores = {}
    for backend in backends:
        path = root / backend
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        stores[backend] = _store(path, backend)
    seed = os.urandom(MIB)
    count = int(gib * 1024)
    spent = dict.fromkeys(backends, 0.0)
    cids: list[CID] = []
    for first in range(0, count, BATCH):
        batch = []
        for n in range(first, min(first + BATCH, count)):
            block = _block(seed, n)
            batch.append((CID.for_block(block, "raw"), block))
        cids.extend(c for c, _b in batch)
        order = backends if (first // BATCH) % 2 == 0 else backends[::-1]
        for backend in order:
            started = time.perf_counter()
            stores[backend][1].put_blocks(batch)
            spent[backend] += time.perf_counter() - started
    total = count * MIB
    for backend in backends:
        stores[backend][0].close()
        _drop_cache(root / backend)
        stores[backend] = _store(root / backend, backend)
    read_spent = dict.fromkeys(backends, 0.0)
    for first in range(0, len(cids), BATCH):
        for backend in backends:
            started = time.perf_counter()
            for cid in cids[first : first + BATCH]:
                assert stores[backend][1].get(cid) is not None
            read_spent[backend] += time.perf_counter() - started
    results = []
    for backend in backends:
        sql, store = stores[backend]
        disk_full = _disk(root / backend)
        for cid in cids[::2]:
            store.tables.set_pin(str(cid), cid.bytes, False, 0.0)
        started = time.perf_counter()
        report = store.gc()
        gc_seconds = time.perf_counter() - started
        sql.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        disk_after_gc = _disk(root / backend)
        sql.close()
        crash = crash_test(root / backend, backend, count)
        results.append(
            {
                "backend": backend,
                "gib": gib,
                "interleaved": True,
                "add_mb_s": round(total / spent[backend] / 1e6, 1),
                "read_cold_mb_s": round(total / read_spent[backend] / 1e6, 1),
                "disk_bytes": disk_full,
                "gc_removed": report.blocks,
                "gc_seconds": round(gc_seconds, 2),
                "disk_after_gc": disk_after_gc,
                **crash,
            }
        )
        shutil.rmtree(root / backend, ignore_errors=True)
    return results


def crash_test(path: Path, backend: str, start: int, rounds: int = 3) -> dict[str, object]:
    """SIGKILL a child adding blocks, ``rounds`` times at different moments; after each, reopen,
    check the file and read back every acknowledged block."""
    lost = corrupt = checked = 0
    integrity = "ok"
    for round_ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(path), backend, str(start + round_ * 10**6)],
            stdout=subprocess.PIPE,
            text=True,
        )
        acked: list[str] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 2.0 + round_ * 1.3
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked += json.loads(line)["acked"]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sql, store = _store(path, backend)
        result = sql.integrity_check()
        if result != "ok":
            integrity = result
        for text in acked:
            try:
                block = store.get(CID.parse(text))
            except Exception:
                corrupt += 1
                continue
            if block is None:
                lost += 1
            checked += 1
        sql.close()
    return {
        "crash_rounds": rounds,
        "crash_acked_checked": checked,
        "crash_lost": lost,
        "crash_corrupt": corrupt,
        "crash_integrity": integrity,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=10.0, help="GiB of 1 MiB blocks to add")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-blockstore"), help="where")
    parser.add_argument(
        "--backend",
        choices=["sqlite", "directory", "both", "both-reversed", "interleaved"],
        default="both",
        help="which store (both: sqlite then directory)",
    )
    args = parser.parse_args()
    if args.backend == "interleaved":
        for result in run_interleaved(args.dir, args.gib):
            print(json.dumps(result), flush=True)
        return
    backends = {"both": ["sqlite", "directory"], "both-reversed": ["directory", "sqlite"]}.get(
        args.backend, [args.backend]
    )
    for backend in backends:
        print(json.dumps(run(args.dir / backend, backend, args.gib)), flush=True)


if __name__ == "__main__":
    main()
