"""``gridnode db access ...`` and ``gridnode db reader ...``: who may administer, write and read
a database. Every verb is one admin operation through the endpoint
(:func:`gridnode.cli.common.endpoint_of`), the node itself an admin of the database.
"""

from __future__ import annotations

import click

from gridnode.cli.common import (
    CliError,
    database_info,
    emit,
    endpoint_of,
    json_option,
    warn,
)

__all__ = ["DB_ACCESS_COMMANDS"]


@click.group("access")
def db_access() -> None:
    """Who may administer and write a database: grant or revoke a role (docs/spec.md §8).

    This node must be an admin. An admin grants any role; it revokes only a key that ranks below
    it (a manifest admin ranks highest) or its own role. A second admin key kept offline
    (db create --admin, docs/keys.md) uses these to name a new primary after a key is lost.
    """


def _change_access(
    ctx: click.Context, address: str, action: str, role: str, did: str, as_json: bool
) -> None:
    info = database_info(ctx, address)
    changed = endpoint_of(ctx).access(info["address"], action, role, did)
    if as_json:
        emit(changed)
        return
    click.echo(changed["entry"])
    if not changed["effective"]:
        warn(
            f"the {action} is in the log but has no effect: {did} ranks as high as this node "
            "(docs/spec.md §8)"
        )


_role_option = click.option(
    "--role",
    type=click.Choice(["admin", "writer"]),
    default="writer",
    show_default=True,
    help="The role granted or revoked.",
)


@db_access.command("grant")
@click.argument("address")
@click.argument("did")
@_role_option
@json_option
@click.pass_context
def db_access_grant(ctx: click.Context, address: str, did: str, role: str, as_json: bool) -> None:
    """Grant DID the role (writer, or admin) on the database; prints the entry's CID."""
    _change_access(ctx, address, "grant", role, did, as_json)


@db_access.command("revoke")
@click.argument("address")
@click.argument("did")
@_role_option
@json_option
@click.pass_context
def db_access_revoke(ctx: click.Context, address: str, did: str, role: str, as_json: bool) -> None:
    """Revoke DID's role (writer, or admin) on the database; prints the entry's CID. Entries
    it wrote before stay valid."""
    _change_access(ctx, address, "revoke", role, did, as_json)


@click.group("reader")
def db_reader() -> None:
    """Readers of an encrypted database (db create --encrypted): who holds its key.

    Adding a reader wraps the current key for it (it reads every entry under that key); removing
    one rotates the key (it cannot read entries written after). This node must be an admin that
    holds the key.
    """


def _change_reader(ctx: click.Context, address: str, action: str, did: str, as_json: bool) -> None:
    info = database_info(ctx, address)
    changed = endpoint_of(ctx).reader(info["address"], action, did)
    if as_json:
        emit(changed)
    else:
        click.echo(changed["entry"])


@db_reader.command("add")
@click.argument("address")
@click.argument("did")
@json_option
@click.pass_context
def db_reader_add(ctx: click.Context, address: str, did: str, as_json: bool) -> None:
    """Wrap the current key of the encrypted database for DID; prints the key entry's CID."""
    _change_reader(ctx, address, "add", did, as_json)


@db_reader.command("remove")
@click.argument("address")
@click.argument("did")
@json_option
@click.pass_context
def db_reader_remove(ctx: click.Context, address: str, did: str, as_json: bool) -> None:
    """Rotate the key of the encrypted database without DID: entries written from now on are
    sealed from it (what it read before, it keeps). Prints the key entry's CID."""
    _change_reader(ctx, address, "remove", did, as_json)


@db_reader.command("list")
@click.argument("address")
@json_option
@click.pass_context
def db_reader_list(ctx: click.Context, address: str, as_json: bool) -> None:
    """The did:keys the current key of the encrypted database is wrapped for, one a line."""
    info = database_info(ctx, address)
    if not info.get("encrypted"):
        raise CliError(f"{info['address']} is not encrypted")
    if as_json:
        emit({"address": info["address"], "key_readers": info["key_readers"]})
        return
    for did in info["key_readers"]:
        click.echo(did)


#: The groups ``gridnode db`` takes from this module.
DB_ACCESS_COMMANDS: tuple[click.Command, ...] = (db_access, db_reader)
