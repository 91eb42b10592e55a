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


# -- add ------------------------------------------------------------------------------------------


@pytest.fixture(params=["offline", "running"])
def empty_node(request, tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    with running(data_dir, request.param):
        yield data_dir


def pseudo_random(size: int, seed: int = 7) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def test_add_a_file_gives_kubos_cid_and_reads_back(empty_node, tmp_path):
    from crdt.unixfs import import_bytes

    data_dir = empty_node
    hello = tmp_path / "hello.txt"
    hello.write_bytes(b"hello world\n")
    # Kubo's CID of these bytes with its historical defaults (`ipfs add`, CIDv0).
    v0 = run(data_dir, "add", "-q", "--profile", "unixfs-v0-2015", str(hello)).stdout.strip()
    assert v0 == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    # A file over several chunks and tree nodes in both profiles: the importer's CID, and the
    # bytes back whole and in ranges.
    data = pseudo_random(3 * (1 << 20) + 12345)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    for profile in ("unixfs-v1-2025", "unixfs-v0-2015"):
        added = json_out(data_dir, "add", "--profile", profile, str(big))
        assert added["cid"] == {"/": str(import_bytes(data, profile).cid)}
        assert added["size"] == len(data) and added["pinned"] == added["cid"]["/"]
        cid = added["cid"]["/"]
        assert run(data_dir, "cat", cid).stdout_bytes == data
        part = run(data_dir, "cat", cid, "--offset", str((1 << 20) - 5), "--length", "300000")
        assert part.stdout_bytes == data[(1 << 20) - 5 : (1 << 20) - 5 + 300000]
    pins = run(data_dir, "pin", "ls", "--json").stdout.split()
    assert len(pins) == 3
    # Pinned: gc keeps all of it.
    assert json_out(data_dir, "gc")["removed_blocks"] == 0


def test_add_stdin_and_unpinned_adds_go_at_gc(empty_node):
    data_dir = empty_node
    data = pseudo_random(70_000, seed=3)
    added = json.loads(run(data_dir, "add", "-", "--json", "--no-pin", input=data).stdout)
    assert added["pinned"] is None
    assert run(data_dir, "cat", added["cid"]["/"]).stdout_bytes == data
    assert json_out(data_dir, "gc")["removed_blocks"] >= 1
    assert "not in the file store" in refused(data_dir, "cat", added["cid"]["/"])


def test_add_a_directory_tree(empty_node, tmp_path):
    data_dir = empty_node
    tree = tmp_path / "site"
    (tree / "img").mkdir(parents=True)
    (tree / "index.html").write_text("<h1>hi</h1>")
    (tree / "img" / "a.png").write_bytes(pseudo_random(5000))
    (tree / ".hidden").write_text("secret")
    (tree / "link").symlink_to("index.html")
    assert "is a directory: add it with -r" in refused(data_dir, "add", str(tree))
    added = json_out(data_dir, "add", "-r", "--name", "site", str(tree))
    assert added["files"] == 2 and added["directories"] == 2 and added["pinned"] == "site"
    root = added["cid"]["/"]
    entries = [
        json.loads(line)["name"] for line in run(data_dir, "ls", root, "--json").stdout.split()
    ]
    assert entries == ["img", "index.html", "link"]
    assert run(data_dir, "cat", f"{root}/img/a.png").stdout_bytes == pseudo_random(5000)
    out = tmp_path / "copy"
    run(data_dir, "get", root, "-o", str(out))
    assert (out / "index.html").read_text() == "<h1>hi</h1>"
    assert (out / "img" / "a.png").read_bytes() == pseudo_random(5000)
    assert (out / "link").is_symlink() and str((out / "link").readlink()) == "index.html"
    assert not (out / ".hidden").exists()
    with_hidden = json_out(data_dir, "add", "-r", "--hidden", str(tree))
    assert with_hidden["cid"] != added["cid"] and with_hidden["files"] == 3


def test_add_refuses_what_it_cannot_read_in_one_line(empty_node, tmp_path):
    data_dir = empty_node
    assert "No such file" in refused(data_dir, "add", str(tmp_path / "nothing"))


def test_a_hamt_sharded_directory_lists_and_resolves(tmp_path):
    from crdt.unixfs import DirectoryImporter

    data_dir = tmp_path / "node"
    run(data_dir, "init")
    leaf = raw(b"one small file")
    importer = DirectoryImporter("unixfs-v1-2025")
    names = [f"file-{n:05}.txt" for n in range(6000)]
    for name in names:
        importer.add(name, leaf[0], len(leaf[1]))
    root = importer.close()
    assert root.sharded
    with Repo(data_dir) as repo:
        repo.files.put_blocks([leaf, *root.blocks])
    listed = [
        json.loads(line)["name"]
        for line in run(data_dir, "ls", str(root.cid), "--json").stdout.split()
    ]
    assert sorted(listed) == names
    assert run(data_dir, "cat", f"{root.cid}/file-04321.txt").stdout_bytes == leaf[1]
    assert "no 'file-99999.txt'" in refused(data_dir, "cat", f"{root.cid}/file-99999.txt")
    assert json_out(data_dir, "pin", "add", str(root.cid))["recursive"] is True


def test_hostile_or_damaged_dags_are_one_error_line(tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    leaf = raw(b"x" * 6000)
    # A file node whose blocksizes lie about its leaf.
    data = encode_data(UnixFSData(DataType.File, filesize=7000, blocksizes=(7000,)))
    block = encode_node(PBNode(links=(PBLink(leaf[0], "", 6000),), data=data))
    lying = (CID.for_block(block, "dag-pb"), block)
    good = file_of(raw(b"y" * 5000))
    with Repo(data_dir) as repo:
        repo.files.put_blocks([leaf, lying, good, raw(b"y" * 5000)])
        damaged = repo.files.path_of(raw(b"y" * 5000)[0])
    assert "7000" in refused(data_dir, "cat", str(lying[0]))
    damaged.write_bytes(b"z" * 5000)
    assert "damaged" in refused(data_dir, "cat", str(good[0]))
    assert not (tmp_path / "out").exists()
    assert "damaged" in refused(data_dir, "get", str(good[0]), "-o", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_add_is_refused_at_max_storage_and_the_store_counts(tmp_path, monkeypatch):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    big = tmp_path / "big.bin"
    big.write_bytes(pseudo_random(200_000))
    run(data_dir, "add", "-q", str(big))
    with Repo(data_dir) as repo:
        assert repo.files.usage() == (1, 200_000)  # one raw block (under 1 MiB)
        used = repo.bytes_used()
        assert used >= repo.sql.bytes_on_disk() + 200_000
    monkeypatch.setenv("GRIDNODE_MAX_STORAGE", str(used))
    line = refused(data_dir, "add", str(big))
    assert "max_storage" in line
