"""Tests for ciparity.act_env: the CA, proxy, cache and artifact flags act-ci gives job
containers, without an engine."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ciparity import act, act_env
from ciparity.errors import ConfigError
from ciparity.ownership import Owner

ACTIONS = [
    ("actions/setup-python", "", "v5"),
    ("actions/upload-artifact", "", "v4"),
    ("actions/download-artifact", "", "v4.1.8"),
    ("actions/upload-artifact", "merge", "v4"),  # a sub-path action is not the artifact action
]


def _pairs(flags: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    return list(zip(flags[::2], flags[1::2]))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "corp-ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    return path


@pytest.fixture
def no_system_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(act_env, "SYSTEM_BUNDLE", tmp_path / "absent.crt")


def test_ca_bundle_setting_wins_and_is_relative_to_the_checkout(
    make_config: Any, bundle: Path
) -> None:
    (bundle.parent / "ca").mkdir()
    inner = bundle.parent / "ca" / "x.pem"
    inner.write_text("x", encoding="utf-8")
    config = make_config(ca_bundle=os.path.relpath(inner, make_config().root))
    assert act_env.find_ca_bundle(config, {"PIP_CERT": str(bundle)}) == inner.resolve()


def test_ca_bundle_from_the_first_variable_that_names_one(make_config: Any, bundle: Path) -> None:
    environ = {"SSL_CERT_FILE": str(bundle), "REQUESTS_CA_BUNDLE": "/nope"}
    assert act_env.find_ca_bundle(make_config(), environ) == bundle.resolve()


def test_ca_bundle_falls_back_to_the_system_bundle(
    make_config: Any, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(act_env, "SYSTEM_BUNDLE", bundle)
    assert act_env.find_ca_bundle(make_config(), {}) == bundle.resolve()


def test_no_ca_bundle_anywhere_is_none(make_config: Any, no_system_bundle: None) -> None:
    assert act_env.find_ca_bundle(make_config(), {}) is None


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("PIP_CERT", lambda p: p / "missing.pem", "cannot read CA bundle {p}: No such file"),
        ("SSL_CERT_FILE", lambda p: p, "CA bundle {p} is a folder, not a file"),
    ],
)
def test_unreadable_ca_bundle_is_one_line_naming_its_source(
    make_config: Any, tmp_path: Path, name: str, make: Any, message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        act_env.find_ca_bundle(make_config(), {name: str(path)})
    assert caught.value.message.startswith(f"{name}: " + message.format(p=path))
    assert "\n" not in caught.value.message


def test_unreadable_ca_bundle_setting(make_config: Any) -> None:
    with pytest.raises(ConfigError, match=r"^ca_bundle: cannot read CA bundle .*nope\.pem"):
        act_env.find_ca_bundle(make_config(ca_bundle="nope.pem"), {})


def test_proxy_variables_keep_loopback_direct() -> None:
    environ = {"HTTPS_PROXY": "http://u:p@proxy:3128", "no_proxy": "corp.example", "PATH": "/x"}
    assert act_env.proxy_env(environ) == {
        "HTTPS_PROXY": "http://u:p@proxy:3128",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "corp.example,127.0.0.1,localhost",
    }
    assert act_env.proxy_env({"PATH": "/x", "NO_PROXY": "a"}) == {}


def test_cache_dir_is_per_checkout_under_the_user_cache(
    prepare: Any, make_config: Any, tmp_path: Path
) -> None:
    config = make_config()
    folder = act_env.cache_dir(config, {"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert folder.parent == tmp_path / "xdg" / "ciparity" / "act-cache"
    assert folder.name.startswith(config.root.name + "-")
    other = config.__class__(root=tmp_path / "elsewhere" / config.root.name, python_version="3.12")
    assert act_env.cache_dir(other, {"XDG_CACHE_HOME": str(tmp_path)}).name != folder.name


@pytest.fixture
def prepare(make_config: Any, tmp_path: Path) -> Iterator[Callable[..., act_env.JobHost]]:
    """act_env.prepare on a snapshot folder; each run's cache relay is stopped afterwards."""
    made: list[act_env.JobHost] = []

    def run(environ: dict[str, str], **kw: Any) -> act_env.JobHost:
        snap = tmp_path / "snap"
        snap.mkdir(exist_ok=True)
        env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), **environ}
        host = act_env.prepare(make_config(), snap, tmp_path / "host", ACTIONS, environ=env, **kw)
        made.append(host)
        return host

    yield run
    for host in made:
        host.close()


