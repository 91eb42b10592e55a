"""Writes as users make them: single puts through the local API of a running ``gridnode start``.

    python bench/bench_writes.py                      # 16,000 puts, 1 and 8 clients, full durability
    python bench/bench_writes.py --durability full,process
    python bench/bench_writes.py --quick              # 400 puts (CI smoke run)

Each measurement starts a fresh node process (``python -m gridnode.cli start``) on a fresh data
directory, creates one public keyvalue database through the API (``POST /db``), writes a warm-up
of 200 puts (not timed), then ``--n`` single puts (``POST /db/{db}/ops`` with one op each),
split between the clients. Each client is a thread holding one keep-alive HTTP/1.1 connection
and writes one at a time: it sends the next put only when the last was answered, so every
answer is a write acknowledged as durable (as the node's ``durability`` setting defines it).
The client's requests are prepared bytes on a raw socket, so the figure is the node's, not the
client's. The values are ~180 bytes of JSON, like bench/run.py's documents.

Reported per run: acknowledged writes/s, the node's CPU (user + system, from
``/proc/PID/stat``) per write, and the median and p99 latency of one write. The node's
``durability`` is written to its ``gridnode.toml`` (``full`` is the default and written as
nothing, so the bench also runs on code that does not know the key).

OrbitDB's single-put rate is bench/run.py's "durable writes, documents, 1 op per call" row
(``db.put`` without fsync); ``--orbitdb`` prints it beside when that side is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WARMUP = 200
TICKS = os.sysconf("SC_CLK_TCK")


def node_cpu(pid: int) -> float:
    """User + system seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_node(data_dir: Path, durability: str) -> tuple[subprocess.Popen[str], str, str]:
    """A ``gridnode start`` process on ``data_dir``; its API URL's host:port and token."""
    data_dir.mkdir(parents=True)
    if durability != "full":
        (data_dir / "gridnode.toml").write_text(f'durability = "{durability}"\n')
    env = dict(os.environ, GRIDNODE_MDNS="false")
    log = open(data_dir.parent / f"{data_dir.name}.log", "a")  # noqa: SIM115
    wrap = os.environ.get("BENCH_WRITES_WRAP", "").split()  # e.g. a profiler: "py-spy record ..."
    proc = subprocess.Popen(
        [*wrap, sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), "start",
         "--listen", "/ip4/127.0.0.1/tcp/0"],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("api:"):
            break
    else:
        raise SystemExit(f"the node did not start; see {log.name}")
    url = (data_dir / "api").read_text().strip()
    token = (data_dir / "api.token").read_text().strip()
    return proc, url.split("://", 1)[1].rstrip("/"), token


def stop_node(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT if os.environ.get("BENCH_WRITES_WRAP") else signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


class Connection:
    """One keep-alive HTTP/1.1 connection; :meth:`request` sends prepared bytes and returns
    the status and body of the answer."""

    def __init__(self, hostport: str) -> None:
        self.hostport = hostport
        self.connects = 0
        self._connect()

    def _connect(self) -> None:
        host, port = self.hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.connects += 1

    def request(self, data: bytes) -> tuple[int, bytes]:
        self.sock.sendall(data)
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, rest = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True  # hypercorn answers 1,000 requests per connection
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the node closed the connection")
            rest += chunk
        self.buffer = rest[length:]
        if close:
            self.sock.close()
            self._connect()
        return status, rest[:length]

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the node closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def http(hostport: str, token: str, method: str, path: str, body: Any = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def puts(hostport: str, token: str, address: str, first: int, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(first, first + count):
        value = {
            "n": i,
            "title": f"item {i}",
            "text": "".join(rng.choices(string.ascii_letters, k=100)),
            "tags": ["a", "b"],
        }
        out.append(http(hostport, token, "POST", f"/db/{address}/ops",
                        [{"op": "put", "key": f"k{i:08d}", "value": value}]))  # fmt: skip
    return out


def measure(durability: str, clients: int, n: int, work: Path) -> dict[str, Any]:
    data_dir = work / f"node-{durability}-{clients}"
    proc, hostport, token = start_node(data_dir, durability)
    try:
        conn = Connection(hostport)
        create = {"name": "bench", "type": "keyvalue", "public": True}
        status, body = conn.request(http(hostport, token, "POST", "/db", create))
        assert status in (200, 201), body
        address = json.loads(body)["address"].rsplit("/", 1)[-1]
        for data in puts(hostport, token, address, -WARMUP, WARMUP, 1):
            status, body = conn.request(data)
            assert status == 200, body
        per = [n // clients + (1 if c < n % clients else 0) for c in range(clients)]
        starts = [sum(per[:c]) for c in range(clients)]
        work_of = [puts(hostport, token, address, starts[c], per[c], 2 + c) for c in range(clients)]
        conns = [Connection(hostport) for _ in range(clients)]
        latencies: list[list[float]] = [[] for _ in range(clients)]
        failures: list[str] = []
        go = threading.Barrier(clients + 1)

        def client(c: int) -> None:
            mine, timer, conn_c, out = work_of[c], time.perf_counter, conns[c], latencies[c]
            go.wait()
            try:
                for data in mine:
                    began = timer()
                    status, body = conn_c.request(data)
                    out.append(timer() - began)
                    if status != 200:
                        failures.append(body.decode(errors="replace"))
                        return
            except Exception as exc:
                failures.append(repr(exc))

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for thread in threads:
            thread.start()
        cpu0 = node_cpu(proc.pid)
        go.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        cpu = node_cpu(proc.pid) - cpu0
        if failures:
            raise SystemExit(f"{len(failures)} writes failed: {failures[0][:500]}")
        conn.close()  # idle past the server's keep-alive timeout: a new one
        conn = Connection(hostport)
        status, body = conn.request(http(hostport, token, "GET", f"/db/{address}?digest=false"))
        entries = json.loads(body)["entries"]
        assert entries == n + WARMUP, (entries, n + WARMUP)
        for c in conns:
            c.close()
        conn.close()
    finally:
        stop_node(proc)
    every = sorted(x for lat in latencies for x in lat)
    return {
        "durability": durability,
        "clients": clients,
        "writes": n,
        "seconds": round(seconds, 3),
        "writes/s": round(n / seconds),
        "node CPU ms/write": round(cpu * 1000 / n, 3),
        "node CPU cores": round(cpu / seconds, 2),
        "median ms": round(statistics.median(every) * 1000, 2),
        "p99 ms": round(every[int(len(every) * 0.99)] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16_000, help="timed puts per run")
    parser.add_argument("--clients", default="1,8", help="comma-separated client counts")
    parser.add_argument("--durability", default="full", help="comma-separated: full, process")
    parser.add_argument("--runs", type=int, default=1, help="repetitions of every combination")
    parser.add_argument("--quick", action="store_true", help="400 puts, one run")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args()
    n = 400 if args.quick else args.n
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        for run in range(args.runs):
            for durability in args.durability.split(","):
                for clients in (int(c) for c in args.clients.split(",")):
                    row = measure(durability, clients, n, Path(tmp) / f"run{run}")
                    rows.append(row)
                    print(json.dumps(row) if args.json else row, flush=True)
    if not args.json:
        print("\n| durability | clients | writes/s | node CPU ms/write | median ms | p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['durability']} | {r['clients']} | {r['writes/s']:,} | "
                f"{r['node CPU ms/write']} | {r['median ms']} | {r['p99 ms']} |"
            )


if __name__ == "__main__":
    main()
