"""``gridnode db ...``: create, follow, restore, write, read and inspect databases.

Every verb names a database by ADDRESS (``/gridnode/<cid>``, the bare CID, or a unique name) and
works through the endpoint (:func:`gridnode.cli.common.endpoint_of`): it checks the database's
type (:func:`gridnode.ops.check_type`), turns its arguments into ops or read parameters, and
prints what came back. A write is one call, one transaction, whatever its size: ``-`` reads JSON
lines from stdin, all of them written or none, the line at fault named by its label.

It refuses to check an op itself or to read a store (the endpoint does both, the same offline
and online: :mod:`gridnode.ops`), and to reach a node's state other than through the endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from crdt.stores import STORE_TYPES
from gridnode import jsonvalue
from gridnode.cli.common import (
    CliError,
    database_info,
    emit,
    endpoint_of,
    json_lines,
    json_option,
    table,
    warn,
)

__all__ = ["db"]

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def db() -> None:
    """Databases in this data directory: create, write, read, inspect.

    ADDRESS is a database address (/gridnode/<cid>), its bare CID, or its name if no other
    database here has that name.
    """


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


@db.command("create")
@click.argument("name")
@click.option(
    "--type",
    "-t",
    "store_type",
    required=True,
    type=click.Choice(sorted(STORE_TYPES)),
    help="The store type.",
)
@click.option(
    "--writer",
    "writers",
    multiple=True,
    metavar="DID",
    help="Another did:key that may write (repeatable). This node is always admin and writer.",
)
@click.option(
    "--admin",
    "admins",
    multiple=True,
    metavar="DID",
    help="Another did:key that is admin too (repeatable): a key kept offline that can grant, "
    "revoke and rotate if this node's key is lost (docs/keys.md).",
)
@click.option("--public", is_flag=True, help="Anyone may write.")
@click.option(
    "--private",
    is_flag=True,
    help="Only its admins, writers and readers may read it: never announced on gossip, never "
    "served to IPFS peers (bitswap, the gateway) nor to other gridnode peers.",
)
@click.option(
    "--reader",
    "readers",
    multiple=True,
    metavar="DID",
    help="With --private: another did:key that may read (repeatable). With --encrypted: another "
    "did:key the database key is wrapped for (repeatable). Admins and writers read.",
)
@click.option(
    "--encrypted",
    is_flag=True,
    help="Encrypt every store operation (XChaCha20-Poly1305) with a key wrapped for this node, "
    "its writers and its readers: other nodes replicate it blind, verifying and serving the "
    "ciphertext without reading it.",
)
@click.option(
    "--index",
    "indexes",
    multiple=True,
    metavar="FIELD",
    help="documents: keep a sorted index on FIELD (a dotted path reaches into maps; repeatable).",
)
@click.option(
    "--index-by",
    metavar="FIELD",
    help="documents: the field holding each document's id [default: _id].",
)
@click.option(
    "--pin-links",
    type=click.IntRange(min=1),
    metavar="BYTES",
    help="Every replica fetches and pins the files and directories (UnixFS CIDs) its entries "
    "link to, each of at most BYTES (within the replica's max_storage). Off by default.",
)
@json_option
@click.pass_context
def db_create(
    ctx: click.Context,
    name: str,
    store_type: str,
    writers: tuple[str, ...],
    admins: tuple[str, ...],
    public: bool,
    private: bool,
    readers: tuple[str, ...],
    encrypted: bool,
    indexes: tuple[str, ...],
    index_by: str | None,
    pin_links: int | None,
    as_json: bool,
) -> None:
    """Create a database NAME and print its address (only the address, for scripts)."""
    from gridnode.ops import CreateRequest

    if (indexes or index_by is not None) and store_type != "documents":
        raise click.UsageError("--index and --index-by apply to documents databases", ctx=ctx)
    if readers and not (private or encrypted):
        raise click.UsageError(
            "--reader applies to private (--private) or encrypted (--encrypted) databases", ctx=ctx
        )
    if encrypted and public:
        raise click.UsageError("a database cannot be both --encrypted and --public", ctx=ctx)
    if private and public:
        raise click.UsageError("a database cannot be both --private and --public", ctx=ctx)
    request = CreateRequest(
        name,
        store_type,
        list(writers),
        public,
        list(dict.fromkeys(indexes)),
        index_by,
        private,
        list(dict.fromkeys(readers)),
        encrypted,
        list(dict.fromkeys(admins)),
        pin_links,
    )
    created = endpoint_of(ctx).create(request)
    if as_json:
        emit(created)
    else:
        click.echo(created["address"])


@db.command("follow")
@click.argument("address")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until a first sync with a peer is complete, showing the entries caught up.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="With --wait: exit 1 if not caught up after SECONDS.",
)
@click.option(
    "--no-snapshot",
    is_flag=True,
    help="Verify the whole history before serving reads, instead of serving them at once from "
    "the newest signed snapshot a peer offers.",
)
@json_option
@click.pass_context
def db_follow(
    ctx: click.Context, address: str, wait: bool, timeout: float, no_snapshot: bool, as_json: bool
) -> None:
    """Keep and replicate a database another node has (needs a running node).

    The running node fetches the database's manifest from a connected peer, checks it against
    ADDRESS and starts syncing; prints the address. Exits 1 if no connected peer has it. A
    database the node holds nothing of yet is served at once from the newest signed snapshot
    the peers offer (signed by an admin or a trusted signer), while the history behind it is
    verified ('gridnode status' says how far).
    """
    endpoint = endpoint_of(ctx)
    if not endpoint.running:
        raise CliError("'db follow' needs a running node: start it with 'gridnode start'")
    info = endpoint.follow(address, snapshot=not no_snapshot)
    if wait:
        from gridnode.progress import wait_for_catch_up

        info = wait_for_catch_up(endpoint, info["address"], timeout)
    if as_json:
        emit(info)
    else:
        click.echo(info["address"])


@db.group("snapshot")
def db_snapshot() -> None:
    """Signed snapshots of a database's state: publish one, show what is published and served.

    A fresh follower serves reads from the newest snapshot at once and verifies the history
    behind it (docs/spec.md, "Signed snapshots").
    """


@db_snapshot.command("publish")
@click.argument("address")
@json_option
@click.pass_context
def db_snapshot_publish(ctx: click.Context, address: str, as_json: bool) -> None:
    """Build a snapshot of the database now, signed with this node's key, and offer it to
    peers (needs a running node); prints its root CID."""
    endpoint = endpoint_of(ctx)
    if not endpoint.running:
        raise CliError("'db snapshot publish' needs a running node: start it with 'gridnode start'")
    info = database_info(ctx, address)
    published = endpoint.snapshot_publish(info["address"])
    if as_json:
        emit(published)
    else:
        click.echo(published["root"])


@db_snapshot.command("show")
@click.argument("address")
@json_option
@click.pass_context
def db_snapshot_show(ctx: click.Context, address: str, as_json: bool) -> None:
    """The newest snapshot this node published of the database, and the one it serves reads
    from (or did: verified, or dropped and who signed it); needs a running node."""
    endpoint = endpoint_of(ctx)
    if not endpoint.running:
        raise CliError("'db snapshot show' needs a running node: start it with 'gridnode start'")
    info = database_info(ctx, address)
    shown = endpoint.snapshot_show(info["address"])
    if as_json:
        emit(shown)
        return
    published = shown["published"]
    if published is None:
        click.echo("published: none")
    else:
        click.echo(
            f"published: {published['root']} ({published['entries']} entries, "
            f"{published['chunks']} chunks, signed by {published['signer']})"
        )
    served = shown["served"]
    click.echo("served: none" if served is None else f"served: {served['status']}")


@db.group("access")
def db_access() -> None:
    """Who may administer and write a database: grant or revoke a role (docs/spec.md §8).

    This node must be an admin. An admin grants any role; it revokes only a key that ranks below
    it (a manifest admin ranks highest) or its own role. A second admin key kept offline
    (db create --admin, docs/keys.md) uses these to name a new primary after a key is lost.
    """


def _change_access(
    ctx: click.Context, address: str, action: str, role: str, did: str, as_json: bool
) -> None:
    info = database_info(ctx, address)
    changed = endpoint_of(ctx).access(info["address"], action, role, did)
    if as_json:
        emit(changed)
        return
    click.echo(changed["entry"])
    if not changed["effective"]:
        warn(
            f"the {action} is in the log but has no effect: {did} ranks as high as this node "
            "(docs/spec.md §8)"
        )


_role_option = click.option(
    "--role",
    type=click.Choice(["admin", "writer"]),
    default="writer",
    show_default=True,
    help="The role granted or revoked.",
)


@db_access.command("grant")
@click.argument("address")
@click.argument("did")
@_role_option
@json_option
@click.pass_context
def db_access_grant(ctx: click.Context, address: str, did: str, role: str, as_json: bool) -> None:
    """Grant DID the role (writer, or admin) on the database; prints the entry's CID."""
    _change_access(ctx, address, "grant", role, did, as_json)


