"""The ``gridnode`` command line.

Output is for people by default (plain values, ``rich`` tables for listings) and for programs with
``--json``, which every verb that prints takes: a verb with one result prints one JSON object, a
listing prints one JSON object per line (JSON Lines, streamed). Values given on the command line or
on stdin, and values printed, are JSON with the DAG-JSON forms for links and bytes (see
:mod:`gridnode.jsonvalue`). docs/cli.md describes every verb.

``gridnode start`` runs the node. Every other verb works on the data directory through an
*endpoint* (:func:`gridnode.api.open_endpoint`): the running node's local API when a node runs
there (its SQLite file is its own), else the directory itself. A verb asks its endpoint for plain
values and prints them, the same way whichever endpoint answered.

Exit status: 0 on success; 1 when the input is refused (unknown database, malformed JSON, an
operation the database's type does not have, a write this node may not make, an invalid CAR, a key
not found, ...), with one ``error: ...`` line on stderr; 2 for a usage error (unknown option,
missing argument), also one line.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from crdt.errors import GridnodeError
from crdt.stores import STORE_TYPES
from gridnode import jsonvalue
from gridnode.keystore import KEY_FILE

__all__ = ["CliError", "GridnodeGroup", "default_data_dir", "main"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def default_data_dir() -> Path:
    """``$GRIDNODE_DATA_DIR``, else ``$XDG_DATA_HOME/gridnode``, else ``~/.local/share/gridnode``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gridnode"


# -- errors: one line on stderr, never a traceback -------------------------------------------------


class CliError(click.ClickException):
    """A refused input: ``error: <message>`` on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _OneLineUsage(click.UsageError):
    """A usage error (exit status 2) shown on one line, with where to find help."""

    def __init__(self, original: click.UsageError) -> None:
        super().__init__(original.format_message(), original.ctx)

    def show(self, file: Any = None) -> None:
        message = " ".join(self.format_message().splitlines())
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"error: {message}{hint}", err=True)


_NO_ARGS_IS_HELP: tuple[type[BaseException], ...] = tuple(
    cls for cls in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if cls is not None
)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).splitlines()).strip()
    return text or type(exc).__name__


def _translate(exc: BaseException) -> click.ClickException | None:
    """The one-line error an exception becomes, or ``None`` to let it through."""
    if isinstance(exc, (CliError, _OneLineUsage, *_NO_ARGS_IS_HELP)):
        return None
    if isinstance(exc, click.UsageError):
        return _OneLineUsage(exc)
    if isinstance(exc, click.ClickException):
        return CliError(exc.format_message())
    if isinstance(exc, GridnodeError):
        return CliError(_describe(exc))
    if isinstance(exc, json.JSONDecodeError):
        return CliError(f"not valid JSON: {exc}")
    if isinstance(exc, BrokenPipeError):
        return None
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return CliError(f"{where}{exc.strerror or _describe(exc)}")
    if isinstance(exc, sqlite3.Error):
        return CliError(f"the node's SQLite file: {_describe(exc)}")
    return None


class GridnodeGroup(click.Group):
    """The root group: turns every refusal into one ``error:`` line and an exit status."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except Exception as exc:
            error = _translate(exc)
            if error is None:
                raise
            raise error from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = _translate(exc)
            if error is None:
                raise
            log.debug("%s", error.format_message(), exc_info=True)
            raise error from exc


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


# -- shared options and output ---------------------------------------------------------------------


