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


# -- the package's shape ---------------------------------------------------------------------------

CLI = Path(__file__).parents[2] / "gridnode" / "cli"
VERB_MODULES = [
    "backup",
    "car",
    "catalog",
    "config",
    "db",
    "db_access",
    "db_values",
    "files",
    "key",
    "node",
    "orbitdb",
    "pin",
    "replicas",
    "seed",
]


def _imported(path):
    """Every module ``path`` imports (at the top or inside a function)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_verb_modules_import_only_common_from_the_cli_and_never_sqlite3():
    assert sorted(p.stem for p in CLI.glob("*.py")) == sorted(
        ["__init__", "__main__", "common", *VERB_MODULES]
    )
    for path in CLI.glob("*.py"):
        imported = _imported(path)
        assert "sqlite3" not in imported, path.name
        from_cli = {name for name in imported if name.startswith("gridnode.cli")}
        if path.stem == "common":
            assert not from_cli, from_cli
        elif path.stem in VERB_MODULES:
            # From common only: never from another verb module or the package (no cycle).
            assert all(name.startswith("gridnode.cli.common") for name in from_cli), (
                path.name,
                from_cli,
            )


def test_every_verb_is_registered_by_name_in_the_package_and_nowhere_else():
    for path in CLI.glob("*.py"):
        if path.stem != "__init__":
            assert "add_command" not in path.read_text(), path.name
    registrations = (CLI / "__init__.py").read_text().count("main.add_command(")
    assert registrations == len(main.commands) == 25
    assert set(main.commands) == {
        "add",
        "backup",
        "car",
        "cat",
        "gc",
        "get",
        "ls",
        "catalog",
        "config",
        "dashboard",
        "db",
        "export",
        "health",
        "import",
        "init",
        "join",
        "key",
        "peers",
        "orbitdb",
        "pin",
        "recover",
        "replicas",
        "seed",
        "start",
        "status",
    }
