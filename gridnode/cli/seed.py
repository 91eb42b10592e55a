"""``gridnode seed postgres``: run the node, seeding databases from PostgreSQL tables.

The seeder runs inside a node, run as ``gridnode start`` runs it (the one runner,
:func:`gridnode.cli.common.run_in_foreground`: it holds the data directory, listens for peers,
serves the local API, stops on SIGINT or SIGTERM), so the rows it writes are replicated to every
follower while it runs. Each source's :class:`~gridnode.seed.seeder.Seeder` is a task of the
runner's nursery: one that fails stops the node, and the command exits 1 naming why.
docs/seeding.md walks through it.

It refuses to seed anything itself: :mod:`gridnode.seed` does, writing through the node like
any other writer. The command gathers the sources (its options, or ``gridnode.toml``) and runs
the node with their seeders, or removes their change capture (``--uninstall``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import click

from gridnode.cli.common import CliError, data_dir_of, emit, json_option, run_in_foreground

if TYPE_CHECKING:
    import trio

    from gridnode.node import Node
    from gridnode.runner import Tasks

__all__ = ["recover", "seed"]

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
@click.option(
    "--db", "address", metavar="ADDRESS", help="The documents or keyvalue database to write."
)
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
    address: str | None,
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
    from gridnode.errors import SeedConfigError
    from gridnode.seed.config import DEFAULT_BATCH, PostgresSource, load_sources

    data_dir = data_dir_of(ctx)
    try:
        if table or key or address:
            if not (table and key and address):
                raise click.UsageError("--table, --key and --db go together", ctx=ctx)
            sources = [
                PostgresSource(
                    dsn=dsn or "",
                    table=table,
                    key=key,
                    address=address,
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
    run_in_foreground(ctx, data_dir, listen=listen, bootstrap=bootstrap, tasks=_seeders(sources))


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


def _seeders(sources: list[Any]) -> Tasks:
    """The runner's extra work: one seeder per source, each started once the node runs."""

    async def start_seeders(node: Node, nursery: trio.Nursery) -> None:
        from gridnode.errors import SeedError
        from gridnode.seed.seeder import Seeder

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

    return start_seeders


@click.group()
def recover() -> None:
    """Recover the primary server's data from a replica (docs/seeding.md)."""


@recover.command("postgres")
@click.option("--dsn", metavar="DSN", required=True, help="The PostgreSQL database to load into.")
@click.option(
    "--db", "address", metavar="ADDRESS", required=True, help="The seeded database to read."
)
@click.option(
    "--table",
    metavar="NAME",
    help="The table to create and load [default: the seeded table's name].",
)
@click.option(
    "--from",
    "peers",
    multiple=True,
    metavar="MULTIADDR",
    help="A peer holding DB (repeatable): replicate DB from it first if this node does not hold it.",
)
@click.option(
    "--catalog",
    metavar="CATALOG",
    help="Join this catalog (as 'gridnode join' does) to replicate DB first; peers from --from "
    "or the config's bootstrap.",
)
@click.option("--force", is_flag=True, help="Empty the table first if it holds rows.")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Rows per COPY batch (each recorded as the position to resume from).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up replicating DB after SECONDS.",
)
@json_option
@click.pass_context
def recover_postgres(
    ctx: click.Context,
    dsn: str,
    address: str,
    table: str | None,
    peers: tuple[str, ...],
    catalog: str | None,
    force: bool,
    batch: int,
    timeout: float,
    as_json: bool,
) -> None:
    """Load the table seeded into DB back into PostgreSQL: create it from the schema the seeder
    recorded, load every row with COPY, restore the primary key, compare every row.

    Refuses a table that holds rows (unless --force). Killed, it resumes where it stopped when
    run again with the same options. Excluded columns come back NULL. Needs no running node on
    the data directory (stop it first).
    """
    import time

    from gridnode.errors import GridnodeError, UnknownDatabase
    from gridnode.progress import Progress
    from gridnode.repo import Repo

    try:
        import psycopg  # noqa: F401  (an optional dependency: the postgres extra)
    except ImportError:
        raise CliError(
            "gridnode recover postgres needs psycopg 3: pip install 'gridnode[postgres]'"
        ) from None
    from gridnode.seed.recover import Recovery

    data_dir = data_dir_of(ctx)
    started = time.monotonic()
    cannot_replicate = CliError(
        f"this node does not hold {address}: give --from PEER or --catalog CATALOG "
        "to replicate it first"
    )
    if not data_dir.exists() and not peers and not catalog:
        raise cannot_replicate  # a refusal leaves no data directory behind
    try:
        with Repo(data_dir) as repo:
            try:
                held = repo.database(address).address
            except UnknownDatabase:
                held = None
        if held is None:
            if not peers and not catalog:
                raise cannot_replicate
            _replicate(data_dir, address, peers, catalog, timeout)
        replicated = time.monotonic() - started
        with Repo(data_dir) as repo:
            database = repo.database(address)
            bar: Progress | None = None

            def show(progress: Any) -> None:
                nonlocal bar
                if bar is None:
                    bar = Progress(f"recover {progress.phase}", progress.total, unit="rows")
                bar.update(progress.rows, progress.total)

            recovery = Recovery(database, dsn, table=table, force=force, batch=batch, progress=show)
            try:
                report = recovery.run()
            finally:
                if bar is not None:
                    bar.close()
    except GridnodeError as exc:
        raise CliError(str(exc)) from None
    out = {**report.as_dict(), "replicated_seconds": round(replicated, 3)}
    out["total_seconds"] = round(time.monotonic() - started, 3)
    if as_json:
        emit(out)
        return
    click.echo(
        f"recovered {report.rows} rows into {report.table} from {report.address} in "
        f"{out['total_seconds']:.1f} s ({report.rows_per_second:,.0f} rows/s loading"
        + (f", resumed at row {report.resumed_at}" if report.resumed_at else "")
        + f"); {report.verified} rows compared equal"
    )
    if report.nulled:
        click.echo(f"excluded columns, now NULL: {', '.join(report.nulled)}")


def _replicate(
    data_dir: Any, address: str, peers: tuple[str, ...], catalog: str | None, timeout: float
) -> None:
    """Run a node on ``data_dir`` until it holds ``address`` and a sync of it with a peer has
    completed (raises :class:`~gridnode.errors.NotCaughtUp` after ``timeout`` seconds)."""
    import trio

    from gridnode.errors import NotCaughtUp, UnknownDatabase
    from gridnode.runner import run

    if catalog:
        from gridnode.join import record_join

        record_join(data_dir, [catalog], list(peers))
    stop = trio.Event()
    failed: list[BaseException] = []

    async def follow(node: Node, nursery: trio.Nursery) -> None:
        async def go() -> None:
            try:
                with trio.fail_after(timeout):
                    for peer in peers:
                        await node.connect(peer)
                    while True:
                        try:
                            await node.follow(address)
                            break
                        except UnknownDatabase:
                            await trio.sleep(0.5)
                    while not any(
                        a == address and s.complete and not s.error and not s.running
                        for (_peer, a), s in node.stats.syncs.items()
                    ):
                        await trio.sleep(0.2)
            except trio.TooSlowError:
                failed.append(NotCaughtUp(f"{address}: not replicated in {timeout:g} s"))
            stop.set()

        nursery.start_soon(go)

    click.echo(f"replicating {address} ...", err=True)
    run(
        data_dir,
        listen=["/ip4/127.0.0.1/tcp/0"],
        bootstrap=list(peers) or None,
        api=False,
        stop=stop,
        tasks=follow,
    )
    if failed:
        raise failed[0]
