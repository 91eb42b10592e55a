"""The file store (gridnode/files/store.py): blocks inline or in the block directory, verified
reads, pins by name, gc with leases, what max_storage counts, and what the node serves."""

import os

import pytest

from crdt.errors import HashMismatch
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import encode
from crdt.ipld.dagpb import PBLink, PBNode, encode_node
from gridnode.errors import CorruptBlock, InvalidRequest, MissingBlock, UnknownPin
from gridnode.files import store as store_module
from gridnode.repo import Repo


def raw(data: bytes) -> tuple[CID, bytes]:
    return CID.for_block(data, "raw"), data


def cbor(value) -> tuple[CID, bytes]:
    block = encode(value)
    return CID.for_block(block), block


@pytest.fixture
def repo(tmp_path):
    with Repo(tmp_path / "node") as repo:
        yield repo


def test_small_blocks_stay_inline_big_ones_go_to_the_block_directory(repo):
    small, big = raw(b"s" * 100), raw(b"b" * 10_000)
    assert repo.files.put_blocks([small, big, small]) == 2
    assert repo.files.put_blocks([big]) == 0
    assert not repo.files.path_of(small[0]).exists()
    assert repo.files.path_of(big[0]).read_bytes() == big[1]
    assert repo.files.get(small[0]) == small[1]
    assert repo.files.get(big[0]) == big[1]
    assert repo.files.get(raw(b"nothing")[0]) is None
    assert repo.files.usage() == (2, 10_100)
    assert repo.files.outside_bytes() == 10_000
    assert repo.files.has_many([small[0], raw(b"x")[0]]) == {small[0]}


def test_a_block_that_does_not_hash_to_its_cid_is_refused_and_nothing_kept(repo):
    good = raw(b"good")
    with pytest.raises(HashMismatch):
        repo.files.put_blocks([good, (raw(b"other")[0], b"not other")])
    assert repo.files.usage() == (0, 0)


def test_an_oversized_block_is_refused(repo):
    data = b"z" * (store_module.MAX_BLOCK + 1)
    with pytest.raises(InvalidRequest):
        repo.files.put_blocks([raw(data)])


def test_a_damaged_or_missing_block_file_is_corrupt_never_served(repo):
    big = raw(os.urandom(8192))
    repo.files.put_blocks([big])
    path = repo.files.path_of(big[0])
    path.write_bytes(b"\0" + big[1][1:])
    with pytest.raises(CorruptBlock):
        repo.files.get(big[0])
    assert repo.served_blocks([big[0]]) == {big[0]: None}
    path.unlink()
    with pytest.raises(CorruptBlock):
        repo.files.get(big[0])


def test_served_blocks_answers_file_blocks(repo):
    block = raw(b"served " * 1000)
    repo.files.put_blocks([block])
    assert repo.served_blocks([block[0]]) == {block[0]: block[1]}


def test_max_storage_counts_the_block_directory(repo):
    before = repo.bytes_used()
    repo.files.put_blocks([raw(os.urandom(100_000))])
    assert repo.bytes_used() - before >= 100_000
    assert repo.quota.used() == repo.bytes_used()


def tree():
    """A dag-cbor root linking two raw leaves, and one more leaf nothing links to."""
    a, b, loose = raw(b"a" * 5000), raw(b"b" * 10), raw(b"loose")
    root = cbor({"children": [a[0], b[0]]})
    return root, a, b, loose


def test_a_recursive_pin_keeps_its_whole_dag_gc_removes_the_rest(repo):
    root, a, b, loose = tree()
    repo.files.put_blocks([root, a, b, loose])
    pin = repo.files.pin(root[0], "site")
    assert (pin.name, pin.cid, pin.recursive) == ("site", root[0], True)
    report = repo.files.gc()
    assert (report.blocks, report.bytes) == (1, 5)
    assert repo.files.get(loose[0]) is None
    assert repo.files.has_many([root[0], a[0], b[0]]) == {root[0], a[0], b[0]}
    assert report.kept_blocks == 3
    # Unpinned, all of it goes; the block file too.
    assert repo.files.unpin("site") == 1
    assert repo.files.gc().blocks == 3
    assert repo.files.usage() == (0, 0)
    assert not repo.files.path_of(a[0]).exists()


def test_a_direct_pin_keeps_only_its_block(repo):
    root, a, b, _loose = tree()
    repo.files.put_blocks([root, a, b])
    repo.files.pin(root[0], recursive=False)
    assert repo.files.gc().blocks == 2
    assert repo.files.has_many([root[0]]) == {root[0]}


def test_pin_names_default_to_the_cid_and_unpin_takes_a_name_or_a_cid(repo):
    block = raw(b"pinned")
    repo.files.put_blocks([block])
    repo.files.pin(block[0])
    repo.files.pin(block[0], "also")
    assert sorted(p.name for p in repo.files.pins()) == sorted([str(block[0]), "also"])
    assert repo.files.pinned(block[0])
    assert repo.files.unpin(str(block[0])) == 1  # the pin named by the CID's text
    assert [p.name for p in repo.files.pins()] == ["also"]
    assert repo.files.unpin(str(block[0])) == 1  # now: every pin of that CID
    assert repo.files.pins() == []
    with pytest.raises(UnknownPin):
        repo.files.unpin("also")
    with pytest.raises(UnknownPin):
        repo.files.unpin("not a cid")


