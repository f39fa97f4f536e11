"""`invoke bench`: the numbers the project promises, measured on this machine, as a Markdown table.

- cold build: build cache and CI image removed first (the base image stays);
- warm build: the same build again;
- one-file rebuild: a copy of the checkout with one line added under src/ (the checkout itself is
  never edited), with the dependency stages' cache-hit rate;
- warm `invoke ci --markers "not docker"` against the same checks run natively in this venv;
- the CI image's size.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import statistics

# Argv lists only.
import subprocess  # nosec B404
import sys
import tempfile
import time
import zlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from ciparity import checks, console, images, proc
from ciparity.config import Config
from ciparity.console import markdown_table
from ciparity.errors import CiparityError

DEPENDENCY_STAGES = ("system", "deps")
BENCH_MARKERS = "not docker"
ROUNDS = 3
ACT_PHASES = ("Set up job", "Complete job")


def _build(config: Config, offline: bool) -> images.BuildReport:
    return images.build(
        config, config.root / "docker" / "Dockerfile.ci", "ci", config.image, offline, io.StringIO()
    )


def _copy_with_edit(config: Config, dest: Path) -> Path:
    """A copy of the checkout with one line appended to a file under src/."""
    ignore = shutil.ignore_patterns(".git", ".venv", "reports", "__pycache__", ".mypy_cache")
    shutil.copytree(config.root, dest, ignore=ignore, symlinks=True)
    targets = sorted((dest / config.src_dirs[0]).rglob("*.py"))
    if not targets:
        raise CiparityError(f"no Python file under {config.src_dirs[0]}/ to touch")
    with targets[0].open("a", encoding="utf-8") as handle:
        handle.write(f"# bench {time.time()}\n")
    return targets[0]


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    started = time.monotonic()
    # Argv list.
    code = subprocess.call(  # nosec B603
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.monotonic() - started, code


def run(config: Config, output: Path) -> list[tuple[str, str]]:
    """Measure, write the Markdown table to `output`, and return its rows."""
    phase = console.Phases()
    phase("base image and wheelhouse")
    base = images.ensure_base(config)
    offline = images.offline(config, base)
    if offline:
        images.fill_wheelhouse(config)
    rows: list[tuple[str, str]] = []

    phase("cold build: image removed, build cache pruned")
    proc.run([config.docker, "image", "rm", "-f", config.image])
    proc.run([config.docker, "builder", "prune", "-af"])
    cold = _build(config, offline)
    rows.append(("cold `invoke build` (no build cache)", f"{cold.seconds:.1f} s"))
    phase("warm build")
    warm = _build(config, offline)
    rows.append(("warm `invoke build`", f"{warm.seconds:.1f} s ({warm.hit_rate:.0%} cached)"))

    phase("rebuild after editing one source file (in a copy of the checkout)")
    with tempfile.TemporaryDirectory(prefix="ciparity-bench-") as tmp:
        copy = Path(tmp) / "checkout"
        touched = _copy_with_edit(config, copy)
        edited = _build(dataclasses.replace(config, root=copy), offline)
    dep = [edited.per_stage().get(s, (0, 0)) for s in DEPENDENCY_STAGES]
    dep_cached, dep_total = sum(c for c, _ in dep), sum(t for _, t in dep)
    rows.append(
        (
            f"rebuild after editing {touched.relative_to(copy)}",
            f"{edited.seconds:.1f} s; dependency layers {dep_cached}/{dep_total} cached",
        )
    )

    env = {**os.environ, "CIPARITY_DEBUG": ""}
    ci_argv = [sys.executable, "-m", "invoke", "ci", "--markers", BENCH_MARKERS]
    native_env = {**env, **checks.CHECK_ENV, "HOME": tempfile.gettempdir()}
    # The venv's tools (black, mypy, ...) must be on PATH, as they are in the image.
    native_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    native_env["CIPARITY_MARKERS"] = BENCH_MARKERS
    native_env["CIPARITY_REPORTS"] = tempfile.mkdtemp(prefix="ciparity-bench-reports-")
    in_docker_runs: list[float] = []
    native_runs: list[float] = []
    codes: set[int] = set()
    # One warm-up round, then interleaved rounds so machine noise hits both sides alike.
    for round_no in range(ROUNDS + 1):
        phase(
            f"round {round_no}/{ROUNDS}: `invoke ci` then the same checks natively"
            + (" (warm-up)" if not round_no else "")
        )
        seconds, code = _timed(ci_argv, config.root, env)
        codes.add(code)
        native_seconds = 0.0
        for name in checks.CHECKS:
            step, native_code = _timed(
                [sys.executable, "-m", "ciparity.checks", name], config.root, native_env
            )
            native_seconds += step
            codes.add(native_code)
        if round_no:
            in_docker_runs.append(seconds)
            native_runs.append(native_seconds)
    shutil.rmtree(native_env["CIPARITY_REPORTS"], ignore_errors=True)
    in_docker, native = statistics.median(in_docker_runs), statistics.median(native_runs)
    ratio = in_docker / native if native else 0.0
    spread = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(in_docker_runs, native_runs))
    rows.append(
        (f"warm `invoke ci --markers '{BENCH_MARKERS}'`, median of {ROUNDS}", f"{in_docker:.1f} s")
    )
    rows.append((f"same checks natively in the host venv, median of {ROUNDS}", f"{native:.1f} s"))
    rows.append(("runs (containerized/native)", f"{spread}; exit codes {sorted(codes)}"))
    rows.append(("ratio containerized / native", f"{ratio:.2f}x"))
    size = images.image_size(config.docker, config.image)
    rows.append((f"{config.image} size", f"{size / 1e6:.0f} MB"))

    output.parent.mkdir(parents=True, exist_ok=True)
    text = f"# ciparity bench ({base.kind} base {base.ref})\n\n"
    output.write_text(text + markdown_table(("measure", "value"), rows), encoding="utf-8")
    return rows


def job_overheads(log_lines: list[str]) -> dict[str, float]:
    """Seconds each job spent in act's own phases, "Set up job" (container start, workspace
    chown) and "Complete job" (teardown), from act's JSON log (1 s resolution)."""
    spans: dict[tuple[str, str], list[datetime]] = {}
    for line in log_lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("step") not in ACT_PHASES:
            continue
        when = datetime.fromisoformat(str(entry.get("time")))
        spans.setdefault((str(entry.get("jobID")), str(entry["step"])), []).append(when)
    overheads: dict[str, float] = {}
    for (job, _), times in spans.items():
        overheads[job] = overheads.get(job, 0.0) + (max(times) - min(times)).total_seconds()
    return overheads


