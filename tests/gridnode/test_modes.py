"""The data directory is private to its user: 0700, its files 0600, whatever the umask."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridnode.config import CONFIG_FILE
from gridnode.keystore import KEY_FILE, create_key
from gridnode.repo import Repo
from gridnode.storage import DB_FILE


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_new_data_dir_is_private(tmp_path: Path, usual_umask: None) -> None:
    data_dir = tmp_path / "node"
    with Repo(data_dir) as repo:
        repo.create_database("kv", "keyvalue").write({"op": "put", "key": "k", "value": 1})
        assert _mode(data_dir) == 0o700
        for name in (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm", CONFIG_FILE, KEY_FILE):
            assert _mode(data_dir / name) == 0o600, name
        assert _mode(data_dir / DB_FILE) == 0o600
        assert _mode(data_dir / CONFIG_FILE) == 0o600
        assert _mode(data_dir / KEY_FILE) == 0o600


def test_old_loose_data_dir_is_tightened(
    tmp_path: Path, usual_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "node"
    with Repo(data_dir):
        pass
    # What an older node left under umask 022.
    os.chmod(data_dir, 0o755)
    for name in (DB_FILE, CONFIG_FILE):
        os.chmod(data_dir / name, 0o644)
    with caplog.at_level(logging.INFO, logger="gridnode.datadir"), Repo(data_dir):
        pass
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / DB_FILE) == 0o600
    assert _mode(data_dir / CONFIG_FILE) == 0o600
    lines = [r for r in caplog.records if "tightened" in r.getMessage()]
    assert len(lines) == 1
    # Once tightened, the next start says nothing.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gridnode.datadir"), Repo(data_dir):
        pass
    assert not [r for r in caplog.records if "tightened" in r.getMessage()]


def test_key_temp_file_is_not_followed(tmp_path: Path) -> None:
    """A symlink planted at the key's temporary path is not written through."""
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / (KEY_FILE + ".tmp")).symlink_to(target)
    create_key(tmp_path / KEY_FILE)
    assert target.read_text() == "untouched"
    assert _mode(tmp_path / KEY_FILE) == 0o600
