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
    lines = broken.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"[broken] failure {step} ("))
    output = [line for line in lines[at + 1 :] if line.startswith("[broken]   | ")]
    assert any(error in line for line in output), broken.stdout
    table = next(line for line in lines if line.startswith("broken "))
    assert table.split()[1] == "failure" and f"{step}: " in table and error in table, table
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
    log = (repo / "reports" / "act" / "act.log").read_text(encoding="utf-8")
    assert "agent: /home/runner/run.sh as 1001:1001 groups" in log
    assert any(
        line.split()[:2] == ["on-our-runner", "success"] for line in done.stdout.splitlines()
    )
    assert managed(repo) == []


def test_the_default_console_is_compact_and_the_full_log_is_kept(shared_dir: Path) -> None:
    """Two jobs in parallel and a matrix: a line as each step starts and ends, the failing
    step's own output under its line, the job table naming the failed step and its error, and
    the end naming the full log, which holds everything --verbose prints."""
    repo = copy_fixture("act_console", shared_dir)
    _git_repo(repo)
    done = invoke(["act-ci"], repo)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for line in (
        "[passes] start   greet",
        "[fails] start   run the tests",
        "[matrix (1)] start   entry",
        "[matrix (2)] start   entry",
    ):
        assert line in lines, done.stdout
    ends = [line.rpartition(" (")[0] for line in lines if line.startswith("[passes] success ")]
    assert ends == [
        "[passes] success Set up job",
        "[passes] success actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
        "[passes] success greet",
        "[passes] success count",
        "[passes] success Complete job",
    ], done.stdout
    at = next(i for i, line in enumerate(lines) if line.startswith("[fails] failure run the tests"))
    output = {line for line in lines[at + 1 : at + 6] if line.startswith("[fails]   | ")}
    assert output >= {
        "[fails]   | collected 2 items",
        "[fails]   | test_one PASSED",
        "[fails]   | E   AssertionError: expected 2, got 3",
    }, done.stdout
    # Successful steps' output and act's own docker calls are only in the full log.
    assert "hello from passes" not in done.stdout and "docker exec" not in done.stdout
    assert "unreachable" not in done.stdout
    row = next(line for line in lines if line.startswith("fails "))
    assert row.split()[1] == "failure", row
    assert row.endswith("run the tests: E   AssertionError: expected 2, got 3"), row
    assert lines[-1] == (
        "full log: reports/act/act.log (act's JSON: reports/act/act.log.jsonl)"
    ), done.stdout
    log = (repo / "reports" / "act" / "act.log").read_text(encoding="utf-8")
    assert "[passes] hello from passes" in log and "docker exec" in log

    verbose = invoke(["act-ci", "--verbose", "--job", "passes"], repo)
    assert verbose.returncode == 0, verbose.stdout + verbose.stderr
    assert "[passes] hello from passes" in verbose.stdout.splitlines()
    assert "[passes] start   greet" not in verbose.stdout
    assert managed(repo) == []
