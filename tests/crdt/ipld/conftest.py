"""Both of :func:`crdt.ipld.decode`'s confirmations of canonical form: libipld's round trip (the
default) and the pure-Python re-encoding it falls back to. A module that lists
``pytestmark = pytest.mark.usefixtures("decode_path")`` runs each of its tests once per path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crdt.ipld import dagcbor


@pytest.fixture(scope="module", params=["libipld", "python"])
def decode_path(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = dagcbor.use_libipld
    dagcbor.use_libipld = request.param == "libipld"
    try:
        yield request.param
    finally:
        dagcbor.use_libipld = saved
