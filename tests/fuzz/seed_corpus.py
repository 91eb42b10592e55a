"""Seed ``tests/fuzz/corpus/<target>/`` from the fixtures and from real encoded messages.

    python tests/fuzz/seed_corpus.py          # (re)writes the seeds; inputs added by run.py stay

Deterministic: keys come from fixed seeds, so the same files come out every time. Each file is
named by the SHA-1 of its bytes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crdt.entry import create_entry  # noqa: E402
from crdt.identity import Keypair  # noqa: E402
from crdt.ipld import car  # noqa: E402
from crdt.ipld.cid import CID  # noqa: E402
from crdt.ipld.dagcbor import encode  # noqa: E402
from crdt.ipld.dagpb import decode_node  # noqa: E402
from crdt.ipld.multiformats import encode_varint  # noqa: E402
from crdt.rangesums import LogItems  # noqa: E402
from crdt.unixfs.importer import DirectoryImporter, import_bytes, import_symlink  # noqa: E402
from crdt.unixfs.profiles import PROFILES, Profile  # noqa: E402
from protocols import gossip, reconcile, wire  # noqa: E402
from tests.fuzz.harness import save_input  # noqa: E402
from tests.fuzz.targets import fixture_log  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"


def _payload(framed: bytes) -> bytes:
    """A frame's payload (without its varint length)."""
    (payload,) = wire.FrameDecoder().feed(framed)
    return payload


