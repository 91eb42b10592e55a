"""Files replicated by catalogs (gridnode/node/files.py) on real nodes (127.0.0.1): a file a
catalog lists is fetched whole over bitswap by a follower, byte-identical, and pinned as
``catalog:<cid>``; unlisted, the pin goes (the operator's own pins stay); a database with the
``pinLinks`` option makes its replicas keep the files its entries link to."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

from crdt.ipld.cid import CID
from gridnode.node import open_node
from protocols.catalog import file_key, marker_value
from tests.gridnode.files.unixfs_dags import build_file, pseudo_random, read_file

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
INTERVAL = 0.5


async def _until(predicate, timeout=30.0):
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)


async def _add_file(node, data: bytes, **kw) -> CID:
    root, blocks = build_file(data, **kw)
    await node.worker.run(node.repo.files.put_blocks, list(blocks.items()))
    await node.worker.run(node.repo.files.pin, root, "mine")
    return root


async def _pins(node) -> dict[str, CID]:
    return {p.name: p.cid for p in await node.worker.run(node.repo.files.pins)}


def test_a_file_a_catalog_lists_is_fetched_and_pinned_by_followers_and_kept_across_a_restart(
    tmp_path,
):
    data = pseudo_random(3 * 1024 * 1024 + 123)
    small = b"a small file: one raw block"
    root_cid: list[CID] = []
    catalog_address: list[str] = []

    async def main():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(tmp_path / "primary", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            root = await _add_file(primary, data, chunk=256 * 1024, max_links=4)  # 3 levels
            tiny = await _add_file(primary, small)
            assert tiny.codec == 0x55
            root_cid.append(root)
            catalog = (await primary.create_database("assets", "keyvalue")).address
            catalog_address.append(catalog)
            await primary.write(
                catalog,
                [
                    {"op": "put", "key": "catalog", "value": marker_value("assets")},
                    {"op": "put", "key": file_key(str(root)), "value": {"name": "big.bin"}},
                    {"op": "put", "key": file_key(str(tiny)), "value": {"name": "small.txt"}},
                ],
            )
            follower = await stack.enter_async_context(
                open_node(
                    tmp_path / "follower",
                    listen=LOOPBACK,
                    bootstrap=primary.addrs,
                    announce_interval=INTERVAL,
                    catalogs=[catalog],
                )
            )

            async def both_pinned():
                pins = await _pins(follower)
                return pins.get(f"catalog:{root}") == root and f"catalog:{tiny}" in pins

            await _until(both_pinned)
            blocks = await follower.worker.run(
                follower.repo.files.get_many,
                list(build_file(data, chunk=256 * 1024, max_links=4)[1]),
            )
            assert read_file(root, blocks) == data
            assert await follower.worker.run(follower.repo.files.get, tiny) == small
            status = follower.files.as_json()
            assert status["held"] == 2 and status["held_bytes"] >= len(data) + len(small)
            assert status["fetched"] == 2 and status["failed"] == []
            assert follower.catalogs.as_json()[0]["files"] == sorted([str(root), str(tiny)])
            # The primary served them: bitswap counted the blocks.
            assert primary.bitswap is not None and primary.bitswap.stats.blocks_sent >= 2

            # A restart: the follower alone (the primary out of reach), its catalog not read
            # yet at first; the catalog's pins stay.
            await stack.aclose()

    trio.run(main)

    async def restarted():
        async with open_node(
            tmp_path / "follower",
            listen=LOOPBACK,
            announce_interval=INTERVAL,
            catalogs=[catalog_address[0]],
        ) as follower:
            for _ in range(3):
                await follower.files.round_done.wait()
            pins = await _pins(follower)
            assert pins.get(f"catalog:{root_cid[0]}") == root_cid[0]
            assert follower.files.as_json()["held"] == 2

    trio.run(restarted)


def test_the_catalog_pins_go_when_the_catalog_drops_them(tmp_path):
    data = pseudo_random(300_000)
    small = b"a small file: one raw block"

    async def main():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(tmp_path / "primary", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            root = await _add_file(primary, data, chunk=100_000)
            tiny = await _add_file(primary, small)
            catalog = (await primary.create_database("assets", "keyvalue")).address
            await primary.write(
                catalog,
                [
                    {"op": "put", "key": "catalog", "value": marker_value("assets")},
                    {"op": "put", "key": file_key(str(root)), "value": {}},
                    {"op": "put", "key": file_key(str(tiny)), "value": {}},
                ],
            )
            follower = await stack.enter_async_context(
                open_node(
                    tmp_path / "follower",
                    listen=LOOPBACK,
                    bootstrap=primary.addrs,
                    announce_interval=INTERVAL,
                    catalogs=[catalog],
                )
            )

            async def both_pinned():
                pins = await _pins(follower)
                return f"catalog:{root}" in pins and f"catalog:{tiny}" in pins

            await _until(both_pinned)
            # The operator pins the small file too; then the catalog drops both.
            await follower.worker.run(follower.repo.files.pin, tiny, "operator")
            await primary.write(
                catalog,
                [
                    {"op": "del", "key": file_key(str(root))},
                    {"op": "del", "key": file_key(str(tiny))},
                ],
            )

            async def unpinned():
                return not any(n.startswith("catalog:") for n in await _pins(follower))

            await _until(unpinned)
            assert (await _pins(follower))["operator"] == tiny
            assert follower.files.as_json()["held"] == 0

    trio.run(main)


def test_a_file_no_peer_has_is_reported_and_tried_again_later(tmp_path):
    missing = CID.for_block(b"nobody has this", codec="raw")

    async def main():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(tmp_path / "primary", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            catalog = (await primary.create_database("assets", "keyvalue")).address
            await primary.write(
                catalog,
                [
                    {"op": "put", "key": "catalog", "value": marker_value("assets")},
                    {"op": "put", "key": file_key(str(missing)), "value": {}},
                ],
            )
            follower = await stack.enter_async_context(
                open_node(
                    tmp_path / "follower",
                    listen=LOOPBACK,
                    bootstrap=primary.addrs,
                    announce_interval=INTERVAL,
                    catalogs=[catalog],
                )
            )

            async def failed():
                return bool(follower.files.as_json()["failed"])

            await _until(failed)
            failure = follower.files.as_json()["failed"][0]
            assert failure["cid"] == str(missing) and "not sent" in failure["error"]
            assert failure["retry_in"] > 0
            assert f"catalog:{missing}" not in await _pins(follower)

            # Once the primary has it, the follower gets it (on its next try).
            await primary.worker.run(primary.repo.files.put_blocks, [(missing, b"nobody has this")])
            await primary.worker.run(primary.repo.files.pin, missing, "now")
            follower.files.totals.failures.clear()  # no waiting out the back-off here

            async def pinned():
                return f"catalog:{missing}" in await _pins(follower)

            await _until(pinned)

    trio.run(main)


def test_a_database_with_pin_links_makes_its_replicas_keep_the_files_it_links_to(tmp_path):
    image = pseudo_random(600_000, seed=7)
    too_big = pseudo_random(2_000_000, seed=8)

    async def main():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(tmp_path / "primary", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            root = await _add_file(primary, image, chunk=256 * 1024)
            big = await _add_file(primary, too_big, chunk=256 * 1024)
            posts = await primary.create_database("posts", "documents", pin_links=1_000_000)
            assert posts.manifest.options["pinLinks"] == {"maxBytes": 1_000_000}
            plain = await primary.create_database("plain", "documents")
            await primary.write(
                posts.address,
                [
                    {"op": "put", "doc": {"_id": "p1", "image": root, "text": "hello"}},
                    {"op": "put", "doc": {"_id": "p2", "video": big}},
                    {"op": "put", "doc": {"_id": "p3", "meta": {"cid": {"nested": [root]}}}},
                ],
            )
            await primary.write(plain.address, [{"op": "put", "doc": {"_id": "x", "f": big}}])
            follower = await stack.enter_async_context(
                open_node(
                    tmp_path / "follower",
                    listen=LOOPBACK,
                    bootstrap=primary.addrs,
                    announce_interval=INTERVAL,
                )
            )
            await follower.connect(primary.addrs[0])
            await follower.follow(posts.address)
            await follower.follow(plain.address)
            name = f"links:{posts.address}:{root}"

            async def pinned():
                return name in await _pins(follower)

            await _until(pinned)
            blocks = await follower.worker.run(
                follower.repo.files.get_many, list(build_file(image, chunk=256 * 1024)[1])
            )
            assert read_file(root, blocks) == image

            # The video is past the database's bound: refused, said, never pinned; the plain
            # database's link is not followed at all.
            async def refused():
                return any(f["cid"] == str(big) for f in follower.files.as_json()["failed"])

            await _until(refused)
            failure = next(f for f in follower.files.as_json()["failed"] if f["cid"] == str(big))
            assert "bytes" in failure["error"]
            pins = await _pins(follower)
            assert not any(str(big) in n for n in pins)
            assert [n for n in pins if n.startswith("links:")] == [name]

            # The post deleted: the link goes, and its pin with it.
            await primary.write(
                posts.address,
                [{"op": "del", "id": "p1"}, {"op": "del", "id": "p3"}, {"op": "del", "id": "p2"}],
            )

            async def unpinned():
                return name not in await _pins(follower)

            await _until(unpinned)

    trio.run(main)


def test_fetch_file_refuses_peers_that_are_not_connected_and_the_node_goes_on(tmp_path):
    from gridnode.errors import FetchIncomplete

    root = CID.for_block(b"anything", codec="raw")

    async def main():
        async with open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=INTERVAL) as a:
            for peers in (None, ["not a peer id"], [""]):
                with pytest.raises(FetchIncomplete, match="no connected peer"):
                    await a.fetch_file(root, peers)
            await trio.sleep(0.2)
            assert a.peers() == []  # still running: nothing crashed its nursery

    trio.run(main)


def test_a_node_reads_a_file_it_does_not_hold_through_its_peers(tmp_path):
    """``node.files.source()`` is a block source for gridnode/files/export.py: ``cat`` of a range
    of a file (made by the importer, both profiles) that only a peer holds, blocks verified."""
    from crdt.unixfs.importer import FileImporter
    from crdt.unixfs.reader import decode_node
    from gridnode.files.export import cat

    data = pseudo_random(2_500_000, seed=11)

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            b = await stack.enter_async_context(
                open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=INTERVAL)
            )
            await b.connect(a.addrs[0])
            for profile in ("unixfs-v1-2025", "unixfs-v0-2015"):
                importer = FileImporter(profile)
                blocks = importer.write(data)
                root = importer.close()
                blocks += root.blocks
                await a.worker.run(a.repo.files.put_blocks, blocks)
                await a.worker.run(a.repo.files.pin, root.cid, profile)

                source = b.files.source()
                top = decode_node(root.cid, (await source.get_many([root.cid]))[root.cid])
                got = b"".join([c async for c in cat(source, top, 1_000_000, 1_200_000)])
                assert got == data[1_000_000:2_200_000]
                assert source.fetched >= 2 and source.bytes >= 1_200_000
                # What was fetched is kept: read again, nothing is asked of the peer.
                again = b.files.source([])
                assert (
                    b"".join([c async for c in cat(again, top, 1_000_000, 10)])
                    == data[1_000_000:1_000_010]
                )
                assert again.fetched == 0

    trio.run(main)
