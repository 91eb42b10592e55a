"""``gridnode config show`` and ``gridnode health``: what an operator checks first.

``config show`` prints the effective settings (docs/config.md) as TOML, each with where its value
comes from: the default, the data directory's ``gridnode.toml``, or a ``GRIDNODE_...``
environment variable. It reads only the config file, so it works whether or not a node runs, and
on a data directory that does not exist yet (then everything is a default or the environment).

``health`` asks the node running on the data directory whether it answers: exit status 0 if it
does, 1 (one ``error:`` line) if no node runs there or it does not answer. The Dockerfile's
HEALTHCHECK runs it.

Neither opens the SQLite file or takes the data directory's lock: a health check must not keep a
node from starting, nor wait for one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

import click

from gridnode.cli.common import data_dir_of
from gridnode.config import CONFIG_FILE, Config, config_sources, load_config

__all__ = ["config", "health", "toml_value"]


def toml_value(value: Any) -> str:
    """A setting's value as TOML (the types :class:`~gridnode.config.Config` holds)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string of printable text is a TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


@click.group()
def config() -> None:
    """The node's settings: DATA_DIR/gridnode.toml, overridden by GRIDNODE_... variables."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings and where each comes from (default, file or environment).

    The output is TOML: it can be pasted into gridnode.toml. An invalid setting exits 1 with one
    line naming it.
    """
    data_dir = data_dir_of(ctx)
    effective = load_config(data_dir)
    sources = config_sources(data_dir)
    path = data_dir / CONFIG_FILE
    values = asdict(effective)
    if as_json:
        settings = {name: {"value": values[name], "source": sources[name]} for name in values}
        click.echo(
            json.dumps({"file": str(path), "file_exists": path.exists(), "settings": settings})
        )
        return
    where = "" if path.exists() else " (not there: defaults and environment only)"
    click.echo(f"# {path}{where}")
    defaults = asdict(Config())
    width = max(len(f"{f.name} = {toml_value(values[f.name])}") for f in fields(Config))
    for item in fields(Config):
        line = f"{item.name} = {toml_value(values[item.name])}"
        source = sources[item.name]
        note = source
        if source != "default" and values[item.name] == defaults[item.name]:
            note += " (= default)"
        click.echo(f"{line.ljust(width)}  # {note}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> None:
    """Exit 0 if a node runs on the data directory and answers, else 1 (for health checks).

    Prints the node's peer id, its peer count and its API's URL.
    """
    from gridnode.api import ApiClient
    from gridnode.errors import NodeUnavailable

    data_dir = data_dir_of(ctx)
    client = ApiClient.from_data_dir(data_dir)
    if client is None:
        raise NodeUnavailable(f"no node runs on {data_dir} (no {data_dir}/api file)")
    if not client.answers():
        raise NodeUnavailable(f"the node on {data_dir} does not answer at {client.url}")
    peers = client.peers()
    report = {
        "ok": True,
        "peer_id": peers["peer_id"],
        "peers": len(peers["peers"]),
        "api": client.url,
    }
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"ok: node {report['peer_id']} answers at {client.url}, {report['peers']} peers")
