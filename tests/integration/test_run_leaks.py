"""The leak checks, by run (issue 9): after success, failure, SIGINT and SIGTERM of `invoke test`,
`invoke ci` and `invoke runners`, nothing labelled with the run is left — nor with a run that the
run's tests started as runs of their own (`ciparity.parent`), which die with the test container.

`act-ci` is covered where its runs are: test_act_ci (success and failure: no container, only the
failed run's snapshot kept), test_act_adoption (a job's nested containers, on failure and on both
signals) and test_signals (both signals: no container, volume or snapshot folder)."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from docker_helpers import REPO, copy_fixture, invoke, invoke_env, wait_for
from test_self_hosted import CANARY, IMAGE, ORIGIN, Fake, fake, image, repo_env  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


def _listing(kind: str, label: str, template: str) -> list[str]:
    argv = {"container": ["ps", "-a"], "volume": ["volume", "ls"], "network": ["network", "ls"]}
    done = subprocess.run(
        ["docker", *argv[kind], "--filter", f"label={label}", "--format", template],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if line.strip()]


def run_leftovers(run: str) -> list[str]:
    """Containers, volumes and networks of `run` or of a run started under it."""
    left = []
    for kind, ident in (("container", "Names"), ("volume", "Name"), ("network", "Name")):
        for label in (f"ciparity.run={run}", f"ciparity.parent={run}"):
            left += [
                f"{kind} {name} ({label})" for name in _listing(kind, label, f"{{{{.{ident}}}}}")
            ]
    return left


def _runs(checkout: Path) -> list[tuple[str, str]]:
    """(run, parent) of each container of a checkout."""
    template = '{{.Label "ciparity.run"}} {{.Label "ciparity.parent"}}'
    rows = _listing("container", f"ciparity.checkout={checkout}", template)
    return [((row.split() + ["", ""])[0], (row.split() + ["", ""])[1]) for row in rows]


def _nested(checkout: Path) -> tuple[str, str] | None:
    """(outer run, nested run) once a container of a run started by the checkout's test check
    runs (its parent is the run of another container of the checkout)."""
    pairs = _runs(checkout)
    runs = {run for run, _ in pairs}
    found = [(parent, run) for run, parent in pairs if parent in runs]
    return found[0] if found else None


def _nested_repo(where: Path, mode: str) -> Path:
    repo = copy_fixture("nested_run", where)
    # The nested run runs in the check container: it gets the ciparity under test as a copy.
    shutil.copytree(
        REPO / "src" / "ciparity",
        repo / "under_test" / "ciparity",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (repo / "tests" / "mode").write_text(mode, encoding="utf-8")
    return repo


@pytest.mark.parametrize("mode, code", [("pass", 0), ("fail", 1)])
def test_test_removes_what_its_tests_runs_left(mode: str, code: int, shared_dir: Path) -> None:
    """A test's own run is killed (SIGKILL) and leaves its container running: the test check's
    clean-up removes it, whether the tests passed or failed."""
    repo = _nested_repo(shared_dir, mode)
    done = invoke(["test"], repo)
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    outer = (repo / "reports" / "outer-run").read_text(encoding="utf-8").strip()
    assert run_leftovers(outer) == []
    assert _runs(repo) == []


@pytest.mark.parametrize("task", ["test", "ci"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_check_removes_the_runs_its_tests_started(
    task: str, signum: int, shared_dir: Path
) -> None:
    repo = _nested_repo(shared_dir, "hang")
    log = shared_dir / f"{task}.log"
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "invoke", task],
            cwd=repo,
            env=invoke_env(),
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        # Ready: the nested run's container is up, inside the outer run's test check.
        assert wait_for(lambda: _nested(repo) is not None, timeout=300), log.read_text()
        pair = _nested(repo)
        assert pair is not None
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=120)
    assert process.returncode == 128 + signum, err
    assert err.strip().splitlines()[-1] == "ciparity: interrupted; containers removed", err
    assert "Traceback" not in err
    outer, nested = pair
    assert run_leftovers(outer) == [] and run_leftovers(nested) == []
    assert _runs(repo) == []


def _pool(prefix: str, fake_name: str, *args: str, **env: str) -> subprocess.Popen[str]:
    settings = {
        "CIPARITY_RUNNER_URL": f"{ORIGIN}/octo/hello",
        "CIPARITY_RUNNER_PAT": CANARY,
        "CIPARITY_RUNNER_NAME_PREFIX": prefix,
        "CIPARITY_SELF_HOSTED_IMAGE": IMAGE,
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "runners", "--network", f"container:{fake_name}", *args],
        cwd=REPO,
        env=repo_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _pool_run(prefix: str) -> str:
    found = _listing("container", "ciparity.runners", '{{.Names}} {{.Label "ciparity.run"}}')
    runs = [
        row.split()[1] for row in found if row.startswith(f"{prefix}-") and len(row.split()) > 1
    ]
    return runs[0] if runs else ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_pool_leaves_nothing_of_its_run(signum: int, fake: Fake) -> None:  # noqa: F811
    prefix = f"it-leak-{secrets.token_hex(3)}"
    pool = _pool(prefix, fake.name, "--replicas", "2")
    try:
        # Ready: both runners registered and listening (the fake lists them).
        assert wait_for(lambda: len(fake.runners()) == 2 or pool.poll() is not None, 120)
        assert pool.poll() is None, pool.communicate()[0]
        run = _pool_run(prefix)
        assert run, "the pool's runners carry no run label"
        pool.send_signal(signum)
        out, _ = pool.communicate(timeout=180)
    finally:
        if pool.poll() is None:
            pool.terminate()
            pool.wait(timeout=180)
    # The pool stops as asked: each runner deregisters, and the task ends normally.
    assert pool.returncode == 0, out
    assert "Traceback" not in out
    assert fake.runners() == [], out
    assert run_leftovers(run) == []


def test_a_pool_whose_runners_finish_leaves_nothing_of_its_run(fake: Fake) -> None:  # noqa: F811
    prefix = f"it-once-{secrets.token_hex(3)}"
    pool = _pool(
        prefix,
        fake.name,
        "--replicas",
        "1",
        "--once",
        CIPARITY_ENV_ALLOW="STANDIN_AGENT_JOB",
        STANDIN_AGENT_JOB="3",
    )
    try:
        # Ready: the runner registered; its job comes 3 s after it listens, then it exits.
        assert wait_for(lambda: len(fake.runners()) == 1 or pool.poll() is not None, 120)
        run = _pool_run(prefix)
        out, _ = pool.communicate(timeout=300)
    finally:
        if pool.poll() is None:
            pool.terminate()
            pool.wait(timeout=180)
    assert pool.returncode == 0, out
    assert run, out
    assert fake.runners() == [], out
    assert run_leftovers(run) == []
