"""Opt-in mode and mtime (IPIP-499: excluded unless asked), against Kubo's own test vectors
(test/sharness/t0047-add-mode-mtime.sh: CIDv0, 256 KiB chunks, the files empty): files, symlinks,
directories, and a whole tree added with ``--preserve-mode --preserve-mtime``, ``--mode`` and
``--mtime``, every CID ``ipfs add -r`` prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from crdt.errors import UnixFSEncodeError
from crdt.ipld.dagpb import decode_node
from crdt.unixfs.data import DataType, UnixFSData, UnixTime, decode_data
from crdt.unixfs.importer import DirectoryImporter, FileImporter, import_bytes, import_symlink
from crdt.unixfs.profiles import PROFILES, Profile
from tests.crdt.unixfs.kubo_random import random_bytes

V0 = "unixfs-v0-2015"
V1 = "unixfs-v1-2025"
PRESERVE_MTIME = UnixTime(1604320482)
CUSTOM_MTIME = UnixTime(1603539720)
CUSTOM_NSECS = UnixTime(1603539720, 54321)


def empty_file(**attributes: Any) -> str:
    return str(FileImporter(V0, **attributes).close().cid)


@pytest.mark.parametrize(
    ("attributes", "cid"),
    [
        ({}, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
        ({"mode": 0o640}, "QmQLgxypSNGNFTuUPGCecq6dDEjb6hNB5xSyVmP3cEuNtq"),
        ({"mtime": PRESERVE_MTIME}, "QmQ6kErEW8kztQFV8vbwNU8E4dmtGsYpRiboiLxUEwibvj"),
        (
            {"mode": 0o640, "mtime": PRESERVE_MTIME},
            "QmYkvboLsvLFcSYmqVJRxvBdYRQLroLv9kELf3LRiCqBri",
        ),
        ({"mode": 0o764}, "QmchD3BN8TQ3RW6jPLxSaNkqvfuj7syKhzTRmL4EpyY1Nz"),
        ({"mtime": CUSTOM_MTIME}, "QmT3aY4avDcYXCWpU8CJzqUkW7YEuEsx36S8cTNoLcuK1B"),
        ({"mtime": CUSTOM_NSECS}, "QmaKH8H5rXBUBCX4vdxi7ktGQEL7wejV7L9rX2qpZjwncz"),
        ({"mode": 0o764, "mtime": CUSTOM_NSECS}, "QmUkxrtBA8tPjwCYz1HrsoRfDz6NgKut3asVeHVQNH4C8L"),
    ],
)
def test_kubos_file_vectors(attributes: dict[str, Any], cid: str):
    assert empty_file(**attributes) == cid


@pytest.mark.parametrize(
    ("mtime", "cid"),
    [
        (PRESERVE_MTIME, "QmbJwotgtr84JxcnjpwJ86uZiyMoxbZuNH4YrdJMypkYaB"),
        (CUSTOM_MTIME, "QmV1Uot2gy4bhY9yvYiZxhhchhyYC6MKKoGV1XtWNmpCLe"),
        (CUSTOM_NSECS, "QmPHYCxYvvHj6VxiPNJ3kXxcPsnJLDYUJqsDJWjvytmrmY"),
    ],
)
def test_kubos_symlink_vectors(mtime: UnixTime, cid: str):
    assert str(import_symlink("nothing", V0, mtime=mtime).cid) == cid


@pytest.mark.parametrize(
    ("attributes", "cid"),
    [
        ({"mode": 0o755}, "QmRviohgafvCsbkiTgfQFipbuXJ6k1YtoiaQW4quttJPKu"),
        ({"mtime": UnixTime(1655158632 + 90)}, "QmYMy7CZGb498QFSQBF5ZFwv1FYbrAtYZMe4VxhDXxAcvf"),
        ({"mode": 0o713}, "QmQ1ABnw2iip7sj23EzzBZ9T77KyyfESP6SUboiXPyzNQe"),
        ({"mtime": CUSTOM_MTIME}, "QmfWitW6F13WHFXLbJzXRYmwrS1p4gaAJAfucUSMytRPn3"),
        ({"mtime": CUSTOM_NSECS}, "QmZFdCLJay31hT3Tx1LygJ7XfiLEs3qLCXtbeBfhf38aZg"),
    ],
)
def test_kubos_empty_directory_vectors(attributes: dict[str, Any], cid: str):
    assert str(DirectoryImporter(V0, **attributes).close().cid) == cid


Attributes = Callable[[int, int], dict[str, Any]]
T = 1655158632  # the tree's times: t0047's DIR_TIME and offsets


def kubo_tree(files: Attributes, dirs: Attributes, links: Callable[[int], dict[str, Any]]):
    """t0047's test directory, built bottom up; every CID ``ipfs add -r`` prints, sorted."""
    printed: list[str] = []

    def file(perm: int, t: int) -> tuple[Any, int]:
        root = FileImporter(V0, **files(perm, t)).close()  # t0047's files are empty
        printed.append(str(root.cid))
        return root.cid, root.tsize

    def link(target: str, t: int) -> tuple[Any, int]:
        root = import_symlink(target, V0, **links(t))
        printed.append(str(root.cid))
        return root.cid, root.tsize

    def directory(entries: dict[str, tuple[Any, int]], perm: int, t: int) -> tuple[Any, int]:
        importer = DirectoryImporter(V0, **dirs(perm, t))
        for name, (cid, tsize) in entries.items():
            importer.add(name, cid, tsize)
        root = importer.close()
        printed.append(str(root.cid))
        return root.cid, root.tsize

    sub2 = directory({"file3": file(0o644, T + 10)}, 0o755, T + 30)
    sub1 = directory({"sub2": sub2, "link1": link("../sub2/file3", T + 20)}, 0o755, T + 40)
    dir2 = directory({"sub1": sub1}, 0o755, T + 50)
    dir3 = directory({"file2": file(0o644, T + 60)}, 0o755, T + 70)
    entries = {
        "dir1": directory({}, 0o755, T + 90),
        "dir2": dir2,
        "dir3": dir3,
        "file1": file(0o644, T + 80),
    }
    directory(entries, 0o700, T)
    return sorted(printed)


