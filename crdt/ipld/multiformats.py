"""Multiformats: unsigned varints, multibase (base32, base58btc, base16), multihash, multicodec.

Pure functions over bytes and str. Decoders are strict: a varint must be minimal, a multibase string
must use only its alphabet, a multihash's length prefix must match its digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from typing import Final

from crdt.errors import (
    InvalidMultibase,
    InvalidMultihash,
    InvalidVarint,
    UnsupportedCodec,
    UnsupportedHash,
)

__all__ = [
    "CODECS",
    "CODEC_NAMES",
    "HASHES",
    "base32_decode",
    "base32_encode",
    "base58_decode",
    "base58_encode",
    "decode_varint",
    "encode_varint",
    "multibase_decode",
    "multihash_digest",
    "multihash_split",
]

# -- varint (unsigned LEB128, as in github.com/multiformats/unsigned-varint) --------------------

#: The multiformats spec caps varints at 9 bytes (63 bits of value).
MAX_VARINT_BYTES: Final = 9

_SMALL_VARINTS: Final = [bytes([i]) for i in range(0x80)]


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer below 2**63 as an unsigned varint."""
    if value < 0x80:
        if value < 0:
            raise ValueError("varint must be non-negative")
        return _SMALL_VARINTS[value]
    if value >= 1 << 63:
        raise ValueError("varint must be below 2**63")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode one varint at ``offset``; return ``(value, offset after it)``.

    Raises :class:`InvalidVarint` for truncated, over-long or non-minimal encodings.
    """
    end = len(data)
    if offset >= end:
        raise InvalidVarint("varint truncated", offset)
    byte = data[offset]
    if byte < 0x80:
        return byte, offset + 1
    value = 0
    shift = 0
    pos = offset
    while True:
        if pos >= end:
            raise InvalidVarint("varint truncated", offset)
        if pos - offset >= MAX_VARINT_BYTES:
            raise InvalidVarint("varint longer than 9 bytes", offset)
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            if byte == 0:
                raise InvalidVarint("varint not minimally encoded", offset)
            return value, pos
        shift += 7


# -- multibase -----------------------------------------------------------------------------------

_B58_ALPHABET: Final = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58_ALPHABET)}


def base58_encode(data: bytes) -> str:
    """base58btc (the Bitcoin alphabet), leading zero bytes as leading '1's."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    out = bytearray()
    while number:
        number, rem = divmod(number, 58)
        out.append(_B58_ALPHABET[rem])
    out.extend(b"1" * zeros)
    out.reverse()
    return out.decode("ascii")


