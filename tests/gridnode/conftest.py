"""Live nodes for the tests of the HTTP surface (dashboard, metrics, schemathesis): each a real
node on 127.0.0.1 serving its API from its own trio loop in a thread, as ``gridnode start`` does,
so that blocking clients (a browser, schemathesis, ``http.client``) can call it from the test."""

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from gridnode import api
from gridnode.node import Node, open_node

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


@dataclass
class LiveNode:
    node: Node
    url: str
    token: str
    trio_token: Any
    stop: trio.Event
    thread: threading.Thread
    #: ``"error"``: what the node's thread raised, if anything.
    box: dict[str, Any] = field(default_factory=dict)

    def run(self, fn, *args):
        """``await fn(*args)`` in the node's trio loop; its result."""
        return trio.from_thread.run(fn, *args, trio_token=self.trio_token)

    def read(self, fn):
        """``fn()`` in the node's storage worker (where its databases may be read)."""

        async def go():
            return await self.node.worker.run(fn)

        return self.run(go)

    @property
    def client(self) -> api.ApiClient:
        return api.ApiClient(self.url, self.token, timeout=30)


@pytest.fixture
def live_nodes(tmp_path):
    """``start(name, bootstrap=None, announce_interval=inf) -> LiveNode``; all stopped at the end."""
    started: list[LiveNode] = []

    def start(name, bootstrap=None, announce_interval=math.inf):
        data_dir = tmp_path / name
        ready = threading.Event()
        box: dict[str, Any] = {}

        async def serve():
            async with (
                open_node(
                    data_dir,
                    listen=LOOPBACK,
                    bootstrap=bootstrap or [],
                    announce_interval=announce_interval,
                ) as node,
                api.serve_api(node, data_dir) as url,
            ):
                box.update(
                    node=node,
                    url=url,
                    token=(data_dir / api.TOKEN_FILE).read_text().strip(),
                    stop=trio.Event(),
                    trio_token=trio.lowlevel.current_trio_token(),
                )
                ready.set()
                await box["stop"].wait()

        def run():
            try:
                with api.node_lock(data_dir):
                    trio.run(serve)
            except BaseException as exc:
                box["error"] = exc
                ready.set()

        thread = threading.Thread(target=run, daemon=True, name=f"node {name}")
        thread.start()
        assert ready.wait(30), f"node {name} did not start"
        if "error" in box:
            raise box["error"]
        live = LiveNode(
            box["node"], box["url"], box["token"], box["trio_token"], box["stop"], thread, box
        )
        started.append(live)
        return live

    yield start
    for live in reversed(started):
        trio.from_thread.run_sync(live.stop.set, trio_token=live.trio_token)
        live.thread.join(30)
        assert not live.thread.is_alive(), "a node did not stop"
        if "error" in live.box:
            raise live.box["error"]
