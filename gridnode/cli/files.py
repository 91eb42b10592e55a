"""``gridnode add|cat|get|ls|gc``: files and directories as UnixFS, in the node's file store.

``add`` builds the DAG in this process (constant memory, :mod:`gridnode.files.add`) and sends
its blocks to the endpoint in batches: the data directory when no node runs, else the running
node's API (``/files/...``, which verifies every block). ``cat``, ``get`` and ``ls`` read blocks
from the same endpoint, a block at a time, and verify each (:mod:`gridnode.files.export`).
``gc`` removes the blocks no pin keeps. Pins themselves: ``gridnode pin ls|add|rm``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import trio

from gridnode.cli.common import emit, endpoint_of, json_option, table, warn
from gridnode.progress import Progress

__all__ = ["add", "cat", "gc", "get", "ls"]

PROFILES = ["unixfs-v1-2025", "unixfs-v0-2015"]


def _size(n: int) -> str:
    from gridnode.progress import format_count

    return format_count(n, "B")


@click.command("add")
@click.argument("source", metavar="PATH")
@click.option("-r", "--recursive", is_flag=True, help="Add a directory and everything in it.")
@click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default="unixfs-v1-2025",
    show_default=True,
    help="IPIP-499's import profile: unixfs-v1-2025 (CIDv1, raw leaves, 1 MiB chunks), "
    "unixfs-v0-2015 (Kubo's historical defaults: CIDv0, 256 KiB chunks).",
)
@click.option("--hidden", is_flag=True, help="Include names starting with a dot (with -r).")
@click.option("--name", default=None, help="The pin's name (default: the CID).")
@click.option("--no-pin", is_flag=True, help="Do not pin: the blocks go at the next 'gridnode gc'.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the CID; no progress.")
@click.option(
    "--encrypt-to",
    "recipients",
    multiple=True,
    metavar="RECIPIENT",
    help="Encrypt the file to this age recipient (age1..., repeatable) and add the ciphertext: "
    "the CID is the ciphertext's; 'gridnode cat CID | age -d -i KEYFILE' decrypts it.",
)
@json_option
@click.pass_context
def add(
    ctx: click.Context,
    source: str,
    recursive: bool,
    profile: str,
    hidden: bool,
    name: str | None,
    no_pin: bool,
    quiet: bool,
    recipients: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add a file (PATH), a directory (-r PATH) or stdin (-) and print its CID.

    The CID is the one Kubo computes for the same bytes and profile. The root is pinned locally.
    """
    from gridnode.files.add import add as add_files

    if recipients and recursive:
        raise click.UsageError("--encrypt-to adds one file or stdin, not a directory", ctx=ctx)
    endpoint = endpoint_of(ctx)
    total = None
    if source != "-" and Path(source).is_file() and not recipients:
        total = Path(source).stat().st_size
    label = "add stdin" if source == "-" else f"add {source}"
    progress = None if quiet else Progress(label, total, unit="B")
    try:
        if recipients:
            from gridnode.files.encrypted import add_encrypted

            added = add_encrypted(
                endpoint,
                source,
                recipients,
                profile=profile,
                pin=not no_pin,
                name=name,
                read=None if progress is None else progress.advance,
            ).added
        else:
            added = add_files(
                endpoint,
                source,
                profile=profile,
                recursive=recursive,
                hidden=hidden,
                pin=not no_pin,
                name=name,
                read=None if progress is None else progress.advance,
                skip=warn,
            )
    finally:
        if progress is not None:
            progress.close()
    if as_json:
        emit(added.as_json())
    elif quiet:
        click.echo(str(added.cid))
    else:
        what = f"{added.files} files, {added.directories} directories" if recursive else "file"
        click.echo(f"added {added.cid} ({_size(added.size)}, {what})")


def _run(work: Any, *args: Any) -> Any:
    return trio.run(work, *args)


def _source(endpoint: Any) -> Any:
    """Where cat, get and ls read blocks: the endpoint's file store, and through a running node
    its peers too (over bitswap)."""
    from gridnode.files.export import EndpointSource

    return EndpointSource(endpoint, peers=bool(getattr(endpoint, "running", False)))


