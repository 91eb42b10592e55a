"""What ships: the wheel (modules, package data, the command), the Dockerfile, and the deployment
examples (systemd unit, Akash SDL, docker-compose). No Docker engine runs in CI, so the container
files are checked for their structure, not run; the systemd unit is checked by systemd-analyze
where it is installed."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def load(name):
    return yaml.safe_load((EXAMPLES / name).read_text())


# -- the wheel -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_holds_every_module_the_dashboard_and_the_command(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("gridnode-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("crdt", "protocols", "gridnode"):
        for module in (ROOT / package).rglob("*.py"):
            assert str(module.relative_to(ROOT)) in names, module
    for data in ("gridnode/py.typed", "gridnode/api/static/dashboard.html"):
        assert data in names
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "gridnode = gridnode.cli:main" in zipfile.ZipFile(wheel).read(info).decode()


# -- the README's install on a machine without a C compiler -----------------------------------------

COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "tcc", "x86_64-linux-gnu-gcc")
# Published as source only, and pure Python: building them needs no compiler.
PURE_PYTHON_SOURCES = {"gridnode", "varint", "python-baseconv"}


def _readme_install():
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Two commands\n(.*?)(?=^## )", readme, re.S | re.M).group(1)
    first = re.findall(r"```sh\n(.*?)```", section, re.S)[0].strip()
    install = first.removesuffix(" && gridnode start")
    assert install != first, first
    return install


@pytest.mark.slow
def test_the_readme_install_needs_no_c_compiler(tmp_path):
    """The README's first command, up to ``gridnode start``, run as written in a fresh virtualenv
    (a copy of what the Dockerfile copies, so nothing built before is reused) with PATH holding only
    the venv's bin (no gcc, cc, c++, clang: checked), CC/CXX pointing nowhere, and no pip or uv
    cache: it succeeds, the only packages built from source are known pure-Python ones, py-libp2p
    0.8.1 sits with a fastecdsa 4 wheel, and the installed command and libp2p's secio module (the
    one user of fastecdsa) import. Checked to fail with pyproject.toml's [tool.uv] override removed
    (uv then builds fastecdsa 2.3.2 from source and fails: "No such file or directory:
    '/nonexistent/cc'")."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("crdt", "protocols", "gridnode"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    path = str(venv / "bin")
    assert [c for c in COMPILERS if shutil.which(c, path=path)] == []
    # The machine's network settings (proxy, CA certificates) stay; its tools and caches do not.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "UV_", "CONDA")) and k not in ("VIRTUAL_ENV", "PATH")
    }
    env.update(
        PATH=path,
        HOME=str(tmp_path / "home"),
        VIRTUAL_ENV=str(venv),
        CC="/nonexistent/cc",
        CXX="/nonexistent/c++",
        PIP_NO_CACHE_DIR="1",
        UV_NO_CACHE="1",
    )
    proc = subprocess.run(
        ["/bin/bash", "-euo", "pipefail", "-c", _readme_install()],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    built = set(re.findall(r"^\s*Built (\S+?)(?:==| @)", proc.stderr, re.M))
    assert "gridnode" in built and built <= PURE_PYTHON_SOURCES, built
    check = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from importlib.metadata import version as v\n"
            "import gridnode.net.host, libp2p.security.secio.transport\n"
            "print(v('libp2p'), v('fastecdsa'))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    libp2p_version, fastecdsa_version = check.stdout.split()
    assert libp2p_version == "0.8.1" and fastecdsa_version.startswith("4."), check.stdout
    helped = subprocess.run(
        [str(venv / "bin" / "gridnode"), "--help"], env=env, capture_output=True, timeout=120
    )
    assert helped.returncode == 0, helped.stderr


# -- Dockerfile ------------------------------------------------------------------------------------


def test_the_image_runs_the_node_as_a_user_with_a_data_volume_and_a_healthcheck():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    instructions = {}
    for line in lines:
        word, _, rest = line.partition(" ")
        instructions.setdefault(word, []).append(rest)
    user = instructions["USER"][-1]
    assert user not in ("root", "0")
    assert 'VOLUME ["/data"]' in lines
    assert "GRIDNODE_DATA_DIR=/data" in instructions["ENV"]
    # TCP and QUIC (issue 22), on the same port, both exposed.
    assert (
        "GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1" in instructions["ENV"]
    )
    assert instructions["EXPOSE"] == ["4001/tcp 4001/udp"]
    (healthcheck,) = instructions["HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["gridnode", "health"]')
    assert instructions["ENTRYPOINT"] == ['["gridnode"]'] and instructions["CMD"] == ['["start"]']
    # The user owns the data directory.
    assert re.search(r"useradd .*--uid 10001 .*gridnode", (ROOT / "Dockerfile").read_text())
    assert "chown gridnode /data" in (ROOT / "Dockerfile").read_text()


def test_the_image_installs_as_the_readme_does_without_a_compiler():
    text = (ROOT / "Dockerfile").read_text()
    runs = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "python -m uv pip install --no-cache ." in runs
    for word in ("gcc", "libgmp", "build-essential", "apt-get"):
        assert word not in runs, word


# -- docker-compose --------------------------------------------------------------------------------


def test_compose_runs_three_nodes_bootstrapping_to_the_first():
    compose = load("docker-compose.yml")
    services = compose["services"]
    assert sorted(services) == ["node1", "node2", "node3"]
    ips = {}
    for name, service in services.items():
        assert service["image"] == "gridnode:local"
        assert service["build"]["context"] == ".."
        assert (EXAMPLES / service["build"]["context"] / "Dockerfile").is_file()
        assert service["healthcheck"]["test"] == ["CMD", "gridnode", "health"]
        assert f"{name}-data:/data" in service["volumes"]
        ips[name] = service["networks"]["gridnet"]["ipv4_address"]
        script = service["command"][0]
        assert "exec gridnode start" in script
    assert set(compose["volumes"]) == {"node1-data", "node2-data", "node3-data"}
    assert len(set(ips.values())) == 3
    # node1 publishes its peer id in its data dir; the others read it there and bootstrap to it.
    assert "> /data/peer-id" in services["node1"]["command"][0]
    assert services["node1"]["ports"] == ["4001:4001", "4001:4001/udp"]
    for name in ("node2", "node3"):
        service = services[name]
        assert "node1-data:/node1:ro" in service["volumes"]
        assert service["depends_on"] == {"node1": {"condition": "service_healthy"}}
        assert f'--bootstrap "/ip4/{ips["node1"]}/tcp/4001/p2p/' in service["command"][0]
        assert "/node1/peer-id" in service["command"][0]
    subnet = compose["networks"]["gridnet"]["ipam"]["config"][0]["subnet"]
    assert all(ip.startswith(subnet.rsplit(".", 1)[0] + ".") for ip in ips.values())


# -- Akash -----------------------------------------------------------------------------------------


def test_the_akash_sdl_deploys_one_community_node_with_persistent_data():
    sdl = load("akash/deploy.yaml")
    assert sdl["version"] == "2.0"
    (name,) = sdl["services"]
    service = sdl["services"][name]
    assert service["image"]
    # TCP and QUIC on UDP (issue 22), both on port 4001.
    assert sorted(e["proto"] for e in service["expose"]) == ["tcp", "udp"]
    for expose in service["expose"]:
        assert expose["port"] == 4001 and expose["as"] == 4001
        assert expose["to"] == [{"global": True}]
    listen = "GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1"
    assert listen in service["env"]
    assert any(e.startswith("GRIDNODE_BOOTSTRAP=") for e in service["env"])
    mounts = service["params"]["storage"]
    (volume,) = mounts
    assert mounts[volume]["mount"] == "/data" and mounts[volume]["readOnly"] is False
    resources = sdl["profiles"]["compute"][name]["resources"]
    assert resources["cpu"]["units"] > 0 and resources["memory"]["size"].endswith("Gi")
    persistent = [s for s in resources["storage"] if s.get("name") == volume]
    assert persistent and persistent[0]["attributes"]["persistent"] is True
    placements = sdl["profiles"]["placement"]
    (placement,) = placements
    price = placements[placement]["pricing"][name]
    assert price["denom"] == "uakt" and price["amount"] > 0
    assert sdl["deployment"][name][placement] == {"profile": name, "count": 1}


# -- systemd ---------------------------------------------------------------------------------------


def _unit():
    sections = {}
    current = None
    for line in (EXAMPLES / "systemd" / "gridnode.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_the_systemd_unit_is_hardened():
    service = _unit()["Service"]
    assert service["ExecStart"][0].endswith("--data-dir ${STATE_DIRECTORY} start")
    assert service["DynamicUser"] == ["yes"] and service["StateDirectory"] == ["gridnode"]
    assert service["Restart"] == ["on-failure"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert service[key] == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]
    assert service["CapabilityBoundingSet"] == [""]
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verifies_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (it ships with systemd)")
    gridnode = shutil.which("gridnode") or str(Path(sys.executable).parent / "gridnode")
    # verify checks that ExecStart's program exists: point it at this environment's gridnode.
    text = (EXAMPLES / "systemd" / "gridnode.service").read_text()
    unit = tmp_path / "gridnode.service"
    unit.write_text(text.replace("/usr/local/bin/gridnode", gridnode))
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "gridnode.service" not in proc.stderr, proc.stderr
