"""The OpenAPI 3.1 description of the local API (served at ``GET /openapi.json``).

Written by hand next to the handlers, except the reads on one database: their paths, parameters
and the statuses they may answer are generated from :data:`gridnode.ops.READS` (a parameter's
kind gives its schema; a read limited to some store types may answer 409), so adding a read
needs no edit here. Their answers are described where this module knows their shape
(:data:`_READ_ANSWERS`), else as a JSON object.

Two tests hold the document to the node: ``tests/gridnode/test_api.py`` checks that its paths
and methods are exactly the route table's (:data:`gridnode.api.routes.ROUTES`), and
``tests/gridnode/test_schemathesis.py`` runs schemathesis against it on a live node, so a status,
a content type or an answer the app does not have shows up there. Values in bodies and answers
are JSON in the DAG-JSON forms of docs/cli.md (a link is ``{"/": "bafy..."}``, bytes
``{"/": {"bytes": "..."}}``): any JSON value, as far as this document is concerned.

Refused here: anything that is not a description (no validation is generated from it; the
handlers and :mod:`gridnode.ops` check requests themselves).
"""

from __future__ import annotations

from typing import Any, Final

from gridnode import ops

__all__ = ["openapi"]

_ANY: Final[dict[str, Any]] = {}
_STRINGS: Final = {"type": "array", "items": {"type": "string"}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    what = {
        400: "malformed request: bad JSON, parameter, op or query",
        401: "no token, or not the node's",
        404: "no such database, key, document or member (or no peer sent a DAG's blocks)",
        409: "this node may not write it, or the verb is not one of the database's type",
        413: "the body is too large (or a DAG fetch passed its bounds)",
        500: "a stored block is damaged (the message names it)",
    }
    return {str(s): _json(_ref("Error"), what[s]) for s in sorted({401, *statuses})}


def _param(
    name: str, where: str, schema: dict[str, Any], description: str, **more: Any
) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, "description": description, **more}


_DB: Final = _param(
    "db",
    "path",
    {"type": "string", "minLength": 1},
    "the database: its CID, its address /gridnode/<cid> (URL-encoded) or its unique name",
    required=True,
)
_LIMIT: Final = _param("limit", "query", {"type": "integer", "minimum": 0}, "at most this many")


def _get(
    summary: str,
    ok: dict[str, Any],
    *errors: int,
    params: list[Any] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*errors)}}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
        del op["responses"]["401"]
    return op


def _post(
    summary: str,
    body: dict[str, Any],
    ok: dict[str, Any],
    *errors: int,
    status: str = "200",
    media: tuple[str, ...] = ("application/json",),
) -> dict[str, Any]:
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": {m: {"schema": body} for m in media}},
        "responses": {status: ok, **_errors(400, 413, *errors)},
    }


#: The schema of a read's query parameter, by the parameter's kind (gridnode.ops.Param).
_KINDS: Final[dict[str, dict[str, Any]]] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "bool": {"type": "boolean"},
    "json": {"type": "string", "description": "a JSON value"},
}

#: The answers of the reads whose shape this document knows (by read name); another read's
#: answer is described as a JSON object.
_READ_ANSWERS: Final[dict[str, dict[str, Any]]] = {
    "get": _obj({"key": _ANY, "value": _ANY}),
    "query": _obj({"index_by": {"type": "string"}, "documents": {"type": "array", "items": _ANY}}),
    "log": _obj(
        {
            "address": {"type": "string"},
            "entries": {
                "type": "array",
                "items": _obj(
                    {
                        "clock": {"type": "integer"},
                        "cid": {"type": "string"},
                        "author": {"type": "string"},
                        "next": _STRINGS,
                        "payload": _ANY,
                    }
                ),
            },
        }
    ),
    "iter": _obj(
        {"address": {"type": "string"}, "items": {"type": "array", "items": {"type": "object"}}}
    ),
    "value": _obj({"address": {"type": "string"}, "value": {"type": "integer"}}),
}


