"""The small builders of the local API's OpenAPI document (:mod:`gridnode.api.openapi`): schemas
(``obj``, ``ref``, ``STRINGS``), answers (``json``, ``error_answers``), parameters (``param``, ``DB``,
``LIMIT``) and operations (``get``, ``post``), shared by the modules that describe the routes.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "ANY",
    "DB",
    "LIMIT",
    "STRINGS",
    "error_answers",
    "get",
    "json",
    "obj",
    "param",
    "post",
    "ref",
]

ANY: Final[dict[str, Any]] = {}
STRINGS: Final = {"type": "array", "items": {"type": "string"}}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


def json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_answers(*statuses: int) -> dict[str, Any]:
    what = {
        400: "malformed request: bad JSON, parameter, op or query",
        401: "no token, or not the node's",
        404: "no such database, key, document or member (or no peer sent a DAG's blocks)",
        409: "this node may not write it, or the verb is not one of the database's type",
        413: "the body is too large (or a DAG fetch passed its bounds)",
        500: "a stored block is damaged (the message names it)",
    }
    return {str(s): json(ref("Error"), what[s]) for s in sorted({401, *statuses})}


def param(
    name: str, where: str, schema: dict[str, Any], description: str, **more: Any
) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, "description": description, **more}


DB: Final = param(
    "db",
    "path",
    {"type": "string", "minLength": 1},
    "the database: its CID, its address /gridnode/<cid> (URL-encoded) or its unique name",
    required=True,
)
LIMIT: Final = param("limit", "query", {"type": "integer", "minimum": 0}, "at most this many")


def get(
    summary: str,
    ok: dict[str, Any],
    *errors: int,
    params: list[Any] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **error_answers(*errors)}}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
        del op["responses"]["401"]
    return op


def post(
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
        "responses": {status: ok, **error_answers(400, 413, *errors)},
    }
