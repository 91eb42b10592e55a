"""The storage worker's fair scheduling and the per-peer budgets (issue 18 item 8), on trio's
MockClock. A call's "duration" is read from a fake timer the calls themselves advance, so the
figures are exact and nothing depends on this machine's speed."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gridnode.node.budget import Allowance, Bucket, Budgets
from gridnode.storage.worker import LOCAL, StorageWorker, serving


class FakeCost:
    """A timer that only moves when a call says it cost something."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


def run(main, **kwargs):
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0), **kwargs)


def test_bucket_goes_into_debt_and_says_how_long_to_wait():
    bucket = Bucket(Allowance(rate=0.5, burst=2.0), level=2.0, updated=0.0)
    bucket.charge(3.0, now=0.0)  # a call's cost is known only after it ran
    assert bucket.level == -1.0
    assert bucket.delay(now=0.0) == pytest.approx(2.0)
    assert bucket.delay(now=1.0) == pytest.approx(1.0)
    assert bucket.delay(now=2.0) == 0.0
    assert bucket.delay(now=100.0) == 0.0
    assert bucket.level == 2.0  # refilled to the burst, no further
    assert bucket.spent == 3.0


def test_calls_are_served_round_robin_between_peers_not_in_arrival_order():
    # A flooder queues 20 calls before an honest peer asks for one: the honest call is served
    # right after the call that holds the thread, not after the flooder's 19 others.
    cost = FakeCost()
    worker = StorageWorker(timer=cost)
    order: list[str] = []
    gate = trio.Event()

    def work(tag: str) -> None:
        if not order:
            trio.from_thread.run(gate.wait)  # the first call holds the thread until all queued
        order.append(tag)
        cost.spend(0.01)

    async def call(tag: str) -> None:
        with serving(tag):
            await worker.run(work, tag)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(call, "flooder")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, "honest")
            await trio.testing.wait_all_tasks_blocked()
            gate.set()

    run(main)
    assert len(order) == 21
    # The call holding the thread, one more of the flooder's (its tag was in line first), then
    # the honest call: FIFO would put it last.
    assert order.index("honest") == 2
    assert worker.usage["flooder"].calls == 20
    assert worker.usage["flooder"].seconds == pytest.approx(0.2)
    assert worker.usage["honest"].seconds == pytest.approx(0.01)


def test_tags_follow_tasks_and_default_to_local():
    worker = StorageWorker()
    seen: list[str] = []

    async def main() -> None:
        await worker.run(lambda: None)
        with serving("peer-a"):
            async with trio.open_nursery() as nursery:  # started tasks inherit the tag
                nursery.start_soon(worker.run, lambda: None)
        await worker.run(lambda: None)
        seen.extend(worker.usage)

    run(main)
    assert worker.usage[LOCAL].calls == 2
    assert worker.usage["peer-a"].calls == 1


