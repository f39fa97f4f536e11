"""Tests for ciparity.checks: each check's steps, running them, their markers, the container spec
of a check, and the in-container entry point."""

from __future__ import annotations

import io
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from ciparity import checks, container, proc
from ciparity.checks import Options
from ciparity.config import Config
from ciparity.console import Row
from ciparity.errors import CiparityError

pytestmark = pytest.mark.usefixtures("clean_env")

MakeConfig = Callable[..., Config]
PYTHON = sys.executable


def test_lint_steps(make_config: MakeConfig) -> None:
    config = make_config()
    assert checks.steps("lint", config) == [
        ("black", ["black", "--check", "--diff", "src", "tests", "tasks.py"]),
        ("flake8", ["flake8", "src", "tests", "tasks.py"]),
        ("isort", ["isort", "--check-only", "--diff", "src", "tests", "tasks.py"]),
        ("python-version", [PYTHON, "-m", "ciparity.pyversion", "."]),
    ]


def test_lint_runs_hadolint_on_every_dockerfile(make_config: MakeConfig) -> None:
    config = make_config(test_dirs="tests,missing")
    root = config.root
    for name in (
        "Dockerfile",
        "docker/Dockerfile.ci",
        "docker/Dockerfile.alt",
        "runner/Dockerfile",
    ):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text("FROM scratch\n", encoding="utf-8")
    (root / "docker" / "compose.yml").write_text("", encoding="utf-8")
    (root / "docker" / "Dockerfile.d").mkdir()
    (root / "tasks.py").unlink()
    lint = checks.steps("lint", config)
    assert lint[0] == ("black", ["black", "--check", "--diff", "src", "tests"])
    assert lint[-1] == (
        "hadolint",
        [
            "hadolint",
            "--no-color",
            "Dockerfile",
            "docker/Dockerfile.alt",
            "docker/Dockerfile.ci",
            "runner/Dockerfile",
        ],
    )


def test_dockerfiles_in_a_folder_without_any(tmp_path: Path) -> None:
    assert checks.dockerfiles(tmp_path) == []


def test_typecheck_and_security_steps(make_config: MakeConfig) -> None:
    config = make_config(src_dirs="src,lib")
    assert checks.steps("typecheck", config) == [("mypy", ["mypy", "--strict", "src"])]
    assert checks.steps("security", config) == [
        ("bandit", ["bandit", "-q", "-c", "pyproject.toml", "-r", "src"])
    ]


def test_test_steps_with_coverage_and_options(make_config: MakeConfig) -> None:
    config = make_config(workers="4", test_timeout=60, coverage_min=90)
    reports = config.root / "reports"
    options = Options(pytest_args=("-x", "-k", "a b"), markers="not docker")
    assert checks.steps("test", config, options) == [
        (
            "pytest",
            [
                "pytest",
                "-p",
                "no:cacheprovider",
                "-n",
                "4",
                "--timeout=60",
                f"--junitxml={reports}/junit.xml",
                "--cov=demo",
                f"--cov-report=xml:{reports}/coverage.xml",
                f"--cov-report=html:{reports}/htmlcov",
                "--cov-report=term",
                "--cov-fail-under=90",
                "-m",
                "not docker",
                "-x",
                "-k",
                "a b",
            ],
        )
    ]


def test_test_steps_without_a_package_measure_no_coverage(make_config: MakeConfig) -> None:
    config = make_config(src_dirs="lib", reports="/tmp/r")
    assert config.package == ""
    assert checks.steps("test", config) == [
        (
            "pytest",
            [
                "pytest",
                "-p",
                "no:cacheprovider",
                "-n",
                "auto",
                "--timeout=300",
                "--junitxml=/tmp/r/junit.xml",
            ],
        )
    ]


def test_unknown_check(make_config: MakeConfig) -> None:
    with pytest.raises(CiparityError) as info:
        checks.steps("style", make_config())
    assert info.value.message == "unknown check 'style' (known: lint, typecheck, security, test)"


def _fake_steps(found: list[tuple[str, list[str]]]) -> Callable[..., list[tuple[str, list[str]]]]:
    def steps(name: str, config: Config, options: Options = Options()) -> list:  # type: ignore
        return found

    return steps


