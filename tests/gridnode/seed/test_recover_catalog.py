"""``gridnode recover postgres --catalog CATALOG`` on a fresh machine: the data directory does
not exist, the command joins the catalog (recorded in gridnode.toml as ``gridnode join`` does),
replicates the database from a replica process, and loads the table. Once with the peer given
by ``--from``, once with the peer only in the config's ``bootstrap``."""

import json
import subprocess
import sys
import tomllib

import psycopg
import pytest

from gridnode.join import record_join
from gridnode.repo import Repo
from tests.gridnode.seed.test_recover import seed

pytestmark = pytest.mark.slow

TIMEOUT = 240


def gridnode(data_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def start(data_dir, log):
    command = [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), "start"]
    proc = subprocess.Popen(
        [*command, "--listen", "/ip4/127.0.0.1/tcp/0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    listening = ""
    for line in proc.stdout:
        if line.startswith("listening:") and not listening:
            listening = line.split(None, 1)[1].strip()
        if line.startswith("api:"):
            return proc, listening
    proc.kill()
    raise AssertionError(f"the replica did not start: {log.name}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


@pytest.fixture
def replica(tmp_path, postgres_server, monkeypatch):
    """A replica process holding a seeded ``items`` database and a catalog listing it."""
    monkeypatch.setenv("GRIDNODE_MDNS", "false")
    source = postgres_server.create_database()
    data_dir = tmp_path / "replica"
    with Repo(data_dir) as repo:
        address = seed(repo, source, "items", 120)[0].address
    made = gridnode(data_dir, "catalog", "create", "nexus", "--json")
    assert made.returncode == 0, made.stderr
    catalog = json.loads(made.stdout)["address"]
    added = gridnode(data_dir, "catalog", "add", catalog, address, "--description", "rows")
    assert added.returncode == 0, added.stderr
    with open(tmp_path / "replica.log", "w") as log:
        proc, listening = start(data_dir, log)
        try:
            yield {"address": address, "catalog": catalog, "peer": listening}
        finally:
            stop(proc)


def recovered(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*), count(secret), min(id), max(id) FROM items"
        ).fetchone()


@pytest.mark.parametrize("peer_from", ["--from", "bootstrap"])
def test_recover_joins_the_catalog_on_a_fresh_machine(
    tmp_path, postgres_server, replica, peer_from
):
    target = postgres_server.create_database()
    cold = tmp_path / "cold"
    assert not cold.exists()
    args = ["--dsn", target, "--db", replica["address"], "--catalog", replica["catalog"]]
    if peer_from == "--from":
        args += ["--from", replica["peer"]]
    else:
        # The operator wrote the primary's address into the config beforehand, nothing else.
        record_join(cold, [], [replica["peer"]])
    result = gridnode(cold, "recover", "postgres", *args, "--timeout", "120", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["rows"] == 120 and out["verified"] == 120
    assert out["replicated_seconds"] > 0
    assert recovered(target) == (120, 0, 1, 120)
    # The join is recorded as 'gridnode join' records it: a restarted node follows the catalog.
    config = tomllib.loads((cold / "gridnode.toml").read_text())
    assert config["catalogs"] == [replica["catalog"]]
    assert config["bootstrap"] == [replica["peer"]]
    with Repo(cold) as repo:
        assert repo.database(replica["address"]).address == replica["address"]


def test_recover_without_a_peer_or_catalog_on_a_fresh_machine_is_one_line(tmp_path, pg_dsn):
    address = "/gridnode/zdpuAyN9UpGbqnHZ4Zr3jVSEJcxFoHAnuMhbW8e2wWJ4ff3t7"
    result = gridnode(tmp_path / "cold", "recover", "postgres", "--dsn", pg_dsn, "--db", address)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: this node does not hold {address}: give --from PEER or --catalog CATALOG "
        "to replicate it first"
    ]
    assert not (tmp_path / "cold").exists()
