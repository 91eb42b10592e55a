"""Catch-up and gossip latency over QUIC v1 against TCP, two processes on loopback (issue 22,
item 4).

    python bench/bench_quic.py                  # 10,000 entries, 3 catch-ups and 50 writes each way
    python bench/bench_quic.py --quick          # 1,000 entries, 1 catch-up, 10 writes (smoke run)
    python bench/bench_quic.py --throughput     # one 4 MB stream per transport, two hosts

A source process (this file with ``--source``) holds one public ``events`` database of ``-n``
~300-byte entries and listens on TCP and QUIC on 127.0.0.1. The bench process runs the
follower. For each round and each transport (alternating, so that a shared machine's load falls
on both alike):

1. catch-up: a fresh follower data dir that knows only the manifest starts, listening on that
   transport only, with the source's address over that transport as its bootstrap; the time from
   ``open_node`` until it holds all ``n`` entries (its entry count, polled every 10 ms).
2. gossip latency (the first round only): ``--writes`` writes on the source, one every 0.2 s,
   each asked for over the source's stdin; the time from asking until the follower's entry count
   covers it (polled every 2 ms). Asking costs the same on both transports (a pipe and the
   source's own write); the difference is the network's.

``--throughput``: two bare hosts in this process, one stream each way of the transports: write
4 MB, close, read back the count the other side received; MB/s, twice per transport.

The connection's transport is checked (a QUIC follower must not have fallen back to TCP). The
machine may be shared: compare the two transports only within one run (the ratio), as printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridnode.node import open_node
from gridnode.repo import Repo

LISTEN = {
    "tcp": ["/ip4/127.0.0.1/tcp/0"],
    "quic": ["/ip4/127.0.0.1/udp/0/quic-v1"],
}


def prepare(root: Path, n: int) -> tuple[Path, str, Any]:
    """The source's data dir with ``n`` entries; the database address and manifest."""
    data_dir = root / "source"
    with Repo(data_dir) as repo:
        db = repo.create_database("bench", "events", public=True)
        for first in range(0, n, 1000):
            db.write_many(
                [
                    {"op": "add", "value": {"n": i, "text": "x" * 200, "tags": ["bench", "quic"]}}
                    for i in range(first, min(n, first + 1000))
                ]
            )
        return data_dir, db.address, db.manifest


async def source(data_dir: Path, address: str) -> None:
    """The source node: prints its addresses, then writes one entry per ``write`` line on stdin
    and answers ``ok`` (``quit`` or EOF: stop)."""
    # Its redials of followers that have gone are expected: not on the bench's terminal.
    logging.getLogger("gridnode").setLevel(logging.ERROR)
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with open_node(
        data_dir, listen=LISTEN["tcp"] + LISTEN["quic"], announce_interval=1.0
    ) as node:
        print(json.dumps(node.addrs), flush=True)
        buffer = b""
        count = 0
        while True:
            chunk = await stdin.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line == b"quit":
                    return
                count += 1
                await node.write(address, [{"op": "add", "value": {"write": count}}])


def transport_of(node: Any, peer_id: str) -> str:
    from libp2p.peer.id import ID

    connections = node.host._host.get_network().connections[ID.from_base58(peer_id)]
    kind = type(connections[0].muxed_conn).__name__
    return "quic" if kind == "QUICConnection" else "tcp"


async def count_of(node: Any, address: str) -> int:
    n: int = await node.read(address, len)
    return n


async def follow(
    root: Path,
    tag: str,
    manifest: Any,
    address: str,
    transport: str,
    bootstrap: str,
    n: int,
    writes: int,
    process: trio.Process | None,
) -> tuple[float, list[float]]:
    data_dir = root / f"follower-{tag}"
    with Repo(data_dir) as repo:
        repo.add_database(manifest)
    source_id = bootstrap.rsplit("/p2p/", 1)[1]
    started = time.perf_counter()
    latencies: list[float] = []
    async with open_node(
        data_dir, listen=LISTEN[transport], bootstrap=[bootstrap], announce_interval=1.0
    ) as node:
        while await count_of(node, address) < n:
            await trio.sleep(0.01)
        catch_up = time.perf_counter() - started
        used = transport_of(node, source_id)
        if used != transport:
            raise SystemExit(f"the {transport} follower is connected over {used}")
        if process is not None and writes:
            assert process.stdin is not None
            held = await count_of(node, address)
            for _ in range(writes):
                await trio.sleep(0.2)
                asked = time.perf_counter()
                await process.stdin.send_all(b"write\n")
                held += 1
                with trio.fail_after(30):
                    while await count_of(node, address) < held:
                        await trio.sleep(0.002)
                latencies.append(time.perf_counter() - asked)
    shutil.rmtree(data_dir, ignore_errors=True)
    return catch_up, latencies


