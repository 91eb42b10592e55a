"""Staying connected: a node dials a bootstrap peer that is not up yet until it is, and dials a
lost peer again (here: one that restarts), with a backoff; writes then flow again."""

import socket

import trio

from gridnode.net.identity import peer_id_from_seed
from gridnode.node import open_node
from gridnode.repo import Repo
from tests.gridnode.node.test_replication import converged, make_shared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bootstrap_before_it_is_up_and_a_restarted_peer_are_dialled_again(tmp_path):
    dirs, address = make_shared(tmp_path, ["a", "b"])
    with Repo(dirs[0]) as repo:
        a_id = peer_id_from_seed(repo.keypair.seed)
    listen_a = [f"/ip4/127.0.0.1/tcp/{free_port()}"]
    a_addr = f"{listen_a[0]}/p2p/{a_id}"

    async def main():
        # b starts first: its bootstrap peer is not there yet.
        async with open_node(
            dirs[1], listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=[a_addr], announce_interval=0.5
        ) as b:
            await trio.sleep(1.5)
            assert a_id not in b.peers() and a_id in b.known
            async with open_node(dirs[0], listen=listen_a, announce_interval=0.5) as a:
                with trio.fail_after(30):
                    while a_id not in b.peers():  # b dialled again; a knows nothing of b
                        await trio.sleep(0.05)
                await a.write(address, [{"op": "put", "key": "before", "value": 1}])
                await converged([a, b], address)
            with trio.fail_after(30):
                while a_id in b.peers():
                    await trio.sleep(0.05)
            # a restarts on its address: b finds it again.
            async with open_node(dirs[0], listen=listen_a, announce_interval=0.5) as a:
                with trio.fail_after(30):
                    while a_id not in b.peers():
                        await trio.sleep(0.05)
                await a.write(address, [{"op": "put", "key": "after", "value": 2}])
                with trio.fail_after(30):
                    while await b.read(address, lambda d: d.store.get("after")) != 2:
                        await trio.sleep(0.05)
                await converged([a, b], address)

    trio.run(main)


def test_a_peer_disconnected_for_violations_is_not_dialled_again(tmp_path):
    dirs, _address = make_shared(tmp_path, ["a", "b"])

    async def main():
        async with open_node(dirs[0], listen=["/ip4/127.0.0.1/tcp/0"], announce_interval=0.5) as a:
            b_node = open_node(
                dirs[1],
                listen=["/ip4/127.0.0.1/tcp/0"],
                bootstrap=[a.addrs[0]],
                announce_interval=0.5,
            )
            async with b_node as b:
                with trio.fail_after(30):
                    while a.peer_id not in b.peers():
                        await trio.sleep(0.05)
                assert a.peer_id in b.known
                for _ in range(3):
                    await b.peering.strike(a.peer_id, "a test's violation")
                assert a.peer_id not in b.known
                await trio.sleep(3)  # several redial rounds, a's peer records arriving meanwhile
                # b does not dial a again (and, a banned peer, closes a's connections: test_bans.py).
                assert a.peer_id not in b.known and a.peer_id not in b.peering.dialing

    trio.run(main)


def test_per_peer_records_are_bounded(monkeypatch):
    from gridnode.node import stats

    monkeypatch.setattr(stats, "MAX_PEER_RECORDS", 5)
    records = {f"peer{i}": i for i in range(5)}
    records["peer5"] = 5
    stats.trim_oldest(records)
    assert list(records) == ["peer1", "peer2", "peer3", "peer4", "peer5"]  # the oldest went
