"""``gridnode db put|get|delete|add|remove|inc|value|query|iter``: writes and reads by store type.

Each verb checks the database's type (:func:`gridnode.ops.check_type`, through the endpoint's
database info), turns its arguments into ops or read parameters, and prints what came back. A
write is one call, one transaction, whatever its size: ``-`` reads JSON lines from stdin, all of
them written or none, the line at fault named by its label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from gridnode import jsonvalue
from gridnode.cli.common import (
    CliError,
    database_info,
    emit,
    endpoint_of,
    json_lines,
    json_option,
    table,
)

__all__ = ["DB_VALUE_COMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])


def _write(
    ctx: click.Context, info: dict[str, Any], payloads: list[tuple[str, Any]]
) -> dict[str, Any]:
    """Write the ops in one transaction, after checking them all (the one at fault is named by
    its label); what the write did (see :func:`gridnode.ops.written`)."""
    labels = [label for label, _ in payloads]
    result: dict[str, Any] = endpoint_of(ctx).write(
        info["address"], [payload for _, payload in payloads], labels
    )
    return result


def _report_write(result: dict[str, Any], batch: bool, as_json: bool) -> None:
    """Print what a write did: the entry CID (a batch: the count), or with --json an object."""
    if as_json:
        emit({k: result[k] for k in ("address", "written", "entries", "heads")})
    elif batch:
        click.echo(f"wrote {result['written']} entries")
    else:
        click.echo(result["entries"][0])


def _batch_requested(args: Sequence[str]) -> bool:
    return len(args) == 1 and args[0] == "-"


# -- writes and reads by type ----------------------------------------------------------------------

_VALUE_ARGS = {"ignore_unknown_options": True}  # so that a JSON value like -5 is not an option


@click.command("put", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("args", nargs=-1, required=True, metavar="KEY VALUE_JSON | DOC_JSON | -")
@json_option
@click.pass_context
def db_put(ctx: click.Context, address: str, args: tuple[str, ...], as_json: bool) -> None:
    """Put a key's value (keyvalue) or a document (documents).

    \b
    keyvalue:  gridnode db put ADDRESS KEY VALUE_JSON   (KEY is a plain string)
    documents: gridnode db put ADDRESS DOC_JSON         (a JSON object holding its id)
    both:      gridnode db put ADDRESS -                (JSON lines on stdin, one batch)

    With '-', every line of stdin is one put, all written in one transaction (all or none):
    for keyvalue {"key": KEY, "value": VALUE}, for documents the document itself.
    """
    info = database_info(ctx, address, "put", ("keyvalue", "documents"))
    keyvalue = info["type"] == "keyvalue"
    batch = _batch_requested(args)
    if batch:
        make = _kv_line if keyvalue else _doc_put
        payloads = [(label, make(label, value)) for label, value in json_lines()]
    elif keyvalue:
        if len(args) != 2:
            raise click.UsageError(
                "a keyvalue put takes KEY VALUE_JSON (or '-' for JSON lines)", ctx=ctx
            )
        key, text = args
        value = jsonvalue.parse(text, "VALUE_JSON")
        payloads = [("VALUE_JSON", {"op": "put", "key": key, "value": value})]
    else:
        if len(args) != 1:
            raise click.UsageError(
                "a documents put takes DOC_JSON (or '-' for JSON lines)", ctx=ctx
            )
        payloads = [("DOC_JSON", _doc_put("DOC_JSON", jsonvalue.parse(args[0], "DOC_JSON")))]
    _report_write(_write(ctx, info, payloads), batch, as_json)


def _kv_line(label: str, value: Any) -> dict[str, Any]:
    if type(value) is not dict or set(value) != {"key", "value"} or type(value["key"]) is not str:
        raise CliError(f'{label}: a keyvalue line is {{"key": "<string>", "value": <JSON>}}')
    return {"op": "put", "key": value["key"], "value": value["value"]}


def _doc_put(label: str, value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise CliError(f"{label}: a document is a JSON object")
    return {"op": "put", "doc": value}


def _key_argument(ctx: click.Context, key: str, as_int: bool, documents: bool) -> str | int:
    if not as_int:
        return key
    if not documents:
        raise click.UsageError("--int applies to document ids; keyvalue keys are strings", ctx=ctx)
    try:
        return int(key)
    except ValueError:
        raise CliError(f"--int: {key!r} is not an integer") from None


_INT_OPTION = click.option(
    "--int", "as_int", is_flag=True, help="documents: KEY is an integer id (default: a string)."
)


@click.command("get", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("key")
@_INT_OPTION
@json_option
@click.pass_context
def db_get(ctx: click.Context, address: str, key: str, as_int: bool, as_json: bool) -> None:
    """Print the value of KEY (keyvalue) or the document with id KEY (documents).

    Exits 1 if there is none. With --json: {"key": KEY, "value": VALUE} for keyvalue (a line
    'db put ADDRESS -' takes back), the document itself for documents.
    """
    info = database_info(ctx, address, "get", ("keyvalue", "documents"))
    documents = info["type"] == "documents"
    key_or_id = _key_argument(ctx, key, as_int, documents=documents)
    param = {"key": key_or_id} if type(key_or_id) is str else {"id": key_or_id}
    found = endpoint_of(ctx).read("get", info["address"], **param)
    value = found["value"]
    result = value if documents else found
    if as_json:
        emit(result)
    else:
        click.echo(jsonvalue.dumps(value, indent=2))


@click.command("delete", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("key")
@_INT_OPTION
@json_option
@click.pass_context
def db_delete(ctx: click.Context, address: str, key: str, as_int: bool, as_json: bool) -> None:
    """Delete KEY (keyvalue) or the document with id KEY (documents).

    Writes the delete even if this replica does not hold the key: it also wins over older puts
    of it that arrive later.
    """
    info = database_info(ctx, address, "delete", ("keyvalue", "documents"))
    if info["type"] == "keyvalue":
        _key_argument(ctx, key, as_int, documents=False)
        payload: dict[str, Any] = {"op": "del", "key": key}
    else:
        payload = {"op": "del", "id": _key_argument(ctx, key, as_int, documents=True)}
    _report_write(_write(ctx, info, [("KEY", payload)]), False, as_json)


@click.command("add", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("value", metavar="VALUE_JSON | -")
@json_option
@click.pass_context
def db_add(ctx: click.Context, address: str, value: str, as_json: bool) -> None:
    """Add an event (events) or a member (set); print the entry's CID.

    With '-', every line of stdin is one JSON value, all added in one transaction.
    """
    info = database_info(ctx, address, "add", ("events", "set"))
    batch = value == "-"
    if batch:
        payloads = [(label, {"op": "add", "value": v}) for label, v in json_lines()]
    else:
        payloads = [("VALUE_JSON", {"op": "add", "value": jsonvalue.parse(value, "VALUE_JSON")})]
    _report_write(_write(ctx, info, payloads), batch, as_json)


@click.command("remove", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("value", metavar="VALUE_JSON")
@json_option
@click.pass_context
def db_remove(ctx: click.Context, address: str, value: str, as_json: bool) -> None:
    """Remove a member from a set: cancels every add of it this replica has seen.

    An add made elsewhere and not yet seen here survives (add wins). Exits 1 if VALUE_JSON is not
    a member.
    """
    info = database_info(ctx, address, "remove", ("set",))
    member = jsonvalue.parse(value, "VALUE_JSON")
    # Without tags, the node names every add of the member it holds, in the same transaction.
    payload = {"op": "remove", "value": member}
    _report_write(_write(ctx, info, [("VALUE_JSON", payload)]), False, as_json)


@click.command("inc", context_settings=_VALUE_ARGS)
@click.argument("address")
@click.argument("n", type=int, required=False)
@click.option("--by", type=int, metavar="N", help="The step; may be negative (same as N).")
@json_option
@click.pass_context
def db_inc(ctx: click.Context, address: str, n: int | None, by: int | None, as_json: bool) -> None:
    """Add N (default 1; negative decrements) to a counter and print its new value."""
    if n is not None and by is not None:
        raise click.UsageError("give N or --by, not both", ctx=ctx)
    step = n if n is not None else by if by is not None else 1
    info = database_info(ctx, address, "inc", ("counter",))
    result = _write(ctx, info, [("N", {"op": "inc", "by": step})])
    if as_json:
        emit(result)
    else:
        click.echo(str(result["value"]))


@click.command("value")
@click.argument("address")
@json_option
@click.pass_context
def db_value(ctx: click.Context, address: str, as_json: bool) -> None:
    """Print a counter's value."""
    info = database_info(ctx, address, "value", ("counter",))
    result = endpoint_of(ctx).read("value", info["address"])
    if as_json:
        emit(result)
    else:
        click.echo(str(result["value"]))


