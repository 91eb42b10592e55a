"""Sans-IO rules of the known-peers table and the per-source dial budget (gridnode.node.known)."""

from __future__ import annotations

from gridnode.node.known import (
    DIAL_BURST,
    DIAL_RATE,
    MAX_KNOWN_PEERS,
    OURS,
    PER_PREFIX,
    PER_SOURCE,
    RELAYED,
    DialBudget,
    KnownPeers,
    prefix_of,
)


def addr(i: int, net: str = "10.0") -> str:
    return f"/ip4/{net}.{i // 256 % 256}.{i % 256}/tcp/4001/p2p/sybil{i}"


def test_prefixes():
    assert prefix_of("/ip4/192.168.3.4/tcp/1") == "ip4/192.168"
    assert prefix_of("/ip6/2001:DB8:1::1/tcp/1") == "ip6/2001:db8"
    assert prefix_of("/dns4/Example.org/tcp/1") == "dns/example.org"
    assert prefix_of("/unix/x") == "unix"
    assert prefix_of("garbage") == "other"


def test_bootstrap_peers_are_never_evicted_by_records():
    known = KnownPeers()
    known.remember("boot", ["/ip4/10.0.0.1/tcp/1/p2p/boot"])
    known.remember("honest", ["/ip4/172.16.0.1/tcp/1/p2p/honest"], source="honest")
    for i in range(10 * MAX_KNOWN_PEERS):
        # sybils relayed, and sybils each claiming to be its own source, all over the internet
        known.remember(f"r{i}", [addr(i, f"{i % 200}.{i % 7}")], source=RELAYED)
        known.remember(f"s{i}", [addr(i, f"{i % 200}.{i % 5}")], source=f"s{i}")
    assert known.protected("boot") and "boot" in known
    assert len(known) <= MAX_KNOWN_PEERS + 1
    # the boot peer's own record does not demote it
    known.remember("boot", ["/ip4/10.0.0.1/tcp/1/p2p/boot"], source="boot")
    assert known.protected("boot")


def test_one_source_cannot_fill_the_table_or_evict_others():
    known = KnownPeers()
    known.remember("honest", ["/ip4/172.16.0.1/tcp/1/p2p/honest"], source="honest")
    for i in range(1000):
        known.remember(f"r{i}", [addr(i, f"{i % 250}.1")], source=RELAYED)
    relayed = [k for k in known if known.source_of(k) == RELAYED]
    assert len(relayed) == PER_SOURCE
    assert relayed == [f"r{i}" for i in range(1000 - PER_SOURCE, 1000)]  # its own oldest went
    assert "honest" in known


def test_one_network_cannot_fill_the_table():
    known = KnownPeers()
    known.remember("honest", ["/ip4/10.9.0.1/tcp/1/p2p/honest"], source="honest")
    # many sources (peers connected to us), all in 10.9/16
    for i in range(500):
        known.remember(f"s{i}", [addr(i, "10.9")], source=f"s{i}")
    in_prefix = [k for k in known if prefix_of(known[k][0]) == "ip4/10.9"]
    assert len(in_prefix) == PER_PREFIX
    assert "honest" in known  # first come: later sources cannot evict it


def test_a_full_table_evicts_from_the_largest_source():
    known = KnownPeers(most=8, per_source=4, per_prefix=8)
    for i in range(3):
        known.remember(f"h{i}", [addr(i, f"1{i}.0")], source=f"h{i}")
    for i in range(4):
        known.remember(f"a{i}", [addr(i, f"2{i}.0")], source="a")
    known.remember("h3", [addr(3, "13.0")], source="h3")
    assert len(known) == 8
    known.remember("h4", [addr(4, "14.0")], source="h4")
    assert len(known) == 8 and "a0" not in known and all(f"h{i}" in known for i in range(5))


def test_removal_forgets_the_bucket():
    known = KnownPeers(per_source=1)
    known.remember("x", [addr(1)], source="s")
    known.pop("x")
    assert known.source_of("x") == OURS
    known.remember("y", [addr(2)], source="s")
    assert "y" in known


def test_dial_budget_per_source():
    budget = DialBudget()
    now = 1000.0
    assert all(budget.take(RELAYED, now) for _ in range(DIAL_BURST))
    assert not budget.take(RELAYED, now)
    assert budget.take("another", now)  # one source's spending is its own
    assert all(budget.take(OURS, now) for _ in range(100))  # bootstrap is not limited
    later = now + 1 / DIAL_RATE
    assert budget.take(RELAYED, later) and not budget.take(RELAYED, later)
    # over an hour, a source gets its burst plus the rate, whatever it asks
    granted = sum(budget.take("s", now + t / 10) for t in range(36000))
    assert granted <= DIAL_BURST + 3600 * DIAL_RATE + 1
