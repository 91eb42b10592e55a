"""Seed sources: from the command line, or ``[[seed.postgres]]`` tables in ``gridnode.toml``.

[[seed.postgres]]
dsn = "postgresql://gridnode@db.example/app"   # libpq DSN; PG* variables apply as usual
table = "public.people"
key = "id"
db = "/gridnode/bafy..."
exclude = ["email", "phone"]                    # never leave the server
# columns = ["id", "name", "city"]              # or name the columns to publish
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gridnode.config import CONFIG_FILE
from gridnode.errors import SeedConfigError

__all__ = ["DEFAULT_BATCH", "PostgresSource", "load_sources"]

#: Rows per SQLite transaction (and per PostgreSQL fetch).
DEFAULT_BATCH: Final = 2000

_KEYS: Final = {"dsn", "table", "key", "db", "columns", "exclude", "batch"}


@dataclass(frozen=True)
class PostgresSource:
    """One PostgreSQL table seeding one gridnode database."""

    dsn: str
    table: str
    key: str
    #: The database to write (``db`` in gridnode.toml and ``--db`` on the command line).
    address: str
    #: The columns to publish (``None``: every column); the key column is always published.
    columns: tuple[str, ...] | None = None
    #: Columns that never leave the server (checked to exist: a typo is an error).
    exclude: tuple[str, ...] = field(default_factory=tuple)
    batch: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        for name, setting in (("table", "table"), ("key", "key"), ("address", "db")):
            if not getattr(self, name):
                raise SeedConfigError(f"a postgres seed source needs {setting!r}")
        if self.key in self.exclude:
            raise SeedConfigError(f"the key column {self.key!r} cannot be excluded")
        if self.batch < 1:
            raise SeedConfigError(f"batch must be at least 1, not {self.batch}")

    @property
    def slot(self) -> str:
        """The name of this source's capture objects in PostgreSQL (its outbox table, trigger
        function and notification channel) and of its position in the node: derived from the
        table and the gridnode database, so each (table, database) pair has its own."""
        digest = hashlib.sha256(f"{self.table}\0{self.address}".encode()).hexdigest()
        return digest[:16]


def _strings(where: str, name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SeedConfigError(f"{where}: {name} must be a list of column names")
    return tuple(value)


def load_sources(data_dir: Path) -> list[PostgresSource]:
    """The ``[[seed.postgres]]`` entries of ``DATA_DIR/gridnode.toml`` (none: an empty list)."""
    path = data_dir / CONFIG_FILE
    if not path.exists():
        return []
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SeedConfigError(f"{path}: {exc}") from None
    seed = values.get("seed", {})
    if not isinstance(seed, dict):
        raise SeedConfigError(f"{path}: seed must be a table ([[seed.postgres]] entries)")
    unknown = set(seed) - {"postgres"}
    if unknown:
        raise SeedConfigError(f"{path}: unknown seed source kind {sorted(unknown)[0]!r}")
    entries = seed.get("postgres", [])
    if not isinstance(entries, list):
        raise SeedConfigError(f"{path}: seed.postgres must be a list ([[seed.postgres]])")
    sources = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: seed.postgres #{number}"
        if not isinstance(entry, dict):
            raise SeedConfigError(f"{where} is not a table")
        for name in entry:
            if name not in _KEYS:
                raise SeedConfigError(f"{where}: unknown setting {name!r}")
        for name in ("dsn", "table", "key", "db"):
            if not isinstance(entry.get(name, ""), str):
                raise SeedConfigError(f"{where}: {name} must be a string")
        batch = entry.get("batch", DEFAULT_BATCH)
        if isinstance(batch, bool) or not isinstance(batch, int):
            raise SeedConfigError(f"{where}: batch must be an integer")
        columns = entry.get("columns")
        try:
            sources.append(
                PostgresSource(
                    dsn=entry.get("dsn", ""),
                    table=entry.get("table", ""),
                    key=entry.get("key", ""),
                    address=entry.get("db", ""),
                    columns=None if columns is None else _strings(where, "columns", columns),
                    exclude=_strings(where, "exclude", entry.get("exclude", [])),
                    batch=batch,
                )
            )
        except SeedConfigError as exc:
            raise SeedConfigError(f"{where}: {exc}") from None
    return sources