async def throughput(size: int = 4_000_000) -> None:
    from gridnode.net import open_host

    sink_protocol = "/gridnode-bench/sink/1.0.0"

    async def sink(stream: Any) -> None:
        received = 0
        while chunk := await stream.read(65536):
            received += len(chunk)
        await stream.write(str(received).encode())

    for transport in ("tcp", "quic", "tcp", "quic"):
        async with (
            open_host(os.urandom(32), LISTEN[transport]) as a,
            open_host(os.urandom(32), LISTEN[transport]) as b,
        ):
            b.set_stream_handler(sink_protocol, sink)
            await a.connect(b.addrs[0])
            stream = await a.open_stream(b.peer_id, sink_protocol)
            started = time.perf_counter()
            await stream.write(b"x" * size)
            await stream.close_write()
            answer = await stream.read(100)
            seconds = time.perf_counter() - started
            assert answer == str(size).encode(), answer
            print(
                f"{transport:>4}: {size / seconds / 1e6:.1f} MB/s ({size} bytes in {seconds:.2f} s)"
            )


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
        f"max {max(values) * 1000:.1f} ms (n={len(values)})"
    )


async def bench(args: argparse.Namespace) -> None:
    # Each follower learns the earlier (stopped) ones from the source's peer records and redials
    # them: expected, and not for the bench's output.
    logging.getLogger("gridnode").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="bench-quic-", dir=os.environ.get("BENCH_TMP")))
    try:
        t0 = time.perf_counter()
        data_dir, address, manifest = prepare(root, args.n)
        print(f"prepared {args.n} entries in {time.perf_counter() - t0:.1f} s", flush=True)
        command = [sys.executable, __file__, "--source", str(data_dir), "--address", address]
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            line = b""
            with trio.fail_after(60):
                while not line.endswith(b"\n"):
                    chunk = await process.stdout.receive_some(65536)
                    if not chunk:
                        raise SystemExit("the source process exited")
                    line += chunk
            addrs = json.loads(line)
            by_transport = {
                "quic": next(a for a in addrs if "/quic-v1/" in a),
                "tcp": next(a for a in addrs if "/tcp/" in a),
            }
            catch_ups: dict[str, list[float]] = {"tcp": [], "quic": []}
            gossip: dict[str, list[float]] = {"tcp": [], "quic": []}
            for round_ in range(args.rounds):
                order = ["tcp", "quic"] if round_ % 2 == 0 else ["quic", "tcp"]
                for transport in order:
                    writes = args.writes if round_ == 0 else 0
                    seconds, latencies = await follow(
                        root,
                        f"{transport}-{round_}",
                        manifest,
                        address,
                        transport,
                        by_transport[transport],
                        args.n,
                        writes,
                        process,
                    )
                    catch_ups[transport].append(seconds)
                    gossip[transport].extend(latencies)
                    print(
                        f"round {round_} {transport}: catch-up of {args.n} entries "
                        f"{seconds:.2f} s ({args.n / seconds:.0f} entries/s)",
                        flush=True,
                    )
            print()
            for transport in ("tcp", "quic"):
                values = catch_ups[transport]
                print(
                    f"{transport:>4} catch-up: median {statistics.median(values):.2f} s "
                    f"(runs: {', '.join(f'{v:.2f}' for v in values)})"
                )
                if gossip[transport]:
                    print(f"{transport:>4} gossip latency: {summary(gossip[transport])}")
            ratio = statistics.median(catch_ups["quic"]) / statistics.median(catch_ups["tcp"])
            print(f"catch-up time, QUIC / TCP: {ratio:.2f}")
            if gossip["tcp"] and gossip["quic"]:
                g = statistics.median(gossip["quic"]) / statistics.median(gossip["tcp"])
                print(f"gossip latency (median), QUIC / TCP: {g:.2f}")
        finally:
            if process.stdin is not None:
                with trio.move_on_after(1):
                    await process.stdin.send_all(b"quit\n")
            with trio.move_on_after(15):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="entries to catch up on")
    parser.add_argument("--rounds", type=int, default=3, help="catch-ups per transport")
    parser.add_argument("--writes", type=int, default=50, help="gossip latency samples each")
    parser.add_argument("--quick", action="store_true", help="1,000 entries, 1 round, 10 writes")
    parser.add_argument(
        "--throughput", action="store_true", help="one 4 MB stream per transport, two hosts"
    )
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.source is not None:
        trio.run(source, args.source, args.address)
        return
    if args.throughput:
        trio.run(throughput)
        return
    if args.quick:
        args.n, args.rounds, args.writes = 1_000, 1, 10
    trio.run(bench, args)


if __name__ == "__main__":
    main()
