"""The fake GitHub REST API (tests/fixtures/fake_github.py): GitHub's header, credential, scope
and JWT checks, each runner endpoint, fault injection, and a record that never holds a secret.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from conftest import fake_github_module
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_github.py"


fg = fake_github_module()

APP_ID = 4242
INSTALLATION_ID = 77
ALL = "ghp_alltheway0000000001"
REPO_ONLY = "ghp_repoonly0000000001"
ORG_ADMIN = "ghp_orgadmin0000000001"
ENTERPRISE = "ghp_enterprise00000001"
NO_SCOPES = "ghp_noscopes0000000001"
PATS: dict[str, list[str] | None] = {
    ALL: None,
    REPO_ONLY: ["repo"],
    ORG_ADMIN: ["admin:org"],
    ENTERPRISE: ["manage_runners:enterprise"],
    NO_SCOPES: [],
}
GH_HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "ciparity-tests",
}
REG = "/repos/octo/hello/actions/runners/registration-token"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def call(
    base: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    raw: bytes | None = None,
    scheme: str = "Bearer",
    timeout: float = 5.0,
) -> Reply:
    """One request with full control over the headers (http.client adds no User-Agent)."""
    parts = urlsplit(base)
    sent = dict(GH_HEADERS)
    if token is not None:
        sent["Authorization"] = f"{scheme} {token}"
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    for name in drop:
        sent.pop(name, None)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path + path, body=data, headers=sent)
        response = conn.getresponse()
        payload = response.read()
        return Reply(
            response.status,
            json.loads(payload) if payload else None,
            {k.lower(): v for k, v in response.getheaders()},
        )
    finally:
        conn.close()


@dataclass
class AppKey:
    private: rsa.RSAPrivateKey
    public_pem: str


@pytest.fixture(scope="module")
def app_key() -> AppKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return AppKey(key, public.decode())


def app_jwt(key: Any, **claims: Any) -> str:
    """A GitHub App JWT as GitHub's docs build it: iat 60 s back, exp 10 minutes ahead."""
    algorithm = claims.pop("alg", "RS256")
    now = int(time.time())
    payload = {"iat": now - 60, "exp": now + 540, "iss": str(APP_ID)}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    # Signed as raw JSON: PyJWT's encode refuses an integer iss, which other clients send.
    return jwt.api_jws.encode(json.dumps(payload).encode(), key, algorithm=algorithm)


@pytest.fixture
def fake(app_key: AppKey) -> Iterator[Any]:
    with fg.FakeGitHub(
        pats=PATS, app_id=APP_ID, app_public_key=app_key.public_pem, installation_id=INSTALLATION_ID
    ) as server:
        yield server


def reg_token(fake: Any, scope: str = "/repos/octo/hello") -> str:
    reply = call(fake.base_url, "POST", f"{scope}/actions/runners/registration-token", ALL)
    assert reply.status == 201, reply.body
    token: str = reply.body["token"]
    return token


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_announces_its_port_logs_requests_and_exits_zero_on_signal(
    tmp_path: Path, signum: int
) -> None:
    record = tmp_path / "requests.jsonl"
    secret = "ghp_clitoken000000000001"
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURE), "--port", "0", "--pat", f"{secret}:repo"]
        + ["--record", str(record)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().rstrip("\n")
        match = re.fullmatch(r"fake-github listening on (http://127\.0\.0\.1:(\d+))", first)
        assert match, first
        assert int(match.group(2)) > 0
        reply = call(match.group(1) + "/api/v3", "POST", REG, secret)
        assert reply.status == 201
        assert proc.stdout.readline().rstrip("\n") == f"POST {REG} 201"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert secret not in out + err
    assert reply.body["token"] not in out + err
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(r["method"], r["path"], r["status"], r["auth"]) for r in lines] == [
        ("POST", REG, 201, "pat")
    ]
    assert secret not in record.read_text()


