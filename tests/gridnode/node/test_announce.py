"""What a node tells its peers to dial: config ``announce`` and ``announce_private`` (the server
profile's), through gridnode.net.host's ``announcement`` and the node's peer records."""

import logging
from ipaddress import ip_address

import trio

from gridnode.config import CONFIG_FILE
from gridnode.net.discovery import local_ips
from gridnode.net.host import announcement
from gridnode.node import open_node

ID = "12D3KooWExample"
IPS = ["127.0.0.1", "192.168.1.5", "93.184.216.34", "::1", "fd00::5", "2a00:1450::1"]


def test_a_wildcard_is_each_address_of_the_machine_and_private_ones_can_be_left_out():
    bound = ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"]
    assert announcement(bound, ID, IPS) == [
        f"/ip4/192.168.1.5/tcp/4001/p2p/{ID}",
        f"/ip4/93.184.216.34/tcp/4001/p2p/{ID}",
        f"/ip6/fd00::5/tcp/4001/p2p/{ID}",
        f"/ip6/2a00:1450::1/tcp/4001/p2p/{ID}",
    ]
    assert announcement(bound, ID, IPS, private=False) == [
        f"/ip4/93.184.216.34/tcp/4001/p2p/{ID}",
        f"/ip6/2a00:1450::1/tcp/4001/p2p/{ID}",
    ]
    # Loopback only: nothing public to announce (the node logs it).
    assert announcement(["/ip4/127.0.0.1/tcp/9"], ID, IPS, private=False) == []
    assert announcement(["/ip4/127.0.0.1/tcp/9"], ID, IPS) == [f"/ip4/127.0.0.1/tcp/9/p2p/{ID}"]
    # Given addresses are taken as they are, whatever the machine's.
    given = ["/dns4/replica.example.org/tcp/4001", f"/ip4/10.0.0.1/tcp/1/p2p/{ID}"]
    assert announcement(bound, ID, IPS, given, private=False) == [
        f"/dns4/replica.example.org/tcp/4001/p2p/{ID}",
        f"/ip4/10.0.0.1/tcp/1/p2p/{ID}",
    ]


def test_peers_learn_the_announced_address(tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    (a_dir / CONFIG_FILE).write_text(
        'profile = "server"\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n'
        'announce = ["/dns4/replica.example.org/tcp/4001"]\n'
    )

    async def main():
        async with open_node(a_dir, announce_interval=0.2) as a:
            wanted = [f"/dns4/replica.example.org/tcp/4001/p2p/{a.peer_id}"]
            assert a.announced_addrs == wanted
            assert a.addrs[0].startswith("/ip4/127.0.0.1/tcp/")  # where it listens, unchanged
            async with open_node(
                b_dir,
                listen=["/ip4/127.0.0.1/tcp/0"],
                bootstrap=[a.addrs[0]],
                announce_interval=0.2,
            ) as b:
                # b dialled a's listen address; a's peer record then tells b the announced one.
                with trio.fail_after(20):
                    while b.known.get(a.peer_id) != tuple(wanted):
                        await trio.sleep(0.05)

    trio.run(main)


def test_a_server_with_no_public_address_says_so(tmp_path, caplog):
    (tmp_path / CONFIG_FILE).write_text('profile = "server"\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n')

    async def main():
        with caplog.at_level(logging.WARNING, logger="gridnode.net.host"):
            async with open_node(tmp_path) as node:
                assert node.announced_addrs == []
                assert node.addrs  # it listens all the same

    trio.run(main)
    [line] = [r.getMessage() for r in caplog.records if r.name == "gridnode.net.host"]
    assert line.startswith("announcing no address: none of /ip4/127.0.0.1/tcp/")
    assert "set 'announce'" in line


def test_a_wildcard_listener_announces_the_machines_addresses_not_the_wildcard(tmp_path):
    (tmp_path / CONFIG_FILE).write_text('listen = ["/ip4/0.0.0.0/tcp/0"]\n')

    async def main():
        async with open_node(tmp_path) as node:
            [listening] = node.addrs
            assert listening.startswith("/ip4/0.0.0.0/tcp/")  # what py-libp2p reports
            port = listening.split("/")[4]
            ips = [ip for ip in local_ips() if ip_address(ip).version == 4]
            mine = [ip for ip in ips if not ip_address(ip).is_loopback] or ips
            assert node.announced_addrs == [
                f"/ip4/{ip}/tcp/{port}/p2p/{node.peer_id}" for ip in mine
            ]
            assert not any("/0.0.0.0/" in a for a in node.announced_addrs)

    trio.run(main)
