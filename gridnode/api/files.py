"""The local API's ``/files`` routes: the file store of a running node, for the CLI's ``add``,
``cat``, ``get``, ``ls``, ``gc`` and ``pin`` (:mod:`gridnode.files.ops`, run in the storage
worker). All need the token.

How the CLI adds a file while a node runs: the CLI itself chunks and hashes (the UnixFS
importer runs in the CLI's process, in constant memory), and sends the blocks in batches of
about :data:`gridnode.files.add.BATCH_BYTES` as a CAR (``POST /files/blocks?lease=N``), under a
lease (``POST /files/leases``) that keeps them from gc; then it pins the root (``POST
/files/pins``) and ends the lease (``POST /files/leases/{lease}/end``). Reads go a block at a time
(``GET /files/blocks/{cid}``): the CLI walks the DAG. A file the node lacks is fetched from its
peers first (``POST /files/fetch``, its progress at ``GET /files/fetch/{cid}``), and the blocks
on the way to it (``?peers=true``). The node verifies every block it is sent
(hash against CID) and re-hashes every block it reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crdt.ipld.car import iter_blocks, read_header
from gridnode.api.asgi import MAX_CAR_BYTES, Request, Response
from gridnode.errors import InvalidRequest, MissingBlock, NotFound
from gridnode.files import ops as files_ops

if TYPE_CHECKING:
    from gridnode.node import Node

__all__ = [
    "begin_lease",
    "end_lease",
    "fetch",
    "fetch_progress",
    "file_block",
    "gc",
    "pin",
    "pins",
    "put_blocks",
    "unpin",
]

#: The media type of one raw block.
RAW_TYPE = "application/vnd.ipld.raw"


def _lease(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InvalidRequest(f"lease must be a lease number, not {text!r:.40}")
    return int(text)


async def put_blocks(node: Node, request: Request) -> Response:
    """``POST /files/blocks[?lease=N]``: a CAR of blocks to keep (every one verified first)."""
    data = await request.body(MAX_CAR_BYTES)
    read_header(data)
    blocks = list(iter_blocks(data, verify=True))  # every block hashed against its CID here
    lease = _lease(request.query.get("lease"))
    answer = await node.worker.run(lambda: files_ops.put(node.repo, blocks, lease, verified=True))
    return Response(200, answer)


async def file_block(node: Node, request: Request) -> Response:
    """``GET /files/blocks/{cid}[?peers=true]``: one block of the file store, re-hashed; with
    ``peers``, one the store lacks is asked of the connected peers over bitswap (and kept,
    unpinned)."""
    cid = files_ops.parse_cid(request.segments[2])
    if request.flag("peers"):
        found = await node.files.source().get_many([cid])
        if cid not in found:
            raise MissingBlock(f"block {cid} is neither in the file store nor sent by a peer")
        return Response(200, parts=[found[cid]], content_type=RAW_TYPE)
    block = await node.worker.run(files_ops.block, node.repo, cid)
    return Response(200, parts=[block], content_type=RAW_TYPE)


async def fetch(node: Node, request: Request) -> Response:
    """``POST /files/fetch`` ``{"cid", "pin"?}``: fetch the whole DAG under ``cid`` from the
    connected peers over bitswap (parallel wants, every block verified) into the file store, and
    pin it as ``pin`` if given; answers when done, with the fetch's progress. ``GET
    /files/fetch/{cid}`` follows it meanwhile."""
    body = await request.json()
    if type(body) is not dict or not set(body) <= {"cid", "pin"} or "cid" not in body:
        raise InvalidRequest('the body is {"cid": ..., "pin": ...}')
    pin = body.get("pin")
    if pin is not None and (type(pin) is not str or not pin):
        raise InvalidRequest("pin is a name (a non-empty string)")
    cid = files_ops.parse_cid(body["cid"])
    progress = await node.files.fetch_requested(cid, pin)
    return Response(200, progress.as_json())


async def fetch_progress(node: Node, request: Request) -> Response:
    """``GET /files/fetch/{cid}``: how far the fetch ``POST /files/fetch`` started is."""
    cid = files_ops.parse_cid(request.segments[2])
    progress = node.files.requested.get(str(cid))
    if progress is None:
        raise NotFound(f"no fetch of {cid} was asked of this node lately")
    return Response(200, progress.as_json())


async def begin_lease(node: Node, request: Request) -> Response:
    return Response(200, await node.worker.run(files_ops.begin, node.repo))


async def end_lease(node: Node, request: Request) -> Response:
    lease = _lease(request.segments[2])
    assert lease is not None
    return Response(200, await node.worker.run(files_ops.end, node.repo, lease))


async def pins(node: Node, request: Request) -> Response:
    return Response(200, {"pins": await node.worker.run(files_ops.pins, node.repo)})


async def pin(node: Node, request: Request) -> Response:
    """``POST /files/pins`` ``{"cid", "name"?, "recursive"?}``."""
    body = await request.json()
    if not isinstance(body, dict):
        raise InvalidRequest('the body is {"cid": ..., "name": ..., "recursive": ...}')
    cid = files_ops.parse_cid(body.get("cid"))
    name = body.get("name")
    recursive = body.get("recursive", True)
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("name is text")
    if not isinstance(recursive, bool):
        raise InvalidRequest("recursive is true or false")
    return Response(200, await node.worker.run(files_ops.pin, node.repo, cid, name, recursive))


async def unpin(node: Node, request: Request) -> Response:
    """``POST /files/unpin`` ``{"pin": name or CID}``."""
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("pin"), str):
        raise InvalidRequest('the body is {"pin": "<name or CID>"}')
    return Response(200, await node.worker.run(files_ops.unpin, node.repo, body["pin"]))


async def gc(node: Node, request: Request) -> Response:
    """``POST /files/gc``: remove the blocks no pin keeps."""
    return Response(200, await node.worker.run(files_ops.gc, node.repo))


async def usage(node: Node, request: Request) -> Response:
    return Response(200, await node.worker.run(files_ops.usage, node.repo))
