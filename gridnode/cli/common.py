"""What every verb of the command line shares: one-line errors, ``--json``, tables, the data
directory and the endpoint a verb works through.

Rules every verb keeps, and why they live here:

- **One line, never a traceback.** A refused input is one ``error: ...`` line on stderr and exit
  status 1; a usage error is one line and status 2. :class:`GridnodeGroup` (the root group's
  class) turns every :class:`~crdt.errors.GridnodeError`, malformed JSON and failed file
  operation into that line, whichever verb raised it, so a verb raises the node's own errors and
  never formats one. What it does not know (a bug) is let through, with its traceback.
- **Two audiences.** Text for people by default, ``--json`` (:func:`json_option`) for programs:
  one object per result (:func:`emit`), JSON Lines for listings; tables (:func:`table`) fold a
  long cell, never cut it, and stay unfolded in a pipe.
- **One endpoint.** A verb asks :func:`endpoint_of` for where it works: the running node's
  local API if a node runs on the data directory, else the directory itself
  (:class:`~gridnode.ops.RepoEndpoint`). Both answer the same calls with the same values, so a
  verb never asks which one it got (except to refuse what needs a running node).
- **A node in the foreground** (``start``, ``seed postgres``): :func:`run_in_foreground` over
  the one runner (:mod:`gridnode.runner`) and :func:`print_started`, the lines scripts parse.

It refuses verbs (they are in the modules beside it, which import from here and never from each
other or from the package), SQL and SQLite (only :mod:`gridnode.storage` sees them: a storage
failure arrives as a :class:`~gridnode.errors.StorageError`), and HTTP (the endpoint's).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from crdt.errors import GridnodeError
from gridnode import jsonvalue
from gridnode.keystore import KEY_FILE

if TYPE_CHECKING:
    from gridnode.node import Node
    from gridnode.runner import Tasks

__all__ = [
    "CliError",
    "GridnodeGroup",
    "data_dir_of",
    "database_info",
    "describe",
    "emit",
    "endpoint_of",
    "json_lines",
    "json_option",
    "print_started",
    "require_data_dir",
    "run_in_foreground",
    "table",
    "warn",
]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


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


def describe(exc: BaseException) -> str:
    """An exception's message on one line (its class name if it has none)."""
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
        return CliError(describe(exc))
    if isinstance(exc, json.JSONDecodeError):
        return CliError(f"not valid JSON: {exc}")
    if isinstance(exc, BrokenPipeError):
        return None
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return CliError(f"{where}{exc.strerror or describe(exc)}")
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


def warn(message: str) -> None:
    """``warning: <message>`` on stderr: the command goes on."""
    click.echo(f"warning: {message}", err=True)


# -- shared options and output ---------------------------------------------------------------------


