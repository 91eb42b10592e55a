"""The offline CLI: ``gridnode init``, ``gridnode db ...``, ``gridnode export`` / ``import``.

Most runs go through click's CliRunner (same process, fast); a few are real processes, so that
exit statuses and streams are exactly what an operator sees.
"""

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from crdt.identity import Keypair
from gridnode.cli import main
from gridnode.repo import Repo, StoredDatabase

LINK = "bafyreiatdbl6o75gibttqbmiq4zkl4hwfmb3haumcmatznksmkqbk2sbs4"
MISSING = "/gridnode/bafyreihdb57fdysx5h35urvxz64ros7zvywshber7id6t6c6fek37jgyfe"


def run(data_dir, *args, input=None, code=0):
    """Invoke the CLI on ``data_dir`` and check the exit status."""
    result = CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "--log-level", "warning", *args], input=input
    )
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    if code == 0:
        assert result.exception is None
    return result


def out(data_dir, *args, input=None):
    return run(data_dir, *args, input=input).stdout


def json_out(data_dir, *args, input=None):
    return json.loads(out(data_dir, *args, "--json", input=input))


def json_lines(data_dir, *args, input=None):
    return [json.loads(line) for line in out(data_dir, *args, "--json", input=input).splitlines()]


def refused(data_dir, *args, input=None, code=1):
    """Run a command that must be refused: one ``error:`` line on stderr, nothing on stdout."""
    result = run(data_dir, *args, input=input, code=code)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def node(tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    return data_dir


def create(data_dir, name, store_type, *options):
    address = out(data_dir, "db", "create", name, "--type", store_type, *options)
    assert address.startswith("/gridnode/bafy") and address.endswith("\n")
    assert len(address.splitlines()) == 1
    return address.strip()


def identity(data_dir):
    return json_out(data_dir, "init")["identity"]


# -- init ------------------------------------------------------------------------------------------


def test_init_creates_key_config_and_sqlite_and_is_idempotent(tmp_path):
    first = json_out(tmp_path, "init")
    assert first["key_created"] is True
    for name in ("node.key", "gridnode.toml", "gridnode.sqlite"):
        assert (tmp_path / name).is_file()
    second = json_out(tmp_path, "init")
    assert second["key_created"] is False
    assert second["identity"] == first["identity"].strip()
    assert second["identity"].startswith("did:key:z")
    text = out(tmp_path, "init")
    assert f"identity: {first['identity']}" in text.splitlines()
    assert "(existing)" in text


def test_commands_need_an_initialised_data_dir(tmp_path):
    line = refused(tmp_path / "nothing", "db", "list")
    assert "gridnode init" in line
    assert not (tmp_path / "nothing").exists()


# -- round trips per type --------------------------------------------------------------------------


def test_keyvalue_put_get_delete(node):
    kv = create(node, "people", "keyvalue")
    entry = out(node, "db", "put", kv, "alice", '{"age": 33, "tags": ["a", "b"]}').strip()
    assert entry.startswith("bafy")
    out(node, "db", "put", kv, "bob", "-5")  # a negative number is a value, not an option
    out(node, "db", "put", kv, "-", '"dash"')  # a key named "-" with a value is no batch
    assert json_out(node, "db", "get", kv, "alice") == {
        "key": "alice",
        "value": {"age": 33, "tags": ["a", "b"]},
    }
    assert json.loads(out(node, "db", "get", kv, "alice")) == {"age": 33, "tags": ["a", "b"]}
    assert out(node, "db", "get", kv, "bob") == "-5\n"
    assert out(node, "db", "get", kv, "-") == '"dash"\n'
    # By name as well as by address; bare CID too.
    assert out(node, "db", "get", "people", "bob") == "-5\n"
    assert out(node, "db", "get", kv.removeprefix("/gridnode/"), "bob") == "-5\n"
    # Overwrite, then delete.
    out(node, "db", "put", kv, "alice", "34")
    assert out(node, "db", "get", kv, "alice") == "34\n"
    written = json_out(node, "db", "delete", kv, "alice")
    assert written["written"] == 1 and written["heads"] == written["entries"]
    assert "no key 'alice'" in refused(node, "db", "get", kv, "alice")
    listing = json_lines(node, "db", "list")
    assert listing == [{"address": kv, "name": "people", "type": "keyvalue", "entries": 5}]
    log = json_lines(node, "db", "log", kv)
    assert [e["clock"] for e in log] == [1, 2, 3, 4, 5]
    assert log[0]["cid"] == entry
    assert log[0]["payload"] == {
        "op": "put",
        "key": "alice",
        "value": {"age": 33, "tags": ["a", "b"]},
    }
    assert log[-1]["payload"] == {"op": "del", "key": "alice"}
    assert log[1]["next"] == [entry]
    assert log[0]["author"] == identity(node)
    table = out(node, "db", "list")
    assert kv in table and "people" in table and "keyvalue" in table


def test_documents_put_get_query_delete(node):
    docs = create(node, "docs", "documents", "--index", "n", "--index", "meta.tag")
    for i in range(10):
        out(node, "db", "put", docs, json.dumps({"_id": f"d{i}", "n": i, "meta": {"tag": i % 3}}))
    out(node, "db", "put", docs, '{"_id": 42, "n": 4.5}')
    assert json_out(node, "db", "get", docs, "d3") == {"_id": "d3", "n": 3, "meta": {"tag": 0}}
    assert json_out(node, "db", "get", docs, "42", "--int") == {"_id": 42, "n": 4.5}
    refused(node, "db", "get", docs, "42")  # the string "42" is another id
    ids = lambda *args: [d["_id"] for d in json_lines(node, "db", "query", docs, *args)]  # noqa: E731
    assert ids("n", "--eq", "3") == ["d3"]
    assert ids("n", "--eq", "3.0") == ["d3"]  # numbers compare by value
    assert ids("n", "--gte", "4", "--lt", "6") == ["d4", 42, "d5"]
    assert ids("n", "--gt", "7") == ["d8", "d9"]
    assert ids("n", "--lte", "1") == ["d0", "d1"]
    assert ids("n", "--gt", "1", "--limit", "2") == ["d2", "d3"]
    assert ids("n", "--gte", "8", "--reverse") == ["d9", "d8"]
    assert ids("meta.tag", "--eq", "2") == ["d2", "d5", "d8"]
    assert ids() == [42, *(f"d{i}" for i in range(10))]  # the id field by default
    assert ids("_id", "--gte", '"d5"', "--limit", "2") == ["d5", "d6"]
    table = out(node, "db", "query", docs, "n", "--eq", "4.5")
    assert "42" in table and '"n":4.5' in table
    out(node, "db", "delete", docs, "d3")
    out(node, "db", "delete", docs, "42", "--int")
    assert ids("n", "--gte", "3", "--lte", "5") == ["d4", "d5"]
    refused(node, "db", "get", docs, "d3")


def test_documents_index_by_another_field(node):
    docs = create(node, "users", "documents", "--index-by", "email", "--index", "age")
    out(node, "db", "put", docs, '{"email": "a@x", "age": 30}')
    out(node, "db", "put", docs, '{"email": "b@x", "age": 20}')
    assert json_out(node, "db", "get", docs, "a@x") == {"age": 30, "email": "a@x"}
    assert [d["email"] for d in json_lines(node, "db", "query", docs, "age")] == ["b@x", "a@x"]
    info = json_out(node, "db", "info", docs)
    assert info["options"] == {"indexBy": "email", "indexes": ["age"]}
    assert "no document" not in refused(node, "db", "put", docs, '{"_id": "c"}')


def test_events_add_and_iter(node):
    events = create(node, "feed", "events")
    cids = [out(node, "db", "add", events, json.dumps(v)).strip() for v in ["a", 2, None, -1]]
    listed = json_lines(node, "db", "iter", events)
    assert listed == [{"cid": c, "value": v} for c, v in zip(cids, ["a", 2, None, -1], strict=True)]
    assert [
        e["value"] for e in json_lines(node, "db", "iter", events, "--reverse", "--limit", "2")
    ] == [-1, None]
    assert [e["value"] for e in json_lines(node, "db", "iter", events, "--limit", "0")] == []
    table = out(node, "db", "iter", events)
    assert all(cid in table for cid in cids)


def test_set_add_remove(node):
    tags = create(node, "tags", "set")
    out(node, "db", "add", tags, '"red"')
    out(node, "db", "add", tags, '"red"')  # two adds of one member
    out(node, "db", "add", tags, '{"k": [1, 2]}')
    out(node, "db", "add", tags, "7")
    members = [m["value"] for m in json_lines(node, "db", "iter", tags)]
    assert sorted(map(json.dumps, members)) == sorted(map(json.dumps, ["red", {"k": [1, 2]}, 7]))
    removed = json_out(node, "db", "remove", tags, '"red"')
    assert removed["written"] == 1
    payload = json_lines(node, "db", "log", tags)[-1]["payload"]
    assert payload["op"] == "remove" and len(payload["tags"]) == 2  # both adds cancelled
    assert all(set(t) == {"/"} for t in payload["tags"])
    members = [m["value"] for m in json_lines(node, "db", "iter", tags)]
    assert "red" not in members and len(members) == 2
    assert "not a member" in refused(node, "db", "remove", tags, '"red"')
    out(node, "db", "remove", tags, '{"k": [1, 2]}')
    out(node, "db", "add", tags, '"red"')
    assert sorted(m["value"] for m in json_lines(node, "db", "iter", tags) if m["value"] != 7) == [
        "red"
    ]
    first = json_lines(node, "db", "iter", tags, "--limit", "1")
    last = json_lines(node, "db", "iter", tags, "--limit", "1", "--reverse")
    assert len(first) == len(last) == 1 and first != last


def test_counter_inc_and_value(node):
    counter = create(node, "hits", "counter")
    assert out(node, "db", "value", counter) == "0\n"
    assert out(node, "db", "inc", counter) == "1\n"
    assert out(node, "db", "inc", counter, "5") == "6\n"
    assert out(node, "db", "inc", counter, "-3") == "3\n"
    result = json_out(node, "db", "inc", counter, "--by", "-10")
    assert result["value"] == -7 and result["written"] == 1
    assert out(node, "db", "value", counter) == "-7\n"
    assert json_out(node, "db", "value", counter) == {"address": counter, "value": -7}
    assert "2**53" in refused(node, "db", "inc", counter, str(2**53 + 1))
    refused(node, "db", "inc", counter, "1", "--by", "2", code=2)
    assert out(node, "db", "value", counter) == "-7\n"


# -- batches ---------------------------------------------------------------------------------------


def test_put_a_thousand_json_lines_as_one_batch(node, monkeypatch):
    kv = create(node, "bulk", "keyvalue")
    calls = []
    original = StoredDatabase.write_many

    def counting(self, payloads, keypair=None, **options):
        payloads = list(payloads)
        calls.append(len(payloads))
        return original(self, payloads, keypair, **options)

    monkeypatch.setattr(StoredDatabase, "write_many", counting)
    lines = "".join(json.dumps({"key": f"k{i:04}", "value": i}) + "\n" for i in range(1000))
    assert out(node, "db", "put", kv, "-", input=lines) == "wrote 1000 entries\n"
    assert calls == [1000]
    assert len(json_lines(node, "db", "log", kv, "--limit", "10")) == 10
    log = json_lines(node, "db", "log", kv)
    assert len(log) == 1000 and [e["clock"] for e in log] == list(range(1, 1001))
    assert json_lines(node, "db", "list")[0]["entries"] == 1000
    assert out(node, "db", "get", kv, "k0999") == "999\n"
    # One bad line: the whole batch is refused and nothing is written.
    bad = lines.replace('"k0500"', "500")
    assert "stdin line 501" in refused(node, "db", "put", kv, "-", input=bad)
    assert "stdin line 3" in refused(
        node, "db", "put", kv, "-", input='{"key":"a","value":1}\n\n{oops\n'
    )
    assert len(json_lines(node, "db", "log", kv)) == 1000
    written = json_out(node, "db", "put", kv, "-", input='{"key": "x", "value": 1}\n')
    assert written["written"] == 1 and calls[-1] == 1


def test_batches_of_documents_events_and_set(node):
    docs = create(node, "docs", "documents", "--index", "n")
    lines = "".join(json.dumps({"_id": i, "n": i % 7}) + "\n" for i in range(300))
    assert out(node, "db", "put", docs, "-", input=lines) == "wrote 300 entries\n"
    assert len(json_lines(node, "db", "query", docs, "n", "--eq", "0")) == 43
    assert "stdin line 2" in refused(node, "db", "put", docs, "-", input='{"_id": 1}\n[1]\n')
    events = create(node, "feed", "events")
    written = json_out(node, "db", "add", events, "-", input="1\n2\n\n3\n")
    assert written["written"] == 3
    assert [e["cid"] for e in json_lines(node, "db", "iter", events)] == written["entries"]
    tags = create(node, "tags", "set")
    assert out(node, "db", "add", tags, "-", input='"a"\n"b"\n"a"\n') == "wrote 3 entries\n"
    assert sorted(m["value"] for m in json_lines(node, "db", "iter", tags)) == ["a", "b"]


# -- links, bytes and numbers through JSON ---------------------------------------------------------


def test_links_bytes_and_numbers_round_trip(node):
    value = {
        "link": {"/": LINK},
        "bytes": {"/": {"bytes": "AAECA/8"}},
        "empty": {"/": {"bytes": ""}},
        "float": 1.0,
        "int": 1,
        "big": 2**64 - 1,
        "neg": -(2**64),
        "nested": [{"/": LINK}, {"x": {"/": {"bytes": "aGVsbG8"}}}],
        "slash": {"/": 1, "other": 2},  # "/" among other keys: a plain map
        "text": "üñï",
    }
    kv = create(node, "ipld", "keyvalue")
    out(node, "db", "put", kv, "v", json.dumps(value))
    got = out(node, "db", "get", kv, "v", "--json")
    assert json.loads(got)["value"] == value
    assert '"float":1.0' in got and '"int":1,' in got  # 1.0 stays a float, 1 an int
    # Padded base64 is accepted and written back unpadded.
    out(node, "db", "put", kv, "p", '{"/": {"bytes": "aGVsbG8="}}')
    assert json_out(node, "db", "get", kv, "p")["value"] == {"/": {"bytes": "aGVsbG8"}}
    # Inside the node they are real links and bytes.
    with Repo(node) as repo:
        stored = repo.database(kv).store.get("v")
    assert type(stored["bytes"]) is bytes and stored["bytes"] == bytes([0, 1, 2, 3, 255])
    assert type(stored["link"]).__name__ == "CID" and str(stored["link"]) == LINK
    assert type(stored["float"]) is float and type(stored["int"]) is int
    # Events, sets and document queries take them too.
    events = create(node, "feed", "events")
    out(node, "db", "add", events, '{"/": {"bytes": "3q2+7w"}}')
    assert json_lines(node, "db", "iter", events)[0]["value"] == {"/": {"bytes": "3q2+7w"}}
    tags = create(node, "links", "set")
    out(node, "db", "add", tags, json.dumps({"/": LINK}))
    out(node, "db", "remove", tags, json.dumps({"/": LINK}))
    assert json_lines(node, "db", "iter", tags) == []
    docs = create(node, "blobs", "documents", "--index", "blob")
    out(node, "db", "put", docs, '{"_id": "a", "blob": {"/": {"bytes": "AQI"}}}')
    out(node, "db", "put", docs, '{"_id": "b", "blob": {"/": {"bytes": "AQM"}}}')
    found = json_lines(node, "db", "query", docs, "blob", "--eq", '{"/": {"bytes": "AQM"}}')
    assert [d["_id"] for d in found] == ["b"]


# -- two nodes -------------------------------------------------------------------------------------


def test_two_data_dirs_exchange_cars_and_agree(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run(a, "init")
    did_b = identity(b)
    docs = create(a, "shared", "documents", "--writer", did_b, "--index", "n")
    assert did_b in json_out(a, "db", "info", docs)["writers"]
    out(a, "db", "put", docs, '{"_id": "x", "n": 0}')
    car_a, car_b = tmp_path / "a.car", tmp_path / "b.car"
    assert json_out(a, "export", docs, str(car_a)) == {
        "address": docs,
        "file": str(car_a),
        "blocks": 2,
    }
    report = json_out(b, "import", str(car_a))
    assert report == {"address": docs, "applied": 1, "duplicates": 0, "pending": 0, "rejected": []}
    # Both write independently...
    lines_a = "".join(json.dumps({"_id": f"a{i}", "n": i}) + "\n" for i in range(20))
    lines_b = "".join(json.dumps({"_id": f"b{i}", "n": i}) + "\n" for i in range(20))
    out(a, "db", "put", docs, "-", input=lines_a)
    out(b, "db", "put", docs, "-", input=lines_b)
    out(b, "db", "delete", docs, "x")
    assert out(a, "db", "digest", docs) != out(b, "db", "digest", docs)
    # ...then exchange CARs both ways.
    out(a, "export", docs, str(car_a))
    out(b, "export", docs, str(car_b))
    text = out(b, "import", str(car_a))
    assert "applied: 20" in text and "duplicates: 1" in text and "rejected: 0" in text
    assert json_out(a, "import", str(car_b))["applied"] == 21
    digest = out(a, "db", "digest", docs)
    assert len(digest.strip()) == 64
    assert out(b, "db", "digest", docs) == digest
    assert json_out(a, "db", "digest", docs) == json_out(b, "db", "digest", docs)
    assert json_lines(a, "db", "log", docs) == json_lines(b, "db", "log", docs)
    ids = [d["_id"] for d in json_lines(b, "db", "query", docs, "n", "--eq", "3")]
    assert ids == ["a3", "b3"]
    refused(a, "db", "get", docs, "x")
    # Importing again changes nothing.
    again = json_out(a, "import", str(car_b))
    assert again["applied"] == 0 and again["duplicates"] == 22  # x, b0..b19, del x
    assert out(a, "db", "digest", docs) == digest


def test_a_node_that_is_not_a_writer_is_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run(a, "init")
    run(b, "init")
    kv = create(a, "closed", "keyvalue")
    out(a, "db", "put", kv, "k", "1")
    out(a, "export", kv, str(tmp_path / "a.car"))
    out(b, "import", str(tmp_path / "a.car"))
    assert "not a writer" in refused(b, "db", "put", kv, "k", "2")
    assert json_out(b, "db", "info", kv)["may_write"] is False
    assert out(b, "db", "get", kv, "k") == "1\n"
    public = create(a, "open", "counter", "--public")
    out(a, "export", public, str(tmp_path / "p.car"))
    out(b, "import", str(tmp_path / "p.car"))
    assert out(b, "db", "inc", public) == "1\n"


def test_import_reports_rejected_entries(tmp_path):
    a, b, mallory = tmp_path / "a", tmp_path / "b", tmp_path / "m"
    for data_dir in (a, b, mallory):
        run(data_dir, "init")
    kv = create(a, "closed", "keyvalue")
    out(a, "db", "put", kv, "k", '"honest"')
    out(a, "export", kv, str(tmp_path / "a.car"))
    out(mallory, "import", str(tmp_path / "a.car"))
    with Repo(mallory) as repo:  # Mallory's node skips the access check
        forged_db = repo.database(kv)
        forged_db._db.log._authorise = lambda *args: None
        forged = forged_db.write({"op": "put", "key": "k", "value": "forged"})
        forged_db.export_car(tmp_path / "m.car")
    result = run(b, "import", str(tmp_path / "m.car"))
    assert "applied: 1" in result.stdout and "rejected: 1" in result.stdout
    assert f"  {forged.cid}: Unauthorized" in result.stdout
    assert "Traceback" not in result.stderr
    assert out(b, "db", "get", kv, "k") == '"honest"\n'
    # Offered again, a rejected entry counts as a duplicate (the log remembers the rejection).
    assert json_out(b, "import", str(tmp_path / "m.car"))["duplicates"] == 2
    c, d = tmp_path / "c", tmp_path / "d"
    run(c, "init")
    report = json_out(c, "import", str(tmp_path / "m.car"))
    assert [r["cid"] for r in report["rejected"]] == [str(forged.cid)]
    assert "Unauthorized" in report["rejected"][0]["reason"]
    run(d, "init")
    strict = run(d, "import", "--strict", str(tmp_path / "m.car"), code=1)
    assert "rejected: 1" in strict.stdout
    assert strict.stderr.splitlines()[-1] == "error: 1 entries rejected"
    assert out(d, "db", "get", kv, "k") == '"honest"\n'  # the valid entries are kept


def test_import_of_a_corrupt_car_changes_nothing(tmp_path, node):
    events = create(node, "feed", "events")
    out(node, "db", "add", events, "-", input="1\n2\n3\n")
    car = tmp_path / "ok.car"
    out(node, "export", events, str(car))
    data = bytearray(car.read_bytes())
    data[-3] ^= 0xFF
    bad = tmp_path / "bad.car"
    bad.write_bytes(bytes(data))
    other = tmp_path / "other"
    run(other, "init")
    assert "invalid CAR" in refused(other, "import", str(bad))
    assert json_lines(other, "db", "list") == []
    assert out(node, "car", "verify", str(car)).endswith("all hashes verified\n")


# -- refusals --------------------------------------------------------------------------------------


@pytest.fixture
def dbs(node):
    return {
        t: create(node, t, t, *(["--index", "n"] if t == "documents" else []))
        for t in ("events", "keyvalue", "documents", "counter", "set")
    }


def test_bad_inputs_give_one_line_and_status_1(tmp_path, node, dbs):
    kv, docs, ev, counter, tags = (
        dbs[t] for t in ("keyvalue", "documents", "events", "counter", "set")
    )
    not_a_car = tmp_path / "not.car"
    not_a_car.write_text("hello")
    cases = [
        (("db", "get", MISSING, "k"), "no database"),
        (("db", "digest", "nonsense"), "no database 'nonsense'"),
        (("export", MISSING, str(tmp_path / "x.car")), "no database"),
        (("db", "put", kv, "k", "{bad json"), "not valid JSON"),
        (("db", "put", kv, "k", "NaN"), "NaN"),
        (("db", "put", kv, "k", '{"a": 1, "a": 2}'), "duplicate key"),
        (("db", "put", kv, "k", str(2**64)), "integer"),
        (("db", "put", kv, "k", '{"/": "not-a-cid"}'), "not a link"),
        (("db", "put", kv, "k", '{"/": {"bytes": "!!"}}'), "base64"),
        (("db", "put", kv, "k", '{"/": 1}'), "only key"),
        (("db", "add", ev, "["), "not valid JSON"),
        (("db", "query", docs, "n", "--eq", "{"), "--eq"),
        (("db", "inc", kv), "counter"),
        (("db", "put", counter, "k", "1"), "keyvalue and documents"),
        (("db", "query", ev, "n"), "documents"),
        (("db", "remove", ev, "1"), "set"),
        (("db", "get", tags, "k"), "keyvalue and documents"),
        (("db", "iter", kv), "events and set"),
        (("db", "value", docs), "counter"),
        (("db", "add", kv, "1"), "events and set"),
        (("db", "put", docs, "[1]"), "object"),
        (("db", "put", docs, '{"n": 1}'), "_id"),
        (("db", "query", docs, "zz"), "no index"),
        (("db", "query", docs, "n", "--eq", "1", "--gt", "0"), "not both"),
        (("db", "get", kv, "nope"), "no key"),
        (("db", "get", docs, "x", "--int"), "not an integer"),
        (("db", "remove", tags, "1"), "not a member"),
        (("db", "inc", counter, str(2**60)), "2**53"),
        (("db", "create", "x", "--type", "keyvalue", "--writer", "did:key:nope"), "writers"),
        (("import", str(not_a_car)), "invalid CAR"),
        (("export", kv, str(tmp_path / "no" / "such" / "dir.car")), "cannot write"),
    ]
    for args, expected in cases:
        line = refused(node, *args)
        assert expected in line, (args, line)
    # Not-a-writer: another node's database, imported here.
    other = tmp_path / "other"
    run(other, "init")
    closed = create(other, "closed", "keyvalue")
    out(other, "export", closed, str(tmp_path / "closed.car"))
    out(node, "import", str(tmp_path / "closed.car"))
    assert "not a writer" in refused(node, "db", "put", closed, "k", "1")
    # Nothing above wrote anything.
    assert all(e["entries"] == 0 for e in json_lines(node, "db", "list"))


def test_usage_errors_give_one_line_and_status_2(tmp_path, node, dbs):
    kv, docs = dbs["keyvalue"], dbs["documents"]
    cases = [
        (("db", "create", "x", "--type", "graph"), "'graph' is not one of"),
        (("db", "create", "x"), "--type"),
        (("db", "create", "x", "--type", "events", "--index", "n"), "documents"),
        (("db", "get", kv), "KEY"),
        (("db", "put", kv, "k"), "KEY VALUE_JSON"),
        (("db", "put", docs, "{}", "{}"), "DOC_JSON"),
        (("db", "get", kv, "k", "--int"), "--int"),
        (("db", "log", kv, "--limit", "-1"), "--limit"),
        (("db", "list", "--bogus"), "--bogus"),
        (("db", "frobnicate"), "frobnicate"),
        (("import", str(tmp_path / "missing.car")), "does not exist"),
    ]
    for args, expected in cases:
        line = refused(node, *args, code=2)
        assert expected in line, (args, line)
        assert "--help" in line


# -- help ------------------------------------------------------------------------------------------


def _commands(group, path=()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize(
    ("path", "command"),
    list(_commands(main)),
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else "",
)
def test_help_for_every_verb(path, command):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help and command.help.split("\n")[0].strip()[:20] in " ".join(
        result.output.split()
    )
    for param in command.params:
        if isinstance(param, click.Option):
            assert any(opt in result.output for opt in param.opts), (path, param.opts)
            assert param.help, (path, param.opts)
        elif isinstance(param, click.Argument):
            assert (param.metavar or param.name.upper()).split()[0] in result.output


def test_every_db_verb_is_documented():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for path, _command in _commands(main):
        assert f"gridnode {' '.join(path)}" in text, path


# -- real processes --------------------------------------------------------------------------------


def gridnode(data_dir, *args, input=None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gridnode.cli",
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            *args,
        ],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_real_process_round_trip_and_exit_statuses(tmp_path):
    data_dir = tmp_path / "node"
    assert gridnode(data_dir, "init").returncode == 0
    made = gridnode(data_dir, "db", "create", "kv", "--type", "keyvalue")
    assert made.returncode == 0 and made.stderr == ""
    kv = made.stdout.strip()
    put = gridnode(data_dir, "db", "put", kv, "-", input='{"key": "a", "value": [1, 2.5]}\n')
    assert put.returncode == 0 and put.stdout == "wrote 1 entries\n"
    got = gridnode(data_dir, "db", "get", kv, "a", "--json")
    assert got.returncode == 0 and json.loads(got.stdout) == {"key": "a", "value": [1, 2.5]}
    for args, code in [
        (("db", "inc", kv), 1),
        (("db", "get", MISSING, "a"), 1),
        (("db", "put", kv, "a", "{nope"), 1),
        (("import", str(data_dir / "gridnode.toml")), 1),
        (("db", "create", "x", "--type", "nope"), 2),
        (("db", "get"), 2),
    ]:
        proc = gridnode(data_dir, *args)
        assert proc.returncode == code, (args, proc.stderr)
        assert proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: ")
        assert "Traceback" not in proc.stderr


def test_db_create_private_with_readers(node):
    """``db create --private --reader DID``: the readers go into the manifest (every replica
    reads them), ``db info`` shows them; ``--reader`` without ``--private``, ``--private`` with
    ``--public`` and a reader that is not a did:key are refused before anything is made."""
    reader = Keypair.from_seed(bytes([5]) * 32).did
    address = create(node, "secret", "keyvalue", "--private", "--reader", reader)
    info = json_out(node, "db", "info", address)
    assert info["private"] is True and info["readers"] == [reader]
    assert f"readers:\n  {reader}\n" in out(node, "db", "info", address)
    assert "readers" not in json_out(node, "db", "info", create(node, "open", "keyvalue"))
    before = json_lines(node, "db", "list")
    assert "--private" in refused(
        node, "db", "create", "x", "--type", "events", "--reader", reader, code=2
    )
    assert "--public" in refused(
        node, "db", "create", "x", "--type", "events", "--private", "--public", code=2
    )
    assert "reader 'did:key:nope'" in refused(
        node, "db", "create", "x", "--type", "events", "--private", "--reader", "did:key:nope"
    )
    assert json_lines(node, "db", "list") == before
