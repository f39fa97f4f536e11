"""The container layer: the one place that turns "run this in that image on this checkout" into
docker calls.

A `Container` owns one container's whole life, as a context manager: `docker create` on entry,
`docker rm -f` on exit whatever happened (success, failure, Ctrl-C, SIGTERM). The checkout reaches
the container in one of two ways, chosen by `probe_workspace_mode`:

- bind: the daemon sees the host path, so the checkout is bind-mounted read-only at the SAME path
  (nested `docker run -v "$PWD":...` then means the same folder), with only the output folders
  (reports/) writable;
- copy: the daemon does not see the path (Docker-outside-of-Docker, a remote DOCKER_HOST, a job
  container), so the checkout is streamed in with `docker cp` and the outputs streamed back out.

The container runs as the invoking user's uid:gid, so everything it writes belongs to that user.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import secrets
import socket
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from ciparity import ownership, proc
from ciparity.errors import DockerError
from ciparity.ownership import Owner

MANAGED = "ciparity.managed"
ENV_PREFIXES = ("GITHUB_", "RUNNER_")
ENV_NAMES = ("CI",)
# Never copied into a container: version control, virtualenvs, caches and our own outputs.
COPY_EXCLUDES = frozenset(
    {".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".cache", ".tox"}
)


def allowed_env(environ: Mapping[str, str], extra: Sequence[str] = ()) -> list[str]:
    """Names of the host variables that may reach a container: CI, GITHUB_*, RUNNER_*, `extra`."""
    names = [
        name
        for name in environ
        if name in ENV_NAMES or name in extra or name.startswith(ENV_PREFIXES)
    ]
    return sorted(names)


def docker_socket(environ: Mapping[str, str] | None = None) -> str | None:
    """The host path of the daemon's unix socket, or None for a remote (tcp/ssh) daemon."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "")
    if not host:
        return "/var/run/docker.sock"
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return None


def socket_gid(path: str | None = None) -> int | None:
    """The group owning the daemon's socket (what a container user needs to talk to it)."""
    path = path or docker_socket()
    try:
        return os.stat(path).st_gid if path else None
    except OSError:
        return None


def current_user() -> str:
    """uid:gid of the invoking user, which every container runs as."""
    return f"{os.getuid()}:{os.getgid()}"


@dataclass(frozen=True)
class Workspace:
    """A host checkout as a container sees it: at the same absolute path, in bind or copy mode."""

    host: Path
    mode: str
    # Absolute host folders the run may write (reports/): writable at the same path inside.
    outputs: tuple[Path, ...] = ()
    excludes: frozenset[str] = COPY_EXCLUDES

    @property
    def path(self) -> str:
        return str(self.host)


@dataclass(frozen=True)
class Spec:
    """Everything that defines one container run; `create_argv` turns it into docker flags."""

    image: str
    command: tuple[str, ...]
    workspace: Workspace | None = None
    user: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    socket: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    interactive: bool = False
    name: str = ""
    extra_args: tuple[str, ...] = ()
    init: bool = True  # docker's init as PID 1; off for images that bring their own
    owner: Owner | None = None  # the run it belongs to: its labels go on the container

    def with_name(self) -> Spec:
        return (
            self
            if self.name
            else dataclasses.replace(self, name=f"ciparity-{secrets.token_hex(6)}")
        )


def _flags(spec: Spec) -> list[str]:
    flags = (["--init"] if spec.init else []) + ["--label", f"{MANAGED}=1"]
    labels = {**(spec.owner.labels() if spec.owner else {}), **spec.labels}
    for key, value in sorted(labels.items()):
        flags += ["--label", f"{key}={value}"]
    if spec.user:
        flags += ["--user", spec.user]
    if spec.socket:
        flags += ["-v", f"{spec.socket}:/var/run/docker.sock"]
        gid = socket_gid(spec.socket)
        # A missing socket is doctor's to report; the run then fails with its own error.
        flags += ["--group-add", str(gid)] if gid is not None else []
    ws = spec.workspace
    if ws is not None:
        if ws.mode == "bind":
            flags += ["-v", f"{ws.path}:{ws.path}:ro"]
            for out in ws.outputs:
                flags += ["-v", f"{out}:{out}"]
        flags += ["-w", ws.path]
    for key, value in sorted(spec.env.items()):
        flags += ["-e", f"{key}={value}"]
    for name in spec.pass_env:
        flags += ["-e", name]  # value read from the CLI's environment: never on a command line
    if spec.interactive:
        flags += ["-i", "-t"]
    return flags + list(spec.extra_args)


