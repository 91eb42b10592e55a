"""gridnode's network layer: the one place that imports py-libp2p.

Everything else in gridnode uses these names, with peer ids as base58 text and data as bytes::

    async with open_host(keypair.seed, ["/ip4/0.0.0.0/tcp/4001"]) as host:
        host.set_stream_handler("/gridnode/sync/1.1.0", serve_sync)
        peer = await host.connect("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...")
        stream = await host.open_stream(peer, "/gridnode/sync/1.1.0")
        async with await host.subscribe(topic) as heads:
            async for origin, data in heads:
                ...

    async with open_host(seed, listen, mdns=True) as host:  # LAN discovery, off by default
        async with host.discovered() as found:
            async for peer_id, addrs in found:
                await host.connect(addrs[0])
"""

from gridnode.errors import DialError, NetError, ProtocolNotSupported, StreamError
from gridnode.net.discovery import DiscoveredPeer, DiscoveredPeers
from gridnode.net.gossip import GossipConfig, GossipMessage, Subscription, TopicValidator
from gridnode.net.host import Host, StreamHandler, open_host
from gridnode.net.identity import peer_id_from_seed
from gridnode.net.relay import RelayLimits, is_circuit
from gridnode.net.stream import Stream

__all__ = [
    "DialError",
    "DiscoveredPeer",
    "DiscoveredPeers",
    "GossipConfig",
    "GossipMessage",
    "Host",
    "NetError",
    "ProtocolNotSupported",
    "RelayLimits",
    "Stream",
    "StreamError",
    "StreamHandler",
    "Subscription",
    "TopicValidator",
    "is_circuit",
    "open_host",
    "peer_id_from_seed",
]
