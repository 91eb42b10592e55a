import json
from pathlib import Path

import pytest

from crdt.errors import GridnodeError, InvalidDidKey, InvalidKey, InvalidSignature
from crdt.identity import Keypair, did_from_public_key, public_key_from_did, verify
from crdt.ipld.multiformats import base58_encode

VECTORS = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "did-key" / "ed25519.json").read_text()
)["vectors"]


def test_all_vectors_are_present():
    assert len(VECTORS) == 5


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["seed"][-4:])
def test_did_key_vectors(vector):
    keypair = Keypair.from_seed(bytes.fromhex(vector["seed"]))
    assert base58_encode(keypair.public_key) == vector["publicKeyBase58"]
    assert keypair.did == vector["did"]
    assert did_from_public_key(keypair.public_key) == vector["did"]
    assert public_key_from_did(vector["did"]) == keypair.public_key


def test_sign_and_verify():
    keypair = Keypair.from_seed(bytes(range(32)))
    signature = keypair.sign(b"hello")
    assert len(signature) == 64
    verify(keypair.did, b"hello", signature)
    verify(keypair.public_key, b"hello", signature)
    with pytest.raises(InvalidSignature):
        verify(keypair.did, b"hellO", signature)
    with pytest.raises(InvalidSignature):
        verify(keypair.did, b"hello", bytes(64))
    with pytest.raises(InvalidSignature):
        verify(keypair.did, b"hello", signature[:63])
    other = Keypair.from_seed(bytes(32))
    with pytest.raises(InvalidSignature):
        verify(other.did, b"hello", signature)


def test_signatures_are_deterministic():
    keypair = Keypair.from_seed(bytes(range(32)))
    assert keypair.sign(b"x") == keypair.sign(b"x")


@pytest.mark.parametrize(
    "did",
    [
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW",  # one character short
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWpp",  # one too many
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDoo0p",  # '0' is not base58
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",  # secp256k1, not ed25519
        "did:web:example.com",
        "did:key:u6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",  # not base58btc
        "",
    ],
)
def test_bad_did_keys_are_rejected(did):
    with pytest.raises(InvalidDidKey):
        public_key_from_did(did)


def test_bad_key_material():
    with pytest.raises(InvalidKey):
        Keypair.from_seed(b"short")
    with pytest.raises(InvalidKey):
        did_from_public_key(b"\x01" * 31)
    assert issubclass(InvalidKey, GridnodeError)


def test_seed_never_in_repr():
    seed = bytes(range(32))
    keypair = Keypair.from_seed(seed)
    for text in (repr(keypair), str(keypair)):
        assert seed.hex() not in text
        assert keypair.did in text
    assert keypair.seed == seed
