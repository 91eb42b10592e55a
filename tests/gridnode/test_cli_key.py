"""``gridnode key export`` / ``key import``, and Debian's ``age -d`` reading an export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from gridnode.age import generate_identity
from gridnode.cli import main
from gridnode.keystore import KEY_FILE, load_key

AGE = shutil.which("age")
CLI = (sys.executable, "-m", "gridnode.cli")


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def operator(tmp_path):
    identity = generate_identity()
    path = tmp_path / "operator.txt"
    path.write_text(f"# public key: {identity.recipient()}\n{identity.encode()}\n")
    return path, str(identity.recipient())


def test_export_then_import_into_an_empty_directory(tmp_path, operator):
    identity_file, recipient = operator
    src, dst = tmp_path / "primary", tmp_path / "restored"
    assert _run("--data-dir", str(src), "init").exit_code == 0
    seed = load_key(src / KEY_FILE).seed
    out = _run(
        "--data-dir",
        str(src),
        "key",
        "export",
        "--to",
        recipient,
        "-o",
        str(tmp_path / "k.age"),
        "--json",
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["did"] == load_key(src / KEY_FILE).did and summary["database_keys"] == 0
    assert seed.hex() not in out.output
    assert oct((tmp_path / "k.age").stat().st_mode & 0o777) == "0o600"
    assert seed.hex().encode() not in (tmp_path / "k.age").read_bytes()

    out = _run(
        "--data-dir",
        str(dst),
        "key",
        "import",
        str(tmp_path / "k.age"),
        "--identity",
        str(identity_file),
    )
    assert out.exit_code == 0, out.output
    assert "restored" in out.output and summary["did"] in out.output
    assert load_key(dst / KEY_FILE).seed == seed
    # init then takes the restored key as the node's own.
    out = _run("--data-dir", str(dst), "init")
    assert "existing" in out.output and summary["did"] in out.output
    # A second import is no change.
    out = _run(
        "--data-dir",
        str(dst),
        "key",
        "import",
        str(tmp_path / "k.age"),
        "-i",
        str(identity_file),
        "--json",
    )
    assert json.loads(out.output)["created"] is False


def test_refusals_are_one_line_and_exit_1(tmp_path, operator):
    identity_file, recipient = operator
    src = tmp_path / "primary"
    _run("--data-dir", str(src), "init")
    export = tmp_path / "k.age"
    assert (
        _run(
            "--data-dir", str(src), "key", "export", "--to", recipient, "-o", str(export)
        ).exit_code
        == 0
    )
    before = export.read_bytes()
    cases = [
        # An existing export is never overwritten.
        ["--data-dir", str(src), "key", "export", "--to", recipient, "-o", str(export)],
        # A bad recipient.
        ["--data-dir", str(src), "key", "export", "--to", "age1nope", "-o", str(tmp_path / "x")],
        # No key to export.
        [
            "--data-dir",
            str(tmp_path / "empty"),
            "key",
            "export",
            "--to",
            recipient,
            "-o",
            str(tmp_path / "y"),
        ],
        # A data directory holding another key.
        ["--data-dir", str(tmp_path / "other"), "init"],
    ]
    for args in cases[:3]:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert export.read_bytes() == before
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    _run(*cases[3])
    result = CliRunner().invoke(
        main,
        [
            "--data-dir",
            str(tmp_path / "other"),
            "key",
            "import",
            str(export),
            "-i",
            str(identity_file),
        ],
    )
    assert result.exit_code == 1 and "another key" in result.output
    # The wrong identity.
    stranger = tmp_path / "stranger.txt"
    stranger.write_text(generate_identity().encode() + "\n")
    result = CliRunner().invoke(
        main, ["--data-dir", str(tmp_path / "z"), "key", "import", str(export), "-i", str(stranger)]
    )
    assert result.exit_code == 1 and "no identity" in result.output
    assert not (tmp_path / "z" / KEY_FILE).exists()
    # A damaged file.
    damaged = tmp_path / "damaged.age"
    damaged.write_bytes(before[:-1])
    result = CliRunner().invoke(
        main,
        [
            "--data-dir",
            str(tmp_path / "z"),
            "key",
            "import",
            str(damaged),
            "-i",
            str(identity_file),
        ],
    )
    assert result.exit_code == 1 and "damaged or truncated" in result.output


def test_export_to_standard_output_in_a_real_process(tmp_path, operator):
    identity_file, recipient = operator
    _run("--data-dir", str(tmp_path / "n"), "init")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridnode.cli",
            "--data-dir",
            str(tmp_path / "n"),
            "key",
            "export",
            "--to",
            recipient,
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"age-encryption.org/v1\n")
    (tmp_path / "k.age").write_bytes(proc.stdout)
    out = _run(
        "--data-dir",
        str(tmp_path / "m"),
        "key",
        "import",
        str(tmp_path / "k.age"),
        "-i",
        str(identity_file),
    )
    assert out.exit_code == 0, out.output


@pytest.mark.skipif(
    AGE is None, reason="Debian's age is not installed (apt-get install age; .ci/run installs it)"
)
def test_age_decrypts_an_export_into_the_node_key_file(tmp_path, operator):
    identity_file, recipient = operator
    _run("--data-dir", str(tmp_path / "n"), "init")
    _run(
        "--data-dir",
        str(tmp_path / "n"),
        "key",
        "export",
        "--to",
        recipient,
        "-o",
        str(tmp_path / "k.age"),
    )
    proc = subprocess.run(
        [AGE, "-d", "-i", str(identity_file), str(tmp_path / "k.age")],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    # node_key is the node.key document: an operator with only age and jq rebuilds the file.
    assert document["node_key"] == json.loads((tmp_path / "n" / KEY_FILE).read_text())


def test_export_refuses_to_write_to_a_terminal(tmp_path, operator):
    import os
    import pty

    _, recipient = operator
    _run("--data-dir", str(tmp_path / "n"), "init")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [*CLI, "--data-dir", str(tmp_path / "n"), "key", "export", "--to", recipient],
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        os.set_blocking(leader, False)
        try:
            written = os.read(leader, 65536)
        except BlockingIOError:
            written = b""
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 1
    assert b"terminal" in proc.stderr
    assert b"age-encryption.org" not in written
