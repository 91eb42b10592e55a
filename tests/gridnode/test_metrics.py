"""``GET /metrics`` scraped from live nodes, parsed strictly as the Prometheus text format
(version 0.0.4), its figures checked against the nodes' own state after writes and a sync, and
its counters checked to never go down."""

import math
import re
import time
import urllib.error
import urllib.request

import pytest

from gridnode import ops
from gridnode.api import handlers, metrics

pytestmark = pytest.mark.slow

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)$")
_VALUE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+|Inf|NaN)$")


def parse(text):
    """``{family: {"type", "help", "samples": {frozenset(labels): value}}}``; raises on anything
    the format does not allow (or that this API must not do: a sample before its TYPE, a family
    given twice, a repeated series, a counter not named ``..._total`` or negative)."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    families = {}
    current = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        assert line, f"{where}: empty line"
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name), where
            assert name not in families, f"{where}: family given twice"
            assert help_.strip(), f"{where}: empty help"
            families[name] = {"help": help_, "type": None, "samples": {}}
            current = name
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and families[name]["type"] is None, f"{where}: TYPE out of place"
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), where
            families[name]["type"] = kind
            continue
        assert not line.startswith("#"), f"{where}: a comment"
        match = _SAMPLE.match(line)
        assert match, f"{where}: not a sample"
        name, value = match.group(1), match.group(match.lastindex)
        assert name == current and families[name]["type"], f"{where}: sample of another family"
        labels = dict(re.findall(_LABEL, match.group(2) or ""))
        assert _VALUE.match(value), f"{where}: bad value {value!r}"
        key = frozenset(labels.items())
        assert key not in families[name]["samples"], f"{where}: repeated series"
        number_value = float(value.replace("Inf", "inf"))
        families[name]["samples"][key] = number_value
        if families[name]["type"] == "counter":
            assert name.endswith("_total"), f"{where}: a counter is named ..._total"
            assert number_value >= 0 and math.isfinite(number_value), where
    for name, family in families.items():
        assert family["type"] is not None, f"{name} has no TYPE"
    return families


def scrape(live):
    request = urllib.request.Request(
        live.url + "/metrics", headers={"Authorization": f"Bearer {live.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["content-type"] == metrics.CONTENT_TYPE
        return parse(answer.read().decode("utf-8"))


def value(families, family, **labels):
    return families[family]["samples"][frozenset(labels.items())]


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def assert_monotonic(before, after):
    for name, family in before.items():
        if family["type"] != "counter":
            continue
        for key, old in family["samples"].items():
            assert after[name]["samples"].get(key, 0) >= old, (name, dict(key))


def test_the_parser_refuses_what_the_format_does_not_allow():
    good = '# HELP x_total A count.\n# TYPE x_total counter\nx_total{a="b\\"c"} 3\n'
    assert value(parse(good), "x_total", a='b\\"c') == 3
    for bad in (
        good.replace("# TYPE x_total counter\n", ""),  # no type
        good.replace("} 3", "} three"),  # not a number
        good.replace('{a="b\\"c"}', '{a="b"c"}'),  # bad escaping
        good + 'x_total{a="b\\"c"} 4\n',  # a series twice
        good.replace("x_total", "x"),  # a counter not ..._total
        good.replace(" 3\n", " -3\n"),  # a negative counter
        good[:-1],  # no final newline
    ):
        with pytest.raises(AssertionError):
            parse(bad)


def test_metrics_follow_the_node(live_nodes):
    a = live_nodes("a", announce_interval=0.5)
    b = live_nodes("b", bootstrap=a.node.addrs, announce_interval=0.5)
    wait_for(lambda: a.node.peers() and b.node.peers(), "the nodes to connect")

    # Without the token: refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(a.url + "/metrics", timeout=10)
    assert refused.value.code == 401

    first = scrape(a)
    assert (
        value(first, "gridnode_info", peer_id=a.node.peer_id, version=handlers.installed_version())
        == 1
    )
    assert value(first, "gridnode_peers") == 1
    assert value(first, "gridnode_databases") == 0
    assert value(first, "gridnode_entries_applied_total", source="write") == 0
    # Files kept for catalogs (gridnode/node/files.py): none yet.
    assert value(first, "gridnode_files_held") == 0
    assert value(first, "gridnode_files_fetched_total") == 0

    # Writes on a.
    client_a, client_b = a.client, b.client
    notes = client_a.create(ops.CreateRequest("notes", "keyvalue", public=True))["address"]
    client_a.write(notes, [{"op": "put", "key": f"k{i}", "value": i} for i in range(7)])
    client_a.write(notes, [{"op": "put", "key": "k0", "value": "again"}])
    after_writes = scrape(a)
    assert_monotonic(first, after_writes)
    labels = {"address": notes, "name": "notes", "type": "keyvalue"}
    assert value(after_writes, "gridnode_database_entries", **labels) == 8
    assert value(after_writes, "gridnode_database_heads", **labels) == 1
    assert value(after_writes, "gridnode_databases") == 1
    assert value(after_writes, "gridnode_entries_applied_total", source="write") == 8
    assert value(after_writes, "gridnode_gossip_messages_published_total") >= 2  # 2 writes
    size = value(after_writes, "gridnode_storage_bytes")
    sqlite = a.node.repo.sql.path
    on_disk = sqlite.stat().st_size + (
        sqlite.with_name(sqlite.name + "-wal").stat().st_size
        if sqlite.with_name(sqlite.name + "-wal").exists()
        else 0
    )
    assert size > 0 and abs(size - on_disk) <= 1 << 20

    # b follows and pulls: its sync counters match what its node recorded of the pulls, and a's
    # served counters match what a recorded of serving them.
    client_b.follow(notes)
    wait_for(lambda: client_b.database(notes)["entries"] == 8, "b to catch up")
    wait_for(lambda: not any(s.running for s in b.node.stats.syncs.values()), "b's pulls to end")
    seen_b = scrape(b)
    syncs = [s for s in b.node.stats.syncs.values()]
    assert syncs, "b pulled"
    assert value(seen_b, "gridnode_sync_pulls_total") == sum(s.pulls for s in syncs) >= 1
    assert (
        value(seen_b, "gridnode_sync_round_trips_total")
        == sum(s.total_round_trips for s in syncs)
        >= 1
    )
    assert (
        value(seen_b, "gridnode_sync_bytes_received_total")
        == sum(s.total_bytes_received for s in syncs)
        > 0
    )
    assert value(seen_b, "gridnode_sync_bytes_sent_total") == sum(s.total_bytes_sent for s in syncs)
    applied_b = b.node.stats.counters.applied
    assert value(seen_b, "gridnode_entries_applied_total", source="sync") == applied_b["sync"]
    assert value(seen_b, "gridnode_entries_applied_total", source="gossip") == applied_b["gossip"]
    # Every one of the 8 entries came by a pull or inline in an announcement.
    assert applied_b["sync"] + applied_b["gossip"] == 8
    assert value(seen_b, "gridnode_database_entries", **labels) == 8
    seen_a = scrape(a)
    assert_monotonic(after_writes, seen_a)
    served = a.node.stats.served[b.node.peer_id]
    assert value(seen_a, "gridnode_served_streams_total") >= 1
    assert (
        value(seen_a, "gridnode_served_bytes_sent_total")
        == sum(s.bytes_sent for s in a.node.stats.served.values())
        >= served.bytes_sent
        > 0
    )
    assert value(seen_a, "gridnode_gossip_messages_received_total") == (
        a.node.stats.counters.gossip_received
    )
    # Serving b's pulls ran in a's storage worker for b, charged to b's budget (issue 18 item 8).
    assert value(seen_a, "gridnode_storage_worker_seconds_total", **{"for": "peers"}) > 0
    assert value(seen_a, "gridnode_storage_worker_seconds_total", **{"for": "local"}) > 0
    assert value(seen_a, "gridnode_budget_throttled_seconds_total") == 0
    assert value(seen_a, "gridnode_budget_peers_in_debt") == 0

    # b writes; a gets it (by gossip or a pull) and counts it where it came from.
    client_b.write(notes, [{"op": "put", "key": "from b", "value": 1}])
    wait_for(lambda: client_a.database(notes)["entries"] == 9, "a to get b's write")
    last = scrape(a)
    assert_monotonic(seen_a, last)
    assert value(last, "gridnode_database_entries", **labels) == 9
    assert (
        value(last, "gridnode_entries_applied_total", source="sync")
        + value(last, "gridnode_entries_applied_total", source="gossip")
        == 1
    )
    assert value(last, "gridnode_gossip_messages_received_total") > 0


def test_rejected_entries_are_counted_by_reason(live_nodes, tmp_path):
    """A CAR whose entry a node refuses (its author is not a writer): counted under the error's
    name, and listed in /events."""
    from gridnode.repo import Repo

    a = live_nodes("a")
    private = a.client.create(ops.CreateRequest("private", "keyvalue"))["address"]
    # Another identity writes to a copy of the same database offline: not a writer.
    car = tmp_path / "private.car"
    a.client.export(private, car)
    with Repo(tmp_path / "outsider") as outsider:
        outsider.import_car(car.read_bytes())
        db = outsider.database(private)
        from crdt.entry import create_entry

        entry = create_entry(
            outsider.keypair,
            db=db.manifest.cid,
            clock=1,
            payload={"op": "put", "key": "x", "value": 1},
        )
        from crdt.ipld.car import write_car

        forged = write_car(
            [db.manifest.cid, entry.cid],
            [(db.manifest.cid, db.manifest.block), (entry.cid, entry.block)],
        )
    before = scrape(a)
    report = a.client.import_car(forged)
    assert report["applied"] == 0 and len(report["rejected"]) == 1
    reason = report["rejected"][0]["reason"].split(":", 1)[0]
    after = scrape(a)
    assert_monotonic(before, after)
    assert value(after, "gridnode_entries_rejected_total", reason=reason) == 1
    events = a.client.request_json("GET", "/events")["events"]
    assert events[0]["kind"] == "rejected" and str(entry.cid) in events[0]["text"]
    assert events[0]["address"] == private
