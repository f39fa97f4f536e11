"""Bad input and faults: one line on stderr, a non-zero exit, no traceback, nothing left behind."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest
from docker_helpers import copy_fixture, invoke, managed, require_python_for_others

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


def test_docker_cli_missing(tmp_path: Path) -> None:
    repo = copy_fixture("sample_good", tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    done = invoke(["lint"], repo, env={"PATH": str(bin_dir)})
    assert done.returncode == 3
    assert _one_line(done.stderr).startswith("ciparity: error: the docker CLI is not on PATH")


def test_daemon_unreachable(tmp_path: Path) -> None:
    repo = copy_fixture("sample_good", tmp_path)
    done = invoke(["lint"], repo, env={"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"})
    assert done.returncode == 3
    assert _one_line(done.stderr).startswith("ciparity: error: the Docker daemon is unreachable")


def test_socket_permission_denied(tmp_path: Path) -> None:
    """As root: a user (4242) outside the socket's group. Otherwise (a runner's uid 1001, say):
    a daemon socket this user may not open. Root would pass the second one, so it takes the first.
    """
    if os.getuid() == 0:
        require_python_for_others()
        repo = Path(tempfile.mkdtemp(prefix="ciparity-it-", dir="/tmp"))
        os.chmod(repo, 0o755)
        repo = copy_fixture("sample_good", repo)
        done = invoke(["lint"], repo, env={"HOME": "/tmp"}, user=4242, no_socket_group=True)
    else:
        repo = copy_fixture("sample_good", tmp_path)
        closed = tmp_path / "closed.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(closed))
            server.listen(1)
            os.chmod(closed, 0)
            done = invoke(["lint"], repo, env={"DOCKER_HOST": f"unix://{closed}"})
    assert done.returncode == 3
    line = _one_line(done.stderr)
    assert line.startswith("ciparity: error: permission denied on the Docker socket")


def test_base_missing_without_registry_or_python(tmp_path: Path) -> None:
    repo = copy_fixture("sample_good", tmp_path)
    env = {
        "CIPARITY_BASE_IMAGE": "ciparity-it-missing-base:3.12",
        "CIPARITY_HOST_PYTHON": str(tmp_path / "no-python"),
    }
    done = invoke(["base"], repo, env=env)
    assert done.returncode == 2
    line = _one_line(done.stderr.replace(done.stderr.split("ciparity: error")[0], ""))
    assert "no bin/python3.12" in line


def test_a_failing_dockerfile_step_is_named(tmp_path: Path) -> None:
    repo = copy_fixture("build_fails", tmp_path)
    done = invoke(["build"], repo)
    assert done.returncode == 4
    line = _one_line(done.stderr)
    assert 'failed at [system 2/2] RUN echo "about to fail" && exit 3' in line
    assert "exit code: 3" in line
    assert managed(repo) == [], "a failed build leaves no labelled container"


def test_unknown_option(tmp_path: Path) -> None:
    repo = copy_fixture("sample_good", tmp_path)
    done = invoke(["lint", "--no-such-flag"], repo)
    assert done.returncode != 0
    assert _one_line(done.stderr) == "No idea what '--no-such-flag' is!"


def test_unknown_setting_in_pyproject(tmp_path: Path) -> None:
    repo = copy_fixture("sample_good", tmp_path)
    with (repo / "pyproject.toml").open("a") as handle:
        handle.write('colour = "blue"\n')
    done = invoke(["lint"], repo)
    assert done.returncode == 2
    assert "unknown setting 'colour'" in _one_line(done.stderr)
