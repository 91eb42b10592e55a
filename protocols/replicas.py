"""Replica statements: who holds a database, how far along, signed by the holder (sans-IO).

A node that replicates a public database publishes, on the database's replicas topic
(:func:`topic_for`), a *statement*: its peer id, the database, its newest heads (at most
:data:`MAX_STATEMENT_HEADS`), its entry count and its wall-clock time, signed with its ed25519
key (the key its peer id names, the same one its did:key and its entries use). DAG-CBOR::

    {"t": "replica", "peer": text, "db": link, "heads": [link], "entries": int, "time": int,
     "sig": bytes}

``sig`` signs :data:`SIGNING_PREFIX` followed by the DAG-CBOR of the map without ``sig``: the
prefix keeps a statement's signature from ever being mistaken for a log entry's (the same key
signs both). ``time`` is milliseconds since the Unix epoch, as the holder's clock reads it.

:class:`ReplicaAggregator` keeps what was heard: one statement per peer and database (a newer
``time`` replaces an older one; an older one is ignored), at most
:data:`MAX_PEERS_PER_DATABASE` peers per database and :data:`MAX_DATABASES` databases (the
stalest statement, then the stalest database, is forgotten first), each statement expiring
``ttl`` seconds after it was *received* (the receiver's clock, passed in: a holder's wrong clock
cannot make its statement live for ever). It keeps a digest of the heads, not the heads, so its
memory is bounded by the counts alone.

What it refuses (:class:`~protocols.errors.ReplicaStatementError`): a message over
:data:`MAX_STATEMENT` bytes, not DAG-CBOR, with other keys or types, more heads than allowed, a
peer id that does not name an ed25519 key, a signature that does not verify under that key, a
statement for another database than its topic's, and one sent by another peer than the one it
names (gossipsub's own signature says who sent it; a statement is never relayed under another
origin).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from crdt.errors import DecodeError, InvalidKey, InvalidMultibase, InvalidSignature
from crdt.identity import Keypair, verify
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.ipld.multiformats import base58_decode, base58_encode
from protocols.errors import ReplicaStatementError, SendLimitError

__all__ = [
    "MAX_DATABASES",
    "MAX_PEERS_PER_DATABASE",
    "MAX_STATEMENT",
    "MAX_STATEMENT_HEADS",
    "SIGNING_PREFIX",
    "ReplicaAggregator",
    "ReplicaStatement",
    "ReplicaSummary",
    "parse_statement",
    "peer_id_of_key",
    "public_key_of_peer",
    "sign_statement",
    "topic_for",
]

#: Largest statement accepted or sent (32 heads take about 1.2 KB).
MAX_STATEMENT: Final = 4096
#: Heads a statement names: the newest ones. Two holders with more compare their newest ones.
MAX_STATEMENT_HEADS: Final = 32
#: What a statement's signature covers comes after these bytes (domain separation).
SIGNING_PREFIX: Final = b"/gridnode/replica-statement/1\x00"
#: Peers whose statements are kept per database, and databases statements are kept for.
MAX_PEERS_PER_DATABASE: Final = 128
MAX_DATABASES: Final = 1024
#: The largest entry count or time a statement may carry (integers JSON keeps exactly).
_MAX_INT: Final = 2**53 - 1

#: An ed25519 peer id's bytes before the public key: the identity multihash (0x00) of 36 bytes
#: holding the protobuf ``PublicKey {Type: Ed25519 (1), Data: 32 bytes}``.
_ED25519_PEER_ID_PREFIX: Final = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
_KEYS: Final = {"t", "peer", "db", "heads", "entries", "time", "sig"}


def topic_for(db: CID) -> str:
    """The gossipsub topic a database's replica statements go on (a private database has none:
    its name is never published)."""
    # ``2``: statements refreshed every slow round, expiring after three of them (docs/spec.md
    # §13); a node of the first version would forget such a holder between two refreshes.
    return f"/gridnode/replicas/2/{db}"


def public_key_of_peer(peer_id: str) -> bytes | None:
    """The 32-byte ed25519 public key an ed25519 peer id names; ``None`` for any other id."""
    if type(peer_id) is not str or len(peer_id) > 64:  # an ed25519 peer id has 52 characters
        return None
    try:
        raw = base58_decode(peer_id)
    except InvalidMultibase:
        return None
    if len(raw) != 38 or not raw.startswith(_ED25519_PEER_ID_PREFIX):
        return None
    return raw[len(_ED25519_PEER_ID_PREFIX) :]


def peer_id_of_key(public_key: bytes) -> str:
    """The libp2p peer id of an ed25519 public key."""
    return base58_encode(_ED25519_PEER_ID_PREFIX + public_key)


@dataclass(frozen=True)
class ReplicaStatement:
    """What one holder says of one database. ``sig`` is empty until signed."""

    peer: str
    db: CID
    heads: tuple[CID, ...]
    entries: int
    time: int
    sig: bytes = b""

    def signed_bytes(self) -> bytes:
        """What the signature covers."""
        body = {
            "t": "replica",
            "peer": self.peer,
            "db": self.db,
            "heads": list(self.heads),
            "entries": self.entries,
            "time": self.time,
        }
        return SIGNING_PREFIX + encode(body)

    def encode(self) -> bytes:
        """The message bytes; :class:`SendLimitError` for a statement a peer would refuse."""
        if len(self.heads) > MAX_STATEMENT_HEADS:
            raise SendLimitError(f"a statement names at most {MAX_STATEMENT_HEADS} heads")
        if not (0 <= self.entries <= _MAX_INT and 0 <= self.time <= _MAX_INT):
            raise SendLimitError("entries and time must be integers from 0 to 2**53 - 1")
        data = encode(
            {
                "t": "replica",
                "peer": self.peer,
                "db": self.db,
                "heads": list(self.heads),
                "entries": self.entries,
                "time": self.time,
                "sig": self.sig,
            }
        )
        if len(data) > MAX_STATEMENT:
            raise SendLimitError(f"statement of {len(data)} bytes exceeds {MAX_STATEMENT}")
        return data

    def heads_digest(self) -> bytes:
        """A digest of the head set (order-free): equal for equal heads."""
        return hashlib.sha256(b"".join(sorted(h.bytes for h in self.heads))).digest()


def sign_statement(
    keypair: Keypair, db: CID, heads: list[CID] | tuple[CID, ...], entries: int, time: int
) -> ReplicaStatement:
    """A statement by ``keypair``'s peer id, signed; the newest :data:`MAX_STATEMENT_HEADS`
    heads are kept (the caller passes them newest first)."""
    unsigned = ReplicaStatement(
        peer_id_of_key(keypair.public_key),
        db,
        tuple(heads[:MAX_STATEMENT_HEADS]),
        entries,
        time,
    )
    return ReplicaStatement(
        unsigned.peer,
        db,
        unsigned.heads,
        entries,
        time,
        keypair.sign(unsigned.signed_bytes()),
    )


def parse_statement(
    data: bytes, *, origin: str | None = None, topic_db: CID | None = None
) -> ReplicaStatement:
    """Check, decode and verify a statement; :class:`ReplicaStatementError` for anything wrong.

    ``origin``: the peer that sent it (it must be the peer the statement names); ``topic_db``:
    the database of the topic it came on."""
    if len(data) > MAX_STATEMENT:
        raise ReplicaStatementError(f"statement of {len(data)} bytes exceeds {MAX_STATEMENT}")
    try:
        body = decode(data)
    except DecodeError as exc:
        raise ReplicaStatementError(f"statement is not DAG-CBOR: {exc}") from None
    if type(body) is not dict or set(body) != _KEYS or body["t"] != "replica":
        raise ReplicaStatementError("not a replica statement")
    peer, db, heads = body["peer"], body["db"], body["heads"]
    entries, when, sig = body["entries"], body["time"], body["sig"]
    if type(db) is not CID or (topic_db is not None and db != topic_db):
        raise ReplicaStatementError("statement names another database than its topic")
    if (
        type(heads) is not list
        or len(heads) > MAX_STATEMENT_HEADS
        or not all(type(h) is CID for h in heads)
    ):
        raise ReplicaStatementError(f"heads must be at most {MAX_STATEMENT_HEADS} links")
    if len(set(heads)) != len(heads):
        raise ReplicaStatementError("heads repeat a link")
    if not all(type(n) is int and 0 <= n <= _MAX_INT for n in (entries, when)):
        raise ReplicaStatementError("entries and time must be integers from 0 to 2**53 - 1")
    if type(sig) is not bytes or len(sig) != 64:
        raise ReplicaStatementError("sig must be a 64-byte ed25519 signature")
    if type(peer) is not str:
        raise ReplicaStatementError("peer must be a peer id")
    if origin is not None and peer != origin:
        raise ReplicaStatementError("a statement must come from the peer it names")
    public_key = public_key_of_peer(peer)
    if public_key is None:
        raise ReplicaStatementError("peer is not an ed25519 peer id")
    statement = ReplicaStatement(peer, db, tuple(heads), entries, when, sig)
    try:
        verify(public_key, statement.signed_bytes(), sig)
    except (InvalidSignature, InvalidKey):
        raise ReplicaStatementError("statement signature does not verify") from None
    return statement


@dataclass(frozen=True, slots=True)
class _Held:
    """What the aggregator keeps of one statement: a digest of its heads, not the heads."""

    entries: int
    time: int
    heads: bytes
    head_count: int
    received: float


@dataclass(frozen=True)
class ReplicaSummary:
    """Who holds one database, as far as this node heard (``own`` excluded from the counts).

    ``newest_entries``: the most entries any holder (this node included) states; a holder is
    *in sync* when it states that many entries and the heads most holders of that count state
    (this node's, when it is one of them). Every other holder is in ``behind``, by
    ``newest_entries - entries`` (0 for a holder with as many entries but other heads: writes
    made concurrently that the two have not exchanged yet)."""

    holders: int
    in_sync: int
    behind: dict[str, int]
    newest_entries: int
    #: Per holder: peer, entries, heads named, seconds since heard, in sync.
    peers: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "holders": self.holders,
            "in_sync": self.in_sync,
            "behind": dict(self.behind),
            "newest_entries": self.newest_entries,
        }


class ReplicaAggregator:
    """The statements heard, bounded and expiring; ``now`` is passed in (seconds, monotonic)."""

    def __init__(
        self,
        *,
        ttl: float,
        max_databases: int = MAX_DATABASES,
        max_peers: int = MAX_PEERS_PER_DATABASE,
    ) -> None:
        self.ttl = ttl
        self.max_databases = max_databases
        self.max_peers = max_peers
        #: Database -> peer -> what it stated; databases least recently heard of first, and
        #: within one the peers least recently heard from first.
        self._held: OrderedDict[CID, OrderedDict[str, _Held]] = OrderedDict()

    def __len__(self) -> int:
        """Statements kept now (expired ones included until the next :meth:`expire`)."""
        return sum(len(peers) for peers in self._held.values())

    def databases(self) -> int:
        return len(self._held)

    def record(self, statement: ReplicaStatement, now: float) -> bool:
        """Keep a verified statement; ``False`` if one with a later ``time`` from the same peer
        is kept already (a replay or a reordering: the newer word stands)."""
        peers = self._held.get(statement.db)
        if peers is None:
            peers = self._held[statement.db] = OrderedDict()
            while len(self._held) > self.max_databases:
                self._held.popitem(last=False)
        self._held.move_to_end(statement.db)
        held = peers.get(statement.peer)
        if held is not None and held.time > statement.time and now - held.received < self.ttl:
            return False
        peers[statement.peer] = _Held(
            statement.entries,
            statement.time,
            statement.heads_digest(),
            len(statement.heads),
            now,
        )
        peers.move_to_end(statement.peer)
        while len(peers) > self.max_peers:
            peers.popitem(last=False)
        return True

    def expire(self, now: float) -> int:
        """Forget statements older than ``ttl``; how many were forgotten."""
        gone = 0
        for db in list(self._held):
            peers = self._held[db]
            # Peers are in the order heard from: the expired ones come first.
            while peers and now - next(iter(peers.values())).received >= self.ttl:
                peers.popitem(last=False)
                gone += 1
            if not peers:
                del self._held[db]
        return gone

    def forget(self, peer: str) -> None:
        """Forget every statement of ``peer``."""
        for db in list(self._held):
            self._held[db].pop(peer, None)
            if not self._held[db]:
                del self._held[db]

    def summary(
        self, db: CID, now: float, *, own: ReplicaStatement | None = None
    ) -> ReplicaSummary:
        """Who holds ``db``, from the statements not expired at ``now``; ``own`` (this node's
        own statement, if it holds the database) counts for the newest heads but not as a
        holder, and any statement heard under its peer id is ignored."""
        own_peer = own.peer if own is not None else None
        live = [
            (peer, held)
            for peer, held in self._held.get(db, {}).items()
            if now - held.received < self.ttl and peer != own_peer
        ]
        counts = [held.entries for _, held in live]
        if own is not None:
            counts.append(own.entries)
        newest = max(counts, default=0)
        # The newest heads: this node's if it holds the newest count, else the heads most
        # holders of the newest count state (ties: the smallest digest, so every node agrees).
        if own is not None and own.entries == newest:
            newest_heads = own.heads_digest()
        else:
            votes: dict[bytes, int] = {}
            for _, held in live:
                if held.entries == newest:
                    votes[held.heads] = votes.get(held.heads, 0) + 1
            newest_heads = min(votes, key=lambda d: (-votes[d], d)) if votes else b""
        behind: dict[str, int] = {}
        peers: list[dict[str, object]] = []
        in_sync = 0
        for peer, held in sorted(live):
            synced = held.entries == newest and held.heads == newest_heads
            if synced:
                in_sync += 1
            else:
                behind[peer] = newest - held.entries
            peers.append(
                {
                    "peer_id": peer,
                    "entries": held.entries,
                    "heads": held.head_count,
                    "in_sync": synced,
                    "seconds_ago": round(max(0.0, now - held.received), 3),
                    "time": held.time,
                }
            )
        return ReplicaSummary(len(live), in_sync, behind, newest, peers)
