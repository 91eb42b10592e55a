"""Real NAT for the fault tests: a public segment and home segments behind nftables routers.

    primary (p0) --+                                  +-- r1 (NAT) --lan-- h1.0, h1.1 ...
                   pub (bridge, 11.7.0.0/24) ---------+
    community (p1) +                                  +-- r2 (NAT) --lan-- h2.0 ...

Every box is a network namespace. The public segment is a bridge in a hub namespace; a public
node's ``eth0`` has ``11.7.0.<index+1>/24`` on it (an address Python calls global, so the
``server`` profile announces it: the namespaces reach nothing outside this machine). Home
segment ``k`` is a router namespace ``r<k>`` with ``wan`` (``11.7.0.<100+k>``) on the public
bridge and ``lan`` (``192.168.<k>.1/24``) a bridge of its own, the home nodes' ``eth0`` on it
(``192.168.<k>.<10+j>``, default route via the router). The router forwards and masquerades what
leaves ``wan`` with nftables; nothing is forwarded in (no port forwarding), conntrack lets in
only replies (and, for UDP, packets from the endpoint a mapping was made towards), and whatever
else reaches the router from ``wan`` is dropped silently, as most home routers do (without that
rule the router's kernel answers a SYN to a port it does not listen on with a RST, and the RST
kills the other side's half of a TCP hole punch: docs/reliability.md, "Issue 22"):

- ``cone``: ``masquerade``: the source port is kept where free, and one local port maps to one
  public port whatever the destination (endpoint-independent mapping, what hole punching needs);
- ``symmetric``: ``masquerade fully-random``: every new flow gets a random public port
  (endpoint-dependent mapping: the port a peer observed is useless to any other peer).

The public nodes cannot route to 192.168.0.0/16 at all, nor can one home reach another's LAN:
a home node is reachable only over connections it dialled out. :func:`probe_mapping` proves the
NAT kinds by what the public side sees. Every namespace (and with it every veth, bridge and nft
table) and every process is removed by :meth:`NatNetwork.close`, whatever happened.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "faults_conftest_nat", Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)

node_proc = faults.node_proc
ip = faults.ip

PUBLIC = "11.7.0"
PORT = 4001
NAT_RULES = {
    "cone": "masquerade",
    "symmetric": "masquerade fully-random",
}


def nft(ns: str, rules: str) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"],
        input=rules,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"nft refused the rules: {done.stderr}\n{rules}"


def run_in(ns: str, *command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Home:
    """One home segment: its router namespace, NAT kind and the home hosts behind it."""

    index: int
    nat: str
    router: str
    wan: str
    hosts: list[str] = field(default_factory=list)

    def lan(self, j: int) -> str:
        return f"192.168.{self.index}.{10 + j}"


class NatNetwork(faults.Namespaces):
    """The namespaces, the routers' NAT and the node processes in them."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, "gnn")
        self.homes: list[Home] = []
        self.bridge(self.hub, "pub")

    # -- topology -----------------------------------------------------------------------------

    def public_ns(self, index: int) -> str:
        return f"{self.prefix}-p{index}"

    def public_ip(self, index: int) -> str:
        return f"{PUBLIC}.{index + 1}"

    def add_public(self, index: int) -> str:
        """A namespace on the public segment with ``11.7.0.<index+1>``; its name."""
        ns = self.public_ns(index)
        self._add_ns(ns)
        self.plug(ns, f"{self.public_ip(index)}/24", outer=f"vp{index}", bridge="pub")
        return ns

    def add_home(self, nat: str, hosts: int = 1, unsolicited: str = "drop") -> Home:
        """A home segment behind a router doing ``nat`` (``cone`` or ``symmetric``), with
        ``hosts`` home hosts on its LAN. ``unsolicited``: what the router does with a packet
        from ``wan`` that is no reply: ``drop`` it (most home routers), or ``reset``: leave it
        to the kernel, which answers a TCP SYN with a RST (a router that "rejects")."""
        k = len(self.homes) + 1
        router = f"{self.prefix}-r{k}"
        self._add_ns(router)
        home = Home(k, nat, router, f"{PUBLIC}.{100 + k}")
        self.plug(router, f"{home.wan}/24", outer=f"vr{k}", bridge="pub", inner="wan")
        self.bridge(router, "lan")
        ip("-n", router, "addr", "add", f"192.168.{k}.1/24", "dev", "lan")
        run_in(router, "sysctl", "-qw", "net.ipv4.ip_forward=1").check_returncode()
        nft(
            router,
            "table ip gridnat {\n"
            "  chain post {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    oifname "wan" {NAT_RULES[nat]}\n'
            "  }\n"
            "  chain forward_in {\n"
            "    type filter hook forward priority filter; policy drop;\n"
            '    iifname "lan" oifname "wan" accept\n'
            # Hosts of one LAN talk to each other (a switch), also where the kernel passes
            # bridged frames through this hook (br_netfilter).
            f"    ip saddr 192.168.{k}.0/24 ip daddr 192.168.{k}.0/24 accept\n"
            '    iifname "wan" ct state established,related accept\n'
            "  }\n"
            + (
                "  chain input_wan {\n"
                "    type filter hook input priority filter; policy accept;\n"
                '    iifname "wan" ct state established,related accept\n'
                '    iifname "wan" drop\n'
                "  }\n"
                if unsolicited == "drop"
                else ""
            )
            + "}\n",
        )
        self.homes.append(home)
        for _ in range(hosts):
            self.add_home_host(home)
        return home

    def add_home_host(self, home: Home) -> str:
        j = len(home.hosts)
        ns = f"{self.prefix}-h{home.index}x{j}"
        self._add_ns(ns)
        self.plug(ns, f"{home.lan(j)}/24", outer=f"l{j}", bridge=(home.router, "lan"))
        ip("-n", ns, "route", "add", "default", "via", f"192.168.{home.index}.1")
        home.hosts.append(ns)
        return ns

    # -- nodes --------------------------------------------------------------------------------

    def start(
        self,
        ns: str,
        name: str,
        listen: str,
        *args: str,
        profile: str = "local",
        config: dict | None = None,
        wait: bool = True,
    ) -> node_proc.NodeProc:
        """A ``node_proc.py`` node in namespace ``ns``, data dir ``tmp/<name>``, its
        ``gridnode.toml`` naming ``profile`` and setting ``config`` (TOML values as JSON, which
        both read the same for strings, numbers, booleans and lists)."""
        data_dir = self.tmp_path / name
        write_config(data_dir, profile, config or {})
        proc = node_proc.NodeProc(data_dir, "--listen", listen, *args, netns=ns)
        self.procs.append(proc)
        if wait:
            proc.wait_ready()
        return proc


