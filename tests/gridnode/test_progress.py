"""gridnode.progress: a bar redrawn with \\r on a terminal (a real pty), plain log lines into a
pipe; and both for ``gridnode export`` and ``gridnode import`` run as processes."""

import io
import logging
import os
import subprocess
import sys
import threading

import pytest

from gridnode.progress import Progress, format_count, read_file
from gridnode.repo import Repo


def test_format_count():
    assert format_count(999, "B") == "999 B"
    assert format_count(12_345, "B") == "12.3 kB"
    assert format_count(27_000_000, "B") == "27.0 MB"
    assert format_count(1234, "entries") == "1,234 entries"
    assert format_count(7, "") == "7"


class Pty:
    """A pseudo-terminal: ``slave`` is what a program writes to, ``output()`` what it showed."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self._chunks = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every slave end is closed
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def output(self):
        os.close(self.slave)
        self._reader.join(30)
        os.close(self.master)
        return b"".join(self._chunks).decode()


def test_on_a_terminal_a_bar_is_redrawn_in_place():
    pty = Pty()
    with os.fdopen(os.dup(pty.slave), "w") as terminal:
        assert terminal.isatty()
        with Progress("copy", total=2000, unit="B", stream=terminal) as progress:
            progress.advance(500)
            progress.update(2000)
    out = pty.output().replace("\r\n", "\n")  # the terminal's own newline translation
    assert out.startswith("\rcopy  [")
    assert out.endswith("\n") and out.count("\n") == 1
    last = out.rstrip("\n").split("\r")[-1]
    assert "[" + "#" * 24 + "]" in last and "100%" in last and "2.0 kB / 2.0 kB" in last


def test_elsewhere_plain_log_lines(caplog):
    stream = io.StringIO()
    with (
        caplog.at_level(logging.INFO, logger="gridnode.progress"),
        Progress("copy", total=4, unit="entries", stream=stream, interval=0) as progress,
    ):
        progress.advance(1)
        progress.advance(3)
    assert stream.getvalue() == ""  # nothing drawn
    lines = [r.getMessage() for r in caplog.records if r.name == "gridnode.progress"]
    assert any(line.startswith("copy: 1 entries of 4 entries (25%)") for line in lines)
    assert any(line.startswith("copy: 4 entries of 4 entries (100%)") for line in lines)
    assert lines[-1].startswith("copy: done, 4 entries of 4 entries (100%)")


def test_elsewhere_a_quick_operation_logs_nothing(caplog):
    with (
        caplog.at_level(logging.INFO, logger="gridnode.progress"),
        Progress("copy", total=4, stream=io.StringIO(), interval=3600) as progress,
    ):
        progress.advance(4)
    assert [r for r in caplog.records if r.name == "gridnode.progress"] == []


def test_a_poll_function_is_shown_during_a_blocking_call(caplog):
    release = threading.Event()
    values = iter(range(1, 1000))
    with (
        caplog.at_level(logging.INFO, logger="gridnode.progress"),
        Progress("wait", unit="B", stream=io.StringIO(), interval=0, poll=lambda: next(values)),
    ):
        release.wait(0.3)  # no update from here: the ticker polls
    lines = [r.getMessage() for r in caplog.records if r.name == "gridnode.progress"]
    assert len(lines) >= 2 and lines[-1].startswith("wait: done")


def test_read_file(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 5000)
    assert bytes(read_file(path, "read", chunk=4096)) == path.read_bytes()


# -- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def car(tmp_path):
    with Repo(tmp_path / "source") as repo:
        db = repo.create_database("feed", "events")
        db.write_many([{"op": "add", "value": "x" * 100 + str(i)} for i in range(500)])
        db.export_car(tmp_path / "feed.car")
    return tmp_path / "feed.car"


def gridnode(data_dir, *args, stderr, env=None):
    return subprocess.run(
        [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=120,
        env=dict(os.environ, **(env or {})),
    )


def test_import_and_export_show_a_bar_on_a_terminal(tmp_path, car):
    for name in ("node", "again"):
        gridnode(tmp_path / name, "init", stderr=subprocess.DEVNULL)
    pty = Pty()
    imported = gridnode(tmp_path / "node", "import", str(car), stderr=pty.slave)
    exported = gridnode(
        tmp_path / "node", "export", "feed", str(tmp_path / "out.car"), stderr=pty.slave
    )
    shown = pty.output()
    assert imported.returncode == 0 and "applied: 500" in imported.stdout
    assert exported.returncode == 0 and "501 blocks" in exported.stdout
    size = car.stat().st_size
    assert (tmp_path / "out.car").read_bytes() == car.read_bytes()
    assert f"\rread feed.car  [{'#' * 24}]  100%  {format_count(size, 'B')} / " in shown
    assert "\rimport feed.car: verify and join" in shown
    assert f"\rexport out.car  {format_count(size, 'B')}" in shown
    assert "Traceback" not in shown


def test_import_and_export_log_lines_into_a_pipe(tmp_path, car):
    env = {"GRIDNODE_PROGRESS_INTERVAL": "0"}
    for name in ("node", "again"):
        gridnode(tmp_path / name, "init", stderr=subprocess.DEVNULL)
    imported = gridnode(tmp_path / "node", "import", str(car), stderr=subprocess.PIPE, env=env)
    exported = gridnode(
        tmp_path / "node",
        "export",
        "feed",
        str(tmp_path / "out.car"),
        stderr=subprocess.PIPE,
        env=env,
    )
    assert imported.returncode == 0 and exported.returncode == 0
    assert "\r" not in imported.stderr + exported.stderr
    size = format_count(car.stat().st_size, "B")
    assert f"INFO gridnode.progress: read feed.car: {size} of {size} (100%)" in imported.stderr
    assert "INFO gridnode.progress: read feed.car: done" in imported.stderr
    assert f"INFO gridnode.progress: export out.car: done, {size}" in exported.stderr
    # By default (a line every 5 s), a quick import says nothing about its progress.
    quiet = gridnode(tmp_path / "again", "import", str(car), stderr=subprocess.PIPE)
    assert quiet.returncode == 0 and "gridnode.progress" not in quiet.stderr
