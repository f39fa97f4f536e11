"""The real actions, offline: `invoke actions-sync` fills an action mirror from a stand-in remote
(a file:// folder of bare repositories: copies of ../shared/actions plus a composite action made
here, since GitHub is unreachable), then `invoke act-ci` runs the actions' own code from it; an
action the mirror lacks is skipped and said so, and `--strict` fails it.

The published actions come from ../shared/actions beside the checkout (CIPARITY_SHARED_ACTIONS
names another place). The JavaScript test runs the action with the runner image's `node`
(CIPARITY_IT_RUNNER_IMAGE names another image).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from docker_helpers import copy_fixture, invoke, managed, shared_actions_remote

# The published actions come from ../shared/actions, which only this checkout's own
# machine has (not a workflow job): see the `shared_actions` marker.
pytestmark = [pytest.mark.docker, pytest.mark.shared_actions, pytest.mark.usefixtures("engine")]

RUNNER_IMAGE = os.environ.get("CIPARITY_IT_RUNNER_IMAGE", "ciparity-runner:latest")
GREETER = """name: greeter
description: A composite action published in its own repository (here, the stand-in remote)
inputs:
  who:
    description: whom to greet
    required: true
runs:
  using: composite
  steps:
    - shell: bash
      run: echo "hello, ${{ inputs.who }}, from team/hello@v1"
