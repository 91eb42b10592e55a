"""Whom a node pulls from, and how often, when announcements name heads it lacks (issue 21, item
5): real nodes on 127.0.0.1."""

from contextlib import AsyncExitStack

import trio

from gridnode.node import open_node
from tests.gridnode.node.test_replication import LOOPBACK, converged, make_shared


async def _line(stack, dirs, **options):
    """Nodes each connected to the previous one only (no peer exchange dials)."""
    nodes = []
    for i, d in enumerate(dirs):
        bootstrap = [nodes[i - 1].addrs[0]] if i else []
        nodes.append(
            await stack.enter_async_context(
                open_node(d, listen=LOOPBACK, bootstrap=bootstrap, target_peers=0, **options)
            )
        )
    return nodes


async def _settled(nodes, address):
    """Converged, and no pull of ``address`` running anywhere."""
    await converged(nodes, address)
    while any(n.replication.pulling(address) for n in nodes):
        await trio.sleep(0.05)


def test_a_pull_goes_to_a_connected_peer_never_to_a_far_origin(tmp_path):
    """a - b - c: c hears a's announcement through b. Its entries do not all ride inline, so c
    pulls them: from b, which forwarded it, never from a, to which c is not connected (issue
    21: among 30 nodes, 36,081 pulls aimed at origins failed with "peer ID not found")."""
    dirs, address = make_shared(tmp_path, ["a", "b", "c"])

    async def main():
        async with AsyncExitStack() as stack:
            a, b, c = await _line(stack, dirs, announce_interval=60)
            await trio.sleep(0.5)  # the mesh forms
            await a.write(address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(50)])
            await converged([a, b, c], address)
            assert a.peer_id not in c.peers()
            pulled_from = {peer for peer, addr in c.stats.syncs if addr == address}
            assert a.peer_id not in pulled_from
            assert b.peer_id in pulled_from

    trio.run(main)


def test_announcements_of_heads_a_running_pull_brings_cost_no_second_pull(tmp_path):
    """a, b, c all connected. a writes a batch; b pulls it from a and announces the same heads;
    c hears both while its own pull from a still runs. c runs one pull of the database at a
    time, and none from b: what b named came with the pull from a."""
    dirs, address = make_shared(tmp_path, ["a", "b", "c"])

    async def main():
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(dirs[0], listen=LOOPBACK, announce_interval=60, target_peers=0)
            )
            b = await stack.enter_async_context(
                open_node(
                    dirs[1],
                    listen=LOOPBACK,
                    bootstrap=a.addrs[:1],
                    announce_interval=60,
                    target_peers=0,
                )
            )
            c = await stack.enter_async_context(
                open_node(
                    dirs[2],
                    listen=LOOPBACK,
                    bootstrap=[a.addrs[0], b.addrs[0]],
                    announce_interval=60,
                    target_peers=0,
                )
            )
            await a.write(address, [{"op": "put", "key": "start", "value": 0}])
            await _settled([a, b, c], address)
            await trio.sleep(0.5)

            running = 0
            most = 0
            pulled_from = []
            original = c.replication.pulls._pull_once

            async def slow_pull(peer, database):
                # c's pulls take a second: b's announcement arrives while the one from a runs.
                nonlocal running, most
                running += 1
                most = max(most, running)
                pulled_from.append(peer)
                try:
                    await trio.sleep(1.0)
                    return await original(peer, database)
                finally:
                    running -= 1

            c.replication.pulls._pull_once = slow_pull
            await a.write(address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(50)])
            await _settled([a, b, c], address)
            await trio.sleep(0.5)
            assert most == 1
            assert pulled_from == [a.peer_id]

    trio.run(main)
