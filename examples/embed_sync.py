"""A gridnode node inside a synchronous program: python examples/embed_sync.py [DATA_DIR]

The node runs in a background thread; its methods block until done and may be called from any
thread at once. Leaving the ``with`` block stops the node and joins its thread.
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import gridnode

data_dir = sys.argv[1] if len(sys.argv) > 1 else "./embedded-node"

with gridnode.start_node(data_dir) as node:
    print("peer id:", node.peer_id)
    hits = node.create_database("hits", "counter")
    print("address:", hits)
    # Four threads writing at once: each call is one signed entry.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: node.inc(hits), range(20)))
    print("value:", node.value(hits))
    try:
        node.get(hits, "k")
    except gridnode.GridnodeError as exc:
        print("refused:", type(exc).__name__, exc)
