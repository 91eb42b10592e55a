"""Catalogs: the databases a node follows because a catalog it follows lists them.

A catalog (docs/catalogs.md, :mod:`protocols.catalog`) is a keyvalue database its admins write;
the node follows those named by the config's ``catalogs``. This room owns what follows from them:

- it follows each catalog itself (from any connected peer that keeps it), and reads it again
  whenever its heads change, checking every :data:`TICK` seconds (at most the announce interval),
  so a change a peer announces is acted on within one announce interval;
- it dials the catalog's seed peers (remembered, so they are redialled when lost);
- it follows every database a catalog lists, at most :data:`MAX_FOLLOWS` at a time, and tries
  again on the next tick one that no connected peer had yet;
- when no followed catalog lists a database any more, it stops following it, but only one that it
  followed itself (``Repo.followed_for_catalog``): a database the operator followed by hand, or
  kept before a catalog listed it, is never unfollowed by a catalog; one the operator unfollowed
  by hand (``db unfollow``) is not followed again by a catalog until the operator follows it.
  Unfollowing keeps the data
  (the node serves nothing of it and pulls nothing more; ``db follow`` takes it up again), or
  with the ``drop_unlisted`` setting deletes it (``Repo.drop_database``) once a pull under way
  has ended.
  Nothing is unfollowed while some followed catalog has not been read yet: what it lists is not
  known.

It refuses what breaks the schema item by item (:func:`protocols.catalog.parse_catalog`), logged
a few lines per catalog and minute (:class:`~gridnode.logs.LogLimiter`), and a followed catalog
that is not a keyvalue database with the ``catalog`` key lists nothing.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

import trio

from crdt.errors import GridnodeError
from gridnode.logs import LogLimiter
from gridnode.node.peers import Peering
from gridnode.node.replication import Replication
from gridnode.node.snapshots import Snapshots
from gridnode.repo import Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker
from protocols.catalog import Catalog, canonical_address, parse_catalog

__all__ = ["FOLLOW_SECONDS", "MAX_FOLLOWS", "TICK", "Catalogs"]

log = logging.getLogger(__name__)

#: Seconds between two looks at the followed catalogs' heads (or the announce interval, if
#: shorter): cheap (heads are in memory), and what bounds the delay after a catalog changes.
TICK: Final = 1.0
#: Follows (a manifest fetch, then a sync) started at once; the others wait for a later tick.
MAX_FOLLOWS: Final = 8
#: How long one follow may look for a connected peer that keeps the database.
FOLLOW_SECONDS: Final = 10.0


class Catalogs:
    """The followed catalogs and what they make the node follow (see the module docstring)."""

    def __init__(
        self,
        repo: Repo,
        nursery: trio.Nursery,
        worker: StorageWorker,
        replication: Replication,
        peering: Peering,
        addresses: list[str],
        *,
        announce_interval: float,
        snapshots: Snapshots | None = None,
    ) -> None:
        self._repo = repo
        self._nursery = nursery
        self._worker = worker
        self._replication = replication
        #: A database listed here and held nothing of starts from a signed snapshot, as any
        #: follow does (config ``snapshots``): a catalog's new replica serves reads at once.
        self._snapshots = snapshots
        self._peering = peering
        self.addresses: list[str] = []
        for address in addresses:
            try:
                canonical = canonical_address(address)
            except GridnodeError as exc:
                log.error("not following the catalog %r: %s", address, exc)
                continue
            if canonical not in self.addresses:
                self.addresses.append(canonical)
        self.tick = min(TICK, announce_interval) if math.isfinite(announce_interval) else TICK
        #: Catalog address -> what it lists, as last read.
        self.views: dict[str, Catalog] = {}
        self._heads: dict[str, tuple[Any, ...]] = {}
        self._following: set[str] = set()
        self._dialled: set[str] = set()
        self._dropping: set[str] = set()
        #: Listed databases the operator unfollowed by hand (read when a catalog changes).
        self._declined: set[str] = set()
        self._refusals = LogLimiter(lines=3, interval=60.0)
        #: The node's OrbitDB follower (``orbitdb:`` items are followed through it), set by
        #: the node once made.
        self.orbitdb: Any = None
        #: Set once the watcher has read every followed catalog and follows all they list.
        self.changed = trio.Event()

    def start(self) -> None:
        if self.addresses:
            self._nursery.start_soon(self._watch)

    # -- what the API reads -------------------------------------------------------------------

    def listing(self, address: str) -> list[str]:
        """The followed catalogs that list the database at ``address``."""
        return [c for c, view in self.views.items() if address in view.addresses]

    def as_json(self) -> list[dict[str, Any]]:
        """``/status``'s ``catalogs``: each followed catalog, read or not yet."""
        out = []
        for address in self.addresses:
            view = self.views.get(address)
            out.append(
                {
                    "address": address,
                    "name": view.name if view is not None else "",
                    "databases": sorted(view.addresses) if view is not None else [],
                    "peers": list(view.peers) if view is not None else [],
                    "files": sorted(view.file_cids) if view is not None else [],
                    "orbitdb": sorted(view.orbitdb_addresses) if view is not None else [],
                }
            )
        return out

    async def followed_by_hand(self, address: str) -> None:
        """The operator followed ``address``: no catalog removal unfollows it from now on."""
        await self._worker.run(self._repo.set_followed_for_catalog, address, False)
        await self._worker.run(self._repo.set_declined, address, False)
        self._declined.discard(address)

    async def unfollowed_by_hand(self, address: str) -> None:
        """The operator unfollowed ``address``: no catalog follows it again until the operator
        does (``db follow``)."""
        await self._worker.run(self._repo.set_declined, address, True)
        self._declined.add(address)

    # -- the watcher --------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            try:
                await self._round()
            except GridnodeError as exc:
                log.warning("catalogs: %s", exc)
            await trio.sleep(self.tick)

    async def _round(self) -> None:
        changed = False
        for address in self.addresses:
            if not self._replication.replicating(address):
                self._start_follow(address, for_catalog=False)
                continue
            database = self._replication.database(address)
            heads = await self._worker.run(_heads, database)
            if self._heads.get(address) == heads and address in self.views:
                continue
            view = await self._worker.run(_read, database)
            self._heads[address] = heads
            self.views[address] = view
            changed = True
            if heads:
                # A catalog just followed has no entries yet: nothing to say of it.
                self._log_refused(address, view)
            for multiaddr in view.peers:
                if multiaddr not in self._dialled:
                    self._dialled.add(multiaddr)
                    self._nursery.start_soon(self._peering.connect, multiaddr)
        wanted: set[str] = set()
        for view in self.views.values():
            wanted |= view.addresses
        for address in sorted(wanted - self._declined):
            if not self._replication.replicating(address):
                self._start_follow(address, for_catalog=True)
        if self.orbitdb is not None:
            listed: set[str] = set()
            for view in self.views.values():
                listed |= view.orbitdb_addresses
                for address in sorted(view.orbitdb_addresses):
                    if address not in self.orbitdb.replicas:
                        self._nursery.start_soon(self._follow_orbitdb, address, view.peers)
            if changed and all(a in self.views for a in self.addresses):
                await self._unfollow_unlisted_orbitdb(listed)
        if changed:
            self._declined = {a for a in wanted if await self._worker.run(self._repo.declined, a)}
        if changed and all(a in self.views for a in self.addresses):
            await self._unfollow_unlisted(wanted)
        if all(a in self.views for a in self.addresses) and all(
            self._replication.replicating(a) for a in wanted - self._declined
        ):
            self.changed.set()

    async def _unfollow_unlisted(self, wanted: set[str]) -> None:
        for address in self._replication.addresses():
            if address in wanted or address in self.addresses:
                continue
            if not await self._worker.run(self._repo.followed_for_catalog, address):
                continue
            if self._repo.config.drop_unlisted:
                if address not in self._dropping:
                    self._dropping.add(address)
                    self._nursery.start_soon(self._drop, address)
                continue
            await self._replication.unfollow(address)
            await self._worker.run(self._repo.set_followed_for_catalog, address, False)
            log.info("unfollowed %s: no followed catalog lists it (its data is kept)", address)

    async def _drop(self, address: str) -> None:
        try:
            # A pull under way would write on into what is deleted: wait for it to end. No pull
            # starts once it is unfollowed, and nothing is awaited between this check and that.
            while self._replication.pulling(address):
                await trio.sleep(self.tick)
            if any(address in view.addresses for view in self.views.values()):
                return  # listed again meanwhile
            if not self._replication.replicating(address):
                return
            await self._replication.unfollow(address)
            blocks = await self._worker.run(self._repo.drop_database, address)
            log.info(
                "unfollowed %s: no followed catalog lists it; deleted its %d blocks",
                address,
                blocks,
            )
        except GridnodeError as exc:
            log.warning("cannot delete %s: %s", address, exc)
        finally:
            self._dropping.discard(address)

    def _start_follow(self, address: str, *, for_catalog: bool) -> None:
        if address in self._following or len(self._following) >= MAX_FOLLOWS:
            return
        if not self._peering.host.peers():
            return
        self._following.add(address)
        self._nursery.start_soon(self._follow, address, for_catalog)

    async def _follow(self, address: str, for_catalog: bool) -> None:
        try:
            if for_catalog:
                # Followed for a catalog unless the node already kept and replicated it.
                await self._worker.run(self._repo.set_followed_for_catalog, address, True)
            snapshots = self._snapshots
            if snapshots is not None and await snapshots.fresh(address):
                await snapshots.follow_from_snapshot(address, timeout=FOLLOW_SECONDS)
            await self._replication.follow(address, timeout=FOLLOW_SECONDS)
            log.info("following %s%s", address, " (listed by a catalog)" if for_catalog else "")
        except GridnodeError as exc:
            # Tried again every tick: a few lines a minute per database, not one a tick.
            if self._refusals.allow("follow " + address, trio.current_time()):
                log.info("cannot follow %s yet: %s", address, exc)
        finally:
            self._following.discard(address)

    async def _unfollow_unlisted_orbitdb(self, listed: set[str]) -> None:
        """Unfollow the OrbitDB databases followed for a catalog that no catalog lists now
        (their blocks are dropped; one followed by hand stays)."""
        for address in sorted(set(self.orbitdb.replicas) - listed):
            if await self._worker.run(self._repo.orbit.for_catalog, address):
                await self.orbitdb.unfollow(address)
                log.info("unfollowed %s: no followed catalog lists it", address)

    async def _follow_orbitdb(self, address: str, peers: tuple[str, ...]) -> None:
        """Follow an OrbitDB database a catalog lists (read-only; from the catalog's peers and
        the topic's)."""
        try:
            await self.orbitdb.follow(address, list(peers), timeout=0, for_catalog=True)
            log.info("following %s (listed by a catalog)", address)
        except GridnodeError as exc:
            if self._refusals.allow("follow " + address, trio.current_time()):
                log.info("cannot follow %s: %s", address, exc)

    def _log_refused(self, address: str, view: Catalog) -> None:
        now = trio.current_time()
        if not view.is_catalog and self._refusals.allow(address, now):
            log.warning("%s is not a catalog (no 'catalog' key in a keyvalue database)", address)
        for key, reason in view.refused:
            if self._refusals.allow(address, now):
                log.warning("catalog %s: refused %r: %s", address, key, reason)


def _heads(database: StoredDatabase) -> tuple[Any, ...]:
    return tuple(database.heads)


def _read(database: StoredDatabase) -> Catalog:
    if database.manifest.store != "keyvalue":
        return Catalog("", False)
    view = parse_catalog(database.store.items())  # type: ignore[attr-defined]
    return view if view.is_catalog else Catalog(view.name, False)
