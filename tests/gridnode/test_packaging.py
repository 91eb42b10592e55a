"""What ships: the wheel (modules, package data, the command), the Dockerfile, and the deployment
examples (systemd unit, Akash SDL, docker-compose). No Docker engine runs in CI, so the container
files are checked for their structure, not run; the systemd unit is checked by systemd-analyze
where it is installed."""

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
    assert "GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001" in instructions["ENV"]
    assert instructions["EXPOSE"] == ["4001"]
    (healthcheck,) = instructions["HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["gridnode", "health"]')
    assert instructions["ENTRYPOINT"] == ['["gridnode"]'] and instructions["CMD"] == ['["start"]']
    # The user owns the data directory.
    assert re.search(r"useradd .*--uid 10001 .*gridnode", (ROOT / "Dockerfile").read_text())
    assert "chown gridnode /data" in (ROOT / "Dockerfile").read_text()


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
    assert services["node1"]["ports"] == ["4001:4001"]
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
    (expose,) = service["expose"]
    assert expose["port"] == 4001 and expose["as"] == 4001 and expose["proto"] == "tcp"
    assert expose["to"] == [{"global": True}]
    assert "GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001" in service["env"]
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
