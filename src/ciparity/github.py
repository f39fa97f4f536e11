"""The GitHub REST calls a self-hosted runner needs: registration, remove and JIT tokens, and the
GitHub App exchange (RS256 JWT -> installation token). Standard library HTTP; PyJWT signs.

Every failure becomes one line that says what went wrong and, for 401/403/404/422, which
permission the credential needs. 5xx answers, rate limits and timeouts are retried with backoff;
a rate limit is waited out until GitHub says it resets, unless that passes the client's deadline
(the stop budget while deregistering). A POST that creates something (a JIT runner) is never
retried blindly: when its answer may have been lost, what it may have made is removed first.
An App's installation token is renewed before it expires, and once more on a 401. Redirects are
followed only on the same https origin: credentials never go to another host or over http.
Credentials never appear in a message: `Redactor` masks every secret this process has seen.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.client import HTTPMessage
from typing import Any

from ciparity import __version__
from ciparity.errors import CiparityError

API_VERSION = "2022-11-28"
USER_AGENT = f"ciparity-runner/{__version__}"
SCOPES = ("repo", "org", "enterprise")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# github.com's REST API lives on its own host; so does each GHE.com (data residency) tenant's.
DOTCOM_HOSTS = ("github.com", "www.github.com")
MAX_WAIT = 3600.0  # the longest one rate-limit wait may be (GitHub's primary window is an hour)
SECONDARY_WAIT = (
    60.0  # GitHub: without a retry-after, wait at least a minute after a secondary limit
)
# Renew an installation token when this share of its life (at most 5 minutes) is left.
REFRESH_SHARE, REFRESH_MAX = 0.25, 300.0


class ApiError(CiparityError):
    """GitHub answered with an error (its HTTP status kept), or did not answer at all."""

    exit_code = 3

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


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


def masked_url(url: str) -> str:
    """The URL as it may be printed: a user name or password in it becomes ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url else url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}://{netloc}{slash}{path}"


def _split(url: str, name: str) -> urllib.parse.SplitResult:
    """urlsplit, refusing what must not be a runner URL: userinfo, no host, a bad port."""
    if "@" in url.partition("://")[2].partition("/")[0]:
        raise CiparityError(
            f"{name}={masked_url(url)} carries a user name or password: drop it; credentials go"
            " in CIPARITY_RUNNER_TOKEN, _PAT or the App settings"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        parts = urllib.parse.urlsplit("")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise CiparityError(
            f"{name}={url!r} is not a URL: expected https://github.com/OWNER/REPO,"
            " https://github.com/ORG or https://github.com/enterprises/ENTERPRISE"
        )
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise CiparityError(f"{name}={url!r} must use https (tokens travel on it)")
    return parts


def api_base(parts: urllib.parse.SplitResult) -> str:
    """The REST API base a github.com, GHE.com or GitHub Enterprise Server URL implies."""
    host = (parts.hostname or "").lower()
    if host in DOTCOM_HOSTS:
        return "https://api.github.com"
    if host.endswith(".ghe.com"):
        return f"https://api.{host}"
    return f"{parts.scheme}://{parts.netloc}/api/v3"


def parse_url(url: str, scope_kind: str | None = None) -> tuple[Scope, str, str]:
    """The scope a runner URL names, the API base it implies, and the URL config.sh gets
    (`https://github.com/orgs/X` is the organisation X, which the agent knows as /X)."""
    parts = _split(url, "CIPARITY_RUNNER_URL")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) == 2 and segments[0] == "enterprises":
        inferred = Scope("enterprise", segments[1])
    elif len(segments) == 2 and segments[0] == "orgs":
        inferred = Scope("org", segments[1])
    elif len(segments) == 2:
        inferred = Scope("repo", "/".join(segments))
    elif len(segments) == 1 and segments[0] not in ("enterprises", "orgs"):
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
    path = f"enterprises/{inferred.path}" if inferred.kind == "enterprise" else inferred.path
    return inferred, api_base(parts), f"{parts.scheme}://{parts.netloc}/{path}"


def check_api_url(api_url: str) -> str:
    """CIPARITY_RUNNER_API_URL checked like the runner URL (https, no userinfo)."""
    parts = _split(api_url, "CIPARITY_RUNNER_API_URL")
    return urllib.parse.urlunsplit(parts).rstrip("/")


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


