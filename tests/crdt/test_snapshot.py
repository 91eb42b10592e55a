"""Signed snapshots (crdt/snapshot.py): round trips for every store type, and every forgery the
format must refuse."""

import pytest

from crdt.database import Database
from crdt.errors import InvalidSnapshot, UntrustedSnapshot
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from crdt.manifest import create_manifest
from crdt.snapshot import (
    DOMAIN,
    assemble_store,
    build_snapshot,
    check_trust,
    decode_chunk,
    decode_root,
    store_tables,
)
from tests.crdt.dag import ADMIN, OUTSIDER, WRITERS
from tests.crdt.test_database import OPTIONS, STORE_TYPES, simulate

NOW = 1_800_000_000


def _database(kind="keyvalue", n=50):
    manifest = create_manifest(
        kind, kind, admins=[ADMIN.did], writers=[ADMIN.did], options=OPTIONS.get(kind, {})
    )
    db = Database(manifest)
    for i in range(n):
        if kind == "keyvalue":
            db.write(ADMIN, {"op": "put", "key": f"k{i % 37}", "value": "x" * 30 + str(i)})
        elif kind == "events":
            db.write(ADMIN, {"op": "add", "value": i})
    return db


def _rows(built):
    return [decode_chunk(built.header, i, block) for i, (_cid, block) in enumerate(built.chunks)]


