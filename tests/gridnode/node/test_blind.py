"""Blind replication on real nodes (127.0.0.1): a primary lists an encrypted database in a
catalog, two community nodes without its key follow the catalog and replicate it blind; the
primary stops; a reader fetches the database from the blind nodes alone and reads it. No
plaintext byte of a payload ever reaches a blind node's SQLite file or WAL; a reader removed
before the last write cannot read it."""

from contextlib import AsyncExitStack

import trio

from gridnode.keystore import KEY_FILE, create_key
from gridnode.node import open_node
from gridnode.storage import DB_FILE
from protocols.catalog import database_key, marker_value

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
INTERVAL = 0.5
MARKER = "QUOKKA-PLAINTEXT-MARKER-d1e5"


def _on_disk(data_dir):
    out = b""
    for suffix in ("", "-wal", "-shm"):
        path = data_dir / (DB_FILE + suffix)
        if path.exists():
            out += path.read_bytes()
    return out


async def _until(predicate, timeout=60.0):
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)


def test_blind_community_nodes_serve_a_reader_without_the_primary(tmp_path):
    reader_key = create_key(tmp_path / "reader" / KEY_FILE, bytes([42]) * 32)

    async def main():
        # The primary writes first (its data directory keeps it), then comes back among the
        # community nodes, and leaves before the reader arrives.
        async with open_node(
            tmp_path / "primary", listen=LOOPBACK, announce_interval=INTERVAL
        ) as primary:
            catalog = await primary.create_database("community", "keyvalue")
            await primary.write(
                catalog.address,
                [{"op": "put", "key": "catalog", "value": marker_value("community")}],
            )
            vault = await primary.create_database(
                "vault", "documents", encrypted=True, readers=[reader_key.did]
            )
            address = vault.address
            await primary.write(
                address,
                [{"op": "put", "doc": {"_id": f"d{i}", "text": MARKER, "n": i}} for i in range(30)],
            )
            # The reader is removed: the key rotates, and what is written next is sealed from it.
            changed = await primary.change_reader(address, "remove", reader_key.did)
            assert changed["key_readers"] == [primary.repo.did]
            await primary.write(address, [{"op": "put", "doc": {"_id": "late", "text": MARKER}}])
            await primary.write(
                catalog.address, [{"op": "put", "key": database_key(address), "value": {}}]
            )
            heads = await primary.read(address, lambda d: d.heads)

        async with AsyncExitStack() as stack:
            blinds = []
            for name in ("blind1", "blind2"):
                blinds.append(
                    await stack.enter_async_context(
                        open_node(
                            tmp_path / name,
                            listen=LOOPBACK,
                            announce_interval=INTERVAL,
                            catalogs=[catalog.address],
                        )
                    )
                )
            async with open_node(
                tmp_path / "primary",
                listen=LOOPBACK,
                bootstrap=[blind.addrs[0] for blind in blinds],
                announce_interval=INTERVAL,
            ):
                for blind in blinds:

                    async def caught_up(blind=blind):
                        if not blind.replicating(address):
                            return False
                        return await blind.read(address, lambda d: d.heads) == heads

                    await _until(caught_up)
                    info = await blind.read(address, lambda d: (d.blind, len(d), len(d.store)))
                    assert info == (True, 33, 0)
            # The primary is gone.

            reader = await stack.enter_async_context(
                open_node(
                    tmp_path / "reader",
                    listen=LOOPBACK,
                    bootstrap=[blind.addrs[0] for blind in blinds],
                    announce_interval=INTERVAL,
                )
            )

            async def connected():
                return len(reader.peers()) >= 1

            await _until(connected)
            await reader.follow(address, snapshot=False)

            async def read_all():
                return await reader.read(address, lambda d: len(d.store)) == 30

            await _until(read_all)

            async def whole_log():
                return await reader.read(address, len) == 33

            await _until(whole_log)
            assert await reader.read(address, lambda d: d.store.get("late")) is None
            assert await reader.read(address, lambda d: len(d.store)) == 30
            doc = await reader.read(address, lambda d: d.store.get("d7"))
            assert doc == {"_id": "d7", "text": MARKER, "n": 7}
            assert not await reader.read(address, lambda d: d.blind)
            for blind in blinds:
                assert MARKER.encode() not in _on_disk(blind.repo.data_dir)
        for name in ("blind1", "blind2"):
            assert MARKER.encode() not in _on_disk(tmp_path / name)
        # The grep finds the marker where it is: the reader's file holds the state in the clear.
        assert MARKER.encode() in _on_disk(tmp_path / "reader")

    trio.run(main)