def test_a_flooding_peer_is_held_to_its_allowance_and_the_honest_peer_never_waits_for_it():
    # 8 streams of a flooder, each asking 100 calls of 50 ms: 40 s of worker time wanted. At
    # 0.25 s per second with a 2 s burst it may have at most 2 + 0.25 t by time t (plus the calls
    # its streams had in flight when it went into debt); the honest peer, asking a 10 ms call
    # every second, is never throttled and waits at most two flooder calls per request.
    cost = FakeCost()
    budgets = Budgets(worker=Allowance(rate=0.25, burst=2.0))
    worker = StorageWorker(budgets, timer=cost)
    honest_waits: list[float] = []
    flood_done = {"at": 0.0}

    def work(seconds: float) -> None:
        cost.spend(seconds)

    async def flood_stream() -> None:
        with serving("flooder"):
            for _ in range(100):
                await worker.run(work, 0.05)
        flood_done["at"] = max(flood_done["at"], trio.current_time())

    async def honest() -> None:
        with serving("honest"):
            for _ in range(60):
                asked = cost.now
                await worker.run(work, 0.01)
                # Worker time that passed before the honest call was done: its own, the flooder
                # call holding the thread and at most one more (its tag queued first), never the
                # flooder's backlog.
                honest_waits.append(cost.now - asked)
                await trio.sleep(1.0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(flood_stream)
            nursery.start_soon(honest)

    run(main)
    flooder = budgets.accounts["flooder"]
    assert flooder.worker.spent == pytest.approx(40.0)
    # Spending 40 s at 0.25 s/s after a 2 s burst takes at least (40 - 2 - in flight) / 0.25 s.
    in_flight = 8 * 0.05
    assert flood_done["at"] >= (40.0 - 2.0 - in_flight) / 0.25
    assert worker.usage["flooder"].throttled > 100
    assert budgets.accounts["honest"].throttled == 0
    assert worker.usage["honest"].throttled == 0
    assert max(honest_waits) <= 2 * 0.05 + 0.01 + 1e-9


def test_local_work_is_counted_but_never_throttled():
    cost = FakeCost()
    budgets = Budgets(worker=Allowance(rate=0.1, burst=0.1))
    worker = StorageWorker(budgets, timer=cost)

    async def main() -> float:
        for _ in range(20):
            await worker.run(cost.spend, 1.0)
        return trio.current_time()

    assert run(main) == 0.0
    assert worker.usage[LOCAL].seconds == pytest.approx(20.0)
    assert LOCAL not in budgets.accounts


def test_stepped_work_runs_in_slices_and_lets_others_in_between():
    # A 1 s walk in 1 ms steps, 5 ms per slice: another peer's call, asked once the walk has
    # started, runs after a slice or two, not after the whole walk.
    cost = FakeCost()
    worker = StorageWorker(timer=cost, slice_seconds=0.005)
    started = trio.Event()
    honest_done: list[float] = []

    def walk():
        trio.from_thread.run_sync(started.set)
        for _ in range(1000):
            cost.spend(0.001)
            yield
        return "walked"

    async def honest() -> None:
        await started.wait()
        with serving("honest"):
            await worker.run(lambda: None)
        honest_done.append(cost.now)

    async def main() -> list[str]:
        results: list[str] = []

        async def stepped() -> None:
            with serving("flooder"):
                results.append(await worker.run_steps(walk()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(honest)
            nursery.start_soon(stepped)
        return results

    assert run(main) == ["walked"]
    assert honest_done[0] <= 3 * 0.005 + 1e-9
    assert worker.usage["flooder"].seconds == pytest.approx(1.0)
    assert worker.usage["flooder"].calls >= 150  # one turn per slice


def test_a_cancelled_waiter_leaves_the_worker_usable():
    cost = FakeCost()
    worker = StorageWorker(timer=cost)

    async def main() -> int:
        gate = trio.Event()
        started = trio.Event()

        def hold() -> None:
            trio.from_thread.run_sync(started.set)
            trio.from_thread.run(gate.wait)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.run, hold)
            await started.wait()
            with trio.move_on_after(1.0):
                with serving("gone"):
                    await worker.run(lambda: None)  # queued, then cancelled
            gate.set()
        return await worker.run(lambda: 42)

    assert run(main) == 42


def test_bytes_over_the_allowance_wait_on_the_sending_peer_only():
    budgets = Budgets(sent=Allowance(rate=1000.0, burst=1000.0))

    async def main() -> tuple[float, float, dict]:
        start = trio.current_time()
        for _ in range(5):
            await budgets.send("flooder", 1000)  # 5,000 bytes: 4 s past the burst
        flooded = trio.current_time() - start
        start = trio.current_time()
        await budgets.send("honest", 500)
        honest = trio.current_time() - start
        return flooded, honest, {f["peer"]: f for f in budgets.figures()}

    flooded, honest, figures = run(main)
    assert flooded == pytest.approx(4.0)
    assert honest == 0.0
    assert figures["flooder"]["bytes_sent"] == 5000
    assert figures["honest"]["bytes_sent"] == 500
