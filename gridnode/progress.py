"""Progress of a long operation (a CAR import or export, a catch-up) on stderr.

On a terminal, one line redrawn in place (``\\r``): a bar when the total is known, else the count
so far, with the rate and the time taken. Anywhere else (a pipe, a file, journald) a terminal's
redrawing would be noise, so a plain log line goes out every ``interval`` seconds instead (the
environment variable ``GRIDNODE_PROGRESS_INTERVAL``, default 5), and a last one at the end if
any was written.

    with Progress("export people.car", unit="B") as progress:
        for chunk in chunks:
            out.write(chunk)
            progress.advance(len(chunk))

A blocking call that reports nothing itself can still be shown: ``poll`` is a function a
background thread calls every tick for the count so far (say, the size of the file being
written); with neither updates nor ``poll`` the line still shows that the operation is alive and
for how long.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, TextIO

from gridnode.errors import NotCaughtUp

__all__ = [
    "DEFAULT_INTERVAL",
    "NotCaughtUp",
    "Progress",
    "file_size",
    "format_count",
    "read_file",
    "wait_for_catch_up",
]

log = logging.getLogger(__name__)

#: Seconds between log lines when stderr is not a terminal.
DEFAULT_INTERVAL: Final = 5.0
#: Seconds between redraws on a terminal.
_REDRAW: Final = 0.1
_BAR_WIDTH: Final = 24


def format_count(value: float, unit: str) -> str:
    """``1.2 MB`` for bytes (``unit="B"``), ``12,345 entries`` for anything else."""
    if unit == "B":
        for prefix in ("", "k", "M", "G"):
            if value < 1000 or prefix == "G":
                return f"{value:.0f} {prefix}B" if not prefix else f"{value:.1f} {prefix}B"
            value /= 1000
    text = f"{value:,.0f}"
    return f"{text} {unit}" if unit else text


def _interval_from_env() -> float:
    text = os.environ.get("GRIDNODE_PROGRESS_INTERVAL")
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


class Progress:
    """One long operation's progress, shown on ``stream`` (default: ``sys.stderr``).

    ``total`` may be unknown (``None``) or set later; ``unit`` is ``"B"`` for bytes or a plural
    noun. Thread-safe: updates may come from any thread. Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        label: str,
        total: float | None = None,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        interval: float | None = None,
        poll: Callable[[], float] | None = None,
        tty: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done: float = 0
        self._stream = stream if stream is not None else sys.stderr
        self.tty = self._stream.isatty() if tty is None else tty
        self.interval = _interval_from_env() if interval is None else interval
        self._poll = poll
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_shown = float("-inf") if self.tty else self._started
        self._logged = 0
        self._width = 0
        self._closed = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            self._show(time.monotonic(), force=True)
        # A ticker keeps the line alive through blocking calls: it polls, redraws, logs.
        self._ticker = threading.Thread(target=self._tick, name=f"progress {label}", daemon=True)
        self._ticker.start()

    # -- updates --------------------------------------------------------------------------------

    def advance(self, n: float = 1) -> None:
        """Count ``n`` more units done."""
        with self._lock:
            self.done += n
            self._maybe_show()

    def update(self, done: float, total: float | None = None) -> None:
        """Set the count done (and the total, if it became known)."""
        with self._lock:
            self.done = done
            if total is not None:
                self.total = total
            self._maybe_show()

    def finish(self, done: float) -> None:
        """Set the final count, and stop polling (what ``poll`` watched may be gone)."""
        with self._lock:
            self._poll = None
            self.done = done
            if self.total is not None:
                self.total = max(self.total, done)

    def close(self, message: str | None = None) -> None:
        """Finish: a last redraw ended by a newline on a terminal; elsewhere a last log line if
        any was written, or always with an interval of 0 (every update asked for, however quick
        the operation) (``message`` replaces the standard one). Idempotent."""
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._poll_now()
            if self.tty:
                self._show(time.monotonic(), force=True, final=message)
                self._write("\n")
            elif self._logged or self.interval == 0:
                log.info("%s", message or f"{self.label}: done, {self._summary(time.monotonic())}")

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(None if exc is None else f"{self.label}: stopped ({type(exc).__name__})")

    # -- showing --------------------------------------------------------------------------------

    def _tick(self) -> None:
        step = _REDRAW if self.tty else min(max(self.interval, 0.01), 1.0)
        while not self._stop.wait(step):
            with self._lock:
                if self._closed:
                    return
                self._poll_now()
                self._maybe_show()

    def _poll_now(self) -> None:
        if self._poll is None:
            return
        with contextlib.suppress(OSError):
            self.done = self._poll()

    def _maybe_show(self) -> None:
        if self._closed:
            return
        now = time.monotonic()
        if now - self._last_shown >= (_REDRAW if self.tty else self.interval):
            self._show(now)

    def _show(self, now: float, *, force: bool = False, final: str | None = None) -> None:
        self._last_shown = now
        if not self.tty:
            self._logged += 1
            log.info("%s: %s", self.label, self._summary(now))
            return
        text = final or self._line(now)
        columns = shutil.get_terminal_size((80, 24)).columns
        text = text[: max(columns - 1, 10)]
        # Pad over what the previous, longer line left.
        padding = " " * max(self._width - len(text), 0)
        self._width = len(text)
        self._write("\r" + text + padding)

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not fail the operation

    def _counts(self) -> bool:
        """Whether there is a count to show (not for a bare "still working" line)."""
        return bool(self.unit or self.done or self.total or self._poll)

    def _fraction(self) -> float | None:
        if not self.total:
            return None
        return min(max(self.done / self.total, 0.0), 1.0)

    def _rate(self, now: float) -> str:
        elapsed = now - self._started
        if elapsed <= 0 or not self.done:
            return ""
        return f"{format_count(self.done / elapsed, self.unit)}/s"

    def _summary(self, now: float) -> str:
        """The plain form, for log lines: ``12 MB of 27 MB (45%), 3.1 MB/s, 8 s``."""
        fraction = self._fraction()
        parts = [format_count(self.done, self.unit)] if self._counts() else []
        if fraction is not None and self.total is not None:
            parts[0] += f" of {format_count(self.total, self.unit)} ({fraction:.0%})"
        rate = self._rate(now)
        if rate:
            parts.append(rate)
        parts.append(f"{now - self._started:.0f} s")
        return ", ".join(parts)

    def _line(self, now: float) -> str:
        """The terminal form: ``label [#########.......]  45%  12 MB / 27 MB  3.1 MB/s  8 s``."""
        fraction = self._fraction()
        elapsed = f"{now - self._started:.0f} s"
        rate = self._rate(now)
        if fraction is None or self.total is None:
            count = format_count(self.done, self.unit) if self._counts() else ""
            fields = [self.label, count, rate, elapsed]
        else:
            filled = round(fraction * _BAR_WIDTH)
            bar = "[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "]"
            amounts = (
                f"{format_count(self.done, self.unit)} / {format_count(self.total, self.unit)}"
            )
            fields = [self.label, bar, f"{fraction:4.0%}", amounts, rate, elapsed]
        return "  ".join(f for f in fields if f)


