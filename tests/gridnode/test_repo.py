import pytest

from crdt.errors import InvalidCar, Unauthorized
from crdt.identity import Keypair
from gridnode.repo import Repo, UnknownDatabase


def test_write_reopen_and_read(tmp_path):
    with Repo(tmp_path / "a") as repo:
        db = repo.create_database("people", "keyvalue")
        db.write({"op": "put", "key": "alice", "value": {"age": 33}})
        db.write_many([{"op": "put", "key": f"k{i}", "value": i} for i in range(100)])
        address, digest, heads = db.address, db.digest(), db.heads
    with Repo(tmp_path / "a") as repo:
        db = repo.database(address)
        assert db.store.get("alice") == {"age": 33}
        assert db.store.get("k99") == 99
        assert db.heads == heads and db.digest() == digest and len(db) == 101
        assert repo.databases() == [(address, "people", "keyvalue")]
        assert repo.sql.integrity_check() == "ok"


def test_unknown_database(tmp_path):
    with Repo(tmp_path) as repo:
        with pytest.raises(UnknownDatabase):
            repo.database("/gridnode/bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe")
        with pytest.raises(UnknownDatabase):
            repo.database("not an address")


def test_failed_batch_changes_nothing(tmp_path):
    with Repo(tmp_path) as repo:
        db = repo.create_database("kv", "keyvalue")
        db.write({"op": "put", "key": "a", "value": 1})
        before = db.digest(), db.heads
        with pytest.raises(Unauthorized):
            db.write_many(
                [{"op": "put", "key": "b", "value": 2}, {"op": "put", "key": "c", "value": 3}],
                keypair=Keypair.from_seed(bytes([5]) * 32),
            )
        from crdt.errors import InvalidOperation

        with pytest.raises(InvalidOperation):
            db.write_many([{"op": "put", "key": "b", "value": 2}, {"op": "nonsense"}])
        assert (db.digest(), db.heads) == before
        assert db.store.get("b") is None
        db.write({"op": "put", "key": "d", "value": 4})
        assert db.store.get("d") == 4


def test_two_data_dirs_exchange_cars_and_converge(tmp_path):
    with Repo(tmp_path / "a") as a, Repo(tmp_path / "b") as b:
        db_a = a.create_database("shared", "documents", writers=[b.did], options={"indexes": ["n"]})
        db_a.write({"op": "put", "doc": {"_id": "x", "n": 1}})
        db_a.export_car(tmp_path / "a.car")
        report = b.import_car((tmp_path / "a.car").read_bytes())
        assert report.applied == 1 and not report.rejected
        db_b = b.database(db_a.address)
        # Both write independently...
        db_a.write_many([{"op": "put", "doc": {"_id": f"a{i}", "n": i}} for i in range(20)])
        db_b.write_many([{"op": "put", "doc": {"_id": f"b{i}", "n": i}} for i in range(20)])
        db_b.write({"op": "del", "id": "x"})
        # ...then exchange CARs both ways.
        db_a.export_car(tmp_path / "a.car")
        db_b.export_car(tmp_path / "b.car")
        b.import_car((tmp_path / "a.car").read_bytes())
        a.import_car((tmp_path / "b.car").read_bytes())
        assert db_a.digest() == db_b.digest()
        assert db_a.heads == db_b.heads
        assert [d["_id"] for d in db_a.store.query("n", eq=3)] == ["a3", "b3"]
        assert db_a.store.get("x") is None


def test_import_of_a_bad_car_changes_nothing(tmp_path):
    with Repo(tmp_path / "a") as a, Repo(tmp_path / "b") as b:
        db = a.create_database("ev", "events")
        db.write_many([{"op": "add", "value": i} for i in range(5)])
        db.export_car(tmp_path / "ok.car")
        data = bytearray((tmp_path / "ok.car").read_bytes())
        data[-3] ^= 0xFF  # corrupt the last block
        with pytest.raises(InvalidCar):
            b.import_car(bytes(data))
        assert b.databases() == []


