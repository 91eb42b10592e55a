"""Bitswap 1.2.0 and 1.1.0 (github.com/ipfs/specs, "Bitswap"), sans-IO: bytes in, bytes out.

IPFS nodes (Kubo, Helia, boxo) ask each other for blocks by CID with bitswap. A peer opens a
stream ``/ipfs/bitswap/1.2.0`` and writes length-prefixed (uvarint) protobuf messages: want-list
entries (want this block, or tell me whether you have it; cancel), blocks (CID prefix + data) and
block presences (HAVE / DONT_HAVE). Answers travel on a stream the *answering* side opens; a
message on a stream means nothing about the stream it came on.

This module holds the message codec and two state machines, each driven by a thin trio adapter
(``gridnode/net/bitswap.py``):

- :class:`Ledger`, the serving side for one peer: what it wants, what to send it. The adapter
  looks up the CIDs the ledger asks about (only in databases the node serves) and sends the
  messages the ledger packs, at the pace of a per-peer :class:`Allowance`.
- :class:`Fetch`, the asking side: which CIDs to ask which peer for, and which received blocks
  answer them. Every block is hashed against the CID it claims; nothing unasked is accepted.

Bitswap 1.0.0 (CIDv0 blocks without prefixes) is not spoken: it cannot carry dag-cbor CIDs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from crdt.errors import InvalidCID, InvalidVarint
from crdt.ipld.cid import CID
from crdt.ipld.multiformats import HASHES, decode_varint, encode_varint, multihash_digest
from protocols.errors import BitswapError

__all__ = [
    "DONT_HAVE",
    "HAVE",
    "MAX_BLOCK",
    "MAX_MESSAGE",
    "MAX_QUEUED",
    "PROTOCOLS",
    "WANT_BLOCK",
    "WANT_HAVE",
    "Allowance",
    "BitswapError",
    "BitswapMessage",
    "Fetch",
    "Ledger",
    "WantEntry",
    "block_prefix",
    "decode_message",
    "encode_message",
    "frame_message",
    "message_cost",
]

#: Protocol ids gridnode serves and dials, best first.
PROTOCOLS: Final = ("/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0")
#: Largest message read or written (what boxo and Helia accept).
MAX_MESSAGE: Final = 4 * 1024 * 1024
#: Largest block sent or accepted (the IPFS block limit).
MAX_BLOCK: Final = 2 * 1024 * 1024
#: Most want-list entries, blocks or presences in one message decoded.
MAX_ITEMS: Final = 16384

WANT_BLOCK: Final = 0
WANT_HAVE: Final = 1
HAVE: Final = 0
DONT_HAVE: Final = 1

# Protobuf wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass(frozen=True)
class WantEntry:
    """One want-list entry: ``want_type`` is :data:`WANT_BLOCK` or :data:`WANT_HAVE`."""

    cid: CID
    priority: int = 1
    cancel: bool = False
    want_type: int = WANT_BLOCK
    send_dont_have: bool = False


@dataclass(frozen=True)
class BitswapMessage:
    """A decoded message. ``blocks`` are ``(CID, data)`` with the CID computed from the sender's
    prefix and the data (so it always matches); ``unverifiable`` counts blocks whose hash
    function gridnode cannot compute (dropped)."""

    wants: tuple[WantEntry, ...] = ()
    full: bool = False
    blocks: tuple[tuple[CID, bytes], ...] = ()
    presences: tuple[tuple[CID, int], ...] = ()
    pending_bytes: int = 0
    unverifiable: int = 0


# -- protobuf -----------------------------------------------------------------------------------


def _key(field_number: int, wire_type: int) -> bytes:
    return encode_varint(field_number << 3 | wire_type)


def _len_field(field_number: int, payload: bytes) -> bytes:
    return _key(field_number, _LEN) + encode_varint(len(payload)) + payload


def _int_field(field_number: int, value: int) -> bytes:
    # int32 on the wire: a negative number is its 64-bit two's complement (ten bytes).
    return _key(field_number, _VARINT) + _pb_varint(value & 0xFFFFFFFFFFFFFFFF)


def _pb_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(10):
        if pos + i >= end:
            raise BitswapError(f"protobuf varint truncated at offset {pos}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos + i + 1
        shift += 7
    raise BitswapError(f"protobuf varint longer than 10 bytes at offset {pos}")


def _fields(data: bytes | memoryview, start: int, end: int) -> Iterable[tuple[int, int, object]]:
    """``(field number, wire type, value)`` of each field in ``data[start:end]``: an int for
    varints, ``(start, end)`` for length-delimited fields; fixed-width fields are skipped."""
    pos = start
    while pos < end:
        key, pos = _read_varint(data, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise BitswapError("protobuf field number 0")
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos, end)
            yield number, wire_type, value
        elif wire_type == _LEN:
            length, pos = _read_varint(data, pos, end)
            if length > end - pos:
                raise BitswapError(f"protobuf field {number} runs past the message")
            yield number, wire_type, (pos, pos + length)
            pos += length
        elif wire_type in (_I64, _I32):
            pos += 8 if wire_type == _I64 else 4
            if pos > end:
                raise BitswapError(f"protobuf field {number} runs past the message")
        else:
            raise BitswapError(f"protobuf wire type {wire_type} is not supported")


def _expect(number: int, wire_type: int, want: int, where: str) -> None:
    if wire_type != want:
        raise BitswapError(f"{where} field {number} has wire type {wire_type}, not {want}")


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def block_prefix(cid: CID) -> bytes:
    """The prefix bitswap sends with a block: CID version, codec, hash code, digest length."""
    code, digest_length = _multihash_head(cid.multihash)
    return (
        encode_varint(cid.version)
        + encode_varint(cid.codec)
        + encode_varint(code)
        + encode_varint(digest_length)
    )


def _multihash_head(multihash: bytes) -> tuple[int, int]:
    code, pos = decode_varint(multihash, 0)
    length, _ = decode_varint(multihash, pos)
    return code, length


_HASH_FUNCTIONS: Final = {code: name for name, (code, _fn) in HASHES.items()}


def _cid_of(prefix: bytes, data: bytes) -> CID | None:
    """The CID a block with this prefix has; ``None`` for a hash function gridnode lacks."""
    try:
        version, pos = decode_varint(prefix, 0)
        codec, pos = decode_varint(prefix, pos)
        code, pos = decode_varint(prefix, pos)
        length, pos = decode_varint(prefix, pos)
    except InvalidVarint as exc:
        raise BitswapError(f"bad block prefix: {exc.reason}") from None
    if pos != len(prefix):
        raise BitswapError("bad block prefix: trailing bytes")
    if version not in (0, 1):
        raise BitswapError(f"bad block prefix: CID version {version}")
    if code not in _HASH_FUNCTIONS:
        return None
    if code == 0x12:
        digest = hashlib.sha256(data).digest()
        multihash = b"\x12\x20" + digest
    else:
        multihash = multihash_digest(data, code)
    if _multihash_head(multihash)[1] != length:
        raise BitswapError(f"bad block prefix: digest length {length} for hash 0x{code:x}")
    try:
        return CID.from_parts(version, codec, multihash)
    except InvalidCID as exc:
        raise BitswapError(f"bad block prefix: {exc}") from None


def _cid(data: bytes | memoryview, span: tuple[int, int], where: str) -> CID:
    try:
        cid, end = CID.read(data[span[0] : span[1]])
    except InvalidCID as exc:
        raise BitswapError(f"{where}: not a CID ({exc})") from None
    if end != span[1] - span[0]:
        raise BitswapError(f"{where}: bytes after the CID")
    return cid


def encode_message(message: BitswapMessage, prefixes: Mapping[CID, bytes] | None = None) -> bytes:
    """The protobuf bytes of ``message`` (blocks as 1.1 payload, CID prefix + data)."""
    out = bytearray()
    if message.wants or message.full:
        wantlist = bytearray()
        for entry in message.wants:
            item = _len_field(1, entry.cid.bytes)
            if entry.priority != 0:
                item += _int_field(2, entry.priority)
            if entry.cancel:
                item += _int_field(3, 1)
            if entry.want_type != WANT_BLOCK:
                item += _int_field(4, entry.want_type)
            if entry.send_dont_have:
                item += _int_field(5, 1)
            wantlist += _len_field(1, item)
        if message.full:
            wantlist += _int_field(2, 1)
        out += _len_field(1, bytes(wantlist))
    for cid, data in message.blocks:
        prefix = (prefixes or {}).get(cid) or block_prefix(cid)
        out += _len_field(3, _len_field(1, prefix) + _len_field(2, data))
    for cid, kind in message.presences:
        item = _len_field(1, cid.bytes)
        if kind != HAVE:
            item += _int_field(2, kind)
        out += _len_field(4, item)
    if message.pending_bytes:
        out += _int_field(5, message.pending_bytes)
    return bytes(out)


def frame_message(message: BitswapMessage) -> bytes:
    """The message as written on a stream: uvarint length, then the protobuf."""
    payload = encode_message(message)
    if len(payload) > MAX_MESSAGE:
        raise BitswapError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
    return encode_varint(len(payload)) + payload


def decode_message(data: bytes | memoryview) -> BitswapMessage:
    """Decode one message (the protobuf, without its length prefix); raises :class:`BitswapError`.

    Unknown fields are skipped, as protobuf requires. Blocks carried the 1.0 way (field 2, no
    prefix) are taken as CIDv0 dag-pb blocks.
    """
    if len(data) > MAX_MESSAGE:
        raise BitswapError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    wants: list[WantEntry] = []
    full = False
    blocks: list[tuple[CID, bytes]] = []
    presences: list[tuple[CID, int]] = []
    pending = 0
    unverifiable = 0
    items = 0
    for number, wire_type, value in _fields(data, 0, len(data)):
        items += 1
        if items > MAX_ITEMS:
            raise BitswapError(f"more than {MAX_ITEMS} items in one message")
        if number == 1:
            _expect(number, wire_type, _LEN, "message")
            assert isinstance(value, tuple)
            entries, is_full = _decode_wantlist(data, value)
            wants += entries
            full = full or is_full
            items += len(entries)
        elif number in (2, 3):
            _expect(number, wire_type, _LEN, "message")
            assert isinstance(value, tuple)
            if number == 2:
                prefix, block = b"\x00\x70\x12\x20", bytes(data[value[0] : value[1]])
            else:
                prefix, block = _decode_block(data, value)
            if len(block) > MAX_BLOCK:
                raise BitswapError(f"block of {len(block)} bytes exceeds {MAX_BLOCK}")
            cid = _cid_of(prefix, block)
            if cid is None:
                unverifiable += 1
            else:
                blocks.append((cid, block))
        elif number == 4:
            _expect(number, wire_type, _LEN, "message")
            assert isinstance(value, tuple)
            presences.append(_decode_presence(data, value))
        elif number == 5:
            _expect(number, wire_type, _VARINT, "message")
            assert isinstance(value, int)
            pending = _int32(value)
    return BitswapMessage(
        tuple(wants), full, tuple(blocks), tuple(presences), pending, unverifiable
    )


def _decode_wantlist(
    data: bytes | memoryview, span: tuple[int, int]
) -> tuple[list[WantEntry], bool]:
    entries = []
    full = False
    for number, wire_type, value in _fields(data, *span):
        if number == 1:
            _expect(number, wire_type, _LEN, "wantlist")
            assert isinstance(value, tuple)
            entries.append(_decode_entry(data, value))
            if len(entries) > MAX_ITEMS:
                raise BitswapError(f"more than {MAX_ITEMS} want-list entries in one message")
        elif number == 2:
            _expect(number, wire_type, _VARINT, "wantlist")
            full = bool(value)
    return entries, full


def _decode_entry(data: bytes | memoryview, span: tuple[int, int]) -> WantEntry:
    cid: CID | None = None
    priority, cancel, want_type, dont_have = 0, False, WANT_BLOCK, False
    for number, wire_type, value in _fields(data, *span):
        if number == 1:
            _expect(number, wire_type, _LEN, "want-list entry")
            assert isinstance(value, tuple)
            cid = _cid(data, value, "want-list entry")
        elif number in (2, 3, 4, 5):
            _expect(number, wire_type, _VARINT, "want-list entry")
            assert isinstance(value, int)
            if number == 2:
                priority = _int32(value)
            elif number == 3:
                cancel = bool(value)
            elif number == 4:
                if value not in (WANT_BLOCK, WANT_HAVE):
                    raise BitswapError(f"unknown want type {value}")
                want_type = value
            else:
                dont_have = bool(value)
    if cid is None:
        raise BitswapError("want-list entry without a CID")
    return WantEntry(cid, priority, cancel, want_type, dont_have)


def _decode_block(data: bytes | memoryview, span: tuple[int, int]) -> tuple[bytes, bytes]:
    prefix: bytes | None = None
    block = b""
    for number, wire_type, value in _fields(data, *span):
        if number in (1, 2):
            _expect(number, wire_type, _LEN, "block")
            assert isinstance(value, tuple)
            if number == 1:
                prefix = bytes(data[value[0] : value[1]])
            else:
                block = bytes(data[value[0] : value[1]])
    if prefix is None:
        raise BitswapError("block without a prefix")
    return prefix, block


def _decode_presence(data: bytes | memoryview, span: tuple[int, int]) -> tuple[CID, int]:
    cid: CID | None = None
    kind = HAVE
    for number, wire_type, value in _fields(data, *span):
        if number == 1:
            _expect(number, wire_type, _LEN, "block presence")
            assert isinstance(value, tuple)
            cid = _cid(data, value, "block presence")
        elif number == 2:
            _expect(number, wire_type, _VARINT, "block presence")
            if value not in (HAVE, DONT_HAVE):
                raise BitswapError(f"unknown block presence type {value}")
            assert isinstance(value, int)
            kind = value
    if cid is None:
        raise BitswapError("block presence without a CID")
    return cid, kind


# -- serving ------------------------------------------------------------------------------------

#: Want-list entries kept per peer; beyond it the oldest waiting ones are forgotten.
MAX_LEDGER_WANTS: Final = 4096
# What a presence costs in a packed message, with room for the protobuf framing.
_PRESENCE_COST: Final = 64
_BLOCK_OVERHEAD: Final = 64
#: Bytes of answers queued for one peer and not yet written. Blocks are charged when they are
#: queued (not when written), so a peer that reads nothing holds at most this much of our memory
#: (plus one block when its queue was empty: a block is never too big to be sent at all).
MAX_QUEUED: Final = 8 * 1024 * 1024


def message_cost(message: BitswapMessage) -> int:
    """What an answer costs of its peer's queue budget (see :attr:`Ledger.queued`)."""
    return sum(len(b) + _BLOCK_OVERHEAD for _c, b in message.blocks) + _PRESENCE_COST * len(
        message.presences
    )


