"""(e) Many connections and many streams: the honest node holds to ``max_connections``, keeps its
honest peer, bounds what idle streams cost, and still converges with its honest peer."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack

import trio

from gridnode.net import DialError, StreamError, open_host
from protocols.wire import PROTOCOL_ID
from tests.hostile.attacker import LOOPBACK, converged, honest_nodes, rss_bytes

MAX_CONNECTIONS = 6
ATTACKERS = 12
STREAMS = 400
#: Generous: what a few hundred idle streams may cost the honest node (and the attacker's side).
STREAM_RSS_LIMIT = 128 * 1024 * 1024


def test_connections_beyond_the_limit_are_refused(tmp_path):
    async def main():
        async with (
            honest_nodes(tmp_path, max_connections=MAX_CONNECTIONS) as (a, b, address),
            AsyncExitStack() as stack,
        ):
            assert b.peer_id in a.peers()
            connected = refused = 0
            for i in range(ATTACKERS):
                host = await stack.enter_async_context(
                    open_host(bytes([120 + i]) * 32, LOOPBACK, dial_timeout=3)
                )
                try:
                    await host.connect(a.addrs[0])
                    # A dial may succeed before the other side drops the connection over its cap.
                    await trio.sleep(0.05)
                    if a.peer_id in host.peers():
                        connected += 1
                        continue
                except DialError:
                    pass
                refused += 1
            await trio.sleep(0.5)
            print(
                f"\n{ATTACKERS} attacker hosts dialled a node with max_connections={MAX_CONNECTIONS}: "
                f"{connected} kept, {refused} refused; the node has {len(a.peers())} peers"
            )
            assert len(a.peers()) <= MAX_CONNECTIONS
            assert refused >= ATTACKERS - MAX_CONNECTIONS + 1
            assert b.peer_id in a.peers()  # the honest peer that came first was not pushed out
            await b.write(address, [{"op": "put", "key": "during", "value": 1}])
            await converged([a, b], address)

    trio.run(main)


def test_many_idle_streams_cost_little_and_block_nothing(tmp_path):
    async def main():
        async with honest_nodes(tmp_path) as (a, b, address), AsyncExitStack() as stack:
            host = await stack.enter_async_context(open_host(bytes([97]) * 32, LOOPBACK))
            await host.connect(a.addrs[0])
            rss_before = rss_bytes()
            cpu_before = time.process_time()
            streams = []
            # Sync streams opened and left silent. py-libp2p's yamux stops the opener at 256
            # streams per connection (a further open waits): that is the per-connection bound.
            for _ in range(STREAMS):
                try:
                    with trio.fail_after(2):
                        streams.append(await host.open_stream(a.peer_id, PROTOCOL_ID))
                except (trio.TooSlowError, StreamError):
                    break
            # The honest peers still replicate while the streams are held.
            await b.write(address, [{"op": "put", "key": "during", "value": 1}])
            await a.write(address, [{"op": "put", "key": "during a", "value": 2}])
            await converged([a, b], address)
            rss_held = rss_bytes()
            for stream in streams:
                await stream.close()
            # Every stream's handler ends once the attacker closes it: nothing is left behind.
            with trio.fail_after(20):
                while a.stats.served.get(host.peer_id) is None or a.stats.served[
                    host.peer_id
                ].streams < len(streams):
                    await trio.sleep(0.05)
            cpu = time.process_time() - cpu_before
            print(
                f"\n{len(streams)} idle sync streams held: RSS +{(rss_held - rss_before) / 2**20:.1f} MiB "
                f"({(rss_held - rss_before) / max(len(streams), 1) / 1024:.1f} KiB a stream, both sides), "
                f"CPU {cpu:.2f} s; all {a.stats.served[host.peer_id].streams} handlers ended after close"
            )
            assert len(streams) >= 100
            assert rss_held - rss_before < STREAM_RSS_LIMIT

    trio.run(main)
