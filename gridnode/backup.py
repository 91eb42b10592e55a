"""Encrypted backups (``gridnode backup``): run a command or take a file, encrypt what it gives to
age recipients, add the ciphertext to the file store, pin it, and record it in the backups
database; restore one by name or CID.

What a backup run does, in order (:func:`run_backup`):

1. the command's stdout (``/bin/sh -c COMMAND``) or the file is read once, 64 KiB at a time, and
   encrypted (:func:`gridnode.age.encrypt_to`) into a temporary file; its SHA-256 and size are
   taken on the way. A command that exits with an error stops the run there
   (:class:`~gridnode.errors.BackupCommandFailed`): nothing is added nor recorded;
2. the ciphertext is added as a file (:func:`gridnode.files.add.add`) and pinned as
   ``backup:NAME:TIME``;
3. the record ``{name, cid, size, time, sha256}`` (:class:`BackupRecord`) is written to the
   backups database, an ENCRYPTED ``documents`` database named :data:`BACKUPS_DB` that this node
   creates the first time (``_id`` ``NAME/TIME``, indexed by ``name``, with the ``pinLinks``
   option: every node that reads it keeps the files its records link to). Its key is wrapped for
   this node and for every ``readers`` did:key (a reader given later is added: the current key
   wrapped for it; ``gridnode db reader remove`` rotates the key);
4. with ``catalog`` (a catalog this node writes), the catalog lists the backups database
   (``db:``) and the ciphertext (``file:<cid>``, an empty value: no name, no time), so the
   community nodes following it replicate the database blind and fetch and pin the files;
5. with ``keep``, the records of NAME beyond the newest ``keep`` are deleted, their pins
   removed (``gridnode gc`` then frees the blocks) and their ``file:`` items taken off
   ``catalog``.

A blind replica of the backups database (a node holding no key for it) verifies, stores and
serves its entries and reads none: it learns that records are written and deleted, when, and
their envelope sizes, never a name, a time, a CID or a SHA-256 from them. What the catalog tells
it is the ciphertexts' CIDs and sizes, and when each was listed and taken off; only an age identity
a backup was encrypted to decrypts one (docs/reliability.md, "Issue 24, closed", says what a
blind node learns). :func:`records` on a node that holds the backups databases only blind says so
(:class:`~gridnode.errors.BackupsBlind`).

Everything here works through the CLI's endpoint (the data directory, or a running node's API),
the same way in both.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

import trio

from crdt.errors import GridnodeError, InvalidCID
from crdt.ipld.cid import CID
from gridnode.age import Plaintext, decrypt_to_file, recipients_of
from gridnode.errors import (
    BackupCommandFailed,
    BackupMismatch,
    BackupNotFound,
    BackupsBlind,
    InvalidRequest,
    MissingBlock,
    UnknownPin,
)
from gridnode.files.add import add
from gridnode.files.encrypted import encrypt_to_temporary
from protocols.age import X25519Identity

__all__ = [
    "BACKUPS_DB",
    "LINK_BYTES",
    "PIN_PREFIX",
    "SCHEMA",
    "BackupRecord",
    "BackupRun",
    "Restored",
    "backup_databases",
    "blind_backup_databases",
    "check_catalog",
    "check_name",
    "check_readers",
    "find_record",
    "format_time",
    "own_backups_database",
    "parse_duration",
    "prune",
    "records",
    "restore",
    "run_backup",
    "schedule",
]

log = logging.getLogger(__name__)

#: The name of the backups database (a ``documents`` database, ``_id`` ``NAME/TIME``).
BACKUPS_DB: Final = "gridnode-backups"
#: The record format's version (the ``schema`` field).
SCHEMA: Final = 1
#: The bound the backups database asks its replicas to keep each backup's file up to (its
#: manifest option ``pinLinks``: nodes replicating it fetch and pin the files its records link
#: to; gridnode/node/files.py caps it at 16 GiB whatever it says).
LINK_BYTES: Final = 1 << 40
#: Local pins of backups: ``backup:NAME:TIME``.
PIN_PREFIX: Final = "backup:"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_DURATION: Final = re.compile(r"(\d+)([smhd])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def check_name(name: str) -> str:
    """A backup's name: 1 to 64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"a backup name is 1 to 64 letters, digits, '.', '_' or '-' (first a letter or "
            f"digit), not {name[:80]!r}"
        )
    return name


