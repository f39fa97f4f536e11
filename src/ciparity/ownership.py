"""Who made a container, volume or network: the run, the checkout, the process that owns the run.

Every object a task creates carries three labels beside `ciparity.managed=1`:

- `ciparity.run`: one id per task run, shared by everything that run creates, including what its
  nested tasks create (a job's `invoke test` inside act-ci inherits the id through
  CIPARITY_RUN_* variables), so the run's clean-up removes exactly its own objects;
- `ciparity.checkout`: the checkout the run belongs to, so `invoke clean` keeps to its own;
- `ciparity.owner`: `host:pid` of the process that started the run, so `invoke clean` can tell a
  live run (leave it alone) from one whose process is gone (stale: remove it).

A run started by a process of another run, as a run of its own, carries a fourth:

- `ciparity.parent`: that outer run. The test check's tests start runs of their own (the
  integration tests' `invoke ci`, `act-ci`, `runners`), inside a container the check's run removes
  when it is interrupted; those runs' processes die with it, so the outer run's clean-up also sweeps
  every run whose parent it is (CIPARITY_OUTER_RUN, set in the check's environment, names it).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

RUN = "ciparity.run"
CHECKOUT = "ciparity.checkout"
OWNER = "ciparity.owner"
PARENT = "ciparity.parent"
# Inherited by nested tasks (set in a job's or a check's environment by the outer run).
ENV_RUN = "CIPARITY_RUN_ID"
ENV_CHECKOUT = "CIPARITY_RUN_CHECKOUT"
ENV_OWNER = "CIPARITY_RUN_OWNER"
ENV_PARENT = "CIPARITY_RUN_PARENT"  # the joined run's own parent, if it has one
# Set by a run in what it starts: a task started there with no CIPARITY_RUN_* to join makes a run
# of its own, whose parent is this one.
ENV_OUTER = "CIPARITY_OUTER_RUN"
_RUN_ID = re.compile(r"^[0-9a-f]{12}$")
_OWNER = re.compile(r"^(?P<host>[^:\s]+):(?P<pid>[1-9][0-9]*)$")


def valid_run_id(value: str) -> bool:
    """True for a run id of the form this module makes (12 lowercase hex digits)."""
    return bool(_RUN_ID.match(value))


@dataclass(frozen=True)
class Owner:
    """The run that objects belong to."""

    run: str
    checkout: str
    host: str
    pid: int
    parent: str = ""  # the run whose process started this one, as a run of its own

    @classmethod
    def for_checkout(cls, root: Path, environ: Mapping[str, str] | None = None) -> Owner:
        """This process's run: inherited from an outer run's variables, else a new one."""
        env = os.environ if environ is None else environ
        run = env.get(ENV_RUN, "")
        owner = _OWNER.match(env.get(ENV_OWNER, ""))
        if valid_run_id(run) and owner and env.get(ENV_CHECKOUT):
            parent = env.get(ENV_PARENT, "")
            return cls(
                run,
                env[ENV_CHECKOUT],
                owner["host"],
                int(owner["pid"]),
                parent if valid_run_id(parent) else "",
            )
        outer = env.get(ENV_OUTER, "")
        return cls(
            secrets.token_hex(6),
            str(root),
            socket.gethostname(),
            os.getpid(),
            outer if valid_run_id(outer) else "",
        )

    def labels(self) -> dict[str, str]:
        """The labels every object of this run carries."""
        labels = {RUN: self.run, CHECKOUT: self.checkout, OWNER: f"{self.host}:{self.pid}"}
        return {**labels, PARENT: self.parent} if self.parent else labels

    def env(self) -> dict[str, str]:
        """The variables that make a nested task join this run."""
        env = {ENV_RUN: self.run, ENV_CHECKOUT: self.checkout, ENV_OWNER: f"{self.host}:{self.pid}"}
        return {**env, ENV_PARENT: self.parent} if self.parent else env

    def outer_env(self) -> dict[str, str]:
        """The variable that makes a task started with none of `env` a run whose parent is this
        one (the test check's tests: their runs go with this run's clean-up)."""
        return {ENV_OUTER: self.run}


def owner_alive(label: str, here: str | None = None) -> bool | None:
    """Whether the process named by an `ciparity.owner` label still runs: None when it cannot be
    told from here (another host, or no such label)."""
    found = _OWNER.match(label or "")
    if not found or found["host"] != (here or socket.gethostname()):
        return None
    try:
        os.kill(int(found["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
