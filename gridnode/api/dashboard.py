"""The operator's dashboard: one HTML page (``static/dashboard.html``), the headers it is served
with, and the address that opens it with the token.

The page holds no data and is served without the token (``GET /dashboard``). Its script takes the
token from the URL's fragment (:func:`dashboard_url`), which a browser never sends to a server,
keeps it in the tab's ``sessionStorage`` and sends it as ``Authorization: Bearer`` on its own data
calls (``GET /status``, ``GET /events``). Why not a cookie: the browser would send a cookie to
anything on 127.0.0.1 that asks, so another local page or a DNS-rebound site could use the node
through it; a header that only the page's own script adds cannot be.

The headers (:data:`HEADERS`) shut what the page does not need: scripts are only its own inline
one, connections only to the node, no frames, no referrer, no sniffing.

Refused here: a build step, outside assets, any value written into the page as HTML (the page
writes every value as text).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final
from urllib.parse import quote

__all__ = ["CONTENT_TYPE", "HEADERS", "dashboard_url", "page"]

CONTENT_TYPE: Final = "text/html; charset=utf-8"

_CSP: Final = (
    b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)

#: The headers the page is served with.
HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", _CSP),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)


def page() -> bytes:
    """The page, as installed with the package."""
    return files("gridnode.api").joinpath("static", "dashboard.html").read_bytes()


def dashboard_url(url: str, token: str) -> str:
    """The dashboard's address for the API at ``url``, the token in its fragment: a browser
    never sends a fragment, and the page moves the token to the tab's session storage."""
    return f"{url}/dashboard#token={quote(token, safe='')}"
