"""What each endpoint of the local API does: a thin handler per route, over the node's facade and
the database operations.

A handler takes the running :class:`~gridnode.node.Node` and a :class:`~gridnode.api.asgi.Request`
and returns a :class:`~gridnode.api.asgi.Response`. It does three things and no more:

- **reads the request** (its body's shape, its query by each parameter's kind), refusing what is
  malformed with :class:`~gridnode.errors.InvalidRequest`;
- **calls the operation**: a function of :mod:`gridnode.ops` in the node's storage worker (where
  the databases may be read: the node is the only user of its SQLite file), or one of the node's
  public methods (:meth:`~gridnode.node.Node.write`, ``create``, ``follow``, ``unfollow``,
  ``restore``, ``import_car``, ``connect``), which do the rest: durable, then announced;
- **shapes the answer** as JSON (or CAR bytes, the page, the metrics).

Of the node a handler reads only ``stats``, ``repo``, ``worker``, ``peer_id``, ``addrs``,
``peers()``, ``replicating()`` and its public methods, never a private attribute: what a running
node shows of itself is :class:`~gridnode.node.NodeStats`.

The reads on one database are one handler, :func:`read`, for every read registered in
:data:`gridnode.ops.READS`: the read named by the path's last segment, its parameters taken from
the query string by their kinds. Adding a read needs nothing here.

Refused here: HTTP statuses for errors (a handler raises the node layer's errors;
:mod:`gridnode.api.errors` answers them), SQL, and work on the trio loop that belongs in the
storage worker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

from crdt.errors import GridnodeError, OrbitError
from crdt.ipld.cid import CID
from gridnode import jsonvalue, ops
from gridnode.api import dashboard, gateway, metrics, unixfs
from gridnode.api.asgi import CHUNK_BYTES, MAX_CAR_BYTES, Request, Response
from gridnode.api.openapi import openapi
from gridnode.errors import FeatureOff, InvalidRequest, NotFound, UnknownDatabase, WrongStoreType
from gridnode.ops import CreateRequest, describe_error
from gridnode.repo import CarChunks, StoredDatabase

if TYPE_CHECKING:
    from gridnode.node import Node, PeerSync

log = logging.getLogger(__name__)

#: The media type of a CAR (``GET /db/{db}/car``, ``POST /import``).
CAR_TYPE: Final = gateway.CAR
#: ``POST /db/restore``: at most this many roots (the manifest and the heads), this many peers,
#: and this many seconds to fetch in (the default when none is given).
MAX_RESTORE_ROOTS: Final = 1024
MAX_RESTORE_PEERS: Final = 64
MAX_RESTORE_TIMEOUT: Final = 3600.0
DEFAULT_RESTORE_TIMEOUT: Final = 120.0


async def _run(node: Node, fn: Callable[..., Any], *args: Any) -> Any:
    return await node.worker.run(fn, *args)


async def _resolve(node: Node, ref: str) -> StoredDatabase:
    database: StoredDatabase = await _run(node, ops.resolve, node.repo, ref)
    return database


def _ref(request: Request) -> str:
    """The database a ``/db/{db}/...`` path names: its address, CID or name."""
    return request.segments[1]


# -- the node -------------------------------------------------------------------------------------


async def hello(node: Node, request: Request) -> Response:
    return Response(200, {"peer_id": node.peer_id, "identity": node.repo.did})


async def status(node: Node, request: Request) -> Response:
    import trio

    databases = await _run(node, ops.status_of_databases, node.repo)
    replicas = await node.replica_counts([row["address"] for row in databases])
    now = trio.current_time()
    for row in databases:
        row["replicating"] = node.replicating(row["address"])
        row["catalog"] = node.catalogs.listing(row["address"])
        row["syncs"] = [
            _sync_json(sync, now)
            for (_peer, address), sync in sorted(node.stats.syncs.items())
            if address == row["address"]
        ]
        row["replicas"] = replicas[row["address"]]
        snapshot = node.snapshots.status(row["address"])
        if snapshot is not None:
            row["snapshot"] = snapshot
    return Response(
        200,
        {
            "running": True,
            "data_dir": str(node.repo.data_dir),
            "identity": node.repo.did,
            "peer_id": node.peer_id,
            "addrs": node.addrs,
            "announced": node.announced_addrs,
            "peers": sorted(node.peers()),
            "databases": databases,
            "served": {peer: asdict(t) for peer, t in sorted(node.stats.served.items())},
            "bitswap": None if node.stats.bitswap is None else node.stats.bitswap.as_dict(),
            "dht": None if node.host.dht is None else node.host.dht.as_dict(),
            "storage": node.storage(),
            **_history_json(node, now),
            "catalogs": node.catalogs.as_json(),
            "files": node.files.as_json(),
            "nat": node.host.nat_status(),
            "gateway": asdict(node.stats.gateway),
            "orbitdb": {
                "databases": node.orbitdb.summaries(),
                "stats": node.orbitdb.stats.as_dict(),
            },
        },
    )


def _history_json(node: Node, now: float) -> dict[str, Any]:
    """``history`` (the last hour, per step) and ``peer_info`` (addresses, latency)."""
    history = node.stats.history
    if history is None:
        return {}
    peers = sorted(node.peers())
    return {
        "history": history.as_json(now, node.stats, len(peers)),
        "peer_info": [
            {
                "peer_id": peer,
                "addrs": node.peer_addrs(peer),
                "latency_ms": (None if (ms := history.latency.get(peer)) is None else round(ms, 3)),
            }
            for peer in peers
        ],
    }


async def replicas(node: Node, request: Request) -> Response:
    """``GET /db/{db}/replicas``: who holds the database, as far as this node heard."""
    database = await _resolve(node, _ref(request))
    return Response(200, await node.replica_summary(database))


def _sync_json(sync: PeerSync, now: float) -> dict[str, Any]:
    out = asdict(sync)
    del out["address"], out["started"]
    if sync.running:
        out["complete"] = False
    return {"peer": out.pop("peer"), "seconds_ago": round(max(0.0, now - sync.started), 3), **out}


async def peers(node: Node, request: Request) -> Response:
    listed = [{"peer_id": p, "strikes": node.stats.strikes.get(p, 0)} for p in sorted(node.peers())]
    return Response(
        200,
        {"running": True, "identity": node.repo.did, "peer_id": node.peer_id, "peers": listed},
    )


async def events(node: Node, request: Request) -> Response:
    limit = request.int_param("limit")
    recent = list(reversed(node.stats.events))[:limit]
    return Response(200, {"events": [asdict(e) for e in recent]})


async def metrics_text(node: Node, request: Request) -> Response:
    databases = await _run(node, ops.status_of_databases, node.repo)
    storage = node.storage()
    families = metrics.node_families(
        node,
        databases,
        storage["used"],
        installed_version(),
        max_storage=storage["max"],
        storage_refusals=node.storage_refusals,
    )
    return Response(
        200,
        parts=[metrics.exposition(families).encode("utf-8")],
        content_type=metrics.CONTENT_TYPE,
    )


def installed_version() -> str:
    """The installed gridnode's version (``/metrics``, ``/openapi.json``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gridnode")
    except PackageNotFoundError:
        return "unknown"


