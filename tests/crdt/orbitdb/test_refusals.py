"""Every rule of crdt/orbitdb refuses with its own error: blocks that do not decode, entries,
identities, manifests and access controllers of the wrong shape, and entries that decode but do
not verify (the key-identity mismatch OrbitDB 4.0.0 accepts among them)."""

from __future__ import annotations

import cbor2
import pytest
from coincurve import PrivateKey

from crdt.errors import (
    InvalidOrbitAccess,
    InvalidOrbitAddress,
    InvalidOrbitEntry,
    InvalidOrbitIdentity,
    InvalidOrbitManifest,
    OrbitBadClock,
    OrbitBadIdentitySignature,
    OrbitBadSignature,
    OrbitEntryTooLarge,
    OrbitError,
    OrbitHashMismatch,
    OrbitIdentityMismatch,
    OrbitKeyMismatch,
    OrbitRefused,
    OrbitUnauthorized,
    OrbitUnsupported,
    OrbitWrongLog,
)
from crdt.ipld import CID, decode, encode
from crdt.orbitdb import (
    check_clock,
    decode_access,
    decode_entry,
    decode_identity,
    decode_manifest,
    format_address,
    format_hash,
    parse_address,
    parse_hash,
    signed_bytes,
    verify_entry,
    verify_identity,
    verify_signature,
)
from crdt.orbitdb.blocks import MAX_CLOCK_TIME, MAX_ENTRY_BYTES, MAX_NEXT, MAX_REFS
from tests.crdt.orbitdb import forge

ALICE = forge.writer(1)
BOB = forge.writer(2)
MALLORY = forge.writer(3)
ACCESS_CID, ACCESS_BLOCK = forge.access([ALICE.id, BOB.id])
ACCESS = decode_access(ACCESS_CID, ACCESS_BLOCK)
MANIFEST_CID, MANIFEST_BLOCK = forge.manifest("test", "documents", ACCESS_CID)
ADDRESS = format_address(MANIFEST_CID)
PUT = {"op": "PUT", "key": "a", "value": {"_id": "a"}}


def identity(author: forge.Writer = ALICE):
    return decode_identity(author.cid, author.data)


def made(*args, **kwargs):
    return decode_entry(*forge.entry(*args, **kwargs))


def test_a_well_made_entry_is_accepted():
    root = made(ALICE, MANIFEST_CID, PUT, 1)
    verify_entry(root, identity(), ACCESS, MANIFEST_CID)
    child = made(BOB, MANIFEST_CID, PUT, 2, next=[root.hash], refs=[root.hash])
    verify_entry(child, identity(BOB), ACCESS, ADDRESS)
    check_clock(child, [root])
    check_clock(root, [])
    assert root.hash.startswith("zdpu")


# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/orbitdb/",
        "orbitdb/" + format_hash(MANIFEST_CID),
        "/orbitdb//" + format_hash(MANIFEST_CID),
        "/orbitdb/" + str(MANIFEST_CID),  # base32: OrbitDB would open it, as another log id
        "/orbitdb/" + format_hash(MANIFEST_CID) + "/",
        "/orbitdb/" + format_hash(CID.for_block(b"x", codec="raw")),
        "/orbitdb/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        "/orbitdb/z" + "1" * 200,
        "/ipfs/" + format_hash(MANIFEST_CID),
    ],
)
def test_addresses_other_than_the_one_form_are_refused(text):
    with pytest.raises(InvalidOrbitAddress):
        parse_address(text)


def test_hash_strings_are_base58btc_dag_cbor_cids():
    assert parse_hash(format_hash(MANIFEST_CID)) == MANIFEST_CID
    good = format_hash(MANIFEST_CID)
    raw = format_hash(CID.for_block(b"x", codec="raw"))
    for text in [None, 5, str(MANIFEST_CID), good[:-1], good + "1", "zzzz", raw, "z" + "0" * 48]:
        with pytest.raises(InvalidOrbitAddress):
            parse_hash(text)


# -- entries that do not decode ----------------------------------------------------------------


def reblock(value):
    data = encode(value)
    return CID.for_block(data), data


def entry_value(**override):
    _cid, data = forge.entry(ALICE, MANIFEST_CID, PUT, 1)
    value = decode(data)
    value.update(override)
    return value


def test_the_hash_is_checked():
    _cid, data = forge.entry(ALICE, MANIFEST_CID, PUT, 1)
    other, _ = forge.entry(ALICE, MANIFEST_CID, PUT, 2)
    with pytest.raises(OrbitHashMismatch):
        decode_entry(other, data)
    with pytest.raises(InvalidOrbitEntry):
        decode_entry(CID.for_block(data, codec="raw"), data)


