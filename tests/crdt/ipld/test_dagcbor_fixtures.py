"""DAG-CBOR conformance against the IPLD codec fixtures (tests/fixtures/ipld-codec-fixtures).

The fixtures come from github.com/ipld/codec-fixtures (dual licensed Apache-2.0 / MIT, licences
copied next to them). Each fixture directory holds one value as ``<cid>.dag-cbor`` and as
``<cid>.dag-json``, each file named by its own CIDv1 (sha2-256).
"""

import base64
import json
import struct
from pathlib import Path

import pytest

from crdt.errors import DagCborDecodeError, DuplicateMapKey
from crdt.ipld import CID, decode, decode_strict, encode

# Every test here runs on both confirmations of canonical form (conftest.py).
pytestmark = pytest.mark.usefixtures("decode_path")

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ipld-codec-fixtures"
CASES = sorted(p for p in (FIXTURES / "fixtures").iterdir() if p.is_dir())
CASE_IDS = [p.name for p in CASES]


def only_file(case: Path, suffix: str) -> Path:
    (path,) = case.glob(f"*{suffix}")
    return path


def stem(path: Path) -> str:
    return path.name.split(".", 1)[0]


def same(a, b) -> bool:
    """Equality of IPLD values that Python's ``==`` blurs: ``True``/``1``, ``1``/``1.0``, ``0.0``/``-0.0``."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def test_same_tells_apart_what_equality_blurs():
    assert not same(True, 1)
    assert not same(1, 1.0)
    assert not same(0.0, -0.0)
    assert not same([1], [1.0])
    assert same({"a": [b"", None, 0.5]}, {"a": [b"", None, 0.5]})


# -- dag-cbor -------------------------------------------------------------------------------------


def test_all_128_fixtures_are_present():
    assert len(CASES) == 128
    for case in CASES:
        only_file(case, ".dag-cbor")
        only_file(case, ".dag-json")
    assert (FIXTURES / "LICENSE-APACHE").is_file()
    assert (FIXTURES / "LICENSE-MIT").is_file()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fixture_decodes_round_trips_and_names_its_cid(case):
    path = only_file(case, ".dag-cbor")
    data = path.read_bytes()
    fast = decode(data)
    strict = decode_strict(data)
    assert same(fast, strict)
    assert encode(fast) == data
    assert encode(strict) == data
    # Buffers other than bytes decode the same.
    assert same(decode(bytearray(data)), fast)
    assert same(decode_strict(memoryview(data)), fast)
    cid = CID.for_block(data)
    assert str(cid) == stem(path)
    assert CID.parse(stem(path)) == cid
    cid.verify(data)


# -- dag-json twins -------------------------------------------------------------------------------


class DagJsonError(ValueError):
    pass


def _reject_constant(name: str):
    raise DagJsonError(f"{name} is not JSON")


def _object(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DagJsonError("duplicate key")
    if keys == ["/"]:
        inner = pairs[0][1]
        if isinstance(inner, str):
            return CID.parse(inner)
        if isinstance(inner, dict) and list(inner) == ["bytes"] and isinstance(inner["bytes"], str):
            text = inner["bytes"]
            if "=" in text:
                raise DagJsonError("dag-json bytes are unpadded")
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        raise DagJsonError("reserved '/' key holding neither a CID nor bytes")
    return dict(pairs)


def read_dag_json(raw: bytes):
    """A small DAG-JSON reader: JSON plus the reserved ``{"/": ...}`` forms for links and bytes.

    ``json`` already keeps integers (no fraction, no exponent) as ``int`` of any size and everything
    else as ``float``, which is the DAG-JSON number rule.
    """
    return json.loads(
        raw.decode("utf-8"), object_pairs_hook=_object, parse_constant=_reject_constant
    )


def test_dag_json_reader_forms():
    cid = CID.for_block(b"x")
    assert same(read_dag_json(b'{"/":"%s"}' % str(cid).encode()), cid)
    assert same(read_dag_json(b'{"/":{"bytes":"YTE"}}'), b"a1")
    assert same(read_dag_json(b"[1,1.0,-0.0,1e-323]"), [1, 1.0, -0.0, 1e-323])
    assert same(read_dag_json(b'{"/":"x","a":1}'), {"/": "x", "a": 1})  # not the reserved form
    for bad in (
        b"NaN",
        b'{"a":1,"a":2}',
        b'{"/":{"bytes":"YQ=="}}',
        b'{"/":{"bytes":"Y!"}}',
        b'{"/":1}',
    ):
        with pytest.raises((DagJsonError, ValueError)):
            read_dag_json(bad)


# Every one of the 128 dag-json twins can be represented by this reader: the fixtures use no
# dag-json form the Python data model lacks (no float written without a fraction or exponent, no
# map whose only key is "/" that is meant as a plain map). So nothing is skipped; the test below
# fails if a fixture ever needs to be.
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_dag_json_twin_holds_the_same_value(case):
    json_path = only_file(case, ".dag-json")
    raw = json_path.read_bytes()
    assert str(CID.for_block(raw, codec="dag-json")) == stem(json_path)
    from_json = read_dag_json(raw)
    cbor = only_file(case, ".dag-cbor").read_bytes()
    from_cbor = decode(cbor)
    assert same(from_json, from_cbor)
    assert encode(from_json) == cbor


# -- negative fixtures ----------------------------------------------------------------------------

NEGATIVE_DIR = FIXTURES / "negative-fixtures" / "dag-cbor" / "decode"
# The expected class for each negative-fixture file we know; any other file must still be refused.
NEGATIVE_CLASSES = {"duplicate-keys": DuplicateMapKey}
NEGATIVE = [
    pytest.param(path.stem, entry, id=f"{path.stem}:{entry['name']}")
    for path in sorted(NEGATIVE_DIR.glob("*.json"))
    for entry in json.loads(path.read_text())
]


def test_negative_fixtures_are_present():
    assert len(NEGATIVE) >= 1


@pytest.mark.parametrize(("file", "entry"), NEGATIVE)
def test_negative_fixture_is_refused_by_both_decoders(file, entry):
    data = bytes.fromhex(entry["hex"])
    expected = NEGATIVE_CLASSES.get(file, DagCborDecodeError)
    with pytest.raises(expected) as strict:
        decode_strict(data)
    with pytest.raises(expected) as fast:
        decode(data)
    assert type(fast.value) is type(strict.value)
    assert fast.value.offset == strict.value.offset
