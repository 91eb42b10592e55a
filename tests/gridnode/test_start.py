"""``gridnode start`` and the CLI against a running node.

- Every data-dir verb prints the same offline and through a running node's API (a node in a
  thread, the CLI through click's CliRunner, on two copies of one data directory).
- Stale and busy API files.
- Real processes: ``gridnode start`` on a fresh data directory, driven by ``gridnode`` commands,
  stopped by SIGTERM or SIGINT; two started nodes replicating a database.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest
import trio
from click.testing import CliRunner

from gridnode import api, datadir, errors, ops
from gridnode.cli import main
from gridnode.repo import Repo
from tests.gridnode.conftest import node_in_thread

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def invoke(data_dir, *args, input=None):
    result = CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--log-level", "warning", *args], input=input
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# -- the same output, offline and online -----------------------------------------------------------


def _prepare(tmp_path):
    """A data dir with one database of each type and one this node may not write; returns it."""
    base = tmp_path / "base"
    invoke(base, "init")
    for name, store, *options in (
        ("people", "keyvalue"),
        ("books", "documents", "--index", "year", "--index", "author.name"),
        ("feed", "events"),
        ("tags", "set"),
        ("hits", "counter"),
    ):
        assert invoke(base, "db", "create", name, "--type", store, *options).exit_code == 0
    with Repo(tmp_path / "stranger") as stranger:
        theirs = stranger.create_database("theirs", "keyvalue")
        theirs.write({"op": "put", "key": "k", "value": 1})
        theirs.export_car(tmp_path / "theirs.car")
    assert invoke(base, "import", str(tmp_path / "theirs.car")).exit_code == 0
    return base


#: (arguments, stdin); ``{car}`` is a per-copy file name.
SCRIPT = [
    (["db", "list"], None),
    (["db", "list", "--json"], None),
    (["db", "info", "people"], None),
    (["db", "info", "people", "--json"], None),
    (["db", "put", "people", "alice", '{"age": 33, "photo": {"/": {"bytes": "aGVsbG8"}}}'], None),
    (["db", "put", "people", "bob", "-5", "--json"], None),
    (
        ["db", "put", "people", "-"],
        '{"key": "carol", "value": 1.0}\n\n{"key": "dave", "value": [1, {"/": "bafyreiatdbl6o75gibttqbmiq4zkl4hwfmb3haumcmatznksmkqbk2sbs4"}]}\n',
    ),
    (["db", "put", "people", "-"], '{"key": "erin", "value": 1}\n{"key": 5, "value": 1}\n'),
    (["db", "put", "people", "x", "{oops"], None),
    (["db", "put", "people", "x"], None),
    (["db", "get", "people", "alice"], None),
    (["db", "get", "people", "dave", "--json"], None),
    (["db", "get", "people", "nobody"], None),
    (["db", "get", "people", "alice", "--int"], None),
    (["db", "delete", "people", "bob"], None),
    (["db", "delete", "people", "bob", "--json"], None),
    (["db", "get", "people", "bob"], None),
    (
        [
            "db",
            "put",
            "books",
            '{"_id": "b1", "title": "Dune", "year": 1965, "author": {"name": "Herbert"}}',
        ],
        None,
    ),
    (
        ["db", "put", "books", "-", "--json"],
        '{"_id": "b2", "year": 1984, "author": {"name": "Gibson"}}\n{"_id": 3, "year": 1989.0}\n',
    ),
    (["db", "put", "books", '{"title": "no id"}'], None),
    (["db", "get", "books", "b1"], None),
    (["db", "get", "books", "3", "--int", "--json"], None),
    (["db", "get", "books", "3"], None),
    (["db", "query", "books", "year", "--gte", "1980"], None),
    (["db", "query", "books", "year", "--gte", "1980", "--reverse", "--json"], None),
    (["db", "query", "books", "author.name", "--eq", '"Gibson"', "--json"], None),
    (["db", "query", "books", "--limit", "1", "--json"], None),
    (["db", "query", "books", "title"], None),
    (["db", "query", "books", "year", "--eq", "1", "--gt", "0"], None),
    (["db", "query", "books", "year", "--eq", "{oops"], None),
    (["db", "delete", "books", "3", "--int"], None),
    (["db", "add", "feed", '{"msg": "hello"}'], None),
    (["db", "add", "feed", "-"], "1\n2\n"),
    (["db", "iter", "feed"], None),
    (["db", "iter", "feed", "--reverse", "--limit", "2", "--json"], None),
    (["db", "add", "tags", '"red"'], None),
    (["db", "add", "tags", '"blue"', "--json"], None),
    (["db", "remove", "tags", '"red"'], None),
    (["db", "remove", "tags", '"green"'], None),
    (["db", "iter", "tags", "--json"], None),
    (["db", "iter", "tags"], None),
    (["db", "inc", "hits"], None),
    (["db", "inc", "hits", "10", "--json"], None),
    (["db", "inc", "hits", "--by", "-4"], None),
    (["db", "value", "hits"], None),
    (["db", "value", "hits", "--json"], None),
    (["db", "inc", "people"], None),
    (["db", "get", "hits", "k"], None),
    (["db", "iter", "people"], None),
    (["db", "put", "theirs", "k", "2"], None),
    (["db", "get", "theirs", "k", "--json"], None),
    (["db", "get", "nosuchdb", "k"], None),
    (
        ["db", "get", "/gridnode/bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe", "k"],
        None,
    ),
    (["db", "log", "people", "--limit", "2"], None),
    (["db", "log", "people", "--json"], None),
    (["db", "log", "tags", "--json", "--limit", "0"], None),
    (["db", "digest", "people"], None),
    (["db", "digest", "books", "--json"], None),
    (["db", "info", "hits"], None),
    (["db", "info", "theirs", "--json"], None),
    (["export", "people", "{car}"], None),
    (["export", "feed", "{car}", "--json"], None),
    (["import", "{car}"], None),
    (["import", "{car}", "--json"], None),
    (["import", "{dir}/gridnode.toml"], None),
    (["db", "list", "--json"], None),
]


def _normalise(text, copy):
    return text.replace(str(copy), "DATA_DIR")


def test_every_verb_prints_the_same_offline_and_through_a_running_node(tmp_path, monkeypatch):
    base = _prepare(tmp_path)
    offline, online = tmp_path / "offline", tmp_path / "online"
    shutil.copytree(base, offline)
    shutil.copytree(base, online)
    opened = []

    class Recorded(ops.RepoEndpoint):
        def __init__(self, repo):
            opened.append(repo.data_dir)
            super().__init__(repo)

    monkeypatch.setattr(api.client, "RepoEndpoint", Recorded)
    seen_codes = set()
    with node_in_thread(online) as box:
        for args, stdin in SCRIPT:
            runs = []
            for copy in (offline, online):
                car = str(copy) + ".car"
                concrete = [a.replace("{car}", car).replace("{dir}", str(copy)) for a in args]
                result = invoke(copy, *concrete, input=stdin)
                runs.append(
                    (
                        result.exit_code,
                        _normalise(result.stdout, copy).replace(car, "FILE"),
                        _normalise(result.stderr, copy).replace(car, "FILE"),
                    )
                )
            assert runs[0] == runs[1], args
            code, stdout, stderr = runs[0]
            seen_codes.add(code)
            assert "Traceback" not in stderr
            if code:
                assert stdout == "" and len(stderr.splitlines()) == 1, (args, stderr)
        # It all went through the node: the online copy was never opened by a command.
        assert set(opened) == {offline}
        node = box["node"]
        people = invoke(online, "db", "info", "people", "--json")
        address = json.loads(people.stdout)["address"]
        alice = trio.from_thread.run(
            node.read, address, lambda d: d.store.get("alice"), trio_token=box["token"]
        )
        assert alice == {"age": 33, "photo": b"hello"}
    assert seen_codes == {0, 1, 2}
    assert (tmp_path / "offline.car").read_bytes() == (tmp_path / "online.car").read_bytes()
    # Offline after the node stopped: the same state as the copy that never ran a node.
    for name in ("people", "books", "feed", "tags", "hits", "theirs"):
        digests = {invoke(copy, "db", "digest", name).stdout for copy in (offline, online)}
        assert len(digests) == 1, name


def test_status_peers_and_init_through_a_running_node(tmp_path):
    data_dir = tmp_path / "node"
    invoke(data_dir, "init")
    address = invoke(data_dir, "db", "create", "kv", "--type", "keyvalue").stdout.strip()
    offline = json.loads(invoke(data_dir, "status", "--json").stdout)
    assert offline["running"] is False
    assert offline["databases"] == [
        {"address": address, "name": "kv", "type": "keyvalue", "entries": 0, "head_count": 0}
    ]
    text = invoke(data_dir, "status").stdout
    assert (
        "node: not running" in text and offline["peer_id"] in text and offline["identity"] in text
    )
    peers = invoke(data_dir, "peers")
    assert peers.exit_code == 0
    assert "node: not running" in peers.stdout and offline["peer_id"] in peers.stdout
    assert json.loads(invoke(data_dir, "peers", "--json").stdout) == {
        "running": False,
        "identity": offline["identity"],
        "peer_id": offline["peer_id"],
        "peers": [],
    }
    follow = invoke(data_dir, "db", "follow", address)
    assert follow.exit_code == 1 and "needs a running node" in follow.stderr

    with node_in_thread(data_dir) as box:
        node = box["node"]
        online = json.loads(invoke(data_dir, "status", "--json").stdout)
        assert online["running"] is True and online["api"] == box["url"]
        assert online["peer_id"] == offline["peer_id"] == node.peer_id
        assert online["addrs"] == node.addrs and online["peers"] == []
        assert online["databases"][0]["syncs"] == []
        text = invoke(data_dir, "status").stdout
        assert f"node: running (api {box['url']})" in text
        assert f"listening: {node.addrs[0]}" in text
        # Loopback (the local profile): announced as it listens.
        assert online["announced"] == node.announced_addrs == node.addrs
        assert f"announcing: {node.addrs[0]}" in text
        assert "bitswap: 0 blocks sent (0 B), 0 received" in text
        assert online["bitswap"]["blocks_sent"] == 0
        assert invoke(data_dir, "peers").stdout == "peers: none\n"
        assert json.loads(invoke(data_dir, "init", "--json").stdout)["identity"] == node.repo.did
    assert invoke(data_dir, "status").stdout.startswith("node: not running")


def test_an_empty_database_reference_is_one_error_line_offline_and_through_a_running_node(
    tmp_path,
):
    """``gridnode db put "" k '"v"'`` printed a traceback (KeyError 'type') through a running
    node: "" was sent as the path /db/, the listing of every database."""
    data_dir = tmp_path / "node"
    invoke(data_dir, "init")
    invoke(data_dir, "db", "create", "kv", "--type", "keyvalue")
    car = str(tmp_path / "x.car")
    verbs = [
        ("db", "put", "", "k", '"v"'),
        ("db", "get", "", "k"),
        ("db", "info", ""),
        ("db", "log", ""),
        ("db", "digest", ""),
        ("export", "", car),
    ]

    def refused(args):
        result = invoke(data_dir, *args)
        assert result.exit_code == 1, (args, result.stderr, result.exception)
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert result.stdout == "", args
        assert "Traceback" not in result.stderr, args
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)

    for args in verbs:
        refused(args)
    with node_in_thread(data_dir):
        for args in verbs:
            refused(args)
    assert not (tmp_path / "x.car").exists()
    assert json.loads(invoke(data_dir, "db", "info", "kv", "--json").stdout)["entries"] == 0


def test_a_stale_api_file_is_removed_with_a_warning(tmp_path):
    data_dir = tmp_path / "node"
    invoke(data_dir, "init")
    invoke(data_dir, "db", "create", "kv", "--type", "keyvalue")
    # A node that crashed left its files; nobody listens there now.
    (data_dir / api.API_FILE).write_text("http://127.0.0.1:9\n")
    (data_dir / api.TOKEN_FILE).write_text("old\n")
    result = invoke(data_dir, "db", "put", "kv", "k", "1")
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: removed the stale ")
    assert len(result.stderr.splitlines()) == 1
    assert not (data_dir / api.API_FILE).exists() and not (data_dir / api.TOKEN_FILE).exists()
    result = invoke(data_dir, "db", "get", "kv", "k")
    assert result.stdout == "1\n" and result.stderr == ""


def test_a_node_that_holds_the_lock_but_does_not_answer_is_waited_for_then_refused(tmp_path):
    data_dir = tmp_path / "node"
    invoke(data_dir, "init")
    with datadir.node_lock(data_dir):
        started = time.monotonic()
        with pytest.raises(errors.NodeUnavailable, match="does not answer"):
            api.open_endpoint(data_dir, lambda: Repo(data_dir), warn=print, wait=0.3)
        assert time.monotonic() - started >= 0.3
        # A second node on the same data dir is refused.
        with (
            pytest.raises(errors.NodeUnavailable, match="in use"),
            datadir.node_lock(data_dir, wait=0.2),
        ):
            pass


# -- real processes --------------------------------------------------------------------------------


def gridnode(data_dir, *args, input=None, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


class Started:
    """A ``gridnode start`` process and what it printed."""

    def __init__(self, data_dir, *args):
        self.data_dir = data_dir
        self.stderr_path = data_dir.parent / (data_dir.name + ".stderr")
        self.stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), "start", *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines = self._read_until("api: ", timeout=60)
        self.peer_id = self._value("peer id")
        self.identity = self._value("identity")
        self.addrs = [
            line.split(": ", 1)[1] for line in self.lines if line.startswith("listening: ")
        ]
        self.api = self._value("api")

    def _read_until(self, prefix, timeout):
        # A thread reads: the pipe's buffered reader may hold several lines that select() on the
        # descriptor would not report.
        lines = []
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith(prefix):
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout) or not any(line.startswith(prefix) for line in lines):
            self.kill()
            raise AssertionError(f"no '{prefix}' line in time: {lines}, {self.errors()}")
        return list(lines)

    def _value(self, name):
        return next(line.split(": ", 1)[1] for line in self.lines if line.startswith(name + ": "))

    def errors(self):
        if not self.stderr.closed:
            self.stderr.flush()
        return self.stderr_path.read_text()

    def stop(self, signum=signal.SIGTERM):
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=30)
        finally:
            self.kill()
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@pytest.mark.slow
def test_start_prints_the_announced_addresses_when_they_differ(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDNODE_ANNOUNCE", "/dns4/replica.example.org/tcp/4001")
    node = Started(tmp_path / "node", "--listen", "/ip4/127.0.0.1/tcp/0")
    try:
        announced = [line for line in node.lines if line.startswith("announcing: ")]
        assert announced == [f"announcing: /dns4/replica.example.org/tcp/4001/p2p/{node.peer_id}"]
        assert node.addrs[0].startswith("/ip4/127.0.0.1/tcp/")
    finally:
        assert node.stop(signal.SIGTERM) == 0


def test_an_announce_that_is_no_multiaddr_is_one_error_line_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDNODE_ANNOUNCE", "/ip4/300.1.2.3/tcp/4001")
    proc = gridnode(tmp_path / "node", "start", "--listen", "/ip4/127.0.0.1/tcp/0", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    [line] = [line for line in proc.stderr.splitlines() if not line[:4].isdigit()]
    assert line.startswith("error: not a multiaddr in announce ['/ip4/300.1.2.3/tcp/4001']")


@pytest.mark.slow
def test_start_serves_the_cli_and_stops_cleanly_on_sigterm(tmp_path):
    data_dir = tmp_path / "node"  # not initialised: start does it
    node = Started(data_dir, "--listen", "/ip4/127.0.0.1/tcp/0")
    try:
        assert node.peer_id.startswith("12D3KooW")
        assert node.identity.startswith("did:key:z6Mk")
        assert len(node.addrs) == 1 and node.addrs[0].startswith("/ip4/127.0.0.1/tcp/")
        assert node.addrs[0].endswith("/p2p/" + node.peer_id)
        # Loopback, no 'announce': peers are told what it listens on, said once.
        assert not [line for line in node.lines if line.startswith("announcing: ")]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", node.api)
        assert (data_dir / api.API_FILE).read_text().strip() == node.api
        token = data_dir / api.TOKEN_FILE
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert len(token.read_text().strip()) >= 32
        # stdout is a pipe (as under journald or docker): the dashboard's URL without the token;
        # 'gridnode dashboard --print' gives it whole.
        assert node._value("dashboard") == node.api + "/dashboard"
        assert token.read_text().strip() not in "\n".join(node.lines)
        printed = gridnode(data_dir, "dashboard", "--print").stdout.strip()
        assert printed == api.dashboard_url(node.api, token.read_text().strip())

        status = json.loads(gridnode(data_dir, "status", "--json").stdout)
        assert status["running"] is True
        assert status["peer_id"] == node.peer_id and status["addrs"] == node.addrs
        assert status["api"] == node.api and status["identity"] == node.identity

        address = gridnode(data_dir, "db", "create", "people", "--type", "keyvalue").stdout.strip()
        assert address.startswith("/gridnode/bafy")
        written = gridnode(data_dir, "db", "put", address, "alice", '{"age": 33}').stdout.strip()
        assert written.startswith("bafy")
        assert json.loads(gridnode(data_dir, "db", "get", "people", "alice", "--json").stdout) == {
            "key": "alice",
            "value": {"age": 33},
        }
        missing = gridnode(data_dir, "db", "get", "people", "bob", check=False)
        assert missing.returncode == 1 and missing.stderr == "error: no key 'bob' in people\n"
        assert "INFO" in node.errors()
    finally:
        code = node.stop(signal.SIGTERM)
    errors = node.errors()
    assert code == 0, errors
    assert "Traceback" not in errors and "ERROR" not in errors, errors
    assert "SIGTERM: stopping" in errors
    assert not (data_dir / api.API_FILE).exists()
    assert not (data_dir / api.TOKEN_FILE).exists()
    # Offline again: the write is on disk, and no warning about stale files.
    again = gridnode(data_dir, "db", "get", address, "alice")
    assert json.loads(again.stdout) == {"age": 33}
    assert again.stderr == ""
    stopped = gridnode(data_dir, "dashboard", "--print", check=False)
    assert stopped.returncode == 1 and stopped.stderr.startswith("error: no node is running")


@pytest.mark.slow
def test_two_started_nodes_replicate_a_database_written_on_both(tmp_path):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first = Started(first_dir)
    second = None
    try:
        second = Started(second_dir, "--bootstrap", first.addrs[0])
        # The second's identity, as an operator gets it.
        second_did = json.loads(gridnode(second_dir, "status", "--json").stdout)["identity"]
        assert second_did == second.identity
        address = gridnode(
            first_dir, "db", "create", "team", "--type", "keyvalue", "--writer", second_did
        ).stdout.strip()
        gridnode(first_dir, "db", "put", address, "lead", '"first"')
        deadline = time.monotonic() + 30
        while (
            first.peer_id
            not in json.loads(gridnode(second_dir, "status", "--json").stdout)["peers"]
        ):
            assert time.monotonic() < deadline, "the second node did not connect to the first"
            time.sleep(0.2)
        assert gridnode(second_dir, "db", "follow", address).stdout.strip() == address
        gridnode(second_dir, "db", "put", address, "motto", '"ship it"')
        gridnode(first_dir, "db", "put", address, "-", input='{"key": "size", "value": 2}\n')

        deadline = time.monotonic() + 30
        while True:
            digests = [
                json.loads(gridnode(d, "db", "digest", address, "--json").stdout)
                for d in (first_dir, second_dir)
            ]
            if digests[0] == digests[1] and digests[0]["entries"] == 3:
                break
            assert time.monotonic() < deadline, digests
            time.sleep(0.2)
        for d in (first_dir, second_dir):
            assert gridnode(d, "db", "get", address, "motto").stdout.strip() == '"ship it"'
            assert gridnode(d, "db", "get", address, "lead").stdout.strip() == '"first"'
        status = json.loads(gridnode(second_dir, "status", "--json").stdout)
        syncs = {db["address"]: db["syncs"] for db in status["databases"]}[address]
        assert [s["peer"] for s in syncs] == [first.peer_id]
    finally:
        codes = [node.stop(signal.SIGINT) for node in (second, first) if node is not None]
    for node in (first, second):
        errors = node.errors()
        assert "Traceback" not in errors and "ERROR" not in errors, errors
    assert codes == [0, 0], (first.errors(), second.errors())
    for d in (first_dir, second_dir):
        assert not (d / api.API_FILE).exists()
        assert os.listdir(d)  # the data stays


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.2, 0.4])
def test_a_signal_during_start_up_stops_it_cleanly(tmp_path, delay):
    """Whatever stage start-up is at (imports, opening the data dir, the host, the API), SIGTERM
    ends it with status 0, no traceback and no API files left."""
    data_dir = tmp_path / "node"
    with (tmp_path / "stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), "start"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        # From the moment the command has its handler in place (SIGTERM caught, per /proc):
        # before that the interpreter itself is still starting, and the signal's default action
        # (termination) is all there is. On a loaded machine that start takes over 0.2 s.
        deadline = time.monotonic() + 30
        while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None:
            assert time.monotonic() < deadline, "the command never installed its handler"
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    errors = (tmp_path / "stderr").read_text()
    assert code == 0, errors
    assert "Traceback" not in errors
    assert not (data_dir / api.API_FILE).exists()
    assert not (data_dir / api.TOKEN_FILE).exists()


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: SigCgt in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as file:
            status = file.read()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False
