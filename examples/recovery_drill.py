"""The recovery drill (docs/seeding.md, "Recovering the primary"): lose the primary, get it back.

    python examples/recovery_drill.py WORKDIR --dsn "host=... user=postgres" [--rows N]

DSN names a PostgreSQL server where this may create and drop databases. The drill:

1. a primary: a table of N rows in a new database, a gridnode node seeding it
   (``gridnode seed postgres``), three replicas following the database;
2. the disaster: the seeding node killed, its data directory deleted, the source database
   dropped (the node key kept offline, as docs/seeding.md tells the operator to);
3. recovery: a fresh node with the old key runs ``gridnode recover postgres --from REPLICA`` into
   a fresh database: it replicates, creates the table, loads it, compares every row;
4. the check: ``pg_dump --data-only`` of the recovered table equals the original's (rows sorted);
5. hand-over: the recovered node seeds the recovered table; a new row reaches a replica.

Prints ``key: value`` lines, among them ``recovery seconds`` (step 3, from the command's start to
its end). Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

TIMEOUT = float(os.environ.get("DRILL_TIMEOUT", "300"))
CREATE = """
CREATE TABLE items (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  price numeric(12,2),
  ratio double precision,
  at timestamptz,
  day date,
  doc jsonb,
  tags text[],
  blob bytea
)
"""
INSERT = """
INSERT INTO items
SELECT i, 'item ' || i, (i * 1.25)::numeric(12,2), i / 3.0,
       '2024-05-01 12:00:00.123456+00'::timestamptz + i * interval '1 second',
       '2024-05-01'::date + (i %% 1000), jsonb_build_object('n', i, 'even', i %% 2 = 0),
       ARRAY['t' || (i %% 5), 'x'], decode(md5(i::text), 'hex')
FROM generate_series(1, %s) AS i
"""


def gridnode(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if check and result.returncode != 0:
        raise SystemExit(f"gridnode {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def start(data_dir: Path, *args: str, until: str = "api:") -> tuple[subprocess.Popen[str], str]:
    """A node process (``start`` or ``seed postgres``); its first listening address."""
    log = open(data_dir.parent / f"{data_dir.name}.log", "a")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridnode.cli", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    listening = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("listening:") and not listening:
            listening = line.split(None, 1)[1].strip()
        if line.startswith(until):
            return proc, listening
    raise SystemExit(f"{data_dir.name} did not start; see {log.name}")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def digest(data_dir: Path, address: str) -> str:
    return gridnode(data_dir, "db", "digest", address, check=False).stdout.strip()


def table_dump(pg_dump: str, dsn: str) -> list[str]:
    """The data lines of ``pg_dump --data-only`` of the items table, sorted."""
    out = subprocess.run(
        [pg_dump, "--data-only", "--table", "public.items", "--dbname", dsn],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    ).stdout.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("COPY public.items "))
    end = out.index("\\.", start)
    return [out[start], *sorted(out[start + 1 : end])]


def drill(work: Path, server_dsn: str, rows: int, replicas: int, pg_dump: str) -> dict[str, object]:
    os.environ.setdefault("GRIDNODE_MDNS", "false")
    os.environ.setdefault("GRIDNODE_LOG_LEVEL", "warning")
    suffix = uuid.uuid4().hex[:8]
    source_name, target_name = f"drill_src_{suffix}", f"drill_dst_{suffix}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {source_name}")
        conn.execute(f"CREATE DATABASE {target_name}")
    source = f"{server_dsn} dbname={source_name}"
    target = f"{server_dsn} dbname={target_name}"
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(CREATE)
        conn.execute(INSERT, (rows,))
    out: dict[str, object] = {"rows": rows, "replicas": replicas}

    # 1. The primary and its replicas.
    primary = work / "primary"
    gridnode(primary, "init")
    address = gridnode(primary, "db", "create", "items", "--type", "documents").stdout.strip()
    listen = ("--listen", "/ip4/127.0.0.1/tcp/0")
    procs: list[subprocess.Popen[str]] = []
    try:
        seeder, primary_addr = start(
            primary, "seed", "postgres", "--dsn", source, "--table", "public.items",
            "--key", "id", "--db", address, *listen, until="seeding:",
        )  # fmt: skip
        procs.append(seeder)
        homes = [work / f"replica{i}" for i in range(1, replicas + 1)]
        replica_addrs = []
        for home in homes:
            proc, addr = start(home, "start", *listen, "--bootstrap", primary_addr)
            procs.append(proc)
            replica_addrs.append(addr)
            wait_for(
                lambda h=home: gridnode(h, "db", "follow", address, check=False).returncode == 0,
                f"{home.name} to follow {address}",
            )

        def seeded() -> bool:
            info = json.loads(gridnode(primary, "db", "info", address, "--json").stdout)
            return int(info.get("entries", 0)) >= rows + 1

        wait_for(seeded, "the seeder's snapshot")
        for home in homes:
            wait_for(lambda h=home: digest(h, address) == digest(primary, address), home.name)
        original = table_dump(pg_dump, source)

        # 2. The disaster.
        key = (work / "node.key.offline").write_bytes((primary / "node.key").read_bytes())
        del key
        stop(seeder, signal.SIGKILL)
        shutil.rmtree(primary)
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {source_name} WITH (FORCE)")

        # 3. Recovery: a fresh node with the old key, from a replica, into a fresh database.
        fresh = work / "recovered"
        fresh.mkdir(mode=0o700)
        shutil.copyfile(work / "node.key.offline", fresh / "node.key")
        os.chmod(fresh / "node.key", 0o600)
        began = time.monotonic()
        result = gridnode(
            fresh, "recover", "postgres", "--dsn", target, "--db", address,
            "--from", replica_addrs[0], "--json",
        )  # fmt: skip
        out["recovery seconds"] = round(time.monotonic() - began, 2)
        report = json.loads(result.stdout.splitlines()[-1])
        out["replication seconds"] = report["replicated_seconds"]
        out["rows per second"] = report["rows_per_second"]
        out["rows compared"] = report["verified"]

        # 4. The check.
        recovered = table_dump(pg_dump, target)
        out["pg_dump equal"] = recovered == original
        if recovered != original:
            raise SystemExit("the recovered table's pg_dump differs from the original's")

        # 5. Hand-over: the recovered node seeds the recovered table; a replica follows.
        seeder, _ = start(
            fresh, "seed", "postgres", "--dsn", target, "--table", "public.items",
            "--key", "id", "--db", address, *listen, "--bootstrap", replica_addrs[0],
            until="seeding:",
        )  # fmt: skip
        procs.append(seeder)
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("INSERT INTO items (id, name) VALUES (%s, 'after the drill')", (rows + 1,))

        def followed() -> bool:
            got = gridnode(homes[0], "db", "get", address, str(rows + 1), "--int", check=False)
            return got.returncode == 0 and "after the drill" in got.stdout

        wait_for(followed, "the new row to reach a replica")
        out["replica follows"] = True
    finally:
        for proc in reversed(procs):
            stop(proc)
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            for name in (source_name, target_name):
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--dsn", required=True, help="a PostgreSQL server (no dbname)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--pg-dump", default=shutil.which("pg_dump") or "pg_dump")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for key, value in drill(args.workdir, args.dsn, args.rows, args.replicas, args.pg_dump).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
