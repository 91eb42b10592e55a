import pytest

from gridnode.config import CONFIG_FILE, Config, ConfigError, load_config, write_default_config


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
