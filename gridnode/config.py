"""``gridnode.toml``: the node's settings, each with a default; ``GRIDNODE_...`` variables override.

Every setting is listed in docs/config.md.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from gridnode.errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "SECTIONS",
    "Config",
    "ConfigError",
    "config_sources",
    "load_config",
    "write_default_config",
]

CONFIG_FILE: Final = "gridnode.toml"

_DEFAULT_TEXT: Final = """\
# gridnode settings. Every key is optional; the values below are the defaults.
# Environment variables override them: GRIDNODE_<KEY> (lists comma-separated), e.g.
# GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001 GRIDNODE_MDNS=true. docs/config.md lists them all.

# Multiaddrs the node listens on (libp2p). Port 0 picks a free port. Listen on 0.0.0.0 (all
# interfaces) only on purpose.
listen = ["/ip4/127.0.0.1/tcp/0"]

# Peers to connect to at start (for example the primary server), as /ip4/.../tcp/N/p2p/<peer id>.
bootstrap = []

# Seconds between re-announcements of every database's heads (anti-entropy).
announce_interval = 10.0

# Connections the node seeks through peer exchange (others may still connect to it).
target_peers = 8

# Connections (in and out) beyond which new ones are refused.
max_connections = 64

# Find gridnode nodes on the local network by mDNS. Off: announcing a node to everyone on a
# shared network would surprise its operator.
mdns = false

# Serve the blocks of the databases this node replicates and does not keep private to IPFS
# peers (Kubo, Helia) over bitswap, so they can fetch and pin them by CID.
bitswap = true

# Host headers the local API and gateway answer besides its own loopback address
# (127.0.0.1:PORT, localhost:PORT, [::1]:PORT), e.g. ["gateway.example.org"] behind a reverse
# proxy. Any other Host is answered 421: a page on another site cannot reach the API through
# DNS rebinding.
gateway_hosts = []

# Entries whose parents are missing wait for them, bounded: bytes in all per database, bytes per
# peer (the source they came from) per database, and seconds before they are dropped.
pending_bytes = 67108864
pending_bytes_per_peer = 16777216
pending_seconds = 86400.0

# Catalogs this node follows (addresses of catalog databases): it follows every database each
# one lists, and stops following what is removed (docs/catalogs.md).
catalogs = []

# Delete the data of a database when the node stops following it because no followed catalog
# lists it any more (off: it is kept, and 'db follow' takes it up again; docs/catalogs.md).
drop_unlisted = false

# Bytes of storage the node may use (its SQLite file); 0: no bound. At the bound it follows no
# new database and stops pulling, and says so in its status, dashboard and log.
max_storage = 0
"""


#: Tables of gridnode.toml read by the parts of the node they configure, not by :class:`Config`
#: (``[[seed.postgres]]``: :mod:`gridnode.seed.config`).
SECTIONS: Final = ("seed",)


@dataclass(frozen=True)
class Config:
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    bootstrap: list[str] = field(default_factory=list)
    announce_interval: float = 10.0
    target_peers: int = 8
    max_connections: int = 64
    mdns: bool = False
    bitswap: bool = True
    gateway_hosts: list[str] = field(default_factory=list)
    pending_bytes: int = 64 * 1024 * 1024
    pending_bytes_per_peer: int = 16 * 1024 * 1024
    pending_seconds: float = 86400.0
    catalogs: list[str] = field(default_factory=list)
    drop_unlisted: bool = False
    max_storage: int = 0


def write_default_config(data_dir: Path) -> bool:
    """Write the commented default config if there is none; return whether it was written."""
    path = data_dir / CONFIG_FILE
    if path.exists():
        return False
    # 0600 whatever the umask: the file may come to hold a PostgreSQL DSN with its password.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, _DEFAULT_TEXT.encode())
    finally:
        os.close(fd)
    return True


def _check(key: str, value: Any, where: str) -> Any:
    default = getattr(Config(), key)
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings")
        return list(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: {key} must be a non-negative integer")
        if key == "max_connections" and value < 1:
            raise ConfigError(f"{where}: {key} must be at least 1")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where}: {key} must be a positive number")
    return float(value)


def _from_env(key: str, text: str) -> Any:
    default = getattr(Config(), key)
    if isinstance(default, list):
        return [v for v in text.split(",") if v]
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"GRIDNODE_{key.upper()}: {text!r} is not true or false")
    try:
        return int(text) if isinstance(default, int) else float(text)
    except ValueError:
        raise ConfigError(f"GRIDNODE_{key.upper()}: {text!r} is not a number") from None


def load_config(data_dir: Path, environ: Mapping[str, str] | None = None) -> Config:
    """The effective config: defaults, then the file, then the environment."""
    env = os.environ if environ is None else environ
    path = data_dir / CONFIG_FILE
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    known = [f.name for f in fields(Config)]
    for key in values:
        if key not in known and key not in SECTIONS:
            raise ConfigError(f"{path}: unknown setting {key!r}")
    checked = {key: _check(key, value, str(path)) for key, value in values.items() if key in known}
    for key in known:
        variable = "GRIDNODE_" + key.upper()
        if variable in env:
            checked[key] = _check(key, _from_env(key, env[variable]), variable)
    return Config(**checked)


def config_sources(data_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where each setting of :func:`load_config` comes from: ``"default"``, ``"file"``
    (``gridnode.toml``) or ``"env GRIDNODE_<KEY>"``. Raises :class:`ConfigError` as
    ``load_config`` does."""
    env = os.environ if environ is None else environ
    load_config(data_dir, env)
    path = data_dir / CONFIG_FILE
    in_file = tomllib.loads(path.read_text()) if path.exists() else {}
    sources = {}
    for item in fields(Config):
        variable = "GRIDNODE_" + item.name.upper()
        if variable in env:
            sources[item.name] = "env " + variable
        elif item.name in in_file:
            sources[item.name] = "file"
        else:
            sources[item.name] = "default"
    return sources
