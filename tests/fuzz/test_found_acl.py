"""Found by the signed_entry fuzz target."""

import pytest

from crdt.database import Database
from crdt.entry import create_entry, decode_entry
from crdt.errors import InvalidAclOp, Unauthorized
from crdt.identity import Keypair
from crdt.manifest import create_manifest

ADMIN = Keypair.from_seed(bytes([3]) * 32)
WRITER = Keypair.from_seed(bytes([4]) * 32)
OUTSIDER = Keypair.from_seed(bytes([66]) * 32)


@pytest.mark.parametrize(
    "payload",
    [
        {"op": ["grant"]},
        {"op": {"grant": 1}, "role": "writer", "did": "*"},
        {"op": "grant", "role": ["writer"], "did": "*"},
        {"op": "revoke", "role": {"admin": 1}, "did": "*"},
    ],
)
@pytest.mark.parametrize("signer", [ADMIN, WRITER, OUTSIDER], ids=["admin", "writer", "outsider"])
def test_an_entry_whose_op_or_role_is_not_text_is_judged_not_crashed(payload, signer):
    # Found by the signed_entry target: {"op": [...]} made the log's ACL check raise TypeError,
    # and any signer could send it, an outsider too: a pull that met it died with the node.
    manifest = create_manifest("acl", "events", admins=[ADMIN.did], writers=[WRITER.did])
    database = Database(manifest)
    made = create_entry(signer, db=manifest.cid, clock=1, payload=payload)
    result = database.join([decode_entry(made.cid, made.block)])
    if signer is OUTSIDER:
        assert [type(e) for _, e in result.rejected] == [Unauthorized]
    elif type(payload["op"]) is str:
        # Meant as an ACL op, malformed: refused for good (a writer may not administer at all).
        expected = InvalidAclOp if signer is ADMIN else Unauthorized
        assert [type(e) for _, e in result.rejected] == [expected]
    else:
        # Not an ACL op (its op is not a name): an ordinary event by an authorised writer.
        assert [e.cid for e in result.applied] == [made.cid]
