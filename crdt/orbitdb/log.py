"""One OrbitDB database's verified log, fed blocks in any order: what a follower keeps.

:class:`OrbitLog` takes the database's manifest and access controller, then identity blocks and
entry blocks as they arrive (from the heads exchange, gossip or bitswap, in any order), and
accepts an entry only when it decodes, verifies (:func:`crdt.orbitdb.verify.verify_entry`, with
its identity block already added) and every one of its ``next`` entries is accepted, its clock
then checked against theirs (:func:`crdt.orbitdb.verify.check_clock`). Until then it waits
(bounded: :class:`OrbitPendingLimit`). An entry that fails is refused with its error, and so are
the entries waiting on it (:class:`OrbitRefusedAncestor`). Accepted entries go to a
:class:`~crdt.orbitdb.stores.Materialiser`, so the answers are always those of a causally closed
log, as OrbitDB's (which joins an entry only with its whole past).

Pure: no I/O; :meth:`OrbitLog.wanted` says which blocks to fetch next.
"""

from __future__ import annotations

from typing import Final

from crdt.errors import (
    OrbitError,
    OrbitPendingLimit,
    OrbitRefused,
    OrbitRefusedAncestor,
    OrbitUnknownIdentity,
)
from crdt.ipld.cid import CID
from crdt.orbitdb.address import format_address, format_hash
from crdt.orbitdb.blocks import (
    OrbitAccess,
    OrbitEntry,
    OrbitIdentity,
    OrbitManifest,
    decode_entry,
    decode_identity,
)
from crdt.orbitdb.stores import Materialiser
from crdt.orbitdb.verify import check_clock, verify_entry, verify_identity

__all__ = ["MAX_PENDING", "MAX_PENDING_BYTES", "MAX_REFUSED", "OrbitLog"]

#: Most entries waiting for their next entries, and their bytes.
MAX_PENDING: Final = 100_000
MAX_PENDING_BYTES: Final = 256 * 1024 * 1024
#: Most refused hashes remembered (the oldest are forgotten first; forgetting one only means
#: verifying it again if it is offered again).
MAX_REFUSED: Final = 100_000


