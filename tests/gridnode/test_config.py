import stat
from dataclasses import fields
from pathlib import Path

import pytest

from gridnode.config import (
    CONFIG_FILE,
    PROFILES,
    Config,
    ConfigError,
    config_sources,
    load_config,
    set_profile,
    write_default_config,
)


def test_default_file_is_written_once_and_means_the_defaults(tmp_path):
    assert write_default_config(tmp_path)
    assert not write_default_config(tmp_path)
    assert load_config(tmp_path, environ={}) == Config()


def test_file_then_environment(tmp_path):
    (tmp_path / CONFIG_FILE).write_text(
        'listen = ["/ip4/0.0.0.0/tcp/4001"]\nannounce_interval = 2\nmdns = true\n'
    )
    config = load_config(
        tmp_path, environ={"GRIDNODE_TARGET_PEERS": "3", "GRIDNODE_BOOTSTRAP": "/a,/b"}
    )
    assert config.listen == ["/ip4/0.0.0.0/tcp/4001"]
    assert config.announce_interval == 2.0 and config.mdns is True
    assert config.target_peers == 3 and config.bootstrap == ["/a", "/b"]
    assert load_config(tmp_path, environ={"GRIDNODE_MDNS": "off"}).mdns is False


@pytest.mark.parametrize(
    ("text", "env", "words"),
    [
        ("nonsense = 1\n", {}, "unknown setting 'nonsense'"),
        ("listen = '/ip4/1.2.3.4/tcp/1'\n", {}, "listen must be a list"),
        ("announce_interval = 0\n", {}, "announce_interval must be a positive number"),
        ("target_peers = -1\n", {}, "target_peers must be a non-negative integer"),
        ("max_connections = 0\n", {}, "max_connections must be at least 1"),
        ("mdns = 'yes'\n", {}, "mdns must be true or false"),
        ("listen = [\n", {}, CONFIG_FILE),
        ("", {"GRIDNODE_MDNS": "maybe"}, "GRIDNODE_MDNS"),
        ("", {"GRIDNODE_TARGET_PEERS": "many"}, "GRIDNODE_TARGET_PEERS"),
    ],
)
def test_one_clear_error_naming_the_key(tmp_path, text, env, words):
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path, environ=env)
    assert words in str(excinfo.value)


# -- profiles: default < profile < file < environment ------------------------------------------

# What the server and home profiles listen on: TCP and QUIC v1 on port 4001.
PUBLIC = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]

OLD_FILE = Path(__file__).parents[1] / "fixtures" / "gridnode-toml-before-profiles.toml"


def test_a_profile_sets_what_the_file_does_not(tmp_path):
    (tmp_path / CONFIG_FILE).write_text('profile = "server"\n')
    config = load_config(tmp_path, environ={})
    assert config.profile == "server"
    assert config.listen == PUBLIC and config.announce_private is False
    assert config.mdns is False and config.target_peers == 8
    sources = config_sources(tmp_path, environ={})
    assert sources["profile"] == "file" and sources["listen"] == "profile server"
    assert sources["announce_private"] == "profile server" and sources["mdns"] == "default"
    home = load_config(tmp_path, environ={"GRIDNODE_PROFILE": "home"})
    assert home.profile == "home" and home.mdns is True and home.announce_private is True
    assert config_sources(tmp_path, environ={"GRIDNODE_PROFILE": "home"})["mdns"] == "profile home"
    # The operator's values win over the profile's, and the environment over both.
    (tmp_path / CONFIG_FILE).write_text(
        'profile = "server"\nlisten = ["/ip4/0.0.0.0/tcp/4101"]\nannounce_private = true\n'
    )
    config = load_config(tmp_path, environ={"GRIDNODE_MDNS": "true"})
    assert config.listen == ["/ip4/0.0.0.0/tcp/4101"] and config.announce_private is True
    assert config.mdns is True
    # local, the default profile, is today's node.
    assert load_config(tmp_path / "none", environ={}) == Config()
    assert Config().profile == "local" and PROFILES["local"] == {}


