"""Encrypted databases (crdt/encryption.py, crdt/database.py): the format byte for byte, typed
errors for every bad input, readers that decrypt on apply for every store type, blind replicas
that verify and keep the log but never see a plaintext byte, adding and removing readers."""

from __future__ import annotations

import hashlib
from typing import Any

import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.database import Database
from crdt.encryption import (
    Keyring,
    associated_data,
    decrypt_payload,
    encrypt_payload,
    key_id,
    key_op,
    open_key,
    parse_envelope,
    parse_key_op,
    seal_key,
    x25519_secret_from_seed,
)
from crdt.errors import (
    DecryptionFailed,
    EncryptionError,
    GridnodeError,
    InvalidEnvelope,
    InvalidManifest,
    MissingDatabaseKey,
    Unauthorized,
)
from crdt.identity import Keypair
from crdt.ipld.dagcbor import decode, encode
from crdt.manifest import create_manifest, decode_manifest

ADMIN = Keypair(bytes(range(32)))
READER = Keypair(bytes(range(1, 33)))
OTHER = Keypair(bytes(range(2, 34)))
KEY = bytes(range(100, 132))
NONCE = bytes(range(24))
SEED = bytes(32)
MARKER = "PLAINTEXT-MARKER-7f3a"

OPS: dict[str, list[Any]] = {
    "events": [{"op": "add", "value": MARKER}, {"op": "add", "value": 2}],
    "keyvalue": [{"op": "put", "key": "k", "value": MARKER}, {"op": "put", "key": "j", "value": 1}],
    "documents": [{"op": "put", "doc": {"_id": "a", "text": MARKER}}, {"op": "del", "id": "b"}],
    "counter": [{"op": "inc", "by": 5}, {"op": "inc", "by": -2}],
    "set": [{"op": "add", "value": MARKER}, {"op": "add", "value": "x"}],
}


def manifest(store: str = "keyvalue", **extra: Any):
    return create_manifest("secret", store, admins=[ADMIN.did], nonce=b"n", encrypted=True, **extra)


def nonces():
    n = 0
    while True:
        n += 1
        yield hashlib.sha256(n.to_bytes(4, "big")).digest()[:24]


def fresh(store: str = "keyvalue", readers=(READER.did,)) -> tuple[Database, Any]:
    db = Database(manifest(store), keyring=Keyring(ADMIN))
    db.create_key(ADMIN, KEY, readers, SEED)
    return db, nonces()


# -- the format, byte for byte ------------------------------------------------------------------


def test_envelope_vector():
    """The vector of docs/spec.md: fixed key, nonce, database and author."""
    db = manifest().cid
    payload = {"op": "put", "key": "k", "value": "v"}
    envelope = encrypt_payload(payload, key=KEY, nonce=NONCE, db=db, author=ADMIN.did)
    assert envelope["kid"].hex() == key_id(KEY).hex()
    assert key_id(KEY) == hashlib.sha256(b"gridnode/dbkey/1\x00" + KEY).digest()[:16]
    assert len(envelope["ct"]) == len(encode(payload)) + 16
    assert associated_data(db, envelope["kid"], ADMIN.did).startswith(b"gridnode/enc/1\x00")
    assert encode(envelope).hex() == VECTOR_ENVELOPE
    assert decrypt_payload(envelope, key=KEY, db=db, author=ADMIN.did) == payload


def test_wrap_vector_opens_with_libsodium_sealed_box():
    sealed = seal_key(KEY, READER.did, bytes(range(200, 232)))
    assert sealed.hex() == VECTOR_WRAP
    private = nacl.public.PrivateKey(x25519_secret_from_seed(READER))
    assert nacl.public.SealedBox(private).decrypt(sealed) == KEY
    assert open_key(sealed, READER) == KEY


def test_a_wrap_for_someone_else_does_not_open():
    sealed = seal_key(KEY, READER.did, bytes(32))
    with pytest.raises(DecryptionFailed):
        open_key(sealed, OTHER)
    with pytest.raises(InvalidEnvelope):
        open_key(sealed[:-1], READER)


@pytest.mark.parametrize(
    "change",
    ["flip", "truncate", "key", "author", "db"],
)
def test_bad_ciphertext_gives_a_typed_error(change):
    db = manifest().cid
    envelope = encrypt_payload({"v": MARKER}, key=KEY, nonce=NONCE, db=db, author=ADMIN.did)
    key, author, where = KEY, ADMIN.did, db
    if change == "flip":
        ct = bytearray(envelope["ct"])
        ct[3] ^= 1
        envelope["ct"] = bytes(ct)
    elif change == "truncate":
        envelope["ct"] = envelope["ct"][:-1]
    elif change == "key":
        key = bytes(32)
    elif change == "author":
        author = OTHER.did
    else:
        where = manifest("events").cid
    with pytest.raises(DecryptionFailed) as info:
        decrypt_payload(envelope, key=key, db=where, author=author)
    assert MARKER not in str(info.value)
    assert isinstance(info.value, GridnodeError)