def json_option(func: F) -> F:
    """``--json``: print JSON for programs instead of text for people."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON: one object, or one object per line for listings.",
    )(func)


def _emit(obj: Any) -> None:
    """One compact JSON line; values in it in DAG-JSON form."""
    click.echo(jsonvalue.dumps(obj))


#: The width tables are laid out for when stdout is not a terminal.
_PIPE_WIDTH = 1000


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table for people. Cells are text, never rich markup; a long cell folds, never is cut."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    # On a terminal rich fits the table to its width; into a pipe or file, rows stay unfolded.
    stdout = sys.stdout
    wide = None if stdout.isatty() or os.environ.get("COLUMNS") else _PIPE_WIDTH
    console = Console(file=stdout, width=wide, highlight=False, markup=False, emoji=False)
    console.print(table)


def _data_dir(ctx: click.Context) -> Path:
    data_dir: Path = ctx.find_root().obj["data_dir"]
    return data_dir


def _require_data_dir(data_dir: Path) -> None:
    if not (data_dir / KEY_FILE).is_file():
        raise CliError(f"{data_dir} is not a gridnode data directory (run 'gridnode init' first)")


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _endpoint(ctx: click.Context) -> Any:
    """Where this command works: the running node's API (:class:`~gridnode.api.ApiClient`) if a
    node runs on the data directory, else the directory itself (:class:`~gridnode.ops.RepoEndpoint`).
    Both answer the same calls with the same values, so every verb prints the same either way."""
    from gridnode import api
    from gridnode.repo import Repo

    root = ctx.find_root()
    endpoint = root.obj.get("endpoint")
    if endpoint is None:
        data_dir = _data_dir(ctx)
        _require_data_dir(data_dir)
        endpoint, done = api.open_endpoint(data_dir, lambda: Repo(data_dir), warn=_warn)
        root.call_on_close(done)
        root.obj["endpoint"] = endpoint
    return endpoint


def _database(
    ctx: click.Context, address: str, verb: str | None = None, types: Sequence[str] = ()
) -> dict[str, Any]:
    """The database named by ``address`` (``/gridnode/<cid>``, the bare CID, or a unique database
    name), checked to be one of ``types`` if given: its info (manifest, entries, heads,
    ``may_write``)."""
    from gridnode import ops

    info: dict[str, Any] = _endpoint(ctx).database(address)
    if verb is not None:
        ops.check_type(info, verb, types)
    return info


def _json_lines(what: str = "stdin") -> Iterator[tuple[str, Any]]:
    """``(label, value)`` of every non-blank line of stdin (UTF-8), parsed as JSON."""
    raw = getattr(sys.stdin, "buffer", None)
    lines: Iterable[bytes | str] = sys.stdin if raw is None else raw
    for number, line in enumerate(lines, start=1):
        label = f"{what} line {number}"
        if isinstance(line, bytes):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CliError(f"{label} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        else:
            text = line
        if text.strip():
            yield label, jsonvalue.parse(text, label)


def _write(
    ctx: click.Context, db: dict[str, Any], payloads: list[tuple[str, Any]]
) -> dict[str, Any]:
    """Write the ops in one transaction, after checking them all (the one at fault is named by
    its label); what the write did (see :func:`gridnode.ops.written`)."""
    labels = [label for label, _ in payloads]
    result: dict[str, Any] = _endpoint(ctx).write(
        db["address"], [payload for _, payload in payloads], labels
    )
    return result


def _report_write(result: dict[str, Any], batch: bool, as_json: bool) -> None:
    """Print what a write did: the entry CID (a batch: the count), or with --json an object."""
    if as_json:
        _emit({k: result[k] for k in ("address", "written", "entries", "heads")})
    elif batch:
        click.echo(f"wrote {result['written']} entries")
    else:
        click.echo(result["entries"][0])


def _batch_requested(args: Sequence[str]) -> bool:
    return len(args) == 1 and args[0] == "-"


# -- the root group --------------------------------------------------------------------------------


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


@main.command()
@json_option
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Create the data directory: node key, gridnode.toml and the SQLite file.

    Idempotent: an existing key, config and data are kept. Prints the node's identity (its
    did:key), which a database admin names with 'db create --writer'.
    """
    from gridnode.config import CONFIG_FILE
    from gridnode.repo import Repo
    from gridnode.storage import DB_FILE

    data_dir = _data_dir(ctx)
    key_existed = (data_dir / KEY_FILE).exists()
    if key_existed:
        # A running node's SQLite file is its own: ask the node, or open the directory under the
        # shared lock that keeps a node from starting meanwhile.
        endpoint = _endpoint(ctx)
        did = endpoint.peers()["identity"] if endpoint.running else endpoint.repo.did
    else:
        with Repo(data_dir) as repo:
            did = repo.did
    if as_json:
        _emit(
            {
                "data_dir": str(data_dir),
                "key": str(data_dir / KEY_FILE),
                "key_created": not key_existed,
                "config": str(data_dir / CONFIG_FILE),
                "database": str(data_dir / DB_FILE),
                "identity": did,
            }
        )
        return
    click.echo(f"data dir: {data_dir}")
    click.echo(f"node key: {data_dir / KEY_FILE} ({'existing' if key_existed else 'created'})")
    click.echo(f"config: {data_dir / CONFIG_FILE}")
    click.echo(f"database: {data_dir / DB_FILE}")
    click.echo(f"identity: {did}")


