"""Backups kept by nodes that cannot read them: a primary makes encrypted backups recorded in its
encrypted backups database (``--reader``: the reader's did:key) and listed in its catalog
(``--catalog``); a community node follows the catalog only, replicates the backups database blind
and fetches and pins every backup's file the catalog lists (ciphertext only: no plaintext byte in
its data directory); with the primary stopped, the reader's node, dialling only the community
node, gets the records (it holds the key) and the files (``pinLinks``), and ``backup restore``
there gives the original bytes; ``--keep`` makes the community node let go of the files it
drops."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import trio

from gridnode.age import generate_identity
from gridnode.node import open_node
from gridnode.repo import Repo
from tests.gridnode.files.test_cli_files import run

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
INTERVAL = 0.5
MARKER = b"BACKUP-REPLICATION-MARKER-5e1d"


async def _until(predicate, timeout=60.0):
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)


async def _pins(node) -> dict[str, str]:
    return {p.name: str(p.cid) for p in await node.worker.run(node.repo.files.pins)}


def _stored(data_dir) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def test_community_nodes_keep_the_backups_blind_and_a_reader_restores_from_them(tmp_path):
    identity = generate_identity()
    key_file = tmp_path / "key.txt"
    key_file.write_text(identity.encode() + "\n")
    primary_dir, community_dir, reader_dir = (
        tmp_path / n for n in ("primary", "community", "reader")
    )
    for data_dir in (primary_dir, community_dir, reader_dir):
        run(data_dir, "init")
    with Repo(reader_dir) as repo:
        reader_did = repo.did
    catalog = run(primary_dir, "catalog", "create", "community").stdout.strip()
    dumps = []
    made = []
    for i in range(3):
        dump = tmp_path / f"dump{i}"
        dump.write_bytes(MARKER + bytes(range(256)) * (2000 + i) + MARKER)  # ~0.5 MiB each
        dumps.append(dump)
        made.append(
            json.loads(
                run(
                    primary_dir,
                    "backup",
                    "run",
                    "db",
                    "--to",
                    str(identity.recipient()),
                    "--file",
                    str(dump),
                    "--keep",
                    "2",
                    "--reader",
                    reader_did,
                    "--catalog",
                    catalog,
                    "--json",
                ).stdout
            )
        )
    address = made[0]["database"]
    kept = {made[1]["cid"], made[2]["cid"]}

    async def main():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(primary_dir, listen=LOOPBACK, announce_interval=INTERVAL)
            )
            # The project's catalog lists the backups database and the kept files; the community
            # node follows the catalog only (it was never told the database's address).
            community = await stack.enter_async_context(
                open_node(
                    community_dir,
                    listen=LOOPBACK,
                    bootstrap=primary.addrs,
                    announce_interval=INTERVAL,
                    catalogs=[catalog],
                )
            )
            await community.connect(primary.addrs[0])

            async def community_holds_the_kept():
                return kept <= set((await _pins(community)).values())

            await _until(community_holds_the_kept)
            # The pruned backup is off the catalog: its file is not kept.
            assert made[0]["cid"] not in set((await _pins(community)).values())

            # It replicates the backups database blind: every entry, no record readable.
            def blind_and_empty():
                copy = community.repo.database(address)
                return copy.blind and len(copy.store) == 0

            assert await community.worker.run(blind_and_empty)

            async def community_has_every_entry():
                def count(node):
                    return len(node.repo.database(address))

                return await community.worker.run(count, community) == await primary.worker.run(
                    count, primary
                )

            await _until(community_has_every_entry)
            await stack.aclose()  # both stop; the community node comes back alone

        async with AsyncExitStack() as stack:
            community = await stack.enter_async_context(
                open_node(community_dir, listen=LOOPBACK, announce_interval=INTERVAL)
            )
            reader = await stack.enter_async_context(
                open_node(
                    reader_dir,
                    listen=LOOPBACK,
                    bootstrap=community.addrs,
                    announce_interval=INTERVAL,
                )
            )
            await reader.connect(community.addrs[0])
            await reader.follow(address)

            async def reader_holds_the_kept():
                return kept <= set((await _pins(reader)).values())

            await _until(reader_holds_the_kept)

    trio.run(main)
    assert MARKER not in _stored(community_dir)
    assert "blind" in run(community_dir, "backup", "list", code=1).stderr
    listed = [
        json.loads(line) for line in run(reader_dir, "backup", "list", "--json").stdout.splitlines()
    ]
    assert [r["cid"] for r in listed] == [made[1]["cid"], made[2]["cid"]]
    out = tmp_path / "restored"
    run(reader_dir, "backup", "restore", "db", "-o", str(out), "--identity", str(key_file))
    assert out.read_bytes() == dumps[2].read_bytes()
    older = tmp_path / "older"
    run(
        reader_dir,
        "backup",
        "restore",
        made[1]["cid"],
        "-o",
        str(older),
        "--identity",
        str(key_file),
    )
    assert older.read_bytes() == dumps[1].read_bytes()


def test_restore_through_a_running_node_fetches_the_file_from_its_peers(tmp_path):
    import time

    from tests.gridnode.conftest import node_in_thread

    identity = generate_identity()
    key_file = tmp_path / "key.txt"
    key_file.write_text(identity.encode() + "\n")
    primary_dir, other_dir = tmp_path / "primary", tmp_path / "other"
    for data_dir in (primary_dir, other_dir):
        run(data_dir, "init")
    dump = tmp_path / "dump"
    dump.write_bytes(MARKER + bytes(range(256)) * 5000)
    made = json.loads(
        run(
            primary_dir,
            "backup",
            "run",
            "db",
            "--to",
            str(identity.recipient()),
            "--file",
            str(dump),
            "--json",
        ).stdout
    )
    out = tmp_path / "restored"
    # Offline, the other node holds nothing: one error line, nothing written.
    result = run(
        other_dir,
        "backup",
        "restore",
        made["cid"],
        "-o",
        str(out),
        "--identity",
        str(key_file),
        code=1,
    )
    assert "start the node" in result.stderr and not out.exists()
    with (
        node_in_thread(primary_dir) as primary,
        node_in_thread(other_dir, bootstrap=primary["node"].addrs) as other,
    ):
        deadline = time.monotonic() + 30
        while not other["node"].peers() and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = json.loads(
            run(
                other_dir,
                "backup",
                "restore",
                made["cid"],
                "-o",
                str(out),
                "--identity",
                str(key_file),
                "--json",
            ).stdout
        )
        pins = run(other_dir, "pin", "ls", "--json").stdout
    assert answer["sha256"] == made["sha256"] and answer["verified"] is False
    assert out.read_bytes() == dump.read_bytes()
    assert "restore:" not in pins  # the fetch's pin was removed once read
