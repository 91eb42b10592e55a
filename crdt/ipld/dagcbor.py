"""Strict DAG-CBOR (https://ipld.io/specs/codecs/dag-cbor/spec/).

The data model maps to Python as: null -> ``None``, booleans -> ``bool``, integers in
[-2**64, 2**64 - 1] -> ``int``, finite floats -> ``float``, text -> ``str``, bytes -> ``bytes``,
lists -> ``list`` (``tuple`` is accepted when encoding), maps with text keys -> ``dict``,
links -> :class:`~crdt.ipld.cid.CID`.

Encoding is canonical: map keys sorted shorter-first then bytewise, integers and lengths in their
shortest form, floats always 64-bit, tag 42 only around a 0x00-prefixed binary CID.

Decoding accepts exactly the canonical encodings. Two decoders agree on that set:

* the *strict reader* (:func:`decode_strict`), pure Python, checks every rule as it reads and names
  the first broken rule and its offset;
* the *fast path* lets cbor2's C decoder read the bytes (with indefinite lengths, duplicate keys and
  every tag but 42 refused) and then re-encodes the value: because the canonical encoding of a value
  is unique, the input is valid exactly when the re-encoding equals it. Anything the fast path
  refuses is handed to the strict reader, which produces the precise error.

The fast path's re-encoding is done first by ``libipld`` (a compiled DAG-CBOR codec, Rust): its
own strict decode and canonical encode of the same bytes, compared with them. Its data model
differs from ours in one way (a link decodes to the CID's bytes, and bytes that parse as a CID
encode as a link), so it only ever *confirms*: when its round trip equals the input, the input
is the canonical encoding of the value cbor2 read (the same bytes, read under the same rules by
both); when it does not (an error, or a byte string that looks like a CID), the pure-Python
re-encoding above decides, as before. It never accepts what the pure-Python path refuses; tests
run both paths.

Tests run both over the fixtures, over hundreds of malformed inputs and over random bytes, and
check that they agree.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from operator import itemgetter
from typing import Any, Final

import cbor2
import libipld

from crdt.errors import (
    DagCborDecodeError,
    DagCborEncodeError,
    DepthExceeded,
    DuplicateMapKey,
    IndefiniteLength,
    InvalidCID,
    InvalidFloat,
    InvalidUtf8,
    MapKeyOrder,
    NonCanonicalEncoding,
    NonStringMapKey,
    TrailingBytes,
    Truncated,
    UnsupportedTag,
    UnsupportedType,
)
from crdt.ipld.cid import CID

__all__ = ["DEFAULT_MAX_DEPTH", "decode", "decode_strict", "decode_trusted", "encode"]

#: How deeply arrays and maps may nest (the top-level container is depth 1).
DEFAULT_MAX_DEPTH: Final = 100

_MAX_UINT64: Final = (1 << 64) - 1
_MIN_NINT64: Final = -(1 << 64)
_pack_u8 = struct.Struct(">B").pack
_pack_u16 = struct.Struct(">H").pack
_pack_u32 = struct.Struct(">I").pack
_pack_u64 = struct.Struct(">Q").pack
_pack_f64 = struct.Struct(">d").pack
_unpack_f64 = struct.Struct(">d").unpack_from
_unpack_u16 = struct.Struct(">H").unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_u64 = struct.Struct(">Q").unpack_from


# -- encoding ------------------------------------------------------------------------------------


def _head(major: int, arg: int) -> bytes:
    """The shortest head for a major type and argument."""
    mt = major << 5
    if arg < 24:
        return bytes((mt | arg,))
    if arg < 0x100:
        return bytes((mt | 24, arg))
    if arg < 0x10000:
        return bytes((mt | 25,)) + _pack_u16(arg)
    if arg < 0x100000000:
        return bytes((mt | 26,)) + _pack_u32(arg)
    return bytes((mt | 27,)) + _pack_u64(arg)


# Encoded map keys are cached: entries and documents repeat the same few keys. Encoded keys also
# sort correctly as plain bytes (a shorter head sorts first), which is the canonical key order.
_key_cache: dict[str, bytes] = {}
_KEY_CACHE_LIMIT: Final = 8192


def _encode_key(key: str) -> bytes:
    raw = key.encode("utf-8")
    encoded = _head(3, len(raw)) + raw
    if len(_key_cache) >= _KEY_CACHE_LIMIT:
        _key_cache.clear()
    _key_cache[key] = encoded
    return encoded


_first = itemgetter(0)
_CID_TAG: Final = b"\xd8\x2a"


def encode(value: object, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode a value of the IPLD data model as canonical DAG-CBOR.

    Raises :class:`~crdt.errors.DagCborEncodeError` for anything outside the data model: other
    types, map keys that are not ``str``, NaN or infinite floats, integers outside 64 bits, strings
    that are not valid Unicode, or nesting deeper than ``max_depth``.
    """
    buf = bytearray()
    try:
        _encode_into(value, buf, max_depth)
    except RecursionError:
        raise DagCborEncodeError("value nested too deeply") from None
    return bytes(buf)


