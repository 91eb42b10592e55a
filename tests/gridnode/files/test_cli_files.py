"""``gridnode pin ls|add|rm`` and ``gridnode gc`` (and, once the importer is there, ``add``,
``cat``, ``get``, ``ls``): the same answers offline and through a running node's API."""

import json
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from crdt.ipld.cid import CID
from crdt.ipld.dagpb import PBLink, PBNode, encode_node
from crdt.unixfs.data import DataType, UnixFSData, encode_data
from gridnode.cli import main
from gridnode.repo import Repo
from tests.gridnode.conftest import node_in_thread


def run(data_dir, *args, code=0, input=None):
    result = CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--log-level", "warning", *args], input=input
    )
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def json_out(data_dir, *args):
    return json.loads(run(data_dir, *args, "--json").stdout)


def refused(data_dir, *args, code=1):
    result = run(data_dir, *args, code=code)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def raw(data: bytes):
    return CID.for_block(data, "raw"), data


def file_of(*leaves):
    """A UnixFS file node over raw leaves (as the importer makes one)."""
    sizes = tuple(len(b) for _c, b in leaves)
    data = encode_data(UnixFSData(DataType.File, filesize=sum(sizes), blocksizes=sizes))
    links = tuple(PBLink(c, "", len(b)) for c, b in leaves)
    block = encode_node(PBNode(links=links, data=data))
    return CID.for_block(block, "dag-pb"), block


def directory_of(**entries):
    data = encode_data(UnixFSData(DataType.Directory))
    links = tuple(PBLink(c, name, len(b)) for name, (c, b) in sorted(entries.items()))
    block = encode_node(PBNode(links=links, data=data))
    return CID.for_block(block, "dag-pb"), block


@contextmanager
def running(data_dir, mode):
    if mode == "offline":
        yield
    else:
        with node_in_thread(data_dir):
            yield


@pytest.fixture(params=["offline", "running"])
def node(request, tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    leaves = [raw(b"a" * 6000), raw(b"b" * 3000)]
    file = file_of(*leaves)
    loose = raw(b"loose")
    root = directory_of(**{"f.txt": file})
    with Repo(data_dir) as repo:
        repo.files.put_blocks([*leaves, file, loose, root])
    with running(data_dir, request.param):
        yield data_dir, {"root": root, "file": file, "leaves": leaves, "loose": loose}


def test_pin_add_ls_rm_and_gc(node):
    data_dir, made = node
    root = str(made["root"][0])
    pinned = json_out(data_dir, "pin", "add", root, "--name", "site")
    assert pinned["name"] == "site" and pinned["cid"] == root and pinned["recursive"] is True
    listed = [json.loads(line) for line in run(data_dir, "pin", "ls", "--json").stdout.split()]
    assert [(p["name"], p["cid"]) for p in listed] == [("site", root)]
    assert "site" in run(data_dir, "pin", "ls").stdout
    report = json_out(data_dir, "gc")
    assert report["removed_blocks"] == 1 and report["kept_blocks"] == 4
    assert run(data_dir, "gc").stdout.startswith("removed 0 blocks")
    assert json_out(data_dir, "pin", "rm", "site") == {"pin": "site", "removed": 1}
    assert json_out(data_dir, "gc")["removed_blocks"] == 4


def test_pin_errors_are_one_line(node):
    data_dir, _made = node
    assert "no pin named" in refused(data_dir, "pin", "rm", "nothing")
    assert "not a CID" in refused(data_dir, "pin", "add", "not-a-cid")
    missing = str(directory_of(x=raw(b"not stored"))[0])
    assert "not in the file store" in refused(data_dir, "pin", "add", missing)


def test_cat_ls_get_read_what_the_store_holds(node, tmp_path):
    data_dir, made = node
    root = str(made["root"][0])
    content = b"a" * 6000 + b"b" * 3000
    assert run(data_dir, "cat", f"{root}/f.txt").stdout_bytes == content
    assert run(
        data_dir, "cat", str(made["file"][0]), "--offset", "5990", "--length", "20"
    ).stdout_bytes == (b"a" * 10 + b"b" * 10)
    entries = [json.loads(line) for line in run(data_dir, "ls", root, "--json").stdout.split()]
    assert [(e["name"], e["cid"]) for e in entries] == [("f.txt", {"/": str(made["file"][0])})]
    target = tmp_path / "out"
    answer = json_out(data_dir, "get", root, "-o", str(target))
    assert answer["bytes"] == len(content)
    assert (target / "f.txt").read_bytes() == content
    assert "exists" in refused(data_dir, "get", root, "-o", str(target))
    assert "no 'nope'" in refused(data_dir, "cat", f"{root}/nope")
    assert "not a CID" in refused(data_dir, "cat", "nocid")
    absent = str(raw(b"absent")[0])
    assert "not in the file store" in refused(data_dir, "cat", absent)
    assert "not a directory" in refused(data_dir, "ls", str(made["file"][0]))
