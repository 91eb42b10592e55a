"""Taking an OrbitDB database's entries in: from head blocks heard, fetch what they reach over
bitswap (blocks the node keeps first), verify with :class:`crdt.orbitdb.log.OrbitLog` in a worker
thread, keep what passes (:mod:`gridnode.storage.orbitdb`) and materialise it.

:class:`OrbitIngest` is the room of :class:`~gridnode.orbitdb.follow.OrbitFollower` that does
this, one ingest per database at a time (the replica's lock). The manifest and the access
controller come first; then the entries reachable from the heads through ``next`` and ``refs``
(and what waiting entries wait for), :data:`FETCH_BATCH` CIDs a bitswap request, several at
once, at most :data:`MAX_ENTRIES_PER_ROUND` a round; then the identities they name. What the
peer that offered the heads makes the node do is charged to that peer's budget. Every refusal
goes to the follower's ``refuse`` (counted by reason and peer, logged a few lines an interval).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Final

import trio

from crdt.errors import InvalidOrbitAddress, OrbitError
from crdt.ipld.cid import CID
from crdt.orbitdb.address import format_hash, parse_address, parse_hash
from crdt.orbitdb.blocks import OrbitEntry, decode_access, decode_entry, decode_manifest
from crdt.orbitdb.log import OrbitLog
from gridnode.net.bitswap import Bitswap
from gridnode.net.host import Host
from gridnode.node.budget import Budgets
from gridnode.orbitdb.state import OrbitReplica, OrbitStats
from gridnode.repo import Repo
from gridnode.storage.worker import StorageWorker

__all__ = ["FETCH_BATCH", "FETCH_TIMEOUT", "MAX_ENTRIES_PER_ROUND", "OrbitIngest"]

log = logging.getLogger(__name__)

#: Seconds one bitswap round of a fetch may take.
FETCH_TIMEOUT: Final = 30.0
#: Entries fetched in one round of an ingest (the rest come with the next exchange).
MAX_ENTRIES_PER_ROUND: Final = 100_000
#: Entries asked for in one bitswap request.
FETCH_BATCH: Final = 512

Refuse = Callable[[OrbitReplica, "str | None", str, str], None]


class OrbitIngest:
    """Fetch, verify, keep and materialise what head blocks reach; made by the follower."""

    def __init__(
        self,
        repo: Repo,
        host: Host,
        worker: StorageWorker,
        bitswap: Bitswap | None,
        stats: OrbitStats,
        *,
        refuse: Refuse,
        peers_of: Callable[[OrbitReplica], list[str]],
        budgets: Budgets | None = None,
    ) -> None:
        self._repo = repo
        self._host = host
        self._worker = worker
        self._bitswap = bitswap
        self.stats = stats
        self._refuse = refuse
        self._peers_of = peers_of
        #: Per peer: the storage work of taking in what a peer offered is charged to it.
        self._budgets = budgets

    async def _fetch(self, cids: Sequence[CID], peers: Sequence[str]) -> dict[CID, bytes]:
        if not cids:
            return {}
        # Blocks kept already (an identity that writes to another followed database, a block
        # kept before a restart) come from the node's own file, not the network.
        kept = await self._worker.run(self._repo.orbit.get_many, [c.bytes for c in cids])
        got: dict[CID, bytes] = {}
        for cid in cids:
            block = kept.get(cid.bytes)
            if block is not None and cid.matches(block):
                got[cid] = block
        wanted = [cid for cid in cids if cid not in got]
        if self._bitswap is None or not wanted:
            return got

        async def batch(part: Sequence[CID]) -> None:
            assert self._bitswap is not None
            got.update(await self._bitswap.fetch(part, peers, timeout=FETCH_TIMEOUT))

        async with trio.open_nursery() as nursery:
            for start in range(0, len(wanted), FETCH_BATCH):
                nursery.start_soon(batch, wanted[start : start + FETCH_BATCH])
        return got

    def _fetch_peers(self, replica: OrbitReplica, offered_by: Sequence[str]) -> list[str]:
        connected = set(self._host.peers())
        peers = [p for p in offered_by if p in connected]
        peers += [p for p in self._host.topic_peers(replica.address) if p not in peers]
        peers += [p for p in self._peers_of(replica) if p not in peers]
        return peers

    async def _ensure_manifest(self, replica: OrbitReplica, peers: Sequence[str]) -> bool:
        if replica.log is not None:
            return True
        cid = parse_address(replica.address)
        got = await self._fetch([cid], peers)
        if cid not in got:
            return False
        try:
            manifest = decode_manifest(cid, got[cid])
            access_got = await self._fetch([manifest.access_controller], peers)
            if manifest.access_controller not in access_got:
                return False
            access = decode_access(
                manifest.access_controller, access_got[manifest.access_controller]
            )
        except OrbitError as exc:
            replica.error = f"{type(exc).__name__}: {exc}"
            self._refuse(replica, None, type(exc).__name__, str(exc))
            return False
        await self._worker.run(
            self._repo.orbit.put_blocks,
            replica.address,
            [
                (cid.bytes, "manifest", got[cid]),
                (
                    manifest.access_controller.bytes,
                    "access",
                    access_got[manifest.access_controller],
                ),
            ],
        )
        replica.log = OrbitLog(manifest, access)
        replica.error = None
        if self._bitswap is not None:
            self._bitswap.blocks_added()
        replica._changed()
        return True

    async def ingest(
        self,
        replica: OrbitReplica,
        blocks: Sequence[bytes],
        offered_by: Sequence[str],
        *,
        announce: bool = False,
    ) -> None:
        """Take head blocks in: fetch what they reach (and what waiting entries wait for),
        verify, keep, materialise. ``announce``: publish the new heads on the topic (heads
        that came another way than the topic, so the topic's OrbitDB peers hear of them now,
        not at the next exchange)."""
        if replica.scope.cancel_called:
            return
        origin = offered_by[0] if offered_by else None
        charged = (
            self._budgets.serving(origin)
            if self._budgets is not None and origin is not None
            else contextlib.nullcontext()
        )
        with charged:
            accepted = await self._ingest_charged(replica, blocks, offered_by)
        if accepted and announce and replica.log is not None:
            hashes = {entry.hash for entry in accepted}
            for head in replica.log.heads():
                if head.hash in hashes:
                    await self._host.publish(replica.address, head.block)
                    self.stats.heads_published += 1

    async def _ingest_charged(
        self, replica: OrbitReplica, blocks: Sequence[bytes], offered_by: Sequence[str]
    ) -> list[OrbitEntry]:
        async with replica.lock:
            peers = self._fetch_peers(replica, offered_by)
            origin = offered_by[0] if offered_by else None
            if not await self._ensure_manifest(replica, peers):
                return []
            orbit_log = replica.log
            assert orbit_log is not None
            new: dict[str, OrbitEntry] = {}
            frontier: list[str] = list(orbit_log.wanted())

            def take(cid: CID, block: bytes) -> None:
                hash_ = format_hash(cid)
                if hash_ in new or orbit_log.status(hash_) != "unknown":
                    return
                try:
                    entry = decode_entry(cid, block)
                except OrbitError as exc:
                    self._refuse(replica, origin, type(exc).__name__, f"{hash_}: {exc}")
                    return
                new[hash_] = entry
                frontier.extend(entry.next)
                frontier.extend(entry.refs)

            for block in blocks:
                take(CID.for_block(block, "dag-cbor"), block)
            missing: set[str] = set()
            while frontier and len(new) < MAX_ENTRIES_PER_ROUND:
                wanted = [
                    h
                    for h in dict.fromkeys(frontier)
                    if h not in new and h not in missing and orbit_log.status(h) == "unknown"
                ]
                frontier.clear()
                cids: list[CID] = []
                for h in wanted[: MAX_ENTRIES_PER_ROUND - len(new)]:
                    try:
                        cids.append(parse_hash(h))
                    except InvalidOrbitAddress:
                        missing.add(h)
                got = await self._fetch(cids, peers)
                for cid in cids:
                    if cid in got:
                        take(cid, got[cid])
                    else:
                        missing.add(format_hash(cid))
            if not new:
                return []
            await self._identities(replica, {e.identity for e in new.values()}, peers, origin)
            accepted = await trio.to_thread.run_sync(self._verify, replica, new, origin)
            if not accepted:
                return []
            await self._worker.run(
                self._repo.orbit.put_blocks,
                replica.address,
                [(e.cid.bytes, "entry", e.block) for e in accepted],
            )
            self.stats.entries_accepted += len(accepted)
            if self._bitswap is not None:
                self._bitswap.blocks_added()
            replica._changed()
            return accepted

    async def _identities(
        self, replica: OrbitReplica, hashes: set[str], peers: Sequence[str], origin: str | None
    ) -> None:
        orbit_log = replica.log
        assert orbit_log is not None
        cids = []
        for h in sorted(hashes):
            if orbit_log.identity(h) is not None:
                continue
            try:
                cids.append(parse_hash(h))
            except InvalidOrbitAddress:
                continue
        got = await self._fetch(cids, peers)
        kept = []
        for cid, block in got.items():
            try:
                orbit_log.add_identity(cid, block)
            except OrbitError as exc:
                self._refuse(replica, origin, type(exc).__name__, f"identity {cid}: {exc}")
                continue
            kept.append((cid.bytes, "identity", block))
        if kept:
            await self._worker.run(self._repo.orbit.put_blocks, replica.address, kept)
            self.stats.identities_accepted += len(kept)

    def _verify(
        self, replica: OrbitReplica, new: dict[str, OrbitEntry], origin: str | None
    ) -> list[OrbitEntry]:
        """Offer ``new`` to the log, oldest clock first; the entries it accepted (those and the
        entries that waited on them), parents first. Runs in a thread: no await; the replica's
        lock keeps every other writer of the log out meanwhile."""
        orbit_log = replica.log
        assert orbit_log is not None
        accepted: list[OrbitEntry] = []
        for entry in sorted(new.values(), key=lambda e: (e.clock_time, e.hash)):
            try:
                accepted.extend(orbit_log.add_entry(entry.cid, entry.block))
            except OrbitError as exc:
                self._refuse(replica, origin, type(exc).__name__, str(exc))
        return accepted
