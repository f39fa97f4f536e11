"""Images: the base (official, pulled, or a local stand-in), the wheelhouse, and BuildKit builds
with their cache-hit rate."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ciparity import proc
from ciparity.config import Config
from ciparity.errors import BuildError, CiparityError, ConfigError, DockerError

STANDIN_LABEL = "ciparity.base"
# The stand-in follows python:3.12-slim: Debian trixie, minbase, CPython in /usr/local.
STANDIN_SUITE = "trixie"
STANDIN_RUNTIME = (
    "ca-certificates libssl3t64 libffi8 libsqlite3-0 libbz2-1.0 liblzma5 zlib1g libreadline8t64"
    " libncursesw6 libuuid1 libgdbm6t64 libexpat1 tzdata netbase passwd"
).split()
# What the Dockerfiles' apt steps install: present in the stand-in, their apt step finds them
# installed and needs no network (tests/unit/test_dockerfiles.py keeps the two lists in step).
STANDIN_PREINSTALLED = (
    "gcc libc6-dev git curl docker-cli docker-buildx docker-compose tini sudo"
    " libicu76 libkrb5-3 liblttng-ust1t64"
    " nodejs jq wget zip unzip make lsb-release xz-utils bzip2 zstd patch rsync less"
).split()
PYTHON_EXCLUDES = (
    "./lib/python*/test",
    "./lib/python*/site-packages/*",
    "./lib/python*/idlelib",
    "./lib/python*/tkinter",
    "./lib/python*/config-*/*.a",
    "*/__pycache__",
)


@dataclass(frozen=True)
class BaseInfo:
    """Which base image is in use."""

    ref: str
    kind: str  # "official", "stand-in", or "missing"
    detail: str = ""


@dataclass(frozen=True)
class Step:
    name: str
    cached: bool


@dataclass(frozen=True)
class BuildReport:
    """What one build did: its steps, how many came from cache, and how long it took."""

    tag: str
    seconds: float
    steps: tuple[Step, ...]

    @property
    def cached(self) -> int:
        return sum(1 for s in self.steps if s.cached)

    @property
    def hit_rate(self) -> float:
        return self.cached / len(self.steps) if self.steps else 1.0

    def per_stage(self) -> dict[str, tuple[int, int]]:
        """Cached and total steps for each stage, in build order of first appearance."""
        stages: dict[str, tuple[int, int]] = {}
        for s in self.steps:
            stage = s.name[1:].split(" ", 1)[0] if " " in s.name.split("]")[0] else "-"
            cached, total = stages.get(stage, (0, 0))
            stages[stage] = (cached + int(s.cached), total + 1)
        return stages

    def line(self) -> str:
        stages = ", ".join(f"{k} {c}/{t}" for k, (c, t) in self.per_stage().items())
        return (
            f"built {self.tag} in {self.seconds:.1f} s; cache hits {self.cached}/{len(self.steps)}"
            f" steps ({self.hit_rate:.0%}): {stages}"
        )


def inspect_label(docker: str, ref: str, label: str) -> str | None:
    """The value of `label` on image `ref`: '' when unlabelled, None when the image is missing."""
    result = proc.run([docker, "image", "inspect", "--format", "{{json .Config.Labels}}", ref])
    if not result.ok:
        if (
            "permission denied" in result.stderr.lower()
            or "cannot connect" in result.stderr.lower()
        ):
            raise DockerError(f"docker: {proc.reason(result.stderr)}")
        return None
    match = re.search(rf'"{re.escape(label)}":"([^"]*)"', result.stdout)
    return match.group(1) if match else ""


def base_info(config: Config) -> BaseInfo:
    """Whether the base image is present, and whether it is the official one or our stand-in."""
    value = inspect_label(config.docker, config.base, STANDIN_LABEL)
    if value is None:
        return BaseInfo(config.base, "missing")
    if value == "stand-in":
        python = inspect_label(config.docker, config.base, STANDIN_LABEL + ".python") or "?"
        return BaseInfo(config.base, "stand-in", f"local stand-in, CPython {python}")
    return BaseInfo(config.base, "official")


def find_host_python(config: Config, prefix: str | None = None) -> Path:
    """The installation prefix of a CPython matching the project's version on this host."""
    wanted = config.python_version
    candidates: list[Path] = []
    chosen = prefix or config.host_python
    if chosen:
        candidates.append(Path(chosen))
    else:
        pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
        versions = pyenv_root / "versions"
        if versions.is_dir():
            found = [p for p in versions.iterdir() if p.name.startswith(wanted + ".")]
            candidates += sorted(found, key=_version_key, reverse=True)
        candidates += [Path("/usr/local"), Path("/usr"), Path(sys.base_prefix)]
    for candidate in candidates:
        exe = candidate / "bin" / f"python{wanted}"
        if exe.is_file() and (candidate / "lib" / f"python{wanted}" / "os.py").exists():
            return candidate
    if chosen:
        raise ConfigError(
            f"--python {chosen}: no bin/python{wanted} with its standard library there"
        )
    raise CiparityError(
        f"no CPython {wanted} on this host to build the stand-in base from: install one"
        f" (e.g. `pyenv install {wanted}`) and pass --python PREFIX, or make python:{wanted}-slim"
        " available (docker pull/load)"
    )


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in path.name.split("."))


