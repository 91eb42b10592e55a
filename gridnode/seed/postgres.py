"""The PostgreSQL side of the seeder: change capture, the snapshot and the changes.

Change capture is a trigger-fed outbox (docs/decisions.md, "PostgreSQL seeding"): a row trigger
on the source table writes the *key* of every inserted, updated or deleted row to an outbox table
``gridnode_outbox_<slot>`` in the same transaction as the change, and signals the channel
``gridnode_<slot>`` (LISTEN/NOTIFY: a wake-up, not the delivery path). A TRUNCATE leaves a row
with a NULL key. The seeder reads a batch of outbox rows, then the *current* rows for their keys:
what it publishes is always the row as the table holds it, so applying a change twice, or late,
cannot change the result.

Only the configured columns are ever selected: excluded columns are not read by the seeder and
not written to the outbox (it holds keys only), so they never leave the server.

Everything here blocks: the node calls it in a worker thread (``trio.to_thread.run_sync``), one
call at a time per source. One autocommit connection per source.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from gridnode.errors import SeedConfigError, SourceUnavailable, UnsupportedColumn
from gridnode.seed.config import PostgresSource
from gridnode.seed.types import KEY_TYPES, install_loaders, supported, to_ipld

__all__ = ["SCHEMA_META_KEY", "SCHEMA_VERSION", "TRUNCATED", "Change", "Column", "PostgresSide"]

log = logging.getLogger(__name__)

#: The key of the change a TRUNCATE leaves: every row may be gone.
TRUNCATED: Final = object()

#: The meta key (the store-level meta op, docs/spec.md) under which the seeder keeps the table's
#: schema in the database it seeds.
SCHEMA_META_KEY: Final = "postgres.table"
#: The version of the schema record and of the value mapping it describes (gridnode.seed.types).
SCHEMA_VERSION: Final = 1


@dataclass(frozen=True)
class Column:
    name: str
    typname: str
    #: ``format_type``: the type as SQL spells it, e.g. ``character varying(20)``.
    sql_type: str
    #: Read as this type instead (enum types, which psycopg does not know, as text).
    cast: str | None = None
    nullable: bool = True


@dataclass(frozen=True)
class Change:
    """A row as the table holds it now: ``row`` is ``None`` if there is no row with that key."""

    key: Any
    row: dict[str, Any] | None


class PostgresSide:
    """One source table: its columns, its capture objects, its snapshot and changes."""

    def __init__(self, source: PostgresSource, *, connect_timeout: float = 10.0) -> None:
        self.source = source
        self.connect_timeout = connect_timeout
        self.conn: psycopg.Connection[Any] | None = None
        self.columns: list[Column] = []
        self.key: Column | None = None
        #: Every column of the table in column order, published or not (for the schema record).
        self.all_columns: list[Column] = []
        #: The table's columns not published (excluded, or not among those configured).
        self.excluded: list[str] = []
        #: The primary key's columns in key order (empty if the table has none).
        self.primary_key: list[str] = []
        self.schema_name = ""
        self.relname = ""
        self.channel = f"gridnode_{source.slot}"
        self.outbox_name = f"gridnode_outbox_{source.slot}"
        self.function_name = f"gridnode_capture_{source.slot}"

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect (autocommit) and LISTEN; raises :class:`SourceUnavailable`."""
        self.close()
        try:
            conn = psycopg.connect(
                self.source.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(f"cannot connect to PostgreSQL: {_one_line(exc)}") from None
        install_loaders(conn)
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def _conn(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.connect()
        assert self.conn is not None
        return self.conn

    # -- the table ----------------------------------------------------------------------------

    def describe(self) -> None:
        """Read the table's columns and check the configuration against them: the key is a
        unique column of a key type, every named column exists, every published column maps."""
        conn = self._conn()
        source = self.source
        row = conn.execute(
            "SELECT c.oid, n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')",
            (source.table,),
        ).fetchone()
        if row is None:
            raise SeedConfigError(f"no table {source.table!r} in the PostgreSQL database")
        oid, self.schema_name, self.relname = row
        rows = conn.execute(
            "SELECT a.attname, t.typname, t.typtype, e.typname, e.typtype, "
            "format_type(a.atttypid, a.atttypmod), a.attnum, a.attnotnull "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (oid,),
        ).fetchall()
        names = [r[0] for r in rows]
        for name in [*(source.columns or ()), *source.exclude, source.key]:
            if name not in names:
                raise SeedConfigError(f"{source.table} has no column {name!r}")
        wanted = set(source.columns) | {source.key} if source.columns is not None else set(names)
        wanted -= set(source.exclude)
        self.columns = []
        self.all_columns = []
        self.excluded = []
        key_attnum = None
        for name, typname, typtype, elem, elem_type, sql_type, attnum, not_null in rows:
            if name not in wanted:
                self.all_columns.append(Column(name, typname, sql_type, nullable=not not_null))
                self.excluded.append(name)
                continue
            if not supported(typname, typtype, elem, elem_type):
                raise UnsupportedColumn(source.table, name, sql_type)
            cast = "text" if typtype == "e" else "text[]" if elem_type == "e" else None
            column = Column(name, typname, sql_type, cast, nullable=not not_null)
            self.columns.append(column)
            self.all_columns.append(column)
            if name == source.key:
                self.key = column
                key_attnum = attnum
                if typname not in KEY_TYPES:
                    raise SeedConfigError(
                        f"{source.table}.{name}: a key column is an integer, text or uuid "
                        f"column, not {sql_type}"
                    )
        unique = conn.execute(
            "SELECT 1 FROM pg_index WHERE indrelid = %s AND indisunique AND indnatts = 1 "
            "AND indkey[0] = %s AND indpred IS NULL AND indexprs IS NULL",
            (oid, key_attnum),
        ).fetchone()
        if unique is None:
            raise SeedConfigError(
                f"{source.table}.{source.key}: the key column must be the primary key or have "
                "a unique index of its own"
            )
        # The primary key's columns in the index's order (indkey is 0-based, unnest 1-based).
        self.primary_key = [
            r[0]
            for r in conn.execute(
                "SELECT a.attname FROM pg_index i "
                "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n",
                (oid,),
            ).fetchall()
        ]

    def schema(self) -> dict[str, Any]:
        """The table's schema as the seeder records it in the database (after :meth:`describe`):
        ``{"version", "table", "key", "columns", "excluded", "primary_key"}``, DAG-JSON-safe.

        ``columns`` holds *every* column of the table in column order, excluded ones too (a
        recovered table has the same shape; their values never left the server), each
        ``{"name", "type", "typname", "nullable"}`` with ``type`` in ``format_type``'s spelling
        (what CREATE TABLE takes); ``excluded`` names those whose values are not published.
        """
        return {
            "version": SCHEMA_VERSION,
            "table": f"{self.schema_name}.{self.relname}",
            "key": self.source.key,
            "columns": [
                {"name": c.name, "type": c.sql_type, "typname": c.typname, "nullable": c.nullable}
                for c in self.all_columns
            ],
            "excluded": list(self.excluded),
            "primary_key": list(self.primary_key),
        }

    # -- change capture -----------------------------------------------------------------------

    def _ident(self, name: str) -> sql.Composable:
        return sql.Identifier(self.schema_name, name)

    def install(self) -> bool:
        """Create (or replace) the outbox, the trigger function and the triggers, in one
        transaction. Returns whether the outbox was new: then changes made before may have
        been missed, and the seeder takes a full snapshot again."""
        assert self.key is not None
        conn = self._conn()
        table = self._ident(self.relname)
        outbox = self._ident(self.outbox_name)
        function = self._ident(self.function_name)
        key = sql.Identifier(self.key.name)
        row_trigger = sql.Identifier(f"gridnode_capture_{self.source.slot}")
        truncate_trigger = sql.Identifier(f"gridnode_truncate_{self.source.slot}")
        body = sql.SQL(
            """
            BEGIN
              IF TG_OP = 'INSERT' THEN
                INSERT INTO {outbox} (key) VALUES (NEW.{key});
              ELSIF TG_OP = 'UPDATE' THEN
                INSERT INTO {outbox} (key) VALUES (OLD.{key});
                IF NEW.{key} IS DISTINCT FROM OLD.{key} THEN
                  INSERT INTO {outbox} (key) VALUES (NEW.{key});
                END IF;
              ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO {outbox} (key) VALUES (OLD.{key});
              ELSE
                INSERT INTO {outbox} (key) VALUES (NULL);
              END IF;
              PERFORM pg_notify({channel}, '');
              RETURN NULL;
            END
            """
        ).format(outbox=outbox, key=key, channel=sql.Literal(self.channel))
        with conn.transaction():
            existed = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL",
                (sql.Identifier(self.schema_name, self.outbox_name).as_string(conn),),
            ).fetchone()
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {outbox} (id bigserial PRIMARY KEY, key {type})"
                ).format(outbox=outbox, type=sql.SQL(self.key.sql_type))
            )
            conn.execute(
                sql.SQL(
                    "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger "
                    "LANGUAGE plpgsql AS {body}"
                ).format(function=function, body=sql.Literal(body.as_string(conn)))
            )
            conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {t} ON {table}").format(t=row_trigger, table=table)
            )
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {t} AFTER INSERT OR UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION {function}()"
                ).format(t=row_trigger, table=table, function=function)
            )
            conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {t} ON {table}").format(
                    t=truncate_trigger, table=table
                )
            )
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {t} AFTER TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
                ).format(t=truncate_trigger, table=table, function=function)
            )
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        created = not (existed and existed[0])
        if created:
            log.info(
                "installed change capture on %s (outbox %s)", self.source.table, self.outbox_name
            )
        return created

    def uninstall(self) -> None:
        """Drop this source's triggers, function and outbox (what ``--uninstall`` does)."""
        conn = self._conn()
        table = self._ident(self.relname)
        with conn.transaction():
            for name in (
                f"gridnode_capture_{self.source.slot}",
                f"gridnode_truncate_{self.source.slot}",
            ):
                conn.execute(
                    sql.SQL("DROP TRIGGER IF EXISTS {t} ON {table}").format(
                        t=sql.Identifier(name), table=table
                    )
                )
            conn.execute(
                sql.SQL("DROP FUNCTION IF EXISTS {f}()").format(f=self._ident(self.function_name))
            )
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {t}").format(t=self._ident(self.outbox_name))
            )

    # -- reads --------------------------------------------------------------------------------

    def _select(self) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.Identifier("t", c.name)
            if c.cast is None
            else sql.SQL("{}::{}").format(sql.Identifier("t", c.name), sql.SQL(c.cast))
            for c in self.columns
        )

    def _row(self, values: Sequence[Any]) -> dict[str, Any]:
        """A fetched row as IPLD values (raises UnmappableValue naming key and column)."""
        key = values[self._key_index]
        return {
            column.name: to_ipld(value, table=self.source.table, key=key, column=column.name)
            for column, value in zip(self.columns, values, strict=True)
        }

    @property
    def _key_index(self) -> int:
        assert self.key is not None
        return self.columns.index(self.key)

    def snapshot(self, after: Any, limit: int) -> list[Change]:
        """Up to ``limit`` rows with keys greater than ``after`` (``None``: from the first), in
        key order. Each call is its own short statement (keyset pagination): rows that change
        meanwhile are in the outbox too, and are read again when it is followed."""
        assert self.key is not None
        conn = self._conn()
        key = sql.Identifier("t", self.key.name)
        where: sql.Composable = sql.SQL("")
        params: list[Any] = []
        if after is not None:
            where = sql.SQL("WHERE {key} > %s::{type}").format(
                key=key, type=sql.SQL(self.key.sql_type)
            )
            params.append(after)
        query = sql.SQL(
            "SELECT {cols} FROM {table} AS t {where} ORDER BY {key} LIMIT {limit}"
        ).format(
            cols=self._select(),
            table=self._ident(self.relname),
            where=where,
            key=key,
            limit=sql.Literal(limit),
        )
        rows = conn.execute(query, params).fetchall()
        index = self._key_index
        return [Change(row[index], self._row(row)) for row in rows]

    def changes(self, limit: int) -> tuple[list[int], list[Change | Any]]:
        """The ids of the oldest ``limit`` outbox rows, and the current row of each key they
        name (once per key, in outbox order); a TRUNCATE gives :data:`TRUNCATED`."""
        assert self.key is not None
        conn = self._conn()
        pending = conn.execute(
            sql.SQL("SELECT id, key FROM {outbox} ORDER BY id LIMIT {limit}").format(
                outbox=self._ident(self.outbox_name), limit=sql.Literal(limit)
            )
        ).fetchall()
        if not pending:
            return [], []
        ids = [row[0] for row in pending]
        keys = list(dict.fromkeys(row[1] for row in pending if row[1] is not None))
        truncated = any(row[1] is None for row in pending)
        current: dict[Any, dict[str, Any]] = {}
        if keys:
            query = sql.SQL(
                "SELECT {cols} FROM {table} AS t WHERE {key} = ANY(%s::{type}[])"
            ).format(
                cols=self._select(),
                table=self._ident(self.relname),
                key=sql.Identifier("t", self.key.name),
                type=sql.SQL(self.key.sql_type),
            )
            index = self._key_index
            for row in conn.execute(query, (keys,)).fetchall():
                current[row[index]] = self._row(row)
        changes: list[Change | Any] = [Change(k, current.get(k)) for k in keys]
        if truncated:
            changes.insert(0, TRUNCATED)
        return ids, changes

    def present(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` (as text) that rows of the table have."""
        assert self.key is not None
        if not keys:
            return set()
        query = sql.SQL(
            "SELECT k FROM unnest(%s::text[]) AS k WHERE EXISTS "
            "(SELECT 1 FROM {table} AS t WHERE {key} = k::{type})"
        ).format(
            table=self._ident(self.relname),
            key=sql.Identifier("t", self.key.name),
            type=sql.SQL(self.key.sql_type),
        )
        return {row[0] for row in self._conn().execute(query, (list(keys),)).fetchall()}

    def ack(self, ids: Sequence[int]) -> None:
        """Delete outbox rows whose changes are applied (durably, in the node)."""
        if ids:
            self._conn().execute(
                sql.SQL("DELETE FROM {outbox} WHERE id = ANY(%s::bigint[])").format(
                    outbox=self._ident(self.outbox_name)
                ),
                (list(ids),),
            )

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change notification; whether one came."""
        conn = self._conn()
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            return True
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