def _encode_into(value: object, buf: bytearray, budget: int) -> None:
    t = type(value)
    if t is str:
        text: str = value  # type: ignore[assignment]
        raw = text.encode("utf-8") if text.isascii() else _utf8(text)
        n = len(raw)
        if n < 24:
            buf.append(0x60 | n)
        else:
            buf += _head(3, n)
        buf += raw
    elif t is int:
        v: int = value  # type: ignore[assignment]
        if v >= 0:
            if v < 24:
                buf.append(v)
            elif v <= _MAX_UINT64:
                buf += _head(0, v)
            else:
                raise DagCborEncodeError(f"integer {v} exceeds 64 bits")
        elif v >= _MIN_NINT64:
            buf += _head(1, -1 - v)
        else:
            raise DagCborEncodeError(f"integer {v} exceeds 64 bits")
    elif t is dict:
        if budget <= 0:
            raise DagCborEncodeError("maps and lists nested too deeply")
        d: dict[Any, Any] = value  # type: ignore[assignment]
        n = len(d)
        if n < 24:
            buf.append(0xA0 | n)
        else:
            buf += _head(5, n)
        cache = _key_cache
        pairs = []
        for key, item in d.items():
            if type(key) is not str:
                if isinstance(key, str):
                    key = str(key)
                else:
                    raise DagCborEncodeError(
                        f"map key {key!r} is a {type(key).__name__}; DAG-CBOR keys are strings"
                    )
            enc = cache.get(key)
            if enc is None:
                enc = _encode_key(key) if key.isascii() else _head(3, len(_utf8(key))) + _utf8(key)
            pairs.append((enc, item))
        if n > 1:
            pairs.sort(key=_first)
        budget -= 1
        for enc, item in pairs:
            buf += enc
            _encode_into(item, buf, budget)
    elif t is list or t is tuple:
        if budget <= 0:
            raise DagCborEncodeError("maps and lists nested too deeply")
        seq: list[Any] = value  # type: ignore[assignment]
        n = len(seq)
        if n < 24:
            buf.append(0x80 | n)
        else:
            buf += _head(4, n)
        budget -= 1
        for item in seq:
            _encode_into(item, buf, budget)
    elif t is bytes:
        b: bytes = value  # type: ignore[assignment]
        n = len(b)
        if n < 24:
            buf.append(0x40 | n)
        else:
            buf += _head(2, n)
        buf += b
    elif t is CID:
        raw_cid = value.bytes  # type: ignore[attr-defined]
        buf += _CID_TAG
        buf += _head(2, len(raw_cid) + 1)
        buf.append(0)
        buf += raw_cid
    elif value is None:
        buf.append(0xF6)
    elif value is True:
        buf.append(0xF5)
    elif value is False:
        buf.append(0xF4)
    elif t is float:
        f: float = value  # type: ignore[assignment]
        if not math.isfinite(f):
            raise DagCborEncodeError(f"float {f} is not allowed in DAG-CBOR")
        buf.append(0xFB)
        buf += _pack_f64(f)
    else:
        _encode_other(value, buf, budget)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DagCborEncodeError(f"string is not valid Unicode: {exc.reason}") from None


def _encode_other(value: object, buf: bytearray, budget: int) -> None:
    # Subclasses of the data-model types (an IntEnum, a str subclass, OrderedDict, ...) encode as
    # their base type; everything else is outside the data model.
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        _encode_into(bool(value), buf, budget)
    elif isinstance(value, int):
        _encode_into(int(value), buf, budget)
    elif isinstance(value, float):
        _encode_into(float(value), buf, budget)
    elif isinstance(value, str):
        _encode_into(str(value), buf, budget)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _encode_into(bytes(value), buf, budget)
    elif isinstance(value, dict):
        _encode_into(dict(value), buf, budget)
    elif isinstance(value, (list, tuple)):
        _encode_into(list(value), buf, budget)
    else:
        raise DagCborEncodeError(f"{type(value).__name__} is not in the IPLD data model")


# -- strict reader -------------------------------------------------------------------------------


