"""Integration tests drive a real Docker engine. Without one they skip, except when
CIPARITY_REQUIRE_DOCKER=1 (set by .ci/run), where a missing engine fails every one of them."""

from docker_helpers import engine, shared_dir  # noqa: F401  (fixtures for every test here)
