"""Runs started inside another run as runs of their own (a test session's `invoke ci`, `act-ci`,
`runners`) record that outer run as their parent, and the outer run's clean-up sweeps them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from conftest import FakeRun

from ciparity import checks, container, ownership, tasks
from ciparity.config import load
from ciparity.errors import DockerError, Interrupted
from ciparity.ownership import Owner

OUTER = "0123456789ab"


def test_a_run_started_under_an_outer_run_is_its_child(tmp_path: Path) -> None:
    child = Owner.for_checkout(tmp_path, environ={ownership.ENV_OUTER: OUTER})
    assert child.run != OUTER and child.pid == os.getpid()
    assert child.parent == OUTER
    assert child.labels()["ciparity.parent"] == OUTER
    # A task that joins the child's run (a job's `invoke test`) carries the same parent.
    assert Owner.for_checkout(tmp_path / "job", environ=child.env()) == child


def test_a_run_of_its_own_has_no_parent_label_and_a_bad_one_is_ignored(tmp_path: Path) -> None:
    plain = Owner.for_checkout(tmp_path, environ={})
    assert plain.parent == "" and "ciparity.parent" not in plain.labels()
    assert ownership.ENV_PARENT not in plain.env()
    odd = Owner.for_checkout(tmp_path, environ={ownership.ENV_OUTER: "../../x"})
    assert odd.parent == ""


def test_the_test_check_makes_its_tests_runs_children_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    (tmp_path / ".python-version").write_text("3.12\n", encoding="utf-8")
    # Inherited from an outer session: the check's own value must be the one the container gets.
    monkeypatch.setenv(ownership.ENV_OUTER, "ffffffffffff")
    config = load(tmp_path)
    spec = checks.spec("test", config, "bind")
    assert spec.env[ownership.ENV_OUTER] == config.run.run
    assert ownership.ENV_OUTER not in spec.pass_env
    argv = container.create_argv(spec.with_name())
    assert argv.count(f"{ownership.ENV_OUTER}={config.run.run}") == 1
    assert "ciparity.parent=ffffffffffff" in argv


def test_the_sweep_follows_children_and_grandchildren(fake_run: FakeRun) -> None:
    child, grandchild = "bbbbbbbbbbbb", "cccccccccccc"
    listing = ["ps", "-a", "--filter"]
    fake_run.on("docker", *listing, f"label=ciparity.parent={OUTER}", stdout=f"c1 {child}\n")
    fake_run.on("docker", *listing, f"label=ciparity.parent={child}", stdout=f"c2 {grandchild}\n")
    fake_run.on(
        "docker", "volume", "ls", "--filter", f"label=ciparity.parent={child}", stdout="v1 \n"
    )
    fake_run.on("docker", "ps", "-aq", "--filter", f"label=ciparity.run={grandchild}", stdout="c3")
    assert container.sweep("docker", OUTER) == (3, 1, 0)
    removed = [argv[4:] for argv in fake_run.argvs if argv[1:4] == ["rm", "-f", "-v"]]
    assert removed == [["c1"], ["c2"], ["c3"]]
    assert ["docker", "volume", "rm", "-f", "v1"] in fake_run.argvs
    swept = [a[-1] for a in fake_run.argvs if a[1:4] == ["ps", "-aq", "--filter"]]
    assert swept == [f"label=ciparity.run={r}" for r in (OUTER, child, grandchild)]


def test_the_sweep_with_the_engine_down_is_one_line(fake_run: FakeRun) -> None:
    fake_run.on("docker", "ps", "-a", returncode=1, stderr="Cannot connect to the Docker daemon\n")
    with pytest.raises(DockerError) as info:
        container.sweep("docker", OUTER)
    assert str(info.value) == "docker: Cannot connect to the Docker daemon"


def _mine() -> Owner:
    return Owner(OUTER, "/p", socket.gethostname(), os.getpid())


def test_an_interrupted_check_task_still_sweeps_its_children(fake_run: FakeRun) -> None:
    config = type("C", (), {"docker": "docker", "run": _mine()})()
    with pytest.raises(Interrupted):
        with tasks._sweeping(config):  # type: ignore[arg-type]
            raise Interrupted(2)
    assert [
        "docker",
        "ps",
        "-a",
        "--filter",
        f"label=ciparity.parent={OUTER}",
        "--format",
        '{{.ID}} {{.Label "ciparity.run"}}',
    ] in fake_run.argvs


def test_a_failing_sweep_does_not_hide_why_the_task_ended(fake_run: FakeRun) -> None:
    fake_run.on("docker", "ps", returncode=1, stderr="Cannot connect to the Docker daemon\n")
    config = type("C", (), {"docker": "docker", "run": _mine()})()
    with pytest.raises(Interrupted):
        with tasks._sweeping(config):  # type: ignore[arg-type]
            raise Interrupted(15)
    with pytest.raises(DockerError):
        with tasks._sweeping(config):  # type: ignore[arg-type]
            pass