def test_prepare_gives_loopback_cache_ca_and_artifacts(
    prepare: Any, make_config: Any, tmp_path: Path, bundle: Path
) -> None:
    host = prepare({"PIP_CERT": str(bundle)})
    pairs = _pairs(host.flags)
    cache = act_env.cache_dir(make_config(), {"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert ("--cache-server-addr", "127.0.0.1") in pairs
    assert ("--cache-server-path", str(cache)) in pairs
    assert host.relay is not None
    assert ("--cache-server-external-url", host.relay.url) in pairs
    assert host.relay.url.startswith("http://127.0.0.1:")
    assert (cache / "ciparity-checkout").read_text() == f"{make_config().root}\n"
    envs = [value for flag, value in pairs if flag == "--env"]
    assert [f"{n}=/etc/ciparity/host-ca.pem" for n in act_env.CA_VARS] == envs[:6]
    assert f"CIPARITY_ARTIFACTS={host.artifacts}" in envs
    assert host.container_options == (
        f"-v {host.artifacts}:{host.artifacts} -v {bundle.resolve()}:/etc/ciparity/host-ca.pem:ro"
    )
    assert stat.S_IMODE(host.artifacts.stat().st_mode) == 0o777
    assert "--env-file" not in host.flags, "no proxy: act's own .env handling is untouched"
    assert "--artifact-server-path" not in host.flags


def test_no_ca_bundle_means_no_mount_and_no_variables(
    prepare: Any, make_config: Any, tmp_path: Path, no_system_bundle: None
) -> None:
    host = prepare({})
    assert "host-ca" not in " ".join(host.flags) + host.container_options


def test_unreadable_bundle_fails_before_anything_is_made(
    prepare: Any, make_config: Any, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError):
        prepare({"PIP_CERT": str(tmp_path / "gone.pem")})
    assert not (tmp_path / "host").exists()
    assert not (tmp_path / "xdg").exists()


def test_proxy_values_go_to_a_private_env_file_merged_with_the_checkout_s(
    prepare: Any, make_config: Any, tmp_path: Path, no_system_bundle: None
) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "ci.env").write_text("FROM_REPO=1\n", encoding="utf-8")
    secret = "http://user:s3cret@proxy:3128"
    # The repository's .actrc names its env file (read_actrc keeps `--env-file=X` as one word).
    host = prepare({"HTTP_PROXY": secret}, args=["--pull=false", "--env-file=ci.env"])
    assert secret not in " ".join(host.flags)
    (env_file,) = [value for flag, value in _pairs(host.flags) if flag == "--env-file"]
    assert stat.S_IMODE(Path(env_file).stat().st_mode) == 0o600
    assert Path(env_file).read_text().splitlines() == [
        "FROM_REPO=1",
        f"HTTP_PROXY={secret}",
        "NO_PROXY=127.0.0.1,localhost",
        "no_proxy=127.0.0.1,localhost",
    ]


def test_default_dot_env_is_merged_too(prepare: Any, make_config: Any, tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / ".env").write_text("A=1\n", encoding="utf-8")
    host = prepare({"https_proxy": "http://p:1"})
    (env_file,) = [value for flag, value in _pairs(host.flags) if flag == "--env-file"]
    assert Path(env_file).read_text().splitlines()[0] == "A=1"


def test_artifact_actions_get_the_local_double(prepare: Any) -> None:
    host = prepare({})
    assert "--local-repository" not in host.flags, "the action mirror hands act the doubles"
    assert sorted(host.doubles) == [
        "actions/download-artifact@v4.1.8",
        "actions/upload-artifact@v4",
    ]
    for folder in host.doubles.values():
        action = yaml.safe_load((folder / "action.yml").read_text())
        assert action["runs"]["using"] == "composite"
        assert "local double" in action["name"]
        assert (folder / "artifact_double.py").is_file()
    upload = yaml.safe_load((host.doubles["actions/upload-artifact@v4"] / "action.yml").read_text())
    assert {"name", "path", "if-no-files-found", "retention-days"} <= set(upload["inputs"])
    assert upload["inputs"]["name"]["default"] == "artifact"
    step_env = upload["runs"]["steps"][0]["env"]
    assert step_env["INPUT_IF_NO_FILES_FOUND"] == "${{ inputs['if-no-files-found'] }}"
    assert host.artifact_flags(["actions/setup-python@v5"]) == []


def test_real_artifact_actions_use_act_s_artifact_server_on_loopback(prepare: Any) -> None:
    host = prepare({})
    pairs = dict(_pairs(host.artifact_flags(["actions/upload-artifact@v4"])))
    assert pairs["--artifact-server-addr"] == "127.0.0.1"
    assert int(pairs["--artifact-server-port"]) > 0
    assert Path(pairs["--artifact-server-path"]).is_dir()


def test_the_checkout_s_actrc_choice_wins(prepare: Any, tmp_path: Path) -> None:
    args = [
        "-P",
        "ubuntu-latest=img",
        "--local-repository",
        "actions/upload-artifact@v4=/mine",
        "--local-repository=actions/setup-python@v5=/sp",
    ]
    assert act_env.local_repositories(args) == {
        "actions/upload-artifact@v4",
        "actions/setup-python@v5",
    }
    host = prepare({}, args=args)
    assert list(host.doubles) == ["actions/download-artifact@v4.1.8"]
    stubs = ["--local-repository", "actions/setup-python@v5=/stub", "--x", "actions/cache@v4=/c"]
    assert act_env.without_overridden(stubs, {"actions/setup-python@v5"}) == stubs[2:]


def test_remote_uses_reads_the_run_s_workflow(tmp_path: Path) -> None:
    workflow = tmp_path / ".github" / "workflows" / "ci.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/upload-artifact@v4\n      - uses: ./local\n"
        "      - uses: actions/cache/restore@v4\n",
        encoding="utf-8",
    )
    assert sorted(act_env.remote_uses(tmp_path, [workflow])) == [
        ("actions/cache", "restore", "v4"),
        ("actions/upload-artifact", "", "v4"),
    ]


def test_collect_artifacts_copies_each_name_and_replaces_an_old_copy(
    prepare: Any, make_config: Any, tmp_path: Path
) -> None:
    host = prepare({})
    (host.artifacts / "reports" / "sub").mkdir(parents=True)
    (host.artifacts / "reports" / "sub" / "junit.xml").write_text("<x/>", encoding="utf-8")
    dest = tmp_path / "out"
    (dest / "reports").mkdir(parents=True)
    (dest / "reports" / "stale.txt").write_text("old", encoding="utf-8")
    assert act_env.collect_artifacts(host, dest) == ["reports"]
    assert sorted(p.name for p in (dest / "reports").rglob("*")) == ["junit.xml", "sub"]


def test_act_argv_appends_the_job_container_options(tmp_path: Path) -> None:
    owner = Owner("0123456789ab", "/my checkout", "box", 42)
    argv = act.act_argv(
        "act", tmp_path / "ci.yml", act.Options(), owner, 998, more_options="-v /a:/a"
    )
    options = argv[argv.index("--container-options") + 1]
    assert options.endswith("--group-add 998 -v /a:/a")