def seeds() -> dict[str, list[bytes]]:
    manifest, log, (_alice, _bob) = fixture_log()
    db = manifest.cid
    entries = log.order()
    blocks = [e.block for e in entries]
    heads = list(log.heads)
    mallory = Keypair.from_seed(bytes([66]) * 32)
    forged = create_entry(mallory, db=db, clock=2**54, next=heads[:1], payload="jump")
    with_skip = entries[-1]

    cbor_fixtures = sorted((FIXTURES / "ipld-codec-fixtures" / "fixtures").glob("*/*.dag-cbor"))
    fixture_blocks = [p.read_bytes() for p in cbor_fixtures]
    negative = [
        bytes.fromhex(case["hex"])
        for path in sorted((FIXTURES / "ipld-codec-fixtures" / "negative-fixtures").rglob("*.json"))
        for case in json.loads(path.read_text())
    ]
    fixture_cids = [CID.parse(p.name.split(".")[0]) for p in cbor_fixtures]
    v0 = CID.parse("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
    raw = CID.for_block(b"raw", codec="raw")
    blake = CID.for_block(b"blake", hash="blake2b-256")
    ident = CID.for_block(b"inline", hash="identity")
    cids = [*fixture_cids[:16], v0, raw, blake, ident, db, *heads[:4]]

    # The sync protocol: every message kind, as a puller and a server would send them.
    first = reconcile.Reconciler(LogItems(log), role="puller").initiate_ranges()
    server = reconcile.Reconciler(reconcile.SortedItems([]), role="server")
    answer = server.receive_ranges(first)
    puller_msgs = [
        wire.encode_message(wire.HeadsRequest(db)),
        wire.encode_message(wire.Sync(db, tuple(heads), first)),
        wire.encode_message(wire.Sync(db, (), [[reconcile.TOP, "ids", []]])),
        wire.encode_message(wire.Want(db, tuple(heads), ())),
        wire.encode_message(wire.Want(db, (db,), ())),
        wire.encode_message(wire.Ranges(db, answer or [[reconcile.TOP, "skip"]])),
    ]
    server_msgs = [
        wire.encode_message(wire.Heads(db, tuple(heads))),
        wire.encode_message(wire.Entries(db, tuple(blocks[:8]))),
        wire.encode_message(wire.Ranges(db, [])),
        wire.encode_message(wire.Ranges(db, answer or [[reconcile.TOP, "skip"]])),
        wire.encode_message(wire.Blocks(db, tuple((e.cid, e.block) for e in entries[:6]), True)),
        wire.encode_message(wire.Blocks(db, ((manifest.cid, manifest.block),), False)),
        wire.encode_message(wire.Refusal("unknown database")),
    ]
    messages = [_payload(m) for m in puller_msgs + server_msgs]
    range_msgs = [
        encode(first),
        encode(answer or []),
        encode([[reconcile.TOP, "fp", bytes(16)]]),
        encode(
            [[b"\x00" * 8, "skip"], [reconcile.TOP, "ids", [bytes(8) + c.bytes for c in heads]]]
        ),
        encode(
            [
                [b"\x00" * 8 + b"\x05", "want", [b"\x00" * 8 + heads[0].bytes]],
                [reconcile.TOP, "have", []],
            ]
        ),
    ]

    announcements = [
        gossip.Announcement(db, tuple(heads)).encode(),
        gossip.Announcement(
            db, tuple(heads), tuple((e.cid, e.block) for e in entries[-2:])
        ).encode(),
        gossip.Announcement(db, (forged.cid,), ((forged.cid, forged.block),)).encode(),
    ]
    records = [
        gossip.PeerRecord(
            "12D3KooWTarget", ("/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001")
        ).encode(),
        gossip.PeerRecord("12D3KooWTarget", ()).encode(),
    ]

    go_car = sorted((FIXTURES / "go-car").glob("*.car"))
    cars = [p.read_bytes()[: 16 * 1024] for p in go_car]
    export = car.write_car(
        [db, *heads], [(manifest.cid, manifest.block), *((e.cid, e.block) for e in entries)]
    )
    cars += [
        export,
        car.write_car([db], [(manifest.cid, manifest.block)], version=2),
        car.write_car([], []),
    ]

    pb_fixtures = sorted((FIXTURES / "ipld-codec-fixtures" / "fixtures").glob("*/*.dag-pb"))
    pb_blocks = [p.read_bytes() for p in pb_fixtures]
    pb_blocks += [
        bytes.fromhex(case["hex"])
        for case in json.loads(
            (
                FIXTURES
                / "ipld-codec-fixtures"
                / "negative-fixtures"
                / "dag-pb"
                / "decode"
                / "edges.json"
            ).read_text()
        )
    ]
    # UnixFS as the importer writes it: leaves, a two-level file, a directory, a HAMT, a symlink
    small = import_bytes(b"x" * 700, "unixfs-v0-2015")
    tiny = import_bytes(bytes(range(256)) * 3, replace_chunking("unixfs-v0-2015", 100, 3))
    flat = DirectoryImporter("unixfs-v1-2025")
    for i in range(5):
        flat.add(f"file-{i}.txt", small.cid, small.tsize)
    sharded = DirectoryImporter(replace_chunking("unixfs-v1-2025", 1 << 20, 1024, hamt=200))
    for i in range(40):
        sharded.add(f"entry {i}", small.cid, small.tsize)
    unixfs_blocks = [block for _, block in small.blocks + tiny.blocks[-3:]]
    unixfs_blocks += [flat.close().blocks[-1][1], *(b for _, b in sharded.close().blocks[-2:])]
    unixfs_blocks.append(import_symlink("../target", "unixfs-v0-2015").blocks[0][1])
    pb_blocks += unixfs_blocks
    unixfs_datas = [decode_node(block).data or b"" for block in unixfs_blocks]

    return {
        "dagpb": pb_blocks,
        "unixfs_data": unixfs_datas,
        "dagcbor": fixture_blocks + negative + blocks[:4] + messages + [manifest.block],
        "dagcbor_strict": fixture_blocks + negative + blocks[:4] + messages[:4],
        "cid_bytes": [c.bytes for c in cids]
        + [bytes([i % 8]) + c.bytes + b"tail" for i, c in enumerate(cids[:8])],
        "cid_text": [str(c).encode() for c in cids]
        + [c.encode("base58btc").encode() for c in cids[:6]]
        + [("f" + c.bytes.hex()).encode() for c in cids[:4]]
        + [("F" + c.bytes.hex().upper()).encode() for c in cids[:4]]
        + [str(c).upper().encode() for c in cids[:4]]
        + [
            ("/gridnode/" + str(db)).encode(),
            b"z" + b"2" * 4000,
            b"Qm" + b"z" * 44,
            b"f" + b"0" * 8000,
        ],
        "car": cars,
        "entry": [b"\x00" + b for b in blocks[:6]]
        + [b"\x01" + e.cid.bytes + e.block for e in entries[:4]]
        + [b"\x02" + b for b in blocks[:2]]
        + [b"\x00" + forged.block, b"\x00" + with_skip.block],
        "manifest": [manifest.block],
        "wire_message": messages,
        "frames": [bytes([i * 37 % 256]) + m for i, m in enumerate(puller_msgs + server_msgs)]
        + [
            b"\x07" + b"".join(puller_msgs),
            b"\x00" + b"\xff" * 9,
            b"\x01" + encode_varint(5 * 1024 * 1024),
        ],
        "announcement": announcements,
        "peer_record": records,
        "ranges": range_msgs,
        "sync_server": [bytes([i * 29 % 256]) + m for i, m in enumerate(puller_msgs)]
        + [b"\x03" + b"".join(puller_msgs)],
        "sync_puller": [bytes([k | 0x80]) + m for k in range(4) for m in server_msgs]
        + [
            b"\x81" + server_msgs[0] + server_msgs[1] + server_msgs[3],
            b"\x82" + server_msgs[4] + server_msgs[5],
        ],
    }


def replace_chunking(profile: str, chunk_size: int, max_links: int, hamt: int = 262144) -> Profile:
    """A named profile with small chunks, few links per node or a low HAMT threshold (seeds of
    several levels and shards in a few hundred bytes)."""
    return replace(
        PROFILES[profile], chunk_size=chunk_size, max_links=max_links, hamt_threshold=hamt
    )


def main() -> None:
    total = 0
    for name, inputs in seeds().items():
        for data in inputs:
            save_input(name, data)
            total += 1
    print(f"wrote {total} seeds")


if __name__ == "__main__":
    main()
