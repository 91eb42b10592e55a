"""gridnode/keybackup.py: the node key in an age file and back, refusing what is not a backup."""

from __future__ import annotations

import io
import json
import logging

import pytest

from crdt.identity import Keypair
from gridnode.age import encrypt_to, generate_identity
from gridnode.errors import KeyFileError
from gridnode.keybackup import (
    KeyBackup,
    collect,
    read_backup,
    restore,
    take_database_keys,
    write_backup,
)
from gridnode.keystore import KEY_FILE, create_key, load_key
from protocols.errors import AgeNoMatch, AgePayloadError

SEED = bytes(range(32))


def _sealed(document: object, recipient) -> io.BytesIO:
    sink = io.BytesIO()
    encrypt_to([recipient], io.BytesIO(json.dumps(document).encode()), sink)
    sink.seek(0)
    return sink


def test_round_trip_through_a_data_directory(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    create_key(tmp_path / "a" / KEY_FILE, SEED)
    identity = generate_identity()
    sink = io.BytesIO()
    backup = collect(tmp_path / "a")
    write_backup(backup, [str(identity.recipient())], sink)
    assert SEED.hex().encode() not in sink.getvalue()
    again = read_backup(io.BytesIO(sink.getvalue()), [identity])
    assert again.keypair.seed == SEED and again.database_keys == {}
    restored = restore(again, tmp_path / "b")
    assert restored.created and restored.did == Keypair(SEED).did
    assert load_key(tmp_path / "b" / KEY_FILE).seed == SEED
    # The same key again is no change; another key is refused and left alone.
    assert not restore(again, tmp_path / "b").created
    create_key(tmp_path / "c" / KEY_FILE, bytes(32))
    with pytest.raises(KeyFileError, match="another key"):
        restore(again, tmp_path / "c")
    assert load_key(tmp_path / "c" / KEY_FILE).seed == bytes(32)
    assert SEED.hex() not in caplog.text
    assert SEED.hex() not in repr(again)


def test_the_plaintext_is_the_documented_json():
    identity = generate_identity()
    sink = io.BytesIO()
    write_backup(
        KeyBackup(Keypair(SEED), {"/gridnode/bafyx": {"k": 1}}), [identity.recipient()], sink
    )
    from gridnode.age import decrypt_with

    plain = io.BytesIO()
    decrypt_with([identity], io.BytesIO(sink.getvalue()), plain)
    document = json.loads(plain.getvalue())
    did = Keypair(SEED).did
    assert document == {
        "kind": "gridnode-key-backup",
        "version": 1,
        "did": did,
        "node_key": {"kind": "gridnode-ed25519-seed", "did": did, "seed": SEED.hex()},
        "database_keys": {"/gridnode/bafyx": {"k": 1}},
    }


def test_collect_needs_a_key(tmp_path):
    with pytest.raises(KeyFileError, match="no node key"):
        collect(tmp_path)


@pytest.mark.parametrize(
    "document",
    [
        {"kind": "something else"},
        [1, 2],
        {"kind": "gridnode-key-backup", "version": 2},
        {"kind": "gridnode-key-backup", "version": 1, "did": "x", "node_key": {}},
        {
            "kind": "gridnode-key-backup",
            "version": 1,
            "did": Keypair(bytes(32)).did,  # another DID than the seed's
            "node_key": {
                "kind": "gridnode-ed25519-seed",
                "did": Keypair(SEED).did,
                "seed": SEED.hex(),
            },
        },
        {
            "kind": "gridnode-key-backup",
            "version": 1,
            "did": Keypair(SEED).did,
            "node_key": {"kind": "gridnode-ed25519-seed", "did": Keypair(SEED).did, "seed": "zz"},
        },
    ],
)
def test_what_is_not_a_backup_is_refused_without_quoting_it(document):
    identity = generate_identity()
    with pytest.raises(KeyFileError) as info:
        read_backup(_sealed(document, identity.recipient()), [identity])
    assert SEED.hex() not in str(info.value)


def test_not_json_is_refused():
    identity = generate_identity()
    sink = io.BytesIO()
    encrypt_to([identity.recipient()], io.BytesIO(b"\xff not json"), sink)
    with pytest.raises(KeyFileError):
        read_backup(io.BytesIO(sink.getvalue()), [identity])


def test_wrong_identity_and_damage_are_age_errors():
    identity = generate_identity()
    sink = io.BytesIO()
    write_backup(KeyBackup(Keypair(SEED)), [identity.recipient()], sink)
    with pytest.raises(AgeNoMatch):
        read_backup(io.BytesIO(sink.getvalue()), [generate_identity()])
    with pytest.raises(AgePayloadError):
        read_backup(io.BytesIO(sink.getvalue()[:-2]), [identity])


def test_a_huge_plaintext_is_refused(monkeypatch):
    import gridnode.keybackup as keybackup

    monkeypatch.setattr(keybackup, "MAX_BACKUP", 1000)
    identity = generate_identity()
    sink = io.BytesIO()
    encrypt_to([identity.recipient()], io.BytesIO(b" " * 5000), sink)
    with pytest.raises(KeyFileError, match="larger"):
        read_backup(io.BytesIO(sink.getvalue()), [identity])


def test_database_keys_travel_with_the_node_key(tmp_path):
    """The keys of encrypted databases the node holds (gridnode.databasekeys) go into the backup
    and come back into a new data directory; a malformed set writes nothing at all."""
    from gridnode.databasekeys import load_database_keys, save_database_keys

    src, dst, bad = tmp_path / "src", tmp_path / "dst", tmp_path / "bad"
    for directory in (src, dst, bad):
        directory.mkdir()
    create_key(src / KEY_FILE, SEED)
    keys = {b"\x01" * 8: b"\xaa" * 32, b"\x02" * 8: b"\xbb" * 32}
    save_database_keys(src, "/gridnode/bafyone", keys)
    backup = collect(src)
    assert backup.database_keys == {
        "/gridnode/bafyone": {kid.hex(): key.hex() for kid, key in keys.items()}
    }
    restored = restore(backup, dst)
    assert restored.created
    assert load_database_keys(dst) == {"/gridnode/bafyone": keys}
    assert load_key(dst / KEY_FILE).did == Keypair(SEED).did
    for wrong in (
        {"/gridnode/bafyx": {"k": 1}},  # not hex
        {"/gridnode/bafyx": {"01": "aa"}},  # not a 32-byte key
        {"not-an-address": {}},
        {"/gridnode/bafyx": ["01"]},
    ):
        with pytest.raises(KeyFileError):
            restore(KeyBackup(Keypair(SEED), wrong), bad)
        assert not (bad / KEY_FILE).exists()  # nothing half restored
        assert load_database_keys(bad) == {}
    take_database_keys(bad, {})  # none: nothing to do
