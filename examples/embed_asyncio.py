"""A gridnode node inside an asyncio program: python examples/embed_asyncio.py [DATA_DIR]"""

import asyncio
import sys

import gridnode


async def main(data_dir: str) -> None:
    async with gridnode.asyncio_node(data_dir) as node:
        print("peer id:", node.peer_id)
        found = [d["address"] for d in await node.databases() if d["name"] == "notes"]
        notes = found[0] if found else await node.create_database("notes", "keyvalue")
        print("address:", notes)
        await node.put(notes, "hello", "from asyncio")
        print("hello:", await node.get(notes, "hello"))
        print("digest:", await node.digest(notes))


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "./embedded-node"))
