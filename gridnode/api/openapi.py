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
from gridnode.api.openapi_files import files_paths, gateway
from gridnode.api.openapi_parts import (
    ANY,
    DB,
    LIMIT,
    STRINGS,
    error_answers,
    get,
    json,
    obj,
    param,
    post,
    ref,
)

__all__ = ["openapi"]

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
    "get": obj({"key": ANY, "value": ANY}),
    "query": obj({"index_by": {"type": "string"}, "documents": {"type": "array", "items": ANY}}),
    "log": obj(
        {
            "address": {"type": "string"},
            "entries": {
                "type": "array",
                "items": obj(
                    {
                        "clock": {"type": "integer"},
                        "cid": {"type": "string"},
                        "author": {"type": "string"},
                        "next": STRINGS,
                        "payload": ANY,
                    }
                ),
            },
        }
    ),
    "iter": obj(
        {"address": {"type": "string"}, "items": {"type": "array", "items": {"type": "object"}}}
    ),
    "value": obj({"address": {"type": "string"}, "value": {"type": "integer"}}),
}


def _read_paths() -> dict[str, Any]:
    """``GET /db/{db}/{name}`` of every registered read (:data:`gridnode.ops.READS`)."""
    paths = {}
    for read in ops.READS.values():
        summary = read.summary.replace("``", "`")
        answer = _READ_ANSWERS.get(read.name, {"type": "object"})
        params = [DB] + [
            param(p.name, "query", _KINDS[p.kind], p.help or p.name) for p in read.params
        ]
        # A read some store types lack answers 409 on the others (WrongStoreType).
        errors = (400, 404, 409) if read.types else (400, 404)
        operation = get(summary, json(answer, "the answer"), *errors, params=params)
        if read.types:
            operation["description"] = f"On {' and '.join(read.types)} databases only."
        paths[f"/db/{{db}}/{read.name}"] = {"get": operation}
    return paths


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI document of the local API of gridnode ``version``."""
    database = obj(
        {
            "address": {"type": "string"},
            "name": {"type": "string"},
            "type": {"type": "string"},
            "admins": STRINGS,
            "writers": STRINGS,
            "options": {"type": "object"},
        },
        {
            "readers": STRINGS,
            "encrypted": {"type": "boolean"},
            "key_readers": STRINGS,
            "blind": {"type": "boolean"},
        },
    )
    info = {
        **database,
        "required": [*database["required"], "entries", "heads", "may_write", "private"],
        "properties": {
            **database["properties"],
            "entries": {"type": "integer"},
            "heads": STRINGS,
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
    report = obj(
        {
            "address": {"type": "string"},
            "applied": {"type": "integer"},
            "duplicates": {"type": "integer"},
            "pending": {"type": "integer"},
            "rejected": {
                "type": "array",
                "items": obj({"cid": {"type": "string"}, "reason": {"type": "string"}}),
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
    with_digest = param(
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
            "get": get(
                "the node's peer id and identity",
                json(
                    obj({"peer_id": {"type": "string"}, "identity": {"type": "string"}}),
                    "who answers",
                ),
            )
        },
        "/status": {"get": get("as `gridnode status --json`", json(ref("Status"), "the node"))},
        "/peers": {
            "get": get(
                "the connected peers",
                json(
                    obj(
                        {
                            "running": {"type": "boolean"},
                            "identity": {"type": "string"},
                            "peer_id": {"type": "string"},
                            "peers": {
                                "type": "array",
                                "items": obj(
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
            "get": get(
                "recent rejections and errors, newest first",
                json(obj({"events": {"type": "array", "items": ref("Event")}}), "the events"),
                400,
                params=[LIMIT],
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
                    **error_answers(),
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
                "responses": {"200": json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
        "/db": {
            "get": get(
                "every database",
                json(
                    obj(
                        {
                            "databases": {
                                "type": "array",
                                "items": obj(
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
            "post": post(
                "create a database, this node its admin",
                ref("CreateRequest"),
                json(database, "the new database's manifest"),
                status="201",
            ),
        },
        "/follow": {
            "post": post(
                "keep and replicate a database a connected peer has (from a signed snapshot at "
                'once, unless "snapshot": false)',
                {
                    **address_body,
                    "properties": {
                        "address": {"type": "string"},
                        "snapshot": {"type": "boolean"},
                    },
                },
                json(info, "the database"),
                404,
            )
        },
        "/unfollow": {
            "post": post(
                "stop replicating a database (its data stays)",
                address_body,
                json(
                    obj({"address": {"type": "string"}, "replicating": {"type": "boolean"}}),
                    "no longer replicated",
                ),
                404,
            )
        },
        "/orbitdb": {
            "get": get(
                "the OrbitDB databases followed read-only, and the follower's counters",
                json(
                    obj({"databases": {"type": "array", "items": ANY}, "stats": ANY}),
                    "summaries and counters",
                ),
            )
        },
        "/orbitdb/follow": {
            "post": post(
                "follow an OrbitDB 4 database read-only: heads protocol, gossip, bitswap, every "
                "entry verified (as `gridnode orbitdb follow`)",
                obj(
                    {"address": {"type": "string"}},
                    {
                        "peers": {"type": "array", "items": {"type": "string"}},
                        "timeout": {"type": "number"},
                    },
                ),
                json(ANY, "the database's summary"),
            )
        },
        "/orbitdb/unfollow": {
            "post": post(
                "stop following an OrbitDB database and drop its blocks",
                obj({"address": {"type": "string"}}),
                json(ANY, "its last summary"),
                404,
            )
        },
        "/orbitdb/{cid}/all": {
            "get": get(
                "what OrbitDB's all() answers for a followed database, in its order",
                json(
                    obj(
                        {
                            "address": {"type": "string"},
                            "type": {"type": "string"},
                            "all": {"type": "array", "items": ANY},
                        }
                    ),
                    "all()",
                ),
                404,
                params=[
                    param(
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
            "post": post(
                "import a CAR (as `gridnode import`)",
                {"type": "string", "format": "binary"},
                json(report, "what the import did"),
                media=("application/vnd.ipld.car", "application/octet-stream"),
            )
        },
        "/db/restore": {
            "post": post(
                "fetch a database from IPFS peers over bitswap, then keep and replicate it "
                "(as `gridnode db restore`)",
                restore_body,
                json(restored, "the database, and what the join of the blocks fetched did"),
                404,
                409,
            ),
            "get": get(
                "the database named `restore`, as GET /db/{db}",
                json(info, "the database"),
                400,
                404,
                params=[with_digest],
            ),
        },
        "/db/{db}": {
            "get": get(
                "a database: manifest, entries, heads, digest",
                json(info, "the database"),
                400,
                404,
                params=[DB, with_digest],
            )
        },
        "/db/{db}/ops": {
            "post": {
                **post(
                    "write ops in one transaction",
                    {"type": "array", "items": ANY},
                    json(
                        obj(
                            {
                                "address": {"type": "string"},
                                "written": {"type": "integer"},
                                "entries": STRINGS,
                                "heads": STRINGS,
                            },
                            {"value": {"type": "integer"}},
                        ),
                        "what was written",
                    ),
                    404,
                    409,
                ),
                "parameters": [DB],
            }
        },
        **_read_paths(),
        "/db/{db}/car": {
            "get": get(
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
                params=[DB],
            )
        },
        "/db/{db}/snapshot": {
            "get": get(
                "the newest signed snapshot this node published of the database, and the one "
                "it serves reads from (as `gridnode db snapshot show`)",
                json(
                    obj(
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
                params=[DB],
            ),
            "post": {
                **post(
                    "build, keep and offer a signed snapshot of the database now (as "
                    "`gridnode db snapshot publish`)",
                    {"type": "object", "additionalProperties": False},
                    json(obj({"root": {"type": "string"}}), "the snapshot published"),
                    404,
                ),
                "parameters": [DB],
            },
        },
        "/db/{db}/access": {
            "post": {
                **post(
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
                    json(
                        obj(
                            {
                                "address": {"type": "string"},
                                "action": {"type": "string"},
                                "role": {"type": "string"},
                                "did": {"type": "string"},
                                "entry": {"type": "string"},
                                "effective": {"type": "boolean"},
                                "admins": STRINGS,
                                "writers": STRINGS,
                            }
                        ),
                        "the access operation written",
                    ),
                    404,
                ),
                "parameters": [DB],
            },
        },
        "/db/{db}/readers": {
            "post": {
                **post(
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
                    json(
                        obj(
                            {
                                "address": {"type": "string"},
                                "action": {"type": "string"},
                                "did": {"type": "string"},
                                "entry": {"type": "string"},
                                "key_readers": STRINGS,
                            }
                        ),
                        "the key operation written",
                    ),
                    404,
                ),
                "parameters": [DB],
            },
        },
        "/db/{db}/replicas": {
            "get": get(
                "who holds the database, from the signed replica statements this node heard "
                "(as `gridnode replicas`)",
                json(
                    obj(
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
                params=[DB],
            )
        },
        "/ipfs/{cid}": {
            "get": gateway("a block or a DAG by CID (trustless gateway, no token)"),
            "head": gateway("the headers of GET /ipfs/{cid}"),
        },
        "/ipfs/{cid}/{path}": {
            "get": gateway("a file or directory below a UnixFS CID (no token)", path=True),
            "head": gateway("the headers of GET /ipfs/{cid}/{path}", path=True),
        },
        **files_paths(),
    }
    sync = obj(
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
                "Error": obj(
                    {"error": {"type": "string"}},
                    {"index": {"type": "integer"}, "reason": {"type": "string"}},
                ),
                "Event": obj(
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
                        "writers": STRINGS,
                        "public": {"type": "boolean"},
                        "indexes": STRINGS,
                        "index_by": {"type": ["string", "null"]},
                        "private": {"type": "boolean"},
                        "readers": STRINGS,
                        "encrypted": {"type": "boolean"},
                        "admins": STRINGS,
                        "pin_links": {"type": ["integer", "null"], "minimum": 1},
                    },
                },
                "Status": obj(
                    {
                        "running": {"type": "boolean"},
                        "data_dir": {"type": "string"},
                        "identity": {"type": "string"},
                        "peer_id": {"type": "string"},
                        "addrs": STRINGS,
                        "peers": STRINGS,
                        "databases": {
                            "type": "array",
                            "items": obj(
                                {
                                    "address": {"type": "string"},
                                    "name": {"type": "string"},
                                    "type": {"type": "string"},
                                    "entries": {"type": "integer"},
                                    "head_count": {"type": "integer"},
                                    "replicating": {"type": "boolean"},
                                    "syncs": {"type": "array", "items": sync},
                                },
                                {"catalog": STRINGS},
                            ),
                        },
                        "served": {"type": "object"},
                    },
                    {
                        "bitswap": {"type": ["object", "null"]},
                        "gateway": {"type": "object"},
                        "dht": {"type": ["object", "null"]},
                        "history": obj(
                            {
                                "step": {"type": "number"},
                                "span": {"type": "number"},
                                "points": {
                                    "type": "array",
                                    "items": obj(
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
                            "items": obj(
                                {
                                    "peer_id": {"type": "string"},
                                    "addrs": STRINGS,
                                    "latency_ms": {"type": ["number", "null"]},
                                }
                            ),
                        },
                        "catalogs": {
                            "type": "array",
                            "items": obj(
                                {
                                    "address": {"type": "string"},
                                    "name": {"type": "string"},
                                    "databases": STRINGS,
                                    "peers": STRINGS,
                                },
                                {"files": STRINGS},
                            ),
                        },
                        "files": obj(
                            {
                                "enabled": {"type": "boolean"},
                                "held": {"type": "integer"},
                                "held_bytes": {"type": "integer"},
                                "fetched": {"type": "integer"},
                                "fetched_bytes": {"type": "integer"},
                                "fetching": {
                                    "type": "array",
                                    "items": obj(
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
                                    "items": obj(
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
