"""``gridnode.toml``: the node's settings, in four layers, each over the one before.

1. the built-in defaults (:class:`Config`'s);
2. the **profile** the ``profile`` key names (:data:`PROFILES`: ``local``, today's loopback node;
   ``server``; ``home``), which changes a few of them;
3. the keys the file sets: the operator's values, which no profile overrides;
4. ``GRIDNODE_<KEY>`` environment variables.

So changing the profile (``gridnode init --profile``) changes only what the operator has not
set. The file gridnode writes therefore sets nothing but ``profile``: the other defaults are
comments. Files written before profiles existed held the defaults uncommented: in a file that
still begins with their header (:data:`OLD_HEADER`), a line still exactly as gridnode wrote it
(:data:`TEMPLATE_LINES`, before any table) is read as not set, since the operator never wrote
it; ``gridnode init --profile`` turns such lines into comments and the header into today's
(docs/decisions.md, "Profiles"). An unknown key or profile, or a value of the wrong type, is
refused with one :class:`ConfigError` naming it.

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
from protocols.gossip import MAX_ADDRS

__all__ = [
    "CONFIG_FILE",
    "DHT_MODES",
    "DURABILITIES",
    "PROFILES",
    "SECTIONS",
    "TEMPLATE_LINES",
    "Config",
    "ConfigError",
    "config_sources",
    "load_config",
    "set_profile",
    "write_default_config",
]

CONFIG_FILE: Final = "gridnode.toml"

# Issue 22, QUIC: the profiles that listen publicly listen on TCP and QUIC v1, on the same port
# number (one for the firewall to open, in both protocols); peers that speak QUIC dial it first.
_PUBLIC_LISTEN: Final = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]

#: What each profile changes from the built-in defaults (``local`` changes nothing).
PROFILES: Final[Mapping[str, Mapping[str, Any]]] = {
    # One machine, or tests: loopback only, a free port. The default.
    "local": {},
    # A machine with a public address (a VPS): reachable by everyone on a fixed port, and it
    # tells peers only its public addresses (its private ones would send them nowhere).
    "server": {
        "listen": _PUBLIC_LISTEN,
        "announce_private": False,
        "dht": True,
        "relay_service": True,
    },
    # A machine behind a home router's NAT: reachable on the LAN (and through the router if the
    # operator forwards port 4001, TCP and UDP), finds the other nodes of its own LAN by mDNS,
    # reserves slots on relays and announces the relayed addresses they give, and otherwise
    # replicates over the connections it dials out (docs/config.md, "Profiles").
    "home": {
        "listen": _PUBLIC_LISTEN,
        "mdns": True,
        "dht": True,
        "dht_mode": "auto",
        "relay_client": True,
    },
}

_DEFAULT_TEXT: Final = """\
# gridnode settings. The profile sets some of them (docs/config.md, "Profiles"): local (this
# machine only), server (public, port 4001) or home (behind a router's NAT); change it with
# `gridnode init --profile NAME`. The commented lines show the built-in defaults: uncomment and
# edit one to set it yourself, and no profile will change it. `gridnode config show` prints the
# effective settings and where each comes from. Environment variables override everything:
# GRIDNODE_<KEY> (lists comma-separated), e.g. GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001.

profile = "{profile}"

# Multiaddrs the node listens on (libp2p). Port 0 picks a free port. Listen on 0.0.0.0 (all
# interfaces) only on purpose.
# listen = ["/ip4/127.0.0.1/tcp/0"]

# Addresses the node tells its peers to reach it at, e.g. ["/ip4/203.0.113.7/tcp/4001"] or
# ["/dns4/replica.example.org/tcp/4001"]; empty: its listen addresses, 0.0.0.0 meaning each of
# this machine's addresses.
# announce = []

# Whether those derived addresses include private, loopback and link-local ones (the server
# profile announces only public ones).
# announce_private = true

# Peers to connect to at start (for example the primary server), as /ip4/.../tcp/N/p2p/<peer id>.
# bootstrap = []

# Seconds between anti-entropy ticks: changed heads are announced again at the next one, and
# every 10th sends each peer a summary of every database (docs/spec.md §10).
# announce_interval = 10.0

# Connections the node seeks through peer exchange (others may still connect to it).
# target_peers = 8

# Connections (in and out) beyond which new ones are refused.
# max_connections = 64

# Find gridnode nodes on the local network by mDNS. Off: announcing a node to everyone on a
# shared network would surprise its operator (the home profile turns it on).
# mdns = false

# Serve the blocks of the databases this node replicates and does not keep private to IPFS
# peers (Kubo, Helia) over bitswap, so they can fetch and pin them by CID.
# bitswap = true

