"""The OpenAPI description of the file store's routes and the gateway's UnixFS answers
(gridnode/api/files.py, gridnode/api/unixfs.py), part of :mod:`gridnode.api.openapi`'s document.
"""

from __future__ import annotations

from typing import Any

from gridnode.api.openapi_parts import (
    error_answers,
    get,
    json,
    obj,
    param,
    post,
    ref,
)

__all__ = ["files_paths", "gateway"]


def gateway(summary: str, path: bool = False) -> dict[str, Any]:
    """An operation of the gateway (docs/http.md): raw blocks, CARs, UnixFS files and
    directories, JSON errors."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    error = {"application/json": {"schema": ref("Error")}}
    below = (
        [param("path", "path", {"type": "string", "minLength": 1}, "names below", required=True)]
        if path
        else []
    )
    return {
        "summary": summary,
        "security": [],
        "parameters": [
            param("cid", "path", {"type": "string", "minLength": 1}, "the CID", required=True),
            *below,
            param("format", "query", {"enum": ["raw", "car"]}, "instead of the Accept header"),
            param(
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


def files_paths() -> dict[str, Any]:
    """The file store's routes (gridnode/api/files.py)."""
    binary = {"type": "string", "format": "binary"}
    pin = obj(
        {
            "name": {"type": "string"},
            "cid": {"type": "string"},
            "recursive": {"type": "boolean"},
            "created": {"type": "number"},
        }
    )
    lease = param("lease", "path", {"type": "integer", "minimum": 0}, "the lease", required=True)
    cid = param("cid", "path", {"type": "string", "minLength": 1}, "the CID", required=True)
    progress = obj(
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
        return {"summary": summary, "responses": {"200": ok, **error_answers(400, *errors)}, **more}

    return {
        "/files/blocks": {
            "post": {
                **post(
                    "keep a CAR of file blocks, each verified (gridnode add while a node runs)",
                    binary,
                    json(obj({"blocks": {"type": "integer"}, "new": {"type": "integer"}}), "kept"),
                    media=("application/vnd.ipld.car", "application/octet-stream"),
                ),
                "parameters": [
                    param("lease", "query", {"type": "integer", "minimum": 0}, "an add's lease")
                ],
            }
        },
        "/files/blocks/{cid}": {
            "get": get(
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
                    param(
                        "peers",
                        "query",
                        {"type": "boolean"},
                        "ask the connected peers for a block the store lacks",
                    ),
                ],
            )
        },
        "/files/fetch": {
            "post": post(
                "fetch a whole DAG from the connected peers into the file store (gridnode get, "
                "cat of a file this node lacks)",
                {
                    "type": "object",
                    "required": ["cid"],
                    "additionalProperties": False,
                    "properties": {"cid": {"type": "string"}, "pin": {"type": "string"}},
                },
                json(progress, "the fetch, done"),
                404,
                413,
            )
        },
        "/files/fetch/{cid}": {
            "get": get("how far a fetch is", json(progress, "its progress"), 400, 404, params=[cid])
        },
        "/files/leases": {
            "post": bodiless("a lease for an add", json(obj({"lease": {"type": "integer"}}), "it"))
        },
        "/files/leases/{lease}/end": {
            "post": bodiless(
                "end an add's lease",
                json(obj({"lease": {"type": "integer"}, "ended": {"type": "boolean"}}), "ended"),
                parameters=[lease],
            )
        },
        "/files/pins": {
            "get": get(
                "the local pins (gridnode pin ls)",
                json(obj({"pins": {"type": "array", "items": pin}}), "the pins"),
            ),
            "post": post(
                "pin a CID, by name (gridnode pin add)",
                obj(
                    {"cid": {"type": "string"}},
                    {"name": {"type": "string"}, "recursive": {"type": "boolean"}},
                ),
                json(pin, "the pin"),
                404,
            ),
        },
        "/files/unpin": {
            "post": post(
                "remove a pin by name or CID (gridnode pin rm)",
                obj({"pin": {"type": "string"}}),
                json(obj({"pin": {"type": "string"}, "removed": {"type": "integer"}}), "done"),
                404,
            )
        },
        "/files/gc": {
            "post": bodiless(
                "remove the file blocks no pin keeps (gridnode gc)",
                json(
                    obj(
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
            "get": get(
                "the file store's blocks, bytes and pins",
                json(obj({k: {"type": "integer"} for k in ("blocks", "bytes", "pins")}), "it"),
            )
        },
    }
