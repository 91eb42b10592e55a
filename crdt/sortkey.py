"""Byte strings that sort like IPLD values: keys for ordered tables and secondary indexes.

``sort_key(a) < sort_key(b)`` exactly when ``a`` comes before ``b`` in the total order of
:func:`crdt.stores.base.value_key`: kinds null < bool < number < string < bytes < list < map <
link; numbers by exact value (``1 == 1.0``, ``-0.0 == 0.0``); strings by code point; bytes
bytewise; lists element by element, a prefix first; maps as their sorted (key, value) pairs; links
by binary CID. Every encoding is self-delimiting, so a key can be followed by more key parts (an
index key is ``sort_key(value) + document id``) without disturbing the order.

Layout: one kind byte, then
- bool: ``00`` or ``01``;
- number: the IEEE-754 double nearest the value, made order-preserving (positive: sign bit set;
  negative: all bits inverted), then the exact remainder ``value - double`` as an order-preserving
  signed 64-bit integer (non-zero only for integers beyond 2**53);
- string, bytes, link: the bytes with ``00`` escaped as ``00 ff``, ending ``00 00``;
- list: ``01`` + item for each item, then ``00``; map: ``01`` + key + value per pair, then ``00``.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from crdt.ipld.cid import CID

__all__ = ["escape", "sort_key"]

_NULL: Final = b"\x00"
_BOOL: Final = 0x01
_NUMBER: Final = b"\x02"
_STRING: Final = b"\x03"
_BYTES: Final = b"\x04"
_LIST: Final = b"\x05"
_MAP: Final = b"\x06"
_LINK: Final = b"\x07"
_END: Final = b"\x00\x00"
_ITEM: Final = b"\x01"
_CLOSE: Final = b"\x00"

_pack_double = struct.Struct(">d").pack
_pack_u64 = struct.Struct(">Q").pack
_SIGN: Final = 1 << 63
_ALL: Final = (1 << 64) - 1


def escape(raw: bytes) -> bytes:
    """``raw`` with ``00`` written as ``00 ff`` and ended by ``00 00``: order-preserving, self-delimiting."""
    return raw.replace(b"\x00", b"\x00\xff") + _END


def _number(value: int | float) -> bytes:
    as_float = float(value)
    if as_float == 0.0:
        as_float = 0.0  # -0.0 and 0.0 are one value
    bits = int.from_bytes(_pack_double(as_float), "big")
    bits = bits ^ _ALL if bits & _SIGN else bits | _SIGN
    remainder = 0 if type(value) is float else int(value) - int(as_float)
    return _NUMBER + _pack_u64(bits) + _pack_u64((remainder + _SIGN) & _ALL)


def sort_key(value: Any) -> bytes:
    """The order-preserving byte key of an IPLD value."""
    t = type(value)
    if t is str:
        return _STRING + escape(value.encode("utf-8"))
    if t is int or t is float:
        return _number(value)
    if value is None:
        return _NULL
    if t is bool:
        return bytes((_BOOL, 1 if value else 0))
    if t is bytes:
        return _BYTES + escape(value)
    if t is list or t is tuple:
        return _LIST + b"".join(_ITEM + sort_key(item) for item in value) + _CLOSE
    if t is dict:
        pairs = sorted(value.items())
        return _MAP + b"".join(_ITEM + sort_key(k) + sort_key(v) for k, v in pairs) + _CLOSE
    if t is CID:
        return _LINK + escape(value.bytes)
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return sort_key(bool(value))
    if isinstance(value, int):
        return sort_key(int(value))
    if isinstance(value, float):
        return sort_key(float(value))
    if isinstance(value, str):
        return sort_key(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return sort_key(bytes(value))
    if isinstance(value, (list, tuple)):
        return sort_key(list(value))
    if isinstance(value, dict):
        return sort_key(dict(value))
    raise TypeError(f"{type(value).__name__} is not a value of the IPLD data model")
