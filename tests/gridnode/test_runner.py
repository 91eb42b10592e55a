"""gridnode.runner: the one node runner (``gridnode start``, ``seed postgres`` and the embed thread
run through it; their own tests cover signals and the facades). Real nodes on 127.0.0.1."""

import math
import signal
import subprocess
import sys

import pytest
import trio

from gridnode import api, datadir, runner

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


class Boom(Exception):
    pass


def test_ready_then_tasks_then_stop_in_that_order(tmp_path):
    seen = []
    stop = trio.Event()

    def ready(node, url):
        seen.append(("ready", url is not None, (tmp_path / api.API_FILE).exists()))
        # The node holds its data directory: no command can open it behind its back.
        assert datadir.hold_shared(tmp_path) is None

    async def tasks(node, nursery):
        seen.append(("tasks", node.peer_id.startswith("12D3KooW")))

        async def worker():
            try:
                await trio.sleep_forever()
            finally:
                seen.append(("worker cancelled", (tmp_path / api.API_FILE).exists()))

        nursery.start_soon(worker)
        stop.set()

    runner.run(
        tmp_path, listen=LOOPBACK, announce_interval=math.inf, stop=stop, ready=ready, tasks=tasks
    )
    # The extra work is cancelled first, while the API still serves; then everything closes.
    assert seen == [("ready", True, True), ("tasks", True), ("worker cancelled", True)]
    assert not (tmp_path / api.API_FILE).exists()
    hold = datadir.hold_shared(tmp_path)
    assert hold is not None
    hold.close()


def test_without_api_ready_gets_no_url(tmp_path):
    urls = []
    stop = trio.Event()

    def ready(node, url):
        urls.append(url)
        stop.set()

    runner.run(tmp_path, listen=LOOPBACK, api=False, stop=stop, ready=ready)
    assert urls == [None]
    assert not (tmp_path / api.API_FILE).exists()


def test_an_error_in_the_extra_work_stops_the_node_and_is_raised_as_itself(tmp_path):
    async def tasks(node, nursery):
        async def fail():
            await trio.sleep(0)
            raise Boom("seeding failed")

        nursery.start_soon(fail)

    with pytest.raises(Boom, match="seeding failed"):
        runner.run(tmp_path, listen=LOOPBACK, tasks=tasks)
    assert not (tmp_path / api.API_FILE).exists()
    hold = datadir.hold_shared(tmp_path)
    assert hold is not None
    hold.close()


def test_run_node_in_a_trio_program_stops_when_cancelled(tmp_path):
    started = []

    async def main():
        with trio.move_on_after(30) as scope:
            async with trio.open_nursery() as nursery:

                def ready(node, url):
                    started.append(node.peer_id)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(
                    lambda: runner.run_node(tmp_path, listen=LOOPBACK, api=False, ready=ready)
                )
        assert not scope.cancelled_caught

    trio.run(main)
    assert len(started) == 1


_STUBBORN = """
import sys
import trio
from pathlib import Path
from gridnode import runner

runner.SHUTDOWN_SECONDS = 1.0


def ready(node, url):
    print("ready", flush=True)


async def tasks(node, nursery):
    async def stubborn():
        # Heeds no cancellation: the node can never finish stopping by itself.
        with trio.CancelScope(shield=True):
            await trio.sleep_forever()

    nursery.start_soon(stubborn)


runner.run(
    Path(sys.argv[1]),
    listen=["/ip4/127.0.0.1/tcp/0"],
    api=False,
    signals=True,
    ready=ready,
    tasks=tasks,
)
"""


def test_a_node_that_does_not_stop_in_time_ends_its_process(tmp_path):
    """issue 21: under load, nodes were still running 25 s after SIGTERM. A process of its own
    (signals=True) is ended SHUTDOWN_SECONDS after the signal, with an error line and status 1."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUBBORN, str(tmp_path / "node")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == runner.EXIT_OVERDUE
    assert "error: the node did not stop within 1 s; exited" in err
    assert "Traceback" not in err
