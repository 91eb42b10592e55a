"""Running a node until it is told to stop: the one runner behind ``gridnode start``,
``gridnode seed postgres`` and the embed facades' thread.

:func:`run_node` is the node's whole life in one coroutine: open the node
(:func:`gridnode.node.open_node`), serve its local API (:func:`gridnode.api.serve_api`) unless
``api=False``, tell the caller it runs (``ready``), start the caller's extra work in a nursery the
runner owns (``tasks``: the seeders, the embed facades' calls), then wait for SIGINT or SIGTERM
(``signals=True``) or for the ``stop`` event, cancel the extra work and close everything, in that
order. :func:`run` is its synchronous entry: one ``trio.run`` in the calling thread.

Rules:

- **Stopping is a normal exit.** The first signal (or ``stop``) unwinds every ``async with``:
  no task is left, the API files go, the SQLite file is closed. A second signal during that
  interrupts it: :func:`run` raises :class:`KeyboardInterrupt` (``gridnode start`` exits 130).
- **A signal during start-up stops the start-up.** With ``signals=True``, :func:`run` catches
  SIGINT and SIGTERM before it imports anything heavy; until the node's own signal receiver is
  open, a signal unwinds what has started and :func:`run` returns. From the moment that receiver
  is open (before the node is opened), a signal is queued and stops the node as soon as it runs.
  Signals are only for the main thread: the embed thread uses ``stop``.
- **One node per data directory.** :func:`gridnode.node.open_node` holds ``DATA_DIR/node.lock``
  for the node's whole life (:func:`gridnode.datadir.node_lock`): a second node there raises
  :class:`~gridnode.errors.NodeUnavailable` before anything else is opened.
- **Stopping is bounded.** With ``signals=True`` (a process of its own: ``gridnode start``), a
  node still stopping :data:`SHUTDOWN_SECONDS` after the signal (a task that does not heed
  cancellation, closes that never end on a starved machine) logs an error and the process
  exits at once with status 1 (:data:`EXIT_OVERDUE`): what was committed is kept (SQLite's
  journal), the next start recovers the rest and removes the stale API file. Never for an
  embedder's thread (``signals=False``): a library does not end its host process.
- **The error that stopped the node, not a group.** trio wraps a failure in exception groups;
  :func:`run` raises the first error in them that is not a cancellation (the group as its
  cause), so a caller catches :class:`~gridnode.errors.ConfigError`, a seeder's
  :class:`~gridnode.errors.SeedError`, ... as such.

It refuses what is not running a node: printing (``ready`` does it for the CLI), exit statuses
(the CLI's), the operations on databases (:mod:`gridnode.ops`, through the node).

The module imports nothing heavy at its top, so that :func:`run` catches signals as early as a
command can.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import trio

    from gridnode.node import Node

__all__ = ["Ready", "Tasks", "run", "run_node"]

log = logging.getLogger(__name__)

#: ``ready(node, url)``: called once the node runs and its API answers (``url`` is ``None`` with
#: ``api=False``), in the node's trio loop, before ``tasks``.
Ready = Callable[["Node", "str | None"], None]
#: ``await tasks(node, nursery)``: starts extra work in ``nursery``, which lives as long as the
#: node runs and is cancelled when it stops; an error there stops the node.
Tasks = Callable[["Node", "trio.Nursery"], Awaitable[None]]

_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
#: Seconds a node started with ``signals=True`` may take to stop once signalled; then the
#: process exits with :data:`EXIT_OVERDUE` (issue 21: under load, 15 of 25 nodes were still
#: running 25 s after SIGTERM).
SHUTDOWN_SECONDS: float = 30.0
#: The exit status of a process whose node did not stop within :data:`SHUTDOWN_SECONDS`.
EXIT_OVERDUE: Final = 1


def run(
    data_dir: Path,
    *,
    listen: Sequence[str] | None = None,
    bootstrap: Sequence[str] | None = None,
    announce_interval: float | None = None,
    target_peers: int | None = None,
    api: bool = True,
    signals: bool = False,
    stop: trio.Event | None = None,
    ready: Ready | None = None,
    tasks: Tasks | None = None,
) -> None:
    """Run a node on ``data_dir`` in this thread (its own ``trio.run``) until it stops; see
    :func:`run_node` for the arguments.

    ``signals=True`` (the main thread only): SIGINT and SIGTERM stop it, also during start-up
    (then it returns at once); a second signal while it stops raises :class:`KeyboardInterrupt`.
    Raises the error that stopped the node (not an exception group), or
    :class:`~gridnode.errors.NodeUnavailable` if a node already runs on ``data_dir``.
    """
    serve = functools.partial(
        _serve,
        data_dir,
        _options(listen, bootstrap, announce_interval, target_peers),
        api=api,
        signals=signals,
        stop=stop,
        ready=ready,
        tasks=tasks,
    )
    shutdown = _Shutdown()
    if not signals:
        _run_trio(data_dir, serve, shutdown)
        return
    shutdown.watchdog = True
    previous = {signum: signal.signal(signum, _stop_startup) for signum in _STOP_SIGNALS}
    try:
        _run_trio(data_dir, serve, shutdown, catch_sigint=True)
    except (_StartupStopped, KeyboardInterrupt):
        if shutdown.begun:
            raise
        log.info("stopped before the node ran")
    finally:
        shutdown.done()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def run_node(
    data_dir: Path,
    *,
    listen: Sequence[str] | None = None,
    bootstrap: Sequence[str] | None = None,
    announce_interval: float | None = None,
    target_peers: int | None = None,
    api: bool = True,
    signals: bool = False,
    stop: trio.Event | None = None,
    ready: Ready | None = None,
    tasks: Tasks | None = None,
) -> None:
    """Run a node on ``data_dir`` until SIGINT or SIGTERM (``signals=True``), until ``stop`` is
    set, or until cancelled.

    ``listen``, ``bootstrap``, ``announce_interval`` and ``target_peers`` are
    :func:`~gridnode.node.open_node`'s (``None``: the data directory's config); ``api`` serves
    the local API; ``ready`` and ``tasks`` are described at :data:`Ready` and :data:`Tasks`.
    """
    await _serve(
        data_dir,
        _options(listen, bootstrap, announce_interval, target_peers),
        api=api,
        signals=signals,
        stop=stop,
        ready=ready,
        tasks=tasks,
        shutdown=_Shutdown(),
    )


def _first_error(exc: BaseException) -> BaseException:
    """The error that stopped a node: the first leaf of nested exception groups that is not a
    cancellation (``exc`` itself if it is no group, or holds only cancellations)."""
    import trio

    if not isinstance(exc, BaseExceptionGroup):
        return exc
    for inner in exc.exceptions:
        leaf = _first_error(inner)
        if not isinstance(leaf, (BaseExceptionGroup, trio.Cancelled)):
            return leaf
    return exc


# -- the synchronous entry -------------------------------------------------------------------------


@dataclass
class _Shutdown:
    """Whether the node has begun to stop: from then on an interruption is not a start-up's.
    With ``watchdog`` (a process of its own), stopping is bounded by :data:`SHUTDOWN_SECONDS`."""

    begun: bool = False
    watchdog: bool = False
    _timer: threading.Timer | None = None

    def begin(self) -> None:
        self.begun = True
        if self.watchdog and self._timer is None:
            # A thread, not a trio task: what it bounds is trio's loop not getting done.
            self._timer = threading.Timer(SHUTDOWN_SECONDS, _overdue, (SHUTDOWN_SECONDS,))
            self._timer.daemon = True
            self._timer.start()

    def done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _overdue(seconds: float) -> None:
    """The node did not stop in time: say so, and end the process without waiting further."""
    log.error(
        "still stopping %.0f s after the signal: exiting now (committed writes are kept)", seconds
    )
    with contextlib.suppress(Exception):
        sys.stderr.write(f"error: the node did not stop within {seconds:.0f} s; exited\n")
        sys.stderr.flush()
        for handler in logging.getLogger().handlers:
            handler.flush()
    os._exit(EXIT_OVERDUE)


class _StartupStopped(BaseException):
    """A signal came before the node's own handling of signals was in place.

    Not a KeyboardInterrupt: CPython 3.11 exits with status 130 after a KeyboardInterrupt that
    passed through an ``exec`` (as a dataclass definition during an import does), even if caught.
    """


def _stop_startup(signum: int, frame: FrameType | None) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler not in (_stop_startup, signal.default_int_handler):
        # trio runs: its SIGINT handler raises KeyboardInterrupt only where that is safe.
        handler(signal.SIGINT, frame)
    else:
        raise _StartupStopped


def _run_trio(
    data_dir: Path,
    serve: Callable[..., Awaitable[None]],
    shutdown: _Shutdown,
    *,
    catch_sigint: bool = False,
) -> None:
    import trio

    # DATA_DIR/node.lock is open_node's to take (and hold for the node's whole life), not ours.
    if catch_sigint:
        # trio turns SIGINT into KeyboardInterrupt where that is safe, if SIGINT is Python's.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        trio.run(functools.partial(serve, shutdown=shutdown))
    except BaseException as exc:
        error = _first_error(exc)
        if error is exc:
            raise
        raise error from exc


# -- the node's life -------------------------------------------------------------------------------


def _options(
    listen: Sequence[str] | None,
    bootstrap: Sequence[str] | None,
    announce_interval: float | None,
    target_peers: int | None,
) -> dict[str, Any]:
    return {
        "listen": None if listen is None else list(listen),
        "bootstrap": None if bootstrap is None else list(bootstrap),
        "announce_interval": announce_interval,
        "target_peers": target_peers,
    }


async def _serve(
    data_dir: Path,
    options: dict[str, Any],
    *,
    api: bool,
    signals: bool,
    stop: trio.Event | None,
    ready: Ready | None,
    tasks: Tasks | None,
    shutdown: _Shutdown,
) -> None:
    import trio

    with contextlib.ExitStack() as signal_scope:
        # Before anything else (the imports below take a moment): a signal during start-up is
        # queued here and stops the node as soon as it runs.
        received = (
            signal_scope.enter_context(trio.open_signal_receiver(*_STOP_SIGNALS))
            if signals
            else None
        )
        from gridnode.api import serve_api
        from gridnode.node import open_node

        async with open_node(data_dir, **options) as node:
            serving = serve_api(node, data_dir) if api else _no_api()
            async with serving as url:
                databases = len(await node.worker.run(node.repo.databases))
                log.info(
                    "node %s (%s) started: %d databases", node.peer_id, node.repo.did, databases
                )
                for addr in node.addrs:
                    log.info("listening on %s", addr)
                if ready is not None:
                    ready(node, url)
                async with trio.open_nursery() as work:
                    if tasks is not None:
                        await tasks(node, work)
                    signum = await _until_stopped(received, stop)
                    why = "stop requested" if signum is None else signal.Signals(signum).name
                    log.info("%s: stopping", why)
                    shutdown.begin()
                    # From here a second signal is not ours: it interrupts the shutdown.
                    signal_scope.close()
                    work.cancel_scope.cancel()
    log.info("stopped")


async def _until_stopped(
    received: AsyncIterator[int] | None, stop: trio.Event | None
) -> int | None:
    """Wait for the first signal (its number) or for ``stop`` (``None``); with neither, until
    cancelled."""
    import trio

    signums: list[int] = []
    async with trio.open_nursery() as waiting:
        if received is not None:
            signals = received

            async def first_signal() -> None:
                async for signum in signals:
                    signums.append(signum)
                    break
                waiting.cancel_scope.cancel()

            waiting.start_soon(first_signal)
        if stop is not None:
            event = stop

            async def stop_set() -> None:
                await event.wait()
                waiting.cancel_scope.cancel()

            waiting.start_soon(stop_set)
        if received is None and stop is None:
            waiting.start_soon(trio.sleep_forever)
    return signums[0] if signums else None


@contextlib.asynccontextmanager
async def _no_api() -> AsyncIterator[None]:
    yield None