def test_cli_configures_the_app_from_a_pem_file(tmp_path: Path, app_key: AppKey) -> None:
    pem = tmp_path / "app.pem"
    pem.write_text(app_key.public_pem)
    argv = ["--port", "0", "--app-id", str(APP_ID), "--app-public-key", str(pem)]
    argv += ["--app-installation-id", "9", "--fail", "installation=503x1"]
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURE), *argv], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().split()[-1]
        token = app_jwt(app_key.private)
        assert call(base, "GET", "/app/installations", token).status == 503
        reply = call(base, "GET", "/app/installations", token)
        assert [i["id"] for i in reply.body] == [9]
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_bad_fault_spec() -> None:
    result = subprocess.run(
        [sys.executable, str(FIXTURE), "--fail", "registration-token=sluggish"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "bad fault" in result.stderr


@pytest.mark.parametrize(
    "spec",
    ["bogus=503", "runners", "runners=abc", "runners=999", "runners=503x", "runners=hang x2"],
)
def test_fault_specs_are_checked(spec: str) -> None:
    with pytest.raises(ValueError, match="bad fault"):
        fg.Fault.parse(spec)


def test_fault_spec_parts() -> None:
    assert fg.Fault.parse("access-tokens=503x2") == fg.Fault("access-tokens", 503, 2)
    assert fg.Fault.parse("runners=hang") == fg.Fault("runners", None, None)
    assert fg.Fault.parse("generate-jitconfig=lostx1") == fg.Fault("generate-jitconfig", fg.LOST, 1)
    assert fg.Fault.parse("agent-session=slow") == fg.Fault("agent-session", fg.SLOW, None)


# --- GitHub's request checks ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/api/v3"])
def test_every_route_is_served_at_the_root_and_under_api_v3(fake: Any, prefix: str) -> None:
    reply = call(fake.base_url + prefix, "POST", REG, ALL)
    assert reply.status == 201
    assert reply.body["token"].startswith("REG")
    assert fake.requests[-1]["path"] == REG


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"drop": ("Accept",)}, 415, "Unsupported 'Accept' header"),
        ({"headers": {"Accept": "application/json"}}, 415, "Unsupported 'Accept' header"),
        ({"drop": ("X-GitHub-Api-Version",)}, 400, "X-GitHub-Api-Version"),
        ({"headers": {"X-GitHub-Api-Version": "2021-01-01"}}, 400, "2021-01-01 is not supported"),
        ({"drop": ("User-Agent",)}, 403, "please make sure your request has a user-agent header"),
        ({"headers": {"User-Agent": " "}}, 403, "user-agent header"),
        ({"token": None}, 401, "Bad credentials"),
        ({"token": "ghp_nobodyknowsthis0001"}, 401, "Bad credentials"),
        ({"scheme": "Digest"}, 401, "Bad credentials"),
    ],
)
def test_github_header_and_credential_checks(
    fake: Any, change: dict[str, Any], status: int, message: str
) -> None:
    args: dict[str, Any] = {"token": ALL, **change}
    token = args.pop("token")
    reply = call(fake.base_url, "POST", REG, token, **args)
    assert reply.status == status
    assert message.lower() in reply.body["message"].lower()
    assert reply.body["documentation_url"].startswith("https://docs.github.com/")
    assert fake.requests[-1]["status"] == status


