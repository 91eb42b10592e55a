"""Access control as part of the log.

The manifest names the initial admins and writers. Admins grant and revoke roles with entries in
the same log, whose payloads are::

    {"op": "grant" | "revoke", "role": "writer" | "admin", "did": "did:key:..." | "*"}

(``"*"`` only with the writer role: it opens or closes the database to everyone.)

An entry is judged by the access state of its **causal past** (its ancestors), never by what a
replica happens to have received. So every correct replica reaches the same verdict for the same
entry. The access state of a set of ACL entries is, for each (role, did):

- no ACL entry about it: the manifest decides;
- otherwise take the *latest* ACL entries about it: those not in the causal past of another one
  about it. If any of them is a revoke, the role is revoked (revoke wins over a concurrent
  grant); otherwise it is granted.

Admins may also write. An ACL entry is valid only if its author is an admin in its causal past;
an invalid one is rejected like any unauthorised write.

What a revocation means for concurrent entries (docs/spec.md §6): a writer's entry that does not
have the revocation in its causal past stays valid, on every replica, whenever it arrives. Entries
that have it in their causal past are rejected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from crdt.errors import InvalidDidKey
from crdt.identity import public_key_from_did
from crdt.ipld.cid import CID
from crdt.manifest import PUBLIC, Manifest

__all__ = ["ACL_OPS", "ROLES", "AccessState", "AclOp", "parse_acl_op"]

ACL_OPS: Final = frozenset({"grant", "revoke"})
ROLES: Final = frozenset({"writer", "admin"})


@dataclass(frozen=True, slots=True)
class AclOp:
    """One applied ACL entry: what it did, and which ACL entries were in its causal past."""

    cid: CID
    op: str
    role: str
    did: str
    past: frozenset[CID]


def is_acl_payload(payload: Any) -> bool:
    """Whether a payload is meant as an ACL operation (then it must be a well-formed one)."""
    if type(payload) is not dict:
        return False
    op = payload.get("op")
    # Only a string can name an operation (a list or a map here is not hashable).
    return type(op) is str and op in ACL_OPS


def parse_acl_op(payload: Any) -> tuple[str, str, str] | None:
    """``(op, role, did)`` for a well-formed ACL payload, ``None`` for a malformed one."""
    if type(payload) is not dict or set(payload) != {"op", "role", "did"}:
        return None
    op, role, did = payload["op"], payload["role"], payload["did"]
    if type(op) is not str or type(role) is not str or type(did) is not str:
        return None
    if op not in ACL_OPS or role not in ROLES:
        return None
    if did == PUBLIC:
        return (op, role, did) if role == "writer" else None
    try:
        public_key_from_did(did)
    except InvalidDidKey:
        return None
    return op, role, did


class AccessState:
    """Who may write and administer, given a set of applied ACL entries (immutable)."""

    __slots__ = ("_admins", "_ops", "_public", "_writers", "manifest")

    def __init__(self, manifest: Manifest, ops: Mapping[CID, AclOp] | None = None) -> None:
        self.manifest = manifest
        self._ops: dict[CID, AclOp] = dict(ops or {})
        admins = set(manifest.admins)
        writers = set(manifest.writers) - {PUBLIC}
        public = manifest.public
        by_key: dict[tuple[str, str], list[AclOp]] = {}
        for acl in self._ops.values():
            by_key.setdefault((acl.role, acl.did), []).append(acl)
        for (role, did), ops_on_key in by_key.items():
            latest = [
                a for a in ops_on_key if not any(a.cid in b.past for b in ops_on_key if b is not a)
            ]
            granted = not any(a.op == "revoke" for a in latest)
            if did == PUBLIC:
                public = granted
                continue
            target = admins if role == "admin" else writers
            if granted:
                target.add(did)
            else:
                target.discard(did)
        self._admins = frozenset(admins)
        self._writers = frozenset(writers)
        self._public = public

    @property
    def key(self) -> bytes:
        """A short name of this state's op set: empty for none, else a hash of the sorted CIDs."""
        if not self._ops:
            return b""
        return hashlib.sha256(b"".join(sorted(c.bytes for c in self._ops))).digest()[:16]

    @property
    def ops(self) -> frozenset[CID]:
        """The ACL entries this state is made of."""
        return frozenset(self._ops)

    @property
    def admins(self) -> frozenset[str]:
        return self._admins

    @property
    def writers(self) -> frozenset[str]:
        """Writers by name (admins may write too; see :meth:`may_write`)."""
        return self._writers

    @property
    def public(self) -> bool:
        return self._public

    def may_write(self, did: str) -> bool:
        return self._public or did in self._writers or did in self._admins

    def may_administer(self, did: str) -> bool:
        return did in self._admins

    def with_op(self, acl: AclOp) -> AccessState:
        """The state after one more ACL entry (whose ``past`` is this state's ops)."""
        ops = dict(self._ops)
        ops[acl.cid] = acl
        return AccessState(self.manifest, ops)

    def merge(self, others: Iterable[AccessState]) -> AccessState:
        """The state of the union of several causal pasts."""
        result: AccessState = self
        for other in others:
            if other is result or other._ops.keys() <= result._ops.keys():
                continue
            if result._ops.keys() <= other._ops.keys():
                result = other
                continue
            ops = dict(result._ops)
            ops.update(other._ops)
            result = AccessState(self.manifest, ops)
        return result

    def describe(self) -> dict[str, Any]:
        """A canonical summary: admins, writers, public."""
        return {
            "admins": sorted(self._admins),
            "writers": sorted(self._writers),
            "public": self._public,
        }