def create_argv(spec: Spec, docker: str = "docker") -> list[str]:
    """The `docker create` command for `spec`."""
    return [docker, "create", "--name", spec.name, *_flags(spec), spec.image, *spec.command]


def run_argv(spec: Spec, docker: str = "docker") -> list[str]:
    """The equivalent one-line `docker run`, for a person to paste (bind mode only)."""
    return [docker, "run", "--rm", *_flags(spec), spec.image, *spec.command]


def _tar_workspace(ws: Workspace, uid: int, gid: int) -> bytes:
    """The checkout as a tar whose paths are absolute-minus-slash and owned by uid:gid."""
    buffer = io.BytesIO()
    skip = set(ws.outputs)
    root = ws.host
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
            return info

        tar.add(root, arcname=ws.path.lstrip("/"), recursive=False, filter=owned)
        for path in _walk(root, ws.excludes, skip):
            arcname = ws.path.lstrip("/") + "/" + path.relative_to(root).as_posix()
            tar.add(path, arcname=arcname, recursive=False, filter=owned)
        for out in ws.outputs:
            # `docker cp` gives copied files to root; a sticky world-writable outputs folder lets
            # the container's user (any uid) write its reports there.
            info = owned(tarfile.TarInfo(str(out).lstrip("/")))
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
    return buffer.getvalue()


def _walk(root: Path, excludes: frozenset[str], skip: set[Path]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in excludes and here / d not in skip)
        for name in dirnames:
            yield here / name
        for name in sorted(filenames):
            yield here / name


def extract_owned(data: bytes, dest: Path) -> None:
    """Unpack a `docker cp` tar into dest as the invoking user, refusing unsafe members."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            # The top entry is the copied folder itself; its contents go into dest.
            parts = member.name.split("/", 1)
            if len(parts) == 1:
                continue
            member.name = parts[1]
            if member.issym() or member.islnk():
                continue
            try:
                tar.extract(member, dest, set_attrs=False, filter="data")
            except tarfile.FilterError as exc:
                raise DockerError(f"refusing an unsafe path from the container: {exc}") from exc
            if member.isfile():
                os.chmod(dest / member.name, 0o644)


class Container:
    """One container's life. Use as `with Container(spec) as c: c.copy_in(); c.start(); ...`."""

    def __init__(self, spec: Spec, docker: str = "docker") -> None:
        self.spec = spec.with_name()
        self.docker = docker
        self.created = False

    @property
    def name(self) -> str:
        return self.spec.name

    def __enter__(self) -> Container:
        try:
            # Marked before the call: a signal during `docker create` must still remove it.
            self.created = True
            proc.run(create_argv(self.spec, self.docker), check=True)
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Force-remove the container and its anonymous volumes; safe to call twice."""
        if self.created:
            proc.run([self.docker, "rm", "-f", "-v", self.name])
            self.created = False

    def copy_in(self) -> None:
        """Stream the workspace into the container (copy mode)."""
        ws = self.spec.workspace
        if ws is None or ws.mode != "copy":
            return
        uid, gid = _ids(self.spec.user)
        data = _tar_workspace(ws, uid, gid)
        # No `cp -a`: the engine resolves the container's --user through getent and fails for a
        # numeric uid that has no passwd entry in the image.
        result = proc.run([self.docker, "cp", "-", f"{self.name}:/"], input=data)
        if not result.ok:
            raise DockerError(
                f"copying the workspace into the container failed: {proc.reason(result.stderr)}"
            )

    def start(self, tee: IO[str] | None = None) -> proc.Result:
        """Run the container's command to its end, attached; returns its exit code and output."""
        return proc.run([self.docker, "start", "-a", self.name], tee=tee)

    def start_interactive(self) -> int:
        return proc.run_interactive([self.docker, "start", "-a", "-i", self.name])

    def copy_out(self) -> None:
        """Stream the output folders back into the host checkout (copy mode)."""
        ws = self.spec.workspace
        if ws is None or ws.mode != "copy":
            return
        for out in ws.outputs:
            result = proc.run([self.docker, "cp", f"{self.name}:{out}", "-"])
            if not result.ok:
                why = proc.reason(result.stderr)
                raise DockerError(f"copying {out} out of the container failed: {why}")
            extract_owned(result.raw, out)