class OrbitLog:
    """The verified entries of the database ``manifest`` describes, under ``access`` (its access
    controller, whose CID the manifest names)."""

    def __init__(
        self,
        manifest: OrbitManifest,
        access: OrbitAccess,
        *,
        max_pending: int = MAX_PENDING,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        max_refused: int = MAX_REFUSED,
    ) -> None:
        if access.cid != manifest.access_controller:
            raise ValueError("the access controller is not the one the manifest names")
        self.manifest = manifest
        self.access = access
        self.address = format_address(manifest.cid)
        self.state = Materialiser(manifest.type)
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_refused = max_refused
        self._identities: dict[str, OrbitIdentity] = {}
        self._pending: dict[str, OrbitEntry] = {}
        self._pending_bytes = 0
        self._waiting: dict[str, set[str]] = {}  # missing next hash -> pending entries naming it
        self._refused: dict[str, OrbitError] = {}

    def __len__(self) -> int:
        return len(self.state)

    # -- identities --------------------------------------------------------------------------

    def add_identity(self, cid: CID, data: bytes) -> OrbitIdentity:
        """Decode and verify an identity block (once per hash). Raises an :class:`OrbitError`."""
        held = self._identities.get(format_hash(cid))
        if held is not None:
            return held
        identity = decode_identity(cid, data)
        verify_identity(identity)
        self._identities[identity.hash] = identity
        return identity

    def identity(self, hash: str) -> OrbitIdentity | None:
        """The verified identity block of that hash, if added."""
        return self._identities.get(hash)

    # -- entries -----------------------------------------------------------------------------

    def status(self, hash: str) -> str:
        """``accepted``, ``pending``, ``refused`` or ``unknown``."""
        if hash in self.state:
            return "accepted"
        if hash in self._pending:
            return "pending"
        if hash in self._refused:
            return "refused"
        return "unknown"

    def refusal(self, hash: str) -> OrbitError | None:
        """Why the entry of that hash was refused (while remembered)."""
        return self._refused.get(hash)

    def add_entry(self, cid: CID, data: bytes) -> list[OrbitEntry]:
        """Offer one entry block. Returns the entries accepted because of it (it and those that
        waited on it), parents before children; ``[]`` if it waits or was already held. Raises
        an :class:`OrbitError` if it is refused (again, if it was before),
        :class:`OrbitUnknownIdentity` if its identity block has not been added (add it and
        offer the entry again), :class:`OrbitPendingLimit` if it would wait beyond the bounds."""
        hash = format_hash(cid)
        if hash in self.state or hash in self._pending:
            return []
        refused = self._refused.get(hash)
        if refused is not None:
            raise type(refused)(str(refused))
        entry = decode_entry(cid, data)
        identity = self._identities.get(entry.identity)
        if identity is None:
            raise OrbitUnknownIdentity(f"entry {hash}: identity {entry.identity} is not known")
        try:
            verify_entry(entry, identity, self.access, self.address, identity_verified=True)
            for parent in entry.next:
                if parent in self._refused:
                    raise OrbitRefusedAncestor(f"entry {hash}: its next entry {parent} is refused")
        except OrbitRefused as error:
            self._refuse(hash, error)
            raise
        missing = [p for p in entry.next if p not in self.state]
        if missing:
            if (
                len(self._pending) >= self.max_pending
                or self._pending_bytes + len(entry.block) > self.max_pending_bytes
            ):
                raise OrbitPendingLimit(
                    f"{len(self._pending)} entries ({self._pending_bytes} bytes) wait already"
                )
            self._pending[hash] = entry
            self._pending_bytes += len(entry.block)
            for parent in missing:
                self._waiting.setdefault(parent, set()).add(hash)
            return []
        return self._accept(entry)

    def _accept(self, entry: OrbitEntry) -> list[OrbitEntry]:
        """Accept ``entry`` (all its next accepted) after its clock check, then whatever waited
        on it and is now complete. Raises the first entry's clock error."""
        accepted: list[OrbitEntry] = []
        queue = [entry]
        while queue:
            current = queue.pop()
            try:
                parents = [e for p in current.next if (e := self.state.entry(p)) is not None]
                check_clock(current, parents)
            except OrbitRefused as error:
                self._refuse(current.hash, error)
                if current is entry:
                    raise
                continue
            self.state.add(current)
            accepted.append(current)
            for child_hash in sorted(self._waiting.pop(current.hash, ())):
                child = self._pending.get(child_hash)
                if child is not None and all(p in self.state for p in child.next):
                    self._unpend(child)
                    queue.append(child)
        return accepted

    def _unpend(self, entry: OrbitEntry) -> None:
        del self._pending[entry.hash]
        self._pending_bytes -= len(entry.block)

    def _refuse(self, hash: str, error: OrbitError) -> None:
        """Remember a refusal, and refuse every pending entry that descends from it."""
        stack = [(hash, error)]
        while stack:
            current, reason = stack.pop()
            self._refused[current] = reason
            while len(self._refused) > self.max_refused:
                del self._refused[next(iter(self._refused))]
            for child_hash in self._waiting.pop(current, ()):
                child = self._pending.get(child_hash)
                if child is not None:
                    self._unpend(child)
                    stack.append(
                        (
                            child_hash,
                            OrbitRefusedAncestor(
                                f"entry {child_hash}: its next entry {current} is refused"
                            ),
                        )
                    )

    # -- what to fetch -----------------------------------------------------------------------

    def wanted(self) -> list[str]:
        """The ``next`` entries that pending entries wait for and that are not held: the blocks
        to fetch next."""
        return sorted(h for h in self._waiting if h not in self._pending)

    def heads(self) -> list[OrbitEntry]:
        """The accepted entries no accepted entry names in ``next``, newest first."""
        return self.state.heads()

    @property
    def pending(self) -> int:
        """How many entries wait for their next entries."""
        return len(self._pending)
