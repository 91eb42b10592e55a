"""Group commit (gridnode.ops.write_group, gridnode.node.writes) and the ``durability`` setting."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from crdt.errors import InvalidOperation
from gridnode import ops
from gridnode.config import load_config
from gridnode.errors import ConfigError, StorageError, UnknownDatabase
from gridnode.node.writes import GroupCommit
from gridnode.ops import WriteRequest, Written
from gridnode.repo import Repo, StoredDatabase
from gridnode.storage.sqlite import SqliteFile
from gridnode.storage.worker import StorageWorker


def put(key, value=1):
    return {"op": "put", "key": key, "value": value}


BAD = {"op": "frobnicate"}


# -- ops.write_group: one transaction, each request's own errors ----------------------------------


def test_a_refused_write_fails_alone_and_its_group_mates_commit_in_one_transaction(tmp_path):
    with Repo(tmp_path) as repo:
        db = repo.create_database("kv", "keyvalue")
        commits = count_commits(repo)
        results = ops.write_group(
            repo,
            [
                WriteRequest(db.address, [put("a")]),
                WriteRequest(db.address, [put("b"), BAD]),
                WriteRequest("no-such-database", [put("c")]),
                WriteRequest(db.address, [put("d")], answer=True),
            ],
        )
        assert isinstance(results[0], Written) and len(results[0].entries) == 1
        assert isinstance(results[1], InvalidOperation) and results[1].index == 1
        assert isinstance(results[2], UnknownDatabase)
        assert isinstance(results[3], Written)
        assert results[3].answer is not None and results[3].answer["written"] == 1
        assert commits() == 1
        assert len(db) == 2 and db.store.get("b") is None
        address, digest = db.address, db.digest()
    with Repo(tmp_path) as repo:
        db = repo.database(address)
        assert len(db) == 2 and db.digest() == digest
        assert db.store.get("a") == 1 and db.store.get("d") == 1


def test_a_failure_while_writing_rolls_the_group_back_and_writes_each_alone(tmp_path, monkeypatch):
    """Past its checks a write fails (here: signing the third); its group-mates are written
    again, each alone, and only it fails; nothing the rollback undid stays in memory."""
    with Repo(tmp_path) as repo:
        db = repo.create_database("kv", "keyvalue")
        other = repo.create_database("other", "keyvalue")
        real = StoredDatabase.write_many

        def failing(self, payloads, keypair=None, *, meta=None):
            payloads = list(payloads)
            if any(p.get("key") == "boom" for p in payloads):
                real(self, [put("half-written")])  # something of it is written first
                raise StorageError("the disk said no")
            return real(self, payloads, keypair, meta=meta)

        monkeypatch.setattr(StoredDatabase, "write_many", failing)
        commits = count_commits(repo)
        results = ops.write_group(
            repo,
            [
                WriteRequest(db.address, [put("a")]),
                WriteRequest(other.address, [put("x")]),
                WriteRequest(db.address, [put("boom")]),
                WriteRequest(db.address, [put("c")]),
            ],
        )
        assert [type(r).__name__ for r in results] == [
            "Written",
            "Written",
            "StorageError",
            "Written",
        ]
        assert commits() == 3  # the group's was rolled back; then a, x and c alone
        assert sorted(k for k, _ in db.store.items()) == ["a", "c"]
        assert len(db) == 2 and len(other) == 1
        addresses = db.address, other.address
        digests = db.digest(), other.digest()
    with Repo(tmp_path) as repo:
        assert [repo.database(a).digest() for a in addresses] == list(digests)
        assert len(repo.database(addresses[0])) == 2


def count_commits(repo):
    """Count the COMMITs the repo's connection runs from now on (a wrapper around it)."""
    counted = [0]

    class Counting:
        def __init__(self, conn):
            self._conn = conn

        def execute(self, sql, *args):
            if sql == "COMMIT":
                counted[0] += 1
            return self._conn.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._conn, name)

    repo.sql.conn = Counting(repo.sql.conn)
    for space in list(repo._open.values()):
        space.reload()  # tables hold the connection: give them the wrapper
    return lambda: counted[0]


# -- GroupCommit: concurrent writers share a commit, each answered after it ---------------------


class Gated:
    """The repo's connection, recording BEGIN and COMMIT, and holding the first transaction
    until the test opens the gate (so that the other writers queue behind it)."""

    def __init__(self, conn, log):
        self._conn = conn
        self._log = log
        self.gate = threading.Event()
        self._first = True

    def execute(self, sql, *args):
        if sql == "BEGIN IMMEDIATE" and self._first:
            self._first = False
            assert self.gate.wait(30)
        result = self._conn.execute(sql, *args)
        if sql == "COMMIT":
            self._log.append(("commit",))
        return result

    def __getattr__(self, name):
        return getattr(self._conn, name)


def gated_repo(tmp_path, log):
    repo = Repo(tmp_path)
    db = repo.create_database("kv", "keyvalue")
    gated = Gated(repo.sql.conn, log)
    repo.sql.conn = gated
    db.reload()
    return repo, db, gated


