"""gridnode: a peer-to-peer replica node for signed Merkle-CRDT databases.

The public names embedders import live here. Every error gridnode raises is a
:class:`GridnodeError`.
"""

from crdt.errors import (
    BlockTooLarge,
    DagCborDecodeError,
    DecodeError,
    EncodeError,
    GridnodeError,
    HashMismatch,
    IdentityError,
    InvalidBlock,
    InvalidCar,
    InvalidCID,
    InvalidDidKey,
    InvalidEntry,
    InvalidSignature,
)
from crdt.identity import Keypair
from crdt.ipld import CID

__all__ = [
    "CID",
    "BlockTooLarge",
    "DagCborDecodeError",
    "DecodeError",
    "EncodeError",
    "GridnodeError",
    "HashMismatch",
    "IdentityError",
    "InvalidBlock",
    "InvalidCID",
    "InvalidCar",
    "InvalidDidKey",
    "InvalidEntry",
    "InvalidSignature",
    "Keypair",
]