def decode_strict(
    data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """Decode one DAG-CBOR item, checking every rule as it goes (the reference decoder).

    Raises a subclass of :class:`~crdt.errors.DagCborDecodeError` naming the first rule broken and
    its offset.
    """
    buf = bytes(data)
    try:
        value, pos = _read(buf, 0, max_depth)
    except RecursionError:
        # ``max_depth`` beyond what the interpreter can recurse: still a refusal in the error tree.
        raise DepthExceeded("lists and maps nested too deeply for the interpreter", None) from None
    if pos != len(buf):
        raise TrailingBytes(f"{len(buf) - pos} bytes after the top-level item", pos)
    return value


def _read_arg(data: bytes, pos: int, info: int, start: int) -> tuple[int, int]:
    """Read the argument of a head whose additional info is ``info`` (24..27)."""
    end = len(data)
    if info == 24:
        if pos + 1 > end:
            raise Truncated("head truncated", start)
        arg = data[pos]
        if arg < 24:
            raise NonCanonicalEncoding(f"value {arg} should be in the initial byte", start)
        return arg, pos + 1
    if info == 25:
        if pos + 2 > end:
            raise Truncated("head truncated", start)
        arg = _unpack_u16(data, pos)[0]
        if arg < 0x100:
            raise NonCanonicalEncoding(f"value {arg} written in 2 bytes", start)
        return arg, pos + 2
    if info == 26:
        if pos + 4 > end:
            raise Truncated("head truncated", start)
        arg = _unpack_u32(data, pos)[0]
        if arg < 0x10000:
            raise NonCanonicalEncoding(f"value {arg} written in 4 bytes", start)
        return arg, pos + 4
    if info == 27:
        if pos + 8 > end:
            raise Truncated("head truncated", start)
        arg = _unpack_u64(data, pos)[0]
        if arg < 0x100000000:
            raise NonCanonicalEncoding(f"value {arg} written in 8 bytes", start)
        return arg, pos + 8
    if info == 31:
        if data[start] >> 5 in (2, 3, 4, 5):
            raise IndefiniteLength("indefinite length", start)
        # Integers and tags have no indefinite form: 31 is not well-formed there (RFC 8949, 3).
        raise DagCborDecodeError("additional information 31 on an integer or tag", start)
    raise DagCborDecodeError(f"reserved additional information {info}", start)


def _read(data: bytes, pos: int, budget: int) -> tuple[Any, int]:
    end = len(data)
    if pos >= end:
        raise Truncated("input ends where an item was expected", pos)
    start = pos
    initial = data[pos]
    major = initial >> 5
    info = initial & 0x1F
    pos += 1
    if major == 7:
        return _read_simple(data, pos, info, start)
    if info < 24:
        arg = info
    else:
        arg, pos = _read_arg(data, pos, info, start)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2:
        stop = pos + arg
        if stop > end:
            raise Truncated(f"byte string of {arg} bytes but {end - pos} remain", start)
        return data[pos:stop], stop
    if major == 3:
        stop = pos + arg
        if stop > end:
            raise Truncated(f"text string of {arg} bytes but {end - pos} remain", start)
        try:
            return data[pos:stop].decode("utf-8"), stop
        except UnicodeDecodeError as exc:
            raise InvalidUtf8(f"text string is not UTF-8: {exc.reason}", pos + exc.start) from None
    if major == 4:
        if budget <= 0:
            raise DepthExceeded("lists and maps nested too deeply", start)
        if arg > end - pos:
            raise Truncated(f"list of {arg} items but {end - pos} bytes remain", start)
        items: list[Any] = []
        append = items.append
        budget -= 1
        for _ in range(arg):
            item, pos = _read(data, pos, budget)
            append(item)
        return items, pos
    if major == 5:
        if budget <= 0:
            raise DepthExceeded("lists and maps nested too deeply", start)
        if 2 * arg > end - pos:
            raise Truncated(f"map of {arg} entries but {end - pos} bytes remain", start)
        result: dict[str, Any] = {}
        previous = b""
        budget -= 1
        for _ in range(arg):
            key_start = pos
            if pos >= end:
                raise Truncated("input ends where a map key was expected", pos)
            if data[pos] >> 5 != 3:
                raise NonStringMapKey("map key is not a text string", pos)
            key, pos = _read(data, pos, budget)
            raw_key = data[key_start:pos]
            if raw_key <= previous:
                if raw_key == previous:
                    raise DuplicateMapKey(f"map key {key!r} appears twice", key_start)
                raise MapKeyOrder(f"map key {key!r} is out of canonical order", key_start)
            previous = raw_key
            result[key], pos = _read(data, pos, budget)
        return result, pos
    # major 6: a tag
    if arg != 42:
        raise UnsupportedTag(f"tag {arg} is not allowed (only 42)", start)
    if pos >= end:
        raise Truncated("tag 42 without content", pos)
    if data[pos] >> 5 != 2:
        raise UnsupportedTag("tag 42 must hold a byte string", pos)
    raw, stop = _read(data, pos, budget)
    if not raw or raw[0] != 0:
        raise UnsupportedTag("tag 42 bytes must start with the 0x00 multibase prefix", pos)
    try:
        return CID.parse(raw[1:]), stop
    except InvalidCID as exc:
        raise UnsupportedTag(f"tag 42 does not hold a CID: {exc.reason}", pos) from None


def _read_simple(data: bytes, pos: int, info: int, start: int) -> tuple[Any, int]:
    if info == 20:
        return False, pos
    if info == 21:
        return True, pos
    if info == 22:
        return None, pos
    if info == 27:
        if pos + 8 > len(data):
            raise Truncated("float truncated", start)
        f = _unpack_f64(data, pos)[0]
        if not math.isfinite(f):
            raise InvalidFloat(f"float {f} is not allowed", start)
        return f, pos + 8
    if info in (25, 26):
        raise InvalidFloat(
            f"{16 if info == 25 else 32}-bit float (DAG-CBOR floats are 64-bit)", start
        )
    if info == 23:
        raise UnsupportedType("undefined is not in the data model", start)
    if info == 31:
        raise DagCborDecodeError("break outside an indefinite-length item", start)
    if info in (28, 29, 30):
        raise DagCborDecodeError(f"reserved additional information {info}", start)
    raise UnsupportedType("simple values are not in the data model", start)


# -- fast path -----------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised inside cbor2 hooks; the strict reader then finds the precise error."""


def _tag_42(value: object, immutable: bool) -> CID:
    if type(value) is bytes and value[:1] == b"\x00":
        cid, end = _read_cid(value, 1)
        if end == len(value):
            return cid
    raise _Refused


class _OnlyTag42(dict[int, Callable[[object, bool], object]]):
    """cbor2 semantic decoders: tag 42 becomes a CID; every other tag, built in or not, refuses."""

    def __missing__(self, tag: int) -> Callable[[object, bool], object]:
        return _refuse_tag


def _refuse_tag(value: object, immutable: bool) -> object:
    raise _Refused


_read_cid = CID.read
_TAGS: Final = _OnlyTag42({42: _tag_42})
_loads = cbor2.loads
_ipld_decode = libipld.decode_dag_cbor
_ipld_encode = libipld.encode_dag_cbor


def _canonical_by_libipld(data: bytes) -> bool:
    """Whether libipld reads ``data`` strictly and re-encodes it to the same bytes (a ``False``
    proves nothing: the caller then re-encodes in Python)."""
    try:
        return bool(_ipld_encode(_ipld_decode(data)) == data)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):  # pragma: no cover
        raise
    except BaseException:  # a ValueError; a Rust panic surfaces as a BaseException
        return False


