"""Tests for ciparity.container: docker argv, the environment allowlist, the workspace tar, and a
container's whole life against a fake `proc.run` (no Docker engine)."""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import pytest
from conftest import Call, FakeRun, result

from ciparity import container, proc
from ciparity.container import Container, Spec, Workspace
from ciparity.errors import CiparityError, DockerError, Interrupted

pytestmark = pytest.mark.usefixtures("clean_env")

CREATE_FAILED = "Error response from daemon: No such image: img:1"


def make_tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A tar of (name, content) members; content None makes a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o600
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


@pytest.fixture
def ws_root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src" / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("x = 1\n", encoding="utf-8")
    (root / "src" / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n", encoding="utf-8")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / "docs" / ".cache").mkdir(parents=True)
    (root / "docs" / "index.md").write_text("# docs\n", encoding="utf-8")
    (root / "reports").mkdir()
    (root / "reports" / "old.xml").write_text("<old/>", encoding="utf-8")
    (root / "a.txt").write_text("a\n", encoding="utf-8")
    return root


def bind_spec(root: Path, **changes: object) -> Spec:
    fields: dict[str, object] = {
        "image": "img:1",
        "command": ("pytest", "-x"),
        "workspace": Workspace(root, "bind", outputs=(root / "reports",)),
        "user": "1000:1000",
        "env": {"HOME": "/tmp", "A": "1"},
        "pass_env": ("GITHUB_TOKEN", "CI"),
        "labels": {"ciparity.check": "lint"},
        "name": "box1",
    }
    fields.update(changes)
    return Spec(**fields)  # type: ignore[arg-type]


def test_allowed_env_keeps_ci_github_runner_and_extra_names() -> None:
    environ = {
        "CI": "true",
        "GITHUB_SHA": "abc",
        "RUNNER_OS": "Linux",
        "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "x",
        "MY_VAR": "1",
        "GITHUBX": "no",
        "CIRCLE_CI": "no",
    }
    assert container.allowed_env(environ, ("MY_VAR", "ABSENT")) == [
        "CI",
        "GITHUB_SHA",
        "MY_VAR",
        "RUNNER_OS",
    ]
    assert container.allowed_env({"HOME": "/root"}) == []


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "/var/run/docker.sock"),
        ({"DOCKER_HOST": ""}, "/var/run/docker.sock"),
        ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "/run/user/1000/docker.sock"),
        ({"DOCKER_HOST": "tcp://10.0.0.2:2375"}, None),
        ({"DOCKER_HOST": "ssh://me@builder"}, None),
    ],
)
def test_docker_socket(environ: dict[str, str], expected: str | None) -> None:
    assert container.docker_socket(environ) == expected


def test_docker_socket_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/d.sock")
    assert container.docker_socket() == "/tmp/d.sock"


def test_current_user() -> None:
    assert container.current_user() == f"{os.getuid()}:{os.getgid()}"


def test_with_name_names_once_and_keeps_the_original(tmp_path: Path) -> None:
    spec = bind_spec(tmp_path, name="")
    named = spec.with_name()
    assert re.fullmatch(r"ciparity-[0-9a-f]{12}", named.name)
    assert spec.name == ""
    assert named == Spec(**{**spec.__dict__, "name": named.name})
    assert named.with_name() is named
    assert Container(spec).name != Container(spec).name


def test_create_argv_bind_mode(ws_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "s3cr3t-value")
    ws = str(ws_root)
    argv = container.create_argv(bind_spec(ws_root))
    assert argv == [
        "docker",
        "create",
        "--name",
        "box1",
        "--init",
        "--label",
        "ciparity.managed=1",
        "--label",
        "ciparity.check=lint",
        "--user",
        "1000:1000",
        "-v",
        f"{ws}:{ws}:ro",
        "-v",
        f"{ws}/reports:{ws}/reports",
        "-w",
        ws,
        "-e",
        "A=1",
        "-e",
        "HOME=/tmp",
        "-e",
        "GITHUB_TOKEN",
        "-e",
        "CI",
        "img:1",
        "pytest",
        "-x",
    ]
    assert not any("s3cr3t" in arg for arg in argv)


def test_run_argv_is_the_same_flags_as_docker_run(ws_root: Path) -> None:
    spec = bind_spec(ws_root)
    created = container.create_argv(spec, "/opt/docker")
    assert container.run_argv(spec, "/opt/docker") == [
        "/opt/docker",
        "run",
        "--rm",
        *created[4:],
    ]
    assert created[:4] == ["/opt/docker", "create", "--name", "box1"]


