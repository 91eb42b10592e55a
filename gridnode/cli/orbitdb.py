"""``gridnode orbitdb ...``: follow OrbitDB 4 databases read-only, through a running node.

``follow /orbitdb/<cid> --peer MULTIADDR`` makes the running node join the database's gossip topic
and heads protocol, fetch its log over bitswap, verify every entry (more strictly than OrbitDB
does: docs/interop.md) and serve it back to OrbitDB peers; ``list`` prints what it follows,
``unfollow`` stops and drops the blocks, ``all`` prints what OrbitDB's ``all()`` answers. The
``db get|query|iter`` verbs read a followed OrbitDB database too (its address as ADDRESS).
A catalog item ``orbitdb:/orbitdb/<cid>`` (``catalog add CATALOG /orbitdb/<cid>``) makes every
follower follow it.
"""

from __future__ import annotations

from typing import Any

import click

from gridnode import jsonvalue
from gridnode.cli.common import CliError, emit, endpoint_of, json_option, table, warn

__all__ = ["orbitdb"]


def _running(ctx: click.Context, verb: str) -> Any:
    endpoint = endpoint_of(ctx)
    if not getattr(endpoint, "running", False):
        raise CliError(f"'orbitdb {verb}' needs a running node: start it with 'gridnode start'")
    return endpoint


@click.group()
def orbitdb() -> None:
    """OrbitDB 4 databases this node follows read-only, verifies and serves (docs/interop.md).

    ADDRESS is the database's address, /orbitdb/<cid>. Every verb needs a running node.
    """


@orbitdb.command("follow")
@click.argument("address")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="MULTIADDR",
    help="A peer that has the database (/ip4/.../tcp/N/p2p/<id>), dialled now and on every "
    "anti-entropy round while not connected. Repeatable.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, max=600),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for the first entries (the follow goes on after it either way).",
)
@json_option
@click.pass_context
def orbitdb_follow(
    ctx: click.Context, address: str, peers: tuple[str, ...], timeout: float, as_json: bool
) -> None:
    """Follow the OrbitDB database ADDRESS: fetch, verify, keep and serve it; print its state."""
    summary = _running(ctx, "follow").orbitdb_follow(address, list(peers), timeout=timeout)
    if as_json:
        emit(summary)
    else:
        _print(summary)


@orbitdb.command("unfollow")
@click.argument("address")
@json_option
@click.pass_context
def orbitdb_unfollow(ctx: click.Context, address: str, as_json: bool) -> None:
    """Stop following ADDRESS and drop the blocks kept for it."""
    summary = _running(ctx, "unfollow").orbitdb_unfollow(address)
    if as_json:
        emit(summary)
    else:
        click.echo(f"unfollowed {summary['address']}")


@orbitdb.command("list")
@json_option
@click.pass_context
def orbitdb_list(ctx: click.Context, as_json: bool) -> None:
    """List the OrbitDB databases followed: type, entries, heads, refusals."""
    answer = _running(ctx, "list").orbitdb_list()
    if as_json:
        emit(answer)
        return
    rows = [
        [d["address"], d["type"] or "-", str(d["entries"]), str(len(d["heads"])), str(d["refused"])]
        for d in answer["databases"]
    ]
    table(["ADDRESS", "TYPE", "ENTRIES", "HEADS", "REFUSED"], rows)
    refused = answer["stats"]["refused"]
    if refused:
        click.echo("refused: " + ", ".join(f"{k} {v}" for k, v in sorted(refused.items())))


@orbitdb.command("all")
@click.argument("address")
@click.pass_context
def orbitdb_all(ctx: click.Context, address: str) -> None:
    """Print what OrbitDB's all() answers for ADDRESS, one JSON value a line, in its order."""
    for item in _running(ctx, "all").orbitdb_all(address)["all"]:
        click.echo(jsonvalue.dumps(item))


def _print(summary: dict[str, Any]) -> None:
    click.echo(f"address: {summary['address']}")
    if summary["type"] is None:
        click.echo("name, type: not known yet (no peer has sent the manifest)")
    else:
        click.echo(f"name: {summary['name']}  type: {summary['type']}")
    click.echo(f"entries: {summary['entries']}  heads: {len(summary['heads'])}")
    click.echo(f"refused: {summary['refused']}")
    if summary.get("error"):
        click.echo(f"error: {summary['error']}")
    if not summary["entries"]:
        warn(
            "no entries yet: the node goes on following it and fetches them when a peer that "
            "has them connects ('gridnode orbitdb list' shows how far it got)"
        )
