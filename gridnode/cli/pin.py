"""``gridnode pin``: the local pins of the file store, and pushing a database to Kubo.

Two meanings, kept apart by the verb:

- ``gridnode pin ls|add|rm``: the node's own pins (its file store, gridnode/files/store.py): a
  pin keeps a file's or directory's blocks through ``gridnode gc``; pins have names.
- ``gridnode pin remote ADDRESS --kubo URL``: push a database's blocks to a Kubo node and pin
  them *there*. The database is exported as ``gridnode export`` writes it (through the running
  node, or offline), to a temporary file; that CAR goes to Kubo's RPC API (``POST
  /api/v0/dag/import``) and its roots, the manifest and the heads, are pinned recursively
  (``POST /api/v0/pin/add``): Kubo then keeps and serves every block of the database as it was.
  Any failure is one ``error:`` line and exit 1. The older form ``gridnode pin ADDRESS --kubo
  URL`` still works (it is ``pin remote``, with a warning saying so).

It refuses to talk to Kubo itself (:mod:`gridnode.kubo` does) and to build the CAR any other way
than ``gridnode export`` does: what Kubo pins is exactly what an export holds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from crdt.errors import InvalidCID
from crdt.ipld.cid import CID
from gridnode.cli.common import CliError, describe, emit, endpoint_of, json_option, table, warn
from gridnode.kubo import DEFAULT_KUBO, KuboClient, KuboError, pin_car

__all__ = ["pin"]


class _PinGroup(click.Group):
    """``pin``'s subcommands; a first argument that is none of them is the older form of
    ``pin remote`` (``gridnode pin ADDRESS --kubo URL``), run as such with a warning."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            warn("'gridnode pin ADDRESS' is now 'gridnode pin remote ADDRESS' (pins on Kubo)")
            args = ["remote", *args]
        return super().parse_args(ctx, args)


@click.group("pin", cls=_PinGroup)
def pin() -> None:
    """Pins: the node's own (ls, add, rm), or a database pinned on a Kubo node (remote).

    A local pin keeps a file's or directory's blocks in this node through 'gridnode gc'.
    """


def _parse_cid(text: str) -> CID:
    try:
        return CID.parse(text)
    except InvalidCID as exc:
        raise CliError(f"not a CID: {text!r} ({exc})") from None


def _pin_rows(pins: list[dict[str, Any]]) -> list[list[str]]:
    return [[p["name"], str(p["cid"]), "recursive" if p["recursive"] else "direct"] for p in pins]


@pin.command("ls")
@json_option
@click.pass_context
def pin_ls(ctx: click.Context, as_json: bool) -> None:
    """List the local pins, by name."""
    pins = endpoint_of(ctx).files_pins()
    if as_json:
        for item in pins:
            emit(item)
    elif pins:
        table(["name", "cid", "kind"], _pin_rows(pins))


@pin.command("add")
@click.argument("cid")
@click.option(
    "--name", default=None, help="The pin's name (default: the CID); moves a pin of that name."
)
@click.option(
    "--direct",
    is_flag=True,
    help="Keep only this block, not the blocks it links to (default: the whole DAG).",
)
@json_option
@click.pass_context
def pin_add(ctx: click.Context, cid: str, name: str | None, direct: bool, as_json: bool) -> None:
    """Pin CID locally: its blocks (recursive: its whole DAG) stay through 'gridnode gc'.

    Every block must be in this node's file store already ('gridnode add' puts them there).
    """
    made = endpoint_of(ctx).files_pin(_parse_cid(cid), name, not direct)
    if as_json:
        emit(made)
    else:
        click.echo(f"pinned {made['cid']} as {made['name']}")


@pin.command("rm")
@click.argument("pin_name", metavar="NAME_OR_CID")
@json_option
@click.pass_context
def pin_rm(ctx: click.Context, pin_name: str, as_json: bool) -> None:
    """Remove the local pin NAME_OR_CID (by name; else every pin of that CID).

    Its blocks stay until 'gridnode gc' removes what no pin keeps.
    """
    done = endpoint_of(ctx).files_unpin(pin_name)
    if as_json:
        emit(done)
    else:
        click.echo(f"removed {done['removed']} pin{'s' if done['removed'] != 1 else ''}")


@pin.command("remote")
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
def pin_remote(ctx: click.Context, address: str, url: str, timeout: float, as_json: bool) -> None:
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
