"""A gridnode node in a process of its own, driven over stdin/stdout by the fault tests.

Run (by the tests, possibly inside a network namespace with ``ip netns exec``):

    python node_proc.py DATA_DIR [--listen MA] [--bootstrap MA ...] [--announce SECONDS]
                                 [--follow ADDRESS] [--write-loop ADDRESS BATCH TAG]
                                 [--catalog ADDRESS ...]

It opens the node with :func:`gridnode.node.open_node` (as ``gridnode start`` does), then prints
``ready <peer id> <first listen address> <seconds from process start to ready> <seconds of them
spent importing gridnode>``. Commands, one a
line on stdin, each answered by one line on stdout:

    write ADDRESS N TAG   N puts (keys TAG-0 .. TAG-N-1) in one transaction -> ``ack TAG N``
                          (printed only after the write returned: durable), or ``error TAG <why>``
    state ADDRESS         -> ``state <entries> <digest hex> <missing parents>``
    peers                 -> ``peers <count>``
    follow ADDRESS        -> ``followed ADDRESS`` or ``error follow <why>``
    ops ADDRESS TAG JSON  the JSON array of op payloads written in one transaction ->
                          ``ack TAG N`` or ``error TAG <why>``
    replicating ADDRESS   -> ``replicating yes`` or ``replicating no``
    catalogs              -> ``catalogs <JSON>``: the followed catalogs as /status has them
    nat                   -> ``nat <JSON>``: relay service, relay client and hole punching, as
                          /status has them (``"nat"``)
    replicas ADDRESS      -> ``replicas <JSON>``: who holds it, as ``gridnode replicas --json``
    state? ADDRESS        as ``state``, or ``state none`` if the node does not replicate it
    stop                  -> ``stopping``, then a clean exit

``--write-loop ADDRESS BATCH TAG`` writes batches of keys ``TAG-0``, ``TAG-1``, ... without pause,
printing ``ack w <n>`` (the number of keys written so far) after each: a node written to while
it syncs.

Imported, this module is the tests' handle on such a process: :class:`NodeProc`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

STARTED = time.monotonic()
IMPORTS = 0.0
SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[2]


# -- the node side ----------------------------------------------------------------------------------


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _node_main(args: argparse.Namespace) -> None:
    import trio

    from crdt.errors import GridnodeError
    from gridnode.node import open_node

    async with open_node(
        Path(args.data_dir),
        listen=[args.listen],
        bootstrap=args.bootstrap,
        announce_interval=args.announce,
        catalogs=args.catalog or None,
    ) as node:
        if args.follow:
            with trio.fail_after(60):
                while True:
                    try:
                        await node.follow(args.follow, timeout=5)
                        break
                    except GridnodeError:
                        await trio.sleep(0.1)
        say(f"ready {node.peer_id} {node.addrs[0]} {time.monotonic() - STARTED:.3f} {IMPORTS:.3f}")

        async with trio.open_nursery() as nursery:
            if args.write_loop:
                address, batch, tag = (
                    args.write_loop[0],
                    int(args.write_loop[1]),
                    args.write_loop[2],
                )
                nursery.start_soon(_write_loop, node, address, batch, tag)
            stdin = trio.lowlevel.FdStream(os.dup(0))
            buffer = b""
            while True:
                data = await stdin.receive_some(65536)
                if not data:
                    break
                buffer += data
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    words = raw.decode().split()
                    if words == ["stop"]:
                        say("stopping")
                        nursery.cancel_scope.cancel()
                        return
                    nursery.start_soon(_command, node, words)


async def _write_loop(node, address: str, batch: int, tag: str) -> None:
    seq = 0
    while True:
        await node.write(
            address,
            [{"op": "put", "key": f"{tag}-{seq + i}", "value": seq + i} for i in range(batch)],
        )
        seq += batch
        say(f"ack w {seq}")


async def _command(node, words: list[str]) -> None:
    from crdt.errors import GridnodeError

    verb = words[0] if words else ""
    try:
        if verb == "write":
            address, count, tag = words[1], int(words[2]), words[3]
            try:
                await node.write(
                    address, [{"op": "put", "key": f"{tag}-{i}", "value": i} for i in range(count)]
                )
            except GridnodeError as exc:
                say(f"error {tag} {type(exc).__name__}: {exc}")
                return
            say(f"ack {tag} {count}")
        elif verb == "ops":
            address, tag = words[1], words[2]
            payloads = json.loads(" ".join(words[3:]))
            try:
                await node.write(address, payloads)
            except GridnodeError as exc:
                say(f"error {tag} {type(exc).__name__}: {exc}")
                return
            say(f"ack {tag} {len(payloads)}")
        elif verb == "catalogs":
            say("catalogs " + json.dumps(node.catalogs.as_json(), separators=(",", ":")))
        elif verb == "nat":
            say("nat " + json.dumps(node.host.nat_status(), separators=(",", ":")))
        elif verb == "replicas":
            counts = await node.replica_counts([words[1]])
            say("replicas " + json.dumps(counts[words[1]], separators=(",", ":")))
        elif verb == "replicating":
            say(f"replicating {'yes' if node.replicating(words[1]) else 'no'}")
        elif verb == "state":
            count, digest, missing = await node.read(
                words[1], lambda d: (len(d), d.digest().hex(), len(d.missing))
            )
            say(f"state {count} {digest} {missing}")
        elif verb == "state?":
            # As state, for a database the node may not replicate (yet): ``state none``.
            if not node.replicating(words[1]):
                say("state none")
                return
            count, digest, missing = await node.read(
                words[1], lambda d: (len(d), d.digest().hex(), len(d.missing))
            )
            say(f"state {count} {digest} {missing}")
        elif verb == "peers":
            say(f"peers {len(node.peers())}")
        elif verb == "follow":
            await node.follow(words[1], timeout=10)
            say(f"followed {words[1]}")
        else:
            say(f"error {verb} unknown command")
    except GridnodeError as exc:
        say(f"error {verb} {type(exc).__name__}: {exc}")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import logging

    import trio

    import gridnode.node  # noqa: F401

    global IMPORTS
    IMPORTS = time.monotonic() - STARTED
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--announce", type=float, default=math.inf)
    parser.add_argument("--follow")
    parser.add_argument("--write-loop", nargs=3)
    parser.add_argument("--catalog", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("GRIDNODE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    trio.run(_node_main, args)


# -- the tests' side --------------------------------------------------------------------------------


class NodeProc:
    """A running ``node_proc.py``: its ready line, commands and their answers, its stderr."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        netns: str | None = None,
        env=None,
        log_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = (log_dir or self.data_dir.parent) / f"{self.data_dir.name}.log"
        self.log = self.log_path.open("a")
        command = [sys.executable, str(SCRIPT), str(data_dir), *args]
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.acks: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.ready_line = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("ack w "):
                self.acks.append(line)
            else:
                self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for the ready line; the seconds from spawning the process to it."""
        line = self.next_line(timeout)
        assert line.startswith("ready "), (line, self.errors())
        self.ready_line = line
        _, self.peer_id, self.addr, _inner, imports = line.split()
        #: Seconds of the start spent importing gridnode (and py-libp2p).
        self.imports = float(imports)
        return time.monotonic() - self.spawned

    def next_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no answer in {timeout} s; log: {self.errors()[-3000:]}"
            ) from None
        if line is None:
            raise AssertionError(
                f"the node exited ({self.proc.poll()}); log: {self.errors()[-3000:]}"
            )
        return line

    def ask(self, command: str, timeout: float = 30.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.next_line(timeout)

    def state(self, address: str) -> tuple[int, str, int]:
        line = self.ask(f"state {address}")
        assert line.startswith("state "), line
        _, count, digest, missing = line.split()
        return int(count), digest, int(missing)

    def acked(self) -> int:
        """Keys the write loop had acknowledged (durably written) so far."""
        return int(self.acks[-1].split()[2]) if self.acks else 0

    def errors(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 30.0) -> int:
        """Ask for a clean stop; kill it if it does not stop in time."""
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            return self.proc.wait(timeout=timeout)
        except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
            return self.kill()
        finally:
            self.log.close()

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(timeout=30)
        if not self.log.closed:
            self.log.close()
        return code


if __name__ == "__main__":
    main()
