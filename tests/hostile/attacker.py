"""The hostile peer's arsenal: programmatically generated forgeries, and the honest nodes it attacks.

Two honest nodes (``a``, ``b``) share a keyvalue database; EVE is an authorised writer whose key the
attacker holds (for equivocation), MALLORY an outsider. Every forgery is unique (its own payload),
so the honest node cannot dismiss it as a duplicate: each one is judged.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from crdt.entry import MAX_CLOCK, create_entry
from crdt.identity import Keypair
from crdt.ipld import CID, encode
from crdt.ipld.dagcbor import decode
from gridnode.node import Node, open_node
from gridnode.repo import Repo

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
EVE = Keypair.from_seed(bytes([69]) * 32)  # an authorised writer whose key the attacker holds
MALLORY = Keypair.from_seed(bytes([66]) * 32)  # an outsider


def rss_bytes() -> int:
    """This process's resident set size (honest nodes and attacker share it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def make_dirs(tmp_path: Path, *, max_connections: int | None = None) -> tuple[list[Path], str, str]:
    """Data dirs of a and b, the shared database (writers b and EVE); the DID of b."""
    dirs = [tmp_path / "a", tmp_path / "b"]
    repos = [Repo(d) for d in dirs]
    db = repos[0].create_database("shared", "keyvalue", writers=[repos[1].did, EVE.did])
    repos[1].add_database(db.manifest)
    b_did = repos[1].did
    for repo in repos:
        repo.close()
    if max_connections is not None:
        config = dirs[0] / "gridnode.toml"
        text = re.sub(
            r"(?m)^(# )?max_connections = \d+",
            f"max_connections = {max_connections}",
            config.read_text(),
        )
        config.write_text(text)
    return dirs, db.address, b_did


@asynccontextmanager
async def honest_nodes(tmp_path: Path, **kwargs: Any) -> AsyncIterator[tuple[Node, Node, str]]:
    dirs, address, _ = make_dirs(tmp_path, **kwargs)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_node(dirs[0], listen=LOOPBACK, announce_interval=0.3)
        )
        b = await stack.enter_async_context(
            open_node(dirs[1], listen=LOOPBACK, bootstrap=a.addrs, announce_interval=0.3)
        )
        await a.write(address, [{"op": "put", "key": "seed", "value": "honest"}])
        await converged([a, b], address)
        yield a, b, address


