"""The age format (protocols/age.py) against the C2SP age test vectors, and on its own.

The vectors (tests/fixtures/age-testkit, copied from C2SP/CCTV's age/testdata with its licence)
are age files with an expected outcome: each is decrypted here whole and in small pieces, and the
outcome, its error type and the hash of every plaintext byte released must match. Vectors of what
this implementation leaves out (armor, scrypt, the hybrid post-quantum recipients) were not copied.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.age import (
    CHUNK_SIZE,
    Decryptor,
    Encryptor,
    X25519Identity,
    X25519Recipient,
    bech32_decode,
    bech32_encode,
    parse_header,
    parse_identity,
    parse_recipient,
)
from protocols.errors import AgeError, AgeHeaderError, AgeHmacError, AgeNoMatch, AgePayloadError

TESTKIT = Path(__file__).resolve().parents[1] / "fixtures" / "age-testkit"
VECTORS = sorted(p for p in TESTKIT.iterdir() if p.name not in {"LICENSE", "README.md"})
EXPECT = {
    "header failure": AgeHeaderError,
    "no match": AgeNoMatch,
    "HMAC failure": AgeHmacError,
    "payload failure": AgePayloadError,
}


def _vector(path: Path) -> tuple[dict[str, list[str]], bytes]:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    if fields.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return fields, body


def _decrypt(
    identities: list[X25519Identity], data: bytes, piece: int
) -> tuple[bytes, Exception | None]:
    decryptor = Decryptor(identities)
    out = bytearray()
    try:
        for i in range(0, len(data), piece):
            out += decryptor.receive(data[i : i + piece])
        out += decryptor.finish()
    except AgeError as exc:
        return bytes(out), exc
    return bytes(out), None


def test_the_vectors_are_here():
    assert len(VECTORS) >= 60
    assert (TESTKIT / "LICENSE").is_file()


@pytest.mark.parametrize("path", VECTORS, ids=[p.name for p in VECTORS])
@pytest.mark.parametrize("piece", [1 << 30, 4093])
def test_testkit_vector(path: Path, piece: int):
    fields, data = _vector(path)
    # "empty" (an empty file) names no identity: any will do.
    identities = [parse_identity(i) for i in fields.get("identity", [IDENTITY])]
    plaintext, error = _decrypt(identities, data, piece)
    expect = fields["expect"][0]
    if expect == "success":
        assert error is None, f"{path.name}: {error!r}"
    else:
        assert type(error) is EXPECT[expect], f"{path.name}: {error!r}"
    if "payload" in fields:
        assert hashlib.sha256(plaintext).hexdigest() == fields["payload"][0]


def test_header_round_trip_on_the_vectors():
    """Every vector whose header parses re-encodes to the same bytes (file key given)."""
    from protocols.age import encode_header

    checked = 0
    for path in VECTORS:
        fields, data = _vector(path)
        if fields["expect"][0] in {"header failure", "HMAC failure"} or "file key" not in fields:
            continue
        end = data.index(b"\n---") + 1
        end = data.index(b"\n", end) + 1
        header = parse_header(data[:end])
        assert encode_header(header.stanzas, bytes.fromhex(fields["file key"][0])) == data[:end]
        checked += 1
    assert checked > 20


def test_stream_round_trip_matches_a_vector():
    """Re-encrypting a vector's plaintext with its file key and nonce gives its payload back."""
    fields, data = _vector(TESTKIT / "stream_three_chunks")
    identity = parse_identity(fields["identity"][0])
    decryptor = Decryptor([identity])
    plaintext = decryptor.receive(data) + decryptor.finish()
    end = data.index(b"\n", data.index(b"\n---") + 1) + 1
    nonce, payload = data[end : end + 16], data[end + 16 :]
    from protocols.age import _payload_key  # the STREAM layer alone

    key = _payload_key(bytes.fromhex(fields["file key"][0]), nonce)
    assert key == decryptor._key
    encryptor = Encryptor(
        [identity.recipient()],
        file_key=bytes.fromhex(fields["file key"][0]),
        ephemeral_secrets=[bytes(range(32))],
        nonce=nonce,
    )
    encryptor.header()
    assert encryptor.update(plaintext) + encryptor.finish() == payload


# -- keys ---------------------------------------------------------------------------------------

# age-keygen's documented example pair (the age README).
IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


def test_identity_yields_its_recipient():
    assert str(parse_identity(IDENTITY).recipient()) == RECIPIENT
    assert parse_identity(IDENTITY).encode() == IDENTITY
    assert str(parse_recipient(RECIPIENT)) == RECIPIENT


