"""`invoke doctor`: one table of host checks, and exit 1 when any of them blocks work.

Each row is a small function returning a `Finding`. A probe that cannot run (no docker CLI, no
daemon, an unreadable path) becomes a row, never a traceback: the later rows that need docker say
"skip" when an earlier row already failed for the reason they would fail.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ciparity import act_env, container, images, proc
from ciparity.config import Config
from ciparity.console import format_table
from ciparity.errors import CiparityError

OK = "ok"
WARN = "warn"
FAIL = "FAIL"
SKIP = "skip"
HEADERS = ("check", "status", "detail")
GIB = 1024**3
WARN_FREE = 10 * GIB
FAIL_FREE = 2 * GIB
# A hung daemon must not hang doctor: every docker call of its own gives up after this.
PROBE_TIMEOUT = 30.0
PROXY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
# Where Debian's update-ca-certificates takes a host's own CAs from.
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
DEFAULT_INDEX = "https://pypi.org/simple/"
# Run in a container: fetch the index page, or print why not (one line) and exit 1.
REACH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    urllib.request.urlopen(sys.argv[1], timeout=5).close()\n"
    "except Exception as exc:\n"
    "    print(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else '')\n"
    "    sys.exit(1)\n"
)
USERMOD_FIX = "sudo usermod -aG {group} $USER, then log in again"
PYTHON_FIX = (
    "install CPython {v}, e.g. `pyenv install {v}`, or pass --python PREFIX to `invoke base`"
)


@dataclass(frozen=True)
class Finding:
    """One row of the doctor table; status is one of "ok", "warn", "FAIL", "skip"."""

    name: str
    status: str
    detail: str = ""

    @property
    def blocks(self) -> bool:
        """Whether this finding stops work (and makes doctor exit 1)."""
        return self.status == FAIL


def _docker(config: Config, *args: str) -> proc.Result:
    return proc.run([config.docker, *args], timeout=PROBE_TIMEOUT)


def check_cli(config: Config) -> Finding:
    """Whether the docker CLI is on PATH, and its version."""
    name = "docker CLI"
    path = shutil.which(config.docker)
    if path is None:
        return Finding(name, FAIL, f"`{config.docker}` is not on PATH: install Docker Engine")
    try:
        result = _docker(config, "version", "--format", "{{.Client.Version}}")
    except CiparityError as exc:
        return Finding(name, FAIL, exc.message)
    except OSError as exc:
        # proc.run turns only a missing file into our error; a non-executable one lands here.
        return Finding(name, FAIL, f"{path} cannot run: {exc.strerror}")
    # `docker version` exits 1 when the daemon is down but still prints the client's part.
    version = result.stdout.strip()
    if not version:
        return Finding(name, WARN, f"{path}, version unknown: {proc.reason(result.stderr)}")
    return Finding(name, OK, f"{version} ({path})")


def _socket_group(environ: Mapping[str, str]) -> str:
    """The socket's group name (its gid when unnamed); "docker" when it cannot be read."""
    socket = container.docker_socket(environ)
    try:
        gid = os.stat(socket or "").st_gid
    except OSError:
        return "docker"
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_daemon(config: Config, environ: Mapping[str, str], cli: bool) -> Finding:
    """Whether the daemon answers, with its engine and API versions."""
    name = "daemon"
    if not cli:
        return Finding(name, SKIP, "no docker CLI")
    try:
        result = _docker(
            config, "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}"
        )
    except CiparityError as exc:
        return Finding(name, FAIL, f"unreachable: {exc.message}")
    if result.ok and result.stdout.strip():
        version, _, api = result.stdout.strip().partition(" ")
        return Finding(name, OK, f"engine {version}, API {api or '?'}")
    error = proc.reason(result.stderr)
    if "permission denied" in result.stderr.lower():
        fix = USERMOD_FIX.format(group=_socket_group(environ))
        return Finding(
            name,
            FAIL,
            f"permission denied on the socket: add this user to the socket's group ({fix})"
            " or set DOCKER_HOST",
        )
    return Finding(name, FAIL, f"unreachable: {error}")