@pytest.mark.parametrize("kind", STORE_TYPES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snapshot_round_trip_gives_the_same_state(kind, seed):
    manifest, replicas = simulate(kind, seed, 60)
    db = replicas[0]
    built = build_snapshot(db, ADMIN, created=NOW, chunk_bytes=200)
    header = decode_root(built.root_cid, built.root)
    assert header.digest == db.digest()
    assert set(header.heads) == set(db.log.heads)
    assert header.entries == len(db.log)
    store = assemble_store(header, manifest, _rows(built))
    assert store.state() == db.store.state()
    assert store.digest() == db.store.digest()
    assert len(store) == len(db.store)


@pytest.mark.parametrize("kind", STORE_TYPES)
def test_chunk_blocks_are_the_canonical_encoding_of_their_rows(kind):
    _manifest, replicas = simulate(kind, 7, 60)
    built = build_snapshot(replicas[0], ADMIN, created=NOW, chunk_bytes=100)
    for _cid, block in built.chunks:
        assert encode(decode(block)) == block


def test_rows_are_cut_into_chunks_in_order():
    db = _database(n=200)
    built = build_snapshot(db, ADMIN, created=NOW, chunk_bytes=512)
    assert len(built.chunks) > 3
    rows = [tuple(r[:2]) for chunk in _rows(built) for r in chunk]
    assert rows == sorted(rows)
    assert built.header.rows == len(rows)
    assert {r[0] for r in rows} <= set(store_tables("keyvalue"))


def test_store_tables_names_the_store_types_tables():
    assert store_tables("keyvalue") == ["keyvalue.keys", "keyvalue.meta", "keyvalue.metaop"]


def _resigned(built, change, key=ADMIN):
    body = decode(built.root)["snapshot"]
    change(body)
    root = encode({"snapshot": body, "signature": key.sign(DOMAIN + encode(body))})
    return CID.for_block(root), root


def test_a_forged_signature_is_refused():
    built = build_snapshot(_database(), ADMIN, created=NOW)
    top = decode(built.root)
    top["snapshot"]["entries"] += 1  # the body changed after signing
    root = encode(top)
    with pytest.raises(InvalidSnapshot, match="signature"):
        decode_root(CID.for_block(root), root)
    # Signed by another key than the one it names as signer.
    cid, root = _resigned(built, lambda b: None, key=OUTSIDER)
    with pytest.raises(InvalidSnapshot, match="signature"):
        decode_root(cid, root)


def test_a_root_must_hash_to_its_cid():
    built = build_snapshot(_database(), ADMIN, created=NOW)
    other = build_snapshot(_database(n=3), ADMIN, created=NOW)
    with pytest.raises(InvalidSnapshot, match="hash"):
        decode_root(other.root_cid, built.root)


def test_a_state_digest_not_of_its_parts_is_refused():
    built = build_snapshot(_database(), ADMIN, created=NOW)
    cid, root = _resigned(built, lambda b: b.update(digest=bytes(32)))
    with pytest.raises(InvalidSnapshot, match="state digest"):
        decode_root(cid, root)


def test_a_wrong_chunk_is_refused():
    built = build_snapshot(_database(n=200), ADMIN, created=NOW, chunk_bytes=512)
    header = built.header
    with pytest.raises(InvalidSnapshot, match="does not hash"):
        decode_chunk(header, 0, built.chunks[1][1])
    with pytest.raises(InvalidSnapshot, match="no chunk"):
        decode_chunk(header, len(header.chunks), built.chunks[0][1])


def test_a_chunk_list_swapped_in_order_is_refused():
    db = _database(n=200)
    built = build_snapshot(db, ADMIN, created=NOW, chunk_bytes=512)

    def swap(body):
        body["chunks"][0], body["chunks"][1] = body["chunks"][1], body["chunks"][0]

    cid, root = _resigned(built, swap)
    header = decode_root(cid, root)
    blocks = dict(built.chunks)
    rows = [decode_chunk(header, i, blocks[c]) for i, c in enumerate(header.chunks)]
    with pytest.raises(InvalidSnapshot, match="row order"):
        assemble_store(header, db.manifest, rows)


def test_rows_whose_state_is_not_the_signed_one_are_refused():
    db = _database(n=40)
    other = _database(n=41)
    built = build_snapshot(db, ADMIN, created=NOW, chunk_bytes=512)
    forged = build_snapshot(other, ADMIN, created=NOW, chunk_bytes=512)

    # The signer's root lists chunks of another state: each chunk hashes, the store does not.
    def other_rows(body):
        body["chunks"] = [c for c, _ in forged.chunks]
        body["rows"] = forged.header.rows

    cid, root = _resigned(built, other_rows)
    header = decode_root(cid, root)
    rows = [decode_chunk(header, i, b) for i, (_c, b) in enumerate(forged.chunks)]
    with pytest.raises(InvalidSnapshot, match="store digest"):
        assemble_store(header, db.manifest, rows)


def test_rows_of_a_table_the_store_does_not_have_are_refused():
    db = _database(n=5)
    built = build_snapshot(db, ADMIN, created=NOW)
    rows = _rows(built)
    rows[0].append(["zzz.extra", b"k", 1])
    with pytest.raises(InvalidSnapshot, match="no table"):
        assemble_store(built.header, db.manifest, rows)
    with pytest.raises(InvalidSnapshot, match="rows"):
        assemble_store(built.header, db.manifest, [rows[0][:-2]])


def test_trust_signer_database_and_age():
    db = _database(n=5)
    built = build_snapshot(db, ADMIN, created=NOW)
    check_trust(built.header, db.manifest, now=NOW + 10, min_age=5, max_age=100)
    with pytest.raises(UntrustedSnapshot, match="younger"):
        check_trust(built.header, db.manifest, now=NOW + 10, min_age=60)
    with pytest.raises(UntrustedSnapshot, match="older"):
        check_trust(built.header, db.manifest, now=NOW + 1000, max_age=100)
    by_writer = build_snapshot(db, WRITERS[0], created=NOW)
    with pytest.raises(UntrustedSnapshot, match="not an admin"):
        check_trust(by_writer.header, db.manifest, now=NOW)
    check_trust(by_writer.header, db.manifest, now=NOW, trusted=[WRITERS[0].did])
    with pytest.raises(UntrustedSnapshot, match="another database"):
        check_trust(built.header, _database("events", 2).manifest, now=NOW)


@pytest.mark.parametrize("n", [1, 23, 24, 255, 256, 400])
def test_a_chunk_of_any_row_count_is_canonical(n):
    db = _database(n=n)
    db.write(ADMIN, {"op": "meta", "key": "m", "value": 1})
    for i in range(n):
        db.write(ADMIN, {"op": "put", "key": f"x{i}", "value": i})
    built = build_snapshot(db, ADMIN, created=NOW, chunk_bytes=1 << 30)
    assert len(built.chunks) == 1
    block = built.chunks[0][1]
    assert encode(decode(block)) == block
    assert len(decode(block)["rows"]) == built.header.rows
