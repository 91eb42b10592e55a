"""Log lines an outsider cannot multiply: a sans-IO rate limiter for repeated warnings.

One WARNING per rejected entry would let whoever sends entries set the node's log volume (and
fill a disk through journald). :class:`LogLimiter` lets a few lines per key (a database, a peer)
through per interval and counts the rest; the first line allowed after an interval that dropped
some is preceded by a summary ("N more ... in the last S s"). It holds no clock (``now`` is
passed in, in seconds) and a bounded number of keys (the oldest is forgotten, its count lost).
Counters elsewhere (stats, reports) still count every event: only the log is thinned.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

__all__ = ["LINES_PER_INTERVAL", "LOG_INTERVAL", "LogLimiter"]

#: Lines let through per key and interval, and the interval in seconds.
LINES_PER_INTERVAL: Final = 5
LOG_INTERVAL: Final = 60.0
#: Keys remembered at once.
MAX_KEYS: Final = 1024


@dataclass
class _Window:
    start: float
    lines: int = 0
    #: Lines held back and not yet named by a summary (carried over into the next interval).
    dropped: int = 0
    summarised: bool = False


class LogLimiter:
    """Say whether a line about ``key`` may be logged now; count those that may not.

    Per key and interval: ``lines`` lines, then one summary of those held back
    (:meth:`unreported`); so at most ``lines + 1`` lines per key and interval, and every line
    held back is named by some summary once the key is heard from in a later interval."""

    def __init__(
        self,
        lines: int = LINES_PER_INTERVAL,
        interval: float = LOG_INTERVAL,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.lines = lines
        self.interval = interval
        self.max_keys = max_keys
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def _window(self, key: str, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now - window.start >= self.interval:
            carried = window.dropped if window is not None else 0
            window = _Window(start=now, dropped=carried)
            self._windows[key] = window
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
        return window

    def allow(self, key: str, now: float) -> bool:
        """Whether one more line about ``key`` may be logged now (if not, it is counted)."""
        window = self._window(key, now)
        if window.lines < self.lines:
            window.lines += 1
            return True
        window.dropped += 1
        return False

    def unreported(self, key: str, now: float) -> int:
        """How many lines about ``key`` were held back, if a summary of them may be logged now
        (one per interval), else 0. The caller logs that one summary line."""
        window = self._window(key, now)
        if not window.dropped or window.summarised:
            return 0
        window.summarised = True
        dropped, window.dropped = window.dropped, 0
        return dropped
