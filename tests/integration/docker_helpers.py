"""Helpers for the integration tests: running invoke as a person would, and looking at what a
run left behind."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from ciparity import container, ownership

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
IMAGE = "ciparity-ci:latest"


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    done = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True)
    if done.returncode:
        return f"{IMAGE} unavailable: {done.stderr.strip()[-200:]} (run `invoke build` first)"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    """Skip without an engine; fail instead when CI requires one."""
    problem = _engine_problem()
    if problem is None:
        return
    if os.environ.get("CIPARITY_REQUIRE_DOCKER") == "1":
        pytest.fail(f"CIPARITY_REQUIRE_DOCKER=1 but {problem}", pytrace=False)
    pytest.skip(problem)


def _visible(path: Path) -> bool:
    return container.probe_workspace_mode("docker", IMAGE, path, path) == "bind"


@pytest.fixture
def shared_dir(engine: None, tmp_path: Path) -> Iterator[Path]:
    """A folder the daemon sees at the same path (bind mode): tmp_path on a host, else a folder
    under the mounted reports/ when these tests themselves run in a container."""
    if _visible(tmp_path):
        yield tmp_path
        return
    reports = Path(os.environ.get("CIPARITY_REPORTS", REPO / "reports"))
    if not reports.is_absolute():
        reports = REPO / reports
    folder = reports / ".it" / secrets.token_hex(4)
    folder.mkdir(parents=True)
    try:
        if not _visible(folder):
            pytest.fail(f"no folder the daemon sees at the same path (tried {tmp_path}, {folder})")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def copy_fixture(name: str, dest: Path) -> Path:
    """A copy of a fixture project. Its workflows get a name of their own: act names a job's
    container after the workflow and job, so two tests running one fixture at once (xdist)
    would otherwise remove each other's containers."""
    target = dest / name
    shutil.copytree(FIXTURES / name, target)
    suffix = secrets.token_hex(3)
    for workflow in (target / ".github" / "workflows").glob("*.yml"):
        text = workflow.read_text(encoding="utf-8")
        workflow.write_text(re.sub(r"(?m)^name: (.+)$", rf"name: \1-{suffix}", text, count=1))
    return target


def shared_actions() -> Path:
    """The offline copies of published actions (shallow bare mirrors): CIPARITY_SHARED_ACTIONS,
    else the copy .ci/setup puts in reports/ (which a check container sees), else
    ../shared/actions beside the checkout. Missing: a skip, or a failure where CI requires them."""
    for place in (
        os.environ.get("CIPARITY_SHARED_ACTIONS", ""),
        str(REPO / "reports" / ".shared-actions"),
        str(REPO.parent / "shared" / "actions"),
    ):
        if place and (Path(place) / "actions" / "setup-python.git").is_dir():
            return Path(place)
    problem = "no offline copies of the published actions (../shared/actions; see .ci/setup)"
    if os.environ.get("CIPARITY_REQUIRE_DOCKER") == "1":
        pytest.fail(f"CIPARITY_REQUIRE_DOCKER=1 but {problem}", pytrace=False)
    pytest.skip(problem)


