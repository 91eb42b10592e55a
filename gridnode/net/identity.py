"""The node's libp2p identity: the same ed25519 key as its ``did:key``.

The peer id is the identity multihash of the protobuf-encoded public key (libp2p peer-id spec), so
an ed25519 peer id reads ``12D3KooW...``, is the same in every libp2p implementation and is stable
for as long as the node keeps its key file.
"""

from __future__ import annotations

from typing import Any

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from crdt.errors import InvalidKey, InvalidMultibase
from crdt.identity import did_from_public_key
from crdt.ipld.multiformats import base58_decode
from gridnode.errors import InvalidRequest

__all__ = ["check_peer_multiaddr", "did_of_peer", "key_pair_from_seed", "peer_id_from_seed"]

#: An ed25519 peer id's bytes before the public key: the identity multihash (0x00) of 36 bytes
#: holding the protobuf ``PublicKey {Type: Ed25519 (1), Data: 32 bytes}``.
_ED25519_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def key_pair_from_seed(seed: bytes) -> Any:
    """The py-libp2p ``KeyPair`` for a 32-byte ed25519 seed."""
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise InvalidKey("an ed25519 seed has 32 bytes")
    return create_new_key_pair(seed)


def peer_id_from_seed(seed: bytes) -> str:
    """The base58 peer id of the node whose ed25519 seed is ``seed``."""
    return str(ID.from_pubkey(key_pair_from_seed(seed).public_key))


def did_of_peer(peer_id: str) -> str | None:
    """The ``did:key`` of the ed25519 key a peer id names, or ``None`` for any other peer id
    (another key type, a hashed key, not base58). Noise has authenticated the peer id of a
    connection, so this is the key the remote peer proved it holds: the same key its node signs
    entries with."""
    if len(peer_id) > 64:  # an ed25519 peer id has 52 characters
        return None
    try:
        raw = base58_decode(peer_id)
    except InvalidMultibase:
        return None
    if len(raw) != 38 or not raw.startswith(_ED25519_PEER_ID_PREFIX):
        return None
    return did_from_public_key(raw[len(_ED25519_PEER_ID_PREFIX) :])


def check_peer_multiaddr(address: Any, label: str) -> str:
    """The peer id a multiaddr ends with (``.../p2p/<peer id>``); :class:`InvalidRequest` (naming
    it by ``label``) for anything else."""
    if type(address) is not str:
        raise InvalidRequest(f"{label} must be a multiaddr (a string) ending in /p2p/<peer id>")
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    try:
        return str(info_from_p2p_addr(multiaddr.Multiaddr(address)).peer_id)
    except Exception as exc:  # multiaddr and libp2p raise many kinds for a bad address
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise InvalidRequest(
            f"{label} is not a multiaddr ending in /p2p/<peer id>: {address!r} ({text})"
        ) from None
