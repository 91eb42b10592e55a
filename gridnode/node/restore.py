"""Restore over bitswap: a database fetched from IPFS peers, and the gaps of one filled.

Two jobs, one walk. :meth:`Restorer.restore` fetches a whole database from its roots (the
manifest's CID, then heads: what ``gridnode export`` writes and ``gridnode pin remote`` pins);
:meth:`Restorer.fill_gaps` fetches the parents that pending entries of a replicated database wait
for, when no gridnode peer has them any more but an IPFS node that pinned the database (Kubo,
say) still may. Both go down the DAG level by level (:meth:`Restorer.walk`), newest first, one
bitswap ask per level: an entry's links are only known once it has arrived.

What it refuses to trust: every block received is hashed against its CID by bitswap, every entry
is decoded and its signature checked off the event loop before its links are followed (a forged
entry cannot send the walk anywhere), and the entries are then joined as a CAR import is, parents
first, judged by the log. An invalid block goes into the report's ``rejected``, never into the
store. What it refuses to wait for: entries not found by the deadline stay missing, and the
database waits for them like for any other gap.

Gap filling runs with the announcements (every ``announce_interval``), for a database no pull is
running for (a pull may bring the same entries cheaper) and one fill at a time per database.
With bitswap off in the config there is nothing to do: :meth:`Restorer.restore` raises
:class:`~gridnode.errors.FeatureOff`, and no gap is filled.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

import trio

from crdt.entry import Entry, decode_entry
from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from crdt.manifest import decode_manifest
from gridnode.errors import FeatureOff, InvalidRequest, UnknownDatabase
from gridnode.net.bitswap import Bitswap
from gridnode.node.replication import Replication
from gridnode.node.stats import CountJoin
from gridnode.repo import BITSWAP_SOURCE, ImportReport, Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker

__all__ = ["GAP_ASK_SECONDS", "GAP_FILL_SECONDS", "MAX_GAP_FILL", "Restorer"]

log = logging.getLogger(__name__)

#: Gap filling over bitswap: missing parents asked for at once, how long peers have to answer
#: that first ask, and how long the whole fill (the walk down the missing past) may take.
MAX_GAP_FILL: Final = 1024
GAP_ASK_SECONDS: Final = 5.0
GAP_FILL_SECONDS: Final = 60.0


class Restorer:
    """Bitswap restores and gap fills of one running node; made by
    :class:`~gridnode.node.Node`."""

    def __init__(
        self,
        repo: Repo,
        nursery: trio.Nursery,
        worker: StorageWorker,
        bitswap: Bitswap | None,
        replication: Replication,
        *,
        peers: Callable[[], list[str]],
        count_join: CountJoin,
    ) -> None:
        self._repo = repo
        self._nursery = nursery
        self._worker = worker
        self._bitswap = bitswap
        self._replication = replication
        self._peers = peers
        self._count_join = count_join
        #: Addresses a gap fill runs for now.
        self._filling: set[str] = set()

    def start(self) -> None:
        """Fill the gaps of every replicated database with each round of announcements."""
        if self._bitswap is not None and math.isfinite(self._replication.announce_interval):
            self._nursery.start_soon(self._fill_periodically)

    async def restore(
        self, roots: Sequence[CID], peers: Sequence[str] | None = None, *, timeout: float = 120.0
    ) -> ImportReport:
        """Fetch a database from ``peers`` (default: every connected peer) over bitswap, keep it
        and replicate it; see :meth:`gridnode.node.Node.restore`."""
        bitswap = self._bitswap
        if bitswap is None:
            raise FeatureOff(
                "bitswap is off in this node's config: 'bitswap = true' in gridnode.toml turns it "
                "on (then restart the node)"
            )
        if not roots:
            raise InvalidRequest("restore needs the manifest's CID (then the heads)")
        self._repo.quota.check(f"restore {roots[0]}")
        asked = list(self._peers() if peers is None else peers)
        manifest_cid, heads = roots[0], list(dict.fromkeys(roots[1:]))
        deadline = trio.current_time() + timeout
        got = await bitswap.fetch(
            [manifest_cid, *heads], asked, timeout=max(0.0, deadline - trio.current_time())
        )
        block = got.pop(manifest_cid, None)
        if block is None:
            raise UnknownDatabase(f"no peer asked sent the manifest {manifest_cid}")
        manifest = decode_manifest(manifest_cid, block)
        report = ImportReport(address=manifest.address)
        try:
            existing: StoredDatabase | None = await self._worker.run(
                self._repo.database, manifest.address
            )
        except UnknownDatabase:
            existing = None
        entries = await self.walk(
            got, asked, deadline, report, None if existing is None else existing.unknown
        )
        if existing is None:
            database = await self._worker.run(self._repo.add_database, manifest)
        else:
            database = existing
        report = await self._worker.run(
            partial(database.join_entries, entries, report, source=BITSWAP_SOURCE)
        )
        self._count_join("bitswap", report)
        await self._replication.replicate(database)
        return report

    async def fill_gaps(self, address: str) -> None:
        """Fetch over bitswap, from every connected peer, the parents that pending entries of
        the replicated database at ``address`` wait for (and their own past, as far as it is
        missing); announce what it added. Nothing while a pull or another fill of it runs."""
        bitswap = self._bitswap
        if (
            bitswap is None
            or address in self._filling
            or not self._replication.replicating(address)
            or self._replication.pulling(address)
            or self._repo.quota.full()  # at the bound: gaps wait until it clears
        ):
            return
        peers = self._peers()
        if not peers:
            return
        database = self._replication.database(address)
        if await self._worker.run(lambda: database.private):
            return  # bitswap wants go to every peer, and no peer serves private blocks by CID
        self._filling.add(address)
        try:
            missing = await self._worker.run(database.first_missing, MAX_GAP_FILL)
            if not missing:
                return
            deadline = trio.current_time() + GAP_FILL_SECONDS
            got = await bitswap.fetch(missing[:MAX_GAP_FILL], peers, timeout=GAP_ASK_SECONDS)
            if not got:
                return
            report = ImportReport(address=database.address)
            entries = await self.walk(got, peers, deadline, report, database.unknown)
            report = await self._worker.run(
                partial(database.join_entries, entries, report, source=BITSWAP_SOURCE)
            )
            self._count_join("bitswap", report)
            log.info(
                "filled gaps of %s over bitswap: %d entries applied",
                database.address,
                report.applied,
            )
            if report.applied:
                await self._replication.announce(database.address)
        except GridnodeError as exc:
            log.warning("filling the gaps of %s over bitswap: %s", database.address, exc)
        finally:
            self._filling.discard(address)

    async def _fill_periodically(self) -> None:
        while True:
            await trio.sleep(self._replication.announce_interval)
            # One look at every replica's counter of missing parents, in one storage call: a
            # fill starts for those with gaps only, so an idle node's round costs microseconds
            # per database, not two storage calls and a task each.
            with_gaps = await self._worker.run(_with_gaps, self._replication.databases())
            for address in with_gaps:
                self._nursery.start_soon(self.fill_gaps, address)

    async def walk(
        self,
        first: dict[CID, bytes],
        peers: Sequence[str],
        deadline: float,
        report: ImportReport,
        unknown: Callable[[list[CID]], list[CID]] | None = None,
    ) -> list[Entry]:
        """The entries ``first`` holds and every entry they link to (parents, skip links) that
        ``peers`` send over bitswap by ``deadline``, fetched level by level (newest first; the
        join puts parents first).

        Each level is verified (hash, structure, signature) off the event loop as it arrives,
        once: the links of a verified entry are what the walk follows, and the caller joins the
        verified entries as they are. An invalid block goes into ``report.rejected``. Given
        ``unknown`` (a database's :meth:`~gridnode.repo.StoredDatabase.unknown`), the walk does
        not fetch what the database already holds.
        """
        bitswap = self._bitswap
        if bitswap is None:
            raise FeatureOff("bitswap is off in this node's config")

        def verify(level: list[tuple[CID, bytes]]) -> list[Entry]:
            verified = []
            for cid, data in level:
                try:
                    verified.append(decode_entry(cid, data))
                except GridnodeError as exc:
                    report.rejected.append((str(cid), f"{type(exc).__name__}: {exc}"))
            return verified

        entries: list[Entry] = []
        seen = set(first)
        level = list(first.items())
        while level:
            verified = await trio.to_thread.run_sync(verify, level)
            entries += verified
            links = []
            for entry in verified:
                for link in (*entry.next, *entry.skip):
                    if link not in seen:
                        seen.add(link)
                        links.append(link)
            if links and unknown is not None:
                links = await self._worker.run(unknown, links)
            left = deadline - trio.current_time()
            if not links or left <= 0:
                break
            level = list((await bitswap.fetch(links, peers, timeout=left)).items())
        return entries


def _with_gaps(databases: Sequence[StoredDatabase]) -> list[str]:
    """The addresses of those of ``databases`` whose pending entries wait for parents (a
    counter read each)."""
    return [database.address for database in databases if database.missing_count]