# Host headers the local API and gateway answer besides its own loopback address
# (127.0.0.1:PORT, localhost:PORT, [::1]:PORT), e.g. ["gateway.example.org"] behind a reverse
# proxy. Any other Host is answered 421: a page on another site cannot reach the API through
# DNS rebinding.
# gateway_hosts = []

# Entries whose parents are missing wait for them, bounded: bytes in all per database, bytes per
# peer (the source they came from) per database, and seconds before they are dropped.
# pending_bytes = 67108864
# pending_bytes_per_peer = 16777216
# pending_seconds = 86400.0

# Catalogs this node follows (addresses of catalog databases): it follows every database each
# one lists, and stops following what is removed (docs/catalogs.md).
# catalogs = []

# Delete the data of a database when the node stops following it because no followed catalog
# lists it any more (off: it is kept, and 'db follow' takes it up again; docs/catalogs.md).
# drop_unlisted = false

# Bytes of storage the node may use (its SQLite file, and the file store's block directory);
# 0: no bound. At the bound it follows no new database, adds no file and stops pulling, and says
# so in its status, dashboard and log.
# max_storage = 0
# When a write is acknowledged: "full", on disk (it survives a power loss: one fsync per
# commit, shared by the writes that arrive together); "process", handed to the operating system
# (it survives a crash of gridnode, not of the machine; no fsync per commit).
# durability = "full"

# Signed snapshots (docs/spec.md §16). A fresh follow serves reads from the newest snapshot its
# peers offer (signed by one of the database's admins or by a key listed in snapshot_signers,
# between snapshot_min_age and snapshot_max_age seconds old; 0: no bound) while it verifies the
# history behind it; snapshots = false verifies everything before serving. snapshot_interval:
# seconds between snapshots of the databases this node administers (0: only on demand, with
# 'gridnode db snapshot publish').
# snapshots = true
# snapshot_signers = []
# snapshot_min_age = 0.0
# snapshot_max_age = 604800.0
# snapshot_interval = 0.0

# The DHT (Kademlia, IPFS's /ipfs/kad/1.0.0 and /ipfs/lan/kad/1.0.0; docs/spec.md §19): the node provides the manifest (and heads) of each database it holds and does not
# keep private, so other gridnodes and IPFS nodes find it by CID, and a follow that no connected
# peer can serve looks for the database's holders there. On in the server and home profiles.
# dht_mode: "server" answers DHT requests, "client" only asks and provides (for a node others
# cannot dial), "auto" (the home profile) answers on the public DHT only while AutoNAT finds the
# node publicly reachable. dht_reprovide_interval: seconds between providing everything again (records
# live 48 h).
# dht = false
# dht_mode = "server"
# dht_reprovide_interval = 43200.0

