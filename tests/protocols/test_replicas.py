"""Replica statements (protocols/replicas.py): signed, bounded, refused when forged or foreign,
aggregated per peer and database within bounds, expiring by the receiver's clock."""

import pytest

from crdt.identity import Keypair
from crdt.ipld.cid import CID
from crdt.ipld.dagcbor import decode, encode
from protocols.errors import ProtocolError, ReplicaStatementError, SendLimitError
from protocols.replicas import (
    MAX_STATEMENT_HEADS,
    ReplicaAggregator,
    ReplicaStatement,
    parse_statement,
    peer_id_of_key,
    public_key_of_peer,
    sign_statement,
    topic_for,
)

DB = CID.for_block(b"manifest")
OTHER_DB = CID.for_block(b"another manifest")


def key(n: int) -> Keypair:
    return Keypair(bytes([n]) * 32)


def heads(*names: str) -> list[CID]:
    return [CID.for_block(name.encode()) for name in names]


def peer_of(keypair: Keypair) -> str:
    return peer_id_of_key(keypair.public_key)


def test_a_signed_statement_round_trips_and_names_its_key():
    alice = key(1)
    statement = sign_statement(alice, DB, heads("h1", "h2"), 42, 1_700_000_000_000)
    parsed = parse_statement(statement.encode(), origin=peer_of(alice), topic_db=DB)
    assert parsed == statement
    assert parsed.peer.startswith("12D3KooW")
    assert public_key_of_peer(parsed.peer) == alice.public_key
    assert topic_for(DB) == f"/gridnode/replicas/2/{DB}"


def test_the_peer_id_is_libp2ps():
    # The same peer id py-libp2p derives for this key (gridnode/net/identity.py agrees).
    from gridnode.net.identity import peer_id_from_seed

    assert peer_of(key(7)) == peer_id_from_seed(bytes([7]) * 32)


def test_a_forged_signature_is_refused():
    alice = key(1)
    statement = sign_statement(alice, DB, heads("h1"), 10, 1)
    # A changed count under the old signature (as a replica lying about how much it holds).
    forged = ReplicaStatement(statement.peer, DB, statement.heads, 11, 1, statement.sig)
    with pytest.raises(ReplicaStatementError, match="does not verify"):
        parse_statement(forged.encode(), origin=statement.peer)
    # Signed by another key than the peer id names.
    mallory = key(2)
    unsigned = ReplicaStatement(statement.peer, DB, statement.heads, 10, 1)
    resigned = ReplicaStatement(
        statement.peer, DB, statement.heads, 10, 1, mallory.sign(unsigned.signed_bytes())
    )
    with pytest.raises(ReplicaStatementError, match="does not verify"):
        parse_statement(resigned.encode(), origin=statement.peer)


def test_an_entry_style_signature_without_the_prefix_is_refused():
    alice = key(1)
    unsigned = ReplicaStatement(peer_of(alice), DB, tuple(heads("h")), 1, 1)
    body = unsigned.signed_bytes()
    bare = alice.sign(body[len(b"/gridnode/replica-statement/1\x00") :])
    with pytest.raises(ReplicaStatementError, match="does not verify"):
        parse_statement(ReplicaStatement(unsigned.peer, DB, unsigned.heads, 1, 1, bare).encode())


def test_a_statement_for_another_peer_id_is_refused():
    alice, mallory = key(1), key(2)
    # Alice's genuine statement, sent on by Mallory under Mallory's own origin.
    statement = sign_statement(alice, DB, heads("h1"), 10, 1)
    with pytest.raises(ReplicaStatementError, match="from the peer it names"):
        parse_statement(statement.encode(), origin=peer_of(mallory))


def test_a_statement_for_another_database_than_its_topic_is_refused():
    statement = sign_statement(key(1), OTHER_DB, heads("h1"), 10, 1)
    with pytest.raises(ReplicaStatementError, match="another database"):
        parse_statement(statement.encode(), topic_db=DB)


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(t="heads"),
        lambda b: b.update(extra=1),
        lambda b: b.pop("sig"),
        lambda b: b.update(entries=-1),
        lambda b: b.update(entries=2**53),
        lambda b: b.update(time="now"),
        lambda b: b.update(sig=b"\0" * 63),
        lambda b: b.update(peer="QmNotAnEd25519Key"),
        lambda b: b.update(peer=7),
        lambda b: b.update(heads=heads(*[str(i) for i in range(MAX_STATEMENT_HEADS + 1)])),
        lambda b: b.update(heads=heads("a", "a")),
        lambda b: b.update(db="not a link"),
    ],
)
def test_malformed_statements_are_refused(change):
    body = decode(sign_statement(key(1), DB, heads("h1"), 10, 1).encode())
    change(body)
    with pytest.raises(ReplicaStatementError):
        parse_statement(encode(body))


