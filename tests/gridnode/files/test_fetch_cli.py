"""``gridnode get|cat|ls`` through a running node of a file only its peer holds: fetched over
bitswap from the peer (``POST /files/fetch``, parallel wants, every block verified, its progress at
``GET /files/fetch/{cid}``), byte-identical; offline, a missing file is one error line."""

from __future__ import annotations

import json
import random
import time

from click.testing import CliRunner

from gridnode.cli import main
from gridnode.repo import Repo
from tests.gridnode.conftest import node_in_thread


def cli(data_dir, *args, code=0):
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), "--log-level", "error", *args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def test_get_cat_and_ls_fetch_what_only_a_peer_holds(tmp_path):
    payload = random.Random(7).randbytes(3 * 1024 * 1024 + 77)  # 4 leaves, all different
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "video.bin").write_bytes(payload)
    (tmp_path / "site" / "index.html").write_text("<h1>hi</h1>")
    for name in ("a", "b"):
        with Repo(tmp_path / name):
            pass
    root = cli(tmp_path / "a", "add", "-r", "-q", str(tmp_path / "site")).stdout.strip()
    with (
        node_in_thread(tmp_path / "a") as a,
        node_in_thread(tmp_path / "b", bootstrap=[a["node"].addrs[0]]) as b,
    ):
        deadline = time.monotonic() + 20
        while a["node"].peer_id not in b["node"].peers():
            assert time.monotonic() < deadline, "the nodes did not connect"
            time.sleep(0.05)
        listed = [
            json.loads(line)
            for line in cli(tmp_path / "b", "ls", root, "--json").stdout.splitlines()
        ]
        assert sorted(e["name"] for e in listed) == ["index.html", "video.bin"]
        part = cli(
            tmp_path / "b", "cat", f"{root}/video.bin", "--offset", "1000", "--length", "5000"
        ).stdout_bytes
        assert part == payload[1000:6000]
        out = tmp_path / "out"
        got = json.loads(cli(tmp_path / "b", "get", root, "-o", str(out), "--json").stdout)
        assert got["bytes"] == len(payload) + len("<h1>hi</h1>")
        assert (out / "video.bin").read_bytes() == payload
        assert (out / "index.html").read_text() == "<h1>hi</h1>"
        # Each DAG was fetched whole with parallel wants (POST /files/fetch): the video's
        # by cat (its 4 leaves from the peer), then the site's by get (all of it held).
        video = next(e["cid"] for e in listed if e["name"] == "video.bin")
        video = video["/"] if isinstance(video, dict) else video
        fetched = b["node"].files.requested
        assert fetched[video].done and fetched[video].fetched_bytes >= len(payload)
        assert fetched[root].done and fetched[root].blocks == 7
    # Offline, b holds it now; a fresh node does not, and says so in one line.
    assert cli(tmp_path / "b", "cat", f"{root}/index.html").stdout == "<h1>hi</h1>"
    with Repo(tmp_path / "c"):
        pass
    result = cli(tmp_path / "c", "cat", f"{root}/index.html", code=1)
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
