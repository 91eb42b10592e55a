"""The dashboard (``GET /dashboard``) in a real headless Chromium, against a live node that holds
databases with entries and has a second node connected: what the page shows is what the node
says of itself.

Needs Debian's ``chromium`` and ``chromium-driver`` (installed on first use when run as root on Debian,
like .ci/run does). Without them the
test fails, unless ``GRIDNODE_NO_BROWSER=1`` says to skip it.
"""

import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gridnode import ops

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def browser(tmp_path):
    if os.environ.get("GRIDNODE_NO_BROWSER") == "1":
        pytest.skip("GRIDNODE_NO_BROWSER=1")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        from tests.system_packages import install

        install("chromium", "chromium-driver")
        missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    assert not missing, f"{missing} not installed: apt-get install chromium chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def text(driver, element_id):
    return driver.find_element("id", element_id).text


def items(driver, list_id):
    """The texts of a list's items, read in one script run (the page redraws them)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' li'),"
        " (li) => li.textContent)",
        list_id,
    )


def shown_peers(driver):
    """The peer ids of the peers table, in order (its rows carry ``data-peer``)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#peers tr[data-peer] td.peer-id'),"
        " (td) => td.textContent)"
    )


def shown_databases(driver):
    """``{address: {"name", "type", "entries", "heads", "last-sync", "sync-now"}}`` as the page
    shows them, read in one script run (the page redraws its rows at every poll)."""
    return driver.execute_script(
        """
        const rows = {};
        for (const row of document.querySelectorAll("#databases tr")) {
          const cells = {};
          for (const name of ["name", "type", "entries", "heads", "last-sync", "sync-now"]) {
            cells[name] = row.querySelector("td." + name).textContent;
          }
          rows[row.dataset.address] = cells;
        }
        return rows;
        """
    )


def test_the_dashboard_shows_the_node_as_it_is(live_nodes, browser):
    a = live_nodes("a", announce_interval=0.5)
    b = live_nodes("b", bootstrap=a.node.addrs, announce_interval=0.5)
    wait_for(lambda: a.node.peers() and b.node.peers(), "the nodes to connect")
    client_a, client_b = a.client, b.client
    notes = client_a.create(ops.CreateRequest("notes", "keyvalue", public=True))["address"]
    feed = client_a.create(ops.CreateRequest("feed", "events"))["address"]
    client_a.write(notes, [{"op": "put", "key": f"k{i}", "value": i} for i in range(5)])
    client_a.write(feed, [{"op": "add", "value": i} for i in range(3)])
    client_b.follow(notes)
    client_b.write(notes, [{"op": "put", "key": "from b", "value": True}])
    wait_for(
        lambda: client_a.database(notes)["entries"] == 6 == client_b.database(notes)["entries"],
        "the two nodes to converge",
    )

    url = a.url + "/dashboard#token=" + a.token
    browser.get(url)
    wait_for(
        lambda: int(browser.execute_script("return document.body.dataset.updates || 0")),
        "the page's first update",
    )
    # The token left the address bar (it stays in the tab's sessionStorage).
    assert "token" not in browser.current_url

    assert text(browser, "peer-id") == a.node.peer_id
    assert text(browser, "identity") == a.node.repo.did
    assert items(browser, "addrs") == a.node.addrs
    assert int(text(browser, "peer-count")) == len(a.node.peers()) == 1
    assert shown_peers(browser) == [b.node.peer_id]

    def own_databases():
        def read():
            out = {}
            for address, name, store in a.node.repo.databases():
                db = a.node.repo.database(address)
                out[address] = {
                    "name": name,
                    "type": store,
                    "entries": str(len(db)),
                    "heads": str(len(db.heads)),
                }
            return out

        return a.read(read)

    own = own_databases()
    assert set(own) == {notes, feed}
    assert own[notes]["entries"] == "6" and own[feed]["entries"] == "3"
    shown = shown_databases(browser)
    assert set(shown) == set(own)
    for address, figures in own.items():
        for key, value in figures.items():
            assert shown[address][key] == value, (address, key)
    assert int(text(browser, "database-count")) == 2

    # A new write shows up at the next poll, with the node's own count.
    client_a.write(feed, [{"op": "add", "value": "more"}])
    wait_for(lambda: shown_databases(browser)[feed]["entries"] == "4", "the new entry")
    assert own_databases()[feed]["entries"] == "4"

    # b's node: it pulled "notes" from a, so the page names a as the last sync.
    browser.get(b.url + "/dashboard#token=" + b.token)
    wait_for(
        lambda: int(browser.execute_script("return document.body.dataset.updates || 0")), "b's page"
    )
    assert text(browser, "peer-id") == b.node.peer_id
    row = wait_for(lambda: shown_databases(browser).get(notes), "b's notes row")
    assert row["entries"] == "6"
    syncs = [s for (peer, address), s in b.node.stats.syncs.items() if address == notes]
    if syncs:
        assert a.node.peer_id[:16] in row["last-sync"]

    # The recent rejections and errors: as many rows as the node remembers (none here, or a
    # few failed dials, depending on timing: the count is the node's).
    events = browser.execute_script(
        'return document.querySelectorAll("#events tr[data-kind]").length'
    )
    assert events == min(50, len(b.node.stats.events))