def json_option(func: F) -> F:
    """``--json``: print JSON for programs instead of text for people."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON: one object, or one object per line for listings.",
    )(func)


def emit(obj: Any) -> None:
    """One compact JSON line; values in it in DAG-JSON form."""
    click.echo(jsonvalue.dumps(obj))


#: The width tables are laid out for when stdout is not a terminal.
_PIPE_WIDTH = 1000


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table for people. Cells are text, never rich markup; a long cell folds, never is cut."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    layout = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        layout.add_column(column, overflow="fold")
    for row in rows:
        layout.add_row(*(Text(cell) for cell in row))
    # On a terminal rich fits the table to its width; into a pipe or file, rows stay unfolded.
    stdout = sys.stdout
    wide = None if stdout.isatty() or os.environ.get("COLUMNS") else _PIPE_WIDTH
    console = Console(file=stdout, width=wide, highlight=False, markup=False, emoji=False)
    console.print(layout)


def json_lines(what: str = "stdin") -> Iterator[tuple[str, Any]]:
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


# -- the data directory and its endpoint -----------------------------------------------------------


def data_dir_of(ctx: click.Context) -> Path:
    """The data directory the root group was given (``--data-dir``, or its default)."""
    data_dir: Path = ctx.find_root().obj["data_dir"]
    return data_dir


def require_data_dir(data_dir: Path) -> None:
    """Refuse a directory ``gridnode init`` (or ``start``) did not make."""
    if not (data_dir / KEY_FILE).is_file():
        raise CliError(f"{data_dir} is not a gridnode data directory (run 'gridnode init' first)")


def endpoint_of(ctx: click.Context) -> Any:
    """Where this command works: the running node's API (:class:`~gridnode.api.ApiClient`) if a
    node runs on the data directory, else the directory itself (:class:`~gridnode.ops.RepoEndpoint`).
    Opened once per command, closed when the command ends."""
    from gridnode.api import open_endpoint
    from gridnode.repo import Repo

    root = ctx.find_root()
    endpoint = root.obj.get("endpoint")
    if endpoint is None:
        data_dir = data_dir_of(ctx)
        require_data_dir(data_dir)
        endpoint, done = open_endpoint(data_dir, lambda: Repo(data_dir), warn=warn)
        root.call_on_close(done)
        root.obj["endpoint"] = endpoint
    return endpoint


def database_info(
    ctx: click.Context, address: str, verb: str | None = None, types: Sequence[str] = ()
) -> dict[str, Any]:
    """The database named by ``address`` (``/gridnode/<cid>``, the bare CID, or a unique database
    name), checked to be one of ``types`` if given: its info (manifest, entries, heads,
    ``may_write``)."""
    from gridnode import ops

    info: dict[str, Any] = endpoint_of(ctx).database(address)
    if verb is not None:
        ops.check_type(info, verb, types)
    return info


# -- a node in the foreground ----------------------------------------------------------------------


def print_started(data_dir: Path) -> Callable[[Node, str | None], None]:
    """What a node run in the foreground prints once it runs (scripts parse it): ``peer id:``,
    ``identity:``, one ``listening:`` line per address, ``dashboard:`` and ``api:``.

    The dashboard's URL carries the API token only when stdout is a terminal: journald and
    ``docker logs`` keep what a service prints, and the token is the node's whole API.
    ``gridnode dashboard`` gives the full URL to whoever may read ``DATA_DIR/api.token``."""

    def started(node: Node, url: str | None) -> None:
        from gridnode.api import TOKEN_FILE, dashboard_url

        click.echo(f"peer id: {node.peer_id}")
        click.echo(f"identity: {node.repo.did}")
        for addr in node.addrs:
            click.echo(f"listening: {addr}")
        if node.announced_addrs != node.addrs:
            # A wildcard or 'announce': these, not the listen lines, are what peers should dial.
            for addr in node.announced_addrs:
                click.echo(f"announcing: {addr}")
        if url is not None:
            if sys.stdout.isatty():
                token = (data_dir / TOKEN_FILE).read_text().strip()
                click.echo(f"dashboard: {dashboard_url(url, token)}")
            else:
                click.echo(f"dashboard: {url}/dashboard")
            click.echo(f"api: {url}")

    return started


def run_in_foreground(
    ctx: click.Context,
    data_dir: Path,
    *,
    listen: Sequence[str],
    bootstrap: Sequence[str],
    tasks: Tasks | None = None,
) -> None:
    """Run a node on ``data_dir`` until SIGINT or SIGTERM (:func:`gridnode.runner.run`), printing
    :func:`print_started`'s lines: exit status 0 once it stopped (also when the signal came
    during start-up), 130 if a second signal interrupted the stopping. ``listen`` and
    ``bootstrap``, if not empty, replace the config's lists."""
    from gridnode.runner import run

    try:
        run(
            data_dir,
            listen=list(listen) or None,
            bootstrap=list(bootstrap) or None,
            signals=True,
            ready=print_started(data_dir),
            tasks=tasks,
        )
    except KeyboardInterrupt:
        click.echo("error: interrupted while stopping", err=True)
        ctx.exit(130)
