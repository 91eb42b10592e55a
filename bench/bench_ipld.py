"""Throughput of the IPLD and entry layer, on one core.

    python bench/bench_ipld.py            # full run (a few seconds per line)
    python bench/bench_ipld.py --quick    # smoke run, as CI does

Prints a Markdown table: operations per second, median of the repetitions, with min and max.
Compares with the PyPI package ``dag-cbor`` (0.3.3) and plain cbor2 where they are installed
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdt.entry import create_entry, decode_entry
from crdt.identity import Keypair
from crdt.ipld import CID, decode, decode_strict, encode


def record() -> dict[str, object]:
    """A small document-store record with two links: 344 bytes as DAG-CBOR."""
    return {
        "_id": "user/1234567",
        "kind": "profile",
        "name": "Alice Example",
        "email": "alice@example.org",
        "age": 33,
        "score": 0.875,
        "verified": True,
        "tags": ["admin", "editor", "nexus", "replica"],
        "bio": "Keeps public records in many places at once, so none is lost.",
        "created": 1732406400,
        "links": [CID.for_block(b"avatar"), CID.for_block(b"previous")],
        "meta": {"source": "postgres", "table": "profiles", "row": 1234567},
    }


def rate(fn: Callable[[], object], seconds: float, reps: int) -> tuple[float, float, float]:
    """Operations per second: median, min, max over ``reps`` timed runs after one warm-up."""
    # Calibrate the batch so one repetition lasts about ``seconds``.
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 4 or n > 10_000_000:
            break
        n *= 2
    n = max(1, int(n * seconds / max(elapsed, 1e-9)))
    results = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        results.append(n / (time.perf_counter() - start))
    return statistics.median(results), min(results), max(results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny run for CI: checks it works")
    args = parser.parse_args()
    seconds, reps = (0.05, 1) if args.quick else (1.0, 5)

    value = record()
    block = encode(value)
    assert decode(block) == value
    keypair = Keypair.from_seed(bytes(range(32)))
    db = CID.for_block(b"manifest")
    parent = create_entry(keypair, db=db, clock=1, payload=None)
    entry = create_entry(keypair, db=db, clock=2, next=[parent.cid], payload=value)

    cases: list[tuple[str, Callable[[], object]]] = [
        (f"gridnode encode ({len(block)} B record)", lambda: encode(value)),
        ("gridnode decode, strict (fast path)", lambda: decode(block)),
        ("gridnode decode_strict (reference reader)", lambda: decode_strict(block)),
        ("CID.for_block (sha2-256)", lambda: CID.for_block(block)),
        ("CID.for_block + str (base32)", lambda: str(CID.for_block(block))),
        ("CID.parse (base32 text)", lambda: CID.parse(str(entry.cid))),
        (
            f"entry build + sign + encode ({len(entry.block)} B)",
            lambda: create_entry(keypair, db=db, clock=2, next=[parent.cid], payload=value),
        ),
        ("entry decode + verify", lambda: decode_entry(entry.cid, entry.block)),
    ]
    try:
        import cbor2

        plain = {k: v for k, v in value.items() if k != "links"}
        plain_block = cbor2.dumps(plain, canonical=True)
        cases.append(("cbor2 loads, not strict (no links)", lambda: cbor2.loads(plain_block)))
        cases.append(
            (
                "cbor2 dumps canonical, not strict (no links)",
                lambda: cbor2.dumps(plain, canonical=True),
            )
        )
    except ImportError:  # pragma: no cover
        pass
    try:
        import dag_cbor  # type: ignore[import-not-found]

        their_value = {k: v for k, v in value.items() if k != "links"}
        their_block = dag_cbor.encode(their_value)
        assert their_block == encode(their_value)
        cases.append(("PyPI dag-cbor encode (no links)", lambda: dag_cbor.encode(their_value)))
        cases.append(("PyPI dag-cbor decode (no links)", lambda: dag_cbor.decode(their_block)))
    except ImportError:
        pass
    try:
        import nacl.signing

        verify_key = nacl.signing.VerifyKey(keypair.public_key)
        signature = keypair.sign(entry.block)
        cases.append(
            ("ed25519 verify alone (pynacl)", lambda: verify_key.verify(entry.block, signature))
        )
        cases.append(("ed25519 sign alone (pynacl)", lambda: keypair.sign(entry.block)))
    except ImportError:  # pragma: no cover
        pass

    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("cbor2", "pynacl", "dag-cbor")
        if _installed(name)
    )
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}), {versions}; "
        f"{reps} repetitions of ~{seconds}s each, one core"
    )
    print()
    print("| operation | ops/s (median) | min | max |")
    print("|---|---:|---:|---:|")
    for name, fn in cases:
        median, low, high = rate(fn, seconds, reps)
        print(f"| {name} | {median:,.0f} | {low:,.0f} | {high:,.0f} |", flush=True)


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