def test_accept_may_list_other_types_and_token_scheme_works(fake: Any) -> None:
    headers = {"Accept": "application/json, application/vnd.github+json; q=0.9"}
    reply = call(fake.base_url, "POST", REG, ALL, headers=headers, scheme="token")
    assert reply.status == 201


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [(b"{not json", "application/json"), (b'{"a": 1}', "text/plain"), (b'{"a": 1}', None)],
)
def test_post_bodies_must_be_json(fake: Any, raw: bytes, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    reply = call(fake.base_url, "POST", REG, ALL, raw=raw, headers=headers)
    assert (reply.status, reply.body["message"]) == (400, "Problems parsing JSON")


def test_an_empty_post_body_is_fine(fake: Any) -> None:
    reply = call(fake.base_url, "POST", REG, ALL, raw=b"", headers={"Content-Type": "text/plain"})
    assert reply.status == 201


# --- the runner endpoints -------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["/repos/octo/hello", "/orgs/octo", "/enterprises/big"])
@pytest.mark.parametrize(("kind", "prefix"), [("registration", "REG"), ("remove", "RM")])
def test_registration_and_remove_tokens(fake: Any, scope: str, kind: str, prefix: str) -> None:
    path = f"{scope}/actions/runners/{kind}-token"
    first = call(fake.base_url, "POST", path, ALL)
    second = call(fake.base_url, "POST", path, ALL)
    assert first.status == second.status == 201
    assert first.body["token"].startswith(prefix)
    assert first.body["token"] != second.body["token"]
    assert len(first.body["token"]) >= 20
    expires = datetime.fromisoformat(first.body["expires_at"])
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    assert 3500 < left <= 3600


def jit_body(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "jit-1",
        "runner_group_id": 1,
        "labels": ["self-hosted", "ciparity"],
        "work_folder": "_work",
    }
    body.update(change)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize("prefix", ["", "/api/v3"])
def test_generate_jitconfig_registers_an_ephemeral_runner(fake: Any, prefix: str) -> None:
    path = "/orgs/octo/actions/runners/generate-jitconfig"
    reply = call(fake.base_url + prefix, "POST", path, ALL, jit_body(work_folder="w"))
    assert reply.status == 201, reply.body
    runner = reply.body["runner"]
    assert runner["name"] == "jit-1"
    assert (runner["os"], runner["status"], runner["busy"]) == ("linux", "offline", False)
    assert [(x["name"], x["type"]) for x in runner["labels"]] == [
        ("self-hosted", "custom"),
        ("ciparity", "custom"),
    ]
    config = json.loads(base64.b64decode(reply.body["encoded_jit_config"]))
    assert config["runner_id"] == runner["id"]
    assert config["name"] == "jit-1"
    assert config["url"] == fake.base_url
    assert config["labels"] == ["self-hosted", "ciparity"]
    assert config["work_folder"] == "w"
    assert config["ephemeral"] is True
    [listed] = fake.runners
    assert (listed["id"], listed["scope"], listed["ephemeral"]) == (runner["id"], "orgs/octo", True)
    assert listed["work_folder"] == "w"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (jit_body(name=None), "name"),
        (jit_body(name=""), "name"),
        (jit_body(runner_group_id=None), "runner_group_id"),
        (jit_body(runner_group_id="1"), "runner_group_id"),
        (jit_body(runner_group_id=99), "runner_group_id"),
        (jit_body(labels=None), "labels"),
        (jit_body(labels=[]), "labels"),
        (jit_body(labels=["ok", ""]), "labels"),
        (jit_body(labels=[f"l{i}" for i in range(101)]), "labels"),
        (jit_body(labels="a,b"), "labels"),
        (jit_body(work_folder=7), "work_folder"),
    ],
)
def test_generate_jitconfig_validates_its_body(fake: Any, body: Any, field: str) -> None:
    path = "/repos/octo/hello/actions/runners/generate-jitconfig"
    reply = call(fake.base_url, "POST", path, ALL, body)
    assert (reply.status, reply.body["message"]) == (422, "Validation Failed")
    assert field in [e["field"] for e in reply.body["errors"]]
    assert fake.runners == []


def test_generate_jitconfig_refuses_a_name_taken_in_the_same_scope(fake: Any) -> None:
    path = "/repos/octo/hello/actions/runners/generate-jitconfig"
    assert call(fake.base_url, "POST", path, ALL, jit_body()).status == 201
    assert call(fake.base_url, "POST", path, ALL, jit_body()).status == 409
    other = "/repos/octo/other/actions/runners/generate-jitconfig"
    assert call(fake.base_url, "POST", other, ALL, jit_body()).status == 201
    assert len(fake.runners) == 2


def test_list_get_and_delete_runners(fake: Any) -> None:
    scope = "/repos/octo/hello"
    for name in ("a", "b"):
        body = jit_body(name=name)
        assert call(fake.base_url, "POST", f"{scope}/actions/runners/generate-jitconfig", ALL, body)
    elsewhere = jit_body(name="c")
    call(fake.base_url, "POST", "/orgs/octo/actions/runners/generate-jitconfig", ALL, elsewhere)
    listing = call(fake.base_url, "GET", f"{scope}/actions/runners", ALL)
    assert listing.status == 200
    assert listing.body["total_count"] == 2
    assert [r["name"] for r in listing.body["runners"]] == ["a", "b"]
    first = listing.body["runners"][0]["id"]
    page = call(fake.base_url, "GET", f"{scope}/actions/runners?per_page=1&page=2", ALL)
    assert [r["name"] for r in page.body["runners"]] == ["b"]
    named = call(fake.base_url, "GET", f"{scope}/actions/runners?name=a", ALL)
    assert named.body["total_count"] == 1
    assert call(fake.base_url, "GET", f"{scope}/actions/runners/{first}", ALL).body["name"] == "a"
    assert call(fake.base_url, "DELETE", f"{scope}/actions/runners/{first}", ALL).status == 204
    assert call(fake.base_url, "DELETE", f"{scope}/actions/runners/{first}", ALL).status == 404
    assert call(fake.base_url, "GET", f"{scope}/actions/runners/{first}", ALL).status == 404
    org_runner = [r for r in fake.runners if r["scope"] == "orgs/octo"][0]["id"]
    # A runner of another scope is not found through this one.
    assert call(fake.base_url, "DELETE", f"{scope}/actions/runners/{org_runner}", ALL).status == 404
    assert sorted(r["name"] for r in fake.runners) == ["b", "c"]


