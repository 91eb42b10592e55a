"""A node's data directory: where it is, who holds it, and how its running node is reached.

``DATA_DIR`` holds the node's key (``key.json``, :mod:`gridnode.keystore`), its config
(``gridnode.toml``, :mod:`gridnode.config`), its SQLite file (:mod:`gridnode.storage`), and the
three files this module owns. The directory is private to its user: :func:`make_private` makes it
0700 and tightens what an older node left looser (every file in it is 0600), whatever the umask;
the files are the node's key, a config that may hold a PostgreSQL password, and the data.


- ``node.lock`` tells a running node from a stale ``api`` file. A running node holds it
  exclusively for its whole life (:func:`node_lock`, taken by :func:`gridnode.node.open_node`);
  a command working on the directory without a node holds it shared (:func:`hold_shared`), so
  that no node starts underneath it. The lock is the kernel's (``flock``): a process that dies
  lets go of it.
- ``api`` (the local API's URL) and ``api.token`` (mode 0600) are written when the API answers
  and removed when the node stops (:func:`write_api_files`, :func:`remove_api_files`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from gridnode.errors import NodeUnavailable

__all__ = [
    "API_FILE",
    "LOCK_FILE",
    "TOKEN_FILE",
    "SharedHold",
    "api_files",
    "default_data_dir",
    "hold_shared",
    "make_private",
    "node_lock",
    "remove_api_files",
    "write_api_files",
]

log = logging.getLogger(__name__)

API_FILE: Final = "api"
TOKEN_FILE: Final = "api.token"
LOCK_FILE: Final = "node.lock"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/gridnode``, else ``~/.local/share/gridnode`` (the CLI's ``--data-dir``
    and ``$GRIDNODE_DATA_DIR`` override it)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gridnode"


# -- modes -------------------------------------------------------------------------------------

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` with mode 0700 if it is not there, and tighten it (0700) and the
    regular files directly in it (0600) if they are looser: a data directory made by an older
    node under the usual umask (0755, files 0644) is fixed at start, with one log line."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tightened: list[str] = []
    if stat.S_IMODE(data_dir.stat().st_mode) & ~DIR_MODE & 0o777:
        os.chmod(data_dir, DIR_MODE)
        tightened.append(".")
    with os.scandir(data_dir) as entries:
        for entry in entries:
            # Symlinks are neither followed nor changed: only the node's own regular files.
            if not entry.is_file(follow_symlinks=False):
                continue
            mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
            if mode & ~FILE_MODE & 0o777:
                # Through a descriptor opened without following a symlink (chmod's own
                # follow_symlinks=False is not available on every Linux).
                try:
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError as exc:
                    log.warning("cannot tighten the mode of %s: %s", entry.path, exc.strerror)
                    continue
                try:
                    os.fchmod(fd, mode & FILE_MODE)
                finally:
                    os.close(fd)
                tightened.append(entry.name)
    if tightened:
        log.warning(
            "tightened the modes of %s (directory 0700, files 0600): %s",
            data_dir,
            ", ".join(sorted(tightened)),
        )


def create_private(path: Path, data: bytes) -> None:
    """Write a new file at ``path`` with mode 0600 from its first byte (never through a symlink,
    never over an existing file: :class:`FileExistsError`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the mode given to open() is masked by the umask; make sure
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the API's files ---------------------------------------------------------------------------


def write_api_files(data_dir: Path, url: str, token: str) -> None:
    """Publish the running API: the token first (0600), then the URL, atomically: once
    ``DATA_DIR/api`` is there, the API answers with this token."""
    remove_api_files(data_dir)
    create_private(data_dir / TOKEN_FILE, token.encode("ascii") + b"\n")
    tmp = data_dir / (API_FILE + ".tmp")
    create_private(tmp, (url + "\n").encode())
    tmp.replace(data_dir / API_FILE)


def remove_api_files(data_dir: Path) -> None:
    for name in (API_FILE, API_FILE + ".tmp", TOKEN_FILE):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).unlink()


def api_files(data_dir: Path) -> tuple[str, str] | None:
    """The running API's ``(url, token)`` as its files say, or ``None`` if there are none."""
    try:
        url = (data_dir / API_FILE).read_text().strip()
        token = (data_dir / TOKEN_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NodeUnavailable(f"cannot read the node's API files: {exc.strerror}") from None
    return url, token


def _api_answers(data_dir: Path) -> str | None:
    """The URL of the API named in ``DATA_DIR/api`` if something accepts connections there."""
    try:
        found = api_files(data_dir)
    except NodeUnavailable:
        return None
    if found is None:
        return None
    parts = urlsplit(found[0])
    if not parts.hostname or not parts.port:
        return None
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2.0):
            return found[0]
    except OSError:
        return None


# -- the lock ----------------------------------------------------------------------------------


def _open_lock(data_dir: Path) -> int:
    return os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)


def _try_lock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def node_lock(data_dir: Path, *, wait: float = 10.0) -> Iterator[None]:
    """Hold ``DATA_DIR/node.lock`` exclusively: what a running node does for its whole life.

    Waits up to ``wait`` seconds for commands working offline to finish; raises
    :class:`~gridnode.errors.NodeUnavailable` if a node runs there, or the directory stays busy.
    """
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = _open_lock(data_dir)
    try:
        deadline = time.monotonic() + wait
        while not _try_lock(fd, fcntl.LOCK_EX):
            url = _api_answers(data_dir)
            if url is not None:
                raise NodeUnavailable(f"a node is already running on {data_dir} ({url})")
            if time.monotonic() > deadline:
                raise NodeUnavailable(f"{data_dir} is in use by another gridnode process")
            time.sleep(0.05)
        yield
    finally:
        os.close(fd)


class SharedHold:
    """A shared hold on ``DATA_DIR/node.lock`` (:func:`hold_shared`); :meth:`close` lets go."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def hold_shared(data_dir: Path) -> SharedHold | None:
    """A shared hold on the data directory if no node runs there (then none can start until it
    is closed), or ``None`` if a node holds it (running, starting or stopping)."""
    fd = _open_lock(data_dir)
    if _try_lock(fd, fcntl.LOCK_SH):
        return SharedHold(fd)
    os.close(fd)
    return None
