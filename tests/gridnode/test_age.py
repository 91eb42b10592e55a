"""gridnode/age.py: streams in, age files out, and Debian's ``age`` binary reading them both ways.

The interop tests run ``age`` and ``age-keygen`` (Debian's package ``age``, which .ci/run
installs); where they are not installed the tests skip saying so.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from gridnode.age import (
    Plaintext,
    decrypt_with,
    encrypt_to,
    generate_identity,
    read_identity_file,
    recipients_of,
)
from protocols.age import CHUNK_SIZE, parse_identity
from protocols.errors import AgeError, AgeNoMatch, AgePayloadError

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
needs_age = pytest.mark.skipif(
    AGE is None or AGE_KEYGEN is None,
    reason="Debian's age is not installed (apt-get install age; .ci/run installs it)",
)
SIZES = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 123]


def _plaintext(size: int) -> bytes:
    return hashlib.shake_256(b"gridnode age %d" % size).digest(size) if size else b""


def _keygen(tmp_path: Path, name: str) -> tuple[Path, str]:
    path = tmp_path / name
    subprocess.run([AGE_KEYGEN, "-o", str(path)], check=True, capture_output=True, timeout=30)
    recipient = subprocess.run(
        [AGE_KEYGEN, "-y", str(path)], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return path, recipient


def test_encrypt_and_decrypt_streams():
    identity = generate_identity()
    plaintext = _plaintext(2 * CHUNK_SIZE + 5)
    sealed = io.BytesIO()
    result = encrypt_to([str(identity.recipient())], io.BytesIO(plaintext), sealed)
    assert result == Plaintext(len(plaintext), hashlib.sha256(plaintext).hexdigest())
    assert plaintext[:64] not in sealed.getvalue()
    opened = io.BytesIO()
    assert decrypt_with([identity], io.BytesIO(sealed.getvalue()), opened) == result
    assert opened.getvalue() == plaintext


def test_every_file_gets_fresh_keys():
    recipient = generate_identity().recipient()
    one, two = io.BytesIO(), io.BytesIO()
    encrypt_to([recipient], io.BytesIO(b"same"), one)
    encrypt_to([recipient], io.BytesIO(b"same"), two)
    assert one.getvalue() != two.getvalue()


def test_wrong_identity_and_damage_are_typed_errors():
    identity = generate_identity()
    sealed = io.BytesIO()
    encrypt_to([identity.recipient()], io.BytesIO(b"z" * 100), sealed)
    with pytest.raises(AgeNoMatch):
        decrypt_with([generate_identity()], io.BytesIO(sealed.getvalue()), io.BytesIO())
    with pytest.raises(AgePayloadError):
        decrypt_with([identity], io.BytesIO(sealed.getvalue()[:-1]), io.BytesIO())


def test_no_recipient_is_refused():
    with pytest.raises(AgeError):
        encrypt_to([], io.BytesIO(b""), io.BytesIO())
    with pytest.raises(AgeError):
        recipients_of(["age1notarecipient"])


def test_identity_file_comments_and_errors_that_do_not_echo(tmp_path):
    identity = generate_identity()
    path = tmp_path / "keys.txt"
    path.write_text(
        f"# created: now\n# public key: {identity.recipient()}\n\n{identity.encode()}\n"
    )
    assert read_identity_file(path) == [identity]
    secret = identity.encode()
    wrong = "Q" if secret[-1] == "X" else "X"  # another last character: a bad checksum
    path.write_text(f"# a comment\n{secret[:-1]}{wrong}\n")
    with pytest.raises(AgeError) as info:
        read_identity_file(path)
    assert "line 2" in str(info.value) and secret[:-1] not in str(info.value)
    path.write_text("# nothing\n")
    with pytest.raises(AgeError):
        read_identity_file(path)
    with pytest.raises(AgeError):
        read_identity_file(tmp_path / "missing.txt")


@needs_age
def test_age_keygen_identity_reads_here(tmp_path):
    path, recipient = _keygen(tmp_path, "id.txt")
    (identity,) = read_identity_file(path)
    assert str(identity.recipient()) == recipient


@needs_age
@pytest.mark.parametrize("size", SIZES)
def test_age_decrypts_what_gridnode_encrypts(tmp_path, size):
    alice, alice_recipient = _keygen(tmp_path, "alice.txt")
    bob, bob_recipient = _keygen(tmp_path, "bob.txt")
    plaintext = _plaintext(size)
    sealed = tmp_path / "file.age"
    with sealed.open("wb") as sink:
        encrypt_to([alice_recipient, bob_recipient], io.BytesIO(plaintext), sink)
    for identity in (alice, bob):
        out = subprocess.run(
            [AGE, "-d", "-i", str(identity), str(sealed)], capture_output=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == plaintext


@needs_age
@pytest.mark.parametrize("size", SIZES)
def test_gridnode_decrypts_what_age_encrypts(tmp_path, size):
    identity_path, recipient = _keygen(tmp_path, "id.txt")
    other = generate_identity()
    plaintext = _plaintext(size)
    sealed = subprocess.run(
        [AGE, "-r", recipient, "-r", str(other.recipient())],
        input=plaintext,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    for identities in (read_identity_file(identity_path), [other]):
        opened = io.BytesIO()
        decrypt_with(identities, io.BytesIO(sealed), opened)
        assert opened.getvalue() == plaintext


@needs_age
def test_age_refuses_a_damaged_gridnode_file(tmp_path):
    identity_path, recipient = _keygen(tmp_path, "id.txt")
    sealed = io.BytesIO()
    encrypt_to([recipient], io.BytesIO(b"payload"), sealed)
    damaged = bytearray(sealed.getvalue())
    damaged[-3] ^= 1
    out = subprocess.run(
        [AGE, "-d", "-i", str(identity_path)], input=bytes(damaged), capture_output=True, timeout=60
    )
    assert out.returncode != 0


def test_parse_identity_matches_generate():
    identity = generate_identity()
    assert parse_identity(identity.encode()) == identity


class _Zeros(io.RawIOBase):
    """``size`` bytes that are never all in memory at once."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


