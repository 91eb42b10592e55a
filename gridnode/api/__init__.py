"""The local API: the JSON HTTP API a running node serves on 127.0.0.1, and its client.

A running node must be the only user of its SQLite file (it caches what it wrote), so while it
runs every other program, the CLI included, reaches its databases through this API. It is also a
scripting interface, the operator's dashboard, a Prometheus scrape target and a read-only IPFS
trustless gateway. Reference: docs/http.md (its endpoint table is the one list of endpoints,
checked against :data:`gridnode.api.routes.ROUTES` by the tests).

Who may call: whoever can read ``DATA_DIR/api.token`` (mode 0600, written when the API starts).
Every request carries ``Authorization: Bearer <token>``, except the few that hold no data or only
content-addressed bytes (:data:`gridnode.api.routes.PUBLIC`).

One room, one job per module:

==============  ===============================================================================
``errors``      which HTTP status answers which gridnode error, and back (the only statuses)
``asgi``        the plumbing: ASGI in, :class:`~gridnode.api.asgi.Request` to a handler, out
``routes``      THE route table: method and path -> handler, and the public routes
``handlers``    what each endpoint does, over :mod:`gridnode.ops` and the node's public methods
``server``      :func:`serve_api`: hypercorn in the node's trio loop, the ``api`` files
``client``      :class:`ApiClient` and :func:`open_endpoint` (the node, or the directory itself)
``openapi``     the OpenAPI document, its reads generated from :data:`gridnode.ops.READS`
``gateway``     the trustless gateway, ``GET /ipfs/{cid}``
``metrics``     ``GET /metrics`` in the Prometheus text format
``dashboard``   the operator's page, its headers, its address with the token
==============  ===============================================================================

The operations themselves are :mod:`gridnode.ops`, written once for the API, the embed facades
and the CLI without a node. Refused under ``gridnode/api``: libp2p (only ``gridnode/net`` imports
it; the restore endpoint reaches it lazily through ``gridnode.net.identity``), SQL, and error
classes named after HTTP. Importing this package stays light: hypercorn comes with
:func:`serve_api`, trio with the handlers that need it.
"""

from gridnode.api.asgi import MAX_CAR_BYTES, MAX_JSON_BYTES, ApiApp
from gridnode.api.client import ApiClient, open_endpoint
from gridnode.api.dashboard import dashboard_url
from gridnode.api.handlers import CAR_TYPE
from gridnode.api.server import serve_api
from gridnode.datadir import API_FILE, LOCK_FILE, TOKEN_FILE, node_lock

__all__ = [
    "API_FILE",
    "CAR_TYPE",
    "LOCK_FILE",
    "MAX_CAR_BYTES",
    "MAX_JSON_BYTES",
    "TOKEN_FILE",
    "ApiApp",
    "ApiClient",
    "dashboard_url",
    "node_lock",
    "open_endpoint",
    "serve_api",
]