def test_a_name_moves_to_a_new_cid(repo):
    one, two = raw(b"one"), raw(b"two")
    repo.files.put_blocks([one, two])
    repo.files.pin(one[0], "site")
    repo.files.pin(two[0], "site")
    assert [(p.name, p.cid) for p in repo.files.pins()] == [("site", two[0])]


def test_pinning_a_partial_dag_is_refused_naming_the_missing_block(repo):
    root, a, b, _loose = tree()
    repo.files.put_blocks([root, a])
    with pytest.raises(MissingBlock, match=str(b[0])):
        repo.files.pin(root[0], "partial")
    assert repo.files.pins() == []
    with pytest.raises(MissingBlock):
        repo.files.pin(b[0], recursive=False)


@pytest.mark.parametrize("name", ["", "x" * 257, "a\nb"])
def test_bad_pin_names_are_refused(repo, name):
    block = raw(b"n")
    repo.files.put_blocks([block])
    with pytest.raises(InvalidRequest):
        repo.files.pin(block[0], name)


def test_an_add_in_progress_keeps_its_blocks_until_its_lease_ends_or_expires(tmp_path):
    now = [1000.0]
    with Repo(tmp_path / "node") as repo:
        files = store_module.FileStore(
            repo.sql, repo.files.root, durability="process", clock=lambda: now[0]
        )
        held = raw(b"held by an add")
        lease = files.begin()
        files.put_blocks([held], lease=lease)
        assert files.gc().blocks == 0
        now[0] += store_module.LEASE_SECONDS + 1  # the add died: its lease expires
        assert files.gc().blocks == 1
        # A lease ended (the add pinned what it made) protects nothing more.
        with files.lease() as second:
            files.put_blocks([held], lease=second)
            assert files.gc().blocks == 0
        assert files.gc().blocks == 1


def test_a_block_written_again_by_a_new_add_is_protected_by_its_lease(repo):
    block = raw(b"twice")
    repo.files.put_blocks([block])
    with repo.files.lease() as lease:
        assert repo.files.put_blocks([block], lease=lease) == 0
        assert repo.files.gc().blocks == 0


def test_gc_removes_old_orphan_files_a_crash_left(repo):
    repo.files.put_blocks([raw(b"k" * 9000)])
    orphan_cid, orphan = raw(b"o" * 9000)
    path = repo.files.path_of(orphan_cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orphan)
    tmp = path.with_name(path.name + ".123-4.tmp")
    tmp.write_bytes(b"half")
    young = repo.files.gc()
    assert young.orphan_files == 0 and path.exists()
    old = 1e9
    os.utime(path, (old, old))
    os.utime(tmp, (old, old))
    assert repo.files.gc().orphan_files == 2
    assert not path.exists() and not tmp.exists()


def test_the_store_survives_reopening(tmp_path):
    block = raw(b"kept " * 2000)
    with Repo(tmp_path / "node") as repo:
        repo.files.put_blocks([block])
        repo.files.pin(block[0], "kept")
    with Repo(tmp_path / "node") as repo:
        assert repo.files.get(block[0]) == block[1]
        assert [p.name for p in repo.files.pins()] == ["kept"]
        assert repo.files.usage() == (1, len(block[1]))


def test_gc_follows_dag_pb_links(repo):
    leaf = raw(b"leaf " * 2000)
    node = encode_node(PBNode(links=(PBLink(leaf[0], "leaf", len(leaf[1])),), data=b"\x08\x01"))
    root = (CID.for_block(node, "dag-pb"), node)
    repo.files.put_blocks([root, leaf, raw(b"stray")])
    repo.files.pin(root[0], "dir")
    assert repo.files.gc().blocks == 1
    assert repo.files.has_many([root[0], leaf[0]]) == {root[0], leaf[0]}


def test_a_pinned_block_that_does_not_decode_ends_its_branch(repo):
    bad = (CID.for_block(b"\xff\xff", "dag-pb"), b"\xff\xff")
    repo.files.put_blocks([bad, raw(b"other")])
    repo.files.pin(bad[0], "bad")
    assert repo.files.gc().blocks == 1
    assert repo.files.has_many([bad[0]]) == {bad[0]}


def test_gc_stops_when_the_pins_change_under_it(repo, monkeypatch):
    a, b = raw(b"a" * 10), raw(b"b" * 10)
    repo.files.put_blocks([a, b])
    real = repo.files.tables.pins_signature
    calls = []

    def changing():
        calls.append(1)
        if len(calls) == 2:  # between the mark and the sweep: another process pins
            repo.files.tables.set_pin("late", a[0].bytes, True, 5.0)
        return real()

    monkeypatch.setattr(repo.files.tables, "pins_signature", changing)
    report = repo.files.gc()
    assert report.interrupted and report.blocks == 0
    assert repo.files.has_many([a[0], b[0]]) == {a[0], b[0]}
    monkeypatch.undo()
    report = repo.files.gc()
    assert not report.interrupted and report.blocks == 1
    assert repo.files.has_many([a[0], b[0]]) == {a[0]}


def test_gc_leaves_a_block_an_add_claimed_after_the_mark(repo, monkeypatch):
    block = raw(b"claimed")
    repo.files.put_blocks([block])
    real = repo.files.tables.page

    def page_then_claim(after, limit):
        rows = real(after, limit)
        lease = repo.files.begin()  # another add writes the same block meanwhile
        repo.files.put_blocks([block], lease=lease)
        return rows

    monkeypatch.setattr(repo.files.tables, "page", page_then_claim)
    assert repo.files.gc().blocks == 0
    assert repo.files.get(block[0]) == block[1]
