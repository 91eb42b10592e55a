"""Signed snapshots on a running node: publish them, serve them, start a fresh replica from one.

A fresh replica that follows a database waits for its whole history before it can answer a read.
With a signed snapshot of the state (:mod:`crdt.snapshot`) it answers at once, and verifies the
history behind it as it arrives. This room does the I/O around that format:

- **publish** (:meth:`Snapshots.publish`, ``gridnode db snapshot publish``, and every
  ``snapshot_interval`` seconds for the databases this node administers whose heads moved):
  build a snapshot in the storage worker (one consistent state), keep its blocks in the node's
  file, replace the one before;
- **serve** ``/gridnode/snapshot/1.0.0`` (:mod:`protocols.snapshot`): the newest root of a
  database the node replicates and does not keep private, and its chunks;
- **follow from a snapshot** (:meth:`Snapshots.follow_from_snapshot`, run by ``Node.follow``
  for a database the node holds nothing of yet, unless ``--no-snapshot``): ask the connected
  peers for their newest root (with the manifest, checked against the address), keep those that verify and that this node trusts (the manifest's admins and
  ``snapshot_signers``, within ``snapshot_min_age`` .. ``snapshot_max_age``), take the one
  covering the most entries, fetch its chunks from every peer offering it at once (each chunk
  checked against the signed root on arrival), assemble the store it describes and check its
  digest, then keep the database and route its reads to the snapshot
  (:attr:`gridnode.repo.StoredDatabase.view`), all before the first sync starts (so the fetch
  does not compete with the join for the interpreter). Sync is untouched: it then pulls the
  history into the database's own store as for any follow.
- **verify** (:meth:`Snapshots._verify`): once the history holds the snapshot's heads, the state
  digest of the history folded up to those heads must be the snapshot's. Equal: the snapshot
  was right, and reads go to the verified store. Different, or the history complete without
  those heads: the snapshot is dropped (never the history), reads go to the verified fold, and
  the signer is reported (status, the dashboard's events, the log).

Refused: a snapshot of a private or an encrypted database (never offered, never asked for:
an encrypted one's state is plaintext), one from a signer
not trusted, one that fails any check; a chunk that does not hash to what the root signs costs
the peer that sent it its part of the fetch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import trio

from crdt.database import Database
from crdt.entry import Entry
from crdt.errors import (
    GridnodeError,
    InvalidCID,
    InvalidManifest,
    InvalidSnapshot,
    UntrustedSnapshot,
)
from crdt.ipld.cid import CID
from crdt.manifest import Manifest, decode_manifest, parse_address
from crdt.snapshot import (
    BuiltSnapshot,
    SnapshotHeader,
    assemble_store,
    build_from,
    capture,
    check_store_digest,
    check_trust,
    decode_chunk,
    decode_root,
    rows_digest,
)
from crdt.stores import Store
from gridnode.errors import InvalidRequest, NetError, UnknownDatabase
from gridnode.net import Host, Stream
from gridnode.node.budget import Budgets
from gridnode.node.stats import NodeStats
from gridnode.repo import Repo, StoredDatabase
from gridnode.storage.snapshots import delete_blocks, published_root, set_published_root
from gridnode.storage.worker import StorageWorker
from protocols.errors import ProtocolError
from protocols.snapshot import (
    MAX_CHUNKS_ASKED,
    PROTOCOL_ID,
    ChunksRequest,
    SnapshotRequest,
    encode_request,
    encode_root_answer,
    parse_request,
    parse_root_answer,
)
from protocols.wire import MAX_FRAME, FrameDecoder, frame

__all__ = ["ASK_PEERS", "ASK_SECONDS", "VERIFY_INTERVAL", "ServedSnapshot", "Snapshots"]

log = logging.getLogger(__name__)

#: Peers asked at once for their newest snapshot, and how long they have to answer.
ASK_PEERS: Final = 8
ASK_SECONDS: Final = 10.0
#: Seconds between two looks at how far the history behind a served snapshot has come.
VERIFY_INTERVAL: Final = 1.0
#: Looks in a row that must find a completed pull from a peer that offered the snapshot, nothing
#: missing, and yet not the snapshot's heads, before the snapshot is called stale.
_STALE_LOOKS: Final = 2
_READ: Final = 64 * 1024
#: Chunk requests in flight per peer.
_IN_FLIGHT: Final = 2


@dataclass
class ServedSnapshot:
    """A snapshot a replica serves reads from (or did, until it was verified or dropped)."""

    address: str
    header: SnapshotHeader
    #: "serving", "verified" or "dropped".
    state: str = "serving"
    #: Entries of the history applied so far (of ``header.entries``).
    applied: int = 0
    reason: str = ""
    peers: list[str] = field(default_factory=list)
    #: Seconds (trio's clock) from asking the peers to serving reads, and its parts: the roots
    #: asked for, the chunks fetched and decoded, the store assembled.
    fetch_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    #: When reads began to be served from it (trio's clock).
    since: float = 0.0
    _stale_looks: int = 0

    @property
    def verified_percent(self) -> int:
        if self.state == "verified":
            return 100
        whole = max(self.header.entries, 1)
        return min(99, self.applied * 100 // whole)

    def describe(self) -> dict[str, Any]:
        """What ``/status`` and ``GET /db/{db}/snapshot`` say of it."""
        if self.state == "serving":
            text = f"serving from snapshot, history verified {self.verified_percent}%"
        elif self.state == "verified":
            text = "verified: the history reproduces the snapshot's state"
        else:
            text = f"dropped: {self.reason} (signed by {self.header.signer})"
        return {
            "status": text,
            "state": self.state,
            "root": str(self.header.cid),
            "signer": self.header.signer,
            "created": self.header.created,
            "entries": self.header.entries,
            "verified_percent": self.verified_percent,
            "fetch_seconds": round(self.fetch_seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


class Snapshots:
    """Publishing, serving and following from signed snapshots on one running node; made by
    :class:`~gridnode.node.Node`."""

    def __init__(
        self,
        repo: Repo,
        host: Host,
        nursery: trio.Nursery,
        worker: StorageWorker,
        stats: NodeStats,
        budgets: Budgets,
        *,
        addresses: Callable[[], list[str]],
        pulling: Callable[[str], bool],
    ) -> None:
        self.repo = repo
        self.host = host
        self._nursery = nursery
        self._worker = worker
        self._stats = stats
        self._budgets = budgets
        self._addresses = addresses
        self._pulling = pulling
        config = repo.config
        #: Seconds between scheduled snapshots (0: only on demand).
        self.interval: float = config.snapshot_interval
        self.trusted: list[str] = list(config.snapshot_signers)
        self.min_age: float = config.snapshot_min_age
        self.max_age: float | None = config.snapshot_max_age or None
        #: Follow from snapshots at all (config ``snapshots``).
        self.enabled: bool = config.snapshots
        #: Snapshots served (or that were), by database address.
        self.served: dict[str, ServedSnapshot] = {}
        #: Roots found wrong: never served again while the node runs.
        self._refused: set[CID] = set()

    def start(self) -> None:
        self.host.set_stream_handler(PROTOCOL_ID, self._serve_stream)
        if self.interval > 0:
            self._nursery.start_soon(self._publish_periodically)

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, ref: str) -> dict[str, Any]:
        """Build, keep and offer a snapshot of the database ``ref`` (an address, CID or name)
        signed with this node's key; describe it."""
        from gridnode import ops  # ops imports the node's rooms' neighbours; late on purpose

        def resolve() -> StoredDatabase:
            database = ops.resolve(self.repo, ref)
            if database.private:
                raise InvalidRequest(f"{database.address} is private: it has no snapshots")
            if database.encrypted:
                # A snapshot is the materialised state: a reader's would be plaintext for all.
                raise InvalidRequest(f"{database.address} is encrypted: it has no snapshots")
            return database

        database = await self._worker.run(resolve)
        built = await self._build(database)
        log.info(
            "published snapshot %s of %s: %d entries, %d rows in %d chunks",
            built.root_cid,
            database.address,
            built.header.entries,
            built.header.rows,
            len(built.chunks),
        )
        return _describe_built(built)

    async def _build(self, database: StoredDatabase) -> BuiltSnapshot:
        # The storage worker only copies the rows and the log's facts (one state); encoding,
        # hashing and signing run in a thread, so the node answers meanwhile.
        captured = await self._worker.run(capture, database.database)
        built = await trio.to_thread.run_sync(
            partial(build_from, captured, self.repo.keypair, created=int(time.time()))
        )
        await self._worker.run(self._keep, database.address, built)
        return built

    def _keep(self, address: str, built: BuiltSnapshot) -> None:
        sql = self.repo.sql
        old = published_root(sql, address)
        with sql.transaction():
            for cid, block in built.chunks:
                sql.put_block(cid.bytes, block)
            sql.put_block(built.root_cid.bytes, built.root)
            set_published_root(sql, address, built.root_cid.bytes)
            if old is not None and old != built.root_cid.bytes:
                self._drop_blocks(old, keep={c.bytes for c, _ in built.chunks})

    def _drop_blocks(self, root: bytes, keep: set[bytes]) -> None:
        sql = self.repo.sql
        block = sql.get_block(root)
        gone = [root]
        if block is not None:
            try:
                header = decode_root(CID.parse(root), block)
                gone += [c.bytes for c in header.chunks if c.bytes not in keep]
            except GridnodeError:
                pass
        delete_blocks(sql, gone)

    async def _publish_periodically(self) -> None:
        last: dict[str, tuple[CID, ...]] = {}
        while True:
            await trio.sleep(self.interval)
            for address in self._addresses():
                try:
                    database = await self._worker.run(self._moved, address, last)
                    if database is not None:
                        heads = database.heads
                        built = await self._build(database)
                        last[address] = heads
                        log.info("scheduled snapshot %s of %s", built.root_cid, address)
                except GridnodeError as exc:
                    log.warning("scheduled snapshot of %s failed: %s", address, exc)

    def _moved(self, address: str, last: dict[str, tuple[CID, ...]]) -> StoredDatabase | None:
        """The database at ``address`` if a scheduled snapshot of it is due: this node is an
        admin of it, it is public, its heads moved since the last, and reads are its own."""
        database = self.repo.database(address)
        if database.private or database.encrypted or self.repo.did not in database.manifest.admins:
            return None
        heads = database.heads
        if not heads or last.get(address) == heads or database.view is not None:
            return None
        return database

    def published(self, database: StoredDatabase) -> dict[str, Any] | None:
        """The newest snapshot this node published of ``database`` (storage worker)."""
        root = published_root(self.repo.sql, database.address)
        block = None if root is None else self.repo.sql.get_block(root)
        if root is None or block is None:
            return None
        header = decode_root(CID.parse(root), block)
        return _describe_header(header)

    # -- serving ------------------------------------------------------------------------------

    async def _serve_stream(self, stream: Stream) -> None:
        peer = stream.remote_peer_id
        try:
            payload = await _read_frame(stream)
            if payload is None:
                return
            request = parse_request(payload)
            if isinstance(request, SnapshotRequest):
                root = await self._worker.run(self._root_of, request.database)
                await self._send(stream, peer, encode_root_answer(root))
            else:
                blocks = await self._worker.run(self._chunks_of, request)
                for block in blocks:
                    await self._send(stream, peer, block)
            await stream.close()
        except (ProtocolError, NetError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("snapshot stream from %s ended: %s", peer, exc)
            await stream.reset()

    async def _send(self, stream: Stream, peer: str, payload: bytes) -> None:
        data = frame(payload)
        await self._budgets.send(peer, len(data))
        await stream.write(data)

    def _offered(self, manifest_cid: CID) -> StoredDatabase | None:
        address = "/gridnode/" + str(manifest_cid)
        try:
            database = self.repo.database(address)
        except UnknownDatabase:
            return None
        if not self.repo.replicated(address) or database.private or database.encrypted:
            return None
        return database

    def _root_of(self, manifest_cid: CID) -> tuple[bytes, bytes] | None:
        database = self._offered(manifest_cid)
        if database is None:
            return None
        root = published_root(self.repo.sql, database.address)
        block = None if root is None else self.repo.sql.get_block(root)
        return None if block is None else (block, database.manifest.block)

    def _chunks_of(self, request: ChunksRequest) -> list[bytes]:
        sql = self.repo.sql
        block = sql.get_block(request.root.bytes)
        if block is None:
            return []
        header = decode_root(request.root, block)
        if self._offered(header.database) is None:
            return []
        if published_root(sql, "/gridnode/" + str(header.database)) != request.root.bytes:
            return []  # replaced since: the asker tries elsewhere
        found = []
        for cid in header.chunks[request.start : request.start + request.count]:
            chunk = sql.get_block(cid.bytes)
            if chunk is None:
                break
            found.append(chunk)
        return found

    # -- following from a snapshot ------------------------------------------------------------

    async def fresh(self, address: str) -> bool:
        """Whether following ``address`` should start from a snapshot: snapshots are on and
        this node holds no entry of it yet."""

        def entries() -> int:
            try:
                return len(self.repo.database(address))
            except UnknownDatabase:
                return 0

        return self.enabled and await self._worker.run(entries) == 0

    async def follow_from_snapshot(self, address: str, *, timeout: float) -> bool:
        """Start following ``address`` from the newest snapshot the connected peers offer and
        this node trusts: fetch and check it, keep the database (its manifest came with the
        snapshot, checked against the address) and serve its reads from the snapshot, before
        the first sync begins (which then has the machine to itself). Whether it does; never
        raises for what peers send: without a usable snapshot the follow verifies everything
        before serving, as it would have anyway."""
        manifest_cid = parse_address(address)
        if self.repo.quota.full():
            return False  # the follow itself refuses it, and counts that once
        started = trio.current_time()
        with trio.move_on_after(timeout):
            offers = await self._ask_roots(manifest_cid)
            asked = trio.current_time()
            for header, manifest, peers in offers:
                if manifest.private or manifest.encrypted:
                    continue
                timings = {"ask": asked - started}
                store = await self._fetch(header, manifest, peers, timings)
                if store is None:
                    continue
                database = await self._worker.run(self.repo.add_database, manifest)
                served = ServedSnapshot(database.address, header, peers=peers, timings=timings)
                served.since = trio.current_time()
                served.fetch_seconds = served.since - started
                self.served[database.address] = served
                database.view = store
                log.info(
                    "serving %s from snapshot %s by %s (%d entries) after %.2f s; "
                    "verifying the history behind it",
                    database.address,
                    header.cid,
                    header.signer,
                    header.entries,
                    served.fetch_seconds,
                )
                self._nursery.start_soon(self._verify, database, served, store)
                return True
        return False

    async def _ask_roots(
        self, manifest_cid: CID
    ) -> list[tuple[SnapshotHeader, Manifest, list[str]]]:
        """The valid, trusted snapshots the connected peers offer, the most entries first, each
        with the database's manifest and the peers offering it."""
        roots: dict[CID, list[str]] = {}
        blocks: dict[CID, bytes] = {}
        manifests: list[Manifest] = []
        address = "/gridnode/" + str(manifest_cid)

        async def ask(peer: str) -> None:
            answers = await self._exchange(peer, SnapshotRequest(manifest_cid), 1)
            if not answers:
                return
            try:
                offer = parse_root_answer(answers[0])
                if offer is None:
                    return
                root, manifest_block = offer
                if not manifests:
                    manifests.append(decode_manifest(manifest_cid, manifest_block))
            except (ProtocolError, InvalidManifest, InvalidCID) as exc:
                log.info("peer %s answered a snapshot request wrongly: %s", peer, exc)
                return
            cid = CID.for_block(root)
            roots.setdefault(cid, []).append(peer)
            blocks[cid] = root

        with trio.move_on_after(ASK_SECONDS):
            async with trio.open_nursery() as nursery:
                for peer in self.host.peers()[:ASK_PEERS]:
                    nursery.start_soon(ask, peer)
        if not manifests:
            return []
        manifest = manifests[0]
        found = []
        for cid, peers in roots.items():
            if cid in self._refused:
                continue
            try:
                header = decode_root(cid, blocks[cid])
                check_trust(
                    header,
                    manifest,
                    trusted=self.trusted,
                    now=time.time(),
                    min_age=self.min_age,
                    max_age=self.max_age,
                )
            except UntrustedSnapshot as exc:
                log.info("snapshot offered by %s not used: %s", ", ".join(peers), exc)
                self._stats.note("snapshot", f"not used: {exc}", address=address)
                continue
            except InvalidSnapshot as exc:
                self._refused.add(cid)
                log.warning("snapshot offered by %s refused: %s", ", ".join(peers), exc)
                self._stats.note("refused", f"snapshot: {exc}", peer=peers[0], address=address)
                continue
            found.append((header, manifest, peers))
        found.sort(key=lambda found: (found[0].entries, found[0].created), reverse=True)
        return found

    async def _fetch(
        self,
        header: SnapshotHeader,
        manifest: Manifest,
        peers: list[str],
        timings: dict[str, float],
    ) -> Store | None:
        """The snapshot's chunks from ``peers`` at once, each checked on arrival; the store
        they assemble into, or ``None`` (a peer sending a bad chunk is given no more)."""
        rows: list[list[list[Any]] | None] = [None] * len(header.chunks)
        todo = list(range(0, len(header.chunks), MAX_CHUNKS_ASKED))
        todo.reverse()
        failed: list[str] = []

        async def fetch_from(peer: str) -> None:
            while todo:
                start = todo.pop()
                count = min(MAX_CHUNKS_ASKED, len(header.chunks) - start)
                answers = await self._exchange(peer, ChunksRequest(header.cid, start, count), count)
                try:
                    for offset, block in enumerate(answers):
                        rows[start + offset] = await trio.to_thread.run_sync(
                            decode_chunk, header, start + offset, block
                        )
                except InvalidSnapshot as exc:
                    log.warning("peer %s sent a bad snapshot chunk: %s", peer, exc)
                    self._stats.note("refused", f"snapshot chunk: {exc}", peer=peer)
                    answers = []
                if len(answers) < count:
                    # The rest of this range from another peer; this one has no more to give.
                    todo.append(start + len(answers))
                    failed.append(peer)
                    return

        began = trio.current_time()
        async with trio.open_nursery() as nursery:
            for peer in peers:
                # Two requests in flight per peer: one range decodes while the next arrives.
                for _ in range(_IN_FLIGHT):
                    nursery.start_soon(fetch_from, peer)
        timings["chunks"] = trio.current_time() - began
        if any(r is None for r in rows):
            log.info("snapshot %s: no peer sent every chunk", header.cid)
            return None
        began = trio.current_time()
        try:
            # The rows' digest is checked after reads begin (:meth:`_verify`): it costs a
            # whole-state encode, and nothing is trusted before it is done but the signed rows.
            store: Store = await trio.to_thread.run_sync(
                partial(
                    assemble_store,
                    header,
                    manifest,
                    [r for r in rows if r is not None],
                    check_digest=False,
                )
            )
            timings["assemble"] = trio.current_time() - began
            return store
        except InvalidSnapshot as exc:
            self._refused.add(header.cid)
            log.warning("snapshot %s by %s refused: %s", header.cid, header.signer, exc)
            self._stats.note("refused", f"snapshot by {header.signer}: {exc}")
            return None

    async def _exchange(
        self, peer: str, request: SnapshotRequest | ChunksRequest, answers: int
    ) -> list[bytes]:
        """Send one request on a new stream; up to ``answers`` frames back (fewer at the end of
        the stream). A failed exchange is no answer."""
        try:
            with trio.fail_after(ASK_SECONDS * 3):
                stream = await self.host.open_stream(peer, PROTOCOL_ID)
                try:
                    await stream.write(frame(encode_request(request)))
                    found: list[bytes] = []
                    decoder = FrameDecoder(MAX_FRAME)
                    while len(found) < answers:
                        data = await stream.read(_READ)
                        if not data:
                            break
                        found += decoder.feed(data)
                    return found[:answers]
                finally:
                    await stream.close()
        except (NetError, ProtocolError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            log.info("snapshot exchange with %s failed: %s", peer, exc)
            return []

    # -- verifying the history behind a served snapshot ---------------------------------------

    async def _verify(self, database: StoredDatabase, served: ServedSnapshot, view: Store) -> None:
        header = served.header
        manifest = database.manifest
        try:
            await trio.to_thread.run_sync(check_store_digest, header, view)
        except InvalidSnapshot as exc:
            self._drop(database, served, f"its rows are not the state it signs ({exc})")
            return
        # The rows themselves, values included: the state digest covers each row's deciding
        # entry only (docs/spec.md §17), so a signer could pair the right entry with a value of
        # its own; the history's rows at the snapshot's heads must be these, byte for byte.
        rows = await trio.to_thread.run_sync(rows_digest, view, manifest.store, manifest.options)
        while served.state == "serving":
            await trio.sleep(VERIFY_INTERVAL)
            look = await self._worker.run(self._look, database, served)
            if look == "wait":
                continue
            if look == "equal":
                digest, history_rows = await self._worker.run(
                    lambda: (
                        database.digest(),
                        rows_digest(database.database.store, manifest.store, manifest.options),
                    )
                )
            else:
                entries = await self._worker.run(lambda: list(database.entries()))
                digest, history_rows = await trio.to_thread.run_sync(
                    _digest_at, database.manifest, entries, header.heads
                )
            if digest == header.digest and history_rows != rows:
                self._drop(database, served, "the history folds to other rows than it carries")
                return
            if digest == header.digest:
                served.state = "verified"
                database.view = None
                log.info(
                    "snapshot %s of %s verified: the history reproduces its state",
                    header.cid,
                    database.address,
                )
                return
            self._drop(database, served, "the history folds to another state digest")
            return
        # Stopped while waiting (dropped from elsewhere): reads are the verified fold's.
        database.view = None

    def _look(self, database: StoredDatabase, served: ServedSnapshot) -> str:
        """How far the history has come (storage worker): ``"wait"``, ``"equal"`` (it is at
        the snapshot's heads exactly) or ``"past"`` (it holds them and more)."""
        header = served.header
        served.applied = len(database)
        held = database.applied(list(header.heads))
        if len(held) < len(header.heads):
            # A pull from a peer that offered the snapshot completed since it was served, and
            # nothing is missing: that peer's history does not hold the snapshot's heads.
            complete = not database.missing_count and any(
                sync.complete
                and not sync.error
                and not sync.running
                and sync.started >= served.since
                for sync in (self._stats.syncs.get((p, database.address)) for p in served.peers)
                if sync is not None
            )
            served._stale_looks = served._stale_looks + 1 if complete else 0
            if served._stale_looks >= _STALE_LOOKS:
                self._drop(database, served, "the history is complete and does not hold its heads")
            return "wait"
        return "equal" if header.covers(database.heads) else "past"

    def _drop(self, database: StoredDatabase, served: ServedSnapshot, reason: str) -> None:
        served.state = "dropped"
        served.reason = reason
        database.view = None
        self._refused.add(served.header.cid)
        text = (
            f"snapshot {served.header.cid} of {database.address} dropped: {reason}; "
            f"signed by {served.header.signer}; reads come from the verified history now"
        )
        log.warning("%s", text)
        self._stats.note("snapshot", text, address=database.address)

    def status(self, address: str) -> dict[str, Any] | None:
        """What the node's status says of a database's snapshot (``None``: none served)."""
        served = self.served.get(address)
        return None if served is None else served.describe()


def _digest_at(
    manifest: Manifest, entries: list[Entry], heads: tuple[CID, ...]
) -> tuple[bytes, bytes]:
    """The state digest of the entries in the causal past of ``heads`` (inclusive), folded
    in memory: the history as it was at a snapshot's heads when it has moved on since."""
    by_cid = {e.cid: e for e in entries}
    past: set[CID] = set()
    todo = list(heads)
    while todo:
        cid = todo.pop()
        if cid in past or cid not in by_cid:
            continue
        past.add(cid)
        todo.extend(by_cid[cid].next)
    database = Database(manifest)
    database.join([e for e in entries if e.cid in past])  # ``entries``: already in total order
    return database.digest(), rows_digest(database.store, manifest.store, manifest.options)


def _describe_header(header: SnapshotHeader) -> dict[str, Any]:
    return {
        "root": str(header.cid),
        "address": "/gridnode/" + str(header.database),
        "signer": header.signer,
        "created": header.created,
        "entries": header.entries,
        "heads": [str(h) for h in header.heads],
        "rows": header.rows,
        "chunks": len(header.chunks),
        "digest": header.digest.hex(),
    }


def _describe_built(built: BuiltSnapshot) -> dict[str, Any]:
    described = _describe_header(built.header)
    described["bytes"] = len(built.root) + sum(len(b) for _, b in built.chunks)
    return described


async def _read_frame(stream: Stream) -> bytes | None:
    decoder = FrameDecoder(64 * 1024)
    while True:
        data = await stream.read(_READ)
        if not data:
            return None
        frames = decoder.feed(data)
        if frames:
            return frames[0]
