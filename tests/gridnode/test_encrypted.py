"""Encrypted databases on a node's data directory (gridnode/repo.py, gridnode/databasekeys.py):
the key kept in the keystore, readers that read, blind replicas whose files never hold a
plaintext byte, adding and removing readers, ``db create --encrypted``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from crdt.errors import MissingDatabaseKey
from gridnode.databasekeys import DATABASE_KEYS_FILE, load_database_keys
from gridnode.ops import CreateRequest, create, describe
from gridnode.repo import Repo
from gridnode.storage import DB_FILE

MARKER = b"ZEBRA-PLAINTEXT-MARKER-41c9"


def on_disk(data_dir: Path) -> bytes:
    """The SQLite file and its WAL (and shared memory), as they stand."""
    out = b""
    for suffix in ("", "-wal", "-shm"):
        path = data_dir / (DB_FILE + suffix)
        if path.exists():
            out += path.read_bytes()
    return out


def test_blind_replica_files_never_hold_a_plaintext_byte(tmp_path):
    with Repo(tmp_path / "p") as primary, Repo(tmp_path / "r") as reader:
        created = create(
            primary,
            CreateRequest("vault", "keyvalue", readers=[reader.did], encrypted=True),
        )
        created.write({"op": "put", "key": "secret", "value": MARKER.decode()})
        created.write_many([{"op": "put", "key": f"k{i}", "value": i} for i in range(50)])
        car = tmp_path / "vault.car"
        created.export_car(car)
        assert MARKER not in car.read_bytes()
        # The primary reads its own database and kept the key in its keystore.
        assert created.store.get("secret") == MARKER.decode()
        keys = load_database_keys(tmp_path / "p")[created.address]
        assert len(keys) == 1
        mode = (tmp_path / "p" / DATABASE_KEYS_FILE).stat().st_mode
        assert not mode & (stat.S_IRWXG | stat.S_IRWXO)
        info = describe(created)
        assert info["encrypted"] and not info["blind"]
        assert info["key_readers"] == sorted([primary.did, reader.did])

        with Repo(tmp_path / "b") as blind:
            report = blind.import_car(car.read_bytes())
            assert report.applied == 52 and not report.rejected
            copy = blind.database(created.address)
            assert copy.blind and len(copy.store) == 0
            assert copy.heads == created.heads
            # Every block it serves is the primary's, byte for byte.
            assert [b for _c, b in copy.stored_blocks()] == [b for _c, b in created.stored_blocks()]
            with pytest.raises(MissingDatabaseKey):
                copy.write({"op": "put", "key": "x", "value": 1})
            assert MARKER not in on_disk(tmp_path / "b")
            assert not (tmp_path / "b" / DATABASE_KEYS_FILE).exists()
        assert MARKER not in on_disk(tmp_path / "b")
        # ...whereas a reader's (and the primary's) hold the state in the clear: the grep finds
        # what it looks for.
        reader.import_car(car.read_bytes())
        mine = reader.database(created.address)
        assert mine.store.get("secret") == MARKER.decode() and not mine.blind
        assert mine.digest() == created.digest()
        assert MARKER in on_disk(tmp_path / "r")
        assert created.address in load_database_keys(tmp_path / "r")


def test_remove_reader_rotates_and_the_removed_reader_cannot_read_later_entries(tmp_path):
    with Repo(tmp_path / "p") as primary, Repo(tmp_path / "r") as reader:
        db = create(primary, CreateRequest("vault", "events", readers=[reader.did], encrypted=True))
        db.write({"op": "add", "value": "before"})
        db.remove_reader(reader.did)
        assert db.readers() == [primary.did]
        db.write({"op": "add", "value": MARKER.decode()})
        car = tmp_path / "v.car"
        db.export_car(car)
        reader.import_car(car.read_bytes())
        mine = reader.database(db.address)
        values = [row[2] for row in mine.store.state()]
        assert values == ["before"]
        assert MARKER not in on_disk(tmp_path / "r")
        # Added back, it reads the current key's entries (and the file then holds them).
        db.add_reader(reader.did)
        db.export_car(car)
        reader.import_car(car.read_bytes())
        mine = reader.database(db.address)
        assert sorted(row[2] for row in mine.store.state()) == sorted(["before", MARKER.decode()])


def test_keys_survive_a_restart_and_come_back_from_the_log(tmp_path):
    with Repo(tmp_path / "p") as primary:
        db = create(primary, CreateRequest("vault", "counter", encrypted=True))
        db.write({"op": "inc", "by": 3})
        address = db.address
    # The keystore file lost: the key is sealed to the node in the log, and comes back.
    os.unlink(tmp_path / "p" / DATABASE_KEYS_FILE)
    with Repo(tmp_path / "p") as primary:
        db = primary.database(address)
        assert db.store.value == 3 and not db.blind
        assert address in load_database_keys(tmp_path / "p")
        db.write({"op": "inc", "by": 1})
        assert db.store.value == 4


def test_create_request_checks():
    from gridnode.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        CreateRequest.from_json({"name": "x", "type": "events", "encrypted": 1})
    with pytest.raises(InvalidRequest):
        CreateRequest.from_json({"name": "x", "type": "events", "encrypted": True, "public": True})
    request = CreateRequest.from_json(
        {
            "name": "x",
            "type": "events",
            "encrypted": True,
            "readers": ["did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"],
        }
    )
    assert request.encrypted and not request.private


def test_cli_create_encrypted_and_manage_readers(tmp_path):
    from click.testing import CliRunner

    from gridnode.cli import main

    def run(*args, code=0):
        result = CliRunner().invoke(
            main, ["--data-dir", str(tmp_path / "d"), "--log-level", "warning", *args]
        )
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    reader = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"
    run("init")
    address = run(
        "db", "create", "vault", "--type", "keyvalue", "--encrypted", "--reader", reader
    ).stdout.strip()
    run("db", "put", address, "k", '"v"')
    assert run("db", "get", address, "k").stdout.strip() == '"v"'
    with Repo(tmp_path / "d") as repo:
        me = repo.did
    assert run("db", "reader", "list", address).stdout.split() == sorted([me, reader])
    run("db", "reader", "remove", address, reader)
    assert run("db", "reader", "list", address).stdout.split() == [me]
    run("db", "reader", "add", address, reader)
    assert run("db", "reader", "list", address).stdout.split() == sorted([me, reader])
    info = json.loads(run("db", "info", address, "--json").stdout)
    assert info["encrypted"] and not info["blind"] and not info["private"]
    # Refused: a reader without --private/--encrypted, --encrypted with --public, a bad DID,
    # readers of a database that is not encrypted.
    run("db", "create", "x", "--type", "events", "--reader", reader, code=2)
    run("db", "create", "x", "--type", "events", "--encrypted", "--public", code=2)
    run("db", "reader", "add", address, "did:key:nonsense", code=1)
    plain = run("db", "create", "plain", "--type", "events").stdout.strip()
    run("db", "reader", "add", plain, reader, code=1)


def test_readers_change_through_a_running_node(tmp_path):
    """``db reader`` and ``db create --encrypted`` through the API of a running node."""
    from click.testing import CliRunner

    from gridnode.cli import main
    from tests.gridnode.test_cli_restore import running

    def cli(*args):
        result = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "a"), *args])
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result.stdout

    reader = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"
    with Repo(tmp_path / "a"):
        pass
    with running(tmp_path / "a") as a:
        address = cli("db", "create", "vault", "--type", "events", "--encrypted").strip()
        cli("db", "add", address, '"hello"')
        changed = json.loads(cli("db", "reader", "add", address, reader, "--json"))
        assert changed["key_readers"] == sorted([a.node.repo.did, reader])
        removed = a.client.reader(address, "remove", reader)
        assert removed["key_readers"] == [a.node.repo.did]
        assert cli("db", "reader", "list", address).split() == [a.node.repo.did]
        info = a.client.database(address)
        assert info["encrypted"] and info["entries"] == 4 and not info["blind"]


def test_a_writer_without_the_current_key_is_refused_with_409(tmp_path):
    from tests.gridnode.test_cli_restore import running

    with Repo(tmp_path / "p") as primary, Repo(tmp_path / "b") as other:
        db = create(
            primary, CreateRequest("vault", "keyvalue", writers=[other.did], encrypted=True)
        )
        db.write({"op": "put", "key": "k", "value": MARKER.decode()})
        db.remove_reader(other.did)  # still a writer, but sealed from the new key
        db.export_car(tmp_path / "v.car")
        address = db.address
        other.import_car((tmp_path / "v.car").read_bytes())
    with running(tmp_path / "b") as b:
        with pytest.raises(MissingDatabaseKey):
            b.client.write(address, [{"op": "put", "key": "x", "value": 1}])
        info = b.client.database(address)
        assert info["entries"] == 3 and info["key_readers"] == [primary.did]
        assert b.client.read("get", address, key="k")["value"] == MARKER.decode()  # old key kept


def test_db_log_shows_plaintext_to_readers_only(tmp_path):
    from gridnode.ops import log_entries, materialize

    with Repo(tmp_path / "p") as primary, Repo(tmp_path / "b") as blind:
        db = create(primary, CreateRequest("vault", "keyvalue", encrypted=True))
        db.write({"op": "put", "key": "k", "value": MARKER.decode()})
        db.export_car(tmp_path / "v.car")
        blind.import_car((tmp_path / "v.car").read_bytes())
        mine = materialize(log_entries(db))["entries"]
        theirs = materialize(log_entries(blind.database(db.address)))["entries"]
        assert mine[-1]["payload"] == {"op": "put", "key": "k", "value": MARKER.decode()}
        assert theirs[-1]["payload"]["op"] == "enc"
