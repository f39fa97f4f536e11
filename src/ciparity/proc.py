"""The one subprocess helper: argv lists, optional live output, signals turned into exceptions."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal

# Every call below passes an argv list, never a shell string.
import subprocess  # nosec B404
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from ciparity.errors import CiparityError, DockerError, Interrupted


class Sink(Protocol):
    """Where live output goes: a text stream, or anything with write and flush."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


@dataclass(frozen=True)
class Result:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    raw: bytes = b""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def quote(argv: Sequence[str]) -> str:
    """The argv as a line a person can paste into a shell."""
    return shlex.join(argv)


def _missing(argv: Sequence[str]) -> CiparityError:
    if argv[0] == "docker":
        return DockerError("the docker CLI is not on PATH: install Docker Engine or Docker Desktop")
    return CiparityError(f"{argv[0]} is not installed or not on PATH")


def run(
    argv: Sequence[str],
    *,
    check: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = None,
    tee: Sink | None = None,
) -> Result:
    """Run argv and capture its output.

    With `tee`, stdout and stderr are merged and copied line by line to that stream as they
    arrive (progress for long work) while still being captured.
    """
    args = tuple(str(a) for a in argv)
    full_env = dict(os.environ) if env is None else dict(env)
    if cwd is not None and not os.path.isdir(cwd):
        raise CiparityError(f"folder {cwd} does not exist")
    try:
        if tee is not None:
            result = _run_tee(args, full_env, cwd, tee, timeout)
            if check and not result.ok:
                raise CiparityError(f"{quote(args)} failed: {reason(result.stdout)}")
            return result
        # Argv list, no shell.
        completed = subprocess.run(  # nosec B603
            args,
            env=full_env,
            cwd=cwd,
            input=input.encode() if isinstance(input, str) else input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise _missing(args) from exc
    except OSError as exc:
        raise CiparityError(f"cannot run {args[0]}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise CiparityError(
            f"{args[0]} did not finish within {timeout:.0f} s: {quote(args)}"
        ) from exc
    result = Result(
        args,
        completed.returncode,
        completed.stdout.decode(errors="replace"),
        completed.stderr.decode(errors="replace"),
        completed.stdout,
    )
    if check and not result.ok:
        raise CiparityError(f"{quote(args)} failed: {reason(result.stderr or result.stdout)}")
    return result


def _run_tee(
    args: tuple[str, ...],
    env: dict[str, str],
    cwd: str | os.PathLike[str] | None,
    tee: Sink,
    timeout: float | None,
) -> Result:
    lines: list[str] = []
    # Argv list, no shell.
    with subprocess.Popen(  # nosec B603
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        # The timer kills a command that hangs without printing, which the read loop cannot see.
        timer = threading.Timer(timeout, process.kill) if timeout else None
        if timer:
            timer.start()
        try:
            # Set by stdout=PIPE.
            assert process.stdout is not None  # nosec B101
            for line in process.stdout:
                lines.append(line)
                tee.write(line)
                tee.flush()
            process.wait()
            if timer and not timer.is_alive():
                raise subprocess.TimeoutExpired(args, timeout or 0)
        except BaseException:
            # TERM first so a child such as mmdebstrap can undo its own mounts and temp dirs.
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            raise
        finally:
            if timer:
                timer.cancel()
    return Result(args, process.returncode, "".join(lines), "")


def run_interactive(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run argv attached to this terminal (stdio inherited); return its exit code."""
    args = [str(a) for a in argv]
    try:
        return subprocess.call(
            args, env=dict(os.environ) if env is None else dict(env)
        )  # nosec B603
    except FileNotFoundError as exc:
        raise _missing(args) from exc


def reason(text: str) -> str:
    """The last non-empty line of an error output: where CLIs put the reason."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted` so `finally` blocks clean up before exiting."""

    def handler(signum: int, frame: FrameType | None) -> None:
        # A second signal during cleanup must not abort the cleanup itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def eprint(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr, flush=True)
