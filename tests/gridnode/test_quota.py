"""The storage bound (``max_storage``): what "used" is, the typed refusal, the log lines at the
transitions, the API status, and the offline CLI (``status``, ``import``)."""

import json
import logging
import math

import pytest
import trio
from click.testing import CliRunner

from gridnode import api
from gridnode.api.errors import error_of_answer, status_of
from gridnode.cli import main
from gridnode.errors import StorageLimitReached
from gridnode.node import open_node
from gridnode.quota import StorageQuota
from gridnode.repo import Repo
from gridnode.storage import DB_FILE


class Disk:
    """A measured size the test sets, and a clock it moves."""

    def __init__(self) -> None:
        self.used = 0
        self.now = 0.0


def quota_on(disk, limit):
    return StorageQuota(lambda: disk.used, limit, clock=lambda: disk.now)


def test_no_bound_is_never_full():
    disk = Disk()
    disk.used = 10**12
    quota = quota_on(disk, 0)
    assert not quota.full()
    quota.check("follow x")
    assert quota.status() == {"used": 10**12, "max": 0, "full": False}


def test_at_the_bound_check_refuses_with_a_typed_error_and_counts():
    disk = Disk()
    quota = quota_on(disk, 1000)
    disk.used = 999
    quota.check("follow /gridnode/x")
    disk.used = 1000  # at the bound is full: the next batch would pass it
    with pytest.raises(StorageLimitReached) as raised:
        quota.check("follow /gridnode/x")
    assert "follow /gridnode/x" in str(raised.value) and "max_storage" in str(raised.value)
    assert quota.refusals == 1
    assert quota.status() == {"used": 1000, "max": 1000, "full": True}
    quota.limit = 2000  # raised while running: it clears
    quota.check("follow /gridnode/x")
    assert not quota.full()


def test_one_line_when_reached_one_when_cleared_rate_limited(caplog):
    disk = Disk()
    quota = quota_on(disk, 1000)
    caplog.set_level(logging.INFO, logger="gridnode.quota")
    disk.used = 500
    for _ in range(5):
        quota.full()
    assert caplog.records == []
    disk.used = 1500
    for _ in range(5):
        quota.full()
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records] == [
        ("WARNING", "storage bound reached")
    ]
    disk.used = 500
    quota.full()
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "back under its bound" in caplog.records[-1].getMessage()
    # Flapping around the bound within the minute: no more lines.
    for used in (1500, 500, 1500, 500, 1500):
        disk.used = used
        quota.full()
    assert len(caplog.records) == 2
    # A minute on, the next transition is logged, with a count of those held back.
    disk.now = 61.0
    disk.used = 500
    quota.full()
    assert len(caplog.records) == 3
    assert "more times since" in caplog.records[-1].getMessage()


def test_used_is_the_sqlite_file_with_its_wal(tmp_path):
    with Repo(tmp_path / "n") as repo:
        db = repo.create_database("big", "keyvalue")
        for i in range(20):
            db.write({"op": "put", "key": f"k{i}", "value": "x" * 20_000})
        path = tmp_path / "n" / DB_FILE
        wal = path.with_name(DB_FILE + "-wal")
        assert wal.stat().st_size > 0  # the writes are in the WAL until a checkpoint
        assert repo.quota.used() == path.stat().st_size + wal.stat().st_size
        assert repo.quota.used() > 20 * 20_000


def test_the_api_answers_507_and_the_client_raises_the_same_class():
    error = StorageLimitReached("cannot follow x: ...")
    assert status_of(error) == 507
    again = error_of_answer(507, {"error": "cannot follow x"}, "StorageLimitReached")
    assert type(again) is StorageLimitReached
    assert type(error_of_answer(507, {"error": "x"}, None)) is StorageLimitReached


def run(data_dir, *args, env=None, code=0):
    result = CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--log-level", "warning", *args], env=env
    )
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def test_offline_status_and_import_at_the_bound(tmp_path):
    source, full = tmp_path / "source", tmp_path / "full"
    run(source, "init")
    address = run(source, "db", "create", "notes", "--type", "keyvalue").stdout.strip()
    run(source, "db", "put", address, "k", '"v"')
    car = tmp_path / "notes.car"
    run(source, "export", address, str(car))
    unbounded = run(source, "status").stdout
    assert "storage: " in unbounded and "(no max_storage)" in unbounded
    run(full, "init")
    bound = {"GRIDNODE_MAX_STORAGE": "1"}
    status = run(full, "status", env=bound).stdout
    assert "FULL" in status and "max_storage 1 B" in status
    assert json.loads(run(full, "status", "--json", env=bound).stdout)["storage"]["full"] is True
    refused = run(full, "import", str(car), env=bound, code=1)
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot import a CAR")
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    assert json.loads(run(full, "db", "list", "--json").stdout or "[]") == []
    # Under a bound it has room for, the same import goes through.
    run(full, "import", str(car), env={"GRIDNODE_MAX_STORAGE": str(10**9)})
    assert run(full, "db", "get", address, "k").stdout == '"v"\n'


def test_a_running_node_at_the_bound_answers_507_and_the_cli_says_so(tmp_path, monkeypatch):
    data_dir = tmp_path / "node"
    missing = "/gridnode/bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe"

    async def main():
        monkeypatch.setenv("GRIDNODE_MAX_STORAGE", "1")
        async with (
            open_node(
                data_dir, listen=["/ip4/127.0.0.1/tcp/0"], announce_interval=math.inf
            ) as node,
            api.serve_api(node, data_dir) as url,
        ):
            monkeypatch.delenv("GRIDNODE_MAX_STORAGE")  # the CLI asks the node, not the env
            token = (data_dir / api.TOKEN_FILE).read_text().strip()
            client = api.ApiClient(url, token, timeout=30)
            status = await trio.to_thread.run_sync(client.status)
            assert status["storage"] == {"used": node.storage()["used"], "max": 1, "full": True}
            with pytest.raises(StorageLimitReached, match="cannot follow"):
                await trio.to_thread.run_sync(client.follow, missing)
            refused = await trio.to_thread.run_sync(
                lambda: run(data_dir, "db", "follow", missing, code=1)
            )
            lines = refused.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: cannot follow")
            shown = await trio.to_thread.run_sync(lambda: run(data_dir, "status").stdout)
            assert "node: running" in shown and "FULL" in shown
            assert node.storage_refusals == 2

    async def bounded():
        with trio.fail_after(60):
            await main()

    trio.run(bounded)