async def converged(nodes: list[Node], address: str, timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while True:
            digests = {await n.worker.run(n.database(address).digest) for n in nodes}
            if len(digests) == 1:
                return
            await trio.sleep(0.05)


async def applied_cids(node: Node, address: str) -> set[CID]:
    return set(await node.read(address, lambda d: [e.cid for e in d.entries()]))


async def pending_state(node: Node, address: str) -> tuple[int, int]:
    """(entries waiting for parents, parents they wait for) on an honest node."""
    return await node.read(address, lambda d: (d._db.log.pending_count, len(d.missing)))


def random_cid() -> CID:
    return CID.for_block(os.urandom(16))


def _signed_body(keypair: Keypair, body: dict[str, Any]) -> bytes:
    """Sign an arbitrary entry body (for bodies create_entry refuses to make)."""
    unsigned = encode(body)
    return encode({**body, "signature": keypair.sign(unsigned)})


@dataclass
class Arsenal:
    """Forged entries against one database; ``blocks(n)`` gives n unique ones, every kind in turn."""

    manifest_cid: CID
    head: CID
    head_clock: int
    counter: itertools.count = field(default_factory=itertools.count)
    kinds: tuple[str, ...] = (
        "outsider",
        "bad-signature",
        "wrong-author",
        "clock-jump",
        "clock-one-with-parent",
        "clock-beyond-max",
        "wrong-database",
        "bad-skip",
        "hash-mismatch",
        "not-cbor",
        "unauthorised-acl",
        "non-canonical",
    )

    def forge(self, kind: str) -> tuple[CID, bytes]:
        i = next(self.counter)
        payload = {"op": "put", "key": f"evil{i}", "value": i}
        db, head, clock = self.manifest_cid, self.head, self.head_clock + 1
        if kind == "outsider":
            e = create_entry(MALLORY, db=db, clock=clock, next=[head], payload=payload)
            return e.cid, e.block
        if kind == "bad-signature":
            e = create_entry(EVE, db=db, clock=clock, next=[head], payload=payload)
            block = e.block[:-64] + bytes(64 - 8) + i.to_bytes(8, "big")
            return CID.for_block(block), block
        if kind == "wrong-author":
            body = decode(create_entry(EVE, db=db, clock=clock, next=[head], payload=payload).block)
            body["author"] = MALLORY.did  # signed by EVE, claims MALLORY
            block = encode(body)
            return CID.for_block(block), block
        if kind == "clock-jump":
            e = create_entry(EVE, db=db, clock=clock + 1 + i % 2**40, next=[head], payload=payload)
            return e.cid, e.block
        if kind == "clock-one-with-parent":
            body = {
                "v": 1,
                "db": db,
                "next": [head],
                "clock": 1,
                "author": EVE.did,
                "payload": payload,
            }
            block = _signed_body(EVE, body)
            return CID.for_block(block), block
        if kind == "clock-beyond-max":
            body = {
                "v": 1,
                "db": db,
                "next": [head],
                "clock": MAX_CLOCK + 1 + i,
                "author": EVE.did,
                "payload": payload,
            }
            block = _signed_body(EVE, body)
            return CID.for_block(block), block
        if kind == "wrong-database":
            e = create_entry(
                EVE, db=CID.for_block(b"another db"), clock=clock, next=[head], payload=payload
            )
            return e.cid, e.block
        if kind == "bad-skip":
            e = create_entry(
                EVE, db=db, clock=clock, next=[head], skip=[random_cid()], payload=payload
            )
            return e.cid, e.block
        if kind == "hash-mismatch":
            # An outsider's block: where the CID is recomputed from the bytes (``entries``
            # messages carry none), it is still refused, as an unauthorised write.
            e = create_entry(MALLORY, db=db, clock=clock, next=[head], payload=payload)
            return random_cid(), e.block
        if kind == "not-cbor":
            block = b"\xff\x00garbage" + i.to_bytes(8, "big")
            return CID.for_block(block), block
        if kind == "unauthorised-acl":
            e = create_entry(
                EVE,
                db=db,
                clock=clock,
                next=[head],
                payload={"op": "grant", "role": "admin", "did": MALLORY.did, "n": i},
            )
            return e.cid, e.block
        # non-canonical: a valid entry's map re-encoded with a 2-byte length head
        e = create_entry(EVE, db=db, clock=clock, next=[head], payload=payload)
        block = b"\xb9\x00" + bytes([e.block[0] & 0x1F]) + e.block[1:]
        return CID.for_block(block), block

    def blocks(self, n: int) -> list[tuple[CID, bytes]]:
        return [self.forge(self.kinds[k % len(self.kinds)]) for k in range(n)]

    def orphans(self, n: int) -> tuple[list[tuple[CID, bytes]], list[CID]]:
        """Validly signed entries by EVE whose parents nobody has (they wait, bounded)."""
        parents = [random_cid() for _ in range(n)]
        out = []
        for parent in parents:
            e = create_entry(
                EVE,
                db=self.manifest_cid,
                clock=2,
                next=[parent],
                payload={"orphan": next(self.counter)},
            )
            out.append((e.cid, e.block))
        return out, parents

    def oversized(self) -> tuple[CID, bytes]:
        body = {
            "v": 1,
            "db": self.manifest_cid,
            "next": [self.head],
            "clock": self.head_clock + 1,
            "author": EVE.did,
            "payload": os.urandom(1024 * 1024 + 16),
        }
        block = _signed_body(EVE, body)
        return CID.for_block(block), block