def test_kubos_tree_with_preserved_mode_and_mtime():
    def both(perm: int, t: int) -> dict[str, Any]:
        return {"mode": perm, "mtime": UnixTime(t)}

    printed = kubo_tree(both, both, lambda t: {"mtime": UnixTime(t)})
    assert printed == [
        "QmRCG3Pprg4jbhfYBzVzfJVyneFHnBquPGXwvXU3jSuf5j",
        "QmReHCn4BSJJdtd6Le8Hd8Puai6TmgpPCYb13wyM7FD9AD",
        "QmSioyvQuXetxg7uo8FswGn9XKKEsisDq1HTMzGyWbw2R6",  # the root
        "QmTMoVgJKhPrz9DfkvT132mxyBXNae5azXQ42WbM9abdSE",
        "QmVzXqpuQGCAgRwEbGuE9xe8Fidi1HEXaPKsQEFEbPJW9j",
        "QmW6Nqy2nziduAp3UGx2a52gtSUsYzhVcZMuPdxBRnwCyP",
        "QmeQwX5qAX18fcPDxDdkfM6ttuFCZetF5hgeUa6ov8D5oc",
        "QmefofUNwC2U3Xp87rB1x8Aws6AdsDuoXR7B9u2RkEZ4dQ",
        "Qmeu24TFarJwLzJgMTDYDJTr4BMGnzafoSnfxov1513abW",
        "Qmf82bbFg2e8HmcqiewutVVw5NoMpiXZD57LpLdC1poBuH",
    ]


def test_kubos_tree_with_a_custom_mode():
    def mode(perm: int, t: int) -> dict[str, Any]:
        return {"mode": 0o753}

    printed = kubo_tree(mode, mode, lambda t: {})  # no mode on a symlink
    assert printed == [
        "QmNZ5cyx3f6maXkczwhh3ufjDCh9f3k9zrDhX218ZZGvoV",
        "QmRqtFVLkXfWJuqWtYiCPthgomo3gouno8uvMeGAyCVaWS",
        *["QmSkrWNcyDA7s1qiT6Ps7ey4zcB7uBH3sqGcKRfW4UMKhM"] * 3,
        "QmZNAZXB6JyJ1cK9h1uJEK4XDo1CKsSuHMPGUUMrzDXCQz",
        "QmbSz6GyS8MNR4M9xtCteuGVJQRYkCXLbW174Fdy8jtaoZ",
        "QmccnAQQeJGtmtgZoi3hpEmgdxbuX1ao2hQmrKmmwQnCn9",
        "QmeTZoiAiduFY2hXaNQP4ehiE71BrQFEnrqduBZ5ZjHuFy",
        "Qmf13KNurvAHUfMBhMWvZuftmUikhhGY7ohWVaBDDndFMz",
    ]


