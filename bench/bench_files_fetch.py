"""A file fetched over bitswap on loopback: gridnode -> gridnode and Kubo -> gridnode, in MB/s.

    python bench/bench_files_fetch.py                 # a 100 MiB file
    python bench/bench_files_fetch.py --size 16       # 16 MiB
    python bench/bench_files_fetch.py --quick         # 8 MiB, gridnode -> gridnode only
    python bench/bench_files_fetch.py --json          # one JSON object instead of the table
    python bench/bench_files_fetch.py --one --size 400  # one case: the client's RSS at 400 MiB

The file is random bytes. The client is a fresh gridnode in this process that fetches the whole
DAG with ``Node.fetch_file`` (gridnode/files/fetch.py: parallel batches of wants, every block
hashed against its CID, stored in the file store, pinned) from one connected peer:

- *gridnode -> gridnode*: the server is a gridnode in a process of its own holding the file as
  1 MiB raw leaves under one dag-pb root (the unixfs-v1-2025 shape), pinned. Measured twice:
  with the server's default per-peer pacing (bitswap answers 16 MiB/s a peer after a 32 MiB
  burst; the node's byte budget 32 MiB/s after 16 MiB: what protects a node from one greedy
  peer), and *unpaced* (both raised to 1 GiB/s in the server: what the code itself does);
- *2 gridnodes -> gridnode*: two such servers (unpaced) hold the file; the client asks each
  batch of wants of one in turn (the rest of all);
- *Kubo -> gridnode*: a real Kubo v0.22 (tests/interop/kubo.py) that added the file with its
  defaults (CIDv0, 256 KiB dag-pb leaves, 174 links a node).

Each fetch is checked: the file read back from the client's store is the file, byte for byte.
The timed span is the fetch alone (peers already connected). CPU is this process's (user +
system) over the span, and the serving gridnode's; RSS is this process's peak so far (it only
grows). 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.ipld.cid import CID
from crdt.ipld.dagpb import PBLink, PBNode, decode_node, encode_node
from crdt.unixfs.data import DataType, UnixFSData, decode_data, encode_data
from gridnode.node import open_node

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
QUIET = 1e9
MIB = 1024 * 1024
CHUNK = MIB


def _chunks(size: int, seed: int):
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def write_source(path: Path, size: int, seed: int) -> str:
    """The file on disk, and its sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for chunk in _chunks(size, seed):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def hold_file(repo: Any, size: int, seed: int) -> CID:
    """Put the file in ``repo``'s file store as 1 MiB raw leaves under dag-pb nodes of at most
    1024 links (one level for up to 1 GiB), pin it; its root."""
    files = repo.files
    level: list[tuple[CID, int, int]] = []
    batch: list[tuple[CID, bytes]] = []
    for chunk in _chunks(size, seed):
        cid = CID.for_block(chunk, codec="raw")
        batch.append((cid, chunk))
        level.append((cid, len(chunk), len(chunk)))
        if len(batch) >= 16:
            files.put_blocks(batch)
            batch = []
    if batch:
        files.put_blocks(batch)
    while len(level) > 1:
        up = []
        for start in range(0, len(level), 1024):
            group = level[start : start + 1024]
            meta = UnixFSData(
                DataType.File,
                filesize=sum(s for _c, s, _t in group),
                blocksizes=tuple(s for _c, s, _t in group),
            )
            node = encode_node(
                PBNode(tuple(PBLink(c, "", t) for c, _s, t in group), encode_data(meta))
            )
            cid = CID.for_block(node, codec="dag-pb")
            files.put_blocks([(cid, node)])
            up.append((cid, meta.filesize or 0, len(node) + sum(t for _c, _s, t in group)))
        level = up
    root = level[0][0]
    files.pin(root, "bench")
    return root


