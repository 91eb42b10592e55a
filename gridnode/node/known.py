"""Which peers a node remembers to dial again, and how often a record's source may make it dial.

Sans-IO (no sockets, no clock: time is passed in), driven by :class:`~gridnode.node.peers.Peering`.

A peer record (gossip, peers topic) names a peer and the addresses it claims; anyone can make
thousands of them with fresh peer ids. So this room refuses to let records crowd out what the
node chose itself, and refuses to let one source or one network fill what is left:

- **protected** peers (bootstrap addresses, peers the user dialled) are never evicted, and do not
  count against any bucket;
- every other peer is kept under its **source** (who told us: the peer itself when it was
  connected to us, :data:`RELAYED` for every record that reached us through other peers,
  :data:`MDNS` for the LAN's answers) and its
  **address prefix** (``/ip4`` /16, ``/ip6`` /32, a DNS name): at most :data:`PER_SOURCE` per
  source and :data:`PER_PREFIX` per prefix. A new record may evict only an older entry *of its own
  source*; when its prefix is full of other sources' entries, it is refused. When the whole table
  is full, the oldest entry of the largest source goes;
- **dials** on behalf of a source come from a budget of :data:`DIAL_BURST` dials refilled at
  :data:`DIAL_RATE` per second (:class:`DialBudget`), so records from one source cannot make the
  node dial a stream of addresses chosen by that source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DIAL_BURST",
    "DIAL_RATE",
    "MAX_KNOWN_PEERS",
    "MDNS",
    "OURS",
    "PER_PREFIX",
    "PER_SOURCE",
    "RELAYED",
    "DialBudget",
    "KnownPeers",
    "prefix_of",
]

#: Peers (or bootstrap addresses) a node remembers to dial again, protected ones aside.
MAX_KNOWN_PEERS: Final = 256
#: Entries one source may have in the table.
PER_SOURCE: Final = 16
#: Entries one address prefix may have in the table.
PER_PREFIX: Final = 16
#: Dials one source may cause at once, and refilled per second (4 a minute).
DIAL_BURST: Final = 4
DIAL_RATE: Final = 4 / 60
#: The source of what the node chose itself: bootstrap addresses, peers the user dialled.
OURS: Final = ""
#: The source of peer records whose author was not connected to us: relayed, so any one of our
#: peers may have made them (fresh peer ids cost nothing).
RELAYED: Final = "relayed"
#: The source of peers found on the LAN by mDNS (anyone there can answer).
MDNS: Final = "mdns"
#: Addresses remembered per peer: enough for its interfaces, not a list a record could inflate.
ADDRS_PER_PEER: Final = 8


def prefix_of(multiaddr: str) -> str:
    """The network an address is in, for bucketing: ``ip4/a.b`` (/16), ``ip6/x:y`` (/32), the
    DNS name, or the protocol when it is none of those."""
    parts = multiaddr.split("/")
    if len(parts) < 3:
        return "other"
    proto, value = parts[1], parts[2]
    if proto == "ip4":
        return "ip4/" + ".".join(value.split(".")[:2])
    if proto == "ip6":
        groups = value.split(":")
        return "ip6/" + ":".join(groups[:2]).lower()
    if proto in ("dns", "dns4", "dns6", "dnsaddr"):
        return "dns/" + value.lower()
    return proto


@dataclass
class _Entry:
    source: str
    prefix: str


class KnownPeers(dict[str, tuple[str, ...]]):
    """Peer id (or a bootstrap address without one) -> its multiaddrs, bucketed as the module
    says. A plain dict to read; :meth:`remember` to add."""

    def __init__(
        self,
        *,
        most: int = MAX_KNOWN_PEERS,
        per_source: int = PER_SOURCE,
        per_prefix: int = PER_PREFIX,
    ) -> None:
        super().__init__()
        self.most = most
        self.per_source = per_source
        self.per_prefix = per_prefix
        self._entries: dict[str, _Entry] = {}

    def source_of(self, key: str) -> str:
        """Who told us of ``key`` (:data:`OURS` for a protected peer)."""
        entry = self._entries.get(key)
        return entry.source if entry is not None else OURS

    def protected(self, key: str) -> bool:
        return key in self and self.source_of(key) == OURS

    def remember(self, key: str, addrs: Sequence[str], source: str = OURS) -> bool:
        """Keep ``addrs`` of ``key``, told by ``source``; False if refused (its bucket is full of
        other sources' entries). A protected peer stays protected; the most recent goes last."""
        addrs = tuple(addrs)[:ADDRS_PER_PEER]
        if not addrs:
            return False
        if key in self and self.source_of(key) == OURS:
            source = OURS  # never demoted by a record
        prefix = prefix_of(addrs[0])
        self.pop(key, None)
        if source != OURS and not self._make_room(source, prefix):
            return False
        self[key] = addrs
        self._entries[key] = _Entry(source, prefix)
        return True

    def _make_room(self, source: str, prefix: str) -> bool:
        same_source = [k for k, e in self._unprotected() if e.source == source]
        if len(same_source) >= self.per_source:
            self.pop(same_source[0])
        in_prefix = [(k, e) for k, e in self._unprotected() if e.prefix == prefix]
        if len(in_prefix) >= self.per_prefix:
            own = [k for k, e in in_prefix if e.source == source]
            if not own:
                return False
            self.pop(own[0])
        unprotected = list(self._unprotected())
        if len(unprotected) >= self.most:
            largest, _ = Counter(e.source for _, e in unprotected).most_common(1)[0]
            self.pop(next(k for k, e in unprotected if e.source == largest))
        return True

    def _unprotected(self) -> list[tuple[str, _Entry]]:
        return [(k, e) for k, e in self._entries.items() if e.source != OURS]

    # dict's own removals also forget the bucket
    def pop(self, key: str, *default: object) -> object:  # type: ignore[override]
        self._entries.pop(key, None)
        return super().pop(key, *default)

    def __delitem__(self, key: str) -> None:
        self._entries.pop(key, None)
        super().__delitem__(key)

    def clear(self) -> None:
        self._entries.clear()
        super().clear()


class DialBudget:
    """Dials per source: a bucket of :data:`DIAL_BURST` tokens refilled at :data:`DIAL_RATE` per
    second. :data:`OURS` (bootstrap, the user's dials) is not limited."""

    def __init__(self, *, burst: float = DIAL_BURST, rate: float = DIAL_RATE) -> None:
        self.burst = burst
        self.rate = rate
        #: source -> (tokens, when counted).
        self._tokens: dict[str, tuple[float, float]] = {}
        #: Dials refused since the node started (for the stats and the tests).
        self.refused = 0

    def take(self, source: str, now: float) -> bool:
        """Spend one dial of ``source`` at ``now``; False when its budget is spent."""
        if source == OURS:
            return True
        tokens, then = self._tokens.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._tokens[source] = (tokens, now)
            self.refused += 1
            return False
        self._tokens[source] = (tokens - 1, now)
        if len(self._tokens) > 4 * MAX_KNOWN_PEERS:  # bounded: the oldest source is forgotten
            del self._tokens[next(iter(self._tokens))]
        return True
