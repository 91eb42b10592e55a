"""The key-value store: a last-writer-wins map from strings to IPLD values.

Ops: ``{"op": "put", "key": <str>, "value": <any IPLD value>}`` and ``{"op": "del", "key": <str>}``,
and the store-level ``{"op": "meta", "key": <str>, "value": ...}`` (see :mod:`crdt.stores.base`:
a meta key is never a key of the data).
For each key the op of the entry greatest in the log's total order ``(clock, binary CID)`` wins,
whatever order entries arrive in; a winning del leaves a tombstone (kept, so that an older put
arriving late cannot bring the key back).

Tables (see :mod:`crdt.stores.base`):

- ``keyvalue.keys``: the key's UTF-8 bytes (so key order is code point order) -> the winning op,
  ``[clock, binary CID, value]`` for a put, ``[clock, binary CID]`` for a del (a tombstone);
- ``keyvalue.meta``: ``b"live"`` -> the number of live keys, and the state sum;
- ``keyvalue.metaop``: the winning meta op of each meta key.

State rows (the digest): ``(b"keys", key, binary CID of the winning op)`` per key, and the meta
op's ``(b"metaop", key, binary CID)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from crdt.entry import Entry
from crdt.errors import InvalidOperation
from crdt.ipld.cid import CID
from crdt.space import Space
from crdt.stores.base import (
    Store,
    add_to_count,
    is_meta_payload,
    read_count,
    read_meta_op,
)

__all__ = ["KeyValueStore"]

_LIVE: Final = b"live"
_KEYS: Final = b"keys"
_parse_cid = CID.parse


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
            ' (or {"op": "meta", "key": ..., "value": ...})'
        )
    key = payload["key"]
    if type(key) is not str:
        raise InvalidOperation(f"a keyvalue key is a string, not {type(key).__name__}")
    return key, is_put, payload.get("value")


def _key(key: str) -> bytes:
    # "surrogatepass": a string out of a decoded block is valid Unicode, but one built in Python
    # need not be; its surrogates still encode in code point order.
    return key.encode("utf-8", "surrogatepass")


def _unkey(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


class KeyValueStore(Store):
    """A last-writer-wins register per string key."""

    type_name: ClassVar[str] = "keyvalue"
    takes_meta: ClassVar[bool] = True

    def __init__(
        self, options: Mapping[str, Any] | None = None, space: Space | None = None
    ) -> None:
        super().__init__(options, space)
        self._keys = self._table("keys")

    @classmethod
    def check_op(cls, payload: Any, options: Mapping[str, Any] | None = None) -> None:
        if is_meta_payload(payload):
            read_meta_op(payload)
        else:
            _read_op(payload)

    def apply(self, entry: Entry) -> bool:
        if self.is_meta_op(entry.payload):
            return self.apply_meta(entry)
        try:
            key, is_put, value = _read_op(entry.payload)
        except InvalidOperation:
            return False
        clock, raw, k = entry.clock, entry.cid.bytes, _key(key)
        old = self._keys.get(k)
        delta = 1 if is_put else 0
        if old is not None:
            # The max of a set does not depend on the order its members came in, and an entry
            # seen again is not greater than itself: this comparison is the whole CRDT.
            if (old[0], old[1]) >= (clock, raw):
                return True
            delta -= len(old) == 3
        self._keys.put(k, [clock, raw, value] if is_put else [clock, raw])
        self._change_row(_KEYS, k, None if old is None else old[1], raw)
        if delta:
            add_to_count(self._meta, _LIVE, delta)
        return True

    def __len__(self) -> int:
        return read_count(self._meta, _LIVE)

    def _live(self, key: object) -> list[Any] | None:
        row = self._keys.get(_key(key)) if type(key) is str else None
        return row if row is not None and len(row) == 3 else None

    def __contains__(self, key: object) -> bool:
        return self._live(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is absent or deleted."""
        row = self._live(key)
        return default if row is None else row[2]

    def __getitem__(self, key: str) -> Any:
        row = self._live(key)
        if row is None:
            raise KeyError(key)
        return row[2]

    def keys(self) -> list[str]:
        """The live keys, sorted (by code point)."""
        return [_unkey(k) for k, row in self._keys.range() if len(row) == 3]

    def items(self) -> list[tuple[str, Any]]:
        """``(key, value)`` of the live keys, sorted by key."""
        return [(_unkey(k), row[2]) for k, row in self._keys.range() if len(row) == 3]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def data_rows(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """One row per key, live or deleted: the binary CID of the op deciding it."""
        for k, row in self._keys.range():
            yield _KEYS, k, row[1]

    def winner(self, key: str) -> tuple[int, CID] | None:
        """``(clock, entry CID)`` of the op that decides ``key`` (a put or a del), if any."""
        row = self._keys.get(_key(key)) if type(key) is str else None
        return None if row is None else (row[0], _parse_cid(row[1]))

    def state(self) -> Any:
        """``{key: {"clock", "entry", "value"}}``; a deleted key has no ``"value"``. With meta
        keys, ``{"state": that, "meta": meta_state()}``."""
        out: dict[str, dict[str, Any]] = {}
        for k, row in self._keys.range():
            item: dict[str, Any] = {"clock": row[0], "entry": _parse_cid(row[1])}
            if len(row) == 3:
                item["value"] = row[2]
            out[_unkey(k)] = item
        return self._with_meta(out)
