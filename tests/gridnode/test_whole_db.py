"""Whole-database operations on a data dir: the state digest kept as entries apply (read, not
computed, at a restart), and the passes over a whole database (CAR export, verify) streamed."""

from __future__ import annotations

import pytest

from gridnode.repo import Repo

WRITES = {
    "events": lambda i: {"op": "add", "value": {"n": i}},
    "keyvalue": lambda i: {"op": "put", "key": f"k{i % 7}", "value": i},
    "documents": lambda i: {"op": "put", "doc": {"_id": i % 5, "n": i}},
    "counter": lambda i: {"op": "inc", "by": i - 3},
    "set": lambda i: {"op": "add", "value": i % 4},
}


@pytest.mark.parametrize("store", sorted(WRITES))
def test_the_digest_after_a_restart_is_the_digest_before(tmp_path, store):
    with Repo(tmp_path) as repo:
        db = repo.create_database("d", store)
        for first in range(0, 30, 10):
            db.write_many([WRITES[store](i) for i in range(first, first + 10)])
        address, digest = db.address, db.digest()
        assert db.store.digest() == db.store.recompute_digest()
    with Repo(tmp_path) as repo:
        db = repo.database(address)
        assert db.digest() == digest
        assert db.store.digest() == db.store.recompute_digest()


@pytest.mark.parametrize("store", sorted(WRITES))
def test_a_store_written_before_the_state_sum_gets_it_once_when_opened(tmp_path, store):
    with Repo(tmp_path) as repo:
        db = repo.create_database("d", store)
        db.write_many([WRITES[store](i) for i in range(12)])
        address, digest = db.address, db.digest()
        # What an older gridnode left in the file: the store's rows, no state sum.
        with repo.sql.transaction():
            repo.sql.space(address).table(f"{store}.meta").delete(b"statesum")
    with Repo(tmp_path) as repo:
        db = repo.database(address)
        assert db.store.sum_indexed
        assert db.digest() == digest
        db.write(WRITES[store](99))
        assert db.store.digest() == db.store.recompute_digest()


def test_export_and_chunks_read_the_log_a_page_at_a_time(tmp_path, monkeypatch):
    import gridnode.repo as repo_module

    monkeypatch.setattr(repo_module, "PAGE", 7)  # pages end inside the log, not only at its end
    with Repo(tmp_path / "a") as repo:
        db = repo.create_database("d", "events")
        for first in range(0, 40, 10):
            db.write_many([{"op": "add", "value": {"n": i}} for i in range(first, first + 10)])
        parts = list(db.car_parts())
        # Header, manifest, then every entry in the total order, each once.
        assert len(parts) == 2 + 40
        whole = b"".join(parts)
        for entry in db.entries():
            assert whole.count(entry.block) == 1
        chunks = db.car_chunks()
        streamed = []
        while chunk := chunks.next_chunk(500):
            streamed += chunk
        assert b"".join(streamed) == whole
        assert [cid for cid, _ in db.stored_blocks()][1:] == [e.cid for e in db.entries()]
        db.export_car(tmp_path / "d.car")
        assert (tmp_path / "d.car").read_bytes() == whole
    with Repo(tmp_path / "b") as other:
        report = other.import_car((tmp_path / "d.car").read_bytes())
        assert report.applied == 40 and not report.rejected


def test_verify_through_a_worker_lets_other_calls_in_between(tmp_path):
    import itertools

    import trio

    from gridnode import ops
    from gridnode.storage.worker import StorageWorker, serving

    with Repo(tmp_path) as repo:
        db = repo.create_database("d", "events")
        db.write_many([{"op": "add", "value": {"n": i}} for i in range(30)])
        done: list[str] = []

        async def main() -> dict:
            # A clock that ticks once per reading: slices of one step each, so the probe, for
            # another tag, gets the next turn.
            ticks = itertools.count()
            worker = StorageWorker(timer=lambda: float(next(ticks)), slice_seconds=1.5)

            async def probe() -> None:
                await trio.sleep(0)
                with serving("peer"):
                    await worker.run(len, db)
                done.append("probe")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)
                report = await worker.run_steps(ops.read_steps("verify", db, {}))
                done.append("verify")
            return report

        report = trio.run(main)
        assert done == ["probe", "verify"]
        assert report == ops.verify(db) and report["blocks"] == 31 and not report["damaged"]