class Redirected(ApiError):
    """GitHub answered with a redirect that must not be followed with credentials."""


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only for GET and only on the same origin: urllib would otherwise
    send the Authorization header to any host the answer names, even over plain http."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        where = f"{new.scheme}://{new.hostname}" + (f":{new.port}" if new.port else "")
        if (new.scheme, new.hostname, new.port) != (old.scheme, old.hostname, old.port):
            raise Redirected(
                f"GitHub API {req.get_method()} {old.path} answered {code} redirecting to"
                f" {masked_url(where)}: not followed, the credential would go to another origin"
            )
        if req.get_method() != "GET":
            raise Redirected(
                f"GitHub API {req.get_method()} {old.path} answered {code} (a redirect):"
                " not followed for a call that changes something"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
    # time.monotonic() by which every call must be done (None: no deadline). While stopping it
    # is the stop budget: a rate limit that resets later fails now instead of outliving it.
    deadline: float | None = None
    _bearer: str = field(default="", init=False)
    _renew_at: float = field(default=0.0, init=False)
    _installation: str = field(default="", init=False)
    _opener: urllib.request.OpenerDirector = field(
        default_factory=lambda: urllib.request.build_opener(_SameOrigin), init=False
    )

    # --- the endpoints -------------------------------------------------------------------------

    def registration_token(self) -> str:
        return self._token("registration-token")

    def remove_token(self) -> str:
        return self._token("remove-token")

    def jit_config(
        self, name: str, labels: Iterable[str], group_id: int, work_folder: str
    ) -> tuple[int, str]:
        """A JIT runner named `name`. The POST creates it: when an answer may have been lost,
        a runner of that name is deleted before the next try, so none is left behind."""
        body = {
            "name": name,
            "runner_group_id": group_id,
            "labels": list(labels),
            "work_folder": work_folder,
        }
        answer = self.request(
            "POST",
            f"{self.scope.api_prefix}/actions/runners/generate-jitconfig",
            body,
            idempotent=False,
            undo=lambda: self.delete_runner_named(name),
        )
        config = str(answer["encoded_jit_config"])
        self.redact.add(config)
        return int(answer["runner"]["id"]), config

    def delete_runner(self, runner_id: int) -> bool:
        """Delete a runner; False when GitHub no longer has it (404), which is fine."""
        try:
            self.request("DELETE", f"{self.scope.api_prefix}/actions/runners/{runner_id}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete_runner_named(self, name: str) -> list[int]:
        """Delete every runner of this scope called `name` (a JIT runner whose creation we
        cannot be sure of); the ids deleted."""
        query = urllib.parse.urlencode({"name": name})
        found = self.request("GET", f"{self.scope.api_prefix}/actions/runners?{query}")
        ids = [
            int(r["id"])
            for r in (found.get("runners") or [] if isinstance(found, dict) else [])
            if isinstance(r, dict) and r.get("name") == name
        ]
        deleted = [i for i in ids if self.delete_runner(i)]
        for runner_id in deleted:
            self.log(
                f"deleted runner {name} (id {runner_id}), made by a call whose answer was lost"
            )
        return deleted

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
        """The token scope calls carry: the PAT, or an App installation token, renewed while a
        quarter of its life (at most 5 minutes) is left, since GitHub expires it after an hour."""
        if self.auth.kind == "pat":
            return self.auth.secret
        if self._bearer and time.monotonic() < self._renew_at:
            return self._bearer
        jwt_token = app_jwt(self.auth.app_id, self.auth.secret)
        self.redact.add(jwt_token)
        if not self._installation:
            self._installation = self.auth.installation_id or self._installation_id(jwt_token)
        answer = self.request(
            "POST", f"/app/installations/{self._installation}/access_tokens", bearer=jwt_token
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
            raise ApiError("GitHub API POST .../access_tokens answered without a token")
        self._bearer = answer["token"]
        self.redact.add(self._bearer)
        life = _seconds_until(answer.get("expires_at"))
        self._renew_at = time.monotonic() + life - min(life * REFRESH_SHARE, REFRESH_MAX)
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
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        bearer: str = "",
        *,
        idempotent: bool = True,
        undo: Callable[[], object] | None = None,
    ) -> Any:
        """One API call, with retries for 5xx, rate limits, timeouts and refused connections.

        A call that is not idempotent is retried only when it surely did nothing (a refused
        connection, a rate limit), or after `undo` removed what a lost answer may have made."""
        url = self.api_url + path
        data = None if body is None else json.dumps(body).encode()
        attempt, renewed, doubtful = 0, False, False
        while True:
            attempt += 1
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
                with self._opener.open(req, timeout=self._timeout(method, path)) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw) if raw else {}
                except ValueError:
                    raise ApiError(f"GitHub API {method} {path} answered with no JSON") from None
            except urllib.error.HTTPError as exc:
                status, message = exc.code, _message(exc)
                if status == 401 and not bearer and self.auth.kind == "app" and not renewed:
                    # Expired early (a clock apart, a revoked token): one new token, one retry.
                    self.log(f"{method} {path}: installation token refused (401); renewing it")
                    self._bearer, renewed = "", True
                    attempt -= 1
                    continue
                limited = _rate_limit(status, exc.headers, message)
                retry = status >= 500 or limited is not None or (status == 409 and doubtful)
                # A rate limit refuses the call before doing it; a 5xx may come after it.
                unsure = status >= 500 or status == 409
                if not retry or attempt >= self.attempts:
                    if retry and unsure:
                        self._undo(undo)
                    raise self._explain(method, path, status, message, attempt, limited) from None
                problem = f"{status} {message}"
                if limited is not None:
                    problem = f"{limited[0]}: {problem}"
                wait = limited[1] if limited else None
            except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                timed_out = isinstance(reason, (TimeoutError, socket.timeout))
                problem = (
                    f"no answer within {self.timeout:g} s"
                    if timed_out
                    else f"unreachable ({reason})"
                )
                # Refused: nothing was sent. Anything else may have reached GitHub.
                unsure = not isinstance(reason, ConnectionRefusedError)
                if attempt >= self.attempts:
                    if unsure:
                        self._undo(undo)
                    raise ApiError(
                        f"GitHub API {self.api_url} {problem}, {attempt} attempts:"
                        " check the network, proxy and CIPARITY_RUNNER_API_URL"
                    ) from None
                wait = None
            if unsure and not idempotent:
                if undo is None:
                    raise ApiError(
                        f"GitHub API {method} {path}: {problem}; not retried, it may have"
                        " been done"
                    )
                doubtful = True
                undo()
            if wait is None:
                wait = min(self.delay * 2 ** (attempt - 1), 30.0)
            self._pause(method, path, problem, wait)

    def _undo(self, undo: Callable[[], object] | None) -> None:
        """Giving up on a call that may have been done: undo it, best effort."""
        if undo is None:
            return
        try:
            undo()
        except ApiError as exc:
            self.log(f"could not undo what a lost answer may have made: {exc.message}")

    def _timeout(self, method: str, path: str) -> float:
        """The socket timeout of one attempt: the setting, or less when the deadline is near."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ApiError(f"GitHub API {method} {path}: out of time (the stop budget is spent)")
        return min(self.timeout, left)

    def _pause(self, method: str, path: str, problem: str, wait: float) -> None:
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            raise ApiError(
                self.redact(
                    f"GitHub API {method} {path}: {problem}; waiting {wait:.0f} s more would"
                    " outlast the stop budget: giving up"
                )
            )
        self.log(self.redact(f"{method} {path}: {problem}; retrying in {wait:g} s"))
        self.sleep(wait)

    def _explain(
        self,
        method: str,
        path: str,
        status: int,
        message: str,
        attempts: int,
        limited: tuple[str, float | None] | None = None,
    ) -> ApiError:
        what = self.scope.describe()
        kind = self.auth.kind
        need = self.scope.permission(kind)
        cred = self.auth.describe()
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if limited is not None:
            limit = (
                f"GitHub API {method} {path}: {limited[0]}{tries} ({status} {message}); the"
                f" {cred} is fine, try again later"
            )
            return ApiError(self.redact(limit), status=status)
        if path.startswith("/app/"):
            need = "a valid App id and private key, and the App installed on " + what
        text: str | None = {
            401: f"GitHub rejected the {cred} (401 {message}): it is wrong, expired or revoked;"
            f" registering runners for {what} needs {need}",
            403: f"the {cred} may not manage runners of {what} (403 {message}): it needs {need}",
            404: f"{what} was not found (404 {message}): check CIPARITY_RUNNER_URL, or the"
            f" {cred} cannot see it: it needs {need}",
            409: f"GitHub refused {method} {path} (409 {message}): a runner of that name exists",
            422: f"GitHub refused {method} {path} (422 {message}): check the runner name, labels"
            f" and group; registering runners for {what} needs {need}",
        }.get(status)
        if text is None:
            text = f"GitHub API {method} {path} failed{tries}: {status} {message}"
        return ApiError(self.redact(text), status=status)


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


def _number(value: str | None) -> float | None:
    """A header's number of seconds; None when absent, not a number, negative or not finite."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not 0 <= seconds < float("inf"):
        return None
    return seconds


def _rate_limit(status: int, headers: Message, message: str) -> tuple[str, float | None] | None:
    """Which rate limit refused a call, and how long to wait before the next one (GitHub's
    documented order: retry-after, then x-ratelimit-reset when none is left, then a minute for a
    secondary limit); None when the answer is no rate limit."""
    if status not in (403, 429):
        return None
    retry_after = _number(headers.get("retry-after"))
    secondary = "secondary rate limit" in message.lower()
    exhausted = headers.get("x-ratelimit-remaining") == "0"
    if not (secondary or exhausted or status == 429 or retry_after is not None):
        return None
    name = "GitHub's secondary rate limit" if secondary else "GitHub's API rate limit"
    reset = _number(headers.get("x-ratelimit-reset"))
    if retry_after is not None:
        wait = retry_after
    elif exhausted and reset is not None:
        wait = reset - time.time() + 1
        when = dt.datetime.fromtimestamp(reset, dt.timezone.utc).strftime("%H:%M:%S UTC")
        name += f" (resets {when})"
    elif secondary:
        wait = SECONDARY_WAIT
    else:
        return name, None  # no hint: the usual back-off
    return name, min(max(wait, 0.0), MAX_WAIT)


def _seconds_until(expires_at: Any) -> float:
    """Seconds until an ISO 8601 `expires_at`; an hour (GitHub's lifetime) when unreadable."""
    try:
        moment = dt.datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
        return max(moment.timestamp() - time.time(), 0.0)
    except ValueError:
        return 3600.0