def test_non_canonical_dag_cbor_is_refused():
    _cid, data = forge.entry(ALICE, MANIFEST_CID, PUT, 1)
    # The same map with its keys in another order: OrbitDB decodes it (cborg checks no key
    # order) under a second CID of the same signed entry; gridnode refuses it.
    value = cbor2.loads(data)
    shuffled = cbor2.dumps(dict(sorted(value.items(), reverse=True)))
    assert shuffled != data
    with pytest.raises(InvalidOrbitEntry, match="DAG-CBOR"):
        decode_entry(CID.for_block(shuffled), shuffled)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 1},
        {"v": "2"},
        {"v": 2.5},
        {"id": 5},
        {"id": ""},
        {"payload": None},
        {"clock": {"id": "x"}},
        {"clock": {"id": "x", "time": 1, "extra": 0}},
        {"clock": {"id": 5, "time": 1}},
        {"clock": {"id": "x", "time": 1.5}},
        {"clock": {"id": "x", "time": "1"}},
        {"clock": [1]},
        {"key": "04" + "00" * 64},
        {"key": "02" + "AB" * 32},
        {"key": "02" + "ab" * 31},
        {"key": b"\x02" * 33},
        {"sig": "zz" * 70},
        {"sig": "ab" * 73},
        {"sig": "abc"},
        {"sig": b"\x30" * 70},
        {"identity": "not a hash"},
        {"identity": "bafyreieecvmpthaoyasxzhnew2d25uaebwldeokea2wigyq5wr4dwiaimi"},
        {"next": "zdpu"},
        {"next": [5]},
        {"next": ["bafyreieecvmpthaoyasxzhnew2d25uaebwldeokea2wigyq5wr4dwiaimi"]},
        {"refs": None},
        {"hash": "zdpu..."},
        {"_payload": b"ciphertext"},
    ],
)
def test_malformed_entries_are_refused(change):
    with pytest.raises(InvalidOrbitEntry):
        decode_entry(*reblock(entry_value(**change)))


@pytest.mark.parametrize(
    "field", ["id", "payload", "next", "refs", "clock", "v", "key", "identity", "sig"]
)
def test_an_entry_missing_a_field_is_refused(field):
    value = entry_value()
    del value[field]
    with pytest.raises(InvalidOrbitEntry, match="missing"):
        decode_entry(*reblock(value))


def test_repeated_next_or_refs_are_refused():
    root = made(ALICE, MANIFEST_CID, PUT, 1)
    for field in ("next", "refs"):
        with pytest.raises(InvalidOrbitEntry, match="twice"):
            decode_entry(*reblock(entry_value(**{field: [root.hash, root.hash]})))


def test_bounds():
    hashes = [format_hash(CID.for_block(encode(i))) for i in range(MAX_REFS + 1)]
    with pytest.raises(OrbitEntryTooLarge):
        decode_entry(*reblock(entry_value(next=hashes[: MAX_NEXT + 1])))
    with pytest.raises(OrbitEntryTooLarge):
        decode_entry(*reblock(entry_value(refs=hashes)))
    decode_entry(*reblock(entry_value(next=hashes[:MAX_NEXT], refs=hashes[:MAX_REFS])))
    with pytest.raises(OrbitEntryTooLarge):
        decode_entry(*forge.entry(ALICE, MANIFEST_CID, "x" * MAX_ENTRY_BYTES, 1))


def test_not_an_entry():
    for value in ([], "entry", 5, None):
        with pytest.raises(InvalidOrbitEntry):
            decode_entry(*reblock(value))
    with pytest.raises(InvalidOrbitEntry, match="DAG-CBOR"):
        decode_entry(CID.for_block(b"\xff"), b"\xff")
    with pytest.raises(OrbitUnsupported, match="encrypted"):
        decode_entry(*reblock(b"an encrypted entry"))


# -- identities, manifests, access controllers ---------------------------------------------------


def identity_block(**override):
    value = forge.identity_value(forge.private_key(9), forge.private_key(10))
    value.update(override)
    return reblock(value)


@pytest.mark.parametrize(
    "change",
    [
        {"id": "did:key:z6Mk"},
        {"publicKey": "02" + "00" * 31},
        {"signatures": {"id": "ab" * 70}},
        {"signatures": {"id": "ab" * 70, "publicKey": 5}},
        {"signatures": "ab"},
        {"type": 5},
        {"extra": 1},
        {"hash": "zdpu"},
    ],
)
def test_malformed_identities_are_refused(change):
    with pytest.raises(InvalidOrbitIdentity):
        decode_identity(*identity_block(**change))


