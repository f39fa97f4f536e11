"""`invoke act-ci` reproduces the classic hosted-runner failures offline, and their fixes pass."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from docker_helpers import copy_fixture, invoke, managed, owners

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

CASES = {
    "act_permissions": ("write a report from the CI image", "Permission denied"),
    "act_paths": (
        "read data prepared by an earlier step",
        "bind source path does not exist: /home/runner/ciparity-data",
    ),
    "act_env": ("run the code under test", "KeyError: 'API_URL'"),
}


def _git_repo(path: Path) -> None:
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], [*env, "commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(path), *argv], check=True, capture_output=True)


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_broken_fails_at_the_expected_step_and_fixed_passes(fixture: str, shared_dir: Path) -> None:
    step, error = CASES[fixture]
    repo = copy_fixture(fixture, shared_dir)
    _git_repo(repo)

    broken = invoke(["act-ci", "--job", "broken"], repo)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    failing = [line for line in broken.stdout.splitlines() if line.startswith("[broken]")]
    text = "\n".join(failing)
    assert error in text, text
    assert f"Failure - Main {step}" in text, text
    assert broken.stderr.strip().splitlines()[-1] == "ciparity: act-ci failed: broken"

    fixed = invoke(["act-ci", "--job", "fixed"], repo)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert any(line.split()[:2] == ["fixed", "success"] for line in fixed.stdout.splitlines())

    assert managed(repo) == []
    # Only the failed run's workspace is kept (for `invoke shell --job`), and it is ours.
    assert [p.name for p in (repo / "reports" / ".act").iterdir()] == ["last-failed"]
    assert owners(repo / "reports") == {os.getuid()}


def test_bad_input_is_one_line(shared_dir: Path) -> None:
    repo = copy_fixture("act_env", shared_dir)
    _git_repo(repo)
    cases = {
        ("--job", "nope"): "ciparity: error: no job 'nope' in ci.yml (jobs: broken, fixed)",
        ("--workflow", "nope.yml"): "ciparity: error: no workflow 'nope.yml' (known: ci.yml)",
        ("--event", "pish"): "ciparity: error: unknown event 'pish'",
    }
    for args, message in cases.items():
        done = invoke(["act-ci", *args], repo)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().startswith(message), done.stderr
    (repo / ".github" / "workflows" / "ci.yml").write_text("jobs:\n  a: [\n")
    done = invoke(["act-ci"], repo)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("ciparity: error: "), done.stderr
    assert "ci.yml:3: malformed YAML" in done.stderr


def test_shell_opens_the_failed_job_as_it_saw_things(shared_dir: Path) -> None:
    repo = copy_fixture("act_env", shared_dir)
    _git_repo(repo)
    assert invoke(["act-ci", "--job", "broken"], repo).returncode == 1
    script = 'id -u; pwd; echo "url=$API_URL"; ls -ld .; docker version --format ok'
    done = invoke(["shell", "--job", "broken", "--cmd", f"sh -c '{script}'"], repo)
    assert done.returncode == 0, done.stdout + done.stderr
    kept = repo / "reports" / ".act" / "last-failed"
    lines = done.stdout.splitlines()
    assert lines[:3] == ["1001", str(kept), "url=https://api.example.invalid"]
    assert " runner runner " in lines[3] and lines[4] == "ok"
    assert "workspace of the last failed act-ci run" in done.stderr
    assert owners(repo / "reports") == {os.getuid()}, "handed back after the shell"
    assert managed(repo) == []


def test_runner_image_missing_and_not_buildable(shared_dir: Path) -> None:
    repo = copy_fixture("act_env", shared_dir)
    _git_repo(repo)
    done = invoke(["act-ci"], repo, env={"CIPARITY_RUNNER_IMAGE": "ciparity-it-no-runner:1"})
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "ciparity: error: no runner/Dockerfile here and image ciparity-it-no-runner:1 is missing:"
        " run `invoke build-runner` in the ciparity checkout"
    ]


def test_list_and_dry_run(shared_dir: Path) -> None:
    repo = copy_fixture("act_env", shared_dir)
    _git_repo(repo)
    listed = invoke(["act-ci", "--list"], repo)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[2:]]
    assert [(r[1], r[-1]) for r in rows] == [("broken", "run"), ("fixed", "run")]
    planned = invoke(["act-ci", "--dry-run", "--job", "broken"], repo)
    # A dry run plans the job without starting a container, so even the broken job "succeeds".
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert any(line.split()[:2] == ["broken", "success"] for line in planned.stdout.splitlines())
    assert "calling" not in planned.stdout and managed(repo) == []


def test_a_self_hosted_job_runs_in_the_self_hosted_image(shared_dir: Path) -> None:
    """`runs-on: [self-hosted, linux, x64]` maps to ciparity-runner:self-hosted (act-ci's own
    -P mappings, no .actrc): the job sees the runner's layout, uid 1001 and the docker group, as
    on our runners."""
    repo = copy_fixture("act_selfhosted", shared_dir)
    _git_repo(repo)
    done = invoke(["act-ci", "--job", "on-our-runner"], repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agent: /home/runner/run.sh as 1001:1001 groups" in done.stdout
    assert any(
        line.split()[:2] == ["on-our-runner", "success"] for line in done.stdout.splitlines()
    )
    assert managed(repo) == []
