"""``gridnode seed postgres``: run the node, seeding databases from PostgreSQL tables.

The seeder runs inside a node (like ``gridnode start``: it holds the data directory, listens for
peers, serves the local API), so the rows it writes are replicated to every follower while it
runs. docs/seeding.md walks through it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

__all__ = ["seed"]

log = logging.getLogger(__name__)


def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeatable options that also take comma-separated lists."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


@click.group()
def seed() -> None:
    """Seed databases from another system (the primary server's tables)."""


@seed.command("postgres")
@click.option("--dsn", metavar="DSN", help="libpq connection string or URI (PG* variables apply).")
@click.option("--table", metavar="TABLE", help="The table to seed from (schema.table or table).")
@click.option("--key", metavar="COLUMN", help="Its key column: the primary key or a unique column.")
@click.option("--db", metavar="ADDRESS", help="The documents or keyvalue database to write.")
@click.option(
    "--columns",
    multiple=True,
    metavar="COLUMNS",
    help="Publish only these columns (comma-separated or repeated; the key is always published).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="COLUMNS",
    help="Never publish these columns (comma-separated or repeated). Use it for every column "
    "holding personal data.",
)
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Rows per transaction.")
@click.option("--listen", multiple=True, metavar="MULTIADDR", help="As for 'gridnode start'.")
@click.option("--bootstrap", multiple=True, metavar="MULTIADDR", help="As for 'gridnode start'.")
@click.option(
    "--uninstall",
    is_flag=True,
    help="Drop the source's trigger, trigger function and outbox in PostgreSQL, and stop.",
)
@click.pass_context
def postgres(
    ctx: click.Context,
    dsn: str | None,
    table: str | None,
    key: str | None,
    db: str | None,
    columns: tuple[str, ...],
    exclude: tuple[str, ...],
    batch: int | None,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    uninstall: bool,
) -> None:
    """Run the node and seed DB from a PostgreSQL TABLE: a snapshot, then every insert, update
    and delete as it commits, until SIGINT or SIGTERM.

    Without --table, seeds every [[seed.postgres]] source of gridnode.toml. A restart (after a
    crash, a SIGKILL or a PostgreSQL restart) resumes where it stopped: no change is lost, none
    is applied twice. Columns given to --exclude never leave the PostgreSQL server.

    Change capture installs a trigger and an outbox table (gridnode_outbox_<slot>) in the
    table's schema: the role in DSN must own the table.
    """
    from gridnode.cli import CliError, _data_dir
    from gridnode.errors import SeedConfigError
    from gridnode.seed.config import DEFAULT_BATCH, PostgresSource, load_sources

    data_dir = _data_dir(ctx)
    try:
        if table or key or db:
            if not (table and key and db):
                raise click.UsageError("--table, --key and --db go together", ctx=ctx)
            sources = [
                PostgresSource(
                    dsn=dsn or "",
                    table=table,
                    key=key,
                    db=db,
                    columns=_names(columns) or None,
                    exclude=_names(exclude),
                    batch=batch or DEFAULT_BATCH,
                )
            ]
        else:
            sources = load_sources(data_dir)
            if not sources:
                raise click.UsageError(
                    "give --table, --key and --db, or [[seed.postgres]] sources in gridnode.toml",
                    ctx=ctx,
                )
    except SeedConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        import psycopg  # noqa: F401  (an optional dependency: the postgres extra)
    except ImportError:
        raise CliError(
            "gridnode seed postgres needs psycopg 3: pip install 'gridnode[postgres]'"
        ) from None
    if uninstall:
        _uninstall(sources)
        return
    _run(ctx, data_dir, sources, list(listen) or None, list(bootstrap) or None)


def _uninstall(sources: list[Any]) -> None:
    from gridnode.seed.postgres import PostgresSide

    for source in sources:
        side = PostgresSide(source)
        try:
            side.describe()
            side.uninstall()
        finally:
            side.close()
        click.echo(f"uninstalled change capture of {source.table} (outbox {side.outbox_name})")


def _run(
    ctx: click.Context,
    data_dir: Path,
    sources: list[Any],
    listen: list[str] | None,
    bootstrap: list[str] | None,
) -> None:
    import signal

    import trio

    from gridnode.cli import _first_error

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        trio.run(_serve, data_dir, sources, listen, bootstrap)
    except KeyboardInterrupt:
        ctx.exit(130)
    except BaseExceptionGroup as group:
        raise _first_error(group) from group


async def _serve(
    data_dir: Path, sources: list[Any], listen: list[str] | None, bootstrap: list[str] | None
) -> None:
    import signal

    import trio

    from gridnode import api
    from gridnode.errors import SeedError
    from gridnode.node import open_node
    from gridnode.seed.seeder import Seeder

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_node(data_dir, listen=listen, bootstrap=bootstrap) as node,
            api.serve_api(node, data_dir) as url,
            trio.open_nursery() as nursery,
        ):
            click.echo(f"peer id: {node.peer_id}")
            click.echo(f"identity: {node.repo.did}")
            for addr in node.addrs:
                click.echo(f"listening: {addr}")
            click.echo(f"api: {url}")

            async def one(seeder: Seeder) -> None:
                try:
                    await seeder.run()
                except SeedError as exc:
                    log.error("seeding %s stopped: %s", seeder.source.table, exc)
                    raise

            for source in sources:
                seeder = await Seeder.for_node(node, source)
                nursery.start_soon(one, seeder)
                click.echo(f"seeding: {source.table} -> {seeder.database.address}")
            async for signum in signals:
                log.info("%s: stopping", signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
