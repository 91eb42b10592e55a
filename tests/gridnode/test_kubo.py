"""``gridnode pin`` and gridnode.kubo against a loopback HTTP server that answers as Kubo's RPC API
does for ``dag/import`` and ``pin/add``: it parses the multipart body, reads the CAR, checks every
block against its CID and keeps the pins."""

import json
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from crdt.ipld.car import read_car
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode
from gridnode.kubo import KuboClient, KuboRefused, KuboUnreachable
from gridnode.repo import Repo
from tests.gridnode.test_cli_db import json_out, refused, run


class FakeKubo:
    """The state of the fake Kubo: its blocks, its pins, what it was asked."""

    def __init__(self):
        self.blocks = {}
        self.pins = set()
        self.calls = []
        self.fail = None  # (status, body) to answer every call with

    def links(self, cid):
        """Every CID a block links to (dag-cbor links, as Kubo follows them for a recursive pin)."""
        found = []

        def walk(value):
            if isinstance(value, CID):
                found.append(value)
            elif isinstance(value, dict):
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(decode(self.blocks[cid]))
        return found

    def complete(self, root):
        """Whether the whole DAG under ``root`` is here (Kubo would fetch what is not)."""
        todo, seen = [root], set()
        while todo:
            cid = todo.pop()
            if cid in seen:
                continue
            if cid not in self.blocks:
                return False
            seen.add(cid)
            todo.extend(self.links(cid))
        return True


def _dechunk(data):
    out, pos = bytearray(), 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        pos = end + 2
        if size == 0:
            return bytes(out)
        out += data[pos : pos + size]
        pos += size + 2


def _multipart_file(content_type, body):
    """The content of the part named ``file`` of a multipart/form-data body."""
    kind, _, params = content_type.partition(";")
    assert kind.strip() == "multipart/form-data", content_type
    boundary = dict(p.strip().split("=", 1) for p in params.split(";") if "=" in p)["boundary"]
    boundary = boundary.strip('"').encode()
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part[2:].partition(b"\r\n\r\n")
        assert content.endswith(b"\r\n")
        if b'name="file"' in head:
            return content[:-2]
    raise AssertionError("no part named file")


def _handler(kubo):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status, message):
            self.answer(status, json.dumps({"Message": message, "Code": 0, "Type": "error"}))

        def do_GET(self):
            # Kubo's RPC API takes POST only.
            self.answer(405, "405 - Method Not Allowed", "text/plain")

        def do_POST(self):
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raw = bytearray()
                while not raw.endswith(b"0\r\n\r\n"):
                    raw += self.rfile.read1(65536)
                body = _dechunk(bytes(raw))
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            kubo.calls.append((url.path, query))
            if kubo.fail is not None:
                return self.answer(*kubo.fail)
            if url.path == "/api/v0/dag/import":
                car = _multipart_file(self.headers["Content-Type"], body)
                try:
                    header, blocks = read_car(car)  # checks every block against its CID
                except Exception as exc:
                    return self.error(500, f"invalid car: {exc}")
                for cid, block in blocks:
                    kubo.blocks[cid] = block
                lines = []
                for root in header.roots:
                    entry = {"Cid": {"/": str(root)}, "PinErrorMsg": ""}
                    if query.get("pin-roots", ["true"])[0] == "true":
                        kubo.pins.add(root)
                    lines.append(json.dumps({"Root": entry}))
                return self.answer(200, "".join(line + "\n" for line in lines))
            if url.path == "/api/v0/pin/add":
                args = query.get("arg", [])
                if not args:
                    return self.error(400, 'argument "ipfs-path" is required')
                cids = [CID.parse(a) for a in args]
                for cid in cids:
                    if not kubo.complete(cid):
                        return self.error(500, f"pin: block {cid} not found")
                kubo.pins.update(cids)
                return self.answer(200, json.dumps({"Pins": [str(c) for c in cids]}))
            if url.path == "/api/v0/version":
                return self.answer(200, json.dumps({"Version": "0.32.1"}))
            return self.answer(404, "404 page not found", "text/plain")

    return Handler