async def dashboard_page(node: Node, request: Request) -> Response:
    return Response(
        200,
        parts=[dashboard.page()],
        content_type=dashboard.CONTENT_TYPE,
        headers=list(dashboard.HEADERS),
    )


async def openapi_document(node: Node, request: Request) -> Response:
    return Response(200, openapi(installed_version()))


# -- databases ------------------------------------------------------------------------------------


async def list_databases(node: Node, request: Request) -> Response:
    return Response(200, {"databases": await _run(node, ops.listing, node.repo)})


async def create_database(node: Node, request: Request) -> Response:
    database = await node.create(CreateRequest.from_json(await request.json()))
    return Response(201, ops.describe(database))


async def follow(node: Node, request: Request) -> Response:
    body = await request.json()
    snapshot = True
    if type(body) is dict and "snapshot" in body:
        # {"address", "snapshot": false}: verify the whole history before serving reads.
        body = dict(body)
        snapshot = body.pop("snapshot")
        if type(snapshot) is not bool:
            raise InvalidRequest('"snapshot" is true or false')
    database = await node.follow(_address_body(body), snapshot=snapshot)
    return Response(200, await _run(node, lambda: ops.info(database, digest=False)))


async def snapshot_publish(node: Node, request: Request) -> Response:
    """``POST /db/{db}/snapshot``: build, keep and offer a signed snapshot of the database."""
    body = await request.json()
    if body != {}:
        raise InvalidRequest("the body is {}")
    return Response(200, await node.snapshots.publish(_ref(request)))


