"""What a job container under `invoke act-ci` gets from this host, as act flags.

- The host's CA trust: the bundle (config `ca_bundle`, else the file PIP_CERT, SSL_CERT_FILE or
  REQUESTS_CA_BUNDLE names, else the system bundle) mounted read-only, with the variables TLS
  clients read pointing at it; never baked into an image.
- The host's proxy variables, through a private env file (a proxy URL may carry a password, so
  never on a command line), with loopback added to NO_PROXY so the cache server stays direct.
- act's cache server on loopback (jobs run with --network host), its storage persistent per
  checkout in the user's cache folder, so a second run restores what the first saved.
- Artifacts: act's artifact server on loopback where the real upload/download-artifact code is
  available, else a local double (`artifact_double.py`), both landing in reports/act/artifacts/.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ciparity import actions_mirror, images
from ciparity.cache_relay import CacheRelay
from ciparity.config import Config
from ciparity.errors import ConfigError

LOOPBACK = "127.0.0.1"
# Where the host's CA bundle appears inside a job (read-only), and who is told about it.
CA_IN_JOB = "/etc/ciparity/host-ca.pem"
CA_VARS = (
    "SSL_CERT_FILE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)
# Host variables naming a CA bundle, in the order they are consulted after `ca_bundle`.
CA_SOURCES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ARTIFACT_ACTIONS = {"actions/upload-artifact": "upload", "actions/download-artifact": "download"}
DOUBLE_SCRIPT = Path(__file__).with_name("artifact_double.py")
# The composite action act runs in place of upload-artifact / download-artifact (v4 inputs).
DOUBLE_ACTION = """name: {repo} (ciparity local double)
description: Stands in for {repo} under invoke act-ci; artifacts go to reports/act/artifacts/
inputs:
{inputs}
outputs:
{outputs}
runs:
  using: composite
  steps:
    - shell: bash
      env:
{env}
      run: python3 "$GITHUB_ACTION_PATH/artifact_double.py" {verb}
"""
DOUBLE_INPUTS = {
    "upload": {
        "name": "artifact",
        "path": "",
        "if-no-files-found": "warn",
        "retention-days": "0",
        "compression-level": "6",
        "overwrite": "false",
        "include-hidden-files": "false",
    },
    "download": {
        "name": "",
        "path": "",
        "pattern": "",
        "merge-multiple": "false",
        "github-token": "",
        "repository": "",
        "run-id": "",
    },
}
DOUBLE_OUTPUTS = {
    "upload": ("artifact-id", "artifact-url", "artifact-digest"),
    "download": ("download-path",),
}


@dataclass(frozen=True)
class JobHost:
    """act flags for one run, the docker options they need, the run's artifact folder, the
    local doubles of the artifact actions (`OWNER/REPO@REF` -> folder, for the action mirror
    to use where it lacks the real code), and the cache relay serving while act runs."""

    flags: tuple[str, ...]
    container_options: str
    artifacts: Path
    doubles: dict[str, Path] = field(default_factory=dict)
    relay: CacheRelay | None = None

    def artifact_flags(self, real: Collection[str]) -> list[str]:
        """act's artifact server on loopback, if the real code of an artifact action runs
        (`real`: the `uses:` the action mirror resolved); else nothing, the doubles serve."""
        if not any(text.split("@", 1)[0] in ARTIFACT_ACTIONS for text in real):
            return []
        server = self.artifacts.parent / "artifact-server"
        server.mkdir(exist_ok=True)
        flags = ["--artifact-server-path", str(server), "--artifact-server-addr", LOOPBACK]
        return flags + ["--artifact-server-port", str(_free_port())]

    def close(self) -> None:
        """Stop what this run started on the host (the cache relay)."""
        if self.relay is not None:
            self.relay.close()


def _readable(path: Path, where: str) -> Path:
    """`path` if it is a readable file, else one line naming where it came from."""
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except IsADirectoryError:
        raise ConfigError(f"{where}: CA bundle {path} is a folder, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read CA bundle {path}: {exc.strerror}") from None
    if ":" in str(path):
        raise ConfigError(
            f"{where}: CA bundle path {path} contains ':', which docker -v cannot mount"
        )
    return path.resolve()


def find_ca_bundle(config: Config, environ: Mapping[str, str]) -> Path | None:
    """The host's CA bundle for jobs: `ca_bundle`, else PIP_CERT/SSL_CERT_FILE/
    REQUESTS_CA_BUNDLE, else the system bundle; None when the host has none."""
    if config.ca_bundle:
        path = Path(config.ca_bundle)
        return _readable(path if path.is_absolute() else config.root / path, "ca_bundle")
    for name in CA_SOURCES:
        if environ.get(name):
            return _readable(Path(environ[name]), name)
    return SYSTEM_BUNDLE.resolve() if SYSTEM_BUNDLE.is_file() else None


@dataclass(frozen=True)
class ShellSettings:
    """The host's CA and proxy for `invoke shell --job`, as a job under act-ci gets them."""

    env: dict[str, str]
    pass_env: tuple[str, ...]  # passed by name: proxy URLs stay off the command line
    args: tuple[str, ...]


