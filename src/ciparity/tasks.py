"""Invoke tasks: thin functions that parse options and call the services.

Another repository exposes all of them with `from ciparity.tasks import ns` in its tasks.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ciparity import checks, console, container, hostsetup, images, proc
from ciparity.config import Config, ignore_reports, load
from ciparity.errors import CiparityError, ConfigError, DockerError, Interrupted

F = TypeVar("F", bound=Callable[..., Any])
LOCAL_AGENT = "runner/dist/actions-runner.tar.gz"


def project_root(start: Path | None = None) -> Path:
    """The nearest folder upwards holding .python-version or .git (the checkout's root)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".python-version").exists() or (folder / ".git").exists():
            return folder
    return here


def _config(require_python: bool = True, **overrides: Any) -> Config:
    config = load(project_root(), overrides, require_python=require_python)
    ignore_reports(config)
    return config


def fatal_errors(body: F) -> F:
    """Turn our errors and signals into one line on stderr and an exit code, never a traceback."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = os.environ.get("CIPARITY_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
        try:
            with proc.signals_as_interrupt():
                return body(*args, **kwargs)
        except CiparityError as exc:
            if debug:
                raise
            raise Exit(f"ciparity: error: {exc.message}", exc.exit_code) from None
        except Interrupted as exc:
            raise Exit("ciparity: interrupted; containers removed", exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def ci_task(*args: Any, **kwargs: Any) -> Any:
    """`@task` (bare or with options) with our error handling underneath."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return task(fatal_errors(args[0]))

    def decorate(body: F) -> Any:
        return task(**kwargs)(fatal_errors(body))

    return decorate


@contextlib.contextmanager
def _sweeping(config: Config) -> Iterator[None]:
    """When the task ends, however it ends, remove what its run and the runs started under it
    left: a test session's own runs (ownership.PARENT) die with its container when it is stopped.
    A failing sweep never hides why the task ended."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(CiparityError):
            container.remove_run(config.docker, config.run)
        raise
    container.remove_run(config.docker, config.run)


def _docker_ready(config: Config) -> None:
    result = proc.run([config.docker, "version", "--format", "{{.Server.Version}}"])
    if result.ok:
        return
    err = result.stderr.lower()
    if "permission denied" in err:
        raise DockerError(
            "permission denied on the Docker socket: add this user to the socket's group"
            " (sudo usermod -aG docker $USER) or set DOCKER_HOST"
        )
    raise DockerError(f"the Docker daemon is unreachable: {proc.reason(result.stderr)}")


def _mode(config: Config) -> str:
    if config.workspace_mode != "auto":
        return config.workspace_mode
    memo = config.reports_dir / ".cache" / "workspace-mode"
    return container.remembered_workspace_mode(
        config.docker, config.image, config.root, config.reports_dir, memo
    )


def _build_image(
    config: Config,
    dockerfile: str,
    target: str,
    tag: str,
    missing_hint: str,
    python: str | None = None,
    build_args: Callable[[bool], dict[str, str]] | None = None,
) -> images.BuildReport | None:
    """Build one image; a repository without its Dockerfile uses a prebuilt image of that tag."""
    path = config.root / dockerfile
    if not path.exists():
        if images.inspect_label(config.docker, tag, "") is None:
            raise DockerError(f"no {dockerfile} here and image {tag} is missing: {missing_hint}")
        print(f"using prebuilt {tag} (no {dockerfile} here)", flush=True)
        return None
    base = images.ensure_base(config, python)
    offline = images.offline(config, base)
    if offline:
        images.fill_wheelhouse(config)
    console.step(f"building {tag} on {base.ref} ({base.kind}{', offline' if offline else ''})")
    args = build_args(offline) if build_args else None
    report = images.build(config, path, target, tag, offline, build_args=args)
    print(report.line(), flush=True)
    return report


def _build_ci(config: Config, python: str | None = None) -> images.BuildReport | None:
    """The CI image (docker/Dockerfile.ci, target ci)."""
    hint = "build it in the ciparity checkout or set `image` in [tool.ciparity]"
    return _build_image(config, "docker/Dockerfile.ci", "ci", config.image, hint, python)


def _agent_args(config: Config, offline: bool) -> dict[str, str]:
    """Build args choosing the self-hosted image's runner agent (config `runner_agent`)."""
    agent = config.runner_agent
    if agent == "auto":
        # Offline the release cannot be downloaded: a local tarball if there is one, else the
        # stand-in agent (tests/fixtures/standin_agent), which the image's tests drive.
        local = (config.root / LOCAL_AGENT).is_file()
        agent = "download" if not offline else "local" if local else "standin"
    if agent == "standin":
        return {"RUNNER_AGENT": "standin"}
    if agent == "local" and not (config.root / LOCAL_AGENT).is_file():
        raise ConfigError(f"runner_agent is local but {LOCAL_AGENT} is missing")
    return {"RUNNER_AGENT": "release", "RUNNER_TARBALL": agent}


def _build_runner(config: Config) -> images.BuildReport | None:
    """The runner images: target act (act's platform) and target self-hosted (a real runner)."""
    hint = "run `invoke build-runner` in the ciparity checkout"
    packages = {"RUNNER_PACKAGES": " ".join(config.runner_packages)}
    report = _build_image(
        config, "runner/Dockerfile", "act", config.runner_image, hint, build_args=lambda _: packages
    )
    _build_image(
        config,
        "runner/Dockerfile",
        "self-hosted",
        config.self_hosted_image,
        hint,
        build_args=lambda offline: {**packages, **_agent_args(config, offline)},
    )
    return report


def _ensure_image(config: Config) -> None:
    if images.inspect_label(config.docker, config.image, "") is None:
        _build_ci(config)


@ci_task(help={"python": "Prefix of a host CPython 3.12 for the offline stand-in base"})
def setup(c: Context, python: str | None = None) -> None:
    """Install host prerequisites (docker buildx/compose plugins, mmdebstrap) and the base image."""
    config = _config(host_python=python)
    _docker_ready(config)
    installed = hostsetup.install_plugins(config.docker, hostsetup.missing_plugins(config.docker))
    if installed:
        print(f"installed docker plugins: {', '.join(installed)} -> {hostsetup.plugin_dir()}")
    if images.base_info(config).kind == "missing":
        hostsetup.ensure_mmdebstrap()
    _base(config, python)


def _base(config: Config, python: str | None) -> None:
    info = images.ensure_base(config, python)
    print(f"base image {info.ref}: {info.kind} {info.detail}".rstrip())


@ci_task(help={"python": "Prefix of a host CPython 3.12 to build the stand-in from"})
def base(c: Context, python: str | None = None) -> None:
    """Make the base image available: present, pulled, or a local stand-in built offline."""
    config = _config(host_python=python)
    _docker_ready(config)
    _base(config, python)


@ci_task(help={"python": "Prefix of a host CPython 3.12 for the stand-in base, if one is needed"})
def build(c: Context, python: str | None = None) -> None:
    """Build the CI image (docker/Dockerfile.ci) and print its BuildKit cache-hit rate."""
    config = _config(host_python=python)
    _docker_ready(config)
    _build_ci(config, python)


def _one_check(name: str, repeat: int = 1, **flags: Any) -> None:
    if repeat < 1:
        raise ConfigError(f"--repeat {repeat}: expected at least 1")
    options = checks.Options(
        pytest_args=tuple(shlex.split(flags.pop("pytest_args", "") or "")),
        markers=flags.pop("markers", "") or "",
    )
    config = _config(**flags)
    _docker_ready(config)
    _ensure_image(config)
    rows = []
    with _sweeping(config):
        for count in range(1, repeat + 1):
            row = checks.run_check(name, config, _mode(config), options)
            rows.append(
                dataclasses.replace(row, name=f"{name} {count}/{repeat}") if repeat > 1 else row
            )
    extra = console.reports_summary(config.reports_dir) if name == "test" else ""
    console.summary(name, rows, extra=extra)
    failed = [row for row in rows if row.result != "passed"]
    if failed:
        how_often = f" in {len(failed)} of {repeat} runs" if repeat > 1 else ""
        raise Exit(f"ciparity: {name} failed{how_often}", int(failed[0].detail or 1) or 1)


@ci_task
def lint(c: Context) -> None:
    """black --check, flake8, isort --check-only, the Python-version check and hadolint."""
    _one_check("lint")


@ci_task
def typecheck(c: Context) -> None:
    """mypy --strict on the source folders."""
    _one_check("typecheck")


@ci_task
def security(c: Context) -> None:
    """bandit on the source folders."""
    _one_check("security")


@ci_task(
    help={
        "markers": "pytest -m expression, e.g. 'not docker'",
        "pytest-args": "extra pytest arguments, as one quoted string",
        "repeat": "run the suite N times in a row (a hunt for flaky tests); a table of each run",
    }
)
def test(c: Context, markers: str = "", pytest_args: str = "", repeat: int = 1) -> None:
    """pytest with xdist, coverage (enforced) and per-test timeouts; reports under reports/."""
    _one_check("test", repeat, markers=markers, pytest_args=pytest_args)


@ci_task(
    help={
        "parallel": "run the checks at once, as compose services (docker/docker-compose.ci.yml)",
        "markers": "pytest -m expression for the test check",
        "pytest-args": "more pytest arguments for the test check, as one string",
    }
)
def ci(c: Context, parallel: bool = False, markers: str = "", pytest_args: str = "") -> None:
    """Build the image, run every check in it, and print a table; non-zero if any failed."""
    config = _config()
    _docker_ready(config)
    rows: list[console.Row] = []
    started = time.monotonic()
    report = _build_ci(config)
    rows.append(console.Row("build", "passed", report.seconds if report else 0.0))
    options = checks.Options(pytest_args=tuple(shlex.split(pytest_args)), markers=markers)
    mode = _mode(config)
    with _sweeping(config):
        if parallel:
            from ciparity import compose

            rows += compose.run_checks(config, mode, options)
        else:
            for name in checks.CHECKS:
                rows.append(checks.run_check(name, config, mode, options))
    rows.append(console.Row("total", "", time.monotonic() - started))
    console.summary("ciparity ci", rows)
    failed = [r.name for r in rows if r.result.startswith("FAILED")]
    if failed:
        raise Exit(f"ciparity: failed: {', '.join(failed)}", 1)


@ci_task(
    help={
        "cmd": "run this one command instead of an interactive shell",
        "job": "open the runner image as this workflow job sees it (user, workspace, env)",
        "workflow": "with --job: the workflow file (default: the one that has the job)",
    }
)
def shell(c: Context, cmd: str = "", job: str = "", workflow: str = "") -> None:
    """A shell in the CI image with exactly the mounts, environment and user `test` uses;
    with --job, in the runner image as that act job sees it (after a failed act-ci: its state)."""
    # A job's shell, like act-ci, needs no .python-version: the workflow decides the Python.
    config = _config(require_python=not job)
    _docker_ready(config)
    # A command line, as typed at a prompt: `--cmd "id; pwd"` is two commands, run by bash.
    command = ["bash", "-c", cmd] if cmd else ["bash"]
    interactive = not cmd and sys.stdin.isatty()
    if job:
        _job_shell(config, job, workflow, command, interactive)
        return
    _ensure_image(config)
    mode = _mode(config)
    spec = checks.spec("test", config, mode, interactive=interactive, command=command)
    spec = spec.with_name()
    if mode == "bind":
        print("equivalent: " + proc.quote(container.run_argv(spec, config.docker)), file=sys.stderr)
    else:
        print(
            "workspace copied in (the daemon cannot see it): "
            + proc.quote(container.create_argv(spec, config.docker)),
            file=sys.stderr,
        )
    _attach(config, spec, interactive)


def _attach(config: Config, spec: container.Spec, interactive: bool) -> None:
    with container.Container(spec, config.docker) as box:
        box.copy_in()
        code = box.start_interactive() if interactive else box.start(tee=sys.stdout).returncode
        box.copy_out()
    if code:
        raise Exit(code=code)


def _job_shell(
    config: Config, job: str, workflow: str, command: list[str], interactive: bool
) -> None:
    from ciparity import act

    paths = act.validate(config.root, act.Options(workflow=workflow, job=job))
    path = next(p for p in paths if job in act.workflow_jobs(p))
    if images.inspect_label(config.docker, config.runner_image, "") is None:
        _build_runner(config)
    workdir = config.reports_dir / ".act"
    workspace, fresh = act.prepare_job_workspace(config, workdir, path, job)
    if not fresh:
        print(f"workspace of the last failed act-ci run: {workspace}", file=sys.stderr)
    try:
        spec = act.job_shell_spec(config, path, job, workspace, command, interactive).with_name()
        print("equivalent: " + proc.quote(container.run_argv(spec, config.docker)), file=sys.stderr)
        _attach(config, spec, interactive)
    finally:
        if fresh:
            act.remove_snapshot(config, workspace)
        else:
            act.chown(config, workspace, container.current_user())


@ci_task
def build_runner(c: Context) -> None:
    """Build the runner images: act's platform (target act) and the self-hosted runner."""
    config = _config()
    _docker_ready(config)
    _build_runner(config)


@ci_task(
    help={
        "job": "run only this job",
        "workflow": "run only this workflow file (default: every workflow the event triggers)",
        "event": "event that triggers the run (default push)",
        "list": "a table of the jobs and matrix entries (workflow, events, runs-on) and what"
        " act-ci would do with each here (run, or skip and why); runs nothing",
        "dry-run": "let act plan the run without starting jobs",
        "include-untracked": "also carry untracked files (a push would not)",
        "strict": "fail if a job, matrix entry or step is skipped because it cannot run here"
        " (a runner or Python this machine lacks, an action not available offline)",
        "ref": "the ref the push sends (refs/heads/B, refs/tags/T; default: the current branch)",
        "verbose": "print every line of act's log instead of the compact view",
    }
)
def act_ci(
    c: Context,
    job: str = "",
    workflow: str = "",
    event: str = "push",
    list: bool = False,
    dry_run: bool = False,
    include_untracked: bool = False,
    strict: bool = False,
    ref: str = "",
    verbose: bool = False,
) -> None:
    """Run the real GitHub Actions workflows offline through act, in the same images."""
    from ciparity import act, act_console

    config = _config(require_python=False)
    options = act.Options(workflow, job, event, include_untracked, dry_run, strict, ref, verbose)
    paths = act.validate(config.root, options)
    act.config_args(config)  # a malformed .actrc is refused before anything is built
    if list:
        print(console.format_table(act.LIST_HEADERS, act.list_rows(config, options, paths)))
        return
    _docker_ready(config)
    # Both images are (re)built: from cache that takes a second, and a stale runner image would
    # make act test yesterday's environment. A repository without ciparity's Dockerfiles uses
    # the prebuilt runner image, and its jobs need no CI image unless they call the checks.
    if (config.root / "docker" / "Dockerfile.ci").exists():
        _build_ci(config)
    _build_runner(config)
    started = time.monotonic()
    rows = act.run(config, options, config.reports_dir / ".act")
    table = act.rows_table(rows)
    table.append(console.Row("total", "", time.monotonic() - started))
    names = ", ".join(p.name for p in paths)
    console.summary(f"act {options.event} {names}", table, detail="failed step: reason")
    if any(not r.result.startswith("skipped") for r in rows):
        print(act_console.where(config.reports_dir / "act"), flush=True)
    failed = act.failures(rows, options.strict)
    if failed or all(r.result.startswith("skipped") for r in rows):
        why = ", ".join(failed) or f"no job ran here ({len(rows)} skipped)"
        raise Exit(f"ciparity: act-ci failed: {why}", 1)


@ci_task
def actions_sync(c: Context) -> None:
    """Fetch the real code of every remote action the workflows use into the action mirror."""
    from ciparity import actions_mirror

    config = _config(require_python=False)
    mirror = actions_mirror.mirror_dir(config)
    console.step(f"syncing actions from {actions_mirror.actions_url(config)} into {mirror}")
    result = actions_mirror.sync(config)
    actions_mirror.print_sync(result, mirror)
    if result.errors:
        raise Exit(code=1)


@ci_task(
    help={
        "all": "every ciparity object on the engine, of any checkout; runner pools are stopped"
        " gracefully (each runner deregisters)",
    }
)
def clean(c: Context, all: bool = False) -> None:
    """Remove what finished or killed runs of this checkout left behind (never a live run),
    act-ci snapshots under reports/.act included."""
    from ciparity import act, cleanup

    config = _config(require_python=False)
    _docker_ready(config)
    found = container.list_managed(config.docker, None if all else str(config.root))
    todo = cleanup.plan(found, everything=all)
    for line in todo.kept:
        print(f"ciparity: kept {line}", file=sys.stderr)
    removed = cleanup.execute(config.docker, todo)
    print(f"removed {removed[0]} containers, {removed[1]} volumes, {removed[2]} networks")
    stale = act.remove_stale(config, config.reports_dir / ".act")
    if stale:
        print(f"removed stale act-ci snapshots: {', '.join(stale)}")


@ci_task
def doctor(c: Context) -> None:
    """Check this host: docker, BuildKit, compose, socket, workspace, base image, Python, disk."""
    from ciparity import doctor as doctor_service

    config = _config()
    code = doctor_service.run(config)
    if code:
        raise Exit(code=code)


@ci_task(
    help={
        "output": "Markdown file for the table (default reports/bench.md, bench-act.md)",
        "act": "measure act-ci instead: warm act-ci against warm ci, act's overhead per job",
        "runner": "measure the self-hosted runner: start-up and stop against the fake GitHub API",
    }
)
def bench(c: Context, output: str = "", act: bool = False, runner: bool = False) -> None:
    """Measure cold/warm builds, a one-file rebuild, warm `ci` against native, and image size."""
    from ciparity import bench as bench_service

    config = _config()
    _docker_ready(config)
    default = "bench-runner.md" if runner else "bench-act.md" if act else "bench.md"
    path = Path(output) if output else config.reports_dir / default
    if runner:
        if images.inspect_label(config.docker, config.self_hosted_image, "") is None:
            _build_runner(config)
        rows = bench_service.run_runner(config, path)
    else:
        rows = (bench_service.run_act if act else bench_service.run)(config, path)
    print("\n" + console.format_table(("measure", "value"), rows), flush=True)
    print(f"wrote {path}")


@ci_task(
    help={
        "replicas": "how many runners to keep up (default 1)",
        "once": "do not replace runners that exit; end when all have exited",
        "network": "docker network for the runners (default: the engine's bridge)",
    }
)
def runners(c: Context, replicas: int = 1, once: bool = False, network: str = "") -> None:
    """Run N ephemeral self-hosted runners here until Ctrl-C; each deregisters when stopped.

    Settings are the CIPARITY_RUNNER_* variables of this shell (README: self-hosted runners).
    """
    from ciparity import selfhosted

    config = _config()
    _docker_ready(config)
    if images.inspect_label(config.docker, config.self_hosted_image, "") is None:
        _build_runner(config)
    code = selfhosted.run(config, os.environ, replicas, once, network)
    if code:
        raise Exit(f"ciparity: a runner exited with code {code}", code)


ns = Collection(
    setup,
    base,
    build,
    build_runner,
    lint,
    typecheck,
    security,
    test,
    ci,
    act_ci,
    actions_sync,
    shell,
    clean,
    doctor,
    bench,
    runners,
)
