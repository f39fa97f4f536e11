"""The self-hosted runner image's entrypoint: register the agent, run it, deregister it once.

Settings come from CIPARITY_RUNNER_* variables (each secret also as *_FILE) and are all checked
before any network call. Exactly one credential: a registration token, a PAT, a GitHub App, or a
JIT config. Under ARC (ACTIONS_RUNNER_INPUT_JITCONFIG set by the controller) the entrypoint only
hands over to run.sh: the controller registered the runner, and GitHub removes it.

Lifecycle of a registered (non-JIT) runner:
  token -> config.sh (token passed in the environment, never on argv) -> run.sh, supervised ->
  on SIGTERM/SIGINT the signal goes to run.sh -> once it and every process of its session (the
  listener and a job run in process groups of their own) have ended, or been killed after the
  stop timeout, `config.sh remove`, exactly once, unless the agent already unregistered itself
  (an ephemeral runner after its job).

run.sh exits 0 for a finished job and also for a listener that cannot work (runner not found, a
session conflict, a deprecated version: run-helper.sh maps those to 0), so the listener's own
exit, which run-helper.sh prints and _diag records, decides whether the runner failed.
A stop always ends within `worst_case_stop(settings)` seconds, printed at start.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import secrets
import signal

# The agent's scripts are run by path with argv lists, never through a shell string.
import subprocess  # nosec B404
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from ciparity import config as cfg
from ciparity.errors import CiparityError, Interrupted
from ciparity.github import (
    SCOPES,
    ApiError,
    Auth,
    Client,
    Redactor,
    Scope,
    check_api_url,
    check_app_key,
    parse_url,
)

PREFIX = "CIPARITY_RUNNER_"
ARC_JITCONFIG = "ACTIONS_RUNNER_INPUT_JITCONFIG"
SECRETS = ("TOKEN", "PAT", "APP_PRIVATE_KEY", "JITCONFIG")
SETTINGS = (
    "URL SCOPE API_URL TOKEN PAT APP_ID APP_PRIVATE_KEY APP_INSTALLATION_ID JITCONFIG JIT"
    " LABELS NO_DEFAULT_LABELS GROUP GROUP_ID NAME NAME_PREFIX WORKDIR EPHEMERAL DISABLE_UPDATE"
    " AGENT_DIR TIMEOUT ATTEMPTS RETRY_DELAY STOP_TIMEOUT DELETE_SECRET_FILES"
).split()
# Names other runner images read. Setting one here would be silently ignored, so it is refused:
# EPHEMERAL=false, for one, is "true" in an image that tests the flag with `[ -n ... ]`.
FOREIGN = (
    "ACCESS_TOKEN RUNNER_TOKEN REPO_URL ORG_NAME ENTERPRISE_NAME RUNNER_SCOPE LABELS EPHEMERAL"
    " DISABLE_AUTO_UPDATE RUNNER_NAME_PREFIX RUNNER_WORKDIR RUNNER_GROUP APP_ID APP_PRIVATE_KEY"
    " APP_LOGIN"
).split()
# After the stop timeout the agent is killed; this long is allowed for it to vanish.
KILL_GRACE = 5.0
# `config.sh remove` is killed after this long (the real one retries on its own for minutes).
REMOVE_TIMEOUT = 30.0
MARGIN = 5.0  # starting scripts, reading files: what the budget does not itemise
# run-helper.sh's line for each listener exit code (actions/runner v2.336.0, its template).
HELPER_LINES = (
    (re.compile(r"Runner listener exit with 0 return code"), 0),
    (re.compile(r"Runner listener exit with terminated error"), 1),
    (re.compile(r"Runner listener exit with retryable error"), 2),
    (re.compile(r"Runner listener exit because of updating"), 3),
    (re.compile(r"Runner listener exit with Session Conflict error"), 5),
    (re.compile(r"Runner listener exit with deprecated version exit code: (\d+)"), -1),
    (re.compile(r"Exiting with unknown error code: (-?\d+)"), -1),
)
LISTENER_CODES = {
    1: "terminated error",
    2: "retryable error",
    3: "updating",
    4: "updating",
    5: "session conflict: another listener uses this runner",
    6: "configuration refreshed",
    7: "deprecated agent version: build the image with a newer one",
}
_DIAG_DONE = re.compile(r"Runner execution has finished with return code (-?\d+)")
_DIAG_ERROR = re.compile(r"^\[[^\]]* ERR +\w+\] (.*)$")
# The labels the agent gives itself; config.sh adds them, a JIT config must list them.
ARCH_LABELS = {"x86_64": "X64", "amd64": "X64", "aarch64": "ARM64", "arm64": "ARM64"}
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LABEL = re.compile(r"^[^\s,]{1,256}$")


class AgentError(CiparityError):
    """The runner agent is missing, or one of its scripts failed."""

    exit_code = 4


@dataclass
class Settings:
    """What the entrypoint was asked to do, fully checked."""

    agent_dir: Path
    url: str = ""
    api_url: str = ""
    scope_kind: str = ""
    scope_path: str = ""
    token: str = ""
    jitconfig: str = ""
    auth: Auth | None = None
    jit: bool = False
    labels: tuple[str, ...] = ()
    no_default_labels: bool = False
    group: str = ""
    group_id: int = 1
    name: str = ""
    workdir: str = "_work"
    ephemeral: bool = True
    disable_update: bool = False
    timeout: float = 10.0
    attempts: int = 5
    retry_delay: float = 1.0
    stop_timeout: float = 20.0
    secret_files: tuple[Path, ...] = ()
    delete_secret_files: bool = False

    @property
    def mode(self) -> str:
        """token, pat, app, jitconfig (given) or jit (generated with a PAT or App)."""
        if self.jitconfig:
            return "jitconfig"
        if self.auth is not None:
            return "jit" if self.jit else self.auth.kind
        return "token"

    def all_labels(self) -> tuple[str, ...]:
        """Every label the runner gets: the agent's defaults (unless turned off) and ours."""
        defaults = default_labels()
        extra = tuple(label for label in self.labels if label not in defaults)
        return extra if self.no_default_labels else defaults + extra

    def secrets(self) -> list[str]:
        """Every credential in these settings, for the redactor."""
        found = [self.token, self.jitconfig]
        if self.auth is not None:
            found.append(self.auth.secret)
        return [s for s in found if s]


