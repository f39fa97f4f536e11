"""Integration tests drive a real Docker engine. Without one they skip, except when
CIPARITY_REQUIRE_DOCKER=1 (set by .ci/run), where a missing engine fails every one of them.
Every one of them checks that it left no container, volume or network behind."""

# Fixtures for every test here.
from docker_helpers import engine, no_leftovers, shared_dir  # noqa: F401
