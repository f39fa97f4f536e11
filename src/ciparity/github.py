"""The GitHub REST calls a self-hosted runner needs: registration, remove and JIT tokens, and the
GitHub App exchange (RS256 JWT -> installation token). Standard library HTTP; PyJWT signs.

Every failure becomes one line that says what went wrong and, for 401/403/404/422, which
permission the credential needs. 5xx answers, rate limits and timeouts are retried with backoff.
Credentials never appear in a message: `Redactor` masks every secret this process has seen.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ciparity import __version__
from ciparity.errors import CiparityError

API_VERSION = "2022-11-28"
USER_AGENT = f"ciparity-runner/{__version__}"
SCOPES = ("repo", "org", "enterprise")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ApiError(CiparityError):
    """GitHub answered with an error, or did not answer at all."""

    exit_code = 3


class Redactor:
    """Masks every registered secret in text that is about to be printed."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str | None) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text


@dataclass(frozen=True)
class Scope:
    """Where runners register: a repository, an organisation or an enterprise."""

    kind: str  # one of SCOPES
    path: str  # "owner/repo", "org" or "enterprise-slug"

    @property
    def api_prefix(self) -> str:
        prefix = {"repo": "repos", "org": "orgs", "enterprise": "enterprises"}[self.kind]
        return f"/{prefix}/{self.path}"

    def describe(self) -> str:
        noun = {"repo": "repository", "org": "organisation", "enterprise": "enterprise"}
        return f"{noun[self.kind]} {self.path}"

    def permission(self, auth_kind: str) -> str:
        """The permission registering a runner here needs, for this kind of credential."""
        if self.kind == "repo":
            return {
                "pat": "a classic PAT with the `repo` scope, or a fine-grained PAT with"
                " repository permission `Administration: read and write`",
                "app": "the App's repository permission `Administration: read and write`",
            }.get(auth_kind, "repository admin rights")
        if self.kind == "org":
            return {
                "pat": "a classic PAT with the `admin:org` scope, or a fine-grained PAT with"
                " organisation permission `Self-hosted runners: read and write`",
                "app": "the App's organisation permission `Self-hosted runners: read and write`",
            }.get(auth_kind, "organisation owner rights")
        return {
            "pat": "a classic PAT with the `manage_runners:enterprise` scope",
            "app": "enterprise runner access, which GitHub Apps do not have: use a classic PAT"
            " with `manage_runners:enterprise`",
        }.get(auth_kind, "enterprise owner rights")


