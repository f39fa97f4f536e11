"""Tests for ciparity.tasks: error handling, and every task driven with invoke's MockContext
against a fake `proc.run` and fake services (no Docker engine); plus the real `invoke` CLI."""

from __future__ import annotations

import io
import os
import runpy
import shutil
import signal
import subprocess  # nosec B404 - argv lists only
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import REPO, FakeRun
from invoke.context import MockContext
from invoke.exceptions import Exit

from ciparity import checks, compose, container, hostsetup, images, proc, tasks
from ciparity.config import Config
from ciparity.console import Row
from ciparity.errors import CiparityError, ConfigError, DockerError, Interrupted
from ciparity.ownership import Owner

pytestmark = pytest.mark.usefixtures("clean_env")

TASKS = ("setup", "base", "build", "lint", "typecheck", "security", "test", "ci", "shell")
MORE_TASKS = ("clean", "doctor", "bench", "build-runner", "act-ci", "actions-sync", "runners")
DENIED = (
    "permission denied while trying to connect to the Docker daemon socket at"
    ' unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.47/version":'
    " dial unix /var/run/docker.sock: connect: permission denied"
)
UNREACHABLE = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
    " Is the docker daemon running?"
)


@pytest.fixture
def in_checkout(checkout: Path, monkeypatch: pytest.MonkeyPatch, fake_run: FakeRun) -> Path:
    """The tasks run from the sample checkout's src/ (they find its root), with fake docker."""
    monkeypatch.chdir(checkout / "src")
    return checkout


def ctx() -> MockContext:
    return MockContext()


# --- project_root and the root tasks.py ------------------------------------------------------


def test_project_root_walks_up_to_python_version(checkout: Path) -> None:
    nested = checkout / "src" / "demo"
    assert tasks.project_root(nested) == checkout
    assert tasks.project_root(checkout) == checkout


def test_project_root_of_a_checkout_without_python_version_is_its_git_root(
    tmp_path: Path,
) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "pkg").mkdir()
    assert tasks.project_root(tmp_path / "repo" / "pkg") == tmp_path / "repo"


def test_project_root_defaults_to_the_current_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO / "src" / "ciparity")
    assert tasks.project_root() == REPO


def test_project_root_without_a_checkout_is_the_start(tmp_path: Path) -> None:
    if any((p / ".python-version").exists() for p in (tmp_path, *tmp_path.parents)):
        pytest.skip("a .python-version above the temporary folder")  # pragma: no cover
    assert tasks.project_root(tmp_path) == tmp_path


def test_root_tasks_py_exposes_the_package_collection() -> None:
    namespace = runpy.run_path(str(REPO / "tasks.py"))
    assert namespace["ns"] is tasks.ns
    assert set(tasks.ns.task_names) == set(TASKS + MORE_TASKS)


# --- fatal_errors -----------------------------------------------------------------------------


def _raising(error: BaseException) -> Any:
    @tasks.fatal_errors
    def body() -> None:
        raise error

    return body


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CiparityError("no way"), 2),
        (ConfigError("no way"), 2),
        (DockerError("no way"), 3),
        (CiparityError("no way", exit_code=9), 9),
    ],
)
def test_fatal_errors_become_one_line_and_the_exit_code(error: CiparityError, code: int) -> None:
    with pytest.raises(Exit) as info:
        _raising(error)()
    assert (info.value.message, info.value.code) == ("ciparity: error: no way", code)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_become_an_exit_after_cleanup(signum: int, code: int) -> None:
    with pytest.raises(Exit) as info:
        _raising(Interrupted(signum))()
    assert (info.value.message, info.value.code) == (
        "ciparity: interrupted; containers removed",
        code,
    )


def test_a_real_sigterm_inside_a_task_is_an_exit_143() -> None:
    @tasks.fatal_errors
    def body() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Exit) as info:
        body()
    assert info.value.code == 143
    assert signal.getsignal(signal.SIGTERM) == before


def test_fatal_errors_returns_the_body_s_value_and_keeps_its_name() -> None:
    @tasks.fatal_errors
    def answer(x: int, *, y: int) -> int:
        """Doc."""
        return x + y

    assert answer(1, y=2) == 3
    assert (answer.__name__, answer.__doc__) == ("answer", "Doc.")