@pytest.mark.parametrize(
    "payload",
    [
        {"op": "enc", "kid": b"x", "nonce": NONCE, "ct": bytes(16)},
        {"op": "enc", "kid": bytes(16), "nonce": b"short", "ct": bytes(16)},
        {"op": "enc", "kid": bytes(16), "nonce": NONCE, "ct": bytes(15)},
        {"op": "enc", "kid": bytes(16), "nonce": NONCE, "ct": bytes(16), "x": 1},
        [1, 2],
    ],
)
def test_malformed_envelopes(payload):
    with pytest.raises(InvalidEnvelope):
        parse_envelope(payload)


def test_key_op_shape():
    op = key_op(KEY, [READER.did, ADMIN.did], SEED)
    parsed = parse_key_op(decode(encode(op)))
    assert parsed.op == "key" and parsed.kid == key_id(KEY)
    assert list(parsed.wraps) == sorted([READER.did, ADMIN.did])
    bad = dict(op, wraps=list(reversed(op["wraps"])))
    with pytest.raises(InvalidEnvelope):
        parse_key_op(bad)
    with pytest.raises(InvalidEnvelope):
        parse_key_op(dict(op, wraps=[]))
    with pytest.raises(InvalidEnvelope):
        key_op(KEY, [], SEED)


def test_manifest_field():
    m = manifest()
    assert m.encrypted and not m.private
    assert decode(m.block)["encryption"] == "xchacha20poly1305/x25519-sealed"
    plain = create_manifest("secret", "keyvalue", admins=[ADMIN.did], nonce=b"n")
    assert not plain.encrypted and "encryption" not in decode(plain.block)
    body = decode(m.block)
    body["encryption"] = "rot13"
    block = encode(body)
    from crdt.ipld.cid import CID

    with pytest.raises(InvalidManifest):
        decode_manifest(CID.for_block(block), block)
    with pytest.raises(InvalidManifest):
        create_manifest("s", "events", admins=[ADMIN.did], writers=["*"], encrypted=True)


# -- databases ----------------------------------------------------------------------------------


def _values(space) -> bytes:
    """Every value of every table of a memory space, encoded: what a replica holds."""
    out = []
    for table in space._tables.values():
        for key, value in table.range():
            out.append(key + encode(value))
    return b"".join(out)


@pytest.mark.parametrize("store", sorted(OPS))
def test_readers_fold_every_store_type_and_blind_replicas_verify_without_reading(store):
    writer, nonce = fresh(store)
    plain = Database(create_manifest("plain", store, admins=[ADMIN.did], nonce=b"n"))
    for op in OPS[store]:
        writer.write(ADMIN, op, nonce=next(nonce))
        plain.write(ADMIN, op)
    if store == "set":
        added = next(e for e in writer.log if e.payload.get("op") == "enc")
        remove = {"op": "remove", "value": MARKER, "tags": [added.cid]}
        writer.write(ADMIN, remove, nonce=next(nonce))
    entries = list(writer.log)
    assert all(MARKER.encode() not in e.block for e in entries)

    reader = Database(manifest(store), keyring=Keyring(READER))
    reader.join(entries)
    blind = Database(manifest(store))
    blind.join(entries)

    assert reader.log.heads == blind.log.heads == writer.log.heads
    assert reader.store.state() == writer.store.state()
    if store == "counter":  # the others name entry CIDs and clocks in their state
        assert reader.store.state() == plain.store.state()
    assert reader.digest() == writer.digest()
    assert len(blind.store) == 0 and blind.blind and not reader.blind
    assert not blind.ignored and not reader.ignored
    assert MARKER.encode() not in _values(blind.space)
    assert MARKER.encode() in _values(reader.space) or store == "counter" or store == "set"


def test_order_of_arrival_does_not_matter_for_a_reader():
    writer, nonce = fresh()
    for i in range(5):
        writer.write(ADMIN, {"op": "put", "key": str(i), "value": i}, nonce=next(nonce))
    entries = list(writer.log)
    reader = Database(manifest(), keyring=Keyring(READER))
    reader.join(list(reversed(entries)))
    assert reader.store.state() == writer.store.state()