class _Discard(io.RawIOBase):
    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self.size += len(b)
        return len(b)


def test_memory_stays_constant_whatever_the_size():
    """32 MiB through encrypt_to and 32 MiB through decrypt_with, with at most a few chunks held
    (tracemalloc counts Python allocations: a whole-file buffer would show as 32 MiB)."""
    import tracemalloc

    identity = generate_identity()
    size = 32 * 1024 * 1024
    sealed = _Discard()
    tracemalloc.start()
    try:
        result = encrypt_to([identity.recipient()], _Zeros(size), sealed)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == size and sealed.size > size
    assert peak < 2 * 1024 * 1024, peak

    # The other way: an age file of 32 MiB of zeros, made chunk by chunk on the fly.
    from protocols.age import Encryptor

    encryptor = Encryptor(
        [identity.recipient()], file_key=bytes(16), ephemeral_secrets=[bytes(32)], nonce=bytes(16)
    )

    class _Sealed(io.RawIOBase):
        def __init__(self) -> None:
            self.pending = bytearray(encryptor.header())
            self.left = size
            self.finished = False

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            while not self.pending and not self.finished:
                if self.left:
                    n = min(self.left, CHUNK_SIZE)
                    self.left -= n
                    self.pending += encryptor.update(bytes(n))
                else:
                    self.pending += encryptor.finish()
                    self.finished = True
            n = min(len(b), len(self.pending))
            b[:n] = self.pending[:n]
            del self.pending[:n]
            return n

    plain = _Discard()
    tracemalloc.start()
    try:
        result = decrypt_with([identity], _Sealed(), plain)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == size == plain.size
    assert peak < 2 * 1024 * 1024, peak


def test_decrypt_to_file_appears_only_when_whole(tmp_path):
    from gridnode.age import decrypt_to_file

    identity = generate_identity()
    plaintext = _plaintext(CHUNK_SIZE + 10)
    sealed = io.BytesIO()
    encrypt_to([identity.recipient()], io.BytesIO(plaintext), sealed)
    data = sealed.getvalue()
    target = tmp_path / "restored.bin"
    with pytest.raises(AgePayloadError):
        decrypt_to_file([identity], io.BytesIO(data[:-5]), target)
    with pytest.raises(AgeNoMatch):
        decrypt_to_file([generate_identity()], io.BytesIO(data), target)
    assert list(tmp_path.iterdir()) == []  # nothing left: no file, no temporary
    result = decrypt_to_file([identity], io.BytesIO(data), target)
    assert target.read_bytes() == plaintext and result.size == len(plaintext)
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):
        decrypt_to_file([identity], io.BytesIO(data), target)
    target.write_bytes(b"old")
    decrypt_to_file([identity], io.BytesIO(data), target, overwrite=True)
    assert target.read_bytes() == plaintext
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restored.bin"]


def test_a_low_order_recipient_is_refused():
    from protocols.age import X25519Recipient

    with pytest.raises(AgeError, match="low-order"):
        encrypt_to([X25519Recipient(bytes(32))], io.BytesIO(b"x"), io.BytesIO())
