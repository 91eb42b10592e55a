"""The layer rules of docs/architecture.md, checked on the source: imports point down, and each
outside library stays in its room.

The three floors: ``gridnode`` -> ``protocols`` -> ``crdt``. This test reads (never imports)
every ``.py`` file under ``crdt/``, ``protocols/`` and ``gridnode/``, walks its whole AST (so an
import inside a function, under ``if TYPE_CHECKING:``, relative, or by
``importlib.import_module("...")`` counts as much as one at the top), and fails naming file,
line and rule for each breach of:

1. **crdt/ is pure**: it imports only itself and :data:`CRDT_MAY_IMPORT` (standard modules
   without I/O, and cbor2 / libipld / PyNaCl / coincurve). No protocols, no gridnode, no sockets,
   files, clocks, threads or event loops.
2. **protocols/ is sans-IO**: it imports only itself, crdt and the same pure list. No gridnode,
   trio, socket, sqlite3, time (time is passed in).
3. **libp2p stays in gridnode/net**: nothing else imports ``libp2p`` or ``multiaddr``.
4. **SQLite stays in gridnode/storage**: nothing else imports ``sqlite3`` or holds SQL text (a
   string constant that :data:`SQL` matches). The one other room that speaks SQL is the seeder's
   PostgreSQL side, ``gridnode/seed/postgres.py``: the source database's SQL, sent through
   psycopg, never the node's file (:data:`SQL_ROOMS`); and so does the recovery's,
   ``gridnode/seed/recover.py`` (the target database's SQL, likewise).

The self-tests at the end feed each rule a synthetic breach, so this test is known to fail when
a rule is broken.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
FLOORS: Final = ("crdt", "protocols", "gridnode")

#: What crdt/ (and protocols/) may import besides themselves: standard modules that do no I/O,
#: read no clock and start nothing, and the two third-party libraries the data model is made of.
CRDT_MAY_IMPORT: Final = frozenset(
    {
        "__future__",
        "abc",
        "base64",
        "binascii",
        "bisect",
        "builtins",
        "collections",
        "dataclasses",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "hmac",
        "itertools",
        "math",
        "operator",
        "re",
        "struct",
        "types",
        "typing",
        # DAG-CBOR's codec underneath crdt.ipld, and Ed25519 signatures (crdt.identity).
        "cbor2",
        "nacl",
        # The compiled DAG-CBOR round trip that confirms canonical form (crdt.ipld.dagcbor).
        "libipld",
        # secp256k1 ECDSA verification of OrbitDB entries (crdt.orbitdb.verify): libsecp256k1.
        "coincurve",
    }
)

#: Only these rooms import ``libp2p`` / ``multiaddr``, and ``sqlite3``.
LIBP2P_ROOM: Final = "gridnode/net/"
SQLITE_ROOM: Final = "gridnode/storage/"
#: Where SQL text may be: the node's SQLite file, the seeder's PostgreSQL source, and the
#: recovery's PostgreSQL target.
SQL_ROOMS: Final = ("gridnode/storage/", "gridnode/seed/postgres.py", "gridnode/seed/recover.py")

#: SQL statements in string constants. Upper-case keywords in statement shape, plus lower-case
#: SQL only where its syntax (parentheses, ``=``, ``WHERE``) could not be prose: no string of
#: today's code, docstrings included, matches outside the SQL rooms.
SQL: Final = re.compile(
    r"""
    \bSELECT\s+(?:DISTINCT\s+)?[\w.*(),\s]+?\s+FROM\s+\w
    | \b(?:INSERT\s+(?:OR\s+[A-Z]+\s+)?|REPLACE\s+)INTO\s+\w
    | \bUPDATE\s+\w+\s+SET\s+\w
    | \bDELETE\s+FROM\s+\w
    | \b(?:CREATE|DROP|ALTER)\s+(?:(?:TEMP|TEMPORARY|UNIQUE|VIRTUAL)\s+)?
      (?:TABLE|INDEX|VIEW|TRIGGER)\b
    | \bPRAGMA(?:\s+\w+|\s*$)
    | ^\s*(?:BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|VACUUM|ANALYZE|END)(?:\s+[A-Z]+)?\s*;?\s*$
    | (?i:\binsert\s+(?:or\s+\w+\s+)?into\s+\w+\s*\()
    | (?i:\bselect\s+[\w.*(),\s]+?\s+from\s+\w+\s+where\s+\w+\s*(?:=|<|>|in\b|is\b))
    | (?i:\bdelete\s+from\s+\w+\s+where\s+\w+\s*(?:=|<|>|in\b|is\b))
    | (?i:\bupdate\s+\w+\s+set\s+\w+\s*=)
    | (?i:\bcreate\s+(?:temp\s+|unique\s+)?(?:table|index)\s+(?:if\s+not\s+exists\s+)?\w+\s*
      (?:\(|on\b))
    | (?i:\bpragma\s+\w+\s*[=(])
    """,
    re.VERBOSE,
)


def _imports(path: str, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``tree``, wherever it is."""
    package = path.removesuffix(".py").split("/")
    package = package[:-1]  # a module's package; an __init__'s package is its own directory
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            yield node.lineno, node.args[0].value


def violations(path: str, source: str) -> list[str]:
    """Every breach of the layer rules in one file (``path`` relative to the repository, with
    ``/``), as ``path:line: what``."""
    tree = ast.parse(source, filename=path)
    found = []
    floor = path.split("/")[0]
    for line, module in _imports(path, tree):
        top = module.split(".")[0]
        where = f"{path}:{line}"
        if floor == "crdt" and top != "crdt" and top not in CRDT_MAY_IMPORT:
            found.append(
                f"{where}: crdt/ is pure and imports only itself and the pure list: {module}"
            )
        if floor == "protocols" and top not in {"crdt", "protocols"} | CRDT_MAY_IMPORT:
            found.append(
                f"{where}: protocols/ is sans-IO and imports only itself, crdt and the pure "
                f"list: {module}"
            )
        if top in {"libp2p", "multiaddr"} and not path.startswith(LIBP2P_ROOM):
            found.append(f"{where}: only gridnode/net imports {top}")
        if top == "sqlite3" and not path.startswith(SQLITE_ROOM):
            found.append(f"{where}: only gridnode/storage imports sqlite3")
    if not path.startswith(SQL_ROOMS):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and SQL.search(node.value)
            ):
                statement = " ".join(node.value.split())
                found.append(
                    f"{path}:{node.lineno}: only gridnode/storage holds SQL text: {statement:.60}"
                )
    return sorted(found, key=lambda f: int(f.split(":")[1]))


def tree_violations(root: Path) -> list[str]:
    found = []
    for floor in FLOORS:
        for file in sorted((root / floor).rglob("*.py")):
            path = file.relative_to(root).as_posix()
            found += violations(path, file.read_text(encoding="utf-8"))
    return found


def test_the_layer_rules_hold():
    found = tree_violations(ROOT)
    assert not found, "layer rules broken:\n" + "\n".join(found)


# -- the checker itself: each rule catches a breach, and lets the rooms do their jobs -----------


@pytest.mark.parametrize(
    "path, source, rule",
    [
        ("crdt/log.py", "from gridnode.errors import StorageError\n", "crdt/ is pure"),
        ("crdt/log.py", "import protocols.sync\n", "crdt/ is pure"),
        ("crdt/stores/set.py", "from ...gridnode import repo\n", "crdt/ is pure"),
        ("crdt/log.py", "import socket\n", "crdt/ is pure"),
        ("crdt/log.py", "def f():\n    import os\n", "crdt/ is pure"),
        ("crdt/log.py", "import importlib\nimportlib.import_module('trio')\n", "crdt/ is pure"),
        ("protocols/sync.py", "from gridnode import node\n", "protocols/ is sans-IO"),
        ("protocols/sync.py", "import trio\n", "protocols/ is sans-IO"),
        ("protocols/sync.py", "import time\n", "protocols/ is sans-IO"),
        (
            "protocols/sync.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlite3\n",
            "protocols/ is sans-IO",
        ),
        ("gridnode/api.py", "from libp2p.peer.id import ID\n", "only gridnode/net imports libp2p"),
        ("gridnode/node/peers.py", "import multiaddr\n", "only gridnode/net imports multiaddr"),
        ("gridnode/cli.py", "import sqlite3\n", "only gridnode/storage imports sqlite3"),
        ("gridnode/repo.py", "def f():\n    import sqlite3\n", "imports sqlite3"),
        ("gridnode/repo.py", "Q = 'SELECT value FROM meta WHERE name = ?'\n", "holds SQL"),
        (
            "gridnode/repo.py",
            "Q = 'INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)'\n",
            "SQL",
        ),
        ("gridnode/repo.py", "Q = 'DELETE FROM meta WHERE name = ?'\n", "holds SQL"),
        ("gridnode/repo.py", "Q = 'UPDATE meta SET value = 1'\n", "holds SQL"),
        ("gridnode/repo.py", "Q = 'CREATE TABLE IF NOT EXISTS t (a)'\n", "holds SQL"),
        ("gridnode/repo.py", "def f(c):\n    c.execute(f'PRAGMA {x}')\n", "holds SQL"),
        ("gridnode/repo.py", "def f(c):\n    c.execute('COMMIT')\n", "holds SQL"),
        ("gridnode/repo.py", "Q = 'select value from meta where name = ?'\n", "holds SQL"),
        ("crdt/log.py", "Q = 'SELECT * FROM log'\n", "holds SQL"),
    ],
)
def test_the_checker_catches_a_breach(path, source, rule):
    found = violations(path, source)
    assert found and all(f.startswith(f"{path}:") for f in found)
    assert any(rule in f for f in found), found


@pytest.mark.parametrize(
    "path, source",
    [
        ("crdt/log.py", "from __future__ import annotations\nimport hashlib\nimport cbor2\n"),
        ("crdt/stores/set.py", "from ..space import Space\nfrom . import base\n"),
        ("crdt/identity.py", "from nacl.signing import SigningKey\n"),
        ("protocols/sync.py", "from crdt.entry import Entry\nfrom protocols.wire import x\n"),
        ("gridnode/net/host.py", "import libp2p\nfrom multiaddr import Multiaddr\n"),
        ("gridnode/storage/sqlite.py", "import sqlite3\nQ = 'SELECT data FROM blocks'\n"),
        ("gridnode/seed/postgres.py", "Q = 'SELECT 1 FROM pg_index WHERE indrelid = %s'\n"),
        ("gridnode/node.py", "import trio\nimport socket\nfrom protocols import sync\n"),
        # Prose that names SQL words is not SQL.
        (
            "gridnode/cli.py",
            '"""Select the rows from the table, insert into the log, delete from the set,\n'
            "update the set of peers, create a table, drop the trigger; BEGIN and COMMIT\n"
            'happen in storage."""\n'
            "E = 'delete'\nF = 'the seeder will select a row from the outbox'\n",
        ),
    ],
)
def test_the_checker_lets_rooms_do_their_jobs(path, source):
    assert violations(path, source) == []