def test_a_reader_added_later_reads_what_it_replicated_blind():
    writer, nonce = fresh(readers=())
    writer.write(ADMIN, {"op": "put", "key": "k", "value": MARKER}, nonce=next(nonce))
    late = Database(manifest(), keyring=Keyring(OTHER))
    late.join(writer.log)
    assert len(late.store) == 0 and late.blind
    assert writer.readers() == [ADMIN.did]
    writer.add_reader(ADMIN, OTHER.did, bytes([7]) * 32)
    assert writer.readers() == sorted([ADMIN.did, OTHER.did])
    late.join(writer.log)
    assert late.store.get("k") == MARKER
    assert late.store.state() == writer.store.state() and not late.blind
    assert late.keyring is not None and late.keyring.learned == [(key_id(KEY), KEY)]


def test_removing_a_reader_rotates_the_key_for_later_entries():
    writer, nonce = fresh()
    writer.write(ADMIN, {"op": "put", "key": "before", "value": 1}, nonce=next(nonce))
    new_key = bytes(range(50, 82))
    writer.remove_reader(ADMIN, READER.did, new_key, bytes([9]) * 32)
    assert writer.current_kid() == key_id(new_key)
    assert writer.readers() == [ADMIN.did]
    writer.write(ADMIN, {"op": "put", "key": "after", "value": MARKER}, nonce=next(nonce))
    last = list(writer.log)[-1]
    assert last.payload["kid"] == key_id(new_key)

    removed = Database(manifest(), keyring=Keyring(READER))
    removed.join(writer.log)
    assert sorted(removed.store.state()) == ["before"]
    assert writer.store.get("after") == MARKER and writer.store.get("before") == 1
    with pytest.raises(MissingDatabaseKey):
        removed.write(READER, {"op": "put", "key": "x", "value": 1}, nonce=next(nonce))


def test_only_admins_hand_out_keys_and_writes_need_a_nonce_and_a_key():
    writer, _nonce = fresh()
    with pytest.raises(EncryptionError):
        writer.write(ADMIN, {"op": "put", "key": "k", "value": 1})
    reader = Database(manifest(), keyring=Keyring(READER))
    reader.join(writer.log)
    with pytest.raises(Unauthorized):
        reader.write(READER, key_op(KEY, [OTHER.did], SEED, new=False))
    blind = Database(manifest())
    blind.join(writer.log)
    with pytest.raises(MissingDatabaseKey):
        blind.write(ADMIN, {"op": "put", "key": "k", "value": 1}, nonce=NONCE)


def test_plaintext_and_garbage_in_an_encrypted_database_are_ignored_by_everyone():
    writer, _nonce = fresh()
    # Written past the Database API, as a hostile writer would: a plaintext op and bad ciphertext.
    writer.log.append(ADMIN, {"op": "put", "key": "k", "value": 1})
    bad = encrypt_payload(
        {"op": "put", "key": "z", "value": 1},
        key=KEY,
        nonce=NONCE,
        db=manifest().cid,
        author=OTHER.did,
    )
    writer.log.append(ADMIN, bad)
    entries = list(writer.log)
    reader = Database(manifest(), keyring=Keyring(READER))
    reader.join(entries)
    blind = Database(manifest())
    blind.join(entries)
    assert len(reader.store) == 0 and len(reader.ignored) == 2
    assert len(blind.ignored) == 1  # the plaintext; the ciphertext it cannot judge


def test_reopening_relearns_keys_from_the_log_and_asks_for_a_fold_when_keys_change():
    writer, nonce = fresh()
    writer.write(ADMIN, {"op": "put", "key": "k", "value": 1}, nonce=next(nonce))
    # The creator folded with the key it made: reopened, nothing to fold again.
    assert not Database(manifest(), space=writer.space, keyring=Keyring(ADMIN)).rekey_needed
    reader = Database(manifest(), keyring=Keyring(READER))
    reader.join(writer.log)
    assert not reader.rekey_needed
    again = Database(manifest(), space=reader.space, keyring=Keyring(READER))
    assert again.keyring is not None and again.keyring.kids() == [key_id(KEY)]
    assert not again.rekey_needed
    blind_view = Database(manifest(), space=reader.space)
    assert blind_view.rekey_needed


