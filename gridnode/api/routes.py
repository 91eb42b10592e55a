"""THE route table of the local API: which method and path run which handler, and which answer
without the token.

One line per route, in :data:`ROUTES`. A path is written as docs/http.md and the OpenAPI document
write it: ``{name}`` matches any one segment (``{db}``: a database's address, CID or name;
``{cid}``: a CID), anything else only itself; ``{path}``, last, matches one or more segments (a
path below a CID in the gateway). Three things are checked against this table by the
tests, so that none of them drifts from what the node serves: the OpenAPI document's paths
(:mod:`gridnode.api.openapi`), the endpoint table of docs/http.md, and schemathesis's run against
a live node.

The reads on one database (:data:`gridnode.ops.READS`) are one line each, all served by
:func:`gridnode.api.handlers.read`: adding a read is one line here (and its row in docs/http.md).

:data:`PUBLIC` is what answers without the token, each for a reason: the dashboard page and the
OpenAPI document hold no data; the trustless gateway is read-only and every byte it sends is
checked by the client against the CID it asked for (docs/http.md).

Refused here: logic, and a second way to match. A path matches a route segment by segment, the
first route that matches wins, a path with routes but not for this method is a 405 (with
``Allow``), and a path the table does not have is a 404.
"""

from __future__ import annotations

from typing import Final

from gridnode.api import files, handlers
from gridnode.api.asgi import Handler

__all__ = ["PUBLIC", "ROUTES", "is_public", "route"]

#: (method, path) -> handler.
ROUTES: Final[dict[tuple[str, str], Handler]] = {
    ("GET", "/"): handlers.hello,
    ("GET", "/status"): handlers.status,
    ("GET", "/peers"): handlers.peers,
    ("GET", "/events"): handlers.events,
    ("GET", "/metrics"): handlers.metrics_text,
    ("GET", "/dashboard"): handlers.dashboard_page,
    ("GET", "/openapi.json"): handlers.openapi_document,
    ("GET", "/db"): handlers.list_databases,
    ("POST", "/db"): handlers.create_database,
    ("POST", "/follow"): handlers.follow,
    ("POST", "/unfollow"): handlers.unfollow,
    ("POST", "/db/restore"): handlers.restore,
    # OrbitDB databases followed read-only (gridnode/orbitdb/); /db/{db} reads them too.
    ("GET", "/orbitdb"): handlers.orbit_list,
    ("POST", "/orbitdb/follow"): handlers.orbit_follow,
    ("POST", "/orbitdb/unfollow"): handlers.orbit_unfollow,
    ("GET", "/orbitdb/{cid}/all"): handlers.orbit_all,
    # /db/restore is also /db/{db} for a database named "restore": GET reads that database.
    ("GET", "/db/restore"): handlers.database_info,
    ("POST", "/import"): handlers.import_car,
    ("GET", "/db/{db}"): handlers.database_info,
    ("POST", "/db/{db}/ops"): handlers.write,
    # The reads on one database (gridnode.ops.READS), one line each.
    ("GET", "/db/{db}/get"): handlers.read,
    ("GET", "/db/{db}/query"): handlers.read,
    ("GET", "/db/{db}/log"): handlers.read,
    ("GET", "/db/{db}/iter"): handlers.read,
    ("GET", "/db/{db}/value"): handlers.read,
    ("GET", "/db/{db}/verify"): handlers.read,
    ("GET", "/db/{db}/catalog"): handlers.read,
    ("GET", "/db/{db}/car"): handlers.car,
    ("GET", "/db/{db}/replicas"): handlers.replicas,
    ("POST", "/db/{db}/snapshot"): handlers.snapshot_publish,
    ("POST", "/db/{db}/readers"): handlers.change_reader,
    ("POST", "/db/{db}/access"): handlers.change_access,
    ("GET", "/db/{db}/snapshot"): handlers.snapshot_show,
    ("GET", "/ipfs/{cid}"): handlers.ipfs,
    ("HEAD", "/ipfs/{cid}"): handlers.ipfs,
    ("GET", "/ipfs/{cid}/{path}"): handlers.ipfs,
    ("HEAD", "/ipfs/{cid}/{path}"): handlers.ipfs,
    # The file store (gridnode/api/files.py): what gridnode add|cat|get|ls|gc|pin ask.
    ("POST", "/files/blocks"): files.put_blocks,
    ("GET", "/files/blocks/{cid}"): files.file_block,
    ("POST", "/files/fetch"): files.fetch,
    ("GET", "/files/fetch/{cid}"): files.fetch_progress,
    ("POST", "/files/leases"): files.begin_lease,
    ("POST", "/files/leases/{lease}/end"): files.end_lease,
    ("GET", "/files/pins"): files.pins,
    ("POST", "/files/pins"): files.pin,
    ("POST", "/files/unpin"): files.unpin,
    ("POST", "/files/gc"): files.gc,
    ("GET", "/files/usage"): files.usage,
}

#: The routes that answer without the token: no data in the first two; the gateway's bytes are
#: content-addressed.
PUBLIC: Final = frozenset(
    {
        ("GET", "/dashboard"),
        ("GET", "/openapi.json"),
        ("GET", "/ipfs/{cid}"),
        ("HEAD", "/ipfs/{cid}"),
        ("GET", "/ipfs/{cid}/{path}"),
        ("HEAD", "/ipfs/{cid}/{path}"),
    }
)


#: A pattern's last segment that matches one or more segments.
_REST: Final = "{path}"


def _pattern(path: str) -> tuple[str | None, ...]:
    """A path's segments, ``None`` for a ``{name}`` that matches any one (``{path}`` is kept)."""
    return tuple(
        s if s == _REST else None if s.startswith("{") and s.endswith("}") else s
        for s in path.strip("/").split("/")
        if s
    )


_MATCHED: Final = [(method, _pattern(path), handler) for (method, path), handler in ROUTES.items()]
_PUBLIC_PATTERNS: Final = frozenset((method, _pattern(path)) for method, path in PUBLIC)


def _matches(pattern: tuple[str | None, ...], segments: list[str]) -> bool:
    if pattern and pattern[-1] == _REST:
        head = pattern[:-1]
        return len(segments) > len(head) and _matches(head, segments[: len(head)])
    return len(pattern) == len(segments) and all(
        p is None or p == s for p, s in zip(pattern, segments, strict=True)
    )


def route(segments: list[str], method: str) -> tuple[Handler | None, list[str]]:
    """The handler for a path (its unquoted segments) and method, or ``None`` and the methods
    the path allows (none: no such path)."""
    allowed = []
    for route_method, pattern, handler in _MATCHED:
        if _matches(pattern, segments):
            if route_method == method:
                return handler, []
            allowed.append(route_method)
    return None, sorted(set(allowed))


def is_public(segments: list[str], method: str) -> bool:
    """Whether a request answers without the token."""
    return any(
        route_method == method and _matches(pattern, segments)
        for route_method, pattern in _PUBLIC_PATTERNS
    )