def _bound(name: str) -> Callable[[F], F]:
    return click.option(
        f"--{name}",
        metavar="JSON",
        help=f"Only documents whose FIELD is {_BOUND_WORDS[name]} this JSON value.",
    )


_BOUND_WORDS = {
    "eq": "equal to",
    "gt": "greater than",
    "gte": "greater than or equal to",
    "lt": "less than",
    "lte": "less than or equal to",
}


@click.command("query")
@click.argument("address")
@click.argument("field", required=False)
@_bound("eq")
@_bound("gt")
@_bound("gte")
@_bound("lt")
@_bound("lte")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N documents.")
@click.option("--reverse", is_flag=True, help="Descending order.")
@json_option
@click.pass_context
def db_query(
    ctx: click.Context,
    address: str,
    field: str | None,
    eq: str | None,
    gt: str | None,
    gte: str | None,
    lt: str | None,
    lte: str | None,
    limit: int | None,
    reverse: bool,
    as_json: bool,
) -> None:
    """Documents whose indexed FIELD equals --eq or lies within the bounds, ordered by FIELD.

    FIELD must be indexed (db create --index); it defaults to the id field. With no condition,
    every document that has FIELD. Values compare as IPLD values: numbers by value (1 == 1.0),
    then across kinds null < booleans < numbers < strings < bytes < lists < maps < links.
    """
    info = database_info(ctx, address, "query", ("documents",))
    bounds: dict[str, Any] = {}
    for name, text in (("eq", eq), ("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte)):
        if text is not None:
            bounds[name] = jsonvalue.parse(text, f"--{name}")
    found = endpoint_of(ctx).read(
        "query", info["address"], field=field, limit=limit, reverse=reverse, **bounds
    )
    docs = found["documents"]
    if as_json:
        for doc in docs:
            emit(doc)
        return
    index_by = found["index_by"]
    table(
        (index_by, "document"),
        ((jsonvalue.dumps(doc.get(index_by)), jsonvalue.dumps(doc)) for doc in docs),
    )


@click.command("iter")
@click.argument("address")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="At most N items.")
@click.option("--reverse", is_flag=True, help="Newest event (last member) first.")
@json_option
@click.pass_context
def db_iter(
    ctx: click.Context, address: str, limit: int | None, reverse: bool, as_json: bool
) -> None:
    """List events (in the log's total order, with their CIDs) or set members (in a fixed order:
    by their DAG-CBOR encoding)."""
    info = database_info(ctx, address, "iter", ("events", "set"))
    found = endpoint_of(ctx).read("iter", info["address"], limit=limit, reverse=reverse)["items"]
    if as_json:
        for item in found:
            emit(item)
    elif info["type"] == "events":
        table(("cid", "value"), ((i["cid"], jsonvalue.dumps(i["value"])) for i in found))
    else:
        table(("value",), ((jsonvalue.dumps(i["value"]),) for i in found))


#: The verbs ``gridnode db`` takes from this module.
DB_VALUE_COMMANDS: tuple[click.Command, ...] = (
    db_put,
    db_get,
    db_delete,
    db_add,
    db_remove,
    db_inc,
    db_value,
    db_query,
    db_iter,
)