def check_socket(environ: Mapping[str, str]) -> Finding:
    """For a local daemon: the unix socket exists and this user may read and write it."""
    name = "socket"
    socket = container.docker_socket(environ)
    if socket is None:
        # Only the scheme: a DOCKER_HOST URL may carry a user name.
        scheme = environ.get("DOCKER_HOST", "").partition("://")[0]
        return Finding(name, SKIP, f"remote daemon (DOCKER_HOST is {scheme}://...)")
    try:
        info = os.stat(socket)
    except FileNotFoundError:
        return Finding(name, FAIL, f"{socket} does not exist: is the Docker daemon running?")
    except OSError as exc:
        return Finding(name, FAIL, f"{socket}: {exc.strerror}")
    if not stat.S_ISSOCK(info.st_mode):
        return Finding(name, FAIL, f"{socket} is not a unix socket")
    group = _socket_group(environ)
    if not os.access(socket, os.R_OK | os.W_OK):
        fix = USERMOD_FIX.format(group=group)
        return Finding(name, FAIL, f"{socket} (group {group}): no read+write for this user: {fix}")
    return Finding(name, OK, f"{socket} (group {group}), read+write")


def check_buildx(config: Config, cli: bool) -> Finding:
    """BuildKit through the buildx plugin; the classic builder still works without it."""
    name = "buildx"
    if not cli:
        return Finding(name, SKIP, "no docker CLI")
    result = _docker(config, "buildx", "version")
    if not result.ok:
        return Finding(
            name, WARN, "missing: run `invoke setup` (builds fall back to DOCKER_BUILDKIT=1)"
        )
    words = result.stdout.split()
    return Finding(name, OK, words[1] if len(words) > 1 else result.stdout.strip())


def check_compose(config: Config, cli: bool) -> Finding:
    """The compose plugin, which only `invoke ci --parallel` needs."""
    name = "compose"
    if not cli:
        return Finding(name, SKIP, "no docker CLI")
    result = _docker(config, "compose", "version")
    if not result.ok:
        return Finding(
            name, WARN, "missing: only `invoke ci --parallel` needs it; `invoke setup` installs it"
        )
    return Finding(name, OK, result.stdout.strip().rpartition(" ")[2])


def _probe_image(config: Config) -> str | None:
    for ref in (config.image, config.base):
        if images.inspect_label(config.docker, ref, "") is not None:
            return ref
    return None


def check_workspace(config: Config, daemon: bool) -> Finding:
    """Whether the daemon sees the checkout's path (bind mounts) or the workspace is copied in."""
    name = "workspace"
    path = config.root
    forced = ""
    if config.workspace_mode != "auto":
        source = config.settings_source.get("workspace_mode", "default")
        forced = f"forced to {config.workspace_mode} by workspace_mode ({source}); "
    if config.workspace_mode == "copy":
        # Copy works whatever the daemon sees: nothing to probe.
        return Finding(name, OK, f"{forced}checkout copied in")
    if not daemon:
        return Finding(name, SKIP, f"{forced}no daemon to probe")
    image = _probe_image(config)
    if image is None:
        return Finding(name, SKIP, f"{forced}no image yet to probe with (`invoke base`)")
    try:
        mode = container.probe_workspace_mode(config.docker, image, path, config.reports_dir)
    except (CiparityError, OSError) as exc:
        message = exc.message if isinstance(exc, CiparityError) else str(exc)
        return Finding(name, WARN, f"{forced}probe failed: {message}")
    if mode == "bind":
        return Finding(name, OK, f"{forced}bind (daemon sees {path})")
    if forced:
        return Finding(
            name,
            FAIL,
            f"{forced}but the daemon does not see {path}: set workspace_mode to auto or copy",
        )
    return Finding(name, OK, f"copy (daemon does not see {path}; workspace is copied in)")


