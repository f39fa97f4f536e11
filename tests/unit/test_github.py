"""The GitHub API client against the fake API: App token renewal, redirects, rate limits, the
stop deadline, and a JIT POST that is never retried blindly. Sleeps are recorded, not slept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import fake_github_module

from ciparity.github import ApiError, Auth, Client, Redactor, Scope

fg = fake_github_module()
PAT = "ghp_clienttests000000000000000001"
SCOPE = Scope("repo", "octo/hello")
REG = "/repos/octo/hello/actions/runners/registration-token"
JIT = "/repos/octo/hello/actions/runners/generate-jitconfig"


@pytest.fixture
def fake() -> Iterator[Any]:
    with fg.FakeGitHub(pats=[PAT]) as server:
        yield server


class Recorder:
    """Stands in for time.sleep and the client's log."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.lines: list[str] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def log(self, line: str) -> None:
        self.lines.append(line)


def client(fake: Any, rec: Recorder, auth: Auth | None = None, **kw: Any) -> Client:
    return Client(
        api_url=fake.base_url,
        scope=SCOPE,
        auth=auth or Auth("pat", PAT),
        redact=Redactor(),
        timeout=kw.pop("timeout", 2.0),
        sleep=rec.sleep,
        log=rec.log,
        **kw,
    )


def paths(fake: Any) -> list[tuple[str, str, Any]]:
    return [(r["method"], r["path"], r["status"]) for r in fake.requests]


# --- finding 1: installation tokens expire after an hour ------------------------------------


def test_an_installation_token_is_renewed_before_it_expires(app_key: tuple[str, str]) -> None:
    with fg.FakeGitHub(app_id=7, app_public_key=app_key[1], app_token_ttl=2) as fake:
        rec = Recorder()
        api = client(fake, rec, Auth("app", app_key[0], "7"))
        api.registration_token()
        # Past the token's 2 s life: before the fix the cached token got a 401 here.
        assert fg_wait(lambda: not fake_has_valid_token(fake), 10)
        api.remove_token()
        minted = [p for p in paths(fake) if p[1].endswith("/access_tokens")]
        assert len(minted) == 2
        assert [p[2] for p in paths(fake) if "/actions/" in p[1]] == [201, 201]
        assert sum(1 for p in paths(fake) if p[1].endswith("/installation")) == 1  # cached


def test_a_refused_installation_token_is_renewed_once(app_key: tuple[str, str]) -> None:
    with fg.FakeGitHub(app_id=7, app_public_key=app_key[1]) as fake:
        rec = Recorder()
        api = client(fake, rec, Auth("app", app_key[0], "7", "1"))
        api.registration_token()
        fake.revoke_installation_tokens()  # valid by its expiry, refused by GitHub
        api.remove_token()
        statuses = [p[2] for p in paths(fake) if p[1].endswith("remove-token")]
        assert statuses == [401, 201]
        assert any("renewing it" in line for line in rec.lines)


def test_a_pat_that_gets_401_is_not_retried(fake: Any) -> None:
    rec = Recorder()
    api = client(fake, rec, Auth("pat", "ghp_wrong"))
    with pytest.raises(ApiError, match="GitHub rejected the personal access token"):
        api.registration_token()
    assert len(fake.requests) == 1


def fake_has_valid_token(fake: Any) -> bool:
    now = time.time()
    with fake._lock:
        return any(t["expires"] > now for t in fake._installation_tokens.values())


def fg_wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- finding 4: a JIT POST is not retried blindly -------------------------------------------


def test_a_jit_post_whose_answer_was_lost_leaves_no_runner(fake: Any) -> None:
    fake.add_fault("generate-jitconfig=lostx1")
    rec = Recorder()
    runner_id, config = client(fake, rec).jit_config("jit-a", ["x"], 1, "_work")
    # The first POST made runner 1001, its answer never came: it is deleted, then made anew.
    assert [p[:2] for p in paths(fake)] == [
        ("POST", JIT),
        ("GET", "/repos/octo/hello/actions/runners"),
        ("DELETE", "/repos/octo/hello/actions/runners/1001"),
        ("POST", JIT),
    ]
    assert [r["id"] for r in fake.runners] == [runner_id] == [1002]
    assert config


def test_a_jit_post_that_fails_for_good_after_a_lost_answer_leaves_no_runner(
    fake: Any,
) -> None:
    fake.add_fault("generate-jitconfig=lost")
    rec = Recorder()
    with pytest.raises(ApiError):
        client(fake, rec, attempts=2).jit_config("jit-b", ["x"], 1, "_work")
    assert fake.runners == []


