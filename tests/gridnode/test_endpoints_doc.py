"""docs/http.md's endpoint table is the one list of the local API's endpoints: it names exactly
the routes of the route table (gridnode/api/routes.py), one route a row, and says "no token" of
exactly the public ones. (docs/cli.md kept a second copy once; it drifted.)"""

import re
from pathlib import Path

from gridnode.api import routes

DOCS = Path(__file__).parents[2] / "docs"
_ROUTE = re.compile(r"^`(GET|HEAD|POST|PUT|PATCH|DELETE) (/\S*)`$")


def endpoint_rows() -> list[tuple[str, str, str]]:
    """``(method, path, what)`` of each row of the table headed ``| endpoint | what |``."""
    lines = (DOCS / "http.md").read_text().splitlines()
    start = lines.index("| endpoint | what |")
    assert lines[start + 1] == "|---|---|"
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cell, what = (c.strip() for c in line.strip("|").split("|", 1))
        match = _ROUTE.match(cell)
        assert match, (
            f"a row names one route, as `METHOD /path` (query parameters go right): {cell}"
        )
        rows.append((match[1], match[2], what))
    return rows


def test_the_endpoint_table_lists_exactly_the_routes():
    documented = [(method, path) for method, path, _ in endpoint_rows()]
    assert len(documented) == len(set(documented)), "a route is listed twice"
    assert set(documented) == set(routes.ROUTES)


def test_the_endpoint_table_says_which_routes_need_no_token():
    without_token = {(method, path) for method, path, what in endpoint_rows() if "no token" in what}
    assert without_token == routes.PUBLIC


def test_cli_md_holds_no_copy_of_the_table():
    text = (DOCS / "cli.md").read_text()
    assert "| endpoint | what |" not in text
    assert "(http.md)" in text.split("## The local API", 1)[1].split("\n## ", 1)[0]
