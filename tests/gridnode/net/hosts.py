"""Helpers for tests that run real libp2p hosts over 127.0.0.1."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from gridnode.net import Host, open_host

LOCAL = ["/ip4/127.0.0.1/tcp/0"]


def seed(i: int) -> bytes:
    """A distinct, fixed 32-byte seed per index."""
    return bytes([i + 1]) * 32


@asynccontextmanager
async def open_hosts(n: int, first: int = 0, **kwargs: Any) -> AsyncIterator[list[Host]]:
    """``n`` hosts with seeds ``first``..``first+n-1``, each on a free loopback port."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_host(seed(i), LOCAL, **kwargs))
            for i in range(first, first + n)
        ]


def run(main: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """``trio.run(main)`` that fails instead of hanging past ``timeout`` seconds."""

    async def bounded() -> Any:
        with trio.fail_after(timeout):
            return await main()

    return trio.run(bounded)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def running_threads() -> int:
    return threading.active_count()


def trio_tasks() -> int:
    """Every task in the current trio run, system tasks included."""

    def count(task: Any) -> int:
        return 1 + sum(count(child) for n in task.child_nurseries for child in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


async def wait_for_gossip_peer(publisher: Host, topic: str, subscription: Any) -> None:
    """Publish probes until ``subscription`` (on another host) receives one: the mesh is up."""
    while True:
        await publisher.publish(topic, b"probe")
        with trio.move_on_after(0.05):
            message = await subscription.receive()
            if message.data == b"probe":
                return
