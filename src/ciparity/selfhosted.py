"""`invoke runners`: N ephemeral self-hosted runners on one machine.

Each runner is a container of the self-hosted image. Its settings are the host's CIPARITY_RUNNER_*
variables, checked here before any container starts. Credentials never go on a command line or
into `docker inspect`: they are copied into the created container as a file only uid 1001 can read,
which the entrypoint deletes after reading. A runner that finishes its job exits; a fresh
container takes its place, so every job starts clean (so a pool is always ephemeral). Ctrl-C,
SIGTERM or SIGHUP (a closed terminal) stops them all: each entrypoint deregisters its runner
before its container exits, within the stop timeout computed from the settings.
"""

from __future__ import annotations

import contextlib
import io
import math
import secrets
import signal
import sys
import tarfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from ciparity import container, images, proc, runner
from ciparity.config import Config
from ciparity.errors import CiparityError, ConfigError, DockerError, Interrupted
from ciparity.github import LOOPBACK
from ciparity.ownership import Owner

DROP_DIR = ".ciparity"  # under /home/runner, created by `docker cp`
POOL = "ciparity.runners"
RUNNER_UID = 1001
AGENT_LABEL = "ciparity.runner-agent"


@dataclass
class Plan:
    """What every replica is started with."""

    image: str
    env: dict[str, str]  # non-secret settings, passed with -e
    files: dict[str, str]  # CIPARITY_RUNNER_<X> -> secret value, copied in as a file
    pool: str
    prefix: str
    network: str = ""
    pass_env: tuple[str, ...] = ()  # config `env_allow`: more variables the runners see
    stop_timeout: int = 60
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    owner: Owner | None = None  # the `invoke runners` run the replicas belong to


def plan(config: Config, environ: Mapping[str, str], replicas: int, network: str = "") -> Plan:
    """Check the settings as the entrypoint will, and split them into environment and files."""
    if replicas < 1:
        raise ConfigError(f"--replicas {replicas}: expected at least 1")
    settings = runner.read_settings(environ)
    if settings.mode == "jitconfig":
        raise ConfigError(
            "a JIT config registers exactly one runner once: for `invoke runners` use"
            f" {runner.PREFIX}PAT or a GitHub App (with {runner.PREFIX}JIT=true for JIT runners)"
        )
    if not settings.ephemeral:
        raise ConfigError(
            f"{runner.PREFIX}EPHEMERAL=false: `invoke runners` gives every job a fresh container,"
            " so its runners are ephemeral; drop the setting"
        )
    if environ.get(runner.PREFIX + "NAME"):
        raise ConfigError(
            f"{runner.PREFIX}NAME names a single runner: use {runner.PREFIX}NAME_PREFIX here"
        )
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    for name, key in runner.runner_variables(environ).items():
        # Credentials go in as files below; AGENT_DIR is the image's own layout.
        if key.removesuffix("_FILE") not in runner.SECRETS and key != "AGENT_DIR":
            env[name] = environ[name]
    auth = settings.auth
    for key, value in (
        ("TOKEN", settings.token),
        ("PAT", auth.secret if auth and auth.kind == "pat" else ""),
        ("APP_PRIVATE_KEY", auth.secret if auth and auth.kind == "app" else ""),
    ):
        if value:
            files[key] = value
            env[f"{runner.PREFIX}{key}_FILE"] = f"/home/runner/{DROP_DIR}/{key.lower()}"
    env[runner.PREFIX + "DELETE_SECRET_FILES"] = "true"
    prefix = environ.get(runner.PREFIX + "NAME_PREFIX") or "ciparity"
    return Plan(
        image=config.self_hosted_image,
        env=env,
        files=files,
        pool=f"{prefix}-{secrets.token_hex(3)}",
        prefix=prefix,
        network=network,
        pass_env=tuple(name for name in config.env_allow if name in environ),
        # The entrypoint's worst case (its stop timeout, the kill, the API deadline, config.sh
        # remove) and a second for docker itself.
        stop_timeout=math.ceil(runner.worst_case_stop(settings)) + 1,
        owner=config.run,
    )


