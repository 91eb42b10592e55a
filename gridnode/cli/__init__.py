"""The ``gridnode`` command line: the root group and the list of its verbs.

Output is for people by default (plain values, ``rich`` tables for listings) and for programs with
``--json``, which every verb that prints takes: a verb with one result prints one JSON object, a
listing prints one JSON object per line (JSON Lines, streamed). Values given on the command line or
on stdin, and values printed, are JSON with the DAG-JSON forms for links and bytes (see
:mod:`gridnode.jsonvalue`). docs/cli.md describes every verb.

``gridnode start`` runs the node. Every other verb works on the data directory through an
*endpoint* (:func:`gridnode.cli.common.endpoint_of`): the running node's local API when a node
runs there (its SQLite file is its own), else the directory itself. A verb asks its endpoint for
plain values and prints them, the same way whichever endpoint answered.

Exit status: 0 on success; 1 when the input is refused (unknown database, malformed JSON, an
operation the database's type does not have, a write this node may not make, an invalid CAR, a key
not found, ...), with one ``error: ...`` line on stderr; 2 for a usage error (unknown option,
missing argument), also one line.

The rooms: :mod:`~gridnode.cli.common` (what verbs share: errors, ``--json``, tables, the
endpoint, a node in the foreground), then one module per verb group: :mod:`~gridnode.cli.node`
(init, start, status, peers), :mod:`~gridnode.cli.db` (the ``db`` group),
:mod:`~gridnode.cli.car` (export, import, car verify), :mod:`~gridnode.cli.config` (config,
health), :mod:`~gridnode.cli.pin` (pin: local pins, and ``pin remote`` on Kubo),
:mod:`~gridnode.cli.files` (add, cat, get, ls, gc: files in the node's file store),
:mod:`~gridnode.cli.replicas` (replicas), :mod:`~gridnode.cli.seed` (seed postgres, recover
postgres), :mod:`~gridnode.cli.catalog` (the ``catalog`` group), :mod:`~gridnode.cli.key` (the
``key`` group), :mod:`~gridnode.cli.backup` (the ``backup`` group: encrypted
backups). This module
only defines the root group and registers each verb, below, by name: importing a verb module
registers nothing, and no verb module imports this one (no cycle). A new verb group is one module
and one ``main.add_command`` line here.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from gridnode.cli.backup import backup
from gridnode.cli.car import car, export, import_
from gridnode.cli.catalog import catalog
from gridnode.cli.common import CliError, GridnodeGroup
from gridnode.cli.config import config, health
from gridnode.cli.db import db
from gridnode.cli.db_access import DB_ACCESS_COMMANDS
from gridnode.cli.db_values import DB_VALUE_COMMANDS
from gridnode.cli.files import add, cat, gc, get, ls
from gridnode.cli.key import key
from gridnode.cli.node import dashboard, init, join, peers, start, status
from gridnode.cli.orbitdb import orbitdb
from gridnode.cli.pin import pin
from gridnode.cli.replicas import replicas
from gridnode.cli.seed import recover, seed
from gridnode.datadir import default_data_dir

__all__ = ["CliError", "GridnodeGroup", "main"]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


@click.group(cls=GridnodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    help="Log messages on stderr from this level up [env GRIDNODE_LOG_LEVEL].",
)
@click.version_option(package_name="gridnode")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, log_level: str) -> None:
    """gridnode: a peer-to-peer replica node for signed Merkle-CRDT databases.

    Values on the command line and on stdin are JSON; a link is {"/": "<cid>"} and bytes are
    {"/": {"bytes": "<base64>"}}. Every verb that prints takes --json. Exit status: 0 done,
    1 input refused (one 'error:' line on stderr), 2 usage error.
    """
    _setup_logging(log_level)
    ctx.obj = {"data_dir": data_dir or default_data_dir()}


# -- every verb, by name ---------------------------------------------------------------------------

main.add_command(init)
main.add_command(start)
main.add_command(join)
main.add_command(status)
main.add_command(peers)
main.add_command(dashboard)
main.add_command(db)
for _db_command in (*DB_ACCESS_COMMANDS, *DB_VALUE_COMMANDS):
    db.add_command(_db_command)  # the db verbs kept in modules of their own
main.add_command(export)
main.add_command(import_)
main.add_command(car)
main.add_command(config)
main.add_command(health)
main.add_command(pin)
main.add_command(replicas)
main.add_command(seed)
main.add_command(recover)
main.add_command(catalog)
main.add_command(orbitdb)
main.add_command(key)
main.add_command(add)
main.add_command(cat)
main.add_command(get)
main.add_command(ls)
main.add_command(gc)
main.add_command(backup)
