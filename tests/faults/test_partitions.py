"""Real partitions: gridnode nodes in network namespaces, links cut and healed, packet loss.

Each node is a process (tests/faults/node_proc.py, which opens the node as ``gridnode start``
does) inside its own namespace, listening on its namespace's address and bootstrapped to the
nodes started before it. A partition is a link set down (``ip link set ... down``); while it lasts
every side writes; after the heal every node must hold every write (entry counts and equal
digests, then every key checked offline). The time from the heal to convergence is measured.

CI runs three nodes (one partition/heal cycle, one run with loss and delay); GRIDNODE_LONG=1 runs
five nodes through many cycles.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from gridnode.repo import Repo

_spec = importlib.util.spec_from_file_location(
    "faults_conftest", Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)

pytestmark = pytest.mark.slow


class Cluster:
    """Nodes in a :class:`Network` replicating one public keyvalue database, and every write
    they acknowledged."""

    def __init__(self, network, bridges: list[str]) -> None:
        self.net = network
        for index, bridge in enumerate(bridges):
            network.add_host(index, bridge)
        with Repo(network.tmp_path / "node0") as repo:
            self.address = repo.create_database("partitioned", "keyvalue", public=True).address
        self.nodes = [network.start(0)]
        for index in range(1, len(bridges)):
            self.nodes.append(network.start(index, "--follow", self.address))
        #: tag -> keys written (and acknowledged) under it.
        self.acked: dict[str, int] = {}

    def write(self, index: int, tag: str, count: int) -> None:
        answer = self.nodes[index].ask(f"write {self.address} {count} {tag}")
        assert answer == f"ack {tag} {count}", answer
        self.acked[tag] = count

    @property
    def total(self) -> int:
        return sum(self.acked.values())

    def converge(self, nodes=None, timeout=60.0) -> float:
        return faults.wait_converged(nodes or self.nodes, self.address, self.total, timeout)

    def check_offline(self) -> int:
        """Stop every node; in each data dir, every acknowledged key. Returns keys lost."""
        for node in self.nodes:
            assert node.stop() == 0, node.errors()[-2000:]
        lost = 0
        for index in range(len(self.nodes)):
            with Repo(self.net.tmp_path / f"node{index}") as repo:
                assert repo.sql.integrity_check() == "ok"
                store = repo.database(self.address).store
                lost += sum(
                    store.get(f"{tag}-{i}") != i for tag, n in self.acked.items() for i in range(n)
                )
        return lost


def impair(network, indices) -> str:
    """10% loss and 50 ms delay on every packet leaving the given nodes (their ``eth0``): tc
    netem where the kernel has it; else 10% loss with nftables (a kernel built without
    sch_netem has no way to delay packets). Returns what was applied; skips if neither works."""
    failures = []
    applied = []
    for index in indices:
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                network.ns(index),
                "tc",
                "qdisc",
                "add",
                "dev",
                "eth0",
                "root",
                "netem",
                "loss",
                "10%",
                "delay",
                "50ms",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            failures.append(done.stderr.strip())
            break
        applied.append(index)
    if not failures:
        return "tc netem loss 10% delay 50ms"
    for index in applied:
        subprocess.run(
            ["ip", "netns", "exec", network.ns(index), "tc", "qdisc", "del", "dev", "eth0", "root"],
            capture_output=True,
            timeout=30,
        )
    if shutil.which("nft") is None:
        pytest.skip(f"no packet loss possible here: tc netem failed ({failures[0]}) and no nft")
    rules = (
        "table inet gnfloss {\n  chain out {\n    type filter hook output priority 0; policy accept;\n"
        "    numgen random mod 100 < 10 drop\n  }\n}\n"
    )
    for index in indices:
        subprocess.run(
            ["ip", "netns", "exec", network.ns(index), "nft", "-f", "-"],
            input=rules,
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
    return f"nft loss 10% (tc netem refused: {failures[0]!r}; no delay)"


def partition_cycle(cluster, cut: str, sides: list[list[int]], cycle: int, writes: int) -> dict:
    """Cut ``cut``, write on every node, check each side converges on its own and nothing
    crossed, heal, and time the convergence of all."""
    net = cluster.net
    before = cluster.total
    net.link(cut, up=False)
    try:
        for side in sides:
            for index in side:
                cluster.write(index, f"c{cycle}n{index}", writes)
        # Each side converges to what was written on it, and holds nothing of the other side's.
        for side in sides:
            expected = before + writes * len(side)
            faults.wait_converged([cluster.nodes[i] for i in side], cluster.address, expected, 60)
        time.sleep(1.0)
        for side in sides:
            for index in side:
                count, _, _ = cluster.nodes[index].state(cluster.address)
                assert count == before + writes * len(side), (cut, index, count)
    finally:
        net.link(cut, up=True)
    healed = time.monotonic()
    took = cluster.converge()
    assert time.monotonic() >= healed
    return {
        "cut": cut,
        "sides": sides,
        "written": writes * sum(map(len, sides)),
        "converged_s": round(took, 2),
    }


def test_partition_heal_and_loss_three_nodes(network):
    cluster = Cluster(network, ["brA", "brB", "brB"])
    cluster.write(0, "pre", 20)
    cluster.converge()

    cycle = partition_cycle(cluster, "trunkA", [[0], [1, 2]], 0, writes=30)

    impairment = impair(network, range(3))
    for index in range(3):
        cluster.write(index, f"loss{index}", 50)
    lossy = cluster.converge(timeout=60)
    lost = cluster.check_offline()
    assert lost == 0
    faults.report(
        {
            "test": "partition-3-nodes",
            "nodes": 3,
            "cycles": [cycle],
            "impairment": impairment,
            "loss_run_written": 150,
            "loss_run_converged_s": round(lossy, 2),
            "entries": cluster.total,
            "acked_writes_lost": lost,
        }
    )


@pytest.mark.skipif(
    not os.environ.get("GRIDNODE_LONG"),
    reason="long run: set GRIDNODE_LONG=1 (a 3-node variant runs always)",
)
def test_partitions_five_nodes_long(network):
    rng = random.Random(5)
    cluster = Cluster(network, ["brA", "brA", "brB", "brB", "brB"])
    cluster.write(0, "pre", 50)
    cluster.converge()
    cycles = []
    for cycle in range(10):
        if cycle % 2 == 0:
            cut, sides = "trunkA", [[0, 1], [2, 3, 4]]
        else:
            alone = rng.randrange(5)
            cut, sides = f"v{alone}", [[alone], [i for i in range(5) if i != alone]]
        cycles.append(partition_cycle(cluster, cut, sides, cycle, writes=rng.choice([10, 50, 200])))
    # One long partition: connections idle far past gossip's heartbeats.
    cycles.append(partition_cycle_long(cluster, 60.0))
    impairment = impair(network, range(5))
    for index in range(5):
        cluster.write(index, f"loss{index}", 200)
    lossy = cluster.converge(timeout=120)
    lost = cluster.check_offline()
    assert lost == 0
    times = [c["converged_s"] for c in cycles]
    faults.report(
        {
            "test": "partition-5-nodes-long",
            "nodes": 5,
            "cycles": len(cycles),
            "converged_median_s": statistics.median(times),
            "converged_max_s": max(times),
            "cycle_detail": cycles,
            "impairment": impairment,
            "loss_run_written": 1000,
            "loss_run_converged_s": round(lossy, 2),
            "entries": cluster.total,
            "acked_writes_lost": lost,
        }
    )


def partition_cycle_long(cluster, seconds: float) -> dict:
    net = cluster.net
    net.link("trunkA", up=False)
    try:
        cluster.write(0, "long0", 20)
        cluster.write(3, "long3", 20)
        time.sleep(seconds)
        cluster.write(1, "long1", 20)
        cluster.write(4, "long4", 20)
    finally:
        net.link("trunkA", up=True)
    took = cluster.converge(timeout=120)
    return {"cut": "trunkA", "seconds": seconds, "written": 80, "converged_s": round(took, 2)}
