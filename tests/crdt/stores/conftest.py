from __future__ import annotations

from collections.abc import Callable

import pytest

from crdt.space import Space
from tests.crdt.spaces import SPACES


@pytest.fixture(scope="session", params=sorted(SPACES))
def make_space(request: pytest.FixtureRequest) -> Callable[[], Space]:
    """Makes a new, empty space: each test using it runs over memory and over encoded values.
    Session-scoped (it hands out a class, not a space), so hypothesis tests may use it."""
    return SPACES[request.param]
