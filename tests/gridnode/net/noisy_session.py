"""Runs hosts through events py-libp2p logs at WARNING/ERROR, with logging on stderr at LEVEL.

Run by test_logs.py:
    python noisy_session.py LEVEL

Prints the top-level modules named examples, docs or interop that got imported (the libp2p wheel
installs packages by those names; we must never import them).
"""

import logging
import sys
from contextlib import suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import trio

from gridnode.net import DialError, ProtocolNotSupported, open_host, peer_id_from_seed
from tests.gridnode.net.hosts import LOCAL, open_hosts, seed
from tests.gridnode.net.test_host import impostor_connection


async def main() -> None:
    async with open_hosts(2) as (a, b):
        await a.connect(b.addrs[0])
        await a.subscribe("t")
        with suppress(ProtocolNotSupported):
            await a.open_stream(b.peer_id, "/nobody/1")
        with suppress(DialError):
            await a.connect(f"/ip4/127.0.0.1/tcp/1/p2p/{peer_id_from_seed(seed(6))}")
        async with open_host(seed(5), LOCAL) as c:  # a peer that comes and goes
            await c.connect(a.addrs[0])
            await c.subscribe("t")
            await trio.sleep(0.2)
        await a.publish("t", b"x")
        async with impostor_connection(a.peer_id, a.addrs[0].split("/p2p/")[0], bytes(32)):
            pass


if __name__ == "__main__":
    logging.basicConfig(level=sys.argv[1], stream=sys.stderr)
    trio.run(main)
    print(sorted(m for m in sys.modules if m.split(".")[0] in {"examples", "docs", "interop"}))
