"""``gridnode pin ADDRESS --kubo URL``: push a database's blocks to a Kubo node and pin them.

The database is exported as ``gridnode export`` writes it (through the running node, or offline),
to a temporary file; that CAR goes to Kubo's RPC API (``POST /api/v0/dag/import``) and its roots,
the manifest and the heads, are pinned recursively (``POST /api/v0/pin/add``): Kubo then keeps and
serves every block of the database as it was. Any failure is one ``error:`` line and exit 1.

It refuses to talk to Kubo itself (:mod:`gridnode.kubo` does) and to build the CAR any other way
than ``gridnode export`` does: what Kubo pins is exactly what an export holds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from gridnode.cli.common import CliError, describe, emit, endpoint_of
from gridnode.kubo import DEFAULT_KUBO, KuboClient, KuboError, pin_car

__all__ = ["pin"]


@click.command("pin")
@click.argument("address")
@click.option(
    "--kubo",
    "url",
    default=DEFAULT_KUBO,
    show_default=True,
    metavar="URL",
    help="Kubo's RPC API (not its gateway).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=600.0,
    show_default=True,
    help="Seconds to wait for each Kubo call.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object.")
@click.pass_context
def pin(ctx: click.Context, address: str, url: str, timeout: float, as_json: bool) -> None:
    """Import a database's blocks into a Kubo node over its RPC API, and pin them there.

    The CAR is the one 'gridnode export' writes; Kubo pins its roots (the manifest and the
    heads) recursively, so it keeps every entry of the database as it is now.
    """
    endpoint = endpoint_of(ctx)
    with tempfile.TemporaryDirectory(prefix="gridnode-pin-") as tmp:
        car = Path(tmp) / "database.car"
        exported = endpoint.export(address, car)
        try:
            with KuboClient(url, timeout=timeout) as client:
                result = pin_car(client, car)
        except KuboError as exc:
            raise CliError(describe(exc)) from None
    if as_json:
        emit(
            {
                "address": exported["address"],
                "blocks": exported["blocks"],
                "kubo": url,
                "roots": result.roots,
                "pinned": result.pinned,
            }
        )
    else:
        click.echo(
            f"pinned {exported['address']} on {url}: {exported['blocks']} blocks, "
            f"{len(result.roots)} roots"
        )