# Circuit relay v2 (docs/config.md, "Relays and NAT"). relay_service: relay connections for
# peers that cannot be dialled (the server profile turns it on), within these bounds: peers
# holding a reservation, circuits from or to one peer, seconds and bytes (both directions) before
# a circuit is cut. relay_client: hold reservations on connected relays and announce the
# /p2p-circuit addresses they give (the home profile turns it on).
# relay_service = false
# relay_client = false
# relay_max_reservations = 128
# relay_max_circuits_per_peer = 4
# relay_circuit_seconds = 600.0
# relay_circuit_bytes = 67108864
# Hole punching (DCUtR): replace a relayed connection by a direct one where the NATs allow.
# hole_punching = true
# AutoNAT: answer peers' dial-back requests (a new connection, proving the key), and ask peers to
# dial this node back: publicly reachable, it announces where it was reached and no relayed
# addresses; not reachable, its relayed ones.
# autonat = true
"""

#: The first line of every default file gridnode wrote before profiles: it marks an old file.
OLD_HEADER: Final = "# gridnode settings. Every key is optional; the values below are the defaults."
_OLD_HEADER_LINES: Final = frozenset(
    {
        OLD_HEADER,
        "# Environment variables override them: GRIDNODE_<KEY> (lists comma-separated), e.g.",
        "# GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001 GRIDNODE_MDNS=true. docs/config.md lists them all.",
        "# Environment variables override them: GRIDNODE_LISTEN, GRIDNODE_BOOTSTRAP (comma-separated).",
    }
)

#: The lines of those old default files (every version since the first): in a file that still
#: begins with :data:`OLD_HEADER`, such a line before any table is read as not set, since the
#: operator never wrote it.
TEMPLATE_LINES: Final = frozenset(
    {
        'listen = ["/ip4/127.0.0.1/tcp/0"]',
        "bootstrap = []",
        "announce_interval = 10.0",
        "target_peers = 8",
        "max_connections = 64",
        "mdns = false",
        "bitswap = true",
        "gateway_hosts = []",
        "pending_bytes = 67108864",
        "pending_bytes_per_peer = 16777216",
        "pending_seconds = 86400.0",
        "catalogs = []",
        "max_storage = 0",
    }
)


#: Bounds of ``announce``: what a peer record carries (protocols/gossip.py: 16 addresses of at
#: most 256 characters, each with ``/p2p/`` and a peer id of up to 52 characters appended).
ANNOUNCE_MAX: Final = MAX_ADDRS
ANNOUNCE_MAX_CHARS: Final = 192

#: Tables of gridnode.toml read by the parts of the node they configure, not by :class:`Config`
#: (``[[seed.postgres]]``: :mod:`gridnode.seed.config`).
SECTIONS: Final = ("seed",)


@dataclass(frozen=True)
class Config:
    """The effective settings. ``profile`` names the profile :func:`load_config` applied; a
    ``Config`` made directly holds exactly the values given (no profile is applied)."""

    profile: str = "local"
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    announce: list[str] = field(default_factory=list)
    announce_private: bool = True
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
    durability: str = "full"
    snapshots: bool = True
    snapshot_signers: list[str] = field(default_factory=list)
    snapshot_min_age: float = 0.0
    snapshot_max_age: float = 604800.0
    snapshot_interval: float = 0.0
    # Issue 22, discovery (gridnode/net/dht.py, gridnode/node/providers.py).
    dht: bool = False
    dht_mode: str = "server"
    dht_reprovide_interval: float = 43200.0
    # Issue 22: relays, hole punching, reachability (gridnode/net/relay.py).
    relay_service: bool = False
    relay_client: bool = False
    relay_max_reservations: int = 128
    relay_max_circuits_per_peer: int = 4
    relay_circuit_seconds: float = 600.0
    relay_circuit_bytes: int = 64 * 1024 * 1024
    hole_punching: bool = True
    autonat: bool = True


#: The values of ``durability``: ``full``, every acknowledged write survives a power loss (one
#: fsync per commit); ``process``, it survives the process (a crash, SIGKILL), not the machine.
DURABILITIES: Final = ("full", "process")

#: The values of ``dht_mode``: ``server`` answers DHT requests (and is put in others' routing
#: tables), ``client`` only asks and provides (for a node others cannot dial), ``auto`` is a
#: server on the public DHT only while AutoNAT finds the node publicly reachable.
DHT_MODES: Final = ("server", "client", "auto")


def _check_profile(name: str) -> None:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r} (one of {', '.join(PROFILES)})")


def write_default_config(data_dir: Path, profile: str = "local") -> bool:
    """Write the commented default config, naming ``profile``, if there is none; return whether
    it was written."""
    _check_profile(profile)
    path = data_dir / CONFIG_FILE
    if path.exists():
        return False
    # 0600 whatever the umask: the file may come to hold a PostgreSQL DSN with its password.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, _DEFAULT_TEXT.format(profile=profile).encode())
    finally:
        os.close(fd)
    return True


def set_profile(data_dir: Path, profile: str) -> bool:
    """Make the config name ``profile`` (writing the default file if there is none); return
    whether the file changed.

    Only the ``profile`` line changes, and the lines of an old default file still as gridnode
    wrote them (:data:`TEMPLATE_LINES`) become comments, which they already meant: a value the
    operator set stays, and still wins over the profile. The file is replaced whole (written
    aside, then renamed), mode 0600.
    """
    _check_profile(profile)
    if write_default_config(data_dir, profile):
        return True
    path = data_dir / CONFIG_FILE
    text = path.read_text()
    _parse(text, path)  # an unreadable file is not rewritten
    lines = text.splitlines()
    old = _is_old(text)
    if old:
        # The file stops being an old one: from now on every line in it is the operator's.
        lines = [line for line in lines if line.rstrip() not in _OLD_HEADER_LINES]
        header = _DEFAULT_TEXT.split("\n\n", 1)[0].splitlines()
        lines = header + lines
    wanted = f"profile = {_toml_string(profile)}"
    changed: list[str] = []
    placed = False
    in_table = False
    for line in lines:
        if line.lstrip().startswith("["):
            in_table = True
        if not in_table and _key_of(line) == "profile":
            changed.append(wanted)
            placed = True
        elif old and not in_table and line.rstrip() in TEMPLATE_LINES:
            changed.append("# " + line.rstrip())
        else:
            changed.append(line)
    if not placed:
        # After the opening comments, before every key: top-level keys must precede the tables.
        at = next((i for i, line in enumerate(changed) if line.strip()[:1] not in ("", "#")), None)
        at = len(changed) if at is None else at
        if at < len(changed):
            changed[at:at] = [wanted, ""]
        else:
            changed += ["", wanted] if changed else [wanted]
    new_text = "\n".join(changed) + "\n"
    if new_text == text:
        return False
    aside = path.with_name(CONFIG_FILE + ".new")
    aside.unlink(missing_ok=True)
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, new_text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(aside, path)
    return True


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key_of(line: str) -> str | None:
    """The bare key a top-level ``key = value`` line sets, if it is one."""
    name, equals, _ = line.partition("=")
    name = name.strip()
    if not equals or not name or not all(c.isalnum() or c in "_-" for c in name):
        return None
    return name


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _is_old(text: str) -> bool:
    return text.startswith(OLD_HEADER)


def _operator_text(text: str) -> str:
    """The file without the lines gridnode wrote in an old default file (see the module's doc)."""
    if not _is_old(text):
        return text
    kept = []
    in_table = False
    for line in text.splitlines():
        if line.lstrip().startswith("["):
            in_table = True
        if not in_table and line.rstrip() in TEMPLATE_LINES:
            continue
        kept.append(line)
    return "\n".join(kept)


def _check(key: str, value: Any, where: str) -> Any:
    default = getattr(Config(), key)
    if key == "profile":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: profile must be a string")
        if value not in PROFILES:
            raise ConfigError(f"{where}: unknown profile {value!r} (one of {', '.join(PROFILES)})")
        return value
    if key == "dht_mode":
        if value not in DHT_MODES:
            raise ConfigError(f"{where}: dht_mode must be one of {', '.join(DHT_MODES)}")
        return value
    if key == "durability":
        if value not in DURABILITIES:
            raise ConfigError(f"{where}: durability must be one of {', '.join(DURABILITIES)}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings")
        if key == "announce" and (
            len(value) > ANNOUNCE_MAX
            or not all(v.startswith("/") and len(v) <= ANNOUNCE_MAX_CHARS for v in value)
        ):
            # Peers refuse a peer record beyond these (protocols/gossip.py): the node would be
            # announcing nothing at all.
            raise ConfigError(
                f"{where}: announce must be at most {ANNOUNCE_MAX} multiaddrs "
                f"of at most {ANNOUNCE_MAX_CHARS} characters"
            )
        return list(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: {key} must be a non-negative integer")
        if key in _AT_LEAST_ONE and value < 1:
            raise ConfigError(f"{where}: {key} must be at least 1")
        return value
    if key in _ZERO_MEANS_NONE:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"{where}: {key} must be a non-negative number")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where}: {key} must be a positive number")
    return float(value)


