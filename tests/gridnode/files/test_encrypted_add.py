"""``gridnode add --encrypt-to``: the file is encrypted to age recipients, then added; the CID is
the ciphertext's, and Debian's ``age -d`` of ``gridnode cat CID`` gives the plaintext back."""

import hashlib
import io
import json
import shutil
import subprocess

import pytest

from gridnode.age import decrypt_with, generate_identity
from gridnode.repo import Repo
from tests.gridnode.files.test_cli_files import refused, run, running

AGE = shutil.which("age")
needs_age = pytest.mark.skipif(
    AGE is None, reason="Debian's age is not installed (apt-get install age; .ci/run installs it)"
)
MARKER = b"PLAINTEXT-MARKER-a7f3"


def _plaintext(size: int) -> bytes:
    body = hashlib.shake_256(b"encrypted add %d" % size).digest(size)
    return MARKER + body + MARKER


@pytest.fixture(params=["offline", "running"])
def node(request, tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    with running(data_dir, request.param):
        yield data_dir


def _identity(tmp_path, name="key.txt"):
    identity = generate_identity()
    path = tmp_path / name
    path.write_text(f"# test\n{identity.encode()}\n")
    return identity, path


def _stored_bytes(data_dir):
    """Every byte the data directory holds (databases, WAL, block files)."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


@needs_age
def test_age_decrypts_what_add_encrypt_to_added(node, tmp_path):
    identity, key_file = _identity(tmp_path)
    plain = _plaintext(3 * 65536 + 77)  # several age chunks
    source = tmp_path / "secret.bin"
    source.write_bytes(plain)
    cid = run(node, "add", "-q", "--encrypt-to", str(identity.recipient()), str(source))
    cid = cid.stdout.strip()
    ciphertext = run(node, "cat", cid).stdout_bytes
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    assert MARKER not in ciphertext
    decrypted = subprocess.run(
        [AGE, "-d", "-i", str(key_file)], input=ciphertext, capture_output=True, check=True
    ).stdout
    assert decrypted == plain
    # The pin names the ciphertext: the CID printed is what the store keeps.
    pins = json.loads(run(node, "pin", "ls", "--json").stdout.splitlines()[0])
    assert pins["cid"] == cid


def test_every_recipient_decrypts_and_no_plaintext_is_stored(node, tmp_path):
    first, _ = _identity(tmp_path, "a.txt")
    second, _ = _identity(tmp_path, "b.txt")
    plain = _plaintext(2 * (1 << 20) + 5)  # more than one 1 MiB chunk of the importer
    source = tmp_path / "secret.bin"
    source.write_bytes(plain)
    added = json.loads(
        run(
            node,
            "add",
            "--json",
            "--encrypt-to",
            str(first.recipient()),
            "--encrypt-to",
            str(second.recipient()),
            str(source),
        ).stdout
    )
    ciphertext = run(node, "cat", added["cid"]["/"]).stdout_bytes
    assert added["size"] == len(ciphertext) > len(plain)
    for identity in (first, second):
        out = io.BytesIO()
        assert decrypt_with([identity], io.BytesIO(ciphertext), out).size == len(plain)
        assert out.getvalue() == plain
    assert MARKER not in _stored_bytes(node)


def test_stdin_is_encrypted_too(node, tmp_path):
    identity, _ = _identity(tmp_path)
    cid = run(node, "add", "-q", "--encrypt-to", str(identity.recipient()), "-", input=b"hello")
    out = io.BytesIO()
    ciphertext = run(node, "cat", cid.stdout.strip()).stdout_bytes
    decrypt_with([identity], io.BytesIO(ciphertext), out)
    assert out.getvalue() == b"hello"


def test_a_bad_recipient_or_a_directory_is_refused_and_nothing_is_added(tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    source = tmp_path / "secret.bin"
    source.write_bytes(MARKER)
    line = refused(data_dir, "add", "--encrypt-to", "age1notarecipient", str(source))
    assert "age1notarecipient" not in line or "recipient" in line
    (tmp_path / "dir").mkdir()
    identity, _ = _identity(tmp_path)
    result = run(
        data_dir,
        "add",
        "-r",
        "--encrypt-to",
        str(identity.recipient()),
        str(tmp_path / "dir"),
        code=2,
    )
    assert "--encrypt-to" in result.stderr
    with Repo(data_dir) as repo:
        assert repo.files.pins() == []