# -- the running node ------------------------------------------------------------------------------


@main.command()
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
@click.pass_context
def start(ctx: click.Context, listen: tuple[str, ...], bootstrap: tuple[str, ...]) -> None:
    """Run the node in the foreground until SIGINT (Ctrl-C) or SIGTERM.

    Creates the data directory if it is new, listens for peers, replicates every database and
    serves the local API on 127.0.0.1 (its URL in DATA_DIR/api, its token in DATA_DIR/api.token),
    through which other gridnode commands then work. Prints 'peer id: ...', 'identity: ...', one
    'listening: MULTIADDR' line per address (give one as another node's --bootstrap),
    'dashboard: URL#token=...' (the operator's page; docs/http.md) and 'api: URL'. A first signal stops it cleanly (exit status 0); a second one interrupts that
    (status 130).
    """
    import signal

    # Until the node's own signal receiver is open (the imports take a moment), a signal stops the
    # start-up: nothing has run yet but what unwinds.
    previous = {s: signal.signal(s, _stop_startup) for s in (signal.SIGINT, signal.SIGTERM)}
    stopping = {"signalled": False}
    try:
        import trio

        data_dir = _data_dir(ctx)
        # trio turns SIGINT into KeyboardInterrupt where that is safe, if SIGINT is Python's.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        trio.run(_run_node, data_dir, list(listen) or None, list(bootstrap) or None, stopping)
    except (_StartupStopped, KeyboardInterrupt):
        if stopping["signalled"]:
            click.echo("error: interrupted while stopping", err=True)
            ctx.exit(130)
        log.info("stopped before the node ran")
    except BaseExceptionGroup as group:
        raise _first_error(group) from group
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _StartupStopped(BaseException):
    """A signal came before the node's own handling of signals was in place.

    Not a KeyboardInterrupt: CPython 3.11 exits with status 130 after a KeyboardInterrupt that
    passed through an ``exec`` (as a dataclass definition during an import does), even if caught.
    """


def _stop_startup(signum: int, frame: Any) -> None:
    import signal

    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler not in (_stop_startup, signal.default_int_handler):
        # trio runs: its SIGINT handler raises KeyboardInterrupt only where that is safe.
        handler(signal.SIGINT, frame)
    else:
        raise _StartupStopped


async def _run_node(
    data_dir: Path, listen: list[str] | None, bootstrap: list[str] | None, stopping: dict[str, bool]
) -> None:
    import signal
    from contextlib import ExitStack

    import trio

    with ExitStack() as signal_scope:
        # Before anything else: a signal during start-up stops the node as soon as it runs.
        signals = signal_scope.enter_context(
            trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
        )
        from gridnode import api
        from gridnode.node import open_node

        async with (
            open_node(data_dir, listen=listen, bootstrap=bootstrap) as node,
            api.serve_api(node, data_dir) as url,
        ):
            databases = len(await node.worker.run(node.repo.databases))
            log.info("node %s (%s) started: %d databases", node.peer_id, node.repo.did, databases)
            click.echo(f"peer id: {node.peer_id}")
            click.echo(f"identity: {node.repo.did}")
            for addr in node.addrs:
                log.info("listening on %s", addr)
                click.echo(f"listening: {addr}")
            token = (data_dir / api.TOKEN_FILE).read_text().strip()
            click.echo(f"dashboard: {api.dashboard_url(url, token)}")
            click.echo(f"api: {url}")
            async for signum in signals:
                log.info("%s: stopping", signal.Signals(signum).name)
                break
            # From here a second signal is not ours: either interrupts the shutdown.
            stopping["signalled"] = True
            signal_scope.close()
    log.info("stopped")


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped the node: the first leaf of an exception group that is not a
    cancellation."""
    import trio

    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, trio.Cancelled):
            translated = _translate(exc) if isinstance(exc, Exception) else None
            return translated or exc
    return group


@main.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the node: running or not, identity, peer id, listen addresses, peers, and each
    database with its entries, heads and (running) the last sync with each peer."""
    report = _endpoint(ctx).status()
    if as_json:
        _emit(report)
        return
    running = report["running"]
    click.echo(f"node: running (api {report['api']})" if running else "node: not running")
    click.echo(f"data dir: {report['data_dir']}")
    click.echo(f"identity: {report['identity']}")
    click.echo(f"peer id: {report['peer_id']}")
    if running:
        for addr in report["addrs"]:
            click.echo(f"listening: {addr}")
        click.echo(f"peers: {len(report['peers'])}")
        bitswap = report.get("bitswap")
        if bitswap is None:
            click.echo("bitswap: off")
        else:
            click.echo(
                f"bitswap: {bitswap['blocks_sent']} blocks sent "
                f"({_size(bitswap['block_bytes_sent'])}), {bitswap['blocks_received']} received"
            )
    columns = ["address", "name", "type", "entries", "heads"]
    if running:
        columns.append("last sync")
    rows = []
    for db in report["databases"]:
        row = [db["address"], db["name"], db["type"], str(db["entries"]), str(db["head_count"])]
        if running:
            row.append(_last_sync(db["syncs"]))
        rows.append(row)
    if rows:
        _table(columns, rows)
    else:
        click.echo("databases: none")


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


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


