"""``gridnode export``, ``import`` and ``car verify``: a database as a CAR file, and back.

``export`` writes the CAR the endpoint makes (every block re-hashed on the way out: a damaged
block refuses the export, offline and through a running node alike, :mod:`gridnode.ops`);
``import`` hands a whole file to the endpoint, which checks every block before it changes
anything; ``car verify`` reads any CAR v1 or v2 and checks every block against its CID, without a
data directory.

It refuses to build or parse a CAR itself beyond verifying one (:mod:`crdt.ipld.car` does), and
to write a CAR in place: an export goes to ``FILE.tmp``, renamed when whole.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import click

from crdt.errors import GridnodeError
from gridnode.cli.common import CliError, describe, emit, endpoint_of, json_option

__all__ = ["car", "export", "import_"]


@click.command("export")
@click.argument("address")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@json_option
@click.pass_context
def export(ctx: click.Context, address: str, file: Path, as_json: bool) -> None:
    """Write a database (manifest and every entry) to FILE as a CAR v1.

    The first root is the manifest, the others are the heads. An existing FILE is replaced
    (atomically).
    """
    from gridnode.progress import Progress, file_size

    endpoint = endpoint_of(ctx)
    try:
        # Both endpoints write FILE.tmp, then rename it: its size is the progress.
        with Progress(f"export {file.name}", unit="B", poll=file_size(f"{file}.tmp")) as progress:
            result = endpoint.export(address, file)
            progress.finish(file.stat().st_size)
    except OSError as exc:
        raise CliError(f"cannot write {file}: {exc.strerror or describe(exc)}") from None
    if as_json:
        emit(result)
    else:
        click.echo(f"exported {result['address']}: {result['blocks']} blocks to {file}")


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Exit 1 if any entry was rejected.")
@json_option
@click.pass_context
def import_(ctx: click.Context, file: Path, strict: bool, as_json: bool) -> None:
    """Import a CAR written by 'gridnode export' (or a peer) and report what it did.

    The whole file is read and every block hash checked first: an invalid file changes nothing
    and exits 1. Otherwise the database is added if new and every entry verified (signature,
    access) and joined. Entries refused are listed with their reason; the valid ones are kept,
    and the exit status is 0 (1 with --strict).
    """
    from gridnode.errors import InvalidRequest
    from gridnode.progress import Progress, read_file

    endpoint = endpoint_of(ctx)
    data = read_file(file, f"read {file.name}")
    try:
        with Progress(f"import {file.name}: verify and join"):
            report = endpoint.import_car(data)
    except InvalidRequest as exc:
        raise CliError(f"{file}: {describe(exc)}") from None
    if as_json:
        emit(report)
    else:
        click.echo(f"address: {report['address']}")
        click.echo(f"applied: {report['applied']}")
        click.echo(f"duplicates: {report['duplicates']}")
        click.echo(f"pending: {report['pending']}")
        click.echo(f"rejected: {len(report['rejected'])}")
        for rejected in report["rejected"]:
            click.echo(f"  {rejected['cid']}: {rejected['reason']}")
    if strict and report["rejected"]:
        raise CliError(f"{len(report['rejected'])} entries rejected")


# -- car -------------------------------------------------------------------------------------------


@click.group()
def car() -> None:
    """Content-addressed archives (CAR v1 and v2)."""


@car.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def car_verify(file: Path) -> None:
    """Read FILE as a CAR, checking every block against its CID."""
    from crdt.ipld.car import iter_blocks, read_header

    try:
        with file.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise CliError(f"{file}: invalid CAR: file is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    header = read_header(view)
                    count = 0
                    total = 0
                    for _cid, block in iter_blocks(view):
                        count += 1
                        total += len(block)
                finally:
                    view.release()
    except GridnodeError as exc:
        raise CliError(f"{file}: invalid CAR: {describe(exc)}") from None
    click.echo(f"version: {header.version}")
    click.echo(f"roots: {len(header.roots)}")
    for root in header.roots:
        click.echo(f"  {root}")
    click.echo(f"blocks: {count} ({total} bytes), all hashes verified")
