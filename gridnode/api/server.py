"""Serving the local API: hypercorn's trio worker inside the node's own trio loop, on a free port
of 127.0.0.1, and the data directory's ``api`` and ``api.token`` files while it answers.

- **Inside the node's loop**, not a thread or a process of its own: the handlers call the node's
  methods directly and its storage worker does the storage work, so the node stays the only user
  of its SQLite file (it caches what it wrote).
- **127.0.0.1 only, a free port**: two nodes on one machine never collide, and nothing off the
  machine reaches it (the gateway is published, if at all, through a reverse proxy).
- **A new token each start**, written before the URL (:func:`gridnode.datadir.write_api_files`):
  once ``DATA_DIR/api`` is there the API answers with the token beside it. Both files go when
  the block ends, however it ends, so a client never finds a URL that nobody serves for long
  (and :func:`gridnode.api.client.open_endpoint` removes one a crash left).
- hypercorn is imported when the API is served, not when :mod:`gridnode.api` is (the CLI's
  client does not need it), and it is quiet: no access log, no server header, no start banner.

Refused here: checking that no other node serves this data directory. The caller holds
:func:`gridnode.datadir.node_lock`; files from a crash are replaced.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridnode import datadir
from gridnode.api.asgi import ApiApp

if TYPE_CHECKING:
    from gridnode.node import Node

__all__ = ["serve_api"]

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serve_api(node: Node, data_dir: Path | None = None) -> AsyncIterator[str]:
    """Serve the local API of ``node`` on a free port of 127.0.0.1 while the block runs; yield
    its URL.

    With ``data_dir``, a new token goes to ``DATA_DIR/api.token`` (mode 0600, created
    exclusively) and then the URL to ``DATA_DIR/api``; both are removed when the block ends,
    however it ends. The caller makes sure no other node serves this data directory
    (:func:`~gridnode.datadir.node_lock`): stale files from a crash are replaced.
    """
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve

    token = secrets.token_urlsafe(32)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    # hypercorn's own logger, through the root handlers; its start line would say "CTRL + C".
    server_log = logging.getLogger("hypercorn.error")
    if server_log.level == logging.NOTSET:
        server_log.setLevel(logging.WARNING)
    config.errorlog = server_log
    config.include_server_header = False
    config.graceful_timeout = 2.0
    app = ApiApp(node, token)
    stopping = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(_serve_until, serve, app, config, stopping)
        url = binds[0]
        try:
            if data_dir is not None:
                datadir.write_api_files(data_dir, url, token)
            log.info("API on %s", url)
            yield url
        finally:
            if data_dir is not None:
                datadir.remove_api_files(data_dir)
            stopping.set()


async def _serve_until(
    serve: Any, app: ApiApp, config: Any, stopping: Any, *, task_status: Any
) -> None:
    await serve(app, config, shutdown_trigger=stopping.wait, task_status=task_status)
