"""Old and new nodes refuse each other clearly (docs/spec.md §10, Versions): the access rule of
§8 is that of ``/gridnode/sync/1.1.0``, and a peer that speaks only ``/gridnode/sync/1.0.0``
cannot open a sync stream to a node, nor does the node serve it anything under the old id."""

from __future__ import annotations

import math
import os

import pytest
import trio

from gridnode.errors import ProtocolNotSupported
from gridnode.net import open_host
from gridnode.node import open_node
from protocols.wire import PROTOCOL_ID

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
OLD = "/gridnode/sync/1.0.0"


def test_the_sync_protocol_id_names_the_access_rule():
    assert PROTOCOL_ID == "/gridnode/sync/1.1.0"


def test_a_peer_speaking_only_the_old_id_is_refused_clearly(tmp_path):
    async def main():
        async with (
            open_node(tmp_path / "node", listen=LOOPBACK, announce_interval=math.inf) as node,
            open_host(os.urandom(32), LOOPBACK) as old,
        ):
            served = []

            async def old_handler(stream):
                served.append(stream)
                await stream.close()

            old.set_stream_handler(OLD, old_handler)
            await old.connect(node.addrs[0])
            with trio.fail_after(20):
                # The old peer asks the new node under its id: "protocol not supported".
                with pytest.raises(ProtocolNotSupported, match=r"1\.0\.0"):
                    await old.open_stream(node.peer_id, OLD)
                # The new node asks the old peer under its own id: refused the same way.
                with pytest.raises(ProtocolNotSupported, match=r"1\.1\.0"):
                    await node.host.open_stream(old.peer_id, PROTOCOL_ID)
            assert served == []
            # And the new id works between new nodes (the node serves it).
            stream = await old.open_stream(node.peer_id, PROTOCOL_ID)
            await stream.close()

    trio.run(main)
