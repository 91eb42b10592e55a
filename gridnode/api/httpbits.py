"""The HTTP side of serving files from the gateway, with no I/O: ``Range`` headers, Etag
matches, the content type of a file, and the HTML listing of a directory
(:mod:`gridnode.api.unixfs` uses them; docs/http.md).

- :func:`parse_range`: one ``bytes=`` range of RFC 9110 §14 (``a-b``, ``a-``, ``-n``) against a
  size. A header that is not one well-formed byte range (several ranges, another unit, garbage)
  is ignored, as RFC 9110 allows: the whole file is the answer (200). A well-formed range that
  starts past the end is :class:`~gridnode.errors.RangeNotSatisfiable` (416).
- :func:`etag_matches`: ``If-None-Match`` (a list, weak or strong, or ``*``) against an Etag.
- :func:`content_type`: from the name's extension first (a fixed table: the same answer on every
  machine, never the system's mime.types), else sniffed from the first bytes (a few signatures of
  the WHATWG MIME sniffing table), else ``text/plain`` for bytes that look like text and
  ``application/octet-stream`` for anything else.
- :func:`listing_html`: the page listing a directory (names, sizes, CIDs), every name escaped.

Refused here: anything that reads a block.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from gridnode.errors import RangeNotSatisfiable

__all__ = [
    "LISTING_VERSION",
    "ByteRange",
    "content_type",
    "etag_matches",
    "listing_html",
    "parse_range",
    "sniff",
    "type_by_name",
]

_RANGE: Final = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
#: At most this many digits in a range bound (past 2**63 means nothing).
_MAX_DIGITS: Final = 19


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range ``header`` asks of ``size`` bytes, or ``None`` for the whole file
    (no header, or one this gateway ignores: several ranges, another unit, malformed).

    Raises :class:`RangeNotSatisfiable` for a well-formed range with no byte in the file."""
    if header is None:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match[1], match[2]
    if not first and not last:
        return None
    if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        return None
    if not first:  # "-n": the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"no bytes in the last {suffix} of {size}")
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignored, as RFC 9110 §14.1.1 says
    if start >= size:
        raise RangeNotSatisfiable(f"the range starts at {start}, the file has {size} bytes")
    return ByteRange(start, min(end, size - 1), size)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match: header`` names ``etag`` (weak comparison, RFC 9110 §13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(item.strip().removeprefix("W/") == wanted for item in header.split(","))


#: Extensions whose type the standard table lacks or gives otherwise than browsers expect.
_EXTRA_TYPES: Final = {
    ".avif": "image/avif",
    ".webp": "image/webp",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".ogv": "video/ogg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".m4v": "video/mp4",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".md": "text/markdown",
    ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".car": "application/vnd.ipld.car",
}
#: The standard library's built-in table only (no system files: the same on every machine).
_TYPES: Final = mimetypes.MimeTypes(filenames=())
#: Types answered with ``; charset=utf-8`` (text the gateway does not re-encode).
_UTF8: Final = ("text/", "application/javascript", "application/json", "image/svg+xml")

#: (signature, mask or None, type): the first bytes of a file that name its type.
_SIGNATURES: Final[tuple[tuple[bytes, bytes | None, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", None, "image/png"),
    (b"\xff\xd8\xff", None, "image/jpeg"),
    (b"GIF87a", None, "image/gif"),
    (b"GIF89a", None, "image/gif"),
    (
        b"RIFF\x00\x00\x00\x00WEBPVP",
        b"\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff",
        "image/webp",
    ),
    (
        b"RIFF\x00\x00\x00\x00WAVE",
        b"\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff",
        "audio/wave",
    ),
    (b"RIFF\x00\x00\x00\x00AVI ", b"\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff", "video/avi"),
    (b"\x00\x00\x01\x00", None, "image/x-icon"),
    (b"BM", None, "image/bmp"),
    (b"%PDF-", None, "application/pdf"),
    (b"\x1a\x45\xdf\xa3", None, "video/webm"),
    (b"OggS\x00", None, "application/ogg"),
    (b"ID3", None, "audio/mpeg"),
    (b"fLaC", None, "audio/flac"),
    (b"PK\x03\x04", None, "application/zip"),
    (b"\x1f\x8b\x08", None, "application/x-gzip"),
    (b"\x00asm", None, "application/wasm"),
    (b"wOFF", None, "font/woff"),
    (b"wOF2", None, "font/woff2"),
)
#: Tags that make a text HTML when it starts with one (after white space), in lower case.
_HTML_STARTS: Final = (
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<script",
    b"<iframe",
    b"<h1",
    b"<div",
    b"<font",
    b"<table",
    b"<a",
    b"<style",
    b"<title",
    b"<b",
    b"<body",
    b"<br",
    b"<p",
    b"<!--",
)
#: Bytes that never occur in text (WHATWG MIME sniffing: "binary data bytes").
_BINARY: Final = frozenset([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
#: Bytes that :func:`sniff` looks at.
SNIFF_BYTES: Final = 512


def _with_charset(kind: str) -> str:
    return f"{kind}; charset=utf-8" if kind.startswith(_UTF8) else kind


def type_by_name(name: str | None) -> str | None:
    """The type a file's name says by its extension, ``None`` when it says none."""
    if not name:
        return None
    dot = name.rfind(".")
    if dot <= 0:
        return None
    extension = name[dot:].lower()
    kind = _EXTRA_TYPES.get(extension) or _TYPES.types_map[True].get(extension)
    return None if kind is None else _with_charset(kind)


def content_type(name: str | None, head: bytes | None) -> str:
    """The type of a file named ``name`` (the last path segment, or ``?filename=``) whose first
    bytes are ``head`` (``None``: not read, then the extension alone decides, else octet-stream)."""
    kind = type_by_name(name)
    if kind is not None:
        return kind
    if head is None:
        return "application/octet-stream"
    return _with_charset(sniff(head))


def sniff(head: bytes) -> str:
    """A type from a file's first bytes (at most :data:`SNIFF_BYTES` are looked at)."""
    head = head[:SNIFF_BYTES]
    for signature, mask, kind in _SIGNATURES:
        if len(head) < len(signature):
            continue
        if mask is None:
            if head.startswith(signature):
                return kind
        elif all((h & m) == s for h, m, s in zip(head, mask, signature, strict=False)):
            return kind
    if len(head) >= 12 and head[4:8] == b"ftyp":
        box = int.from_bytes(head[:4], "big")
        if box % 4 == 0 and (head[8:11] == b"mp4" or head[8:12] in (b"isom", b"iso2", b"avc1")):
            return "video/mp4"
        if head[8:12] in (b"avif", b"avis"):
            return "image/avif"
        if head[8:12] in (b"M4A ",):
            return "audio/mp4"
        return "video/mp4"
    if head.startswith((b"\xfe\xff", b"\xff\xfe")):
        return "text/plain"
    text = head.removeprefix(b"\xef\xbb\xbf")
    stripped = text.lstrip(b" \t\n\r\x0c").lower()
    for tag in _HTML_STARTS:
        if stripped.startswith(tag) and stripped[len(tag) : len(tag) + 1] in (b" ", b">"):
            return "text/html"
        if tag == b"<!--" and stripped.startswith(tag):
            return "text/html"
    if stripped.startswith(b"<?xml"):
        return "text/xml"
    if stripped.startswith(b"<svg"):
        return "image/svg+xml"
    if any(byte in _BINARY for byte in text):
        return "application/octet-stream"
    return "text/plain"


# -- the directory listing ------------------------------------------------------------------------

_TEMPLATE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Index of {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td {{ padding: 0.2em 1em 0.2em 0; }}
td.size {{ text-align: right; color: #666; }}
.ipfs-hash {{ font-family: monospace; color: #666; font-size: 0.85em; }}
</style>
</head>
<body>
<h1>Index of {breadcrumb}</h1>
<p class="ipfs-hash" translate="no">{cid}{size}</p>
<table>
{rows}
</table>
{more}
</body>
</html>
"""
#: Changes when the page's template does: directory listings' Etags name it.
LISTING_VERSION: Final = hashlib.sha256(_TEMPLATE.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ListedEntry:
    """One row of a listing: the entry's name, CID (text) and size (``None``: unknown)."""

    name: str
    cid: str
    size: int | None


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _href(root: str, names: Sequence[str]) -> str:
    return "/ipfs/" + "/".join([root, *(quote(n, safe="") for n in names)])


def listing_html(
    root: str,
    names: Sequence[str],
    cid: str,
    size: int | None,
    entries: Sequence[ListedEntry],
    truncated: bool,
) -> bytes:
    """The page listing the directory ``cid`` at ``/ipfs/<root>/<names...>/``."""
    escape = html.escape
    crumbs = [f'<a href="{escape(_href(root, []))}">{escape(root)}</a>']
    for depth, name in enumerate(names, 1):
        crumbs.append(f'<a href="{escape(_href(root, names[:depth]))}">{escape(name)}</a>')
    rows = []
    if names:
        up = escape(_href(root, names) + "/..")
        rows.append(f'<tr><td><a href="{up}">..</a></td><td></td><td></td></tr>')
    for entry in entries:
        link = escape(_href(root, [*names, entry.name]))
        by_cid = escape(f"/ipfs/{entry.cid}?filename={quote(entry.name, safe='')}")
        rows.append(
            f'<tr><td><a href="{link}">{escape(entry.name)}</a></td>'
            f'<td><a class="ipfs-hash" translate="no" href="{by_cid}">{escape(entry.cid)}</a></td>'
            f'<td class="size">{escape(human_size(entry.size))}</td></tr>'
        )
    more = "<p>(more entries not listed)</p>" if truncated else ""
    return _TEMPLATE.format(
        title=escape("/ipfs/" + "/".join([root, *names]) + "/"),
        breadcrumb="/ipfs/" + "/".join(crumbs),
        cid=escape(cid),
        size=escape(f" ({human_size(size)})") if size is not None else "",
        rows="\n".join(rows),
        more=more,
    ).encode("utf-8")