def run_act(config: Config, output: Path) -> list[tuple[str, str]]:
    """Warm `invoke act-ci` against warm `invoke ci`, act's overhead per job, the runner image."""
    phase = console.Phases()
    env = {**os.environ, "CIPARITY_DEBUG": ""}
    invoke = [sys.executable, "-m", "invoke"]
    for task in ("act-ci", "ci"):  # warm-up: images built, caches filled
        phase(f"warm-up: `invoke {task}`")
        _timed([*invoke, task], config.root, env)
    phase("warm `invoke act-ci`")
    act_seconds, act_code = _timed([*invoke, "act-ci"], config.root, env)
    log = (config.reports_dir / "act" / "act.log.jsonl").read_text(encoding="utf-8").splitlines()
    phase("warm `invoke ci`")
    ci_seconds, ci_code = _timed([*invoke, "ci"], config.root, env)
    phase("runner image size, setup-python step times")
    overheads = job_overheads(log)
    rows = [
        (f"warm `invoke act-ci` (exit {act_code})", f"{act_seconds:.1f} s"),
        (f"warm `invoke ci` (exit {ci_code})", f"{ci_seconds:.1f} s"),
        ("ratio act-ci / ci", f"{act_seconds / ci_seconds:.2f}x" if ci_seconds else "-"),
        (
            "act overhead per job (its set-up and complete phases), median",
            f"{statistics.median(overheads.values()):.1f} s" if overheads else "-",
        ),
        ("per job", ", ".join(f"{j} {s:.1f} s" for j, s in sorted(overheads.items()))),
        (
            f"{config.runner_image} size (`docker image inspect`, `docker save | gzip`)",
            f"{images.image_size(config.docker, config.runner_image) / 1e6:.0f} MB,"
            f" {saved_gzip_bytes(config.docker, config.runner_image) / 1e6:.0f} MB",
        ),
        *setup_python_rows(config),
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("# ciparity bench: act-ci\n\n" + markdown_table(("measure", "value"), rows))
    return rows


def saved_gzip_bytes(docker: str, ref: str) -> int:
    """Bytes of `docker save REF | gzip` (default level), streamed: what a registry push or a
    tarball hand-over moves."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip framing
    total = 0
    # Argv list.
    with subprocess.Popen([docker, "save", ref], stdout=subprocess.PIPE) as save:  # nosec B603
        assert save.stdout is not None  # nosec B101 - PIPE was asked for
        for chunk in iter(lambda: save.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
            total += len(packer.compress(chunk))
    if save.returncode:
        raise CiparityError(f"docker save {ref} failed (exit {save.returncode})")
    return total + len(packer.flush())


REAL_FIXTURE = Path("tests") / "fixtures" / "real_python"
SETUP_PYTHON = "actions/setup-python@v5"
# The fixture's steps that the native run repeats; the job's other steps are GitHub's plumbing.
WORK_STEPS = ("install", "test")
# act's floor per job: the fixture's workflow reduced to one step that does nothing.
EMPTY_JOB = """name: real-python
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: "true"
"""


# A CPU-bound loop, timed by itself: run on the host and in a runner-image container at the same
# moment, it shows how much CPU containers get against host processes on this engine right now.
CPU_PROBE = (
    "import time; s = time.perf_counter(); sum(i * i for i in range(2_000_000));"
    " print(time.perf_counter() - s)"
)


def cpu_probe(config: Config) -> tuple[float, float]:
    """Seconds of the same CPU-bound loop on the host and in a job container (runner image)."""
    # Argv list.
    host = subprocess.run(  # nosec B603
        [sys.executable, "-c", CPU_PROBE], capture_output=True, text=True, check=True
    )
    argv = [config.docker, "run", "--rm", "--label", "ciparity.managed=1", "--network", "none"]
    inside = proc.run([*argv, "--entrypoint", "python3", config.runner_image, "-c", CPU_PROBE])
    if not inside.ok:
        raise CiparityError(f"the CPU probe failed in {config.runner_image}: {inside.stderr}")
    return float(host.stdout), float(inside.stdout)


def _log_entries(log: Path) -> list[dict[str, object]]:
    entries = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def step_times(log: Path) -> list[tuple[str, str, float]]:
    """(stage, step, seconds) of every step act finished, in order, from its JSON log."""
    return [
        (str(e.get("stage")), str(e.get("step")), float(str(e.get("executionTime", 0))) / 1e9)
        for e in _log_entries(log)
        if e.get("stepResult") and e.get("stage") in ("Pre", "Main", "Post")
    ]


def _step_seconds(log: Path, step: str, stage: str = "Main") -> float | None:
    """act's own duration of one step (its first run), from its JSON log."""
    for at, name, seconds in step_times(log):
        if name == step and at == stage:
            return seconds
    return None


def saved_cache_sizes(log: Path) -> list[str]:
    """What the cache-saving post steps said they saved ("~0 MB (210 B)"), in order."""
    return [
        str(e["msg"]).split("Cache Size:", 1)[1].strip()
        for e in _log_entries(log)
        if e.get("stage") == "Post" and "Cache Size:" in str(e.get("msg", ""))
    ]


def real_action_trees(source: Path, dest: Path) -> dict[str, Path]:
    """setup-python@v5 and cache@v4 trees from a copy of bare mirrors (../shared/actions)."""
    mirror = dest / "mirror"
    shutil.copytree(source, mirror)
    trees = {}
    for repo, ref in (("actions/setup-python", "v5"), ("actions/cache", "v4")):
        git_dir = mirror / f"{repo}.git"
        git_dir.chmod(0o755)
        (git_dir / "refs" / "tags").mkdir(parents=True, exist_ok=True)
        tree = dest / f"{repo.replace('/', '__')}@{ref}"
        tree.mkdir()
        archive = proc.run(["git", "--git-dir", str(git_dir), "archive", "-o", f"{tree}.tar", ref])
        if not archive.ok:
            raise CiparityError(f"{git_dir}: no {ref}: {proc.reason(archive.stderr)}")
        proc.run(["tar", "-xf", f"{tree}.tar", "-C", str(tree)], check=True)
        trees[f"{repo}@{ref}"] = tree
    return trees


@dataclasses.dataclass(frozen=True)
class JobRun:
    """One `invoke act-ci --job test` on the fixture: wall seconds, exit code, act's log."""

    seconds: float
    code: int
    steps: list[tuple[str, str, float]]
    saved: list[str]

    def work(self) -> float:
        """Seconds of the steps the native run repeats (pip and pytest)."""
        return sum(s for stage, name, s in self.steps if stage == "Main" and name in WORK_STEPS)

    def slowest(self, count: int = 4) -> str:
        """The other steps taking longest, as `stage step seconds` text."""
        others = [t for t in self.steps if t[1] not in WORK_STEPS]
        top = sorted(others, key=lambda t: -t[2])[:count]
        return ", ".join(f"{stage} {name} {s:.1f}" for stage, name, s in top)


def _act_job(repo: Path, text: str, name: str, env: dict[str, str]) -> JobRun:
    (repo / ".github" / "workflows" / "ci.yml").write_text(text, encoding="utf-8")
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", name]):
        proc.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *argv], cwd=repo)
    invoke = [sys.executable, "-m", "invoke", "act-ci", "--job", "test"]
    seconds, code = _timed(invoke, repo, env)
    log = repo / "reports" / "act" / "act.log.jsonl"
    if not log.is_file():
        return JobRun(seconds, code, [], [])
    return JobRun(seconds, code, step_times(log), saved_cache_sizes(log))