@contextmanager
def fake_kubo():
    kubo = FakeKubo()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kubo))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kubo, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def database(tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    address = json_out(data_dir, "db", "create", "log", "--type", "events")["address"]
    for n in range(4):
        run(data_dir, "db", "add", address, json.dumps({"n": n}))
    return data_dir, address


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pin_pushes_every_block_and_pins_the_roots(database):
    data_dir, address = database
    with fake_kubo() as (kubo, url):
        answer = json_out(data_dir, "pin", "remote", address, "--kubo", url)
        with Repo(data_dir) as repo:
            db = repo.database(address)
            expected = {db.manifest.cid: db.manifest.block}
            expected.update((e.cid, e.block) for e in db.entries())
            roots = [str(db.manifest.cid), *(str(h) for h in db.heads)]
    assert kubo.blocks == expected
    assert {str(p) for p in kubo.pins} == set(roots)
    assert all(kubo.complete(CID.parse(r)) for r in roots)
    assert answer["address"] == address and answer["blocks"] == 5
    assert answer["roots"] == roots and answer["pinned"] == roots
    assert [path for path, _ in kubo.calls] == ["/api/v0/dag/import", "/api/v0/pin/add"]
    assert kubo.calls[0][1]["pin-roots"] == ["false"]
    # Text output.
    with fake_kubo() as (_kubo, url):
        text = run(data_dir, "pin", "remote", address, "--kubo", url).stdout
    assert text == f"pinned {address} on {url}: 5 blocks, 2 roots\n"


def test_the_older_form_pin_address_is_pin_remote_with_a_warning(database):
    data_dir, address = database
    with fake_kubo() as (kubo, url):
        result = run(data_dir, "pin", address, "--kubo", url)
    assert result.stdout == f"pinned {address} on {url}: 5 blocks, 2 roots\n"
    assert "is now 'gridnode pin remote ADDRESS'" in result.stderr
    assert len(kubo.pins) == 2


def test_pin_errors_are_one_line_and_exit_1(database):
    data_dir, address = database
    line = refused(data_dir, "pin", "remote", address, "--kubo", f"http://127.0.0.1:{_free_port()}")
    assert "cannot reach Kubo's RPC API" in line
    with fake_kubo() as (kubo, url):
        kubo.fail = (
            500,
            json.dumps({"Message": "blockstore: disk full", "Code": 0, "Type": "error"}),
        )
        line = refused(data_dir, "pin", "remote", address, "--kubo", url)
        assert line == "error: Kubo refused dag/import (500): blockstore: disk full"
        kubo.fail = (200, "not json\n")
        line = refused(data_dir, "pin", "remote", address, "--kubo", url)
        assert "dag/import: the answer is not JSON" in line
        kubo.fail = None
        # Kubo's gateway or anything else at that URL: a 404 page.
        line = refused(data_dir, "pin", "remote", address, "--kubo", url + "/elsewhere")
        assert "Kubo refused dag/import (404): 404 page not found" in line
    refused(
        data_dir,
        "pin",
        "remote",
        "/gridnode/bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe",
        "--kubo",
        "http://127.0.0.1:1",
    )


def test_client_types_and_shapes():
    with fake_kubo() as (kubo, url), KuboClient(url, timeout=5) as client:
        assert client.version() == "0.32.1"
        with pytest.raises(KuboRefused) as caught:
            client.pin_add(["bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe"])
        assert caught.value.status == 500 and "not found" in str(caught.value)
        kubo.fail = (200, json.dumps({"Root": {"Cid": {"/": "x"}, "PinErrorMsg": "no space"}}))
        with pytest.raises(KuboRefused, match="could not pin root x: no space"):
            client.dag_import(b"")
        kubo.fail = (200, json.dumps({"Pins": "x"}))
        with pytest.raises(KuboRefused, match="unexpected answer"):
            client.pin_add(["x"])
    with (
        KuboClient(f"http://127.0.0.1:{_free_port()}", timeout=5) as client,
        pytest.raises(KuboUnreachable),
    ):
        client.version()