def test_runner_groups_of_an_org(app_key: AppKey) -> None:
    with fg.FakeGitHub(pats=[ALL], runner_groups={1: "Default", 5: "ci"}) as server:
        reply = call(server.base_url, "GET", "/orgs/octo/actions/runner-groups", ALL)
    assert reply.status == 200
    assert [(g["id"], g["name"], g["default"]) for g in reply.body["runner_groups"]] == [
        (1, "Default", True),
        (5, "ci", False),
    ]


@pytest.mark.parametrize(
    ("token", "scope", "status"),
    [
        (REPO_ONLY, "/repos/octo/hello", 201),
        (REPO_ONLY, "/orgs/octo", 403),
        (REPO_ONLY, "/enterprises/big", 403),
        (ORG_ADMIN, "/orgs/octo", 201),
        (ORG_ADMIN, "/repos/octo/hello", 403),
        (ENTERPRISE, "/enterprises/big", 201),
        (ENTERPRISE, "/orgs/octo", 403),
        (NO_SCOPES, "/repos/octo/hello", 403),
        (ALL, "/enterprises/big", 201),
    ],
)
def test_classic_pat_scopes(fake: Any, token: str, scope: str, status: int) -> None:
    reply = call(fake.base_url, "POST", f"{scope}/actions/runners/registration-token", token)
    assert reply.status == status
    if status == 403:
        assert reply.body["message"] == "Resource not accessible by personal access token"
    assert "x-oauth-scopes" in reply.headers


def test_pat_specs_parse_scopes_with_colons() -> None:
    assert fg.parse_pat("tok") == ("tok", None)
    assert fg.parse_pat("tok:repo,admin:org") == ("tok", ["repo", "admin:org"])
    with fg.FakeGitHub(pats=["tok0000000001:admin:org"]) as server:
        path = "/orgs/octo/actions/runners/registration-token"
        assert call(server.base_url, "POST", path, "tok0000000001").status == 201
        assert call(server.base_url, "POST", REG, "tok0000000001").status == 403


@pytest.mark.parametrize(
    "path",
    [
        "/repos/missing-owner/hello/actions/runners/registration-token",
        "/repos/octo/missing-repo/actions/runners/remove-token",
        "/orgs/missingorg/actions/runners/registration-token",
        "/enterprises/missing/actions/runners/registration-token",
        "/repos/octo/hello/actions/nothing-here",
    ],
)
def test_missing_names_and_unknown_routes_are_404(fake: Any, path: str) -> None:
    reply = call(fake.base_url, "POST", path, ALL)
    assert (reply.status, reply.body["message"]) == (404, "Not Found")


def test_missing_names_still_need_credentials(fake: Any) -> None:
    path = "/repos/missing-owner/hello/actions/runners/registration-token"
    assert call(fake.base_url, "POST", path, None).status == 401


# --- the GitHub App -------------------------------------------------------------------------