VECTOR_ENVELOPE = (
    "a462637458267ab6ae19cb1764f07ebfd8f053d367cea83768ff429578c60613a5cdb87120b35b6d82d8c72c6"
    "26f7063656e63636b69645078adf2e3f5746b2e2846d41d8128665b656e6f6e63655818000102030405060708"
    "090a0b0c0d0e0f1011121314151617"
)
VECTOR_WRAP = (
    "4d5bab89b0733d9d8dcecf04f321c90b761b7765a6bdb2bddbfad3e7abdf1f6648a169ec4f9e9cccdb65a59c"
    "ae125b9114d3d043e9e6d76322eef9b57edeeca940b9a99ae2a335df3831b0b3429d28db"
)


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.sampled_from("abc"), st.integers(0, 9)),
            st.tuples(st.just("del"), st.sampled_from("abc"), st.just(0)),
            st.tuples(st.just("rotate"), st.just(""), st.integers(0, 255)),
        ),
        max_size=12,
    ),
    order=st.randoms(use_true_random=False),
)
def test_readers_converge_whatever_the_order_and_duplicates(steps, order):
    writer, nonce = fresh()
    for kind, key, n in steps:
        if kind == "put":
            writer.write(ADMIN, {"op": "put", "key": key, "value": n}, nonce=next(nonce))
        elif kind == "del":
            writer.write(ADMIN, {"op": "del", "key": key}, nonce=next(nonce))
        else:
            writer.create_key(ADMIN, bytes([n]) * 32, [READER.did], bytes([n]) * 32)
    entries = list(writer.log)
    shuffled = entries + entries[: len(entries) // 2]
    order.shuffle(shuffled)
    reader = Database(manifest(), keyring=Keyring(READER))
    for entry in shuffled:
        reader.join([entry])
    assert reader.log.heads == writer.log.heads
    assert reader.store.state() == writer.store.state()
    assert reader.digest() == writer.digest()


def test_a_database_that_is_not_encrypted_opens_no_encryption_table():
    plain = Database(create_manifest("plain", "keyvalue", admins=[ADMIN.did], nonce=b"n"))
    plain.write(ADMIN, {"op": "put", "key": "k", "value": 1})
    plain.rebuild()
    assert plain.current_kid() is None and plain.readers() == [] and not plain.rekey_needed
    assert not [name for name in plain.space._tables if name.startswith("enc.")]


def test_plaintext_of_an_entry_for_readers_and_blind_replicas():
    writer, nonce = fresh()
    entry = writer.write(ADMIN, {"op": "put", "key": "k", "value": MARKER}, nonce=next(nonce))
    blind = Database(manifest())
    blind.join(writer.log)
    assert writer.plaintext(entry) == {"op": "put", "key": "k", "value": MARKER}
    assert blind.plaintext(entry) == entry.payload and entry.payload["op"] == "enc"


def test_hostile_wraps_teach_nothing_and_break_nothing():
    writer, nonce = fresh(readers=())
    writer.write(ADMIN, {"op": "put", "key": "k", "value": MARKER}, nonce=next(nonce))
    # Garbage sealed to the reader, and a real wrap of another key under the current kid.
    garbage = {"op": "wrap", "kid": key_id(KEY), "wraps": [[READER.did, bytes(80)]]}
    wrong = {
        "op": "wrap",
        "kid": key_id(KEY),
        "wraps": [[READER.did, seal_key(bytes(32), READER.did, bytes([3]) * 32)]],
    }
    writer.log.append(ADMIN, garbage)
    writer.log.append(ADMIN, wrong)
    reader = Database(manifest(), keyring=Keyring(READER))
    reader.join(writer.log)
    assert reader.blind and len(reader.store) == 0 and not reader.ignored
    assert reader.keyring is not None and reader.keyring.kids() == []


def test_a_writers_rotation_is_not_followed():
    """A writer (not an admin) holds the key and the log takes its key operation as a write,
    but the current key stays the last admin's: a writer cannot seal others out."""
    m = create_manifest(
        "secret", "keyvalue", admins=[ADMIN.did], writers=[OTHER.did], nonce=b"n", encrypted=True
    )
    admin = Database(m, keyring=Keyring(ADMIN))
    admin.create_key(ADMIN, KEY, [OTHER.did, READER.did], SEED)
    other = Database(m, keyring=Keyring(OTHER))
    other.join(admin.log)
    rogue = key_op(bytes(range(32)), [OTHER.did], SEED)
    other.log.append(OTHER, rogue)  # past Database.write, which refuses it to a non-admin
    admin.join(other.log)
    assert admin.current_kid() == key_id(KEY)
    assert admin.readers() == sorted([ADMIN.did, OTHER.did, READER.did])
    with pytest.raises(Unauthorized):
        other.write(OTHER, rogue)
