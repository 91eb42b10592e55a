import time

import trio

from gridnode.repo import Repo
from gridnode.storage.worker import StorageWorker


def test_loop_keeps_running_during_a_long_write(tmp_path):
    repo = Repo(tmp_path)
    db = repo.create_database("kv", "keyvalue")
    worker = StorageWorker()
    ticks = []

    async def main():
        async with trio.open_nursery() as nursery:

            async def ticker():
                while True:
                    ticks.append(time.perf_counter())
                    await trio.sleep(0.005)

            nursery.start_soon(ticker)
            started = time.perf_counter()
            entries = await worker.run(
                db.write_many, [{"op": "put", "key": f"k{i}", "value": i} for i in range(3000)]
            )
            finished = time.perf_counter()
            nursery.cancel_scope.cancel()
        return entries, started, finished

    entries, started, finished = trio.run(main)
    assert len(entries) == 3000
    during = [t for t in ticks if started < t < finished]
    # The batch takes well over 50 ms; the loop ticked all along instead of freezing.
    assert finished - started > 0.05
    assert len(during) >= (finished - started) / 0.005 * 0.3
    repo.close()


def test_calls_run_one_at_a_time_in_order(tmp_path):
    repo = Repo(tmp_path)
    db = repo.create_database("kv", "counter")
    worker = StorageWorker()

    async def main():
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(worker.run, db.write, {"op": "inc", "by": 1})
        return await worker.run(lambda: db.store.value)

    assert trio.run(main) == 20
    assert repo.sql.integrity_check() == "ok"
    repo.close()
