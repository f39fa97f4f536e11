"""Ctrl-C and SIGTERM, during a check and during a build, leave nothing running."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from docker_helpers import FIXTURES, copy_fixture, invoke_env, managed, wait_for, workflow_name

from ciparity import container

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        env=invoke_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_check_removes_its_container(signum: int, shared_dir: Path) -> None:
    repo = copy_fixture("sample_good", shared_dir)
    process = _start(["shell", "--cmd", "sleep 300"], repo)
    try:
        assert wait_for(lambda: managed(repo), timeout=60), "the check container never started"
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, err
    assert err.strip().splitlines()[-1] == "ciparity: interrupted; containers removed"
    assert "Traceback" not in err
    assert managed(repo) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_build_stops_it_cleanly(signum: int, tmp_path: Path) -> None:
    repo = copy_fixture("build_slow", tmp_path)
    process = _start(["build"], repo)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "sleeping-now" in line:
                break
        else:
            pytest.fail("the build never reached its slow step:\n" + "".join(lines))
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err
    image = subprocess.run(
        ["docker", "image", "inspect", "ciparity-it-build_slow:latest"], capture_output=True
    )
    assert image.returncode != 0, "an interrupted build must not tag an image"
    assert managed(repo) == []


def _git_repo(path: Path) -> None:
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], [*env, "commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(path), *argv], check=True, capture_output=True)


@pytest.mark.parametrize(
    "signum, job", [(signal.SIGINT, "sleeper-int"), (signal.SIGTERM, "sleeper-term")]
)
def test_signal_during_act_ci_leaves_nothing(signum: int, job: str, shared_dir: Path) -> None:
    repo = copy_fixture("act_slow", shared_dir)
    _git_repo(repo)
    process = _start(["act-ci", "--verbose", "--job", job], repo)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "sleeping-now" in line:
                break
        else:
            pytest.fail("the job never reached its slow step:\n" + "".join(lines))
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, err
    assert err.strip().splitlines()[-1] == "ciparity: interrupted; containers removed"
    assert "Traceback" not in err
    for kind in (["ps", "-aq"], ["volume", "ls", "-q"]):
        left = subprocess.run(
            ["docker", *kind, "--filter", f"name=act-{workflow_name(repo)}-{job}-"],
            capture_output=True,
            text=True,
        )
        assert left.stdout.split() == [], f"act left {kind[0]} behind"
    act_dir = repo / "reports" / ".act"
    assert not act_dir.exists() or list(act_dir.iterdir()) == []


def test_daemon_gone_mid_run(shared_dir: Path) -> None:
    """The daemon disappears while a job runs (a forwarding socket is killed): act-ci ends with
    one line and a non-zero exit, without a traceback."""
    repo = copy_fixture("act_slow", shared_dir)
    _git_repo(repo)
    sock = shared_dir / "daemon.sock"
    real = container.docker_socket() or "/var/run/docker.sock"
    proxy = subprocess.Popen(
        [sys.executable, str(FIXTURES / "socket_proxy.py"), str(sock), real],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proxy.stdout is not None and proxy.stderr is not None
    if proxy.stdout.readline().strip() != "ready":
        pytest.fail(f"the socket forwarder did not start ({sock}): {proxy.stderr.read()}")
    env = invoke_env({"DOCKER_HOST": f"unix://{sock}"})
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "act-ci", "--verbose", "--job", "sleeper-gone"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "sleeping-now" in line:
                break
        proxy.kill()
        proxy.wait()
        _, err = process.communicate(timeout=180)
    finally:
        process.kill()
        proxy.kill()
        # The real daemon is still up: remove what the vanished "daemon" could not.
        for kind, rm in ((["ps", "-aq"], ["rm", "-f"]), (["volume", "ls", "-q"], ["volume", "rm"])):
            ids = subprocess.run(
                ["docker", *kind, "--filter", f"name=act-{workflow_name(repo)}-sleeper-gone-"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if ids:
                subprocess.run(["docker", *rm, *ids], capture_output=True)
    assert process.returncode not in (0, None)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ciparity: "), err
