"""``gridnode backup`` of a real PostgreSQL: ``backup run --command 'pg_dump -Fc ...'``, then
``backup restore`` and ``pg_restore`` into a new database give the original rows back, and Debian's
``age -d`` reads the same backup (the operator's way, without gridnode)."""

import hashlib
import json
import shlex
import shutil
import subprocess

import psycopg

from gridnode.age import generate_identity
from tests.gridnode.files.test_cli_files import run

AGE = shutil.which("age")


def _fill(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric,"
            " note jsonb)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO accounts VALUES (%s, %s, %s, %s)",
                [
                    (i, f"owner {i} ✓", f"{i * 7}.{i % 100:02d}", json.dumps({"n": i}))
                    for i in range(2000)
                ],
            )


def _rows(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, owner, balance::text, note::text FROM accounts ORDER BY id"
        ).fetchall()


def test_a_pg_dump_backup_restores_to_the_same_rows(postgres_server, tmp_path):
    source = postgres_server.create_database()
    _fill(source)
    identity = generate_identity()
    key_file = tmp_path / "key.txt"
    key_file.write_text(identity.encode() + "\n")
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    pg_dump = shlex.quote(str(postgres_server.bin_dir / "pg_dump"))
    command = f"{pg_dump} -Fc -d {shlex.quote(source)}"
    made = json.loads(
        run(
            data_dir,
            "backup",
            "run",
            "pg",
            "--to",
            str(identity.recipient()),
            "--command",
            command,
            "--keep",
            "48",
            "--json",
        ).stdout
    )
    dump = tmp_path / "restored.dump"
    run(data_dir, "backup", "restore", "pg", "-o", str(dump), "--identity", str(key_file))
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == made["sha256"]
    assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    target = postgres_server.create_database()
    subprocess.run(
        [str(postgres_server.bin_dir / "pg_restore"), "--no-owner", "-d", target, str(dump)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert _rows(target) == _rows(source)
    assert len(_rows(target)) == 2000
    if AGE is not None:
        ciphertext = run(data_dir, "cat", made["cid"]).stdout_bytes
        plain = subprocess.run(
            [AGE, "-d", "-i", str(key_file)], input=ciphertext, capture_output=True, check=True
        ).stdout
        assert plain == dump.read_bytes()


def test_a_reader_restores_the_latest_pg_dump_from_a_community_node_alone(
    postgres_server, tmp_path
):
    """The issue's scenario: hourly-style backups of a real PostgreSQL on a primary; a community
    node (no identity) keeps them blind; the primary stopped, a reader's node dialling only the
    community node restores the latest, and pg_restore of it equals the original."""
    from contextlib import AsyncExitStack

    import trio

    from gridnode.node import open_node

    loopback = ["/ip4/127.0.0.1/tcp/0"]
    source = postgres_server.create_database()
    _fill(source)
    identity = generate_identity()
    key_file = tmp_path / "key.txt"
    key_file.write_text(identity.encode() + "\n")
    primary_dir, community_dir, reader_dir = (tmp_path / n for n in ("p", "c", "r"))
    for data_dir in (primary_dir, community_dir, reader_dir):
        run(data_dir, "init")
    pg_dump = shlex.quote(str(postgres_server.bin_dir / "pg_dump"))
    command = f"{pg_dump} -Fc -d {shlex.quote(source)}"
    made = []
    for i in range(2):
        if i == 1:  # the latest backup holds one more row
            with psycopg.connect(source, autocommit=True) as conn:
                conn.execute("INSERT INTO accounts VALUES (99999, 'latest', 1, '{}')")
        made.append(
            json.loads(
                run(
                    primary_dir,
                    "backup",
                    "run",
                    "pg",
                    "--to",
                    str(identity.recipient()),
                    "--command",
                    command,
                    "--json",
                ).stdout
            )
        )
    address = made[0]["database"]
    wanted = {m["cid"] for m in made}

    async def pinned(node):
        return {str(p.cid) for p in await node.worker.run(node.repo.files.pins)}

    async def until(predicate):
        with trio.fail_after(60):
            while not await predicate():
                await trio.sleep(0.05)

    async def main():
        async with AsyncExitStack() as stack:
            primary = await stack.enter_async_context(
                open_node(primary_dir, listen=loopback, announce_interval=0.5)
            )
            community = await stack.enter_async_context(
                open_node(community_dir, listen=loopback, announce_interval=0.5)
            )
            await community.connect(primary.addrs[0])
            await community.follow(address)

            async def community_has_them():
                return wanted <= await pinned(community)

            await until(community_has_them)
        async with AsyncExitStack() as stack:  # the primary stays stopped
            community = await stack.enter_async_context(
                open_node(community_dir, listen=loopback, announce_interval=0.5)
            )
            reader = await stack.enter_async_context(
                open_node(reader_dir, listen=loopback, announce_interval=0.5)
            )
            await reader.connect(community.addrs[0])
            await reader.follow(address)

            async def reader_has_them():
                return wanted <= await pinned(reader)

            await until(reader_has_them)

    trio.run(main)
    dump = tmp_path / "latest.dump"
    run(reader_dir, "backup", "restore", "pg", "-o", str(dump), "--identity", str(key_file))
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == made[1]["sha256"]
    target = postgres_server.create_database()
    subprocess.run(
        [str(postgres_server.bin_dir / "pg_restore"), "--no-owner", "-d", target, str(dump)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert _rows(target) == _rows(source)
    assert len(_rows(target)) == 2001
