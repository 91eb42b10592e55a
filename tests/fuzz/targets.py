"""Fuzz targets: every decoder that takes bytes from outside, as ``target(data: bytes) -> None``.

A target may raise a :class:`~crdt.errors.GridnodeError` (the input was refused, with a typed
error); anything else it raises is a crash. Differential targets also raise ``AssertionError``
when two readers disagree, which the harness reports as a crash too.

The targets are deterministic: the same bytes always take the same path, so a crash found by the
long run (atheris) replays in the CI run from the corpus file it left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from typing import Any

from crdt.database import Database
from crdt.entry import create_entry, decode_entry
from crdt.errors import GridnodeError
from crdt.identity import Keypair
from crdt.ipld import car
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, decode_strict, encode
from crdt.ipld.dagpb import decode_node, encode_node, node_cid
from crdt.log import Log
from crdt.manifest import (
    STORE_TYPE_NAMES,
    Manifest,
    create_manifest,
    decode_manifest,
    parse_address,
)
from crdt.rangesums import LogItems
from crdt.unixfs.data import decode_data, encode_data
from protocols import gossip, reconcile, wire
from protocols.sync import (
    BlocksAsked,
    HeadsAsked,
    RangesAsked,
    Role,
    SyncAsked,
    SyncConnection,
)

__all__ = ["TARGETS", "fixture_log"]

Target = Callable[[bytes], None]


# -- a small real database the stateful targets answer from ------------------------------------


@cache
def fixture_log() -> tuple[Manifest, Log, list[Keypair]]:
    """A keyvalue database with two writers and 48 entries (some concurrent), in memory."""
    alice = Keypair.from_seed(bytes([1]) * 32)
    bob = Keypair.from_seed(bytes([2]) * 32)
    manifest = create_manifest(
        "fuzz", "keyvalue", admins=[alice.did], writers=[bob.did], nonce=b"fuzz"
    )
    log = Log(manifest)
    for i in range(24):
        log.append(alice, {"op": "put", "key": f"a{i % 5}", "value": i})
        log.append(bob, {"op": "put", "key": f"b{i % 3}", "value": [i, b"x" * (i % 4)]})
    return manifest, log, [alice, bob]


def _chunks(data: bytes, seed: int) -> list[bytes]:
    """Cut ``data`` into pieces whose sizes follow ``seed`` (how a stream may deliver it)."""
    sizes = [1 + (seed >> shift) % 97 for shift in range(0, 8, 2)] + [4096]
    out, pos, k = [], 0, 0
    while pos < len(data):
        size = sizes[k % len(sizes)]
        out.append(data[pos : pos + size])
        pos += size
        k += 1
    return out


# -- IPLD -----------------------------------------------------------------------------------------


def dagcbor(data: bytes) -> None:
    """``decode`` (cbor2 fast path + re-encode check), cross-checked against the strict reader."""
    try:
        value = decode(data)
    except GridnodeError as fast_error:
        try:
            decode_strict(data)
        except GridnodeError:
            raise fast_error from None
        raise AssertionError("decode refused what decode_strict accepts") from fast_error
    assert decode_strict(data) == value or encode(decode_strict(data)) == data
    assert encode(value) == data, "a decoded value does not re-encode to its bytes"


def dagcbor_strict(data: bytes) -> None:
    value = decode_strict(data)
    assert encode(value) == data, "the strict reader accepted a non-canonical encoding"


def dagpb(data: bytes) -> None:
    """dag-pb's strict reader; what decodes re-encodes to a node that decodes the same (bytes
    equal unless a varint was padded), and its Data, if any, through the UnixFS reader."""
    node = decode_node(data)
    again = encode_node(node)
    assert decode_node(again) == node, "a decoded node does not survive re-encoding"
    assert len(again) <= len(data)
    node_cid(data, 0)
    if node.data is not None:
        with contextlib.suppress(GridnodeError):
            unixfs_data(node.data)


def unixfs_data(data: bytes) -> None:
    """The UnixFS ``Data`` reader; what decodes re-encodes to a message that decodes the same."""
    value = decode_data(data)
    assert decode_data(encode_data(value)) == value


def cid_bytes(data: bytes) -> None:
    """``CID.parse`` of bytes, ``CID.read`` at an offset, and the round trips of what they accept."""
    try:
        cid = CID.parse(data)
    except GridnodeError:
        cid = None
    if cid is not None:
        assert CID.parse(cid.bytes) == cid
        assert CID.parse(str(cid)) == cid
        assert CID.parse(cid.encode("base58btc")) == cid
        _ = cid.digest, cid.codec_name, cid.hash_name, cid.to_v1()
    offset = data[0] % 8 if data else 0
    read, end = CID.read(data, offset)
    assert offset < end <= len(data)
    assert read.bytes == data[offset:end]


def cid_text(data: bytes) -> None:
    """``CID.parse`` of text (every multibase, CIDv0) and of ``/gridnode/`` addresses."""
    text = data.decode("utf-8", "replace") if data[:1] != b"\x00" else data[1:].decode("latin-1")
    try:
        cid = CID.parse(text)
    except GridnodeError:
        parse_address("/gridnode/" + text)
        raise
    assert CID.parse(str(cid)) == cid


def car_reader(data: bytes) -> None:
    """``read_header``, then ``iter_blocks`` verifying, then ``read_car`` without verifying and
    with a small block bound (v1 and v2: the pragma decides)."""
    header = car.read_header(data)
    assert header.version in (1, 2)
    try:
        for cid, block in car.iter_blocks(data):
            assert cid.matches(block) or cid.hash_name is None
    except GridnodeError:
        pass
    car.read_car(data, verify=False, max_block_size=1024)


def entry(data: bytes) -> None:
    """``decode_entry`` given a CID and a block: mode 0 the block's own CID, mode 1 a CID read from
    the front of the input (the rest is the block), mode 2 a small size bound."""
    if not data:
        raise wire.ProtocolError("empty")
    mode, rest = data[0] % 3, data[1:]
    if mode == 0:
        decode_entry(CID.for_block(rest), rest)
    elif mode == 1:
        cid, end = CID.read(rest, 0)
        decode_entry(cid, rest[end:])
    else:
        decode_entry(CID.for_block(rest), rest, max_size=256)


def manifest(data: bytes) -> None:
    """``decode_manifest`` (what ``follow`` does with a block a peer sent), then a database opened
    with it (its store configured by the manifest's options) and written to by its admin."""
    decoded = decode_manifest(CID.for_block(data), data)
    assert decoded.address.startswith("/gridnode/")
    database = Database(decoded)
    _ = database.digest(), database.log.access.describe()


@cache
def _manifests() -> tuple[list[Manifest], Keypair, Keypair]:
    admin = Keypair.from_seed(bytes([3]) * 32)
    writer = Keypair.from_seed(bytes([4]) * 32)
    options: dict[str, dict[str, Any]] = {
        "documents": {"indexBy": "_id", "indexes": ["age", "a.b"]}
    }
    made = [
        create_manifest(
            f"fuzz-{store}",
            store,
            admins=[admin.did],
            writers=[writer.did],
            options=options.get(store),
        )
        for store in sorted(STORE_TYPE_NAMES)
    ]
    return made, admin, writer


def signed_entry(data: bytes) -> None:
    """Arbitrary payloads *validly signed* by an authorised writer (or the admin): what gets past
    every check of one block, judged by the log and applied by each store type. The first byte
    picks the store and the signer; the rest is the payload (DAG-CBOR)."""
    if not data:
        return
    made, admin, writer = _manifests()
    chosen = made[data[0] % len(made)]
    signer = admin if data[0] & 0x80 else writer
    payload = decode(data[1:])
    database = Database(chosen)
    first = create_entry(signer, db=chosen.cid, clock=1, payload=payload)
    second = create_entry(writer, db=chosen.cid, clock=2, next=[first.cid], payload=payload)
    entries = [decode_entry(e.cid, e.block) for e in (second, first)]
    result = database.join(entries)
    assert len(result.applied) + len(result.rejected) == 2, result
    _ = database.digest(), database.store.state()


# -- the sync protocol and gossip -----------------------------------------------------------------


def wire_message(data: bytes) -> None:
    message = wire.parse_message(data)
    # What parses re-encodes into a frame that parses to the same message.
    (payload,) = wire.FrameDecoder().feed(wire.encode_message(message))
    assert wire.parse_message(payload) == message


def frames(data: bytes) -> None:
    """``FrameDecoder.feed`` with the input cut into pieces, each frame through ``parse_message``."""
    if not data:
        return
    decoder = wire.FrameDecoder(max_frame=64 * 1024)
    for piece in _chunks(data[1:], data[0]):
        for payload in decoder.feed(piece):
            assert len(payload) <= 64 * 1024
            with contextlib.suppress(wire.ProtocolError):
                wire.parse_message(payload)
    assert decoder.buffered <= 64 * 1024 + 9


def announcement(data: bytes) -> None:
    manifest_cid = fixture_log()[0].cid
    try:
        parsed = gossip.parse_announcement(data)
    except wire.ProtocolError:
        parsed = None
    if parsed is not None:
        assert parsed.encode() == data or len(parsed.encode()) <= gossip.INLINE_BUDGET
    gossip.parse_announcement(data, manifest_cid)


def peer_record(data: bytes) -> None:
    origin = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
    with contextlib.suppress(wire.ProtocolError):
        gossip.parse_peer_record(data, origin)
    record = gossip.parse_peer_record(data, "12D3KooWTarget")
    assert gossip.parse_peer_record(record.encode(), record.peer) == record


def ranges(data: bytes) -> None:
    """``parse_ranges``, then a reconciler in each role, over the log's own item view
    (:class:`~crdt.rangesums.LogItems`, what the node uses) and over a sorted list."""
    value = decode(data)
    reconcile.parse_ranges(value)
    _manifest, log, _keys = fixture_log()
    items: Any = LogItems(log)
    listed = reconcile.SortedItems(items.items(b"", reconcile.TOP))
    for item_set in (items, listed):
        for role in ("puller", "server", None):
            reconciler = reconcile.Reconciler(item_set, role=role)  # type: ignore[arg-type]
            try:
                answer = reconciler.receive_ranges(value)
            except wire.ProtocolError:
                continue  # e.g. "want" sent to a puller; the other roles still run
            if answer is not None:
                reconcile.parse_ranges(answer)
            assert reconciler.outbox == [] or role == "server"


def _serve(conn: SyncConnection, event: Any) -> None:
    """Answer a server event as a node would, from the fixture log."""
    _manifest, log, _keys = fixture_log()
    heads = list(log.heads)
    if isinstance(event, HeadsAsked):
        conn.heads(event.db, heads)
    elif isinstance(event, BlocksAsked):
        wanted, _more = log.ancestry(list(event.cids), list(event.have), limit=64)
        conn.blocks(event.db, [(c, log.block(c) or b"") for c in wanted], more=False)
    elif isinstance(event, SyncAsked | RangesAsked):
        reconciler = reconcile.Reconciler(LogItems(log), role="server")
        answer = reconciler.receive_ranges(event.ranges)
        conn.ranges(event.db, answer or [])
    else:
        raise AssertionError(f"a server got {event!r}")


def sync_server(data: bytes) -> None:
    """A server-side :class:`SyncConnection` fed arbitrary bytes, answering what it is asked."""
    if not data:
        return
    conn = SyncConnection(Role.SERVER)
    for piece in _chunks(data[1:], data[0]):
        for event in conn.receive(piece):
            _serve(conn, event)


def sync_puller(data: bytes) -> None:
    """A puller-side :class:`SyncConnection` with a request outstanding (which one: the first
    byte), fed arbitrary bytes as the server's answers; it asks again whenever it may."""
    if not data:
        return
    manifest_obj, log, _keys = fixture_log()
    db = manifest_obj.cid if data[0] & 0x80 else CID.for_block(b"other")
    conn = SyncConnection(Role.PULLER)
    asks = [
        lambda now: conn.ask_heads(db, now),
        lambda now: conn.sync(
            db, list(log.heads), reconcile.Reconciler(LogItems(log)).initiate_ranges(), now
        ),
        lambda now: conn.want(db, list(log.heads), [], now),
        lambda now: conn.reconcile(db, [[reconcile.TOP, "skip"]], now),
    ]
    step = data[0]
    asks[step % 4](0.0)
    for now, piece in enumerate(_chunks(data[1:], data[0])):
        conn.receive(piece, float(now))
        conn.check_time(float(now))
        if not conn.waiting:
            step += 1
            asks[step % 4](float(now))


TARGETS: dict[str, Target] = {
    "dagcbor": dagcbor,
    "dagcbor_strict": dagcbor_strict,
    "dagpb": dagpb,
    "unixfs_data": unixfs_data,
    "cid_bytes": cid_bytes,
    "cid_text": cid_text,
    "car": car_reader,
    "entry": entry,
    "manifest": manifest,
    "signed_entry": signed_entry,
    "wire_message": wire_message,
    "frames": frames,
    "announcement": announcement,
    "peer_record": peer_record,
    "ranges": ranges,
    "sync_server": sync_server,
    "sync_puller": sync_puller,
}
