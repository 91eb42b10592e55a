"""bench/run.py's own logic, without OrbitDB installed: the same payloads for a seed, the ratio's
direction, and the gridnode side's roles on a tiny database. (CI runs the whole harness, both
systems, with ``--quick``, as does test_orbitdb_side_by_side.py.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Loaded by path under names of their own (other tests have a run.py too).
workloads = _load("gridnode_bench_workloads", BENCH / "workloads.py")
run = _load("gridnode_bench_run", BENCH / "run.py")


def test_payloads_are_fixed_by_the_seed() -> None:
    assert workloads.make_documents(20, 11) == workloads.make_documents(20, 11)
    assert workloads.make_documents(20, 11) != workloads.make_documents(20, 12)
    assert workloads.make_events(5, 3) == workloads.make_events(5, 3)
    docs = workloads.make_documents(3, 1)
    assert [d["_id"] for d in docs] == ["doc00000000", "doc00000001", "doc00000002"]


def test_ratio_reads_as_gridnode_advantage() -> None:
    results = run.Results()
    results.add(
        "rate",
        "gridnode",
        [200.0, 100.0, 300.0],
        unit="ops/s",
        higher_is_better=True,
        fmt=run.ops_fmt,
    )
    results.add("rate", "orbitdb", [50.0], unit="ops/s", higher_is_better=True, fmt=run.ops_fmt)
    results.add("time", "gridnode", 2.0, unit="s", higher_is_better=False, fmt=run.seconds_fmt)
    results.add("time", "orbitdb", 1.0, unit="s", higher_is_better=False, fmt=run.seconds_fmt)
    assert results.ratio("rate") == "**4.00x**"
    assert results.ratio("time") == "**0.50x**"
    assert results.cell("rate", "gridnode") == "200 (100-300)"
    table = results.table()
    assert "| rate | ops/s | 200 (100-300) | 50 | **4.00x** |" in table


def test_gridnode_roles(tmp_path: Path) -> None:
    payloads = tmp_path / "docs.jsonl"
    payloads.write_text("".join(json.dumps(d) + "\n" for d in workloads.make_documents(30, 5)))

    def role(name: str, params: dict) -> dict:
        out = subprocess.run(
            [sys.executable, str(BENCH / "workloads.py"), name, json.dumps(params)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return json.loads(out.stdout.splitlines()[-1])

    written = role(
        "write",
        {
            "dir": str(tmp_path / "node"),
            "type": "documents",
            "payloads": str(payloads),
            "warmup": 5,
            "gets": ["doc00000007"],
            "queries": [7],
            "budget": 0.1,
        },
    )
    assert written["ops"] == 30 and written["address"].startswith("/gridnode/")
    assert len(written["get_us"]) == 1 and len(written["query_us"]) == 1
    opened = role(
        "reopen",
        {"dir": str(tmp_path / "node"), "address": written["address"], "key": "doc00000029"},
    )
    assert opened["seconds"] > 0 and opened["rss_mb"] > 0