def shell_settings(config: Config, environ: Mapping[str, str]) -> ShellSettings:
    """The CA mount and variables, and the proxy variables, a job's shell should see."""
    bundle = find_ca_bundle(config, environ)
    env = {name: CA_IN_JOB for name in CA_VARS} if bundle else {}
    args = ("-v", f"{bundle}:{CA_IN_JOB}:ro") if bundle else ()
    proxies = proxy_env(environ)
    # Loopback entries added to NO_PROXY are values of our own: set, not passed by name.
    env.update({k: v for k, v in proxies.items() if k.lower() == "no_proxy"})
    names = tuple(k for k in proxies if k.lower() != "no_proxy")
    return ShellSettings(env, names, args)


def proxy_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The host's proxy variables for jobs; loopback is added to NO_PROXY/no_proxy when a
    proxy is set, so the cache and artifact servers on 127.0.0.1 are reached directly."""
    found = {name: environ[name] for name in images.PROXY_VARS if environ.get(name)}
    if not any("no_proxy" not in name.lower() for name in found):
        return {}  # NO_PROXY alone means nothing without a proxy
    for name in ("NO_PROXY", "no_proxy"):
        entries = [e for e in found.get(name, "").split(",") if e.strip()]
        entries += [h for h in (LOOPBACK, "localhost") if h not in entries]
        found[name] = ",".join(entries)
    return found


def cache_dir(config: Config, environ: Mapping[str, str]) -> Path:
    """Where act's cache server keeps this checkout's caches: the user's cache folder, one
    folder per checkout (named and marked with the checkout's path)."""
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(str(config.root).encode()).hexdigest()[:12]
    return base / "ciparity" / "act-cache" / f"{config.root.name}-{digest}"


def _prepare_cache(folder: Path, root: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # A folder carries no Docker label: this file says whose cache it is, for a person or a clean.
    (folder / "ciparity-checkout").write_text(f"{root}\n", encoding="utf-8")


def flag_values(args: Sequence[str], flag: str) -> list[str]:
    """The values `flag` is given in act arguments (`--flag value` or `--flag=value`)."""
    found = []
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith(flag + "="):
            found.append(arg.partition("=")[2])
    return found


def _env_file_sources(snap: Path, args: Sequence[str]) -> list[Path]:
    """The env file act would read (its default `.env` in the snapshot, or the arguments'
    `--env-file`), which our own --env-file would otherwise replace."""
    chosen = [snap / ".env", *(snap / value for value in flag_values(args, "--env-file"))][-1]
    return [chosen] if chosen.is_file() else []


def _write_env_file(path: Path, values: Mapping[str, str], sources: Iterable[Path]) -> None:
    lines = [s.read_text(encoding="utf-8", errors="replace").rstrip("\n") for s in sources]
    lines += [f"{key}={value}" for key, value in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def write_double(repo: str, dest: Path) -> Path:
    """The local double of upload-artifact or download-artifact, as an action folder."""
    verb = ARTIFACT_ACTIONS[repo]
    dest.mkdir(parents=True, exist_ok=True)
    inputs = DOUBLE_INPUTS[verb]
    text = DOUBLE_ACTION.format(
        repo=repo,
        verb=verb,
        inputs="\n".join(
            f"  {k}:\n    required: false\n    default: {v!r}" for k, v in inputs.items()
        ),
        outputs="\n".join(
            f"  {k}:\n    value: ${{{{ steps.double.outputs.{k} }}}}" for k in DOUBLE_OUTPUTS[verb]
        ),
        env="\n".join(
            f"        INPUT_{k.upper().replace('-', '_')}: ${{{{ inputs['{k}'] }}}}" for k in inputs
        ),
    )
    text = text.replace("    - shell: bash\n", "    - id: double\n      shell: bash\n")
    (dest / "action.yml").write_text(text, encoding="utf-8")
    shutil.copy2(DOUBLE_SCRIPT, dest / "artifact_double.py")
    return dest


def local_repositories(args: Sequence[str]) -> set[str]:
    """The `OWNER/REPO@REF` keys the arguments (the repository's .actrc among them) map with
    --local-repository: its own choice of action code, which act-ci's must not replace."""
    return {value.split("=", 1)[0].strip() for value in flag_values(args, "--local-repository")}


def without_overridden(flags: Sequence[str], keys: Collection[str]) -> list[str]:
    """`flags` less the --local-repository pairs whose action `keys` holds."""
    kept: list[str] = []
    pairs = list(zip(flags[::2], flags[1::2]))
    for flag, value in pairs:
        if flag == "--local-repository" and value.split("=", 1)[0] in keys:
            continue
        kept += [flag, value]
    return kept


def artifact_actions(actions: Iterable[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(owner/repo, ref) of the upload/download-artifact actions among `remote_actions`."""
    found = {
        (repo, ref): None for repo, sub, ref in actions if repo in ARTIFACT_ACTIONS and not sub
    }
    return list(found)


def remote_uses(snap: Path, workflows: Sequence[Path]) -> list[tuple[str, str, str]]:
    """(owner/repo, sub/path, ref) of the remote actions the run's workflows use."""
    return [(u.repo, u.path, u.ref) for u in actions_mirror.find_uses(snap, workflows)]


def prepare(
    config: Config,
    snap: Path,
    run_dir: Path,
    actions: Sequence[tuple[str, str, str]],
    args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> JobHost:
    """The act flags giving this run's jobs the host's CA, proxy, cache and artifacts.

    `actions` are the workflows' remote actions (`remote_uses`): each upload/download-artifact
    ref gets a local double, which the action mirror uses where it lacks the real code, unless
    `args` (ciparity's act options and the repository's .actrc) name code of their own.
    Raises ConfigError (before anything is created) for an unreadable CA bundle.
    """
    environ = os.environ if environ is None else environ
    bundle = find_ca_bundle(config, environ)
    run_dir.mkdir(parents=True)
    artifacts = run_dir / "artifacts"
    artifacts.mkdir()
    artifacts.chmod(0o777)  # the job's user (uid 1001) writes here; the run's folder is private
    cache = cache_dir(config, environ)
    _prepare_cache(cache, config.root)
    options = [f"-v {shlex.quote(f'{artifacts}:{artifacts}')}"]
    flags: list[str] = []
    if bundle is not None:
        options.append(f"-v {shlex.quote(f'{bundle}:{CA_IN_JOB}:ro')}")
        for name in CA_VARS:
            flags += ["--env", f"{name}={CA_IN_JOB}"]
    flags += ["--env", f"CIPARITY_ARTIFACTS={artifacts}"]
    proxies = proxy_env(environ)
    if proxies:
        env_file = run_dir / "job.env"
        _write_env_file(env_file, proxies, _env_file_sources(snap, args))
        flags += ["--env-file", str(env_file)]
    overridden = local_repositories(args)
    doubles = {
        f"{repo}@{ref}": write_double(
            repo, run_dir / "doubles" / f"{repo.replace('/', '__')}@{ref}"
        )
        for repo, ref in artifact_actions(actions)
        if f"{repo}@{ref}" not in overridden
    }
    # Jobs reach act's cache server through the relay, which gives keys back as saved.
    act_port = _free_port()
    relay = CacheRelay(act_port, cache / "ciparity-key-spellings.json").start()
    flags += ["--cache-server-addr", LOOPBACK, "--cache-server-port", str(act_port)]
    flags += ["--cache-server-external-url", relay.url, "--cache-server-path", str(cache)]
    return JobHost(tuple(flags), " ".join(options), artifacts, doubles, relay)


def collect_artifacts(host: JobHost, dest: Path) -> list[str]:
    """Copy the run's artifacts to `dest/NAME/` (owned by this user); the names copied."""
    names: list[str] = []
    sources = (
        [p for p in sorted(host.artifacts.iterdir()) if p.is_dir()]
        if host.artifacts.is_dir()
        else []
    )
    server = host.artifacts.parent / "artifact-server"
    if server.is_dir():  # act's artifact server keeps RUN_ID/NAME/
        sources += [
            p
            for run in sorted(server.iterdir())
            if run.is_dir()
            for p in run.iterdir()
            if p.is_dir()
        ]
    for source in sources:
        target = dest / source.name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        names.append(source.name)
    return names
