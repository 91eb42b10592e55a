"""Live nodes for the tests of the HTTP surface (dashboard, metrics, schemathesis): each a real
node on 127.0.0.1 serving its API from its own trio loop in a thread, as ``gridnode start`` does,
so that blocking clients (a browser, schemathesis, ``http.client``) can call it from the test."""

import math
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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


@contextmanager
def node_in_thread(data_dir, *, bootstrap=(), announce_interval=math.inf):
    """A node on ``data_dir`` serving its API from its own trio loop in another thread, holding
    the data directory's lock as ``gridnode start`` does. Yields ``{"node", "url", "stop",
    "token"}`` (``token``: the loop's trio token); stops the node on leaving."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve():
        async with (
            open_node(
                data_dir,
                listen=LOOPBACK,
                bootstrap=list(bootstrap),
                announce_interval=announce_interval,
            ) as node,
            api.serve_api(node, data_dir) as url,
        ):
            box.update(
                node=node, url=url, stop=trio.Event(), token=trio.lowlevel.current_trio_token()
            )
            ready.set()
            await box["stop"].wait()

    def run():
        try:
            trio.run(serve)
        except BaseException as exc:
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True, name=f"node {data_dir.name}")
    thread.start()
    assert ready.wait(30), f"node {data_dir.name} did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box
    finally:
        trio.from_thread.run_sync(box["stop"].set, trio_token=box["token"])
        thread.join(30)
        assert not thread.is_alive(), f"node {data_dir.name} did not stop"
        assert "error" not in box, box.get("error")


@pytest.fixture
def live_nodes(tmp_path):
    """``start(name, bootstrap=None, announce_interval=inf) -> LiveNode``; all stopped at the end."""
    with ExitStack() as stack:

        def start(name, bootstrap=None, announce_interval=math.inf):
            data_dir = tmp_path / name
            box = stack.enter_context(
                node_in_thread(
                    data_dir, bootstrap=bootstrap or [], announce_interval=announce_interval
                )
            )
            token = (data_dir / api.TOKEN_FILE).read_text().strip()
            return LiveNode(box["node"], box["url"], token, box["token"])

        yield start
