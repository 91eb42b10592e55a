"""What the OrbitDB follower keeps in memory for each followed database (:class:`OrbitReplica`)
and counts (:class:`OrbitStats`); shared by :mod:`gridnode.orbitdb.follow` (the databases and
the heads protocol) and :mod:`gridnode.orbitdb.ingest` (fetching, verifying and keeping)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from crdt.orbitdb.blocks import OrbitAccess, OrbitManifest
from crdt.orbitdb.log import OrbitLog
from crdt.orbitdb.stores import Materialiser

__all__ = ["Note", "OrbitReplica", "OrbitStats", "Strike"]

Strike = Callable[[str, str], Awaitable[None]]
Note = Callable[..., None]


@dataclass
class OrbitStats:
    """What the OrbitDB follower did since the node started (status, metrics)."""

    entries_accepted: int = 0
    identities_accepted: int = 0
    heads_exchanges: int = 0
    heads_received: int = 0
    heads_sent: int = 0
    gossip_heads: int = 0
    #: New heads this node published on a topic (learnt another way than the topic).
    heads_published: int = 0
    #: Heads heard while the database's queue was full (dropped; anti-entropy brings them).
    heads_dropped: int = 0
    bad_streams: int = 0
    #: Refusals by reason (the error's class name).
    refused: Counter[str] = field(default_factory=Counter)
    #: Refusals by peer that offered the refused block.
    refused_by_peer: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entries_accepted": self.entries_accepted,
            "identities_accepted": self.identities_accepted,
            "heads_exchanges": self.heads_exchanges,
            "heads_received": self.heads_received,
            "heads_sent": self.heads_sent,
            "gossip_heads": self.gossip_heads,
            "heads_published": self.heads_published,
            "bad_streams": self.bad_streams,
            "heads_dropped": self.heads_dropped,
            "refused": dict(self.refused),
            "refused_total": sum(self.refused.values()),
        }


@dataclass
class OrbitReplica:
    """One followed OrbitDB database in memory: its verified log (:class:`OrbitLog`, with the
    manifest, access controller and identities), and the head blocks waiting to be taken in."""

    address: str
    peers: list[str]
    log: OrbitLog | None = None
    #: Refusals counted for this database.
    refused: int = 0
    #: Head blocks heard (gossip, heads streams) and not yet taken in, by hash: bounded
    #: (:data:`MAX_QUEUED_HEADS`), the newest dropped when full (anti-entropy brings them back).
    queued: dict[str, tuple[bytes, tuple[str, ...], bool]] = field(default_factory=dict)
    more: trio.Event = field(default_factory=trio.Event)
    #: Set to run a round of heads exchanges now (a follow again).
    wake: trio.Event = field(default_factory=trio.Event)
    lock: trio.Lock = field(default_factory=trio.Lock)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    changed: trio.Event = field(default_factory=trio.Event)
    error: str | None = None

    @property
    def manifest(self) -> OrbitManifest | None:
        return None if self.log is None else self.log.manifest

    @property
    def access(self) -> OrbitAccess | None:
        return None if self.log is None else self.log.access

    @property
    def view(self) -> Materialiser | None:
        """The materialised state (OrbitDB's answers), once the manifest is fetched."""
        return None if self.log is None else self.log.state

    def summary(self) -> dict[str, Any]:
        log_ = self.log
        return {
            "address": self.address,
            "name": None if log_ is None else log_.manifest.name,
            "type": None if log_ is None else log_.manifest.type,
            "entries": 0 if log_ is None else len(log_),
            "pending": 0 if log_ is None else log_.pending,
            "heads": [] if log_ is None else [e.hash for e in log_.heads()],
            "writers": [] if log_ is None else list(log_.access.write),
            "refused": self.refused,
            "peers": list(self.peers),
            "error": self.error,
        }

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()