def test_the_page_needs_the_token_for_its_data(live_nodes, browser):
    a = live_nodes("a")
    # The page itself is served without the token; its data is not.
    with urllib.request.urlopen(a.url + "/dashboard", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in answer.headers["content-security-policy"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(a.url + "/status", timeout=10)
    assert refused.value.code == 401

    browser.get(a.url + "/dashboard")
    wait_for(lambda: browser.find_element("id", "login").is_displayed(), "the token form")
    assert text(browser, "peer-id") == ""
    # A wrong token is refused, the right one opens it.
    browser.find_element("id", "token-input").send_keys("not-the-token\n")
    wait_for(lambda: "refused" in text(browser, "problem"), "the refusal")
    assert text(browser, "peer-id") == ""
    browser.find_element("id", "token-input").clear()
    browser.find_element("id", "token-input").send_keys(a.token + "\n")
    wait_for(lambda: text(browser, "peer-id") == a.node.peer_id, "the node's figures")
    assert not browser.find_element("id", "login").is_displayed()


def screenshot(driver, tmp_path, name):
    """A screenshot of the page, for people: into ``$GRIDNODE_ARTIFACTS`` when CI sets it (a
    directory it keeps), else next to the test's other files. Cheap: one PNG of the window."""
    folder = os.environ.get("GRIDNODE_ARTIFACTS")
    target = Path(folder) if folder else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1280, 1600)
    path = target / f"dashboard-{name}.png"
    assert driver.save_screenshot(str(path)), path
    assert path.stat().st_size > 1000
    return path


def chart(driver, name):
    """``{"points", "total", "vertices", "width", "height", "highest", "shown"}`` of a chart as
    drawn (``highest``: the smallest y of its line; 58 is the zero line)."""
    return driver.execute_script(
        """
        const svg = document.getElementById("chart-" + arguments[0]);
        const line = svg.querySelector("polyline");
        const box = line ? line.getBBox() : { width: 0, height: 0 };
        return {
          points: Number(svg.dataset.points || 0),
          total: Number(svg.dataset.total || 0),
          vertices: line ? line.points.numberOfItems : 0,
          width: box.width,
          height: box.height,
          highest: line ? Math.min(...Array.from(line.points, (p) => p.y)) : 60,
          shown: document.getElementById("total-" + arguments[0]).textContent,
        };
        """,
        name,
    )


def states(driver, table):
    """``{address: (data-state, state text)}`` of the databases or catalogs table."""
    return driver.execute_script(
        """
        const out = {};
        for (const row of document.querySelectorAll("#" + arguments[0] + " tr[data-address]")) {
          out[row.dataset.address] = [row.dataset.state, row.querySelector("td.state").textContent];
        }
        return out;
        """,
        table,
    )


def history_total(status, name):
    points = status["history"]["points"]
    return points[-1][name] if name == "peers" else sum(p[name] for p in points)


def test_the_operators_page_states_charts_and_peers_are_the_nodes_own(
    live_nodes, browser, tmp_path
):
    a = live_nodes("a", announce_interval=0.5)
    b = live_nodes("b", bootstrap=a.node.addrs, announce_interval=0.5)
    wait_for(lambda: a.node.peers() and b.node.peers(), "the nodes to connect")
    notes = a.client.create(ops.CreateRequest("notes", "keyvalue", public=True))["address"]
    feed = a.client.create(ops.CreateRequest("feed", "events"))["address"]
    a.client.write(notes, [{"op": "put", "key": f"k{i}", "value": i} for i in range(5)])
    a.client.write(feed, [{"op": "add", "value": i} for i in range(3)])
    b.client.follow(notes)
    wait_for(lambda: b.client.database(notes)["entries"] == 5, "b to pull what a wrote", timeout=30)

    browser.get(a.url + "/dashboard#token=" + a.token)
    wait_for(lambda: int(browser.execute_script("return document.body.dataset.updates || 0")), "a")

    # The charts: drawn (a polyline with vertices, wider than nothing), their figures the node's.
    for name in ("entries_applied", "bytes_in", "bytes_out", "peers"):
        drawn = chart(browser, name)
        assert drawn["points"] >= 1 and drawn["vertices"] == 2 * drawn["points"], (name, drawn)
        assert drawn["width"] > 0, (name, drawn)
    # Every entry a applied is within the last hour: the chart's total is the node's counter.
    applied = sum(a.node.stats.counters.applied.values())
    assert applied == 8
    wait_for(lambda: chart(browser, "entries_applied")["total"] == applied, "a's entries chart")
    assert chart(browser, "entries_applied")["shown"] == "8"
    assert chart(browser, "entries_applied")["highest"] < 58  # drawn above the zero line
    wait_for(lambda: chart(browser, "peers")["total"] == len(a.node.peers()) == 1, "peers chart")
    # Bytes move with every anti-entropy pull: the page shows what the node said at its poll.
    for name in ("bytes_in", "bytes_out"):
        wait_for(
            lambda n=name: chart(browser, n)["total"] == history_total(a.client.status(), n),
            f"a's {name} chart to equal a's /status",
        )
    assert chart(browser, "bytes_out")["total"] > 0  # a served b's pull

    # Peers: address and latency, as the node knows them.
    b_id = b.node.peer_id

    def peer_row():
        return browser.execute_script(
            """
            const row = document.querySelector('#peers tr[data-peer="' + arguments[0] + '"]');
            if (!row) return null;
            const cell = row.querySelector("td.latency");
            return {
              ms: cell.dataset.ms === undefined ? null : Number(cell.dataset.ms),
              text: cell.textContent,
              addrs: Array.from(row.querySelectorAll("ul.addrs li"), (li) => li.textContent),
            };
            """,
            b_id,
        )

    def latency_matches():
        row = peer_row()
        own = a.node.history.latency.get(b_id)
        return row and own is not None and row["ms"] == round(own, 3)

    wait_for(latency_matches, "b's latency as a measured it")
    assert peer_row()["text"].endswith(" ms")
    wait_for(lambda: peer_row()["addrs"] == a.node.peer_addrs(b_id), "b's addresses")

    # States: a holds what it wrote, nothing says it is behind.
    shown = states(browser, "databases")
    assert shown == {notes: ["in-sync", "in sync"], feed: ["in-sync", "in sync"]}
    assert browser.find_element("id", "overall").text == "\u2014 up to date"

    # What this branch's node does not report yet is said, not invented; once it does (storage,
    # catalogs, replicas: docs/http.md), the page shows the node's figures.
    status = a.client.status()
    storage_cell = browser.find_element("id", "storage")
    if "storage" in status:
        used = browser.execute_script("return document.getElementById('storage').dataset.used")
        wait_for(
            lambda: (
                int(
                    browser.execute_script("return document.getElementById('storage').dataset.used")
                )
                == a.client.status()["storage"]["used"]
            ),
            "the storage figure",
        )
        assert used is not None
    else:
        assert storage_cell.text == "not reported by this node"
    if "catalogs" not in status:
        assert text(browser, "catalogs") == "not reported by this node"
    rows = {r["address"]: r for r in status["databases"]}
    if "replicas" in rows[notes]:
        replicas = rows[notes]["replicas"]
        cell = browser.execute_script(
            "return document.querySelector('#databases tr[data-address=\"' + arguments[0]"
            " + '\"] td.replicas').textContent",
            notes,
        )
        assert cell == f"{replicas['holders']} ({replicas['in_sync']} in sync)"
    # Files kept for catalogs and pinLinks databases (gridnode/node/files.py): none here.
    wait_for(
        lambda: browser.find_element("id", "files").text.startswith(
            "0 held for catalogs and databases"
        ),
        "the files line",
    )
    assert browser.execute_script("return document.getElementById('files').dataset.held") == "0"
    screenshot(browser, tmp_path, "node-a")

    # b: it pulled "notes", so its charts show bytes received and entries applied.
    browser.get(b.url + "/dashboard#token=" + b.token)
    wait_for(lambda: int(browser.execute_script("return document.body.dataset.updates || 0")), "b")
    wait_for(
        lambda: (
            chart(browser, "entries_applied")["total"]
            == sum(b.node.stats.counters.applied.values())
            == 5
        ),
        "b's entries chart",
    )
    wait_for(
        lambda: (
            chart(browser, "bytes_in")["total"] == history_total(b.client.status(), "bytes_in") > 0
        ),
        "b's bytes received",
    )
    assert states(browser, "databases") == {notes: ["in-sync", "in sync"]}


def test_the_page_states_from_replicas_catalogs_and_storage(live_nodes, browser, tmp_path):
    """The keys other rooms add to /status (catalogs, storage, replicas per database: the shapes
    in docs/http.md), given to the page's own drawing code: what an operator reads."""
    a = live_nodes("a")
    browser.get(a.url + "/dashboard#token=" + a.token)
    wait_for(lambda: int(browser.execute_script("return document.body.dataset.updates || 0")), "a")
    browser.execute_script("clearInterval(poller)")

    def state(db, rate=0):
        return browser.execute_script("return dbState(arguments[0], arguments[1])", db, rate)

    def db(entries, newest=None, running=False, **more):
        row = {"address": "/gridnode/x", "entries": entries, "replicating": True, **more}
        row["syncs"] = [
            {"peer": "p", "running": running, "seconds_ago": 1, "error": None, "applied": 0}
        ]
        if newest is not None:
            row["replicas"] = {"holders": 6, "in_sync": 4, "behind": {}, "newest_entries": newest}
        return row

    assert state(db(10, 10))["text"] == "in sync"
    assert state(db(12, 10))["text"] == "in sync"  # ahead of what others state: nothing to get
    assert state(db(7, 10))["text"] == "behind by 3 entries"
    assert state(db(430, 1000, running=True), 1234)["text"] == (
        "syncing: 43%, 1.2k entries/s, ETA 1 s"
    )
    assert state(db(430, 1000, running=True), 5)["text"] == "syncing: 43%, 5 entries/s, ETA 2 min"
    assert state(db(430, 1000, running=True))["text"] == "syncing: 43%"
    assert state(db(4, running=True), 2.5)["text"] == "syncing: 2.5 entries/s"
    # A periodic pull that brings nothing new is no reason to say "syncing".
    assert state(db(4, running=True))["text"] == "in sync"
    assert state(db(4))["text"] == "in sync"
    assert state({**db(4), "replicating": False})["text"] == "not replicated"
    failed = db(4)
    failed["syncs"][0]["error"] = "timed out"
    assert state(failed)["text"] == "last pull failed: timed out"

    # A whole status as the merged node gives it: the page's tables and headline.
    status = a.client.status()
    one, two, three = (f"/gridnode/bafy{n}" for n in ("one", "two", "three"))
    catalog = "/gridnode/bafycatalog"
    base = {"type": "keyvalue", "head_count": 1, "name": "n", "catalog": [catalog]}
    status["databases"] = [
        {**base, **db(10, 10), "address": one, "name": "one"},
        {**base, **db(7, 10), "address": two, "name": "two"},
    ]
    status["catalogs"] = [
        {"address": catalog, "name": "project", "databases": [one, two], "peers": ["/ip4/x"]},
        {"address": catalog + "2", "name": "more", "databases": [one, three], "peers": []},
        {"address": catalog + "3", "name": "done", "databases": [one], "peers": []},
    ]
    status["storage"] = {"used": 3 * 1024 * 1024, "max": 4 * 1024 * 1024, "full": False}
    browser.execute_script("showStatus(arguments[0])", status)
    assert states(browser, "databases") == {
        one: ["in-sync", "in sync"],
        two: ["behind", "behind by 3 entries"],
    }
    assert states(browser, "catalogs") == {
        catalog: ["behind", "1 behind by 3 entries"],
        catalog + "2": ["missing", "holds 1 of 2 databases"],
        catalog + "3": ["in-sync", "in sync"],
    }
    assert text(browser, "catalog-count") == "3"
    replicas = browser.execute_script(
        "return Array.from(document.querySelectorAll('#databases td.replicas'),"
        " (td) => td.textContent)"
    )
    assert replicas == ["6 (4 in sync)", "6 (4 in sync)"]
    assert text(browser, "storage") == "3.0 MiB of 4.0 MiB (75%)"
    assert browser.find_element("id", "overall").text == "\u2014 1 behind"
    screenshot(browser, tmp_path, "states")

    status["storage"] = {"used": 4 * 1024 * 1024, "max": 4 * 1024 * 1024, "full": True}
    status["databases"][1]["syncs"][0]["running"] = True
    browser.execute_script("showStatus(arguments[0])", status)
    assert text(browser, "storage") == (
        "4.0 MiB of 4.0 MiB (100%) \u2014 full: no more databases are followed"
    )
    assert browser.find_element("id", "overall").text == "\u2014 storage full"
    assert states(browser, "catalogs")[catalog] == ["syncing", "syncing 1 of 2: 85%"]
    status["storage"] = {"used": 5000, "max": 0, "full": False}
    browser.execute_script("showStatus(arguments[0])", status)
    assert text(browser, "storage") == "4.9 KiB used (no bound)"
