"""Access control as part of the log.

The manifest names the initial admins and writers. Admins grant and revoke roles with entries in
the same log, whose payloads are::

    {"op": "grant" | "revoke", "role": "writer" | "admin", "did": "did:key:..." | "*"}

(``"*"`` only with the writer role: it opens or closes the database to everyone.)

The access state of a set of ACL entries is, for each (role, did):

- no ACL entry about it: the manifest decides;
- otherwise take the *latest* ACL entries about it: those not in the causal past of another one
  about it. If any of them is a revoke, the role is revoked (revoke wins over a concurrent
  grant); otherwise it is granted.

Admins may also write. **Ranks**: manifest admins have rank 0; an admin holding the role through
valid grants has rank 1 + the lowest rank of those grants' authors (each in its own causal past);
keys that are not admins have no rank. An admin may revoke a role of another key only if that key
ranks strictly below it (a greater rank number); revoking one's own role is always allowed.

**Validity** (docs/spec.md §8) is decided for the whole set of ACL entries at once by
:func:`resolve`, not entry by entry: an entry is judged by the *valid* ACL entries of its causal
past, and a valid revocation of key Y's role R (by another key, not of ``"*"``) also voids every
entry by Y that needs R and is concurrent with it (neither in its causal past nor having it there).
The result is a function of the set of ACL entries only, whatever order a replica received them in.
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

__all__ = [
    "ACL_OPS",
    "NO_RANK",
    "ROLES",
    "AccessState",
    "AclOp",
    "Resolution",
    "parse_acl_op",
    "resolve",
]

ACL_OPS: Final = frozenset({"grant", "revoke"})
ROLES: Final = frozenset({"writer", "admin"})
#: The rank of a key that is not an admin: below every admin.
NO_RANK: Final = 1 << 62


@dataclass(frozen=True, slots=True)
class AclOp:
    """One ACL entry kept in the log: what it did, and which ACL entries were in its causal past.

    ``certain``: a revocation that no other entry can ever make invalid (its author is a manifest
    admin that no entry of its past revoked, and its target is not a manifest admin, or is itself).
    An arriving entry is refused outright only on what grants and certain revocations say
    (:meth:`AccessState.arrival`): any other revocation may yet turn out invalid.
    """

    cid: CID
    op: str
    role: str
    did: str
    past: frozenset[CID]
    author: str = ""
    clock: int = 0
    certain: bool = False

    @property
    def enforcing(self) -> bool:
        """A revocation that voids its target's concurrent entries: of another key's role, not
        of ``"*"``. (Revoking oneself, or closing a public database, acts only on what comes
        after it: there is no other key whose concurrent entries to contain.)"""
        return self.op == "revoke" and self.did != self.author and self.did != PUBLIC

    def concurrent(self, other: AclOp) -> bool:
        return other.cid != self.cid and other.cid not in self.past and self.cid not in other.past


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

    __slots__ = (
        "_admins",
        "_arrival",
        "_ops",
        "_public",
        "_ranks",
        "_writers",
        "manifest",
        "ranked",
    )

    def __init__(
        self,
        manifest: Manifest,
        ops: Mapping[CID, AclOp] | None = None,
        ranks: Mapping[CID, int] | None = None,
    ) -> None:
        """``ranks``: the rank of each op's author in its own past (:class:`Resolution`); with
        it, the state knows every admin's rank and :attr:`ranked` is true."""
        self.manifest = manifest
        self.ranked = ranks is not None
        self._arrival: AccessState | None = None
        self._ops: dict[CID, AclOp] = dict(ops or {})
        admins = set(manifest.admins)
        writers = set(manifest.writers) - {PUBLIC}
        public = manifest.public
        by_key: dict[tuple[str, str], list[AclOp]] = {}
        for acl in self._ops.values():
            by_key.setdefault((acl.role, acl.did), []).append(acl)
        latest_grants: dict[str, list[AclOp]] = {}
        for (role, did), ops_on_key in by_key.items():
            latest = [
                a for a in ops_on_key if not any(a.cid in b.past for b in ops_on_key if b is not a)
            ]
            granted = not any(a.op == "revoke" for a in latest)
            if role == "admin" and granted:
                latest_grants[did] = latest
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
        self._ranks: dict[str, int] = {}
        if ranks is not None:
            for did in admins:
                about = by_key.get(("admin", did), ())
                if did in manifest.admins and not any(a.op == "revoke" for a in about):
                    self._ranks[did] = 0
                else:
                    self._ranks[did] = 1 + min(
                        (ranks.get(g.cid, NO_RANK - 1) for g in latest_grants.get(did, ())),
                        default=NO_RANK - 1,
                    )

    def rank(self, did: str) -> int:
        """``did``'s rank (0: a manifest admin), :data:`NO_RANK` if it is not an admin; only in
        a :attr:`ranked` state."""
        return self._ranks.get(did, NO_RANK)

    def arrival(self) -> AccessState:
        """What may be refused on arrival: the state of the grants and the certain revocations
        only. Whoever holds a role in the state of any valid subset of these ops holds it here
        too, so refusing what this state refuses never refuses an entry that could be valid."""
        if self._arrival is None:
            kept = {c: a for c, a in self._ops.items() if a.op == "grant" or a.certain}
            same = len(kept) == len(self._ops)
            self._arrival = self if same else AccessState(self.manifest, kept)
        return self._arrival

    def certain_revoke(self, author: str, did: str) -> bool:
        """Whether a revocation of ``did`` by ``author`` with this state as its past is certain
        (:class:`AclOp`)."""
        if author not in self.manifest.admins:
            return False
        if did in self.manifest.admins and did != author:
            return False
        return not any(
            a.op == "revoke" and a.role == "admin" and a.did == author for a in self._ops.values()
        )

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

    def ops_of(self) -> Mapping[CID, AclOp]:
        return self._ops

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