def test_token_posts_are_retried_as_before(fake: Any) -> None:
    fake.add_fault("registration-token=503x2")
    rec = Recorder()
    assert client(fake, rec).registration_token()
    assert len(rec.sleeps) == 2


# --- finding 5: redirects -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["other-host", "http-downgrade"])
def test_a_redirect_elsewhere_is_not_followed_with_the_credential(fake: Any, where: str) -> None:
    with fg.FakeGitHub(pats=[PAT]) as other:
        # 127.0.0.1 and localhost are different origins; a port change is another origin too.
        target = other.base_url if where == "other-host" else f"http://localhost:{other.port}"
        fake.add_fault(
            fg.Fault("runners", 302, 1, headers={"Location": f"{target}/steal"}, message="Found")
        )
        rec = Recorder()
        with pytest.raises(ApiError, match="302 redirecting to http://.*: not followed"):
            client(fake, rec).request("GET", "/repos/octo/hello/actions/runners")
        assert other.requests == []


def test_a_redirect_of_a_post_is_not_followed(fake: Any) -> None:
    fake.add_fault(
        fg.Fault(
            "registration-token",
            307,
            1,
            headers={"Location": f"{fake.base_url}{REG}"},
            message="Temporary Redirect",
        )
    )
    rec = Recorder()
    with pytest.raises(ApiError, match="not followed for a call that changes something"):
        client(fake, rec).registration_token()
    assert len(fake.requests) == 1


def test_a_same_origin_redirect_of_a_get_is_followed(fake: Any) -> None:
    fake.add_fault(
        fg.Fault(
            "runners",
            301,
            1,
            headers={"Location": f"{fake.base_url}/repos/octo/hello/actions/runners?page=1"},
            message="Moved Permanently",
        )
    )
    rec = Recorder()
    found = client(fake, rec).request("GET", "/repos/octo/hello/actions/runners")
    assert found["total_count"] == 0
    assert [r["auth"] for r in fake.requests] == ["pat", "pat"]  # same origin: credential kept


# --- finding 7: rate limits -----------------------------------------------------------------


def limit(fake: Any, status: int, headers: dict[str, str], message: str, count: int = 1) -> None:
    fake.add_fault(fg.Fault("registration-token", status, count, headers=headers, message=message))


def test_the_primary_limit_waits_until_it_resets(fake: Any) -> None:
    reset = int(time.time()) + 120
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    limit(fake, 403, headers, "API rate limit exceeded for installation ID 1.")
    rec = Recorder()
    assert client(fake, rec).registration_token()
    (wait,) = rec.sleeps
    assert 115 < wait <= 122  # until the reset, not the 1 s back-off
    assert "GitHub's API rate limit (resets" in rec.lines[0]


def test_a_secondary_limit_without_retry_after_waits_a_minute_and_is_named(fake: Any) -> None:
    message = "You have exceeded a secondary rate limit. Please wait a few minutes."
    limit(fake, 403, {}, message, count=5)
    rec = Recorder()
    with pytest.raises(ApiError) as caught:
        client(fake, rec, attempts=2).registration_token()
    assert rec.sleeps == [60.0]
    assert "GitHub's secondary rate limit after 2 attempts" in caught.value.message
    assert "may not manage runners" not in caught.value.message  # no permission is missing


@pytest.mark.parametrize("value", ["-5", "soon", "nan", "inf"])
def test_a_retry_after_that_is_no_wait_falls_back_to_the_back_off(fake: Any, value: str) -> None:
    limit(fake, 429, {"Retry-After": value}, "Too Many Requests")
    rec = Recorder()
    assert client(fake, rec, delay=0.5).registration_token()
    assert rec.sleeps == [0.5]


def test_a_wait_past_the_deadline_fails_at_once(fake: Any) -> None:
    limit(fake, 429, {"Retry-After": "600"}, "Too Many Requests", count=5)
    rec = Recorder()
    api = client(fake, rec)
    api.deadline = time.monotonic() + 30
    with pytest.raises(ApiError, match="waiting 600 s more would outlast the stop budget"):
        api.registration_token()
    assert rec.sleeps == [] and len(fake.requests) == 1


def test_the_deadline_shortens_the_socket_timeout(fake: Any) -> None:
    fake.add_fault("registration-token=hang")
    rec = Recorder()
    api = client(fake, rec, timeout=30.0, attempts=1)
    api.deadline = time.monotonic() + 0.5
    started = time.monotonic()
    with pytest.raises(ApiError):
        api.registration_token()
    assert time.monotonic() - started < 5
