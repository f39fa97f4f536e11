"""Shared fakes for the unit tests: a recorder standing in for `ciparity.proc.run`, a sample
checkout, and an environment without CI or ciparity variables. Nothing here talks to Docker.

Every process a test starts must be gone when it ends: each test process marks its environment
(MARK), children inherit it, and an autouse check fails a test that leaves one running."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import pytest

from ciparity import config, proc
from ciparity.errors import CiparityError

REPO = Path(__file__).resolve().parents[2]
# The project's version, read like the code reads it: no test file pins a version of its own.
PY = config.read_python_version(REPO)
# Host variables that would leak into configs and container argv if a test inherited them.
LEAKY_PREFIXES = ("CIPARITY_", "GITHUB_", "RUNNER_")
LEAKY_NAMES = ("CI", "DOCKER_HOST", "DOCKER_CONFIG", "PYENV_ROOT", "PYENV_VERSION")
# Inherited by everything this test process starts (no prefix a test environment filters out).
MARK = "CIPARITYTEST_STARTED_BY"
os.environ[MARK] = str(os.getpid())


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def live_pids() -> list[int]:
    """Every process that is not a zombie."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _stat(int(entry.name))[0] != "Z":
                    found.append(int(entry.name))
            except (OSError, IndexError):
                pass  # gone meanwhile
    return found


def session_pids(sid: int) -> list[int]:
    """The live processes of session `sid` (what a process started with start_new_session
    and everything it started, whichever process group they are in)."""
    found = []
    for pid in live_pids():
        try:
            if int(_stat(pid)[3]) == sid:
                found.append(pid)
        except (OSError, IndexError, ValueError):
            pass
    return found


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid`."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def started_here() -> list[int]:
    """Live processes this test process started (they carry its MARK), itself excluded."""
    needle = f"{MARK}={os.getpid()}".encode()
    found = []
    for pid in live_pids():
        if pid == os.getpid():
            continue
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            pass  # another user's, or gone
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Fail a test that leaves a process it started running (after a few seconds' grace for
    one that is exiting), and end those processes so the next test starts clean."""
    yield
    deadline = time.monotonic() + 3
    left = started_here()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = started_here()
    if left:
        described = [f"{pid} {_command(pid)}" for pid in left]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail(f"the test left processes running: {described}", pytrace=False)


@dataclass
class Call:
    """One recorded `proc.run` call."""

    argv: list[str]
    check: bool = False
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    input: str | bytes | None = None
    timeout: float | None = None
    tee: IO[str] | None = None


Responder = Callable[[Call], proc.Result]


def result(
    argv: Sequence[str] = (),
    returncode: int = 0,
    stdout: str = "",
    stderr: str = "",
    raw: bytes = b"",
) -> proc.Result:
    """A `proc.Result` whose raw bytes default to the encoded stdout, as the real one's do."""
    return proc.Result(tuple(argv), returncode, stdout, stderr, raw or stdout.encode())


class FakeRun:
    """Stands in for `proc.run`: answers by the longest registered argv prefix, records calls.

    An argv matching no rule succeeds with no output. With `check=True` a failing answer raises
    the same `CiparityError` the real helper raises; with `tee` the output is copied there.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._rules: dict[tuple[str, ...], Responder] = {}

    def on(
        self,
        *prefix: str,
        returncode: int = 0,
        stdout: str = "",
        stderr: str = "",
        raw: bytes = b"",
        respond: Responder | None = None,
    ) -> None:
        if respond is None:

            def respond(call: Call) -> proc.Result:
                return result(call.argv, returncode, stdout, stderr, raw)

        self._rules[tuple(prefix)] = respond

    def __call__(
        self,
        argv: Sequence[Any],
        *,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        input: str | bytes | None = None,
        timeout: float | None = None,
        tee: IO[str] | None = None,
    ) -> proc.Result:
        call = Call(
            [str(a) for a in argv],
            check,
            env,
            None if cwd is None else str(cwd),
            input,
            timeout,
            tee,
        )
        self.calls.append(call)
        matches = [p for p in self._rules if tuple(call.argv[: len(p)]) == p]
        if matches:
            answer = self._rules[max(matches, key=len)](call)
        else:
            answer = result(call.argv)
        if tee is not None and answer.stdout:
            tee.write(answer.stdout)
        if check and not answer.ok:
            why = proc.reason(answer.stderr or answer.stdout)
            raise CiparityError(f"{proc.quote(call.argv)} failed: {why}")
        return answer

    @property
    def argvs(self) -> list[list[str]]:
        return [c.argv for c in self.calls]


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    """`proc.run` replaced by a recorder (the modules call it as `proc.run`)."""
    fake = FakeRun()
    monkeypatch.setattr(proc, "run", fake)
    return fake


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CI, GitHub, runner, ciparity or docker variables from the host running the tests."""
    for name in list(os.environ):
        if name.startswith(LEAKY_PREFIXES) or name in LEAKY_NAMES:
            monkeypatch.delenv(name)
    yield


def write_checkout(root: Path, version: str = PY, pyproject: str = "") -> Path:
    """A minimal checkout: .python-version, src/demo, tests/, tasks.py and maybe pyproject.toml."""
    (root / "src" / "demo").mkdir(parents=True)
    (root / "src" / "demo" / "__init__.py").write_text("", encoding="utf-8")
    (root / "tests").mkdir()
    (root / "tasks.py").write_text("", encoding="utf-8")
    (root / ".python-version").write_text(version + "\n", encoding="utf-8")
    if pyproject:
        (root / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return root.resolve()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A sample checkout under tmp_path (resolved, as `config.load` resolves it)."""
    return write_checkout(tmp_path / "checkout")


@pytest.fixture
def make_config(checkout: Path) -> Callable[..., config.Config]:
    """The configuration of `checkout`, with task-flag overrides and no environment layer."""

    def make(**overrides: Any) -> config.Config:
        return config.load(checkout, overrides, environ={})

    return make


def fake_github_module() -> ModuleType:
    """tests/fixtures/fake_github.py as a module (tests/fixtures is no package, not on sys.path)."""
    if "fake_github" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "fixtures" / "fake_github.py"
        spec = importlib.util.spec_from_file_location("fake_github", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_github"] = module
        spec.loader.exec_module(module)
    return sys.modules["fake_github"]


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    """A GitHub App's RSA key pair (private, public) in PEM, as the entrypoint and fake API use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public