def _ids(user: str | None) -> tuple[int, int]:
    if not user:
        return 0, 0
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def run(spec: Spec, docker: str = "docker", tee: IO[str] | None = None) -> proc.Result:
    """The whole life of a one-command container: create, copy in, run, copy out, remove."""
    with Container(spec, docker) as container:
        container.copy_in()
        result = container.start(tee=tee)
        container.copy_out()
        return result


def probe_workspace_mode(docker: str, image: str, workspace: Path, probe_dir: Path) -> str:
    """'bind' if the daemon sees `probe_dir` at the same path as this process does, else 'copy'.

    `probe_dir` is a folder the run may write (reports/), so the checkout itself is untouched.
    """
    if docker_socket() is None:
        return "copy"
    probe_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    marker = probe_dir / f".ciparity-probe-{token}"
    marker.write_text(token, encoding="utf-8")
    try:
        spec = Spec(
            image=image,
            command=("cat", f"/ciparity-probe/{marker.name}"),
            extra_args=("-v", f"{probe_dir}:/ciparity-probe:ro"),
            user=current_user(),
        )
        result = run(spec, docker)
        return "bind" if result.ok and result.stdout.strip() == token else "copy"
    finally:
        marker.unlink(missing_ok=True)


def remembered_workspace_mode(
    docker: str, image: str, workspace: Path, probe_dir: Path, memo: Path
) -> str:
    """The probe's answer, remembered in `memo` while the daemon address, this host (a container
    has its own hostname) and the folder stay the same: it saves a container start per run."""
    key = "|".join([os.environ.get("DOCKER_HOST", ""), socket.gethostname(), str(probe_dir)])
    try:
        saved_key, _, saved = memo.read_text(encoding="utf-8").partition("\n")
    except OSError:
        saved_key, saved = "", ""
    if saved_key == key and saved in ("bind", "copy"):
        return saved
    mode = probe_workspace_mode(docker, image, workspace, probe_dir)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(f"{key}\n{mode}", encoding="utf-8")
    return mode


def remove_managed(docker: str = "docker", label: str = f"{MANAGED}=1") -> tuple[int, int, int]:
    """Remove every container, volume and network carrying `label` (default: all of ours)."""
    counts = []
    for listing, removal in (
        (["ps", "-aq"], ["rm", "-f", "-v"]),
        (["volume", "ls", "-q"], ["volume", "rm", "-f"]),
        (["network", "ls", "-q"], ["network", "rm"]),
    ):
        found = proc.run([docker, *listing, "--filter", f"label={label}"])
        if not found.ok:
            raise DockerError(f"docker: {proc.reason(found.stderr)}")
        ids = found.stdout.split()
        if ids:
            proc.run([docker, *removal, *ids], check=True)
        counts.append(len(ids))
    return counts[0], counts[1], counts[2]


