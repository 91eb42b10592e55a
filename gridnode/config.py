"""``gridnode.toml``: the node's settings, each with a default; ``GRIDNODE_...`` variables override.

Every setting is listed in docs/config.md.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from crdt.errors import GridnodeError

__all__ = ["CONFIG_FILE", "Config", "ConfigError", "load_config", "write_default_config"]

CONFIG_FILE: Final = "gridnode.toml"

_DEFAULT_TEXT: Final = """\
# gridnode settings. Every key is optional; the values below are the defaults.
# Environment variables override them: GRIDNODE_LISTEN, GRIDNODE_BOOTSTRAP (comma-separated).

# Multiaddrs the node listens on (libp2p). Port 0 picks a free port.
listen = ["/ip4/127.0.0.1/tcp/0"]

# Peers to connect to at start (for example the primary server).
bootstrap = []
"""


class ConfigError(GridnodeError, ValueError):
    """A setting with a wrong type or value; the message names the key."""


@dataclass(frozen=True)
class Config:
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)


def write_default_config(data_dir: Path) -> bool:
    """Write the commented default config if there is none; return whether it was written."""
    path = data_dir / CONFIG_FILE
    if path.exists():
        return False
    path.write_text(_DEFAULT_TEXT)
    return True


def _list_of_str(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{CONFIG_FILE}: {key} must be a list of strings")
    return list(value)


def load_config(data_dir: Path, environ: dict[str, str] | None = None) -> Config:
    """The effective config: defaults, then the file, then the environment."""
    env = os.environ if environ is None else environ
    path = data_dir / CONFIG_FILE
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    known = {f.name for f in fields(Config)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}")
    for key in known:
        variable = "GRIDNODE_" + key.upper()
        if variable in env:
            values[key] = [v for v in env[variable].split(",") if v]
    return Config(
        listen=_list_of_str("listen", values.get("listen", Config().listen)),
        bootstrap=_list_of_str("bootstrap", values.get("bootstrap", [])),
    )