def test_fatal_errors_lets_other_exits_through() -> None:
    exit_ = Exit("ciparity: lint failed", 5)
    with pytest.raises(Exit) as info:
        _raising(exit_)()
    assert info.value is exit_


def test_debug_shows_the_original_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIPARITY_DEBUG", "1")
    with pytest.raises(ConfigError, match="^no way$"):
        _raising(ConfigError("no way"))()


def test_debug_zero_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIPARITY_DEBUG", "0")
    with pytest.raises(Exit):
        _raising(ConfigError("no way"))()


def test_debug_false_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIPARITY_DEBUG", "false")
    with pytest.raises(Exit):
        _raising(ConfigError("no way"))()


def test_tasks_have_their_help() -> None:
    assert tasks.test.help == {
        "markers": "pytest -m expression, e.g. 'not docker'",
        "pytest-args": "extra pytest arguments, as one quoted string",
        "repeat": "run the suite N times in a row (a hunt for flaky tests); a table of each run",
    }
    assert tasks.lint.help == {}
    assert tasks.lint.__doc__ is not None and tasks.lint.__doc__.startswith("black --check")


# --- helpers under the tasks -----------------------------------------------------------------


def test_docker_ready(fake_run: FakeRun, make_config: Any) -> None:
    tasks._docker_ready(make_config(docker="/opt/docker"))
    assert fake_run.argvs == [["/opt/docker", "version", "--format", "{{.Server.Version}}"]]


@pytest.mark.parametrize(
    ("stderr", "message"),
    [
        (
            DENIED,
            "permission denied on the Docker socket: add this user to the socket's group"
            " (sudo usermod -aG docker $USER) or set DOCKER_HOST",
        ),
        (UNREACHABLE, f"the Docker daemon is unreachable: {UNREACHABLE}"),
    ],
)
def test_docker_not_ready(fake_run: FakeRun, make_config: Any, stderr: str, message: str) -> None:
    fake_run.on("docker", "version", returncode=1, stderr=f"Client: Docker Engine\n{stderr}\n")
    with pytest.raises(DockerError) as info:
        tasks._docker_ready(make_config())
    assert info.value.message == message


