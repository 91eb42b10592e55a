"""Group commit: the node's writers share transactions, fsyncs and announcements.

Every write of a running node (the API, the embed facades, the seeder) comes through
:meth:`gridnode.node.Node.write`, which hands it here. A write waits while a commit is under way;
when that commit ends, every write that arrived meanwhile goes in the next one: ONE storage-worker
call runs :func:`gridnode.ops.write_group` on all of them (each checked and written as
:func:`gridnode.ops.write` does, in one SQLite transaction, one commit, so one fsync at
``durability = "full"``). Each caller is answered only after that commit returned: an
acknowledged write is as durable as the node's ``durability`` says, whichever group carried it.
A write refused by its checks is refused alone (:func:`~gridnode.ops.write_group`); its
group-mates commit.

No task of its own: the first writer to find no commit under way runs the next group (it is the
*leader*), then wakes the others; one whose write is still waiting takes the next group. A
leader cancelled before its group ran puts the group back at the front of the queue; once the
storage call started it runs to its end (the worker never abandons a transaction) and its
results are delivered. A writer cancelled while its group runs is not waited for: its write
commits or fails with the group, as a request whose client went away mid-commit always did.

After the commit, the leader does for the whole group what a write does after its commit: the
counters, bitswap's wake-up, and it asks for ONE announcement per database written (not one per
write); then the callers are answered and the next group may start. The announcements
themselves go out from the node's own task (:meth:`gridnode.node.Node._announce_written`), one
at a time, each naming the heads of its moment: while one is sent, the databases written
meanwhile wait for the next, at most one per database per
:data:`~gridnode.node.WRITE_ANNOUNCE_GAP` under a stream of writes, so under load there are far
fewer announcements than groups, and a caller's acknowledgement never waits for gossip.

Refused here: checking or writing anything itself (that is :mod:`gridnode.ops`), and waiting on
purpose to make groups larger: a group is whatever arrived during the last commit, so a lone
writer is never delayed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from gridnode import ops
from gridnode.ops import WriteRequest, Written
from gridnode.repo import Repo, StoredDatabase
from gridnode.storage.worker import StorageWorker

__all__ = ["MAX_GROUP", "GroupCommit"]

#: Writes at most in one group (more wait for the next): bounds one storage call's length.
MAX_GROUP: Final = 512


@dataclass(eq=False)
class _Waiting:
    request: WriteRequest
    result: Written | BaseException | None = None
    done: bool = False


@dataclass
class GroupStats:
    """How writes were grouped since the node started."""

    groups: int = 0
    writes: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


class GroupCommit:
    """Runs the node's writes in groups (module docstring)."""

    def __init__(
        self,
        repo: Repo,
        worker: StorageWorker,
        after: Callable[[list[Written]], Awaitable[None]],
    ) -> None:
        self._repo = repo
        self._worker = worker
        #: What the node does once a group is durable (count, tell bitswap, announce).
        self._after = after
        self._queue: list[_Waiting] = []
        self._leading = False
        #: Set when a group ends (and replaced): waiting writers look again.
        self._ended = trio.Event()
        self.stats = GroupStats()

    async def write(self, request: WriteRequest) -> Written:
        """``request`` written in the next group, once durable; or its own error raised."""
        waiting = _Waiting(request)
        self._queue.append(waiting)
        try:
            while not waiting.done:
                if self._leading:
                    await self._ended.wait()
                    continue
                await self._lead()
        except BaseException:
            if not waiting.done and waiting in self._queue:
                self._queue.remove(waiting)  # cancelled before its group ran: never written
            raise
        if isinstance(waiting.result, BaseException):
            raise waiting.result
        assert waiting.result is not None
        return waiting.result

    async def _lead(self) -> None:
        """Run the next group: at most :data:`MAX_GROUP` of the writes waiting, in order."""
        self._leading = True
        group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
        ran = False
        try:
            requests = [w.request for w in group]
            results = await self._worker.run(self._run, requests)
            ran = True
            for waiting, result in zip(group, results, strict=True):
                waiting.result = result
            # Quick (counters; the announcement is only asked for): the next group waits on it.
            await self._after([r for r in results if isinstance(r, Written)])
        except BaseException as exc:
            if not ran:
                self._queue[:0] = group  # not started: the next leader takes it
                group = []
            elif not isinstance(exc, trio.Cancelled):
                for waiting in group:
                    if waiting.result is None:
                        waiting.result = exc
            raise
        finally:
            for waiting in group:
                waiting.done = True
            self._leading = False
            ended, self._ended = self._ended, trio.Event()
            ended.set()

    def _run(self, requests: Sequence[WriteRequest]) -> list[Written | Exception]:
        results = ops.write_group(self._repo, requests)
        stats = self.stats
        stats.groups += 1
        stats.writes += len(requests)
        stats.largest = max(stats.largest, len(requests))
        return results


def databases_of(written: Sequence[Written]) -> list[tuple[StoredDatabase, bool]]:
    """The databases a group wrote to, each once, in the order first written, and whether it
    wrote entries to each (a seeder's write may only record its position)."""
    seen: dict[str, tuple[StoredDatabase, bool]] = {}
    for w in written:
        database, wrote = seen.get(w.database.address, (w.database, False))
        seen[w.database.address] = (database, wrote or bool(w.entries))
    return list(seen.values())