def test_kubos_tree_with_a_custom_mtime():
    def mtime(*_: int) -> dict[str, Any]:
        return {"mtime": CUSTOM_MTIME}

    printed = kubo_tree(mtime, mtime, mtime)
    assert printed == [
        "QmPCGFZ8ZFowAwfWdCeGsr9wSbGXwZiHW3bZ7XSYcc1Zby",
        *["QmT3aY4avDcYXCWpU8CJzqUkW7YEuEsx36S8cTNoLcuK1B"] * 3,
        "QmUGMu9epCEz5HMsuJFgpJxxt3HoahsTQcC65Jje6LNqYF",
        "QmXhzoPKuqmkqbyr4kJFznFRXtGwriCXKGFPr4vviyK3aV",
        "QmZ5wKCcL11TckypuDTKLLNFP6JMCBJRCn385XKQQ6PCLt",
        "Qmdw3hiAxn6R5MRkkdzLdFvZUa2WJeLCTXXCyB8byFsHSA",
        "QmedF4m2Y8341azfkpvaHSkxbSrZa4fo6FT25h6sRUVkpq",
        "QmfWitW6F13WHFXLbJzXRYmwrS1p4gaAJAfucUSMytRPn3",
    ]


# -- beyond Kubo's vectors: where the metadata goes -----------------------------------------------


def unixfs_of(block: bytes) -> UnixFSData:
    return decode_data(decode_node(block).data or b"")


@pytest.mark.parametrize("profile", [V0, V1])
@pytest.mark.parametrize("size", [0, 10, 3 * 1024 * 1024 + 5])
def test_metadata_goes_on_the_root_only_and_leaves_are_dag_pb(profile: str, size: int):
    data = random_bytes(size, "metadata")
    importer = FileImporter(profile, mode=0o600, mtime=CUSTOM_NSECS)
    blocks = importer.write(data)
    root = importer.close()
    blocks += root.blocks
    assert blocks[-1][0] == root.cid
    assert len({cid for cid, _ in blocks}) == len(blocks)  # no leaf emitted twice
    for cid, block in blocks:
        assert cid.codec == 0x70  # no raw leaves with metadata, as Kubo
        unixfs = unixfs_of(block)
        if cid == root.cid:
            assert (unixfs.mode, unixfs.mtime) == (0o600, CUSTOM_NSECS)
        else:
            assert (unixfs.mode, unixfs.mtime) == (None, None)
    # the same tree as without metadata but with dag-pb leaves; only the root differs
    plain = import_bytes(data, replace_leaves(profile))
    assert root.size == plain.size == size
    assert [cid for cid, _ in blocks[:-1]] == [cid for cid, _ in plain.blocks[:-1]]
    assert root.cid != plain.cid


def replace_leaves(profile: str) -> Profile:
    """The profile with dag-pb leaves (what metadata implies): same tree shape."""
    return replace(PROFILES[profile], raw_leaves=False)


def test_a_sharded_directory_carries_its_metadata_on_the_root_shard():
    profile = replace(PROFILES[V1], hamt_threshold=0)
    file = import_bytes(b"x", V1)
    plain, with_meta = DirectoryImporter(profile), DirectoryImporter(profile, mtime=CUSTOM_MTIME)
    for directory in (plain, with_meta):
        for i in range(50):
            directory.add(f"f{i}", file.cid, file.tsize)
    a, b = plain.close(), with_meta.close()
    assert a.sharded and b.sharded
    assert a.blocks[:-1] == b.blocks[:-1]  # the child shards are the same
    assert unixfs_of(b.blocks[-1][1]).mtime == CUSTOM_MTIME
    assert unixfs_of(b.blocks[-1][1]).type == DataType.HAMTShard
    assert b.tsize - a.tsize == len(b.blocks[-1][1]) - len(a.blocks[-1][1])


@pytest.mark.parametrize(
    "attributes",
    [{"mode": -1}, {"mode": 0o10000}, {"mtime": UnixTime(0, 10**9)}, {"mtime": UnixTime(1 << 63)}],
)
def test_bad_metadata_is_refused(attributes: dict[str, Any]):
    with pytest.raises(UnixFSEncodeError):
        FileImporter(V1, **attributes)
    with pytest.raises(UnixFSEncodeError):
        DirectoryImporter(V1, **attributes)
