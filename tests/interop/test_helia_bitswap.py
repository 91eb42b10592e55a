"""Helia 7 and gridnode over bitswap, both ways (issue 9 part 4):

- a Helia node (``helia_peer.mjs fetch``) dials a running gridnode and fetches a database's
  entries by CID over bitswap, following the links from its roots; it gets every block, checked,
  and nothing of a database gridnode keeps private;
- gridnode restores a database (``Node.restore``) from a Helia node serving a CAR that
  ``gridnode export`` wrote (``helia_peer.mjs serve``).

Setup as in ``test_helia_peer.py`` (whose fixtures this uses); 127.0.0.1 only, each test within
60 s.
"""

from __future__ import annotations

from pathlib import Path

import trio

from crdt.ipld.cid import CID
from gridnode.node import open_node
from gridnode.repo import Repo
from tests.interop.test_helia_peer import (  # noqa: F401 (served: a pytest fixture)
    fetched_blocks,
    helia_fetch,
    served,
)

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
QUIET = 1e9


def make_database(path: Path) -> dict:
    repo = Repo(path)
    db = repo.create_database("fetched", "events")
    db.write_many([{"op": "add", "value": {"n": i}} for i in range(40)])
    for i in range(10):  # single writes: a longer chain
        db.write({"op": "add", "value": {"single": i}})
    blocks = {str(db.manifest.cid): db.manifest.block}
    blocks.update({str(e.cid): e.block for e in db.entries()})
    private = repo.create_database("kept", "keyvalue")
    private.write({"op": "put", "key": "secret", "value": 1})
    repo.set_private(private.address, True)
    facts = {
        "roots": [str(db.manifest.cid), *(str(h) for h in db.heads)],
        "blocks": blocks,
        "private": str(private.heads[0]),
    }
    repo.close()
    return facts


def test_helia_fetches_a_gridnode_database_over_bitswap(tmp_path, node_bin):
    facts = make_database(tmp_path / "g")

    async def main() -> None:
        async with open_node(tmp_path / "g", listen=LOOPBACK, announce_interval=QUIET) as node:
            addr = node.addrs[0]
            code, lines = await trio.to_thread.run_sync(
                lambda: helia_fetch(node_bin, addr, *facts["roots"], "--dag")
            )
            assert code == 0, lines
            got = fetched_blocks(lines)
            assert got[0][0] == facts["roots"][0]  # depth first from the manifest
            assert len({cid for cid, _ in got}) == len(got)  # each block once
            assert dict(got) == facts["blocks"]  # every entry and the manifest, unchanged
            assert node.bitswap is not None
            assert node.bitswap.stats.blocks_sent >= len(facts["blocks"])
            assert node.bitswap.stats.violations == 0
            # What gridnode keeps private, Helia cannot have.
            code, lines = await trio.to_thread.run_sync(
                lambda: helia_fetch(node_bin, addr, facts["private"], timeout_ms=3000)
            )
            assert code == 1 and "error" in lines[-1]

    trio.run(main)


def test_gridnode_restores_a_database_from_helia(tmp_path, served):  # noqa: F811
    roots = [CID.parse(r) for r in served.roots]

    async def main() -> None:
        async with open_node(tmp_path / "b", listen=LOOPBACK, announce_interval=QUIET) as b:
            helia_id = await b.connect(served.addr)
            report = await b.restore(roots, [helia_id], timeout=45)
            assert report.rejected == []
            assert report.applied == len(served.blocks) - 1  # all but the manifest

            def held(db) -> dict[str, bytes]:
                out = {str(db.manifest.cid): db.manifest.block}
                out.update({str(e.cid): e.block for e in db.entries()})
                return out

            address = "/gridnode/" + served.roots[0]
            assert await b.read(address, held) == served.blocks
            assert b.bitswap is not None and b.bitswap.stats.unasked_blocks == 0

    trio.run(main)
