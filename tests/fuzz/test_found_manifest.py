"""Found by the manifest fuzz target."""

import pytest

from crdt.errors import InvalidManifest
from crdt.ipld import CID, encode
from crdt.manifest import decode_manifest


def _manifest_body(**changes):
    body = {
        "v": 1,
        "kind": "gridnode/manifest",
        "name": "x",
        "store": "events",
        "admins": [],
        "writers": ["*"],
        "options": {},
    }
    body.update(changes)
    return encode(body)


@pytest.mark.parametrize("store", [["events"], {"a": 1}, CID.for_block(b"x"), 7])
def test_a_manifest_whose_store_is_not_text_is_refused(store):
    # Found by the manifest target: an unhashable store type raised TypeError (follow's caller
    # catches GridnodeError only).
    block = _manifest_body(store=store)
    with pytest.raises(InvalidManifest):
        decode_manifest(CID.for_block(block), block)
