"""One node per data directory: ``open_node`` holds ``DATA_DIR/node.lock`` for the node's life.

Before, only ``gridnode start``, the seeder and the embed facade took the lock, around their own
``open_node``: two trio embedders could open one directory at once and write behind each other's
back."""

import math

import pytest
import trio

from gridnode.errors import NodeUnavailable
from gridnode.node import open_node
from tests.gridnode.node.test_replication import LOOPBACK


@pytest.mark.slow
def test_a_second_node_on_one_data_directory_is_refused_while_the_first_keeps_running(tmp_path):
    data_dir = tmp_path / "a"

    async def main():
        async with open_node(data_dir, listen=LOOPBACK, announce_interval=math.inf) as first:
            address = (await first.create_database("notes", "keyvalue")).address
            written = []
            waiting = trio.Event()

            async def keep_writing():
                # Every write done while the second node waits for the lock: that wait must not
                # hold up the event loop the first node runs in.
                while not waiting.is_set():
                    with trio.fail_after(5):
                        await first.write(
                            address, [{"op": "put", "key": "n", "value": len(written)}]
                        )
                    written.append(trio.current_time())
                    await trio.sleep(0.05)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_writing)
                started = trio.current_time()
                try:
                    with pytest.raises(NodeUnavailable, match="in use"):
                        async with open_node(data_dir, listen=LOOPBACK, announce_interval=math.inf):
                            pass
                finally:
                    waiting.set()
                refused = trio.current_time()
            # The refusal came after the wait for offline commands (ten seconds), and the first
            # node wrote all along.
            assert refused - started >= 5
            assert len([t for t in written if started <= t <= refused]) >= 10

            # The first node still runs: it writes, reads and announces as before.
            await first.write(address, [{"op": "put", "key": "after", "value": True}])
            assert await first.read(address, lambda d: d.store.get("after")) is True
            assert first.replicating(address)
            count = len(written)

        # Closed, it lets go of the directory: the next node opens it, with everything written.
        async with open_node(data_dir, listen=LOOPBACK, announce_interval=math.inf) as again:
            assert again.replicating(address)
            assert await again.read(address, lambda d: d.store.get("n")) == count - 1
            assert await again.read(address, lambda d: d.store.get("after")) is True

    trio.run(main)
