"""``gridnode catalog ...``: write and read a catalog, the list of what community replicas hold.

A catalog is a keyvalue database with a documented schema (docs/catalogs.md,
:mod:`protocols.catalog`): ``create`` makes one, ``add`` lists a database (with a name and a
description), a file or directory (``/ipfs/<cid>``, or a CID with ``--file``: every follower
fetches and pins it) or a seed peer (a multiaddr), ``remove`` takes one off, ``show`` prints it. Every
verb works through the endpoint, running node or not, as the ``db`` verbs do; a node that follows
the catalog (``gridnode join``, the ``catalogs`` setting) acts on a change within one announce
interval of hearing it.

It refuses a target that is neither a database address (or CID) nor a multiaddr, a catalog that is
not one (a keyvalue database without the ``catalog`` key), and removing what is not listed.
"""

from __future__ import annotations

from typing import Any

import click

from crdt.errors import GridnodeError
from gridnode.cli.common import CliError, database_info, emit, endpoint_of, json_option, table
from protocols.catalog import (
    FILE_PREFIX,
    MARKER_KEY,
    ORBITDB_PREFIX,
    PEER_PREFIX,
    canonical_address,
    database_key,
    file_key,
    marker_value,
    orbitdb_key,
    peer_key,
)

__all__ = ["catalog"]


@click.group()
def catalog() -> None:
    """Catalogs: what the replicas that follow them hold (docs/catalogs.md).

    CATALOG is the catalog's address (/gridnode/<cid>), its bare CID or its name.
    """


def _catalog(ctx: click.Context, ref: str) -> dict[str, Any]:
    info = database_info(ctx, ref, "catalog", ("keyvalue",))
    listing: dict[str, Any] = endpoint_of(ctx).read("catalog", info["address"])
    if not listing["is_catalog"]:
        raise CliError(f"{info['address']} is not a catalog (no '{MARKER_KEY}' key)")
    return listing


def _key(target: str, is_file: bool = False) -> tuple[str, str]:
    """``(key, kind)`` of a catalog entry: a database address (or CID), a file (``/ipfs/<cid>``
    or, with ``is_file``, a CID) or a seed peer."""
    if is_file or target.startswith("/ipfs/"):
        try:
            return file_key(target), "file"
        except GridnodeError as exc:
            raise CliError(f"{target!r} is not a file or directory CID: {exc}") from None
    if target.startswith("/orbitdb/"):
        try:
            return orbitdb_key(target), "orbitdb"
        except GridnodeError as exc:
            raise CliError(f"{target!r} is not an OrbitDB address: {exc}") from None
    if target.startswith("/") and not target.startswith("/gridnode/"):
        try:
            return peer_key(target), "peer"
        except ValueError as exc:
            raise CliError(str(exc)) from None
    try:
        return database_key(target), "database"
    except GridnodeError as exc:
        raise CliError(f"{target!r} is neither a database address nor a multiaddr: {exc}") from None


def _put(ctx: click.Context, address: str, key: str, value: Any) -> None:
    endpoint_of(ctx).write(address, [{"op": "put", "key": key, "value": value}])


