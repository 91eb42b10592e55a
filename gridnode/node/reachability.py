"""Telling peers where this node can be reached when that changes (issue 22).

The host's announced addresses change when a relay reservation is taken or lost (a
``/p2p-circuit`` address comes or goes, :mod:`gridnode.net.relay`): the node publishes its peer
record at once then, not at the next periodic record, so that peers learn how to reach a node
that cannot be dialled directly as soon as it can be reached through a relay.

And two nodes that both sit behind relays meet again through another relay when the one their
connection went through stops (:func:`meet_through_relays`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import trio

from gridnode.net import Host, is_circuit

__all__ = ["meet_through_relays", "republish_on_change"]

log = logging.getLogger(__name__)


async def republish_on_change(host: Host, publish: Callable[[], Awaitable[None]]) -> None:
    """Run ``publish()`` (the node's peer record) each time the announced addresses change."""
    while True:
        await host.announced_changed()
        log.info("announcing %s", ", ".join(host.announced_addrs) or "no address")
        await publish()


async def meet_through_relays(
    host: Host,
    known: Mapping[str, Sequence[str]],
    connect: Callable[[str], Awaitable[str | None]],
    *,
    interval: float = 2.0,
    most: float = 120.0,
    per_tick: int = 4,
) -> None:
    """Reach known peers that use relays through the relays this node holds reservations on.

    A peer that cannot be dialled is known by the ``/p2p-circuit`` addresses of its record; when
    the relay those go through stops, the record is stale until the peer's next one arrives
    (and a redial tries its dead addresses first). So, every ``interval`` seconds: each known
    peer not connected whose addresses include a relayed one is dialled at
    ``/p2p/<relay>/p2p-circuit/p2p/<peer>`` through each relay we hold a reservation on (the
    relay answers at once if the peer holds none there). At most ``per_tick`` peers a tick, each
    again after a wait doubling from ``interval`` to ``most`` while it fails.
    """
    backoff: dict[str, tuple[float, float]] = {}
    while True:
        await trio.sleep(interval)
        client = host.nat_status()["relay_client"]
        relays: list[str] = client["relays"] if client else []
        if not relays:
            continue
        connected = set(host.peers())
        now = trio.current_time()
        for gone in [p for p in backoff if p not in known]:
            del backoff[gone]
        tried = 0
        for peer, addrs in list(known.items()):
            if tried >= per_tick:
                break
            if peer in connected or peer in relays or not any(is_circuit(a) for a in addrs):
                continue
            due, wait = backoff.get(peer, (now, interval))
            if now < due:
                continue
            backoff[peer] = (now + wait, min(wait * 2, most))
            tried += 1
            for relay in relays:
                if await connect(f"/p2p/{relay}/p2p-circuit/p2p/{peer}") is not None:
                    backoff.pop(peer, None)
                    log.info("reached %s through relay %s", peer, relay)
                    break
