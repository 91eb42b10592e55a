"""``gridnode config show`` (effective settings and where each comes from) and ``gridnode health``."""

import json
import tomllib

from click.testing import CliRunner

import gridnode
from gridnode.cli import main
from gridnode.config import CONFIG_FILE, Config, config_sources, write_default_config


def invoke(data_dir, *args, env=None):
    return CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--log-level", "warning", *args], env=env or {}
    )


def test_sources(tmp_path):
    assert set(config_sources(tmp_path, environ={}).values()) == {"default"}
    (tmp_path / CONFIG_FILE).write_text("mdns = true\n")
    sources = config_sources(tmp_path, environ={"GRIDNODE_LISTEN": "/ip4/127.0.0.1/tcp/1"})
    assert sources["mdns"] == "file" and sources["listen"] == "env GRIDNODE_LISTEN"
    assert sources["bootstrap"] == "default"


def test_show_prints_toml_with_where_each_value_comes_from(tmp_path):
    data_dir = tmp_path / "node"
    # No data directory yet: the defaults (and the environment).
    fresh = invoke(data_dir, "config", "show", env={"GRIDNODE_TARGET_PEERS": "3"})
    assert fresh.exit_code == 0, fresh.output
    assert (
        fresh.stdout.splitlines()[0]
        == f"# {data_dir / CONFIG_FILE} (not there: defaults and environment only)"
    )
    assert "target_peers = 3" in fresh.stdout and "# env GRIDNODE_TARGET_PEERS" in fresh.stdout
    assert not data_dir.exists()

    data_dir.mkdir()
    write_default_config(data_dir)
    path = data_dir / CONFIG_FILE
    # Uncommented lines of the default file are the operator's values.
    text = path.read_text().replace("# mdns = false", "mdns = true")
    path.write_text(text.replace("# target_peers = 8", "target_peers = 8"))
    env = {
        "GRIDNODE_LISTEN": "/ip4/127.0.0.1/tcp/4001,/ip4/127.0.0.1/tcp/4002",
        "GRIDNODE_ANNOUNCE_INTERVAL": "10",
    }
    shown = invoke(data_dir, "config", "show", env=env)
    assert shown.exit_code == 0, shown.output
    lines = {line.split(" = ")[0]: line for line in shown.stdout.splitlines()[1:]}
    assert lines["listen"].endswith("# env GRIDNODE_LISTEN")
    assert lines["announce_interval"].endswith("# env GRIDNODE_ANNOUNCE_INTERVAL (= default)")
    assert lines["mdns"].startswith("mdns = true") and lines["mdns"].endswith("# file")
    assert lines["target_peers"].endswith("# file (= default)")
    assert set(lines) == {f for f in Config.__dataclass_fields__}
    # The output is TOML meaning the effective config.
    parsed = tomllib.loads(shown.stdout)
    assert parsed["listen"] == ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4002"]
    assert parsed["mdns"] is True and parsed["announce_interval"] == 10.0

    as_json = json.loads(invoke(data_dir, "config", "show", "--json", env=env).stdout)
    assert as_json["file_exists"] is True and as_json["file"] == str(path)
    assert as_json["settings"]["listen"]["source"] == "env GRIDNODE_LISTEN"
    assert as_json["settings"]["mdns"] == {"value": True, "source": "file"}
    # The lines the default file leaves commented are the defaults, not the operator's values.
    assert as_json["settings"]["bootstrap"] == {"value": [], "source": "default"}


def test_an_invalid_setting_is_one_line_naming_it(tmp_path):
    (tmp_path / CONFIG_FILE).write_text("max_connections = 0\n")
    result = invoke(tmp_path, "config", "show")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == f"error: {tmp_path / CONFIG_FILE}: max_connections must be at least 1\n"
    (tmp_path / CONFIG_FILE).write_text("")
    result = invoke(tmp_path, "config", "show", env={"GRIDNODE_MDNS": "perhaps"})
    assert result.exit_code == 1
    assert result.stderr == "error: GRIDNODE_MDNS: 'perhaps' is not true or false\n"


def test_health(tmp_path):
    result = invoke(tmp_path, "health")
    assert result.exit_code == 1 and result.stderr.startswith("error: no node runs on ")
    with gridnode.start_node(tmp_path, listen=["/ip4/127.0.0.1/tcp/0"]) as node:
        result = invoke(tmp_path, "health")
        assert result.exit_code == 0, result.output
        assert result.stdout == f"ok: node {node.peer_id} answers at {node.api_url}, 0 peers\n"
        report = json.loads(invoke(tmp_path, "health", "--json").stdout)
        assert report == {"ok": True, "peer_id": node.peer_id, "peers": 0, "api": node.api_url}
    # A node that died without removing its files does not count as healthy.
    (tmp_path / "api").write_text("http://127.0.0.1:9\n")
    (tmp_path / "api.token").write_text("x\n")
    result = invoke(tmp_path, "health")
    assert result.exit_code == 1 and "does not answer" in result.stderr


def test_init_profile_and_config_show_name_the_profile(tmp_path):
    data_dir = tmp_path / "node"
    first = invoke(data_dir, "init", "--profile", "server")
    assert first.exit_code == 0, first.output
    assert "profile: server" in first.stdout.splitlines()
    shown = invoke(data_dir, "config", "show")
    lines = {line.split(" = ")[0]: line for line in shown.stdout.splitlines()[1:]}
    assert lines["profile"].startswith('profile = "server"') and lines["profile"].endswith("# file")
    assert lines["listen"].startswith(
        'listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]'
    )
    assert lines["listen"].endswith("# profile server")
    assert lines["announce_private"].endswith("# profile server")
    assert lines["mdns"].endswith("# default")
    # The operator sets a value; changing the profile keeps it.
    path = data_dir / CONFIG_FILE
    path.write_text(
        path.read_text().replace("# listen = [", 'listen = ["/ip4/0.0.0.0/tcp/4101"]\n# [')
    )
    second = invoke(data_dir, "init", "--profile", "home", "--json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["profile"] == "home"
    settings = json.loads(invoke(data_dir, "config", "show", "--json").stdout)["settings"]
    assert settings["listen"] == {"value": ["/ip4/0.0.0.0/tcp/4101"], "source": "file"}
    assert settings["mdns"] == {"value": True, "source": "profile home"}
    assert settings["profile"] == {"value": "home", "source": "file"}
    # Without --profile, init changes nothing; an unknown profile is a usage error.
    before = path.read_text()
    assert "profile: home" in invoke(data_dir, "init").stdout.splitlines()
    bad = invoke(data_dir, "init", "--profile", "cloud")
    assert bad.exit_code == 2 and "cloud" in bad.stderr and path.read_text() == before


def test_init_profile_beside_a_running_node(tmp_path):
    with gridnode.start_node(tmp_path, listen=["/ip4/127.0.0.1/tcp/0"]):
        result = invoke(tmp_path, "init", "--profile", "server")
        assert result.exit_code == 0, result.output
        assert "profile: server (the running node takes it at its next start)" in result.stdout
        again = invoke(tmp_path, "init", "--profile", "server")
        assert "profile: server" in again.stdout.splitlines()  # unchanged: no note
    assert config_sources(tmp_path, environ={})["listen"] == "profile server"