@catalog.command("create")
@click.argument("name")
@json_option
@click.pass_context
def catalog_create(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create a catalog NAME (a keyvalue database this node administers); print its address,
    the value replicas give 'gridnode join'."""
    from gridnode.ops import CreateRequest

    endpoint = endpoint_of(ctx)
    created = endpoint.create(CreateRequest(name, "keyvalue", [], False, [], None, False, []))
    _put(ctx, created["address"], MARKER_KEY, marker_value(name))
    if as_json:
        emit({"address": created["address"], "name": name})
    else:
        click.echo(created["address"])


_FILE_HELP = (
    "TARGET is a file or directory's CID (as /ipfs/<cid> is without this flag): every node "
    "following the catalog fetches it over bitswap and pins it."
)


@catalog.command("add")
@click.argument("catalog_ref", metavar="CATALOG")
@click.argument("target", metavar="ADDRESS|/ipfs/CID|/orbitdb/CID|MULTIADDR")
@click.option("--name", help="The database's name in the catalog [default: its own name, if kept].")
@click.option("--description", default="", help="What the database holds, for operators.")
@click.option("--file", "is_file", is_flag=True, help=_FILE_HELP)
@json_option
@click.pass_context
def catalog_add(
    ctx: click.Context,
    catalog_ref: str,
    target: str,
    name: str | None,
    description: str,
    is_file: bool,
    as_json: bool,
) -> None:
    """List a database (ADDRESS: /gridnode/<cid> or its CID), a file or directory (/ipfs/<cid>)
    or a seed peer (MULTIADDR: /ip4/.../tcp/N/p2p/<peer id>) in CATALOG; an OrbitDB database
    (/orbitdb/<cid>) is followed read-only by every follower. Adding again updates the name and
    description."""
    listing = _catalog(ctx, catalog_ref)
    key, kind = _key(target, is_file)
    if kind in ("file", "orbitdb"):
        value: dict[str, Any] = {"name": name or "", "description": description}
    elif kind == "peer":
        if name is not None or description:
            raise click.UsageError("--name and --description apply to databases", ctx=ctx)
        value = {}
    else:
        address = canonical_address(target)
        if name is None:
            try:
                name = str(endpoint_of(ctx).database(address)["name"])
            except GridnodeError:
                name = ""
        value = {"name": name, "description": description}
    _put(ctx, listing["address"], key, value)
    if as_json:
        emit({"catalog": listing["address"], "key": key, "value": value})
    else:
        click.echo(f"added {key} to {listing['address']}")


@catalog.command("remove")
@click.argument("catalog_ref", metavar="CATALOG")
@click.argument("target", metavar="ADDRESS|/ipfs/CID|MULTIADDR")
@click.option("--file", "is_file", is_flag=True, help=_FILE_HELP)
@json_option
@click.pass_context
def catalog_remove(
    ctx: click.Context, catalog_ref: str, target: str, is_file: bool, as_json: bool
) -> None:
    """Take a database, a file or a seed peer off CATALOG. Replicas following it stop following
    that database (keeping its data) unless they followed it by hand or another catalog lists
    it; they unpin that file (gc then frees it unless pinned otherwise)."""
    listing = _catalog(ctx, catalog_ref)
    key, kind = _key(target, is_file)
    if kind == "peer":
        listed = {PEER_PREFIX + p for p in listing["peers"]}
    elif kind == "file":
        listed = {FILE_PREFIX + f["cid"] for f in listing.get("files", [])}
    elif kind == "orbitdb":
        listed = {ORBITDB_PREFIX + d["address"] for d in listing.get("orbitdb", [])}
    else:
        listed = {"db:" + d["address"] for d in listing["databases"]}
    if key not in listed:
        raise CliError(f"{target} is not listed in {listing['address']}")
    endpoint_of(ctx).write(listing["address"], [{"op": "del", "key": key}])
    if as_json:
        emit({"catalog": listing["address"], "key": key, "removed": True})
    else:
        click.echo(f"removed {key} from {listing['address']}")


@catalog.command("show")
@click.argument("catalog_ref", metavar="CATALOG")
@json_option
@click.pass_context
def catalog_show(ctx: click.Context, catalog_ref: str, as_json: bool) -> None:
    """Print a catalog: its name, the databases and files it lists and its seed peers."""
    listing = _catalog(ctx, catalog_ref)
    if as_json:
        emit(listing)
        return
    click.echo(f"catalog: {listing['address']}")
    click.echo(f"name: {listing['name']}")
    if listing["databases"]:
        table(
            ("address", "name", "description"),
            ((d["address"], d["name"], d["description"]) for d in listing["databases"]),
        )
    else:
        click.echo("databases: none")
    for item in listing.get("files", []):
        click.echo(f"file: /ipfs/{item['cid']} {item['name']}".rstrip())
    for item in listing.get("orbitdb", []):
        click.echo(f"orbitdb: {item['address']} {item['name']}".rstrip())
    for peer in listing["peers"]:
        click.echo(f"peer: {peer}")
    for refused in listing["refused"]:
        click.echo(f"refused: {refused['key']}: {refused['reason']}")
