"""`invoke clean` and label values that are not ours: a message stays one line, and `--all` never
signals a process that a pool's owner label merely names."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ciparity import cleanup
from ciparity.container import Found

HOST = socket.gethostname()


def _box(ident: str, running: bool = True, **labels: str) -> Found:
    return Found("container", ident, {"ciparity.managed": "1", **labels}, running)


def test_a_label_with_a_newline_or_an_escape_is_shown_on_one_line() -> None:
    odd = Found(
        "container", "c1", {"ciparity.run": "x\nfake line", "ciparity.owner": "\x1b[2J"}, True
    )
    pool = _box("r1", **{"ciparity.runners": "p\nq", "ciparity.owner": f"{HOST}:1"})
    todo = cleanup.plan([odd, pool], host=HOST)
    assert todo.remove == ()
    assert all("\n" not in line and "\x1b" not in line for line in todo.kept)
    assert (
        "run 'x\\nfake line': 1 running container(s) left alone (owned by '\\x1b[2J')" in todo.kept
    )


def test_all_signals_only_a_real_pool_process() -> None:
    """pid 1 (init) and this test's process are alive but are no pool: their runners are stopped
    with `docker stop` (each deregisters), the processes are left alone."""
    for pid in (1, os.getpid()):
        runner = _box(
            "r1",
            **{
                "ciparity.runners": "p-1",
                "ciparity.run": "eeeeeeeeeeee",
                "ciparity.owner": f"{HOST}:{pid}",
            },
        )
        todo = cleanup.plan([runner], everything=True, host=HOST)
        assert todo.signal_pools == ()
        assert [f.ident for f in todo.stop] == ["r1"]


def test_is_pool_process_reads_the_command_line() -> None:
    code = "import sys; sys.stdout.write('up\\n'); sys.stdout.flush(); sys.stdin.read()"
    pool = subprocess.Popen(
        [sys.executable, "-c", code, "invoke", "runners"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert pool.stdout is not None and pool.stdout.readline() == "up\n"
        assert cleanup.is_pool_process(pool.pid)
        assert not cleanup.is_pool_process(os.getpid())
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.communicate()
    assert not cleanup.is_pool_process(pool.pid)


def test_a_snapshot_claimed_by_another_user_s_live_process_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kill(pid, 0)` on another user's process fails with EPERM: that process is alive."""
    from ciparity import act

    (tmp_path / "act-0123456789ab").mkdir()
    (tmp_path / ".act-0123456789ab.pid").write_text("4242", encoding="utf-8")

    def refused(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(act.os, "kill", refused)
    assert act.remove_stale(None, tmp_path) == []  # type: ignore[arg-type]
    assert (tmp_path / "act-0123456789ab").is_dir()
