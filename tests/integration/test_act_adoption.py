"""An ordinary repository adopts act-ci with one import: no .actrc, no .python-version. Every
workflow a push triggers runs, matrix entries that cannot run here are listed and skipped with
their reason, and interrupted or failed runs leave no container (nested ones too) or snapshot."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from docker_helpers import REPO, copy_fixture, invoke, invoke_env, managed, workflow_name

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

SKIPS = [
    "tests.yml: test (ubuntu-latest, 3.11, unit): Python 3.11 is not in the runner image's tool"
    " cache (3.12) and cannot be downloaded offline",
    "tests.yml: test (macos-latest, 3.11, unit): macOS runner (macos-latest): act runs Linux"
    " containers only",
    "tests.yml: test (macos-latest, 3.12, unit): macOS runner (macos-latest): act runs Linux"
    " containers only",
    "tests.yml: test (windows-latest, 3.12, unit): Windows runner (windows-latest): act runs"
    " Linux containers only",
    "tests.yml: boxed (image, ciparity-it-missing/image:1): container image"
    " ciparity-it-missing/image:1 is not on this engine: docker pull it first",
]


def _git_repo(path: Path) -> None:
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], [*env, "commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(path), *argv], check=True, capture_output=True)


def _rows(stdout: str) -> dict[str, str]:
    """The job table: name -> result (columns are separated by two spaces or more)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c for c in line.split("  ") if c.strip()]
        if len(cells) >= 2 and (cells[0].startswith(("tests.yml: ", "lint.yml: "))):
            rows[cells[0].strip()] = cells[1].strip()
    return rows


def _skip_lines(stderr: str) -> list[str]:
    prefix = "ciparity: skipped "
    return [line[len(prefix) :] for line in stderr.splitlines() if line.startswith(prefix)]


def test_an_ordinary_repository_runs_what_it_can_and_lists_the_rest(shared_dir: Path) -> None:
    repo = copy_fixture("real_matrix", shared_dir)
    assert not (repo / ".actrc").exists() and not (repo / ".python-version").exists()
    _git_repo(repo)

    done = invoke(["act-ci"], repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _skip_lines(done.stderr) == SKIPS
    rows = _rows(done.stdout)
    # No action mirror was filled here: setup-python's step is skipped, said in one line, and
    # the rest of the job runs (its real code under act-ci: tests/integration/test_act_real.py).
    assert done.stderr.count("actions/setup-python@v5") >= 1
    no_mirror = "1 step skipped: actions/setup-python@v5 not available offline"
    assert rows.pop("tests.yml: test (ubuntu-latest, 3.12, unit)") == f"success, {no_mirror}"
    # continue-on-error from the entry's matrix: its failure does not fail the run.
    assert rows.pop("tests.yml: test (ubuntu-latest, 3.12, nightly, true)").startswith(
        "failure (continue-on-error)"
    )
    # The container expression is empty for this entry: it runs on the runner image.
    assert rows.pop("tests.yml: boxed (runner)") == "success"
    assert rows.pop("lint.yml: lint") == "success"
    assert rows == {_name(s): "skipped: " + s.split(": ", 2)[2] for s in SKIPS}
    assert "never on push" not in done.stdout, "release.yml is not triggered by a push"
    # A failed step's output is shown; a successful one's is in the full log.
    # (step names are shown, so the test looks for output lines, which the console prefixes.)
    assert "| nightly-suite-fails" in done.stdout and "| ran-on-the-runner" not in done.stdout
    assert "ran-on-the-runner" in (repo / "reports" / "act" / "act.log").read_text()

    # Nothing ciparity wrote shows up in git (reports/ carries its own .gitignore).
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == "", status.stdout
    assert managed(repo) == []

    strict = invoke(["act-ci", "--strict"], repo)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    last = strict.stderr.strip().splitlines()[-1]
    # --strict: the step skipped for want of a mirror fails its entry too.
    failed = ["tests.yml: test (ubuntu-latest, 3.12, unit)", *(_name(s) for s in SKIPS)]
    expected = "ciparity: act-ci failed: " + ", ".join(failed)
    assert last == expected, strict.stdout + strict.stderr

    only = invoke(["act-ci", "--workflow", "lint.yml"], repo)
    assert only.returncode == 0, only.stdout + only.stderr
    assert _skip_lines(only.stderr) == [] and "[lint]" in only.stdout
    assert "[test]" not in only.stdout


def _name(skip_line: str) -> str:
    workflow, job, _ = skip_line.split(": ", 2)
    return f"{workflow}: {job}"


def test_a_malformed_actrc_is_one_line(shared_dir: Path) -> None:
    repo = copy_fixture("real_matrix", shared_dir)
    (repo / ".actrc").write_text("-P ubuntu-latest\n")
    _git_repo(repo)
    done = invoke(["act-ci"], repo)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"ciparity: error: {repo / '.actrc'}:1: -P needs label=image, got 'ubuntu-latest'"
    )


def test_the_repositorys_actrc_overrides_ciparitys_mapping(shared_dir: Path) -> None:
    """Mapping ubuntu-latest to an image that does not exist makes the job fail at its start:
    the repository's `-P` won over ciparity's."""
    repo = copy_fixture("real_matrix", shared_dir)
    (repo / ".actrc").write_text("-P ubuntu-latest=ciparity-it-missing/runner:none\n")
    _git_repo(repo)
    done = invoke(["act-ci", "--workflow", "lint.yml"], repo)
    assert done.returncode == 1, done.stdout + done.stderr
    # The job's set-up error names the registry; the image act asked for is in the full log.
    assert "ciparity-it-missing/runner:none" in (repo / "reports" / "act" / "act.log").read_text()
    assert managed(repo) == []


def _nested_repo(dest: Path) -> Path:
    repo = copy_fixture("real_nested", dest)
    shutil.copytree(REPO / "src" / "ciparity", repo / "vendor" / "ciparity")
    _git_repo(repo)
    return repo


def _nested(repo: Path) -> list[str]:
    label = f"ciparity.it-nested={workflow_name(repo)}"
    argv = ["docker", "ps", "-aq", "--filter", f"label={label}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def test_a_failed_job_leaves_no_container_it_started(shared_dir: Path) -> None:
    repo = _nested_repo(shared_dir)
    try:
        done = invoke(["act-ci", "--job", "leak"], repo)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "nested-started" in done.stdout
        assert _nested(repo) == []
    finally:
        subprocess.run(["docker", "rm", "-f", *_nested(repo)], capture_output=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_leaves_no_nested_container_or_snapshot(signum: int, shared_dir: Path) -> None:
    repo = _nested_repo(shared_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "act-ci", "--verbose", "--job", "hang"],
        cwd=repo,
        env=invoke_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "nested-started" in line:
                break
        else:
            pytest.fail("the job never started its container:\n" + "".join(lines))
        assert _nested(repo), "the nested container exists before the signal"
        process.send_signal(signum)
        _, err = process.communicate(timeout=180)
    finally:
        process.kill()
        leftovers = _nested(repo)
        subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True)
    assert process.returncode == 128 + signum, err
    assert err.strip().splitlines()[-1] == "ciparity: interrupted; containers removed"
    assert leftovers == [], "a container the job started is left"
    act_dir = repo / "reports" / ".act"
    assert not act_dir.exists() or list(act_dir.iterdir()) == []
