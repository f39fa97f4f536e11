"""Runs never hurt each other: two checkouts run `invoke ci` and `invoke act-ci` at once and both
pass while `invoke clean` runs in each; clean removes this checkout's stale objects only."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from docker_helpers import copy_fixture, invoke, invoke_env, plant, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


def _labelled(**labels: str) -> list[str]:
    argv = ["docker", "ps", "-aq", "--no-trunc"]
    for key, value in labels.items():
        argv += ["--filter", f"label={key}={value}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _plant(made: list[str], checkout: Path, pid: int, running: bool, **extra: str) -> str:
    labels = {
        "ciparity.run": "abcdefabcdef",
        "ciparity.checkout": str(checkout),
        "ciparity.owner": f"{socket.gethostname()}:{pid}",
        **extra,
    }
    return plant(made, labels, running)


def test_clean_removes_this_checkout_s_stale_objects_only(
    tmp_path: Path, planted: list[str]
) -> None:
    mine, other = copy_fixture("sample_good", tmp_path / "a"), copy_fixture(
        "sample_good", tmp_path / "b"
    )
    dead = _dead_pid()
    stale = _plant(planted, mine, dead, running=True)
    finished = _plant(planted, mine, dead, running=False)
    theirs = _plant(planted, other, dead, running=True)
    pool = _plant(planted, mine, dead, running=True, **{"ciparity.runners": "pool-x"})

    done = invoke(["clean"], mine)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed 2 containers" in done.stdout
    left = set(_labelled(**{"ciparity.managed": "1"}))
    assert stale not in left and finished not in left
    assert theirs in left, "clean touched another checkout's container"
    assert pool in left, "clean stopped a running runner"
    assert "runner pool pool-x: 1 running runner(s) left alone" in done.stderr
    assert "Traceback" not in done.stderr

    assert invoke(["clean"], other).returncode == 0
    assert theirs not in set(_labelled(**{"ciparity.managed": "1"}))


def _git_repo(path: Path) -> None:
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], [*env, "commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(path), *argv], check=True, capture_output=True)


def test_ci_and_act_ci_at_once_with_clean_in_each(shared_dir: Path) -> None:
    checks_repo = copy_fixture("sample_good", shared_dir)
    act_repo = copy_fixture("act_slow", shared_dir)
    _git_repo(act_repo)
    logs = {name: shared_dir / f"{name}.log" for name in ("ci", "act-ci")}
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=cwd,
            env=invoke_env(),
            # A file, not a pipe: a full pipe nobody reads would stall the run.
            stdout=logs[name].open("w", encoding="utf-8"),
            stderr=subprocess.STDOUT,
        )
        for name, args, cwd in (
            ("ci", ["ci"], checks_repo),
            ("act-ci", ["act-ci", "--job", "steady"], act_repo),
        )
    }
    try:
        # The act job waits for a file of ours: it is live for as long as this test needs.
        assert wait_for(lambda: _labelled(**{"ciparity.checkout": str(act_repo)}), timeout=180)
        assert wait_for(lambda: _labelled(**{"ciparity.checkout": str(checks_repo)}), timeout=180)
        for repo in (checks_repo, act_repo):
            done = invoke(["clean"], repo)
            assert done.returncode == 0, done.stdout + done.stderr
        assert "left alone" in done.stderr, done.stderr  # the act job's container, still live
        assert runs["ci"].wait(timeout=600) == 0, logs["ci"].read_text(encoding="utf-8")
        # `invoke ci` ended and cleaned up after itself: the act job must still be running.
        job = _labelled(**{"ciparity.checkout": str(act_repo)})
        assert job, "the ci run's clean-up removed the act-ci run's job"
        (snapshot,) = (act_repo / "reports" / ".act").glob("act-*[0-9a-f]")
        (snapshot / "go").write_text("", encoding="utf-8")
        code = runs["act-ci"].wait(timeout=300)
        assert code == 0, logs["act-ci"].read_text(encoding="utf-8")
    finally:
        # SIGTERM first: a SIGKILLed run could not remove its containers.
        for process in runs.values():
            process.terminate()
        for process in runs.values():
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for repo in (checks_repo, act_repo):
        assert _labelled(**{"ciparity.checkout": str(repo)}) == []