def format_time(seconds: float) -> str:
    """A Unix time as the records write it: UTC, microseconds, ``2026-12-05T14:40:41.123456Z``
    (fixed width, so text order is time order)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``1h``, ``1d``, ``1h30m``: seconds (at least one)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidRequest(f"a duration is like 90s, 30m, 1h, 1d or 1h30m, not {text!r}")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds < 1:
        raise InvalidRequest("a duration is at least 1s")
    return float(seconds)


def _cid_of(value: Any) -> CID:
    """A link as the endpoint returns it: a CID offline, ``{"/": "..."}`` through the API."""
    if isinstance(value, CID):
        return value
    if isinstance(value, dict) and set(value) == {"/"} and isinstance(value["/"], str):
        return CID.parse(value["/"])
    raise InvalidCID("not a link")


@dataclass(frozen=True)
class BackupRecord:
    """One backup: its name, the CID of its age ciphertext, the plaintext's size and SHA-256
    (hex), and when it was made (:func:`format_time`). ``database``: where it was read."""

    name: str
    cid: CID
    size: int
    time: str
    sha256: str
    database: str | None = None

    @property
    def id(self) -> str:
        """Its ``_id`` in the backups database: ``NAME/TIME``."""
        return f"{self.name}/{self.time}"

    @property
    def pin(self) -> str:
        """The local pin that keeps it: ``backup:NAME:TIME``."""
        return f"{PIN_PREFIX}{self.name}:{self.time}"

    def to_doc(self) -> dict[str, Any]:
        """The document written (docs/spec.md, "Backup records")."""
        return {
            "_id": self.id,
            "schema": SCHEMA,
            "name": self.name,
            "cid": self.cid,
            "size": self.size,
            "time": self.time,
            "sha256": self.sha256,
        }

    @classmethod
    def from_doc(cls, doc: Any, database: str | None = None) -> BackupRecord | None:
        """The record a document holds; ``None`` if it is not a well-formed record (a later
        schema, or garbage): listings skip it."""
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            return None
        name, size, when, digest = (doc.get(k) for k in ("name", "size", "time", "sha256"))
        if not (
            isinstance(name, str)
            and _NAME.fullmatch(name)
            and type(size) is int
            and size >= 0
            and isinstance(when, str)
            and _TIME.fullmatch(when)
            and isinstance(digest, str)
            and _SHA256.fullmatch(digest)
            and doc.get("_id") == f"{name}/{when}"
        ):
            return None
        try:
            cid = _cid_of(doc.get("cid"))
        except (GridnodeError, ValueError):
            return None
        return cls(name, cid, size, when, digest, database)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cid": str(self.cid),
            "size": self.size,
            "time": self.time,
            "sha256": self.sha256,
            "database": self.database,
        }


# -- the backups database ---------------------------------------------------------------------


def backup_databases(endpoint: Any) -> list[str]:
    """The addresses of every backups database this node holds (its own, and those it follows),
    in the order the endpoint lists them."""
    return [
        row["address"]
        for row in endpoint.databases()
        if row.get("name") == BACKUPS_DB and row.get("type") == "documents" and not row.get("error")
    ]


def _info(endpoint: Any, address: str) -> dict[str, Any]:
    return dict(endpoint.database(address))


def blind_backup_databases(endpoint: Any) -> list[str]:
    """The backups databases this node holds blind: encrypted, with no key for this node (it
    keeps and serves them, and cannot read a record)."""
    return [a for a in backup_databases(endpoint) if _info(endpoint, a).get("blind")]


def check_readers(readers: Sequence[str]) -> list[str]:
    """The reader did:keys, checked (:class:`InvalidRequest` for one that is not an ed25519
    did:key), without repeats."""
    from crdt.errors import InvalidDidKey
    from crdt.identity import public_key_from_did

    for did in readers:
        try:
            public_key_from_did(did)
        except InvalidDidKey as exc:
            raise InvalidRequest(f"reader {did[:80]!r}: {exc}") from None
    return list(dict.fromkeys(readers))


def own_backups_database(endpoint: Any, readers: Sequence[str] = ()) -> str:
    """The address of the backups database this node writes: the first encrypted one it may
    write and holds the key of, else a new one (encrypted, its key wrapped for this node and
    ``readers``). A reader not yet given the key of an existing one is added (the current key
    wrapped for it); none is removed here (``gridnode db reader remove`` rotates the key)."""
    readers = check_readers(readers)
    for address in backup_databases(endpoint):
        info = _info(endpoint, address)
        if info.get("may_write") and info.get("encrypted") and not info.get("blind"):
            held = set(info.get("key_readers") or ())
            for did in readers:
                if did not in held:
                    endpoint.reader(address, "add", did)
                    log.info("backups database %s: the key wrapped for reader %s", address, did)
            return address
    from gridnode.ops import CreateRequest

    request = CreateRequest(
        BACKUPS_DB,
        "documents",
        indexes=["name"],
        readers=readers,
        encrypted=True,
        pin_links=LINK_BYTES,
    )
    created = endpoint.create(request)
    log.info("created the backups database %s (encrypted)", created["address"])
    return str(created["address"])


def check_catalog(endpoint: Any, ref: str) -> dict[str, Any]:
    """The listing of the catalog ``ref`` (address, CID or name) this node writes
    (:class:`InvalidRequest` if it is not a catalog, or this node may not write it)."""
    from gridnode.errors import NotFound

    try:
        info = _info(endpoint, ref)
    except NotFound as exc:
        raise InvalidRequest(f"catalog {ref[:120]!r}: {exc}") from None
    if info.get("type") != "keyvalue":
        raise InvalidRequest(f"{info['address']} is not a catalog (a {info.get('type')} database)")
    listing: dict[str, Any] = endpoint.read("catalog", info["address"])
    if not listing["is_catalog"]:
        raise InvalidRequest(f"{info['address']} is not a catalog (no 'catalog' key)")
    if not info.get("may_write"):
        raise InvalidRequest(f"this node may not write the catalog {info['address']}")
    return listing


def _list_in_catalog(endpoint: Any, catalog: str, backups: str, cid: CID) -> None:
    """List the backups database and the file ``cid`` in ``catalog`` (an empty value: the
    catalog tells its followers the CID, nothing about the backup)."""
    from protocols.catalog import canonical_address, database_key, file_key

    listing = endpoint.read("catalog", catalog)
    ops: list[dict[str, Any]] = []
    if canonical_address(backups) not in {d["address"] for d in listing["databases"]}:
        ops.append({"op": "put", "key": database_key(backups), "value": {"name": BACKUPS_DB}})
    ops.append({"op": "put", "key": file_key(str(cid)), "value": {}})
    endpoint.write(catalog, ops)


def _unlist_in_catalog(endpoint: Any, catalog: str, old: Sequence[BackupRecord]) -> None:
    from protocols.catalog import canonical_file, file_key

    listing = endpoint.read("catalog", catalog)
    listed = {item["cid"] for item in listing.get("files", [])}
    gone = [r.cid for r in old if canonical_file(str(r.cid)) in listed]
    if gone:
        endpoint.write(catalog, [{"op": "del", "key": file_key(str(c))} for c in gone])


def _documents(endpoint: Any, address: str, name: str | None) -> list[Any]:
    if name is None:
        answer = endpoint.read("query", address, field="_id")
    else:
        answer = endpoint.read("query", address, field="name", eq=name)
    return list(answer["documents"])


def records(
    endpoint: Any, name: str | None = None, databases: Sequence[str] | None = None
) -> list[BackupRecord]:
    """The backup records (of ``name``, or all) in the backups databases (``databases``, default
    every one held), oldest first; a record in several databases is listed once.

    :class:`BackupsBlind` when none is found and this node holds a backups database blind
    (encrypted, no key for it): it cannot say whether there are records, not that there are
    none."""
    found: dict[tuple[str, str], BackupRecord] = {}
    blind: list[str] = []
    for address in backup_databases(endpoint) if databases is None else databases:
        if _info(endpoint, address).get("blind"):
            blind.append(address)
            continue
        for doc in _documents(endpoint, address, name):
            record = BackupRecord.from_doc(doc, address)
            if record is not None and (name is None or record.name == name):
                found.setdefault((record.id, str(record.cid)), record)
    if not found and blind:
        raise BackupsBlind(
            f"this node holds the backups database {blind[0]} blind (encrypted; no key for "
            "this node): it keeps and serves the backups, and cannot read their records. List "
            "and restore on a reader's node (the primary's 'backup run --reader DID' adds one), "
            "or restore by CID with the age identity"
        )
    return sorted(found.values(), key=lambda r: (r.time, r.name, str(r.cid)))


def find_record(endpoint: Any, ref: str) -> tuple[CID, BackupRecord | None]:
    """What ``ref`` names: a backup name (its newest record) or a CID (with its record, if one
    is held). :class:`BackupNotFound` for a name no record has."""
    blind: BackupsBlind | None = None
    if _NAME.fullmatch(ref):
        try:
            found = records(endpoint, ref)
        except BackupsBlind as exc:
            found, blind = [], exc
        if found:
            return found[-1].cid, found[-1]
    try:
        cid = CID.parse(ref)
    except (GridnodeError, ValueError):
        if blind is not None:
            raise blind from None
        raise BackupNotFound(f"no backup named {ref!r} in the backups databases held") from None
    try:
        held = records(endpoint)
    except BackupsBlind:
        held = []  # a CID restores without a record (nothing to check it against)
    for record in reversed(held):
        if record.cid == cid:
            return cid, record
    return cid, None


# -- making one -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupRun:
    """A backup made: its record, and the records of its name removed by ``keep``."""

    record: BackupRecord
    pruned: list[BackupRecord]

    def as_json(self) -> dict[str, Any]:
        return {**self.record.as_json(), "pruned": [r.as_json() for r in self.pruned]}


def _encrypt_command(
    command: str, recipients: Sequence[str], directory: Path
) -> tuple[Path, Plaintext]:
    # The command's stdout is read as it writes (a pipe, constant memory); its stderr is ours.
    with subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        try:
            source: Any = process.stdout
            path, plaintext = encrypt_to_temporary(recipients, source, directory)
        except BaseException:
            process.kill()
            raise
        finally:
            process.stdout.close()
        code = process.wait()
    if code != 0:
        path.unlink(missing_ok=True)
        raise BackupCommandFailed(f"the backup command exited with status {code}: nothing kept")
    return path, plaintext


def run_backup(
    endpoint: Any,
    name: str,
    recipients: Sequence[str],
    *,
    command: str | None = None,
    file: Path | None = None,
    stream: BinaryIO | None = None,
    keep: int | None = None,
    readers: Sequence[str] = (),
    catalog: str | None = None,
    now: Callable[[], float] = time.time,
    tmp_dir: Path | None = None,
) -> BackupRun:
    """Make one backup of ``name`` from ``command``'s stdout, ``file`` or ``stream`` (exactly
    one), encrypted to ``recipients``; record it in the encrypted backups database (its key
    wrapped for this node and ``readers``), list its file in ``catalog`` (if given), then keep
    only the newest ``keep`` of ``name``."""
    check_name(name)
    recipients_of(recipients)  # checked before the command runs
    readers = check_readers(readers)
    if sum(x is not None for x in (command, file, stream)) != 1:
        raise InvalidRequest("a backup takes a command or a file (one of them)")
    if keep is not None and keep < 1:
        raise InvalidRequest("keep is at least 1")
    catalog_address = None if catalog is None else str(check_catalog(endpoint, catalog)["address"])
    address = own_backups_database(endpoint, readers)
    when = format_time(now())
    with tempfile.TemporaryDirectory(prefix="gridnode-backup-", dir=tmp_dir) as directory:
        if command is not None:
            path, plaintext = _encrypt_command(command, recipients, Path(directory))
        elif file is not None:
            with open(file, "rb") as source:
                path, plaintext = encrypt_to_temporary(recipients, source, Path(directory))
        else:
            assert stream is not None
            path, plaintext = encrypt_to_temporary(recipients, stream, Path(directory))
        added = add(endpoint, str(path), pin=True, name=f"{PIN_PREFIX}{name}:{when}")
    record = BackupRecord(name, added.cid, plaintext.size, when, plaintext.sha256, address)
    endpoint.write(address, [{"op": "put", "doc": record.to_doc()}], ["record"])
    if catalog_address is not None:
        _list_in_catalog(endpoint, catalog_address, address, added.cid)
    pruned: list[BackupRecord] = []
    if keep is not None:
        pruned = prune(endpoint, address, name, keep, catalog=catalog_address)
    return BackupRun(record, pruned)


def prune(
    endpoint: Any, address: str, name: str, keep: int, *, catalog: str | None = None
) -> list[BackupRecord]:
    """Delete the records of ``name`` in ``address`` beyond the newest ``keep``, remove their
    pins (a pin already gone is no error) and their ``file:`` items in ``catalog`` (those
    listed); the records removed."""
    mine = records(endpoint, name, [address])
    old = mine[: max(0, len(mine) - keep)]
    if not old:
        return []
    endpoint.write(
        address, [{"op": "del", "id": r.id} for r in old], [f"prune {r.id}" for r in old]
    )
    for record in old:
        with contextlib.suppress(UnknownPin):
            endpoint.files_unpin(record.pin)
    if catalog is not None:
        _unlist_in_catalog(endpoint, catalog, old)
    return old


async def schedule(
    period: float,
    once: Callable[[], Awaitable[Any]],
    *,
    failed: Callable[[BaseException], None],
    runs: int | None = None,
) -> None:
    """Await ``once`` now, then every ``period`` seconds (of trio's clock) from the first start,
    ``runs`` times (``None``: until cancelled). A run that fails with a
    :class:`~crdt.errors.GridnodeError` or :class:`OSError` is told to ``failed`` and the schedule
    goes on; slots missed while a run lasted are skipped (logged), never run late in a burst."""
    start = trio.current_time()
    slot = 0
    done = 0
    while runs is None or done < runs:
        try:
            await once()
        except (GridnodeError, OSError) as exc:
            failed(exc)
        done += 1
        slot += 1
        late = trio.current_time() - (start + slot * period)
        if late >= 0:
            skipped = math.floor(late / period) + 1
            log.warning("a backup ran past %d scheduled start(s): skipped", skipped)
            slot += skipped
        if runs is not None and done >= runs:
            return
        await trio.sleep_until(start + slot * period)


# -- restoring one ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    """A restore: the CID read, its record (``None``: a CID no record names, nothing to verify
    against), where it was written and what it holds."""

    cid: CID
    record: BackupRecord | None
    output: Path
    plaintext: Plaintext

    def as_json(self) -> dict[str, Any]:
        return {
            "cid": str(self.cid),
            "record": None if self.record is None else self.record.as_json(),
            "output": str(self.output),
            "size": self.plaintext.size,
            "sha256": self.plaintext.sha256,
            "verified": self.record is not None,
        }


async def _cat_into(endpoint: Any, cid: CID, sink: BinaryIO) -> None:
    from gridnode.files.export import EndpointSource, cat, resolve

    source = EndpointSource(endpoint)
    node = await resolve(source, str(cid))
    async for chunk in cat(source, node):
        sink.write(chunk)


def _read_file(endpoint: Any, cid: CID, sink: BinaryIO) -> None:
    """The file ``cid`` into ``sink``: from the file store, or (a running node lacking a block)
    fetched whole from the node's peers first, under a ``restore:CID`` pin removed after."""
    try:
        trio.run(_cat_into, endpoint, cid, sink)
        return
    except MissingBlock as exc:
        if not getattr(endpoint, "running", False):
            raise MissingBlock(
                f"{exc} (offline: start the node, and the restore fetches it from its peers)"
            ) from None
    sink.seek(0)
    sink.truncate()
    pin = f"restore:{cid}"
    endpoint.files_fetch(cid, pin)
    try:
        trio.run(_cat_into, endpoint, cid, sink)
    finally:
        with contextlib.suppress(UnknownPin):
            endpoint.files_unpin(pin)


def restore(
    endpoint: Any,
    ref: str,
    output: Path,
    identities: Sequence[X25519Identity],
    *,
    overwrite: bool = False,
    tmp_dir: Path | None = None,
) -> Restored:
    """Restore the backup ``ref`` names (a name: its newest record; or a CID) into ``output``:
    its ciphertext read from the endpoint's file store (every block verified; a running node
    fetches what it lacks from its peers first), decrypted with
    ``identities``, checked against the record's SHA-256 and size. ``output`` appears only when
    all of that passed; an existing one is refused unless ``overwrite``."""
    if output.exists() and not overwrite:
        raise FileExistsError(17, "refusing to overwrite an existing file", str(output))
    cid, record = find_record(endpoint, ref)
    with tempfile.TemporaryDirectory(prefix="gridnode-restore-", dir=tmp_dir) as directory:
        ciphertext = Path(directory) / "backup.age"
        with open(ciphertext, "wb") as sink:
            _read_file(endpoint, cid, sink)
        staged = output.with_name(f".{output.name}.{os.getpid()}.restoring")
        with open(ciphertext, "rb") as source:
            plaintext = decrypt_to_file(identities, source, staged, overwrite=True)
    try:
        if record is not None and (
            plaintext.sha256 != record.sha256 or plaintext.size != record.size
        ):
            raise BackupMismatch(
                f"the decrypted backup {record.id} is not what its record says "
                f"(sha256 {plaintext.sha256[:16]}..., {plaintext.size} bytes; recorded "
                f"{record.sha256[:16]}..., {record.size} bytes): nothing written"
            )
        if overwrite:
            os.replace(staged, output)
        else:
            os.link(staged, output)
    finally:
        staged.unlink(missing_ok=True)
    return Restored(cid, record, output, plaintext)
