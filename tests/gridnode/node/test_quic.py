"""Real nodes replicating over QUIC v1 (issue 22, item 4): QUIC only, mixed with TCP-only
nodes, and QUIC chosen over TCP when a node learns both addresses of a peer."""

from contextlib import AsyncExitStack

import trio

from gridnode.net.transports import is_quic
from gridnode.node import open_node
from tests.gridnode.node.test_replication import converged, make_shared

TCP = ["/ip4/127.0.0.1/tcp/0"]
QUIC = ["/ip4/127.0.0.1/udp/0/quic-v1"]
BOTH = TCP + QUIC


def transport_of(node, peer_id):
    """Which transport carries ``node``'s connection to ``peer_id``: "quic" or "tcp"."""
    from libp2p.peer.id import ID

    connections = node.host._host.get_network().connections[ID.from_base58(peer_id)]
    kind = type(connections[0].muxed_conn).__name__
    return "quic" if kind == "QUICConnection" else "tcp"


def bounded(main, timeout=90):
    async def run():
        with trio.fail_after(timeout):
            await main()

    trio.run(run)


def test_two_nodes_sync_a_database_over_quic_only(tmp_path):
    dirs, address = make_shared(tmp_path, ["a", "b"])

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(dirs[0], listen=QUIC, announce_interval=0.5)
            )
            assert all(is_quic(addr) for addr in a.addrs)
            # Entries written before b connects (catch-up) and after (gossip and pulls).
            await a.write(address, [{"op": "put", "key": f"a{i}", "value": i} for i in range(300)])
            b = await stack.enter_async_context(
                open_node(dirs[1], listen=QUIC, bootstrap=[a.addrs[0]], announce_interval=0.5)
            )
            await converged([a, b], address, timeout=60)
            await b.write(address, [{"op": "put", "key": f"b{i}", "value": i} for i in range(100)])
            await a.write(address, [{"op": "put", "key": "late", "value": "x"}])
            await converged([a, b], address, timeout=60)
            assert await a.read(address, lambda d: d.store.get("b99")) == 99
            assert await b.read(address, lambda d: d.store.get("a299")) == 299
            assert await b.read(address, lambda d: d.store.get("late")) == "x"
            assert transport_of(b, a.host.peer_id) == "quic"

    bounded(main)


def test_a_tcp_only_node_and_a_quic_and_tcp_node_still_replicate(tmp_path):
    dirs, address = make_shared(tmp_path, ["new", "old"])

    async def main():
        async with AsyncExitStack() as stack:
            new = await stack.enter_async_context(
                open_node(dirs[0], listen=BOTH, announce_interval=0.5)
            )
            # The TCP-only node is given both addresses, QUIC first: it dials the TCP one.
            old = await stack.enter_async_context(
                open_node(
                    dirs[1],
                    listen=TCP,
                    bootstrap=new.host.announced_addrs,
                    announce_interval=0.5,
                )
            )
            assert is_quic(new.host.announced_addrs[0])
            with trio.fail_after(30):
                while new.host.peer_id not in old.peers():
                    await trio.sleep(0.05)
            assert transport_of(old, new.host.peer_id) == "tcp"
            await new.write(address, [{"op": "put", "key": "n", "value": 1}])
            await old.write(address, [{"op": "put", "key": "o", "value": 2}])
            await converged([new, old], address, timeout=60)
            assert await new.read(address, lambda d: d.store.get("o")) == 2

    bounded(main)


def test_a_peer_learnt_from_a_record_is_dialled_over_quic(tmp_path):
    """c knows only a (bootstrap, over TCP); b's peer record names b's QUIC and TCP addresses,
    and c dials the QUIC one."""
    dirs, address = make_shared(tmp_path, ["a", "b", "c"])

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(dirs[0], listen=BOTH, announce_interval=0.3)
            )
            a_tcp = next(addr for addr in a.addrs if not is_quic(addr))
            b = await stack.enter_async_context(
                open_node(dirs[1], listen=BOTH, bootstrap=[a_tcp], announce_interval=0.3)
            )
            c = await stack.enter_async_context(
                open_node(dirs[2], listen=BOTH, bootstrap=[a_tcp], announce_interval=0.3)
            )
            with trio.fail_after(30):
                while a.host.peer_id not in c.peers():
                    await trio.sleep(0.05)
            assert transport_of(c, a.host.peer_id) == "tcp"  # the address it was given
            with trio.fail_after(45):
                while b.host.peer_id not in c.peers():
                    await trio.sleep(0.05)
            assert transport_of(c, b.host.peer_id) == "quic"
            await b.write(address, [{"op": "put", "key": "from b", "value": 1}])
            await converged([a, b, c], address, timeout=60)

    bounded(main)
