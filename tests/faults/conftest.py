"""Real network faults: nodes in network namespaces of their own, joined by veth pairs to bridges.

The topology (one hub namespace holding two bridges joined by a veth pair, the trunk):

    node0 --v0--+              +--v2-- node2
                 brA --trunk-- brB
    node1 --v1--+              +--v3-- node3 ...

Cutting the trunk splits the nodes on brA from those on brB; cutting ``vN`` isolates node N.
Everything runs as root (``ip netns add``); where namespaces cannot be made the tests are skipped
saying why. Every namespace (and with it every veth and bridge) and every node process is removed
at the end, whatever happened.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "node_proc", Path(__file__).with_name("node_proc.py")
)
assert _spec is not None and _spec.loader is not None
node_proc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(node_proc)

SUBNET = "10.77.0"
PORT = 4001


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None (tried for real)."""
    if shutil.which("ip") is None:
        return "no 'ip' command (Debian's iproute2 is not installed)"
    name = f"gnf-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"'ip netns add' failed (root is needed): {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def report(figures: dict) -> None:
    """Print a test's figures (``pytest -s``) and append them to $GRIDNODE_FIGURES if set."""
    print(json.dumps(figures))
    if os.environ.get("GRIDNODE_FIGURES"):
        with open(os.environ["GRIDNODE_FIGURES"], "a") as out:
            out.write(json.dumps(figures) + "\n")


class Namespaces:
    """What every fault topology shares: a hub namespace, the namespaces made (removed by
    :meth:`close` in reverse order, whatever happened) and the node processes in them."""

    def __init__(self, tmp_path: Path, tag: str) -> None:
        self.tmp_path = tmp_path
        self.prefix = f"{tag}{uuid.uuid4().hex[:6]}"
        self.hub = f"{self.prefix}-hub"
        self.namespaces: list[str] = []
        self.procs: list[node_proc.NodeProc] = []
        self._add_ns(self.hub)

    def _add_ns(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def bridge(self, ns: str, name: str) -> None:
        """A bridge ``name`` in namespace ``ns``, up."""
        ip("-n", ns, "link", "add", name, "type", "bridge")
        ip("-n", ns, "link", "set", name, "up")

    def plug(self, ns: str, cidr: str, *, outer: str, bridge: str, inner: str = "eth0") -> None:
        """A veth pair: ``inner`` in ``ns`` with ``cidr`` on it, ``outer`` on ``bridge`` in the
        hub (or, for ``bridge`` given as ``(namespace, name)``, on that namespace's bridge)."""
        where, name = (self.hub, bridge) if isinstance(bridge, str) else bridge
        ip("-n", where, "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
        ip("-n", where, "link", "set", outer, "master", name)
        ip("-n", where, "link", "set", outer, "up")
        ip("-n", ns, "addr", "add", cidr, "dev", inner)
        ip("-n", ns, "link", "set", inner, "up")

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stop(timeout=15)
            except Exception:
                proc.kill()
        for name in reversed(self.namespaces):
            ip("netns", "del", name, check=False)


class Network(Namespaces):
    """Namespaces, links and the node processes in them."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, "gnf")
        self.nodes = self.procs
        for bridge in ("brA", "brB"):
            self.bridge(self.hub, bridge)
        ip("-n", self.hub, "link", "add", "trunkA", "type", "veth", "peer", "name", "trunkB")
        ip("-n", self.hub, "link", "set", "trunkA", "master", "brA")
        ip("-n", self.hub, "link", "set", "trunkB", "master", "brB")
        ip("-n", self.hub, "link", "set", "trunkA", "up")
        ip("-n", self.hub, "link", "set", "trunkB", "up")

    def ns(self, index: int) -> str:
        return f"{self.prefix}-n{index}"

    def address(self, index: int) -> str:
        return f"{SUBNET}.{index + 1}"

    def add_host(self, index: int, bridge: str) -> None:
        """A namespace for node ``index``: ``eth0`` with 10.77.0.<index+1>/24, its other end
        ``v<index>`` on ``bridge`` in the hub."""
        ns = self.ns(index)
        self._add_ns(ns)
        self.plug(ns, f"{self.address(index)}/24", outer=f"v{index}", bridge=bridge)

    def start(self, index: int, *args: str) -> node_proc.NodeProc:
        """A node in namespace ``index``, bootstrapped to every node started before it."""
        bootstrap = [a for node in self.nodes for a in ("--bootstrap", node.addr)]
        node = node_proc.NodeProc(
            self.tmp_path / f"node{index}",
            "--listen",
            f"/ip4/{self.address(index)}/tcp/{PORT}",
            "--announce",
            "1",
            *bootstrap,
            *args,
            netns=self.ns(index),
        )
        self.nodes.append(node)
        node.wait_ready()
        return node

    def link(self, name: str, up: bool) -> None:
        """Set a hub link (``trunkA``, ``v<index>``) up or down."""
        ip("-n", self.hub, "link", "set", name, "up" if up else "down")


@pytest.fixture
def network(tmp_path):
    why = netns_unavailable()
    if why is not None:
        pytest.skip(f"network namespaces cannot be made here: {why}")
    net = Network(tmp_path)
    try:
        yield net
    finally:
        net.close()
        left = ip("netns", "list").stdout
        assert net.prefix not in left, f"namespaces left behind: {left}"


def wait_converged(nodes, address, expected, timeout):
    """Poll until every node holds ``expected`` entries with one digest; the seconds it took."""
    started = time.monotonic()
    while True:
        states = [node.state(address) for node in nodes]
        if all(count == expected for count, _, _ in states) and len({d for _, d, _ in states}) == 1:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"not converged in {timeout} s: {states}"
        time.sleep(0.1)
