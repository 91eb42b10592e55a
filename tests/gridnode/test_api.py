"""The local API (gridnode.api): a real node on 127.0.0.1 serving it in its trio loop, called over
HTTP with the CLI's client (in a thread, as the CLI calls it) and raw ``http.client`` requests."""

import http.client
import json
import math
import stat
from contextlib import asynccontextmanager
from urllib.parse import quote, urlsplit

import pytest
import trio

from crdt.errors import GridnodeError, InvalidOperation
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from gridnode import api, errors, ops
from gridnode.api import asgi, routes
from gridnode.api.openapi import openapi
from gridnode.node import open_node
from gridnode.repo import Repo
from gridnode.storage import DB_FILE

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


@asynccontextmanager
async def serving(data_dir, **kwargs):
    """A node on ``data_dir`` serving its API; yields ``(node, client)``."""
    async with (
        open_node(
            data_dir,
            listen=LOOPBACK,
            announce_interval=kwargs.pop("announce_interval", math.inf),
            **kwargs,
        ) as node,
        api.serve_api(node, data_dir) as url,
    ):
        token = (data_dir / api.TOKEN_FILE).read_text().strip()
        yield node, api.ApiClient(url, token, timeout=30)


async def call(fn, *args, **kwargs):
    """A blocking client call, off the trio loop (the API answers from this same loop)."""
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def raw(client, method, path, body=None, headers=None, token=True):
    """``(status, parsed JSON or bytes, headers)`` of one raw request."""

    def go():
        parts = urlsplit(client.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        sent = dict(headers or {})
        if token is True:
            sent["Authorization"] = client._auth
        elif token is not None:
            sent["Authorization"] = token
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.getheader("content-type") == "application/json":
            return response.status, json.loads(data), dict(response.getheaders())
        return response.status, data, dict(response.getheaders())

    return await trio.to_thread.run_sync(go)


def run(test):
    """Run ``test`` (an async function) under trio, with a bound on its time."""

    async def bounded():
        with trio.fail_after(60):
            await test()

    trio.run(bounded)


# -- authentication and files ----------------------------------------------------------------------


def test_token_and_address_files_exist_while_serving_and_go_away(tmp_path):
    data_dir = tmp_path / "node"

    async def test():
        async with serving(data_dir) as (node, client):
            token_file = data_dir / api.TOKEN_FILE
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            assert (data_dir / api.API_FILE).read_text().strip() == client.url
            assert client.url.startswith("http://127.0.0.1:")
            hello = await raw(client, "GET", "/")
            assert hello[0] == 200
            assert hello[1] == {"peer_id": node.peer_id, "identity": node.repo.did}
        assert not (data_dir / api.API_FILE).exists()
        assert not token_file.exists()

    run(test)


def test_files_are_removed_when_the_block_fails(tmp_path):
    data_dir = tmp_path / "node"

    async def test():
        with pytest.raises(RuntimeError, match="boom"):
            async with serving(data_dir):
                assert (data_dir / api.API_FILE).exists()
                raise RuntimeError("boom")
        assert not (data_dir / api.API_FILE).exists()
        assert not (data_dir / api.TOKEN_FILE).exists()

    run(test)


def test_requests_without_the_token_are_refused(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            for token in (None, "Bearer nope", "Basic " + client._auth[7:], client._auth + "x"):
                for method, path in (
                    ("GET", "/status"),
                    ("GET", "/db"),
                    ("POST", "/db"),
                    ("GET", "/nowhere"),
                ):
                    status, body, headers = await raw(client, method, path, token=token)
                    assert status == 401, (token, path)
                    assert "error" in body
                    assert headers["www-authenticate"] == "Bearer"
            wrong = api.ApiClient(client.url, "not-the-token")
            with pytest.raises(errors.TokenRefused):
                await call(wrong.databases)
            with pytest.raises(errors.TokenRefused):
                await call(wrong.answers)

    run(test)


# -- errors: 400, 404, 405, 409 ------------------------------------------------------------------------


def test_unknown_database_and_endpoint_are_404(tmp_path):
    missing = "bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe"

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            for path in (
                f"/db/{missing}",
                f"/db/{missing}/log",
                "/db/nosuchname/get?key=k",
                "/db/x/y/z",
                "/nowhere",
            ):
                status, body, _ = await raw(client, "GET", path)
                assert status == 404, path
                assert set(body) == {"error"}
            status, body, _ = await raw(client, "POST", f"/db/{missing}/ops", body=b"[]")
            assert status == 404
            with pytest.raises(errors.NotFound, match="no database"):
                await call(client.database, missing)

    run(test)


def test_wrong_method_is_405(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            status, body, headers = await raw(client, "DELETE", "/db")
            assert status == 405
            assert headers["allow"] == "GET, POST"
            assert "error" in body

    run(test)


def test_malformed_requests_are_400_never_500(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            kv = (await call(client.create, ops.CreateRequest("kv", "keyvalue")))["address"]
            docs = await call(
                client.create, ops.CreateRequest("docs", "documents", indexes=["year"])
            )
            cid = kv.removeprefix("/gridnode/")
            dcid = docs["address"].removeprefix("/gridnode/")
            bad = [
                ("POST", "/db", b"{oops"),
                ("POST", "/db", b""),
                ("POST", "/db", b"[]"),
                ("POST", "/db", b'{"name": "x", "type": "graph"}'),
                ("POST", "/db", b'{"name": "x", "type": "keyvalue", "writers": ["did:key:nope"]}'),
                ("POST", "/db", b'{"name": "x", "type": "keyvalue", "indexes": ["a"]}'),
                ("POST", "/db", b'{"name": "x", "type": "keyvalue", "colour": 1}'),
                ("POST", "/db", b'{"name": "x", "type": "keyvalue", "public": "yes"}'),
                ("POST", "/db", b'{"name": "x", "type": "keyvalue", "readers": ["did:key:nope"]}'),
                (
                    "POST",
                    "/db",
                    b'{"name": "x", "type": "keyvalue", "private": true, "readers": [1]}',
                ),
                (
                    "POST",
                    "/db",
                    b'{"name": "x", "type": "keyvalue", "private": true, "readers": ["did:key:nope"]}',
                ),
                (
                    "POST",
                    "/db",
                    b'{"name": "x", "type": "keyvalue", "private": true, "public": true}',
                ),
                ("POST", "/db", b'{"a": 1, "a": 2}'),
                ("POST", "/db", b'{"/": "not a cid"}'),
                ("POST", "/db", b"\xff\xfe"),
                ("POST", f"/db/{cid}/ops", b'{"op": "put"}'),
                ("POST", f"/db/{cid}/ops", b"[]"),
                ("POST", f"/db/{cid}/ops", b'[{"op": "put", "key": 1, "value": 2}]'),
                ("POST", f"/db/{cid}/ops", b"[NaN]"),
                ("GET", f"/db/{cid}/get", None),
                ("GET", f"/db/{cid}/get?key=a&id=1", None),
                ("GET", f"/db/{dcid}/get?id=%7Boops", None),
                ("GET", f"/db/{dcid}/get?id=1.5", None),
                ("GET", f"/db/{cid}/get?key=a&key=b", None),
                ("GET", f"/db/{dcid}/query?field=colour", None),
                ("GET", f"/db/{dcid}/query?field=year&eq=1&gt=0", None),
                ("GET", f"/db/{dcid}/query?eq=%7Boops", None),
                ("GET", f"/db/{dcid}/query?limit=-1", None),
                ("GET", f"/db/{cid}/log?limit=ten", None),
                ("GET", f"/db/{cid}/log?limit=9223372036854775808", None),  # 2**63
                ("GET", f"/db/{cid}?digest=maybe", None),
                ("GET", "/db/%ff", None),
                ("POST", "/follow", b'{"address": 1}'),
                ("POST", "/follow", b'{"address": "not a cid"}'),
                ("POST", "/import", b"garbage"),
                ("POST", "/import", b""),
            ]
            for method, path, body in bad:
                status, answer, _ = await raw(client, method, path, body=body)
                assert status == 400, (path, body, status, answer)
                assert isinstance(answer["error"], str) and answer["error"], answer
            # An invalid op is named by its index.
            status, answer, _ = await raw(
                client,
                "POST",
                f"/db/{cid}/ops",
                body=b'[{"op": "put", "key": "a", "value": 1}, {"op": "inc"}]',
            )
            assert status == 400
            assert answer["index"] == 1
            assert answer["error"] == "ops[1]: " + answer["reason"]
            with pytest.raises(InvalidOperation) as caught:
                await call(
                    client.write,
                    kv,
                    [{"op": "put", "key": "a", "value": 1}, {"op": "inc"}],
                    ["line 1", "line 2"],
                )
            assert str(caught.value).startswith("line 2: ")
            # Nothing of a refused batch was written.
            assert (await call(client.database, kv))["entries"] == 0

    run(test)


def test_a_database_this_node_may_not_write_or_a_wrong_verb_is_409(tmp_path):
    other = tmp_path / "other"
    with Repo(other) as repo:
        theirs = repo.create_database("theirs", "keyvalue")
        manifest = theirs.manifest
    data_dir = tmp_path / "node"
    with Repo(data_dir) as repo:
        repo.add_database(manifest)

    async def test():
        async with serving(data_dir) as (_node, client):
            status, answer, _ = await raw(
                client,
                "POST",
                f"/db/{manifest.cid}/ops",
                body=b'[{"op": "put", "key": "a", "value": 1}]',
            )
            assert status == 409
            assert "is not a writer" in answer["error"]
            for path in (
                f"/db/{manifest.cid}/value",
                f"/db/{manifest.cid}/iter",
                f"/db/{manifest.cid}/query",
            ):
                status, answer, _ = await raw(client, "GET", path)
                assert status == 409, path
                assert "keyvalue database" in answer["error"]
            assert (await call(client.database, manifest.address))["may_write"] is False

    run(test)


def test_a_body_over_the_limit_is_413(tmp_path, monkeypatch):
    monkeypatch.setattr(asgi, "MAX_JSON_BYTES", 1000)

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            status, answer, _ = await raw(client, "POST", "/db", body=b" " * 2000)
            assert status == 413
            assert "error" in answer

    run(test)


def test_a_client_that_goes_away_mid_body_leaves_no_error(tmp_path, caplog):
    """hypercorn answers a truncated request itself; the app must not answer it a second time
    (that raced with hypercorn's own answer on the socket and logged a traceback)."""

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            port = int(client.url.rsplit(":", 1)[1])
            for attempt in range(60):
                sock = trio.socket.socket()
                await sock.connect(("127.0.0.1", port))
                # With the token the app waits for the body; without, it answers 401 at once.
                auth = b"Authorization: " + client._auth.encode() + b"\r\n" if attempt % 2 else b""
                request = (
                    b"POST /db HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n" + auth + b"\r\nabc"
                )
                await sock.send(request)
                sock.shutdown(trio.socket.SHUT_WR)
                answer = await sock.recv(100)
                sock.close()
                assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 401")), answer
            assert (await call(client.databases)) == []

    with caplog.at_level("WARNING"):
        run(test)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text


# -- 500: the node's own fault ----------------------------------------------------------------------


def test_an_export_never_sends_a_damaged_block(tmp_path, caplog):
    """A stored entry block damaged on disk (one byte flipped in the SQLite file, as bit rot
    would) is found when a live node exports: ``GET /db/{db}/car`` answers 500 naming the
    block, never a 200 CAR holding it, and the client's export raises and leaves no file."""
    data_dir = tmp_path / "node"
    values = [f"payload-{i:04d}-" + "z" * 40 for i in range(5)]

    async def write():
        async with serving(data_dir) as (_node, client):
            made = await call(client.create, ops.CreateRequest("rot", "keyvalue"))
            written = await call(
                client.write,
                made["address"],
                [{"op": "put", "key": f"k{i}", "value": v} for i, v in enumerate(values)],
            )
            return made["address"], written["entries"]

    address, entries = trio.run(write)
    bad = entries[2]
    with Repo(data_dir) as repo:
        block = repo.database(address).block(CID.parse(bad))
    # The node stopped: its write-ahead log is in the main file, where the block is flipped.
    assert not (data_dir / (DB_FILE + "-wal")).exists()
    path = data_dir / DB_FILE
    data = bytearray(path.read_bytes())
    at = data.find(block)
    assert at >= 0 and data.find(block, at + 1) < 0
    data[at + block.index(b"payload-") + len("payload-")] ^= 0x01  # '0' -> '1': still CBOR
    path.write_bytes(bytes(data))

    async def test():
        async with serving(data_dir) as (_node, client):
            status, answer, headers = await raw(client, "GET", f"/db/{quote(address, safe='')}/car")
            assert status == 500, (status, answer)
            assert bad in answer["error"] and "does not hash to its CID" in answer["error"]
            assert headers["x-gridnode-error"] == "CorruptBlock"
            car = tmp_path / "rot.car"
            with pytest.raises(errors.CorruptBlock, match=bad) as raised:
                await call(client.export, address, car)
            assert isinstance(raised.value, GridnodeError)
            assert not car.exists() and not car.with_name("rot.car.tmp").exists()
            # The rest of the database still reads, and the node still answers.
            assert (await call(client.read, "get", address, key="k1"))["value"] == values[1]
            assert (await call(client.status))["running"] is True

    with caplog.at_level("ERROR"):
        run(test)
    # The operator hears of it: the API logs the error it answered.
    assert [r for r in caplog.records if r.name == "gridnode.api.asgi" and bad in r.getMessage()]


# -- every endpoint, working -----------------------------------------------------------------------------


def test_every_endpoint(tmp_path):
    data_dir = tmp_path / "node"

    async def test():
        async with serving(data_dir) as (node, client):
            hello = await call(client.request_json, "GET", "/")
            assert hello["peer_id"] == node.peer_id

            # POST /db, GET /db, GET /db/{cid}
            kv = await call(client.create, ops.CreateRequest("people", "keyvalue", writers=[]))
            assert kv["name"] == "people" and kv["type"] == "keyvalue"
            assert kv["admins"] == [node.repo.did] and kv["writers"] == [node.repo.did]
            address = kv["address"]
            assert node.replicating(address)  # replicated as soon as created
            docs = await call(
                client.create,
                ops.CreateRequest("books", "documents", indexes=["year", "year"], index_by="id"),
            )
            assert docs["options"] == {"indexBy": "id", "indexes": ["year"]}
            listed = await call(client.databases)
            assert [d["name"] for d in listed] == ["books", "people"]
            assert listed[1] == {
                "address": address,
                "name": "people",
                "type": "keyvalue",
                "entries": 0,
            }
            info = await call(
                client.request_json, "GET", "/db/" + address.removeprefix("/gridnode/")
            )
            assert info["entries"] == 0 and info["heads"] == [] and info["may_write"] is True
            assert len(info["digest"]) == 64
            # A database is also found by its name, or its full address.
            assert (await call(client.database, "people"))["address"] == address
            assert (await call(client.database, address))["address"] == address
            assert "digest" not in await call(client.database, address)

            # POST /db/{cid}/ops: written through the node, durable, announced.
            result = await call(
                client.write,
                address,
                [
                    {"op": "put", "key": "alice", "value": {"age": 33, "photo": b"\x00\x01"}},
                    {"op": "put", "key": "bob", "value": 1},
                ],
            )
            assert result["written"] == 2 and len(result["entries"]) == 2
            assert result["heads"] == [result["entries"][1]]
            assert await node.read(address, lambda d: d.store.get("bob")) == 1

            # GET get / log
            got = await call(client.read, "get", address, key="alice")
            assert got == {"key": "alice", "value": {"age": 33, "photo": b"\x00\x01"}}
            with pytest.raises(errors.NotFound, match="no key 'carol'"):
                await call(client.read, "get", address, key="carol")
            log = (await call(client.read, "log", address))["entries"]
            assert [e["cid"] for e in log] == result["entries"]
            assert (
                log[0]["clock"] == 1
                and log[0]["author"] == node.repo.did
                and log[1]["next"] == [log[0]["cid"]]
            )
            assert log[1]["payload"] == {"op": "put", "key": "bob", "value": 1}
            assert len((await call(client.read, "log", address, limit=1))["entries"]) == 1

            # documents: get by id (string or integer) and query
            await call(
                client.write,
                docs["address"],
                [
                    {"op": "put", "doc": {"id": "b1", "year": 1965}},
                    {"op": "put", "doc": {"id": 7, "year": 1984}},
                    {"op": "put", "doc": {"id": "b3", "year": 1989.0}},
                ],
            )
            assert (await call(client.read, "get", docs["address"], id=7))["value"] == {
                "id": 7,
                "year": 1984,
            }
            assert (await call(client.read, "get", docs["address"], key="b1"))["value"][
                "year"
            ] == 1965
            found = await call(
                client.read, "query", docs["address"], field="year", gte=1980, reverse=True
            )
            assert found["index_by"] == "id"
            assert [d["id"] for d in found["documents"]] == ["b3", 7]
            found = await call(client.read, "query", docs["address"], field="year", eq=1989)
            assert [d["id"] for d in found["documents"]] == ["b3"]
            found = await call(client.read, "query", docs["address"], limit=2)
            assert [d["id"] for d in found["documents"]] == [7, "b1"]

            # events, set, counter: iter and value
            feed = (await call(client.create, ops.CreateRequest("feed", "events")))["address"]
            tags = (await call(client.create, ops.CreateRequest("tags", "set", public=True)))[
                "address"
            ]
            hits = (await call(client.create, ops.CreateRequest("hits", "counter")))["address"]
            added = await call(client.write, feed, [{"op": "add", "value": i} for i in range(3)])
            items = (await call(client.read, "iter", feed, limit=2, reverse=True))["items"]
            assert items == [
                {"cid": added["entries"][2], "value": 2},
                {"cid": added["entries"][1], "value": 1},
            ]
            await call(
                client.write, tags, [{"op": "add", "value": "red"}, {"op": "add", "value": "blue"}]
            )
            # A remove without tags names every add of the member this node holds.
            await call(client.write, tags, [{"op": "remove", "value": "red"}])
            assert (await call(client.read, "iter", tags))["items"] == [{"value": "blue"}]
            with pytest.raises(errors.NotFound, match="not a member"):
                await call(client.write, tags, [{"op": "remove", "value": "green"}])
            inc = await call(client.write, hits, [{"op": "inc", "by": 5}, {"op": "inc", "by": -2}])
            assert inc["value"] == 3
            assert await call(client.read, "value", hits) == {"address": hits, "value": 3}

            # GET /db/{cid}/car, then POST /import into another node
            car = tmp_path / "people.car"
            exported = await call(client.export, address, car)
            assert exported == {"address": address, "file": str(car), "blocks": 3}
            status, data, headers = await raw(client, "GET", f"/db/{quote(address, safe='')}/car")
            assert status == 200 and headers["content-type"] == api.CAR_TYPE
            assert data == car.read_bytes()

            # GET /status and /peers
            status = await call(client.status)
            assert status["running"] is True and status["peer_id"] == node.peer_id
            assert status["identity"] == node.repo.did and status["addrs"] == node.addrs
            assert status["peers"] == [] and status["api"] == client.url
            by_name = {d["name"]: d for d in status["databases"]}
            assert by_name["people"] == {
                "address": address,
                "name": "people",
                "type": "keyvalue",
                "entries": 2,
                "head_count": 1,
                "replicating": True,
                "catalog": [],
                "syncs": [],
                # Alone, it holds the newest entries itself; nobody else stated holding them.
                "replicas": {"holders": 0, "in_sync": 0, "behind": {}, "newest_entries": 2},
            }
            peers = await call(client.peers)
            assert peers == {
                "running": True,
                "identity": node.repo.did,
                "peer_id": node.peer_id,
                "peers": [],
            }

        async with serving(tmp_path / "second") as (second, client2):
            report = await call(client2.import_car, car.read_bytes())
            assert report == {
                "address": address,
                "applied": 2,
                "duplicates": 0,
                "pending": 0,
                "rejected": [],
            }
            assert second.replicating(address)
            assert (await call(client2.read, "get", address, key="bob"))["value"] == 1
            again = await call(client2.import_car, car.read_bytes())
            assert again["duplicates"] == 2 and again["applied"] == 0

    run(test)


def test_follow_and_status_show_the_sync(tmp_path):
    """Two nodes: the second follows a database of the first through the API, writes to it, and
    both converge; /status shows the last sync from the peer."""
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    with Repo(second_dir) as repo:
        second_did = repo.did

    async def test():
        async with serving(first_dir, announce_interval=0.5) as (a, client_a):
            shared = await call(
                client_a.create, ops.CreateRequest("shared", "keyvalue", writers=[second_did])
            )
            address = shared["address"]
            await call(client_a.write, address, [{"op": "put", "key": "from a", "value": 1}])
            async with serving(second_dir, bootstrap=a.addrs, announce_interval=0.5) as (
                b,
                client_b,
            ):
                with trio.fail_after(20):
                    while not b.peers():
                        await trio.sleep(0.05)
                followed = await call(client_b.follow, address)
                assert followed["address"] == address and followed["may_write"] is True
                await call(client_b.write, address, [{"op": "put", "key": "from b", "value": 2}])
                with trio.fail_after(30):
                    while True:
                        da = (await call(client_a.database, address, digest=True))["digest"]
                        db = (await call(client_b.database, address, digest=True))["digest"]
                        if da == db:
                            break
                        await trio.sleep(0.1)
                assert (await call(client_a.read, "get", address, key="from b"))["value"] == 2
                assert (await call(client_a.status))["peers"] == [b.peer_id]
                # The follower pulled from the first node (the first may have had b's write
                # inline in an announcement, with no pull).
                status = await call(client_b.status)
                assert status["peers"] == [a.peer_id]
                assert status["bitswap"] == b.bitswap.stats.as_dict()  # nothing asked by bitswap
                assert status["bitswap"]["violations"] == 0
                syncs = {d["address"]: d["syncs"] for d in status["databases"]}[address]
                assert syncs and syncs[0]["peer"] == a.peer_id
                assert syncs[0]["seconds_ago"] >= 0 and syncs[0]["pulls"] >= 1
                assert {
                    "applied",
                    "rejected",
                    "round_trips",
                    "messages",
                    "bytes_sent",
                    "bytes_received",
                    "entries_received",
                    "overhead_bytes",
                    "complete",
                    "error",
                } <= set(syncs[0])
                assert syncs[0]["total_round_trips"] >= syncs[0]["round_trips"] >= 1
                assert syncs[0]["bytes_sent"] > 0 and syncs[0]["messages"] >= 2
                # The first node counted what it served the follower.
                served = (await call(client_a.status))["served"]
                assert served[b.peer_id]["streams"] >= 1 and served[b.peer_id]["bytes_sent"] > 0
                peers = await call(client_b.peers)
                assert peers["peers"] == [{"peer_id": a.peer_id, "strikes": 0}]
                # Following a database no connected peer keeps is a 404.
                with pytest.raises(errors.NotFound):
                    await call(
                        client_b.follow,
                        "bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe",
                    )

    run(test)


# -- unfollow, events, the OpenAPI document; what schemathesis found ----------------------------


def test_unfollow_stops_replicating_and_follow_resumes(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (node, client):
            kv = (await call(client.create, ops.CreateRequest("kv", "keyvalue")))["address"]
            await call(client.write, kv, [{"op": "put", "key": "k", "value": 1}])
            assert node.replicating(kv)
            gone = await call(client.unfollow, kv)
            assert gone == {"address": kv, "replicating": False}
            assert not node.replicating(kv)
            status = await call(client.status)
            assert [d["replicating"] for d in status["databases"]] == [False]
            # The data stays; a second unfollow is a 404; follow replicates it again.
            assert (await call(client.read, "get", kv, key="k"))["value"] == 1
            with pytest.raises(errors.NotFound, match="does not replicate"):
                await call(client.unfollow, kv)
            assert (await call(client.follow, kv))["entries"] == 1
            assert node.replicating(kv)
            for body in (b"{}", b'{"address": 1}', b'{"address": "not a cid"}', b"[]"):
                status, answer, _ = await raw(client, "POST", "/unfollow", body)
                assert status == 400, (body, answer)

    run(test)


def test_unfollow_is_kept_across_a_restart(tmp_path):
    data_dir = tmp_path / "node"

    async def test():
        async with serving(data_dir) as (node, client):
            kv = (await call(client.create, ops.CreateRequest("kv", "keyvalue")))["address"]
            await call(client.unfollow, kv)
        async with serving(data_dir) as (node, client):
            assert not node.replicating(kv)  # the restart left it alone
            assert [d["replicating"] for d in (await call(client.status))["databases"]] == [False]
            await call(client.follow, kv)
        async with serving(data_dir) as (node, client):
            assert node.replicating(kv)  # following it again was kept too

    run(test)


def test_events_list_rejections_newest_first(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (node, client):
            assert await call(client.request_json, "GET", "/events") == {"events": []}
            node.note("sync-failed", "first", peer="p1")
            node.note("rejected", "second", address="/gridnode/x")
            events = (await call(client.request_json, "GET", "/events"))["events"]
            assert [e["text"] for e in events] == ["second", "first"]
            assert events[0]["kind"] == "rejected" and events[0]["address"] == "/gridnode/x"
            assert events[1]["peer"] == "p1" and events[1]["at"] > 0
            one = await call(client.request_json, "GET", "/events?limit=1")
            assert [e["text"] for e in one["events"]] == ["second"]
            for query in ("limit=", "limit=-1", "limit=x", "limit=%D9%A1"):
                status, _, _ = await raw(client, "GET", "/events?" + query)
                assert status == 400, query
            for _ in range(node.stats.events.maxlen + 10):
                node.note("strike", "more")
            assert len(node.stats.events) == node.stats.events.maxlen

    run(test)


def test_openapi_and_dashboard_answer_without_the_token_and_hold_no_data(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (node, client):
            status, spec, _ = await raw(client, "GET", "/openapi.json", token=None)
            assert status == 200 and spec["openapi"] == "3.1.0"
            assert node.peer_id not in json.dumps(spec)
            served = {(path, method.lower()) for method, path in routes.ROUTES}
            described = {(path, m) for path, item in spec["paths"].items() for m in item}
            assert described == served
            status, page, headers = await raw(client, "GET", "/dashboard", token=None)
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert node.peer_id.encode() not in page
            # Only GET, and only these two.
            for method, path in (
                ("POST", "/dashboard"),
                ("GET", "/dashboard/x"),
                ("GET", "/metrics"),
            ):
                status, _, _ = await raw(client, method, path, token=None)
                assert status == 401, (method, path)

    run(test)


def test_a_read_registered_in_ops_is_in_the_document_without_an_edit_of_it(monkeypatch):
    """The reads' paths, parameters and statuses come from gridnode.ops.READS."""
    tail = ops.Read(
        "tail",
        lambda database, n=None, whole=False: {},
        (ops.Param("n", "int", "how many"), ops.Param("whole", "bool", "all of them")),
        ("events",),
        "The last events.",
    )
    monkeypatch.setitem(ops.READS, "tail", tail)
    operation = openapi("0")["paths"]["/db/{db}/tail"]["get"]
    assert operation["summary"] == "The last events."
    assert {p["name"]: (p["in"], p["schema"]) for p in operation["parameters"]} == {
        "db": ("path", {"type": "string", "minLength": 1}),
        "n": ("query", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}),
        "whole": ("query", {"type": "boolean"}),
    }
    # Limited to some store types: 409 on the others.
    assert set(operation["responses"]) == {"200", "400", "401", "404", "409"}


def test_create_refuses_what_schemathesis_found(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            for body in (
                {"name": "x", "type": {}},  # was a 500 (unhashable)
                {"name": "x", "type": ["documents"]},
                {"name": "x", "type": "documents", "indexes": [""]},  # was stored, broke /db
                {"name": "x", "type": "documents", "index_by": ""},
            ):
                status, answer, _ = await raw(
                    client,
                    "POST",
                    "/db",
                    json.dumps(body).encode(),
                    {"Content-Type": "application/json"},
                )
                assert status == 400, (body, answer)
            assert await call(client.databases) == []
            status, _, _ = await raw(client, "GET", "/status")
            assert status == 200

    run(test)


def test_a_database_whose_store_does_not_open_does_not_fail_the_listings(tmp_path):
    """Options a store cannot use can still reach a data directory (an older node, a peer's
    manifest): the listings name that database with its error instead of failing."""
    data_dir = tmp_path / "node"
    with Repo(data_dir) as repo:
        # Repo.add_database refuses such a manifest now; an older node kept it as it came, as
        # written here by hand.
        from crdt.manifest import create_manifest

        with pytest.raises(GridnodeError):
            repo.create_database("bad", "documents", options={"indexes": [""]})
        assert repo.databases() == []
        manifest = create_manifest(
            "bad", "documents", admins=[repo.did], writers=[repo.did], options={"indexes": [""]}
        )
        with repo.sql.transaction():
            repo.sql.put_block(manifest.cid.bytes, manifest.block)
            repo.sql.conn.execute(
                "INSERT INTO databases (address, manifest_cid, name, store) VALUES (?, ?, ?, ?)",
                (manifest.address, manifest.cid.bytes, manifest.name, manifest.store),
            )
        bad = manifest.address
        repo.create_database("good", "keyvalue")

    async def test():
        async with serving(data_dir) as (_node, client):
            listed = {d["name"]: d for d in await call(client.databases)}
            assert listed["good"]["entries"] == 0 and "error" not in listed["good"]
            assert listed["bad"]["address"] == bad and "indexes" in listed["bad"]["error"]
            status = await call(client.status)
            assert {d["name"] for d in status["databases"]} == {"bad", "good"}
            code, text, _ = await raw(client, "GET", "/metrics")
            assert code == 200 and b'name="bad"' in text
            # The node started without replicating it, and says why.
            assert not _node.replicating(bad) and _node.replicating(listed["good"]["address"])
            events = (await call(client.request_json, "GET", "/events"))["events"]
            assert events[0]["address"] == bad and "cannot open" in events[0]["text"]

    run(test)


def test_create_a_private_database_with_readers(tmp_path):
    """``POST /db`` with ``private`` and ``readers``: 201 with the manifest, readers included;
    ``GET /db/{db}`` says private."""
    reader = Keypair.from_seed(bytes([5]) * 32).did

    async def test():
        async with serving(tmp_path / "node") as (node, client):
            request = ops.CreateRequest("p", "keyvalue", private=True, readers=[reader])
            created = await call(client.create, request)
            assert created["readers"] == [reader]
            info = await call(client.database, created["address"])
            assert info["private"] is True and info["readers"] == [reader]
            made = await node.create_database("q", "events", private=True, readers=[reader])
            assert made.manifest.private and made.manifest.readers == (reader,)

    run(test)
