"""Tests for ciparity.cache_relay against a stand-in for act's cache server that lowercases keys
as act's does (pkg/artifactcache: reserve stores strings.ToLower(key), a hit returns it)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ciparity.cache_relay import CacheRelay

PREFIX = "/0123abcd"  # act serves under a random path prefix


class _ActLike(BaseHTTPRequestHandler):
    stored: dict[str, bytes] = {}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _reply(self, code: int, body: bytes = b"", kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith(PREFIX + "/_apis/artifactcache/cache?"):
            keys = self.path.split("keys=", 1)[1].split("&", 1)[0].split(",")
            for key in keys:
                for stored in self.stored:
                    if stored.startswith(key.lower()):
                        body = {"result": "hit", "cacheKey": stored, "archiveLocation": "x"}
                        self._reply(200, json.dumps(body).encode())
                        return
            self._reply(204)
        elif self.path == PREFIX + "/_apis/artifactcache/artifacts/1":
            self._reply(200, b"A" * 3_000_000, "application/octet-stream")
        else:
            self._reply(404, b"{}")

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.stored[body["key"].lower()] = b""
        self._reply(200, b'{"cacheId": 1}')

    def do_PATCH(self) -> None:  # noqa: N802
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self._reply(
            200, json.dumps({"got": len(data), "range": self.headers["Content-Range"]}).encode()
        )


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    _ActLike.stored = {}
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _ActLike)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    spellings = tmp_path / "spellings.json"
    try:
        with CacheRelay(upstream.server_address[1], spellings) as running:
            assert running.url.startswith("http://127.0.0.1:")
            yield running.url + PREFIX, spellings
    finally:
        upstream.shutdown()
        upstream.server_close()


def _call(
    url: str, method: str = "GET", body: bytes | None = None, **headers: str
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:  # nosec B310 - loopback test
        return answer.status, answer.read()


def test_a_hit_gives_the_key_back_as_it_was_asked(relay: tuple[str, Path]) -> None:
    base, spellings = relay
    reserve = json.dumps({"key": "setup-python-Linux-pip-ABC", "version": "v"}).encode()
    assert _call(
        base + "/_apis/artifactcache/caches",
        "POST",
        reserve,
        **{"Content-Type": "application/json"},
    ) == (200, b'{"cacheId": 1}')
    assert json.loads(spellings.read_text()) == {
        "setup-python-linux-pip-abc": "setup-python-Linux-pip-ABC"
    }
    status, body = _call(
        base + "/_apis/artifactcache/cache?keys=setup-python-Linux-pip-ABC&version=v"
    )
    assert status == 200
    assert json.loads(body)["cacheKey"] == "setup-python-Linux-pip-ABC"


def test_a_prefix_hit_gets_the_spelling_it_was_saved_with(relay: tuple[str, Path]) -> None:
    base, _ = relay
    reserve = json.dumps({"key": "Deps-Linux-123", "version": "v"}).encode()
    _call(
        base + "/_apis/artifactcache/caches",
        "POST",
        reserve,
        **{"Content-Type": "application/json"},
    )
    status, body = _call(
        base + "/_apis/artifactcache/cache?keys=Deps-Linux-999,Deps-Linux-&version=v"
    )
    assert (status, json.loads(body)["cacheKey"]) == (200, "Deps-Linux-123")


def test_a_miss_and_other_calls_pass_through_unchanged(relay: tuple[str, Path]) -> None:
    base, _ = relay
    assert _call(base + "/_apis/artifactcache/cache?keys=nothing&version=v") == (204, b"")
    status, body = _call(base + "/_apis/artifactcache/artifacts/1")
    assert (status, len(body)) == (200, 3_000_000)
    status, body = _call(
        base + "/_apis/artifactcache/caches/1",
        "PATCH",
        b"z" * 1000,
        **{"Content-Type": "application/octet-stream", "Content-Range": "bytes 0-999/*"},
    )
    assert json.loads(body) == {"got": 1000, "range": "bytes 0-999/*"}


def test_the_relay_answers_502_when_act_s_server_is_gone(tmp_path: Path) -> None:
    probe = ThreadingHTTPServer(("127.0.0.1", 0), _ActLike)
    port = probe.server_address[1]
    probe.server_close()
    with CacheRelay(port, tmp_path / "s.json") as running:
        with pytest.raises(urllib.error.HTTPError) as caught:
            _call(running.url + "/x/_apis/artifactcache/cache?keys=a&version=v")
    assert caught.value.code == 502
