"""Content identifiers (CIDv0 and CIDv1), per github.com/multiformats/cid.

A :class:`CID` is immutable and hashable; equality and order are those of its binary form, so a
sorted list of CIDs is the same on every replica.
"""

from __future__ import annotations

import builtins
import hashlib
from typing import Final

from crdt.errors import (
    HashMismatch,
    InvalidCID,
    InvalidMultibase,
    InvalidMultihash,
    InvalidVarint,
    UnsupportedHash,
)
from crdt.ipld.multiformats import (
    CODEC_NAMES,
    HASHES,
    base32_encode,
    base58_decode,
    base58_encode,
    codec_code,
    decode_varint,
    encode_varint,
    hash_name,
    multibase_decode,
    multihash_digest,
    multihash_split,
)

__all__ = ["CID"]

_DAG_CBOR: Final = 0x71
_SHA2_256: Final = 0x12
# The binary prefix of every CIDv1 gridnode mints for its own blocks: version 1, dag-cbor,
# sha2-256, 32-byte digest. Recognising it skips the general varint parse on the hot path.
_V1_DAG_CBOR_SHA256: Final = b"\x01\x71\x12\x20"
_V1_RAW_SHA256: Final = b"\x01\x55\x12\x20"
#: Longest binary CID accepted anywhere (a 128-byte digest plus varints fits well inside).
MAX_CID_BYTES: Final = 160
#: Longest CID text accepted: the longest binary CID in base16 plus the prefix. base58 decoding
#: is quadratic in the length, so longer text is refused before it is decoded.
MAX_CID_TEXT: Final = 2 * MAX_CID_BYTES + 1


