"""Helpers for log tests: keys, manifests and random multi-writer histories (test code only)."""

from __future__ import annotations

import random

from crdt.identity import Keypair
from crdt.log import Log
from crdt.manifest import Manifest, create_manifest

ADMIN = Keypair.from_seed(bytes([1]) * 32)
WRITERS = [Keypair.from_seed(bytes([10 + i]) * 32) for i in range(3)]
OUTSIDER = Keypair.from_seed(bytes([99]) * 32)


def manifest(store: str = "keyvalue", **kw) -> Manifest:
    kw.setdefault("admins", [ADMIN.did])
    kw.setdefault("writers", [w.did for w in WRITERS])
    return create_manifest("test", store, **kw)


def history(rng: random.Random, m: Manifest, steps: int, replicas: int = 3) -> list[Log]:
    """Replicas writing concurrently and syncing now and then; returns the replicas' logs."""
    logs = [Log(m) for _ in range(replicas)]
    for step in range(steps):
        i = rng.randrange(replicas)
        if rng.random() < 0.25:
            j = rng.randrange(replicas)
            logs[i].join(logs[j].order())
        else:
            writer = WRITERS[i % len(WRITERS)]
            logs[i].append(writer, {"op": "put", "key": f"k{rng.randrange(5)}", "value": step})
    return logs
