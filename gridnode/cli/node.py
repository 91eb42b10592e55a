"""``gridnode init``, ``start``, ``join``, ``status``, ``peers`` and ``dashboard``: the node
itself.

``init`` makes a data directory (idempotent); ``start`` runs the node in the foreground through
the one runner (:func:`gridnode.cli.common.run_in_foreground`, :mod:`gridnode.runner`), which
owns the signals, the lock and the order of shutdown; ``join`` (and ``start --join``) first
records a catalog and its peers in gridnode.toml (:mod:`gridnode.join`); ``status`` and ``peers`` report what the
endpoint says, running or not; ``dashboard`` opens (or prints) the running node's dashboard
with its token, read from ``DATA_DIR/api`` and ``DATA_DIR/api.token``.

It refuses to run a node any other way than the runner's (``seed postgres`` and the embed
thread use the same), and to read the node's private state: a running node is asked through its
local API, like every other verb.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from crdt.errors import GridnodeError
from gridnode.cli.common import (
    CliError,
    data_dir_of,
    emit,
    endpoint_of,
    json_option,
    run_in_foreground,
    table,
)
from gridnode.config import PROFILES
from gridnode.datadir import make_private
from gridnode.keystore import KEY_FILE

__all__ = ["dashboard", "init", "join", "peers", "start", "status"]


@click.command()
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default=None,
    help="Name this profile in gridnode.toml: local (this machine only, the default), server "
    "(all interfaces, port 4001, announces public addresses) or home (all interfaces, behind "
    "NAT). Values set in the file are kept.",
)
@json_option
@click.pass_context
def init(ctx: click.Context, profile: str | None, as_json: bool) -> None:
    """Create the data directory: node key, gridnode.toml and the SQLite file.

    Idempotent: an existing key, config and data are kept. Prints the node's identity (its
    did:key), which a database admin names with 'db create --writer'. With --profile, sets the
    config's profile (docs/config.md, "Profiles"), also on an existing data directory: only the
    'profile' line changes, so a value the operator set in the file still wins; a running node
    takes it at its next start.
    """
    from gridnode.config import CONFIG_FILE, load_config, set_profile
    from gridnode.repo import Repo
    from gridnode.storage import DB_FILE

    data_dir = data_dir_of(ctx)
    key_existed = (data_dir / KEY_FILE).exists()
    running = False
    if key_existed:
        # A running node's SQLite file is its own: ask the node, or open the directory under the
        # shared lock that keeps a node from starting meanwhile.
        endpoint = endpoint_of(ctx)
        running = endpoint.running
        did = endpoint.peers()["identity"] if running else endpoint.repo.did
    else:
        if profile is not None:
            # The file names the profile before anything reads it.
            make_private(data_dir)
            set_profile(data_dir, profile)
        with Repo(data_dir) as repo:
            did = repo.did
    profile_changed = profile is not None and set_profile(data_dir, profile)
    effective = load_config(data_dir).profile
    if as_json:
        emit(
            {
                "data_dir": str(data_dir),
                "key": str(data_dir / KEY_FILE),
                "key_created": not key_existed,
                "config": str(data_dir / CONFIG_FILE),
                "profile": effective,
                "database": str(data_dir / DB_FILE),
                "identity": did,
            }
        )
        return
    click.echo(f"data dir: {data_dir}")
    click.echo(f"node key: {data_dir / KEY_FILE} ({'existing' if key_existed else 'created'})")
    click.echo(f"config: {data_dir / CONFIG_FILE}")
    note = ""
    if profile_changed and running:
        note = " (the running node takes it at its next start)"
    click.echo(f"profile: {effective}{note}")
    click.echo(f"database: {data_dir / DB_FILE}")
    click.echo(f"identity: {did}")


_JOIN_HELP = (
    "Follow the catalog at CATALOG_ADDRESS: recorded in gridnode.toml's 'catalogs' (repeatable)."
)
_PEER_HELP = (
    "Reach the network through MULTIADDR (the catalog's primary, say): recorded in "
    "gridnode.toml's 'bootstrap' (repeatable)."
)


@click.command()
@click.option(
    "--listen",
    multiple=True,
    metavar="MULTIADDR",
    help="Listen on MULTIADDR instead of the config's 'listen' (repeatable).",
)
@click.option(
    "--bootstrap",
    multiple=True,
    metavar="MULTIADDR",
    help="Connect to MULTIADDR at start instead of the config's 'bootstrap' (repeatable).",
)
@click.option("--join", "catalogs", multiple=True, metavar="CATALOG_ADDRESS", help=_JOIN_HELP)
@click.option("--peer", "peers", multiple=True, metavar="MULTIADDR", help=_PEER_HELP)
@click.pass_context
def start(
    ctx: click.Context,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    catalogs: tuple[str, ...],
    peers: tuple[str, ...],
) -> None:
    """Run the node in the foreground until SIGINT (Ctrl-C) or SIGTERM.

    Creates the data directory if it is new, listens for peers, replicates every database and
    serves the local API on 127.0.0.1 (its URL in DATA_DIR/api, its token in DATA_DIR/api.token),
    through which other gridnode commands then work. Prints 'peer id: ...', 'identity: ...', one
    'listening: MULTIADDR' line per address (give one as another node's --bootstrap), then, if
    what it tells peers to dial differs (a wildcard, or config 'announce'), one 'announcing:
    MULTIADDR' line per such address (give one of those instead),
    'dashboard: URL' (the operator's page, docs/http.md; with '#token=...' only when stdout is a
    terminal, 'gridnode dashboard' gives it otherwise) and 'api: URL'. A first
    signal stops it cleanly (exit status 0); a second one interrupts that (status 130);
    still stopping 30 s after the signal, it exits at once (status 1). With --join (and --peer), records them first, as 'gridnode join' does.
    """
    if peers and not catalogs:
        raise click.UsageError("--peer goes with --join (or use --bootstrap)", ctx=ctx)
    data_dir = data_dir_of(ctx)
    if catalogs:
        _record_join(data_dir, catalogs, peers)
    run_in_foreground(ctx, data_dir, listen=listen, bootstrap=bootstrap)


def _record_join(data_dir: Path, catalogs: Sequence[str], peers: Sequence[str]) -> None:
    from gridnode.join import record_join
    from protocols.catalog import canonical_address, peer_key

    try:
        addresses = [canonical_address(c) for c in catalogs]
    except GridnodeError as exc:
        raise CliError(f"not a catalog address: {exc}") from None
    for peer in peers:
        try:
            peer_key(peer)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if record_join(data_dir, addresses, list(peers)):
        click.echo(f"recorded in {data_dir / 'gridnode.toml'}: catalogs {', '.join(addresses)}")


@click.command()
@click.argument("catalogs", nargs=-1, required=True, metavar="CATALOG_ADDRESS...")
@click.option("--peer", "peers", multiple=True, metavar="MULTIADDR", help=_PEER_HELP)
@click.option(
    "--listen",
    multiple=True,
    metavar="MULTIADDR",
    help="Listen on MULTIADDR instead of the config's 'listen' (repeatable).",
)
@click.pass_context
def join(
    ctx: click.Context, catalogs: tuple[str, ...], peers: tuple[str, ...], listen: tuple[str, ...]
) -> None:
    """Join a replica network in one command: follow CATALOG_ADDRESS and run the node.

    Initialises the data directory if needed, records the catalog in gridnode.toml's 'catalogs'
    and each --peer in its 'bootstrap' (so a later plain 'gridnode start' does the same), then
    runs the node in the foreground as 'gridnode start' does. The node follows every database
    the catalog lists, and keeps following what it adds and unfollowing what it removes.
    """
    data_dir = data_dir_of(ctx)
    _record_join(data_dir, catalogs, peers)
    run_in_foreground(ctx, data_dir, listen=listen, bootstrap=())


@click.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the node: running or not, identity, peer id, listen addresses, the addresses it tells
    peers to dial (config 'announce'), peers, and each
    database with its entries, heads and (running) the last sync with each peer."""
    report = endpoint_of(ctx).status()
    if as_json:
        emit(report)
        return
    running = report["running"]
    click.echo(f"node: running (api {report['api']})" if running else "node: not running")
    click.echo(f"data dir: {report['data_dir']}")
    click.echo(f"identity: {report['identity']}")
    click.echo(f"peer id: {report['peer_id']}")
    storage = report.get("storage")
    if storage is not None:
        click.echo(f"storage: {_storage_line(storage)}")
    if running:
        for addr in report["addrs"]:
            click.echo(f"listening: {addr}")
        for addr in report.get("announced", []):
            click.echo(f"announcing: {addr}")
        click.echo(f"peers: {len(report['peers'])}")
        bitswap = report.get("bitswap")
        if bitswap is None:
            click.echo("bitswap: off")
        else:
            click.echo(
                f"bitswap: {bitswap['blocks_sent']} blocks sent "
                f"({_size(bitswap['block_bytes_sent'])}), {bitswap['blocks_received']} received"
            )
        dht = report.get("dht")
        if dht is not None:
            click.echo(
                f"dht: {dht['mode']}, {dht['table_size']} peers in its table, "
                f"{dht['providing']} CIDs provided, {dht['records']} records held for others"
            )
        for line in nat_lines(report.get("nat")):
            click.echo(line)
        orbit = report.get("orbitdb")
        if orbit and orbit["databases"]:
            entries = sum(d["entries"] for d in orbit["databases"])
            click.echo(
                f"orbitdb: {len(orbit['databases'])} databases followed, {entries} entries, "
                f"{orbit['stats']['refused_total']} refused ('gridnode orbitdb list')"
            )
    for followed in report.get("catalogs", []):
        name = f" ({followed['name']})" if followed["name"] else ""
        click.echo(f"catalog: {followed['address']}{name}, {len(followed['databases'])} databases")
    columns = ["address", "name", "type", "entries", "heads"]
    if running:
        columns += ["replicas", "last sync"]
    rows = []
    for info in report["databases"]:
        row = [
            info["address"],
            info["name"],
            info["type"],
            str(info["entries"]),
            str(info["head_count"]),
        ]
        if running:
            row += [_replicas(info.get("replicas")), _last_sync(info["syncs"])]
        rows.append(row)
    if rows:
        table(columns, rows)
    else:
        click.echo("databases: none")
    for info in report["databases"]:
        if info.get("snapshot"):
            click.echo(f"{info['name']}: {info['snapshot']['status']}")


def nat_lines(nat: dict[str, Any] | None) -> list[str]:
    """Relays, hole punching and reachability in a few lines (``"nat"`` of the status)."""
    if not nat:
        return []
    lines = []
    reach = nat.get("reachability")
    if reach is not None:
        reached = f", reached at {', '.join(reach['confirmed'])}" if reach["confirmed"] else ""
        lines.append(f"reachability: {reach['status']}{reached}")
    service = nat.get("relay_service")
    if service is not None:
        lines.append(
            f"relay service: {service['reservations']} reservations, {service['circuits']} "
            f"circuits open, {_size(service['bytes_relayed'])} relayed"
        )
    client = nat.get("relay_client")
    if client is not None:
        relays = ", ".join(client["relays"]) or "none yet"
        lines.append(f"relays: {relays}")
    punch = nat.get("hole_punching")
    if punch is not None:
        by = ", ".join(f"{k} {v}" for k, v in sorted(punch["transports"].items()))
        lines.append(
            f"hole punching: {punch['successes']} direct of {punch['attempts']} attempts"
            + (f" ({by})" if by else "")
            + f", {punch['failures']} left relayed"
        )
    return lines


def _replicas(counts: dict[str, Any] | None) -> str:
    """Other holders and how many are in sync (``gridnode replicas`` tells more)."""
    if counts is None:
        return "-"
    return f"{counts['holders']} ({counts['in_sync']} in sync)"


def _last_sync(syncs: list[dict[str, Any]]) -> str:
    if not syncs:
        return "-"
    last = min(syncs, key=lambda s: s["seconds_ago"])
    if last["error"]:
        state = f"error: {last['error']}"
    else:
        traffic = last.get("bytes_sent", 0) + last["bytes_received"]
        state = f"+{last['applied']}, {last['round_trips']} round trips, {_size(traffic)}"
    return f"{last['seconds_ago']:.0f} s ago from {last['peer']} ({state})"


def _storage_line(storage: dict[str, Any]) -> str:
    used, bound = _size(storage["used"]), storage["max"]
    if not bound:
        return f"{used} used (no max_storage)"
    if storage["full"]:
        return (
            f"{used} used of max_storage {_size(bound)}: FULL, following and pulling stopped "
            "(raise max_storage in gridnode.toml)"
        )
    return f"{used} used of max_storage {_size(bound)} ({100 * storage['used'] / bound:.0f}%)"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


@click.command()
@json_option
@click.pass_context
def peers(ctx: click.Context, as_json: bool) -> None:
    """List the peers the running node is connected to (with its protocol strikes against each)."""
    report = endpoint_of(ctx).peers()
    if as_json:
        emit(report)
        return
    if not report["running"]:
        click.echo("node: not running (no peers)")
        click.echo(f"identity: {report['identity']}")
        click.echo(f"peer id: {report['peer_id']}")
        return
    if not report["peers"]:
        click.echo("peers: none")
        return
    table(("peer id", "strikes"), ((p["peer_id"], str(p["strikes"])) for p in report["peers"]))


@click.command()
@click.option("--print", "print_only", is_flag=True, help="Print the URL instead of opening it.")
@click.pass_context
def dashboard(ctx: click.Context, print_only: bool) -> None:
    """Open the running node's dashboard in a browser, signed in (the URL carries the API token
    in its fragment, which a browser never sends).

    With --print, print that URL instead: it grants the whole local API, so keep it out of logs.
    Fails (status 1) if no node runs on the data directory.
    """
    import webbrowser

    from gridnode.api import dashboard_url
    from gridnode.datadir import api_files
    from gridnode.errors import NodeUnavailable

    data_dir = data_dir_of(ctx)
    found = api_files(data_dir)
    if found is None:
        raise NodeUnavailable(f"no node is running on {data_dir}")
    url = dashboard_url(*found)
    if print_only:
        click.echo(url)
        return
    if not webbrowser.open(url):
        raise NodeUnavailable("no browser to open; use 'gridnode dashboard --print'")