def test_app_jwt_lists_installations_and_mints_an_installation_token(
    fake: Any, app_key: AppKey
) -> None:
    token = app_jwt(app_key.private)
    listing = call(fake.base_url, "GET", "/app/installations", token)
    assert listing.status == 200, listing.body
    assert [(i["id"], i["app_id"]) for i in listing.body] == [(INSTALLATION_ID, APP_ID)]
    assert listing.body[0]["account"]["login"]
    repo = call(fake.base_url + "/api/v3", "GET", "/repos/octo/hello/installation", token)
    assert (repo.status, repo.body["id"]) == (200, INSTALLATION_ID)
    assert repo.body["access_tokens_url"] == (
        f"{fake.base_url}/api/v3/app/installations/{INSTALLATION_ID}/access_tokens"
    )
    org = call(fake.base_url, "GET", "/orgs/octo/installation", token)
    assert (org.status, org.body["id"], org.body["account"]["login"]) == (
        200,
        INSTALLATION_ID,
        "octo",
    )
    minted = call(
        fake.base_url, "POST", f"/app/installations/{INSTALLATION_ID}/access_tokens", token, {}
    )
    assert minted.status == 201, minted.body
    assert minted.body["token"].startswith("ghs_")
    assert minted.body["permissions"]
    assert minted.body["expires_at"].endswith("Z")
    used = call(fake.base_url, "POST", "/orgs/octo/actions/runners/registration-token")
    assert used.status == 401
    used = call(
        fake.base_url, "POST", "/orgs/octo/actions/runners/registration-token", minted.body["token"]
    )
    assert used.status == 201
    assert [r["auth"] for r in fake.requests] == ["jwt"] * 4 + ["none", "installation"]


def test_unknown_installation_is_404(fake: Any, app_key: AppKey) -> None:
    token = app_jwt(app_key.private)
    reply = call(fake.base_url, "POST", "/app/installations/5/access_tokens", token)
    assert reply.status == 404


@pytest.mark.parametrize("iss", [APP_ID, str(APP_ID)])
def test_jwt_issuer_may_be_a_number_or_a_string(fake: Any, app_key: AppKey, iss: Any) -> None:
    reply = call(fake.base_url, "GET", "/app/installations", app_jwt(app_key.private, iss=iss))
    assert reply.status == 200


def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k, now: app_jwt(other_key()), "could not be decoded"),
        (
            lambda k, now: app_jwt("a-shared-secret-is-no-rsa-key-0123456789", alg="HS256"),
            "decoded",
        ),
        (lambda k, now: "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjF9.bm9wZQ", "could not be decoded"),
        (lambda k, now: app_jwt(k, iat=now - 700, exp=now - 10), "'Expiration time' claim"),
        (lambda k, now: app_jwt(k, exp=None), "'Expiration time' claim"),
        (lambda k, now: app_jwt(k, exp=now + 900), "too far in the future"),
        (lambda k, now: app_jwt(k, iat=now + 120, exp=now + 500), "'Issued at' claim"),
        (lambda k, now: app_jwt(k, iat=None), "'Issued at' claim"),
        (lambda k, now: app_jwt(k, iss="999"), "Integration not found"),
        (lambda k, now: app_jwt(k, iss=None), "'Issuer' claim"),
    ],
)
def test_bad_jwts_are_refused(fake: Any, app_key: AppKey, make: Any, message: str) -> None:
    token = make(app_key.private, int(time.time()))
    reply = call(fake.base_url, "GET", "/app/installations", token)
    assert reply.status == 401
    assert message in reply.body["message"]
    assert fake.requests[-1]["auth"] == "bad"


@pytest.mark.parametrize("token", [ALL, None])
def test_app_routes_want_a_jwt(fake: Any, token: str | None) -> None:
    path = f"/app/installations/{INSTALLATION_ID}/access_tokens"
    reply = call(fake.base_url, "POST", path, token)
    assert reply.status == 401


def test_a_jwt_alone_cannot_manage_runners(fake: Any, app_key: AppKey) -> None:
    reply = call(fake.base_url, "POST", REG, app_jwt(app_key.private))
    assert (reply.status, reply.body["message"]) == (403, "Resource not accessible by integration")


def test_installation_without_runner_permissions_is_403(app_key: AppKey) -> None:
    with fg.FakeGitHub(
        app_id=APP_ID, app_public_key=app_key.public_pem, app_permissions="none"
    ) as server:
        path = "/app/installations/1/access_tokens"
        minted = call(server.base_url, "POST", path, app_jwt(app_key.private))
        assert minted.status == 201
        reply = call(server.base_url, "POST", REG, minted.body["token"])
    assert (reply.status, reply.body["message"]) == (403, "Resource not accessible by integration")