def check_base(config: Config, daemon: bool) -> Finding:
    """The base image: official, our local stand-in, or missing."""
    name = "base image"
    if not daemon:
        return Finding(name, SKIP, "no daemon")
    info = images.base_info(config)
    if info.kind == "missing":
        return Finding(
            name, WARN, f"{info.ref} missing: `invoke base` will pull it or build a stand-in"
        )
    return Finding(name, OK, f"{info.ref} ({info.detail or info.kind})")


def check_host_python(config: Config, base_present: bool) -> Finding:
    """A host CPython of the project's version, from which the offline stand-in base is built."""
    name = "host CPython"
    try:
        prefix = images.find_host_python(config)
    except CiparityError as exc:
        fix = PYTHON_FIX.format(v=config.python_version)
        if base_present:
            return Finding(name, WARN, f"none (not needed while the base image is present); {fix}")
        # A configured host_python that is wrong says why; otherwise the fix is the message.
        found = exc.message if config.host_python else f"no CPython {config.python_version}"
        return Finding(name, WARN, f"{found}: {fix}")
    return Finding(name, OK, f"{config.python_version} at {prefix}")


def check_mmdebstrap() -> Finding:
    """mmdebstrap, which builds the stand-in base when no registry can be reached."""
    name = "mmdebstrap"
    path = shutil.which("mmdebstrap")
    if path is None:
        return Finding(
            name,
            WARN,
            "missing: needed only to build the stand-in base; `invoke setup` installs it",
        )
    return Finding(name, OK, path)


def _data_root(config: Config, daemon: bool) -> str:
    if not daemon:
        return ""
    try:
        result = _docker(config, "info", "--format", "{{.DockerRootDir}}")
    except CiparityError:
        return ""
    return result.stdout.strip() if result.ok else ""


def check_disk(config: Config, environ: Mapping[str, str], daemon: bool) -> Finding:
    """Free space where images and containers live: warn under 10 GiB, fail under 2 GiB."""
    name = "disk"
    if container.docker_socket(environ) is None:
        # A remote daemon's data root is a path on another machine.
        candidates = [(str(config.root), "the checkout; the remote daemon's disk is not measured")]
    else:
        candidates = [
            (_data_root(config, daemon), "docker data root"),
            ("/var/lib/docker", "docker's default data root"),
            (str(config.root), "the checkout; docker's data root is not readable here"),
        ]
    for path, what in candidates:
        if not path:
            continue
        try:
            free = shutil.disk_usage(path).free
        except OSError:
            continue  # Docker Desktop, rootless or remote daemons keep it elsewhere
        detail = f"{free / GIB:.1f} GiB free on {path} ({what})"
        if free < FAIL_FREE:
            return Finding(name, FAIL, f"{detail}: under 2 GiB, builds will fail")
        if free < WARN_FREE:
            return Finding(name, WARN, f"{detail}: under 10 GiB (`docker system prune`)")
        return Finding(name, OK, detail)
    return Finding(name, WARN, "could not measure free space")


def proxy_names(environ: Mapping[str, str]) -> list[str]:
    """The proxy variables set in `environ`, in any case; names only."""
    wanted = set(PROXY_NAMES)
    return sorted(key for key, value in environ.items() if key.upper() in wanted and value)


def check_proxy(environ: Mapping[str, str]) -> Finding:
    """Which proxy variables builds will pass on; never their values (they carry credentials)."""
    names = proxy_names(environ)
    if not names:
        return Finding("proxy", OK, "none set")
    return Finding(
        "proxy",
        OK,
        f"{', '.join(names)} set; builds get them as build args, act-ci jobs through a private"
        " env file",
    )


