"""``gridnode join CATALOG --peer MULTIADDR`` as a new operator runs it: a real process on an
empty data directory, a primary (a node in a thread) listing databases in a catalog; the joined
node ends holding them, with the primary's digests, and its gridnode.toml records both values."""

import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridnode import api
from gridnode.cli import main
from gridnode.config import CONFIG_FILE
from protocols.catalog import database_key, marker_value

pytestmark = pytest.mark.slow


def _spawn(data_dir, *args):
    stderr = (data_dir.parent / "joined.stderr").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines = []
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("api: "):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    return proc, lines, ready, stderr


def test_join_from_an_empty_data_dir(tmp_path, live_nodes):
    primary = live_nodes("primary", announce_interval=0.5)

    async def publish():
        node = primary.node
        catalog = await node.create_database("project", "keyvalue")
        await node.write(
            catalog.address, [{"op": "put", "key": "catalog", "value": marker_value("p")}]
        )
        listed = []
        for name in ("weather", "rivers"):
            database = await node.create_database(name, "keyvalue")
            await node.write(
                database.address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(50)]
            )
            await node.write(
                catalog.address,
                [{"op": "put", "key": database_key(database.address), "value": {"name": name}}],
            )
            listed.append(database.address)
        return catalog.address, listed

    catalog, listed = primary.run(publish)
    joined = tmp_path / "joined"
    assert not joined.exists()
    peer = primary.node.addrs[0]
    proc, lines, ready, stderr = _spawn(
        joined, "join", catalog, "--peer", peer, "--listen", "/ip4/127.0.0.1/tcp/0"
    )
    try:
        assert ready.wait(60), (lines, (tmp_path / "joined.stderr").read_text())
        assert lines[0].startswith("recorded in "), lines
        client = api.ApiClient.from_data_dir(joined)
        assert client is not None
        want = {
            a: primary.read(lambda a=a: primary.node.database(a).digest().hex()) for a in listed
        }
        deadline = time.monotonic() + 60
        while True:
            have = {
                a: client.database(a, digest=True).get("digest") for a in listed if _kept(client, a)
            }
            if have == want:
                break
            assert time.monotonic() < deadline, (have, want)
            time.sleep(0.2)
        status = client.status()
        assert [c["address"] for c in status["catalogs"]] == [catalog]
        assert sorted(status["catalogs"][0]["databases"]) == sorted(listed)
        rows = {row["address"]: row for row in status["databases"]}
        assert all(rows[a]["catalog"] == [catalog] and rows[a]["replicating"] for a in listed)
        printed = CliRunner().invoke(main, ["--data-dir", str(joined), "status"]).output
        assert f"catalog: {catalog} (p), 2 databases" in printed, printed
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
    assert "Traceback" not in (tmp_path / "joined.stderr").read_text()
    recorded = tomllib.loads((joined / CONFIG_FILE).read_text())
    assert recorded["catalogs"] == [catalog]
    assert recorded["bootstrap"] == [peer]


def _kept(client, address):
    return any(row["address"] == address for row in client.databases())


def test_the_readme_section_is_exactly_that_command():
    """README's "Run a community replica" holds one command, ``gridnode join`` with the two values
    the project publishes, and the verb takes exactly those arguments (the test above runs it)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = re.search(r"^## Run a community replica\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section is not None
    (block,) = re.findall(r"```sh\n(.*?)```", section.group(1), re.S)
    words = block.split()
    # Installed as README's first command installs (everything before its `gridnode start`).
    two = re.search(r"^## Two commands\n(.*?)(?=^## )", readme, re.S | re.M)
    assert two is not None
    install = re.findall(r"```sh\n(.*?)```", two.group(1), re.S)[0].split()
    assert install[-2:] == ["gridnode", "start"]
    assert words[: len(install) - 1] == install[:-1]
    verb, catalog, option, peer = words[len(install) - 1 :]
    assert (verb, option) == ("join", "--peer")
    assert catalog.startswith("/gridnode/") and peer.startswith("/ip4/") and "/p2p/" in peer
    assert "--peer" in {o for p in main.commands["join"].params for o in p.opts}
