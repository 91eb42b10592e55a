"""(issue 22, QUIC) Garbage datagrams at an honest node's QUIC port while it replicates over QUIC:
random bytes, fake QUIC Initials (each opens a handshake), short-header junk. The honest pair keeps
its connection and converges; the listener's handshake bookkeeping stays bounded."""

from __future__ import annotations

import contextlib
import os
from contextlib import AsyncExitStack

import trio

from gridnode.net.transports import is_quic, sweep_quic_listeners
from gridnode.node import open_node
from tests.gridnode.net.test_quic import _fake_initial
from tests.hostile.attacker import converged, make_dirs

QUIC = ["/ip4/127.0.0.1/udp/0/quic-v1"]
DATAGRAMS = 12_000


async def flood(port: int) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        for i in range(DATAGRAMS):
            kind = i % 4
            if kind == 0:
                datagram = os.urandom(1 + i % 1400)
            elif kind in (1, 2):
                datagram = _fake_initial()
            else:
                datagram = b"\x40" + os.urandom(40)
            with contextlib.suppress(OSError):
                await sock.sendto(datagram, ("127.0.0.1", port))
            if i % 20 == 0:
                await trio.sleep(0)


def test_a_datagram_flood_at_the_quic_port_does_not_stop_replication(tmp_path):
    dirs, address, _ = make_dirs(tmp_path)

    async def main():
        with trio.fail_after(120):
            async with AsyncExitStack() as stack:
                a = await stack.enter_async_context(
                    open_node(dirs[0], listen=QUIC, announce_interval=0.3)
                )
                b = await stack.enter_async_context(
                    open_node(dirs[1], listen=QUIC, bootstrap=a.addrs, announce_interval=0.3)
                )
                assert all(is_quic(addr) for addr in a.addrs)
                port = int(a.addrs[0].split("/")[4])
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(flood, port)
                    for i in range(10):
                        await a.write(address, [{"op": "put", "key": f"a{i}", "value": i}])
                        await b.write(address, [{"op": "put", "key": f"b{i}", "value": i}])
                        await trio.sleep(0.05)
                await converged([a, b], address, timeout=60)
                assert await b.read(address, lambda d: d.store.get("a9")) == 9
                assert await a.read(address, lambda d: d.store.get("b9")) == 9
                assert a.peer_id in b.peers()
                sweep_quic_listeners(a.host._host)
                for listener in a.host._host.get_network().listeners.values():
                    assert len(listener._pending_cid_by_quic_id) <= 512
                    assert len(listener._registry._pending) <= 256

    trio.run(main)
