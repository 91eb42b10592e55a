"""The storage bound: how much of the disk the node may use (``max_storage``), and whether it has.

"Storage used" is the node's SQLite file with its write-ahead log, in bytes on disk
(:meth:`~gridnode.storage.SqliteFile.bytes_on_disk`: two ``stat`` calls, so it is measured
afresh at every check, never cached stale), plus the file store's block directory (a running
total kept in the SQLite file, one row read: :meth:`gridnode.repo.Repo.bytes_used`). A file add
is refused at the bound too (:func:`gridnode.files.ops.put`, before each batch). ``max_storage = 0`` sets no bound.

At or past the bound the node takes nothing more from elsewhere: :meth:`StorageQuota.check`
raises :class:`~gridnode.errors.StorageLimitReached` for a follow (by hand or driven by a
catalog), a bitswap restore and a CAR import, and the replication room asks :meth:`full` before
it starts a pull, joins gossiped head entries or fills gaps, and before each batch a running pull
joins (so a pull in flight stops between two batches, each batch being one transaction: the
bound is passed by at most one batch per pull running, at most ``CHUNK_BYTES`` of blocks, some
2 MB on disk with their store and log rows). What is kept stays and is still served; the node's
own writes are not bounded (refusing them would stop a primary writing its own data).

A running node says so once: one WARNING when the bound is reached and one INFO line when it
clears (it measured less: the bound was raised, or the file shrank), each at most once a minute
however the figure flaps around the bound; :attr:`StorageQuota.refusals` counts every refusal for
``/metrics``. An offline command logs neither (its refusal is its one ``error:`` line). It
refuses nothing else and holds no SQL; docs/decisions.md says why it is made so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from gridnode.errors import StorageLimitReached
from gridnode.logs import LogLimiter

__all__ = ["StorageQuota"]

log = logging.getLogger(__name__)

#: Seconds between two lines saying the bound was reached (and between two saying it cleared).
TRANSITION_LOG_INTERVAL: Final = 60.0


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


class StorageQuota:
    """``max_storage`` against what the node's file uses; made by the
    :class:`~gridnode.repo.Repo` with ``measure`` = its file's
    :meth:`~gridnode.storage.SqliteFile.bytes_on_disk`. Safe to ask from the storage worker and
    the event loop at once."""

    def __init__(
        self,
        measure: Callable[[], int],
        limit: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        log_transitions: bool = True,
    ) -> None:
        self._measure = measure
        #: The bound in bytes (``0``: none); may be changed while the node runs.
        self.limit = limit
        self._clock = clock
        #: Whether reaching and clearing the bound are logged: a running node's log says so; an
        #: offline command's refusal is its one ``error:`` line, and its status the figures.
        self.log_transitions = log_transitions
        self._lock = threading.Lock()
        self._full = False
        # One line per transition and minute: a figure hovering at the bound must not fill the log.
        self._lines = LogLimiter(lines=1, interval=TRANSITION_LOG_INTERVAL)
        #: Follows, restores, imports refused, and pulls and joins not done, at the bound.
        self.refusals = 0

    def used(self) -> int:
        """Bytes the node's SQLite file and its WAL take on disk now."""
        return self._measure()

    def full(self) -> bool:
        """Whether the node is at or past its bound now (never, with no bound); logs the
        transitions."""
        return self._look()[1]

    def refuse(self) -> None:
        """Count something not done because the node is full (a pull not started, say)."""
        with self._lock:
            self.refusals += 1

    def check(self, doing: str) -> None:
        """Raise :class:`~gridnode.errors.StorageLimitReached` (counted) if the node is full;
        ``doing`` says what was refused ("follow /gridnode/...")."""
        used, full = self._look()
        if full:
            self.refuse()
            raise StorageLimitReached(
                f"cannot {doing}: the node uses {_size(used)} of its max_storage of "
                f"{_size(self.limit)} (raise max_storage in gridnode.toml, or free space)"
            )

    def status(self) -> dict[str, int | bool]:
        """``{"used", "max", "full"}``: what ``GET /status`` and ``gridnode status`` show."""
        used, full = self._look()
        return {"used": used, "max": self.limit, "full": full}

    def _look(self) -> tuple[int, bool]:
        used = self._measure()
        limit = self.limit
        full = limit > 0 and used >= limit
        with self._lock:
            changed, self._full = full != self._full, full
            if not changed or not self.log_transitions:
                return used, full
            kind = "reached" if full else "cleared"
            now = self._clock()
            allowed = self._lines.allow(kind, now)
            more = self._lines.unreported(kind, now) if allowed else 0
        again = f" (and {more} more times since, not logged)" if more else ""
        if not allowed:
            return used, full
        if full:
            log.warning(
                "storage bound reached: %s used of max_storage %s; following, restoring, "
                "importing and pulling stop until it clears%s",
                _size(used),
                _size(limit),
                again,
            )
        else:
            log.info(
                "storage back under its bound: %s used of max_storage %s%s; pulls resume",
                _size(used),
                _size(limit) if limit else "none",
                again,
            )
        return used, full
