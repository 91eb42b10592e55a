"""The examples in examples/ run as documented (docs/embedding.md): each as a subprocess, with a
temporary data directory, listening on 127.0.0.1 only and without mDNS."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name, data_dir, *args):
    env = dict(os.environ, GRIDNODE_LISTEN="/ip4/127.0.0.1/tcp/0", GRIDNODE_MDNS="false")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return dict(line.split(": ", 1) for line in proc.stdout.splitlines())


def test_the_asyncio_example_is_twenty_lines_and_keeps_its_data(tmp_path):
    lines = (EXAMPLES / "embed_asyncio.py").read_text().splitlines()
    assert len(lines) <= 21
    first = run_example("embed_asyncio.py", tmp_path / "node")
    assert first["peer id"].startswith("12D3KooW")
    assert first["address"].startswith("/gridnode/bafy")
    assert first["hello"] == "from asyncio"
    assert re.fullmatch(r"[0-9a-f]{64}", first["digest"])
    # A second run reopens the same node and database and writes one more entry.
    second = run_example("embed_asyncio.py", tmp_path / "node")
    assert (second["peer id"], second["address"]) == (first["peer id"], first["address"])
    assert second["digest"] != first["digest"]


def test_the_trio_example(tmp_path):
    out = run_example("embed_trio.py", tmp_path / "node")
    assert out["listening"].startswith("/ip4/127.0.0.1/tcp/")
    assert out["listening"].endswith("/p2p/" + out["peer id"])
    assert out["wrote"] == "3 entries" and out["entries"] == "3"


def test_the_sync_example(tmp_path):
    out = run_example("embed_sync.py", tmp_path / "node")
    assert out["value"] == "20"
    assert out["refused"].startswith("WrongStoreType 'get' works on keyvalue and documents")


def test_the_fastapi_example(tmp_path):
    pytest.importorskip("fastapi", reason="fastapi is in the test extra; not installed here")
    out = run_example("fastapi_app.py", tmp_path / "node", "--self-test")
    assert out["put"] == '{"key":"hello","value":"from fastapi"}'
    assert out["get"] == '{"key":"hello","value":"from fastapi"}'
    assert out["missing"] == "404"


def test_the_snippets_of_docs_embedding_run(tmp_path):
    text = (EXAMPLES.parent / "docs" / "embedding.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(snippets) == 2
    env = dict(os.environ, GRIDNODE_LISTEN="/ip4/127.0.0.1/tcp/0", GRIDNODE_MDNS="false")
    for number, code in enumerate(snippets):
        cwd = tmp_path / str(number)
        cwd.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "world\n"
        assert (cwd / "my-node" / "node.key").is_file()