def test_identity_bounds_hash_and_type():
    cid, data = identity_block()
    decode_identity(cid, data)
    with pytest.raises(OrbitHashMismatch):
        decode_identity(ALICE.cid, data)
    with pytest.raises(OrbitUnsupported):
        decode_identity(*identity_block(type="ethereum"))
    with pytest.raises(InvalidOrbitIdentity):
        decode_identity(*reblock({"padding": "x" * 5000}))


def test_identity_signatures_are_checked_as_orbitdbs_provider_does():
    verify_identity(identity())
    value = forge.identity_value(forge.private_key(9), forge.private_key(10))
    other = forge.identity_value(forge.private_key(11), forge.private_key(12))
    for signatures in (
        {"id": other["signatures"]["id"], "publicKey": value["signatures"]["publicKey"]},
        {"id": value["signatures"]["id"], "publicKey": other["signatures"]["publicKey"]},
        # Each signature by the wrong one of the two keys.
        {
            "id": forge.sign(forge.private_key(9), value["id"].encode()),
            "publicKey": value["signatures"]["publicKey"],
        },
    ):
        forged = decode_identity(*reblock({**value, "signatures": signatures}))
        with pytest.raises(OrbitBadIdentitySignature):
            verify_identity(forged)


@pytest.mark.parametrize(
    "value, error",
    [
        ({"name": "x", "type": "documents"}, InvalidOrbitManifest),
        ({"name": "", "type": "documents", "accessController": "/ipfs/x"}, InvalidOrbitManifest),
        ({"name": "x", "type": 5, "accessController": "/ipfs/x"}, InvalidOrbitManifest),
        ({"name": "x", "type": "documents", "accessController": 5}, InvalidOrbitManifest),
        ({"name": "x", "type": "documents", "accessController": "/ipfs/zz"}, InvalidOrbitManifest),
        ({"name": "x", "type": "feed", "accessController": "/ipfs/x"}, OrbitUnsupported),
        ({"name": "x", "type": "documents", "accessController": "/orbitdb/x"}, OrbitUnsupported),
        (
            {"name": "x", "type": "events", "accessController": "/ipfs/x", "other": 1},
            InvalidOrbitManifest,
        ),
        (["name"], InvalidOrbitManifest),
    ],
)
def test_malformed_manifests_are_refused(value, error):
    with pytest.raises(error):
        decode_manifest(*reblock(value))


def test_manifests_with_meta_are_read():
    access = "/ipfs/" + format_hash(ACCESS_CID)
    manifest = decode_manifest(
        *reblock({"name": "x", "type": "keyvalue", "accessController": access, "meta": {"a": 1}})
    )
    assert manifest.meta == {"a": 1} and manifest.access_controller == ACCESS_CID
    assert decode_manifest(MANIFEST_CID, MANIFEST_BLOCK).meta is None


@pytest.mark.parametrize(
    "value, error",
    [
        ({"type": "ipfs"}, InvalidOrbitAccess),
        ({"type": "ipfs", "write": "*"}, InvalidOrbitAccess),
        ({"type": "ipfs", "write": [5]}, InvalidOrbitAccess),
        ({"type": "ipfs", "write": [], "admin": []}, InvalidOrbitAccess),
        ({"type": "orbitdb", "write": []}, OrbitUnsupported),
        ("ipfs", InvalidOrbitAccess),
    ],
)
def test_malformed_access_controllers_are_refused(value, error):
    with pytest.raises(error):
        decode_access(*reblock(value))


def test_anyone_may_write_under_a_star():
    anyone = decode_access(*forge.access(["*"]))
    entry = made(MALLORY, MANIFEST_CID, PUT, 1)
    verify_entry(entry, identity(MALLORY), anyone, MANIFEST_CID)
    assert anyone.allows("anything") and not ACCESS.allows(MALLORY.id)


# -- entries that decode but do not verify -----------------------------------------------------


def refused(entry, error, author=ALICE, access=ACCESS, address=MANIFEST_CID):
    with pytest.raises(error):
        verify_entry(entry, identity(author), access, address)


def test_key_identity_mismatch_is_refused():
    """Mallory signs with her own key and names Alice's identity: OrbitDB 4.0.0 checks the
    signature with ``key`` and write access with ``identity``, and accepts it."""
    forged = made(ALICE, MANIFEST_CID, PUT, 1, signer=MALLORY.key)
    assert verify_signature(forged.sig, forged.key, signed_bytes(forged))
    refused(forged, OrbitKeyMismatch)


