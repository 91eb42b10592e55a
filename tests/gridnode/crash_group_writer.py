"""Writes through a running node's group commit from many tasks at once, forever, printing
each acknowledged write (``ack TASK N``: ``Node.write`` returned for key ``ROUND.TASK-N``).

Run by test_writes.py, which kills it with SIGKILL at random moments:
    python crash_group_writer.py DATA_DIR ADDRESS TASKS ROUND
"""

import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gridnode.node import open_node


async def main() -> None:
    data_dir, address, tasks, round_ = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    async with open_node(data_dir, listen=["/ip4/127.0.0.1/tcp/0"]) as node:

        async def writer(task: int) -> None:
            n = 0
            while True:
                await node.write(
                    address, [{"op": "put", "key": f"{round_}.{task}-{n}", "value": n}]
                )
                print(f"ack {task} {n}", flush=True)
                n += 1

        async with trio.open_nursery() as nursery:
            for task in range(tasks):
                nursery.start_soon(writer, task)


if __name__ == "__main__":
    trio.run(main)