def test_group_mates_share_one_commit_and_are_acknowledged_only_after_it(tmp_path):
    log = []
    repo, db, gated = gated_repo(tmp_path, log)
    groups = []

    async def after(written):
        groups.append(len(written))

    commit = GroupCommit(repo, StorageWorker(), after)

    async def writer(i):
        entries = (await commit.write(WriteRequest(db.address, [put(f"k{i}", i)]))).entries
        assert len(entries) == 1
        log.append(("ack", i))

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, 0)
            await trio.testing.wait_all_tasks_blocked()  # writer 0 holds the worker, gated
            for i in range(1, 6):
                nursery.start_soon(writer, i)
            await trio.testing.wait_all_tasks_blocked()
            assert log == []  # nothing committed, nobody answered
            gated.gate.set()

    trio.run(main)
    try:
        # Writer 0's group, then one group for the five that queued meanwhile.
        assert groups == [1, 5]
        assert commit.stats.groups == 2 and commit.stats.largest == 5
        assert log[0] == ("commit",) and log[1] == ("ack", 0)
        assert log[2] == ("commit",)
        assert sorted(log[3:]) == [("ack", i) for i in range(1, 6)]
        assert len(db) == 6
    finally:
        repo.close()


def test_a_refused_write_in_a_group_fails_only_its_own_caller(tmp_path):
    log = []
    repo, db, gated = gated_repo(tmp_path, log)

    async def after(written):
        pass

    commit = GroupCommit(repo, StorageWorker(), after)
    outcome = {}

    async def writer(i, payload):
        try:
            await commit.write(WriteRequest(db.address, [payload]))
            outcome[i] = "ok"
        except InvalidOperation:
            outcome[i] = "refused"

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, 0, put("first"))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(writer, 1, put("a"))
            nursery.start_soon(writer, 2, BAD)
            nursery.start_soon(writer, 3, put("b"))
            await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()

    trio.run(main)
    try:
        assert outcome == {0: "ok", 1: "ok", 2: "refused", 3: "ok"}
        assert log.count(("commit",)) == 2  # 1, 2 and 3 rode one commit
        assert len(db) == 3
    finally:
        repo.close()


def test_a_writer_cancelled_before_its_group_ran_writes_nothing(tmp_path):
    log = []
    repo, db, gated = gated_repo(tmp_path, log)

    async def after(written):
        pass

    commit = GroupCommit(repo, StorageWorker(), after)

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(commit.write, WriteRequest(db.address, [put("first")]))
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(0.05) as scope:
                await commit.write(WriteRequest(db.address, [put("cancelled")]))
            assert scope.cancelled_caught
            gated.gate.set()
        # The queue goes on after it.
        await commit.write(WriteRequest(db.address, [put("later")]))

    trio.run(main)
    try:
        assert sorted(k for k, _ in db.store.items()) == ["first", "later"]
    finally:
        repo.close()


# -- durability -----------------------------------------------------------------------------------


def test_durability_full_fsyncs_every_commit_and_process_does_not(tmp_path):
    """``full`` (the default) is SQLite's synchronous=FULL (the WAL fsynced at every commit);
    ``process`` is NORMAL (in WAL mode: fsynced at checkpoints only)."""
    with Repo(tmp_path / "default") as repo:
        assert repo.config.durability == "full"
        assert repo.sql.synchronous() == "FULL"
    (tmp_path / "process").mkdir()
    (tmp_path / "process" / "gridnode.toml").write_text('durability = "process"\n')
    with Repo(tmp_path / "process") as repo:
        assert repo.config.durability == "process"
        assert repo.sql.synchronous() == "NORMAL"
        db = repo.create_database("kv", "keyvalue")
        ops.write(db, [put("a")])
        address = db.address
    # The setting is the connection's, not the file's: the next open with full fsyncs again.
    (tmp_path / "process" / "gridnode.toml").write_text('durability = "full"\n')
    with Repo(tmp_path / "process") as repo:
        assert repo.sql.synchronous() == "FULL"
        assert repo.database(address).store.get("a") == 1


def test_durability_is_checked_and_comes_from_the_environment_too(tmp_path):
    (tmp_path / "gridnode.toml").write_text('durability = "sometimes"\n')
    with pytest.raises(ConfigError, match="durability must be one of full, process"):
        load_config(tmp_path)
    (tmp_path / "gridnode.toml").write_text("")
    assert load_config(tmp_path, {"GRIDNODE_DURABILITY": "process"}).durability == "process"
    with pytest.raises(ConfigError, match="durability"):
        load_config(tmp_path, {"GRIDNODE_DURABILITY": "none"})
    with pytest.raises(StorageError, match="unknown durability"):
        SqliteFile(tmp_path / "x.sqlite", durability="none")


# -- a crash: no acknowledged write of a group is lost -------------------------------------------

GROUP_WRITER = Path(__file__).with_name("crash_group_writer.py")


@pytest.mark.parametrize("durability", ["full", "process"])
def test_sigkill_loses_no_write_a_group_commit_acknowledged(tmp_path, durability):
    """Eight tasks write through a running node's group commit; the process is SIGKILLed at a
    random moment after the first acknowledgements. Every acknowledged write is there, in a
    sound file, at both durabilities (``process`` keeps what the OS was handed: a process crash
    loses nothing; only a power loss, not tested here, may)."""
    data_dir = tmp_path / "node"
    with Repo(data_dir) as repo:
        address = repo.create_database("crash", "keyvalue").address
    (data_dir / "gridnode.toml").write_text(f'durability = "{durability}"\n')
    rng = random.Random(21)
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(GROUP_WRITER), str(data_dir), address, "8", str(round_)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(20)]
        assert all(line.startswith("ack ") for line in lines), lines
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        lines += proc.stdout.read().splitlines()
        proc.wait(timeout=30)
        acked = [line.split()[1:] for line in lines if line.startswith("ack ")]
        with Repo(data_dir) as repo:
            assert repo.sql.integrity_check() == "ok"
            db = repo.database(address)
            missing = [(t, n) for t, n in acked if db.store.get(f"{round_}.{t}-{n}") != int(n)]
            assert missing == []
            assert len(db) >= len(acked)
