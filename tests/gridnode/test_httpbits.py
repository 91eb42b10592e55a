"""The gateway's HTTP pieces without I/O (gridnode.api.httpbits): Range, Etags, content types,
the listing page."""

import pytest

from gridnode.api import httpbits
from gridnode.api.httpbits import ByteRange, ListedEntry
from gridnode.errors import InvalidRequest, RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-99", 1000, ByteRange(0, 99, 1000)),
        ("bytes=100-", 1000, ByteRange(100, 999, 1000)),
        ("bytes=-100", 1000, ByteRange(900, 999, 1000)),
        ("bytes=-5000", 1000, ByteRange(0, 999, 1000)),
        ("bytes=990-5000", 1000, ByteRange(990, 999, 1000)),
        ("bytes=999-999", 1000, ByteRange(999, 999, 1000)),
        ("BYTES = 1 - 2", 1000, ByteRange(1, 2, 1000)),
        # ignored (the whole file): absent, several ranges, another unit, malformed, reversed
        (None, 1000, None),
        ("bytes=0-1,5-6", 1000, None),
        ("items=0-1", 1000, None),
        ("bytes=abc", 1000, None),
        ("bytes=-", 1000, None),
        ("bytes=5-1", 1000, None),
        ("bytes=" + "9" * 30 + "-", 1000, None),
    ],
)
def test_one_range_or_the_whole_file(header, size, expected):
    assert httpbits.parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=5000-6000", 1000), ("bytes=-0", 10), ("bytes=0-", 0)],
)
def test_a_range_with_no_byte_in_the_file_is_416(header, size):
    with pytest.raises(RangeNotSatisfiable) as caught:
        httpbits.parse_range(header, size)
    assert isinstance(caught.value, InvalidRequest)


def test_range_lengths_and_content_range():
    found = httpbits.parse_range("bytes=10-19", 100)
    assert found is not None and found.length == 10
    assert found.content_range() == "bytes 10-19/100"


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"bafy"', True),
        ('W/"bafy"', True),
        ('"x", "y", "bafy"', True),
        ("*", True),
        ('"bafz"', False),
        (None, False),
        ("", False),
    ],
)
def test_if_none_match(header, matches):
    assert httpbits.etag_matches(header, '"bafy"') is matches


@pytest.mark.parametrize(
    ("name", "head", "kind"),
    [
        ("a/b.png", None, "image/png"),
        ("clip.MP4", b"", "video/mp4"),
        ("movie.webm", None, "video/webm"),
        ("index.html", b"\x00\x01", "text/html; charset=utf-8"),
        ("app.js", None, "text/javascript; charset=utf-8"),
        ("x.svg", None, "image/svg+xml; charset=utf-8"),
        ("font.woff2", None, "font/woff2"),
        # no extension, or one nobody knows: sniffed
        (None, b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        ("photo", b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        ("x.unknownext", b"GIF89a....", "image/gif"),
        ("clip", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "video/mp4"),
        ("clip", b"\x1a\x45\xdf\xa3\x9f", "video/webm"),
        ("image", b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        ("doc", b"%PDF-1.7\n", "application/pdf"),
        ("page", b"  \n<!DOCTYPE html><html>", "text/html; charset=utf-8"),
        ("page", b"<html>", "text/html; charset=utf-8"),
        ("notes", b"hello world\n", "text/plain; charset=utf-8"),
        ("notes", "zażółć\n".encode(), "text/plain; charset=utf-8"),
        ("blob", b"\x00\x01\x02binary", "application/octet-stream"),
        ("empty", b"", "text/plain; charset=utf-8"),
        ("unread", None, "application/octet-stream"),
        (".hidden", b"text", "text/plain; charset=utf-8"),
    ],
)
def test_content_type_from_extension_then_sniffed(name, head, kind):
    assert httpbits.content_type(name, head) == kind


def test_listing_escapes_names_and_links_each_entry():
    page = httpbits.listing_html(
        "bafyroot",
        ["ą", "ę"],
        "bafydir",
        None,
        [
            ListedEntry("file-źł.txt", "bafyfile", 34),
            ListedEntry('<script>alert("x")</script>', "bafyevil", 2048),
        ],
        truncated=True,
    ).decode()
    assert "Index of" in page
    assert (
        '/ipfs/<a href="/ipfs/bafyroot">bafyroot</a>/<a href="/ipfs/bafyroot/%C4%85">ą</a>/'
        '<a href="/ipfs/bafyroot/%C4%85/%C4%99">ę</a>'
    ) in page
    assert '<a href="/ipfs/bafyroot/%C4%85/%C4%99/..">..</a>' in page
    assert '<a href="/ipfs/bafyroot/%C4%85/%C4%99/file-%C5%BA%C5%82.txt">file-źł.txt</a>' in page
    assert 'href="/ipfs/bafyfile?filename=file-%C5%BA%C5%82.txt"' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "2.0 KiB" in page and "34 B" in page
    assert "more entries not listed" in page


def test_the_root_listing_has_no_link_up():
    page = httpbits.listing_html("bafyroot", [], "bafyroot", None, [], truncated=False).decode()
    assert ">..</a>" not in page
    assert "more entries" not in page
