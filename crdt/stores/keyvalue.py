"""The key-value store: a last-writer-wins map from strings to IPLD values.

Ops: ``{"op": "put", "key": <str>, "value": <any IPLD value>}`` and ``{"op": "del", "key": <str>}``.
For each key the op of the entry greatest in the log's total order ``(clock, binary CID)`` wins,
whatever order entries arrive in; a winning del leaves a tombstone (kept, so that an older put
arriving late cannot bring the key back).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from crdt.entry import Entry
from crdt.errors import InvalidOperation
from crdt.ipld.cid import CID
from crdt.stores.base import Store

__all__ = ["KeyValueStore"]

#: The op deciding a key: (clock, binary CID, CID, live (a put), value). A plain tuple:
#: building a NamedTuple costs several times more, once per applied entry.
_Winner = tuple[int, bytes, CID, bool, Any]


def _read_op(payload: Any) -> tuple[str, bool, Any]:
    """``(key, is_put, value)`` of a well-formed op; :class:`InvalidOperation` otherwise."""
    if type(payload) is not dict:
        raise InvalidOperation("a keyvalue op is a map")
    op = payload.get("op")
    # Exactly the keys named: a length check and lookups are cheaper than comparing key sets.
    if op == "put" and len(payload) == 3 and "key" in payload and "value" in payload:
        is_put = True
    elif op == "del" and len(payload) == 2 and "key" in payload:
        is_put = False
    else:
        raise InvalidOperation(
            'a keyvalue op is {"op": "put", "key": ..., "value": ...} or {"op": "del", "key": ...}'
        )
    key = payload["key"]
    if type(key) is not str:
        raise InvalidOperation(f"a keyvalue key is a string, not {type(key).__name__}")
    return key, is_put, payload.get("value")


class KeyValueStore(Store):
    """A last-writer-wins register per string key."""

    type_name: ClassVar[str] = "keyvalue"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        # key -> the winning op so far, put or del (a del's entry is the tombstone).
        self._winners: dict[str, _Winner] = {}
        self._live = 0

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        _read_op(payload)

    def apply(self, entry: Entry) -> bool:
        try:
            key, is_put, value = _read_op(entry.payload)
        except InvalidOperation:
            return False
        clock, raw = entry.clock, entry.cid.bytes
        old = self._winners.get(key)
        if old is not None:
            # The max of a set does not depend on the order its members came in, and an entry
            # seen again is not greater than itself: this comparison is the whole CRDT.
            if (old[0], old[1]) >= (clock, raw):
                return True
            self._live -= old[3]
        self._winners[key] = (clock, raw, entry.cid, is_put, value)
        self._live += is_put
        return True

    def __len__(self) -> int:
        return self._live

    def __contains__(self, key: object) -> bool:
        winner = self._winners.get(key) if type(key) is str else None
        return winner is not None and winner[3]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is absent or deleted."""
        winner = self._winners.get(key)
        if winner is None or not winner[3]:
            return default
        return winner[4]

    def __getitem__(self, key: str) -> Any:
        winner = self._winners.get(key)
        if winner is None or not winner[3]:
            raise KeyError(key)
        return winner[4]

    def keys(self) -> list[str]:
        """The live keys, sorted (by code point)."""
        return sorted(k for k, w in self._winners.items() if w[3])

    def items(self) -> list[tuple[str, Any]]:
        """``(key, value)`` of the live keys, sorted by key."""
        return sorted((k, w[4]) for k, w in self._winners.items() if w[3])

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def winner(self, key: str) -> tuple[int, CID] | None:
        """``(clock, entry CID)`` of the op that decides ``key`` (a put or a del), if any."""
        found = self._winners.get(key)
        return None if found is None else (found[0], found[2])

    def state(self) -> dict[str, dict[str, Any]]:
        """``{key: {"clock", "entry", "value"}}``; a deleted key has no ``"value"``."""
        out: dict[str, dict[str, Any]] = {}
        for key, (clock, _raw, cid, live, value) in self._winners.items():
            item: dict[str, Any] = {"clock": clock, "entry": cid}
            if live:
                item["value"] = value
            out[key] = item
        return out
