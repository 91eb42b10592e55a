"""Hole punching and restarts behind real NAT: DCUtR success per NAT kind (issue 22).

    sudo python bench/bench_nat.py                      # 20 attempts per NAT pair (the figures)
    sudo python bench/bench_nat.py --attempts 3 --pairs cone-cone

Root is needed (network namespaces). The topology is tests/faults/nat.py: the primary (``server``
profile: a relay, holding nothing of the database) on the public segment, home A and home B each
behind a router namespace doing nftables masquerade of the kind named (``cone``: port-preserving,
endpoint-independent; ``symmetric``: ``fully-random``); ``-reset`` after a pair: routers that
answer unsolicited SYNs with a RST instead of dropping them. Node H1 (home A) holds a keyvalue
database; node H2 (home B, ``home`` profile) follows it.

Each attempt: H1 writes 10 keys while H2 is stopped; H2's process is started again (same data
dir: a restart behind NAT), reaches H1 through the relay (the only way: no port forwarding) and
DCUtR tries to make the connection direct. Recorded per attempt: whether a success was counted
(``status`` ``nat.hole_punching`` of either node) with a direct TCP connection between the two
routers' addresses; the DCUtR rounds run; seconds from spawning H2 to it holding H1's writes
(time to first sync after a restart, imports included); and then seconds from one write on H1
to H2 holding it (over the direct connection after a success, else through the relay).
Namespaces and processes are removed at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("faults_nat", ROOT / "tests" / "faults" / "nat.py")
assert _spec is not None and _spec.loader is not None
nat = importlib.util.module_from_spec(_spec)
sys.modules["faults_nat"] = nat
_spec.loader.exec_module(nat)

from gridnode.repo import Repo  # noqa: E402

ANNOUNCE = "2"


def state(proc, address: str) -> tuple[int, str]:
    line = proc.ask(f"state {address}")
    _, count, digest, _missing = line.split()
    return int(count), digest


def wait_same(a, b, address: str, expected: int, timeout: float) -> float:
    started = time.monotonic()
    while True:
        sa, sb = state(a, address), state(b, address)
        if sa[0] == sb[0] == expected and sa[1] == sb[1]:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not converged in {timeout} s: {sa} {sb}")
        time.sleep(0.05)


def punch_stats(proc) -> dict:
    line = proc.ask("nat")
    return json.loads(line[4:])["hole_punching"]


def run_pair(root: Path, pair: str, attempts: int) -> dict:
    kinds = pair.removesuffix("-reset").split("-")
    unsolicited = "reset" if pair.endswith("-reset") else "drop"
    net = nat.NatNetwork(root / pair)
    rows = []
    try:
        net.add_public(0)
        home_a = net.add_home(kinds[0], unsolicited=unsolicited)
        home_b = net.add_home(kinds[1], unsolicited=unsolicited)
        primary = net.start(
            net.public_ns(0),
            "p0",
            f"/ip4/{net.public_ip(0)}/tcp/{nat.PORT}",
            "--announce",
            ANNOUNCE,
            profile="server",
        )
        h1_dir = net.tmp_path / "h1"
        nat.write_config(h1_dir, "home", {"mdns": False})
        with Repo(h1_dir) as repo:
            address = repo.create_database("natbench", "keyvalue", public=True).address
        h1 = net.start(
            home_a.hosts[0],
            "h1",
            f"/ip4/{home_a.lan(0)}/tcp/{nat.PORT}",
            "--announce",
            ANNOUNCE,
            "--bootstrap",
            primary.addr,
        )
        total = 0
        for attempt in range(attempts):
            answer = h1.ask(f"write {address} 10 r{attempt}")
            assert answer == f"ack r{attempt} 10", answer
            total += 10
            before = punch_stats(h1)
            h2 = net.start(
                home_b.hosts[0],
                "h2",
                f"/ip4/{home_b.lan(0)}/tcp/{nat.PORT}",
                "--announce",
                ANNOUNCE,
                "--bootstrap",
                primary.addr,
                "--follow",
                address,
                profile="home",
                config={"mdns": False},
                wait=False,
            )
            row: dict = {"attempt": attempt}
            try:
                h2.wait_ready(timeout=90)
                wait_same(h1, h2, address, total, 90)
                row["restart_to_synced_s"] = round(time.monotonic() - h2.spawned, 2)
                row["imports_s"] = h2.imports
                deadline = time.monotonic() + 40
                while True:
                    now1, now2 = punch_stats(h1), punch_stats(h2)
                    won = now1["successes"] - before["successes"] + now2["successes"]
                    lost = now1["failures"] - before["failures"] + now2["failures"]
                    if won or lost or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                time.sleep(1.0)
                direct = any(
                    pip == home_b.wan for _l, _lp, pip, _pp in nat.tcp_peers(home_a.hosts[0])
                )
                row.update(
                    success=bool(won),
                    outcome="success" if won else ("failure" if lost else "none in 40 s"),
                    direct_tcp=direct,
                    rounds=max(now1["attempts"] - before["attempts"], now2["attempts"]),
                    transports={**now1["transports"], **now2["transports"]},
                    last_error=(now1["last_error"] or now2["last_error"])[:120],
                )
                answer = h1.ask(f"write {address} 1 w{attempt}")
                assert answer == f"ack w{attempt} 1", answer
                total += 1
                row["write_to_peer_s"] = round(wait_same(h1, h2, address, total, 60), 3)
            except (AssertionError, TimeoutError) as exc:
                row["error"] = str(exc)[:300]
            finally:
                h2.stop(timeout=15)
                net.procs.remove(h2)
            print(json.dumps({"pair": pair, **row}), flush=True)
            rows.append(row)
    finally:
        net.close()
    return summarise(pair, rows)


def summarise(pair: str, rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    wins = [r for r in ok if r["success"]]
    first_round = [r for r in wins if r["rounds"] == 1]
    restart = [r["restart_to_synced_s"] for r in ok]
    writes = [r["write_to_peer_s"] for r in ok if "write_to_peer_s" in r]
    return {
        "pair": pair,
        "attempts": len(rows),
        "errors": len(rows) - len(ok),
        "successes": len(wins),
        "success_with_direct_tcp": sum(r["direct_tcp"] for r in wins),
        "direct_without_success": sum(r["direct_tcp"] and not r["success"] for r in ok),
        "first_round_successes": len(first_round),
        "restart_to_synced_median_s": statistics.median(restart) if restart else None,
        "restart_to_synced_max_s": max(restart) if restart else None,
        "write_to_peer_median_s": statistics.median(writes) if writes else None,
        "write_to_peer_max_s": max(writes) if writes else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=20, help="attempts per NAT pair")
    parser.add_argument(
        "--pairs",
        nargs="+",
        default=["cone-cone", "cone-symmetric", "symmetric-symmetric", "cone-cone-reset"],
        help="NAT pairs (home A-home B; '-reset': routers answer unsolicited SYNs with RST)",
    )
    args = parser.parse_args()
    why = nat.faults.netns_unavailable()
    if why is not None:
        sys.exit(f"network namespaces cannot be made here: {why}")
    load = os.getloadavg()
    started = time.monotonic()
    summaries = []
    with tempfile.TemporaryDirectory(prefix="bench-nat-") as tmp:
        for pair in args.pairs:
            summaries.append(run_pair(Path(tmp), pair, args.attempts))
    print(
        json.dumps(
            {
                "summaries": summaries,
                "loadavg_before": load,
                "loadavg_after": os.getloadavg(),
                "cpus": os.cpu_count(),
                "seconds": round(time.monotonic() - started, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