def file_sha256(files: Any, root: CID) -> tuple[str, int]:
    """Read the UnixFS file back from a file store (depth first): its sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    stack = [root]
    while stack:
        cid = stack.pop()
        block = files.get(cid)
        if block is None:
            raise SystemExit(f"missing block {cid}")
        if cid.codec == 0x55:
            digest.update(block)
            size += len(block)
            continue
        node = decode_node(block)
        own = decode_data(node.data or b"").data or b""
        digest.update(own)
        size += len(own)
        stack.extend(link.cid for link in reversed(node.links))
    return digest.hexdigest(), size


# -- the serving gridnode (a process of its own) ----------------------------------------------


def serve(data_dir: Path, size: int, seed: int, unpaced: bool) -> None:
    from gridnode.repo import Repo

    repo = Repo(data_dir)
    root = hold_file(repo, size, seed)
    repo.close()

    async def main() -> None:
        async with open_node(data_dir, listen=LOOPBACK, announce_interval=QUIET) as node:
            if unpaced:
                assert node.bitswap is not None
                from dataclasses import replace

                from gridnode.node.budget import Allowance

                node.bitswap.config = replace(
                    node.bitswap.config, rate=1024.0 * MIB, burst=1024.0 * MIB
                )
                node.budgets.sent = Allowance(1024.0 * MIB, 1024.0 * MIB)
            print(json.dumps({"addr": node.addrs[0], "peer_id": node.peer_id, "root": str(root)}))
            sys.stdout.flush()
            await trio.to_thread.run_sync(sys.stdin.readline)  # the client starts its fetch
            cpu = _cpu()
            await trio.to_thread.run_sync(sys.stdin.readline)  # and ends it
            print(json.dumps({"cpu_s": round(_cpu() - cpu, 2)}))
            sys.stdout.flush()
            await trio.to_thread.run_sync(sys.stdin.read)

    trio.run(main)


# -- the client ---------------------------------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def fetch_from(
    data_dir: Path,
    addrs: list[str],
    root: CID,
    expect: str,
    size: int,
    mark: Any = None,
) -> dict[str, Any]:
    async with open_node(data_dir, listen=LOOPBACK, announce_interval=QUIET) as node:
        peers = []
        for addr in addrs:
            peer = await node.connect(addr)
            if peer is None:
                raise SystemExit(f"cannot connect to {addr}")
            peers.append(peer)
        if mark is not None:
            mark()
        cpu = _cpu()
        began = time.perf_counter()
        progress = await node.fetch_file(root, peers, pin="fetched")
        seconds = time.perf_counter() - began
        cpu = _cpu() - cpu
        if mark is not None:
            mark()
        digest, got = await node.worker.run(file_sha256, node.repo.files, root)
    if (digest, got) != (expect, size):
        raise SystemExit(f"the fetched file differs: {got} bytes, sha256 {digest}")
    return {
        "seconds": round(seconds, 3),
        "mb_s": round(size / seconds / 1e6, 1),
        "blocks": progress.fetched_blocks,
        "bytes": progress.fetched_bytes,
        "cpu_s": round(cpu, 2),
        "rss_peak_mb": round(_rss_mb(), 1),
    }


def gridnode_case(
    tmp: Path, size: int, seed: int, expect: str, unpaced: bool, servers: int = 1
) -> dict[str, Any]:
    name = ("unpaced" if unpaced else "paced") + f"-{servers}"
    procs = []
    try:
        for i in range(servers):
            args = [sys.executable, __file__, "--serve", str(tmp / f"server-{name}-{i}")]
            args += ["--size-bytes", str(size), "--seed", str(seed)]
            args += ["--unpaced"] if unpaced else []
            procs.append(
                subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        ready = []
        for server in procs:
            assert server.stdout is not None
            ready.append(json.loads(server.stdout.readline()))

        def mark() -> None:
            for server in procs:
                assert server.stdin is not None
                server.stdin.write("\n")
                server.stdin.flush()

        row = trio.run(
            fetch_from,
            tmp / f"client-{name}",
            [r["addr"] for r in ready],
            CID.parse(ready[0]["root"]),
            expect,
            size,
            mark,
        )
        cpu = 0.0
        for server in procs:
            assert server.stdout is not None
            cpu += json.loads(server.stdout.readline())["cpu_s"]
        row["server_cpu_s"] = round(cpu, 2)
        return row
    finally:
        for server in procs:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def kubo_case(tmp: Path, source: Path, size: int, expect: str) -> dict[str, Any] | None:
    from tests.interop.kubo import KuboPeer, kubo_available

    if not kubo_available():
        return None
    with KuboPeer(tmp / "kubo") as kubo:
        cid = kubo.add_file(source, timeout=600)
        return trio.run(
            fetch_from, tmp / "client-kubo", [kubo.addrs[0]], CID.parse(cid), expect, size
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100, help="file size in MiB [100]")
    parser.add_argument("--quick", action="store_true", help="8 MiB, gridnode -> gridnode only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--one", action="store_true", help="only gridnode -> gridnode, paced (RSS at large sizes)"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size-bytes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=23, help=argparse.SUPPRESS)
    parser.add_argument("--unpaced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.size_bytes, args.seed, args.unpaced)
        return
    size = (8 if args.quick else args.size) * MIB
    results: dict[str, Any] = {
        "size_mib": size // MIB,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="bench-files-fetch-") as scratch:
        tmp = Path(scratch)
        source = tmp / "source.bin"
        expect = write_source(source, size, args.seed)
        results["gridnode -> gridnode (paced)"] = gridnode_case(tmp, size, args.seed, expect, False)
        if not args.one:
            results["gridnode -> gridnode (unpaced)"] = gridnode_case(
                tmp, size, args.seed, expect, True
            )
        if not args.quick and not args.one:
            results["2 gridnodes -> gridnode (unpaced)"] = gridnode_case(
                tmp, size, args.seed, expect, True, servers=2
            )
            results["Kubo -> gridnode"] = kubo_case(tmp, source, size, expect)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['size_mib']} MiB file over loopback; {results['machine']}")
    print(
        f"{'case':34} {'MB/s':>7} {'s':>7} {'blocks':>7} {'CPU s':>6} {'server CPU s':>12} "
        f"{'RSS MB':>7}"
    )
    for case, row in results.items():
        if not isinstance(row, dict):
            continue
        print(
            f"{case:34} {row['mb_s']:>7} {row['seconds']:>7} {row['blocks']:>7} "
            f"{row['cpu_s']:>6} {row.get('server_cpu_s', '-'):>12} {row['rss_peak_mb']:>7}"
        )


if __name__ == "__main__":
    main()
