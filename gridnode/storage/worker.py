"""How the trio node reaches SQLite: one call at a time, in a worker thread.

sqlite3 blocks; the node's trio loop must not. Every storage call goes through
``trio.to_thread.run_sync`` with a :class:`trio.CapacityLimiter` of 1, so the connection is used
by one thread at a time (it is opened with ``check_same_thread=False``) and the loop keeps
serving peers while a batch commits. aiosqlite (in the design card) cannot be used: it is built on
asyncio's loop and futures and does not run under trio. Measured in docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import trio

__all__ = ["StorageWorker"]

P = ParamSpec("P")
T = TypeVar("T")


class StorageWorker:
    """Runs blocking storage calls off the trio loop, one at a time, in call order."""

    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in a worker thread. Cancelling the caller waits for the call
        to finish (a half-run transaction is never abandoned), then raises Cancelled."""
        # trio's default: the thread is not abandoned on cancellation.
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._limiter)