def check_ca_bundle(config: Config) -> Finding:
    """The extra CA bundle builds trust: absent, or a readable file."""
    name = "CA bundle"
    if not config.ca_bundle:
        return Finding(name, OK, "none")
    # Resolved as `images.build` resolves it, so doctor agrees with the build.
    bundle = Path(config.ca_bundle)
    if not bundle.is_file():
        return Finding(name, FAIL, f"ca_bundle {bundle} is set but is not a file")
    try:
        text = bundle.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return Finding(name, FAIL, f"ca_bundle {bundle} is not readable: {exc.strerror}")
    if "BEGIN CERTIFICATE" not in text:
        return Finding(name, WARN, f"{bundle} holds no PEM certificate")
    return Finding(name, OK, str(bundle))


def local_cas(folder: Path = LOCAL_CA_DIR) -> list[str]:
    """The CAs this host adds to Debian's set (update-ca-certificates takes them from here)."""
    try:
        return sorted(p.name for p in folder.rglob("*.crt") if p.is_file())
    except OSError:
        return []


def check_trust(config: Config, environ: Mapping[str, str], extra_cas: Sequence[str]) -> Finding:
    """The host's TLS trust, and which containers are handed it: a TLS-intercepting proxy's CA
    is trusted by the host but not by a container that is not given it."""
    name = "CA trust"
    try:
        bundle = act_env.find_ca_bundle(config, environ)
    except CiparityError as exc:
        return Finding(name, FAIL, exc.message)
    if bundle is None:
        return Finding(name, OK, "no CA bundle on this host: containers use their own")
    source = next(
        (
            n
            for n in ("ca_bundle", *act_env.CA_SOURCES)
            if (config.ca_bundle if n == "ca_bundle" else environ.get(n))
        ),
        "the system bundle",
    )
    parts = [f"{bundle} (from {source})"]
    if extra_cas:
        parts.append(f"{len(extra_cas)} CA(s) beyond Debian's set: {', '.join(extra_cas)}")
    parts.append("act-ci jobs and `shell --job` get it read-only")
    custom = bool(extra_cas) or source != "the system bundle"
    if config.ca_bundle:
        parts.append("builds get it as a BuildKit secret")
    elif custom:
        parts.append("builds do not (set ca_bundle to hand it to an online build's pip)")
    return Finding(name, OK, "; ".join(parts))


def _reach(config: Config, image: str, url: str, extra: Sequence[str]) -> proc.Result:
    return _docker(config, "run", "--rm", *extra, image, "python3", "-c", REACH, url)


def check_index(config: Config, environ: Mapping[str, str], daemon: bool) -> Finding:
    """Whether a container, given what act-ci's jobs are given, reaches the package index."""
    name = "package index"
    if not daemon:
        return Finding(name, SKIP, "no daemon")
    if config.offline == "on":
        return Finding(name, SKIP, 'offline = "on": no index is used')
    image = _probe_image(config)
    if image is None:
        return Finding(name, SKIP, "no image to probe with yet (`invoke base`)")
    url = environ.get("PIP_INDEX_URL") or DEFAULT_INDEX
    try:
        bundle = act_env.find_ca_bundle(config, environ)
    except CiparityError:
        bundle = None  # the CA trust row says why
    given: list[str] = []
    if bundle is not None:
        given += [
            "-v",
            f"{bundle}:{act_env.CA_IN_JOB}:ro",
            "-e",
            f"SSL_CERT_FILE={act_env.CA_IN_JOB}",
        ]
    for key in act_env.proxy_env(environ):
        given += ["-e", key]  # by name: proxy URLs may carry credentials
    trusted = _reach(config, image, url, given)
    if not trusted.ok:
        why = proc.reason(trusted.stdout or trusted.stderr)
        return Finding(name, WARN, f"a container cannot reach {url}: {why}; fix: {_index_fix(why)}")
    bare = _reach(config, image, url, [])
    if bare.ok:
        return Finding(name, OK, f"a container reaches {url}")
    return Finding(
        name,
        OK,
        f"a container reaches {url} only with this host's CA bundle and proxy, which act-ci's"
        f" jobs get (without them: {proc.reason(bare.stdout or bare.stderr)})",
    )