def secrets_tar(files: Mapping[str, str]) -> bytes:
    """The credentials as a tar for `docker cp -`: .ciparity/<name>, 0400, owned by the runner."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(DROP_DIR)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o700
        folder.uid = folder.gid = RUNNER_UID
        tar.addfile(folder)
        for key, value in files.items():
            data = value.encode()
            info = tarfile.TarInfo(f"{DROP_DIR}/{key.lower()}")
            info.size, info.mode = len(data), 0o400
            info.uid = info.gid = RUNNER_UID
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def spec(p: Plan, index: int) -> container.Spec:
    args = ["--stop-timeout", str(p.stop_timeout)]
    if p.network:
        args += ["--network", p.network]
    return container.Spec(
        image=p.image,
        command=(),
        env=p.env,
        pass_env=p.pass_env,
        labels={POOL: p.pool},
        owner=p.owner,
        name=f"{p.pool}-{index}",
        init=False,  # the image's tini is PID 1
        extra_args=tuple(args) + p.extra_args,
    )


@dataclass
class Pool:
    """The running replicas, started and replaced by `run`, stopped by `stop`."""

    plan: Plan
    docker: str = "docker"
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    started: int = 0
    running: dict[str, container.Container] = field(default_factory=dict)
    codes: list[int] = field(default_factory=list)

    def say(self, message: str) -> None:
        self.out.write(f"runners: {message}\n")
        self.out.flush()

    def start_one(self) -> None:
        """Create a replica, copy the credentials in, start it."""
        self.started += 1
        box = container.Container(spec(self.plan, self.started), self.docker)
        # Recorded before it exists: a signal right after `docker create` must not leak it.
        self.running[box.name] = box
        box.__enter__()
        if self.plan.files:
            copied = proc.run(
                [self.docker, "cp", "-", f"{box.name}:/home/runner"],
                input=secrets_tar(self.plan.files),
            )
            if not copied.ok:
                raise DockerError(
                    f"copying the credentials in failed: {proc.reason(copied.stderr)}"
                )
        proc.run([self.docker, "start", box.name], check=True)
        self.say(f"started {box.name}")

    def exited(self) -> list[str]:
        """Names of this pool's replicas that have exited."""
        found = proc.run(
            [self.docker, "ps", "-a", "--filter", f"label={POOL}={self.plan.pool}"]
            + ["--filter", "status=exited", "--format", "{{.Names}}"]
        )
        if not found.ok:
            raise DockerError(f"docker ps: {proc.reason(found.stderr)}")
        return [name for name in found.stdout.split() if name in self.running]

    def reap(self, name: str) -> int:
        """Report an exited replica (exit code and the end of its log) and remove it."""
        inspected = proc.run([self.docker, "inspect", "--format", "{{.State.ExitCode}}", name])
        code = int(inspected.stdout.strip()) if inspected.stdout.strip().isdigit() else -1
        logs = proc.run([self.docker, "logs", "--tail", "5", name])
        for line in (logs.stdout + logs.stderr).splitlines():
            self.out.write(f"  {name}| {line}\n")
        self.say(f"{name} exited with code {code}")
        self.codes.append(code)
        self.running.pop(name).remove()
        return code

    def run(self, replicas: int, once: bool, poll: float = 1.0) -> None:
        """Keep `replicas` runners up (or, with `once`, wait until the first ones have exited).

        Only a runner that exited 0 (its job done) is replaced. One that failed (an expired
        token, a revoked PAT, GitHub down) is not: restarting it would only fail again, as
        often as we could, against GitHub's API. The pool ends when no runner is left."""
        for _ in range(replicas):
            self.start_one()
        self.say(f"{replicas} runner(s) up; Ctrl-C stops and deregisters them")
        while self.running:
            time.sleep(poll)
            for name in self.exited():
                code = self.reap(name)
                if code != 0:
                    self.say(f"{name} failed: not replaced ({len(self.running)} left)")
                elif not once:
                    self.start_one()

    def stop(self) -> None:
        """Stop every replica at once (SIGTERM, then the stop timeout) and remove it."""
        for name in [n for n, box in self.running.items() if not box.created]:
            del self.running[name]  # interrupted before `docker create`: nothing to stop
        names = list(self.running)
        if not names:
            return
        self.say(f"stopping {len(names)} runner(s); each deregisters before it exits")
        proc.run([self.docker, "stop", "-t", str(self.plan.stop_timeout), *names])
        for name in names:
            self.reap(name)


def check_image(config: Config, url: str) -> None:
    """Refuse an image whose agent is the stand-in (a test double) for a real GitHub."""
    agent = images.inspect_label(config.docker, config.self_hosted_image, AGENT_LABEL)
    host = urllib.parse.urlsplit(url).hostname or ""
    if agent == "standin" and host not in LOOPBACK:
        raise ConfigError(
            f"{config.self_hosted_image} carries the stand-in agent, a test double: build it with"
            " the real one (`CIPARITY_RUNNER_AGENT=download invoke build-runner`, or `local` with"
            " runner/dist/actions-runner.tar.gz)"
        )


@contextlib.contextmanager
def hangup_as_interrupt() -> Iterator[None]:
    """A closed terminal (SIGHUP) stops the pool as Ctrl-C does, instead of killing this
    process and leaving its runners unwatched."""

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # one stop; the cleanup runs to its end
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGHUP, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def run(
    config: Config,
    environ: Mapping[str, str],
    replicas: int,
    once: bool = False,
    network: str = "",
    out: IO[str] | None = None,
) -> int:
    """Run the pool until interrupted (or, with `once`, until its runners exit); the exit code."""
    p = plan(config, environ, replicas, network)
    check_image(config, environ.get(runner.PREFIX + "URL", ""))
    pool = Pool(p, config.docker, out or sys.stdout)
    try:
        with hangup_as_interrupt():
            pool.run(replicas, once)
    except Interrupted:
        pool.stop()
    except CiparityError:
        pool.stop()
        raise
    finally:
        for box in list(pool.running.values()):
            box.remove()
    failed = [code for code in pool.codes if code != 0]
    return failed[0] if failed else 0
