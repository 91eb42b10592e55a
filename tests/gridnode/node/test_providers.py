"""Discovery without the primary (gridnode/node/providers.py): nodes provide the databases they
hold on the DHT, and a follow that no connected peer can serve finds the holders there. Real
nodes on 127.0.0.1, each test bounded in time."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from gridnode.api.metrics import exposition, node_families
from gridnode.config import load_config, write_default_config
from gridnode.errors import ConfigError, UnknownDatabase
from gridnode.net import open_host
from gridnode.net.dht import PROTOCOL
from gridnode.node import open_node
from protocols.wire import frame

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
QUIET = 1e9


def with_dht(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "gridnode.toml").write_text('profile = "local"\ndht = true\n')
    return path


async def until(predicate, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)


def run(main, timeout: float) -> None:
    async def bounded() -> None:
        with trio.fail_after(timeout):
            await main()

    trio.run(bounded)


def test_profiles_turn_the_dht_on_for_server_and_home(tmp_path):
    for profile, on in (("local", False), ("server", True), ("home", True)):
        (tmp_path / profile).mkdir()
        write_default_config(tmp_path / profile, profile)
        assert load_config(tmp_path / profile).dht is on, profile
    # A home node serves the public DHT only while it is found publicly reachable.
    assert load_config(tmp_path / "home").dht_mode == "auto"
    assert load_config(tmp_path / "server").dht_mode == "server"


def test_dht_mode_is_server_client_or_auto(tmp_path):
    for mode in ("server", "client", "auto"):
        (tmp_path / "gridnode.toml").write_text(f'dht = true\ndht_mode = "{mode}"\n')
        assert load_config(tmp_path).dht_mode == mode
    (tmp_path / "gridnode.toml").write_text('dht_mode = "sometimes"\n')
    with pytest.raises(ConfigError, match="dht_mode"):
        load_config(tmp_path)


def test_with_its_bootstrap_gone_a_node_finds_a_database_by_the_dht_and_syncs(tmp_path):
    """A holds a database; B (knows A) holds nothing; C knows only B. C learns A through B's
    DHT, B stops, and C follows the database: no peer it is connected to has it, so it finds A
    by the manifest CID, syncs, and keeps receiving A's writes."""

    async def main() -> None:
        async with open_node(
            with_dht(tmp_path / "a"), listen=LOOPBACK, bootstrap=[], announce_interval=0.3
        ) as a:
            db = await a.create_database("shared", "keyvalue")
            await a.write(db.address, [{"op": "put", "key": "k1", "value": 1}])
            async with trio.open_nursery() as nursery:
                # B runs in a task of its own, to be stopped while C (opened later) runs.
                b, stop_b = await _node_in_task(
                    nursery,
                    with_dht(tmp_path / "b"),
                    bootstrap=[a.addrs[0]],
                    announce_interval=QUIET,
                )
                assert a.host.dht is not None and b.host.dht is not None
                await until(_in_table(b, a))
                assert a.providers is not None
                await a.providers.provide_due(everything=True)
                assert b.host.dht.records >= 1  # the manifest's record, at least
                async with open_node(
                    with_dht(tmp_path / "c"),
                    listen=LOOPBACK,
                    bootstrap=[b.addrs[0]],
                    announce_interval=0.3,
                ) as c:
                    assert c.host.dht is not None
                    # C's DHT asks B about its neighbourhood and learns A.
                    await until(_in_table(c, a))
                    await stop_b()  # the only peer C was told of is gone
                    await c.host.disconnect(a.peer_id)  # learnt, maybe dialled: forgotten
                    assert c.host.peers() == []
                    began = trio.current_time()
                    followed = await c.follow(db.address, timeout=20)
                    assert followed.address == db.address
                    await until(_has(c, db.address, "k1"))
                    print(f"followed by the DHT and synced in {trio.current_time() - began:.2f} s")
                    await a.write(db.address, [{"op": "put", "key": "k2", "value": 2}])
                    await until(_has(c, db.address, "k2"))
                    assert c.host.dht.stats.providers_found >= 1

    run(main, 90)


