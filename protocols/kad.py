"""The state of a Kademlia DHT node, without I/O: its routing table and its provider records.

Sans-IO (time is passed in, peers are named by their id text and their 256-bit Kademlia key,
the SHA-256 of the peer id's bytes, computed by the caller): :class:`RoutingTable` keeps at most
``k`` peers per bucket and ``max_table`` in all, and :class:`ProviderStore` keeps provider
records bounded per key, per providing peer and in all, each living ``ttl`` seconds unless
provided again. ``gridnode/net/dht.py`` (the wire, the streams, the lookups) holds one of each.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ProviderStore", "RoutingTable", "kad_key"]


def kad_key(data: bytes) -> int:
    """The Kademlia key of a peer id's or a record key's bytes: SHA-256 as a 256-bit integer."""
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


@dataclass
class _Entry:
    addrs: tuple[str, ...]
    key: int
    failures: int = 0


class RoutingTable:
    """Peers that answered as DHT servers, by bucket (the length of the prefix their key shares
    with ``own_key``), at most ``k`` per bucket and ``max_table`` in all, ``addrs_per_peer``
    addresses kept for each."""

    def __init__(self, own_key: int, *, k: int, max_table: int, addrs_per_peer: int) -> None:
        self.own_key = own_key
        self.k = k
        self.max_table = max_table
        self.addrs_per_peer = addrs_per_peer
        self._buckets: dict[int, OrderedDict[str, _Entry]] = {}

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def __contains__(self, peer_id: object) -> bool:
        return any(peer_id in bucket for bucket in self._buckets.values())

    def peers(self) -> list[str]:
        return [peer for bucket in self._buckets.values() for peer in bucket]

    def clear(self) -> None:
        self._buckets.clear()

    def _bucket_of(self, key: int) -> int:
        return 256 - (key ^ self.own_key).bit_length()

    def add(self, peer_id: str, key: int, addrs: Sequence[str]) -> bool:
        """Put a peer that answered in the table; whether it is there now.

        A full bucket keeps its peers (long-lived ones are the reliable ones: Kademlia's rule)
        unless one of them failed since it last answered; then that one makes room."""
        bucket = self._buckets.setdefault(self._bucket_of(key), OrderedDict())
        kept = tuple(addrs[: self.addrs_per_peer])
        entry = bucket.get(peer_id)
        if entry is not None:
            if kept:
                entry.addrs = kept
            entry.failures = 0
            bucket.move_to_end(peer_id)
            return True
        if len(bucket) >= self.k or len(self) >= self.max_table:
            failed = next((p for p, e in bucket.items() if e.failures), None)
            if failed is None:
                return False
            del bucket[failed]
        bucket[peer_id] = _Entry(kept, key)
        return True

    def failed(self, peer_id: str, key: int) -> None:
        """A request to the peer failed; the second failure in a row removes it."""
        bucket = self._buckets.get(self._bucket_of(key))
        if bucket is not None and peer_id in bucket:
            bucket[peer_id].failures += 1
            if bucket[peer_id].failures >= 2:
                del bucket[peer_id]

    def addrs(self, peer_id: str, key: int) -> tuple[str, ...]:
        """The addresses the table keeps for the peer (empty when it is not there)."""
        bucket = self._buckets.get(self._bucket_of(key))
        entry = None if bucket is None else bucket.get(peer_id)
        return () if entry is None else entry.addrs

    def closest(self, key: int, count: int, exclude: str | None = None) -> list[tuple[str, int]]:
        """The ``count`` peers closest to ``key``: ``(peer id, XOR distance)``, closest first."""
        every = [
            (peer, entry.key ^ key)
            for bucket in self._buckets.values()
            for peer, entry in bucket.items()
            if peer != exclude
        ]
        every.sort(key=lambda item: item[1])
        return every[:count]


@dataclass
class _Record:
    addrs: tuple[str, ...]
    expires: float


class ProviderStore:
    """Provider records other peers stored here: record key (a multihash) -> providing peer ->
    its addresses, until ``ttl`` seconds after it was last provided."""

    def __init__(self, *, per_key: int, per_peer: int, total: int, ttl: float) -> None:
        self.per_key = per_key
        self.per_peer = per_peer
        self.total = total
        self.ttl = ttl
        self._records: dict[bytes, OrderedDict[str, _Record]] = {}
        self._per_peer: dict[str, int] = {}
        self._count = 0

    def __len__(self) -> int:
        """Records held (expired ones not yet swept included)."""
        return self._count

    def held_by(self, peer_id: str) -> int:
        """Records the peer has stored here."""
        return self._per_peer.get(peer_id, 0)

    def store(self, key: bytes, peer_id: str, addrs: tuple[str, ...], now: float) -> bool:
        """Keep (or refresh) the peer's record for ``key``; False when a bound refuses it."""
        held = self._records.get(key)
        record = None if held is None else held.get(peer_id)
        if record is not None:  # a refresh
            record.expires = now + self.ttl
            if addrs:
                record.addrs = addrs
            return True
        self.sweep_key(key, now)
        records = self._records.get(key, OrderedDict())
        if (
            len(records) >= self.per_key
            or self.held_by(peer_id) >= self.per_peer
            or self._count >= self.total
        ):
            return False
        self._records[key] = records
        records[peer_id] = _Record(addrs, now + self.ttl)
        self._per_peer[peer_id] = self.held_by(peer_id) + 1
        self._count += 1
        return True

    def sweep_key(self, key: bytes, now: float) -> None:
        records = self._records.get(key)
        if records is None:
            return
        for peer_id in [p for p, r in records.items() if r.expires <= now]:
            del records[peer_id]
            self._count -= 1
            left = self._per_peer.pop(peer_id) - 1
            if left:
                self._per_peer[peer_id] = left
        if not records:
            del self._records[key]

    def sweep(self, now: float) -> None:
        """Drop every expired record."""
        for key in list(self._records):
            self.sweep_key(key, now)

    def providers(self, key: bytes, now: float) -> list[tuple[str, tuple[str, ...]]]:
        """The live records for ``key``: ``(peer id, addresses)``, oldest first."""
        self.sweep_key(key, now)
        return [(p, r.addrs) for p, r in self._records.get(key, {}).items()]
