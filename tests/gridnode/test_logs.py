"""Rejected entries are logged a few per database and interval, then summed up
(gridnode.logs.LogLimiter): whoever sends entries does not set the log's volume."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from gridnode.logs import LogLimiter
from gridnode.node import open_node
from gridnode.repo import Repo
from tests.gridnode.node.test_replication import make_shared


def test_limiter_lets_a_few_lines_through_then_one_summary_per_interval() -> None:
    limiter = LogLimiter(lines=3, interval=60.0)
    allowed = [limiter.allow("a", 0.0) for _ in range(100)]
    assert allowed.count(True) == 3
    assert limiter.unreported("a", 1.0) == 97
    assert [limiter.allow("a", 2.0) for _ in range(10)].count(True) == 0
    assert limiter.unreported("a", 3.0) == 0  # one summary per interval
    # Another key has its own budget.
    assert limiter.allow("b", 3.0)
    # The next interval: lines again, and the summary names what the last one held back.
    assert limiter.allow("a", 61.0)
    assert limiter.unreported("a", 61.0) == 10


def test_limiter_forgets_the_oldest_key() -> None:
    limiter = LogLimiter(lines=1, interval=60.0, max_keys=4)
    for n in range(100):
        limiter.allow(f"k{n}", 0.0)
    assert len(limiter._windows) == 4


def test_a_thousand_rejected_entries_make_a_bounded_number_of_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Repo(tmp_path / "node") as repo:
        db = repo.create_database("kv", "keyvalue")
        with caplog.at_level(logging.WARNING, logger="gridnode.repo"):
            total = 0
            for batch in range(10):
                blocks = [b"not an entry %d %d" % (batch, n) for n in range(100)]
                entries, report = db.verify_entry_blocks(blocks)
                report = db.join_entries(entries, report)
                total += len(report.rejected)
    # The reports still name every rejected block ...
    assert total == 1000
    lines = [r.getMessage() for r in caplog.records if r.name == "gridnode.repo"]
    # ... but the log holds a few lines and one summary.
    assert len(lines) <= 10, lines
    assert any("more entries rejected" in line for line in lines)
    assert sum(1 for line in lines if line.startswith("rejected ")) >= 1


def test_refused_announcements_are_logged_a_few_per_peer(tmp_path, caplog):
    dirs, address = make_shared(tmp_path, ["a"])

    async def main():
        async with open_node(dirs[0], listen=["/ip4/127.0.0.1/tcp/0"]) as a:
            validate = a.replication._validator(a.database(address))
            with caplog.at_level(logging.INFO, logger="gridnode.node.replication"):
                for n in range(1000):
                    assert not validate("mallory", b"\x00junk %d" % n)
            assert a.stats.rejected_announcements == 1000

    trio.run(main)
    lines = [r.getMessage() for r in caplog.records if "announcement" in r.getMessage()]
    assert len(lines) <= 10, lines
    assert any("more announcements refused from mallory" in line for line in lines)
