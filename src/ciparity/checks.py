"""The checks: what each one runs, and where.

Each check is a list of steps (argv lists). On the host, `run_check` starts ONE container of the CI
image for the check, and inside it `python -m ciparity.checks NAME` runs the steps in order,
carrying on after a failing step so one run shows every problem; the check fails with the exit
code of its last failing step. `invoke lint` and the compose services of `invoke ci --parallel`
run exactly the same command.
"""

from __future__ import annotations

import os
import shlex

# Argv lists only.
import subprocess  # nosec B404
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ciparity import container
from ciparity.config import Config, load
from ciparity.console import Row, group_end, group_start
from ciparity.errors import CiparityError

CHECKS = ("lint", "typecheck", "security", "test")
STEP_MARK = "ciparity-step"
# The environment every check container gets: caches in /tmp, nothing written to the checkout.
# The check container's own private /tmp, not the host's.
CONTAINER_TMP = "/tmp"  # nosec B108
# /tmp in RAM: tests and tools write there constantly, and the image's own filesystem can be slow
# (fuse-overlayfs). Bind mode only: in copy mode a checkout under /tmp is copied in before start,
# and a tmpfs mounted at start would hide it.
TMPFS = ("--tmpfs", f"{CONTAINER_TMP}:exec,mode=1777")
# The tests drive act, whose jobs run on the host's network: the loopback servers act-ci starts
# for them (the cache server) must be on that same network.
HOST_NETWORK = ("--network", "host")
CHECK_ENV = {
    "HOME": CONTAINER_TMP,
    "XDG_CACHE_HOME": f"{CONTAINER_TMP}/.cache",
    "MYPY_CACHE_DIR": f"{CONTAINER_TMP}/.mypy_cache",
    "COVERAGE_FILE": f"{CONTAINER_TMP}/.coverage",
    "PYTHONDONTWRITEBYTECODE": "1",
    "USER": "ciparity",
}


@dataclass(frozen=True)
class Options:
    """Per-run choices a task flag can make."""

    pytest_args: tuple[str, ...] = ()
    markers: str = ""


def _existing(config: Config, names: Sequence[str]) -> list[str]:
    return [n for n in names if (config.root / n).exists()]


def dockerfiles(root: Path) -> list[str]:
    """Every Dockerfile in the checkout, for hadolint."""
    found = []
    for folder in (root, root / "docker", root / "runner"):
        if folder.is_dir():
            found += [
                p.relative_to(root).as_posix()
                for p in sorted(folder.iterdir())
                if p.is_file() and p.name.startswith("Dockerfile")
            ]
    return found


def workflow_steps(root: Path) -> list[tuple[str, list[str]]]:
    """zizmor (offline audits) and GitHub's schemas, when the checkout has GitHub workflows."""
    github = root / ".github"
    workflows = sorted(
        p.relative_to(root).as_posix() for p in (github / "workflows").glob("*.y*ml")
    )
    if not workflows:
        return []
    schema = ["check-jsonschema", "--builtin-schema"]
    result = [
        ("zizmor", ["zizmor", "--offline", "--no-progress", ".github/"]),
        ("workflow schema", [*schema, "vendor.github-workflows", *workflows]),
    ]
    for name in ("dependabot.yml", "dependabot.yaml"):
        if (github / name).is_file():
            result.append(("dependabot schema", [*schema, "vendor.dependabot", f".github/{name}"]))
    return result


def steps(name: str, config: Config, options: Options = Options()) -> list[tuple[str, list[str]]]:
    """The (label, argv) steps of check `name` for the checkout `config.root`."""
    code = _existing(config, [*config.src_dirs, *config.test_dirs, "tasks.py"])
    src = _existing(config, config.src_dirs)
    reports = str(config.reports_dir)
    if name == "lint":
        result = [
            ("black", ["black", "--check", "--diff", *code]),
            ("flake8", ["flake8", *code]),
            ("isort", ["isort", "--check-only", "--diff", *code]),
            ("python-version", [sys.executable, "-m", "ciparity.pyversion", "."]),
        ]
        files = dockerfiles(config.root)
        if files:
            result.append(("hadolint", ["hadolint", "--no-color", *files]))
        return result + workflow_steps(config.root)
    if name == "typecheck":
        return [("mypy", ["mypy", "--strict", *src])]
    if name == "security":
        return [("bandit", ["bandit", "-q", "-c", "pyproject.toml", "-r", *src])]
    if name == "test":
        argv = [
            "pytest",
            "-p",
            "no:cacheprovider",
            "-n",
            config.workers,
            f"--timeout={config.test_timeout}",
            f"--junitxml={reports}/junit.xml",
        ]
        if config.package:
            argv += [
                f"--cov={config.package}",
                f"--cov-report=xml:{reports}/coverage.xml",
                f"--cov-report=html:{reports}/htmlcov",
                "--cov-report=term",
                f"--cov-fail-under={config.coverage_min}",
            ]
        if options.markers:
            argv += ["-m", options.markers]
        return [("pytest", argv + list(options.pytest_args))]
    raise CiparityError(f"unknown check {name!r} (known: {', '.join(CHECKS)})")


