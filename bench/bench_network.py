"""Propagation through a network of separate ``gridnode start`` processes on loopback (issue 21,
item 5): how long a write on one node takes to reach every node, what it costs the network in
CPU, what the network costs idle, and how long the nodes take to stop.

    python bench/bench_network.py                          # 10 nodes, 2 writes/s (quick)
    python bench/bench_network.py --nodes 30 --rate 0.27 --writes 20
    python bench/bench_network.py --nodes 30 --rate 20 --writes 200
    GRIDNODE_SRC=/path/to/other/checkout python bench/bench_network.py   # the same, older code

Node i > 0 is bootstrapped from one or two earlier nodes (chosen at random, ``--seed``), and
keeps ``--target-peers`` (8, the config's default) by peer exchange, so nodes have 8-20 peers. Node 0
creates one keyvalue database, every other node follows it. Then:

1. idle: the nodes' CPU (utime + stime from /proc) over ``--idle`` seconds, nothing polled;
2. polling only: the same while the bench polls every node's API (``GET /db/{db}``, the entry
   count) every ``--poll`` seconds, the baseline the writes' CPU is counted above;
3. writes: ``--writes`` puts on node 0 through its API at ``--rate`` a second (each write's time
   is taken when its request returns); every node is polled until it holds them all, or
   ``--settle`` seconds after the last. A write has reached a node when the node's entry count
   covers it (one writer: the log is a chain, and a node joins an entry only after its parents,
   so N entries held are the first N writes). The figures: per write, the time until all nodes
   hold it (median, p95, max) and until the median node does; CPU above the polling baseline,
   summed over the nodes, per write;
4. shutdown under load: writes go on at the same rate while every node is sent SIGTERM; the
   time until each exits (SIGKILL after ``--kill-after`` seconds), and what their logs hold:
   tracebacks, failed pulls ("peer ID not found", time limits).

The machine this runs on may be shared: the figures of two code versions compare only when run
in the same minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(os.environ.get("GRIDNODE_SRC") or Path(__file__).resolve().parents[1])
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    index: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    addr: str = ""
    url: str = ""
    token: str = ""
    #: When the node's entry count first reached k (index k - 1).
    reached: list[float] = field(default_factory=list)
    #: Polls that failed (the API did not answer).
    poll_errors: int = 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def total_cpu(procs: list[Proc]) -> float:
    return sum(cpu_seconds(p.process.pid) for p in procs)


def gridnode_command(data_dir: Path, *args: str) -> list[str]:
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from gridnode.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", code, str(ROOT), "--data-dir", str(data_dir), *args]


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on 127.0.0.1 now (bound at once, so all different)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


def make_key(data_dir: Path) -> str:
    """Write a new node key into ``data_dir``; the peer id the node will have."""
    sys.path.insert(0, str(ROOT))
    from gridnode.keystore import KEY_FILE, create_key
    from gridnode.net.identity import peer_id_from_seed

    seed = os.urandom(32)
    create_key(data_dir / KEY_FILE, seed)
    return peer_id_from_seed(seed)


def launch_node(
    base: Path, index: int, port: int, bootstrap: list[str], log_level: str, target_peers: int
) -> Proc:
    data_dir = base / f"n{index:02d}"
    peer_id = make_key(data_dir)
    log_path = base / f"n{index:02d}.log"
    args = ["--log-level", log_level, "start", "--listen", f"/ip4/127.0.0.1/tcp/{port}"]
    for addr in bootstrap:
        args += ["--bootstrap", addr]
    process = subprocess.Popen(
        gridnode_command(data_dir, *args),
        stdout=subprocess.PIPE,
        stderr=log_path.open("wb"),
        stdin=subprocess.DEVNULL,
        env={**os.environ, "GRIDNODE_TARGET_PEERS": str(target_peers)},
    )
    return Proc(index, data_dir, process, log_path, addr=f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}")


def wait_started(proc: Proc) -> None:
    """Read the node's start-up lines up to its API's URL."""
    stdout = proc.process.stdout
    assert stdout is not None
    for raw in stdout:
        line = raw.decode().strip()
        if line.startswith("api:"):
            proc.url = line.split(None, 1)[1]
            break
    if not proc.url:
        raise SystemExit(f"node {proc.index} did not start; see {proc.log_path}")
    proc.token = (proc.data_dir / "api.token").read_text().strip()
    # Nothing more is printed; drain stdout anyway so that the node never blocks on it.
    threading.Thread(target=stdout.read, daemon=True).start()


class Api:
    """One kept-alive HTTP connection to a node's API."""

    def __init__(self, proc: Proc, timeout: float = 30.0) -> None:
        parts = urlsplit(proc.url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._auth = f"Bearer {proc.token}"
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
            headers = {"Authorization": self._auth, "Content-Type": "application/json"}
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
                continue
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {payload[:200]!r}")
            return json.loads(payload) if payload else None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def db_path(address: str) -> str:
    return "/db/" + quote(address, safe="")


def start_network(
    base: Path, nodes: int, seed: int, log_level: str, target_peers: int
) -> list[Proc]:
    """All nodes at once, each on a port chosen beforehand and bootstrapped from one or two
    earlier ones by address alone (a node not up yet is dialled again, with backoff)."""
    rng = random.Random(seed)
    ports = free_ports(nodes)
    procs: list[Proc] = []
    for i, port in enumerate(ports):
        earlier = [p.addr for p in procs]
        bootstrap = rng.sample(earlier, min(len(earlier), rng.choice((1, 2))))
        procs.append(launch_node(base, i, port, bootstrap, log_level, target_peers))
    for proc in procs:
        wait_started(proc)
    return procs


def follow_everywhere(procs: list[Proc], address: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(procs[1:])
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} nodes could not follow {address}")
        still = []
        for proc in pending:
            api = Api(proc)
            try:
                api.request("POST", "/follow", {"address": address})
            except (RuntimeError, OSError):
                still.append(proc)
            finally:
                api.close()
        pending = still
        if pending:
            time.sleep(0.5)


def measure_cpu(procs: list[Proc], seconds: float) -> float:
    """CPU seconds the nodes used (summed) over ``seconds`` of wall time."""
    before = total_cpu(procs)
    time.sleep(seconds)
    return total_cpu(procs) - before


class Poller:
    """A thread per node polling its entry count; records when each count was first seen."""

    def __init__(self, procs: list[Proc], address: str, interval: float) -> None:
        self._procs = procs
        self._path = db_path(address) + "?digest=false"
        self._interval = interval
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(p,), daemon=True) for p in procs]

    def __enter__(self) -> Poller:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _poll(self, proc: Proc) -> None:
        api = Api(proc)
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                info = api.request("GET", self._path)
            except (RuntimeError, OSError, http.client.HTTPException):
                proc.poll_errors += 1
            else:
                now = time.monotonic()
                assert isinstance(info, dict)
                while len(proc.reached) < int(info["entries"]):
                    proc.reached.append(now)
            next_at += self._interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        api.close()


