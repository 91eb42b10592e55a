"""schemathesis against the local API of a live node, from the OpenAPI document the node serves.

Two runs, each with a bounded number of examples per operation: the served document as it is
(random database names: the refusals), and the same document with the ``{db}`` path parameter
narrowed to the databases the node holds, one of each type with a few entries (the handlers' deep
paths). Every check that holds for this API must pass; above all, no answer is a 5xx.
"""

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gridnode import ops

pytestmark = pytest.mark.slow

#: Checks the API must pass. (Left out: ``positive_data_acceptance``, because a schema-valid op
#: payload is still refused when it is not an op of the database's type; ``use_after_free`` and
#: ``ensure_resource_availability``, which need links between operations the document does not
#: declare.)
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    ]
)


def schemathesis_command():
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    return [st] if st else [sys.executable, "-m", "schemathesis.cli"]


def run_schemathesis(location, base_url, token, tmp_path, name, max_examples):
    report = tmp_path / f"{name}.junit.xml"
    command = [
        *schemathesis_command(),
        "run",
        str(location),
        "--url",
        base_url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "No issues found" in output or " passed" in output, output[-3000:]
    return output


def test_schemathesis_finds_nothing(live_nodes, tmp_path):
    live = live_nodes("node")
    client = live.client
    made = {}
    for kind in ("keyvalue", "documents", "events", "set", "counter"):
        indexes = ["n"] if kind == "documents" else []
        request = ops.CreateRequest(f"st-{kind}", kind, public=True, indexes=indexes)
        made[kind] = client.create(request)["address"]
    client.write(made["keyvalue"], [{"op": "put", "key": "k", "value": 1}])
    client.write(made["documents"], [{"op": "put", "doc": {"_id": "d", "n": 2}}])
    client.write(made["events"], [{"op": "add", "value": "e"}])
    client.write(made["set"], [{"op": "add", "value": "m"}])
    client.write(made["counter"], [{"op": "inc", "by": 3}])

    # The document is served without the token, and is OpenAPI 3.1.
    with urllib.request.urlopen(live.url + "/openapi.json", timeout=10) as answer:
        spec = json.load(answer)
    assert spec["openapi"].startswith("3.1")
    assert {"/status", "/metrics", "/unfollow", "/db/{db}/log"} <= set(spec["paths"])

    run_schemathesis(live.url + "/openapi.json", live.url, live.token, tmp_path, "served", 50)

    names = sorted(f"st-{kind}" for kind in made)
    for item in spec["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "db":
                    parameter["schema"] = {"type": "string", "enum": names}
    narrowed = tmp_path / "narrowed.json"
    narrowed.write_text(json.dumps(spec))
    run_schemathesis(narrowed, live.url, live.token, tmp_path, "narrowed", 50)

    # The node still answers, and every database it holds (those schemathesis made too) still
    # opens: a listing reads each one's entry count.
    listed = {d["name"] for d in client.databases()}
    assert set(names) <= listed
    assert client.status()["peer_id"] == live.node.peer_id
