"""Whole-database CARs asked by clients that read nothing (issue 18, item 6): the node's memory
and the latency of an unrelated API call while they hang on.

    python bench/bench_gateway.py                # a ~59 MiB database, 6 clients
    python bench/bench_gateway.py --mib 8 --clients 3
    GRIDNODE_SRC=/path/to/other/checkout python bench/bench_gateway.py   # the same, older code

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=59)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--hold", type=float, default=10.0)
    args = parser.parse_args()
    trio.run(main, args.mib, args.clients, args.hold)
