"""Whole-database CARs asked by clients that read nothing (issue 18, item 6): the node's memory
and the latency of an unrelated API call while they hang on. With ``--files`` (issue 23): the
gateway's throughput serving a UnixFS file, whole and with Range reads.

    python bench/bench_gateway.py                # a ~59 MiB database, 6 clients
    python bench/bench_gateway.py --mib 8 --clients 3
    GRIDNODE_SRC=/path/to/other/checkout python bench/bench_gateway.py   # the same, older code
    python bench/bench_gateway.py --files --mib 512   # a 512 MiB file (unixfs-v1-2025)

``--files`` adds a file of ``--mib`` MiB of pseudo-random bytes to the node's file store (the
importer's unixfs-v1-2025 profile: 1 MiB raw leaves, 1024 links a node), then runs the clients in
a separate process (so the node's RSS is its own, and the clients do not share its interpreter):
one whole GET; sequential 4 MiB Range reads through the file (a video player's buffering); 256
Range reads of 1 MiB at random offsets (seeks); 4 clients each GETting the whole file at once
(curl when installed, one kept-alive connection per mode; else Python's http.client). It prints
MB/s (10**6 bytes), latencies, and the node's RSS before and at its peak.

One process runs the node (open_node + its API, as ``gridnode start`` does) and the clients (raw
sockets that send ``GET /ipfs/{manifest}?format=car`` and never read), so its RSS growth is the
node's. It prints the RSS before and after the clients asked, the median and worst latency of
``GET /status`` (which calls the storage worker) and of a bare storage-worker call, idle and under
the clients, and the statuses the clients got.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("GRIDNODE_SRC") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from gridnode import api  # noqa: E402
from gridnode.node import open_node  # noqa: E402
from gridnode.repo import Repo  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build(data_dir: Path, mib: int) -> str:
    """A keyvalue database of about ``mib`` MiB: 512 KiB values, one entry each."""
    with Repo(data_dir) as repo:
        database = repo.create_database("big", "keyvalue")
        value = "x" * (512 * 1024)
        for i in range(mib * 2):
            database.write({"op": "put", "key": f"k{i:05d}", "value": f"{i:05d}{value}"})
        return database.address


def hang(url: str, path: str) -> tuple[socket.socket, list[bytes]]:
    """Ask ``path`` and read nothing but the first bytes (the status line), later."""
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    return sock, []


def timed_status(url: str, token: str) -> float:
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    start = time.perf_counter()
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    connection.request("GET", "/status", headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200, response.status
    return (time.perf_counter() - start) * 1000


async def main(mib: int, clients: int, hold: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "node"
        address = build(data_dir, mib)
        size = (data_dir / "gridnode.sqlite").stat().st_size / 2**20
        manifest = address.rsplit("/", 1)[1]
        async with (
            open_node(data_dir, listen=["/ip4/127.0.0.1/tcp/0"], announce_interval=3600) as node,
            api.serve_api(node, data_dir) as url,
        ):
            token = (data_dir / api.TOKEN_FILE).read_text().strip()

            async def sample(n: int) -> tuple[list[float], list[float]]:
                api_ms, worker_ms = [], []
                for _ in range(n):
                    api_ms.append(await trio.to_thread.run_sync(timed_status, url, token))
                    start = time.perf_counter()
                    await node.worker.run(lambda: None)
                    worker_ms.append((time.perf_counter() - start) * 1000)
                    await trio.sleep(0.05)
                return api_ms, worker_ms

            await sample(3)
            idle_api, idle_worker = await sample(20)
            before = rss_mib()
            socks = []
            for _ in range(clients):
                socks.append(
                    await trio.to_thread.run_sync(hang, url, f"/ipfs/{manifest}?format=car")
                )
            peak = before
            busy_api: list[float] = []
            busy_worker: list[float] = []
            deadline = trio.current_time() + hold
            while trio.current_time() < deadline:
                a, w = await sample(1)
                busy_api += a
                busy_worker += w
                peak = max(peak, rss_mib())
            held = rss_mib()
            statuses = []
            for sock, _ in socks:
                sock.settimeout(5)
                try:
                    first = sock.recv(64)
                    statuses.append(first.split(b"\r\n", 1)[0].decode("latin-1"))
                except OSError as exc:
                    statuses.append(f"({type(exc).__name__})")
                sock.close()

            def ms(values: list[float]) -> str:
                return f"median {statistics.median(values):.1f} ms, max {max(values):.1f} ms"

            print(f"code: {ROOT}")
            print(f"database: {mib * 2} entries, SQLite file {size:.0f} MiB; {clients} clients")
            print(
                f"RSS: {before:.0f} MiB before, peak {peak:.0f}, held {held:.0f} after {hold:.0f} s"
            )
            print(f"RSS growth: peak +{peak - before:.0f} MiB, held +{held - before:.0f} MiB")
            print(f"GET /status idle: {ms(idle_api)}; under the clients: {ms(busy_api)}")
            print(f"worker call idle: {ms(idle_worker)}; under the clients: {ms(busy_worker)}")
            print(f"clients got: {statuses}")


# -- --files: a UnixFS file through the gateway (issue 23) -----------------------------------------


def build_file(data_dir: Path, mib: int) -> tuple[str, str]:
    """A file of ``mib`` MiB (pseudo-random, seeded) in the node's file store, pinned; its CID
    and the SHA-256 of its bytes."""
    import hashlib
    import random

    from crdt.unixfs import FileImporter

    rng = random.Random(23)
    digest = hashlib.sha256()
    with Repo(data_dir) as repo:
        importer = FileImporter("unixfs-v1-2025")
        batch: list = []
        for _ in range(mib):
            data = rng.randbytes(1 << 20)
            digest.update(data)
            batch.extend(importer.write(data))
            if len(batch) >= 64:
                repo.files.put_blocks(batch)
                batch = []
        root = importer.close()
        batch.extend(root.blocks)
        repo.files.put_blocks(batch)
        repo.files.pin(root.cid, "bench")
        return str(root.cid), digest.hexdigest()


def client(url: str, cid: str, size: int, digest: str) -> None:
    """The client side (its own process): each mode's figures as one JSON line. The bytes are
    checked once (a whole GET, SHA-256); the timed requests are curl's when it is installed (a
    Python client reading and hashing caps the figures well below the node's), one curl per
    mode with its requests on one kept-alive connection, as a player's."""
    import hashlib
    import json
    import random
    import shutil
    import subprocess
    import threading

    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    path = f"/ipfs/{cid}?filename=video.mp4"
    curl = shutil.which("curl")

    def get(headers: dict[str, str] | None = None, check: object = None) -> int:
        connection = http.client.HTTPConnection(host, int(port), timeout=300)
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        assert response.status in (200, 206), (response.status, response.read()[:200])
        total = 0
        while chunk := response.read(1 << 20):
            total += len(chunk)
            if check is not None:
                check.update(chunk)  # type: ignore[attr-defined]
        connection.close()
        return total

    def ranges(spans: list[tuple[int, int]]) -> tuple[float, list[float]]:
        """Seconds for all the Range requests, and each one's milliseconds."""
        if curl is None:
            latencies = []
            start = time.perf_counter()
            for first, last in spans:
                t = time.perf_counter()
                get({"Range": f"bytes={first}-{last}"})
                latencies.append((time.perf_counter() - t) * 1000)
            return time.perf_counter() - start, latencies
        # Options apply up to the next "next" (which needs a URL after it): each entry has all.
        config = "next\n".join(
            f'url = "{url.rstrip("/")}{path}"\nrange = {first}-{last}\noutput = "/dev/null"\n'
            'silent\nfail\nwrite-out = "%{http_code} %{time_total}\\n"\n'
            for first, last in spans
        )
        start = time.perf_counter()
        done = subprocess.run(
            [curl, "-K", "-"],
            input=config,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - start
        lines = done.stdout.split()
        assert lines[0::2] == ["206"] * len(spans), lines[:4]
        return seconds, [float(t) * 1000 for t in lines[1::2]]

    def whole() -> int:
        if curl is None:
            return get()
        done = subprocess.run(
            [curl, "-s", "-f", "-o", "/dev/null", "-w", "%{size_download}", url.rstrip("/") + path],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(done.stdout)

    out: dict[str, object] = {"client": "curl" if curl else "python http.client"}
    sha = hashlib.sha256()
    assert get(check=sha) == size and sha.hexdigest() == digest, "the bytes differ"
    start = time.perf_counter()
    assert whole() == size
    seconds = time.perf_counter() - start
    out["whole"] = {"mb_s": size / seconds / 1e6, "seconds": seconds}

    window = 4 << 20
    spans = [(o, min(size, o + window) - 1) for o in range(0, size, window)]
    seconds, latencies = ranges(spans)
    out["sequential_4mib"] = {
        "mb_s": size / seconds / 1e6,
        "median_ms": statistics.median(latencies),
        "max_ms": max(latencies),
    }

    rng = random.Random(7)
    offsets = [rng.randrange(0, size - (1 << 20)) for _ in range(256)]
    seconds, latencies = ranges([(o, o + (1 << 20) - 1) for o in offsets])
    latencies.sort()
    out["random_1mib"] = {
        "requests_s": 256 / seconds,
        "mb_s": 256 * (1 << 20) / seconds / 1e6,
        "median_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
    }

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(whole())) for _ in range(4)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    assert results == [size] * 4, results
    out["four_clients"] = {"mb_s": 4 * size / seconds / 1e6, "seconds": seconds}
    print(json.dumps(out))


async def files_main(mib: int) -> None:
    import json
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "node"
        start = time.perf_counter()
        cid, digest = build_file(data_dir, mib)
        built = time.perf_counter() - start
        size = mib << 20
        async with (
            open_node(data_dir, listen=["/ip4/127.0.0.1/tcp/0"], announce_interval=3600) as node,
            api.serve_api(node, data_dir) as url,
        ):
            before = rss_mib()
            peak = before
            process = subprocess.Popen(
                [sys.executable, __file__, "--client", url, cid, str(size), digest],
                stdout=subprocess.PIPE,
                text=True,
            )
            while process.poll() is None:
                peak = max(peak, rss_mib())
                await trio.sleep(0.05)
            assert process.stdout is not None
            line = process.stdout.read().strip().splitlines()[-1]
            assert process.returncode == 0, process.returncode
            figures = json.loads(line)
            del node
        print(f"code: {ROOT}")
        print(f"file: {mib} MiB, {cid} (built and stored in {built:.1f} s)")
        print(f"client: {figures['client']}")
        whole = figures["whole"]
        print(f"whole GET, 1 client: {whole['mb_s']:.0f} MB/s")
        seq = figures["sequential_4mib"]
        print(
            f"sequential 4 MiB Range reads: {seq['mb_s']:.0f} MB/s, "
            f"median {seq['median_ms']:.1f} ms, max {seq['max_ms']:.1f} ms a request"
        )
        rnd = figures["random_1mib"]
        print(
            f"random 1 MiB Range reads: {rnd['requests_s']:.0f} requests/s ({rnd['mb_s']:.0f} MB/s), "
            f"median {rnd['median_ms']:.1f} ms, p99 {rnd['p99_ms']:.1f} ms"
        )
        four = figures["four_clients"]
        print(f"4 clients, whole GET each: {four['mb_s']:.0f} MB/s together")
        print(f"node RSS: {before:.0f} MiB before, peak {peak:.0f} MiB (+{peak - before:.0f})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=59)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--files", action="store_true", help="serve a UnixFS file (issue 23)")
    args = parser.parse_args()
    if args.files:
        trio.run(files_main, args.mib)
    else:
        trio.run(main, args.mib, args.clients, args.hold)