async def change_reader(node: Node, request: Request) -> Response:
    """``POST /db/{db}/readers``: ``{"action": "add" | "remove", "did"}`` on an encrypted
    database."""
    body = await request.json()
    if type(body) is not dict or set(body) != {"action", "did"}:
        raise InvalidRequest('the body is {"action": "add" | "remove", "did": ...}')
    action, did = body["action"], body["did"]
    if type(action) is not str or type(did) is not str:
        raise InvalidRequest("action and did are strings")
    return Response(200, await node.change_reader(_ref(request), action, did))


async def change_access(node: Node, request: Request) -> Response:
    """``POST /db/{db}/access``: ``{"action": "grant" | "revoke", "role": "admin" | "writer",
    "did"}``."""
    body = await request.json()
    if type(body) is not dict or set(body) != {"action", "role", "did"}:
        raise InvalidRequest(
            'the body is {"action": "grant" | "revoke", "role": "admin" | "writer", "did": ...}'
        )
    action, role, did = body["action"], body["role"], body["did"]
    if type(action) is not str or type(role) is not str or type(did) is not str:
        raise InvalidRequest("action, role and did are strings")
    return Response(200, await node.change_access(_ref(request), action, role, did))


async def snapshot_show(node: Node, request: Request) -> Response:
    """``GET /db/{db}/snapshot``: the newest snapshot this node published of the database, and
    the one it serves reads from (or did)."""
    database = await _resolve(node, _ref(request))
    published = await _run(node, node.snapshots.published, database)
    return Response(
        200,
        {
            "address": database.address,
            "published": published,
            "served": node.snapshots.status(database.address),
        },
    )


async def unfollow(node: Node, request: Request) -> Response:
    database = await node.unfollow(_address_body(await request.json()))
    return Response(200, {"address": database.address, "replicating": False})


def _address_body(body: Any) -> str:
    if type(body) is not dict or type(body.get("address")) is not str or set(body) != {"address"}:
        raise InvalidRequest('the body is {"address": "/gridnode/<cid>"}')
    address: str = body["address"]
    return address


async def restore(node: Node, request: Request) -> Response:
    """Fetch a database from IPFS peers over bitswap (:meth:`~gridnode.node.Node.restore`):
    connect to the ``peers`` given first, then ask them (or, when none was given or none
    answered, every connected peer)."""
    import trio

    roots, addresses, timeout = _restore_body(await request.json())
    if node.stats.bitswap is None:
        raise FeatureOff(
            "bitswap is off in this node's config: 'bitswap = true' in gridnode.toml turns it "
            "on (then restart the node)"
        )
    connected: dict[int, str | None] = {}

    async def dial(index: int, address: str) -> None:
        try:
            connected[index] = await node.connect(address)
        except Exception as exc:  # an address the transport cannot dial at all
            log.warning("cannot connect to %s: %s", address, describe_error(exc))
            connected[index] = None

    async with trio.open_nursery() as nursery:
        for index, address in enumerate(addresses):
            nursery.start_soon(dial, index, address)
    peer_ids = list(dict.fromkeys(p for _, p in sorted(connected.items()) if p is not None))
    unreachable = [a for i, a in enumerate(addresses) if connected.get(i) is None]
    missed = f" (cannot connect to {', '.join(unreachable)})" if unreachable else ""
    if not peer_ids and not node.peers():
        raise UnknownDatabase(
            f"no peer to ask for the manifest {roots[0]}: no peer is connected{missed}"
        )
    try:
        report = await node.restore(roots, peer_ids or None, timeout=timeout)
    except UnknownDatabase as exc:
        raise UnknownDatabase(f"{describe_error(exc)}{missed}") from None
    database = await _resolve(node, report.address)

    def describe_restored() -> dict[str, Any]:
        info = ops.info(database, digest=False)
        info.update(ops.import_report(report))
        # What did not come in time: parents that entries held wait for.
        info["missing"] = len(database.missing)
        return info

    return Response(200, await _run(node, describe_restored))