def test_wrong_log_is_refused():
    other_cid, _ = forge.manifest("other", "documents", ACCESS_CID)
    refused(made(ALICE, other_cid, PUT, 1), OrbitWrongLog)
    refused(made(ALICE, "/orbitdb/" + str(MANIFEST_CID), PUT, 1), OrbitWrongLog)


def test_identity_mismatch_is_refused():
    refused(made(BOB, MANIFEST_CID, PUT, 1), OrbitIdentityMismatch, author=ALICE)


def test_unauthorised_writer_is_refused():
    refused(made(MALLORY, MANIFEST_CID, PUT, 1), OrbitUnauthorized, author=MALLORY)


def test_bad_identity_signature_is_refused():
    value = forge.identity_value(ALICE.id_key, ALICE.key)
    value["signatures"]["id"] = forge.sign(ALICE.key, b"something else")
    broken = forge.writer(1, value)
    entry = made(broken, MANIFEST_CID, PUT, 1)
    refused(entry, OrbitBadIdentitySignature, author=broken)
    # The caller that has checked the identity block itself may skip it.
    verify_entry(entry, identity(broken), ACCESS, MANIFEST_CID, identity_verified=True)


@pytest.mark.parametrize(
    "override",
    [
        {"payload": {"op": "PUT", "key": "a", "value": {"_id": "a", "admin": True}}},
        {"sig": forge.sign(ALICE.key, b"another message")},
        {"next": [format_hash(CID.for_block(encode("elsewhere")))]},
    ],
)
def test_bad_entry_signature_is_refused(override):
    refused(made(ALICE, MANIFEST_CID, PUT, 1, override=override), OrbitBadSignature)


def test_high_s_signatures_are_refused_as_nobles_verify_does():
    entry = made(ALICE, MANIFEST_CID, PUT, 1)
    der = bytes.fromhex(entry.sig)
    r_length = der[3]
    r = int.from_bytes(der[4 : 4 + r_length], "big")
    s = int.from_bytes(der[6 + r_length :], "big")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

    def integer(value: int) -> bytes:
        body = value.to_bytes((value.bit_length() + 8) // 8, "big")
        return b"\x02" + bytes([len(body)]) + body

    body = integer(r) + integer(n - s)
    high = (b"\x30" + bytes([len(body)]) + body).hex()
    assert verify_signature(entry.sig, entry.key, signed_bytes(entry))
    assert not verify_signature(high, entry.key, signed_bytes(entry))
    refused(made(ALICE, MANIFEST_CID, PUT, 1, override={"sig": high}), OrbitBadSignature)


@pytest.mark.parametrize("time", [0, -1, MAX_CLOCK_TIME + 1])
def test_clock_times_out_of_range_are_refused(time):
    refused(made(ALICE, MANIFEST_CID, PUT, time), OrbitBadClock)


def test_a_clock_id_other_than_the_key_is_refused():
    entry = made(ALICE, MANIFEST_CID, PUT, 1, override={"clock": {"id": BOB.public_key, "time": 1}})
    refused(entry, OrbitBadClock)


def test_clocks_must_follow_the_parents():
    root = made(ALICE, MANIFEST_CID, PUT, 1)
    other = made(BOB, MANIFEST_CID, PUT, 3)
    for time in (1, 3, 2**40):
        child = made(ALICE, MANIFEST_CID, PUT, time, next=[root.hash])
        with pytest.raises(OrbitBadClock):
            check_clock(child, [root])
    check_clock(made(ALICE, MANIFEST_CID, PUT, 4, next=[root.hash, other.hash]), [other, root])
    with pytest.raises(OrbitBadClock):
        check_clock(made(ALICE, MANIFEST_CID, PUT, 2), [])
    with pytest.raises(ValueError):
        check_clock(made(ALICE, MANIFEST_CID, PUT, 2, next=[root.hash]), [])


def test_verify_signature_never_raises():
    for signature, key in [
        ("", ""),
        ("zz", "02"),
        ("30" * 35, "02" + "00" * 32),
        ("ab", "ab" * 33),
    ]:
        assert verify_signature(signature, key, b"data") is False
    assert verify_signature(forge.sign(PrivateKey(), b"x"), ALICE.public_key, b"x") is False


def test_every_refusal_is_an_orbit_error():
    for error in (OrbitKeyMismatch, OrbitBadSignature, OrbitBadClock, OrbitUnauthorized):
        assert issubclass(error, OrbitRefused) and issubclass(error, OrbitError)
