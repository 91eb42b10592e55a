"""The recovery drill at small scale on a real PostgreSQL (examples/recovery_drill.py): a primary
seeds, three replicas follow, the primary's data directory and database are destroyed, a fresh
node recovers from a replica into a fresh database, ``pg_dump --data-only`` of the recovered table
equals the original's, and the recovered primary writes again and a replica follows."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "recovery_drill.py"


def test_the_recovery_drill(tmp_path, postgres_server):
    server = postgres_server.dsn().replace("dbname=postgres", "")
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            str(tmp_path / "drill"),
            "--dsn",
            server,
            "--rows",
            "300",
            "--replicas",
            "3",
            "--pg-dump",
            str(postgres_server.bin_dir / "pg_dump"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    out = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert out["pg_dump equal"] == "True"
    assert out["rows compared"] == "300"
    assert out["replica follows"] == "True"
    assert float(out["recovery seconds"]) > 0