def test_identity_repr_hides_the_secret():
    assert "GFPYYSJZ" not in repr(parse_identity(IDENTITY))
    assert RECIPIENT in repr(parse_identity(IDENTITY))


@pytest.mark.parametrize(
    "text",
    [
        RECIPIENT[:-1] + ("q" if RECIPIENT[-1] != "q" else "p"),  # checksum
        RECIPIENT.upper()[:10] + RECIPIENT[10:],  # mixed case
        "age1",
        IDENTITY,  # an identity is no recipient
        bech32_encode("age", bytes(31)),  # wrong length
        bech32_encode("agx", bytes(32)),  # wrong hrp
    ],
)
def test_bad_recipients_are_refused(text: str):
    with pytest.raises(AgeError):
        parse_recipient(text)


def test_bad_identities_are_refused_without_echoing_them():
    with pytest.raises(AgeError) as info:
        parse_identity(IDENTITY.lower())
    assert IDENTITY.lower() not in str(info.value)
    with pytest.raises(AgeError) as info:
        parse_identity(IDENTITY[:-1] + "Q")
    assert IDENTITY[:20] not in str(info.value)
    with pytest.raises(AgeError):
        parse_identity(RECIPIENT)


def test_bech32_round_trip():
    for n in (0, 1, 31, 32, 33, 100):
        data = bytes(range(n))
        assert bech32_decode(bech32_encode("age", data)) == ("age", data)


# -- round trips ----------------------------------------------------------------------------------