def test_a_private_database_is_never_provided_nor_found(tmp_path):
    async def main() -> None:
        async with open_node(
            with_dht(tmp_path / "a"), listen=LOOPBACK, announce_interval=QUIET
        ) as a:
            public = await a.create_database("open", "keyvalue")
            secret = await a.create_database("closed", "keyvalue", private=True)
            assert a.providers is not None
            wanted = set(await a.providers.wanted())
            assert public.manifest.cid in wanted
            assert secret.manifest.cid not in wanted
            assert not any(h in wanted for h in secret.heads)
            async with open_node(
                with_dht(tmp_path / "b"),
                listen=LOOPBACK,
                bootstrap=[a.addrs[0]],
                announce_interval=QUIET,
            ) as b:
                await until(_in_table(b, a))
                await a.providers.provide_due(everything=True)
                assert b.providers is not None
                assert [p for p, _ in await b.providers.holders(public.address)] == [a.peer_id]
                assert await b.providers.holders(secret.address) == []
                await b.host.disconnect(a.peer_id)
                with pytest.raises(UnknownDatabase):
                    await b.follow(secret.address, timeout=5)
                # Status and /metrics say what the DHT holds and did.
                status = a.host.dht.as_dict()
                assert status["mode"] == "server" and status["providing"] >= 1
                assert status["provides"] >= 1 and status["table_size"] >= 1
                text = exposition(node_families(b, [], 0, "test"))
                assert "gridnode_dht_records 1" in text  # a's public manifest (no heads yet)
                assert "gridnode_dht_lookups_total" in text

    run(main, 60)


def _in_table(node, other):
    async def check() -> bool:
        return other.peer_id in node.host.dht.table()

    return check


def _has(node, address: str, key: str):
    async def check() -> bool:
        try:
            return await node.read(address, lambda d: d.store.get(key) is not None)
        except KeyError:
            return False  # not replicated yet

    return check


async def _node_in_task(nursery, data_dir: Path, **kwargs):
    """A node run by a task of ``nursery``: ``(node, stop)``, ``await stop()`` ends it."""
    started: list = []
    ready, stop, stopped = trio.Event(), trio.Event(), trio.Event()

    async def run_node() -> None:
        try:
            async with open_node(data_dir, listen=LOOPBACK, **kwargs) as node:
                started.append(node)
                ready.set()
                await stop.wait()
        finally:
            stopped.set()

    nursery.start_soon(run_node)
    await ready.wait()

    async def end() -> None:
        stop.set()
        await stopped.wait()

    return started[0], end


def test_a_malformed_dht_message_is_a_strike(tmp_path):
    async def main() -> None:
        async with (
            open_node(with_dht(tmp_path / "a"), listen=LOOPBACK, announce_interval=QUIET) as a,
            open_host(bytes(range(32)), LOOPBACK) as stranger,
        ):
            await stranger.connect(a.addrs[0])
            stream = await stranger.open_stream(a.peer_id, PROTOCOL)
            await stream.write(frame(b"\xff\xff\xff"))
            with trio.fail_after(10):
                while not a.stats.strikes.get(stranger.peer_id):
                    await trio.sleep(0.05)
            assert a.host.dht is not None and a.host.dht.stats.bad_messages == 1

    run(main, 30)


def test_new_heads_are_provided_and_everything_again_after_the_reprovide_interval(tmp_path):
    clock = trio.testing.MockClock(rate=1.0)  # real time, plus jumps

    async def main() -> None:
        async with open_node(
            with_dht(tmp_path / "a"), listen=LOOPBACK, announce_interval=QUIET
        ) as a:
            assert a.providers is not None and a.host.dht is not None
            db = await a.create_database("kept", "keyvalue")
            with trio.fail_after(10):  # the creation woke the provider: the manifest is out
                while await a.providers.provide_due() != 0:
                    await trio.sleep(0.05)
            await a.write(db.address, [{"op": "put", "key": "k", "value": 1}])
            assert await a.providers.provide_due() == 1  # the new head only
            assert await a.providers.provide_due() == 0
            provided = a.host.dht.stats.provides
            clock.jump(a.providers.reprovide_interval + 1)
            with trio.fail_after(10):  # the manifest and the head, again (by the schedule)
                while a.host.dht.stats.provides < provided + 2:
                    await trio.sleep(0.05)

    async def bounded() -> None:
        with trio.fail_after(60 + 43201):  # the jump counts on the mock clock
            await main()

    trio.run(bounded, clock=clock)