def _read_paths() -> dict[str, Any]:
    """``GET /db/{db}/{name}`` of every registered read (:data:`gridnode.ops.READS`)."""
    paths = {}
    for read in ops.READS.values():
        summary = read.summary.replace("``", "`")
        answer = _READ_ANSWERS.get(read.name, {"type": "object"})
        params = [_DB] + [
            _param(p.name, "query", _KINDS[p.kind], p.help or p.name) for p in read.params
        ]
        # A read some store types lack answers 409 on the others (WrongStoreType).
        errors = (400, 404, 409) if read.types else (400, 404)
        operation = _get(summary, _json(answer, "the answer"), *errors, params=params)
        if read.types:
            operation["description"] = f"On {' and '.join(read.types)} databases only."
        paths[f"/db/{{db}}/{read.name}"] = {"get": operation}
    return paths


def _gateway(summary: str, path: bool = False) -> dict[str, Any]:
    """An operation of the gateway (docs/http.md): raw blocks, CARs, UnixFS files and
    directories, JSON errors."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    error = {"application/json": {"schema": _ref("Error")}}
    below = (
        [_param("path", "path", {"type": "string", "minLength": 1}, "names below", required=True)]
        if path
        else []
    )
    return {
        "summary": summary,
        "security": [],
        "parameters": [
            _param("cid", "path", {"type": "string", "minLength": 1}, "the CID", required=True),
            *below,
            _param("format", "query", {"enum": ["raw", "car"]}, "instead of the Accept header"),
            _param(
                "dag-scope",
                "query",
                {"enum": ["block", "entity", "all"]},
                "CAR only: the block, or it and what it links to (default all)",
            ),
        ],
        "responses": {
            "200": {
                "description": "the block or the CAR",
                "content": {
                    "application/vnd.ipld.raw": binary,
                    "application/vnd.ipld.car": binary,
                    "*/*": binary,
                },
            },
            "206": {
                "description": "the bytes a Range header asked for",
                "content": {"*/*": binary},
            },
            "301": {"description": "a directory, at its path with a trailing /"},
            "304": {"description": "If-None-Match names the Etag"},
            "400": {"description": "not a CID, or a bad parameter", "content": error},
            "404": {"description": "no database this node replicates holds it", "content": error},
            "406": {"description": "neither raw nor CAR asked for", "content": error},
            "413": {"description": "the CAR would be too large", "content": error},
            "412": {"description": "only-if-cached, and the CID is not held", "content": error},
            "416": {"description": "the Range names no byte of the file", "content": error},
            "500": {"description": "a stored block is damaged", "content": error},
        },
    }


def _files_paths() -> dict[str, Any]:
    """The file store's routes (gridnode/api/files.py)."""
    binary = {"type": "string", "format": "binary"}
    pin = _obj(
        {
            "name": {"type": "string"},
            "cid": {"type": "string"},
            "recursive": {"type": "boolean"},
            "created": {"type": "number"},
        }
    )
    lease = _param("lease", "path", {"type": "integer", "minimum": 0}, "the lease", required=True)
    cid = _param("cid", "path", {"type": "string", "minLength": 1}, "the CID", required=True)
    progress = _obj(
        {
            "root": {"type": "string"},
            "blocks": {"type": "integer"},
            "bytes": {"type": "integer"},
            "fetched_blocks": {"type": "integer"},
            "fetched_bytes": {"type": "integer"},
            "done": {"type": "boolean"},
        },
        {"expected_bytes": {"type": ["integer", "null"]}, "pending": {"type": "integer"}},
    )

    def bodiless(summary: str, ok: dict[str, Any], *errors: int, **more: Any) -> dict[str, Any]:
        return {"summary": summary, "responses": {"200": ok, **_errors(400, *errors)}, **more}

    return {
        "/files/blocks": {
            "post": {
                **_post(
                    "keep a CAR of file blocks, each verified (gridnode add while a node runs)",
                    binary,
                    _json(
                        _obj({"blocks": {"type": "integer"}, "new": {"type": "integer"}}), "kept"
                    ),
                    media=("application/vnd.ipld.car", "application/octet-stream"),
                ),
                "parameters": [
                    _param("lease", "query", {"type": "integer", "minimum": 0}, "an add's lease")
                ],
            }
        },
        "/files/blocks/{cid}": {
            "get": _get(
                "one block of the file store, re-hashed",
                {
                    "description": "the block",
                    "content": {"application/vnd.ipld.raw": {"schema": binary}},
                },
                400,
                404,
                500,
                params=[
                    cid,
                    _param(
                        "peers",
                        "query",
                        {"type": "boolean"},
                        "ask the connected peers for a block the store lacks",
                    ),
                ],
            )
        },
        "/files/fetch": {
            "post": _post(
                "fetch a whole DAG from the connected peers into the file store (gridnode get, "
                "cat of a file this node lacks)",
                {
                    "type": "object",
                    "required": ["cid"],
                    "additionalProperties": False,
                    "properties": {"cid": {"type": "string"}, "pin": {"type": "string"}},
                },
                _json(progress, "the fetch, done"),
                404,
                413,
            )
        },
        "/files/fetch/{cid}": {
            "get": _get(
                "how far a fetch is", _json(progress, "its progress"), 400, 404, params=[cid]
            )
        },
        "/files/leases": {
            "post": bodiless(
                "a lease for an add", _json(_obj({"lease": {"type": "integer"}}), "it")
            )
        },
        "/files/leases/{lease}/end": {
            "post": bodiless(
                "end an add's lease",
                _json(_obj({"lease": {"type": "integer"}, "ended": {"type": "boolean"}}), "ended"),
                parameters=[lease],
            )
        },
        "/files/pins": {
            "get": _get(
                "the local pins (gridnode pin ls)",
                _json(_obj({"pins": {"type": "array", "items": pin}}), "the pins"),
            ),
            "post": _post(
                "pin a CID, by name (gridnode pin add)",
                _obj(
                    {"cid": {"type": "string"}},
                    {"name": {"type": "string"}, "recursive": {"type": "boolean"}},
                ),
                _json(pin, "the pin"),
                404,
            ),
        },
        "/files/unpin": {
            "post": _post(
                "remove a pin by name or CID (gridnode pin rm)",
                _obj({"pin": {"type": "string"}}),
                _json(_obj({"pin": {"type": "string"}, "removed": {"type": "integer"}}), "done"),
                404,
            )
        },
        "/files/gc": {
            "post": bodiless(
                "remove the file blocks no pin keeps (gridnode gc)",
                _json(
                    _obj(
                        {
                            k: {"type": "integer"}
                            for k in (
                                "removed_blocks",
                                "removed_bytes",
                                "kept_blocks",
                                "kept_bytes",
                                "orphan_files",
                            )
                        },
                        {"interrupted": {"type": "boolean"}},
                    ),
                    "what gc did",
                ),
            )
        },
        "/files/usage": {
            "get": _get(
                "the file store's blocks, bytes and pins",
                _json(_obj({k: {"type": "integer"} for k in ("blocks", "bytes", "pins")}), "it"),
            )
        },
    }


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI document of the local API of gridnode ``version``."""
    database = _obj(
        {
            "address": {"type": "string"},
            "name": {"type": "string"},
            "type": {"type": "string"},
            "admins": _STRINGS,
            "writers": _STRINGS,
            "options": {"type": "object"},
        },
        {
            "readers": _STRINGS,
            "encrypted": {"type": "boolean"},
            "key_readers": _STRINGS,
            "blind": {"type": "boolean"},
        },
    )
    info = {
        **database,
        "required": [*database["required"], "entries", "heads", "may_write", "private"],
        "properties": {
            **database["properties"],
            "entries": {"type": "integer"},
            "heads": _STRINGS,
            "may_write": {"type": "boolean"},
            "private": {"type": "boolean"},
            "digest": {"type": "string"},
        },
    }
    address_body = {
        "type": "object",
        "required": ["address"],
        "properties": {"address": {"type": "string"}},
        "additionalProperties": False,
    }
    report = _obj(
        {
            "address": {"type": "string"},
            "applied": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "pending": {"type": "integer"},
            "rejected": {
                "type": "array",
                "items": _obj({"cid": {"type": "string"}, "reason": {"type": "string"}}),
            },
        }
    )
    restore_body = {
        "type": "object",
        "required": ["roots"],
        "additionalProperties": False,
        "properties": {
            "roots": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": 1024,
                "description": "CIDs: the manifest's, then the heads",
            },
            "peers": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": 64,
                "description": "multiaddrs ending in /p2p/<peer id>, dialled first",
            },
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 3600,
                "description": "seconds to fetch in (default 120)",
            },
        },
    }
    with_digest = _param(
        "digest", "query", {"type": "boolean"}, "with the state digest (default true)"
    )
    restored = {
        **info,
        "required": sorted({*info["required"], *report["required"], "missing"}),
        "properties": {
            **info["properties"],
            **report["properties"],
            "missing": {"type": "integer"},
        },
    }
    paths: dict[str, Any] = {
        "/": {
            "get": _get(
                "the node's peer id and identity",
                _json(
                    _obj({"peer_id": {"type": "string"}, "identity": {"type": "string"}}),
                    "who answers",
                ),
            )
        },
        "/status": {"get": _get("as `gridnode status --json`", _json(_ref("Status"), "the node"))},
        "/peers": {
            "get": _get(
                "the connected peers",
                _json(
                    _obj(
                        {
                            "running": {"type": "boolean"},
                            "identity": {"type": "string"},
                            "peer_id": {"type": "string"},
                            "peers": {
                                "type": "array",
                                "items": _obj(
                                    {"peer_id": {"type": "string"}, "strikes": {"type": "integer"}}
                                ),
                            },
                        }
                    ),
                    "the peers",
                ),
            )
        },
        "/events": {
            "get": _get(
                "recent rejections and errors, newest first",
                _json(_obj({"events": {"type": "array", "items": _ref("Event")}}), "the events"),
                400,
                params=[_LIMIT],
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text exposition format (docs/http.md)",
                "responses": {
                    "200": {
                        "description": "the metrics",
                        "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                    },
                    **_errors(),
                },
            }
        },
        "/dashboard": {
            "get": {
                "summary": "the operator's dashboard (its data calls need the token)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "one HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
        "/db": {
            "get": _get(
                "every database",
                _json(
                    _obj(
                        {
                            "databases": {
                                "type": "array",
                                "items": _obj(
                                    {
                                        "address": {"type": "string"},
                                        "name": {"type": "string"},
                                        "type": {"type": "string"},
                                        "entries": {"type": "integer"},
                                    }
                                ),
                            }
                        }
                    ),
                    "the databases",
                ),
            ),
            "post": _post(
                "create a database, this node its admin",
                _ref("CreateRequest"),
                _json(database, "the new database's manifest"),
                status="201",
            ),
        },
        "/follow": {
            "post": _post(
                "keep and replicate a database a connected peer has (from a signed snapshot at "
                'once, unless "snapshot": false)',
                {
                    **address_body,
                    "properties": {
                        "address": {"type": "string"},
                        "snapshot": {"type": "boolean"},
                    },
                },
                _json(info, "the database"),
                404,
            )
        },
        "/unfollow": {
            "post": _post(
                "stop replicating a database (its data stays)",
                address_body,
                _json(
                    _obj({"address": {"type": "string"}, "replicating": {"type": "boolean"}}),
                    "no longer replicated",
                ),
                404,
            )
        },
        "/orbitdb": {
            "get": _get(
                "the OrbitDB databases followed read-only, and the follower's counters",
                _json(
                    _obj({"databases": {"type": "array", "items": _ANY}, "stats": _ANY}),
                    "summaries and counters",
                ),
            )
        },
        "/orbitdb/follow": {
            "post": _post(
                "follow an OrbitDB 4 database read-only: heads protocol, gossip, bitswap, every "
                "entry verified (as `gridnode orbitdb follow`)",
                _obj(
                    {"address": {"type": "string"}},
                    {
                        "peers": {"type": "array", "items": {"type": "string"}},
                        "timeout": {"type": "number"},
                    },
                ),
                _json(_ANY, "the database's summary"),
            )
        },
        "/orbitdb/unfollow": {
            "post": _post(
                "stop following an OrbitDB database and drop its blocks",
                _obj({"address": {"type": "string"}}),
                _json(_ANY, "its last summary"),
                404,
            )
        },
        "/orbitdb/{cid}/all": {
            "get": _get(
                "what OrbitDB's all() answers for a followed database, in its order",
                _json(
                    _obj(
                        {
                            "address": {"type": "string"},
                            "type": {"type": "string"},
                            "all": {"type": "array", "items": _ANY},
                        }
                    ),
                    "all()",
                ),
                404,
                params=[
                    _param(
                        "cid",
                        "path",
                        {"type": "string"},
                        "the database's manifest CID (zdpu...)",
                        required=True,
                    )
                ],
            )
        },
        "/import": {
            "post": _post(
                "import a CAR (as `gridnode import`)",
                {"type": "string", "format": "binary"},
                _json(report, "what the import did"),
                media=("application/vnd.ipld.car", "application/octet-stream"),
            )
        },
        "/db/restore": {
            "post": _post(
                "fetch a database from IPFS peers over bitswap, then keep and replicate it "
                "(as `gridnode db restore`)",
                restore_body,
                _json(restored, "the database, and what the join of the blocks fetched did"),
                404,
                409,
            ),
            "get": _get(
                "the database named `restore`, as GET /db/{db}",
                _json(info, "the database"),
                400,
                404,
                params=[with_digest],
            ),
        },
        "/db/{db}": {
            "get": _get(
                "a database: manifest, entries, heads, digest",
                _json(info, "the database"),
                400,
                404,
                params=[_DB, with_digest],
            )
        },
        "/db/{db}/ops": {
            "post": {
                **_post(
                    "write ops in one transaction",
                    {"type": "array", "items": _ANY},
                    _json(
                        _obj(
                            {
                                "address": {"type": "string"},
                                "written": {"type": "integer"},
                                "entries": _STRINGS,
                                "heads": _STRINGS,
                            },
                            {"value": {"type": "integer"}},
                        ),
                        "what was written",
                    ),
                    404,
                    409,
                ),
                "parameters": [_DB],
            }
        },
        **_read_paths(),
        "/db/{db}/car": {
            "get": _get(
                "the database as a CAR v1",
                {
                    "description": "the CAR",
                    "content": {
                        "application/vnd.ipld.car": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                400,
                404,
                500,
                params=[_DB],
            )
        },
        "/db/{db}/snapshot": {
            "get": _get(
                "the newest signed snapshot this node published of the database, and the one "
                "it serves reads from (as `gridnode db snapshot show`)",
                _json(
                    _obj(
                        {
                            "address": {"type": "string"},
                            "published": {"type": ["object", "null"]},
                            "served": {"type": ["object", "null"]},
                        }
                    ),
                    "published and served snapshots",
                ),
                400,
                404,
                params=[_DB],
            ),
            "post": {
                **_post(
                    "build, keep and offer a signed snapshot of the database now (as "
                    "`gridnode db snapshot publish`)",
                    {"type": "object", "additionalProperties": False},
                    _json(_obj({"root": {"type": "string"}}), "the snapshot published"),
                    404,
                ),
                "parameters": [_DB],
            },
        },
        "/db/{db}/access": {
            "post": {
                **_post(
                    "grant or revoke the admin or writer role of a did:key, as `gridnode db "
                    "access grant|revoke` (this node must be an admin)",
                    {
                        "type": "object",
                        "required": ["action", "role", "did"],
                        "additionalProperties": False,
                        "properties": {
                            "action": {"enum": ["grant", "revoke"]},
                            "role": {"enum": ["admin", "writer"]},
                            "did": {"type": "string"},
                        },
                    },
                    _json(
                        _obj(
                            {
                                "address": {"type": "string"},
                                "action": {"type": "string"},
                                "role": {"type": "string"},
                                "did": {"type": "string"},
                                "entry": {"type": "string"},
                                "effective": {"type": "boolean"},
                                "admins": _STRINGS,
                                "writers": _STRINGS,
                            }
                        ),
                        "the access operation written",
                    ),
                    404,
                ),
                "parameters": [_DB],
            },
        },
        "/db/{db}/readers": {
            "post": {
                **_post(
                    "add a reader to an encrypted database (its current key wrapped for it) or "
                    "remove one (the key rotated without it), as `gridnode db reader add|remove`",
                    {
                        "type": "object",
                        "required": ["action", "did"],
                        "additionalProperties": False,
                        "properties": {
                            "action": {"enum": ["add", "remove"]},
                            "did": {"type": "string"},
                        },
                    },
                    _json(
                        _obj(
                            {
                                "address": {"type": "string"},
                                "action": {"type": "string"},
                                "did": {"type": "string"},
                                "entry": {"type": "string"},
                                "key_readers": _STRINGS,
                            }
                        ),
                        "the key operation written",
                    ),
                    404,
                ),
                "parameters": [_DB],
            },
        },
        "/db/{db}/replicas": {
            "get": _get(
                "who holds the database, from the signed replica statements this node heard "
                "(as `gridnode replicas`)",
                _json(
                    _obj(
                        {
                            "address": {"type": "string"},
                            "private": {"type": "boolean"},
                            "entries": {"type": "integer"},
                            "holders": {"type": "integer"},
                            "in_sync": {"type": "integer"},
                            "behind": {
                                "type": "object",
                                "additionalProperties": {"type": "integer"},
                            },
                            "newest_entries": {"type": "integer"},
                            "peers": {"type": "array", "items": {"type": "object"}},
                        }
                    ),
                    "holders, how many are in sync, how far behind the others are",
                ),
                400,
                404,
                params=[_DB],
            )
        },
        "/ipfs/{cid}": {
            "get": _gateway("a block or a DAG by CID (trustless gateway, no token)"),
            "head": _gateway("the headers of GET /ipfs/{cid}"),
        },
        "/ipfs/{cid}/{path}": {
            "get": _gateway("a file or directory below a UnixFS CID (no token)", path=True),
            "head": _gateway("the headers of GET /ipfs/{cid}/{path}", path=True),
        },
        **_files_paths(),
    }
    sync = _obj(
        {
            "peer": {"type": "string"},
            "seconds_ago": {"type": "number"},
            "running": {"type": "boolean"},
            "bytes_so_far": {"type": "integer"},
            "applied": {"type": "integer"},
            "rejected": {"type": "integer"},
            "round_trips": {"type": "integer"},
            "complete": {"type": "boolean"},
            "error": {"type": ["string", "null"]},
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gridnode local API",
            "version": version,
            "description": "The JSON API a running gridnode serves on 127.0.0.1 (docs/http.md).",
        },
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token in DATA_DIR/api.token",
                }
            },
            "schemas": {
                "Error": _obj(
                    {"error": {"type": "string"}},
                    {"index": {"type": "integer"}, "reason": {"type": "string"}},
                ),
                "Event": _obj(
                    {
                        "at": {"type": "number"},
                        "kind": {"type": "string"},
                        "text": {"type": "string"},
                        "peer": {"type": ["string", "null"]},
                        "address": {"type": ["string", "null"]},
                    }
                ),
                "CreateRequest": {
                    "type": "object",
                    "required": ["name", "type"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "type": {"enum": ["counter", "documents", "events", "keyvalue", "set"]},
                        "writers": _STRINGS,
                        "public": {"type": "boolean"},
                        "indexes": _STRINGS,
                        "index_by": {"type": ["string", "null"]},
                        "private": {"type": "boolean"},
                        "readers": _STRINGS,
                        "encrypted": {"type": "boolean"},
                        "admins": _STRINGS,
                        "pin_links": {"type": ["integer", "null"], "minimum": 1},
                    },
                },
                "Status": _obj(
                    {
                        "running": {"type": "boolean"},
                        "data_dir": {"type": "string"},
                        "identity": {"type": "string"},
                        "peer_id": {"type": "string"},
                        "addrs": _STRINGS,
                        "peers": _STRINGS,
                        "databases": {
                            "type": "array",
                            "items": _obj(
                                {
                                    "address": {"type": "string"},
                                    "name": {"type": "string"},
                                    "type": {"type": "string"},
                                    "entries": {"type": "integer"},
                                    "head_count": {"type": "integer"},
                                    "replicating": {"type": "boolean"},
                                    "syncs": {"type": "array", "items": sync},
                                },
                                {"catalog": _STRINGS},
                            ),
                        },
                        "served": {"type": "object"},
                    },
                    {
                        "bitswap": {"type": ["object", "null"]},
                        "gateway": {"type": "object"},
                        "dht": {"type": ["object", "null"]},
                        "history": _obj(
                            {
                                "step": {"type": "number"},
                                "span": {"type": "number"},
                                "points": {
                                    "type": "array",
                                    "items": _obj(
                                        {
                                            "seconds_ago": {"type": "number"},
                                            "entries_applied": {"type": "integer"},
                                            "bytes_in": {"type": "integer"},
                                            "bytes_out": {"type": "integer"},
                                            "peers": {"type": "integer"},
                                        }
                                    ),
                                },
                            }
                        ),
                        "peer_info": {
                            "type": "array",
                            "items": _obj(
                                {
                                    "peer_id": {"type": "string"},
                                    "addrs": _STRINGS,
                                    "latency_ms": {"type": ["number", "null"]},
                                }
                            ),
                        },
                        "catalogs": {
                            "type": "array",
                            "items": _obj(
                                {
                                    "address": {"type": "string"},
                                    "name": {"type": "string"},
                                    "databases": _STRINGS,
                                    "peers": _STRINGS,
                                },
                                {"files": _STRINGS},
                            ),
                        },
                        "files": _obj(
                            {
                                "enabled": {"type": "boolean"},
                                "held": {"type": "integer"},
                                "held_bytes": {"type": "integer"},
                                "fetched": {"type": "integer"},
                                "fetched_bytes": {"type": "integer"},
                                "fetching": {
                                    "type": "array",
                                    "items": _obj(
                                        {
                                            "root": {"type": "string"},
                                            "blocks": {"type": "integer"},
                                            "bytes": {"type": "integer"},
                                            "fetched_blocks": {"type": "integer"},
                                            "fetched_bytes": {"type": "integer"},
                                            "expected_bytes": {"type": ["integer", "null"]},
                                            "pending": {"type": "integer"},
                                            "done": {"type": "boolean"},
                                        }
                                    ),
                                },
                                "failed": {
                                    "type": "array",
                                    "items": _obj(
                                        {
                                            "cid": {"type": "string"},
                                            "error": {"type": "string"},
                                            "retry_in": {"type": "number"},
                                        }
                                    ),
                                },
                            }
                        ),
                    },
                ),
            },
        },
    }
