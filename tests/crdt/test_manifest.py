"""The manifest's ``readers`` key: a private database, as every replica reads it."""

import pytest

from crdt.errors import InvalidManifest
from crdt.identity import Keypair
from crdt.ipld import CID, encode
from crdt.manifest import create_manifest, decode_manifest

ADMIN = Keypair.from_seed(bytes([1]) * 32).did
READER = Keypair.from_seed(bytes([2]) * 32).did


def test_readers_make_a_database_private_and_are_kept_sorted():
    other = Keypair.from_seed(bytes([3]) * 32).did
    manifest = create_manifest("s", "keyvalue", admins=[ADMIN], readers=[READER, other, READER])
    again = decode_manifest(manifest.cid, manifest.block)
    assert again.private and again.readers == tuple(sorted({READER, other}))
    # An empty list is private too (admins and writers read it); no key: not private.
    assert create_manifest("s", "keyvalue", admins=[ADMIN], readers=[]).private
    plain = create_manifest("s", "keyvalue", admins=[ADMIN])
    assert not plain.private and plain.readers == ()
    assert b"readers" not in plain.block  # manifests without readers are byte for byte as before


def _block(**changes):
    body = {
        "v": 1,
        "kind": "gridnode/manifest",
        "name": "s",
        "store": "keyvalue",
        "admins": [ADMIN],
        "writers": [],
        "options": {},
        "readers": [READER],
    }
    body.update(changes)
    block = encode(body)
    return CID.for_block(block), block


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"readers": ["did:key:nope"]}, "readers"),
        ({"readers": ["*"]}, "readers"),
        ({"readers": [READER, READER]}, "sorted and without duplicates"),
        ({"readers": READER}, "list"),
        ({"writers": ["*"]}, "cannot let anyone write"),
    ],
)
def test_malformed_reader_lists_are_refused(changes, message):
    with pytest.raises(InvalidManifest, match=message):
        decode_manifest(*_block(**changes))
