"""Who holds what, over the API and the command line: ``GET /db/{db}/replicas``, the
``replicas`` of each ``/status`` row and ``gridnode replicas ADDRESS``, on real nodes on
127.0.0.1 (a serving its API, b and c replicas of its database)."""

import json
from contextlib import AsyncExitStack

import trio
from click.testing import CliRunner

from gridnode.cli import main as cli
from gridnode.node import open_node
from tests.gridnode.node.test_replication import LOOPBACK, converged, make_shared
from tests.gridnode.test_api import call, serving


def test_replicas_over_the_api_and_the_cli(tmp_path):
    dirs, address = make_shared(tmp_path, ["a", "b", "c"])

    async def main():
        async with AsyncExitStack() as stack:
            a, client = await stack.enter_async_context(serving(dirs[0], announce_interval=0.5))
            b, c = [
                await stack.enter_async_context(
                    open_node(d, listen=LOOPBACK, bootstrap=a.addrs, announce_interval=0.5)
                )
                for d in dirs[1:]
            ]
            await a.write(address, [{"op": "put", "key": f"k{i}", "value": i} for i in range(7)])
            await converged([a, b, c], address)
            with trio.fail_after(20):
                while True:
                    found = await call(client.replicas, "shared")
                    if found["in_sync"] == 2:
                        break
                    await trio.sleep(0.1)
            assert found["address"] == address and not found["private"]
            assert (found["holders"], found["newest_entries"], found["entries"]) == (2, 7, 7)
            assert found["behind"] == {}
            assert sorted(p["peer_id"] for p in found["peers"]) == sorted([b.peer_id, c.peer_id])
            status = await call(client.status)
            (row,) = [r for r in status["databases"] if r["address"] == address]
            assert row["replicas"] == {
                "holders": 2,
                "in_sync": 2,
                "behind": {},
                "newest_entries": 7,
            }

            runner = CliRunner()

            def invoke(*args):
                return runner.invoke(cli, ["--data-dir", str(dirs[0]), *args])

            shown = await trio.to_thread.run_sync(invoke, "status")
            assert shown.exit_code == 0, shown.output
            assert "replicas" in shown.output and "2 (2 in sync)" in shown.output

            text = await trio.to_thread.run_sync(invoke, "replicas", address)
            assert text.exit_code == 0, text.output
            assert "replicas: 2 hold it, 2 in sync with the newest heads (7 entries), 0 behind" in (
                text.output
            )
            assert b.peer_id in text.output and "in sync" in text.output
            as_json = await trio.to_thread.run_sync(invoke, "replicas", "shared", "--json")
            assert json.loads(as_json.output)["holders"] == 2
            enough = await trio.to_thread.run_sync(
                invoke, "replicas", "shared", "--min-in-sync", "2"
            )
            assert enough.exit_code == 0, enough.output
            short = await trio.to_thread.run_sync(
                invoke, "replicas", "shared", "--min-in-sync", "3"
            )
            assert short.exit_code == 1
            assert short.output.splitlines()[-1] == (
                "error: 2 replicas in sync with the newest heads, fewer than 3"
            )
            unknown = await trio.to_thread.run_sync(invoke, "replicas", "nosuch")
            assert unknown.exit_code == 1
            assert unknown.output.startswith("error: ") and "Traceback" not in unknown.output

    trio.run(main)


def test_replicas_needs_a_running_node(tmp_path):
    dirs, address = make_shared(tmp_path, ["a"])
    result = CliRunner().invoke(cli, ["--data-dir", str(dirs[0]), "replicas", address])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: 'replicas' needs a running node: start it with 'gridnode start'"
    )
