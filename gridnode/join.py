"""What ``gridnode join`` (and ``start --join``) records in ``gridnode.toml``: a catalog to follow
and the peers to reach it through, so that a plain ``gridnode start`` afterwards does the same.

The file is the operator's: this adds values to the list settings ``catalogs`` and
``bootstrap`` and changes nothing else (comments, other settings, order, ``[[seed.postgres]]``
tables). A setting already written on one line (``catalogs = [...]``) has its line rewritten
with the values added; a setting absent (or only in a comment) gets a line of its own before the
first table. It refuses a setting written over several lines (it would have to rewrite what the
operator laid out: edit it by hand), and checks the result is TOML with
the values in place before it replaces the file, atomically.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from gridnode.config import CONFIG_FILE, write_default_config
from gridnode.errors import ConfigError

__all__ = ["record_join"]

_TABLE = re.compile(r"^\s*\[")


def _line(key: str, values: Sequence[str]) -> str:
    # A JSON string of printable text is a TOML basic string.
    return f"{key} = [" + ", ".join(json.dumps(v) for v in values) + "]"


def _with_values(text: str, key: str, added: Sequence[str]) -> str:
    current = tomllib.loads(text).get(key, [])
    if not isinstance(current, list):
        raise ConfigError(f"{CONFIG_FILE}: {key} must be a list of strings")
    wanted = list(dict.fromkeys([*current, *added]))
    if wanted == current:
        return text
    lines = text.splitlines(keepends=True)
    single = re.compile(rf"^{re.escape(key)}\s*=\s*\[.*\]\s*(#.*)?$")
    if key in tomllib.loads(text):
        for i, line in enumerate(lines):
            if _TABLE.match(line):
                break
            if single.match(line.rstrip("\n")):
                lines[i] = _line(key, wanted) + "\n"
                return "".join(lines)
        raise ConfigError(
            f"{CONFIG_FILE}: {key} spans several lines; add {', '.join(added)} to it by hand"
        )
    at = next((i for i, line in enumerate(lines) if _TABLE.match(line)), len(lines))
    if at and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    lines.insert(at, _line(key, wanted) + "\n")
    return "".join(lines)


def record_join(data_dir: Path, catalogs: Sequence[str], peers: Sequence[str]) -> bool:
    """Add ``catalogs`` and ``peers`` (to ``bootstrap``) to the data directory's config, writing
    the default config first if there is none; return whether the file changed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    write_default_config(data_dir)
    path = data_dir / CONFIG_FILE
    before = path.read_text()
    try:
        text = _with_values(before, "catalogs", catalogs)
        text = _with_values(text, "bootstrap", peers)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if text == before:
        return False
    # Checked as TOML before the file is replaced: a bad file is never left behind.
    parsed = tomllib.loads(text)
    if not (
        set(catalogs) <= set(parsed.get("catalogs", []))
        and set(peers) <= set(parsed.get("bootstrap", []))
    ):
        raise ConfigError(f"{path}: the values did not land where expected; edit it by hand")
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return True