class CID:
    """A CID. Build one with :meth:`parse`, :meth:`for_block` or :meth:`from_parts`."""

    __slots__ = ("_bytes", "_hash", "_str", "codec", "hash_code", "multihash", "version")

    version: int
    codec: int
    hash_code: int
    multihash: bytes
    _bytes: bytes
    _str: str | None
    _hash: int

    def __init__(self, version: int, codec: int, multihash: bytes, hash_code: int, raw: bytes):
        # Internal: use the class methods, which validate.
        _set = object.__setattr__
        _set(self, "version", version)
        _set(self, "codec", codec)
        _set(self, "multihash", multihash)
        _set(self, "hash_code", hash_code)
        _set(self, "_bytes", raw)
        _set(self, "_str", None)
        _set(self, "_hash", hash(raw))

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def parse(cls, value: str | bytes | bytearray | memoryview | CID) -> CID:
        """Parse a CID from its text form (CIDv0 base58 'Qm...', multibase v1) or binary form."""
        if isinstance(value, CID):
            return value
        if isinstance(value, str):
            return cls._parse_text(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            cid, end = cls.read(data, 0)
            if end != len(data):
                raise InvalidCID(f"{len(data) - end} bytes after the CID", end)
            return cid
        raise TypeError(f"cannot parse a CID from {type(value).__name__}")

    @classmethod
    def _parse_text(cls, text: str) -> CID:
        if len(text) > MAX_CID_TEXT:
            raise InvalidCID(f"CID text of {len(text)} characters exceeds {MAX_CID_TEXT}")
        if len(text) == 46 and text.startswith("Qm"):
            try:
                raw = base58_decode(text)
            except InvalidMultibase as exc:
                raise InvalidCID(f"bad CIDv0 text: {exc.reason}", exc.offset) from None
            cid, end = cls.read(raw, 0)
            if end != len(raw) or cid.version != 0:
                raise InvalidCID("bad CIDv0 text")
            return cid
        try:
            raw = multibase_decode(text)
        except InvalidMultibase as exc:
            raise InvalidCID(f"bad CID text: {exc.reason}", exc.offset) from None
        if raw[:2] == b"\x12\x20":
            raise InvalidCID("a CIDv0 may only be written in base58btc without a prefix")
        cid, end = cls.read(raw, 0)
        if end != len(raw):
            raise InvalidCID(f"{len(raw) - end} bytes after the CID", end)
        return cid

    @classmethod
    def read(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[CID, int]:
        """Read one binary CID at ``offset``; return it and the offset after it."""
        head = bytes(data[offset : offset + 4])
        if head in (_V1_DAG_CBOR_SHA256, _V1_RAW_SHA256):
            end = offset + 36
            if end > len(data):
                raise InvalidCID("CID truncated", offset)
            raw = bytes(data[offset:end])
            return cls(1, raw[1], raw[2:], _SHA2_256, raw), end
        if head[:2] == b"\x12\x20":
            end = offset + 34
            if end > len(data):
                raise InvalidCID("CIDv0 truncated", offset)
            raw = bytes(data[offset:end])
            return cls(0, 0x70, raw, _SHA2_256, raw), end
        try:
            version, pos = decode_varint(data, offset)
            codec, pos = decode_varint(data, pos)
            mh_start = pos
            hash_code, _digest, end = multihash_split(data, pos)
        except (InvalidVarint, InvalidMultihash) as exc:
            raise InvalidCID(f"bad CID: {exc.reason}", exc.offset) from None
        if version != 1:
            raise InvalidCID(f"unsupported CID version {version}", offset)
        if end - offset > MAX_CID_BYTES:
            raise InvalidCID(f"CID longer than {MAX_CID_BYTES} bytes", offset)
        raw = bytes(data[offset:end])
        return cls(1, codec, bytes(data[mh_start:end]), hash_code, raw), end

    @classmethod
    def for_block(
        cls, data: bytes | memoryview, codec: str | int = "dag-cbor", hash: str = "sha2-256"
    ) -> CID:
        """The CIDv1 of a block: ``codec`` names how to read it, ``hash`` which function to use."""
        code = codec_code(codec)
        if code == _DAG_CBOR and hash == "sha2-256":
            raw = _V1_DAG_CBOR_SHA256 + hashlib.sha256(data).digest()
            return cls(1, _DAG_CBOR, raw[2:], _SHA2_256, raw)
        if hash not in HASHES:
            raise UnsupportedHash(f"unknown hash function {hash!r}")
        hash_code = HASHES[hash][0]
        multihash = multihash_digest(data, hash_code)
        raw = b"\x01" + encode_varint(code) + multihash
        return cls(1, code, multihash, hash_code, raw)

    @classmethod
    def from_parts(cls, version: int, codec: int, multihash: bytes) -> CID:
        """Assemble a CID from a version, a codec code and a full multihash (validated)."""
        if version == 0:
            if codec != 0x70 or multihash[:2] != b"\x12\x20" or len(multihash) != 34:
                raise InvalidCID("a CIDv0 is dag-pb with a sha2-256 multihash")
            return cls.parse(multihash)
        if version != 1:
            raise InvalidCID(f"unsupported CID version {version}")
        return cls.parse(b"\x01" + encode_varint(codec) + multihash)

    # -- properties ---------------------------------------------------------------------------

    @property
    def bytes(self) -> bytes:
        """The binary form (for v0, the bare multihash)."""
        return self._bytes

    @property
    def digest(self) -> builtins.bytes:
        """The hash digest inside the multihash."""
        _code, digest, _end = multihash_split(self.multihash)
        return digest

    @property
    def codec_name(self) -> str | None:
        """The codec's name if gridnode knows it."""
        return CODEC_NAMES.get(self.codec)

    @property
    def hash_name(self) -> str | None:
        """The hash function's name if gridnode can compute it."""
        return hash_name(self.hash_code)

    def to_v1(self) -> CID:
        """The same content as a CIDv1 (identity for v1)."""
        if self.version == 1:
            return self
        return CID.from_parts(1, self.codec, self.multihash)

    def verify(self, data: builtins.bytes | memoryview) -> None:
        """Raise :class:`HashMismatch` unless ``data`` hashes to this CID's digest."""
        if self.hash_code == _SHA2_256:
            ok = hashlib.sha256(data).digest() == self._bytes[-32:] and len(self.multihash) == 34
        else:
            ok = multihash_digest(data, self.hash_code) == self.multihash
        if not ok:
            raise HashMismatch(f"block does not hash to {self}")

    def matches(self, data: builtins.bytes | memoryview) -> bool:
        """Whether ``data`` hashes to this CID (``False`` also for an unknown hash function)."""
        try:
            self.verify(data)
        except (HashMismatch, UnsupportedHash):
            return False
        return True

    # -- text, equality, order ----------------------------------------------------------------

    def __str__(self) -> str:
        text = self._str
        if text is None:
            if self.version == 0:
                text = base58_encode(self._bytes)
            else:
                text = "b" + base32_encode(self._bytes)
            object.__setattr__(self, "_str", text)
        return text

    def encode(self, base: str = "base32") -> str:
        """The text form in a chosen multibase: ``base32`` (v1 default) or ``base58btc``."""
        if self.version == 0:
            return str(self)
        if base == "base32":
            return str(self)
        if base == "base58btc":
            return "z" + base58_encode(self._bytes)
        raise ValueError(f"unsupported base {base!r}")

    def __repr__(self) -> str:
        return f"CID({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CID):
            return self._bytes == other._bytes
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: CID) -> bool:
        return self._bytes < other._bytes

    def __le__(self, other: CID) -> bool:
        return self._bytes <= other._bytes

    def __gt__(self, other: CID) -> bool:
        return self._bytes > other._bytes

    def __ge__(self, other: CID) -> bool:
        return self._bytes >= other._bytes

    def __reduce__(self) -> tuple[object, tuple[builtins.bytes]]:
        return (CID.parse, (self._bytes,))

    def __setattr__(self, name: str, value: object) -> None:
        # Immutable: equality and hashing rest on the bytes never changing.
        raise AttributeError("CID is immutable")