def _python_full_version(prefix: Path, minor: str) -> str:
    result = proc.run(
        [
            str(prefix / "bin" / f"python{minor}"),
            "-c",
            "import platform; print(platform.python_version())",
        ],
        env={**os.environ, "PYENV_VERSION": prefix.name},
    )
    return result.stdout.strip() if result.ok else minor


def _customize_hooks(prefix: Path, minor: str) -> list[str]:
    """mmdebstrap hooks (run on the host; "$1" is the new root) installing CPython in /usr/local."""
    excludes = " ".join(f"--exclude={shlex.quote(e)}" for e in PYTHON_EXCLUDES)
    exe = f"/usr/local/bin/python{minor}"
    check = "import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, decimal, readline"
    return [
        f'tar -C {shlex.quote(str(prefix))} {excludes} -c . | tar -C "$1/usr/local" -x',
        'echo /usr/local/lib > "$1/etc/ld.so.conf.d/ciparity-python.conf"',
        'chroot "$1" ldconfig',
        f'chroot "$1" {exe} -m ensurepip --default-pip',
        f'ln -sf python{minor} "$1/usr/local/bin/python3"',
        'ln -sf python3 "$1/usr/local/bin/python"',
        f'chroot "$1" {exe} -c {shlex.quote(check)}',
        # Bytecode compiled in place (the host's __pycache__ is left out: it names host paths), so
        # no container start recompiles the standard library.
        f'chroot "$1" {exe} -m compileall -q -j 0 /usr/local/lib/python{minor}',
        'rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*.bin',
    ]


