"""Issue 24's scenario, end to end: a primary backs up a real PostgreSQL (``pg_dump -Fc``) into
its ENCRYPTED backups database, listing the backups in its catalog; two blind community nodes
follow the catalog (they hold no key); one reader node holds the key.

- the primary stopped, the reader, dialling only the blind nodes, reads the encrypted backups
  database and restores the latest backup, and ``pg_restore`` of it equals the original rows;
- removing the reader (``db reader remove``) rotates the key: the reader cannot read the records
  written after;
- Debian's ``age -d`` decrypts a backup exported from a blind node with the operator's identity;
- the blind nodes' files (SQLite file, WAL, everything in their data directories) never hold a
  plaintext byte: no table row, no backup name, no time, no plaintext SHA-256.

Bounded: every wait under ``trio.fail_after``, every subprocess under a timeout (no timing is
asserted: speed is bench/'s business).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
from contextlib import AsyncExitStack

import psycopg
import pytest
import trio

from gridnode.age import generate_identity
from gridnode.errors import UnknownDatabase
from gridnode.node import open_node
from gridnode.repo import Repo
from tests.gridnode.files.test_cli_files import run
from tests.gridnode.seed.test_backup_postgres import _fill, _rows

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
INTERVAL = 0.5
#: In a table row of the source database (pg_dump -Z0: it is in the dump's plaintext as is).
ROW_MARKER = "ROW-PLAINTEXT-MARKER-3f8a"
#: The backups' name: only in the encrypted records (and the primary's own pins).
NAME = "pg-NAME-MARKER-b7d2"
AGE = shutil.which("age")


async def _until(predicate, timeout=60.0):
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)


async def _pinned(node) -> set[str]:
    return {str(p.cid) for p in await node.worker.run(node.repo.files.pins)}


async def _entries(node, address) -> int:
    """The entries of ``address`` the node holds (-1: none of it yet)."""

    def count():
        try:
            return len(node.repo.database(address))
        except UnknownDatabase:
            return -1

    return await node.worker.run(count)


def _files_of(data_dir) -> bytes:
    """Every file of a data directory: the SQLite file, its WAL and shared memory, any block."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def _json_lines(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_blind_community_nodes_keep_encrypted_pg_dump_backups_a_reader_restores_them(
    postgres_server, tmp_path
):
    source = postgres_server.create_database()
    _fill(source)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts VALUES (-1, %s, 0, '{}')", (ROW_MARKER,))
    identity = generate_identity()
    key_file = tmp_path / "operator.txt"
    key_file.write_text(identity.encode() + "\n")
    primary_dir, blind1_dir, blind2_dir, reader_dir = (
        tmp_path / n for n in ("primary", "blind1", "blind2", "reader")
    )
    for data_dir in (primary_dir, blind1_dir, blind2_dir, reader_dir):
        run(data_dir, "init")
    with Repo(reader_dir) as repo:
        reader_did = repo.did
    catalog = run(primary_dir, "catalog", "create", "community").stdout.strip()
    pg_dump = shlex.quote(str(postgres_server.bin_dir / "pg_dump"))
    command = f"{pg_dump} -Fc -Z0 -d {shlex.quote(source)}"
    # The plaintext does hold the marker (so its absence below means something).
    plain_dump = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, check=True, timeout=60
    ).stdout
    assert ROW_MARKER.encode() in plain_dump

    def backup(*extra):
        return _json_lines(
            run(
                primary_dir,
                "backup",
                "run",
                NAME,
                "--to",
                str(identity.recipient()),
                "--command",
                command,
                "--catalog",
                catalog,
                "--keep",
                "48",
                "--json",
                *extra,
            )
        )[0]

    made = [backup("--reader", reader_did)]
    with psycopg.connect(source, autocommit=True) as conn:  # the latest holds one more row
        conn.execute("INSERT INTO accounts VALUES (99999, 'latest', 1, '{}')")
    made.append(backup())
    address = made[0]["database"]
    wanted = {m["cid"] for m in made}
    secrets = [ROW_MARKER.encode(), NAME.encode()]
    secrets += [m["sha256"].encode() for m in made] + [bytes.fromhex(m["sha256"]) for m in made]
    secrets += [m["time"].encode() for m in made]

    def assert_blind(data_dir):
        stored = _files_of(data_dir)
        for secret in secrets:
            assert secret not in stored, secret

    async def blind_nodes_keep_everything():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(primary_dir, listen=LOOPBACK, announce_interval=INTERVAL)
            )
            blinds = [
                await stack.enter_async_context(
                    open_node(
                        d,
                        listen=LOOPBACK,
                        bootstrap=primary.addrs,
                        announce_interval=INTERVAL,
                        catalogs=[catalog],
                    )
                )
                for d in (blind1_dir, blind2_dir)
            ]
            total = await _entries(primary, address)
            for node in blinds:
                await node.connect(primary.addrs[0])

                async def holds_all(node=node):
                    return wanted <= await _pinned(node) and (
                        await _entries(node, address) == total
                    )

                await _until(holds_all)

                def blind_and_empty(node=node):
                    copy = node.repo.database(address)
                    return copy.blind and len(copy.store) == 0

                assert await node.worker.run(blind_and_empty)
            # While they run (the WAL not yet checkpointed into the database file).
            assert_blind(blind1_dir)
            assert_blind(blind2_dir)

    async def reader_reads_from_the_blind_nodes_alone():
        async with AsyncExitStack() as stack:  # the primary stays stopped
            blinds = [
                await stack.enter_async_context(
                    open_node(d, listen=LOOPBACK, announce_interval=INTERVAL)
                )
                for d in (blind1_dir, blind2_dir)
            ]
            reader = await stack.enter_async_context(
                open_node(
                    reader_dir,
                    listen=LOOPBACK,
                    bootstrap=[a for b in blinds for a in b.addrs],
                    announce_interval=INTERVAL,
                )
            )
            for node in blinds:
                await reader.connect(node.addrs[0])
            await reader.follow(address)

            async def reader_holds_them():
                # The records read (decrypted) and, by the database's pinLinks, the files.
                return wanted <= await _pinned(reader)

            await _until(reader_holds_them)
            assert_blind(blind1_dir)
            assert_blind(blind2_dir)

    trio.run(blind_nodes_keep_everything)
    trio.run(reader_reads_from_the_blind_nodes_alone)

    # The reader reads the encrypted database and restores the latest backup.
    listed = _json_lines(run(reader_dir, "backup", "list", "--json"))
    assert [r["cid"] for r in listed] == [m["cid"] for m in made]
    dump = tmp_path / "latest.dump"
    run(reader_dir, "backup", "restore", NAME, "-o", str(dump), "--identity", str(key_file))
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == made[1]["sha256"]
    target = postgres_server.create_database()
    subprocess.run(
        [str(postgres_server.bin_dir / "pg_restore"), "--no-owner", "-d", target, str(dump)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert _rows(target) == _rows(source)
    assert len(_rows(target)) == 2002

    # The grep finds what it looks for where it is: a reader's node holds the records in the clear.
    assert NAME.encode() in _files_of(reader_dir)
    # A blind node holds the backups and cannot read a record: it says so, in one line.
    result = run(blind1_dir, "backup", "list", code=1)
    assert "blind" in result.stderr and "Traceback" not in result.stderr
    # The operator's age decrypts a backup exported from a blind node.
    ciphertext = run(blind2_dir, "cat", made[1]["cid"]).stdout_bytes
    assert not ciphertext.startswith(b"PGDMP") and ROW_MARKER.encode() not in ciphertext
    if AGE is None:
        pytest.fail("Debian's age is not installed (apt-get install age; .ci/run installs it)")
    exported = tmp_path / "exported.age"
    exported.write_bytes(ciphertext)
    plain = subprocess.run(
        [AGE, "-d", "-i", str(key_file), str(exported)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert plain == dump.read_bytes()
    # There, a restore by CID needs no record (nothing to check it against: it says so).
    by_cid = tmp_path / "by-cid.dump"
    answer = json.loads(
        run(
            blind2_dir,
            "backup",
            "restore",
            made[1]["cid"],
            "-o",
            str(by_cid),
            "--identity",
            str(key_file),
            "--json",
        ).stdout
    )
    assert answer["verified"] is False and by_cid.read_bytes() == dump.read_bytes()

    # Removing the reader rotates the key: the records written after are not for it.
    removed = json.loads(
        run(primary_dir, "db", "reader", "remove", address, reader_did, "--json").stdout
    )
    assert reader_did not in removed["key_readers"]
    made.append(backup())

    async def reader_catches_up():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(primary_dir, listen=LOOPBACK, announce_interval=INTERVAL)
            )
            reader = await stack.enter_async_context(
                open_node(
                    reader_dir,
                    listen=LOOPBACK,
                    bootstrap=primary.addrs,
                    announce_interval=INTERVAL,
                )
            )
            await reader.connect(primary.addrs[0])
            total = await _entries(primary, address)

            async def reader_has_every_entry():
                return await _entries(reader, address) == total

            await _until(reader_has_every_entry)

    trio.run(reader_catches_up)
    listed = _json_lines(run(reader_dir, "backup", "list", "--json"))
    assert [r["cid"] for r in listed] == [m["cid"] for m in made[:2]]
    assert made[2]["cid"] not in run(reader_dir, "pin", "ls").stdout
    # ...while the primary (a reader of every key) lists all three.
    listed = _json_lines(run(primary_dir, "backup", "list", "--json"))
    assert [r["cid"] for r in listed] == [m["cid"] for m in made]

    assert_blind(blind1_dir)
    assert_blind(blind2_dir)
