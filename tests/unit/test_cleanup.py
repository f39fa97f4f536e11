"""`invoke clean`'s decisions: this checkout's finished or stale objects only; live runs and
runner pools left alone; `--all` stops runners gracefully."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FakeRun

from ciparity import cleanup, container
from ciparity.container import Found

HOST = socket.gethostname()


def box(ident: str, run: str, pid: int, running: bool, host: str = HOST, **extra: str) -> Found:
    labels = {
        "ciparity.managed": "1",
        "ciparity.run": run,
        "ciparity.checkout": "/p",
        "ciparity.owner": f"{host}:{pid}",
        **extra,
    }
    return Found("container", ident, labels, running)


def vol(ident: str, run: str) -> Found:
    return Found("volume", ident, {"ciparity.managed": "1", "ciparity.run": run})


@pytest.fixture
def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_finished_and_stale_objects_go_live_runs_stay(dead_pid: int) -> None:
    live, me = "aaaaaaaaaaaa", os.getpid()
    found = [
        box("exited", "bbbbbbbbbbbb", me, running=False),
        box("stale", "cccccccccccc", dead_pid, running=True),
        box("live", live, me, running=True),
        box("other-host", "dddddddddddd", 1, running=True, host="elsewhere"),
        vol("stale-vol", "cccccccccccc"),
        vol("live-vol", live),
    ]
    todo = cleanup.plan(found, host=HOST)
    assert {f.ident for f in todo.remove} == {"exited", "stale", "stale-vol"}
    assert todo.stop == () and todo.signal_pools == ()
    assert len(todo.kept) == 2
    assert any(live in line and f":{me}" in line for line in todo.kept)


def test_a_running_pool_is_never_stopped_without_all(dead_pid: int) -> None:
    here = HOST
    runner = box("r1", "eeeeeeeeeeee", dead_pid, True, host=here, **{"ciparity.runners": "p-1"})
    todo = cleanup.plan([runner, vol("pool-vol", "eeeeeeeeeeee")], host=here)
    assert todo.remove == () and todo.stop == ()
    assert todo.kept == (
        "runner pool p-1: 1 running runner(s) left alone; stop them with Ctrl-C where"
        " `invoke runners` runs, or `invoke clean --all` (stops them gracefully)",
    )


def test_all_stops_orphaned_runners_gracefully_and_signals_live_pools(
    dead_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, me = HOST, os.getpid()
    monkeypatch.setattr(cleanup, "is_pool_process", lambda pid: pid == me)
    orphan = box("r1", "eeeeeeeeeeee", dead_pid, True, host=here, **{"ciparity.runners": "p-1"})
    pooled = box("r2", "ffffffffffff", me, True, host=here, **{"ciparity.runners": "p-2"})
    live = box("live", "aaaaaaaaaaaa", me, True, host=here)
    todo = cleanup.plan(
        [orphan, pooled, live, vol("v2", "ffffffffffff")], everything=True, host=here
    )
    assert [f.ident for f in todo.stop] == ["r1"]
    assert {f.ident for f in todo.remove} == {"r1", "live"}
    assert todo.signal_pools == ((me, "ffffffffffff"),)
    assert todo.kept == ()


def test_labels_that_are_not_ours_are_handled_as_unknown_owners() -> None:
    odd = Found("container", "odd", {"ciparity.managed": "1", "ciparity.owner": "???"}, True)
    todo = cleanup.plan([odd], host="box")
    assert todo.remove == ()
    assert todo.kept == ("run odd: 1 running container(s) left alone (owned by ???)",)


def test_execute_stops_before_removing_and_counts(fake_run: FakeRun) -> None:
    runner = box("r1", "eeeeeeeeeeee", 1, True, **{"ciparity.runners": "p"})
    todo = cleanup.Plan(remove=(runner, vol("v", "x")), stop=(runner,))
    assert cleanup.execute("docker", todo) == (1, 1, 0)
    assert fake_run.argvs == [
        ["docker", "stop", "r1"],
        ["docker", "rm", "-f", "-v", "r1"],
        ["docker", "volume", "rm", "-f", "v"],
    ]


def test_execute_signals_a_live_pool_and_sweeps_what_it_left(fake_run: FakeRun) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        todo = cleanup.Plan(signal_pools=((sleeper.pid, "ffffffffffff"),))
        cleanup.execute("docker", todo, pool_timeout=30)
        assert sleeper.wait(timeout=5) == -signal.SIGTERM
    finally:
        sleeper.kill()
        sleeper.wait()
    assert ["docker", "ps", "-aq", "--filter", "label=ciparity.run=ffffffffffff"] in fake_run.argvs


def test_a_removal_the_daemon_refuses_is_one_line(fake_run: FakeRun) -> None:
    fake_run.on("docker", "rm", returncode=1, stderr="Error: permission denied\n")
    todo = cleanup.Plan(remove=(box("c", "x", 1, False),))
    with pytest.raises(Exception) as info:
        cleanup.execute("docker", todo)
    assert str(info.value) == "docker rm failed: Error: permission denied"


def test_list_managed_reads_labels_and_state(fake_run: FakeRun) -> None:
    labels = {"ciparity.managed": "1", "ciparity.checkout": "/p q"}
    fake_run.on("docker", "ps", stdout="abc\n")
    fake_run.on("docker", "inspect", stdout=f"abc true {json.dumps(labels)}\n")
    found = container.list_managed("docker", "/p q")
    assert found == [Found("container", "abc", labels, True)]
    assert fake_run.argvs[0] == [
        "docker",
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        "label=ciparity.managed=1",
        "--filter",
        "label=ciparity.checkout=/p q",
    ]


def test_list_managed_with_the_engine_down_is_one_line(fake_run: FakeRun) -> None:
    fake_run.on("docker", "ps", returncode=1, stderr="Cannot connect to the Docker daemon\n")
    with pytest.raises(Exception) as info:
        container.list_managed("docker")
    assert str(info.value) == "docker: Cannot connect to the Docker daemon"


def test_clean_task_keeps_to_this_checkout(
    tmp_path: Path,
    fake_run: FakeRun,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from conftest import write_checkout
    from invoke.context import Context

    from ciparity import tasks

    root = write_checkout(tmp_path / "co")
    monkeypatch.chdir(root)
    fake_run.on("docker", "ps", stdout="c1\n")
    fake_run.on("docker", "inspect", stdout='c1 false {"ciparity.managed": "1"}\n')
    tasks.clean(Context())
    assert [
        "docker",
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        "label=ciparity.managed=1",
        "--filter",
        f"label=ciparity.checkout={root}",
    ] in fake_run.argvs
    assert ["docker", "rm", "-f", "-v", "c1"] in fake_run.argvs
    assert capsys.readouterr().out == "removed 1 containers, 0 volumes, 0 networks\n"
