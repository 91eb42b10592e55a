"""``gridnode backup run|list|restore``: encrypted backups (:mod:`gridnode.backup`).

``run`` makes a backup now (or, with ``--every``, now and then on that schedule until stopped):
a command's stdout or a file, encrypted to age recipients, added and pinned, recorded in the
backups database (encrypted: its key wrapped for this node and each ``--reader``), its file
listed in ``--catalog`` for community nodes to keep blind. ``list`` shows the records held (this
node's, and those of backups databases it reads); ``restore`` fetches one from the file store,
decrypts it and checks it against its record. A node that holds the backups database only blind
says so instead of listing nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gridnode.cli.common import emit, endpoint_of, json_option, table, warn

__all__ = ["backup"]


def _size(n: int) -> str:
    from gridnode.progress import format_count

    return format_count(n, "B")


@click.group()
def backup() -> None:
    """Encrypted backups: run a command or take a file on a schedule, encrypt it to age
    recipients, add and pin it, record it in the backups database; list and restore them."""


def _report(made: Any, as_json: bool) -> None:
    record = made.record
    if as_json:
        emit(made.as_json())
        return
    click.echo(
        f"backup {record.name} {record.time} {record.cid} ({_size(record.size)}, "
        f"sha256 {record.sha256})"
    )
    for old in made.pruned:
        click.echo(f"unpinned {old.name} {old.time} {old.cid}")


@backup.command("run")
@click.argument("name")
@click.option(
    "--to",
    "recipients",
    multiple=True,
    required=True,
    metavar="RECIPIENT",
    help="An age recipient (age1...) the backup is encrypted to (repeatable; at least one).",
)
@click.option(
    "--command",
    default=None,
    metavar="COMMAND",
    help="A shell command whose stdout is the backup (e.g. 'pg_dump -Fc mydb'); a non-zero "
    "exit keeps nothing.",
)
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A file whose contents are the backup (read when each backup runs).",
)
@click.option(
    "--every",
    default=None,
    metavar="DURATION",
    help="Run now, then every DURATION (90s, 30m, 1h, 1d, 1h30m) until stopped.",
)
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=None,
    help="Keep the newest N backups of NAME: older records are deleted and their pins removed "
    "(and their files taken off --catalog).",
)
@click.option(
    "--reader",
    "readers",
    multiple=True,
    metavar="DID",
    help="A did:key that may read the (encrypted) backups database: its key is wrapped for it "
    "(repeatable; this node always reads). 'gridnode db reader remove' takes one off.",
)
@click.option(
    "--catalog",
    default=None,
    metavar="CATALOG",
    help="A catalog this node writes (address or name): it lists the backups database and each "
    "backup's ciphertext (file:<cid>, no name nor time), so the community nodes following it keep "
    "them blind; --keep takes the dropped ones off.",
)
@click.option(
    "--tmp-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Where the ciphertext waits before it is added (default: $TMPDIR).",
)
@json_option
@click.pass_context
def backup_run(
    ctx: click.Context,
    name: str,
    recipients: tuple[str, ...],
    command: str | None,
    file: Path | None,
    every: str | None,
    keep: int | None,
    readers: tuple[str, ...],
    catalog: str | None,
    tmp_dir: Path | None,
    as_json: bool,
) -> None:
    """Back up NAME now (or every --every): --command's stdout or --file, encrypted to --to."""
    import trio

    from gridnode.backup import check_name, check_readers, parse_duration, run_backup
    from gridnode.errors import InvalidRequest

    if (command is None) == (file is None):
        raise click.UsageError("give --command or --file (one of them)", ctx=ctx)
    try:
        check_name(name)
        check_readers(readers)
        period = None if every is None else parse_duration(every)
    except InvalidRequest as exc:
        raise click.UsageError(str(exc), ctx=ctx) from None
    endpoint = endpoint_of(ctx)

    def once() -> None:
        made = run_backup(
            endpoint,
            name,
            list(recipients),
            command=command,
            file=file,
            keep=keep,
            readers=list(readers),
            catalog=catalog,
            tmp_dir=tmp_dir,
        )
        _report(made, as_json)

    if period is None:
        once()
        return

    from gridnode.backup import schedule

    async def run_once() -> None:
        await trio.to_thread.run_sync(once)

    def failed(exc: BaseException) -> None:
        from gridnode.ops import describe_error

        warn(f"backup {name} failed: {describe_error(exc)}; next at its scheduled time")

    async def daemon() -> None:
        # SIGTERM (systemd, docker stop) stops the schedule once the backup in progress, if
        # any, is done: a worker thread is never abandoned half way through an add.
        import signal
        from functools import partial

        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(schedule, period, run_once, failed=failed))
                async for _ in signals:
                    click.echo(f"stopping: no more backups of {name}", err=True)
                    nursery.cancel_scope.cancel()
                    break

    trio.run(daemon)


@backup.command("list")
@click.argument("name", required=False)
@json_option
@click.pass_context
def backup_list(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """The backup records (of NAME, or all) in the backups databases held, oldest first. A node
    holding them only blind (no key) says so (exit 1)."""
    from gridnode.backup import records

    found = records(endpoint_of(ctx), name)
    if as_json:
        for record in found:
            emit(record.as_json())
    elif found:
        table(
            ["name", "time", "size", "cid", "sha256"],
            [[r.name, r.time, str(r.size), str(r.cid), r.sha256] for r in found],
        )


@backup.command("restore")
@click.argument("ref", metavar="NAME|CID")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The file to write (it appears only once decrypted and verified).",
)
@click.option(
    "--identity",
    "identity_files",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    multiple=True,
    required=True,
    help="An age identity file (age-keygen's AGE-SECRET-KEY-1... lines; repeatable).",
)
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option(
    "--tmp-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Where the ciphertext waits while it is decrypted (default: $TMPDIR).",
)
@json_option
@click.pass_context
def backup_restore(
    ctx: click.Context,
    ref: str,
    output: Path,
    identity_files: tuple[Path, ...],
    force: bool,
    tmp_dir: Path | None,
    as_json: bool,
) -> None:
    """Restore a backup (NAME: its newest; or a CID) into --output, decrypted with --identity
    and checked against its record's SHA-256."""
    from gridnode.age import read_identity_file
    from gridnode.backup import restore

    identities = [i for path in identity_files for i in read_identity_file(path)]
    restored = restore(endpoint_of(ctx), ref, output, identities, overwrite=force, tmp_dir=tmp_dir)
    if as_json:
        emit(restored.as_json())
        return
    what = "sha256 verified" if restored.record is not None else "no record: not verified"
    label = ref if restored.record is None else f"{restored.record.name} {restored.record.time}"
    click.echo(f"restored {label} to {output} ({_size(restored.plaintext.size)}, {what})")