"""
SKIPPED = "codecov/codecov-action@v5 not available offline"


def _git(*args: str, cwd: Path | None = None) -> None:
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True)


def _remote(tmp: Path) -> Path:
    """Copies of the shared mirrors (their refs are all packed: git wants a refs/ folder) plus
    team/hello, a composite action at a sub-path, tagged v1."""
    remote = shared_actions_remote(tmp)
    work = tmp / "hello"
    (work / "greeter").mkdir(parents=True)
    (work / "greeter" / "action.yml").write_text(GREETER)
    _git("init", "-q", "-b", "main", str(work))
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "greeter", cwd=work)
    _git("tag", "v1", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(remote / "team" / "hello.git"))
    return remote


def _repo(shared_dir: Path) -> tuple[Path, dict[str, str]]:
    repo = copy_fixture("real_actions", shared_dir)
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", "x", cwd=repo)
    env = {
        "CIPARITY_ACTIONS_URL": f"file://{_remote(shared_dir)}",
        "CIPARITY_ACTIONS_MIRROR": str(shared_dir / "mirror"),
        # The fixture needs no .actrc: ciparity maps ubuntu-latest to the runner image itself.
        "CIPARITY_RUNNER_IMAGE": RUNNER_IMAGE,
    }
    return repo, env


def _job_lines(stdout: str, job: str) -> str:
    return "\n".join(line for line in stdout.splitlines() if line.startswith(f"[{job}]"))


def _row(stdout: str, job: str) -> str:
    rows = [line for line in stdout.splitlines() if line.split()[:1] == [job]]
    assert rows, stdout
    return " ".join(rows[-1].split()[1:-1])


def _leftovers(repo: Path) -> list[str]:
    folder = repo / "reports" / ".act"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_sync_then_the_real_composite_runs_and_a_missing_action_is_skipped(
    shared_dir: Path,
) -> None:
    repo, env = _repo(shared_dir)
    synced = invoke(["actions-sync"], repo, env)
    # The stand-in remote has no codecov: one line, exit 1, the rest synced.
    assert synced.returncode == 1, synced.stdout + synced.stderr
    assert "Traceback" not in synced.stderr
    assert synced.stderr.strip().splitlines() == [
        f"ciparity: error: codecov/codecov-action: cannot fetch {env['CIPARITY_ACTIONS_URL']}"
        f"/codecov/codecov-action.git: '{env['CIPARITY_ACTIONS_URL'][7:]}/codecov/"
        "codecov-action.git' does not appear to be a git repository"
    ]
    assert "team/hello/greeter@v1: " in synced.stdout
    assert (shared_dir / "mirror" / "team" / "hello.git").is_dir()

    done = invoke(["act-ci", "--verbose", "--job", "composite"], repo, env)
    assert done.returncode == 0, done.stdout + done.stderr
    # Before any job starts: one line naming the missing action and the way to fetch it.
    warnings = [line for line in done.stderr.splitlines() if "not available offline" in line]
    assert warnings == [
        f"ciparity: warning: codecov/codecov-action@v5 is not available offline (not in the"
        f" action mirror {shared_dir / 'mirror'}): its steps are skipped;"
        " `invoke actions-sync` fetches it"
    ]
    log = _job_lines(done.stdout, "composite")
    assert "hello, ciparity, from team/hello@v1" in log, "the mirrored composite ran"
    assert "the tests ran" in log
    assert f"::warning title=ciparity-skip::{SKIPPED}" in log, "the job log says so"
    assert f"Success - Main skipped: {SKIPPED}" in log
    assert "the job went on" in log, "the rest of the job runs"
    assert _row(done.stdout, "composite") == f"success, 1 step skipped: {SKIPPED}"
    assert managed(repo) == [] and _leftovers(repo) == []

    strict = invoke(["act-ci", "--verbose", "--job", "composite", "--strict"], repo, env)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    log = _job_lines(strict.stdout, "composite")
    assert f"::error title=ciparity-skip::{SKIPPED} (--strict;" in log
    assert "the job went on" not in log
    assert _row(strict.stdout, "composite") == f"failure, 1 step failed: {SKIPPED} (--strict)"
    assert strict.stderr.strip().splitlines()[-1] == "ciparity: act-ci failed: composite"
    assert managed(repo) == []


def test_a_javascript_action_from_the_mirror_runs_its_own_code(shared_dir: Path) -> None:
    has_node = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "node", RUNNER_IMAGE, "--version"],
        capture_output=True,
        text=True,
    )
    assert has_node.returncode == 0, (
        f"{RUNNER_IMAGE} has no node (issue 8 item 3 adds it; CIPARITY_IT_RUNNER_IMAGE names an"
        " image that has it)"
    )
    repo, env = _repo(shared_dir)
    assert invoke(["actions-sync"], repo, env).returncode == 1  # codecov: not on the remote
    done = invoke(["act-ci", "--verbose", "--job", "javascript"], repo, env)
    assert done.returncode == 0, done.stdout + done.stderr
    log = _job_lines(done.stdout, "javascript")
    # act runs the action's bundled JavaScript with the image's node ...
    assert "/var/run/act/actions/actions-cache-restore@v4/dist/restore-only/index.js" in log, log
    # ... and that code speaks to act-ci's cache server: a miss, which (as on GitHub) leaves
    # the cache-hit output unset.
    assert "Cache not found for input keys: real-Linux" in log, log
    assert "cache-hit=[]" in log, log
    assert _row(done.stdout, "javascript") == "success"
    assert managed(repo) == []


def test_bad_mirror_input_is_one_line_and_leaves_nothing(shared_dir: Path) -> None:
    repo, env = _repo(shared_dir)
    assert invoke(["actions-sync"], repo, env).returncode == 1
    workflow = repo / ".github" / "workflows" / "ci.yml"
    original = workflow.read_text()
    mirror = shared_dir / "mirror"

    def fails(job: str, settings: dict[str, str], message: str) -> None:
        done = invoke(["act-ci", "--verbose", "--job", job], repo, settings)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1] == message, done.stderr
        assert managed(repo) == [] and _leftovers(repo) == []

    workflow.write_text(original.replace("cache/restore@v4", "cache/restore@v9"))
    fails(
        "javascript",
        {**env, "CIPARITY_OFFLINE": "on"},
        "ciparity: error: actions/cache/restore@v9: the action mirror's"
        f" {mirror}/actions/cache.git has no ref v9: run `invoke actions-sync`",
    )
    workflow.write_text(original.replace("codecov/codecov-action@v5", "codecov/codecov-action"))
    fails(
        "composite",
        env,
        "ciparity: error: .github/workflows/ci.yml:18: uses: codecov/codecov-action has no ref:"
        " write codecov/codecov-action@TAG, a branch or a full commit SHA",
    )
    workflow.write_text(original)
    shutil.rmtree(mirror / "team" / "hello.git")
    (mirror / "team" / "hello.git").mkdir()
    fails(
        "composite",
        env,
        f"ciparity: error: {mirror}/team/hello.git is not a git mirror (a bare repository, as"
        " `git clone --mirror` makes): move it away, then run `invoke actions-sync`",
    )
