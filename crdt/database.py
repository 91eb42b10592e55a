"""A database: its manifest, its op log and the store folded from the log.

Pure, like the rest of :mod:`crdt`: the node (:mod:`gridnode`) gives it entries and persists what
it returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from typing import Any

from crdt.access import is_acl_payload
from crdt.entry import Entry
from crdt.identity import Keypair
from crdt.ipld.dagcbor import encode
from crdt.log import JoinResult, Log
from crdt.manifest import Manifest
from crdt.space import MemorySpace, Space
from crdt.stores import Store, open_store

__all__ = ["Database"]


class Database:
    """One database replica in memory: ``log`` decides what is valid, ``store`` holds the state."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        space: Space | None = None,
        refuse_unknown_authors: bool = False,
        own_sources: Collection[str] = (),
        **log_limits: int,
    ) -> None:
        self.manifest = manifest
        self.space = space if space is not None else MemorySpace()
        self.log = Log(
            manifest,
            space=self.space,
            refuse_unknown_authors=refuse_unknown_authors,
            own_sources=own_sources,
            **log_limits,
        )
        self.store: Store = open_store(manifest.store, manifest.options, self.space)
        #: Entries whose payload the store ignored as malformed (valid in the log, no effect).
        self.ignored: list[Entry] = []

    @property
    def address(self) -> str:
        return self.manifest.address

    def join(self, entries: Iterable[Entry], *, source: str = "", now: float = 0.0) -> JoinResult:
        """Offer remote entries; apply to the store every valid one the log applies (and fold
        the store again if an ACL entry changed verdicts on entries applied earlier);
        ``source`` and ``now``: :meth:`crdt.log.Log.join`."""
        result = self.log.join(entries, source=source, now=now)
        if self.log.take_changed():
            self.rebuild()
        else:
            self._fold(e for e in result.applied if e.cid not in result.invalid)
        return result

    def write(self, keypair: Keypair, payload: Any) -> Entry:
        """Append a store operation (checked first) or an ACL operation, signed by ``keypair``."""
        if not is_acl_payload(payload):
            type(self.store).check_op(payload, self.manifest.options)
        entry = self.log.append(keypair, payload)
        if self.log.take_changed():
            self.rebuild()
        else:
            self._fold([entry])
        return entry

    def rebuild(self) -> None:
        """Fold the store again from nothing, from the valid entries in the total order: after
        an ACL entry made entries applied earlier invalid (or valid again), docs/spec.md §8.
        Linear in the log; revocations are rare."""
        self.store.clear()
        self.ignored = []
        log = self.log
        for cid in log.order_cids():
            if log.is_valid(cid):
                entry = log.get(cid)
                assert entry is not None
                self._fold([entry])

    def upgrade(self) -> bool:
        """Judge a log written before docs/spec.md §8's revocation rule once under it (and fold
        the store again if a verdict changed); whether anything changed."""
        if self.log.judged_current:
            return False
        changed = self.log.reevaluate()
        self.log.take_changed()
        self.log.mark_judged()
        if changed:
            self.rebuild()
        return changed

    def grant(self, keypair: Keypair, role: str, did: str) -> Entry:
        return self.write(keypair, {"op": "grant", "role": role, "did": did})

    def revoke(self, keypair: Keypair, role: str, did: str) -> Entry:
        return self.write(keypair, {"op": "revoke", "role": role, "did": did})

    def _fold(self, applied: Iterable[Entry]) -> None:
        for entry in applied:
            if is_acl_payload(entry.payload):
                continue
            if not self.store.apply(entry):
                self.ignored.append(entry)

    def digest(self) -> bytes:
        """A hash of everything replicas must agree on: heads, access state and store state."""
        summary = {
            "heads": list(self.log.heads),
            "access": self.log.access.describe(),
            "invalid": self.log.invalid_count,
            "store": self.store.digest(),
        }
        return hashlib.sha256(encode(summary)).digest()