def test_copy_mode_mounts_no_workspace(ws_root: Path) -> None:
    spec = bind_spec(ws_root, workspace=Workspace(ws_root, "copy", outputs=(ws_root / "reports",)))
    argv = container.create_argv(spec)
    assert "-v" not in argv
    assert argv[argv.index("-w") : argv.index("-w") + 2] == ["-w", str(ws_root)]


def test_minimal_spec_flags() -> None:
    spec = Spec(image="img", command=("true",), name="n")
    assert container.create_argv(spec) == [
        "docker",
        "create",
        "--name",
        "n",
        "--init",
        "--label",
        "ciparity.managed=1",
        "img",
        "true",
    ]


def test_socket_mount_adds_the_socket_group(tmp_path: Path) -> None:
    socket = tmp_path / "docker.sock"
    socket.write_text("", encoding="utf-8")
    spec = Spec(image="img", command=(), name="n", socket=str(socket))
    assert container.create_argv(spec)[7:] == [
        "-v",
        f"{socket}:/var/run/docker.sock",
        "--group-add",
        str(os.stat(socket).st_gid),
        "img",
    ]


def test_socket_that_cannot_be_read_gets_no_group(tmp_path: Path) -> None:
    spec = Spec(image="img", command=(), name="n", socket=str(tmp_path / "absent.sock"))
    assert container.create_argv(spec)[7:] == [
        "-v",
        f"{tmp_path / 'absent.sock'}:/var/run/docker.sock",
        "img",
    ]


def test_interactive_and_extra_args_come_last() -> None:
    spec = Spec(image="img", command=("bash",), name="n", interactive=True, extra_args=("--rm",))
    assert container.create_argv(spec)[7:] == ["-i", "-t", "--rm", "img", "bash"]


def test_tar_workspace_paths_owners_and_exclusions(ws_root: Path) -> None:
    ws = Workspace(ws_root, "copy", outputs=(ws_root / "reports",))
    data = container._tar_workspace(ws, 1234, 5678)
    found = members(data)
    top = str(ws_root).lstrip("/")
    assert [m.name for m in found] == [
        top,
        f"{top}/docs",
        f"{top}/src",
        f"{top}/a.txt",
        f"{top}/docs/index.md",
        f"{top}/src/pkg",
        f"{top}/src/pkg/__init__.py",
        f"{top}/reports",
    ]
    assert {(m.uid, m.gid, m.uname, m.gname) for m in found} == {(1234, 5678, "", "")}
    output = found[-1]
    assert output.isdir() and output.mode == 0o1777
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        handle = tar.extractfile(f"{top}/src/pkg/__init__.py")
        assert handle is not None and handle.read() == b"x = 1\n"