def test_import_reports_forged_entries(tmp_path):
    with Repo(tmp_path / "a") as a, Repo(tmp_path / "b") as b, Repo(tmp_path / "m") as mallory:
        db = a.create_database("closed", "keyvalue")
        db.write({"op": "put", "key": "k", "value": "honest"})
        db.export_car(tmp_path / "a.car")
        mallory.import_car((tmp_path / "a.car").read_bytes())
        forged_db = mallory.database(db.address)
        forged_db._db.log._authorise = lambda *args: None  # Mallory's node skips the check
        forged_db.write({"op": "put", "key": "k", "value": "forged"})
        forged_db.export_car(tmp_path / "m.car")
        report = b.import_car((tmp_path / "m.car").read_bytes())
        assert report.applied == 1
        assert len(report.rejected) == 1 and "Unauthorized" in report.rejected[0][1]
        assert b.database(db.address).store.get("k") == "honest"


def test_a_manifest_whose_store_cannot_open_is_refused_and_nothing_kept(tmp_path):
    from crdt.errors import InvalidManifest
    from crdt.manifest import create_manifest

    with Repo(tmp_path / "n") as repo:
        bad = create_manifest(
            "bad", "documents", admins=[repo.did], writers=[repo.did], options={"indexes": [""]}
        )
        with pytest.raises(InvalidManifest):
            repo.add_database(bad)
        assert repo.databases() == []


def test_blocks_newest_first_join_parents_first(tmp_path):
    """A history longer than the per-author pending limit, offered newest first (as a bitswap
    restore walks it down from the heads): every entry applies, none waits or is dropped."""
    from crdt.log import DEFAULT_MAX_PENDING_PER_AUTHOR

    source = Repo(tmp_path / "a")
    db = source.create_database("long", "events")
    count = DEFAULT_MAX_PENDING_PER_AUTHOR + 5
    for start in range(0, count, 5000):
        db.write_many([{"op": "add", "value": i} for i in range(start, min(count, start + 5000))])
    blocks = [(e.cid, e.block) for e in db.entries()]
    blocks.reverse()
    target = Repo(tmp_path / "b")
    copy = target.add_database(db.manifest)
    report = copy.join_blocks(blocks)
    assert (report.applied, report.pending, report.rejected) == (count, 0, [])
    assert copy.digest() == db.digest()
    source.close()
    target.close()


def test_a_data_directory_whose_sqlite_file_is_not_a_database_is_a_storage_error(tmp_path):
    import sqlite3

    from gridnode.errors import StorageError
    from gridnode.storage import DB_FILE

    data_dir = tmp_path / "node"
    data_dir.mkdir()
    (data_dir / DB_FILE).write_bytes(b"this is not a SQLite file, whatever its name says\n" * 100)
    with pytest.raises(StorageError, match="not a gridnode SQLite file") as raised:
        Repo(data_dir)
    assert not isinstance(raised.value, sqlite3.Error)


def test_meta_of_a_write_commits_with_its_entries_or_not_at_all(tmp_path):
    from crdt.errors import InvalidOperation

    with Repo(tmp_path) as repo:
        db = repo.create_database("kv", "keyvalue")
        db.write_many([{"op": "put", "key": "a", "value": 1}], meta={"position": 1})
        assert repo.meta("position") == 1
        with pytest.raises(InvalidOperation):
            db.write_many(
                [{"op": "put", "key": "b", "value": 2}, {"op": "nonsense"}],
                meta={"position": 2, "other": b"x"},
            )
        assert (repo.meta("position"), repo.meta("other")) == (1, None)
        db.write_many([{"op": "put", "key": "b", "value": 2}], meta={"position": "two"})
    with Repo(tmp_path) as repo:
        assert repo.meta("position") == "two"
        assert repo.database(db.address).store.get("b") == 2


def test_replicated_and_private_flags_survive_a_reopen(tmp_path):
    with Repo(tmp_path) as repo:
        address = repo.create_database("kv", "keyvalue").address
        assert repo.replicated(address) and not repo.private(address)
        repo.set_replicated(address, False)
        repo.set_private(address, True)
    with Repo(tmp_path) as repo:
        assert not repo.replicated(address) and repo.private(address)
        assert repo.served() == []
        repo.set_replicated(address, True)
        repo.set_private(address, False)
        assert repo.replicated(address) and not repo.private(address)
        assert [d.address for d in repo.served()] == [address]