def api_budget(settings: Settings) -> float:
    """Seconds the API calls of a stop may take: one call's every attempt with its back-off."""
    backoff = sum(min(settings.retry_delay * 2.0**i, 30.0) for i in range(settings.attempts - 1))
    return float(settings.attempts * settings.timeout + backoff)


def worst_case_stop(settings: Settings) -> float:
    """Seconds from a stop signal to the entrypoint's exit, at worst: the agent's stop timeout,
    killing it, the API calls (one deadline), `config.sh remove` (killed after its timeout)."""
    return settings.stop_timeout + KILL_GRACE + api_budget(settings) + REMOVE_TIMEOUT + MARGIN


def default_labels() -> tuple[str, ...]:
    """The labels the agent gives itself on this machine."""
    machine = platform.machine().lower()
    return ("self-hosted", "Linux", ARCH_LABELS.get(machine, machine.upper()))


def runner_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """CIPARITY_RUNNER_<KEY> variables -> KEY, less the host's own settings that share the
    prefix (`runner_image` is CIPARITY_RUNNER_IMAGE)."""
    host_side = {cfg.env_name(key) for key in cfg.PARSERS}
    return {
        name: name[len(PREFIX) :]
        for name in environ
        if name.startswith(PREFIX) and name not in host_side
    }


def _fail(message: str) -> CiparityError:
    return CiparityError(message)


