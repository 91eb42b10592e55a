"""``gridnode catalog`` verbs on a data directory (offline: the same calls a running node's API
answers), and what ``gridnode join`` records in gridnode.toml (gridnode/join.py)."""

import json
import tomllib

import pytest
from click.testing import CliRunner

from gridnode.cli import main
from gridnode.config import CONFIG_FILE, load_config
from gridnode.errors import ConfigError
from gridnode.join import record_join
from gridnode.repo import Repo

PEER = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWNwJGudHeQrDL2amLcCuDP9rgnQAH9NZAursnW4HzaNq8"


def invoke(data_dir, *args):
    if not (data_dir / "node.key").exists() and args[:1] != ("init",):
        assert invoke(data_dir, "init").exit_code == 0
    result = CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--log-level", "warning", *args]
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_create_add_remove_show(tmp_path):
    d = tmp_path / "primary"
    created = invoke(d, "catalog", "create", "project")
    assert created.exit_code == 0, created.output
    catalog = created.output.strip()
    data = invoke(d, "db", "create", "weather", "--type", "events").output.strip()
    other = invoke(d, "db", "create", "other", "--type", "set").output.strip()
    assert invoke(d, "catalog", "add", catalog, data, "--description", "hourly").exit_code == 0
    assert invoke(d, "catalog", "add", "project", other, "--name", "renamed").exit_code == 0
    assert invoke(d, "catalog", "add", catalog, PEER).exit_code == 0
    shown = json.loads(invoke(d, "catalog", "show", catalog, "--json").output)
    assert shown["name"] == "project" and shown["is_catalog"]
    assert {x["address"]: (x["name"], x["description"]) for x in shown["databases"]} == {
        data: ("weather", "hourly"),
        other: ("renamed", ""),
    }
    assert shown["peers"] == [PEER]
    text = invoke(d, "catalog", "show", catalog).output
    assert "name: project" in text and f"peer: {PEER}" in text

    assert invoke(d, "catalog", "remove", catalog, other).exit_code == 0
    assert invoke(d, "catalog", "remove", catalog, PEER).exit_code == 0
    shown = json.loads(invoke(d, "catalog", "show", catalog, "--json").output)
    assert [x["address"] for x in shown["databases"]] == [data]
    assert shown["peers"] == []


def test_files_are_listed_shown_and_removed(tmp_path):
    from crdt.ipld.cid import CID

    d = tmp_path / "primary"
    catalog = invoke(d, "catalog", "create", "assets").output.strip()
    raw = str(CID.for_block(b"logo", codec="raw"))
    site = str(CID.for_block(b"site", codec="dag-pb"))
    added = invoke(d, "catalog", "add", catalog, "/ipfs/" + raw, "--name", "logo.png")
    assert added.exit_code == 0, added.output
    assert invoke(d, "catalog", "add", catalog, site, "--file").exit_code == 0
    shown = json.loads(invoke(d, "catalog", "show", catalog, "--json").output)
    assert {f["cid"]: f["name"] for f in shown["files"]} == {raw: "logo.png", site: ""}
    assert shown["databases"] == []
    text = invoke(d, "catalog", "show", catalog).output
    assert f"file: /ipfs/{raw} logo.png" in text
    assert invoke(d, "catalog", "remove", catalog, "/ipfs/" + raw).exit_code == 0
    assert invoke(d, "catalog", "remove", catalog, site, "--file").exit_code == 0
    assert json.loads(invoke(d, "catalog", "show", catalog, "--json").output)["files"] == []
    # A dag-cbor CID names no file.
    refused = invoke(d, "catalog", "add", catalog, "/ipfs/" + str(CID.for_block(b"x")))
    assert refused.exit_code == 1 and "not a file or directory CID" in refused.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["add", "{catalog}", "nonsense"], "neither a database address nor a multiaddr"),
        (["remove", "{catalog}", "{data}"], "is not listed"),
        (["show", "{data}"], "is not a catalog"),
        (["show", "{events}"], "'catalog' works on keyvalue databases"),
        (["add", "{catalog}", PEER, "--name", "x"], "apply to databases"),
    ],
)
def test_refusals_are_one_line(tmp_path, args, message):
    d = tmp_path / "primary"
    values = {
        "catalog": invoke(d, "catalog", "create", "c").output.strip(),
        "data": invoke(d, "db", "create", "plain", "--type", "keyvalue").output.strip(),
        "events": invoke(d, "db", "create", "feed", "--type", "events").output.strip(),
    }
    result = invoke(d, "catalog", *[a.format(**values) for a in args])
    assert result.exit_code in (1, 2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in lines[0]


def test_join_records_catalog_and_peer_in_a_new_data_dir(tmp_path):
    d = tmp_path / "new"
    catalog = "/gridnode/bafyreihaszihndev55m5dvtthqjybtq4rex5tk72advooxekxw5io6ipka"
    assert record_join(d, [catalog], [PEER])
    config = load_config(d, environ={})
    assert config.catalogs == [catalog] and config.bootstrap == [PEER]
    # Again: nothing to add, the file is left as it is.
    before = (d / CONFIG_FILE).read_text()
    assert not record_join(d, [catalog], [PEER])
    assert (d / CONFIG_FILE).read_text() == before
    # Comments and the other settings are kept.
    assert before.startswith("# gridnode settings")
    assert "target_peers = 8" in before


def test_join_adds_to_the_operators_values_and_keeps_tables(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / CONFIG_FILE).write_text(
        '# mine\nbootstrap = ["/ip4/1.1.1.1/tcp/1"]  # the old one\n\n'
        '[[seed.postgres]]\ndsn = "postgresql:///x"\n'
    )
    other = "/gridnode/bafyreieytteobonmirenneeapyazigma6hcakkhromae2yvnhwii4e6t5u"
    assert record_join(d, [other], [PEER])
    text = (d / CONFIG_FILE).read_text()
    parsed = tomllib.loads(text)
    assert parsed["bootstrap"] == ["/ip4/1.1.1.1/tcp/1", PEER]
    assert parsed["catalogs"] == [other]
    assert parsed["seed"]["postgres"][0]["dsn"] == "postgresql:///x"
    assert text.startswith("# mine\n")


def test_join_refuses_a_list_over_several_lines(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    original = 'bootstrap = [\n  "/ip4/1.1.1.1/tcp/1",\n]\n'
    (d / CONFIG_FILE).write_text(original)
    with pytest.raises(ConfigError, match="several lines"):
        record_join(d, [], [PEER])
    assert (d / CONFIG_FILE).read_text() == original


def test_start_join_refuses_a_bad_address_in_one_line(tmp_path):
    result = invoke(tmp_path / "d", "join", "not-an-address", "--peer", PEER)
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: not a catalog address")
    result = invoke(tmp_path / "d", "start", "--peer", PEER)
    assert result.exit_code == 2


def test_a_catalog_made_offline_is_a_keyvalue_database(tmp_path):
    d = tmp_path / "p"
    catalog = invoke(d, "catalog", "create", "c").output.strip()
    with Repo(d) as repo:
        assert repo.database(catalog).manifest.store == "keyvalue"