def write_config(data_dir: Path, profile: str, config: dict) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "gridnode.toml"
    if path.exists():
        return
    lines = [f'profile = "{profile}"'] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


# -- observing the NAT --------------------------------------------------------------------------

_ECHO = """
import socket, sys, json
ip, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
socks = []
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    s.settimeout(10)
    socks.append(s)
print("up", flush=True)
seen = []
for s in socks:
    data, addr = s.recvfrom(64)
    seen.append([s.getsockname()[1], addr[0], addr[1]])
print(json.dumps(seen), flush=True)
"""

_SEND = """
import socket, sys, time
local_ip, local_port, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((local_ip, local_port))
for _ in range(3):
    for target in targets:
        host, port = target.rsplit(":", 1)
        s.sendto(b"probe", (host, int(port)))
    time.sleep(0.2)
"""


def probe_mapping(
    net: NatNetwork, home: Home, host: int, publics: list[int], ports=(5001, 5002)
) -> list[tuple[str, int]]:
    """From one UDP socket on home host ``host`` (local port 40000), send to ``ports`` on each
    public node in ``publics``; return the (address, port) each of them saw it come from, in
    order. Behind ``cone`` they are all (router, 40000); behind ``symmetric``, random ports."""
    servers = []
    try:
        for index in publics:
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    net.public_ns(index),
                    sys.executable,
                    "-c",
                    _ECHO,
                    net.public_ip(index),
                    *map(str, ports),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            servers.append(proc)
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "up", proc.stderr.read() if proc.stderr else ""
        targets = [f"{net.public_ip(i)}:{p}" for i in publics for p in ports]
        sent = run_in(
            home.hosts[host], sys.executable, "-c", _SEND, home.lan(host), "40000", *targets
        )
        assert sent.returncode == 0, sent.stderr
        seen: list[tuple[str, int]] = []
        for proc in servers:
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err
            seen += [
                (addr, port) for _local, addr, port in json.loads(out.strip().splitlines()[-1])
            ]
        return seen
    finally:
        for proc in servers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def tcp_peers(ns: str, port: int = PORT) -> list[tuple[str, int, str, int]]:
    """Established TCP connections in ``ns`` with ``port`` at one end: (local ip, local port,
    peer ip, peer port) as ``ss`` shows them."""
    out = run_in(ns, "ss", "-tnH", "state", "established").stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        local, peer = parts[-2], parts[-1]
        lip, lport = local.rsplit(":", 1)
        pip, pport = peer.rsplit(":", 1)
        if port in (int(lport), int(pport)):
            rows.append((lip, int(lport), pip, int(pport)))
    return rows


def tcp_dial(ns: str, host: str, port: int, timeout: float = 3.0) -> str:
    """Try a TCP connection from ``ns`` to ``host:port``: ``"connected"`` or why not."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(); s.settimeout(float(sys.argv[3]))\n"
        "try:\n"
        "    s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = run_in(
        ns, sys.executable, "-c", code, host, str(port), str(timeout), timeout=timeout + 20
    )
    return done.stdout.strip() or done.stderr.strip()


@contextlib.contextmanager
def listening(ns: str, port: int):
    """A TCP listener on ``0.0.0.0:port`` in ``ns`` (accepting, then closing) for the block."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(); s.settimeout(60)\n"
        "print('up', flush=True)\n"
        "while True:\n"
        "    c, _ = s.accept(); c.close()\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "up"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)