def parse_url(url: str, scope_kind: str | None = None) -> tuple[Scope, str]:
    """The scope a runner URL names, and the API base it implies (github.com or GHES)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise CiparityError(
            f"CIPARITY_RUNNER_URL={url!r} is not a URL: expected https://github.com/OWNER/REPO,"
            " https://github.com/ORG or https://github.com/enterprises/ENTERPRISE"
        )
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise CiparityError(f"CIPARITY_RUNNER_URL={url!r} must use https (tokens travel on it)")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) == 2 and segments[0] == "enterprises":
        inferred = Scope("enterprise", segments[1])
    elif len(segments) == 2:
        inferred = Scope("repo", "/".join(segments))
    elif len(segments) == 1 and segments[0] != "enterprises":
        inferred = Scope("org", segments[0])
    else:
        raise CiparityError(
            f"CIPARITY_RUNNER_URL={url!r} names no repository, organisation or enterprise"
        )
    if scope_kind is not None and scope_kind != inferred.kind:
        raise CiparityError(
            f"CIPARITY_RUNNER_SCOPE={scope_kind} but CIPARITY_RUNNER_URL names"
            f" {inferred.describe()}"
        )
    origin = f"{parts.scheme}://{parts.netloc}"
    api = "https://api.github.com" if parts.hostname == "github.com" else origin + "/api/v3"
    return inferred, api


def check_api_url(api_url: str) -> str:
    parts = urllib.parse.urlsplit(api_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise CiparityError(f"CIPARITY_RUNNER_API_URL={api_url!r} is not an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise CiparityError(f"CIPARITY_RUNNER_API_URL={api_url!r} must use https")
    return api_url.rstrip("/")


@dataclass
class Auth:
    """One credential: a PAT, or a GitHub App (id + private key, optional installation id)."""

    kind: str  # "pat" or "app"
    secret: str  # the PAT, or the App's PEM private key
    app_id: str = ""
    installation_id: str = ""

    def describe(self) -> str:
        return "personal access token" if self.kind == "pat" else f"GitHub App {self.app_id}"


def app_jwt(app_id: str, private_key: str, now: float | None = None) -> str:
    """The JWT a GitHub App authenticates with: RS256, issued a minute ago, valid 9 minutes."""
    try:
        import jwt  # PyJWT; imported here so the rest of the module needs only the stdlib
    except ImportError:
        raise CiparityError(
            "GitHub App credentials need PyJWT and cryptography: pip install 'ciparity[runner]'"
        ) from None

    issued = int(now if now is not None else time.time()) - 60
    claims = {"iat": issued, "exp": issued + 600, "iss": app_id}
    return jwt.encode(claims, private_key, algorithm="RS256")


def check_app_key(private_key: str) -> None:
    """Raise a one-line error for a key that cannot sign, before any network call."""
    try:
        app_jwt("0", private_key)
    except CiparityError:
        raise
    except Exception as exc:  # PyJWT and cryptography raise several types for bad keys
        raise CiparityError(
            "CIPARITY_RUNNER_APP_PRIVATE_KEY is not a PEM RSA private key"
            f" ({type(exc).__name__})"
        ) from None


@dataclass
class Client:
    """Calls the GitHub API for one scope with one credential, retrying what is transient."""

    api_url: str
    scope: Scope
    auth: Auth
    redact: Redactor
    timeout: float = 10.0
    attempts: int = 5
    delay: float = 1.0
    log: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    _bearer: str = field(default="", init=False)

    # --- the endpoints -------------------------------------------------------------------------

    def registration_token(self) -> str:
        return self._token("registration-token")

    def remove_token(self) -> str:
        return self._token("remove-token")

    def jit_config(
        self, name: str, labels: Iterable[str], group_id: int, work_folder: str
    ) -> tuple[int, str]:
        body = {
            "name": name,
            "runner_group_id": group_id,
            "labels": list(labels),
            "work_folder": work_folder,
        }
        answer = self.request(
            "POST", f"{self.scope.api_prefix}/actions/runners/generate-jitconfig", body
        )
        config = str(answer["encoded_jit_config"])
        self.redact.add(config)
        return int(answer["runner"]["id"]), config

    def delete_runner(self, runner_id: int) -> None:
        self.request("DELETE", f"{self.scope.api_prefix}/actions/runners/{runner_id}")

    def _token(self, which: str) -> str:
        path = f"{self.scope.api_prefix}/actions/runners/{which}"
        answer = self.request("POST", path)
        if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
            raise ApiError(f"GitHub API POST {path} answered without a token")
        token: str = answer["token"]
        self.redact.add(token)
        return token

    # --- credentials ---------------------------------------------------------------------------

    def bearer(self) -> str:
        """The token scope calls carry: the PAT, or an App installation token fetched once."""
        if self._bearer:
            return self._bearer
        if self.auth.kind == "pat":
            self._bearer = self.auth.secret
            return self._bearer
        jwt_token = app_jwt(self.auth.app_id, self.auth.secret)
        self.redact.add(jwt_token)
        installation = self.auth.installation_id or self._installation_id(jwt_token)
        answer = self.request(
            "POST", f"/app/installations/{installation}/access_tokens", bearer=jwt_token
        )
        self._bearer = str(answer["token"])
        self.redact.add(self._bearer)
        return self._bearer

    def _installation_id(self, jwt_token: str) -> str:
        if self.scope.kind == "repo":
            return str(
                self.request("GET", f"/repos/{self.scope.path}/installation", bearer=jwt_token)[
                    "id"
                ]
            )
        if self.scope.kind == "org":
            return str(
                self.request("GET", f"/orgs/{self.scope.path}/installation", bearer=jwt_token)["id"]
            )
        for item in self.request("GET", "/app/installations", bearer=jwt_token):
            if str(item.get("account", {}).get("login", "")).lower() == self.scope.path.lower():
                return str(item["id"])
        raise ApiError(
            f"GitHub App {self.auth.app_id} is not installed on {self.scope.describe()}:"
            " install it there, or set CIPARITY_RUNNER_APP_INSTALLATION_ID"
        )

    # --- HTTP ----------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, bearer: str = ""
    ) -> Any:
        """One API call, with retries for 5xx, rate limits, timeouts and refused connections."""
        url = self.api_url + path
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(1, self.attempts + 1):
            headers = {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": USER_AGENT,
                "Authorization": f"Bearer {bearer or self.bearer()}",
            }
            if data is not None:
                headers["Content-Type"] = "application/json"
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                # The scheme was checked to be http(s) when the settings were read.
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # nosec B310
                    raw = resp.read()
                try:
                    return json.loads(raw) if raw else {}
                except ValueError:
                    raise ApiError(f"GitHub API {method} {path} answered with no JSON") from None
            except urllib.error.HTTPError as exc:
                status, message = exc.code, _message(exc)
                retry_after = _retry_after(exc)
                if not _transient(status, exc) or attempt == self.attempts:
                    raise self._explain(method, path, status, message, attempt) from None
                problem = f"{status} {message}"
            except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                timed_out = isinstance(reason, (TimeoutError, socket.timeout))
                problem = (
                    f"no answer within {self.timeout:g} s"
                    if timed_out
                    else f"unreachable ({reason})"
                )
                retry_after = None
                if attempt == self.attempts:
                    raise ApiError(
                        f"GitHub API {self.api_url} {problem}, {attempt} attempts:"
                        " check the network, proxy and CIPARITY_RUNNER_API_URL"
                    ) from None
            wait = (
                retry_after
                if retry_after is not None
                else min(self.delay * 2 ** (attempt - 1), 30.0)
            )
            self.log(self.redact(f"{method} {path}: {problem}; retrying in {wait:g} s"))
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _explain(
        self, method: str, path: str, status: int, message: str, attempts: int
    ) -> ApiError:
        what = self.scope.describe()
        kind = self.auth.kind
        need = self.scope.permission(kind)
        cred = self.auth.describe()
        if path.startswith("/app/"):
            need = "a valid App id and private key, and the App installed on " + what
        text = {
            401: f"GitHub rejected the {cred} (401 {message}): it is wrong, expired or revoked;"
            f" registering runners for {what} needs {need}",
            403: f"the {cred} may not manage runners of {what} (403 {message}): it needs {need}",
            404: f"{what} was not found (404 {message}): check CIPARITY_RUNNER_URL, or the"
            f" {cred} cannot see it: it needs {need}",
            422: f"GitHub refused {method} {path} (422 {message}): check the runner name, labels"
            f" and group; registering runners for {what} needs {need}",
        }.get(status)
        if text is None:
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            text = f"GitHub API {method} {path} failed{tries}: {status} {message}"
        return ApiError(self.redact(text))


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return exc.reason if isinstance(exc.reason, str) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if errors:
        message += ": " + "; ".join(
            str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
            for e in errors
        )
    return message.strip() or str(exc.reason)


def _rate_limited(exc: urllib.error.HTTPError) -> bool:
    return exc.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in exc.headers


def _transient(status: int, exc: urllib.error.HTTPError) -> bool:
    return status >= 500 or status == 429 or (status == 403 and _rate_limited(exc))


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("retry-after")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None