_RESTORE_BODY: Final = (
    'the body is {"roots": [manifest CID, head CID, ...], "peers": [multiaddr, ...], '
    '"timeout": seconds} (peers and timeout optional)'
)


def _restore_body(body: Any) -> tuple[list[CID], list[str], float]:
    """The roots (as CIDs), the peers' multiaddrs and the timeout of a ``POST /db/restore``."""
    # The network floor checks a multiaddr; imported here, as libp2p is heavy and only this
    # endpoint needs it.
    from gridnode.net.identity import check_peer_multiaddr

    if type(body) is not dict or "roots" not in body:
        raise InvalidRequest(_RESTORE_BODY)
    unknown = set(body) - {"roots", "peers", "timeout"}
    if unknown:
        raise InvalidRequest(f"unknown field {sorted(unknown)[0]!r}; {_RESTORE_BODY}")
    texts = body["roots"]
    if type(texts) is not list:
        raise InvalidRequest("roots must be a list of CIDs: the manifest's, then the heads")
    if not texts:
        raise InvalidRequest("roots is empty: give the manifest's CID (then the heads)")
    if len(texts) > MAX_RESTORE_ROOTS:
        raise InvalidRequest(f"roots has {len(texts)} CIDs; at most {MAX_RESTORE_ROOTS}")
    roots = []
    for index, text in enumerate(texts):
        if type(text) is not str:
            raise InvalidRequest(f"roots[{index}] must be a CID as a string")
        try:
            roots.append(CID.parse(text))
        except GridnodeError as exc:
            raise InvalidRequest(f"roots[{index}] is not a CID: {describe_error(exc)}") from None
    addresses = body.get("peers", [])
    if type(addresses) is not list:
        raise InvalidRequest("peers must be a list of multiaddrs ending in /p2p/<peer id>")
    if len(addresses) > MAX_RESTORE_PEERS:
        raise InvalidRequest(f"peers has {len(addresses)} multiaddrs; at most {MAX_RESTORE_PEERS}")
    for index, address in enumerate(addresses):
        check_peer_multiaddr(address, f"peers[{index}]")
    timeout = body.get("timeout", DEFAULT_RESTORE_TIMEOUT)
    if type(timeout) not in (int, float) or not 0 < timeout <= MAX_RESTORE_TIMEOUT:
        # The body was parsed from JSON, so it can be written back as JSON.
        raise InvalidRequest(
            f"timeout must be a number of seconds above 0 and at most {MAX_RESTORE_TIMEOUT:g}, "
            f"not {jsonvalue.dumps(timeout)}"
        )
    return roots, list(dict.fromkeys(addresses)), float(timeout)


async def import_car(node: Node, request: Request) -> Response:
    data = await request.body(MAX_CAR_BYTES)
    report = await node.import_car(data)
    return Response(200, ops.import_report(report))


# -- one database ---------------------------------------------------------------------------------


async def database_info(node: Node, request: Request) -> Response:
    if _is_orbit(_ref(request)):
        return Response(200, _orbit_info(node, _ref(request)))
    database = await _resolve(node, _ref(request))
    with_digest = request.flag("digest", True)
    return Response(200, await _run(node, lambda: ops.info(database, digest=with_digest)))