#: Integer settings that must be at least 1.
_AT_LEAST_ONE: Final = frozenset(
    {
        "max_connections",
        "relay_max_reservations",
        "relay_max_circuits_per_peer",
        "relay_circuit_bytes",
    }
)

#: Seconds settings where 0 means "no bound" or "never" rather than being refused.
_ZERO_MEANS_NONE: Final = frozenset({"snapshot_min_age", "snapshot_max_age", "snapshot_interval"})


def _from_env(key: str, text: str) -> Any:
    default = getattr(Config(), key)
    if isinstance(default, str):
        return text.strip()
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


def _layers(
    data_dir: Path, environ: Mapping[str, str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The effective values and where each comes from."""
    env = os.environ if environ is None else environ
    path = data_dir / CONFIG_FILE
    in_file: dict[str, Any] = {}
    if path.exists():
        text = path.read_text()
        _parse(text, path)  # a syntax error is reported at its line in the file as it is
        in_file = _parse(_operator_text(text), path)
    known = [f.name for f in fields(Config)]
    for key in in_file:
        if key not in known and key not in SECTIONS:
            raise ConfigError(f"{path}: unknown setting {key!r}")
    from_file = {key: _check(key, in_file[key], str(path)) for key in known if key in in_file}
    from_env = {}
    for key in known:
        variable = "GRIDNODE_" + key.upper()
        if variable in env:
            from_env[key] = _check(key, _from_env(key, env[variable]), variable)
    profile = from_env.get("profile", from_file.get("profile", Config.profile))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in known:
        if key in from_env:
            values[key], sources[key] = from_env[key], "env GRIDNODE_" + key.upper()
        elif key in from_file:
            values[key], sources[key] = from_file[key], "file"
        elif key in PROFILES[profile]:
            values[key], sources[key] = _copy(PROFILES[profile][key]), "profile " + profile
        else:
            values[key], sources[key] = getattr(Config(), key), "default"
    values["profile"] = profile
    return values, sources


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def load_config(data_dir: Path, environ: Mapping[str, str] | None = None) -> Config:
    """The effective config: defaults, then the profile, then the file, then the environment."""
    values, _ = _layers(data_dir, environ)
    return Config(**values)


def config_sources(data_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where each setting of :func:`load_config` comes from: ``"default"``, ``"profile NAME"``,
    ``"file"`` (``gridnode.toml``) or ``"env GRIDNODE_<KEY>"``. Raises :class:`ConfigError` as
    ``load_config`` does."""
    _, sources = _layers(data_dir, environ)
    return sources
