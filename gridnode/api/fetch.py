"""``POST /files/fetch``: fetch a file's whole DAG from the connected peers into the running
node's file store (over bitswap, every block verified: :meth:`gridnode.node.Node.fetch_file`),
pinned by name if asked. ``gridnode backup restore`` asks it for a backup's file the node does not
hold; offline there is no network, so no such request. Needs the token."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import trio

from gridnode.api.asgi import Request, Response
from gridnode.errors import FetchIncomplete, InvalidRequest
from gridnode.files import ops as files_ops

if TYPE_CHECKING:
    from gridnode.node import Node

__all__ = ["MAX_TIMEOUT", "fetch"]

#: The default and the longest wait for one fetch, in seconds.
DEFAULT_TIMEOUT: Final = 60.0
MAX_TIMEOUT: Final = 3600.0


async def fetch(node: Node, request: Request) -> Response:
    """``POST /files/fetch`` ``{"cid", "pin"?, "timeout"?}``: what the fetch got
    (``{"root", "blocks", "bytes", "fetched_blocks", "fetched_bytes", "expected_bytes",
    "pending", "done"}``); :class:`FetchIncomplete` when no connected peer sent it in time."""
    body = await request.json()
    if not isinstance(body, dict):
        raise InvalidRequest('the body is {"cid": ..., "pin": ..., "timeout": ...}')
    cid = files_ops.parse_cid(body.get("cid"))
    pin = body.get("pin")
    if pin is not None and not isinstance(pin, str):
        raise InvalidRequest("pin is text (a pin name)")
    timeout = body.get("timeout", DEFAULT_TIMEOUT)
    if (
        type(timeout) not in (int, float)
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise InvalidRequest(f"timeout is a number of seconds, above 0 and at most {MAX_TIMEOUT}")
    with trio.move_on_after(timeout) as scope:
        progress = await node.fetch_file(cid, pin=pin)
    if scope.cancelled_caught:
        raise FetchIncomplete(f"{cid} was not fetched from the connected peers in {timeout:g} s")
    return Response(200, progress.as_json())