def test_oversized_and_garbage_statements_are_refused():
    with pytest.raises(ReplicaStatementError, match="exceeds"):
        parse_statement(b"\xa0" * 5000)
    with pytest.raises(ReplicaStatementError, match="not DAG-CBOR"):
        parse_statement(b"\xff\x00")
    assert issubclass(ReplicaStatementError, ProtocolError)


def test_a_statement_beyond_the_bounds_is_not_sent():
    too_many = ReplicaStatement(peer_of(key(1)), DB, tuple(heads(*map(str, range(33)))), 1, 1)
    with pytest.raises(SendLimitError):
        too_many.encode()
    # sign_statement keeps the newest heads (given newest first) within the bound.
    signed = sign_statement(key(1), DB, heads(*map(str, range(40))), 1, 1)
    assert signed.heads == tuple(heads(*map(str, range(MAX_STATEMENT_HEADS))))
    parse_statement(signed.encode())


def _stated(n: int, entries: int, names: tuple[str, ...], when: int = 1) -> ReplicaStatement:
    return sign_statement(key(n), DB, heads(*names), entries, when)


def test_the_summary_counts_holders_in_sync_and_behind():
    own = _stated(9, 100, ("top",))
    aggregator = ReplicaAggregator(ttl=30.0)
    aggregator.record(_stated(1, 100, ("top",)), now=0.0)
    aggregator.record(_stated(2, 100, ("top",)), now=0.0)
    aggregator.record(_stated(3, 97, ("old",)), now=0.0)
    aggregator.record(_stated(4, 100, ("fork",)), now=0.0)  # as many, other heads
    aggregator.record(own, now=0.0)  # this node's own, echoed back: never a holder
    summary = aggregator.summary(DB, 1.0, own=own)
    assert (summary.holders, summary.in_sync, summary.newest_entries) == (4, 2, 100)
    assert summary.behind == {peer_of(key(3)): 3, peer_of(key(4)): 0}
    assert summary.as_dict() == {
        "holders": 4,
        "in_sync": 2,
        "behind": {peer_of(key(3)): 3, peer_of(key(4)): 0},
        "newest_entries": 100,
    }
    # A node that is behind itself measures against the newest holder, not its own heads.
    behind_own = _stated(9, 50, ("stale",))
    summary = aggregator.summary(DB, 1.0, own=behind_own)
    assert (summary.in_sync, summary.newest_entries) == (2, 100)  # top, stated twice, wins
    assert aggregator.summary(OTHER_DB, 1.0).holders == 0


def test_a_newer_statement_replaces_an_older_and_a_replay_is_ignored():
    aggregator = ReplicaAggregator(ttl=30.0)
    assert aggregator.record(_stated(1, 10, ("a",), when=5), now=0.0)
    assert aggregator.record(_stated(1, 12, ("b",), when=6), now=1.0)
    assert not aggregator.record(_stated(1, 10, ("a",), when=5), now=2.0)  # replayed
    assert len(aggregator) == 1
    assert aggregator.summary(DB, 2.0).newest_entries == 12


def test_statements_expire_by_the_receivers_clock():
    aggregator = ReplicaAggregator(ttl=30.0)
    # Its sender's clock says far future: the receiver's clock decides when it expires.
    aggregator.record(_stated(1, 10, ("a",), when=2**53 - 1), now=100.0)
    aggregator.record(_stated(2, 10, ("a",), when=1), now=120.0)
    assert aggregator.summary(DB, 129.9).holders == 2
    assert aggregator.summary(DB, 130.0).holders == 1  # expired, though not yet forgotten
    assert aggregator.expire(130.0) == 1
    assert len(aggregator) == 1
    assert aggregator.expire(150.0) == 1
    assert len(aggregator) == 0 and aggregator.databases() == 0
    # An expired statement no longer blocks an older time from the same peer (a clock reset).
    aggregator.record(_stated(3, 10, ("a",), when=50), now=0.0)
    assert aggregator.record(_stated(3, 11, ("a",), when=40), now=31.0)


def test_a_flood_of_peers_and_databases_stays_bounded():
    aggregator = ReplicaAggregator(ttl=30.0, max_databases=8, max_peers=16)
    statement = _stated(1, 1, ("a",))
    # Many peers on one database: the stalest are forgotten (raw statements: the aggregator
    # keeps what it is given; verification happens before, in parse_statement).
    for i in range(1000):
        aggregator.record(
            ReplicaStatement(f"peer{i}", DB, statement.heads, i, i, statement.sig), now=float(i)
        )
    assert len(aggregator) == 16
    assert aggregator.summary(DB, 1000.0).newest_entries == 999  # the freshest kept
    # Many databases: the least recently heard of are forgotten.
    for i in range(1000):
        db = CID.for_block(f"db{i}".encode())
        aggregator.record(ReplicaStatement("p", db, statement.heads, 1, 1, statement.sig), 1000.0)
    assert aggregator.databases() == 8
    assert len(aggregator) == 8
    assert aggregator.summary(DB, 1000.0).holders == 0  # the first database was forgotten
