"""`invoke clean` and bad input (issue 9): the engine down, a label value that is not ours, a stale
snapshot whose files belong to another uid. One line each, the right exit code, and nothing of
another run removed. (A running pool and another checkout's objects: test_clean.)"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from pathlib import Path

import pytest
from docker_helpers import IMAGE, copy_fixture, invoke, plant, require_python_for_others

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

OTHER_UID = 4242  # neither root nor 1000
RUNNER_UID = 1001  # act gives a job's snapshot to the runner's uid


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _plant(made: list[str], checkout: Path, **labels: str) -> str:
    return plant(made, {"ciparity.checkout": str(checkout), **labels})


def _exists(ident: str) -> bool:
    return subprocess.run(["docker", "inspect", ident], capture_output=True).returncode == 0


def test_clean_with_the_engine_down_is_one_line_and_removes_nothing(tmp_path: Path) -> None:
    repo = copy_fixture("sample_good", tmp_path)
    snapshot = repo / "reports" / ".act" / "act-0123456789ab"
    snapshot.mkdir(parents=True)
    done = invoke(["clean"], repo, env={"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"})
    assert done.returncode == 3, done.stdout + done.stderr
    (line,) = _lines(done.stderr)
    assert line.startswith("ciparity: error: the Docker daemon is unreachable"), line
    assert "Traceback" not in done.stderr
    assert snapshot.is_dir()


def test_a_label_value_that_is_not_ours_is_one_line_and_kept(
    tmp_path: Path, planted: list[str]
) -> None:
    mine = copy_fixture("sample_good", tmp_path / "a")
    other = copy_fixture("sample_good", tmp_path / "b")
    odd = _plant(planted, mine, **{"ciparity.run": "a\nb", "ciparity.owner": "\x1b[2Jx"})
    theirs = _plant(
        planted, other, **{"ciparity.run": "ab" * 6, "ciparity.owner": f"{socket.gethostname()}:1"}
    )
    done = invoke(["clean"], mine)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _lines(done.stderr) == [
        "ciparity: kept run 'a\\nb': 1 running container(s) left alone (owned by '\\x1b[2Jx')"
    ]
    assert _lines(done.stdout) == ["removed 0 containers, 0 volumes, 0 networks"]
    assert _exists(odd) and _exists(theirs)


def test_a_stale_snapshot_of_another_uid_goes_a_live_one_stays(shared_dir: Path) -> None:
    """As a user who is neither root nor 1000: the stale snapshot's files belong to the runner's
    uid (act chowns them), so clean removes it through a root container (the daemon must see the
    folder: shared_dir); a snapshot a live run claims stays."""
    if os.getuid() != 0:
        pytest.skip("planting files of other uids needs root")
    require_python_for_others()
    os.chmod(shared_dir, 0o755)
    for folder in shared_dir.parents:
        if not folder.stat().st_mode & 0o001:
            pytest.skip(f"{folder} is closed to other users: run this through `invoke test`")
    repo = copy_fixture("sample_good", shared_dir)
    act = repo / "reports" / ".act"
    stale, live = act / f"act-{secrets.token_hex(6)}", act / f"act-{secrets.token_hex(6)}"
    for folder in (stale, live):
        (folder / "src").mkdir(parents=True)
        (folder / "src" / "job.txt").write_text("x", encoding="utf-8")
        for path in (folder, folder / "src", folder / "src" / "job.txt"):
            os.chown(path, RUNNER_UID, RUNNER_UID)
    # A live run's claim: a pid file beside its snapshot, naming a live process.
    (act / f".{live.name}.pid").write_text(str(os.getpid()), encoding="utf-8")
    for dirpath, dirnames, filenames in os.walk(repo):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            if os.stat(name).st_uid == 0:
                os.chown(name, OTHER_UID, OTHER_UID)
    done = invoke(
        ["clean"], repo, env={"HOME": "/tmp", "CIPARITY_RUNNER_IMAGE": IMAGE}, user=OTHER_UID
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"removed stale act-ci snapshots: {stale.name}" in _lines(done.stdout), done.stdout
    assert not stale.exists()
    assert (live / "src" / "job.txt").is_file()
