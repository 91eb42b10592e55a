"""A gridnode node inside a trio program, with the native API: python examples/embed_trio.py [DATA_DIR]

The node is an ``async with`` block: its tasks live in a nursery it owns, and leaving the block
stops them all. The storage is used from the node's storage worker: read through ``node.read``.
"""

import sys
from pathlib import Path

import trio

import gridnode


async def main(data_dir: Path) -> None:
    async with gridnode.open_node(data_dir) as node:
        print("peer id:", node.peer_id)
        for addr in node.addrs:
            print("listening:", addr)
        db = await node.create_database("events", "events")
        print("address:", db.address)
        entries = await node.write(db.address, [{"op": "add", "value": {"n": i}} for i in range(3)])
        print("wrote:", len(entries), "entries")
        count = await node.read(db.address, len)
        print("entries:", count)
        print("digest:", await node.read(db.address, lambda d: d.digest().hex()))


trio.run(main, Path(sys.argv[1] if len(sys.argv) > 1 else "./embedded-node"))