def read_file(path: os.PathLike[str] | str, label: str, *, chunk: int = 1 << 20) -> memoryview:
    """The bytes of a file, read with a progress bar (for files too large to read unnoticed)."""
    with open(path, "rb") as handle:
        total = os.fstat(handle.fileno()).st_size
        buffer = memoryview(bytearray(total))
        done = 0
        with Progress(label, total, unit="B") as progress:
            while done < total:
                n = handle.readinto(buffer[done : done + chunk])
                if not n:
                    break
                done += n
                progress.advance(n)
    return buffer[:done]


def file_size(path: os.PathLike[str] | str) -> Callable[[], float]:
    """A ``poll`` function: the size of ``path`` (a file being written), 0 while it is not there."""

    def size() -> float:
        try:
            return float(os.stat(path).st_size)
        except FileNotFoundError:
            return 0.0

    return size


def wait_for_catch_up(
    endpoint: Any, address: str, timeout: float, *, every: float = 0.2
) -> dict[str, Any]:
    """Wait until a sync of ``address`` with some peer has completed (``endpoint``: a running
    node's :class:`~gridnode.api.ApiClient`), showing the entries held meanwhile; return the
    database's info. Raises :class:`NotCaughtUp` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with Progress(f"catch up {address}", unit="entries") as progress:
        while True:
            status = endpoint.status()
            found = [d for d in status["databases"] if d["address"] == address]
            if found:
                progress.update(found[0]["entries"])
                syncs = found[0].get("syncs", [])
                if any(s["complete"] and not s["error"] for s in syncs):
                    info: dict[str, Any] = endpoint.database(address)
                    return info
            if time.monotonic() > deadline:
                raise NotCaughtUp(f"{address}: no sync with a peer completed in {timeout:g} s")
            time.sleep(every)
