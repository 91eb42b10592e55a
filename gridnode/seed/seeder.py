"""The seeder: a PostgreSQL table into a gridnode database, snapshot then follow.

Exactly once in effect, across SIGKILL of the seeder and restarts of PostgreSQL:

- the *position* lives in the node's SQLite file (``meta`` row ``seed.postgres.<slot>``) and is
  written in the same transaction as the entries it accounts for
  (:func:`gridnode.ops.write` with ``meta``, through :meth:`gridnode.node.Node.write`): either both are on disk or
  neither is;
- snapshot: rows are read in key order, a batch at a time; the position is the last key
  written. A restart continues after it, so every row is written once;
- follow: the position holds the outbox ids of the batch applied; they are deleted from the
  outbox after the commit, and again at every start (deleting twice is harmless). A batch applied
  but not yet deleted is read again after a crash: every change is the row's *current* value,
  compared with the document the node holds before anything is written, so reading it twice
  writes nothing twice.

A value that cannot be mapped (:class:`~gridnode.errors.UnmappableValue`) stops the seeder
with an error naming the row and column; its position stays before that row.

The table's schema (:meth:`~gridnode.seed.postgres.PostgresSide.schema`) travels with the data:
the seeder writes it as the store-level meta op ``{"op": "meta", "key": "postgres.table",
"value": SCHEMA}`` when it starts and the database does not hold that exact schema, and again
when it sees the table's columns change (looked at every :data:`SCHEMA_CHECK_INTERVAL` seconds
while following, and whenever a query names a column that is gone). When the *published*
columns changed, the position goes back to the start of a snapshot, in the same transaction as
the schema: the rows are compared again and those whose documents differ are written.

Hand-over: the seeder writes only what differs from what the database holds, so pointed at a
table recovered from a replica (``gridnode recover postgres``), with the same node key, a whole
snapshot pass writes nothing, and later changes follow as ever.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import psycopg
import trio

from crdt.ipld import encode
from gridnode import ops
from gridnode.errors import SeedConfigError, SeedError, SourceUnavailable, UnknownDatabase
from gridnode.repo import Repo, StoredDatabase
from gridnode.seed.config import PostgresSource
from gridnode.seed.postgres import SCHEMA_META_KEY, TRUNCATED, Change, PostgresSide
from gridnode.seed.types import to_ipld

__all__ = ["META_PREFIX", "SCHEMA_CHECK_INTERVAL", "Position", "SeedStats", "Seeder"]

log = logging.getLogger(__name__)
T = TypeVar("T")

META_PREFIX: Final = "seed.postgres."
#: Seconds to wait for a notification before looking at the outbox anyway.
POLL_INTERVAL: Final = 1.0
#: Seconds between looks at the table's columns while following (on idle rounds).
SCHEMA_CHECK_INTERVAL: Final = 5.0
#: Keys checked against the table per query while removing documents after a TRUNCATE.
_PRESENCE_CHUNK: Final = 5000


@dataclass
class Position:
    """Where a source's seeding stands; kept as JSON in the node's ``meta`` table."""

    phase: str = "snapshot"
    #: The last key the snapshot wrote (``None``: none yet).
    after: Any = None
    #: Outbox ids of the last change batch applied (deleted from the outbox at start).
    acked: list[int] = field(default_factory=list)
    #: After the snapshot, delete documents whose rows are gone (a lost outbox, a TRUNCATE).
    resync: bool = False
    snapshot_rows: int = 0

    def dumps(self) -> str:
        return json.dumps(
            {
                "phase": self.phase,
                "after": self.after,
                "acked": self.acked,
                "resync": self.resync,
                "snapshot_rows": self.snapshot_rows,
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: Any) -> Position:
        if text is None:
            return cls()
        value = json.loads(text)
        return cls(
            phase=value["phase"],
            after=value["after"],
            acked=list(value["acked"]),
            resync=bool(value["resync"]),
            snapshot_rows=int(value["snapshot_rows"]),
        )


@dataclass
class SeedStats:
    """What a seeder did since it started."""

    snapshot_rows: int = 0
    changes: int = 0
    written: int = 0
    unchanged: int = 0
    reconnects: int = 0
    #: Schema records written (the meta op), at start or after the table's columns changed.
    schema_writes: int = 0


def _json_key(key: Any) -> Any:
    return key if isinstance(key, int | str) else str(key)


class Seeder:
    """Seeds one database from one table. :meth:`run` runs until cancelled.

    ``storage`` runs a blocking function on the node's storage (the node's worker), for reads;
    ``write`` is the write path (:meth:`gridnode.node.Node.write`, or :func:`gridnode.ops.write`
    with no node): ``await write(payloads, meta)``. :meth:`for_node` and :meth:`for_repo` make
    both.
    """

    def __init__(
        self,
        source: PostgresSource,
        database: StoredDatabase,
        storage: Callable[[Callable[[], Any]], Awaitable[Any]],
        write: Callable[[list[Any], dict[str, str] | None], Awaitable[Any]],
    ) -> None:
        self.source = source
        self.database = database
        self._storage = storage
        self._write = write
        self.pg = PostgresSide(source)
        self.meta_name = META_PREFIX + source.slot
        self.stats = SeedStats()
        self.position = Position()
        store_type = database.manifest.store
        if store_type not in ("documents", "keyvalue"):
            raise SeedConfigError(
                f"{database.address} is a {store_type} database; seed a documents or keyvalue one"
            )
        if not database.may_write():
            raise SeedConfigError(f"this node may not write to {database.address}")
        self.documents = store_type == "documents"
        # Outbox checks started, and the number of the last one that found it empty.
        self._round = 0
        self._idle_round = -1
        self._checked = trio.Event()
        #: Seconds between looks at the table's columns while following.
        self.schema_interval = SCHEMA_CHECK_INTERVAL
        self._next_schema_check = 0.0

    @classmethod
    async def for_node(cls, node: Any, source: PostgresSource) -> Seeder:
        """A seeder writing through a running :class:`~gridnode.node.Node`."""
        database = await node.worker.run(_database, node.repo, source.address)
        await node.replicate(database)

        async def storage(fn: Callable[[], Any]) -> Any:
            return await node.worker.run(fn)

        async def write(payloads: list[Any], meta: dict[str, str] | None) -> Any:
            return await node.write(database.address, payloads, meta=meta)

        return cls(source, database, storage, write)

    @classmethod
    def for_repo(cls, repo: Repo, source: PostgresSource) -> Seeder:
        """A seeder writing to a data directory with no node running (one thread at a time)."""
        database = _database(repo, source.address)
        limiter = trio.CapacityLimiter(1)

        async def storage(fn: Callable[[], Any]) -> Any:
            return await trio.to_thread.run_sync(fn, limiter=limiter)

        async def write(payloads: list[Any], meta: dict[str, str] | None) -> Any:
            return await storage(lambda: ops.write(database, payloads, meta=meta))

        return cls(source, database, storage, write)

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Snapshot, then follow, for ever; reconnect when PostgreSQL goes away."""
        started = False
        delay = 0.2
        while True:
            try:
                await self._prepare()
                if not started:
                    started = True
                    task_status.started()
                delay = 0.2
                while True:
                    if self.position.phase == "snapshot":
                        await self._snapshot()
                    await self._follow()  # returns when the published columns changed
            except psycopg.errors.UndefinedColumn as exc:
                # A column dropped under a running seeder: describe the table again.
                log.warning(
                    "%s: %s; reading the table's columns again",
                    self.source.table,
                    " ".join(str(exc).split()),
                )
                await trio.to_thread.run_sync(self.pg.close)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except (SourceUnavailable, psycopg.OperationalError) as exc:
                self.stats.reconnects += 1
                log.warning(
                    "%s: PostgreSQL unavailable (%s); retrying in %.1f s",
                    self.source.table,
                    " ".join(str(exc).split()),
                    delay,
                )
                await trio.to_thread.run_sync(self.pg.close)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except psycopg.Error as exc:
                await trio.to_thread.run_sync(self.pg.close)
                raise SeedError(f"{self.source.table}: {' '.join(str(exc).split())}") from None

    async def _prepare(self) -> None:
        pg = self.pg
        await trio.to_thread.run_sync(pg.connect)
        await trio.to_thread.run_sync(pg.describe)
        created = await trio.to_thread.run_sync(pg.install)
        position = Position.loads(
            await self._storage(lambda: self.database.repo.meta(self.meta_name))
        )
        if created and (position.phase != "snapshot" or position.after is not None):
            # The outbox is new, yet this node seeded before: changes in between are unknown.
            log.warning("%s: the outbox was missing; taking the snapshot again", self.source.table)
            position = Position(resync=True)
        await trio.to_thread.run_sync(pg.ack, position.acked)
        self.position = await self._record_schema(position)
        self._next_schema_check = trio.current_time() + self.schema_interval
        log.info(
            "%s -> %s: %s (%d columns: %s)",
            self.source.table,
            self.database.address,
            "following" if self.position.phase == "follow" else "snapshot",
            len(pg.columns),
            ", ".join(c.name for c in pg.columns),
        )

    async def _record_schema(self, position: Position) -> Position:
        """Write the table's schema (as :meth:`PostgresSide.describe` last read it) unless the
        database holds it already; the position to continue from (a new snapshot if the
        published columns changed since rows were written)."""
        schema = self.pg.schema()

        def recorded() -> Any:
            return self.database.store.meta(SCHEMA_META_KEY)

        held = await self._storage(recorded)
        if held == schema:
            return position
        started = position.phase != "snapshot" or position.after is not None
        if held is not None and started and _published(held) != _published(schema):
            log.info(
                "%s: the published columns changed; comparing every row again", self.source.table
            )
            position = Position(resync=position.resync)
        op = {"op": "meta", "key": SCHEMA_META_KEY, "value": schema}
        # The schema and the position in one transaction: a new snapshot is never half-decided.
        await self._write([op], {self.meta_name: position.dumps()})
        self.stats.schema_writes += 1
        log.info("%s: recorded its schema in %s", self.source.table, self.database.address)
        return position

    async def _schema_changed(self) -> bool:
        """On an idle round, every ``schema_interval`` seconds: describe the table again and
        record a changed schema; whether a new snapshot must be taken."""
        now = trio.current_time()
        if now < self._next_schema_check:
            return False
        self._next_schema_check = now + self.schema_interval
        await trio.to_thread.run_sync(self.pg.describe)
        self.position = await self._record_schema(self.position)
        return self.position.phase == "snapshot"

    async def _read_snapshot(
        self, after: Any, batches: trio.MemorySendChannel[list[Change]]
    ) -> None:
        """Read the snapshot's batches ahead of the writes (PostgreSQL and the storage worker
        work at the same time); an empty batch ends it."""
        async with batches:
            while True:
                changes = await trio.to_thread.run_sync(self.pg.snapshot, after, self.source.batch)
                await batches.send(changes)
                if not changes:
                    return
                after = changes[-1].key

    async def _snapshot(self) -> None:
        position = self.position
        send, receive = trio.open_memory_channel[list[Change]](1)
        try:
            async with trio.open_nursery() as nursery, receive:
                nursery.start_soon(self._read_snapshot, position.after, send)
                async for changes in receive:
                    if not changes:
                        break
                    position = await self._snapshot_batch(changes, position)
        except BaseExceptionGroup as group:
            # One failure (PostgreSQL gone, an unmappable value): raise it as itself, for run().
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        if position.resync:
            await self._resync()
        done = Position(phase="follow", snapshot_rows=position.snapshot_rows)
        await self._write([], {self.meta_name: done.dumps()})
        self.position = done
        log.info("%s: snapshot done: %d rows", self.source.table, position.snapshot_rows)

    async def _snapshot_batch(self, changes: list[Change], position: Position) -> Position:
        last = changes[-1].key
        new = Position(
            phase="snapshot",
            after=_json_key(last),
            resync=position.resync,
            snapshot_rows=position.snapshot_rows + len(changes),
        )
        await self._apply(changes, new)
        self.stats.snapshot_rows += len(changes)
        self.position = new
        return new

    async def _follow(self) -> None:
        while True:
            self._round += 1
            check = self._round
            ids, changes = await trio.to_thread.run_sync(self.pg.changes, self.source.batch)
            if not ids:
                if await self._schema_changed():
                    return
                self._idle_round = check
                self._checked.set()
                self._checked = trio.Event()
                await trio.to_thread.run_sync(self.pg.wait, POLL_INTERVAL)
                continue
            if changes and changes[0] is TRUNCATED:
                changes = changes[1:]
                await self._resync()
            new = Position(phase="follow", acked=ids, snapshot_rows=self.position.snapshot_rows)
            await self._apply(changes, new)
            self.stats.changes += len(changes)
            self.position = new
            await trio.to_thread.run_sync(self.pg.ack, ids)

    async def wait_idle(self, timeout: float = math.inf) -> None:
        """Until the snapshot is done and a look at the outbox that began after this call found
        it empty: everything committed in PostgreSQL before the call is applied (for tests and
        benchmarks)."""
        since = self._round
        with trio.fail_after(timeout):
            while self._idle_round <= since:
                await self._checked.wait()

    # -- writing ------------------------------------------------------------------------------

    async def _apply(self, changes: Sequence[Change], position: Position) -> None:
        payloads = await self._storage(lambda: self._changed(changes))
        # The ops and the position in one transaction, through the node's one write path.
        await self._write(payloads, {self.meta_name: position.dumps()})
        self.stats.written += len(payloads)
        self.stats.unchanged += len(changes) - len(payloads)

    def _doc_id(self, key: Any) -> Any:
        doc_id = to_ipld(key, table=self.source.table, key=key, column=self.source.key)
        return doc_id if self.documents else str(doc_id)

    def _changed(self, changes: Sequence[Change]) -> list[Any]:
        """In the storage thread: the ops that change something."""
        store: Any = self.database.store
        payloads = []
        for change in changes:
            doc_id = self._doc_id(change.key)
            current = store.get(doc_id)
            if change.row is None:
                if current is not None:
                    key = "id" if self.documents else "key"
                    payloads.append({"op": "del", key: doc_id})
                continue
            value = dict(change.row)
            if self.documents:
                value[store.index_by] = doc_id
            if current is not None and encode(current) == encode(value):
                continue
            if self.documents:
                payloads.append({"op": "put", "doc": value})
            else:
                payloads.append({"op": "put", "key": doc_id, "value": value})
        return payloads

    async def _resync(self) -> None:
        """Delete the documents whose rows are gone (after a TRUNCATE, or a lost outbox)."""

        def ids() -> list[Any]:
            store: Any = self.database.store
            return list(store.ids()) if self.documents else list(store.keys())

        held = await self._storage(ids)
        gone: list[Any] = []
        for start in range(0, len(held), _PRESENCE_CHUNK):
            chunk = held[start : start + _PRESENCE_CHUNK]
            present = await trio.to_thread.run_sync(self.pg.present, [str(k) for k in chunk])
            gone += [k for k in chunk if str(k) not in present]
        if gone:
            key = "id" if self.documents else "key"
            payloads = [{"op": "del", key: k} for k in gone]
            await self._write(payloads, None)
            log.info("%s: removed %d documents whose rows are gone", self.source.table, len(gone))


def _published(schema: Any) -> Any:
    """What a schema record says of the published columns: their names and types, and the
    key (a change in them changes the documents)."""
    if type(schema) is not dict:
        return None
    excluded = schema.get("excluded") or []
    columns = schema.get("columns") or []
    return (
        schema.get("key"),
        [(c.get("name"), c.get("type")) for c in columns if c.get("name") not in excluded],
    )


def _database(repo: Repo, address: str) -> StoredDatabase:
    try:
        return repo.database(address)
    except UnknownDatabase as exc:
        raise SeedConfigError(f"{exc} (create it with 'gridnode db create')") from None