def run_steps(
    name: str, config: Config, options: Options = Options(), out: IO[str] | None = None
) -> int:
    """Inside the container: run every step of a check; return the last failing exit code."""
    stream = out or sys.stdout
    rc = 0
    config.reports_dir.mkdir(parents=True, exist_ok=True)
    for label, argv in steps(name, config, options):
        print(f"--- {name}: {label}: {shlex.join(argv)}", file=stream, flush=True)
        try:
            # Argv list.
            code = subprocess.call(argv, cwd=config.root)  # nosec B603
        except FileNotFoundError:
            print(f"{label}: {argv[0]} is not installed in this image", file=stream)
            code = 127
        print(f"{STEP_MARK} {label} rc={code}", file=stream, flush=True)
        if code:
            rc = code
    return rc


def failed_steps(output: str) -> list[str]:
    """Labels of the steps whose marker line reports a non-zero exit code."""
    failed = []
    for line in output.splitlines():
        if line.startswith(STEP_MARK + " "):
            label, _, rc = line[len(STEP_MARK) + 1 :].rpartition(" rc=")
            if rc.strip() != "0":
                failed.append(label)
    return failed


def check_env(config: Config, mode: str = "copy") -> dict[str, str]:
    """Fixed variables of a check container: caches outside the checkout, its code first.

    In bind mode the tools' caches (mypy, black) live in reports/.cache, so they stay warm from
    one run to the next; in copy mode they stay in the container's /tmp and go with it.
    """
    paths = [str(config.root / d) for d in config.src_dirs] + ["/app/src"]
    # The runs the tests start are this run's children: its clean-up sweeps them (ownership).
    env = {**CHECK_ENV, "PYTHONPATH": ":".join(paths), **config.run.outer_env()}
    if mode == "bind":
        cache = config.reports_dir / ".cache"
        env.update(XDG_CACHE_HOME=str(cache), MYPY_CACHE_DIR=str(cache / "mypy"))
    return env


def pass_env(config: Config, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Host variables a check sees: the allowlist, plus ciparity's own settings."""
    env = os.environ if environ is None else environ
    names = container.allowed_env(env, config.env_allow)
    names += sorted(n for n in env if n.startswith("CIPARITY_") and n not in names)
    return tuple(names)


def spec(
    name: str,
    config: Config,
    mode: str,
    options: Options = Options(),
    interactive: bool = False,
    command: Sequence[str] | None = None,
) -> container.Spec:
    """The container that runs check `name` (or `command`, for `invoke shell`) on the checkout."""
    argv = [*_option_args(options), name]
    env = check_env(config, mode)
    return container.Spec(
        image=config.image,
        command=tuple(
            command if command is not None else ["python", "-m", "ciparity.checks", *argv]
        ),
        workspace=container.Workspace(config.root, mode, outputs=(config.reports_dir,)),
        user=container.current_user(),
        env=env,
        pass_env=tuple(n for n in pass_env(config) if n not in env),
        socket=container.docker_socket() if name == "test" else None,
        labels={"ciparity.check": name, "ciparity.workspace": str(config.root)},
        owner=config.run,
        interactive=interactive,
        extra_args=(TMPFS if mode == "bind" else ()) + (HOST_NETWORK if name == "test" else ()),
    )


def _option_args(options: Options) -> list[str]:
    args = []
    if options.markers:
        args += ["--markers", options.markers]
    for arg in options.pytest_args:
        args += ["--pytest-arg", arg]
    return args


def run_check(
    name: str, config: Config, mode: str, options: Options = Options(), out: IO[str] | None = None
) -> Row:
    """Run one check in its own container; the row for the summary table."""
    config.reports_dir.mkdir(parents=True, exist_ok=True)
    group_start(f"{name} (in {config.image}, workspace by {mode})", out)
    started = time.monotonic()
    try:
        result = container.run(
            spec(name, config, mode, options), config.docker, tee=out or sys.stdout
        )
    finally:
        group_end(out)
    seconds = time.monotonic() - started
    if result.ok:
        return Row(name, "passed", seconds)
    failed = failed_steps(result.stdout)
    detail = ", ".join(failed) if failed else f"exit {result.returncode}"
    return Row(name, f"FAILED ({detail})", seconds, str(result.returncode))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ciparity.checks [--markers M] [--pytest-arg A ...] NAME`, inside the container."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Compose services cannot take per-run flags; `ci --parallel` hands them over by variable.
    markers = os.environ.get("CIPARITY_MARKERS", "")
    pytest_args = shlex.split(os.environ.get("CIPARITY_PYTEST_ARGS", ""))
    while len(args) > 1:
        flag, value = args.pop(0), args.pop(0)
        if flag == "--markers":
            markers = value
        elif flag == "--pytest-arg":
            pytest_args.append(value)
        else:
            print(f"ciparity: error: unknown option {flag}", file=sys.stderr)
            return 2
    if len(args) != 1 or args[0] not in CHECKS:
        print(f"ciparity: error: name one check of {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    try:
        config = load(os.getcwd())
        return run_steps(args[0], config, Options(tuple(pytest_args), markers))
    except CiparityError as exc:
        print(f"ciparity: error: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
