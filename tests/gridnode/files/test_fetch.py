"""The DAG fetcher (gridnode/files/fetch.py): a whole DAG from peers, every block verified,
resumed where it stopped, and bounded against hostile DAGs (typed errors, never an endless walk).

The DAGs here are dag-cbor lists of links with raw leaves, so the walk is tested without the
UnixFS reader; the interop tests fetch real UnixFS files."""

from __future__ import annotations

import pytest
import trio

from crdt.errors import HashMismatch
from crdt.ipld import dagcbor
from crdt.ipld.cid import CID
from gridnode.errors import DagTooLarge, FetchIncomplete
from gridnode.files.fetch import DagFetcher, FetchLimits, FetchProgress


def links_of(cid: CID, block: bytes) -> list[CID]:
    if cid.codec == 0x55:
        return []
    value = dagcbor.decode(block)
    return [v for v in value if isinstance(v, CID)]


class Store:
    """A block store and a peer in one: a dict."""

    def __init__(self, blocks: dict[CID, bytes] | None = None) -> None:
        self.blocks = dict(blocks or {})
        self.asked: list[list[CID]] = []
        self.puts = 0

    async def has_many(self, cids: list[CID]) -> set[CID]:
        return {c for c in cids if c in self.blocks}

    async def get_many(self, cids: list[CID]) -> dict[CID, bytes]:
        return {c: self.blocks[c] for c in cids if c in self.blocks}

    async def put_blocks(self, blocks: list[tuple[CID, bytes]]) -> None:
        self.puts += 1
        self.blocks.update(blocks)

    async def fetch(self, cids: list[CID], peers: list[str], timeout: float) -> dict[CID, bytes]:
        self.asked.append(list(cids))
        await trio.sleep(0)
        return {c: self.blocks[c] for c in cids if c in self.blocks}