def bootstrap_base(config: Config, prefix: Path, out: IO[str] | None = None) -> BaseInfo:
    """Build a local stand-in for python:X.Y-slim from Debian packages and a host CPython."""
    if shutil.which("mmdebstrap") is None:
        raise CiparityError(
            "mmdebstrap is not installed: run `invoke setup` (or apt-get install mmdebstrap)"
        )
    minor = config.python_version
    full = _python_full_version(prefix, minor)
    with tempfile.TemporaryDirectory(prefix="ciparity-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            "--include=" + ",".join(STANDIN_RUNTIME + STANDIN_PREINSTALLED),
            "--aptopt=Acquire::Retries=3",
        ]
        for hook in _customize_hooks(prefix, minor):
            argv.append(f"--customize-hook={hook}")
        argv += [STANDIN_SUITE, str(tarball)]
        result = proc.run(argv, tee=out or sys.stdout)
        if not result.ok:
            raise BuildError(f"building the stand-in base failed: {proc.reason(result.stdout)}")
        changes = {
            "ENV": "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV ": "LANG=C.UTF-8",
            "ENV  ": f"PYTHON_VERSION={full}",
            "CMD": '["python3"]',
            "LABEL": f"{STANDIN_LABEL}=stand-in",
            "LABEL ": f"{STANDIN_LABEL}.python={full}",
            "LABEL  ": f"{STANDIN_LABEL}.debian={STANDIN_SUITE}",
        }
        imp = [config.docker, "import"]
        for key, value in changes.items():
            imp += ["--change", f"{key.strip()} {value}"]
        imported = proc.run([*imp, str(tarball), config.base])
        if not imported.ok:
            raise DockerError(
                f"docker import of the stand-in failed: {proc.reason(imported.stderr)}"
            )
    return BaseInfo(config.base, "stand-in", f"local stand-in, CPython {full}")


def ensure_base(
    config: Config, prefix: str | None = None, pull: bool = True, out: IO[str] | None = None
) -> BaseInfo:
    """Use the base image if present, pull it where a registry answers, else build the stand-in."""
    info = base_info(config)
    if info.kind != "missing":
        return info
    if pull and config.offline != "on":
        result = proc.run([config.docker, "pull", config.base], timeout=300)
        if result.ok:
            return base_info(config)
        print(
            f"ciparity: cannot pull {config.base} ({proc.reason(result.stderr)});"
            " building a local stand-in",
            file=out or sys.stdout,
        )
    host = find_host_python(config, prefix)
    return bootstrap_base(config, host, out)


def offline(config: Config, base: BaseInfo) -> bool:
    """Whether builds install Python packages from the host-filled wheelhouse only."""
    if config.offline == "auto":
        return base.kind == "stand-in"
    return config.offline == "on"


def requirement_files(root: Path) -> list[Path]:
    names = ("requirements.txt", "requirements-dev.txt", "runner/requirements.txt")
    return [root / name for name in names if (root / name).exists()]


def fill_wheelhouse(config: Config, out: IO[str] | None = None) -> Path:
    """Download (or build) wheels for every pinned requirement, on the host, where pip works.

    Skipped when the requirement files have not changed since the last fill.
    """
    house = config.root / "docker" / "wheelhouse"
    files = requirement_files(config.root)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    stamp = house / ".stamp"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == digest:
        return house
    wanted = tuple(int(p) for p in config.python_version.split("."))
    if sys.version_info[: len(wanted)] != wanted:
        raise ConfigError(
            f"the wheelhouse must be filled by Python {config.python_version}, this is"
            f" {sys.version_info.major}.{sys.version_info.minor}: run the tasks from .venv"
        )
    house.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(house)]
    for path in files:
        argv += ["-r", str(path)]
    result = proc.run(argv, cwd=config.root, tee=out or sys.stdout)
    if not result.ok:
        raise BuildError(f"filling the wheelhouse failed: {proc.reason(result.stdout)}")
    stamp.write_text(digest, encoding="utf-8")
    return house


_STEP = re.compile(r"^#(\d+) \[([^\]]+)\] (.*)$")
_CACHED = re.compile(r"^#(\d+) CACHED\s*$")
_ERROR = re.compile(r"^#(\d+) ERROR: (.*)$")
_STAGE_STEP = re.compile(r"^(?:[\w.-]+ )?\d+/\d+$")


