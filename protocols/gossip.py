"""Heads announcements: what a node publishes on a database's gossipsub topic (sans-IO).

Topic: ``/gridnode/db/<manifest CID>``. Message: DAG-CBOR
``{"t": "heads", "db": link, "heads": [link], "blocks": [[link, bytes]]}``: the sender's heads,
and, when they are small, the head entries themselves so a peer that was only one step behind
needs no round trip. Gossip is a hint: a lost or refused announcement costs a delay, never data,
since nodes exchange summaries periodically and the stream protocol fetches what is missing. So
a node with more than :data:`MAX_ANNOUNCED_HEADS` heads announces its newest ones (the caller
passes them newest first); its peers find the others by pulling.

A node announces a database when its heads change (and once more at the next interval), never
an unchanged one: what an idle node sends grows with change, not with the databases it holds.
What a lost announcement would leave behind is found by the *summary*
(``/gridnode/summary/1.0.0``, :class:`Summary`): now and then each node tells each connected peer,
over a stream of its own, one short key of each public database it holds and one of its heads;
the peer pulls only the databases whose keys match one it holds and whose heads differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from crdt.errors import DecodeError
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from protocols.errors import ProtocolError, SendLimitError

__all__ = [
    "DIRECT_HEADS_PROTOCOL_ID",
    "MAX_ANNOUNCEMENT",
    "MAX_SUMMARY",
    "MAX_SUMMARY_ITEMS",
    "PEERS_TOPIC",
    "SUMMARY_PROTOCOL_ID",
    "Announcement",
    "PeerRecord",
    "Summary",
    "database_key",
    "heads_key",
    "parse_announcement",
    "parse_peer_record",
    "parse_summary",
    "topic_for",
]

#: Largest announcement accepted or sent.
MAX_ANNOUNCEMENT: Final = 64 * 1024
#: Head entries ride along only while the message stays under this size.
INLINE_BUDGET: Final = 32 * 1024
MAX_ANNOUNCED_HEADS: Final = 256


#: A private database's heads, told over a stream to each peer that may read it instead of on a
#: topic (docs/spec.md §10, "Private databases"): one announcement (without inline blocks), then
#: the stream ends.
DIRECT_HEADS_PROTOCOL_ID: Final = "/gridnode/heads/1.0.0"


def topic_for(db: CID) -> str:
    """The gossipsub topic of a database."""
    return f"/gridnode/db/{db}"


@dataclass(frozen=True)
class Announcement:
    db: CID
    heads: tuple[CID, ...]
    blocks: tuple[tuple[CID, bytes], ...] = ()

    def encode(self) -> bytes:
        """The message bytes: the first :data:`MAX_ANNOUNCED_HEADS` heads, and the longest run of
        the first inline blocks that keeps the message within :data:`INLINE_BUDGET`. Sizes are
        added up block by block (one encoding of each), so the cost is linear in what is given."""
        heads = list(self.heads[:MAX_ANNOUNCED_HEADS])
        size = len(encode({"t": "heads", "db": self.db, "heads": heads, "blocks": []}))
        pairs: list[list[CID | bytes]] = []
        for cid, block in self.blocks:
            pair: list[CID | bytes] = [cid, block]
            # The blocks list's header grows with its count (1, 2, 3 or 5 bytes).
            grown = size + len(encode(pair)) + _header(len(pairs) + 1) - _header(len(pairs))
            if grown > INLINE_BUDGET:
                break
            pairs.append(pair)
            size = grown
        data = encode({"t": "heads", "db": self.db, "heads": heads, "blocks": pairs})
        if len(data) > MAX_ANNOUNCEMENT:  # what our peers refuse (parse_announcement) is not sent
            raise SendLimitError(f"announcement of {len(data)} bytes exceeds {MAX_ANNOUNCEMENT}")
        return data


def _header(count: int) -> int:
    """Bytes of a CBOR array header for ``count`` items."""
    return 1 if count < 24 else 2 if count < 256 else 3 if count < 65_536 else 5


def parse_announcement(data: bytes, topic_db: CID | None = None) -> Announcement:
    """Check and decode an announcement; :class:`ProtocolError` for anything malformed."""
    if len(data) > MAX_ANNOUNCEMENT:
        raise ProtocolError(f"announcement of {len(data)} bytes exceeds {MAX_ANNOUNCEMENT}")
    try:
        body = decode(data)
    except DecodeError as exc:
        raise ProtocolError(f"announcement is not DAG-CBOR: {exc}") from None
    if (
        type(body) is not dict
        or set(body) != {"t", "db", "heads", "blocks"}
        or body["t"] != "heads"
    ):
        raise ProtocolError("not a heads announcement")
    db, heads, blocks = body["db"], body["heads"], body["blocks"]
    if type(db) is not CID or (topic_db is not None and db != topic_db):
        raise ProtocolError("announcement names another database than its topic")
    if (
        type(heads) is not list
        or len(heads) > MAX_ANNOUNCED_HEADS
        or not all(type(h) is CID for h in heads)
    ):
        raise ProtocolError(f"heads must be at most {MAX_ANNOUNCED_HEADS} links")
    if type(blocks) is not list:
        raise ProtocolError("blocks must be a list")
    pairs = []
    for pair in blocks:
        if (
            type(pair) is not list
            or len(pair) != 2
            or type(pair[0]) is not CID
            or type(pair[1]) is not bytes
        ):
            raise ProtocolError("each inline block is a [link, bytes] pair")
        pairs.append((pair[0], pair[1]))
    return Announcement(db, tuple(heads), tuple(pairs))


#: The topic every node publishes its own listen addresses on (peer exchange).
PEERS_TOPIC: Final = "/gridnode/peers/1"
MAX_ADDRS: Final = 16


@dataclass(frozen=True)
class PeerRecord:
    """``{"t": "peer", "peer": text, "addrs": [text]}``: a node's own peer id and addresses.

    Gossipsub signs messages; a receiver accepts a record only from the peer it describes."""

    peer: str
    addrs: tuple[str, ...]

    def encode(self) -> bytes:
        return encode({"t": "peer", "peer": self.peer, "addrs": list(self.addrs[:MAX_ADDRS])})


def parse_peer_record(data: bytes, origin: str) -> PeerRecord:
    """Check a peer record; :class:`ProtocolError` unless well-formed and about its sender."""
    if len(data) > 8 * 1024:
        raise ProtocolError("peer record too large")
    try:
        body = decode(data)
    except DecodeError as exc:
        raise ProtocolError(f"peer record is not DAG-CBOR: {exc}") from None
    if type(body) is not dict or set(body) != {"t", "peer", "addrs"} or body["t"] != "peer":
        raise ProtocolError("not a peer record")
    peer, addrs = body["peer"], body["addrs"]
    if peer != origin:
        raise ProtocolError("a peer record must come from the peer it describes")
    if (
        type(addrs) is not list
        or len(addrs) > MAX_ADDRS
        or not all(type(a) is str and a.startswith("/") and len(a) <= 256 for a in addrs)
    ):
        raise ProtocolError(f"addrs must be at most {MAX_ADDRS} multiaddr strings")
    return PeerRecord(peer, tuple(addrs))


#: Where a node tells one peer its summary: the opener writes one :class:`Summary` and closes.
SUMMARY_PROTOCOL_ID: Final = "/gridnode/summary/1.0.0"
#: Databases one summary names at most (a node holding more sends them in turns).
MAX_SUMMARY_ITEMS: Final = 4096
#: Bytes of one summary at most (4,096 items of two 8-byte keys are about 82 KB).
MAX_SUMMARY: Final = 96 * 1024
#: Bytes of each key in a summary.
KEY_BYTES: Final = 8


def database_key(db: CID) -> bytes:
    """A database's key in summaries: the first 8 bytes of SHA-256 of its manifest CID's bytes
    (a collision costs a needless pull or a later one, never data: summaries are hints)."""
    return hashlib.sha256(db.bytes).digest()[:KEY_BYTES]


def heads_key(heads: list[CID] | tuple[CID, ...]) -> bytes:
    """A replica's heads in summaries: the first 8 bytes of SHA-256 over the binary CIDs of its
    newest :data:`MAX_ANNOUNCED_HEADS` heads in their order (highest clock first, ties by binary
    CID), so two replicas with the same heads have the same key."""
    digest = hashlib.sha256()
    for cid in heads[:MAX_ANNOUNCED_HEADS]:
        digest.update(cid.bytes)
    return digest.digest()[:KEY_BYTES]


@dataclass(frozen=True)
class Summary:
    """``{"t": "summary", "dbs": [[db key, heads key]]}``: the public databases a node holds
    (with heads) and a key of each one's heads; never a private database's."""

    items: tuple[tuple[bytes, bytes], ...]

    def encode(self) -> bytes:
        if len(self.items) > MAX_SUMMARY_ITEMS:
            raise SendLimitError(f"a summary of {len(self.items)} databases")
        return encode({"t": "summary", "dbs": [[db, heads] for db, heads in self.items]})


def parse_summary(data: bytes) -> Summary:
    """Check and decode a summary; :class:`ProtocolError` for anything malformed or over its
    limits."""
    if len(data) > MAX_SUMMARY:
        raise ProtocolError(f"summary of more than {MAX_SUMMARY} bytes")
    try:
        body = decode(data)
    except DecodeError as exc:
        raise ProtocolError(f"summary is not DAG-CBOR: {exc}") from None
    if type(body) is not dict or set(body) != {"t", "dbs"} or body["t"] != "summary":
        raise ProtocolError("not a summary")
    dbs = body["dbs"]
    if type(dbs) is not list or len(dbs) > MAX_SUMMARY_ITEMS:
        raise ProtocolError(f"a summary names at most {MAX_SUMMARY_ITEMS} databases")
    items = []
    for pair in dbs:
        if (
            type(pair) is not list
            or len(pair) != 2
            or not all(type(k) is bytes and len(k) == KEY_BYTES for k in pair)
        ):
            raise ProtocolError(f"each summary item is a pair of {KEY_BYTES}-byte keys")
        items.append((pair[0], pair[1]))
    return Summary(tuple(items))
