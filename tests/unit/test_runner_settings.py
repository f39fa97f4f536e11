"""The entrypoint settings: each bad configuration is one line, before any network call."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ciparity import runner
from ciparity.errors import CiparityError

URL = "https://github.com/octo/hello"


def env(**settings: str) -> dict[str, str]:
    return {runner.PREFIX + key: value for key, value in settings.items()}


def read(**settings: str) -> runner.Settings:
    return runner.read_settings(env(**settings))


def error(environ: dict[str, str]) -> str:
    with pytest.raises(CiparityError) as caught:
        runner.read_settings(environ)
    assert "\n" not in caught.value.message
    return caught.value.message


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_a_registration_token_for_a_repository() -> None:
    s = read(URL=URL, TOKEN="AAAA")
    assert (s.mode, s.scope_kind, s.scope_path) == ("token", "repo", "octo/hello")
    assert s.api_url == "https://api.github.com"
    assert s.ephemeral is True
    assert s.name.startswith("ciparity-") and len(s.name) == len("ciparity-") + 8
    assert s.all_labels() == ("self-hosted", "Linux", "X64")
    assert s.agent_dir == Path("/home/runner")


def test_names_are_unique() -> None:
    assert read(URL=URL, TOKEN="AAAA").name != read(URL=URL, TOKEN="AAAA").name


@pytest.mark.parametrize(
    "url, kind, path, api",
    [
        ("https://github.com/octo", "org", "octo", "https://api.github.com"),
        ("https://github.com/enterprises/acme", "enterprise", "acme", "https://api.github.com"),
        (
            "https://ghe.example.com/octo/hello",
            "repo",
            "octo/hello",
            "https://ghe.example.com/api/v3",
        ),
        ("https://ghe.example.com/octo/", "org", "octo", "https://ghe.example.com/api/v3"),
        # Issue 14, finding 6: these were read wrong.
        ("https://www.github.com/octo/hello", "repo", "octo/hello", "https://api.github.com"),
        ("https://GitHub.com/octo", "org", "octo", "https://api.github.com"),
        (
            "https://octocorp.ghe.com/octo/hello",
            "repo",
            "octo/hello",
            "https://api.octocorp.ghe.com",
        ),
        ("https://github.com/orgs/octo", "org", "octo", "https://api.github.com"),
        ("https://github.com/orgs/octo/", "org", "octo", "https://api.github.com"),
    ],
)
def test_scope_and_api_base_follow_the_url(url: str, kind: str, path: str, api: str) -> None:
    s = read(URL=url, PAT="p" * 8)
    assert (s.scope_kind, s.scope_path, s.api_url) == (kind, path, api)


def test_config_sh_gets_the_organisation_url_the_agent_understands() -> None:
    # The agent reads https://github.com/orgs/octo as the repository "orgs/octo".
    assert read(URL="https://github.com/orgs/octo", PAT="p" * 8).url == "https://github.com/octo"
    assert read(URL=URL + "/", TOKEN="AAAA").url == URL


def test_an_explicit_api_url_and_options() -> None:
    s = read(
        URL="https://ghe.example.com/octo",
        SCOPE="ORG",
        API_URL="https://api.ghe.example.com/",
        PAT="pppp",
        LABELS=" gpu, big ,self-hosted",
        GROUP="builders",
        NAME="box-1",
        WORKDIR="/tmp/work",
        EPHEMERAL="false",
        DISABLE_UPDATE="yes",
    )
    assert s.api_url == "https://api.ghe.example.com"
    assert s.all_labels() == ("self-hosted", "Linux", "X64", "gpu", "big")
    assert (s.group, s.name, s.workdir, s.ephemeral, s.disable_update) == (
        "builders",
        "box-1",
        "/tmp/work",
        False,
        True,
    )


@pytest.mark.parametrize(
    "value, expected",
    [("false", False), ("0", False), ("No", False), ("off", False), ("true", True), ("1", True)],
)
def test_booleans_mean_what_they_say(value: str, expected: bool) -> None:
    # The trap in other images: EPHEMERAL=false tested with `[ -n ]` is true.
    assert read(URL=URL, TOKEN="AAAA", EPHEMERAL=value).ephemeral is expected


def test_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "pat"
    secret.write_text("ghp_from_a_file\n")
    s = runner.read_settings({**env(URL=URL), "CIPARITY_RUNNER_PAT_FILE": str(secret)})
    assert s.auth is not None and s.auth.secret == "ghp_from_a_file"
    assert s.secret_files == (secret,)


def test_a_github_app(pem: str) -> None:
    s = read(URL="https://github.com/octo", APP_ID="123", APP_PRIVATE_KEY=pem)
    assert s.mode == "app" and s.auth is not None and s.auth.app_id == "123"
    assert read(URL=URL, APP_ID="1", APP_PRIVATE_KEY=pem, JIT="true").mode == "jit"


def test_a_jit_config_needs_no_url() -> None:
    s = read(JITCONFIG="eyJhIjoxfQ==")
    assert s.mode == "jitconfig" and s.url == ""


def test_host_side_settings_are_not_mistaken_for_runner_settings() -> None:
    environ = {**env(URL=URL, TOKEN="AAAA"), "CIPARITY_RUNNER_IMAGE": "x:y"}
    assert runner.read_settings(environ).mode == "token"


BAD = [
    ({}, "no credential: set one of CIPARITY_RUNNER_TOKEN"),
    (env(TOKEN="AAAA"), "CIPARITY_RUNNER_URL is not set"),
    (env(URL=URL, TOKEN="AAAA", PAT="pppp"), "two credentials: CIPARITY_RUNNER_TOKEN and"),
    (env(URL=URL, PAT="pppp", JITCONFIG="e30="), "two credentials"),
    (env(URL=URL, TOKEN="AAAA", SCOPE="team"), "CIPARITY_RUNNER_SCOPE='team' is not a scope"),
    (env(URL=URL, TOKEN="AAAA", SCOPE="org"), "names repository octo/hello"),
    (env(URL="github.com/octo", TOKEN="AAAA"), "is not a URL"),
    (env(URL="https://github.com/a/b/c", TOKEN="AAAA"), "names no repository"),
    (env(URL="http://github.com/octo", TOKEN="AAAA"), "must use https"),
    (env(URL=URL, TOKEN="AAAA", API_URL="ftp://x"), "API_URL='ftp://x' is not a URL"),
    (env(URL="https://[::1/o/r", TOKEN="AAAA"), "is not a URL"),
    (env(URL="https://github.com:port/o/r", TOKEN="AAAA"), "is not a URL"),
    (env(URL="https://github.com/orgs", TOKEN="AAAA"), "names no repository"),
    (env(URL=URL, TOKEN="AAAA", API_URL="http://api.example.com"), "must use https"),
    (env(URL=URL, TOKEN="AAAA", EPHEMERAL="maybe"), "CIPARITY_RUNNER_EPHEMERAL='maybe' is not a"),
    ({**env(URL=URL, TOKEN="AAAA"), "EPHEMERAL": "false"}, "EPHEMERAL is another runner image"),
    ({**env(URL=URL), "ACCESS_TOKEN": "x"}, "ACCESS_TOKEN is another runner image"),
    (env(URL=URL, TOKEN="AAAA", EPHEMRAL="false"), "unknown setting CIPARITY_RUNNER_EPHEMRAL"),
    (env(URL=URL, TOKEN="AAAA", LABELS="a b"), "'a b' is not a label"),
    (env(URL=URL, TOKEN="AAAA", LABELS=",".join(f"l{i}" for i in range(99))), "at most 100"),
    (env(URL=URL, TOKEN="AAAA", NO_DEFAULT_LABELS="1"), "needs CIPARITY_RUNNER_LABELS"),
    (env(URL=URL, TOKEN="AAAA", NAME="a", NAME_PREFIX="b"), "NAME or CIPARITY_RUNNER_NAME_PREFIX"),
    (env(URL=URL, TOKEN="AAAA", NAME="no spaces"), "runner name 'no spaces'"),
    (env(URL=URL, TOKEN="AAAA", NAME_PREFIX="x" * 60), "at most 64 characters"),
    (env(URL=URL, TOKEN="AAAA", TIMEOUT="soon"), "CIPARITY_RUNNER_TIMEOUT='soon': expected a"),
    (env(URL=URL, TOKEN="AAAA", ATTEMPTS="0"), "expected a whole number from 1 to 86400"),
    (env(URL=URL, TOKEN="AAAA", TIMEOUT="nan"), "CIPARITY_RUNNER_TIMEOUT='nan': expected a number"),
    (env(URL=URL, TOKEN="AAAA", STOP_TIMEOUT="inf"), "CIPARITY_RUNNER_STOP_TIMEOUT='inf'"),
    (env(URL=URL, PAT="pppp", JIT="1", GROUP="ci"), "a JIT runner needs CIPARITY_RUNNER_GROUP_ID"),
    (env(URL=URL, PAT="pppp", GROUP_ID="2"), "GROUP_ID is for JIT runners"),
    (env(URL=URL, PAT="pppp", JIT="1", GROUP_ID="1.5"), "CIPARITY_RUNNER_GROUP_ID"),
    (env(URL=URL, TOKEN="AAAA", JIT="true"), "JIT=true needs CIPARITY_RUNNER_PAT"),
    (env(JITCONFIG="e30=", EPHEMERAL="false"), "a JIT runner is always ephemeral"),
    (env(URL=URL, APP_ID="12"), "APP_ID is set without CIPARITY_RUNNER_APP_PRIVATE_KEY"),
    (env(URL=URL, APP_PRIVATE_KEY="k"), "no credential"),
    (env(URL=URL, TOKEN="AAAA", APP_PRIVATE_KEY="k"), "APP_PRIVATE_KEY is set without"),
    (env(URL=URL, APP_ID="my-app", APP_PRIVATE_KEY="k"), "expected the App's numeric id"),
    (env(URL=URL, APP_ID="12", APP_PRIVATE_KEY="not a key"), "is not a PEM RSA private key"),
    (env(URL=URL, TOKEN="AAAA", WORKDIR="a\nb"), "WORKDIR is not a path"),
]


@pytest.mark.parametrize("environ, expected", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_configuration_is_one_line(environ: dict[str, str], expected: str) -> None:
    assert expected in error(environ)


def test_app_settings_errors(pem: str) -> None:
    base = env(URL=URL, APP_ID="12", APP_PRIVATE_KEY=pem)
    assert "APP_INSTALLATION_ID='x'" in error({**base, runner.PREFIX + "APP_INSTALLATION_ID": "x"})
    enterprise = {**base, runner.PREFIX + "URL": "https://github.com/enterprises/acme"}
    assert "GitHub Apps cannot register enterprise runners" in error(enterprise)


def test_secret_file_errors(tmp_path: Path) -> None:
    missing = {**env(URL=URL), "CIPARITY_RUNNER_PAT_FILE": str(tmp_path / "nope")}
    assert "cannot read it" in error(missing)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "is empty" in error({**env(URL=URL), "CIPARITY_RUNNER_PAT_FILE": str(empty)})
    both = {**env(URL=URL, PAT="pppp"), "CIPARITY_RUNNER_PAT_FILE": str(empty)}
    assert "not both" in error(both)


@pytest.mark.parametrize(
    "name, value",
    [
        ("URL", "https://bot:hunter2secret@github.com/octo/hello"),
        ("URL", "https://bot:hunter2secret@ghe.example.com/octo/hello"),
        ("URL", "https://hunter2secret@github.com/octo"),
        ("API_URL", "https://bot:hunter2secret@ghe.example.com/api/v3"),
    ],
)
def test_a_url_with_credentials_is_refused_in_one_masked_line(
    capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    """Finding 6: the GHES one exited 1 with the password printed; github.com's reached
    config.sh --url (visible in ps) and a log line."""
    settings = {"URL": "https://ghe.example.com/octo/hello", "TOKEN": "AAAA", name: value}
    assert runner.main(environ=env(**settings)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"CIPARITY_RUNNER_{name}=https://***@" in err and "user name or password" in err
    assert "hunter2secret" not in err and "bot" not in err


def test_main_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = runner.main(environ=env(URL=URL, TOKEN="canary-token-123", EPHEMERAL="maybe"))
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ciparity-runner: error: ")
    assert out == ""
