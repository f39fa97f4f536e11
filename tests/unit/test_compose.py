"""Tests for ciparity.compose (`invoke ci --parallel`) against a fake `proc.run`, and for the
compose file it drives."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, Call, FakeRun, result

from ciparity import checks, compose, proc
from ciparity.config import Config
from ciparity.console import Row
from ciparity.errors import CiparityError, DockerError

pytestmark = pytest.mark.usefixtures("clean_env")

MakeConfig = Callable[..., Config]
STARTED = "{{.State.StartedAt}} {{.State.FinishedAt}}"
PS = [
    {"Service": "reports-owner", "Name": "p-reports-owner-1", "ExitCode": 0},
    {"Service": "lint", "Name": "p-lint-1", "ExitCode": 0},
    {"Service": "typecheck", "Name": "p-typecheck-1", "ExitCode": 1},
    {"Service": "security", "Name": "p-security-1"},
    {"Service": "test", "Name": "p-test-1", "ExitCode": 2},
]


def test_parse_ps_array_and_lines() -> None:
    expected = {
        "reports-owner": ("p-reports-owner-1", 0),
        "lint": ("p-lint-1", 0),
        "typecheck": ("p-typecheck-1", 1),
        "security": ("p-security-1", 0),
        "test": ("p-test-1", 2),
    }
    assert compose.parse_ps(json.dumps(PS)) == expected
    assert compose.parse_ps("\n".join(json.dumps(item) for item in PS) + "\n") == expected
    assert compose.parse_ps("  \n") == {}


@pytest.mark.parametrize(
    ("started", "finished", "seconds"),
    [
        ("2026-01-02T10:00:00.123456789Z", "2026-01-02T10:00:05.623456789Z", 5.5),
        ("2026-01-02T10:00:05Z", "2026-01-02T10:00:00Z", 0.0),
        ("garbage", "2026-01-02T10:00:00Z", 0.0),
    ],
)
def test_seconds_between_docker_timestamps(started: str, finished: str, seconds: float) -> None:
    assert compose._seconds(started, finished) == seconds


def test_compose_file_prefers_the_checkout_s_own(make_config: MakeConfig) -> None:
    config = make_config()
    assert compose.compose_file(config) == compose.PACKAGED_FILE
    own = config.root / "docker" / "docker-compose.ci.yml"
    own.parent.mkdir()
    own.write_text("services: {}\n", encoding="utf-8")
    assert compose.compose_file(config) == own


def test_packaged_compose_file_is_the_repository_s() -> None:
    assert compose.PACKAGED_FILE.read_text(encoding="utf-8") == (
        REPO / compose.COMPOSE_FILE
    ).read_text(encoding="utf-8")


def test_compose_env(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    socket = tmp_path / "docker.sock"
    socket.write_text("", encoding="utf-8")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    monkeypatch.setenv("CI", "true")
    config = make_config(image="ci:7")
    env = compose.compose_env(config, "ciparity-abcd", checks.Options(markers="not docker"))
    assert env == {
        **os.environ,
        "CIPARITY_PROJECT": "ciparity-abcd",
        "CIPARITY_IMAGE": "ci:7",
        "CIPARITY_UID": str(os.getuid()),
        "CIPARITY_GID": str(os.getgid()),
        "CIPARITY_WORKSPACE": str(config.root),
        "CIPARITY_REPORTS_DIR": str(config.root / "reports"),
        "CIPARITY_DOCKER_SOCKET": str(socket),
        "CIPARITY_DOCKER_GID": str(socket.stat().st_gid),
        "CIPARITY_MARKERS": "not docker",
        "CIPARITY_PYTEST_ARGS": "",
        **config.run.env(),
    }
    assert env["CI"] == "true"


def test_compose_env_without_a_readable_socket(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    env = compose.compose_env(make_config(), "p", checks.Options())
    assert (env["CIPARITY_DOCKER_SOCKET"], env["CIPARITY_DOCKER_GID"]) == (
        str(tmp_path / "absent.sock"),
        "0",
    )
    assert env["CIPARITY_MARKERS"] == ""


def test_compose_env_for_a_remote_daemon_names_the_default_socket(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    env = compose.compose_env(make_config(), "p", checks.Options())
    assert env["CIPARITY_DOCKER_SOCKET"] == "/var/run/docker.sock"


def test_run_checks_refuses_copy_mode(make_config: MakeConfig, fake_run: FakeRun) -> None:
    with pytest.raises(CiparityError) as info:
        compose.run_checks(make_config(), "copy", checks.Options())
    assert info.value.message == (
        "ci --parallel needs a daemon that sees this checkout (bind mode);"
        " run `invoke ci` without --parallel here"
    )
    assert fake_run.calls == []


def reports_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        top = tarfile.TarInfo("reports")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        info = tarfile.TarInfo("reports/junit.xml")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"<ok/>\n"))
    return buffer.getvalue()


def _inspect(call: Call) -> proc.Result:
    times = {
        "p-lint-1": "2026-01-02T10:00:00Z 2026-01-02T10:00:04Z\n",
        "p-typecheck-1": "2026-01-02T10:00:00Z 2026-01-02T10:00:09.5Z\n",
        "p-security-1": "not-two-words\n",
    }
    box = call.argv[-1]
    if box in times:
        return result(call.argv, stdout=times[box])
    return result(call.argv, 1, stderr="Error: No such object\n")


def _parallel_fake(fake: FakeRun, ps: str) -> None:
    fake.on("docker", "compose", "-f", respond=lambda call: _compose_answer(call, ps))
    fake.on("docker", "inspect", respond=_inspect)
    fake.on("docker", "cp", raw=reports_tar())


def _compose_answer(call: Call, ps: str) -> proc.Result:
    if "ps" in call.argv:
        return result(call.argv, stdout=ps)
    return result(call.argv, stdout="compose output\n")


def test_run_checks_runs_every_check_and_always_tears_down(
    make_config: MakeConfig, fake_run: FakeRun
) -> None:
    config = make_config()
    _parallel_fake(fake_run, json.dumps(PS))
    out = io.StringIO()
    rows = compose.run_checks(config, "bind", checks.Options(markers="m"), out)
    assert rows == [
        Row("lint", "passed", 4.0),
        Row("typecheck", "FAILED (exit 1)", 9.5, "1"),
        Row("security", "passed", 0.0),
        Row("test", "FAILED (exit 2)", 0.0, "2"),
    ]
    project = fake_run.argvs[0][7]
    assert re.fullmatch(r"ciparity-[0-9a-f]{8}", project)
    override = fake_run.argvs[0][5]
    assert override.endswith("/environment.json") and not Path(override).exists()
    files = ["-f", str(compose.PACKAGED_FILE), "-f", override]
    base = ["docker", "compose", *files, "-p", project]
    assert fake_run.argvs == [
        [*base, "up", "--no-color"],
        [*base, "ps", "-a", "--format", "json"],
        ["docker", "inspect", "--format", STARTED, "p-lint-1"],
        ["docker", "inspect", "--format", STARTED, "p-typecheck-1"],
        ["docker", "inspect", "--format", STARTED, "p-security-1"],
        ["docker", "inspect", "--format", STARTED, "p-test-1"],
        [*base, "down", "-v", "--remove-orphans"],
    ]
    up, ps = fake_run.calls[0], fake_run.calls[1]
    assert up.tee is out and out.getvalue() == "compose output\n"
    assert up.env is not None and up.env["CIPARITY_PROJECT"] == project
    assert up.env["CIPARITY_MARKERS"] == "m"
    assert (up.cwd, ps.cwd, fake_run.calls[-1].cwd) == (str(config.root),) * 3
    assert fake_run.calls[-1].env == up.env
    # Made by the invoking user before compose starts, so the daemon never makes it as root.
    assert config.reports_dir.is_dir()


def test_every_parallel_check_gets_the_serial_check_s_environment(make_config: MakeConfig) -> None:
    config = make_config(env_allow="MY_TOKEN")
    host = {"GITHUB_SHA": "x", "HOME": "/", "MY_TOKEN": "t", "CIPARITY_REQUIRE_DOCKER": "1"}
    handed = {"CIPARITY_MARKERS": "m", "CIPARITY_PYTEST_ARGS": "--no-cov -x"}
    override = compose.environment_override(config, handed, host)
    for name in checks.CHECKS:
        listed = override["services"][name]["environment"]  # type: ignore[index]
        fixed = {**checks.check_env(config, "bind"), **handed}
        assert listed == [f"{k}={v}" for k, v in sorted(fixed.items())] + list(
            checks.pass_env(config, host)
        )
        assert "GITHUB_SHA" in listed and "MY_TOKEN" in listed and "HOME" not in listed


@pytest.mark.parametrize("error", [KeyboardInterrupt(), DockerError("compose crashed")])
def test_run_checks_tears_down_when_up_raises(
    make_config: MakeConfig, fake_run: FakeRun, error: BaseException
) -> None:
    fake_run.on("docker", "compose", "-f", respond=lambda call: _up_explodes(call, error))
    with pytest.raises(type(error)):
        compose.run_checks(make_config(), "bind", checks.Options(), io.StringIO())
    assert [a[8:] for a in fake_run.argvs] == [
        ["up", "--no-color"],
        ["down", "-v", "--remove-orphans"],
    ]


def _up_explodes(call: Call, error: BaseException) -> proc.Result:
    if "up" in call.argv:
        raise error
    return result(call.argv)


def test_run_checks_ps_failure(make_config: MakeConfig, fake_run: FakeRun) -> None:
    fake_run.on(
        "docker",
        "compose",
        "-f",
        respond=lambda call: (
            result(call.argv, 1, stderr="no such service\n")
            if "ps" in call.argv
            else result(call.argv)
        ),
    )
    with pytest.raises(DockerError) as info:
        compose.run_checks(make_config(), "bind", checks.Options(), io.StringIO())
    assert info.value.message == "docker compose ps failed: no such service"
    assert fake_run.argvs[-1][-3:] == ["down", "-v", "--remove-orphans"]


def test_run_checks_services_that_never_started(make_config: MakeConfig, fake_run: FakeRun) -> None:
    _parallel_fake(fake_run, json.dumps(PS[:3]))
    fake_run.on(
        "docker",
        "compose",
        "-f",
        respond=lambda call: (
            _compose_answer(call, json.dumps(PS[:3]))
            if "ps" in call.argv
            else result(call.argv, 1, stdout="pulling\nimage ci:1 not found\n")
        ),
    )
    with pytest.raises(DockerError) as info:
        compose.run_checks(make_config(), "bind", checks.Options(), io.StringIO())
    assert info.value.message == (
        "docker compose up did not start security, test: image ci:1 not found"
    )
    assert fake_run.argvs[-1][-3:] == ["down", "-v", "--remove-orphans"]


def _compose_document() -> dict[str, Any]:
    text = (REPO / compose.COMPOSE_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def test_compose_file_runs_each_check_with_the_in_container_entry_point() -> None:
    services = _compose_document()["services"]
    for name in checks.CHECKS:
        assert services[name]["command"] == ["python", "-m", "ciparity.checks", name]
        assert services[name]["labels"] == LABELS
        # The same paths as a serial check in bind mode: nested `docker run -v` must agree.
        assert "${CIPARITY_REPORTS_DIR}:${CIPARITY_REPORTS_DIR}" in services[name]["volumes"]
    assert "/var/run/docker.sock" in services["test"]["volumes"][-1]


LABELS = {
    "ciparity.managed": "1",
    "ciparity.run": "${CIPARITY_RUN_ID:-}",
    "ciparity.checkout": "${CIPARITY_RUN_CHECKOUT:-}",
    "ciparity.owner": "${CIPARITY_RUN_OWNER:-}",
    "ciparity.parent": "${CIPARITY_RUN_PARENT:-}",
}


def test_compose_file_labels_its_network_with_the_run() -> None:
    document = _compose_document()
    assert document["networks"]["checks"]["labels"] == LABELS
    assert "volumes" not in document
