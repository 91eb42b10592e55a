"""The store types: each database's state as a deterministic fold over its log.

- ``events`` (:class:`EventsStore`): ``{"op": "add", "value": v}``
- ``keyvalue`` (:class:`KeyValueStore`): ``{"op": "put", "key": k, "value": v}``,
  ``{"op": "del", "key": k}``
- ``documents`` (:class:`DocumentsStore`): ``{"op": "put", "doc": {...}}``,
  ``{"op": "del", "id": i}``
- ``counter`` (:class:`CounterStore`): ``{"op": "inc", "by": n}``
- ``set`` (:class:`SetStore`): ``{"op": "add", "value": v}``,
  ``{"op": "remove", "value": v, "tags": [cid, ...]}``

Every store reaches the same state from the same entries in any order of application, and
ignores an entry applied twice; :meth:`Store.digest` lets replicas compare states. Each keeps its
state in tables of a :class:`~crdt.space.Space` (see :mod:`crdt.stores.base`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from crdt.errors import InvalidManifest
from crdt.space import Space
from crdt.stores.base import SortedKeys, Store, value_key
from crdt.stores.counter import CounterStore
from crdt.stores.documents import UNSET, DocumentsStore
from crdt.stores.events import EventsStore
from crdt.stores.keyvalue import KeyValueStore
from crdt.stores.set import SetStore

__all__ = [
    "STORE_TYPES",
    "UNSET",
    "CounterStore",
    "DocumentsStore",
    "EventsStore",
    "KeyValueStore",
    "SetStore",
    "SortedKeys",
    "Store",
    "open_store",
    "value_key",
]

#: Store classes by the name a manifest gives.
STORE_TYPES: Final[dict[str, type[Store]]] = {
    cls.type_name: cls
    for cls in (EventsStore, KeyValueStore, DocumentsStore, CounterStore, SetStore)
}


def open_store(
    type_name: str, options: Mapping[str, Any] | None = None, space: Space | None = None
) -> Store:
    """A store of the named type, configured by the manifest's ``options``, its state in
    ``space``: empty in a new space (the default: a fresh :class:`~crdt.space.MemorySpace`), and
    where an earlier store of the database left off in a space that holds its state.

    Raises :class:`~crdt.errors.InvalidManifest` for an unknown type or unusable options.
    """
    cls = STORE_TYPES.get(type_name)
    if cls is None:
        raise InvalidManifest(
            f"unknown store type {type_name!r}; known: {', '.join(sorted(STORE_TYPES))}"
        )
    return cls(options, space)
