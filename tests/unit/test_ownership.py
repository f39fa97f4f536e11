"""Run ownership: new runs, inherited runs, labels and liveness of the owning process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ciparity import container, ownership
from ciparity.ownership import Owner


def test_a_new_run_belongs_to_this_process_and_checkout(tmp_path: Path) -> None:
    owner = Owner.for_checkout(tmp_path, environ={})
    assert ownership.valid_run_id(owner.run)
    assert (owner.checkout, owner.host, owner.pid) == (
        str(tmp_path),
        socket.gethostname(),
        os.getpid(),
    )
    assert Owner.for_checkout(tmp_path, environ={}).run != owner.run


def test_a_nested_task_joins_the_outer_run(tmp_path: Path) -> None:
    outer = Owner("0123456789ab", "/home/me/project", "laptop", 4242)
    inner = Owner.for_checkout(tmp_path / "snapshot", environ=outer.env())
    assert inner == outer
    assert inner.labels() == {
        "ciparity.run": "0123456789ab",
        "ciparity.checkout": "/home/me/project",
        "ciparity.owner": "laptop:4242",
    }


@pytest.mark.parametrize(
    "env",
    [
        {"CIPARITY_RUN_ID": "not-hex", "CIPARITY_RUN_CHECKOUT": "/p", "CIPARITY_RUN_OWNER": "h:1"},
        {"CIPARITY_RUN_ID": "0123456789ab", "CIPARITY_RUN_OWNER": "h:1"},
        {
            "CIPARITY_RUN_ID": "0123456789ab",
            "CIPARITY_RUN_CHECKOUT": "/p",
            "CIPARITY_RUN_OWNER": "h",
        },
    ],
)
def test_malformed_inherited_variables_start_a_run_of_our_own(
    tmp_path: Path, env: dict[str, str]
) -> None:
    owner = Owner.for_checkout(tmp_path, environ=env)
    assert owner.checkout == str(tmp_path) and owner.pid == os.getpid()


def test_owner_alive_tells_live_dead_and_unknown() -> None:
    here = socket.gethostname()
    assert ownership.owner_alive(f"{here}:{os.getpid()}") is True
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    assert ownership.owner_alive(f"{here}:{done.stdout.strip()}") is False
    assert ownership.owner_alive(f"elsewhere-{here}:1") is None
    assert ownership.owner_alive("garbage") is None
    assert ownership.owner_alive("") is None


def test_every_container_of_a_run_carries_its_labels() -> None:
    owner = Owner("0123456789ab", "/p", "h", 7)
    spec = container.Spec(image="i", command=("true",), owner=owner, labels={"x": "1"})
    argv = container.create_argv(spec.with_name())
    labels = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--label"]
    assert labels == [
        "ciparity.managed=1",
        "ciparity.checkout=/p",
        "ciparity.owner=h:7",
        "ciparity.run=0123456789ab",
        "x=1",
    ]


def test_only_the_owning_process_sweeps_its_run(fake_run: object) -> None:
    from conftest import FakeRun

    assert isinstance(fake_run, FakeRun)
    mine = Owner("0123456789ab", "/p", socket.gethostname(), os.getpid())
    joined = Owner("0123456789ab", "/p", "outer-host", 1)
    assert container.remove_run("docker", joined) == (0, 0, 0)
    assert fake_run.calls == []
    container.remove_run("docker", mine)
    assert ["docker", "ps", "-aq", "--filter", "label=ciparity.run=0123456789ab"] in fake_run.argvs