def _encrypt(
    recipients: list[X25519Recipient], plaintext: bytes, piece: int, seed: int = 1
) -> bytes:
    encryptor = Encryptor(
        recipients,
        file_key=bytes([seed]) * 16,
        ephemeral_secrets=[bytes([seed + 1 + i]) * 32 for i in range(len(recipients))],
        nonce=bytes([seed + 100]) * 16,
    )
    out = bytearray(encryptor.header())
    for i in range(0, len(plaintext), piece):
        out += encryptor.update(plaintext[i : i + piece])
    out += encryptor.finish()
    return bytes(out)


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 7]
)
def test_round_trip_at_chunk_boundaries(size: int):
    plaintext = bytes(i % 251 for i in range(size))
    alice, bob = X25519Identity(b"\x01" * 32), X25519Identity(b"\x02" * 32)
    data = _encrypt([alice.recipient(), bob.recipient()], plaintext, piece=10_000)
    chunks = max(1, -(-size // CHUNK_SIZE))
    header_len = data.index(b"\n", data.index(b"\n---") + 1) + 1
    assert len(data) == header_len + 16 + size + 16 * chunks
    for identity in (alice, bob):
        for piece in (1 << 30, 7919):
            assert _decrypt([identity], data, piece) == (plaintext, None)


def test_wrong_identity_is_no_match():
    data = _encrypt([X25519Identity(b"\x01" * 32).recipient()], b"secret", piece=10)
    out, error = _decrypt([X25519Identity(b"\x03" * 32)], data, 1 << 30)
    assert out == b"" and isinstance(error, AgeNoMatch)


def test_truncation_at_every_chunk_boundary_is_an_error():
    identity = X25519Identity(b"\x01" * 32)
    data = _encrypt([identity.recipient()], b"x" * (2 * CHUNK_SIZE + 5), piece=1 << 20)
    header_len = data.index(b"\n", data.index(b"\n---") + 1) + 1
    for cut in (header_len - 1, header_len + 15, header_len + 16 + CHUNK_SIZE + 16, len(data) - 1):
        _, error = _decrypt([identity], data[:cut], 1 << 30)
        assert isinstance(error, (AgeHeaderError, AgePayloadError)), cut
    _, error = _decrypt([identity], data + b"\x00", 1 << 30)
    assert isinstance(error, AgePayloadError)


def test_a_flipped_bit_anywhere_is_caught():
    identity = X25519Identity(b"\x01" * 32)
    data = _encrypt([identity.recipient()], b"y" * 1000, piece=100)
    for position in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        _, error = _decrypt([identity], bytes(damaged), 1 << 30)
        assert isinstance(error, AgeError), position


def test_not_an_age_file_fails_at_once_without_buffering():
    decryptor = Decryptor([X25519Identity(b"\x01" * 32)])
    with pytest.raises(AgeHeaderError):
        decryptor.receive(b"PK\x03\x04" + bytes(100))
    with pytest.raises(AgeError):
        decryptor.receive(b"more")


def test_the_header_is_bounded():
    decryptor = Decryptor([X25519Identity(b"\x01" * 32)])
    decryptor.receive(b"age-encryption.org/v1\n-> grease ")
    with pytest.raises(AgeHeaderError):
        for _ in range(20):
            decryptor.receive(b"a" * 65536)


def test_encryptor_refuses_misuse():
    recipient = X25519Identity(b"\x01" * 32).recipient()
    with pytest.raises(AgeError):
        Encryptor([], file_key=bytes(16), ephemeral_secrets=[], nonce=bytes(16))
    with pytest.raises(AgeError):
        Encryptor([recipient], file_key=bytes(15), ephemeral_secrets=[bytes(32)], nonce=bytes(16))
    encryptor = Encryptor(
        [recipient], file_key=bytes(16), ephemeral_secrets=[bytes(32)], nonce=bytes(16)
    )
    with pytest.raises(AgeError):
        encryptor.update(b"x")  # before header()


# -- the vector of docs/spec.md ("age files and key backups") ------------------------------------

SPEC_IDENTITY = "AGE-SECRET-KEY-1AJ3098Z0L0Z6VEGADTSW0SXFKLF35UP2EPR8GYH9SNXLKLXETVRQ6QC6PE"
SPEC_RECIPIENT = "age1dyl7ucy5njnw7zpycjw9vt25yerxjgv9r6l5y6hqlng0rctqks9s46qdtf"
SPEC_HEADER = (
    b"age-encryption.org/v1\n"
    b"-> X25519 +47xYwByypM9IfA7xVpy6mfh5kUFBG/IOoYH1mkwp1A\n"
    b"IMsU9ZTQNMOJpg56j9pXJL4Tu0VAl4HNAxkqwFNaJE8\n"
    b"--- YlHnJtPZfCy3gU+JeYyoAysFw/Nd8cwyhYrJdL7GXkM\n"
)
SPEC_PAYLOAD = bytes.fromhex(
    "101112131415161718191a1b1c1d1e1fe2cb56ba5cb17195bcf77d4a54d1541fea0637094e1815594e2fa9d9"
    "c4f4fe387244cf57d0e30c8925"
)


def test_the_spec_vector_bytes_in_bytes_out():
    identity = parse_identity(SPEC_IDENTITY)
    assert identity.secret_key == hashlib.sha256(b"gridnode age vector identity").digest()
    assert str(identity.recipient()) == SPEC_RECIPIENT
    encryptor = Encryptor(
        [parse_recipient(SPEC_RECIPIENT)],
        file_key=bytes(range(16)),
        ephemeral_secrets=[hashlib.sha256(b"gridnode age vector ephemeral").digest()],
        nonce=bytes(range(16, 32)),
    )
    data = encryptor.header() + encryptor.update(b"gridnode age test vector\n") + encryptor.finish()
    assert data == SPEC_HEADER + SPEC_PAYLOAD
    assert hashlib.sha256(data).hexdigest() == (
        "d0cc078aa93b8d8192eda3044dc8e73458717d1f2975a065a96f7cbdf1359886"
    )
    assert _decrypt([identity], data, 1) == (b"gridnode age test vector\n", None)


# -- any size, any split ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    size=st.one_of(
        st.integers(0, 300),
        st.integers(CHUNK_SIZE - 3, CHUNK_SIZE + 3),
        st.integers(2 * CHUNK_SIZE - 3, 2 * CHUNK_SIZE + 3),
    ),
    write_piece=st.integers(1, 3 * CHUNK_SIZE),
    read_piece=st.integers(1, 3 * CHUNK_SIZE),
)
def test_round_trip_whatever_the_pieces(size: int, write_piece: int, read_piece: int):
    plaintext = bytes(i % 253 for i in range(size))
    identity = X25519Identity(b"\x05" * 32)
    data = _encrypt([identity.recipient()], plaintext, piece=write_piece)
    assert _decrypt([identity], data, read_piece) == (plaintext, None)


def test_a_passphrase_file_is_no_match_and_scrypt_must_stand_alone():
    from protocols.age import Stanza, encode_header

    scrypt = Stanza(("scrypt", "rF0/NwblUHHTpgQgRpe5CQ", "10"), bytes(32))
    identity = X25519Identity(b"\x01" * 32)
    alone = encode_header([scrypt], bytes(16)) + bytes(16) + bytes(32)
    _, error = _decrypt([identity], alone, 1 << 30)
    assert isinstance(error, AgeNoMatch)
    ours = identity.recipient().wrap(bytes(16), b"\x02" * 32)
    mixed = encode_header([ours, scrypt], bytes(16)) + bytes(16) + bytes(32)
    _, error = _decrypt([identity], mixed, 1 << 30)
    assert isinstance(error, AgeHeaderError)