def _index_fix(why: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in why:
        return "set ca_bundle (or PIP_CERT) to the CA bundle of your network's TLS proxy"
    if any(word in why for word in ("timed out", "Name or service", "resolution", "refused")):
        return 'set HTTPS_PROXY/NO_PROXY for your network, or offline = "on" to use none'
    return "check PIP_INDEX_URL and your network's proxy settings"


def check_python(config: Config) -> Finding:
    """The Python running the tasks matches the project's (the wheelhouse is filled by it)."""
    name = "task Python"
    wanted = tuple(int(p) for p in config.python_version.split("."))
    have = ".".join(str(p) for p in sys.version_info[:3])
    if sys.version_info[: len(wanted)] != wanted:
        return Finding(
            name,
            WARN,
            f"{have}, the project is {config.python_version}:"
            f" run the tasks from .venv (Python {config.python_version})",
        )
    return Finding(name, OK, f"{have} ({sys.executable})")


def _guarded(name: str, check: Callable[[], Finding]) -> Finding:
    try:
        return check()
    except (CiparityError, OSError, ValueError) as exc:
        # A probe that cannot finish is not itself proof that work is blocked.
        message = exc.message if isinstance(exc, CiparityError) else str(exc)
        return Finding(name, WARN, f"could not check: {message}")


def findings(config: Config, environ: Mapping[str, str]) -> list[Finding]:
    """Every row, in order; the docker rows skip what an earlier failure already explains."""
    cli = _guarded("docker CLI", lambda: check_cli(config))
    has_cli = cli.status in (OK, WARN)
    daemon = _guarded("daemon", lambda: check_daemon(config, environ, has_cli))
    up = daemon.status == OK
    base = _guarded("base image", lambda: check_base(config, up))
    return [
        cli,
        daemon,
        _guarded("socket", lambda: check_socket(environ)),
        _guarded("buildx", lambda: check_buildx(config, has_cli)),
        _guarded("compose", lambda: check_compose(config, has_cli)),
        _guarded("workspace", lambda: check_workspace(config, up)),
        base,
        _guarded("host CPython", lambda: check_host_python(config, base.status == OK)),
        _guarded("mmdebstrap", check_mmdebstrap),
        _guarded("disk", lambda: check_disk(config, environ, up)),
        _guarded("proxy", lambda: check_proxy(environ)),
        _guarded("CA bundle", lambda: check_ca_bundle(config)),
        _guarded("CA trust", lambda: check_trust(config, environ, local_cas())),
        _guarded("package index", lambda: check_index(config, environ, up)),
        _guarded("task Python", lambda: check_python(config)),
    ]


def redact(text: str, environ: Mapping[str, str]) -> str:
    """`text` without URL credentials or proxy values, which a docker error may echo."""
    for key, value in environ.items():
        if key.upper() in ("HTTP_PROXY", "HTTPS_PROXY") and len(value) > 3:
            text = text.replace(value, f"${key}")
    return re.sub(r"(\w+://)[^/\s@]+@", r"\1***@", text)


def run(
    config: Config, out: IO[str] | None = None, environ: Mapping[str, str] | None = None
) -> int:
    """Print the doctor table; 1 when any check blocks work ("FAIL"), else 0."""
    env = os.environ if environ is None else environ
    stream = out or sys.stdout
    rows = findings(config, env)
    cells = [(f.name, f.status, redact(f.detail, env)) for f in rows]
    print(format_table(HEADERS, cells), file=stream)
    failed = [f.name for f in rows if f.blocks]
    warned = sum(1 for f in rows if f.status == WARN)
    if failed:
        print(f"\ndoctor: blocked by {', '.join(failed)}", file=stream, flush=True)
        return 1
    print(f"\ndoctor: nothing blocks work ({warned} warnings)", file=stream, flush=True)
    return 0
