"""A loopback relay in front of act's cache server that gives cache keys back as they were saved.

act's cache server lowercases every key it stores and returns the lowercased key on a hit;
GitHub's cache service returns the key as saved. actions/setup-python compares the restored key
with its own case-sensitively (`matchedKey === primaryKey`), so under plain act its `cache-hit`
output is false even when the cache was restored. The relay forwards every request unchanged,
remembers each key's spelling when a cache is reserved (in the cache folder, so it lasts between
runs), and puts that spelling back into the lookup answer. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
LOOKUP = "/_apis/artifactcache/cache"
RESERVE = "/_apis/artifactcache/caches"
CHUNK = 1 << 20
# Hop-by-hop headers are the relay's own business, never forwarded.
HOP = {"connection", "keep-alive", "transfer-encoding", "host", "proxy-connection", "te"}


class KeySpellings:
    """Lowercased key -> the key as a job saved it, kept in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def remember(self, key: str) -> None:
        """Record how `key` is spelled."""
        with self.lock:
            known = self._load()
            known[key.lower()] = key
            partial = self.path.with_suffix(".tmp")
            partial.write_text(json.dumps(known, sort_keys=True), encoding="utf-8")
            partial.replace(self.path)

    def spelled(self, key: str, asked: list[str]) -> str:
        """`key` as saved: an exactly asked key first, else the recorded spelling."""
        for candidate in asked:
            if candidate.lower() == key:
                return candidate
        with self.lock:
            return self._load().get(key, key)


class _Handler(BaseHTTPRequestHandler):
    server: _RelayServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        """Quiet: act logs the cache traffic itself."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _relay(self) -> None:
        body = self._body()
        path = urlsplit(self.path).path
        # act serves under a random path prefix (http://ADDR:PORT/PREFIX/_apis/...).
        if self.command == "POST" and path.endswith(RESERVE):
            try:
                self.server.spellings.remember(str(json.loads(body)["key"]))
            except (ValueError, KeyError, TypeError):
                pass  # act's server answers a malformed request itself
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        upstream = http.client.HTTPConnection(LOOPBACK, self.server.upstream_port, timeout=600)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            if self.command == "GET" and path.endswith(LOOKUP) and answer.status == 200:
                self._send_lookup(answer)
                return
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in HOP | {"content-length"}:
                    self.send_header(key, value)
            length = answer.getheader("Content-Length")
            if length is None:
                data = answer.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Content-Length", length)
            self.end_headers()
            while chunk := answer.read(CHUNK):
                self.wfile.write(chunk)
        except OSError as exc:
            self.send_error(502, f"act's cache server: {exc}")
        finally:
            upstream.close()

    def _send_lookup(self, answer: http.client.HTTPResponse) -> None:
        data = answer.read()
        try:
            found = json.loads(data)
            asked = parse_qs(urlsplit(self.path).query).get("keys", [""])[0].split(",")
            found["cacheKey"] = self.server.spellings.spelled(str(found["cacheKey"]), asked)
            data = json.dumps(found).encode()
        except (ValueError, KeyError, TypeError):
            pass  # not a hit answer: pass it on as it came
        self.send_response(answer.status, answer.reason)
        self.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _relay


class _RelayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int, spellings: KeySpellings) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.upstream_port = upstream_port
        self.spellings = spellings


class CacheRelay:
    """The relay as a context manager: started on a free loopback port, stopped on exit."""

    def __init__(self, upstream_port: int, spellings_file: Path) -> None:
        self.server = _RelayServer(upstream_port, KeySpellings(spellings_file))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """What jobs are told the cache server is (no trailing slash, as act wants)."""
        return f"http://{LOOPBACK}:{self.server.server_address[1]}"

    def start(self) -> CacheRelay:
        """Serve in a background thread."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> CacheRelay:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
