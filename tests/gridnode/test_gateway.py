"""The trustless gateway (gridnode.api.gateway, ``GET /ipfs/{cid}``) on a real node's HTTP server."""

from urllib.parse import quote

import pytest
import trio

from crdt.entry import decode_entry
from crdt.ipld.car import read_car
from crdt.ipld.cid import CID
from gridnode import errors, ops
from tests.gridnode.test_api import call, raw, run, serving

RAW = {"Accept": "application/vnd.ipld.raw"}
CAR = {"Accept": "application/vnd.ipld.car"}


async def _database(client, name="log", count=5):
    address = (await call(client.create, ops.CreateRequest(name, "events")))["address"]
    for n in range(count):
        await call(client.write, address, [{"op": "add", "value": n}])
    info = await call(client.database, address)
    cid = address.rsplit("/", 1)[1]
    return address, cid, info


def test_raw_blocks_hash_to_their_cids_without_the_token(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            address, manifest, info = await _database(client)
            status, log, _ = await raw(client, "GET", f"/db/{manifest}/log")
            assert status == 200
            cids = [manifest, *(e["cid"] for e in log["entries"])]
            assert len(cids) == 6
            for text in cids:
                for how in (
                    {"headers": RAW, "path": f"/ipfs/{text}"},
                    {"headers": {}, "path": f"/ipfs/{text}?format=raw"},
                ):
                    status, body, headers = await raw(
                        client, "GET", how["path"], headers=how["headers"], token=None
                    )
                    assert status == 200, (text, body)
                    CID.parse(text).verify(body)
                    assert headers["content-type"] == "application/vnd.ipld.raw"
                    assert headers["x-content-type-options"] == "nosniff"
                    assert headers["cache-control"] == "public, max-age=29030400, immutable"
                    assert headers["etag"] == f'"{text}.raw"'
                    assert int(headers["content-length"]) == len(body)
                # HEAD: the same headers, no body; If-None-Match: 304.
                status, body, headers = await raw(
                    client, "HEAD", f"/ipfs/{text}", headers=RAW, token=None
                )
                assert status == 200 and body == b""
                assert headers["etag"] == f'"{text}.raw"' and int(headers["content-length"]) > 0
                status, body, _ = await raw(
                    client,
                    "GET",
                    f"/ipfs/{text}",
                    headers={**RAW, "If-None-Match": f'"{text}.raw"'},
                    token=None,
                )
                assert status == 304 and body == b""
            assert info["entries"] == 5 and address.endswith(manifest)

    run(test)


def test_car_of_a_manifest_is_the_database_and_of_an_entry_its_past(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            _address, manifest, info = await _database(client)
            status, export, _ = await raw(client, "GET", f"/db/{manifest}/car")
            assert status == 200
            status, car, headers = await raw(
                client, "GET", f"/ipfs/{manifest}", headers=CAR, token=None
            )
            assert status == 200
            assert headers["content-type"].startswith("application/vnd.ipld.car; version=1")
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["etag"].startswith("W/")
            header, blocks = read_car(car)  # verifies every block
            assert car == export
            assert [str(r) for r in header.roots] == [manifest, *info["heads"]]
            assert len(blocks) == 6
            # The same with ?format=car; dag-scope=block: the manifest alone.
            status, same, _ = await raw(client, "GET", f"/ipfs/{manifest}?format=car", token=None)
            assert status == 200 and same == car
            status, one, _ = await raw(
                client, "GET", f"/ipfs/{manifest}?format=car&dag-scope=block", token=None
            )
            header, only = read_car(one)
            assert [str(r) for r in header.roots] == [manifest]
            assert [str(c) for c, _ in only] == [manifest]

            # An entry: itself, then (depth first) its manifest and its causal past.
            head = info["heads"][0]
            status, car, headers = await raw(
                client, "GET", f"/ipfs/{head}", headers=CAR, token=None
            )
            assert status == 200
            assert headers["cache-control"] == "public, max-age=29030400, immutable"
            assert "order=dfs" in headers["content-type"]
            header, blocks = read_car(car)
            assert [str(r) for r in header.roots] == [head]
            assert str(blocks[0][0]) == head and str(blocks[1][0]) == manifest
            assert {str(c) for c, _ in blocks} == {str(c) for c, _ in read_car(export)[1]}
            assert len(blocks) == len({c for c, _ in blocks})
            # The oldest entry: it and the manifest.
            first = str(read_car(export)[1][1][0])
            _, blocks = read_car(
                (await raw(client, "GET", f"/ipfs/{first}?format=car", token=None))[1]
            )
            assert [str(c) for c, _ in blocks] == [first, manifest]
            assert decode_entry(blocks[0][0], blocks[0][1]).next == ()
            status, car, _ = await raw(
                client, "GET", f"/ipfs/{head}?dag-scope=block", headers=CAR, token=None
            )
            assert [str(c) for c, _ in read_car(car)[1]] == [head]

    run(test)


def test_errors_and_unreplicated_databases(tmp_path):
    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            address, manifest, _info = await _database(client, count=1)
            # Not a CID: 400; a CID the node does not have: 404.
            for bad in ("nope", "bafy", quote("/gridnode/x", safe="")):
                status, answer, _ = await raw(
                    client, "GET", f"/ipfs/{bad}", headers=RAW, token=None
                )
                assert status == 400, (bad, answer)
                assert "error" in answer
            unknown = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            status, answer, _ = await raw(
                client, "GET", f"/ipfs/{unknown}", headers=RAW, token=None
            )
            assert status == 404 and "error" in answer
            # Neither raw nor CAR asked for: 406; a bad format or scope: 400.
            for headers in (
                {},
                {"Accept": "text/html"},
                {"Accept": "*/*"},
                {"Accept": "application/vnd.ipld.car; version=2"},
                {"Accept": "application/vnd.ipld.raw; q=0"},
            ):
                status, answer, _ = await raw(
                    client, "GET", f"/ipfs/{manifest}", headers=headers, token=None
                )
                assert status == 406, headers
            for query in ("format=html", "format=car&dag-scope=nope"):
                status, answer, _ = await raw(
                    client, "GET", f"/ipfs/{manifest}?{query}", token=None
                )
                assert status == 400, query
            # Read-only; and no paths below a CID that is not UnixFS (issue 23: paths below
            # UnixFS CIDs are public, tests/gridnode/test_unixfs_http.py).
            status, _, _ = await raw(client, "POST", f"/ipfs/{manifest}", token=None)
            assert status == 401
            status, _, _ = await raw(client, "GET", f"/ipfs/{manifest}/x", headers=RAW, token=None)
            assert status == 404
            # An unfollowed database is not served.
            await call(client.unfollow, address)
            status, _, _ = await raw(client, "GET", f"/ipfs/{manifest}", headers=RAW, token=None)
            assert status == 404

    run(test)


# -- strangers: Host, streaming, the heavy limit (issue 18, item 6) --------------------------------


def _raw_host(url, host, path):
    """Status line and headers of ``GET path`` sent with ``Host: host`` on a raw socket, as a
    browser tricked by DNS rebinding would send it."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_request_for_another_host_is_refused_before_anything(tmp_path):
    """DNS rebinding: a page on evil.example re-points its name at 127.0.0.1 and its script asks
    the loopback gateway (and the API). Any Host but the API's own address (or a configured
    ``gateway_hosts`` name) gets 421, before the token and the path are looked at."""
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    (data_dir / "gridnode.toml").write_text('gateway_hosts = ["gateway.example.org"]\n')

    async def test():
        async with serving(data_dir) as (_node, client):
            _address, manifest, _info = await _database(client)
            port = int(client.url.rsplit(":", 1)[1].strip("/"))
            for path in (f"/ipfs/{manifest}?format=car", "/openapi.json", "/status", "/nowhere"):
                for host in ("evil.example", f"evil.example:{port}", "127.0.0.1:1", ""):
                    answer = await trio.to_thread.run_sync(_raw_host, client.url, host, path)
                    assert answer.startswith(b"HTTP/1.1 421 "), (host, path, answer[:80])
                for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
                    answer = await trio.to_thread.run_sync(_raw_host, client.url, host, path)
                    assert not answer.startswith(b"HTTP/1.1 421 "), (host, path)
                # The configured public name, with any port (a reverse proxy's).
                for host in ("gateway.example.org", "Gateway.Example.Org:443"):
                    answer = await trio.to_thread.run_sync(_raw_host, client.url, host, path)
                    assert not answer.startswith(b"HTTP/1.1 421 "), (host, path)
            # http.client (the ApiClient) sends an accepted Host.
            assert (await call(client.status))["running"] is True

    run(test)


def test_a_whole_database_car_streams_a_chunk_per_worker_call(tmp_path, monkeypatch):
    """``dag-scope=all`` of a manifest and ``GET /db/{db}/car`` read the CAR from storage a
    bounded chunk at a time (one worker call each), sent without a length, the same bytes as
    ``gridnode export`` writes."""
    from gridnode.api import handlers
    from gridnode.repo import CarChunks, Repo

    monkeypatch.setattr(handlers, "CHUNK_BYTES", 1024)
    sizes = []
    original = CarChunks.next_chunk

    def next_chunk(self, limit):
        parts = original(self, limit)
        sizes.append(sum(len(p) for p in parts))
        return parts

    monkeypatch.setattr(CarChunks, "next_chunk", next_chunk)
    data_dir = tmp_path / "node"

    async def test():
        async with serving(data_dir) as (_node, client):
            address, manifest, _info = await _database(client, count=40)
            for path, token in ((f"/ipfs/{manifest}", None), (f"/db/{manifest}/car", True)):
                sizes.clear()
                status, car, headers = await raw(client, "GET", path, headers=CAR, token=token)
                assert status == 200
                lowered = {k.lower(): v for k, v in headers.items()}
                assert "content-length" not in lowered
                assert lowered["transfer-encoding"] == "chunked"
                read_car(car)  # every block verifies
                assert len(sizes) > 5 and sizes[-1] == 0
                assert max(sizes) < 1024 + 1024  # a chunk: the limit and at most one entry more
            return address, car

    address, car = trio.run(test)
    with Repo(data_dir) as repo:
        assert b"".join(repo.database(address).car_parts()) == car


def test_damage_found_mid_stream_breaks_the_transfer(tmp_path, monkeypatch):
    """A damaged block past the first chunk is found after the 200 started: the answer is cut
    (the chunked body never ends), so the client sees a broken transfer, never the block, and
    ``export`` leaves no file."""
    import http.client

    from gridnode.api import handlers
    from gridnode.repo import Repo
    from gridnode.storage import DB_FILE

    monkeypatch.setattr(handlers, "CHUNK_BYTES", 512)
    data_dir = tmp_path / "node"

    async def write():
        async with serving(data_dir) as (_node, client):
            address = (await call(client.create, ops.CreateRequest("rot", "keyvalue")))["address"]
            for i in range(30):
                await call(
                    client.write, address, [{"op": "put", "key": f"k{i}", "value": f"v-{i:04d}-x"}]
                )
            return address

    address = trio.run(write)
    with Repo(data_dir) as repo:
        database = repo.database(address)
        entry = list(database.entries())[-3]  # late in the total order: past the first chunk
        block = entry.block
    data = bytearray((data_dir / DB_FILE).read_bytes())
    at = data.find(block)
    assert at >= 0 and data.find(block, at + 1) < 0
    data[at + block.index(b"v-") + 2] ^= 0x01
    damaged = bytes(data[at : at + len(block)])
    (data_dir / DB_FILE).write_bytes(bytes(data))

    async def test():
        async with serving(data_dir) as (_node, client):
            manifest = address.rsplit("/", 1)[1]

            def go(path, token):
                from urllib.parse import urlsplit

                parts = urlsplit(client.url)
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                headers = {"Accept": "application/vnd.ipld.car"}
                if token:
                    headers["Authorization"] = client._auth
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                status = response.status
                got = b""
                try:
                    while chunk := response.read1(65536):
                        got += chunk
                    broken = False
                except http.client.IncompleteRead as exc:
                    got += exc.partial
                    broken = True
                finally:
                    connection.close()
                return status, got, broken

            for path, token in ((f"/ipfs/{manifest}", False), (f"/db/{manifest}/car", True)):
                status, got, broken = await trio.to_thread.run_sync(go, path, token)
                assert status == 200 and broken, (status, broken)
                assert damaged not in got and block not in got
                assert len(got) > 512  # the first chunk went: the cut came mid-stream
            car = tmp_path / "rot.car"
            with pytest.raises(errors.NodeUnavailable, match="cut the CAR off"):
                await call(client.export, address, car)
            assert not car.exists() and not car.with_name("rot.car.tmp").exists()
            assert (await call(client.status))["running"] is True

    run(test)


def test_heavy_answers_are_bounded_and_the_rest_is_not_starved(tmp_path, monkeypatch):
    """At most ``MAX_HEAVY`` CAR answers run at once; another waits ``HEAVY_WAIT`` and gets 503
    with Retry-After; an unrelated call still answers at once."""
    from gridnode.api import asgi, handlers

    monkeypatch.setattr(asgi, "HEAVY_WAIT", 0.3)
    release = trio.Event()
    original = handlers._chunk_reader

    def held(node, chunks):
        read = original(node, chunks)

        async def slow():
            await release.wait()
            return await read()

        return slow

    monkeypatch.setattr(handlers, "_chunk_reader", held)

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            _address, manifest, _info = await _database(client)
            results = []

            async def ask():
                results.append(
                    await raw(client, "GET", f"/ipfs/{manifest}", headers=CAR, token=None)
                )

            async with trio.open_nursery() as nursery:
                for _ in range(asgi.MAX_HEAVY):
                    nursery.start_soon(ask)
                await trio.sleep(0.3)
                status, body, headers = await raw(
                    client, "GET", f"/ipfs/{manifest}", headers=CAR, token=None
                )
                assert status == 503 and headers["retry-after"] == "2", (status, body)
                before = trio.current_time()
                assert (await call(client.status))["running"] is True
                assert trio.current_time() - before < 2
                release.set()
            assert [r[0] for r in results] == [200] * asgi.MAX_HEAVY
            # The slots are free again.
            status, _body, _headers = await raw(
                client, "GET", f"/ipfs/{manifest}", headers=CAR, token=None
            )
            assert status == 200

    run(test)


def test_a_client_that_stops_reading_loses_its_slot(tmp_path, monkeypatch, caplog):
    """Clients that take nothing of a CAR hold no heavy slot past ``STALL_SECONDS``: with every
    slot taken by such clients, the next request still gets the whole CAR (on the old code it
    got 503 for as long as they stayed connected)."""
    import logging
    import socket
    from urllib.parse import urlsplit

    from gridnode.api import asgi
    from gridnode.repo import Repo

    caplog.set_level(logging.INFO, logger="gridnode.api.asgi")

    monkeypatch.setattr(asgi, "STALL_SECONDS", 1.0)
    monkeypatch.setattr(asgi, "HEAVY_WAIT", 0.5)
    data_dir = tmp_path / "node"
    with Repo(data_dir) as repo:  # ~12 MiB: more than the kernel buffers on both sides
        database = repo.create_database("big", "keyvalue")
        value = "x" * (256 * 1024)
        for i in range(48):
            database.write({"op": "put", "key": f"k{i:03d}", "value": f"{i:03d}{value}"})
        manifest = database.manifest.cid.encode()

    def stalled():
        return sum("took nothing" in r.getMessage() for r in caplog.records)

    async def test():
        async with serving(data_dir) as (_node, client):
            parts = urlsplit(client.url)
            hung = []
            for _ in range(asgi.MAX_HEAVY):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect((parts.hostname, parts.port))
                sock.sendall(
                    f"GET /ipfs/{manifest} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                    "Accept: application/vnd.ipld.car\r\n\r\n".encode()
                )
                hung.append(sock)
            try:
                with trio.fail_after(30):
                    while stalled() < asgi.MAX_HEAVY:
                        await trio.sleep(0.1)
                status, body, _headers = await raw(
                    client, "GET", f"/ipfs/{manifest}", headers=CAR, token=None
                )
                assert status == 200, (status, body[:200])
                _header, blocks = read_car(body)
                assert len(blocks) == 49  # the manifest and every entry
                assert (await call(client.status))["running"] is True
                # The parked answers are bounded: at MAX_STALLED, heavy requests get 503 at once.
                monkeypatch.setattr(asgi, "MAX_STALLED", asgi.MAX_HEAVY)
                status, body, _headers = await raw(
                    client, "GET", f"/ipfs/{manifest}", headers=CAR, token=None
                )
                assert status == 503 and "stopped reading" in body["error"], (status, body)
            finally:
                for sock in hung:
                    sock.close()

    run(test)