@pytest.mark.parametrize(
    ("text", "env", "words"),
    [
        ('profile = "cloud"\n', {}, "unknown profile 'cloud' (one of local, server, home)"),
        ("profile = 1\n", {}, "profile must be a string"),
        ("", {"GRIDNODE_PROFILE": "cloud"}, "GRIDNODE_PROFILE: unknown profile 'cloud'"),
        ('announce = "/ip4/1.2.3.4/tcp/1"\n', {}, "announce must be a list"),
        ("", {"GRIDNODE_ANNOUNCE": "/dns4/" + "a" * 190}, "announce must be at most 16"),
        ("", {"GRIDNODE_ANNOUNCE": ",".join(["/ip4/1.2.3.4/tcp/1"] * 17)}, "at most 16"),
        ('announce = ["ip4/1.2.3.4/tcp/1"]\n', {}, "of at most 192 characters"),
    ],
)
def test_a_bad_profile_is_one_error_naming_it(tmp_path, text, env, words):
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(tmp_path, environ=env)
    assert words in str(excinfo.value)


def test_the_default_file_sets_only_the_profile(tmp_path):
    assert write_default_config(tmp_path, "home")
    sources = config_sources(tmp_path, environ={})
    assert sources.pop("profile") == "file"
    assert set(sources.values()) == {"default", "profile home"}
    # Every other key is there, commented, with its built-in default.
    text = (tmp_path / CONFIG_FILE).read_text()
    for item in fields(Config):
        if item.name != "profile":
            assert f"\n# {item.name} = " in text, item.name


def test_changing_the_profile_keeps_the_operators_values(tmp_path):
    assert set_profile(tmp_path, "server")  # no file yet: the default one, naming it
    path = tmp_path / CONFIG_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text().replace("# target_peers = 8", "target_peers = 3")
    path.write_text(text.replace("# mdns = false", "mdns = false") + '[seed]\nprofile = "x"\n')
    assert set_profile(tmp_path, "home")
    assert not set_profile(tmp_path, "home")
    after = path.read_text()
    assert (
        after
        == text.replace('profile = "server"', 'profile = "home"').replace(
            "# mdns = false", "mdns = false"
        )
        + '[seed]\nprofile = "x"\n'
    )
    config = load_config(tmp_path, environ={})
    # home would turn mDNS on: the operator's "mdns = false" stays what it is.
    assert config.profile == "home" and config.mdns is False and config.target_peers == 3
    assert config.listen == PUBLIC
    # A file without a profile line gets one, first (before any table).
    path.write_text("target_peers = 5\n\n[seed]\nx = 1\n")
    assert set_profile(tmp_path, "server")
    assert path.read_text() == 'profile = "server"\n\ntarget_peers = 5\n\n[seed]\nx = 1\n'
    path.write_text("")
    assert set_profile(tmp_path, "home") and path.read_text() == 'profile = "home"\n'
    path.write_text("# mine\n")
    assert set_profile(tmp_path, "home") and path.read_text() == '# mine\n\nprofile = "home"\n'
    with pytest.raises(ConfigError):
        set_profile(tmp_path, "cloud")


def test_an_old_default_file_is_not_the_operators(tmp_path):
    """Before profiles, the default file held every default uncommented: those lines are
    gridnode's, so a profile still applies; a line the operator changed is the operator's."""
    path = tmp_path / CONFIG_FILE
    old = OLD_FILE.read_text()
    assert 'listen = ["/ip4/127.0.0.1/tcp/0"]' in old and "mdns = false" in old
    path.write_text(old)
    assert load_config(tmp_path, environ={}) == Config()
    assert set(config_sources(tmp_path, environ={}).values()) == {"default"}
    path.write_text('profile = "home"\n' + old.replace("target_peers = 8", "target_peers = 2"))
    # Not old any more (the header is not first): every line is the operator's.
    assert load_config(tmp_path, environ={}).listen == ["/ip4/127.0.0.1/tcp/0"]
    path.write_text(old.replace("target_peers = 8", "target_peers = 2") + "[seed]\nmdns = false\n")
    assert config_sources(tmp_path, environ={})["target_peers"] == "file"
    assert set_profile(tmp_path, "home")
    config = load_config(tmp_path, environ={})
    assert config.listen == PUBLIC and config.mdns is True
    assert config.target_peers == 2
    text = path.read_text()
    assert text.startswith("# gridnode settings. The profile sets some of them")
    assert '\n# listen = ["/ip4/127.0.0.1/tcp/0"]\n' in text and "\ntarget_peers = 2\n" in text
    assert text.endswith("[seed]\nmdns = false\n")  # a table's lines are never gridnode's
    # From now on an uncommented default is the operator's choice.
    path.write_text(text.replace("# mdns = false", "mdns = false"))
    assert load_config(tmp_path, environ={}).mdns is False