def tree(fanout: int, depth: int, leaf: int = 100, seed: int = 0) -> tuple[CID, dict[CID, bytes]]:
    """A balanced DAG: ``fanout`` links per node, ``depth`` levels of nodes, raw leaves."""
    blocks: dict[CID, bytes] = {}
    counter = [seed]

    def build(level: int) -> CID:
        if level == depth:
            counter[0] += 1
            data = counter[0].to_bytes(8, "big") * (leaf // 8)
            cid = CID.for_block(data, codec="raw")
            blocks[cid] = data
            return cid
        block = dagcbor.encode([build(level + 1) for _ in range(fanout)])
        cid = CID.for_block(block)
        blocks[cid] = block
        return cid

    return build(0), blocks


def test_a_whole_dag_arrives_verified_with_its_progress():
    root, blocks = tree(fanout=5, depth=3)
    peer, local = Store(blocks), Store()
    seen: list[int] = []
    fetcher = DagFetcher(peer.fetch, local, links_of, parallel=3, batch=4)

    async def main() -> FetchProgress:
        return await fetcher.fetch(root, ["p"], changed=lambda p: seen.append(p.blocks))

    progress = trio.run(main)
    assert local.blocks == blocks
    assert progress.done and progress.pending == 0
    assert progress.blocks == progress.fetched_blocks == len(blocks)
    assert progress.bytes == progress.fetched_bytes == sum(len(b) for b in blocks.values())
    assert seen == sorted(seen) and seen[-1] == len(blocks)
    # Wants go in batches, several at once: never one CID at a time for the whole DAG.
    assert max(len(a) for a in peer.asked) == 4
    assert len(peer.asked) < len(blocks)


def test_a_fetch_resumes_and_asks_only_for_what_is_missing():
    root, blocks = tree(fanout=4, depth=2)
    leaves = [c for c in blocks if c.codec == 0x55]
    local = Store({c: b for c, b in blocks.items() if c not in leaves[:3]})
    peer = Store(blocks)
    progress = trio.run(DagFetcher(peer.fetch, local, links_of).fetch, root, ["p"])
    assert local.blocks == blocks
    assert sorted(c for a in peer.asked for c in a) == sorted(leaves[:3])
    assert progress.fetched_blocks == 3 and progress.blocks == len(blocks)


def test_a_block_that_does_not_match_its_cid_is_refused_and_not_stored():
    root, blocks = tree(fanout=2, depth=1)
    leaf = next(c for c in blocks if c.codec == 0x55)
    liar = Store(blocks)
    liar.blocks[leaf] = b"not the leaf"
    local = Store()
    with pytest.raises(HashMismatch):
        trio.run(DagFetcher(liar.fetch, local, links_of, batch=1).fetch, root, ["p"])
    assert leaf not in local.blocks


def test_blocks_nobody_sends_stop_the_fetch_and_what_arrived_is_kept():
    root, blocks = tree(fanout=3, depth=1)
    leaf = next(c for c in blocks if c.codec == 0x55)
    peer = Store({c: b for c, b in blocks.items() if c != leaf})
    local = Store()
    with pytest.raises(FetchIncomplete, match=str(leaf)):
        trio.run(DagFetcher(peer.fetch, local, links_of, parallel=1, batch=8).fetch, root, ["p"])
    assert root in local.blocks and len(local.blocks) == len(blocks) - 1


def test_a_block_the_codec_cannot_decode_is_a_typed_error():
    garbage = b"\xff\xfe"
    cid = CID.for_block(garbage)  # dag-cbor that is not dag-cbor
    with pytest.raises(dagcbor_error()):
        trio.run(DagFetcher(Store({cid: garbage}).fetch, Store(), links_of).fetch, cid, ["p"])


def dagcbor_error() -> type[Exception]:
    from crdt.errors import DecodeError

    return DecodeError


def _chain(depth: int) -> tuple[CID, dict[CID, bytes]]:
    blocks: dict[CID, bytes] = {}
    data = b"leaf"
    cid = CID.for_block(data, codec="raw")
    blocks[cid] = data
    for _ in range(depth):
        block = dagcbor.encode([cid])
        cid = CID.for_block(block)
        blocks[cid] = block
    return cid, blocks


def _shared(depth: int) -> tuple[CID, dict[CID, bytes]]:
    """Each node links the one below it twice: 2**depth paths through ``depth`` blocks."""
    blocks: dict[CID, bytes] = {}
    data = b"leaf"
    cid = CID.for_block(data, codec="raw")
    blocks[cid] = data
    for _ in range(depth):
        block = dagcbor.encode([cid, cid])
        cid = CID.for_block(block)
        blocks[cid] = block
    return cid, blocks


@pytest.mark.parametrize(
    "dag, limits, what",
    [
        (_chain(40), FetchLimits(max_depth=16), "levels deep"),
        (tree(fanout=300, depth=1), FetchLimits(max_pending=100), "links to follow"),
        (tree(fanout=10, depth=2), FetchLimits(max_blocks=50), "blocks"),
        (_shared(60), FetchLimits(max_blocks=10_000), "blocks"),
        (tree(fanout=10, depth=1, leaf=1000), FetchLimits(max_bytes=5000), "bytes"),
    ],
    ids=["deep", "fan-out", "many blocks", "shared nodes", "too many bytes"],
)
def test_hostile_or_too_large_dags_stop_at_a_bound(dag, limits, what):
    root, blocks = dag
    fetcher = DagFetcher(Store(blocks).fetch, Store(), links_of, limits=limits)
    with pytest.raises(DagTooLarge, match=what):
        trio.run(fetcher.fetch, root, ["p"])


def test_a_dag_that_links_one_block_many_times_fetches_it_once():
    root, blocks = _shared(5)  # 32 paths to the leaf, 6 blocks
    peer, local = Store(blocks), Store()
    progress = trio.run(DagFetcher(peer.fetch, local, links_of, batch=64).fetch, root, ["p"])
    assert local.blocks == blocks
    assert progress.done and progress.fetched_blocks <= 2 * len(blocks)


class Peers:
    """Several peers, each a dict of blocks; records who was asked for what."""

    def __init__(self, **peers: dict[CID, bytes]) -> None:
        self.peers = peers
        self.asked: list[tuple[tuple[str, ...], int]] = []

    async def fetch(self, cids: list[CID], peers: list[str], timeout: float) -> dict[CID, bytes]:
        self.asked.append((tuple(peers), len(cids)))
        await trio.sleep(0)
        got: dict[CID, bytes] = {}
        for peer in peers:
            for cid in cids:
                if cid in self.peers[peer] and cid not in got:
                    got[cid] = self.peers[peer][cid]
        return got


def test_with_several_peers_batches_go_to_each_in_turn_and_what_one_lacks_to_all():
    root, blocks = tree(fanout=8, depth=2)
    half = {c: b for i, (c, b) in enumerate(blocks.items()) if i % 2 == 0 or c == root}
    peers = Peers(a=blocks, b=blocks, c=half)
    local = Store()
    fetcher = DagFetcher(peers.fetch, local, links_of, parallel=3, batch=4)
    trio.run(fetcher.fetch, root, ["a", "b", "c"])
    assert local.blocks == blocks
    alone = {who[0] for who, _n in peers.asked if len(who) == 1}
    assert alone == {"a", "b", "c"}  # every peer was asked first for some batch
    # c lacked some blocks: those were asked of everyone.
    assert any(len(who) == 3 for who, _n in peers.asked)


def test_a_peer_that_sends_nothing_is_asked_first_no_more():
    root, blocks = tree(fanout=8, depth=2)
    peers = Peers(good=blocks, mute={})
    fetcher = DagFetcher(peers.fetch, Store(), links_of, parallel=1, batch=2)
    trio.run(fetcher.fetch, root, ["mute", "good"])
    firsts = [who[0] for who, _n in peers.asked if len(who) == 1]
    assert firsts.count("mute") == 1