def test_who_may_read_a_private_database(tmp_path):
    """Admins, writers (as the access state has them now) and the manifest's readers; nobody
    else, and no peer without an ed25519 key. A database without readers: anyone, unless this
    node flagged it private (before manifests had readers): then its admins and writers."""
    from crdt.identity import Keypair

    writer, reader, granted, stranger = (
        Keypair.from_seed(bytes([n]) * 32).did for n in (1, 2, 3, 4)
    )
    with Repo(tmp_path) as repo:
        db = repo.create_database("p", "keyvalue", writers=[writer], readers=[reader])
        assert db.private and repo.private(db.address)
        assert all(db.may_read(did) for did in (repo.did, writer, reader))
        assert not db.may_read(stranger) and not db.may_read(None) and not db.may_read(granted)
        db.write({"op": "grant", "role": "writer", "did": granted})
        db.write({"op": "revoke", "role": "writer", "did": writer})
        assert db.may_read(granted) and not db.may_read(writer)
        assert repo.served() == []

        plain = repo.create_database("plain", "keyvalue")
        assert not plain.private and plain.may_read(stranger) and plain.may_read(None)
        repo.set_private(plain.address, True)
        assert plain.private and not plain.may_read(stranger) and plain.may_read(repo.did)


def test_a_history_larger_than_the_pending_caps_restores_from_the_heads_down(tmp_path):
    # The node's bitswap walk joins what it fetched so far, newest first, when its deadline ends,
    # and fills the rest in later rounds: every round waits whole for the root (issue 18). A peer
    # sending the same history children first is held to its cap; a CAR file is not.
    from gridnode.repo import BITSWAP_SOURCE

    with Repo(tmp_path / "a") as a:
        db = a.create_database("big", "keyvalue")
        db.write_many([{"op": "put", "key": f"k{i}", "value": "x" * 400} for i in range(300)])
        manifest, digest, entries = db.manifest, db.digest(), list(db.entries())
        db.export_car(tmp_path / "big.car")
    for name in ("b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "gridnode.toml").write_text(
            "pending_bytes = 20000\npending_bytes_per_peer = 10000\n"
        )
    assert sum(len(e.block) for e in entries) > 10 * 20_000
    with Repo(tmp_path / "b") as b:
        assert b.config.pending_bytes_per_peer == 10_000
        db_b = b.add_database(manifest)
        for end in range(300, 0, -60):
            report = db_b.join_entries(entries[end - 60 : end], source=BITSWAP_SOURCE)
            assert not report.rejected
        assert len(db_b) == 300 and db_b.digest() == digest and db_b.pending_bytes == 0
    with Repo(tmp_path / "c") as c:
        db_c = c.add_database(manifest)
        report = db_c.join_entries(entries[100:], source="12D3KooWpeer")
        assert report.pending < 200
        assert any("PendingLimitExceeded" in reason for _, reason in report.rejected)
        c.import_car((tmp_path / "big.car").read_bytes())
        assert len(db_c) == 300 and db_c.digest() == digest


def test_drop_database_deletes_only_that_database(tmp_path):
    """``Repo.drop_database`` (catalogs' ``drop_unlisted``): refused while replicated; then the
    database's row, tables, blocks and meta rows go, and the other databases stay whole."""
    import pytest as _pytest

    from gridnode.errors import InvalidRequest, UnknownDatabase

    with Repo(tmp_path / "d") as repo:
        dropped = repo.create_database("dropped", "keyvalue")
        kept = repo.create_database("kept", "keyvalue")
        for i in range(5):
            dropped.write({"op": "put", "key": f"k{i}", "value": i})
            kept.write({"op": "put", "key": f"k{i}", "value": i})
        digest = kept.digest()
        with _pytest.raises(InvalidRequest):
            repo.drop_database(dropped.address)
        repo.set_replicated(dropped.address, False)
        cids = [cid for cid, _ in dropped.stored_blocks()]
        assert repo.drop_database(dropped.address) == 6
        with _pytest.raises(UnknownDatabase):
            repo.database(dropped.address)
        assert all(repo.sql.get_block(cid.bytes) is None for cid in cids)
        assert repo.replicated(dropped.address)  # no meta row left behind
        assert [name for _a, name, _s in repo.databases()] == ["kept"]
    with Repo(tmp_path / "d") as repo:
        assert repo.database(kept.address).digest() == digest
        assert repo.sql.integrity_check() == "ok"