def test_run_steps_carries_on_and_returns_the_last_failure(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    ok = [PYTHON, "-c", "pass"]
    bad = [PYTHON, "-c", "raise SystemExit(3)"]
    monkeypatch.setattr(
        checks, "steps", _fake_steps([("ok", ok), ("bad", bad), ("missing", ["no-such-tool-xyz"])])
    )
    out = io.StringIO()
    assert checks.run_steps("lint", config, out=out) == 127
    assert out.getvalue().splitlines() == [
        f"--- lint: ok: {proc.quote(ok)}",
        "ciparity-step ok rc=0",
        f"--- lint: bad: {proc.quote(bad)}",
        "ciparity-step bad rc=3",
        "--- lint: missing: no-such-tool-xyz",
        "missing: no-such-tool-xyz is not installed in this image",
        "ciparity-step missing rc=127",
    ]
    assert config.reports_dir.is_dir()
    assert checks.failed_steps(out.getvalue()) == ["bad", "missing"]


def test_run_steps_returns_the_last_failing_code_even_after_a_pass(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = [
        ("bad", [PYTHON, "-c", "raise SystemExit(3)"]),
        ("worse", [PYTHON, "-c", "raise SystemExit(5)"]),
        ("ok", [PYTHON, "-c", "import os; print(os.getcwd())"]),
    ]
    monkeypatch.setattr(checks, "steps", _fake_steps(steps))
    config = make_config()
    assert checks.run_steps("test", config) == 5
    assert "ciparity-step ok rc=0\n" in capsys.readouterr().out


def test_run_steps_all_passing(make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "steps", _fake_steps([("ok", [PYTHON, "-c", "pass"])]))
    assert checks.run_steps("lint", make_config(), out=io.StringIO()) == 0


def test_failed_steps_reads_only_marker_lines() -> None:
    output = (
        "ciparity-step black rc=0\n"
        "ciparity-step flake8 rc=1\n"
        "noise ciparity-step isort rc=1\n"
        "ciparity-stepper x rc=1\n"
        "ciparity-step python version rc=127\n"
    )
    assert checks.failed_steps(output) == ["flake8", "python version"]
    assert checks.failed_steps("") == []


def test_check_env(make_config: MakeConfig) -> None:
    config = make_config(src_dirs="src,lib")
    root = config.root
    assert checks.check_env(config) == {
        "HOME": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "MYPY_CACHE_DIR": "/tmp/.mypy_cache",
        "COVERAGE_FILE": "/tmp/.coverage",
        "PYTHONDONTWRITEBYTECODE": "1",
        "USER": "ciparity",
        "PYTHONPATH": f"{root}/src:{root}/lib:/app/src",
        # The runs its tests start are children of this run (swept with it).
        "CIPARITY_OUTER_RUN": config.run.run,
    }
    bind = checks.check_env(config, "bind")
    assert bind["MYPY_CACHE_DIR"] == f"{root}/reports/.cache/mypy"
    assert bind["XDG_CACHE_HOME"] == f"{root}/reports/.cache"


def test_pass_env_is_the_allowlist_plus_our_settings(make_config: MakeConfig) -> None:
    environ = {
        "CI": "true",
        "GITHUB_SHA": "abc",
        "CIPARITY_MARKERS": "m",
        "CIPARITY_IMAGE": "i",
        "MY_TOKEN": "secret",
        "OTHER_TOKEN": "secret",
        "HOME": "/root",
    }
    config = make_config(env_allow="MY_TOKEN")
    assert checks.pass_env(config, environ) == (
        "CI",
        "GITHUB_SHA",
        "MY_TOKEN",
        "CIPARITY_IMAGE",
        "CIPARITY_MARKERS",
    )


def test_pass_env_reads_the_process_environment(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_OS", "Linux")
    assert checks.pass_env(make_config()) == ("RUNNER_OS",)


def test_spec_for_test_mounts_the_socket(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "7")
    config = make_config(image="ci:9")
    root = config.root
    options = Options(pytest_args=("-x",), markers="not docker")
    assert checks.spec("test", config, "bind", options) == container.Spec(
        image="ci:9",
        command=(
            "python",
            "-m",
            "ciparity.checks",
            "--markers",
            "not docker",
            "--pytest-arg",
            "-x",
            "test",
        ),
        workspace=container.Workspace(root, "bind", outputs=(root / "reports",)),
        user=container.current_user(),
        env=checks.check_env(config, "bind"),
        pass_env=("GITHUB_RUN_ID",),
        socket="/var/run/docker.sock",
        labels={"ciparity.check": "test", "ciparity.workspace": str(root)},
        # act's jobs run on the host network: act-ci's loopback servers must be there too.
        extra_args=("--tmpfs", "/tmp:exec,mode=1777", "--network", "host"),
        owner=config.run,
    )


def test_spec_for_other_checks_and_commands(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    lint = checks.spec("lint", config, "copy")
    assert (lint.command, lint.socket) == (("python", "-m", "ciparity.checks", "lint"), None)
    assert lint.workspace == container.Workspace(config.root, "copy", (config.root / "reports",))
    assert lint.extra_args == ()  # no tmpfs in copy mode: it would hide a checkout under /tmp
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    shell = checks.spec("test", config, "bind", interactive=True, command=["bash"])
    assert (shell.command, shell.interactive, shell.socket) == (("bash",), True, None)


class _Clock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def monotonic(self) -> float:
        return self.times.pop(0)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[container.Spec, str, object]]:
    seen: list[tuple[container.Spec, str, object]] = []
    monkeypatch.setattr(checks, "time", SimpleNamespace(monotonic=_Clock(10.0, 12.5).monotonic))
    return seen


def _container_run(
    seen: list[tuple[container.Spec, str, object]], answer: proc.Result
) -> Callable[..., proc.Result]:
    def run(spec: container.Spec, docker: str = "docker", tee: object = None) -> proc.Result:
        seen.append((spec, docker, tee))
        return answer

    return run


def test_run_check_passed(
    make_config: MakeConfig,
    monkeypatch: pytest.MonkeyPatch,
    runs: list[tuple[container.Spec, str, object]],
) -> None:
    config = make_config(docker="podman")
    monkeypatch.setattr(container, "run", _container_run(runs, proc.Result((), 0, "", "")))
    out = io.StringIO()
    assert checks.run_check("lint", config, "bind", out=out) == Row("lint", "passed", 2.5)
    assert runs == [(checks.spec("lint", config, "bind"), "podman", out)]
    assert out.getvalue() == "==> lint (in ciparity-ci:latest, workspace by bind)\n"
    assert config.reports_dir.is_dir()


def test_run_check_failed_names_the_failing_steps(
    make_config: MakeConfig,
    monkeypatch: pytest.MonkeyPatch,
    runs: list[tuple[container.Spec, str, object]],
) -> None:
    output = "ciparity-step black rc=1\nciparity-step flake8 rc=0\nciparity-step isort rc=2\n"
    monkeypatch.setattr(container, "run", _container_run(runs, proc.Result((), 2, output, "")))
    row = checks.run_check("lint", make_config(), "copy", out=io.StringIO())
    assert row == Row("lint", "FAILED (black, isort)", 2.5, "2")


def test_run_check_failed_without_markers_gives_the_exit_code(
    make_config: MakeConfig,
    monkeypatch: pytest.MonkeyPatch,
    runs: list[tuple[container.Spec, str, object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    answer = proc.Result((), 125, "docker: Error response from daemon\n", "")
    monkeypatch.setattr(container, "run", _container_run(runs, answer))
    row = checks.run_check("test", make_config(), "bind")
    assert row == Row("test", "FAILED (exit 125)", 2.5, "125")
    assert runs[0][2] is sys.stdout
    assert capsys.readouterr().out == (
        "::group::test (in ciparity-ci:latest, workspace by bind)\n::endgroup::\n"
    )


def test_run_check_closes_the_group_when_the_run_raises(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")

    def interrupted(*args: object, **kwargs: object) -> proc.Result:
        raise KeyboardInterrupt

    monkeypatch.setattr(container, "run", interrupted)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        checks.run_check("lint", make_config(), "bind", out=out)
    assert out.getvalue().endswith("::endgroup::\n")


@pytest.fixture
def in_checkout(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path, Options]]:
    seen: list[tuple[str, Path, Options]] = []

    def run_steps(
        name: str, config: Config, options: Options = Options(), out: object = None
    ) -> int:
        seen.append((name, config.root, options))
        return 3

    monkeypatch.chdir(checkout)
    monkeypatch.setattr(checks, "run_steps", run_steps)
    return seen


def test_main_parses_options_and_returns_the_check_code(
    checkout: Path, in_checkout: list[tuple[str, Path, Options]]
) -> None:
    argv = ["--markers", "not docker", "--pytest-arg", "-x", "--pytest-arg", "-q", "test"]
    assert checks.main(argv) == 3
    assert in_checkout == [("test", checkout, Options(("-x", "-q"), "not docker"))]


def test_main_takes_markers_from_the_environment(
    checkout: Path, in_checkout: list[tuple[str, Path, Options]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIPARITY_MARKERS", "not slow")
    monkeypatch.setenv("CIPARITY_PYTEST_ARGS", "--no-cov -k 'a or b'")
    monkeypatch.setattr(sys, "argv", ["checks", "test"])
    assert checks.main() == 3
    assert in_checkout == [("test", checkout, Options(("--no-cov", "-k", "a or b"), "not slow"))]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus", "x", "lint"], "ciparity: error: unknown option --bogus"),
        (["lint", "test"], "ciparity: error: unknown option lint"),
        ([], "ciparity: error: name one check of lint, typecheck, security, test"),
        (["style"], "ciparity: error: name one check of lint, typecheck, security, test"),
        (["--markers"], "ciparity: error: name one check of lint, typecheck, security, test"),
    ],
)
def test_main_rejects_bad_arguments(
    in_checkout: list[tuple[str, Path, Options]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert checks.main(argv) == 2
    assert capsys.readouterr().err == message + "\n"
    assert in_checkout == []


def test_main_reports_configuration_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert checks.main(["lint"]) == 2
    assert capsys.readouterr().err == (
        f"ciparity: error: {tmp_path / '.python-version'} is missing:"
        " write the project's Python version (3.12) in it\n"
    )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_module_entry_point_exits_with_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["checks", "nope"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("ciparity.checks", run_name="__main__")
    assert info.value.code == 2
    assert "name one check" in capsys.readouterr().err
