"""Issue 22: nodes that cannot be dialled replicate through a relay (real nodes, 127.0.0.1)."""

from contextlib import AsyncExitStack

import trio

from gridnode.api.metrics import exposition, nat_families
from gridnode.node import open_node
from gridnode.repo import Repo
from tests.gridnode.node.test_replication import LOOPBACK, converged, make_shared


def configure(data_dir, lines):
    Repo(data_dir).close()  # writes the default gridnode.toml
    with open(data_dir / "gridnode.toml", "a") as config:
        config.write("\n".join(lines) + "\n")


def test_unreachable_nodes_sync_a_database_through_a_relay(tmp_path):
    dirs, address = make_shared(tmp_path, ["a", "b"])
    relay_dir = tmp_path / "relay"
    relay_dir.mkdir()
    configure(relay_dir, ["relay_service = true"])
    for d in dirs:
        # Listening on nothing: nobody can dial these two, not even each other.
        configure(d, ["relay_client = true", "listen = []"])

    async def main():
        with trio.fail_after(60):
            await scenario()

    async def scenario():
        async with AsyncExitStack() as stack:
            relay = await stack.enter_async_context(
                open_node(relay_dir, listen=LOOPBACK, announce_interval=0.5)
            )
            a, b = [
                await stack.enter_async_context(
                    open_node(d, bootstrap=[relay.addrs[0]], announce_interval=0.5)
                )
                for d in dirs
            ]
            assert a.addrs == [] and b.addrs == []
            await a.write(address, [{"op": "put", "key": f"a{i}", "value": i} for i in range(200)])
            await b.write(address, [{"op": "put", "key": f"b{i}", "value": i} for i in range(200)])
            # The relay does not hold the database: only a connection a <-> b through it syncs.
            await converged([a, b], address, timeout=40)
            assert await a.read(address, lambda d: d.store.get("b199")) == 199
            assert await b.read(address, lambda d: d.store.get("a0")) == 0
            assert b.peer_id in a.peers()
            assert any("/p2p-circuit/" in x for x in a.announced_addrs)
            service = relay.host.relay_service
            assert service is not None and service.stats.circuits_opened >= 1
            assert service.stats.bytes_relayed > 0
            # Status and /metrics say so.
            nat = relay.host.nat_status()
            assert nat["relay_service"]["circuits_opened"] >= 1
            assert nat["relay_client"] is None
            assert a.host.nat_status()["relay_client"]["relays"] == [relay.peer_id]
            text = exposition(nat_families(nat))
            assert "gridnode_relay_circuits_opened_total" in text
            assert "gridnode_relay_bytes_total" in text
            home = exposition(nat_families(b.host.nat_status()))
            assert "gridnode_relay_reservations_held 1" in home
            assert 'gridnode_holepunch_successes_total{transport="tcp"}' in home

    trio.run(main)


def test_with_one_relay_gone_nodes_meet_through_the_other(tmp_path):
    """Both relays known from the start; the first stops: the two nodes, which cannot be
    dialled, reconnect through the second relay and keep converging, nothing lost."""
    dirs, address = make_shared(tmp_path, ["a", "b"])
    relay_dirs = [tmp_path / "primary", tmp_path / "community"]
    for d in relay_dirs:
        d.mkdir()
        configure(d, ["relay_service = true"])
    for d in dirs:
        configure(d, ["relay_client = true", "listen = []"])

    async def main():
        with trio.fail_after(90):
            await scenario()

    async def run_primary(stop, task_status=trio.TASK_STATUS_IGNORED):
        async with open_node(relay_dirs[0], listen=LOOPBACK, announce_interval=0.5) as primary:
            task_status.started(primary.addrs[0])
            await stop.wait()

    async def scenario():
        stop = trio.Event()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            primary_addr = await nursery.start(run_primary, stop)
            community = await stack.enter_async_context(
                open_node(relay_dirs[1], listen=LOOPBACK, announce_interval=0.5)
            )
            bootstrap = [primary_addr, community.addrs[0]]
            a, b = [
                await stack.enter_async_context(
                    open_node(d, bootstrap=bootstrap, announce_interval=0.5)
                )
                for d in dirs
            ]
            for node in (a, b):
                while len(node.host.nat_status()["relay_client"]["relays"]) < 2:
                    await trio.sleep(0.05)
            await a.write(address, [{"op": "put", "key": f"a{i}", "value": i} for i in range(50)])
            await converged([a, b], address, timeout=40)
            stop.set()  # the primary stops
            while primary_addr.rsplit("/", 1)[1] in a.peers():
                await trio.sleep(0.05)
            await a.write(address, [{"op": "put", "key": f"A{i}", "value": i} for i in range(30)])
            await b.write(address, [{"op": "put", "key": f"B{i}", "value": i} for i in range(30)])
            await converged([a, b], address, timeout=60)
            assert await b.read(address, lambda d: d.store.get("A29")) == 29
            assert await a.read(address, lambda d: d.store.get("B29")) == 29
            assert b.peer_id in a.peers()

    trio.run(main)
