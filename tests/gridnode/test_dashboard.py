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