async def write(node: Node, request: Request) -> Response:
    body = await request.json()
    if type(body) is not list:
        raise InvalidRequest("the body is a JSON array of ops")
    # One storage call resolves, checks, writes, commits (with the writes of other requests
    # that arrived meanwhile) and reads the answer.
    return Response(200, await node.write_and_answer(_ref(request), body))


async def read(node: Node, request: Request) -> Response:
    """``GET /db/{db}/{name}``: the registered read ``name`` (:data:`gridnode.ops.READS`), its
    parameters from the query string by their kinds."""
    if _is_orbit(_ref(request)):
        return Response(
            200, _orbit_read(node, _ref(request), request.segments[2], dict(request.query))
        )
    found = ops.READS[request.segments[2]]
    params: dict[str, Any] = {}
    known = {p.name for p in found.params}
    for name in request.query:
        if name not in known:
            raise InvalidRequest(
                f"'{found.name}' takes no parameter {name!r}"
                + (f" (it takes {', '.join(sorted(known))})" if known else "")
            )
    for param in found.params:
        if param.name not in request.query:
            continue
        text = request.query[param.name]
        if param.kind == "int":
            params[param.name] = request.int_param(param.name)
        elif param.kind == "bool":
            params[param.name] = request.flag(param.name)
        elif param.kind == "json":
            params[param.name] = jsonvalue.parse(text, param.name)
        else:
            params[param.name] = text or None
    database = await _resolve(node, _ref(request))
    # A read over the whole database (verify) runs a slice at a time: other calls go between.
    answer = await node.worker.run_steps(ops.read_steps(found.name, database, params))
    return Response(200, answer)


async def car(node: Node, request: Request) -> Response:
    database = await _resolve(node, _ref(request))
    # Streamed a chunk per worker call (asgi.CHUNK_BYTES), every block re-hashed: a damaged one
    # in the first chunk fails the request (CorruptBlock, 500 naming the block); later, it
    # aborts the transfer. Never a CAR with it.
    chunks = await _run(node, database.car_chunks)
    return Response(
        200,
        stream=_chunk_reader(node, chunks),
        content_type=CAR_TYPE,
        headers=[
            (b"x-gridnode-blocks", str(chunks.blocks).encode()),
            (b"x-gridnode-address", database.address.encode()),
        ],
    )


def _chunk_reader(node: Node, chunks: CarChunks) -> Callable[[], Awaitable[list[bytes]]]:
    """The next chunk of ``chunks``, one storage-worker call each."""

    async def read() -> list[bytes]:
        parts: list[bytes] = await _run(node, chunks.next_chunk, CHUNK_BYTES)
        return parts

    return read


# -- the trustless gateway ------------------------------------------------------------------------


