"""Seeding gridnode databases from the primary server's data (docs/seeding.md).

``gridnode.seed.postgres``: PostgreSQL tables, by a trigger-fed outbox; ``gridnode.seed.types``:
the PostgreSQL -> IPLD value mapping; ``gridnode.seed.seeder``: the snapshot-then-follow loop
and its durable position; ``gridnode.cli.seed``: ``gridnode seed postgres``. psycopg is imported
only by the modules that talk to PostgreSQL.
"""

from gridnode.errors import (
    SeedConfigError,
    SeedError,
    SourceUnavailable,
    UnmappableValue,
    UnsupportedColumn,
)

__all__ = [
    "SeedConfigError",
    "SeedError",
    "SourceUnavailable",
    "UnmappableValue",
    "UnsupportedColumn",
]