def test_expired_installation_tokens_are_bad_credentials(app_key: AppKey) -> None:
    with fg.FakeGitHub(app_id=APP_ID, app_public_key=app_key.public_pem, token_ttl=0) as server:
        path = "/app/installations/1/access_tokens"
        minted = call(server.base_url, "POST", path, app_jwt(app_key.private))
        reply = call(server.base_url, "POST", REG, minted.body["token"])
    assert (reply.status, reply.body["message"]) == (401, "Bad credentials")


# --- faults ---------------------------------------------------------------------------------


def test_a_fault_with_a_count_fails_that_many_calls_then_recovers(app_key: AppKey) -> None:
    with fg.FakeGitHub(pats=[ALL], fail=["registration-token=503x2"]) as server:
        statuses = [call(server.base_url, "POST", REG, ALL).status for _ in range(3)]
        other = call(server.base_url, "POST", "/repos/o/r/actions/runners/remove-token", ALL)
        first = server.requests[0]
    assert statuses == [503, 503, 201]
    assert other.status == 201
    assert first["status"] == 503


def test_a_fault_without_a_count_always_fails_with_a_github_message() -> None:
    with fg.FakeGitHub(pats=[ALL], fail=["generate-jitconfig=500", "runners=429"]) as server:
        path = "/repos/o/r/actions/runners"
        jit = [
            call(server.base_url, "POST", path + "/generate-jitconfig", ALL, jit_body())
            for _ in "ab"
        ]
        listing = call(server.base_url, "GET", path, ALL)
    assert [r.status for r in jit] == [500, 500]
    assert jit[0].body["message"] == "Internal Server Error"
    assert listing.status == 429
    assert listing.headers.get("retry-after") == "1"


def test_faults_can_be_added_while_running() -> None:
    with fg.FakeGitHub(pats=[ALL]) as server:
        assert call(server.base_url, "POST", REG, ALL).status == 201
        added = call(
            server.base_url, "POST", "/_fake/fail", body={"fail": "registration-token=502x1"}
        )
        assert added.status == 200
        assert call(server.base_url, "POST", REG, ALL).status == 502
        assert call(server.base_url, "POST", REG, ALL).status == 201


def test_a_hang_lets_the_client_timeout_fire_then_answers_normally() -> None:
    with fg.FakeGitHub(pats=[ALL], fail=["registration-token=hangx1"]) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            call(server.base_url, "POST", REG, ALL, timeout=0.3)
        assert time.monotonic() - started < 5
        assert call(server.base_url, "POST", REG, ALL).status == 201


