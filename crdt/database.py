"""A database: its manifest, its op log and the store folded from the log.

Pure, like the rest of :mod:`crdt`: the node (:mod:`gridnode`) gives it entries and persists what
it returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Iterable
from typing import Any

from crdt.access import is_acl_payload
from crdt.encryption import (
    Keyring,
    decrypt_payload,
    encrypt_payload,
    is_envelope,
    is_key_op,
    key_op,
    parse_envelope,
    parse_key_op,
)
from crdt.entry import Entry
from crdt.errors import EncryptionError, MissingDatabaseKey, Unauthorized
from crdt.identity import Keypair
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import encode
from crdt.log import JoinResult, Log
from crdt.manifest import Manifest
from crdt.space import MemorySpace, Space, Table
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
        keyring: Keyring | None = None,
        **log_limits: int,
    ) -> None:
        self.manifest = manifest
        #: The database keys this replica holds (an encrypted database only; ``None`` or a
        #: keyring without its keys: the replica is blind, docs/spec.md "Blind replicas").
        self.keyring = keyring
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
        self._rekeyed = False
        if manifest.encrypted and keyring is not None:
            self._learn_stored()

    @property
    def _keyops(self) -> Table:
        """Valid key operations of an encrypted database, by position in the total order
        (clock, 8 bytes big-endian, + binary CID) -> ``[op, kid, [did, ...], author]``: public
        facts of the log (who holds which key), no secret. Opened only for an encrypted database."""
        return self.space.table("enc.keyops")

    @property
    def _encmeta(self) -> Table:
        """``b"folded"`` -> the kids the store was folded with."""
        return self.space.table("enc.meta")

    @property
    def encrypted(self) -> bool:
        return self.manifest.encrypted

    @property
    def blind(self) -> bool:
        """Whether this replica of an encrypted database holds none of its keys."""
        return self.encrypted and (self.keyring is None or not self.keyring.kids())

    @property
    def rekey_needed(self) -> bool:
        """Whether the store was folded with other keys than the keyring holds now (keys
        imported, or learnt from key operations before a restart): :meth:`rebuild` it."""
        if not self.encrypted:
            return False
        held = self.keyring.kids() if self.keyring is not None else []
        return [bytes(k) for k in self._encmeta.get(b"folded") or []] != held

    def _learn_stored(self) -> None:
        """Open the wraps for this keyring in key operations already folded."""
        keyring = self.keyring
        assert keyring is not None
        for position, (_op, kid, dids, _author) in self._keyops.range():
            if kid in keyring or keyring.did not in dids:
                continue
            entry = self.log.get(_cid_of(position))
            if entry is not None:
                keyring.learn(parse_key_op(entry.payload))

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
            self._after_fold()
        return result

    def write(self, keypair: Keypair, payload: Any, *, nonce: bytes | None = None) -> Entry:
        """Append a store operation (checked first) or an ACL operation, signed by ``keypair``.

        In an encrypted database a store operation is sealed with the current key before it is
        signed (``nonce``: 24 random bytes, required there), and a key operation
        (:func:`crdt.encryption.key_op`) may come only from an admin."""
        if is_acl_payload(payload):
            pass
        elif self.encrypted and is_key_op(payload):
            parse_key_op(payload)
            if keypair.did not in self.log.access.admins:
                raise Unauthorized(f"{keypair.did} is not an admin: it cannot hand out keys")
        else:
            type(self.store).check_op(payload, self.manifest.options)
            if self.encrypted:
                if nonce is None:
                    raise EncryptionError("a write to an encrypted database needs a nonce")
                payload = encrypt_payload(
                    payload,
                    key=self._current_key(),
                    nonce=nonce,
                    db=self.manifest.cid,
                    author=keypair.did,
                )
        entry = self.log.append(keypair, payload)
        if self.log.take_changed():
            self.rebuild()
        else:
            self._fold([entry])
            self._after_fold()
        return entry

    # -- keys of an encrypted database ------------------------------------------------------

    def current_kid(self) -> bytes | None:
        """The key later entries use: the one the last new-key operation (in the total order)
        by a key that is an admin now introduced; ``None`` before any (and in a database that
        is not encrypted). A writer's rotation (the log takes it as a write) is not followed:
        it would only seal later entries from those it left out."""
        if not self.encrypted:
            return None
        admins = self.log.access.admins
        for _position, (op, kid, _dids, author) in self._keyops.range(reverse=True):
            if op == "key" and author in admins:
                return bytes(kid)
        return None

    def readers(self) -> list[str]:
        """Who holds the current key: every did a valid key operation wrapped it for."""
        kid = self.current_kid()
        if kid is None:
            return []
        found: set[str] = set()
        for _position, (_op, row_kid, dids, _author) in self._keyops.range():
            if row_kid == kid:
                found.update(dids)
        return sorted(found)

    def _current_key(self) -> bytes:
        kid = self.current_kid()
        keyring = self.keyring
        key = None if kid is None or keyring is None else keyring.key(kid)
        if key is None:
            raise MissingDatabaseKey(
                f"this node holds no current key of {self.address}: it replicates it blind"
            )
        return key

    def create_key(
        self, keypair: Keypair, key: bytes, readers: Iterable[str], seed: bytes
    ) -> Entry:
        """Introduce ``key`` (32 random bytes) for ``readers`` (the author always among them):
        at creation, and to rotate the key when a reader leaves. ``seed``: 32 random bytes."""
        if self.keyring is None:
            raise MissingDatabaseKey("no keyring to keep the new key in")
        dids = set(readers) | {keypair.did}
        payload = key_op(key, dids, seed, new=True)
        self.keyring.add(key)
        return self.write(keypair, payload)

    def add_reader(self, keypair: Keypair, did: str, seed: bytes) -> Entry:
        """Wrap the current key for ``did`` too (it reads the entries under that key, earlier
        ones included, and later ones until a rotation leaves it out)."""
        return self.write(keypair, key_op(self._current_key(), [did], seed, new=False))

    def remove_reader(self, keypair: Keypair, did: str, key: bytes, seed: bytes) -> Entry:
        """Rotate to ``key`` (32 fresh random bytes), wrapped for every current reader but
        ``did``: entries written after it are sealed from ``did`` (what it read before, it
        keeps)."""
        remaining = [d for d in self.readers() if d != did]
        if keypair.did == did:
            raise EncryptionError("an admin cannot remove itself as a reader and keep writing")
        return self.create_key(keypair, key, remaining, seed)

    def rebuild(self) -> None:
        """Fold the store again from nothing, from the valid entries in the total order: after
        an ACL entry made entries applied earlier invalid (or valid again), docs/spec.md §8.
        Linear in the log; revocations are rare."""
        self.store.clear()
        self.ignored = []
        if self.encrypted:
            keyops = self._keyops
            for position, _value in list(keyops.range()):
                keyops.delete(position)
        log = self.log
        for cid in log.order_cids():
            if log.is_valid(cid):
                entry = log.get(cid)
                assert entry is not None
                self._fold([entry])
        if self._rekeyed:
            # Keys learnt during the fold open entries folded (blind) before them.
            self._rekeyed = False
            self.rebuild()
            return
        self._mark_folded()

    def _after_fold(self) -> None:
        if self._rekeyed:
            self._rekeyed = False
            self.rebuild()
        elif self.encrypted and self.keyring is not None and self.keyring.learned:
            # A key this replica made itself (create_key): nothing was folded without it.
            self._mark_folded()

    def _mark_folded(self) -> None:
        if self.encrypted:
            held = self.keyring.kids() if self.keyring is not None else []
            self._encmeta.put(b"folded", held)

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
            if self.encrypted:
                opened = self._unseal(entry)
                if opened is None:
                    continue
                entry = opened
            if not self.store.apply(entry):
                self.ignored.append(entry)

    def plaintext(self, entry: Entry) -> Any:
        """The payload of ``entry`` as its author wrote it, when this replica can read it: an
        envelope decrypted with a key it holds; any other payload (and an envelope it cannot
        open) as it stands in the log."""
        payload = entry.payload
        if not self.encrypted or not is_envelope(payload) or self.keyring is None:
            return payload
        try:
            kid, _nonce, _ct = parse_envelope(payload)
            key = self.keyring.key(kid)
            if key is None:
                return payload
            return decrypt_payload(payload, key=key, db=self.manifest.cid, author=entry.author)
        except EncryptionError:
            return payload

    def _unseal(self, entry: Entry) -> Entry | None:
        """An encrypted database's entry as its store sees it: a key operation is recorded
        (and its wrap for this replica opened), an envelope decrypted when this replica holds
        its key; ``None`` when there is nothing for the store (a key operation, or ciphertext
        this replica cannot read). Anything else is malformed: ignored, as by every replica."""
        payload = entry.payload
        try:
            if is_key_op(payload):
                op = parse_key_op(payload)
                position = entry.clock.to_bytes(8, "big") + entry.cid.bytes
                row = [op.op, op.kid, sorted(op.wraps), entry.author]
                self._keyops.put(position, row)
                if self.keyring is not None and self.keyring.learn(op):
                    self._rekeyed = True
                return None
            if not is_envelope(payload):
                self.ignored.append(entry)
                return None
            kid, _nonce, _ct = parse_envelope(payload)
            key = None if self.keyring is None else self.keyring.key(kid)
            if key is None:
                return None
            plain = decrypt_payload(payload, key=key, db=self.manifest.cid, author=entry.author)
        except EncryptionError:
            self.ignored.append(entry)
            return None
        return dataclasses.replace(entry, payload=plain)

    def digest(self) -> bytes:
        """A hash of everything replicas must agree on: heads, access state and store state."""
        summary = {
            "heads": list(self.log.heads),
            "access": self.log.access.describe(),
            "invalid": self.log.invalid_count,
            "store": self.store.digest(),
        }
        return hashlib.sha256(encode(summary)).digest()


def _cid_of(position: bytes) -> CID:
    return CID.parse(position[8:])
