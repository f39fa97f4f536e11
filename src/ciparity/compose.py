"""`invoke ci --parallel`: the checks as compose services (docker/docker-compose.ci.yml) at once."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import IO

from ciparity import checks, container, proc
from ciparity.config import Config
from ciparity.console import Row
from ciparity.errors import CiparityError, DockerError

COMPOSE_FILE = "docker/docker-compose.ci.yml"
# The package carries the same file (a link to docker/'s) for repositories that have none.
PACKAGED_FILE = Path(__file__).with_name("docker-compose.ci.yml")


def compose_file(config: Config) -> Path:
    own = config.root / COMPOSE_FILE
    return own if own.exists() else PACKAGED_FILE


def compose_env(config: Config, project: str, options: checks.Options) -> dict[str, str]:
    """The variables the compose file reads."""
    socket = container.docker_socket() or "/var/run/docker.sock"
    gid = container.socket_gid(socket)
    return {
        **os.environ,
        "CIPARITY_PROJECT": project,
        "CIPARITY_IMAGE": config.image,
        "CIPARITY_UID": str(os.getuid()),
        "CIPARITY_GID": str(os.getgid()),
        "CIPARITY_WORKSPACE": str(config.root),
        "CIPARITY_REPORTS_DIR": str(config.reports_dir),
        "CIPARITY_DOCKER_SOCKET": socket,
        "CIPARITY_DOCKER_GID": str(gid if gid is not None else 0),
        "CIPARITY_MARKERS": options.markers,
        "CIPARITY_PYTEST_ARGS": shlex.join(options.pytest_args),
        **config.run.env(),
    }


def _seconds(started: str, finished: str) -> float:
    try:
        start = datetime.fromisoformat(started[:26].rstrip("Z"))
        end = datetime.fromisoformat(finished[:26].rstrip("Z"))
    except ValueError:
        return 0.0
    return max((end - start).total_seconds(), 0.0)


def parse_ps(text: str) -> dict[str, tuple[str, int]]:
    """service -> (container name, exit code) from `compose ps -a --format json` (either form)."""
    text = text.strip()
    if not text:
        return {}
    items = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines()]
    return {item["Service"]: (item["Name"], int(item.get("ExitCode", 0))) for item in items}


def run_checks(
    config: Config, mode: str, options: checks.Options, out: IO[str] | None = None
) -> list[Row]:
    """Run every check as a compose service at once; rows for the summary table."""
    if mode != "bind":
        raise CiparityError(
            "ci --parallel needs a daemon that sees this checkout (bind mode);"
            " run `invoke ci` without --parallel here"
        )
    config.reports_dir.mkdir(parents=True, exist_ok=True)  # or the daemon makes it, as root
    project = f"ciparity-{secrets.token_hex(4)}"
    env = compose_env(config, project, options)
    stream = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="ciparity-compose-") as tmp:
        override = Path(tmp) / "environment.json"
        override.write_text(
            json.dumps(environment_override(config, env, os.environ)), encoding="utf-8"
        )
        files = ["-f", str(compose_file(config)), "-f", str(override)]
        return _up(config, [config.docker, "compose", *files, "-p", project], env, stream)


def environment_override(
    config: Config, environ: Mapping[str, str], host: Mapping[str, str]
) -> dict[str, object]:
    """A compose override giving every check the environment a serial check gets: the fixed
    variables (bind mode), the markers, and the host variables a serial check gets, by name
    (`environ` is compose's environment, `host` the invoking process's)."""
    handed = ("CIPARITY_MARKERS", "CIPARITY_PYTEST_ARGS")
    fixed = {**checks.check_env(config, "bind"), **{k: environ.get(k, "") for k in handed}}
    names = [name for name in checks.pass_env(config, host) if name not in fixed]
    listed = [f"{key}={value}" for key, value in sorted(fixed.items())] + names
    return {"services": {name: {"environment": listed} for name in checks.CHECKS}}


def _up(config: Config, base: list[str], env: dict[str, str], stream: IO[str]) -> list[Row]:
    try:
        up = proc.run([*base, "up", "--no-color"], env=env, cwd=config.root, tee=stream)
        ps = proc.run([*base, "ps", "-a", "--format", "json"], env=env, cwd=config.root)
        if not ps.ok:
            raise DockerError(f"docker compose ps failed: {proc.reason(ps.stderr)}")
        states = parse_ps(ps.stdout)
        missing = [name for name in checks.CHECKS if name not in states]
        if missing:
            raise DockerError(
                f"docker compose up did not start {', '.join(missing)}: {proc.reason(up.stdout)}"
            )
        return [_row(config, name, *states[name]) for name in checks.CHECKS]
    finally:
        proc.run([*base, "down", "-v", "--remove-orphans"], env=env, cwd=config.root)


def _row(config: Config, name: str, box: str, code: int) -> Row:
    times = proc.run(
        [config.docker, "inspect", "--format", "{{.State.StartedAt}} {{.State.FinishedAt}}", box]
    )
    parts = times.stdout.split()
    seconds = _seconds(parts[0], parts[1]) if times.ok and len(parts) == 2 else 0.0
    if code == 0:
        return Row(name, "passed", seconds)
    return Row(name, f"FAILED (exit {code})", seconds, str(code))
