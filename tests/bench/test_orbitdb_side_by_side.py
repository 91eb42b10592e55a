"""The side by side with OrbitDB as CI smoke-runs it (``bench/run.py --quick``: N = 50, one
repetition, both systems, ~25 s), inside the README's test command: its npm packages (OrbitDB 4,
Helia, Node 22 from bench/orbitdb/package-lock.json) are installed by tests/npm_packages.py when
missing, as the interop tests' are. ``GRIDNODE_NO_INTEROP=1`` skips it with the other JavaScript
tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_side_by_side_measures_both_systems(tmp_path: Path) -> None:
    if os.environ.get("GRIDNODE_NO_INTEROP") == "1":
        pytest.skip("GRIDNODE_NO_INTEROP=1: the JavaScript side by side is skipped")
    from tests.npm_packages import ensure

    why = ensure(ROOT / "bench" / "orbitdb")
    if why is not None:
        pytest.fail(f"{why} (or set GRIDNODE_NO_INTEROP=1 to skip this test)")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        cwd=ROOT,
        env={**os.environ, "BENCH_TMP": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^# OrbitDB 4\.\S+ on Node v22\.", proc.stdout, re.M), proc.stdout[:500]
    # Both columns carry a figure for the workloads both systems run.
    for workload in ("durable writes, documents, 1 op per call", "replication: fresh node"):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| {workload}"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.match(r"[\d.,]+", cells[2]) and re.match(r"[\d.,]+", cells[3]), row
