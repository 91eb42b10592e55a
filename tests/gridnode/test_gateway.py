"""The trustless gateway (gridnode.api.gateway, ``GET /ipfs/{cid}``) on a real node's HTTP server."""

from urllib.parse import quote

from crdt.entry import decode_entry
from crdt.ipld.car import read_car
from crdt.ipld.cid import CID
from gridnode import ops
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
            # Read-only; and no paths below a CID.
            status, _, _ = await raw(client, "POST", f"/ipfs/{manifest}", token=None)
            assert status == 401
            status, _, _ = await raw(client, "GET", f"/ipfs/{manifest}/x", headers=RAW, token=None)
            assert status == 401
            # An unfollowed database is not served.
            await call(client.unfollow, address)
            status, _, _ = await raw(client, "GET", f"/ipfs/{manifest}", headers=RAW, token=None)
            assert status == 404

    run(test)
