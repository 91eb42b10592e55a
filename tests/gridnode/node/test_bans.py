"""Strikes decay and bans hold (gridnode.node.peers): an honest peer's occasional protocol
mistake is forgotten, while a peer that reaches MAX_STRIKES is banned by peer id for
BAN_SECONDS, and reconnecting does not reset it."""

import pytest
import trio
import trio.testing

from gridnode.node import open_node, peers
from gridnode.node.peers import BAN_SECONDS, MAX_STRIKES, STRIKE_DECAY, Peering
from gridnode.node.stats import NodeStats
from tests.gridnode.node.test_replication import make_shared


class FakeHost:
    peer_id = "self"

    def __init__(self):
        self.disconnected = []
        self.refused = None

    def refuse_peers(self, refused, on_connected):
        self.refused = refused

    def watch_connections(self, connected):
        pass

    async def disconnect(self, peer):
        self.disconnected.append(peer)

    def peers(self):
        return []


def run_with_peering(test):
    clock = trio.testing.MockClock()

    async def main():
        async with trio.open_nursery() as nursery:
            host = FakeHost()
            stats = NodeStats()
            peering = Peering(host, nursery, stats, target_peers=8, connected=lambda _p: None)
            await test(peering, host, stats, clock)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)


def test_strikes_decay_so_occasional_mistakes_are_forgotten():
    async def test(peering, host, stats, clock):
        # One mistake every STRIKE_DECAY seconds, for ever: never banned.
        for _ in range(10 * MAX_STRIKES):
            await peering.strike("honest", "a mistake")
            clock.jump(STRIKE_DECAY)
        assert not peering.is_banned("honest") and host.disconnected == []
        peering.forgive()
        assert stats.strikes.get("honest", 0) == 0
        # Strikes close together still add up.
        for _ in range(MAX_STRIKES):
            await peering.strike("liar", "garbage")
        assert peering.is_banned("liar") and host.disconnected == ["liar"]

    run_with_peering(test)


def test_a_ban_lasts_its_time_and_is_checked_by_the_host():
    async def test(peering, host, stats, clock):
        for _ in range(MAX_STRIKES):
            await peering.strike("liar", "garbage")
        assert host.refused("liar") and not host.refused("honest")
        peering.remember("liar", ["/ip4/127.0.0.1/tcp/1/p2p/liar"])
        assert "liar" not in peering.known
        clock.jump(BAN_SECONDS - 1)
        peering.forgive()
        assert host.refused("liar")
        clock.jump(1)
        assert not host.refused("liar") and "liar" not in peering.banned
        peering.forgive()
        assert stats.strikes.get("liar", 0) == 0  # forgotten by the ban's end

    run_with_peering(test)


def test_the_ban_list_is_bounded_oldest_first(monkeypatch):
    monkeypatch.setattr(peers, "MAX_BANNED", 4)

    async def test(peering, host, stats, clock):
        for n in range(6):
            for _ in range(MAX_STRIKES):
                await peering.strike(f"sybil{n}", "garbage")
        assert sorted(peering.banned) == ["sybil2", "sybil3", "sybil4", "sybil5"]

    run_with_peering(test)


@pytest.mark.slow
def test_a_banned_peer_that_reconnects_is_dropped_again(tmp_path):
    dirs, _address = make_shared(tmp_path, ["a", "b"])

    async def main():
        loopback = ["/ip4/127.0.0.1/tcp/0"]
        async with (
            open_node(dirs[0], listen=loopback, announce_interval=0.5) as a,
            open_node(dirs[1], listen=loopback, announce_interval=0.5) as b,
        ):
            await a.connect(b.addrs[0])
            with trio.fail_after(30):
                while a.peer_id not in b.peers():
                    await trio.sleep(0.05)
            for _ in range(MAX_STRIKES):
                await b.peering.strike(a.peer_id, "a test's violation")
            with trio.fail_after(30):
                while a.peer_id in b.peers():
                    await trio.sleep(0.05)
            # a dials b again, as an attacker would: b closes the connection at once.
            for _ in range(3):
                await a.connect(b.addrs[0])
                with trio.fail_after(10):
                    while a.peer_id in b.peers() or b.peer_id in a.peers():
                        await trio.sleep(0.05)
            # a's redials and gossip meanwhile: never connected for long.
            longest = since = 0.0
            end = trio.current_time() + 3
            while trio.current_time() < end:
                now = trio.current_time()
                if a.peer_id in b.peers():
                    since = since or now
                    longest = max(longest, now - since)
                else:
                    since = 0.0
                await trio.sleep(0.02)
            assert longest < 1.5
            assert b.peering.is_banned(a.peer_id)

    trio.run(main)
