"""Helia 7 over bitswap, Helia to Helia, with a CAR written by ``gridnode export``.

``helia_peer.mjs serve`` puts the CAR's blocks into a Helia node (our own libp2p configuration:
TCP on 127.0.0.1, Noise, yamux, identify, ping; bitswap the only block broker) and
``helia_peer.mjs fetch`` gets them from it with ``helia.blockstore.get`` over bitswap. This checks
the JavaScript side that will fetch from gridnode's bitswap server: the blocks arrive unchanged,
CID by CID and byte by byte.

Same setup as ``test_js_interop.py``: exact versions from ``package.json`` /
``package-lock.json``, installed by the ``node_bin`` fixture when missing; when it cannot be,
these tests fail saying why, and ``GRIDNODE_NO_INTEROP=1`` skips them. Everything runs on 127.0.0.1, each test within 60 s.
"""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from crdt.ipld.car import read_car
from gridnode.repo import Repo
from tests.interop.conftest import HERE, gridnode_cli

DAG_CBOR = 0x71


@dataclass
class Served:
    ready: dict
    roots: list[str]
    blocks: dict[str, bytes]  # the CAR's blocks, CID -> bytes, in the CAR's order

    @property
    def addr(self) -> str:
        return self.ready["addrs"][0]


@pytest.fixture(scope="module")
def served(tmp_path_factory, node_bin) -> Iterator[Served]:
    """A Helia node serving the blocks of a gridnode-exported CAR over bitswap."""
    tmp = tmp_path_factory.mktemp("helia")
    source = tmp / "source"
    repo = Repo(source)
    db = repo.create_database("people", "documents")
    db.write_many([{"op": "put", "doc": {"_id": f"p{i}", "n": i}} for i in range(20)])
    for i in range(10):  # one entry per write: a longer chain of parent links
        db.write({"op": "put", "doc": {"_id": f"q{i}", "n": i}})
    address = db.address
    repo.close()
    car = tmp / "exported.car"
    gridnode_cli(source, "export", address, str(car))
    header, car_blocks = read_car(car.read_bytes())
    blocks = {str(cid): bytes(block) for cid, block in car_blocks}
    assert len(blocks) == len(car_blocks) > 30

    with helia_serving(node_bin, car, header.roots, len(blocks)) as ready:
        yield Served(ready, ready["roots"], blocks)


def helia_fetch(node_bin: Path, *args: str, timeout_ms: int = 30000) -> tuple[int, list[dict]]:
    done = subprocess.run(
        [str(node_bin), "helia_peer.mjs", "fetch", *args, "--timeout-ms", str(timeout_ms)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=timeout_ms / 1000 + 20,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def fetched_blocks(lines: list[dict]) -> list[tuple[str, bytes]]:
    out = []
    for line in lines:
        if "cid" in line:
            data = base64.b64decode(line["bytes"])
            assert line["size"] == len(data)
            assert line["codec"] == DAG_CBOR
            out.append((line["cid"], data))
    return out


def test_helia_fetches_a_gridnode_car_dag_from_helia_over_bitswap(served, node_bin):
    started = time.monotonic()
    code, lines = helia_fetch(node_bin, served.addr, *served.roots, "--dag")
    assert code == 0, lines
    assert lines[-1]["done"] is True
    got = fetched_blocks(lines)
    assert lines[-1]["blocks"] == len(got)
    cids = [cid for cid, _ in got]
    assert len(set(cids)) == len(cids)  # each block once
    assert cids[0] == served.roots[0]  # depth first from the first root (the manifest)
    # Following the links from the roots reaches exactly the CAR's blocks, unchanged.
    assert dict(got) == served.blocks
    assert time.monotonic() - started < 45


def test_helia_fetches_each_block_by_cid(served, node_bin):
    # No --dag: just the CIDs asked for, in that order (every block of the CAR, heads first).
    wanted = served.roots[1:] + [cid for cid in served.blocks if cid not in served.roots]
    code, lines = helia_fetch(node_bin, served.addr, *wanted)
    assert code == 0, lines
    assert fetched_blocks(lines) == [(cid, served.blocks[cid]) for cid in wanted]
    assert lines[-1] == {"done": True, "blocks": len(wanted), "ms": lines[-1]["ms"]}


def test_helia_fetch_of_a_missing_block_fails_within_its_timeout(served, node_bin):
    # A dag-cbor CID the server does not have (sha2-256 of an empty map).
    missing = "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"
    assert missing not in served.blocks
    started = time.monotonic()
    code, lines = helia_fetch(node_bin, served.addr, missing, timeout_ms=3000)
    assert code == 1
    assert list(lines[-1]) == ["error"] and missing in lines[-1]["error"]
    assert time.monotonic() - started < 20


@contextmanager
def helia_serving(node_bin: Path, car: Path, roots: list, count: int) -> Iterator[dict]:
    """A Helia node serving the blocks of ``car`` (``count`` blocks, ``roots``) over bitswap; its
    ready line (``addrs``, ``roots``, ...) while it runs."""
    proc = subprocess.Popen(
        [str(node_bin), "helia_peer.mjs", "serve", str(car)],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        try:
            ready = json.loads(lines.get(timeout=30))
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"helia serve did not get ready: {proc.stderr.read()}") from None
        assert ready.get("ready") is True, ready
        assert ready["blocks"] == count
        assert ready["roots"] == [str(cid) for cid in roots]
        assert ready["brokers"] == ["bitswap"]  # no trustless-gateway broker
        assert ready["addrs"] and all(a.startswith("/ip4/127.0.0.1/tcp/") for a in ready["addrs"])
        yield ready
    finally:
        proc.stdin.close()  # serve stops Helia and exits 0 when stdin closes
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("helia serve did not stop when stdin closed") from None
    assert code == 0, proc.stderr.read()
