import json
import logging
import stat

import pytest

from gridnode.keystore import KEY_FILE, KeyFileError, create_key, load_key, load_or_create_key


def test_key_file_is_private_and_round_trips(tmp_path):
    keypair, created = load_or_create_key(tmp_path)
    assert created
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = load_or_create_key(tmp_path)
    assert not created_again
    assert again == keypair
    assert again.seed == keypair.seed
    assert not list(tmp_path.glob("*.tmp"))


def test_mode_is_0600_even_with_a_permissive_umask(tmp_path):
    import os

    old = os.umask(0)
    try:
        create_key(tmp_path / "k", seed=bytes(32))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_existing_key_is_never_overwritten(tmp_path):
    path = tmp_path / KEY_FILE
    first = create_key(path, seed=bytes(32))
    with pytest.raises(KeyFileError):
        create_key(path, seed=bytes([1]) * 32)
    assert load_key(path) == first


def test_key_never_logged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    keypair = create_key(tmp_path / KEY_FILE)
    load_key(tmp_path / KEY_FILE)
    assert keypair.seed.hex() not in caplog.text
    assert keypair.did in caplog.text


def test_corrupt_key_file_errors_without_echoing_secret(tmp_path):
    path = tmp_path / KEY_FILE
    create_key(path, seed=bytes([9]) * 32)
    document = json.loads(path.read_text())
    document["seed"] = document["seed"][:-2]  # truncated seed
    path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError) as excinfo:
        load_key(path)
    assert document["seed"] not in str(excinfo.value)


def test_did_mismatch_is_detected(tmp_path):
    path = tmp_path / KEY_FILE
    create_key(path, seed=bytes([9]) * 32)
    document = json.loads(path.read_text())
    document["did"] = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError):
        load_key(path)


def test_world_readable_key_warns(tmp_path, caplog):
    path = tmp_path / KEY_FILE
    create_key(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load_key(path)
    assert "readable by others" in caplog.text
