"""Integration tests drive a real Docker engine. Without one they skip, except when
CIPARITY_REQUIRE_DOCKER=1 (set by .ci/run), where a missing engine fails every one of them.
Every one of them checks that it left no container, volume or network behind."""

import os
from collections.abc import Iterator

import pytest

# Fixtures for every test here.
from docker_helpers import engine, no_leftovers, planted, shared_dir  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """act-ci keeps act's cache per checkout in the user's cache folder: the tests' many
    throw-away checkouts keep theirs in a temporary one, not in the real ~/.cache."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before