@dataclass
class Ledger:
    """What one peer wants from this node, and what to send it.

    :meth:`receive` takes the peer's message and returns the CIDs to look up; :meth:`answer`
    takes what the lookup found and returns the messages to send. A want for a block the node
    lacks waits (unless the peer asked for DONT_HAVE) and is asked about again by
    :meth:`waiting`, e.g. after the node received new entries.

    Outbound bytes are bounded: every answer is charged to :attr:`queued` when it is packed and
    released by :meth:`sent` once written. A want whose answer does not fit in ``max_queued``
    is not answered, nor refused: it stays wanted and is *held* (:meth:`take_held`), to be looked
    up again as the queue drains (bitswap has no "busy" answer, and DONT_HAVE would be a lie).
    """

    max_wants: int = MAX_LEDGER_WANTS
    max_queued: int = MAX_QUEUED
    #: CID -> the entry, oldest first.
    wants: dict[CID, WantEntry] = field(default_factory=dict)
    #: Entries forgotten because the ledger was full.
    dropped: int = 0
    #: Bytes of answers packed and not yet written (:func:`message_cost`).
    queued: int = 0
    #: Wanted CIDs whose answers waited for room in the queue, oldest first.
    held: dict[CID, None] = field(default_factory=dict)

    def room(self) -> int:
        """Bytes that may still be queued for this peer."""
        return self.max_queued - self.queued

    def hold(self, cids: Iterable[CID]) -> None:
        """Keep ``cids`` (still wanted) to answer once the queue has room."""
        for cid in cids:
            if cid in self.wants:
                self.held[cid] = None

    def take_held(self) -> list[CID]:
        """The held CIDs still wanted, to look up again (the held set is emptied)."""
        cids = [cid for cid in self.held if cid in self.wants]
        self.held.clear()
        return cids

    def sent(self, message: BitswapMessage) -> None:
        """``message`` (an answer from :meth:`answer`) was written: release its bytes."""
        self.queued = max(0, self.queued - message_cost(message))

    def drop_queue(self) -> None:
        """The queued answers were thrown away (the peer was dropped): nothing is charged."""
        self.queued = 0
        self.held.clear()

    def receive(self, message: BitswapMessage) -> list[CID]:
        """Apply the peer's want-list changes; the CIDs to look up now."""
        if message.full:
            self.wants.clear()
        lookup = []
        for entry in message.wants:
            if entry.cancel:
                self.wants.pop(entry.cid, None)
                continue
            old = self.wants.pop(entry.cid, None)
            if old is not None and old.want_type == WANT_BLOCK and entry.want_type == WANT_HAVE:
                entry = old  # a want-have never downgrades a want-block
            self.wants[entry.cid] = entry
            lookup.append(entry.cid)
        while len(self.wants) > self.max_wants:
            del self.wants[next(iter(self.wants))]
            self.dropped += 1
        return [cid for cid in dict.fromkeys(lookup) if cid in self.wants]

    def waiting(self) -> list[CID]:
        """The CIDs still wanted (to look up again when the node may have more blocks)."""
        return list(self.wants)

    def answer(
        self, found: Mapping[CID, bytes | None], max_message: int = MAX_MESSAGE
    ) -> list[BitswapMessage]:
        """Messages answering the looked-up CIDs in ``found`` (block, or ``None`` if missing).

        A wanted block is sent once and its want removed; a want-have is answered HAVE (and
        removed); a missing block is answered DONT_HAVE if the peer asked for that (and removed),
        else its want waits. Messages are packed up to ``max_message`` bytes; a block larger
        than :data:`MAX_BLOCK` is answered as missing. What does not fit in the queue budget
        (``max_queued`` less :attr:`queued`) is held, and the rest charged to :attr:`queued`.
        """
        messages: list[BitswapMessage] = []
        blocks: list[tuple[CID, bytes]] = []
        presences: list[tuple[CID, int]] = []
        size = 0

        def flush() -> None:
            nonlocal blocks, presences, size
            if blocks or presences:
                messages.append(BitswapMessage(blocks=tuple(blocks), presences=tuple(presences)))
            blocks, presences, size = [], [], 0

        for cid, block in found.items():
            entry = self.wants.get(cid)
            if entry is None:
                continue  # cancelled meanwhile, or never wanted
            if block is not None and len(block) > MAX_BLOCK:
                block = None
            if block is None:
                if not entry.send_dont_have:
                    continue
                item_cost = _PRESENCE_COST
            elif entry.want_type == WANT_BLOCK:
                item_cost = len(block) + _BLOCK_OVERHEAD
            else:
                item_cost = _PRESENCE_COST
            if self.queued + item_cost > self.max_queued and self.queued > 0:
                self.held[cid] = None  # answered as the queue drains
                continue
            if size + item_cost > max_message:
                flush()
            del self.wants[cid]
            self.held.pop(cid, None)
            self.queued += item_cost
            size += item_cost
            if block is None:
                presences.append((cid, DONT_HAVE))
            elif entry.want_type == WANT_BLOCK:
                blocks.append((cid, block))
            else:
                presences.append((cid, HAVE))
        flush()
        return messages


