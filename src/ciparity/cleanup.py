"""`invoke clean`: remove what runs of this checkout left behind, and nothing else.

A run removes its own objects when it ends (success, failure, Ctrl-C, SIGTERM); this is for what a
killed run (SIGKILL, a crash, a reboot of the engine) could not. By default only this checkout's
objects are considered, and of those only what no live run still uses: a running container whose
owning process is alive belongs to a run in progress, and a running self-hosted runner pool is
never stopped here. `--all` is the engine-wide form; it still stops runners gracefully (each
deregisters), through its pool's own process where that process is alive.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ciparity import container, ownership, proc
from ciparity.container import Found
from ciparity.errors import DockerError
from ciparity.selfhosted import POOL  # the label `invoke runners` puts on its replicas

# How long a live pool's process gets to stop its runners (each one deregisters first).
POOL_TIMEOUT = 180.0


@dataclass(frozen=True)
class Plan:
    """What `invoke clean` will do."""

    remove: tuple[Found, ...] = ()
    stop: tuple[Found, ...] = ()  # runner containers to stop gracefully before removal
    # (pid, run) of live `invoke runners` processes: SIGTERM makes each stop its pool itself.
    signal_pools: tuple[tuple[int, str], ...] = ()
    kept: tuple[str, ...] = ()  # one line per run or pool left alone, with the way to stop it


def _owner_pid(item: Found) -> int:
    label = item.labels.get(ownership.OWNER, "")
    return int(label.rpartition(":")[2]) if label.rpartition(":")[2].isdigit() else 0


def _shown(value: str, fallback: str) -> str:
    """A label value for a message: as it is when it has our form, else quoted (a value that is
    not ours may hold a newline or a terminal escape; each message stays one line)."""
    if ownership.valid_run_id(value) or (value.isprintable() and len(value) <= 80 and value):
        return value if value else fallback
    return repr(value[:80]) if value else fallback


def is_pool_process(pid: int) -> bool:
    """Whether `pid` is an `invoke runners` process: a pool's owner label is only a claim, and
    `--all` signals that process, never one a label that is not ours happens to name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [os.path.basename(a.decode(errors="replace")) for a in argv if a]
    return "runners" in words and any(w == "invoke" or w.startswith("invoke.") for w in words)


def plan(found: Sequence[Found], everything: bool = False, host: str | None = None) -> Plan:
    """Decide, from the labelled objects, what to remove, stop or keep."""
    host = host or socket.gethostname()
    remove: list[Found] = []
    stop: list[Found] = []
    pools: dict[tuple[int, str], None] = {}
    kept_runs: dict[str, list[Found]] = defaultdict(list)
    kept_pools: dict[str, list[Found]] = defaultdict(list)
    for item in (f for f in found if f.kind == "container"):
        alive = ownership.owner_alive(item.labels.get(ownership.OWNER, ""), host)
        pool = item.labels.get(POOL)
        if pool and item.running:
            if not everything:
                kept_pools[pool].append(item)
            elif alive and item.run and is_pool_process(_owner_pid(item)):
                pools[(_owner_pid(item), item.run)] = None  # its process stops them all
            else:
                stop.append(item)
                remove.append(item)
        elif item.running and alive is not False and not everything:
            kept_runs[item.run or item.ident[:12]].append(item)
        else:
            remove.append(item)
    busy = {item.run for items in (*kept_runs.values(), *kept_pools.values()) for item in items}
    busy |= {run for _, run in pools}
    remove += [f for f in found if f.kind != "container" and not (f.run and f.run in busy)]
    kept = [
        f"runner pool {_shown(pool, '?')}: {len(items)} running runner(s) left alone; stop them"
        " with Ctrl-C where `invoke runners` runs, or `invoke clean --all` (stops them"
        " gracefully)"
        for pool, items in kept_pools.items()
    ]
    for run, items in kept_runs.items():
        owner = _shown(items[0].labels.get(ownership.OWNER, ""), "an unknown process")
        kept.append(
            f"run {_shown(run, '?')}: {len(items)} running container(s) left alone"
            f" (owned by {owner})"
        )
    return Plan(tuple(remove), tuple(stop), tuple(pools), tuple(kept))


def _wait_exit(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)


def execute(docker: str, todo: Plan, pool_timeout: float = POOL_TIMEOUT) -> tuple[int, int, int]:
    """Carry out `todo`; counts of removed containers, volumes and networks."""
    counts = [0, 0, 0]
    for pid, run in todo.signal_pools:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        # The pool's process stops (each runner deregisters) and removes its replicas; whatever
        # is left after it ended, or after the deadline, goes with the rest of its run.
        _wait_exit(pid, time.monotonic() + pool_timeout)
        left = container.remove_managed(docker, f"{ownership.RUN}={run}")
        counts = [a + b for a, b in zip(counts, left)]
    if todo.stop:
        # `docker stop` honours each runner's own --stop-timeout: time to deregister.
        proc.run([docker, "stop", *(f.ident for f in todo.stop)])
    for index, (kind, removal) in enumerate(
        (
            ("container", ["rm", "-f", "-v"]),
            ("volume", ["volume", "rm", "-f"]),
            ("network", ["network", "rm"]),
        )
    ):
        ids = [f.ident for f in todo.remove if f.kind == kind]
        if ids:
            result = proc.run([docker, *removal, *ids])
            if not result.ok and "No such" not in result.stderr:
                raise DockerError(f"docker {removal[0]} failed: {proc.reason(result.stderr)}")
        counts[index] += len(ids)
    return counts[0], counts[1], counts[2]