def read_settings(environ: Mapping[str, str], agent_dir: str = "/home/runner") -> Settings:
    """Every CIPARITY_RUNNER_* setting, checked. Raises CiparityError with one line."""
    foreign = [name for name in FOREIGN if name in environ]
    if foreign:
        raise _fail(
            f"{foreign[0]} is another runner image's setting and is not read here: use"
            f" {PREFIX}* (see the README's self-hosted runner section)"
        )
    for name, key in sorted(runner_variables(environ).items()):
        if key not in SETTINGS and not (key.endswith("_FILE") and key[:-5] in SECRETS):
            raise _fail(
                f"unknown setting {name}: known are {PREFIX}" + f", {PREFIX}".join(SETTINGS)
            )

    files: list[Path] = []

    def get(key: str) -> str:
        value = environ.get(PREFIX + key, "").strip()
        if key in SECRETS and PREFIX + key + "_FILE" in environ:
            if value:
                raise _fail(f"set {PREFIX}{key} or {PREFIX}{key}_FILE, not both")
            path = Path(environ[PREFIX + key + "_FILE"])
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise _fail(f"{PREFIX}{key}_FILE={path}: cannot read it ({exc.strerror})") from None
            if not value:
                raise _fail(f"{PREFIX}{key}_FILE={path} is empty")
            files.append(path)
        return value

    def flag(key: str, default: bool) -> bool:
        value = get(key)
        if not value:
            return default
        try:
            return cfg.parse_bool(value)
        except ValueError:
            raise _fail(
                f"{PREFIX}{key}={value!r} is not a boolean: use true or false (also 1/0, yes/no,"
                " on/off)"
            ) from None

    def number(key: str, default: float, low: float, integer: bool = False) -> float:
        value = get(key)
        if not value:
            return default
        try:
            parsed = int(value) if integer else float(value)
        except ValueError:
            parsed = low - 1
        if not math.isfinite(parsed) or parsed < low or parsed > 86400:
            kind = "a whole number" if integer else "a number"
            raise _fail(f"{PREFIX}{key}={value!r}: expected {kind} from {low:g} to 86400")
        return parsed

    settings = Settings(agent_dir=Path(get("AGENT_DIR") or agent_dir))
    settings.token = get("TOKEN")
    settings.jitconfig = get("JITCONFIG")
    pat = get("PAT")
    app_id, app_key = get("APP_ID"), get("APP_PRIVATE_KEY")
    given = [
        name
        for name, value in (
            ("TOKEN", settings.token),
            ("PAT", pat),
            ("APP_ID", app_id),
            ("JITCONFIG", settings.jitconfig),
        )
        if value
    ]
    if not given:
        raise _fail(
            f"no credential: set one of {PREFIX}TOKEN (registration token), {PREFIX}PAT,"
            f" {PREFIX}APP_ID with {PREFIX}APP_PRIVATE_KEY, or {PREFIX}JITCONFIG"
        )
    if len(given) > 1:
        raise _fail(f"two credentials: {PREFIX}{given[0]} and {PREFIX}{given[1]}; set exactly one")
    if app_key and not app_id:
        raise _fail(f"{PREFIX}APP_PRIVATE_KEY is set without {PREFIX}APP_ID")
    if pat:
        settings.auth = Auth("pat", pat)
    elif app_id:
        if not app_id.isdigit():
            raise _fail(f"{PREFIX}APP_ID={app_id!r}: expected the App's numeric id")
        if not app_key:
            raise _fail(f"{PREFIX}APP_ID is set without {PREFIX}APP_PRIVATE_KEY(_FILE)")
        installation = get("APP_INSTALLATION_ID")
        if installation and not installation.isdigit():
            raise _fail(f"{PREFIX}APP_INSTALLATION_ID={installation!r}: expected a number")
        check_app_key(app_key)
        settings.auth = Auth("app", app_key, app_id, installation)
    settings.jit = flag("JIT", False)
    if settings.jit and settings.auth is None:
        raise _fail(f"{PREFIX}JIT=true needs {PREFIX}PAT or a GitHub App to generate the config")

    scope = get("SCOPE").lower() or None
    if scope is not None and scope not in SCOPES:
        raise _fail(f"{PREFIX}SCOPE={scope!r} is not a scope: use repo, org or enterprise")
    settings.url = get("URL")
    if not settings.url and not settings.jitconfig:
        raise _fail(
            f"{PREFIX}URL is not set: e.g. https://github.com/OWNER/REPO, https://github.com/ORG"
            " or https://github.com/enterprises/ENTERPRISE"
        )
    if settings.url:
        parsed_scope, api_url, settings.url = parse_url(settings.url, scope)
        settings.scope_kind, settings.scope_path = parsed_scope.kind, parsed_scope.path
        settings.api_url = check_api_url(get("API_URL") or api_url)
        if parsed_scope.kind == "enterprise" and settings.auth and settings.auth.kind == "app":
            raise _fail(
                "GitHub Apps cannot register enterprise runners: use a classic PAT with"
                " manage_runners:enterprise, or a registration token"
            )

    labels = [item.strip() for item in get("LABELS").split(",") if item.strip()]
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        raise _fail(f"{PREFIX}LABELS: {bad[0]!r} is not a label (no spaces, at most 256 chars)")
    settings.no_default_labels = flag("NO_DEFAULT_LABELS", False)
    settings.labels = tuple(labels)
    if len(settings.all_labels()) > 100:
        raise _fail(f"{PREFIX}LABELS: at most 100 labels")
    if settings.no_default_labels and not labels:
        raise _fail(f"{PREFIX}NO_DEFAULT_LABELS=true needs {PREFIX}LABELS, or no job can match")
    settings.group = get("GROUP")
    settings.group_id = int(number("GROUP_ID", 1, 1, integer=True))
    if settings.jit and settings.group:
        raise _fail(
            f"{PREFIX}GROUP names a group for config.sh; a JIT runner needs {PREFIX}GROUP_ID"
        )
    if get("GROUP_ID") and not settings.jit:
        raise _fail(f"{PREFIX}GROUP_ID is for JIT runners ({PREFIX}JIT=true); use {PREFIX}GROUP")
    name, prefix = get("NAME"), get("NAME_PREFIX")
    if name and prefix:
        raise _fail(f"set {PREFIX}NAME or {PREFIX}NAME_PREFIX, not both")
    if not name:
        name = f"{prefix or 'ciparity'}-{secrets.token_hex(4)}"
    if not _NAME.match(name):
        raise _fail(
            f"runner name {name!r}: use letters, digits, '.', '_' and '-', at most 64 characters"
        )
    settings.name = name
    settings.workdir = get("WORKDIR") or "_work"
    if any(c in settings.workdir for c in "\n\r\0"):
        raise _fail(f"{PREFIX}WORKDIR is not a path")
    settings.ephemeral = flag("EPHEMERAL", True)
    settings.disable_update = flag("DISABLE_UPDATE", False)
    settings.timeout = number("TIMEOUT", 10.0, 0.1)
    settings.attempts = int(number("ATTEMPTS", 5, 1, integer=True))
    settings.retry_delay = number("RETRY_DELAY", 1.0, 0)
    settings.stop_timeout = number("STOP_TIMEOUT", 20.0, 0)
    settings.delete_secret_files = flag("DELETE_SECRET_FILES", False)
    settings.secret_files = tuple(files)
    if settings.jitconfig and not settings.ephemeral:
        raise _fail(f"a JIT runner is always ephemeral: drop {PREFIX}EPHEMERAL=false")
    return settings


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid`: run.sh (started as a session leader), run-helper.sh and
    the listener (which `set -m` puts in a process group of their own) and a job's processes,
    also those orphaned when run.sh died first. Zombies are gone already: they only wait to be
    reaped by PID 1."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = raw[raw.rfind(")") + 2 :].split()
        if len(fields) > 3 and fields[0] != "Z" and fields[3] == str(sid):
            found.append(int(entry.name))
    return found


def _signal_all(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


@dataclass
class AgentStatus:
    """How the listener ended, as run-helper.sh printed it (or _diag recorded it)."""

    code: int | None = None
    error: str = ""

    def note(self, line: str) -> None:
        """Read one line of run.sh's output (the pump thread calls this)."""
        text = line.strip()
        if "An error occurred:" in text:
            self.error = text[text.index("An error occurred:") :]
        for pattern, code in HELPER_LINES:
            found = pattern.search(text)
            if found:
                self.code = int(found.group(1)) if code == -1 else code

    def read_diag(self, diag: Path, since: float) -> None:
        """The listener's own trace, when run.sh's output said nothing (a quiet run.sh)."""
        try:
            logs = [f for f in diag.glob("Runner_*-utc.log") if f.stat().st_mtime >= since]
        except OSError:
            return
        for log in sorted(logs, key=lambda f: f.stat().st_mtime):
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                done, failed = _DIAG_DONE.search(line), _DIAG_ERROR.match(line)
                if done:
                    self.code = int(done.group(1))
                if failed:
                    self.error = failed.group(1).strip()

    def problem(self) -> str:
        """'' for a listener that ended well (or said nothing), else what went wrong."""
        if self.code in (None, 0):
            return ""
        assert self.code is not None  # nosec B101
        meaning = LISTENER_CODES.get(self.code, "unknown error")
        detail = f": {self.error}" if self.error else ""
        return f"its listener exited with code {self.code} ({meaning}){detail}"


@dataclass
class Runner:
    """One run of the entrypoint: registration, the supervised agent, deregistration."""

    settings: Settings
    environ: Mapping[str, str]
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    redact: Redactor = field(default_factory=Redactor)
    signalled: int = 0
    registered: bool = False
    deregistered: bool = False
    status: AgentStatus = field(default_factory=AgentStatus)
    _child: subprocess.Popen[bytes] | None = None
    _interruptible: bool = False

    def __post_init__(self) -> None:
        self.redact.add(*self.settings.secrets())

    # --- output --------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        self.out.write(self.redact(f"ciparity-runner: {message}") + "\n")
        self.out.flush()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            self.status.note(line)
            self.out.write(self.redact(line))
            self.out.flush()

    # --- the agent -----------------------------------------------------------------------------

    def script(self, name: str) -> Path:
        return self.settings.agent_dir / name

    def child_env(self, **inputs: str) -> dict[str, str]:
        """The environment the agent and its jobs see: no CIPARITY_RUNNER_* setting, no secret."""
        env = {k: v for k, v in self.environ.items() if not k.startswith(PREFIX)}
        env.pop(ARC_JITCONFIG, None)
        # A deprecated agent then exits 7 instead of a 0 that looks like a finished job.
        env["ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE"] = "1"
        for key, value in inputs.items():
            env["ACTIONS_RUNNER_INPUT_" + key.upper()] = value
        return env

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """An agent script in its own session (a Ctrl-C on a terminal reaches only us: we decide
        what the agent gets), its output piped through the redactor."""
        return subprocess.Popen(  # nosec B603
            list(argv),
            cwd=self.settings.agent_dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run_script(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        timeout: float | None = None,
        stop_grace: float | None = None,
    ) -> int:
        """Run config.sh to the end: a signal meanwhile is only noted, it does not cut it short.
        It is killed, with all it started, after `timeout`, or `stop_grace` after a stop."""
        child = self._spawn(argv, env)
        assert child.stdout is not None  # nosec B101
        pump = threading.Thread(target=self._pump, args=(child.stdout,), daemon=True)
        pump.start()
        started, stopped_at = time.monotonic(), 0.0
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = child.wait(timeout=0.1)
                break
            now = time.monotonic()
            if self.signalled and not stopped_at:
                stopped_at = now
            late = timeout is not None and now > started + timeout
            if stop_grace is not None and stopped_at and now > stopped_at + stop_grace:
                late = True
            if late:
                what = " ".join(Path(a).name for a in argv[:2] if not a.startswith("-"))
                self.log(f"{what} takes too long: killing it")
                self._kill_session(child.pid)
                code = child.wait()
                break
        pump.join(timeout=5)
        return code

    def supervise(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        """Run run.sh until it and every process of its session have ended. A stop signal is
        passed on to run.sh; what outlives run.sh gets SIGTERM; whatever still runs the stop
        timeout after the stop is killed, and is waited for."""
        self.status = AgentStatus()
        started = time.time()
        child = self._spawn(argv, env)
        self._child = child
        assert child.stdout is not None  # nosec B101
        pump = threading.Thread(target=self._pump, args=(child.stdout,), daemon=True)
        pump.start()
        if self.signalled:  # a stop arrived while run.sh was being started
            self._forward(self.signalled)
        code = self._wait_for_the_tree(child)
        pump.join(timeout=5)
        self._child = None
        if self.status.code is None:
            self.status.read_diag(self.settings.agent_dir / "_diag", started - 1)
        return code

    def _wait_for_the_tree(self, child: subprocess.Popen[bytes]) -> int:
        deadline = 0.0
        code: int | None = None
        left: list[int] = []
        while True:
            if code is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = child.wait(timeout=0.1)
            else:
                time.sleep(0.1)
            if code is not None:
                survivors = session_members(child.pid)
                if not survivors:
                    return code
                if not left:
                    # Without RUNNER_MANUALLY_TRAP_SIG a signal kills run.sh alone: the rest
                    # must be told too, or `config.sh remove` races a connected listener.
                    self.log(f"run.sh has exited; stopping {len(survivors)} agent process(es) left")
                    _signal_all(survivors, signal.SIGTERM)
                    deadline = deadline or time.monotonic() + self.settings.stop_timeout
                left = survivors
            if self.signalled and not deadline:
                deadline = time.monotonic() + self.settings.stop_timeout
            if deadline and time.monotonic() > deadline:
                self.log(
                    f"the agent still runs {self.settings.stop_timeout:g} s after the stop:"
                    " killing it and everything it started"
                )
                self._kill_session(child.pid)
                return child.wait() if code is None else code

    def _kill_session(self, sid: int) -> None:
        """SIGKILL every process of the session, then wait (KILL_GRACE at most) until none is
        left, so nothing of the agent runs on when the runner is removed."""
        deadline = time.monotonic() + KILL_GRACE
        while True:
            survivors = session_members(sid)
            if not survivors:
                return
            if time.monotonic() > deadline:
                self.log(f"processes {survivors} of the agent survive SIGKILL")
                return
            _signal_all(survivors, signal.SIGKILL)
            time.sleep(0.05)

    def _forward(self, signum: int) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            # To run.sh alone, as when it is PID 1 under ARC: it passes the stop on to the agent.
            child.send_signal(signum)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Note the stop and pass it to run.sh; abort only a wait on GitHub's API. Nothing is
        printed here: the main thread may be in the middle of a write."""
        if not self.signalled:
            self.signalled = signum
        if self._child is not None:
            self._forward(signum)
        elif self._interruptible:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """API calls made before anything is registered: a stop may cut them short."""
        if self.signalled:
            raise Interrupted(self.signalled)
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    # --- lifecycle -----------------------------------------------------------------------------

    def client(self) -> Client:
        """The API client for these settings (a PAT or an App)."""
        s = self.settings
        assert s.auth is not None  # nosec B101
        return Client(
            api_url=s.api_url,
            scope=Scope(s.scope_kind, s.scope_path),
            auth=s.auth,
            redact=self.redact,
            timeout=s.timeout,
            attempts=s.attempts,
            delay=s.retry_delay,
            log=self.log,
        )

    def check_agent(self) -> None:
        """Raise AgentError when the agent's scripts are not there."""
        for name in ("config.sh", "run.sh"):
            path = self.script(name)
            if not os.access(path, os.X_OK):
                raise AgentError(
                    f"no runner agent at {self.settings.agent_dir} ({name} missing or not"
                    " executable): build runner/Dockerfile's self-hosted target"
                )

    def configured(self) -> bool:
        """Whether the agent folder holds a registration (.runner)."""
        return self.script(".runner").exists()

    def main(self) -> int:
        """Register, run and deregister; the exit code."""
        s = self.settings
        self.check_agent()
        if s.mode in ("jit", "jitconfig"):
            return self.run_jit()
        client = self.client() if s.auth is not None else None
        if self.configured():
            self.remove_stale(client)
        with self.interruptible():
            token = s.token or (client.registration_token() if client else "")
        argv = [str(self.script("config.sh")), "--unattended", "--url", s.url, "--name", s.name]
        argv += ["--work", s.workdir]
        if s.labels:  # the agent adds its default labels itself
            argv += ["--labels", ",".join(s.labels)]
        if s.no_default_labels:
            argv.append("--no-default-labels")
        if s.group:
            argv += ["--runnergroup", s.group]
        if s.ephemeral:
            argv.append("--ephemeral")
        if s.disable_update:
            argv.append("--disableupdate")
        try:
            kind = "ephemeral" if s.ephemeral else "persistent"
            self.log(f"registering {s.name} ({kind}) with {s.url}")
            # A stop meanwhile gives it what it gives the agent: the stop timeout and the kill.
            grace = s.stop_timeout + KILL_GRACE
            code = self.run_script(argv, self.child_env(token=token), stop_grace=grace)
            # Even a config.sh cut short may have registered the runner: then it is removed.
            self.registered = code == 0 or self.configured()
            if self.signalled:
                return self.stopped()
            if code != 0:
                raise AgentError(f"config.sh failed with exit code {code}: not registered")
            self.log(f"starting run.sh for {s.name}")
            code = self.supervise([str(self.script("run.sh"))], self.child_env())
            if self.signalled:
                return self.stopped()
            return self.finished(code)
        finally:
            self.deregister(client)

    def finished(self, code: int) -> int:
        """run.sh ended by itself: its exit code, unless the listener says it failed."""
        self.log(f"run.sh exited with code {code}")
        problem = self.status.problem()
        if problem and code == 0:
            raise AgentError(
                f"the runner agent cannot work: {problem}; run.sh exited 0 all the same, as"
                " actions/runner's run-helper.sh does, so this is no finished job"
            )
        return exit_code(code)

    def stopped(self) -> int:
        """The exit after a stop signal."""
        self.log(f"stopped by {signal.Signals(self.signalled).name}")
        return 0

    def run_jit(self) -> int:
        """Run a JIT runner: a given config, or one generated here, which is deleted again
        unless it finished its job (then GitHub removed it)."""
        s = self.settings
        config, runner_id = s.jitconfig, 0
        client = self.client() if not config else None
        done = False
        try:
            if client is not None:
                try:
                    with self.interruptible():
                        runner_id, config = client.jit_config(
                            s.name, s.all_labels(), s.group_id, s.workdir
                        )
                except Interrupted:
                    # The stop may have cut the POST short after GitHub made the runner.
                    found, runner_id = runner_id, 0
                    self._delete_jit(client, found)
                    raise
                self.log(f"generated a JIT config for {s.name} (runner id {runner_id})")
            self.log("starting run.sh with a JIT config: GitHub removes the runner after its job")
            code = self.supervise([str(self.script("run.sh"))], self.child_env(jitconfig=config))
            if self.signalled:
                return self.stopped()
            result = self.finished(code)
            done = result == 0 and not self.configured()
            return result
        finally:
            if client is not None and runner_id and not done:
                self._delete_jit(client, runner_id)

    def _delete_jit(self, client: Client, runner_id: int) -> None:
        """Delete the JIT runner this start generated; by name when a stop cut the POST short
        (GitHub may have made it without our hearing its id)."""
        client.deadline = time.monotonic() + api_budget(self.settings)
        name = self.settings.name
        try:
            if runner_id:
                if client.delete_runner(runner_id):
                    self.log(f"removed {name} (runner id {runner_id})")
            elif client.delete_runner_named(name):
                self.log(f"removed {name}, made by a request the stop cut short")
        except ApiError as exc:
            raise ApiError(f"{exc.message}; remove {name} in GitHub's runner settings") from None

    def remove_stale(self, client: Client | None) -> None:
        """A .runner left by an earlier start of this container: unregister it, or forget it."""
        self.log("found a registration left by an earlier start of this container: removing it")
        try:
            with self.interruptible():
                token = client.remove_token() if client else self.settings.token
            code = self.run_script(
                [str(self.script("config.sh")), "remove"],
                self.child_env(token=token),
                timeout=REMOVE_TIMEOUT,
            )
        except ApiError as exc:
            self.log(f"could not get a remove token: {exc.message}")
            code = 1
        if code != 0:
            self.log(
                "could not remove it (GitHub drops offline runners after a while): forgetting it"
            )
            for name in (".runner", ".credentials", ".credentials_rsaparams"):
                self.script(name).unlink(missing_ok=True)

    def deregister(self, client: Client | None) -> None:
        """`config.sh remove`, at most once, and only for a runner this start registered that
        is still registered; its API calls share one deadline, config.sh has a timeout."""
        if self.deregistered or not self.registered:
            return
        self.deregistered = True
        if not self.configured():
            self.log("the agent has already unregistered itself (ephemeral job done)")
            return
        # Without a PAT or App, the registration token is the only credential: GitHub accepts it
        # for removal while it is valid (one hour).
        if client is not None:
            client.deadline = time.monotonic() + api_budget(self.settings)
        try:
            token = client.remove_token() if client else self.settings.token
        except ApiError as exc:
            raise ApiError(
                f"{exc.message}; {self.settings.name} is still registered: remove it in GitHub's"
                " runner settings"
            ) from None
        code = self.run_script(
            [str(self.script("config.sh")), "remove"],
            self.child_env(token=token),
            timeout=REMOVE_TIMEOUT,
        )
        if code != 0:
            raise AgentError(
                f"config.sh remove failed with exit code {code}: remove {self.settings.name}"
                " in GitHub's runner settings"
            )
        self.log(f"deregistered {self.settings.name}")


def exit_code(code: int) -> int:
    """run.sh's exit code as a process's: killed by signal N (not by us) is 128 + N."""
    return 128 - code if code < 0 else code


def _delete_secret_files(settings: Settings, log: Callable[[str], None]) -> None:
    for path in settings.secret_files:
        try:
            path.unlink()
        except OSError as exc:
            log(f"could not delete {path} after reading it ({exc.strerror})")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    agent_dir = "/home/runner"
    if env.get(ARC_JITCONFIG):
        # Under ARC the controller registered this runner; run.sh reads the config itself.
        run_sh = Path(env.get(PREFIX + "AGENT_DIR") or agent_dir) / "run.sh"
        print("ciparity-runner: JIT config from the environment (ARC): starting run.sh", flush=True)
        try:
            # The agent's own script, by absolute path, with no arguments from outside.
            os.execv(run_sh, [str(run_sh)])  # nosec
        except OSError as exc:
            print(f"ciparity-runner: error: cannot start {run_sh}: {exc.strerror}", file=sys.stderr)
            return 4
    try:
        settings = read_settings(env, agent_dir)
    except CiparityError as exc:
        print(f"ciparity-runner: error: {exc.message}", file=sys.stderr, flush=True)
        return exc.exit_code
    runner = Runner(settings, env)
    if settings.delete_secret_files:
        _delete_secret_files(settings, runner.log)
    previous = {
        sig: signal.signal(sig, runner.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    budget = math.ceil(worst_case_stop(settings))
    # Also the line tests wait for: from here on a stop signal is handled.
    runner.log(f"ready; a stop (SIGTERM) ends within {budget} s: give docker stop -t {budget + 1}")
    try:
        return runner.main()
    except CiparityError as exc:
        print(runner.redact(f"ciparity-runner: error: {exc.message}"), file=sys.stderr, flush=True)
        return exc.exit_code
    except Interrupted:
        return runner.stopped()
    except Exception as exc:  # a bug or an answer nobody expected: still one line, no traceback
        message = f"ciparity-runner: error: unexpected {type(exc).__name__}: {exc}"
        print(runner.redact(message), file=sys.stderr, flush=True)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main_exit() -> None:
    """The `ciparity-runner` console script."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
