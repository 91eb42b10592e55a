"""``gridnode replicas ADDRESS``: who holds a database, as far as the running node heard.

It asks the running node (``GET /db/{db}/replicas``) and prints how many replicas hold the
database (this node not counted), how many of them are in sync with the newest heads, and how far
behind the others are, in entries, with one row per holder. The figures come from the signed
statements the holders publish (docs/spec.md, "Replica statements"); a holder is counted until
its statement expires.

It refuses to run without a node (the statements live in the running node's memory) and prints
nothing it did not hear: a private database publishes no statements, and says so.
"""

from __future__ import annotations

from typing import Any

import click

from gridnode.cli.common import CliError, emit, endpoint_of, json_option, table

__all__ = ["replicas"]


@click.command("replicas")
@click.argument("address")
@click.option(
    "--min-in-sync",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Exit 1 (after printing) if fewer than N replicas are in sync: for monitoring.",
)
@json_option
@click.pass_context
def replicas(ctx: click.Context, address: str, min_in_sync: int, as_json: bool) -> None:
    """Print who holds a database: replicas, how many are in sync, how far behind the others are.

    ADDRESS is the database's address, CID or name. Needs a running node: it counts the signed
    replica statements its peers published on the database's replicas topic.
    """
    endpoint = endpoint_of(ctx)
    if not endpoint.running:
        raise CliError("'replicas' needs a running node: start it with 'gridnode start'")
    report: dict[str, Any] = endpoint.replicas(address)
    if as_json:
        emit(report)
    else:
        _print(report)
    if report["in_sync"] < min_in_sync:
        raise CliError(
            f"{report['in_sync']} replicas in sync with the newest heads, fewer than {min_in_sync}"
        )


def _print(report: dict[str, Any]) -> None:
    click.echo(f"database: {report['address']}")
    if report["private"]:
        click.echo("private: its replicas publish no statements (its name is never published)")
    behind = len(report["behind"])
    click.echo(
        f"replicas: {report['holders']} hold it, {report['in_sync']} in sync with the newest "
        f"heads ({report['newest_entries']} entries), {behind} behind"
    )
    click.echo(f"this node: {report['entries']} entries")
    if not report["peers"]:
        return
    rows = []
    for peer in report["peers"]:
        if peer["in_sync"]:
            state = "in sync"
        else:
            missing = report["behind"].get(peer["peer_id"], 0)
            state = f"behind by {missing} entries" if missing else "other heads"
        rows.append(
            [peer["peer_id"], str(peer["entries"]), state, f"{peer['seconds_ago']:.1f} s ago"]
        )
    table(["PEER", "ENTRIES", "STATE", "HEARD"], rows)