def test_stopping_wakes_a_hanging_request_at_once() -> None:
    server = fg.FakeGitHub(pats=[ALL], fail=["access-tokens=hang", "registration-token=hang"])
    server.start()
    with pytest.raises(TimeoutError):
        call(server.base_url, "POST", REG, ALL, timeout=0.2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3


def test_a_lost_answer_does_the_call_and_closes_without_one() -> None:
    with fg.FakeGitHub(pats=[ALL], fail=["generate-jitconfig=lostx1"]) as server:
        path = "/repos/o/r/actions/runners/generate-jitconfig"
        with pytest.raises(http.client.RemoteDisconnected):
            call(server.base_url, "POST", path, ALL, jit_body())
        assert len(server.runners) == 1  # done all the same
        assert server.requests[0]["status"] == "lost"
        again = call(server.base_url, "POST", path, ALL, jit_body())
    assert again.status == 409  # the name is taken by the runner whose answer was lost


def test_a_slow_answer_does_the_call_then_hangs() -> None:
    with fg.FakeGitHub(pats=[ALL], fail=["registration-token=slowx1"]) as server:
        with pytest.raises(TimeoutError):
            call(server.base_url, "POST", REG, ALL, timeout=0.3)
        assert server.hanging == 1
        assert server.token_kind("***sha256:0") is None
        tokens = list(server._runner_tokens)
    assert len(tokens) == 1  # issued before the hang


def test_a_fault_may_carry_headers_and_a_message() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000000"}
    fault = fg.Fault("registration-token", 403, 1, headers=headers, message="API rate limit")
    with fg.FakeGitHub(pats=[ALL], fail=[fault]) as server:
        reply = call(server.base_url, "POST", REG, ALL)
    assert (reply.status, reply.body["message"]) == (403, "API rate limit")
    assert reply.headers["x-ratelimit-reset"] == "1700000000"


def test_installation_tokens_have_their_own_lifetime(app_key: AppKey) -> None:
    with fg.FakeGitHub(
        app_id=APP_ID, app_public_key=app_key.public_pem, token_ttl=3600, app_token_ttl=0
    ) as server:
        path = "/app/installations/1/access_tokens"
        minted = call(server.base_url, "POST", path, app_jwt(app_key.private))
        reply = call(server.base_url, "POST", REG, minted.body["token"])
        assert (reply.status, reply.body["message"]) == (401, "Bad credentials")
        pat = fg.FakeGitHub(pats=[ALL], app_token_ttl=0)
        assert pat.token_ttl == 3600


def test_token_kind_and_revocation(app_key: AppKey) -> None:
    import hashlib

    with fg.FakeGitHub(pats=[ALL], app_id=APP_ID, app_public_key=app_key.public_pem) as server:
        token = call(server.base_url, "POST", REG, ALL).body["token"]
        mark = "***sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]
        assert server.token_kind(mark) == "registration"
        path = "/app/installations/1/access_tokens"
        minted = call(server.base_url, "POST", path, app_jwt(app_key.private)).body["token"]
        server.revoke_installation_tokens()
        assert call(server.base_url, "POST", REG, minted).status == 401


# --- the record -----------------------------------------------------------------------------


def test_the_record_describes_each_call_and_never_holds_a_credential(
    tmp_path: Path, app_key: AppKey
) -> None:
    record = tmp_path / "requests.jsonl"
    with fg.FakeGitHub(
        pats=PATS, app_id=APP_ID, app_public_key=app_key.public_pem, record_path=str(record)
    ) as server:
        base = server.base_url
        token = app_jwt(app_key.private)
        minted = call(base, "POST", "/app/installations/1/access_tokens", token, {}).body["token"]
        reg = call(base + "/api/v3", "POST", REG, minted).body["token"]
        remove = call(base, "POST", "/repos/octo/hello/actions/runners/remove-token", ALL)
        jit = call(base, "POST", "/orgs/o/actions/runners/generate-jitconfig", ALL, jit_body())
        call(base, "POST", REG, "ghp_wrongwrongwrong0001")
        register = {"url": f"{base}/octo/hello", "token": reg, "name": "r1", "labels": ["x"]}
        assert call(base, "POST", "/_agent/register", body=register).status == 200
        leaky = {"name": ALL, "runner_group_id": 1, "labels": [minted]}
        call(base, "POST", "/orgs/o/actions/runners/generate-jitconfig", ALL, leaky)
        served = call(base, "GET", "/_fake/requests").body
        recorded = server.requests
    secrets = [ALL, token, minted, reg, remove.body["token"], "ghp_wrongwrongwrong0001"]
    assert jit.status == 201
    for text in (json.dumps(recorded), json.dumps(served), record.read_text()):
        for secret in secrets:
            assert secret not in text
    assert [(r["method"], r["path"], r["status"], r["auth"]) for r in recorded] == [
        ("POST", "/app/installations/1/access_tokens", 201, "jwt"),
        ("POST", REG, 201, "installation"),
        ("POST", "/repos/octo/hello/actions/runners/remove-token", 201, "pat"),
        ("POST", "/orgs/o/actions/runners/generate-jitconfig", 201, "pat"),
        ("POST", REG, 401, "bad"),
        ("POST", "/_agent/register", 200, "none"),
        ("POST", "/orgs/o/actions/runners/generate-jitconfig", 201, "pat"),
    ]
    assert recorded[3]["body"] == jit_body()
    assert recorded[5]["body"]["token"] == "<redacted>"
    assert recorded[5]["body"]["name"] == "r1"
    assert recorded[1]["headers"] == {
        "accept": "application/vnd.github+json",
        "x-github-api-version": "2022-11-28",
        "user-agent": "ciparity-tests",
    }
    assert served == recorded
    assert [json.loads(line) for line in record.read_text().splitlines()] == recorded


# --- the runner service the stand-in agent uses ---------------------------------------------


def register(fake: Any, token: str, url_path: str = "/octo/hello", **change: Any) -> Reply:
    body = {"url": fake.base_url + url_path, "token": token, "name": "r1", "labels": ["ci"]}
    body.update(change)
    return call(fake.base_url, "POST", "/_agent/register", body=body)


def test_agent_register_checks_the_token_scope_and_the_name(fake: Any) -> None:
    token = reg_token(fake)
    assert register(fake, token, "/octo/other").status == 401
    assert register(fake, "REGNOTISSUED", "/octo/hello").status == 401
    remove = call(fake.base_url, "POST", "/repos/octo/hello/actions/runners/remove-token", ALL)
    assert register(fake, remove.body["token"]).status == 401
    first = register(fake, token, ephemeral=True, work="w1", runner_group="default")
    assert first.status == 200, first.body
    assert register(fake, token).status == 409
    replaced = register(fake, token, replace=True, labels=["other"], no_default_labels=True)
    assert (replaced.status, replaced.body["id"]) == (200, first.body["id"])
    [runner] = fake.runners
    assert runner["labels"] == ["other"]
    assert (runner["scope"], runner["ephemeral"], runner["runner_group"]) == (
        "repos/octo/hello",
        False,
        "Default",
    )


def test_agent_register_adds_the_default_labels_unless_told_not_to(fake: Any) -> None:
    token = reg_token(fake, "/orgs/octo")
    assert register(fake, token, "/octo", name="a", labels=["gpu"], arch="ARM64").status == 200
    org_token = reg_token(fake, "/enterprises/big")
    assert register(fake, org_token, "/enterprises/big", name="b", no_default_labels=True).status
    labels = {r["name"]: (r["scope"], r["labels"]) for r in fake.runners}
    assert labels == {
        "a": ("orgs/octo", ["self-hosted", "Linux", "ARM64", "gpu"]),
        "b": ("enterprises/big", ["ci"]),
    }


def test_agent_register_refuses_expired_tokens() -> None:
    with fg.FakeGitHub(pats=[ALL], token_ttl=0) as server:
        token = reg_token(server)
        assert register(server, token).status == 401
        assert server.runners == []


def test_agent_register_checks_named_runner_groups() -> None:
    with fg.FakeGitHub(pats=[ALL], runner_groups={1: "Default", 3: "ci"}) as server:
        token = reg_token(server)
        assert register(server, token, runner_group="nope").status == 404
        assert register(server, token, runner_group="CI").status == 200
        assert server.runners[0]["runner_group_id"] == 3


def test_agent_remove_and_job_done(fake: Any) -> None:
    token = reg_token(fake)
    kept = register(fake, token, name="kept").body["id"]
    once = register(fake, token, name="once", ephemeral=True).body["id"]
    remove = call(fake.base_url, "POST", "/repos/octo/hello/actions/runners/remove-token", ALL)
    other = call(fake.base_url, "POST", "/repos/octo/other/actions/runners/remove-token", ALL)
    body = {"id": kept, "token": other.body["token"]}
    assert call(fake.base_url, "POST", "/_agent/remove", body=body).status == 401
    body = {"id": kept, "token": remove.body["token"], "url": fake.base_url + "/octo/hello"}
    assert call(fake.base_url, "POST", "/_agent/remove", body=body).status == 200
    assert call(fake.base_url, "POST", "/_agent/remove", body=body).status == 404
    assert call(fake.base_url, "POST", "/_agent/job-done", body={"id": once}).status == 200
    assert fake.runners == []
    assert call(fake.base_url, "POST", "/_agent/job-done", body={"id": once}).status == 404


def test_job_done_keeps_a_runner_that_is_not_ephemeral(fake: Any) -> None:
    runner = register(fake, reg_token(fake)).body["id"]
    reply = call(fake.base_url, "POST", "/_agent/job-done", body={"id": runner})
    assert (reply.status, reply.body["deleted"]) == (200, False)
    assert [r["id"] for r in fake.runners] == [runner]


def test_agent_status_shows_in_the_api(fake: Any) -> None:
    runner = register(fake, reg_token(fake)).body["id"]
    body = {"id": runner, "status": "online", "busy": True}
    assert call(fake.base_url, "POST", "/_agent/status", body=body).status == 200
    path = f"/repos/octo/hello/actions/runners/{runner}"
    shown = call(fake.base_url, "GET", path, ALL).body
    assert (shown["status"], shown["busy"]) == ("online", True)
    refused = call(fake.base_url, "DELETE", path, ALL)
    assert refused.status == 422
    served = call(fake.base_url, "GET", "/_fake/runners").body
    assert served == fake.runners
