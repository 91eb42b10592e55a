"""OrbitLog: blocks offered in any order end in the same verified, causally closed log, with
OrbitDB's answers; refusals propagate to descendants; waiting is bounded."""

from __future__ import annotations

import random

import pytest

from crdt.errors import (
    OrbitBadClock,
    OrbitBadSignature,
    OrbitKeyMismatch,
    OrbitPendingLimit,
    OrbitRefusedAncestor,
    OrbitUnknownIdentity,
)
from crdt.orbitdb import OrbitLog, decode_access, decode_entry, decode_manifest
from tests.crdt.orbitdb import forge
from tests.crdt.orbitdb.test_fixtures import block, by_type

ALICE = forge.writer(1)
MALLORY = forge.writer(3)
ACCESS_CID, ACCESS_BLOCK = forge.access([ALICE.id])
MANIFEST_CID, MANIFEST_BLOCK = forge.manifest("log", "events", ACCESS_CID)


def fresh(**bounds) -> OrbitLog:
    log = OrbitLog(
        decode_manifest(MANIFEST_CID, MANIFEST_BLOCK),
        decode_access(ACCESS_CID, ACCESS_BLOCK),
        **bounds,
    )
    log.add_identity(ALICE.cid, ALICE.data)
    return log


def chain(length, changes=None):
    """Alice's entries one after the other; ``changes`` maps a position to forge.entry options."""
    out, previous = [], None
    for i in range(length):
        options = {"time": i + 1, **(changes or {}).get(i, {})}
        cid, data = forge.entry(
            ALICE,
            MANIFEST_CID,
            f"event {i}",
            options.pop("time"),
            [forge.format_hash(previous)] if previous else [],
            **options,
        )
        out.append((cid, data))
        previous = cid
    return out


@pytest.mark.parametrize("kind", ["events", "documents", "keyvalue"])
def test_the_fixtures_in_any_order_give_orbitdbs_answers(kind):
    db = by_type(kind)
    for seed in range(5):
        log = OrbitLog(
            decode_manifest(*block(db["address"].removeprefix("/orbitdb/"))),
            decode_access(*block(db["access"].removeprefix("/ipfs/"))),
        )
        hashes = list(db["values"])
        random.Random(seed).shuffle(hashes)
        accepted = []
        for hash in hashes:
            try:
                accepted += log.add_entry(*block(hash))
            except OrbitUnknownIdentity:
                identity = decode_entry(*block(hash)).identity
                log.add_identity(*block(identity))
                accepted += log.add_entry(*block(hash))
        assert sorted(e.hash for e in accepted) == sorted(db["values"])
        seen = set()
        for entry in accepted:  # parents before children
            assert all(p in seen for p in entry.next)
            seen.add(entry.hash)
        assert [e.hash for e in log.state.values()] == db["values"]
        assert log.state.all() == db["answers"]["all"]
        assert [e.hash for e in log.heads()] == db["heads"]
        assert log.pending == 0 and log.wanted() == []


def test_entries_wait_for_their_parents_and_say_what_to_fetch():
    log = fresh()
    blocks = chain(3)
    assert log.add_entry(*blocks[2]) == [] and log.add_entry(*blocks[1]) == []
    assert log.pending == 2 and log.wanted() == [forge.format_hash(blocks[0][0])]
    assert log.add_entry(*blocks[2]) == []  # offered again: still waiting, once
    assert [e.cid for e in log.add_entry(*blocks[0])] == [b[0] for b in blocks]
    assert log.pending == 0 and len(log) == 3 and log.add_entry(*blocks[0]) == []
    assert log.status(forge.format_hash(blocks[2][0])) == "accepted"


def test_unknown_identities_are_asked_for_not_refused():
    log = fresh()
    cid, data = forge.entry(MALLORY, MANIFEST_CID, "x", 1)
    with pytest.raises(OrbitUnknownIdentity):
        log.add_entry(cid, data)
    assert log.status(forge.format_hash(cid)) == "unknown"


def test_a_refused_entry_refuses_its_waiting_descendants():
    log = fresh()
    blocks = chain(4, {1: {"signer": MALLORY.key}})
    assert log.add_entry(*blocks[3]) == [] and log.add_entry(*blocks[2]) == []
    log.add_entry(*blocks[0])
    with pytest.raises(OrbitKeyMismatch):
        log.add_entry(*blocks[1])
    for i, error in [(1, OrbitKeyMismatch), (2, OrbitRefusedAncestor), (3, OrbitRefusedAncestor)]:
        hash = forge.format_hash(blocks[i][0])
        assert log.status(hash) == "refused"
        assert isinstance(log.refusal(hash), error)
        with pytest.raises(error):
            log.add_entry(*blocks[i])
    assert log.pending == 0 and log.wanted() == [] and len(log) == 1


def test_a_child_of_a_refused_entry_is_refused_at_once():
    log = fresh()
    blocks = chain(2, {0: {"override": {"sig": forge.sign(ALICE.key, b"other")}}})
    with pytest.raises(OrbitBadSignature):
        log.add_entry(*blocks[0])
    with pytest.raises(OrbitRefusedAncestor):
        log.add_entry(*blocks[1])


def test_clocks_are_checked_when_the_parents_are_in():
    log = fresh()
    blocks = chain(3, {1: {"time": 5}})
    log.add_entry(*blocks[2])
    log.add_entry(*blocks[0])
    with pytest.raises(OrbitBadClock):
        log.add_entry(*blocks[1])
    assert isinstance(log.refusal(forge.format_hash(blocks[2][0])), OrbitRefusedAncestor)
    # Arriving last, the bad clock is found while accepting the waiting ones.
    log = fresh()
    log.add_entry(*blocks[2])
    log.add_entry(*blocks[1])
    assert len(log.add_entry(*blocks[0])) == 1
    assert log.status(forge.format_hash(blocks[1][0])) == "refused"
    assert log.status(forge.format_hash(blocks[2][0])) == "refused"


def test_waiting_is_bounded():
    log = fresh(max_pending=2)
    blocks = chain(4)
    log.add_entry(*blocks[3])
    log.add_entry(*blocks[2])
    with pytest.raises(OrbitPendingLimit):
        log.add_entry(*blocks[1])
    assert log.status(forge.format_hash(blocks[1][0])) == "unknown"
    log = fresh(max_pending_bytes=len(blocks[3][1]))
    log.add_entry(*blocks[3])
    with pytest.raises(OrbitPendingLimit):
        log.add_entry(*blocks[2])


def test_refusals_remembered_are_bounded():
    log = fresh(max_refused=2)
    forged = [forge.entry(ALICE, MANIFEST_CID, f"x{i}", 1, signer=MALLORY.key) for i in range(3)]
    for cid, data in forged:
        with pytest.raises(OrbitKeyMismatch):
            log.add_entry(cid, data)
    assert [log.status(forge.format_hash(c)) for c, _ in forged] == [
        "unknown",
        "refused",
        "refused",
    ]


def test_the_access_controller_must_be_the_manifests():
    other_cid, other_block = forge.access(["*"])
    with pytest.raises(ValueError):
        OrbitLog(
            decode_manifest(MANIFEST_CID, MANIFEST_BLOCK), decode_access(other_cid, other_block)
        )