def _fetch_first(endpoint: Any, cid: Any, label: str, quiet: bool = False) -> None:
    """Through a running node: have it fetch the whole DAG under ``cid`` from its peers (parallel
    wants, every block verified; what it holds already is skipped), with a progress bar, before
    reading it locally. Offline: nothing (the data directory's store is all there is)."""
    if not getattr(endpoint, "running", False):
        return
    import threading

    done = threading.Event()
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["progress"] = endpoint.files_fetch(cid)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    progress = None if quiet else Progress(f"fetch {label}", None, unit="B")
    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    try:
        while not done.wait(0.3):
            if progress is None:
                continue
            try:
                seen = endpoint.files_fetch_progress(cid)
            except Exception:  # not started yet, or gone: the next poll tells
                continue
            progress.update(seen["bytes"], seen.get("expected_bytes"))
    finally:
        if progress is not None:
            progress.close()
    if "error" in outcome:
        raise outcome["error"]


@click.command("cat")
@click.argument("path", metavar="CID[/PATH]")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Start at this byte.")
@click.option("--length", type=click.IntRange(min=0), default=None, help="At most this many bytes.")
@click.pass_context
def cat(ctx: click.Context, path: str, offset: int, length: int | None) -> None:
    """Write a file's bytes to stdout (every block verified). Through a running node, a file it
    does not hold is fetched from its peers first."""
    from gridnode.files.export import cat as cat_file
    from gridnode.files.export import resolve

    endpoint = endpoint_of(ctx)
    source = _source(endpoint)
    out = sys.stdout.buffer

    async def work() -> None:
        node = await resolve(source, path)
        await trio.to_thread.run_sync(_fetch_first, endpoint, node.cid, path)
        async for chunk in cat_file(source, node, offset, length):
            out.write(chunk)
        out.flush()

    _run(work)


@click.command("get")
@click.argument("path", metavar="CID[/PATH]")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write it (default: the CID, or the path's last name, here).",
)
@json_option
@click.pass_context
def get(ctx: click.Context, path: str, output: Path | None, as_json: bool) -> None:
    """Write a file or a whole directory tree to disk (every block verified); nothing is
    overwritten. Through a running node, what it does not hold is fetched from its peers first
    (parallel wants, with a progress bar)."""
    from gridnode.files.export import get as get_tree
    from gridnode.files.export import resolve

    endpoint = endpoint_of(ctx)
    source = _source(endpoint)
    target = output or Path(path.rstrip("/").rsplit("/", 1)[-1])

    async def locate() -> Any:
        return await resolve(source, path)

    root = _run(locate)
    _fetch_first(endpoint, root.cid, path)
    progress = Progress(f"get {path}", unit="B")

    async def work() -> int:
        node = await resolve(source, path)
        progress.total = node.size if node.kind in ("file", "raw") else None
        return await get_tree(source, node, target, written=progress.advance)

    try:
        written = _run(work)
    finally:
        progress.close()
    if as_json:
        emit({"path": path, "output": str(target), "bytes": written})
    else:
        click.echo(f"wrote {target} ({_size(written)})")


@click.command("ls")
@click.argument("path", metavar="CID[/PATH]")
@json_option
@click.pass_context
def ls(ctx: click.Context, path: str, as_json: bool) -> None:
    """List a directory's entries (basic or HAMT-sharded): name, CID, size of its DAG. Through a
    running node, blocks it does not hold are asked of its peers."""
    from gridnode.files.export import ls as list_dir
    from gridnode.files.export import resolve

    source = _source(endpoint_of(ctx))

    async def work() -> list[Any]:
        node = await resolve(source, path)
        return [entry async for entry in list_dir(source, node)]

    entries = _run(work)
    if as_json:
        for entry in entries:
            emit(entry.as_json())
    elif entries:
        table(
            ["name", "cid", "size"],
            [[e.name, str(e.cid), "" if e.tsize is None else str(e.tsize)] for e in entries],
        )


@click.command("gc")
@json_option
@click.pass_context
def gc(ctx: click.Context, as_json: bool) -> None:
    """Remove the file blocks no local pin keeps (an add in progress keeps its own)."""
    report = endpoint_of(ctx).files_gc()
    if as_json:
        emit(report)
    else:
        click.echo(
            f"removed {report['removed_blocks']} blocks ({_size(report['removed_bytes'])}); "
            f"kept {report['kept_blocks']} ({_size(report['kept_bytes'])})"
        )