def parse_progress(log: str) -> tuple[list[Step], str | None]:
    """Steps of a `--progress=plain` log and, for a failed build, 'step: reason'.

    Only the Dockerfile's own steps ('[stage n/m] RUN ...') count; FROM lines and BuildKit's
    internal vertices ('[internal] load ...') do not.
    """
    names: dict[str, str] = {}
    cached: set[str] = set()
    failure: str | None = None
    for line in log.splitlines():
        if m := _STEP.match(line):
            vid, where, what = m.groups()
            if _STAGE_STEP.match(where) and not what.startswith("FROM "):
                names.setdefault(vid, f"[{where}] {what}")
        elif m := _CACHED.match(line):
            cached.add(m.group(1))
        elif (m := _ERROR.match(line)) and failure is None:
            vid, reason = m.groups()
            failure = f"{names.get(vid, '#' + vid)}: {reason}"
    steps = [Step(name, vid in cached) for vid, name in names.items()]
    return steps, failure


def build_argv(
    docker: str,
    buildx: bool,
    dockerfile: Path,
    target: str,
    tag: str,
    context: Path,
    build_args: Mapping[str, str | None],
    secrets: Mapping[str, str],
) -> list[str]:
    """The build command: buildx where installed, else the classic CLI with BuildKit on."""
    argv = [docker, "buildx", "build", "--load"] if buildx else [docker, "build"]
    argv += ["--progress=plain", "-f", str(dockerfile), "--target", target, "-t", tag]
    for key, value in build_args.items():
        argv += ["--build-arg", key if value is None else f"{key}={value}"]
    for sid, src in secrets.items():
        argv += ["--secret", f"id={sid},src={src}"]
    return argv + [str(context)]


def has_buildx(docker: str) -> bool:
    return proc.run([docker, "buildx", "version"]).ok


PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def build(
    config: Config,
    dockerfile: Path,
    target: str,
    tag: str,
    offline_build: bool,
    out: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
    build_args: Mapping[str, str] | None = None,
) -> BuildReport:
    """Build one target with BuildKit; the full log goes to reports/build-<target>.log."""
    env = dict(os.environ if environ is None else environ)
    env["DOCKER_BUILDKIT"] = "1"
    args: dict[str, str | None] = {"PYTHON_VERSION": config.python_version}
    if offline_build:
        args["PIP_NO_INDEX"] = "1"
    args.update(build_args or {})
    # Proxy values stay out of argv (and of image history: these ARGs are predefined by Docker).
    args.update({name: None for name in PROXY_VARS if env.get(name)})
    secrets: dict[str, str] = {}
    if config.ca_bundle:
        bundle = Path(config.ca_bundle)
        bundle = bundle if bundle.is_absolute() else config.root / bundle
        if not bundle.is_file():
            raise ConfigError(f"ca_bundle {bundle} is not a file")
        secrets["ca-bundle"] = str(bundle.resolve())
    (config.root / "docker" / "wheelhouse").mkdir(parents=True, exist_ok=True)
    argv = build_argv(
        config.docker,
        has_buildx(config.docker),
        dockerfile,
        target,
        tag,
        config.root,
        args,
        secrets,
    )
    started = time.monotonic()
    result = proc.run(argv, env=env, cwd=config.root, tee=out or sys.stdout)
    seconds = time.monotonic() - started
    log = config.reports_dir / f"build-{target}.log"
    try:
        config.reports_dir.mkdir(parents=True, exist_ok=True)
        log.write_text(result.stdout, encoding="utf-8")
    except OSError as exc:  # a read-only checkout: the build itself is what matters
        proc.eprint(f"ciparity: warning: cannot write the build log {log}: {exc.strerror}")
    steps, failure = parse_progress(result.stdout)
    if not result.ok:
        where = failure or proc.reason(result.stdout)
        raise BuildError(f"building {tag} failed at {where} (log: {log})")
    return BuildReport(tag, seconds, tuple(steps))


def image_size(docker: str, ref: str) -> int:
    """The image's size in bytes, 0 when missing."""
    result = proc.run([docker, "image", "inspect", "--format", "{{.Size}}", ref])
    return int(result.stdout.strip()) if result.ok and result.stdout.strip().isdigit() else 0


def build_reports(reports: Sequence[BuildReport]) -> list[str]:
    return [report.line() for report in reports]
