"""``gridnode db ...``: create, follow, restore, write, read and inspect databases.

This module holds the group and the verbs about a database as a whole (create, follow, restore,
snapshot, list, info, log, digest, verify); :mod:`gridnode.cli.db_values` the writes and reads by
store type, :mod:`gridnode.cli.db_access` the access and reader groups (the package registers
them on :func:`db`).

Every verb names a database by ADDRESS (``/gridnode/<cid>``, the bare CID, or a unique name) and
works through the endpoint (:func:`gridnode.cli.common.endpoint_of`): it checks the database's
type (:func:`gridnode.ops.check_type`), turns its arguments into ops or read parameters, and
prints what came back. A write is one call, one transaction, whatever its size: ``-`` reads JSON
lines from stdin, all of them written or none, the line at fault named by its label.

It refuses to check an op itself or to read a store (the endpoint does both, the same offline
and online: :mod:`gridnode.ops`), and to reach a node's state other than through the endpoint.
"""

from __future__ import annotations

import click

from crdt.stores import STORE_TYPES
from gridnode import jsonvalue
from gridnode.cli.common import (
    CliError,
    database_info,
    emit,
    endpoint_of,
    json_option,
    table,
    warn,
)

__all__ = ["db"]


@click.group()
def db() -> None:
    """Databases in this data directory: create, write, read, inspect.

    ADDRESS is a database address (/gridnode/<cid>), its bare CID, or its name if no other
    database here has that name.
    """


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
