"""The ``gridnode`` command line."""

from __future__ import annotations

import logging
import mmap
import os
import sys
from pathlib import Path

import click

from crdt.errors import GridnodeError
from gridnode.keystore import KEY_FILE, load_or_create_key

__all__ = ["default_data_dir", "main"]


def default_data_dir() -> Path:
    """``$GRIDNODE_DATA_DIR``, else ``$XDG_DATA_HOME/gridnode``, else ``~/.local/share/gridnode``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gridnode"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GRIDNODE_DATA_DIR",
    default=None,
    help="Where the node keeps its key and data [env GRIDNODE_DATA_DIR; default ~/.local/share/gridnode].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    envvar="GRIDNODE_LOG_LEVEL",
)
@click.version_option(package_name="gridnode")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, log_level: str) -> None:
    """gridnode: a peer-to-peer replica node for signed Merkle-CRDT databases."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = {"data_dir": data_dir or default_data_dir()}


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data directory and the node key (idempotent: an existing key is kept)."""
    data_dir: Path = ctx.obj["data_dir"]
    data_dir.mkdir(parents=True, exist_ok=True)
    keypair, created = load_or_create_key(data_dir)
    click.echo(f"data dir: {data_dir}")
    click.echo(f"node key: {data_dir / KEY_FILE} ({'created' if created else 'existing'})")
    click.echo(f"identity: {keypair.did}")


@main.group()
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
                raise click.ClickException(f"{file}: invalid CAR: file is empty")
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
        click.echo(f"{file}: invalid CAR: {exc}", err=True)
        sys.exit(1)
    click.echo(f"version: {header.version}")
    click.echo(f"roots: {len(header.roots)}")
    for root in header.roots:
        click.echo(f"  {root}")
    click.echo(f"blocks: {count} ({total} bytes), all hashes verified")


if __name__ == "__main__":  # pragma: no cover
    main()
