"""``gridnode key``: the node's keys, out to a cold copy and back (:mod:`gridnode.keybackup`).

``key export --to age1...`` writes the node key and the database keys it holds as one age file,
readable by the standard ``age`` tool with the recipient's identity; ``key import FILE
--identity FILE`` puts them back into a data directory. Both read the data directory's files
directly, never through a running node: the key is a file, and a node that lost it is not running.

It refuses to write a backup onto a terminal (binary) and to overwrite a file, and never prints a
secret: output is the DID, the path and counts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gridnode.age import read_identity_file, recipients_of
from gridnode.cli.common import CliError, data_dir_of, emit, json_option
from gridnode.keybackup import collect, read_backup, restore, write_backup

__all__ = ["key"]


@click.group("key")
def key() -> None:
    """The node key and database keys: export to an age recipient, import back."""


@key.command("export")
@click.option(
    "--to",
    "recipients",
    multiple=True,
    required=True,
    metavar="RECIPIENT",
    help="An age recipient (age1..., as age-keygen prints it) that can decrypt the export "
    "(repeatable: any one of them can).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the age file here (created with mode 0600; never overwritten) "
    "[default: standard output, unless it is a terminal].",
)
@json_option
@click.pass_context
def key_export(
    ctx: click.Context, recipients: tuple[str, ...], output: Path | None, as_json: bool
) -> None:
    """Write the node key and the database keys this node holds, encrypted to age RECIPIENTs.

    'age -d -i IDENTITY FILE' decrypts it (a JSON document); 'gridnode key import' restores it.
    """
    parsed = recipients_of(recipients)  # refuse a bad recipient before reading any key
    backup = collect(data_dir_of(ctx))
    if output is None:
        if sys.stdout.isatty():
            raise CliError("refusing to write an age file to a terminal: use -o FILE or redirect")
        write_backup(backup, parsed, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            write_backup(backup, parsed, sink)
            sink.flush()
            os.fsync(sink.fileno())
        try:
            os.link(tmp, output)  # fails if output exists: an earlier export is never replaced
        except FileExistsError:
            raise CliError(f"{output} already exists; refusing to overwrite it") from None
    finally:
        tmp.unlink(missing_ok=True)
    summary = {
        "did": backup.keypair.did,
        "file": str(output),
        "recipients": [str(r) for r in parsed],
        "database_keys": len(backup.database_keys),
    }
    if as_json:
        emit(summary)
    else:
        click.echo(
            f"exported {backup.keypair.did} and {len(backup.database_keys)} database keys "
            f"to {output}"
        )


@key.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-i",
    "--identity",
    "identity_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An age identity file (as age-keygen writes it) that decrypts FILE (repeatable).",
)
@json_option
@click.pass_context
def key_import(
    ctx: click.Context, file: Path, identity_files: tuple[Path, ...], as_json: bool
) -> None:
    """Restore the keys of an export (FILE, from 'gridnode key export') into the data directory.

    The node key becomes DATA_DIR/node.key; a data directory that already holds another key is
    refused (nothing is replaced). Then 'gridnode init' or 'gridnode start' uses it.
    """
    identities = [i for path in identity_files for i in read_identity_file(path)]
    with file.open("rb") as source:
        backup = read_backup(source, identities)
    data_dir = data_dir_of(ctx)
    restored = restore(backup, data_dir)
    summary = {
        "did": restored.did,
        "key": str(data_dir / "node.key"),
        "created": restored.created,
        "database_keys": len(restored.database_keys),
    }
    if as_json:
        emit(summary)
    else:
        state = "restored" if restored.created else "already present"
        click.echo(f"node key {restored.did}: {state} in {data_dir}")
