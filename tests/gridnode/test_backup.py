"""``gridnode backup run|list|restore`` (gridnode/backup.py): encrypted backups recorded in the
backups database, kept per --keep, restored and checked against their record; the schedule on
trio's MockClock."""

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import trio
import trio.testing

from gridnode.age import generate_identity
from gridnode.backup import (
    BACKUPS_DB,
    BackupRecord,
    format_time,
    parse_duration,
    records,
    schedule,
)
from gridnode.errors import BackupError, InvalidRequest
from gridnode.ops import RepoEndpoint
from gridnode.repo import Repo
from tests.gridnode.files.test_cli_files import refused, run, running

AGE = shutil.which("age")
MARKER = b"BACKUP-PLAINTEXT-MARKER-91c2"


@pytest.fixture(params=["offline", "running"])
def node(request, tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    with running(data_dir, request.param):
        yield data_dir


@pytest.fixture
def key(tmp_path):
    identity = generate_identity()
    path = tmp_path / "key.txt"
    path.write_text(f"# created: test\n# public key: {identity.recipient()}\n{identity.encode()}\n")
    return str(identity.recipient()), path


def _plain(size):
    return MARKER + hashlib.shake_256(b"backup %d" % size).digest(size) + MARKER


def _json_lines(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _command_writing(path):
    """A shell command that writes ``path``'s bytes to stdout in pieces (as pg_dump would)."""
    return f"{sys.executable} -c \"import shutil,sys; shutil.copyfileobj(open('{path}','rb'), sys.stdout.buffer, 4096)\""


def test_a_file_backup_is_recorded_listed_and_restored(node, key, tmp_path):
    recipient, key_file = key
    source = tmp_path / "data.bin"
    source.write_bytes(_plain(200_000))
    made = _json_lines(
        run(node, "backup", "run", "db", "--to", recipient, "--file", str(source), "--json")
    )
    assert len(made) == 1
    record = made[0]
    assert record["name"] == "db"
    assert record["size"] == source.stat().st_size
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record["pruned"] == []
    listed = _json_lines(run(node, "backup", "list", "--json"))
    assert [(r["name"], r["cid"], r["time"]) for r in listed] == [
        ("db", record["cid"], record["time"])
    ]
    out = tmp_path / "restored.bin"
    answer = json.loads(
        run(
            node, "backup", "restore", "db", "-o", str(out), "--identity", str(key_file), "--json"
        ).stdout
    )
    assert answer["verified"] is True
    assert out.read_bytes() == source.read_bytes()
    # The ciphertext is what is stored and pinned: no plaintext byte in the data directory.
    pins = _json_lines(run(node, "pin", "ls", "--json"))
    assert [p["cid"] for p in pins if p["name"].startswith("backup:db:")] == [record["cid"]]
    stored = b"".join(p.read_bytes() for p in sorted(node.rglob("*")) if p.is_file())
    assert MARKER not in stored


def test_age_decrypts_a_backup_read_with_cat(node, key, tmp_path):
    if AGE is None:
        pytest.skip("Debian's age is not installed (apt-get install age; .ci/run installs it)")
    recipient, key_file = key
    source = tmp_path / "data.bin"
    source.write_bytes(_plain(70_000))
    record = _json_lines(
        run(node, "backup", "run", "db", "--to", recipient, "--file", str(source), "--json")
    )[0]
    ciphertext = run(node, "cat", record["cid"]).stdout_bytes
    plain = subprocess.run(
        [AGE, "-d", "-i", str(key_file)], input=ciphertext, capture_output=True, check=True
    ).stdout
    assert plain == source.read_bytes()


def test_a_command_is_streamed_and_keep_unpins_the_oldest(node, key, tmp_path):
    recipient, key_file = key
    made = []
    for i in range(4):
        source = tmp_path / f"dump{i}.bin"
        source.write_bytes(_plain(100_000 + i))
        made.append(
            _json_lines(
                run(
                    node,
                    "backup",
                    "run",
                    "pg",
                    "--to",
                    recipient,
                    "--command",
                    _command_writing(source),
                    "--keep",
                    "2",
                    "--json",
                )
            )[0]
        )
        assert made[-1]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    # Each run past the second unpinned one: the records and pins left are the newest two.
    assert [len(m["pruned"]) for m in made] == [0, 0, 1, 1]
    assert made[2]["pruned"][0]["cid"] == made[0]["cid"]
    listed = _json_lines(run(node, "backup", "list", "pg", "--json"))
    assert [r["cid"] for r in listed] == [made[2]["cid"], made[3]["cid"]]
    pinned = {p["cid"] for p in _json_lines(run(node, "pin", "ls", "--json"))}
    assert made[3]["cid"] in pinned and made[2]["cid"] in pinned
    assert made[0]["cid"] not in pinned and made[1]["cid"] not in pinned
    # NAME restores the newest.
    out = tmp_path / "latest.bin"
    run(node, "backup", "restore", "pg", "-o", str(out), "--identity", str(key_file))
    assert out.read_bytes() == (tmp_path / "dump3.bin").read_bytes()


def test_a_failing_command_keeps_nothing(node, key):
    recipient, _ = key
    line = refused(
        node, "backup", "run", "db", "--to", recipient, "--command", "echo partial; exit 3"
    )
    assert "status 3" in line
    assert _json_lines(run(node, "backup", "list", "--json")) == []
    assert [
        p for p in _json_lines(run(node, "pin", "ls", "--json")) if p["name"].startswith("backup:")
    ] == []


def test_restore_refuses_a_wrong_key_and_a_record_it_does_not_match(key, tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    recipient, key_file = key
    source = tmp_path / "data.bin"
    source.write_bytes(_plain(5000))
    record = _json_lines(
        run(data_dir, "backup", "run", "db", "--to", recipient, "--file", str(source), "--json")
    )[0]
    out = tmp_path / "out.bin"
    other = tmp_path / "other.txt"
    other.write_text(generate_identity().encode() + "\n")
    refused(data_dir, "backup", "restore", "db", "-o", str(out), "--identity", str(other))
    assert not out.exists()
    # A record naming the same ciphertext with another digest: the restore writes nothing.
    with Repo(data_dir) as repo:
        endpoint = RepoEndpoint(repo)
        address = records(endpoint)[0].database
        forged = BackupRecord(
            "forged", records(endpoint)[0].cid, record["size"], format_time(2e9), "0" * 64
        )
        endpoint.write(address, [{"op": "put", "doc": forged.to_doc()}])
    line = refused(
        data_dir, "backup", "restore", "forged", "-o", str(out), "--identity", str(key_file)
    )
    assert "not what its record says" in line
    assert not out.exists() and list(tmp_path.glob(".out.bin*")) == []
    # An existing output is never replaced without --force.
    out.write_bytes(b"keep me")
    refused(data_dir, "backup", "restore", "db", "-o", str(out), "--identity", str(key_file))
    assert out.read_bytes() == b"keep me"
    run(data_dir, "backup", "restore", "db", "-o", str(out), "--identity", str(key_file), "--force")
    assert out.read_bytes() == source.read_bytes()


def test_restore_by_cid_without_a_record_is_not_verified(key, tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    recipient, key_file = key
    source = tmp_path / "data.bin"
    source.write_bytes(b"by cid")
    cid = run(data_dir, "add", "-q", "--encrypt-to", recipient, str(source)).stdout.strip()
    out = tmp_path / "out.bin"
    answer = json.loads(
        run(
            data_dir,
            "backup",
            "restore",
            cid,
            "-o",
            str(out),
            "--identity",
            str(key_file),
            "--json",
        ).stdout
    )
    assert answer["verified"] is False and answer["record"] is None
    assert out.read_bytes() == b"by cid"
    refused(
        data_dir,
        "backup",
        "restore",
        "nosuchname",
        "-o",
        str(tmp_path / "x"),
        "--identity",
        str(key_file),
    )


def test_the_backups_database_is_one_documents_database_created_once(key, tmp_path):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    recipient, _ = key
    source = tmp_path / "data.bin"
    source.write_bytes(b"x")
    for name in ("a", "b"):
        run(data_dir, "backup", "run", name, "--to", recipient, "--file", str(source))
    with Repo(data_dir) as repo:
        found = [(n, t) for _a, n, t in repo.databases() if n == BACKUPS_DB]
    assert found == [(BACKUPS_DB, "documents")]


def test_arguments_are_checked_before_anything_runs(tmp_path, key):
    data_dir = tmp_path / "node"
    run(data_dir, "init")
    recipient, _ = key
    marker = tmp_path / "ran"
    for args in (
        ["db", "--to", recipient],  # neither --command nor --file
        ["db", "--to", recipient, "--command", "true", "--file", "x"],
        ["bad/name", "--to", recipient, "--command", f"touch {marker}"],
        ["db", "--to", recipient, "--command", f"touch {marker}", "--every", "soon"],
    ):
        run(data_dir, "backup", "run", *args, code=2)
    refused(data_dir, "backup", "run", "db", "--to", "age1nope", "--command", f"touch {marker}")
    assert not marker.exists()


def test_durations_and_names():
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1d") == 86400
    for bad in ("", "1", "h", "1h 30m", "0s", "-1h", "1w"):
        with pytest.raises(InvalidRequest):
            parse_duration(bad)
    assert format_time(0) == "1970-01-01T00:00:00.000000Z"
    assert format_time(1.5) < format_time(10)


# -- the schedule, on trio's MockClock ---------------------------------------------------------


def _on_mock_clock(work):
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(work, clock=clock)


def test_the_schedule_runs_on_its_period_without_drift():
    started = []

    async def once():
        started.append(trio.current_time())
        await trio.sleep(100)  # a backup that takes a while

    async def work():
        t0 = trio.current_time()
        await schedule(3600, once, failed=pytest.fail, runs=4)
        assert [round(t - t0) for t in started] == [0, 3600, 7200, 10800]

    _on_mock_clock(work)


def test_a_run_longer_than_the_period_skips_the_missed_slots():
    started = []

    async def once():
        started.append(trio.current_time())
        if len(started) == 2:
            await trio.sleep(2.5 * 3600)

    async def work():
        t0 = trio.current_time()
        await schedule(3600, once, failed=pytest.fail, runs=3)
        assert [round(t - t0) for t in started] == [0, 3600, 4 * 3600]

    _on_mock_clock(work)


def test_a_failed_run_is_reported_and_the_schedule_goes_on():
    started, failures = [], []

    async def once():
        started.append(trio.current_time())
        if len(started) == 1:
            raise BackupError("postgres is down")

    async def work():
        t0 = trio.current_time()
        await schedule(60, once, failed=failures.append, runs=3)
        assert [round(t - t0) for t in started] == [0, 60, 120]

    _on_mock_clock(work)
    assert [str(f) for f in failures] == ["postgres is down"]


def test_the_schedule_runs_until_cancelled_and_sleeps_between_runs():
    started = []

    async def once():
        started.append(trio.current_time())

    async def work():
        t0 = trio.current_time()
        with trio.move_on_after(10 * 3600 + 1):
            await schedule(3600, once, failed=pytest.fail)
        assert len(started) == 11 and round(started[-1] - t0) == 36000

    _on_mock_clock(work)


# -- the record format (docs/spec.md, "Backup records") --------------------------------------

VECTOR = (
    "a2626f706370757463646f63a7635f6964781e70672f323032362d31322d30355431363a30303a30302e3030"
    "303030305a63636964d82a58250001551220cb4976a0c6713f60cd63fd9ba6867220f84cd4904731e1c075e3"
    "5ab0b6a48b2e646e616d656270676473697a651a001000006474696d65781b323032362d31322d3035543136"
    "3a30303a30302e3030303030305a66736368656d610166736861323536784065336230633434323938666331"
    "633134396166626634633839393666623932343237616534316534363439623933346361343935393931623738"
    "353262383535"
)


def test_the_record_format_vector():
    from crdt.ipld import dagcbor
    from crdt.ipld.cid import CID

    cid = CID.for_block(b"age-encryption.org/v1 example", "raw")
    assert str(cid) == "bafkreigljf3kbrtrh5qm2y75totim4ra7bgnjechghq4a5pdlkylnjelfy"
    digest = hashlib.sha256(b"").hexdigest()
    record = BackupRecord("pg", cid, 1 << 20, format_time(1796486400), digest)
    encoded = dagcbor.encode({"op": "put", "doc": record.to_doc()})
    assert encoded.hex() == VECTOR
    decoded = dagcbor.decode(bytes.fromhex(VECTOR))
    assert BackupRecord.from_doc(decoded["doc"]) == record


@pytest.mark.parametrize(
    "change",
    [
        {"schema": 2},
        {"name": "a/b"},
        {"_id": "other/2026-12-05T16:00:00.000000Z"},
        {"size": -1},
        {"size": 1.0},
        {"time": "2026-12-05 16:00:00"},
        {"sha256": "E3B0" + "0" * 60},
        {"cid": "bafkreigljf3kbrtrh5qm2y75totim4ra7bgnjechghq4a5pdlkylnjelfy"},
    ],
)
def test_a_record_breaking_a_rule_is_skipped(change):
    from crdt.ipld.cid import CID

    cid = CID.for_block(b"x", "raw")
    doc = BackupRecord("pg", cid, 1, format_time(0), "0" * 64).to_doc()
    assert BackupRecord.from_doc(doc) is not None
    assert BackupRecord.from_doc({**doc, **change}) is None


def test_backup_run_every_keeps_running_until_stopped(tmp_path, key):
    """The real command with --every 1s (a subprocess, the real clock): backups every second, a
    failing one said on stderr without stopping the schedule, --keep applied; SIGTERM stops it
    cleanly (exit 0)."""
    import os
    import selectors
    import signal
    import time

    data_dir = tmp_path / "node"
    run(data_dir, "init")
    recipient, _ = key
    flag = tmp_path / "fail-once"
    flag.write_text("")
    # The first backup fails (the flag is there, then removed), the next ones succeed.
    command = f"if [ -e {flag} ]; then rm {flag}; exit 4; fi; echo dump"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridnode.cli",
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            "backup",
            "run",
            "db",
            "--to",
            recipient,
            "--command",
            command,
            "--every",
            "1s",
            "--keep",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    made = []
    deadline = time.monotonic() + 60
    try:
        # Until three backups are printed (a loaded machine is slow to start Python).
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while len(made) < 3 and time.monotonic() < deadline:
                if selector.select(timeout=1.0):
                    line = process.stdout.readline().decode()
                    if not line:
                        break
                    if line.startswith("backup db "):
                        made.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert len(made) == 3, (made, out, err)
    assert process.returncode == 0 and "stopping" in err.decode(), err
    assert "status 4" in err.decode() and "Traceback" not in err.decode()
    assert len(_json_lines(run(data_dir, "backup", "list", "db", "--json"))) == 2


# -- the encrypted backups database: readers, catalogs, blind nodes ----------------------------


def _copy_backups_database(source_dir, address, target_dir, tmp_path):
    """``target_dir`` gets the backups database as a replica would (a CAR of its blocks)."""
    car = tmp_path / "backups.car"
    with Repo(source_dir) as source:
        source.database(address).export_car(car)
    with Repo(target_dir) as target:
        report = target.import_car(car.read_bytes())
        assert not report.rejected


def test_the_backups_database_is_encrypted_for_this_node_and_its_readers(key, tmp_path):
    recipient, key_file = key
    data_dir, reader_dir, other_dir = tmp_path / "node", tmp_path / "reader", tmp_path / "other"
    for d in (data_dir, reader_dir, other_dir):
        run(d, "init")
    with Repo(reader_dir) as r, Repo(other_dir) as o, Repo(data_dir) as me:
        reader, other, own = r.did, o.did, me.did
    source = tmp_path / "data.bin"
    source.write_bytes(_plain(3000))
    name = "secret-name-7c1e"
    first = _json_lines(
        run(
            data_dir,
            "backup",
            "run",
            name,
            "--to",
            recipient,
            "--file",
            str(source),
            "--reader",
            reader,
            "--json",
        )
    )[0]
    address = first["database"]
    with Repo(data_dir) as repo:
        db = repo.database(address)
        assert db.encrypted and not db.blind
        assert db.readers() == sorted([own, reader])
    # A reader given later is added (the current key wrapped for it); none is removed.
    run(
        data_dir, "backup", "run", name, "--to", recipient, "--file", str(source), "--reader", other
    )
    with Repo(data_dir) as repo:
        assert repo.database(address).readers() == sorted([own, reader, other])
        entries = len(repo.database(address))
    # Readers already given are not wrapped for again: a run is one more entry, its record.
    run(
        data_dir,
        "backup",
        "run",
        name,
        "--to",
        recipient,
        "--file",
        str(source),
        "--reader",
        other,
        "--reader",
        reader,
    )
    with Repo(data_dir) as repo:
        assert len(repo.database(address)) == entries + 1
    # A reader's node reads the records (and restores with the age identity)...
    _copy_backups_database(data_dir, address, reader_dir, tmp_path)
    listed = _json_lines(run(reader_dir, "backup", "list", "--json"))
    assert [r["name"] for r in listed] == [name] * 3 and listed[0]["cid"] == first["cid"]
    # ...a node without the key holds them blind: no record readable, said in one line.
    blind_dir = tmp_path / "blind"
    run(blind_dir, "init")
    _copy_backups_database(data_dir, address, blind_dir, tmp_path)
    line = refused(blind_dir, "backup", "list")
    assert "blind" in line and address in line and "reader" in line
    line = refused(
        blind_dir, "backup", "restore", name, "-o", str(tmp_path / "x"), "--identity", str(key_file)
    )
    assert "blind" in line and not (tmp_path / "x").exists()
    stored = b"".join(p.read_bytes() for p in sorted(blind_dir.rglob("*")) if p.is_file())
    for secret in (name.encode(), first["sha256"].encode(), first["time"].encode()):
        assert secret not in stored
    # An invalid reader is refused before the command runs.
    marker = tmp_path / "ran"
    result = run(
        data_dir,
        "backup",
        "run",
        "db",
        "--to",
        recipient,
        "--command",
        f"touch {marker}",
        "--reader",
        "did:key:nope",
        code=2,
    )
    assert "reader 'did:key:nope'" in result.stderr and not marker.exists()


def test_a_catalog_lists_the_backups_and_keep_takes_them_off(node, key, tmp_path):
    recipient, _ = key
    catalog = run(node, "catalog", "create", "community").stdout.strip()
    made = []
    for i in range(3):
        source = tmp_path / f"dump{i}"
        source.write_bytes(_plain(1000 + i))
        ref = catalog if i else "community"  # the catalog's address, or its name
        made.append(
            _json_lines(
                run(
                    node,
                    "backup",
                    "run",
                    "pg",
                    "--to",
                    recipient,
                    "--file",
                    str(source),
                    "--keep",
                    "2",
                    "--catalog",
                    ref,
                    "--json",
                )
            )[0]
        )
    listing = json.loads(run(node, "catalog", "show", catalog, "--json").stdout)
    assert [d["address"] for d in listing["databases"]] == [made[0]["database"]]
    # The kept backups' files, with nothing about them (no name, no description).
    assert sorted(f["cid"] for f in listing["files"]) == sorted(m["cid"] for m in made[1:])
    assert {(f["name"], f["description"]) for f in listing["files"]} == {("", "")}
    # A database that is not a catalog is refused before anything is made.
    plain = run(node, "db", "create", "plain", "--type", "keyvalue").stdout.strip()
    line = refused(
        node, "backup", "run", "pg", "--to", recipient, "--file", str(source), "--catalog", plain
    )
    assert "not a catalog" in line
    assert len(_json_lines(run(node, "backup", "list", "--json"))) == 2
