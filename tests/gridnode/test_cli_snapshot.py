"""``gridnode db snapshot publish|show``, ``db follow --no-snapshot`` and the status line, through
the CLI and the API of two running nodes."""

import json
import time

from gridnode.repo import Repo
from tests.gridnode.test_cli_restore import cli, refused, running


def _wait(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_publish_follow_show_and_status_through_the_cli(tmp_path):
    with Repo(tmp_path / "a") as repo:
        db = repo.create_database("team", "keyvalue")
        db.write_many([{"op": "put", "key": f"k{i}", "value": i} for i in range(40)])
        address = db.address
    with running(tmp_path / "a") as a, running(tmp_path / "b") as b:
        published = cli(tmp_path / "a", "db", "snapshot", "publish", "team", "--json")
        assert published.exit_code == 0, published.stderr
        root = json.loads(published.stdout)["root"]
        shown = cli(tmp_path / "a", "db", "snapshot", "show", "team")
        assert shown.exit_code == 0, shown.stderr
        assert f"published: {root} (40 entries" in shown.stdout
        assert "served: none" in shown.stdout
        b.node.remember(a.addr, [a.addr])
        _wait(lambda: b.node.peers())
        followed = cli(tmp_path / "b", "db", "follow", address)
        assert followed.exit_code == 0, followed.stderr
        assert cli(tmp_path / "b", "db", "get", address, "k39").stdout.strip() == "39"
        served = b.client.snapshot_show(address)["served"]
        assert served["root"] == root
        assert served["signer"] == a.node.repo.did
        status = cli(tmp_path / "b", "status")
        assert "team: serving from snapshot, history verified" in status.stdout or (
            "team: verified" in status.stdout
        )
        _wait(lambda: b.client.snapshot_show(address)["served"]["state"] == "verified")
        row = next(d for d in b.client.status()["databases"] if d["address"] == address)
        assert row["snapshot"]["verified_percent"] == 100


def test_follow_no_snapshot_and_refusals(tmp_path):
    with Repo(tmp_path / "a") as repo:
        db = repo.create_database("team", "keyvalue")
        db.write_many([{"op": "put", "key": "k", "value": 1}])
        address = db.address
        private = repo.create_database("secret", "keyvalue", readers=[]).address
    # Offline: both verbs need a running node.
    assert "needs a running node" in refused(
        cli(tmp_path / "a", "db", "snapshot", "publish", "team")
    )
    assert "needs a running node" in refused(cli(tmp_path / "a", "db", "snapshot", "show", "team"))
    with running(tmp_path / "a") as a, running(tmp_path / "b") as b:
        assert cli(tmp_path / "a", "db", "snapshot", "publish", "team").exit_code == 0
        assert "private" in refused(cli(tmp_path / "a", "db", "snapshot", "publish", private))
        assert "no database" in refused(cli(tmp_path / "a", "db", "snapshot", "publish", "nope"))
        b.node.remember(a.addr, [a.addr])
        _wait(lambda: b.node.peers())
        followed = cli(tmp_path / "b", "db", "follow", address, "--no-snapshot")
        assert followed.exit_code == 0, followed.stderr
        assert b.client.snapshot_show(address)["served"] is None