def test_extract_owned_skips_top_entry_and_links(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in [("reports/junit.xml", b"<xml/>"), ("reports/sub/cov.xml", b"c")]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid = len(content), 0o600, 4242
            tar.addfile(info, io.BytesIO(content))
        for name in ("reports", "reports/empty"):
            folder = tarfile.TarInfo(name)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(folder)
        link = tarfile.TarInfo("reports/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        hard = tarfile.TarInfo("reports/hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "reports/junit.xml"
        tar.addfile(hard)
    dest = tmp_path / "out" / "reports"
    container.extract_owned(buffer.getvalue(), dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "empty",
        "junit.xml",
        "sub",
        "sub/cov.xml",
    ]
    assert (dest / "junit.xml").read_bytes() == b"<xml/>"
    assert (dest / "junit.xml").stat().st_mode & 0o777 == 0o644
    assert (dest / "sub" / "cov.xml").stat().st_mode & 0o777 == 0o644
    assert (dest / "junit.xml").stat().st_uid == os.getuid()


def test_extract_owned_refuses_paths_outside_dest(tmp_path: Path) -> None:
    data = make_tar([("reports/../../evil.txt", b"evil")])
    dest = tmp_path / "a" / "b"
    with pytest.raises(DockerError, match="refusing an unsafe path"):
        container.extract_owned(data, dest)
    assert not (tmp_path / "evil.txt").exists()


def test_run_bind_mode_creates_starts_and_removes(ws_root: Path, fake_run: FakeRun) -> None:
    spec = bind_spec(ws_root)
    fake_run.on("docker", "start", stdout="tests passed\n", returncode=0)
    out = io.StringIO()
    found = container.run(spec, tee=out)
    assert fake_run.argvs == [
        container.create_argv(spec),
        ["docker", "start", "-a", "box1"],
        ["docker", "rm", "-f", "-v", "box1"],
    ]
    assert fake_run.calls[0].check is True
    assert fake_run.calls[1].tee is out
    assert found.stdout == "tests passed\n"
    assert out.getvalue() == "tests passed\n"


def _copy_out_answer(call: Call) -> proc.Result:
    return result(call.argv, raw=make_tar([("reports", None), ("reports/junit.xml", b"<ok/>")]))


def test_run_copy_mode_streams_the_workspace_in_and_reports_out(
    ws_root: Path, fake_run: FakeRun
) -> None:
    reports = ws_root / "reports"
    spec = bind_spec(
        ws_root, workspace=Workspace(ws_root, "copy", outputs=(reports,)), user="1234:5678"
    )
    fake_run.on("docker", "cp", respond=_copy_out_answer)
    fake_run.on("docker", "cp", "-", "box1:/")
    fake_run.on("docker", "start", returncode=1, stdout="1 failed\n")
    found = container.run(spec, "docker")
    assert fake_run.argvs == [
        container.create_argv(spec),
        ["docker", "cp", "-", "box1:/"],
        ["docker", "start", "-a", "box1"],
        ["docker", "cp", f"box1:{reports}", "-"],
        ["docker", "rm", "-f", "-v", "box1"],
    ]
    sent = fake_run.calls[1].input
    assert isinstance(sent, bytes)
    names = [m.name for m in members(sent)]
    assert f"{str(ws_root).lstrip('/')}/src/pkg/__init__.py" in names
    assert {(m.uid, m.gid) for m in members(sent)} == {(1234, 5678)}
    assert (found.returncode, found.stdout) == (1, "1 failed\n")
    assert (reports / "junit.xml").read_text(encoding="utf-8") == "<ok/>"
    assert (reports / "old.xml").exists()


@pytest.mark.parametrize(("user", "ids"), [(None, (0, 0)), ("1000", (1000, 1000))])
def test_copy_in_owner_without_full_user(
    ws_root: Path, fake_run: FakeRun, user: str | None, ids: tuple[int, int]
) -> None:
    spec = bind_spec(ws_root, workspace=Workspace(ws_root, "copy"), user=user)
    Container(spec).copy_in()
    sent = fake_run.calls[0].input
    assert isinstance(sent, bytes)
    assert {(m.uid, m.gid) for m in members(sent)} == {ids}


def test_copy_in_failure_is_a_docker_error(ws_root: Path, fake_run: FakeRun) -> None:
    fake_run.on("docker", "cp", returncode=1, stderr="Error: No such container: box1\n")
    spec = bind_spec(ws_root, workspace=Workspace(ws_root, "copy"))
    with pytest.raises(DockerError) as info:
        Container(spec).copy_in()
    assert info.value.message == (
        "copying the workspace into the container failed: Error: No such container: box1"
    )


def test_copy_out_failure_is_a_docker_error(ws_root: Path, fake_run: FakeRun) -> None:
    reports = ws_root / "reports"
    fake_run.on("docker", "cp", returncode=1, stderr="Could not find the file /x\n")
    spec = bind_spec(ws_root, workspace=Workspace(ws_root, "copy", outputs=(reports,)))
    with pytest.raises(DockerError) as info:
        Container(spec).copy_out()
    assert info.value.message == (
        f"copying {reports} out of the container failed: Could not find the file /x"
    )


def test_copies_are_no_ops_in_bind_mode_and_without_workspace(
    ws_root: Path, fake_run: FakeRun
) -> None:
    for spec in (bind_spec(ws_root), Spec(image="i", command=(), name="n")):
        box = Container(spec)
        box.copy_in()
        box.copy_out()
    assert fake_run.calls == []


@pytest.mark.parametrize("error", [KeyboardInterrupt(), Interrupted(15), DockerError("lost")])
def test_container_is_removed_when_start_is_interrupted(
    ws_root: Path, fake_run: FakeRun, error: BaseException
) -> None:
    def explode(call: Call) -> proc.Result:
        raise error

    fake_run.on("docker", "start", respond=explode)
    with pytest.raises(type(error)):
        container.run(bind_spec(ws_root))
    assert fake_run.argvs[-1] == ["docker", "rm", "-f", "-v", "box1"]
    assert len(fake_run.calls) == 3


def test_container_is_removed_when_create_fails(ws_root: Path, fake_run: FakeRun) -> None:
    spec = bind_spec(ws_root)
    fake_run.on("docker", "create", returncode=125, stderr=CREATE_FAILED + "\n")
    with pytest.raises(CiparityError) as info:
        with Container(spec):
            pytest.fail("the body must not run")
    assert (
        info.value.message == f"{proc.quote(container.create_argv(spec))} failed: {CREATE_FAILED}"
    )
    assert fake_run.argvs == [container.create_argv(spec), ["docker", "rm", "-f", "-v", "box1"]]


def test_container_is_removed_when_create_is_interrupted(ws_root: Path, fake_run: FakeRun) -> None:
    def interrupt(call: Call) -> proc.Result:
        raise KeyboardInterrupt

    fake_run.on("docker", "create", respond=interrupt)
    with pytest.raises(KeyboardInterrupt):
        with Container(bind_spec(ws_root)):
            pytest.fail("the body must not run")
    assert fake_run.argvs[-1] == ["docker", "rm", "-f", "-v", "box1"]


def test_remove_is_idempotent(ws_root: Path, fake_run: FakeRun) -> None:
    box = Container(bind_spec(ws_root))
    box.remove()
    assert fake_run.calls == []
    with box:
        pass
    box.remove()
    box.remove()
    assert fake_run.argvs.count(["docker", "rm", "-f", "-v", "box1"]) == 1


def test_start_interactive(ws_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def interactive(argv: list[str], env: object = None) -> int:
        seen.append(list(argv))
        return 7

    monkeypatch.setattr(proc, "run_interactive", interactive)
    assert Container(bind_spec(ws_root), "podman").start_interactive() == 7
    assert seen == [["podman", "start", "-a", "-i", "box1"]]


def _echo_marker(probe_dir: Path) -> FakeRun:
    """A fake daemon that sees probe_dir: `cat` prints the marker file named in `create`."""
    fake = FakeRun()

    def start(call: Call) -> proc.Result:
        created = next(c.argv for c in fake.calls if c.argv[1] == "create")
        assert created[-2] == "cat"
        marker = Path(created[-1])
        assert marker.parent == Path("/ciparity-probe")
        return result(call.argv, stdout=(probe_dir / marker.name).read_text(encoding="utf-8"))

    fake.on("docker", "start", respond=start)
    return fake


def test_probe_is_bind_when_the_daemon_sees_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe_dir = tmp_path / "reports"
    fake = _echo_marker(probe_dir)
    monkeypatch.setattr(proc, "run", fake)
    assert container.probe_workspace_mode("docker", "img:1", tmp_path, probe_dir) == "bind"
    created = fake.argvs[0]
    assert created[created.index("--user") + 1] == container.current_user()
    assert created[-5:-2] == ["-v", f"{probe_dir}:/ciparity-probe:ro", "img:1"]
    assert [a[:2] for a in fake.argvs] == [
        ["docker", "create"],
        ["docker", "start"],
        ["docker", "rm"],
    ]
    assert list(probe_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("returncode", "stdout"), [(0, "something else\n"), (0, ""), (1, "cat: no such file\n")]
)
def test_probe_is_copy_when_the_daemon_does_not_see_it(
    tmp_path: Path, fake_run: FakeRun, returncode: int, stdout: str
) -> None:
    probe_dir = tmp_path / "reports"
    fake_run.on("docker", "start", returncode=returncode, stdout=stdout)
    assert container.probe_workspace_mode("docker", "img:1", tmp_path, probe_dir) == "copy"
    assert list(probe_dir.iterdir()) == []
    assert fake_run.argvs[-1][:3] == ["docker", "rm", "-f"]


def test_probe_marker_is_deleted_when_the_run_fails(tmp_path: Path, fake_run: FakeRun) -> None:
    probe_dir = tmp_path / "reports"
    fake_run.on("docker", "create", returncode=125, stderr="no such image\n")
    with pytest.raises(CiparityError):
        container.probe_workspace_mode("docker", "img:1", tmp_path, probe_dir)
    assert list(probe_dir.iterdir()) == []


def test_probe_is_copy_for_a_remote_daemon(
    tmp_path: Path, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    assert container.probe_workspace_mode("docker", "img", tmp_path, tmp_path / "r") == "copy"
    assert fake_run.calls == []
    assert not (tmp_path / "r").exists()


def test_remove_managed_counts_and_removes(fake_run: FakeRun) -> None:
    label = ["--filter", "label=ciparity.managed=1"]
    fake_run.on("docker", "ps", stdout="c1\nc2\n")
    fake_run.on("docker", "network", "ls", stdout="n1\n")
    assert container.remove_managed() == (2, 0, 1)
    assert fake_run.argvs == [
        ["docker", "ps", "-aq", *label],
        ["docker", "rm", "-f", "-v", "c1", "c2"],
        ["docker", "volume", "ls", "-q", *label],
        ["docker", "network", "ls", "-q", *label],
        ["docker", "network", "rm", "n1"],
    ]
    assert [c.check for c in fake_run.calls] == [False, True, False, False, True]


def test_remove_managed_reports_the_daemon_error(fake_run: FakeRun) -> None:
    fake_run.on(
        "docker",
        "ps",
        returncode=1,
        stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        " Is the docker daemon running?\n",
    )
    with pytest.raises(DockerError) as info:
        container.remove_managed("docker")
    assert info.value.message == (
        "docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        " Is the docker daemon running?"
    )
    assert len(fake_run.calls) == 1