def base58_decode(text: str) -> bytes:
    """Inverse of :func:`base58_encode`; raises :class:`InvalidMultibase` on a foreign character."""
    raw = text.encode("ascii", "replace")
    number = 0
    for pos, char in enumerate(raw):
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise InvalidMultibase(f"character {text[pos]!r} is not base58btc", pos)
        number = number * 58 + digit
    zeros = len(raw) - len(raw.lstrip(b"1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def base32_encode(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding (multibase 'b' without its prefix)."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


_B32_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_B32_VALID_TAIL: Final = frozenset({0, 2, 4, 5, 7})


def base32_decode(text: str) -> bytes:
    """Inverse of :func:`base32_encode` (lower case only, no padding)."""
    if not _B32_CHARS.issuperset(text):
        bad = next(i for i, c in enumerate(text) if c not in _B32_CHARS)
        raise InvalidMultibase(f"character {text[bad]!r} is not base32 lower", bad)
    if len(text) % 8 not in _B32_VALID_TAIL:
        raise InvalidMultibase(f"base32 length {len(text)} is impossible")
    try:
        raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except binascii.Error as exc:  # pragma: no cover - the checks above catch every case seen
        raise InvalidMultibase(f"bad base32: {exc}") from None
    # The bits after the last byte must be zero, else several texts would decode to the same bytes.
    if text and base32_encode(raw) != text:
        raise InvalidMultibase("base32 padding bits are not zero", len(text) - 1)
    return raw


_B16_LOWER: Final = frozenset("0123456789abcdef")
_B16_UPPER: Final = frozenset("0123456789ABCDEF")


def multibase_decode(text: str) -> bytes:
    """Decode a multibase string: 'b' base32 lower, 'B' base32 upper, 'z' base58btc, 'f'/'F' hex."""
    if not text:
        raise InvalidMultibase("empty multibase string", 0)
    prefix, body = text[0], text[1:]
    if prefix == "b":
        return base32_decode(body)
    if prefix == "B":
        return base32_decode(body.lower()) if body == body.upper() else _bad_case(body)
    if prefix == "z":
        return base58_decode(body)
    if prefix in "fF":
        # bytes.fromhex would also skip whitespace and accept either case: check the alphabet first.
        alphabet = _B16_LOWER if prefix == "f" else _B16_UPPER
        if not alphabet.issuperset(body):
            bad = next(i for i, c in enumerate(body) if c not in alphabet)
            raise InvalidMultibase(f"character {body[bad]!r} is not base16 for {prefix!r}", bad + 1)
        try:
            return bytes.fromhex(body)
        except ValueError:
            raise InvalidMultibase("bad base16 text", 1) from None
    raise InvalidMultibase(f"unsupported multibase prefix {prefix!r}", 0)


def _bad_case(body: str) -> bytes:
    raise InvalidMultibase("base32 upper text contains lower-case characters", 1)


# -- multicodec and multihash --------------------------------------------------------------------

#: Multicodec codes gridnode names (https://github.com/multiformats/multicodec, table.csv).
CODECS: Final[dict[str, int]] = {
    "identity": 0x00,
    "raw": 0x55,
    "dag-pb": 0x70,
    "dag-cbor": 0x71,
    "libp2p-key": 0x72,
    "dag-json": 0x0129,
}
CODEC_NAMES: Final[dict[int, str]] = {code: name for name, code in CODECS.items()}


def codec_code(codec: str | int) -> int:
    """The multicodec code for a name (or a code, checked to be known)."""
    if isinstance(codec, int):
        if codec not in CODEC_NAMES:
            raise UnsupportedCodec(f"unknown codec 0x{codec:x}")
        return codec
    try:
        return CODECS[codec]
    except KeyError:
        raise UnsupportedCodec(f"unknown codec {codec!r}") from None


def _sha256(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def _blake2b_256(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _identity(data: bytes | memoryview) -> bytes:
    return bytes(data)


#: Hash functions gridnode computes: name -> (multihash code, digest function).
HASHES: Final[dict[str, tuple[int, Callable[[bytes | memoryview], bytes]]]] = {
    "sha2-256": (0x12, _sha256),
    "blake2b-256": (0xB220, _blake2b_256),
    "identity": (0x00, _identity),
}
_HASH_BY_CODE: Final = {code: (name, fn) for name, (code, fn) in HASHES.items()}

#: Identity multihashes inline their data; bound them so a CID cannot smuggle a large payload.
MAX_IDENTITY_DIGEST: Final = 128
#: No real digest is longer than this; a longer length prefix is hostile.
MAX_DIGEST: Final = 128


def hash_name(code: int) -> str | None:
    """The name of a multihash function code gridnode computes, or ``None``."""
    entry = _HASH_BY_CODE.get(code)
    return entry[0] if entry else None


def multihash_digest(data: bytes | memoryview, hash_code: int) -> bytes:
    """The full multihash (code, length, digest) of ``data`` under the given function code."""
    entry = _HASH_BY_CODE.get(hash_code)
    if entry is None:
        raise UnsupportedHash(f"cannot compute multihash function 0x{hash_code:x}")
    digest = entry[1](data)
    if hash_code == 0x00 and len(digest) > MAX_IDENTITY_DIGEST:
        raise UnsupportedHash(f"identity multihash over {MAX_IDENTITY_DIGEST} bytes")
    return encode_varint(hash_code) + encode_varint(len(digest)) + digest


def multihash_split(
    data: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[int, bytes, int]:
    """Read one multihash at ``offset``: return ``(function code, digest, offset after it)``."""
    code, pos = decode_varint(data, offset)
    length, pos = decode_varint(data, pos)
    limit = MAX_IDENTITY_DIGEST if code == 0x00 else MAX_DIGEST
    if length > limit:
        raise InvalidMultihash(f"digest length {length} exceeds {limit}", offset)
    end = pos + length
    if end > len(data):
        raise InvalidMultihash(f"digest claims {length} bytes, {len(data) - pos} remain", offset)
    return code, bytes(data[pos:end]), end
