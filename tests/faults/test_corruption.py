"""A stored block damaged on disk: detected when read, never served, never exported.

One byte of an entry's block is flipped inside the node's SQLite file itself (the node stopped),
as bit rot would do it. ``PRAGMA integrity_check`` still says "ok" (the b-tree is sound); the
sha256 of the block against its CID is what catches it.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crdt.errors import HashMismatch
from gridnode.cli import main
from gridnode.repo import Repo
from gridnode.storage import DB_FILE, CorruptBlock
from tests.gridnode.conftest import node_in_thread

_spec = importlib.util.spec_from_file_location(
    "faults_conftest", Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)
NodeProc = faults.node_proc.NodeProc

ENTRIES = 50
BAD = 20


def damaged_node(data_dir: Path):
    """A data dir whose entry number BAD (of a chain of ENTRIES) has one byte flipped on disk."""
    with Repo(data_dir) as repo:
        db = repo.create_database("rot", "keyvalue", public=True)
        entries = [
            db.write({"op": "put", "key": f"k{i}", "value": f"payload-{i:04d}-" + "z" * 40})
            for i in range(ENTRIES)
        ]
        address = db.address
    # Closed: the WAL is checkpointed into the main file.
    assert not (data_dir / (DB_FILE + "-wal")).exists()
    bad = entries[BAD]
    path = data_dir / DB_FILE
    data = bytearray(path.read_bytes())
    at = data.find(bad.block)
    assert at >= 0 and data.find(bad.block, at + 1) < 0
    at += bad.block.index(b"payload-") + len("payload-")
    data[at] ^= 0x01  # '0' -> '1': still valid CBOR, another value
    path.write_bytes(bytes(data))
    return address, entries


def test_a_damaged_block_is_detected_on_read_and_not_exported(tmp_path):
    address, entries = damaged_node(tmp_path / "node")
    bad = entries[BAD]
    with Repo(tmp_path / "node") as repo:
        assert repo.sql.integrity_check() == "ok"  # SQLite does not see it
        db = repo.database(address)
        with pytest.raises(CorruptBlock, match=str(bad.cid)) as raised:
            db.block(bad.cid)
        assert isinstance(raised.value, HashMismatch)
        assert db.block(entries[BAD - 1].cid) == entries[BAD - 1].block
        assert db.blocks_of([e.cid for e in entries]) == [
            (e.cid, e.block) for e in entries if e is not bad
        ]
        items = [e.clock.to_bytes(8, "big") + e.cid.bytes for e in entries]
        assert db.item_blocks(items) == [e.block for e in entries if e is not bad]
        with pytest.raises(CorruptBlock):
            db.export_car(tmp_path / "out.car")
        assert not (tmp_path / "out.car").exists() and not (tmp_path / "out.car.tmp").exists()


@pytest.mark.slow
def test_a_damaged_block_is_not_served_to_a_peer_and_is_reported(tmp_path):
    address, entries = damaged_node(tmp_path / "source")
    source = NodeProc(tmp_path / "source", "--announce", "1")
    source.wait_ready()
    peer = None
    try:
        peer = NodeProc(
            tmp_path / "peer", "--bootstrap", source.addr, "--follow", address, "--announce", "1"
        )
        peer.wait_ready()
        # The peer gets everything before the damaged entry; the rest waits for it.
        deadline = time.monotonic() + 30
        while peer.state(address)[0] < BAD:
            assert time.monotonic() < deadline, peer.state(address)
            time.sleep(0.1)
        time.sleep(3)  # several anti-entropy rounds: it keeps asking, and is never sent it
        count, _, missing = peer.state(address)
        assert count == BAD and missing >= 1
        assert source.state(address)[0] == ENTRIES
    finally:
        if peer is not None:
            peer.stop()
        source.stop()
    assert (
        f"stored block {entries[BAD].cid} of {address} does not hash to its CID" in source.errors()
    )
    # Never sent: a damaged copy would have been rejected (a bad signature) and logged so.
    assert "gridnode.repo: rejected" not in peer.errors(), peer.errors()[-3000:]
    assert "Traceback" not in source.errors() + peer.errors()
    with Repo(tmp_path / "peer") as repo:
        db = repo.database(address)
        assert len(db) == BAD
        assert [e.cid for e in db.entries()] == [e.cid for e in entries[:BAD]]


def test_the_gateway_does_not_send_a_damaged_block(tmp_path):
    from gridnode.api import gateway

    address, entries = damaged_node(tmp_path / "node")
    bad = entries[BAD]
    with Repo(tmp_path / "node") as repo:
        db = repo.database(address)
        # The whole database streams a chunk at a time: reading it to the end stops at the
        # damaged block, which is never handed out.
        whole = gateway.serve(repo, db.manifest.cid, gateway.CAR, "all")
        assert whole.chunks is not None
        sent: list[bytes] = []
        with pytest.raises(CorruptBlock):
            while chunk := whole.chunks.next_chunk(1):  # a part or so a call
                sent += chunk
        assert entries[BAD - 1].block in b"".join(sent)  # what came before it was sent
        assert bad.cid.bytes not in b"".join(sent)  # no section of the damaged block at all
        with pytest.raises(CorruptBlock):
            gateway.serve(repo, bad.cid, gateway.RAW, "block")
        served = gateway.serve(repo, entries[BAD - 1].cid, gateway.RAW, "block")
        assert b"".join(served.parts) == entries[BAD - 1].block


def _verify(data_dir: Path, address: str, *extra: str):
    return CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--log-level", "error", "db", "verify", address, *extra]
    )


def test_db_verify_names_the_damaged_block_offline_and_through_a_running_node(tmp_path):
    """``gridnode db verify``: every stored block re-hashed, every signature checked; the damaged
    one named, exit status 1, the same offline and through a running node's API."""
    address, entries = damaged_node(tmp_path / "node")
    bad = entries[BAD]
    blocks = ENTRIES + 1  # the manifest and every entry

    offline = _verify(tmp_path / "node", address)
    assert offline.exit_code == 1, offline.output
    assert f"damaged: {bad.cid}: HashMismatch" in offline.stdout
    assert offline.stdout.count("damaged: ") == 1
    assert f"{blocks - 1} of {blocks} blocks intact in {address}" in offline.stdout
    assert offline.stderr.strip() == f"error: 1 damaged blocks in {address}"

    with node_in_thread(tmp_path / "node"):
        online = _verify(tmp_path / "node", address)
        as_json = _verify(tmp_path / "node", address, "--json")
    assert (online.exit_code, online.stdout, online.stderr) == (
        offline.exit_code,
        offline.stdout,
        offline.stderr,
    )
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 1
    assert report["address"] == address and report["blocks"] == blocks
    assert [d["cid"] for d in report["damaged"]] == [str(bad.cid)]

    # An intact database verifies clean: every block, exit 0.
    with Repo(tmp_path / "clean") as repo:
        database = repo.create_database("clean", "events")
        for i in range(5):
            database.write({"op": "add", "value": i})
        clean = database.address
    result = _verify(tmp_path / "clean", clean)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"6 of 6 blocks intact in {clean}\n"
