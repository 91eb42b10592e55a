"""The age v1 file format (age-encryption.org/v1), X25519 recipients only: sans-IO and streaming.

An age file is a text header, then a binary payload::

    age-encryption.org/v1
    -> X25519 <base64 ephemeral share>
    <base64 wrapped file key, lines of 64 columns, the last one shorter (maybe empty)>
    --- <base64 HMAC-SHA256 of the header up to and including "---">
    <16-byte nonce><ChaCha20-Poly1305 chunks of 64 KiB plaintext, the last one flagged>

The rules, and why:

- **Pure.** No randomness is drawn here: the file key, each recipient's ephemeral secret and the
  payload nonce are passed in (``gridnode.age`` draws them). No file is opened: :class:`Encryptor`
  and :class:`Decryptor` take bytes and give bytes back, in the manner of h11, so memory stays
  constant whatever the file's size (at most one chunk, plus a header bounded by
  :data:`MAX_HEADER`).
- **Strict.** A header is parsed as the age spec writes it and nothing else: LF line ends, no
  padding and no non-canonical base64, full 64-column body lines, known stanzas checked whole
  (an X25519 stanza with a bad share, an extra argument or a wrong-sized body rejects the file,
  even when another stanza would unwrap). Unknown stanza types are skipped ("grease"). The
  outcomes are typed: :class:`~protocols.errors.AgeHeaderError`,
  :class:`~protocols.errors.AgeNoMatch`, :class:`~protocols.errors.AgeHmacError`,
  :class:`~protocols.errors.AgePayloadError`. The C2SP age test vectors (tests/fixtures/
  age-testkit) pin each one.
- **Plaintext is released chunk by chunk**, each only after its tag verified; a caller that must
  not act on a truncated file (a restore) writes to a temporary file and keeps it only once
  :meth:`Decryptor.finish` returned.
- **Refused:** scrypt (passphrase) stanzas, the ML-KEM hybrid recipients, ASCII armor. A file
  encrypted to a passphrase is "no match" for an X25519 identity.

Keys are written in Bech32 (BIP 173, not Bech32m) as age writes them: a recipient
``age1...`` (lower case), an identity ``AGE-SECRET-KEY-1...`` (upper case).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

from protocols.errors import AgeError, AgeHeaderError, AgeHmacError, AgeNoMatch, AgePayloadError

__all__ = [
    "CHUNK_SIZE",
    "FILE_KEY_SIZE",
    "MAX_HEADER",
    "NONCE_SIZE",
    "Decryptor",
    "Encryptor",
    "Header",
    "Stanza",
    "X25519Identity",
    "X25519Recipient",
    "bech32_decode",
    "bech32_encode",
    "encode_header",
    "parse_header",
    "parse_identity",
    "parse_recipient",
]

VERSION_LINE: Final = b"age-encryption.org/v1"
_MAGIC: Final = b"age-encryption.org/"
FILE_KEY_SIZE: Final = 16
NONCE_SIZE: Final = 16
CHUNK_SIZE: Final = 64 * 1024
_TAG_SIZE: Final = 16
_ENC_CHUNK_SIZE: Final = CHUNK_SIZE + _TAG_SIZE
_COLUMNS: Final = 64
#: The longest header read before the file is refused: age sets no limit, but a reader that must
#: hold the header whole needs one. A header with a thousand X25519 stanzas is ~ 130 KiB.
MAX_HEADER: Final = 1024 * 1024
_X25519_INFO: Final = b"age-encryption.org/v1/X25519"
_RECIPIENT_HRP: Final = "age"
_IDENTITY_HRP: Final = "age-secret-key-"


# -- Bech32 (BIP 173) --------------------------------------------------------------------------

_CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN: Final = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Iterable[int], from_bits: int, to_bits: int, pad: bool) -> bytes | None:
    acc = bits = 0
    out = bytearray()
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or (acc << (to_bits - bits)) & maxv:
        return None  # leftover padding of a whole group, or non-zero padding bits
    return bytes(out)


def bech32_encode(hrp: str, data: bytes) -> str:
    """Bech32 of ``data`` under the human-readable part ``hrp`` (lower case; no length limit, as
    age writes post-quantum keys longer than BIP 173's 90 characters)."""
    words = _convert_bits(data, 8, 5, pad=True)
    assert words is not None
    values = _hrp_expand(hrp) + list(words)
    checksum = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ 1
    return (
        hrp
        + "1"
        + "".join(_CHARSET[d] for d in words)
        + "".join(_CHARSET[(checksum >> 5 * (5 - i)) & 31] for i in range(6))
    )


def bech32_decode(text: str) -> tuple[str, bytes]:
    """``(hrp, data)`` of a Bech32 string, all lower or all upper case; the hrp is lower-cased."""
    if text.lower() != text and text.upper() != text:
        raise AgeError("Bech32 string mixes upper and lower case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text) or any(not 33 <= ord(c) <= 126 for c in text):
        raise AgeError("not a Bech32 string")
    hrp, rest = text[:pos], text[pos + 1 :]
    try:
        values = [_CHARSET.index(c) for c in rest]
    except ValueError:
        raise AgeError("Bech32 string has a character outside its alphabet") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise AgeError("Bech32 checksum does not match")
    data = _convert_bits(values[:-6], 5, 8, pad=False)
    if data is None:
        raise AgeError("Bech32 data has bad padding")
    return hrp, data


# -- keys -----------------------------------------------------------------------------------------


def _x25519(scalar: bytes, point: bytes) -> bytes:
    try:
        shared = nacl.bindings.crypto_scalarmult(scalar, point)
    except nacl.exceptions.CryptoError:
        shared = bytes(32)  # libsodium refuses an all-zero result: a low-order point
    return shared


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 HKDF-SHA256, 32 bytes of output (one block)."""
    prk = hmac.digest(salt or bytes(32), ikm, hashlib.sha256)
    return hmac.digest(prk, info + b"\x01", hashlib.sha256)


@dataclass(frozen=True)
class X25519Recipient:
    """An X25519 public key that files can be encrypted to (``age1...``)."""

    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise AgeError("an X25519 recipient is 32 bytes")

    def __str__(self) -> str:
        return bech32_encode(_RECIPIENT_HRP, self.public_key)

    def wrap(self, file_key: bytes, ephemeral_secret: bytes) -> Stanza:
        """The stanza that carries ``file_key`` to this recipient; ``ephemeral_secret`` is 32
        fresh random bytes, used for this stanza only."""
        if len(ephemeral_secret) != 32:
            raise AgeError("an ephemeral secret is 32 bytes")
        share = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
        shared = _x25519(ephemeral_secret, self.public_key)
        if shared == bytes(32):
            raise AgeError("recipient is a low-order point")
        key = _hkdf_sha256(shared, share + self.public_key, _X25519_INFO)
        body = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            file_key, None, bytes(12), key
        )
        return Stanza(("X25519", _b64encode(share)), body)


@dataclass(frozen=True)
class X25519Identity:
    """An X25519 secret key that can unwrap files (``AGE-SECRET-KEY-1...``)."""

    secret_key: bytes

    def __post_init__(self) -> None:
        if len(self.secret_key) != 32:
            raise AgeError("an X25519 identity is 32 bytes")

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient()})"  # never the secret

    def encode(self) -> str:
        """The identity in Bech32, as age-keygen writes it. This is the secret: handle with care."""
        return bech32_encode(_IDENTITY_HRP, self.secret_key).upper()

    def recipient(self) -> X25519Recipient:
        return X25519Recipient(nacl.bindings.crypto_scalarmult_base(self.secret_key))

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key if ``stanza`` is X25519 and addressed to this identity, else ``None``.
        The stanza was checked whole by :func:`parse_header`."""
        if stanza.args[0] != "X25519":
            return None
        share = _b64decode(stanza.args[1])
        shared = _x25519(self.secret_key, share)
        if shared == bytes(32):
            raise AgeHeaderError("X25519 stanza has a low-order share")
        ours = nacl.bindings.crypto_scalarmult_base(self.secret_key)
        key = _hkdf_sha256(shared, share + ours, _X25519_INFO)
        try:
            return nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
                stanza.body, None, bytes(12), key
            )
        except nacl.exceptions.CryptoError:
            return None


def parse_recipient(text: str) -> X25519Recipient:
    """An ``age1...`` recipient string (surrounding white space is ignored)."""
    try:
        hrp, data = bech32_decode(text.strip())
    except AgeError as exc:
        raise AgeError(f"not an age recipient: {exc}") from None
    if hrp != _RECIPIENT_HRP or len(data) != 32:
        raise AgeError("not an age X25519 recipient (age1..., 32 bytes)")
    return X25519Recipient(data)


def parse_identity(text: str) -> X25519Identity:
    """An ``AGE-SECRET-KEY-1...`` identity string. Errors never echo the string: it is a secret."""
    text = text.strip()
    if text != text.upper():
        raise AgeError("not an age identity: an identity is written in upper case")
    try:
        hrp, data = bech32_decode(text)
    except AgeError:
        raise AgeError("not an age identity (bad Bech32)") from None
    if hrp != _IDENTITY_HRP or len(data) != 32:
        raise AgeError("not an age X25519 identity (AGE-SECRET-KEY-1..., 32 bytes)")
    return X25519Identity(data)


# -- the header -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: its arguments (the first is its type) and its body."""

    args: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class Header:
    """A parsed header: its stanzas, its MAC, and the bytes the MAC covers."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    mac_input: bytes


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    """Unpadded, canonical standard base64 (no '=', zero trailing bits), as age requires."""
    if "=" in text or "\r" in text or "\n" in text:
        raise AgeHeaderError("header base64 is padded or has line breaks")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AgeHeaderError("header has invalid base64") from None
    if _b64encode(data) != text:
        raise AgeHeaderError("header has non-canonical base64")
    return data


def _mac_key(file_key: bytes) -> bytes:
    return _hkdf_sha256(file_key, b"", b"header")


def _header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    return hmac.digest(_mac_key(file_key), mac_input, hashlib.sha256)


def _encode_stanza(stanza: Stanza) -> bytes:
    body = _b64encode(stanza.body)
    lines = [body[i : i + _COLUMNS] for i in range(0, len(body), _COLUMNS)]
    if len(body) % _COLUMNS == 0:
        lines.append("")  # the last line is always shorter than 64 columns
    return ("-> " + " ".join(stanza.args) + "\n" + "\n".join(lines) + "\n").encode("ascii")


def encode_header(stanzas: Sequence[Stanza], file_key: bytes) -> bytes:
    """The header's bytes, MAC line included (its final LF too)."""
    mac_input = VERSION_LINE + b"\n" + b"".join(_encode_stanza(s) for s in stanzas) + b"---"
    return mac_input + b" " + _b64encode(_header_mac(file_key, mac_input)).encode() + b"\n"


def _check_arg(arg: str) -> None:
    if not arg or any(not 33 <= ord(c) <= 126 for c in arg):
        raise AgeHeaderError("stanza argument is empty or has a character outside VCHAR")


def _check_known(stanza: Stanza, count: int) -> None:
    """The checks of the stanza types age defines, whoever the stanza is for."""
    kind = stanza.args[0]
    if kind == "X25519":
        if len(stanza.args) != 2:
            raise AgeHeaderError("X25519 stanza takes exactly one argument")
        if len(_b64decode(stanza.args[1])) != 32:
            raise AgeHeaderError("X25519 stanza share is not 32 bytes")
        if len(stanza.body) != FILE_KEY_SIZE + _TAG_SIZE:
            raise AgeHeaderError("X25519 stanza body is not 32 bytes")
    elif kind == "scrypt" and count != 1:
        raise AgeHeaderError("an scrypt stanza must be the only one")


def parse_header(data: bytes) -> Header:
    """Parse a complete header (``data`` ends with the MAC line's LF)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise AgeHeaderError("header is not ASCII") from None
    if not text.endswith("\n"):
        raise AgeHeaderError("header does not end with a line feed")
    if "\r" in text:
        raise AgeHeaderError("header has a carriage return (age lines end with LF alone)")
    lines = text[:-1].split("\n")
    if lines[0] != VERSION_LINE.decode():
        if lines[0].startswith("age-encryption.org/"):
            raise AgeHeaderError(f"unsupported age version {lines[0]!r}")
        raise AgeHeaderError("not an age file")
    stanzas: list[Stanza] = []
    i = 1
    while i < len(lines) and lines[i].startswith("->"):
        if not lines[i].startswith("-> "):
            raise AgeHeaderError("stanza line does not start with '-> '")
        args = tuple(lines[i][3:].split(" "))
        for arg in args:
            _check_arg(arg)
        i += 1
        body = b""
        while True:
            if i >= len(lines):
                raise AgeHeaderError("stanza body has no final short line")
            line = lines[i]
            if len(line) > _COLUMNS:
                raise AgeHeaderError("stanza body line is longer than 64 columns")
            body += _b64decode(line)
            i += 1
            if len(line) < _COLUMNS:
                break
        stanzas.append(Stanza(args, body))
    if i != len(lines) - 1:
        raise AgeHeaderError("header has a malformed line where a stanza or the MAC should be")
    mac_line = lines[i]
    if not mac_line.startswith("--- "):
        raise AgeHeaderError("header MAC line is malformed")
    mac = _b64decode(mac_line[4:])
    if len(mac) != 32:
        raise AgeHeaderError("header MAC is not 32 bytes")
    if not stanzas:
        raise AgeHeaderError("header has no recipient stanza")
    for stanza in stanzas:
        _check_known(stanza, len(stanzas))
    mac_input = data[: len(data) - len(mac_line) - 1 + 3]
    return Header(tuple(stanzas), mac, mac_input)


def _unwrap(header: Header, identities: Sequence[X25519Identity]) -> bytes:
    """The file key: from the first stanza any identity unwraps; the MAC then checked."""
    for stanza in header.stanzas:
        for identity in identities:
            file_key = identity.unwrap(stanza)
            if file_key is not None:
                if not hmac.compare_digest(_header_mac(file_key, header.mac_input), header.mac):
                    raise AgeHmacError("age header MAC does not match")
                return file_key
    raise AgeNoMatch("no identity given matches any recipient of this age file")


# -- the payload: STREAM ------------------------------------------------------------------------


def _chunk_nonce(counter: int, last: bool) -> bytes:
    if counter >= 1 << 88:
        raise AgePayloadError("age payload has too many chunks")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _payload_key(file_key: bytes, nonce: bytes) -> bytes:
    return _hkdf_sha256(file_key, nonce, b"payload")


class Encryptor:
    """Encrypt one age file: :meth:`header` first, then :meth:`update` for each piece of plaintext,
    then :meth:`finish`; the concatenation of what they return is the file. Holds at most one chunk.

    ``ephemeral_secrets`` gives one fresh 32-byte secret per recipient; ``file_key`` (16 bytes) and
    ``nonce`` (16 bytes) are fresh random bytes too. None may ever be used twice.
    """

    def __init__(
        self,
        recipients: Sequence[X25519Recipient],
        *,
        file_key: bytes,
        ephemeral_secrets: Sequence[bytes],
        nonce: bytes,
    ) -> None:
        if not recipients:
            raise AgeError("an age file needs at least one recipient")
        if len(ephemeral_secrets) != len(recipients):
            raise AgeError("one ephemeral secret per recipient")
        if len(file_key) != FILE_KEY_SIZE or len(nonce) != NONCE_SIZE:
            raise AgeError("the file key and the payload nonce are 16 bytes each")
        stanzas = [r.wrap(file_key, e) for r, e in zip(recipients, ephemeral_secrets, strict=True)]
        self._header = encode_header(stanzas, file_key) + nonce
        self._key = _payload_key(file_key, nonce)
        self._buffer = bytearray()
        self._counter = 0
        self._state = "new"

    def header(self) -> bytes:
        """The header and the payload nonce."""
        if self._state != "new":
            raise AgeError("header() is called once, first")
        self._state = "open"
        return self._header

    def _seal(self, plaintext: bytes, last: bool) -> bytes:
        nonce = _chunk_nonce(self._counter, last)
        self._counter += 1
        return nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            plaintext, None, nonce, self._key
        )

    def update(self, data: bytes) -> bytes:
        """Ciphertext for the chunks ``data`` completes. A full chunk is held back until more
        plaintext arrives, since only then is it known not to be the last."""
        if self._state != "open":
            raise AgeError("update() after header() and before finish()")
        self._buffer += data
        out = bytearray()
        while len(self._buffer) > CHUNK_SIZE:
            out += self._seal(bytes(self._buffer[:CHUNK_SIZE]), last=False)
            del self._buffer[:CHUNK_SIZE]
        return bytes(out)

    def finish(self) -> bytes:
        """The last chunk (empty only when the whole plaintext is)."""
        if self._state != "open":
            raise AgeError("finish() once, after header()")
        self._state = "done"
        out = self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return out


class Decryptor:
    """Decrypt one age file: feed its bytes to :meth:`receive` in pieces of any size, and get
    plaintext back as each chunk verifies; :meth:`finish` at end of file raises if the file was
    cut short. Holds at most the header (bounded by :data:`MAX_HEADER`) or one chunk, besides
    the piece being fed.

    Errors: :class:`AgeHeaderError` (malformed header, or not an age file), :class:`AgeNoMatch`
    (no identity unwraps the file key), :class:`AgeHmacError` (the header was altered),
    :class:`AgePayloadError` (a chunk failed its tag, is misplaced, or the file is truncated or
    has trailing data). After an error the decryptor refuses further input.
    """

    def __init__(self, identities: Sequence[X25519Identity]) -> None:
        if not identities:
            raise AgeError("decryption needs at least one identity")
        self._identities = tuple(identities)
        self._buffer = bytearray()
        self._scanned = 0
        self._key: bytes | None = None
        self._file_key: bytes | None = None
        self._counter = 0
        self._done = False
        self._failed = False
        self.header: Header | None = None

    def receive(self, data: bytes) -> bytes:
        """The plaintext of every chunk ``data`` completes (possibly ``b""``)."""
        if self._failed:
            raise AgeError("this decryptor already failed")
        try:
            return self._receive(data)
        except AgeError:
            self._failed = True
            raise

    def _receive(self, data: bytes) -> bytes:
        if self._done:
            if data or self._buffer:
                raise AgePayloadError("age file has trailing data after its last chunk")
            return b""
        self._buffer += data
        if self.header is None and not self._read_header():
            return b""
        if self._key is None:
            if len(self._buffer) < NONCE_SIZE:
                return b""
            assert self._file_key is not None
            self._key = _payload_key(self._file_key, bytes(self._buffer[:NONCE_SIZE]))
            del self._buffer[:NONCE_SIZE]
        out = bytearray()
        # A full-sized chunk that opens with the "not last" nonce is not the last: release it at
        # once. One that does not may be a full last chunk: that is known once a byte beyond it
        # arrives (then it must open as last, and what follows is trailing data) or at finish().
        while len(self._buffer) >= _ENC_CHUNK_SIZE and not self._done:
            chunk = bytes(self._buffer[:_ENC_CHUNK_SIZE])
            plain = self._open(chunk, last=False)
            if plain is None:
                if len(self._buffer) == _ENC_CHUNK_SIZE:
                    break
                plain = self._open(chunk, last=True)
                if plain is None:
                    raise AgePayloadError("age payload chunk failed authentication")
                self._done = True  # what remains is trailing data: refused on the next call
            del self._buffer[:_ENC_CHUNK_SIZE]
            out += plain
        return bytes(out)

    def _read_header(self) -> bool:
        """Parse the header once its MAC line is whole; ``False`` while it is not."""
        prefix = _MAGIC[: len(self._buffer)]
        if self._buffer[: len(prefix)] != prefix:
            raise AgeHeaderError("not an age file")
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end < 0:
                if len(self._buffer) > MAX_HEADER:
                    raise AgeHeaderError("age header is longer than this reader accepts")
                return False
            line_start = self._scanned
            self._scanned = end + 1
            if self._buffer.startswith(b"---", line_start):
                break
        header = parse_header(bytes(self._buffer[: self._scanned]))
        self._file_key = _unwrap(header, self._identities)
        self.header = header
        del self._buffer[: self._scanned]
        return True

    def _open(self, chunk: bytes, last: bool) -> bytes | None:
        assert self._key is not None
        try:
            plain = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
                chunk, None, _chunk_nonce(self._counter, last), self._key
            )
        except nacl.exceptions.CryptoError:
            return None
        self._counter += 1
        return plain

    def finish(self) -> bytes:
        """The last chunk's plaintext; raises unless the file ended exactly after it."""
        if self._failed:
            raise AgeError("this decryptor already failed")
        try:
            return self._finish()
        except AgeError:
            self._failed = True
            raise

    def _finish(self) -> bytes:
        if self._done:
            if self._buffer:
                raise AgePayloadError("age file has trailing data after its last chunk")
            return b""
        if self.header is None:
            raise AgeHeaderError("age file ends inside its header")
        if self._key is None:
            # age reads the nonce with the header: a file cut there has no payload at all.
            raise AgeHeaderError("age file ends before its payload nonce")
        if not self._buffer and self._counter:
            raise AgePayloadError("age payload is truncated (its last chunk is missing)")
        if len(self._buffer) < _TAG_SIZE:
            raise AgePayloadError("age payload is truncated")
        plain = self._open(bytes(self._buffer), last=True)
        if plain is None:
            raise AgePayloadError(
                "age payload's last chunk failed authentication (damaged or truncated)"
            )
        if not plain and self._counter > 1:
            raise AgePayloadError("age payload's last chunk is empty")
        self._buffer.clear()
        self._done = True
        return plain
