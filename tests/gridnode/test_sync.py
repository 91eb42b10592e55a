"""The sync driver over real trio streams (in-process), with real SQLite data dirs."""

import trio
import trio.testing

from gridnode.repo import Repo
from gridnode.storage.worker import StorageWorker
from gridnode.sync import pull, serve


class TrioStream:
    """A trio stream seen as gridnode's ByteStream."""

    def __init__(self, stream):
        self.stream = stream

    async def read(self, max_bytes):
        return await self.stream.receive_some(max_bytes)

    async def write(self, data):
        await self.stream.send_all(data)

    async def close(self):
        await self.stream.aclose()


async def sync_once(server_repo, puller_db):
    left, right = trio.testing.memory_stream_pair()
    worker_a, worker_b = StorageWorker(), StorageWorker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, TrioStream(right), server_repo, worker_a)
        with trio.fail_after(60):
            report = await pull(TrioStream(left), puller_db, worker_b)
        await left.aclose()
    return report


def test_cold_catch_up_and_warm_sync(tmp_path):
    with Repo(tmp_path / "a") as a, Repo(tmp_path / "b") as b:
        source = a.create_database("feed", "events", writers=[b.did])
        for start in range(0, 3000, 1000):
            source.write_many([{"op": "add", "value": i} for i in range(start, start + 1000)])
        follower = b.add_database(source.manifest)
        report = trio.run(sync_once, a, follower)
        assert report.complete and report.applied == 3000 and not report.rejected
        assert follower.digest() == source.digest()
        cold_rounds = report.stats.round_trips
        assert cold_rounds == 1  # one sync, answered with the heads and a stream of entries
        # Warm: a few new entries on each side, then sync both ways.
        source.write_many([{"op": "add", "value": "a"}, {"op": "add", "value": "b"}])
        follower.write({"op": "add", "value": "from b"})
        report = trio.run(sync_once, a, follower)
        assert report.applied == 2 and report.stats.round_trips == 1
        back = trio.run(sync_once, b, source)
        assert back.applied == 1
        assert source.digest() == follower.digest()
        # Nothing new: the one exchange that finds so, and no entry sent.
        idle = trio.run(sync_once, a, follower).stats
        assert idle.round_trips == 1 and idle.blocks_received == 0


def test_concurrent_branches_converge(tmp_path):
    with Repo(tmp_path / "a") as a, Repo(tmp_path / "b") as b:
        db_a = a.create_database("kv", "keyvalue", writers=[b.did])
        db_a.write({"op": "put", "key": "root", "value": 0})
        db_b = b.add_database(db_a.manifest)
        trio.run(sync_once, a, db_b)
        for i in range(200):
            db_a.write({"op": "put", "key": f"a{i % 7}", "value": i})
            db_b.write({"op": "put", "key": f"a{i % 5}", "value": -i})
        trio.run(sync_once, a, db_b)
        trio.run(sync_once, b, db_a)
        assert db_a.digest() == db_b.digest()
        assert db_a.heads == db_b.heads


def test_unknown_database_is_refused(tmp_path):
    with Repo(tmp_path / "a") as a, Repo(tmp_path / "b") as b:
        db = b.create_database("mine", "counter")
        report = trio.run(sync_once, a, db)
        assert report.refused == "unknown database" and report.applied == 0
