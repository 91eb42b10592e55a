"""Disk faults: a full filesystem under a running node, a stored block gone bad.

Full disk: the data directory on a small tmpfs (8 MiB, mounted by the test, as root; skipped
saying why where it cannot be mounted). With the disk full a node refuses writes with
:class:`~gridnode.storage.StorageFull` and one log line, keeps running (and serving), cannot
apply what its peers send; once space returns the next write succeeds, it catches up, and
nothing acknowledged before is lost.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridnode.repo import Repo
from gridnode.storage import StorageFull

_spec = importlib.util.spec_from_file_location(
    "faults_conftest", Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)
NodeProc = faults.node_proc.NodeProc


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs mounted on tmp_path/disk; unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root is needed): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=30)


def fill(directory: Path) -> Path:
    """A file taking every free byte of ``directory``'s filesystem."""
    filler = directory / "filler"
    # Unbuffered: nothing is left to flush when the file closes on a full disk (a buffered
    # close raised ENOSPC itself, now and then).
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def keys_missing(data_dir: Path, address: str, acked: dict[str, int]) -> int:
    with Repo(data_dir) as repo:
        assert repo.sql.integrity_check() == "ok"
        store = repo.database(address).store
        return sum(store.get(f"{tag}-{i}") != i for tag, n in acked.items() for i in range(n))


def test_store_refuses_writes_on_a_full_disk_and_recovers(small_disk):
    """The storage layer alone: SQLite's 'database or disk is full' becomes StorageFull, the
    transaction leaves nothing behind, and the next one after space returns commits."""
    with Repo(small_disk / "node") as repo:
        db = repo.create_database("full", "keyvalue")
        db.write_many([{"op": "put", "key": f"pre-{i}", "value": i} for i in range(100)])
        filler = fill(small_disk)
        with pytest.raises(StorageFull, match="is full"):
            for n in range(200):
                db.write_many(
                    [{"op": "put", "key": f"full{n}-{i}", "value": i} for i in range(100)]
                )
        assert db.store.get(f"full{n}-0") is None
        count = len(db)
        filler.unlink()
        db.write_many([{"op": "put", "key": f"after-{i}", "value": i} for i in range(100)])
        assert len(db) == count + 100
        address = db.address
    assert keys_missing(small_disk / "node", address, {"pre": 100, "after": 100}) == 0


@pytest.mark.slow
def test_node_on_a_full_disk_refuses_writes_keeps_serving_and_catches_up(small_disk, tmp_path):
    with Repo(tmp_path / "source") as repo:
        address = repo.create_database("full", "keyvalue", public=True).address
    source = NodeProc(tmp_path / "source", "--announce", "1")
    source.wait_ready()
    full = NodeProc(
        small_disk / "node",
        "--bootstrap",
        source.addr,
        "--follow",
        address,
        "--announce",
        "1",
        log_dir=tmp_path,
    )
    acked: dict[str, int] = {}
    try:
        full.wait_ready()
        assert full.ask(f"write {address} 100 pre") == "ack pre 100"
        acked["pre"] = 100
        assert source.ask(f"write {address} 100 src0") == "ack src0 100"
        acked["src0"] = 100
        faults.wait_converged([source, full], address, 200, 30)

        filler = fill(small_disk)
        # Writes are refused with the typed error (a few may still fit in space SQLite holds).
        refused = None
        for n in range(100):
            answer = full.ask(f"write {address} 200 fill{n}")
            if answer.startswith("error "):
                refused = answer
                break
            acked[f"fill{n}"] = 200
        assert refused is not None and refused.startswith(f"error fill{n} StorageFull: "), refused
        assert "is full" in refused
        # The node runs on: it answers, and what its peer writes cannot be kept meanwhile.
        before = full.state(address)[0]
        assert source.ask(f"write {address} 300 src1") == "ack src1 300"
        acked["src1"] = 300
        time.sleep(3)
        assert full.proc.poll() is None, full.errors()[-3000:]
        assert full.state(address)[0] == before
        assert "ERROR gridnode.storage.sqlite: disk full: cannot write to" in full.errors()

        filler.unlink()
        assert full.ask(f"write {address} 100 after") == "ack after 100"
        acked["after"] = 100
        faults.wait_converged([source, full], address, sum(acked.values()), 60)
    finally:
        full.stop()
        source.stop()
    assert "Traceback" not in full.errors(), full.errors()[-3000:]
    assert keys_missing(small_disk / "node", address, acked) == 0
    assert keys_missing(tmp_path / "source", address, acked) == 0
    assert keys_missing(small_disk / "node", address, {f"fill{n}": 200}) == 200


def test_cli_write_on_a_full_disk_is_one_error_line(small_disk):
    data_dir = small_disk / "node"
    with Repo(data_dir) as repo:
        address = repo.create_database("full", "keyvalue").address
    filler = fill(small_disk)
    try:
        for attempt in range(50):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gridnode.cli",
                    "--data-dir",
                    str(data_dir),
                    "db",
                    "put",
                    address,
                    "-",
                ],
                input="".join(
                    f'{{"key": "k{attempt}-{i}", "value": "{"x" * 200}"}}\n' for i in range(500)
                ),
                capture_output=True,
                text=True,
                timeout=60,
            )
            if done.returncode != 0:
                break
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.splitlines()[-1].startswith("error: the disk holding "), done.stderr
    finally:
        filler.unlink()