@dataclass
class Allowance:
    """A token bucket of bytes per peer: ``rate`` bytes a second, at most ``burst`` saved.

    Time comes from the caller (``now``, in seconds), so the bucket is deterministic.
    """

    rate: float
    burst: float
    tokens: float = -1.0
    last: float | None = None

    def delay(self, size: int, now: float) -> float:
        """Take ``size`` bytes; return how long to wait before sending them (0 if at once)."""
        if self.last is None:
            self.tokens, self.last = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= size
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


# -- fetching -----------------------------------------------------------------------------------


@dataclass
class Fetch:
    """Asking peers for blocks: which CIDs to ask each peer for, and what the answers mean.

    Every peer is asked for every wanted CID (want-block, send DONT_HAVE). A received block is
    kept only if it answers a wanted CID (its CID is computed from the data, so it matches by
    construction); anything else is counted in ``unasked`` and dropped. A CID fails when every
    peer asked has answered DONT_HAVE; the caller decides how long to wait for the rest.
    """

    wanted: dict[CID, set[str]] = field(default_factory=dict)
    got: dict[CID, bytes] = field(default_factory=dict)
    #: CID -> the peers that answered DONT_HAVE.
    lacking: dict[CID, set[str]] = field(default_factory=dict)
    unasked: int = 0
    #: Peers that sent a block, per peer: how many.
    sources: dict[str, int] = field(default_factory=dict)
    #: Peer -> CIDs it was asked for that another peer has sent (see :meth:`cancels`).
    to_cancel: dict[str, list[CID]] = field(default_factory=dict)

    def want(self, cids: Iterable[CID]) -> None:
        for cid in cids:
            if cid not in self.got:
                self.wanted.setdefault(cid, set())

    def ask(self, peer: str, limit: int = 1024) -> BitswapMessage | None:
        """The want-list message for ``peer``: the wanted CIDs not yet asked of it (at most
        ``limit``), or ``None`` if there is nothing new to ask."""
        entries = []
        for cid, asked in self.wanted.items():
            if peer not in asked:
                asked.add(peer)
                entries.append(WantEntry(cid, 1, False, WANT_BLOCK, True))
                if len(entries) >= limit:
                    break
        return BitswapMessage(wants=tuple(entries)) if entries else None

    def receive(self, peer: str, message: BitswapMessage) -> list[tuple[CID, bytes]]:
        """Take ``peer``'s message; return the wanted blocks it brought."""
        new = []
        for cid, block in message.blocks:
            asked = self.wanted.pop(cid, None)
            if asked is not None:
                self.lacking.pop(cid, None)
                self.got[cid] = block
                self.sources[peer] = self.sources.get(peer, 0) + 1
                new.append((cid, block))
                for other in asked - {peer}:
                    self.to_cancel.setdefault(other, []).append(cid)
            elif cid not in self.got:
                self.unasked += 1
        for cid, kind in message.presences:
            if kind == DONT_HAVE and cid in self.wanted:
                self.lacking.setdefault(cid, set()).add(peer)
        return new

    def cancels(self, peer: str) -> BitswapMessage | None:
        """Cancels for what ``peer`` was asked and another peer has since sent."""
        return _cancel(self.to_cancel.pop(peer, []))

    def abandon(self) -> BitswapMessage | None:
        """Cancels for every CID still wanted (the fetch gives up on them)."""
        return _cancel(list(self.wanted))

    def failed(self, peers: Iterable[str]) -> list[CID]:
        """Wanted CIDs every one of ``peers`` said it lacks."""
        everyone = set(peers)
        return [cid for cid, lacking in self.lacking.items() if everyone <= lacking]

    @property
    def done(self) -> bool:
        return not self.wanted


def _cancel(cids: Sequence[CID]) -> BitswapMessage | None:
    return BitswapMessage(wants=tuple(WantEntry(c, 1, True) for c in cids)) if cids else None