@db_access.command("revoke")
@click.argument("address")
@click.argument("did")
@_role_option
@json_option
@click.pass_context
def db_access_revoke(ctx: click.Context, address: str, did: str, role: str, as_json: bool) -> None:
    """Revoke DID's role (writer, or admin) on the database; prints the entry's CID. Entries
    it wrote before stay valid."""
    _change_access(ctx, address, "revoke", role, did, as_json)


@db.group("reader")
def db_reader() -> None:
    """Readers of an encrypted database (db create --encrypted): who holds its key.

    Adding a reader wraps the current key for it (it reads every entry under that key); removing
    one rotates the key (it cannot read entries written after). This node must be an admin that
    holds the key.
    """


def _change_reader(ctx: click.Context, address: str, action: str, did: str, as_json: bool) -> None:
    info = database_info(ctx, address)
    changed = endpoint_of(ctx).reader(info["address"], action, did)
    if as_json:
        emit(changed)
    else:
        click.echo(changed["entry"])


@db_reader.command("add")
@click.argument("address")
@click.argument("did")
@json_option
@click.pass_context
def db_reader_add(ctx: click.Context, address: str, did: str, as_json: bool) -> None:
    """Wrap the current key of the encrypted database for DID; prints the key entry's CID."""
    _change_reader(ctx, address, "add", did, as_json)


