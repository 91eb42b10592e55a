"""Catalogs: what community replicas should hold, as a keyvalue database's keys (sans-IO).

A catalog is an ordinary ``keyvalue`` database written by its admins (the project's primary);
docs/catalogs.md is the schema, docs/decisions.md says why it is not a store type of its own.
Its keys:

- ``catalog`` -> ``{"schema": 1, "name": str}``: marks the database as a catalog;
- ``db:/gridnode/<cid>`` -> ``{"name": str, "description": str}``: a database to replicate;
- ``peer:<multiaddr>`` -> ``{}``: a seed peer, ``/ip4/.../tcp/N/p2p/<peer id>``, to dial;
- ``file:<cid>`` -> ``{"name": str, "description": str}``: a UnixFS file or directory (any IPFS
  DAG: dag-pb, raw or dag-cbor blocks) that every follower fetches whole and pins (issue 23);
  its CID in canonical form (CIDv0 stays v0: it names the same blocks Kubo pins);
- any other key is left alone, so a later schema does not break a node that predates it (a node
  from before ``file:`` items ignores them).

This module turns a catalog's ``(key, value)`` items into a :class:`Catalog` and names the keys a
writer puts. It refuses, item by item and never the whole catalog, a key or value that breaks the
schema or a bound (:data:`MAX_DATABASES`, :data:`MAX_PEERS`, the text lengths): a catalog comes
from a peer like every other database, and its admins' mistakes must not make a follower dial or
follow without bound. What it refused is listed so the caller can log it (rate-limited).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from crdt.errors import GridnodeError
from crdt.ipld.cid import CID
from crdt.manifest import parse_address
from crdt.orbitdb.address import format_address as format_orbit_address
from crdt.orbitdb.address import parse_address as parse_orbit_address

__all__ = [
    "DATABASE_PREFIX",
    "FILE_CODECS",
    "FILE_PREFIX",
    "MARKER_KEY",
    "MAX_DATABASES",
    "MAX_FILES",
    "MAX_ORBITDB",
    "MAX_PEERS",
    "ORBITDB_PREFIX",
    "PEER_PREFIX",
    "SCHEMA",
    "Catalog",
    "CatalogItem",
    "FileItem",
    "canonical_address",
    "canonical_file",
    "database_key",
    "file_key",
    "marker_value",
    "orbitdb_key",
    "parse_catalog",
    "peer_key",
]

SCHEMA: Final = 1
MARKER_KEY: Final = "catalog"
DATABASE_PREFIX: Final = "db:"
PEER_PREFIX: Final = "peer:"
FILE_PREFIX: Final = "file:"
#: An OrbitDB database every follower follows (read-only): ``orbitdb:/orbitdb/<cid>``.
ORBITDB_PREFIX: Final = "orbitdb:"
#: Databases a follower takes from one catalog; the rest are refused (and logged).
MAX_DATABASES: Final = 4096
#: Seed peers a follower dials from one catalog.
MAX_PEERS: Final = 64
#: Codecs a file item's root may have: dag-pb (a UnixFS node) or raw (a file of one block).
FILE_CODECS: Final = frozenset({0x70, 0x55})
#: Files and directories a follower fetches and pins from one catalog.
MAX_FILES: Final = 4096
#: OrbitDB databases a follower follows from one catalog.
MAX_ORBITDB: Final = 1024
MAX_NAME: Final = 256
MAX_DESCRIPTION: Final = 4096
MAX_MULTIADDR: Final = 512


@dataclass(frozen=True)
class CatalogItem:
    """A database a catalog lists."""

    address: str
    name: str = ""
    description: str = ""


@dataclass(frozen=True)
class FileItem:
    """A file or directory a catalog lists: its root CID, as text (see :func:`canonical_file`)."""

    cid: str
    name: str = ""
    description: str = ""


@dataclass(frozen=True)
class Catalog:
    """What one catalog lists (its items in key order), and what of it was refused."""

    name: str
    is_catalog: bool
    databases: tuple[CatalogItem, ...] = ()
    peers: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    files: tuple[FileItem, ...] = ()
    #: The OrbitDB databases listed (``orbitdb:`` keys): their items, address ``/orbitdb/<cid>``.
    orbitdb: tuple[CatalogItem, ...] = ()

    @property
    def orbitdb_addresses(self) -> frozenset[str]:
        return frozenset(item.address for item in self.orbitdb)

    @property
    def addresses(self) -> frozenset[str]:
        return frozenset(item.address for item in self.databases)

    @property
    def file_cids(self) -> frozenset[str]:
        return frozenset(item.cid for item in self.files)


def canonical_address(address: str) -> str:
    """``/gridnode/<cid>`` for an address or a bare CID; :class:`GridnodeError` if it is none."""
    return "/gridnode/" + str(parse_address(address))


def database_key(address: str) -> str:
    """The key a database is listed under (its canonical address after ``db:``)."""
    return DATABASE_PREFIX + canonical_address(address)


def canonical_file(cid: str) -> str:
    """A file's CID as a catalog names it: a CIDv0 as ``Qm...``, a CIDv1 in base32; ``/ipfs/``
    before it is allowed. :class:`GridnodeError` if it is no CID."""
    text = cid[len("/ipfs/") :] if cid.startswith("/ipfs/") else cid
    if not 0 < len(text) <= MAX_MULTIADDR:
        raise GridnodeError(f"not a CID: {cid[:80]!r}")
    try:
        parsed = CID.parse(text)
    except (GridnodeError, ValueError) as exc:
        raise GridnodeError(f"not a CID: {exc}") from None
    if parsed.codec not in FILE_CODECS:
        raise GridnodeError(f"{parsed} is not a UnixFS file or directory (codec {parsed.codec:#x})")
    return str(parsed)


def file_key(cid: str) -> str:
    """The key a file or directory is listed under (its canonical CID after ``file:``)."""
    return FILE_PREFIX + canonical_file(cid)


def orbitdb_key(address: str) -> str:
    """The key an OrbitDB database is listed under (``orbitdb:/orbitdb/<cid>``, the CID in
    base58btc as OrbitDB writes it); :class:`GridnodeError` if ``address`` is none."""
    return ORBITDB_PREFIX + format_orbit_address(parse_orbit_address(address))


def peer_key(multiaddr: str) -> str:
    """The key a seed peer is listed under."""
    if not _is_multiaddr(multiaddr):
        raise ValueError(f"not a multiaddr: {multiaddr!r}")
    return PEER_PREFIX + multiaddr


def marker_value(name: str) -> dict[str, Any]:
    """The value of the ``catalog`` key a new catalog is written with."""
    return {"schema": SCHEMA, "name": name}


def _is_multiaddr(text: str) -> bool:
    return (
        0 < len(text) <= MAX_MULTIADDR
        and text.startswith("/")
        and text.isprintable()
        and " " not in text
    )


def _text(value: Any, key: str, limit: int) -> str:
    if value is None:
        return ""
    if type(value) is not str or len(value) > limit:
        raise ValueError(f"{key} is a string of at most {limit} characters")
    return value


def parse_catalog(items: Iterable[tuple[str, Any]]) -> Catalog:
    """A catalog from a keyvalue store's live ``(key, value)`` items (in any order)."""
    name = ""
    is_catalog = False
    databases: list[CatalogItem] = []
    files: dict[str, FileItem] = {}
    peers: list[str] = []
    orbit: dict[str, CatalogItem] = {}
    refused: list[tuple[str, str]] = []
    for key, value in sorted(items, key=lambda item: item[0]):
        try:
            if key == MARKER_KEY:
                if type(value) is not dict or value.get("schema") != SCHEMA:
                    raise ValueError(f"the catalog key is {{'schema': {SCHEMA}, 'name': ...}}")
                name = _text(value.get("name"), "name", MAX_NAME)
                is_catalog = True
            elif key.startswith(DATABASE_PREFIX):
                if len(databases) >= MAX_DATABASES:
                    raise ValueError(f"more than {MAX_DATABASES} databases")
                try:
                    address = canonical_address(key[len(DATABASE_PREFIX) :])
                except GridnodeError as exc:
                    raise ValueError(f"not a database address: {exc}") from None
                if type(value) is not dict:
                    raise ValueError("a database's value is a map")
                databases.append(
                    CatalogItem(
                        address,
                        _text(value.get("name"), "name", MAX_NAME),
                        _text(value.get("description"), "description", MAX_DESCRIPTION),
                    )
                )
            elif key.startswith(PEER_PREFIX):
                if len(peers) >= MAX_PEERS:
                    raise ValueError(f"more than {MAX_PEERS} peers")
                multiaddr = key[len(PEER_PREFIX) :]
                if not _is_multiaddr(multiaddr):
                    raise ValueError("not a multiaddr")
                peers.append(multiaddr)
            elif key.startswith(FILE_PREFIX):
                if len(files) >= MAX_FILES:
                    raise ValueError(f"more than {MAX_FILES} files")
                try:
                    cid = canonical_file(key[len(FILE_PREFIX) :])
                except GridnodeError as exc:
                    raise ValueError(str(exc)) from None
                if type(value) is not dict:
                    raise ValueError("a file's value is a map")
                item = FileItem(
                    cid,
                    _text(value.get("name"), "name", MAX_NAME),
                    _text(value.get("description"), "description", MAX_DESCRIPTION),
                )
                files.setdefault(cid, item)  # two spellings of one CID: listed once
            elif key.startswith(ORBITDB_PREFIX):
                if len(orbit) >= MAX_ORBITDB:
                    raise ValueError(f"more than {MAX_ORBITDB} OrbitDB databases")
                try:
                    orbit_address = orbitdb_key(key[len(ORBITDB_PREFIX) :])[len(ORBITDB_PREFIX) :]
                except GridnodeError as exc:
                    raise ValueError(f"not an OrbitDB address: {exc}") from None
                if type(value) is not dict:
                    raise ValueError("an OrbitDB database's value is a map")
                orbit.setdefault(
                    orbit_address,
                    CatalogItem(
                        orbit_address,
                        _text(value.get("name"), "name", MAX_NAME),
                        _text(value.get("description"), "description", MAX_DESCRIPTION),
                    ),
                )
        except ValueError as exc:
            refused.append((key[:MAX_MULTIADDR], str(exc)))
    # Two keys may name one database (a bare CID and its address): list it once.
    unique = {item.address: item for item in reversed(databases)}
    ordered = tuple(unique[a] for a in dict.fromkeys(item.address for item in databases))
    return Catalog(
        name,
        is_catalog,
        ordered,
        tuple(peers),
        tuple(refused),
        tuple(files.values()),
        tuple(orbit.values()),
    )