async def ipfs(node: Node, request: Request) -> Response:
    """``GET``/``HEAD /ipfs/{cid}[/path]`` (:mod:`gridnode.api.gateway`, and
    :mod:`gridnode.api.unixfs` for files and directories): no token, read-only."""
    cid = gateway.parse_cid(request.segments[1])
    accept = request.headers.get(b"accept", b"").decode("latin-1") or None
    if unixfs.is_unixfs(cid):
        return await unixfs_answer(node, request, cid, accept)
    if len(request.segments) > 2:
        raise NotFound(f"{cid} is not UnixFS: no path below it")
    kind = gateway.choose_format(accept, request.query.get("format"))
    scope = request.query.get("dag-scope", "all")
    served: gateway.Served = await _run(node, gateway.serve, node.repo, cid, kind, scope)
    headers = [
        (b"etag", served.etag.encode()),
        (b"cache-control", served.cache_control.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-ipfs-path", f"/ipfs/{request.segments[1]}".encode()),
        (b"vary", b"Accept"),
    ]
    if request.headers.get(b"if-none-match", b"").decode("latin-1") == served.etag:
        return Response(304, parts=[], content_type=served.content_type, headers=headers, head=True)
    if served.chunks is not None:
        return Response(
            200,
            parts=[],
            stream=_chunk_reader(node, served.chunks),
            content_type=served.content_type,
            headers=headers,
            head=request.method == "HEAD",
        )
    return Response(
        200,
        parts=served.parts,
        content_type=served.content_type,
        headers=headers,
        head=request.method == "HEAD",
    )


async def unixfs_answer(node: Node, request: Request, cid: CID, accept: str | None) -> Response:
    """A UnixFS path's answer (:func:`gridnode.api.unixfs.answer`) as a :class:`Response`."""
    counts = node.stats.gateway
    counts.requests += 1
    try:
        answer = await _unixfs(node, request, cid, accept)
    except NotFound:
        counts.not_found += 1
        raise
    if answer.what == "listing":
        counts.listings += answer.status == 200
    elif answer.what == "file" and answer.status in (200, 206):
        counts.files += 1
        counts.ranges += answer.status == 206
    if request.method == "GET" and answer.length is not None and answer.status in (200, 206):
        counts.bytes += answer.length
    head = request.method == "HEAD" or answer.status == 304
    stream = answer.stream
    return Response(
        answer.status,
        parts=answer.parts,
        content_type=answer.content_type,
        headers=answer.headers,
        head=head,
        stream=stream.next_chunk if stream is not None else None,
        length=answer.length,
        pool=answer.pool,
    )


async def _unixfs(node: Node, request: Request, cid: CID, accept: str | None) -> unixfs.Answer:
    return await unixfs.answer(
        unixfs.RepoBlocks(node),
        cid,
        request.segments[2:],
        unixfs.Asked(
            method=request.method,
            shown_root=request.segments[1],
            trailing_slash=request.trailing_slash,
            query=request.query,
            accept=accept,
            range=_header(request, b"range"),
            if_range=_header(request, b"if-range"),
            if_none_match=_header(request, b"if-none-match"),
            only_if_cached="only-if-cached" in (_header(request, b"cache-control") or ""),
        ),
    )


def _header(request: Request, name: bytes) -> str | None:
    value = request.headers.get(name)
    return None if value is None else value.decode("latin-1")


# -- OrbitDB databases followed (gridnode/orbitdb/) -------------------------------------------------

#: Seconds ``POST /orbitdb/follow`` waits for a database's first entries, at most.
MAX_ORBIT_FOLLOW_TIMEOUT: Final = 600.0


def _is_orbit(ref: str) -> bool:
    return ref.startswith("/orbitdb/")


async def orbit_list(node: Node, request: Request) -> Response:
    """``GET /orbitdb``: the OrbitDB databases followed, and what the follower did."""
    return Response(
        200, {"databases": node.orbitdb.summaries(), "stats": node.orbitdb.stats.as_dict()}
    )


async def orbit_follow(node: Node, request: Request) -> Response:
    """``POST /orbitdb/follow``: ``{"address", "peers": [multiaddr...], "timeout": s}`` (peers
    and timeout optional): follow an OrbitDB database read-only; its summary."""
    body = await request.json()
    if (
        type(body) is not dict
        or "address" not in body
        or not set(body)
        <= {
            "address",
            "peers",
            "timeout",
        }
    ):
        raise InvalidRequest('the body is {"address": "/orbitdb/<cid>", "peers": [...], "timeout"}')
    address, peers, timeout = body["address"], body.get("peers", []), body.get("timeout", 30)
    if type(address) is not str:
        raise InvalidRequest("address is a string")
    if type(peers) is not list or not all(type(p) is str for p in peers) or len(peers) > 64:
        raise InvalidRequest("peers is a list of at most 64 multiaddrs")
    if type(timeout) not in (int, float) or not 0 <= timeout <= MAX_ORBIT_FOLLOW_TIMEOUT:
        raise InvalidRequest(
            f"timeout is a number of seconds from 0 to {MAX_ORBIT_FOLLOW_TIMEOUT:g}"
        )
    from gridnode.net.identity import check_peer_multiaddr

    for index, peer in enumerate(peers):
        check_peer_multiaddr(peer, f"peers[{index}]")
    try:
        summary = await node.orbitdb.follow(address, peers, timeout=float(timeout))
    except OrbitError as exc:
        raise InvalidRequest(str(exc)) from exc
    return Response(200, summary)


async def orbit_unfollow(node: Node, request: Request) -> Response:
    """``POST /orbitdb/unfollow``: ``{"address"}``: stop following it and drop its blocks."""
    body = await request.json()
    if type(body) is not dict or set(body) != {"address"} or type(body["address"]) is not str:
        raise InvalidRequest('the body is {"address": "/orbitdb/<cid>"}')
    try:
        summary = await node.orbitdb.unfollow(body["address"])
    except OrbitError as exc:
        raise InvalidRequest(str(exc)) from exc
    return Response(200, {**summary, "following": False})


async def orbit_all(node: Node, request: Request) -> Response:
    """``GET /orbitdb/{cid}/all``: what OrbitDB's ``all()`` answers, in its order."""
    address = "/orbitdb/" + request.segments[1]
    replica = node.orbitdb.replica(address)
    return Response(
        200,
        {
            "address": replica.address,
            "type": replica.manifest.type if replica.manifest is not None else None,
            "all": node.orbitdb.answer(address, "all"),
        },
    )


def _orbit_info(node: Node, ref: str) -> dict[str, Any]:
    """``GET /db/{db}`` of a followed OrbitDB database: its summary, as a database's info."""
    summary = node.orbitdb.replica(ref).summary()
    if summary["type"] is None:
        raise UnknownDatabase(
            f"{summary['address']} is followed, but no peer has sent its manifest yet"
        )
    return {**summary, "orbitdb": True, "may_write": False}


def _orbit_read(node: Node, ref: str, name: str, query: dict[str, str]) -> dict[str, Any]:
    """``GET /db/{db}/get|query|iter`` of a followed OrbitDB database, with OrbitDB's answers:
    ``get`` (``key`` or ``id``) as its ``get``; ``query`` (``field``, ``eq``) the documents whose
    FIELD equals EQ (every document without a condition) as its ``query``, newest first;
    ``iter`` (``limit``, ``reverse``) its ``all()`` in order (events: oldest first)."""
    replica = node.orbitdb.replica(ref)
    view = replica.view
    kind = replica.manifest.type if replica.manifest is not None else None
    if view is None:
        raise UnknownDatabase(
            f"{replica.address} is followed, but no peer has sent its manifest yet"
        )
    if name == "get":
        if "key" in query:
            key: Any = query["key"]
        elif "id" in query:
            key = jsonvalue.parse(query["id"], "id")
        else:
            raise InvalidRequest("get takes key or id")
        found = view.get(key)
        if found is None:
            raise NotFound(f"no {key!r} in {replica.address}")
        value = found["value"] if kind == "documents" and isinstance(found, dict) else found
        return {"key": key, "value": value, "orbitdb": found}
    if name == "query":
        if kind != "documents":
            raise WrongStoreType(f"{replica.address} is a {kind} database, not documents")
        unknown = set(query) - {"field", "eq"}
        if unknown:
            raise InvalidRequest(f"an OrbitDB query takes field and eq, not {sorted(unknown)}")
        field = query.get("field") or "_id"
        if "eq" in query:
            wanted = jsonvalue.parse(query["eq"], "eq")
            docs = view.query(lambda doc: isinstance(doc, dict) and doc.get(field) == wanted)
        else:
            docs = view.query(lambda doc: True)
        return {"index_by": "_id", "documents": docs}
    if name == "iter":
        items = node.orbitdb.answer(replica.address, "all")
        if "reverse" in query and query["reverse"] not in ("", "false", "0"):
            items = list(reversed(items))
        if "limit" in query:
            items = items[: int(query["limit"])]
        if kind == "events":
            items = [{"cid": i["hash"], "value": i["value"]} for i in items]
        return {"items": items}
    raise InvalidRequest(f"'{name}' is not a read of an OrbitDB database (get, query, iter)")