def write_at(api: Api, address: str, rate: float, count: int, start_key: int) -> list[float]:
    """``count`` puts at ``rate`` a second (as near as the API allows); when each returned."""
    done: list[float] = []
    interval = 1.0 / rate
    next_at = time.monotonic()
    for i in range(count):
        wait = next_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        key = start_key + i
        api.request(
            "POST", db_path(address) + "/ops", [{"op": "put", "key": f"k{key:06d}", "value": key}]
        )
        done.append(time.monotonic())
        next_at += interval
    return done


COUNTED = (
    "sync_pulls",
    "sync_failures",
    "gossip_messages_received",
    "sync_pulls_saved",
    "sync_pulls_unrouted",
)


def counters(procs: list[Proc]) -> dict[str, float]:
    """``gridnode_<name>_total`` of :data:`COUNTED`, summed over the nodes (``GET /metrics``)."""
    sums = dict.fromkeys(COUNTED, 0.0)
    for proc in procs:
        parts = urlsplit(proc.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {proc.token}"})
            text = conn.getresponse().read().decode()
        except (OSError, http.client.HTTPException):
            continue
        finally:
            conn.close()
        for line in text.splitlines():
            for name in COUNTED:
                if line.startswith(f"gridnode_{name}_total "):
                    sums[name] += float(line.split()[-1])
    return sums


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def log_counts(procs: list[Proc]) -> dict[str, int]:
    patterns = {
        "pull failed: peer ID not found": re.compile(
            r"sync of .* failed: .*peer ID not found", re.I
        ),
        "pull failed: time limit": re.compile(r"sync of .* failed: .*TooSlowError"),
        "pull failed: other": re.compile(r"sync of .* failed"),
        "tracebacks": re.compile(r"^Traceback"),
        "'Nursery is closed'": re.compile(r"Nursery is closed to new arrivals"),
    }
    counts = dict.fromkeys(patterns, 0)
    for proc in procs:
        try:
            text = proc.log_path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            for name, pattern in patterns.items():
                if pattern.search(line):
                    counts[name] += 1
    counts["pull failed: other"] -= (
        counts["pull failed: peer ID not found"] + counts["pull failed: time limit"]
    )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10, help="gridnode start processes")
    parser.add_argument("--rate", type=float, default=2.0, help="writes a second on node 0")
    parser.add_argument("--writes", type=int, default=20, help="writes timed")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls of a node")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument(
        "--settle", type=float, default=60.0, help="seconds to wait after the last write"
    )
    parser.add_argument(
        "--kill-after", type=float, default=30.0, help="SIGKILL this long after SIGTERM"
    )
    parser.add_argument(
        "--target-peers",
        type=int,
        default=8,
        help="the nodes' target_peers (8, the default config's; fewer: a sparser network, as "
        "a larger one is for each node)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the bootstrap choice")
    parser.add_argument("--log-level", default="info", help="the nodes' --log-level")
    parser.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-network-"))
    procs: list[Proc] = []
    try:
        started = time.monotonic()
        procs = start_network(base, args.nodes, args.seed, args.log_level, args.target_peers)
        print(f"code: {ROOT}")
        print(f"{args.nodes} nodes started in {time.monotonic() - started:.1f} s; logs in {base}")
        writer = Api(procs[0])
        created = writer.request("POST", "/db", {"name": "bench", "type": "keyvalue"})
        assert isinstance(created, dict)
        address = str(created["address"])
        writer.request(
            "POST", db_path(address) + "/ops", [{"op": "put", "key": "first", "value": 0}]
        )
        follow_everywhere(procs, address)
        time.sleep(3.0)  # let the follows' first pulls and the mesh settle
        peers = []
        for proc in procs:
            api = Api(proc)
            answer = api.request("GET", "/peers")
            api.close()
            assert isinstance(answer, dict)
            peers.append(len(answer.get("peers", answer.get("connected", []))))
        print(
            f"peers per node: min {min(peers)}, median {statistics.median(peers):.0f}, max {max(peers)}"
        )

        idle = measure_cpu(procs, args.idle)
        idle_per_node = idle / args.idle / args.nodes * 100
        print(
            f"idle CPU: {idle / args.idle:.2f} cores in all, {idle_per_node:.2f}% of a core per node"
        )

        with Poller(procs, address, args.poll):
            time.sleep(2.0)
            poll_only = measure_cpu(procs, min(args.idle, 10.0)) / min(args.idle, 10.0)
            print(f"CPU while polled, no writes: {poll_only:.2f} cores in all")
            counted_before = counters(procs)
            baseline = {p.index: len(p.reached) for p in procs}
            cpu_before = total_cpu(procs)
            t0 = time.monotonic()
            written = write_at(writer, address, args.rate, args.writes, 0)
            achieved = (args.writes - 1) / (written[-1] - written[0]) if args.writes > 1 else 0.0
            target = {p.index: baseline[p.index] + args.writes for p in procs}
            deadline = written[-1] + args.settle
            while time.monotonic() < deadline and any(
                len(p.reached) < target[p.index] for p in procs
            ):
                time.sleep(0.05)
            t1 = time.monotonic()
            cpu = total_cpu(procs) - cpu_before
            counted_after = counters(procs)
        above = cpu - poll_only * (t1 - t0)

        to_all: list[float] = []
        to_half: list[float] = []
        missing = 0
        for k, at in enumerate(written):
            times = []
            for proc in procs:
                n = baseline[proc.index] + k
                times.append(proc.reached[n] - at if len(proc.reached) > n else float("inf"))
            times.sort()
            to_half.append(times[len(times) // 2])
            if times[-1] == float("inf"):
                missing += 1
            to_all.append(times[-1])
        reached = [t for t in to_all if t != float("inf")]
        print(f"writes: {args.writes} asked at {args.rate}/s, achieved {achieved:.2f}/s")
        if reached:
            print(
                f"to all {args.nodes} nodes: median {statistics.median(to_all):.2f} s, "
                f"p95 {percentile(to_all, 0.95):.2f} s, max {max(to_all):.2f} s "
                f"(poll interval {args.poll} s)"
            )
        print(f"to half the nodes: median {statistics.median(to_half):.2f} s")
        print(
            f"writes that had not reached all nodes {args.settle:.0f} s after the last: {missing}"
        )
        print(
            f"CPU during the writes: {cpu:.2f} s; above the polling baseline: "
            f"{above:.2f} s, {above / args.writes * 1000:.0f} ms per write (summed over the nodes)"
        )

        print(
            "during the writes, summed over the nodes: "
            + ", ".join(
                f"{name} {counted_after[name] - counted_before[name]:.0f}" for name in COUNTED
            )
            + f" ({(counted_after['sync_pulls'] - counted_before['sync_pulls']) / args.writes:.1f}"
            " pulls per write)"
        )

        # Shutdown under load: writes go on while every node is told to stop.
        load = threading.Thread(
            target=lambda: _ignore_errors(
                write_at, writer, address, max(args.rate, 1.0), int(max(args.rate, 1.0) * 5), 10**5
            ),
            daemon=True,
        )
        load.start()
        time.sleep(2.0)
        stop_at = time.monotonic()
        for proc in procs:
            proc.process.send_signal(signal.SIGTERM)
        exits: list[float] = []
        killed = 0
        codes = []
        for proc in procs:
            remaining = stop_at + args.kill_after - time.monotonic()
            try:
                proc.process.wait(timeout=max(0.0, remaining))
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
                killed += 1
                continue
            exits.append(time.monotonic() - stop_at)
            codes.append(proc.process.returncode)
        writer.close()
        print(
            f"SIGTERM under load: {len(exits)} exited"
            + (
                f", slowest {max(exits):.1f} s, median {statistics.median(exits):.1f} s"
                if exits
                else ""
            )
            + f"; {killed} killed after {args.kill_after:.0f} s; exit statuses {sorted(set(codes))}"
        )
        for name, count in log_counts(procs).items():
            print(f"logs: {name}: {count}")
    finally:
        for proc in procs:
            if proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait()
        if not args.keep:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


def _ignore_errors(function: object, *args: object) -> None:
    with contextlib.suppress(Exception):
        function(*args)  # type: ignore[operator]


if __name__ == "__main__":
    main()