@db_reader.command("remove")
@click.argument("address")
@click.argument("did")
@json_option
@click.pass_context
def db_reader_remove(ctx: click.Context, address: str, did: str, as_json: bool) -> None:
    """Rotate the key of the encrypted database without DID: entries written from now on are
    sealed from it (what it read before, it keeps). Prints the key entry's CID."""
    _change_reader(ctx, address, "remove", did, as_json)


@db_reader.command("list")
@click.argument("address")
@json_option
@click.pass_context
def db_reader_list(ctx: click.Context, address: str, as_json: bool) -> None:
    """The did:keys the current key of the encrypted database is wrapped for, one a line."""
    info = database_info(ctx, address)
    if not info.get("encrypted"):
        raise CliError(f"{info['address']} is not encrypted")
    if as_json:
        emit({"address": info["address"], "key_readers": info["key_readers"]})
        return
    for did in info["key_readers"]:
        click.echo(did)


@db.command("restore")
@click.argument("manifest_cid", metavar="MANIFEST_CID")
@click.argument("heads", nargs=-1, metavar="[HEAD_CID ...]")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="MULTIADDR",
    help="Connect to this peer (.../p2p/<peer id>) and ask it (repeatable) [default: every "
    "connected peer].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    default=120.0,
    show_default=True,
    metavar="SECONDS",
    help="Fetch for at most SECONDS; entries not had by then stay missing.",
)
@json_option
@click.pass_context
def db_restore(
    ctx: click.Context,
    manifest_cid: str,
    heads: tuple[str, ...],
    peers: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Fetch a database from IPFS peers over bitswap (needs a running node).

    MANIFEST_CID and the HEAD_CIDs are the roots of the CAR 'gridnode export' writes and
    'gridnode pin remote' pins. The running node connects to each --peer, fetches the manifest and every
    entry from them (Kubo, Helia, gridnodes), checks each against its CID, verifies and joins
    them, then keeps and replicates the database; prints its address. Exits 1 if no peer sent
    the manifest.
    """
    endpoint = endpoint_of(ctx)
    if not endpoint.running:
        raise CliError("'db restore' needs a running node: start it with 'gridnode start'")
    from gridnode.progress import Progress

    manifest = manifest_cid.removeprefix("/gridnode/")
    with Progress("restore: fetch, verify and join"):
        answer = endpoint.restore([manifest, *heads], list(peers), timeout)
    if as_json:
        emit(answer)
        return
    click.echo(answer["address"])
    if answer["missing"]:
        warn(
            f"{answer['missing']} entries were not had within {timeout:g} s: the database waits "
            "for them (a sync with a peer that has them fills them in)"
        )
    if answer["rejected"]:
        warn(f"{len(answer['rejected'])} entries rejected ('--json' lists them, with the reason)")


@db.command("list")
@json_option
@click.pass_context
def db_list(ctx: click.Context, as_json: bool) -> None:
    """List the databases here: address, name, type and number of entries."""
    rows = []
    for item in endpoint_of(ctx).databases():
        if as_json:
            emit(item)
        else:
            rows.append((item["address"], item["name"], item["type"], str(item["entries"])))
    if not as_json:
        table(("address", "name", "type", "entries"), rows)


@db.command("info")
@click.argument("address")
@json_option
@click.pass_context
def db_info(ctx: click.Context, address: str, as_json: bool) -> None:
    """Show a database's manifest (name, type, admins, writers, options; readers if private),
    entries and heads."""
    out = database_info(ctx, address)
    if as_json:
        emit(out)
        return
    for key, value in out.items():
        if isinstance(value, list):
            click.echo(f"{key}:")
            for item in value:
                click.echo(f"  {item}")
        elif key == "options":
            click.echo(f"options: {jsonvalue.dumps(value)}")
        else:
            click.echo(f"{key}: {value}")


@db.command("digest")
@click.argument("address")
@json_option
@click.pass_context
def db_digest(ctx: click.Context, address: str, as_json: bool) -> None:
    """Print the state digest (hex): replicas holding the same entries print the same digest."""
    info = endpoint_of(ctx).database(address, digest=True)
    if as_json:
        emit({k: info[k] for k in ("address", "digest", "entries", "heads")})
    else:
        click.echo(info["digest"])


@db.command("log")
@click.argument("address")
@click.option(
    "--limit", type=click.IntRange(min=0), metavar="N", help="Show the first N entries only."
)
@json_option
@click.pass_context
def db_log(ctx: click.Context, address: str, limit: int | None, as_json: bool) -> None:
    """Show the entries in their total order (clock, then CID): clock, CID, author, payload."""
    entries = endpoint_of(ctx).read("log", address, limit=limit)["entries"]
    if as_json:
        for entry in entries:
            emit(entry)
        return
    table(
        ("clock", "cid", "author", "payload"),
        ((str(e["clock"]), e["cid"], e["author"], jsonvalue.dumps(e["payload"])) for e in entries),
    )


@db.command("verify")
@click.argument("address")
@json_option
@click.pass_context
def db_verify(ctx: click.Context, address: str, as_json: bool) -> None:
    """Re-hash every stored block of the database (its manifest and each entry) and check every
    entry's signature; list what is damaged.

    Exit status 0 when every block is intact, 1 when one is not (each damaged block named with
    why). A damaged block is never served or exported; 'gridnode import' of a good copy (another
    replica's export) puts it back.
    """
    report = endpoint_of(ctx).read("verify", address)
    damaged = report["damaged"]
    if as_json:
        emit(report)
    else:
        for item in damaged:
            click.echo(f"damaged: {item['cid']}: {item['reason']}")
        intact = report["blocks"] - len(damaged)
        click.echo(f"{intact} of {report['blocks']} blocks intact in {report['address']}")
    if damaged:
        raise CliError(f"{len(damaged)} damaged blocks in {report['address']}")


# -- writes and reads by type ----------------------------------------------------------------------

_VALUE_ARGS = {"ignore_unknown_options": True}  # so that a JSON value like -5 is not an option


@db.command("put", context_settings=_VALUE_ARGS)
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


@db.command("get", context_settings=_VALUE_ARGS)
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


@db.command("delete", context_settings=_VALUE_ARGS)
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


@db.command("add", context_settings=_VALUE_ARGS)
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


@db.command("remove", context_settings=_VALUE_ARGS)
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


@db.command("inc", context_settings=_VALUE_ARGS)
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


@db.command("value")
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


@db.command("query")
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


@db.command("iter")
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