@main.command()
@json_option
@click.pass_context
def peers(ctx: click.Context, as_json: bool) -> None:
    """List the peers the running node is connected to (with its protocol strikes against each)."""
    report = _endpoint(ctx).peers()
    if as_json:
        _emit(report)
        return
    if not report["running"]:
        click.echo("node: not running (no peers)")
        click.echo(f"identity: {report['identity']}")
        click.echo(f"peer id: {report['peer_id']}")
        return
    if not report["peers"]:
        click.echo("peers: none")
        return
    _table(("peer id", "strikes"), ((p["peer_id"], str(p["strikes"])) for p in report["peers"]))


# -- db --------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Databases in this data directory: create, write, read, inspect.

    ADDRESS is a database address (/gridnode/<cid>), its bare CID, or its name if no other
    database here has that name.
    """


@db.command("create")
@click.argument("name")
@click.option(
    "--type",
    "-t",
    "store_type",
    required=True,
    type=click.Choice(sorted(STORE_TYPES)),
    help="The store type.",
)
@click.option(
    "--writer",
    "writers",
    multiple=True,
    metavar="DID",
    help="Another did:key that may write (repeatable). This node is always admin and writer.",
)
@click.option("--public", is_flag=True, help="Anyone may write.")
@click.option(
    "--private",
    is_flag=True,
    help="Never serve its blocks to IPFS peers (bitswap, the gateway); gridnode peers still sync.",
)
@click.option(
    "--index",
    "indexes",
    multiple=True,
    metavar="FIELD",
    help="documents: keep a sorted index on FIELD (a dotted path reaches into maps; repeatable).",
)
@click.option(
    "--index-by",
    metavar="FIELD",
    help="documents: the field holding each document's id [default: _id].",
)
@json_option
@click.pass_context
def db_create(
    ctx: click.Context,
    name: str,
    store_type: str,
    writers: tuple[str, ...],
    public: bool,
    private: bool,
    indexes: tuple[str, ...],
    index_by: str | None,
    as_json: bool,
) -> None:
    """Create a database NAME and print its address (only the address, for scripts)."""
    from gridnode.ops import CreateRequest

    if (indexes or index_by is not None) and store_type != "documents":
        raise click.UsageError("--index and --index-by apply to documents databases", ctx=ctx)
    request = CreateRequest(
        name, store_type, list(writers), public, list(dict.fromkeys(indexes)), index_by, private
    )
    created = _endpoint(ctx).create(request)
    if as_json:
        _emit(created)
    else:
        click.echo(created["address"])


@db.command("follow")
@click.argument("address")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until a first sync with a peer is complete, showing the entries caught up.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="With --wait: exit 1 if not caught up after SECONDS.",
)
@json_option
@click.pass_context
def db_follow(ctx: click.Context, address: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Keep and replicate a database another node has (needs a running node).

    The running node fetches the database's manifest from a connected peer, checks it against
    ADDRESS and starts syncing; prints the address. Exits 1 if no connected peer has it.
    """
    endpoint = _endpoint(ctx)
    if not endpoint.running:
        raise CliError("'db follow' needs a running node: start it with 'gridnode start'")
    info = endpoint.follow(address)
    if wait:
        from gridnode.progress import wait_for_catch_up

        info = wait_for_catch_up(endpoint, info["address"], timeout)
    if as_json:
        _emit(info)
    else:
        click.echo(info["address"])


