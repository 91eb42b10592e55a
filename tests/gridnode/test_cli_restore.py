"""``gridnode db restore`` and ``POST /db/restore``: a running node fetches a whole database from
IPFS peers over bitswap (here another gridnode), by the roots ``gridnode export`` writes.

Two real nodes on 127.0.0.1, each serving its API from its own trio loop in a thread as
``gridnode start`` does; the CLI (click's CliRunner) works on the second node's data directory
through that API.
"""

import http.client
import json
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from crdt.ipld.cid import CID
from gridnode import api, errors, ops
from gridnode.cli import main
from gridnode.node import Node
from gridnode.repo import Repo
from tests.gridnode.conftest import node_in_thread

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
#: A manifest nobody has: the CID of a dag-cbor block nobody wrote.
UNKNOWN = CID.for_block(b"\xa1\x61\x78\x01")
#: A /p2p/ multiaddr where nobody listens (a valid peer id).
NOBODY = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWNwJGudHeQrDL2amLcCuDP9rgnQAH9NZAursnW4HzaNq8"


@dataclass
class Running:
    node: Node
    url: str
    token: str
    client: api.ApiClient

    @property
    def addr(self) -> str:
        return self.node.addrs[0]


@contextmanager
def running(data_dir):
    """A node on ``data_dir`` serving its API in another thread, holding the data directory's
    lock as ``gridnode start`` does (``conftest.node_in_thread``), with an API client."""
    with node_in_thread(data_dir) as box:
        token = (data_dir / api.TOKEN_FILE).read_text().strip()
        yield Running(box["node"], box["url"], token, api.ApiClient(box["url"], token, timeout=30))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Node ``a`` holding a keyvalue database of 40 entries, node ``b`` empty; both running."""
    base = tmp_path_factory.mktemp("restore")
    with Repo(base / "a") as repo:
        db = repo.create_database("team", "keyvalue")
        db.write_many([{"op": "put", "key": f"k{i}", "value": i} for i in range(40)])
        facts = {
            "address": db.address,
            "manifest": str(db.manifest.cid),
            "heads": [str(h) for h in db.heads],
            "digest": db.digest().hex(),
        }
    with running(base / "a") as a, running(base / "b") as b:
        yield a, b, facts


def cli(data_dir, *args):
    # The nodes run in this process: at "error", their warnings (a peer that cannot be reached)
    # stay out of the CLI's stderr, as they would with a node in its own process.
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), "--log-level", "error", *args])


def refused(result, code=1):
    """A refusal: status ``code``, one ``error:`` line on stderr, nothing on stdout; that line."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def post(client, body: bytes):
    """``(status, parsed JSON)`` of a raw ``POST /db/restore``."""
    parts = urlsplit(client.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/db/restore",
            body=body,
            headers={"Authorization": client._auth, "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, json.loads(data)


# -- through the CLI -------------------------------------------------------------------------------


def test_the_cli_restores_a_database_from_a_peer(nodes):
    a, b, facts = nodes
    data_dir = b.node.repo.data_dir
    done = cli(data_dir, "db", "restore", facts["manifest"], *facts["heads"], "--peer", a.addr)
    assert done.exit_code == 0, (done.stdout, done.stderr, done.exception)
    assert done.stdout == facts["address"] + "\n"
    assert done.stderr == ""
    assert b.node.replicating(facts["address"])
    digest = json.loads(cli(data_dir, "db", "digest", facts["address"], "--json").stdout)
    assert digest["digest"] == facts["digest"] and digest["entries"] == 40
    same = json.loads(cli(a.node.repo.data_dir, "db", "digest", facts["address"], "--json").stdout)
    assert same == digest

    # Again, with --json and the address form: the heads are duplicates, and nothing below them
    # is fetched again (the node holds it); the answer is the database's info and what the join
    # did.
    again = cli(
        data_dir, "db", "restore", facts["address"], *facts["heads"], "--peer", a.addr, "--json"
    )
    assert again.exit_code == 0, (again.stdout, again.stderr)
    answer = json.loads(again.stdout)
    assert answer["address"] == facts["address"] and answer["name"] == "team"
    assert answer["type"] == "keyvalue" and answer["entries"] == 40
    assert answer["heads"] == facts["heads"] and answer["may_write"] is False
    assert answer["applied"] == 0 and answer["pending"] == 0 and answer["rejected"] == []
    assert answer["duplicates"] == len(facts["heads"]) and answer["missing"] == 0
    # Without --peer: every connected peer is asked (b is connected to a by now).
    bare = cli(data_dir, "db", "restore", facts["manifest"], "--json")
    assert bare.exit_code == 0, bare.stderr
    assert json.loads(bare.stdout)["address"] == facts["address"]


def test_the_cli_exits_1_when_no_peer_has_the_manifest(nodes):
    a, b, _facts = nodes
    data_dir = b.node.repo.data_dir
    line = refused(cli(data_dir, "db", "restore", str(UNKNOWN), "--peer", a.addr, "--timeout", "2"))
    assert str(UNKNOWN) in line and "manifest" in line
    # A peer that cannot be reached is named.
    line = refused(cli(data_dir, "db", "restore", str(UNKNOWN), "--peer", NOBODY, "--timeout", "2"))
    assert f"cannot connect to {NOBODY}" in line
    # What the API refuses is one line too.
    line = refused(cli(data_dir, "db", "restore", "nope", "--peer", a.addr))
    assert "roots[0] is not a CID" in line
    line = refused(cli(data_dir, "db", "restore", str(UNKNOWN), "--peer", "/ip4/127.0.0.1/tcp/1"))
    assert "peers[0]" in line and "/p2p/" in line
    # A timeout out of range is a usage error.
    for value in ("0", "-1", "3601", "soon"):
        line = refused(cli(data_dir, "db", "restore", str(UNKNOWN), "--timeout", value), code=2)
        assert "--timeout" in line


def test_offline_the_verb_fails_as_db_follow_does(tmp_path):
    data_dir = tmp_path / "offline"
    assert cli(data_dir, "init").exit_code == 0
    follow = refused(cli(data_dir, "db", "follow", str(UNKNOWN)))
    restore = refused(cli(data_dir, "db", "restore", str(UNKNOWN), "--peer", NOBODY))
    assert follow == "error: 'db follow' needs a running node: start it with 'gridnode start'"
    assert restore == follow.replace("'db follow'", "'db restore'")
    # A directory that is not a data directory: the same refusal as follow's.
    nothing = tmp_path / "nothing"
    assert refused(cli(nothing, "db", "restore", str(UNKNOWN))) == refused(
        cli(nothing, "db", "follow", str(UNKNOWN))
    )


# -- the API ---------------------------------------------------------------------------------------


ROOT = json.dumps(str(UNKNOWN))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{oops", "not valid JSON"),
        (b"", "empty"),
        (b"[]", "the body is"),
        (b'{"peers": []}', "the body is"),
        (b'{"roots": [' + ROOT.encode() + b'], "colour": 1}', "unknown field 'colour'"),
        (b'{"roots": "' + str(UNKNOWN).encode() + b'"}', "roots must be a list"),
        (b'{"roots": []}', "roots is empty"),
        (b'{"roots": [' + b", ".join([ROOT.encode()] * 1025) + b"]}", "at most 1024"),
        (b'{"roots": [1]}', "roots[0] must be a CID"),
        (b'{"roots": [{"/": "' + str(UNKNOWN).encode() + b'"}]}', "roots[0] must be a CID"),
        (b'{"roots": [' + ROOT.encode() + b', "bafynope"]}', "roots[1] is not a CID"),
        (b'{"roots": [' + ROOT.encode() + b'], "peers": "/ip4/1.2.3.4"}', "peers must be a list"),
        (b'{"roots": [' + ROOT.encode() + b'], "peers": [7]}', "peers[0] must be a multiaddr"),
        (b'{"roots": [' + ROOT.encode() + b'], "peers": ["garbage"]}', "peers[0] is not"),
        (
            b'{"roots": [' + ROOT.encode() + b'], "peers": ["/ip4/127.0.0.1/tcp/4001"]}',
            "peers[0] is not a multiaddr ending in /p2p/",
        ),
        (b'{"roots": [' + ROOT.encode() + b'], "timeout": 0}', "timeout must be"),
        (b'{"roots": [' + ROOT.encode() + b'], "timeout": -1}', "timeout must be"),
        (b'{"roots": [' + ROOT.encode() + b'], "timeout": 3600.5}', "timeout must be"),
        (b'{"roots": [' + ROOT.encode() + b'], "timeout": "10"}', "timeout must be"),
        (b'{"roots": [' + ROOT.encode() + b'], "timeout": true}', "timeout must be"),
        (b'{"roots": [' + ROOT.encode() + b'], "timeout": null}', "timeout must be"),
    ],
    ids=lambda v: v[:40].decode(errors="replace") if isinstance(v, bytes) else None,
)
def test_bad_bodies_are_400(nodes, body, says):
    _a, b, _facts = nodes
    status, answer = post(b.client, body)
    assert status == 400, answer
    assert set(answer) == {"error"} and says in answer["error"], answer


def test_an_unknown_manifest_is_404(nodes):
    a, b, _facts = nodes
    body = {"roots": [str(UNKNOWN)], "peers": [a.addr], "timeout": 2}
    status, answer = post(b.client, json.dumps(body).encode())
    assert status == 404, answer
    assert str(UNKNOWN) in answer["error"]
    with pytest.raises(errors.NotFound):
        b.client.restore([str(UNKNOWN)], [a.addr], 2)
    assert not b.node.replicating(str(UNKNOWN))


def test_a_node_with_no_peer_at_all_answers_404_at_once(tmp_path):
    with running(tmp_path / "alone") as alone:
        status, answer = post(alone.client, json.dumps({"roots": [str(UNKNOWN)]}).encode())
        assert status == 404 and "no peer is connected" in answer["error"], answer


def test_a_node_without_bitswap_answers_409(tmp_path):
    data_dir = tmp_path / "nobitswap"
    assert cli(data_dir, "init").exit_code == 0
    config = data_dir / "gridnode.toml"
    text = config.read_text()
    assert "\n# bitswap = true" in text  # the default file's defaults are comments
    config.write_text(text.replace("\n# bitswap = true", "\nbitswap = false"))
    with running(data_dir) as node:
        assert node.node.bitswap is None
        status, answer = post(node.client, json.dumps({"roots": [str(UNKNOWN)]}).encode())
        assert status == 409 and "bitswap is off" in answer["error"], answer


def test_the_client_waits_as_long_as_the_restore_may_take(monkeypatch):
    """The HTTP read timeout of the CLI's client covers the restore's own timeout."""
    client = api.ApiClient("http://127.0.0.1:9", "token")  # its default: 600 s
    seen = {}

    def request(method, path, params=None, **kwargs):
        seen.update(kwargs, method=method, path=path, body=json.loads(kwargs["body"]))
        return {}

    monkeypatch.setattr(client, "_request", request)
    client.restore(["bafy"], ["/p2p/x"], 3600)
    assert seen["method"] == "POST" and seen["path"] == "/db/restore"
    assert seen["body"] == {"roots": ["bafy"], "peers": ["/p2p/x"], "timeout": 3600}
    assert seen["timeout"] >= 3600 + 60
    client.restore(["bafy"], timeout=5)
    assert seen["timeout"] == 600


def test_a_database_named_restore_is_still_read_at_its_name(nodes):
    """``/db/restore`` is also ``/db/{db}`` of a database named "restore": GET reads it."""
    _a, b, _facts = nodes
    made = b.client.create(ops.CreateRequest("restore", "counter"))
    info = json.loads(cli(b.node.repo.data_dir, "db", "info", "restore", "--json").stdout)
    assert info["address"] == made["address"] and info["type"] == "counter"
    parts = urlsplit(b.client.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("DELETE", "/db/restore", headers={"Authorization": b.client._auth})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 405 and response.getheader("allow") == "GET, POST"
