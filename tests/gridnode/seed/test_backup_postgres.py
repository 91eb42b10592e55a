"""``gridnode backup`` of a real PostgreSQL: ``backup run --command 'pg_dump -Fc ...'``, then
``backup restore`` and ``pg_restore`` into a new database give the original rows back, and Debian's
``age -d`` reads the same backup (the operator's way, without gridnode). The issue's scenario with
blind community nodes and a reader is test_backup_blind.py."""

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