def shared_actions_source(config: Config, environ: Mapping[str, str]) -> Path:
    """The bare mirrors of the published actions: CIPARITY_SHARED_ACTIONS, else the copy
    .ci/setup keeps in reports/.shared-actions, else ../shared/actions beside the checkout."""
    if environ.get("CIPARITY_SHARED_ACTIONS"):
        return Path(environ["CIPARITY_SHARED_ACTIONS"])
    copy = config.reports_dir / ".shared-actions"
    return copy if copy.is_dir() else config.root.parent / "shared" / "actions"


def setup_python_rows(config: Config) -> list[tuple[str, str]]:
    """The real setup-python@v5 step under act-ci on the ordinary fixture workflow: a tool-cache
    lookup alone, then with `cache: pip` cold (empty cache) and warm (restored); the whole test
    job cold and warm, each followed by the same steps natively with pip's cache in the same
    state (empty, then what the first native run left), and act's floor on a one-step job."""
    source = shared_actions_source(config, os.environ)
    fixture = config.root / REAL_FIXTURE
    if not source.is_dir() or not fixture.is_dir():
        return [("setup-python step", f"not measured: no real actions at {source}")]
    work = config.reports_dir / ".bench-act"
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    runs: dict[str, JobRun] = {}
    natives: dict[str, tuple[dict[str, float], int]] = {}
    probes: list[tuple[float, float]] = []
    try:
        trees = real_action_trees(source, work / "actions")
        repo = work / "real_python"
        shutil.copytree(fixture, repo)
        lines = [f"-P ubuntu-latest={config.runner_image}", "--pull=false"]
        lines += ["--action-offline-mode"]
        lines += [f"--local-repository {key}={tree}" for key, tree in trees.items()]
        (repo / ".actrc").write_text("\n".join(lines) + "\n", encoding="utf-8")
        with_cache = (repo / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
        env = {**os.environ, "CIPARITY_DEBUG": "", "XDG_CACHE_HOME": str(work / "xdg")}
        env["CIPARITY_RUNNER_IMAGE"] = config.runner_image
        # The actions come from .actrc: no probe of GitHub for the (empty) action mirror.
        env["CIPARITY_OFFLINE"] = "on"
        pip_cache = work / "native-pip-cache"
        for name, text in (
            ("empty", EMPTY_JOB),
            ("tool-cache lookup only (no `cache:`)", with_cache.replace("cache: pip", "")),
            ("cold", with_cache),
            ("warm", with_cache),
        ):
            runs[name] = _act_job(repo, text, name, env)
            if name in ("cold", "warm"):  # the same steps natively, pip's cache alike
                natives[name] = _native_job(fixture, work / f"native-{name}", pip_cache)
                probes.append(cpu_probe(config))
                label = f"with `cache: pip`, {name}" + (" (restored)" if name == "warm" else "")
            elif name == "empty":
                continue
            else:
                label = name
            run = runs[name]
            step = next((s for st, n, s in run.steps if n == SETUP_PYTHON and st == "Main"), None)
            value = f"{step:.1f} s" if step is not None else "-"
            rows.append((f"setup-python@v5 step, {label} (act-ci exit {run.code})", value))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows + _job_rows(config, runs, natives, probes)


def _job_rows(
    config: Config,
    runs: dict[str, JobRun],
    natives: dict[str, tuple[dict[str, float], int]],
    probes: list[tuple[float, float]],
) -> list[tuple[str, str]]:
    cold, warm, empty = runs["cold"], runs["warm"], runs["empty"]
    native = {name: sum(parts.values()) for name, (parts, _) in natives.items()}
    native_work = {name: parts["pip"] + parts["pytest"] for name, (parts, _) in natives.items()}
    codes = sorted({code for _, code in natives.values()})
    driver = proc.run([config.docker, "info", "--format", "{{.Driver}}"]).stdout.strip()
    return [
        (
            f"act-ci on a one-step job (`run: true`; exit {empty.code}): act's floor",
            f"{empty.seconds:.1f} s",
        ),
        (
            "ordinary workflow's test job, `invoke act-ci`, cold / warm",
            f"{cold.seconds:.1f} s / {warm.seconds:.1f} s",
        ),
        (
            "  its `install` + `test` steps (act's step times), cold / warm",
            f"{cold.work():.1f} s / {warm.work():.1f} s",
        ),
        (
            "  the rest (job container, checkout, setup-python, cache, artifacts, post steps)",
            f"{cold.seconds - cold.work():.1f} s / {warm.seconds - warm.work():.1f} s",
        ),
        ("  slowest other steps, warm (s)", warm.slowest()),
        (
            "  pip cache setup-python saved, cold / warm run",
            f"{' + '.join(cold.saved) or '-'} / {' + '.join(warm.saved) or '-'}",
        ),
        (
            "the same steps natively (venv, pip upgrade, pip install -e . pytest, pytest;"
            f" exit {codes}), pip cache empty / as the first run left it",
            f"{native['cold']:.1f} s / {native['warm']:.1f} s"
            f" (pip + pytest {native_work['cold']:.1f} s / {native_work['warm']:.1f} s)",
        ),
        (
            "ratio act-ci / native, warm (cold)",
            f"{warm.seconds / native['warm']:.2f}x ({cold.seconds / native['cold']:.2f}x)",
        ),
        (
            "ratio of the `install` + `test` steps alone / native pip + pytest, warm (cold)",
            f"{warm.work() / native_work['warm']:.2f}x ({cold.work() / native_work['cold']:.2f}x)",
        ),
        ("docker storage driver (the job container's file system)", driver or "-"),
        (
            "the same CPU-bound loop on the host / in a job container, after the cold and"
            " the warm pair (containers' share of the CPU against host processes)",
            ", ".join(f"{host:.2f} s / {inside:.2f} s" for host, inside in probes),
        ),
        ("host load average (1 min) at the end", f"{os.getloadavg()[0]:.1f}"),
    ]


def _quiet(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call(  # nosec B603
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _native_job(fixture: Path, dest: Path, pip_cache: Path) -> tuple[dict[str, float], int]:
    """The ordinary workflow's test job run natively on this host: a fresh venv of this Python,
    the job's two pip steps, pytest; pip's cache is `pip_cache` (empty on the first call, as the
    job's is on its cold run; what the first call left on the next, as the job's warm run).
    Seconds per part (venv, pip, pytest) and the worst exit code."""
    shutil.copytree(fixture, dest)
    python = dest / ".venv" / "bin" / "python"
    env = {**os.environ, "PIP_CACHE_DIR": str(pip_cache)}
    parts: dict[str, float] = {}
    codes = []
    for part, argv in (
        ("venv", [sys.executable, "-m", "venv", str(dest / ".venv")]),
        ("pip", [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"]),
        ("pip", [str(python), "-m", "pip", "install", "-q", "-e", ".", "pytest"]),
        ("pytest", [str(python), "-m", "pytest", "-q"]),
    ):
        started = time.monotonic()
        # Argv list.
        codes.append(_quiet(argv, dest, env))
        parts[part] = parts.get(part, 0.0) + time.monotonic() - started
    return parts, max(codes)


RUNNER_ROUNDS = 5
BENCH_PAT = "ghp_bench0000000000000000000000"
FAKE_PATH = "/home/runner/fake_github.py"  # in the fake's container (the self-hosted image)
APP_KEY_PATH = "/home/runner/app.pem"
APP_ID = "4242"
# The fake's installation tokens live this long; the App runner idles past it before its stop.
APP_TOKEN_TTL = 3.0


def _app_key(folder: Path) -> tuple[str, Path]:
    """A throwaway GitHub App key pair: the private PEM, and a file with the public one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = folder / "app.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _runner_round(
    config: Config, fake: str, index: int, app_key: str = "", idle: float = 0.0
) -> tuple[float, float]:
    """One self-hosted runner: seconds from `docker run` to the agent's listener started, and
    from SIGTERM (`docker stop`) to deregistered and exited. With `app_key` it authenticates as
    the GitHub App and idles `idle` seconds (past its installation token's life) first."""
    name = f"{fake}-r{index}"
    argv = [config.docker, "run", "-d", "--name", name, "--label", "ciparity.managed=1"]
    argv += ["--network", f"container:{fake}", "--stop-timeout", "130"]
    argv += ["-e", "CIPARITY_RUNNER_URL=http://127.0.0.1:8080/bench/repo"]
    # By name: the values stay off the command line.
    if app_key:
        argv += ["-e", f"CIPARITY_RUNNER_APP_ID={APP_ID}", "-e", "CIPARITY_RUNNER_APP_PRIVATE_KEY"]
    else:
        argv += ["-e", "CIPARITY_RUNNER_PAT"]
    env = {
        **os.environ,
        "CIPARITY_RUNNER_PAT": BENCH_PAT,
        "CIPARITY_RUNNER_APP_PRIVATE_KEY": app_key,
    }
    try:
        started = time.time()
        proc.run([*argv, config.self_hosted_image], check=True, env=env)
        record = "/home/runner/_diag/standin-calls.jsonl"
        deadline = time.monotonic() + 60
        run_at = None
        while run_at is None and time.monotonic() < deadline:
            found = proc.run([config.docker, "exec", name, "cat", record])
            for line in found.stdout.splitlines() if found.ok else []:
                call = json.loads(line)
                if call["script"] == "Runner.Listener":
                    run_at = datetime.fromisoformat(call["time"]).timestamp()
            time.sleep(0.02)
        if run_at is None:
            raise CiparityError(f"the agent's listener never started in {name}")
        while time.time() < run_at + idle:  # the scenario itself: idle past the token's life
            time.sleep(0.1)
        stopping = time.monotonic()
        proc.run([config.docker, "stop", "-t", "130", name], check=True)
        stopped = time.monotonic() - stopping
        code = proc.run([config.docker, "inspect", "--format", "{{.State.ExitCode}}", name])
        if code.stdout.strip() != "0":
            raise CiparityError(f"{name} exited with {code.stdout.strip()} after the stop")
        return run_at - started, stopped
    finally:
        proc.run([config.docker, "rm", "-f", name])


def run_runner(config: Config, output: Path) -> list[tuple[str, str]]:
    """The self-hosted image against the fake GitHub API: start-up, stop, size."""
    script = config.root / "tests" / "fixtures" / "fake_github.py"
    if not script.is_file():
        raise CiparityError(f"bench --runner needs the fake GitHub API at {script}")
    phase = console.Phases()
    phase("the fake GitHub API")
    fake = f"ciparity-bench-fake-{os.getpid()}"
    image = config.self_hosted_image
    argv = [config.docker, "create", "--name", fake, "--label", "ciparity.managed=1"]
    argv += ["--entrypoint", "python3", image, FAKE_PATH, "--port", "8080"]
    argv += ["--pat", BENCH_PAT, "--app-id", APP_ID, "--app-public-key", APP_KEY_PATH]
    argv += ["--app-token-ttl", str(APP_TOKEN_TTL)]
    with tempfile.TemporaryDirectory() as folder:
        app_key, public = _app_key(Path(folder))
        try:
            proc.run(argv, check=True)
            proc.run([config.docker, "cp", str(script), f"{fake}:{FAKE_PATH}"], check=True)
            proc.run([config.docker, "cp", str(public), f"{fake}:{APP_KEY_PATH}"], check=True)
            proc.run([config.docker, "start", fake], check=True)
            deadline = time.monotonic() + 30
            while "listening on" not in proc.run([config.docker, "logs", fake]).stdout:
                if time.monotonic() > deadline:
                    raise CiparityError("the fake GitHub API did not start")
                time.sleep(0.1)
            rounds = []
            for index in range(RUNNER_ROUNDS):
                phase(f"runner {index + 1}/{RUNNER_ROUNDS}: start, then stop and deregister")
                rounds.append(_runner_round(config, fake, index))
            phase(f"GitHub App runner idle past its token's {APP_TOKEN_TTL:g} s life")
            app_round = _runner_round(config, fake, RUNNER_ROUNDS, app_key, APP_TOKEN_TTL + 1)
            counted = proc.run([config.docker, "exec", fake, "python3", "-c", _COUNT_REMOVALS])
        finally:
            proc.run([config.docker, "rm", "-f", fake])
    removals, left = (counted.stdout.split() + ["?", "?"])[:2]
    starts = [r[0] for r in rounds]
    stops = [r[1] for r in rounds]

    def spread(values: list[float]) -> str:
        median = statistics.median(values)
        return f"{median:.2f} s (min {min(values):.2f}, max {max(values):.2f})"

    rows = [
        (
            f"`docker run` to the agent's listener started, median of {RUNNER_ROUNDS}",
            spread(starts),
        ),
        (
            f"SIGTERM (`docker stop`) to deregistered and exited, median of {RUNNER_ROUNDS}",
            spread(stops),
        ),
        (
            f"GitHub App runner idle {APP_TOKEN_TTL + 1:g} s, past its installation token's"
            f" {APP_TOKEN_TTL:g} s life: SIGTERM to deregistered and exited",
            f"{app_round[1]:.2f} s",
        ),
        (
            "runners deregistered (fake API: remove calls / runners; left registered)",
            f"{removals} / {RUNNER_ROUNDS + 1}; {left} left",
        ),
        (f"{image} size", f"{images.image_size(config.docker, image) / 1e6:.0f} MB"),
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        "# ciparity bench: self-hosted runner\n\n" + markdown_table(("measure", "value"), rows)
    )
    return rows


_COUNT_REMOVALS = (
    "import json, urllib.request as u;"
    " r = json.loads(u.urlopen('http://127.0.0.1:8080/_fake/requests').read());"
    " left = json.loads(u.urlopen('http://127.0.0.1:8080/_fake/runners').read());"
    " print(sum(1 for x in r if x['path'] == '/_agent/remove'), len(left))"
)