@db.command("restore")
@click.argument("manifest_cid", metavar="MANIFEST_CID")
@click.argument("heads", nargs=-1, metavar="[HEAD_CID ...]")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="MULTIADDR",
    help="Connect to this peer (.../p2p/<peer id>) and ask it (repeatable) [default: every "
    "connected peer].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    default=120.0,
    show_default=True,
    metavar="SECONDS",
    help="Fetch for at most SECONDS; entries not had by then stay missing.",
)
@json_option
@click.pass_context
def db_restore(
    ctx: click.Context,
    manifest_cid: str,
    heads: tuple[str, ...],
    peers: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Fetch a database from IPFS peers over bitswap (needs a running node).

    MANIFEST_CID and the HEAD_CIDs are the roots of the CAR 'gridnode export' writes and
    'gridnode pin' pins. The running node connects to each --peer, fetches the manifest and every
    entry from them (Kubo, Helia, gridnodes), checks each against its CID, verifies and joins
    them, then keeps and replicates the database; prints its address. Exits 1 if no peer sent
    the manifest.
    """
    endpoint = _endpoint(ctx)
    if not endpoint.running:
        raise CliError("'db restore' needs a running node: start it with 'gridnode start'")
    from gridnode.progress import Progress

    manifest = manifest_cid.removeprefix("/gridnode/")
    with Progress("restore: fetch, verify and join"):
        answer = endpoint.restore([manifest, *heads], list(peers), timeout)
    if as_json:
        _emit(answer)
        return
    click.echo(answer["address"])
    if answer["missing"]:
        _warn(
            f"{answer['missing']} entries were not had within {timeout:g} s: the database waits "
            "for them (a sync with a peer that has them fills them in)"
        )
    if answer["rejected"]:
        _warn(f"{len(answer['rejected'])} entries rejected ('--json' lists them, with the reason)")


@db.command("list")
@json_option
@click.pass_context
def db_list(ctx: click.Context, as_json: bool) -> None:
    """List the databases here: address, name, type and number of entries."""
    rows = []
    for item in _endpoint(ctx).databases():
        if as_json:
            _emit(item)
        else:
            rows.append((item["address"], item["name"], item["type"], str(item["entries"])))
    if not as_json:
        _table(("address", "name", "type", "entries"), rows)


@db.command("info")
@click.argument("address")
@json_option
@click.pass_context
def db_info(ctx: click.Context, address: str, as_json: bool) -> None:
    """Show a database's manifest (name, type, admins, writers, options), entries and heads."""
    out = _database(ctx, address)
    if as_json:
        _emit(out)
        return
    for key, value in out.items():
        if isinstance(value, list):
            click.echo(f"{key}:")
            for item in value:
                click.echo(f"  {item}")
        elif key == "options":
            click.echo(f"options: {jsonvalue.dumps(value)}")
        else:
            click.echo(f"{key}: {value}")


@db.command("digest")
@click.argument("address")
@json_option
@click.pass_context
def db_digest(ctx: click.Context, address: str, as_json: bool) -> None:
    """Print the state digest (hex): replicas holding the same entries print the same digest."""
    info = _endpoint(ctx).database(address, digest=True)
    if as_json:
        _emit({k: info[k] for k in ("address", "digest", "entries", "heads")})
    else:
        click.echo(info["digest"])


@db.command("log")
@click.argument("address")
@click.option(
    "--limit", type=click.IntRange(min=0), metavar="N", help="Show the first N entries only."
)
@json_option
@click.pass_context
def db_log(ctx: click.Context, address: str, limit: int | None, as_json: bool) -> None:
    """Show the entries in their total order (clock, then CID): clock, CID, author, payload."""
    entries = _endpoint(ctx).read("log", address, limit=limit)["entries"]
    if as_json:
        for entry in entries:
            _emit(entry)
        return
    _table(
        ("clock", "cid", "author", "payload"),
        ((str(e["clock"]), e["cid"], e["author"], jsonvalue.dumps(e["payload"])) for e in entries),
    )


# -- writes and reads by type ----------------------------------------------------------------------

_VALUE_ARGS = {"ignore_unknown_options": True}  # so that a JSON value like -5 is not an option


@db.command("put", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("args", nargs=-1, required=True, metavar="KEY VALUE_JSON | DOC_JSON | -")
@json_option
@click.pass_context
def db_put(ctx: click.Context, address: str, args: tuple[str, ...], as_json: bool) -> None:
    """Put a key's value (keyvalue) or a document (documents).

    \b
    keyvalue:  gridnode db put ADDRESS KEY VALUE_JSON   (KEY is a plain string)
    documents: gridnode db put ADDRESS DOC_JSON         (a JSON object holding its id)
    both:      gridnode db put ADDRESS -                (JSON lines on stdin, one batch)

    With '-', every line of stdin is one put, all written in one transaction (all or none):
    for keyvalue {"key": KEY, "value": VALUE}, for documents the document itself.
    """
    database = _database(ctx, address, "put", ("keyvalue", "documents"))
    keyvalue = database["type"] == "keyvalue"
    batch = _batch_requested(args)
    if batch:
        make = _kv_line if keyvalue else _doc_put
        payloads = [(label, make(label, value)) for label, value in _json_lines()]
    elif keyvalue:
        if len(args) != 2:
            raise click.UsageError(
                "a keyvalue put takes KEY VALUE_JSON (or '-' for JSON lines)", ctx=ctx
            )
        key, text = args
        value = jsonvalue.parse(text, "VALUE_JSON")
        payloads = [("VALUE_JSON", {"op": "put", "key": key, "value": value})]
    else:
        if len(args) != 1:
            raise click.UsageError(
                "a documents put takes DOC_JSON (or '-' for JSON lines)", ctx=ctx
            )
        payloads = [("DOC_JSON", _doc_put("DOC_JSON", jsonvalue.parse(args[0], "DOC_JSON")))]
    _report_write(_write(ctx, database, payloads), batch, as_json)


def _kv_line(label: str, value: Any) -> dict[str, Any]:
    if type(value) is not dict or set(value) != {"key", "value"} or type(value["key"]) is not str:
        raise CliError(f'{label}: a keyvalue line is {{"key": "<string>", "value": <JSON>}}')
    return {"op": "put", "key": value["key"], "value": value["value"]}


def _doc_put(label: str, value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise CliError(f"{label}: a document is a JSON object")
    return {"op": "put", "doc": value}


def _key_argument(ctx: click.Context, key: str, as_int: bool, documents: bool) -> str | int:
    if not as_int:
        return key
    if not documents:
        raise click.UsageError("--int applies to document ids; keyvalue keys are strings", ctx=ctx)
    try:
        return int(key)
    except ValueError:
        raise CliError(f"--int: {key!r} is not an integer") from None


_INT_OPTION = click.option(
    "--int", "as_int", is_flag=True, help="documents: KEY is an integer id (default: a string)."
)


@db.command("get", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("key")
@_INT_OPTION
@json_option
@click.pass_context
def db_get(ctx: click.Context, address: str, key: str, as_int: bool, as_json: bool) -> None:
    """Print the value of KEY (keyvalue) or the document with id KEY (documents).

    Exits 1 if there is none. With --json: {"key": KEY, "value": VALUE} for keyvalue (a line
    'db put ADDRESS -' takes back), the document itself for documents.
    """
    database = _database(ctx, address, "get", ("keyvalue", "documents"))
    documents = database["type"] == "documents"
    key_or_id = _key_argument(ctx, key, as_int, documents=documents)
    param = {"key": key_or_id} if type(key_or_id) is str else {"id": key_or_id}
    found = _endpoint(ctx).read("get", database["address"], **param)
    value = found["value"]
    result = value if documents else found
    if as_json:
        _emit(result)
    else:
        click.echo(jsonvalue.dumps(value, indent=2))


@db.command("delete", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("key")
@_INT_OPTION
@json_option
@click.pass_context
def db_delete(ctx: click.Context, address: str, key: str, as_int: bool, as_json: bool) -> None:
    """Delete KEY (keyvalue) or the document with id KEY (documents).

    Writes the delete even if this replica does not hold the key: it also wins over older puts
    of it that arrive later.
    """
    database = _database(ctx, address, "delete", ("keyvalue", "documents"))
    if database["type"] == "keyvalue":
        _key_argument(ctx, key, as_int, documents=False)
        payload: dict[str, Any] = {"op": "del", "key": key}
    else:
        payload = {"op": "del", "id": _key_argument(ctx, key, as_int, documents=True)}
    _report_write(_write(ctx, database, [("KEY", payload)]), False, as_json)


@db.command("add", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("value", metavar="VALUE_JSON | -")
@json_option
@click.pass_context
def db_add(ctx: click.Context, address: str, value: str, as_json: bool) -> None:
    """Add an event (events) or a member (set); print the entry's CID.

    With '-', every line of stdin is one JSON value, all added in one transaction.
    """
    database = _database(ctx, address, "add", ("events", "set"))
    batch = value == "-"
    if batch:
        payloads = [(label, {"op": "add", "value": v}) for label, v in _json_lines()]
    else:
        payloads = [("VALUE_JSON", {"op": "add", "value": jsonvalue.parse(value, "VALUE_JSON")})]
    _report_write(_write(ctx, database, payloads), batch, as_json)


@db.command("remove", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("value", metavar="VALUE_JSON")
@json_option
@click.pass_context
def db_remove(ctx: click.Context, address: str, value: str, as_json: bool) -> None:
    """Remove a member from a set: cancels every add of it this replica has seen.

    An add made elsewhere and not yet seen here survives (add wins). Exits 1 if VALUE_JSON is not
    a member.
    """
    database = _database(ctx, address, "remove", ("set",))
    member = jsonvalue.parse(value, "VALUE_JSON")
    # Without tags, the node names every add of the member it holds, in the same transaction.
    payload = {"op": "remove", "value": member}
    _report_write(_write(ctx, database, [("VALUE_JSON", payload)]), False, as_json)


@db.command("inc", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("n", type=int, required=False)
@click.option("--by", type=int, metavar="N", help="The step; may be negative (same as N).")
@json_option
@click.pass_context
def db_inc(ctx: click.Context, address: str, n: int | None, by: int | None, as_json: bool) -> None:
    """Add N (default 1; negative decrements) to a counter and print its new value."""
    if n is not None and by is not None:
        raise click.UsageError("give N or --by, not both", ctx=ctx)
    step = n if n is not None else by if by is not None else 1
    database = _database(ctx, address, "inc", ("counter",))
    result = _write(ctx, database, [("N", {"op": "inc", "by": step})])
    if as_json:
        _emit(result)
    else:
        click.echo(str(result["value"]))


@db.command("value")
@click.argument("address")
@json_option
@click.pass_context
def db_value(ctx: click.Context, address: str, as_json: bool) -> None:
    """Print a counter's value."""
    database = _database(ctx, address, "value", ("counter",))
    result = _endpoint(ctx).read("value", database["address"])
    if as_json:
        _emit(result)
    else:
        click.echo(str(result["value"]))


def _bound(name: str) -> Callable[[F], F]:
    return click.option(
        f"--{name}",
        metavar="JSON",
        help=f"Only documents whose FIELD is {_BOUND_WORDS[name]} this JSON value.",
    )


_BOUND_WORDS = {
    "eq": "equal to",
    "gt": "greater than",
    "gte": "greater than or equal to",
    "lt": "less than",
    "lte": "less than or equal to",
}


@db.command("query")
@click.argument("address")
@click.argument("field", required=False)
@_bound("eq")
@_bound("gt")
@_bound("gte")
@_bound("lt")
@_bound("lte")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N documents.")
@click.option("--reverse", is_flag=True, help="Descending order.")
@json_option
@click.pass_context
def db_query(
    ctx: click.Context,
    address: str,
    field: str | None,
    eq: str | None,
    gt: str | None,
    gte: str | None,
    lt: str | None,
    lte: str | None,
    limit: int | None,
    reverse: bool,
    as_json: bool,
) -> None:
    """Documents whose indexed FIELD equals --eq or lies within the bounds, ordered by FIELD.

    FIELD must be indexed (db create --index); it defaults to the id field. With no condition,
    every document that has FIELD. Values compare as IPLD values: numbers by value (1 == 1.0),
    then across kinds null < booleans < numbers < strings < bytes < lists < maps < links.
    """
    database = _database(ctx, address, "query", ("documents",))
    bounds: dict[str, Any] = {}
    for name, text in (("eq", eq), ("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)):
        if text is not None:
            bounds[name] = jsonvalue.parse(text, f"--{name}")
    found = _endpoint(ctx).read(
        "query", database["address"], field=field, limit=limit, reverse=reverse, **bounds
    )
    docs = found["documents"]
    if as_json:
        for doc in docs:
            _emit(doc)
        return
    index_by = found["index_by"]
    _table(
        (index_by, "document"),
        ((jsonvalue.dumps(doc.get(index_by)), jsonvalue.dumps(doc)) for doc in docs),
    )


@db.command("iter")
@click.argument("address")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N items.")
@click.option("--reverse", is_flag=True, help="Newest event (last member) first.")
@json_option
@click.pass_context
def db_iter(
    ctx: click.Context, address: str, limit: int | None, reverse: bool, as_json: bool
) -> None:
    """List events (in the log's total order, with their CIDs) or set members (in a fixed order:
    by their DAG-CBOR encoding)."""
    database = _database(ctx, address, "iter", ("events", "set"))
    found = _endpoint(ctx).read("iter", database["address"], limit=limit, reverse=reverse)["items"]
    if as_json:
        for item in found:
            _emit(item)
    elif database["type"] == "events":
        _table(("cid", "value"), ((i["cid"], jsonvalue.dumps(i["value"])) for i in found))
    else:
        _table(("value",), ((jsonvalue.dumps(i["value"]),) for i in found))


# -- CAR export and import -------------------------------------------------------------------------


@main.command("export")
@click.argument("address")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@json_option
@click.pass_context
def export(ctx: click.Context, address: str, file: Path, as_json: bool) -> None:
    """Write a database (manifest and every entry) to FILE as a CAR v1.

    The first root is the manifest, the others are the heads. An existing FILE is replaced
    (atomically).
    """
    from gridnode.progress import Progress, file_size

    endpoint = _endpoint(ctx)
    try:
        # Both endpoints write FILE.tmp, then rename it: its size is the progress.
        with Progress(f"export {file.name}", unit="B", poll=file_size(f"{file}.tmp")) as progress:
            result = endpoint.export(address, file)
            progress.finish(file.stat().st_size)
    except OSError as exc:
        raise CliError(f"cannot write {file}: {exc.strerror or _describe(exc)}") from None
    if as_json:
        _emit(result)
    else:
        click.echo(f"exported {result['address']}: {result['blocks']} blocks to {file}")


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Exit 1 if any entry was rejected.")
@json_option
@click.pass_context
def import_(ctx: click.Context, file: Path, strict: bool, as_json: bool) -> None:
    """Import a CAR written by 'gridnode export' (or a peer) and report what it did.

    The whole file is read and every block hash checked first: an invalid file changes nothing
    and exits 1. Otherwise the database is added if new and every entry verified (signature,
    access) and joined. Entries refused are listed with their reason; the valid ones are kept,
    and the exit status is 0 (1 with --strict).
    """
    from gridnode.errors import InvalidRequest
    from gridnode.progress import Progress, read_file

    endpoint = _endpoint(ctx)
    data = read_file(file, f"read {file.name}")
    try:
        with Progress(f"import {file.name}: verify and join"):
            report = endpoint.import_car(data)
    except InvalidRequest as exc:
        raise CliError(f"{file}: {_describe(exc)}") from None
    if as_json:
        _emit(report)
    else:
        click.echo(f"address: {report['address']}")
        click.echo(f"applied: {report['applied']}")
        click.echo(f"duplicates: {report['duplicates']}")
        click.echo(f"pending: {report['pending']}")
        click.echo(f"rejected: {len(report['rejected'])}")
        for rejected in report["rejected"]:
            click.echo(f"  {rejected['cid']}: {rejected['reason']}")
    if strict and report["rejected"]:
        raise CliError(f"{len(report['rejected'])} entries rejected")


# -- car -------------------------------------------------------------------------------------------


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
                raise CliError(f"{file}: invalid CAR: file is empty")
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
        raise CliError(f"{file}: invalid CAR: {_describe(exc)}") from None
    click.echo(f"version: {header.version}")
    click.echo(f"roots: {len(header.roots)}")
    for root in header.roots:
        click.echo(f"  {root}")
    click.echo(f"blocks: {count} ({total} bytes), all hashes verified")


# -- seed (gridnode.seed) --------------------------------------------------------------------------


def _register_seed() -> None:
    from gridnode.seed.cli import seed

    main.add_command(seed)


_register_seed()


# -- config, health (gridnode.config_cli) ----------------------------------------------------------


def _register_config() -> None:
    from gridnode.config_cli import config, health

    main.add_command(config)
    main.add_command(health)


_register_config()


# -- pin (gridnode.kubo_cli) -----------------------------------------------------------------------


def _register_pin() -> None:
    from gridnode.kubo_cli import pin

    main.add_command(pin)


_register_pin()


if __name__ == "__main__":  # pragma: no cover
    main()
