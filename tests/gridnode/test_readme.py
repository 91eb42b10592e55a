"""The README stays true: its two newcomer commands, its operator walkthrough (run as written, two
nodes on 127.0.0.1) and its embedding example (the file a test runs: test_examples.py)."""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()

# The `gridnode start` process driver of test_start.py, reused.
_spec = importlib.util.spec_from_file_location(
    "_test_start", Path(__file__).with_name("test_start.py")
)
_start = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_start)
Started = _start.Started


def section(title):
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, title
    return match.group(1)


def blocks(text, language="sh"):
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_exactly_two_newcomer_commands():
    commands = [b.strip() for b in blocks(section("Two commands"))]
    assert commands == [
        "python -m pip install uv && python -m uv pip install . && gridnode start",
        "python -m pip install uv && python -m uv pip install -e '.[test]' && python -m pytest",
    ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["gridnode"] == "gridnode.cli:main"
    assert "pytest>=8" in project["project"]["optional-dependencies"]["test"]


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run takes the command from this section (the second block), so the two cannot drift:
    what it runs is what the newcomer runs. Checked to fail with the command typed out in .ci/run
    and with the README's block renamed."""
    ci = (ROOT / ".ci" / "run").read_text()
    proc = subprocess.run(
        ["bash", "-c", _ci_function("readme_test_command", ci) + "\nreadme_test_command"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == blocks(section("Two commands"))[1].strip()
    lines = [line.strip() for line in ci.splitlines()]
    assert any(line.startswith("test_command=$(readme_test_command)") for line in lines)
    assert 'bash -euo pipefail -c "$test_command"' in lines
    # Nothing else in .ci/run installs the project or runs pytest on its own.
    assert "pytest" not in ci
    assert [line for line in lines if "pip install" in line] == [
        "python -m pip install --quiet --upgrade pip"
    ]


def _ci_function(name, script):
    match = re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", script, re.S | re.M)
    assert match, name
    return match.group(0)


def test_the_embedding_example_is_the_file_the_tests_run():
    (code,) = blocks(section("Embedding a node"), "python")
    example = (ROOT / "examples" / "embed_asyncio.py").read_text()
    assert code == example
    assert len(example.splitlines()) <= 21


def test_every_docs_link_resolves():
    for target in re.findall(r"\]\(((?:docs|examples)/[^)#]+)", README):
        assert (ROOT / target).exists(), target


def _commands(block):
    """The block's command lines, continuations joined, comments and output left out."""
    text = block.replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _arguments(command):
    words = command.split()
    assert words[:3] == ["gridnode", "--data-dir", words[2]] and words[3] == "start", command
    return words[2], words[4:]


@pytest.mark.slow
def test_the_operator_walkthrough_runs_as_written(tmp_path):
    walk = section("Operator walkthrough: two nodes on one machine")
    first, second, script = blocks(walk)
    (start_a,) = _commands(first)
    (start_b,) = _commands(second)
    dir_a, args_a = _arguments(start_a)
    dir_b, args_b = _arguments(start_b)
    assert args_a == ["--listen", "/ip4/127.0.0.1/tcp/4001"]
    assert args_b[:2] == ["--listen", "/ip4/127.0.0.1/tcp/4002"]
    assert args_b[2] == "--bootstrap" and args_b[3].startswith("/ip4/127.0.0.1/tcp/4001/p2p/")
    # The same commands, on free ports: the second bootstraps from what the first printed.
    a = Started(tmp_path / dir_a, "--listen", "/ip4/127.0.0.1/tcp/0")
    b = None
    try:
        b = Started(tmp_path / dir_b, "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", a.addrs[0])
        _wait(lambda: a.peer_id in _status(tmp_path / dir_b)["peers"], "node-b to connect")
        env = dict(
            os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        )
        env.pop("GRIDNODE_DATA_DIR", None)
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stdout.splitlines()
        assert re.fullmatch(r"bafy\w+", lines[0])  # the put's entry
        address = lines[1]  # what follow printed
        assert re.fullmatch(r"/gridnode/bafy\w+", address)
        assert '"from a"' in lines  # node-b's get, right after follow --wait
        assert f"node: running (api {a.api})" in lines
        assert lines[-1].startswith(f"ok: node {a.peer_id} answers at {a.api}")

        # The two digests printed converge: node-b's write reaches node-a.
        def converged():
            digests = [
                json.loads(_gridnode(tmp_path / d, "db", "digest", address, "--json").stdout)
                for d in (dir_a, dir_b)
            ]
            return digests[0] == digests[1] and digests[0]["entries"] == 2

        _wait(converged, "the digests to converge")
        world = _gridnode(tmp_path / dir_a, "db", "get", address, "world")
        assert world.stdout.strip() == '"from b"'
    finally:
        codes = [n.stop(signal.SIGINT) for n in (b, a) if n is not None]
    assert codes == [0, 0]


def _gridnode(data_dir, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _status(data_dir):
    return json.loads(_gridnode(data_dir, "status", "--json").stdout)


def _wait(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
