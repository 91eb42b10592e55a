"""RSS of a bitswap server while a peer that reads 32 KiB/s wants 16 x 1 MiB blocks every 0.1 s.

    python bench/bitswap_slow_reader.py               # 40 s of attack, the node's default limits
    python bench/bitswap_slow_reader.py --seconds 10

The scenario is ``tests/hostile/test_bitswap_reader.py``'s (server, attacker and an honest peer
fetching 4 blocks, all in this process on 127.0.0.1). Prints RSS before, at its peak and after
the attacker left, and, where the server has them (after issue 18), its queue counters. The run
stops early once RSS has grown by 768 MiB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile.test_bitswap_reader import slow_reader_attack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    out = trio.run(lambda: slow_reader_attack(seconds=args.seconds))
    mib = 2**20
    print(f"attack: {out.ran:.1f} s, {out.wants_sent} want-lists of 16 x 1 MiB blocks")
    print(f"RSS before: {out.rss_before / mib:.0f} MiB")
    print(f"RSS peak:   +{(out.rss_peak - out.rss_before) / mib:.0f} MiB")
    print(f"RSS 1 s after the attacker left: +{(out.rss_left - out.rss_before) / mib:.0f} MiB")
    print(f"RSS once all stopped: +{(out.rss_after - out.rss_before) / mib:.0f} MiB")
    if out.queued:
        print(f"queued for the attacker, at most: {max(q for _t, q in out.queued) / mib:.1f} MiB")
        print(
            f"first dropped after: {out.dropped_after} s; queued after it left: {out.queued_after}"
        )
    print(f"honest peer got {out.honest_got}/4 blocks")


if __name__ == "__main__":
    main()
