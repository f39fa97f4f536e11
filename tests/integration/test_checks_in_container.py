"""Every check really runs in the CI image, on a sample project, in both workspace modes."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from docker_helpers import (
    copy_fixture,
    invoke,
    managed,
    owners,
    require_python_for_others,
    snapshot,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


@pytest.mark.parametrize("mode", ["bind", "copy"])
def test_ci_passes_and_leaves_the_checkout_alone(mode: str, shared_dir: Path) -> None:
    repo = copy_fixture("sample_good", shared_dir)
    before = snapshot(repo)
    done = invoke(["ci"], repo, env={"CIPARITY_WORKSPACE_MODE": mode})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"workspace by {mode}" in done.stdout
    for check in ("lint", "typecheck", "security", "test"):
        assert any(
            line.split()[:2] == [check, "passed"] for line in done.stdout.splitlines()
        ), done.stdout
    assert snapshot(repo) == before
    junit = repo / "reports" / "junit.xml"
    assert 'tests="1"' in junit.read_text()
    assert (repo / "reports" / "coverage.xml").is_file()
    assert owners(repo) == {os.getuid()}
    assert managed(repo) == []


def test_failing_lint_and_test_fail_ci(shared_dir: Path) -> None:
    repo = copy_fixture("sample_bad", shared_dir)
    done = invoke(["ci"], repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "F401 'os' imported but unused" in done.stdout
    assert "assert -1 == 5" in done.stdout
    table = [line.split()[:2] for line in done.stdout.splitlines()]
    assert ["lint", "FAILED"] in table and ["test", "FAILED"] in table
    assert ["typecheck", "passed"] in table
    assert done.stderr.strip().splitlines() == ["ciparity: failed: lint, test"]
    assert managed(repo) == []


@pytest.mark.smoke
def test_one_check_propagates_its_exit_code(shared_dir: Path) -> None:
    repo = copy_fixture("sample_bad", shared_dir)
    done = invoke(["test"], repo)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "1 failed" in done.stdout


def test_parallel_runs_the_checks_as_compose_services(shared_dir: Path) -> None:
    repo = copy_fixture("sample_good", shared_dir)
    done = invoke(["ci", "--parallel"], repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "reports" / "junit.xml").is_file()
    assert owners(repo) == {os.getuid()}
    leftovers = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", "label=ciparity.managed=1"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert not [v for v in leftovers if v.startswith("ciparity-")]


def test_parallel_fails_when_a_service_fails(shared_dir: Path) -> None:
    repo = copy_fixture("sample_bad", shared_dir)
    done = invoke(["ci", "--parallel"], repo)
    assert done.returncode == 1
    assert "lint, test" in done.stderr


@pytest.mark.skipif(os.getuid() == 1000, reason="the ownership test needs a uid other than 1000")
@pytest.mark.parametrize("mode", ["bind", "copy"])
def test_ownership_for_a_user_who_is_not_1000(mode: str, shared_dir: Path, tmp_path: Path) -> None:
    """As uid 4242 (or this non-root user): nothing in the checkout belongs to anyone else."""
    require_python_for_others()
    uid = 4242 if os.getuid() == 0 else os.getuid()
    where = shared_dir if mode == "bind" else tmp_path
    if where.is_relative_to(tmp_path):
        # pytest's tmp folders sit under a 0700 parent another user cannot cross.
        where = Path(tempfile.mkdtemp(prefix="ciparity-it-", dir="/tmp"))
        os.chmod(where, 0o755)
    repo = copy_fixture("sample_good", where)
    if os.getuid() == 0:
        for path in [repo, *repo.rglob("*")]:
            os.chown(path, uid, uid)
        os.chmod(where, 0o777)
    env = {"CIPARITY_WORKSPACE_MODE": mode, "HOME": "/tmp"}
    for task in ("lint", "test"):
        done = invoke([task], repo, env=env, user=uid if os.getuid() == 0 else None)
        assert done.returncode == 0, done.stdout + done.stderr
    assert owners(repo) == {uid}
    removed = subprocess.run(
        ["rm", "-rf", str(repo / "reports")],
        user=uid if os.getuid() == 0 else None,
        capture_output=True,
        text=True,
    )
    assert removed.returncode == 0, removed.stderr
    assert not (repo / "reports").exists()


def test_shell_cmd_is_a_command_line_and_its_docker_run_can_be_pasted(shared_dir: Path) -> None:
    repo = copy_fixture("sample_good", shared_dir)
    done = invoke(["shell", "--cmd", 'echo "uid=$(id -u)"; pwd'], repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"uid={os.getuid()}", str(repo)]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("equivalent: ")]
    pasted = subprocess.run(
        ["bash", "-c", line.removeprefix("equivalent: ")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (pasted.returncode, pasted.stdout) == (0, done.stdout), pasted.stderr