def shared_actions_remote(dest: Path) -> Path:
    """A writable copy of the shared action mirrors under `dest`, as the remote `invoke
    actions-sync` fetches from (their refs are all packed, and git wants a refs/ folder)."""
    remote = dest / "remote"
    shutil.copytree(shared_actions(), remote)
    for repo in remote.glob("*/*.git"):
        for path in [repo, *repo.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        (repo / "refs" / "tags").mkdir(parents=True, exist_ok=True)
    return remote


def workflow_name(repo: Path, file: str = "ci.yml") -> str:
    """The `name:` of a copied fixture's workflow (act's containers are named after it)."""
    text = (repo / ".github" / "workflows" / file).read_text(encoding="utf-8")
    found = re.search(r"(?m)^name: (.+)$", text)
    assert found, f"{file} has no name"
    return found.group(1).strip()


def invoke_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Hermetic: not this run's settings, nor the CI system's variables (a job summary file, say).
    # One is kept: run by `invoke test`, the runs started here are that run's children, and go
    # with its clean-up if it is stopped.
    prefixes = ("CIPARITY_", "GITHUB_", "RUNNER_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(prefixes) or k == ownership.ENV_OUTER
    }
    # The fixture's tasks.py imports ciparity from this checkout.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.update(extra or {})
    return env


def invoke(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    user: int | None = None,
    timeout: float = 600,
    no_socket_group: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `invoke ARGS` in `cwd` as a separate process, as a person would (optionally as `user`,
    who gets the socket's group unless `no_socket_group`)."""
    kwargs: dict[str, object] = {}
    if user is not None:
        groups = [] if no_socket_group else [socket_gid()]
        kwargs.update(user=user, group=user, extra_groups=groups)
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        env=invoke_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,  # type: ignore[call-overload]
    )


def socket_gid() -> int:
    return os.stat(container.docker_socket() or "/var/run/docker.sock").st_gid


def managed(workspace: Path | None = None) -> list[str]:
    """Ids of labelled containers (of one workspace, if given)."""
    argv = ["docker", "ps", "-aq", "--filter", "label=ciparity.managed=1"]
    if workspace is not None:
        argv += ["--filter", f"label=ciparity.workspace={workspace}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def wait_for(predicate: object, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def owners(root: Path) -> set[int]:
    found = {root.stat().st_uid}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.lstat(os.path.join(dirpath, name)).st_uid)
    return found


def snapshot(root: Path, skip: str = "reports") -> dict[str, bytes]:
    """Every file of a checkout but reports/, with its content: to prove a run changed nothing."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == skip or not path.is_file():
            continue
        files[rel.as_posix()] = path.read_bytes()
    return files


def require_python_for_others() -> None:
    """Acting as another uid needs an interpreter that uid may run (in the CI image it can; a
    pyenv Python under /root cannot be)."""
    path = Path(sys.executable).resolve()
    for folder in path.parents:
        if not folder.stat().st_mode & 0o001:
            pytest.skip(f"{folder} is closed to other users: run these through `invoke test`")


def _leftovers(under: Path) -> list[str]:
    """Labelled containers, volumes and networks of a checkout below `under`."""
    found = []
    for listing, name in (
        (["ps", "-a"], "Names"),
        (["volume", "ls"], "Name"),
        (["network", "ls"], "Name"),
    ):
        done = subprocess.run(
            [
                "docker",
                *listing,
                "--filter",
                "label=ciparity.managed=1",
                "--format",
                f'{{{{.{name}}}}}\t{{{{.Label "ciparity.checkout"}}}}',
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in done.stdout.splitlines():
            name, _, checkout = line.partition("\t")
            if checkout and Path(checkout).is_relative_to(under):
                found.append(f"{listing[0]} {name} of {checkout}")
    return found


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every integration test: nothing labelled with a checkout of this test outlives it."""
    if request.node.get_closest_marker("docker") is None:
        yield
        return
    places = [request.getfixturevalue("tmp_path")]
    if "shared_dir" in request.fixturenames:
        places.append(request.getfixturevalue("shared_dir"))
    yield
    left = [item for place in places for item in _leftovers(place)]
    assert not left, f"left behind: {left}"


@pytest.fixture
def planted() -> Iterator[list[str]]:
    """Containers a test plants by hand (see `plant`); removed whatever the test did."""
    made: list[str] = []
    yield made
    if made:
        subprocess.run(["docker", "rm", "-f", *made], capture_output=True)


def plant(made: list[str], labels: Mapping[str, str], running: bool = True) -> str:
    """A container carrying `labels` (ciparity.managed=1 added), running `sleep` or only
    created; its id is appended to `made` (the `planted` fixture) and returned."""
    argv = ["docker", "run", "-d"] if running else ["docker", "create"]
    for key, value in {"ciparity.managed": "1", **labels}.items():
        argv += ["--label", f"{key}={value}"]
    ident = subprocess.run(
        [*argv, IMAGE, "sleep", "300"], capture_output=True, text=True, check=True
    ).stdout.strip()
    made.append(ident)
    return ident