@dataclass(frozen=True)
class Resolution:
    """Which ACL entries of a log are valid (:func:`resolve`)."""

    valid: frozenset[CID]
    #: The valid revocations that void their target's concurrent entries, by (role, did).
    holds: Mapping[tuple[str, str], tuple[AclOp, ...]]
    #: The rank of each valid entry's author in its own past.
    ranks: Mapping[CID, int]
    #: Why each invalid ACL entry is invalid.
    reasons: Mapping[CID, str]


def resolve(manifest: Manifest, ops: Mapping[CID, AclOp]) -> Resolution:
    """Decide which ACL entries are valid: a function of the set ``ops`` only.

    One *pass* judges every entry in the total order (a topological order), given the set ``E`` of
    revocations taken as enforcing: an entry is valid if its author is an admin in the state of the
    valid entries of its past, no revocation of E of its author's admin role is concurrent with it,
    and (a revocation of another key) its author ranks strictly above the target there.

    E is built one revocation at a time, by priority: the lowest rank of its author, then the
    total order. A valid enforcing revocation that is not yet decided is added to E if the pass
    with it keeps every revocation already in E valid; otherwise it is *overruled* (invalid: it
    would void a revocation of higher priority, the case of two admins revoking each other
    concurrently). Each step decides one revocation for good, so this ends after at most as many
    passes as there are revocations, with one answer for one set of entries.
    """
    order = sorted(ops.values(), key=lambda a: (a.clock, a.cid.bytes))
    enforced: dict[CID, AclOp] = {}
    overruled: set[CID] = set()
    decided: set[CID] = set()
    valid, ranks, reasons = _pass(manifest, ops, order, enforced, overruled)
    while True:
        candidates = [a for a in order if a.cid in valid and a.enforcing and a.cid not in decided]
        if not candidates:
            break
        best = min(candidates, key=lambda a: (ranks[a.cid], a.clock, a.cid.bytes))
        decided.add(best.cid)
        if not any(b.author == best.did and best.concurrent(b) for b in order):
            enforced[best.cid] = best  # nothing of its target's for it to void: same pass
            continue
        trial = _pass(manifest, ops, order, {**enforced, best.cid: best}, overruled)
        if all(c in trial[0] for c in enforced):
            enforced[best.cid] = best
        else:
            overruled.add(best.cid)
            trial = _pass(manifest, ops, order, enforced, overruled)
        valid, ranks, reasons = trial
    holds: dict[tuple[str, str], list[AclOp]] = {}
    for acl in enforced.values():
        holds.setdefault((acl.role, acl.did), []).append(acl)
    return Resolution(
        valid=frozenset(valid),
        holds={k: tuple(v) for k, v in holds.items()},
        ranks=ranks,
        reasons=reasons,
    )


def _pass(
    manifest: Manifest,
    ops: Mapping[CID, AclOp],
    order: list[AclOp],
    enforced: Mapping[CID, AclOp],
    overruled: set[CID],
) -> tuple[set[CID], dict[CID, int], dict[CID, str]]:
    valid: set[CID] = set()
    ranks: dict[CID, int] = {}
    reasons: dict[CID, str] = {}
    holds: dict[str, list[AclOp]] = {}
    for acl in enforced.values():
        if acl.role == "admin":
            holds.setdefault(acl.did, []).append(acl)
    states: dict[frozenset[CID], AccessState] = {}
    for acl in order:
        if acl.cid in overruled:
            reasons[acl.cid] = "overruled: it would void a revocation of higher priority"
            continue
        past = acl.past & valid
        state = states.get(past)
        if state is None:
            state = states[past] = AccessState(manifest, {c: ops[c] for c in past}, ranks)
        reason = None
        if not state.may_administer(acl.author):
            reason = f"{acl.author} is not an admin"
        else:
            for revocation in holds.get(acl.author, ()):
                if revocation.concurrent(acl):
                    reason = f"{acl.author} was revoked by the concurrent {revocation.cid}"
                    break
        if reason is None and acl.enforcing:
            mine, theirs = state.rank(acl.author), state.rank(acl.did)
            if not mine < theirs:
                reason = f"{acl.author} (rank {mine}) may not revoke {acl.did} (rank {theirs})"
        if reason is None:
            valid.add(acl.cid)
            ranks[acl.cid] = state.rank(acl.author)
        else:
            reasons[acl.cid] = reason
    return valid, ranks, reasons
