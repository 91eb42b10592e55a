"""secp256k1 verification of OrbitDB entries: libsecp256k1 (coincurve) against pure Python.

    python bench/bench_orbitdb_verify.py            # about 10 s
    python bench/bench_orbitdb_verify.py --quick    # about 1 s (CI smoke run)
    python bench/bench_orbitdb_verify.py --json

The entries are the real @orbitdb/core 4.0.0 ones of tests/fixtures/orbitdb/orbitdb.json. Rows:

- *coincurve verify*: :func:`crdt.orbitdb.verify.verify_signature` over an entry's signed bytes
  (SHA-256, DER parse, ECDSA verify in libsecp256k1);
- *decode + verify_entry*: the whole per-entry cost a follower pays (strict DAG-CBOR decode with
  the hash check, the shape checks, re-encoding the signed bytes, the signature; the identity's
  two signatures counted once per writer, as a follower caches verified identities);
- *OrbitLog, oldest/newest first*: N entries (``--entries``, 10,000; 1,000 with ``--quick``)
  forged in Python by two writers (tests/crdt/orbitdb/forge.py; a chain alternating writers,
  documents PUTs over 500 keys) offered to a fresh :class:`crdt.orbitdb.OrbitLog` oldest first
  (each joins at once) or newest first (all wait, then join in one cascade): decode, verify,
  clock check and materialise, per entry;
- *pure Python verify*: the same ECDSA verification written with Python integers (Jacobian
  coordinates, a Shamir double-and-add), the alternative that needs no compiled library; checked
  to agree with coincurve on every entry before it is timed.

docs/decisions.md ("Issue 25, wt25-a: coincurve") records the numbers.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crdt.orbitdb import (  # noqa: E402
    OrbitLog,
    decode_access,
    decode_entry,
    decode_identity,
    decode_manifest,
    parse_hash,
    signed_bytes,
    verify_entry,
    verify_identity,
    verify_signature,
)

FIXTURE = ROOT / "tests" / "fixtures" / "orbitdb" / "orbitdb.json"

# secp256k1
P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)


def _double(p):
    x, y, z = p
    if not y:
        return (0, 0, 0)
    s = 4 * x * y * y % P
    m = 3 * x * x % P
    x2 = (m * m - 2 * s) % P
    return (x2, (m * (s - x2) - 8 * y**4) % P, 2 * y * z % P)


def _add(p, q):
    if not p[2]:
        return q
    if not q[2]:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p) if s1 == s2 else (0, 0, 0)
    h, r = (u2 - u1) % P, (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return (x3, (r * (v - x3) - s1 * hhh) % P, h * z1 * z2 % P)


def _decompress(data: bytes):
    x = int.from_bytes(data[1:], "big")
    y = pow((x**3 + 7) % P, (P + 1) // 4, P)
    if y % 2 != data[0] - 2:
        y = P - y
    return (x, y, 1)


def _der(sig: bytes) -> tuple[int, int]:
    r_length = sig[3]
    r = int.from_bytes(sig[4 : 4 + r_length], "big")
    s = int.from_bytes(sig[6 + r_length :], "big")
    return r, s


def python_verify(signature: str, public_key: str, data: bytes) -> bool:
    """ECDSA secp256k1 over SHA-256 with a DER signature, low-S only (no strict-DER checks:
    the timing is what matters here)."""
    r, s = _der(bytes.fromhex(signature))
    if not (0 < r < N and 0 < s <= N // 2):
        return False
    e = int.from_bytes(hashlib.sha256(data).digest(), "big")
    w = pow(s, -1, N)
    u1, u2 = e * w % N, r * w % N
    q = _decompress(bytes.fromhex(public_key))
    g = (G[0], G[1], 1)
    both = _add(g, q)
    point = (0, 0, 0)
    for bit in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        point = _double(point)
        a, b = (u1 >> bit) & 1, (u2 >> bit) & 1
        if a and b:
            point = _add(point, both)
        elif a:
            point = _add(point, g)
        elif b:
            point = _add(point, q)
    x, _y, z = point
    if not z:
        return False
    return x * pow(z * z, -1, P) % P % N == r


def _rate(function, items, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while True:
        for item in items:
            function(item)
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _log_rates(count: int) -> dict[str, float]:
    """Entries per second through OrbitLog, offered oldest first and newest first."""
    from tests.crdt.orbitdb import forge

    writers = (forge.writer(1), forge.writer(2))
    access_cid, access_block = forge.access([w.id for w in writers])
    manifest_cid, manifest_block = forge.manifest("bench", "documents", access_cid)
    blocks, head = [], None
    for i in range(count):
        key = f"k{i % 500}"
        payload = {"op": "PUT", "key": key, "value": {"_id": key, "n": i}}
        cid, data = forge.entry(
            writers[i % 2], manifest_cid, payload, i + 1, [head] if head else []
        )
        blocks.append((cid, data))
        head = forge.format_hash(cid)
    rates = {}
    for name, offered in (("oldest_first", blocks), ("newest_first", blocks[::-1])):
        log = OrbitLog(
            decode_manifest(manifest_cid, manifest_block), decode_access(access_cid, access_block)
        )
        for w in writers:
            log.add_identity(w.cid, w.data)
        start = time.perf_counter()
        accepted = sum(len(log.add_entry(cid, data)) for cid, data in offered)
        elapsed = time.perf_counter() - start
        assert accepted == count and len(log.state.all()) == min(count, 500)
        rates[f"orbitlog_{name}_per_s"] = count / elapsed
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 1 s in all (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--entries", type=int, help="entries offered to OrbitLog (10,000)")
    args = parser.parse_args()
    seconds = 0.25 if args.quick else 3.0
    fixture = json.loads(FIXTURE.read_text())
    blocks = {h: base64.b64decode(b) for h, b in fixture["blocks"].items()}
    rows = []
    for db in fixture["databases"]:
        access = decode_access(parse_hash(db["access"][6:]), blocks[db["access"][6:]])
        for hash in db["values"]:
            entry = decode_entry(parse_hash(hash), blocks[hash])
            rows.append((hash, entry, access, db["address"]))
    identities = {}
    for _hash, entry, _access, _address in rows:
        if entry.identity not in identities:
            identity = decode_identity(parse_hash(entry.identity), blocks[entry.identity])
            verify_identity(identity)
            identities[entry.identity] = identity
    signed = [(e.sig, e.key, signed_bytes(e)) for _h, e, _a, _d in rows]
    for item in signed:
        assert verify_signature(*item) and python_verify(*item)
        assert not python_verify(item[0], item[1], item[2] + b"x")

    def whole(row) -> None:
        hash, _entry, access, address = row
        entry = decode_entry(parse_hash(hash), blocks[hash])
        verify_entry(entry, identities[entry.identity], access, address, identity_verified=True)

    results = {
        "entries": len(rows),
        "coincurve_verify_per_s": _rate(lambda i: verify_signature(*i), signed, seconds),
        "decode_and_verify_entry_per_s": _rate(whole, rows, seconds),
        "pure_python_verify_per_s": _rate(lambda i: python_verify(*i), signed, seconds),
    }
    results.update(_log_rates(args.entries or (1000 if args.quick else 10_000)))
    results["coincurve_over_python"] = (
        results["coincurve_verify_per_s"] / results["pure_python_verify_per_s"]
    )
    if args.json:
        print(json.dumps(results))
        return
    print(f"{results['entries']} OrbitDB 4.0.0 entries (tests/fixtures/orbitdb/orbitdb.json)")
    for name in (
        "coincurve_verify_per_s",
        "decode_and_verify_entry_per_s",
        "orbitlog_oldest_first_per_s",
        "orbitlog_newest_first_per_s",
        "pure_python_verify_per_s",
    ):
        print(f"  {name:32} {results[name]:>10,.0f}")
    print(f"  coincurve / pure Python          {results['coincurve_over_python']:>10.0f}x")


if __name__ == "__main__":
    main()