def remove_run(docker: str, owner: Owner) -> tuple[int, int, int]:
    """Remove everything labelled with `owner`'s run, and with the runs started under it — only in
    the process that owns the run: a nested task that joined an outer run leaves the sweep to it
    (it would remove its own job)."""
    if owner.pid != os.getpid() or owner.host != socket.gethostname():
        return 0, 0, 0
    return sweep(docker, owner.run)


def sweep(docker: str, run: str) -> tuple[int, int, int]:
    """Remove every object of `run`, then of each run whose `ciparity.parent` it is, and theirs in
    turn (a test session's nested runs, whose processes ended with the session's container)."""
    counts = [0, 0, 0]
    todo, seen = [run], {run}
    while todo:
        current = todo.pop()
        found = remove_managed(docker, f"{ownership.RUN}={current}")
        children, below = _remove_children(docker, current)
        counts = [a + b + c for a, b, c in zip(counts, found, below)]
        todo += [child for child in children if child not in seen]
        seen.update(children)
    return counts[0], counts[1], counts[2]


def _remove_children(docker: str, run: str) -> tuple[set[str], tuple[int, int, int]]:
    """Remove what carries `ciparity.parent=run`; the runs those objects belonged to."""
    runs: set[str] = set()
    counts = []
    for listing, ident, removal in (
        (["ps", "-a"], "ID", ["rm", "-f", "-v"]),
        (["volume", "ls"], "Name", ["volume", "rm", "-f"]),
        (["network", "ls"], "ID", ["network", "rm"]),
    ):
        template = f'{{{{.{ident}}}}} {{{{.Label "{ownership.RUN}"}}}}'
        found = proc.run(
            [docker, *listing, "--filter", f"label={ownership.PARENT}={run}", "--format", template]
        )
        if not found.ok:
            raise DockerError(f"docker: {proc.reason(found.stderr)}")
        rows = [line.split(" ", 1) + [""] for line in found.stdout.splitlines() if line.strip()]
        runs.update(row[1].strip() for row in rows if ownership.valid_run_id(row[1].strip()))
        if rows:
            proc.run([docker, *removal, *(row[0] for row in rows)], check=True)
        counts.append(len(rows))
    return runs, (counts[0], counts[1], counts[2])


@dataclass(frozen=True)
class Found:
    """One labelled object on the engine: a container, volume or network."""

    kind: str  # "container", "volume" or "network"
    ident: str
    labels: Mapping[str, str]
    running: bool = False

    @property
    def run(self) -> str:
        return self.labels.get(ownership.RUN, "")


def _inspect(docker: str, kind: str, ids: list[str]) -> list[Found]:
    fields = {
        "container": "{{.Id}} {{.State.Running}} {{json .Config.Labels}}",
        "volume": "{{.Name}} false {{json .Labels}}",
        "network": "{{.Id}} false {{json .Labels}}",
    }
    verb = [] if kind == "container" else [kind]
    result = proc.run([docker, *verb, "inspect", "--format", fields[kind], *ids])
    found = []
    for line in result.stdout.splitlines():
        ident, running, labels = (line.split(" ", 2) + ["", ""])[:3]
        try:
            parsed = json.loads(labels) or {}
        except ValueError:
            parsed = {}
        found.append(Found(kind, ident, parsed, running == "true"))
    return found


def list_managed(docker: str, checkout: str | None = None) -> list[Found]:
    """Every object labelled ciparity.managed=1 (of one checkout, if given)."""
    filters = ["--filter", f"label={MANAGED}=1"]
    if checkout is not None:
        filters += ["--filter", f"label={ownership.CHECKOUT}={checkout}"]
    found: list[Found] = []
    for kind, listing in (
        ("container", ["ps", "-aq", "--no-trunc"]),
        ("volume", ["volume", "ls", "-q"]),
        ("network", ["network", "ls", "-q"]),
    ):
        listed = proc.run([docker, *listing, *filters])
        if not listed.ok:
            raise DockerError(f"docker: {proc.reason(listed.stderr)}")
        ids = listed.stdout.split()
        if ids:
            found += _inspect(docker, kind, ids)
    return found
