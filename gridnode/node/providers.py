"""Discovery without the primary: the node's use of the DHT (:mod:`gridnode.net.dht`).

Owns: telling the DHT which CIDs this node holds, and asking it who holds a database.

* **Provide.** For every database the node replicates and does not keep private, its manifest
  CID and up to :data:`HEADS_PROVIDED` of its heads are provided: a provider record goes to the
  k peers closest to each CID. The manifest lets a gridnode (or an IPFS node) that knows only the
  database's address find its holders; a head lets an IPFS node asked to pin an entry find one.
  Every :data:`CHECK_INTERVAL` seconds what is new (a database followed or created, new heads) is
  provided; every ``reprovide_interval`` seconds everything again (records live 48 h). A private
  database is never provided: a provider record tells everyone who holds what.
* **Find.** :meth:`Providers.connect_holders` looks the manifest CID up and dials the holders
  (at most :data:`HOLDERS_DIALLED`); :meth:`gridnode.node.Node.follow` calls it when no
  connected peer keeps the database (say every bootstrap peer is down), and follows again.

Refuses nothing itself: the DHT's bounds are in :mod:`gridnode.net.dht`, and a holder found is
only dialled; what it then sends is verified like anything a peer sends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from crdt.ipld.cid import CID
from crdt.manifest import parse_address
from gridnode.errors import NetError
from gridnode.net.dht import Dht
from gridnode.repo import StoredDatabase
from gridnode.storage.worker import StorageWorker

__all__ = ["CHECK_INTERVAL", "HEADS_PROVIDED", "HOLDERS_DIALLED", "Providers"]

log = logging.getLogger(__name__)

#: Heads of one database provided (a database with more has them provided a few at a time as
#: they change; the manifest is enough to find a holder, which then serves the rest).
HEADS_PROVIDED: Final = 4
#: Seconds between looks for something new to provide.
CHECK_INTERVAL: Final = 30.0
#: Holders of a database dialled after a lookup.
HOLDERS_DIALLED: Final = 4
#: CIDs provided at once.
_PARALLEL: Final = 4


class Providers:
    """The node's provider records and holder lookups (``None`` DHT: the node has none)."""

    def __init__(
        self,
        dht: Dht,
        nursery: trio.Nursery,
        worker: StorageWorker,
        databases: Callable[[], list[StoredDatabase]],
        connect: Callable[[str], Awaitable[str]],
        *,
        reprovide_interval: float,
    ) -> None:
        self.dht = dht
        self._nursery = nursery
        self._worker = worker
        self._databases = databases
        self._connect = connect
        self.reprovide_interval = reprovide_interval
        #: CID -> when it was last provided (trio time).
        self._provided: dict[CID, float] = {}
        self._wake = trio.Event()

    def start(self) -> None:
        self._nursery.start_soon(self._run)

    async def wanted(self) -> list[CID]:
        """What this node should provide now: manifests and a few heads of its public databases."""

        def collect() -> list[CID]:
            cids: list[CID] = []
            for database in self._databases():
                if database.private:
                    continue
                cids.append(database.manifest.cid)
                cids.extend(sorted(database.heads)[:HEADS_PROVIDED])
            return cids

        return await self._worker.run(collect)

    async def provide_due(self, *, everything: bool = False) -> int:
        """Provide what was never provided, or not within ``reprovide_interval`` (everything if
        asked); how many CIDs were provided."""
        now = trio.current_time()
        wanted = await self.wanted()
        due = [
            cid
            for cid in wanted
            if everything or now - self._provided.get(cid, -1e18) >= self.reprovide_interval
        ]
        for cid in set(self._provided) - set(wanted):
            del self._provided[cid]  # an old head, a database unfollowed: left to expire
            self.dht.unprovide(cid)
        limiter = trio.CapacityLimiter(_PARALLEL)

        async def one(cid: CID) -> None:
            async with limiter:
                taken = await self.dht.provide(cid)
                log.debug("provided %s to %d peers", cid, taken)
                self._provided[cid] = trio.current_time()

        async with trio.open_nursery() as nursery:
            for cid in due:
                nursery.start_soon(one, cid)
        return len(due)

    def poke(self) -> None:
        """Look for something new to provide now (a database was followed or created)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.provide_due()
            except NetError as exc:
                log.debug("providing: %s", exc)
            with trio.move_on_after(CHECK_INTERVAL):
                await self._wake.wait()
            self._wake = trio.Event()

    async def holders(self, address: str) -> list[tuple[str, tuple[str, ...]]]:
        """Peers the DHT says hold the database at ``address``: ``(peer id, addresses)``."""
        manifest = parse_address(address)
        found = await self.dht.find_providers(manifest, count=HOLDERS_DIALLED * 2)
        return [(p.peer_id, p.addrs) for p in found]

    async def connect_holders(self, address: str, timeout: float) -> list[str]:
        """Find the holders of the database at ``address`` and connect to up to
        :data:`HOLDERS_DIALLED` of them; the peer ids connected."""
        connected: list[str] = []
        with trio.move_on_after(timeout):
            for peer_id, addrs in await self.holders(address):
                for addr in addrs:
                    try:
                        await self._connect(f"{addr}/p2p/{peer_id}")
                    except (NetError, ValueError) as exc:
                        log.debug("holder %s at %s: %s", peer_id, addr, exc)
                        continue
                    connected.append(peer_id)
                    break
                if len(connected) >= HOLDERS_DIALLED:
                    break
        return connected
