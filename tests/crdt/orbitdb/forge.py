"""OrbitDB 4-shaped blocks built in Python (coincurve signs as @libp2p/crypto does: ECDSA over
the SHA-256 of the message, DER, low-S), for tests that need entries OrbitDB would write and
entries it would not. Each builder returns ``(cid, block bytes)``; ``override`` replaces or adds
fields after signing, ``drop`` removes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coincurve import PrivateKey

from crdt.ipld import CID, encode
from crdt.orbitdb import format_address, format_hash


def private_key(seed: int) -> PrivateKey:
    return PrivateKey(seed.to_bytes(32, "big"))


def public_hex(key: PrivateKey) -> str:
    return key.public_key.format(compressed=True).hex()


def sign(key: PrivateKey, data: bytes) -> str:
    return key.sign(data).hex()


def block(value: Any) -> tuple[CID, bytes]:
    data = encode(value)
    return CID.for_block(data), data


@dataclass(frozen=True)
class Writer:
    """An OrbitDB ``publickey`` identity: ``id`` is one key's public key, ``publicKey`` another's
    (OrbitDB's keystore holds both)."""

    id_key: PrivateKey
    key: PrivateKey
    cid: CID
    data: bytes

    @property
    def id(self) -> str:
        return public_hex(self.id_key)

    @property
    def public_key(self) -> str:
        return public_hex(self.key)

    @property
    def hash(self) -> str:
        return format_hash(self.cid)


def identity_value(id_key: PrivateKey, key: PrivateKey) -> dict[str, Any]:
    id_ = public_hex(id_key)
    public_key = public_hex(key)
    id_signature = sign(key, id_.encode())
    return {
        "id": id_,
        "publicKey": public_key,
        "signatures": {
            "id": id_signature,
            "publicKey": sign(id_key, (public_key + id_signature).encode()),
        },
        "type": "publickey",
    }


def writer(seed: int, value: dict[str, Any] | None = None) -> Writer:
    id_key, key = private_key(seed), private_key(seed + 1000)
    cid, data = block(value if value is not None else identity_value(id_key, key))
    return Writer(id_key, key, cid, data)


def access(write: list[str]) -> tuple[CID, bytes]:
    return block({"type": "ipfs", "write": write})


def manifest(name: str, kind: str, access_cid: CID) -> tuple[CID, bytes]:
    return block(
        {"name": name, "type": kind, "accessController": "/ipfs/" + format_hash(access_cid)}
    )


def entry(
    author: Writer,
    log: CID | str,
    payload: Any,
    time: int,
    next: list[str] | tuple[str, ...] = (),
    refs: list[str] | tuple[str, ...] = (),
    *,
    signer: PrivateKey | None = None,
    override: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> tuple[CID, bytes]:
    """An entry as OrbitDB writes it (``signer`` signs instead of the identity's key, and its
    public key becomes ``key``: the key-identity mismatch OrbitDB accepts)."""
    signing = signer if signer is not None else author.key
    key = public_hex(signing)
    value: dict[str, Any] = {
        "id": log if isinstance(log, str) else format_address(log),
        "payload": payload,
        "next": list(next),
        "refs": list(refs),
        "clock": {"id": key, "time": time},
        "v": 2,
    }
    value["sig"] = sign(signing, encode(value))
    value["key"] = key
    value["identity"] = author.hash
    value.update(override or {})
    for field in drop:
        del value[field]
    return block(value)
