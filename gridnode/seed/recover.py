"""Recovery: a seeded database back into a PostgreSQL table (``gridnode recover postgres``).

The table's schema travels with the data: the seeder writes it as the database's store-level
``meta`` entry :data:`SCHEMA_KEY` (docs/spec.md), signed like any entry, so a replica holds
everything recovery needs. :class:`Recovery` reads it, creates the table (excluded columns
nullable: they come back NULL, never invented), loads every row of the replica's materialised
state with COPY, a batch per transaction, adds the primary key, and ends by comparing a hash of
each row as PostgreSQL now holds it (read back through the seeder's own mapping,
:func:`gridnode.seed.types.to_ipld`) with the database's document.

Values go back as PostgreSQL's text input reads them: the mapping of :mod:`gridnode.seed.types`
was chosen so that its strings are PostgreSQL input (numeric strings, RFC 3339 timestamps, dates,
times, uuids); bytes are bytea, JSON values are written as JSON text, lists are arrays.

Resumable after a kill: the position (the rows loaded so far and the last key) is kept in the
node's ``meta`` table (``recover.postgres.<slot>``) after each batch commits in PostgreSQL. A
batch committed in PostgreSQL whose position was not yet recorded is loaded again after deleting
its keys, in the transaction of its COPY, so every row is loaded once.

Everything here blocks (psycopg and the node's SQLite file): run it in a thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from crdt.ipld import encode
from gridnode.errors import RecoverError, TableNotEmpty
from gridnode.repo import StoredDatabase
from gridnode.seed.config import PostgresSource
from gridnode.seed.postgres import PostgresSide

__all__ = [
    "MAPPING_VERSION",
    "POSITION_PREFIX",
    "SCHEMA_KEY",
    "Progress",
    "RecoverReport",
    "Recovery",
    "check_schema",
    "schema_of",
]

log = logging.getLogger(__name__)

#: The store-level meta key the seeder writes the table's schema under.
SCHEMA_KEY: Final = "postgres.table"
#: The version of the value mapping (gridnode/seed/types.py) this module reads back.
MAPPING_VERSION: Final = 1
#: The recovery's position in the node's ``meta`` table: this prefix and a slot.
POSITION_PREFIX: Final = "recover.postgres."
DEFAULT_BATCH: Final = 5000

#: A type as ``format_type`` spells it: a (qualified, maybe quoted) name, a modifier, "with(out)
#: time zone", array brackets. Nothing else reaches CREATE TABLE.
_NAME = r'(?:"[^"\x00]+"|[A-Za-z_][A-Za-z0-9_$]*)'
_TYPE: Final = re.compile(
    rf"^{_NAME}(?:\.{_NAME})?(?: (?:varying|precision))?(?:\(\d+(?:,\d+)?\))?"
    r"(?: with(?:out)? time zone)?(?:\[\])*$"
)
_JSON_TYPES: Final = frozenset({"json", "jsonb", "_json", "_jsonb"})


def check_schema(value: Any) -> dict[str, Any]:
    """The schema map, checked (raises :class:`RecoverError` naming what is wrong)."""

    def fail(reason: str) -> RecoverError:
        return RecoverError(f"the recorded table schema is not usable: {reason}")

    if type(value) is not dict:
        raise fail("it is not a map")
    if value.get("version") != MAPPING_VERSION:
        raise fail(
            f"mapping version {value.get('version')!r}; this gridnode reads {MAPPING_VERSION}"
        )
    for name in ("table", "key"):
        if type(value.get(name)) is not str or not value[name]:
            raise fail(f"no {name!r}")
    columns = value.get("columns")
    if type(columns) is not list or not columns:
        raise fail("no columns")
    names = []
    for column in columns:
        if type(column) is not dict or type(column.get("name")) is not str:
            raise fail("a column without a name")
        if type(column.get("type")) is not str or not _TYPE.match(column["type"]):
            raise fail(f"column {column['name']!r} has the type {column.get('type')!r}")
        names.append(column["name"])
    if len(set(names)) != len(names):
        raise fail("a column is named twice")
    if value["key"] not in names:
        raise fail(f"the key {value['key']!r} is not a column")
    for field in ("excluded", "primary_key"):
        items = value.get(field, [])
        if type(items) is not list or any(type(n) is not str for n in items):
            raise fail(f"{field!r} is not a list of names")
    for name in value.get("primary_key", []):
        if name not in names:
            raise fail(f"the primary key column {name!r} is not a column")
    return value


def schema_of(database: StoredDatabase) -> dict[str, Any]:
    """The table schema the seeder recorded in ``database`` (raises :class:`RecoverError`)."""
    store: Any = database.store
    reader = getattr(store, "meta", None)
    value = reader(SCHEMA_KEY) if callable(reader) else None
    if value is None:
        raise RecoverError(
            f"{database.address} holds no table schema ({SCHEMA_KEY!r}): it was not seeded by "
            "a gridnode that records one, or this replica has not received it yet"
        )
    return check_schema(value)


@dataclass(frozen=True)
class Progress:
    """How far a recovery is: ``rows`` of ``total`` loaded, ``seconds`` since it (re)started."""

    phase: str
    rows: int
    total: int
    seconds: float


@dataclass
class RecoverReport:
    address: str
    table: str
    rows: int = 0
    #: Rows already loaded by an earlier, interrupted run.
    resumed_at: int = 0
    created: bool = False
    #: Excluded columns, loaded as NULL.
    nulled: tuple[str, ...] = ()
    verified: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return (self.rows - self.resumed_at) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "table": self.table,
            "rows": self.rows,
            "resumed_at": self.resumed_at,
            "created": self.created,
            "nulled": list(self.nulled),
            "verified": self.verified,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
        }


def _split(table: str) -> tuple[str, ...]:
    parts = tuple(table.split("."))
    if len(parts) > 2 or not all(parts):
        raise RecoverError(f"{table!r} is not a table name (schema.table or table)")
    return parts


def _json_text(value: Any, depth: int) -> Any:
    if value is None:
        return None
    if depth and type(value) is list:
        return [_json_text(item, depth - 1) for item in value]
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Recovery:
    """Recover one table from one database into the PostgreSQL database ``dsn``; :meth:`run`."""

    def __init__(
        self,
        database: StoredDatabase,
        dsn: str,
        *,
        table: str | None = None,
        force: bool = False,
        batch: int = DEFAULT_BATCH,
        schema: dict[str, Any] | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        if database.manifest.store not in ("documents", "keyvalue"):
            raise RecoverError(
                f"{database.address} is a {database.manifest.store} database; a table is "
                "recovered from a documents or keyvalue one"
            )
        self.database = database
        self.dsn = dsn
        self.schema = check_schema(schema) if schema is not None else schema_of(database)
        self.table = table or self.schema["table"]
        self.ident = sql.Identifier(*_split(self.table))
        self.force = force
        self.batch = batch
        self.progress = progress or (lambda _: None)
        self.documents = database.manifest.store == "documents"
        self.key = self.schema["key"]
        excluded = set(self.schema.get("excluded", []))
        self.columns = [c for c in self.schema["columns"] if c["name"] not in excluded]
        self.nulled = tuple(c["name"] for c in self.schema["columns"] if c["name"] in excluded)
        slot = hashlib.sha256(f"{database.address}\0{self.table}".encode()).hexdigest()[:16]
        self.position_name = POSITION_PREFIX + slot

    # -- the position -------------------------------------------------------------------------

    def _position(self) -> dict[str, Any] | None:
        text = self.database.repo.meta(self.position_name)
        return None if text is None else dict(json.loads(text))

    def _record(self, position: dict[str, Any]) -> None:
        self.database.write_many([], meta={self.position_name: json.dumps(position)})

    # -- the rows -----------------------------------------------------------------------------

    def _items(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        """``(key, row)`` of every row the database holds, in the store's order."""
        store: Any = self.database.store
        if self.documents:
            index_by = store.index_by
            names = {c["name"] for c in self.columns}
            for doc in store.docs():
                row = doc if index_by in names else {k: v for k, v in doc.items() if k != index_by}
                yield doc[index_by], row
        else:
            yield from store.items()

    def _copy_row(self, row: dict[str, Any]) -> list[Any]:
        out = []
        for column in self.columns:
            value = row.get(column["name"])
            typname = column.get("typname", "")
            if typname in _JSON_TYPES:
                value = _json_text(value, 64 if typname.startswith("_") else 0)
            out.append(value)
        return out

    def _total(self) -> int:
        return len(self.database.store)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> RecoverReport:
        started = time.monotonic()
        report = RecoverReport(self.database.address, self.table, nulled=self.nulled)
        try:
            with psycopg.connect(self.dsn) as conn:
                position = self._position()
                if position is None or position.get("phase") == "done":
                    report.created = self._prepare(conn)
                    position = {"phase": "load", "rows": 0, "after": None}
                    self._record(position)
                    resuming = False
                else:
                    report.resumed_at = int(position["rows"])
                    resuming = True
                    log.info("%s: resuming after %d rows", self.table, report.resumed_at)
                report.rows = self._load(conn, position, resuming, started)
                self._primary_key(conn)
                report.verified = self._verify()
                self._record({"phase": "done", "rows": report.rows, "after": None})
        except psycopg.Error as exc:
            raise RecoverError(f"{self.table}: {' '.join(str(exc).split())}") from None
        report.seconds = time.monotonic() - started
        return report

    def _prepare(self, conn: psycopg.Connection[Any]) -> bool:
        """Create the table, or check that the one there is empty (emptied with ``force``);
        whether it was created."""
        with conn.transaction():
            exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (self.ident.as_string(conn),)
            ).fetchone()
            if exists and exists[0]:
                rows = conn.execute(
                    sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self.ident)
                ).fetchone()
                if rows and rows[0]:
                    if not self.force:
                        raise TableNotEmpty(
                            f"{self.table} already holds rows: recover into an empty table, or "
                            "give --force to empty it first"
                        )
                    conn.execute(sql.SQL("TRUNCATE {}").format(self.ident))
                    log.warning("%s: emptied (--force)", self.table)
                return False
            definitions = []
            for column in self.schema["columns"]:
                not_null = column.get("nullable") is False and column["name"] not in self.nulled
                definitions.append(
                    sql.SQL("{} {}{}").format(
                        sql.Identifier(column["name"]),
                        sql.SQL(column["type"]),
                        sql.SQL(" NOT NULL" if not_null else ""),
                    )
                )
            conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(self.ident, sql.SQL(", ").join(definitions))
            )
            return True

    def _load(
        self,
        conn: psycopg.Connection[Any],
        position: dict[str, Any],
        resuming: bool,
        started: float,
    ) -> int:
        total = self._total()
        done = int(position["rows"])
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            self.ident, sql.SQL(", ").join(sql.Identifier(c["name"]) for c in self.columns)
        )
        items = self._items()
        last = None
        for _ in range(done):
            last = next(items, None)
            if last is None:
                break
        if done and (last is None or last[0] != position["after"]):
            raise RecoverError(
                f"{self.database.address} changed since this recovery began (row {done} is not "
                f"{position['after']!r}): run it again with --force"
            )
        self.progress(Progress("load", done, total, time.monotonic() - started))
        while True:
            chunk = [item for _, item in zip(range(self.batch), items, strict=False)]
            if not chunk:
                break
            with conn.transaction():
                if resuming:
                    # This batch may have committed before its position was recorded.
                    keys = [key for key, _ in chunk]
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE {}::text = ANY(%s::text[])").format(
                            self.ident, sql.Identifier(self.key)
                        ),
                        ([str(k) for k in keys],),
                    )
                    resuming = False
                with conn.cursor().copy(copy) as out:
                    for _, row in chunk:
                        out.write_row(self._copy_row(row))
            done += len(chunk)
            key = chunk[-1][0]
            self._record({"phase": "load", "rows": done, "after": key})
            self.progress(Progress("load", done, total, time.monotonic() - started))
        return done

    def _primary_key(self, conn: psycopg.Connection[Any]) -> None:
        """Restore the primary key; a table that had none gets a unique constraint on its key
        column (what the seeder required of it)."""
        names = self.schema.get("primary_key") or [self.key]
        constraint = "PRIMARY KEY" if self.schema.get("primary_key") else "UNIQUE"
        with conn.transaction():
            has = conn.execute(
                "SELECT 1 FROM pg_index WHERE indrelid = %s::regclass AND indisprimary",
                (self.ident.as_string(conn),),
            ).fetchone()
            if has is None:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD {} ({})").format(
                        self.ident,
                        sql.SQL(constraint),
                        sql.SQL(", ").join(sql.Identifier(n) for n in names),
                    )
                )

    def _verify(self) -> int:
        """Compare a hash of every row PostgreSQL holds (read back as the seeder reads it) with
        the database's rows; raises :class:`RecoverError` naming the rows that differ."""
        source = PostgresSource(
            dsn=self.dsn,
            table=self.table,
            key=self.key,
            address=self.database.address,
            columns=tuple(c["name"] for c in self.columns),
        )
        side = PostgresSide(source)
        written: dict[bytes, Any] = {}
        try:
            side.connect()
            side.describe()
            after = None
            while True:
                changes = side.snapshot(after, self.batch)
                if not changes:
                    break
                for change in changes:
                    assert change.row is not None
                    written[_row_hash(change.row)] = change.key
                after = changes[-1].key
        finally:
            side.close()
        count = 0
        missing: list[Any] = []
        for key, row in self._items():
            count += 1
            if written.pop(_row_hash(row), None) is None and len(missing) < 5:
                missing.append(key)
        if missing or written:
            extra = list(written.values())[:5]
            raise RecoverError(
                f"{self.table} does not match {self.database.address} after loading: rows "
                f"{missing!r} differ or are missing"
                + (f", rows {extra!r} are not in the database" if extra else "")
            )
        self.progress(Progress("verify", count, count, 0.0))
        return count


def _row_hash(row: dict[str, Any]) -> bytes:
    return hashlib.sha256(encode(row)).digest()
