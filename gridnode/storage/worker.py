"""How the trio node reaches SQLite: one call at a time, in a worker thread, fairly between peers.

sqlite3 blocks; the node's trio loop must not. Every storage call goes through
``trio.to_thread.run_sync``, one at a time, so the connection is used by one thread at a time (it
is opened with ``check_same_thread=False``) and the loop keeps serving peers while a batch
commits. aiosqlite (in the design card) cannot be used: it is built on asyncio's loop and futures
and does not run under trio. Measured in docs/decisions.md.

The one thread is shared by everyone the node works for, so it owns who goes next. Each call is
tagged with whom it is for: the remote peer whose request it serves (set with :func:`serving`
around the serving code: sync, bitswap, anything a remote peer triggers), or :data:`LOCAL` for
the node's own work. Waiting calls are served round-robin between tags, not first come first
served: a peer with 64 streams of expensive requests gets one turn per round like a peer with
one. Each call's measured duration is charged to its tag through a :class:`Meter` (the node's
per-peer budgets, :mod:`gridnode.node.budget`), and a tag the meter says is over its allowance
waits before it queues: backpressure on that peer's own streams, never on anyone else's.

Long work is given as steps (:meth:`StorageWorker.run_steps`, a generator that yields between
bounded pieces of work), run a slice of at most :data:`SLICE_SECONDS` per turn, so no single
request holds the thread for long. It refuses to know what a peer is or what a budget allows.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, Protocol, TypeVar

import trio

__all__ = ["LOCAL", "SLICE_SECONDS", "Meter", "StorageWorker", "Usage", "serving"]

P = ParamSpec("P")
T = TypeVar("T")

#: The tag of the node's own work (writes through the API, its own pulls, maintenance).
LOCAL: Final = "local"
#: Seconds of stepped work (:meth:`StorageWorker.run_steps`) one turn may take before the
#: thread goes to the next tag in line. A few ms: an honest peer's call waits at most one slice
#: per other busy tag, and a thread hop costs ~0.1 ms.
SLICE_SECONDS: Final = 0.005
#: Tags whose usage is remembered for the stats (the least recently used are forgotten first).
MAX_TAGS: Final = 1024

_for: ContextVar[str] = ContextVar("gridnode_storage_for", default=LOCAL)


@contextmanager
def serving(peer: str) -> Iterator[None]:
    """Storage calls made inside (in this task, and tasks it starts) are for ``peer``."""
    token = _for.set(peer)
    try:
        yield
    finally:
        _for.reset(token)


def current_tag() -> str:
    """Whom storage calls made here are for."""
    return _for.get()


class Meter(Protocol):
    """Per-tag allowance of worker time (see :class:`gridnode.node.budget.Budgets`)."""

    def delay(self, tag: str) -> float:
        """Seconds ``tag`` must wait before its next call (0 when within its allowance)."""
        ...

    def charge(self, tag: str, seconds: float) -> None:
        """``tag`` used the worker for ``seconds``."""
        ...


@dataclass
class Usage:
    """What one tag had of the worker since the node started."""

    calls: int = 0
    #: Seconds the thread ran this tag's calls.
    seconds: float = 0.0
    #: Seconds its calls waited for its allowance (backpressure).
    throttled: float = 0.0


class StorageWorker:
    """Runs blocking storage calls off the trio loop, one at a time, round-robin between tags."""

    def __init__(
        self,
        meter: Meter | None = None,
        *,
        timer: Callable[[], float] = time.perf_counter,
        slice_seconds: float = SLICE_SECONDS,
    ) -> None:
        self._meter = meter
        self._timer = timer
        self._slice = slice_seconds
        self._busy = False
        #: Tags with waiting calls, in the order they get their next turn.
        self._order: deque[str] = deque()
        self._queues: dict[str, deque[trio.Event]] = {}
        #: Usage per tag, the most recently active last (at most MAX_TAGS).
        self.usage: dict[str, Usage] = {}
        #: Seconds the thread ran calls, for the node's own work and for peers (never forgotten).
        self.seconds: dict[str, float] = {"local": 0.0, "peers": 0.0}

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in the worker thread, when its tag's turn comes. Cancelling the
        caller waits for a started call to finish (a half-run transaction is never abandoned),
        then raises Cancelled."""
        tag = _for.get()
        await self._turn(tag)
        try:
            return await self._call(tag, lambda: fn(*args, **kwargs))
        finally:
            self._pass_turn()

    async def run_steps(self, steps: Generator[Any, None, T]) -> T:
        """Run a generator of work to its end, a slice of at most ``slice_seconds`` per turn
        (it yields between bounded pieces of work), and return its return value. Other tags'
        calls run between slices, so the state it walks may change between two of them: use it
        for answers that tolerate that (what a peer lacks, which it checks again anyway)."""
        tag = _for.get()
        timer, limit = self._timer, self._slice

        def advance() -> tuple[bool, T | None]:
            start = timer()
            try:
                while timer() - start < limit:
                    next(steps)
            except StopIteration as stop:
                return True, stop.value
            return False, None

        while True:
            await self._turn(tag)
            try:
                done, value = await self._call(tag, advance)
            finally:
                self._pass_turn()
            if done:
                return value  # type: ignore[return-value]

    async def _call(self, tag: str, call: Callable[[], T]) -> T:
        timer = self._timer
        spent = [0.0]

        def timed() -> T:
            start = timer()
            try:
                return call()
            finally:
                spent[0] = timer() - start

        # trio's default: the thread is not abandoned on cancellation.
        try:
            return await trio.to_thread.run_sync(timed)
        finally:
            self._used(tag).seconds += spent[0]
            self.seconds["local" if tag == LOCAL else "peers"] += spent[0]
            if self._meter is not None:
                self._meter.charge(tag, spent[0])

    def _used(self, tag: str) -> Usage:
        usage = self.usage.pop(tag, None)
        if usage is None:
            usage = Usage()
            while len(self.usage) >= MAX_TAGS:
                del self.usage[next(iter(self.usage))]
        self.usage[tag] = usage
        return usage

    async def _turn(self, tag: str) -> None:
        """Wait for ``tag``'s allowance, then for its turn; return owning the thread."""
        usage = self._used(tag)
        usage.calls += 1
        if self._meter is not None:
            delay = self._meter.delay(tag)
            while delay > 0:
                usage.throttled += delay
                await trio.sleep(delay)
                delay = self._meter.delay(tag)
        if not self._busy:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._busy = True  # no checkpoint between this and the call that will release it
            return
        granted = trio.Event()
        queue = self._queues.get(tag)
        if queue is None:
            queue = self._queues[tag] = deque()
            self._order.append(tag)
        queue.append(granted)
        try:
            await granted.wait()
        except BaseException:
            if granted.is_set():
                self._pass_turn()  # given the thread while leaving: hand it on
            else:
                queue.remove(granted)
                if not queue:
                    del self._queues[tag]
                    self._order.remove(tag)
            raise

    def _pass_turn(self) -> None:
        """The call that owned the thread is done: give it to the next tag in line."""
        if not self._order:
            self._busy = False
            return
        tag = self._order.popleft()
        queue = self._queues[tag]
        granted = queue.popleft()
        if queue:
            self._order.append(tag)
        else:
            del self._queues[tag]
        granted.set()