#: Whether :func:`decode` asks libipld first (tests switch it off to run the pure-Python path).
use_libipld = True


def decode(data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode one strict DAG-CBOR item.

    Accepts exactly the canonical encodings (see the module doc); anything else raises a subclass
    of :class:`~crdt.errors.DagCborDecodeError` that names the broken rule and its offset.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if max_depth < 1:
        return decode_strict(data, max_depth=max_depth)
    try:
        # Duplicate keys and indefinite lengths need no flag: neither survives the re-encoding
        # comparison below (a duplicate shortens the map, an indefinite length becomes definite).
        # cbor2 allows one level more than its ``max_depth`` (its top-level container is at its
        # depth 0), so it is given one less: what it accepts is within the bound.
        value = _loads(data, semantic_decoders=_TAGS, max_depth=max_depth - 1)
    except Exception:  # any refusal goes to the strict reader for its diagnosis
        return decode_strict(data, max_depth=max_depth)
    if use_libipld and _canonical_by_libipld(data):
        return value
    try:
        if encode(value, max_depth=max_depth) == data:
            return value
    except DagCborEncodeError:
        pass
    return decode_strict(data, max_depth=max_depth)


def _trusted_tag(tag: Any, immutable: bool) -> Any:
    return _read_cid(tag.value, 1)[0]


def decode_trusted(data: bytes) -> Any:
    """Decode DAG-CBOR that is known to be valid: bytes :func:`encode` produced, or a block that
    passed :func:`decode` before it was stored. No checks, ~5x faster than :func:`decode`.

    Never use it on bytes from outside.
    """
    return _loads(data, tag_hook=_trusted_tag)