def test_mode_forced_or_probed(
    fake_run: FakeRun, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tasks._mode(make_config(workspace_mode="copy")) == "copy"
    probes: list[tuple[str, str, Path, Path]] = []

    def probe(docker: str, image: str, workspace: Path, probe_dir: Path) -> str:
        probes.append((docker, image, workspace, probe_dir))
        return "bind"

    monkeypatch.setattr(container, "probe_workspace_mode", probe)
    config = make_config()
    assert tasks._mode(config) == "bind"
    assert probes == [("docker", "ciparity-ci:latest", config.root, config.reports_dir)]
    assert tasks._mode(config) == "bind"
    assert len(probes) == 1, "the answer is remembered in reports/.cache"
    monkeypatch.setenv("DOCKER_HOST", "unix:///elsewhere.sock")
    assert tasks._mode(config) == "bind"
    assert len(probes) == 2, "another daemon is probed again"


def test_build_ci_without_dockerfile_uses_the_prebuilt_image(
    fake_run: FakeRun, make_config: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tasks._build_ci(make_config(image="team/ci:3")) is None
    assert capsys.readouterr().out == "using prebuilt team/ci:3 (no docker/Dockerfile.ci here)\n"
    assert fake_run.argvs == [
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", "team/ci:3"]
    ]


def test_build_ci_without_dockerfile_or_image(fake_run: FakeRun, make_config: Any) -> None:
    fake_run.on("docker", "image", "inspect", returncode=1, stderr="Error: No such image\n")
    with pytest.raises(DockerError) as info:
        tasks._build_ci(make_config())
    assert info.value.message == (
        "no docker/Dockerfile.ci here and image ciparity-ci:latest is missing:"
        " build it in the ciparity checkout or set `image` in [tool.ciparity]"
    )


@pytest.fixture
def image_service(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """images.* replaced: a stand-in base, a recorded wheelhouse fill and a recorded build."""
    calls: list[tuple[str, object]] = []

    def ensure_base(config: Config, prefix: str | None = None, **kw: object) -> images.BaseInfo:
        calls.append(("ensure_base", prefix))
        return images.BaseInfo(config.base, "stand-in", "local stand-in, CPython x")

    def fill_wheelhouse(config: Config, out: object = None) -> Path:
        calls.append(("fill_wheelhouse", config.root))
        return config.root

    def build(
        config: Config,
        dockerfile: Path,
        target: str,
        tag: str,
        offline: bool,
        build_args: dict[str, str] | None = None,
    ) -> Any:
        calls.append(("build", (dockerfile, target, tag, offline)))
        if build_args:
            calls.append(("build_args", build_args))
        return images.BuildReport(tag, 3.0, (images.Step("[deps 1/2] RUN x", True),))

    monkeypatch.setattr(images, "ensure_base", ensure_base)
    monkeypatch.setattr(images, "fill_wheelhouse", fill_wheelhouse)
    monkeypatch.setattr(images, "build", build)
    return calls


def _with_dockerfile(config: Config) -> Path:
    dockerfile = config.root / "docker" / "Dockerfile.ci"
    dockerfile.parent.mkdir(exist_ok=True)
    dockerfile.write_text("FROM scratch\n", encoding="utf-8")
    return dockerfile


def test_build_ci_builds_offline_on_a_stand_in(
    make_config: Any,
    image_service: list[tuple[str, object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config()
    dockerfile = _with_dockerfile(config)
    report = tasks._build_ci(config, "/opt/py")
    assert report is not None and report.seconds == 3.0
    assert image_service == [
        ("ensure_base", "/opt/py"),
        ("fill_wheelhouse", config.root),
        ("build", (dockerfile, "ci", "ciparity-ci:latest", True)),
    ]
    assert capsys.readouterr().out == (
        f"==> building ciparity-ci:latest on {config.base} (stand-in, offline)\n"
        f"{report.line()}\n"
    )


def test_build_ci_online_fills_no_wheelhouse(
    make_config: Any, image_service: list[tuple[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(offline="off")
    _with_dockerfile(config)
    tasks._build_ci(config)
    assert [name for name, _ in image_service] == ["ensure_base", "build"]
    assert f"on {config.base} (stand-in)\n" in capsys.readouterr().out


def test_build_runner_builds_both_targets_with_the_stand_in_agent_offline(
    make_config: Any, image_service: list[tuple[str, object]]
) -> None:
    config = make_config()
    dockerfile = config.root / "runner" / "Dockerfile"
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text("FROM scratch\n")
    tasks._build_runner(config)
    builds = [call for call in image_service if call[0] in ("build", "build_args")]
    assert builds == [
        ("build", (dockerfile, "act", "ciparity-runner:latest", True)),
        ("build_args", {"RUNNER_PACKAGES": ""}),
        ("build", (dockerfile, "self-hosted", "ciparity-runner:self-hosted", True)),
        ("build_args", {"RUNNER_PACKAGES": "", "RUNNER_AGENT": "standin"}),
    ]


def test_build_runner_passes_the_repository_s_runner_packages_to_both_targets(
    make_config: Any, image_service: list[tuple[str, object]]
) -> None:
    config = make_config(runner_packages="gh, yq=4.2-1")
    dockerfile = config.root / "runner" / "Dockerfile"
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text("FROM scratch\n")
    tasks._build_runner(config)
    args = [call[1] for call in image_service if call[0] == "build_args"]
    packages = [a["RUNNER_PACKAGES"] for a in args]  # type: ignore[index]
    assert packages == ["gh yq=4.2-1", "gh yq=4.2-1"]


def test_ensure_image_builds_only_a_missing_image(
    fake_run: FakeRun, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Config] = []
    monkeypatch.setattr(tasks, "_build_ci", lambda config, python=None: built.append(config))
    config = make_config()
    tasks._ensure_image(config)
    assert built == []
    fake_run.on("docker", "image", "inspect", returncode=1, stderr="Error: No such image\n")
    tasks._ensure_image(config)
    assert built == [config]


# --- the check tasks ---------------------------------------------------------------------------


class CheckRuns:
    """Stands in for checks.run_check: records (check, mode, options), answers from `rows`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, checks.Options]] = []
        self.rows: dict[str, Row] = {}

    def __call__(
        self, name: str, config: Config, mode: str, options: checks.Options = checks.Options()
    ) -> Row:
        self.seen.append((name, mode, options))
        return self.rows.get(name, Row(name, "passed", 1.0))


@pytest.fixture
def check_runs(monkeypatch: pytest.MonkeyPatch) -> CheckRuns:
    runs = CheckRuns()
    monkeypatch.setattr(checks, "run_check", runs)
    monkeypatch.setenv("CIPARITY_WORKSPACE_MODE", "bind")
    return runs


@pytest.mark.parametrize("name", ["lint", "typecheck", "security", "test"])
def test_check_task_passes_and_prints_the_table(
    in_checkout: Path,
    check_runs: CheckRuns,
    fake_run: FakeRun,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    getattr(tasks, name)(ctx())
    assert check_runs.seen == [(name, "bind", checks.Options())]
    width = max(len(name), len("check"))
    assert capsys.readouterr().out.splitlines()[-3:] == [
        f"{'check'.ljust(width)}  result  seconds",
        f"{'-' * width}  ------  -------",
        f"{name.ljust(width)}  passed  1.0",
    ]
    assert fake_run.argvs[:2] == [
        ["docker", "version", "--format", "{{.Server.Version}}"],
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", "ciparity-ci:latest"],
    ]
    # Then the sweep: its run's objects, and those of the runs its tests started.
    sweep = [" ".join(argv) for argv in fake_run.argvs[2:]]
    assert sweep[0].startswith("docker ps -aq --filter label=ciparity.run=")
    run = sweep[0].rpartition("=")[2]
    assert any(f"--filter label=ciparity.parent={run} " in line for line in sweep)


@pytest.mark.parametrize(("detail", "code"), [("2", 2), ("", 1), ("0", 1)])
def test_check_task_fails_with_the_check_s_code(
    in_checkout: Path,
    check_runs: CheckRuns,
    detail: str,
    code: int,
) -> None:
    check_runs.rows["lint"] = Row("lint", "FAILED (black)", 1.0, detail)
    with pytest.raises(Exit) as info:
        tasks.lint(ctx())
    assert (info.value.message, info.value.code) == ("ciparity: lint failed", code)


def test_test_task_passes_markers_and_pytest_args(in_checkout: Path, check_runs: CheckRuns) -> None:
    tasks.test(ctx(), markers="not docker", pytest_args="-x -k 'a b'")
    assert check_runs.seen == [("test", "bind", checks.Options(("-x", "-k", "a b"), "not docker"))]


def test_test_repeat_runs_the_suite_n_times_and_reports_each(
    in_checkout: Path, check_runs: CheckRuns, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = iter([Row("test", "passed", 1.0), Row("test", "FAILED (pytest)", 2.0, "1")])
    check_runs.rows = {}
    original = check_runs.__call__

    def flaky(name: str, config: Config, mode: str, options: checks.Options) -> Row:
        original(name, config, mode, options)
        return next(outcomes, Row("test", "passed", 3.0))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checks, "run_check", flaky)
        with pytest.raises(Exit) as info:
            tasks.test(ctx(), repeat=3)
    assert len(check_runs.seen) == 3
    assert (info.value.message, info.value.code) == ("ciparity: test failed in 1 of 3 runs", 1)
    table = capsys.readouterr().out.splitlines()[-3:]
    assert [line.split()[:3] for line in table] == [
        ["test", "1/3", "passed"],
        ["test", "2/3", "FAILED"],
        ["test", "3/3", "passed"],
    ]


def test_test_repeat_must_be_positive(in_checkout: Path, check_runs: CheckRuns) -> None:
    with pytest.raises(Exit) as info:
        tasks.test(ctx(), repeat=0)
    assert (info.value.message, info.value.code) == (
        "ciparity: error: --repeat 0: expected at least 1",
        2,
    )
    assert check_runs.seen == []


def test_check_task_reports_a_docker_problem_in_one_line(
    in_checkout: Path, check_runs: CheckRuns, fake_run: FakeRun
) -> None:
    fake_run.on("docker", "version", returncode=1, stderr=UNREACHABLE + "\n")
    with pytest.raises(Exit) as info:
        tasks.typecheck(ctx())
    assert (info.value.message, info.value.code) == (
        f"ciparity: error: the Docker daemon is unreachable: {UNREACHABLE}",
        3,
    )
    assert check_runs.seen == []


def test_check_task_reports_a_bad_setting(
    in_checkout: Path, check_runs: CheckRuns, monkeypatch: Any
) -> None:
    monkeypatch.setenv("CIPARITY_WORKSPACE_MODE", "sideways")
    with pytest.raises(Exit) as info:
        tasks.security(ctx())
    assert info.value.message == (
        "ciparity: error: environment: CIPARITY_WORKSPACE_MODE: expected one of auto, bind,"
        " copy, got 'sideways'"
    )


def _clock(monkeypatch: pytest.MonkeyPatch, *times: float) -> None:
    values = list(times)
    monkeypatch.setattr(tasks, "time", SimpleNamespace(monotonic=lambda: values.pop(0)))


def test_ci_runs_every_check_and_lists_the_failed_ones(
    in_checkout: Path,
    check_runs: CheckRuns,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _clock(monkeypatch, 100.0, 130.25)
    check_runs.rows["typecheck"] = Row("typecheck", "FAILED (mypy)", 2.0, "1")
    check_runs.rows["test"] = Row("test", "FAILED (exit 2)", 9.0, "2")
    with pytest.raises(Exit) as info:
        tasks.ci(ctx(), markers="not docker")
    assert (info.value.message, info.value.code) == ("ciparity: failed: typecheck, test", 1)
    options = checks.Options(markers="not docker")
    assert check_runs.seen == [(name, "bind", options) for name in checks.CHECKS]
    assert capsys.readouterr().out.splitlines()[-8:] == [
        "check      result           seconds",
        "---------  ---------------  -------",
        "build      passed           0.0",
        "lint       passed           1.0",
        "typecheck  FAILED (mypy)    2.0",
        "security   passed           1.0",
        "test       FAILED (exit 2)  9.0",
        "total                       30.2",
    ]


def test_ci_passes_with_the_build_time(
    in_checkout: Path,
    check_runs: CheckRuns,
    image_service: list[tuple[str, object]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _with_dockerfile(Config(root=in_checkout, python_version="0"))
    _clock(monkeypatch, 0.0, 5.0)
    tasks.ci(ctx())
    out = capsys.readouterr().out
    assert "build      passed  3.0" in out.splitlines()
    assert out.splitlines()[-1] == "total              5.0"


def test_ci_parallel_uses_compose(
    in_checkout: Path,
    check_runs: CheckRuns,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[tuple[str, checks.Options]] = []

    def run_checks(config: Config, mode: str, options: checks.Options) -> list[Row]:
        seen.append((mode, options))
        return [Row(name, "passed", 1.5) for name in checks.CHECKS]

    monkeypatch.setattr(compose, "run_checks", run_checks)
    _clock(monkeypatch, 0.0, 7.0)
    tasks.ci(ctx(), parallel=True, markers="m")
    assert seen == [("bind", checks.Options(markers="m"))]
    assert check_runs.seen == []
    assert "security   passed  1.5" in capsys.readouterr().out.splitlines()


def test_ci_parallel_in_copy_mode_is_one_line(
    in_checkout: Path, check_runs: CheckRuns, monkeypatch: Any
) -> None:
    monkeypatch.setenv("CIPARITY_WORKSPACE_MODE", "copy")
    with pytest.raises(Exit) as info:
        tasks.ci(ctx(), parallel=True)
    assert info.value.message is not None
    assert info.value.message.startswith("ciparity: error: ci --parallel needs a daemon")


# --- shell, clean, doctor, bench -------------------------------------------------------------


def test_shell_in_bind_mode_prints_the_equivalent_docker_run(
    in_checkout: Path,
    fake_run: FakeRun,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CIPARITY_WORKSPACE_MODE", "bind")
    # One run for the task and for the spec rebuilt below.
    for name, value in Owner("0123456789ab", str(in_checkout), "h", 1).env().items():
        monkeypatch.setenv(name, value)
    fake_run.on("docker", "start", stdout="hello\n")
    tasks.shell(ctx(), cmd="id; echo 'hello there'")
    created = fake_run.argvs[2]
    name = created[created.index("--name") + 1]
    command = ["bash", "-c", "id; echo 'hello there'"]
    spec = checks.spec("test", tasks._config(), "bind", command=command).with_name()
    spec = container.Spec(**{**spec.__dict__, "name": name})
    assert created == container.create_argv(spec)
    assert fake_run.argvs[3:] == [
        ["docker", "start", "-a", name],
        ["docker", "rm", "-f", "-v", name],
    ]
    assert fake_run.calls[3].tee is sys.stdout
    out, err = capsys.readouterr()
    assert err == "equivalent: " + proc.quote(container.run_argv(spec)) + "\n"
    assert "-v" in container.run_argv(spec)
    assert out == "hello\n"


def test_shell_in_copy_mode_copies_and_exits_with_the_command_s_code(
    in_checkout: Path,
    fake_run: FakeRun,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CIPARITY_WORKSPACE_MODE", "copy")
    fake_run.on("docker", "start", returncode=3)
    fake_run.on("docker", "cp", raw=_empty_folder_tar())
    with pytest.raises(Exit) as info:
        tasks.shell(ctx(), cmd="false")
    assert info.value.code == 3
    verbs = [argv[1] for argv in fake_run.argvs]
    assert verbs == ["version", "image", "create", "cp", "start", "cp", "rm"]
    err = capsys.readouterr().err
    assert err.startswith("workspace copied in (the daemon cannot see it): docker create --name ")


def _empty_folder_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        top = tarfile.TarInfo("reports")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
    return buffer.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_shell_without_a_command_is_interactive_on_a_terminal(
    in_checkout: Path, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIPARITY_WORKSPACE_MODE", "bind")
    monkeypatch.setattr(sys, "stdin", _Terminal())
    interactive: list[list[str]] = []

    def run_interactive(argv: list[str], env: object = None) -> int:
        interactive.append(list(argv))
        return 0

    monkeypatch.setattr(proc, "run_interactive", run_interactive)
    tasks.shell(ctx())
    created = fake_run.argvs[2]
    name = created[created.index("--name") + 1]
    assert created[-8:] == [
        "-i",
        "-t",
        "--tmpfs",
        "/tmp:exec,mode=1777",
        "--network",
        "host",
        "ciparity-ci:latest",
        "bash",
    ]
    assert interactive == [["docker", "start", "-a", "-i", name]]
    assert fake_run.argvs[-1] == ["docker", "rm", "-f", "-v", name]


def test_shell_without_a_terminal_runs_bash_attached(
    in_checkout: Path, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIPARITY_WORKSPACE_MODE", "bind")
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    tasks.shell(ctx())
    created = fake_run.argvs[2]
    assert created[-2:] == ["ciparity-ci:latest", "bash"]
    assert "-t" not in created
    assert fake_run.argvs[3][:3] == ["docker", "start", "-a"]


def test_clean_prints_the_counts(
    in_checkout: Path, fake_run: FakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_run.on("docker", "ps", stdout="c1\nc2\n")
    fake_run.on("docker", "inspect", stdout="c1 false {}\nc2 false {}\n")
    fake_run.on("docker", "network", "ls", stdout="n1\n")
    fake_run.on("docker", "network", "inspect", stdout="n1 false {}\n")
    tasks.clean(ctx())
    assert capsys.readouterr().out == "removed 2 containers, 0 volumes, 1 networks\n"


def test_clean_removes_stale_act_ci_snapshots(
    in_checkout: Path, fake_run: FakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = in_checkout / "reports" / ".act"
    (workdir / "act-0123").mkdir(parents=True)
    (workdir / "act-0123" / "file").write_text("left by an interrupted run")
    tasks.clean(ctx())
    assert capsys.readouterr().out.splitlines()[-1] == "removed stale act-ci snapshots: act-0123"
    assert list(workdir.iterdir()) == []


def test_doctor_exits_with_its_code(in_checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ciparity import doctor

    codes = [0, 1]
    roots: list[Path] = []

    def run(config: Config, out: object = None) -> int:
        roots.append(config.root)
        return codes.pop(0)

    monkeypatch.setattr(doctor, "run", run)
    tasks.doctor(ctx())
    with pytest.raises(Exit) as info:
        tasks.doctor(ctx())
    assert (info.value.message, info.value.code) == (None, 1)
    assert roots == [in_checkout, in_checkout]


def test_bench_writes_where_asked(
    in_checkout: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from ciparity import bench

    paths: list[Path] = []

    def measure(config: Config, path: Path) -> list[tuple[str, str]]:
        paths.append(path)
        return [("warm build", "0.2 s")]

    monkeypatch.setattr(bench, "run", measure)
    tasks.bench(ctx())
    tasks.bench(ctx(), output=str(tmp_path / "b.md"))
    assert paths == [in_checkout / "reports" / "bench.md", tmp_path / "b.md"]
    table = "\nmeasure     value\n----------  -----\nwarm build  0.2 s\n"
    assert capsys.readouterr().out == (
        f"{table}wrote {in_checkout / 'reports' / 'bench.md'}\n{table}wrote {tmp_path / 'b.md'}\n"
    )


# --- setup, base, build ------------------------------------------------------------------------


def test_setup_installs_plugins_mmdebstrap_and_the_base(
    in_checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    done: list[object] = []

    def install_plugins(docker: str, names: list[str]) -> list[str]:
        done.append(names)
        return names

    monkeypatch.setattr(hostsetup, "missing_plugins", lambda docker: ["buildx"])
    monkeypatch.setattr(hostsetup, "install_plugins", install_plugins)
    monkeypatch.setattr(hostsetup, "plugin_dir", lambda: Path("/home/me/.docker/cli-plugins"))
    monkeypatch.setattr(hostsetup, "ensure_mmdebstrap", lambda: done.append("mmdebstrap"))
    monkeypatch.setattr(images, "base_info", lambda config: images.BaseInfo(config.base, "missing"))

    def ensure_base(config: Config, prefix: str | None = None) -> images.BaseInfo:
        done.append(("base", prefix, config.host_python))
        return images.BaseInfo(config.base, "stand-in", "local stand-in, CPython 9")

    monkeypatch.setattr(images, "ensure_base", ensure_base)
    tasks.setup(ctx(), python="/opt/py")
    assert done == [["buildx"], "mmdebstrap", ("base", "/opt/py", "/opt/py")]
    base = tasks._config().base
    assert capsys.readouterr().out == (
        "installed docker plugins: buildx -> /home/me/.docker/cli-plugins\n"
        f"base image {base}: stand-in local stand-in, CPython 9\n"
    )


def test_setup_with_everything_present(
    in_checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hostsetup, "missing_plugins", lambda docker: [])
    monkeypatch.setattr(hostsetup, "ensure_mmdebstrap", lambda: pytest.fail("not needed"))
    official = images.BaseInfo("python:x", "official")
    monkeypatch.setattr(images, "base_info", lambda config: official)
    monkeypatch.setattr(images, "ensure_base", lambda config, prefix=None: official)
    tasks.setup(ctx())
    assert capsys.readouterr().out == "base image python:x: official\n"


def test_base_task(
    in_checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    official = images.BaseInfo("python:x", "official")
    monkeypatch.setattr(images, "ensure_base", lambda config, prefix=None: official)
    tasks.base(ctx())
    assert capsys.readouterr().out == "base image python:x: official\n"


def test_build_task_builds(
    in_checkout: Path,
    image_service: list[tuple[str, object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _with_dockerfile(Config(root=in_checkout, python_version="0"))
    tasks.build(ctx(), python="/opt/py")
    assert [name for name, _ in image_service] == ["ensure_base", "fill_wheelhouse", "build"]
    assert capsys.readouterr().out.splitlines()[-1].startswith("built ciparity-ci:latest in 3.0 s")


# --- the real invoke command line --------------------------------------------------------------


def _invoke() -> str:
    beside = Path(sys.executable).with_name("invoke")
    found = str(beside) if beside.exists() else shutil.which("invoke")
    assert found, "the invoke command is not installed"
    return found


def test_invoke_lists_every_task() -> None:
    done = subprocess.run(  # nosec B603 - argv list
        [_invoke(), "--list"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines()[2:] if line.startswith("  ")}
    assert set(TASKS + MORE_TASKS) <= listed


def test_invoke_with_a_bad_flag_says_so_in_one_line() -> None:
    done = subprocess.run(  # nosec B603 - argv list
        [_invoke(), "lint", "--bogus-flag"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    output = (done.stdout + done.stderr).strip()
    assert output == "No idea what '--bogus-flag' is!"
    assert "Traceback" not in done.stdout + done.stderr


def _ordinary_repo(root: Path) -> Path:
    """A repository that only imports ciparity's tasks: no .python-version, no .actrc."""
    (root / ".git").mkdir(parents=True)
    (root / "tasks.py").write_text("from ciparity.tasks import ns  # noqa: F401\n")
    workflows = root / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "tests.yml").write_text("on: [push]\njobs:\n  test: {runs-on: ubuntu-latest}\n")
    (workflows / "lint.yml").write_text("on: push\njobs:\n  lint: {runs-on: ubuntu-latest}\n")
    (workflows / "release.yml").write_text("on: release\njobs:\n  pub: {runs-on: ubuntu-latest}\n")
    return root


def test_act_ci_lists_every_workflow_the_event_triggers_in_an_ordinary_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _ordinary_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    tasks.act_ci(ctx(), list=True)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["workflow", "job", "events", "runs-on", "here"]
    assert rows[2:] == [
        ["lint.yml", "lint", "push", "ubuntu-latest", "run"],
        ["tests.yml", "test", "push", "ubuntu-latest", "run"],
    ]
    tasks.act_ci(ctx(), list=True, workflow="tests.yml")
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]] == ["tests.yml"]
    assert (repo / "reports" / ".gitignore").read_text() == "*\n"


def test_act_ci_list_says_what_runs_here_and_why_the_rest_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _ordinary_repo(tmp_path / "repo")
    (repo / ".github" / "workflows" / "tests.yml").write_text(
        "on: [push, pull_request]\njobs:\n  test:\n    runs-on: ${{ matrix.os }}\n"
        "    strategy: {matrix: {os: [ubuntu-latest, windows-latest]}}\n"
    )
    monkeypatch.chdir(repo)
    tasks.act_ci(ctx(), list=True, workflow="tests.yml")
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == [
        "tests.yml",
        "test",
        "(ubuntu-latest)",
        "push,",
        "pull_request",
        "ubuntu-latest",
        "run",
    ]
    assert lines[3].split()[:6] == [
        "tests.yml",
        "test",
        "(windows-latest)",
        "push,",
        "pull_request",
        "windows-latest",
    ]
    assert "skip: Windows runner" in lines[3]


def test_act_ci_refuses_a_malformed_actrc_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_run: FakeRun
) -> None:
    repo = _ordinary_repo(tmp_path / "repo")
    (repo / ".actrc").write_text("-P ubuntu-latest=img\nubuntu-22.04=img\n")
    monkeypatch.chdir(repo)
    with pytest.raises(Exit) as caught:
        tasks.act_ci(ctx())
    assert caught.value.code == 2
    assert str(caught.value.message) == (
        f"ciparity: error: {repo / '.actrc'}:2: expected a flag such as -P label=image:"
        " 'ubuntu-22.04=img'"
    )
    assert fake_run.calls == [], "nothing started"


def test_shell_job_needs_no_python_version_in_an_ordinary_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_run: FakeRun
) -> None:
    repo = _ordinary_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    with pytest.raises(Exit) as caught:
        tasks.shell(ctx(), job="nope")
    assert str(caught.value.message).startswith("ciparity: error: no job 'nope' in lint.yml")
    with pytest.raises(Exit, match=r"\.python-version is missing"):
        tasks.shell(ctx(), cmd="true")


def test_act_ci_passes_the_ref_to_the_run(
    in_checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ciparity import act

    seen: list[act.Options] = []
    monkeypatch.setattr(act, "validate", lambda root, options: [root / "ci.yml"])
    for helper in ("_docker_ready", "_build_ci", "_build_runner"):
        monkeypatch.setattr(tasks, helper, lambda config: None)

    def run(config: Config, options: act.Options, workdir: Path) -> list[act.JobRow]:
        seen.append(options)
        return [act.JobRow("a", "success", 1.0)]

    monkeypatch.setattr(act, "run", run)
    tasks.act_ci(ctx(), job="a", ref="refs/tags/v1")
    assert seen == [act.Options(job="a", ref="refs/tags/v1")]
    assert "ref" in tasks.act_ci.help
