"""Telling peers where this node can be reached when that changes (issue 22).

The host's announced addresses change when a relay reservation is taken or lost (a
``/p2p-circuit`` address comes or goes, :mod:`gridnode.net.relay`): the node publishes its peer
record at once then, not at the next periodic record, so that peers learn how to reach a node
that cannot be dialled directly as soon as it can be reached through a relay.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gridnode.net import Host

__all__ = ["republish_on_change"]

log = logging.getLogger(__name__)


async def republish_on_change(host: Host, publish: Callable[[], Awaitable[None]]) -> None:
    """Run ``publish()`` (the node's peer record) each time the announced addresses change."""
    while True:
        await host.announced_changed()
        log.info("announcing %s", ", ".join(host.announced_addrs) or "no address")
        await publish()
