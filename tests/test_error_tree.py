"""One error tree: every error gridnode raises is a GridnodeError defined in its floor's errors module.

Three modules define errors, one per floor: ``crdt/errors.py``, ``protocols/errors.py`` and
``gridnode/errors.py``. An exception class defined anywhere else is either private control flow
(a leading underscore: never seen by a caller) or the command line's presentation of an error
(a click exception, in ``gridnode/cli``). The names docs/embedding.md tells an embedder to catch
are importable from ``gridnode`` and are GridnodeErrors.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import gridnode
from crdt.errors import GridnodeError

ROOT = Path(__file__).resolve().parent.parent
ERROR_MODULES = {"crdt/errors.py", "protocols/errors.py", "gridnode/errors.py"}
#: Base-class names that make a class an exception (as written in a class statement).
EXCEPTION_BASES = re.compile(r"(Error|Exception|Exit|Abort|Interrupt|Cancelled)$")


def _sources() -> list[Path]:
    return sorted(
        p for top in ("crdt", "protocols", "gridnode") for p in (ROOT / top).rglob("*.py")
    )


def _exception_classes(tree: ast.AST) -> list[tuple[str, int, list[str]]]:
    """``(name, line, base names)`` of each class whose bases look like exceptions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            if any(EXCEPTION_BASES.search(b.split(".")[-1]) for b in bases):
                found.append((node.name, node.lineno, bases))
    return found


def stray_errors(source: str, relative: str) -> list[str]:
    """Public exception classes defined outside the three errors modules."""
    if relative in ERROR_MODULES:
        return []
    out = []
    for name, line, bases in _exception_classes(ast.parse(source)):
        if name.startswith("_"):
            continue  # private control flow, never raised to a caller
        if relative.startswith("gridnode/cli") and any(b.startswith("click.") for b in bases):
            continue  # the command line's presentation of an error
        out.append(f"{relative}:{line}: class {name}({', '.join(bases)})")
    return out


def test_errors_are_defined_only_in_the_floors_errors_modules():
    strays = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        strays += stray_errors(path.read_text(), relative)
    assert strays == [], "define errors in crdt/, protocols/ or gridnode/errors.py:\n" + "\n".join(
        strays
    )


def test_the_checker_finds_a_stray_error():
    source = "class Refused(ValueError):\n    pass\n\nclass _Flow(Exception):\n    pass\n"
    assert stray_errors(source, "gridnode/somewhere.py") == [
        "gridnode/somewhere.py:1: class Refused(ValueError)"
    ]
    assert stray_errors(source, "gridnode/errors.py") == []


@pytest.mark.parametrize("module", ["crdt.errors", "protocols.errors", "gridnode.errors"])
def test_every_error_of_a_floor_is_a_gridnode_error(module):
    loaded = importlib.import_module(module)
    classes = [
        value
        for value in vars(loaded).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == module
    ]
    assert classes
    assert [c.__name__ for c in classes if not issubclass(c, GridnodeError)] == []


def test_the_errors_an_embedder_catches_are_exported_and_documented():
    text = (ROOT / "docs" / "embedding.md").read_text()
    rows = [line for line in text.splitlines() if line.strip().startswith("| `gridnode.")]
    first_cells = [row.split("|")[1].split("(")[0] for row in rows]
    named = {n for cell in first_cells for n in re.findall(r"`(?:gridnode\.)?([A-Z]\w+)`", cell)}
    assert {"NotFound", "UnknownDatabase", "InvalidOperation", "NotAWriter"} <= named
    for name in named:
        error = getattr(gridnode, name)
        assert issubclass(error, GridnodeError), name
        assert name in gridnode.__all__, name
    # No HTTP names in the embedding API.
    for http_name in ("BadRequest", "Conflict", "InvalidOp", "ApiError"):
        assert not hasattr(gridnode, http_name), http_name
