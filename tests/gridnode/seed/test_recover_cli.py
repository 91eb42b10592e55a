"""``gridnode recover postgres`` on a data directory that holds the database: the schema read
from the store's meta entry, the table loaded, progress and a summary; refusals are one line."""

import json

import psycopg
from click.testing import CliRunner

from gridnode.cli import main
from gridnode.repo import Repo
from gridnode.seed.recover import SCHEMA_KEY
from tests.gridnode.seed.test_recover import seed


def run(data_dir, *args):
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), "recover", "postgres", *args])


def test_recover_from_a_held_database(tmp_path, postgres_server):
    source_dsn = postgres_server.create_database()
    target_dsn = postgres_server.create_database()
    data_dir = tmp_path / "node"
    with Repo(data_dir) as repo:
        # The seeder recorded the schema: nothing else is needed.
        database, _ = seed(repo, source_dsn, "items", 40)
        assert database.store.meta(SCHEMA_KEY)["table"] == "public.items"
        address = database.address
    result = run(data_dir, "--dsn", target_dsn, "--db", address, "--table", "back", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["rows"] == 40 and out["verified"] == 40 and out["table"] == "back"
    assert out["nulled"] == ["secret"]
    with psycopg.connect(target_dsn) as conn:
        assert conn.execute("SELECT count(*), count(secret) FROM back").fetchone() == (40, 0)
    again = run(data_dir, "--dsn", target_dsn, "--db", address, "--table", "back")
    assert again.exit_code == 1
    assert again.stderr.strip().splitlines() == [
        "error: back already holds rows: recover into an empty table, or give --force to "
        "empty it first"
    ]
    forced = run(data_dir, "--dsn", target_dsn, "--db", address, "--table", "back", "--force")
    assert forced.exit_code == 0, forced.output
    assert "recovered 40 rows into back" in forced.stdout
    assert "excluded columns, now NULL: secret" in forced.stdout


def test_recover_refusals_are_one_line(tmp_path, pg_dsn):
    data_dir = tmp_path / "node"
    with Repo(data_dir) as repo:
        address = repo.create_database("items", "documents").address
        other = repo.create_database("ctr", "counter").address
    result = run(data_dir, "--dsn", pg_dsn, "--db", address)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "holds no table schema" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run(data_dir, "--dsn", pg_dsn, "--db", other)
    assert result.exit_code == 1 and "is a counter database" in result.stderr
    missing = "zdpuAyN9UpGbqnHZ4Zr3jVSEJcxFoHAnuMhbW8e2wWJ4ff3t7"
    result = run(data_dir, "--dsn", pg_dsn, "--db", missing)
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
