"""gridnode: a peer-to-peer replica node for signed Merkle-CRDT databases.

The public names embedders import live here. Every error gridnode raises is a
:class:`GridnodeError`.

Running a node (docs/embedding.md):

- trio: ``async with gridnode.open_node(data_dir) as node`` (:class:`Node`);
- asyncio: ``async with gridnode.asyncio_node(data_dir) as node`` (:class:`AsyncioNode`);
- synchronous code: ``with gridnode.start_node(data_dir) as node`` (:class:`SyncNode`).

The node's names are imported when first used: ``import gridnode`` stays light (no libp2p).
"""

from typing import TYPE_CHECKING, Any

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
    InvalidOperation,
    InvalidSignature,
    Unauthorized,
)
from crdt.identity import Keypair
from crdt.ipld import CID
from gridnode.errors import (
    ConfigError,
    CorruptBlock,
    FeatureOff,
    InvalidRequest,
    NodeStopped,
    NodeUnavailable,
    NotAWriter,
    NotFound,
    StorageError,
    StorageFull,
    StorageLimitReached,
    UnknownDatabase,
    WrongStoreType,
)

if TYPE_CHECKING:
    from gridnode.config import Config, load_config
    from gridnode.embed import AsyncioNode, SyncNode, asyncio_node, start_node
    from gridnode.node import Node, open_node
    from gridnode.repo import StoredDatabase

__all__ = [
    "CID",
    "AsyncioNode",
    "BlockTooLarge",
    "Config",
    "ConfigError",
    "CorruptBlock",
    "DagCborDecodeError",
    "DecodeError",
    "EncodeError",
    "FeatureOff",
    "GridnodeError",
    "HashMismatch",
    "IdentityError",
    "InvalidBlock",
    "InvalidCID",
    "InvalidCar",
    "InvalidDidKey",
    "InvalidEntry",
    "InvalidOperation",
    "InvalidRequest",
    "InvalidSignature",
    "Keypair",
    "Node",
    "NodeStopped",
    "NodeUnavailable",
    "NotAWriter",
    "NotFound",
    "StorageError",
    "StorageFull",
    "StorageLimitReached",
    "StoredDatabase",
    "SyncNode",
    "Unauthorized",
    "UnknownDatabase",
    "WrongStoreType",
    "asyncio_node",
    "load_config",
    "open_node",
    "start_node",
]

#: name -> the module it lives in, imported on first use.
_LAZY = {
    "Config": "gridnode.config",
    "load_config": "gridnode.config",
    "AsyncioNode": "gridnode.embed",
    "SyncNode": "gridnode.embed",
    "asyncio_node": "gridnode.embed",
    "start_node": "gridnode.embed",
    "Node": "gridnode.node",
    "open_node": "gridnode.node",
    "StoredDatabase": "gridnode.repo",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gridnode' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
