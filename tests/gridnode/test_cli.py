import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridnode.cli import main

GO_CAR = Path(__file__).parents[1] / "fixtures" / "go-car"


def test_init_creates_key_and_is_idempotent(tmp_path):
    runner = CliRunner()
    first = runner.invoke(main, ["--data-dir", str(tmp_path), "init"])
    assert first.exit_code == 0, first.output
    assert "created" in first.output
    key = tmp_path / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    did = next(line for line in first.output.splitlines() if line.startswith("identity:"))
    second = runner.invoke(main, ["--data-dir", str(tmp_path), "init"])
    assert second.exit_code == 0
    assert "existing" in second.output
    assert did in second.output


def test_data_dir_from_environment(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["init"], env={"GRIDNODE_DATA_DIR": str(tmp_path / "env")})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env" / "node.key").exists()


@pytest.mark.parametrize(
    ("name", "version", "roots"),
    [
        ("sample-v1.car", 1, 1),
        ("sample-wrapped-v2.car", 2, 1),
        ("simple-unixfs.car", 1, 1),
        ("simple-unixfs-missing-blocks.car", 1, 1),
    ],
)
def test_car_verify_valid(name, version, roots):
    result = CliRunner().invoke(main, ["car", "verify", str(GO_CAR / name)])
    assert result.exit_code == 0, result.output
    assert f"version: {version}" in result.output
    assert f"roots: {roots}" in result.output
    assert "blocks: " in result.output


@pytest.mark.parametrize(
    "name", ["badheaderlength.car", "badsectionlength.car", "sample-corrupt-pragma.car"]
)
def test_car_verify_invalid_exits_nonzero_with_one_line(name):
    # A real process, so the exit status and the streams are what an operator sees.
    proc = subprocess.run(
        [sys.executable, "-m", "gridnode.cli", "car", "verify", str(GO_CAR / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "invalid CAR" in lines[0]
    assert "Traceback" not in proc.stderr


def test_car_verify_empty_file(tmp_path):
    empty = tmp_path / "empty.car"
    empty.write_bytes(b"")
    result = CliRunner().invoke(main, ["car", "verify", str(empty)])
    assert result.exit_code != 0
    assert "invalid CAR" in result.output
