"""UnixFS from a real node's gateway (``GET``/``HEAD /ipfs/{cid}/...``, gridnode.api.unixfs): the
HTTP side of files, Range, directories, streaming with a known length, the bound on file streams.
The blocks are the gateway-conformance fixture CARs and files built here."""

import http.client
from pathlib import Path
from urllib.parse import quote, urlsplit

import trio

from crdt.ipld import dagpb
from crdt.ipld.car import read_car
from crdt.ipld.cid import CID
from crdt.unixfs.data import DataType, UnixFSData, encode_data
from gridnode.api import asgi, unixfs
from gridnode.repo import Repo
from tests.gridnode.test_api import raw, run, serving

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gateway-conformance"


def _fixture(name):
    header, blocks = read_car((FIXTURES / name).read_bytes())
    return header.roots[0], dict(blocks)


def _big_file(leaves=24, leaf_size=256 * 1024):
    """A file of ``leaves`` distinct raw leaves under one dag-pb root, and its bytes."""
    blocks = {}
    links = []
    data = []
    for i in range(leaves):
        leaf = bytes([i]) * 7 + bytes(range(256)) * (leaf_size // 256)
        leaf = leaf[:leaf_size]
        cid = CID.for_block(leaf, codec="raw")
        blocks[cid] = leaf
        links.append(dagpb.PBLink(cid, "", len(leaf)))
        data.append(leaf)
    node = UnixFSData(DataType.File, None, sum(len(d) for d in data), tuple(len(d) for d in data))
    block = dagpb.encode_node(dagpb.PBNode(tuple(links), encode_data(node)))
    root = CID.for_block(block, codec="dag-pb")
    blocks[root] = block
    return root, blocks, b"".join(data)


def _serve_from(monkeypatch, data_dir, blocks, calls=None):
    """Put ``blocks`` in the node's file store (``repo.files``, where ``gridnode add`` puts
    them); count the gateway's storage calls in ``calls``."""
    with Repo(data_dir) as repo:
        repo.files.put_blocks(list(blocks.items()))
    original = unixfs._served

    def served(repo, cids):
        if calls is not None:
            calls.append(len(cids))
        return original(repo, cids)

    monkeypatch.setattr(unixfs, "_served", served)


def test_files_directories_and_listings_without_the_token(tmp_path, monkeypatch):
    root, blocks = _fixture("dir-listing.car")
    cache_root, cache_blocks = _fixture("gateway-cache.car")
    hamt_root, hamt_blocks = _fixture("single-layer-hamt-with-multi-block-files.car")
    _serve_from(monkeypatch, tmp_path / "node", {**blocks, **cache_blocks, **hamt_blocks})

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            path = f"/ipfs/{root}/{quote('ą')}/{quote('ę')}"
            status, body, headers = await raw(
                client, "GET", f"{path}/file-{quote('źł')}.txt", token=None
            )
            assert status == 200 and body == b"I am a txt file on path with utf8\n"
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert headers["content-length"] == "34"
            assert headers["accept-ranges"] == "bytes"
            assert headers["cache-control"] == "public, max-age=29030400, immutable"
            assert headers["x-content-type-options"] == "nosniff"
            # a directory: 301 to its slash, then the listing
            status, _body, headers = await raw(client, "GET", path, token=None)
            assert status == 301 and headers["location"] == path + "/"
            status, body, headers = await raw(client, "GET", path + "/", token=None)
            assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
            assert b"Index of" in body and b"file-\xc5\xba\xc5\x82.txt" in body
            assert headers["etag"].startswith('"DirIndex-')
            # index.html
            status, body, headers = await raw(
                client, "GET", f"/ipfs/{cache_root}/root2/root3/root4/", token=None
            )
            assert status == 200 and body == b"hello\n"
            assert headers["content-type"] == "text/html; charset=utf-8"
            # raw block of a path, and HEAD
            status, body, headers = await raw(
                client, "GET", f"/ipfs/{cache_root}/root2?format=raw", token=None
            )
            cid = CID.parse(headers["x-ipfs-roots"].split(",")[-1])
            assert status == 200 and body == cache_blocks[cid]
            status, body, headers = await raw(
                client, "HEAD", f"/ipfs/{cache_root}/root2/root3/root4/index.html", token=None
            )
            assert status == 200 and body == b"" and headers["content-length"] == "6"
            # a HAMT-sharded directory: a name in it, and its listing
            status, body, headers = await raw(
                client, "GET", f"/ipfs/{hamt_root}/42.txt", token=None
            )
            assert status == 200 and body.startswith(b"Lorem ipsum") and len(body) == 1026
            status, body, headers = await raw(client, "GET", f"/ipfs/{hamt_root}/", token=None)
            assert status == 200 and body.count(b'class="ipfs-hash"') == 1001
            # not there
            status, body, _headers = await raw(client, "GET", f"/ipfs/{root}/nope", token=None)
            assert status == 404 and "nope" in body["error"]
            status, _body, _headers = await raw(
                client, "GET", f"/ipfs/{CID.for_block(b'x', codec='raw')}", token=None
            )
            assert status == 404

    run(test)


def test_a_large_file_streams_with_its_length_and_ranges_seek(tmp_path, monkeypatch):
    root, blocks, data = _big_file()
    calls = []
    _serve_from(monkeypatch, tmp_path / "node", blocks, calls)

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            calls.clear()
            status, body, headers = await raw(
                client, "GET", f"/ipfs/{root}?filename=clip.mp4", token=None
            )
            assert status == 200 and body == data
            assert headers["content-length"] == str(len(data))
            assert "transfer-encoding" not in {k.lower() for k in headers}
            assert headers["content-type"] == "video/mp4"
            assert headers["etag"] == f'"{root}"'
            # one storage call per batch of blocks, not per block
            assert len(calls) < len(blocks) // 2
            for start, end in ((0, 99), (1_000_000, 3_999_999), (len(data) - 5, len(data) - 1)):
                status, body, headers = await raw(
                    client,
                    "GET",
                    f"/ipfs/{root}",
                    headers={"Range": f"bytes={start}-{end}"},
                    token=None,
                )
                assert status == 206 and body == data[start : end + 1]
                assert headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
                assert headers["content-length"] == str(end - start + 1)
            status, body, headers = await raw(
                client, "GET", f"/ipfs/{root}", headers={"Range": f"bytes={len(data)}-"}, token=None
            )
            assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
            status, body, headers = await raw(
                client, "HEAD", f"/ipfs/{root}", headers={"Range": "bytes=10-"}, token=None
            )
            assert (
                status == 206 and body == b"" and headers["content-length"] == str(len(data) - 10)
            )

    run(test)


def test_a_block_missing_mid_stream_cuts_the_transfer(tmp_path, monkeypatch):
    root, blocks, data = _big_file()
    late = list(blocks)[20]  # past the first batch
    del blocks[late]
    _serve_from(monkeypatch, tmp_path / "node", blocks)

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            parts = urlsplit(client.url)

            def go():
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                connection.request("GET", f"/ipfs/{root}")
                response = connection.getresponse()
                try:
                    got = response.read()
                    broken = False
                except http.client.IncompleteRead as exc:
                    got, broken = exc.partial, True
                finally:
                    connection.close()
                return response.status, got, broken

            status, got, broken = await trio.to_thread.run_sync(go)
            assert status == 200 and broken
            assert 0 < len(got) < len(data) and data.startswith(got)
            # a range before the hole is whole
            status, body, _headers = await raw(
                client, "GET", f"/ipfs/{root}", headers={"Range": "bytes=0-999999"}, token=None
            )
            assert status == 206 and body == data[:1_000_000]

    run(test)


def test_file_streams_are_bounded(tmp_path, monkeypatch):
    """At most ``MAX_FILE_STREAMS`` large files stream at once; another waits ``HEAVY_WAIT`` and
    gets 503 with Retry-After; small files and other calls still answer."""
    root, blocks, data = _big_file(leaves=4)
    small, small_blocks = _fixture("dir-with-files.car")
    _serve_from(monkeypatch, tmp_path / "node", {**blocks, **small_blocks})
    monkeypatch.setattr(asgi, "HEAVY_WAIT", 0.3)
    monkeypatch.setattr(asgi, "MAX_FILE_STREAMS", 2)
    release = trio.Event()
    original = unixfs.FileReader.next_chunk

    async def held(self):
        if self.expected > unixfs.LIGHT_BYTES:  # the streamed ones
            await release.wait()
        return await original(self)

    monkeypatch.setattr(unixfs.FileReader, "next_chunk", held)

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            results = []

            async def ask():
                results.append(await raw(client, "GET", f"/ipfs/{root}", token=None))

            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(ask)
                await trio.sleep(0.3)
                status, body, headers = await raw(client, "GET", f"/ipfs/{root}", token=None)
                assert status == 503 and headers["retry-after"] == "2", (status, body)
                status, body, _ = await raw(client, "GET", f"/ipfs/{small}/hello.txt", token=None)
                assert status == 200 and body == b"hello world\n"
                release.set()
            assert [(r[0], r[1] == data) for r in results] == [(200, True)] * 2

    run(test)


def test_a_site_added_with_gridnode_add_is_served_and_its_video_seeks(tmp_path):
    """End to end: ``gridnode add -r`` of a small site through the running node's API, then a
    browser's requests: the index page, a listing, a video by Range reads across its leaves."""
    import random

    from gridnode.files.add import add

    site = tmp_path / "site"
    (site / "media").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>hi</title><video src=media/clip.mp4>")
    video = random.Random(3).randbytes(2 * 1024 * 1024 + 777)
    (site / "media" / "clip.mp4").write_bytes(video)
    (site / "media" / "notes.txt").write_text("notes\n")

    async def test():
        async with serving(tmp_path / "node") as (_node, client):
            added = await trio.to_thread.run_sync(
                lambda: add(client, str(site), recursive=True, name="site")
            )
            root = added.cid
            status, body, headers = await raw(client, "GET", f"/ipfs/{root}/", token=None)
            assert status == 200 and body.startswith(b"<!doctype html>")
            assert headers["content-type"] == "text/html; charset=utf-8"
            status, body, _headers = await raw(client, "GET", f"/ipfs/{root}/media/", token=None)
            assert status == 200 and b"clip.mp4" in body and b"notes.txt" in body
            path = f"/ipfs/{root}/media/clip.mp4"
            status, body, headers = await raw(client, "HEAD", path, token=None)
            assert status == 200 and headers["content-length"] == str(len(video))
            assert headers["content-type"] == "video/mp4" and headers["accept-ranges"] == "bytes"
            for start, end in ((0, 1), (1024 * 1024 - 3, 1024 * 1024 + 3), (2 * 1024 * 1024, None)):
                asked = f"bytes={start}-{'' if end is None else end}"
                status, body, headers = await raw(
                    client, "GET", path, headers={"Range": asked}, token=None
                )
                stop = len(video) if end is None else end + 1
                assert status == 206 and body == video[start:stop], asked
            status, body, _headers = await raw(client, "GET", path, token=None)
            assert status == 200 and body == video
            status, _body, _headers = await raw(client, "GET", f"/ipfs/{root}/nope", token=None)
            assert status == 404
            # what the gateway answered, in /status and /metrics
            status, answer, _headers = await raw(client, "GET", "/status")
            counts = answer["gateway"]
            assert counts["requests"] == 8 and counts["not_found"] == 1
            assert counts["files"] == 6 and counts["ranges"] == 3 and counts["listings"] == 1
            ranged = 2 + 7 + (len(video) - 2 * 1024 * 1024)
            assert len(video) + ranged < counts["bytes"] < len(video) + ranged + 10_000
            status, text, _headers = await raw(client, "GET", "/metrics")
            assert b"gridnode_gateway_ranges_total 3" in text

    run(test)
