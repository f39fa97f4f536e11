"""`invoke doctor` without Docker: every probe answered by a fake `proc.run`."""

from __future__ import annotations

import grp
import io
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from ciparity import container, doctor, images, proc
from ciparity.config import Config, load
from ciparity.errors import CiparityError, DockerError
from ciparity.proc import Result

GIB = 1024**3
CLIENT = ("docker", "version", "--format", "{{.Client.Version}}")
SERVER = ("docker", "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}")
BUILDX = ("docker", "buildx", "version")
COMPOSE = ("docker", "compose", "version")
INSPECT = ("docker", "image", "inspect", "--format", "{{json .Config.Labels}}")
INFO = ("docker", "info", "--format", "{{.DockerRootDir}}")
RUN = ("docker", "run", "--rm")
DENIED = (
    "permission denied while trying to connect to the Docker daemon socket at"
    " unix:///var/run/docker.sock: dial unix /var/run/docker.sock: connect: permission denied"
)
CANARY_URL = "http://user:CANARY@proxy.example:3128"

Answer = tuple[int, str, str] | BaseException


class Usage(NamedTuple):
    total: int
    used: int
    free: int


class FakeProc:
    """Stands in for `proc.run`: the answer of the longest matching argv prefix."""

    def __init__(self, answers: Mapping[tuple[str, ...], Answer]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], **kwargs: Any) -> Result:
        args = tuple(str(a) for a in argv)
        self.calls.append(args)
        matches = [p for p in self.answers if args[: len(p)] == p]
        if not matches:
            return Result(args, 1, "", f"unexpected command {args}")
        answer = self.answers[max(matches, key=len)]
        if isinstance(answer, BaseException):
            raise answer
        code, out, err = answer
        return Result(args, code, out, err, out.encode())


class Host:
    """One fake host: commands, PATH, free space, the probe's verdict; change then `run`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, sock: Path) -> None:
        self.monkeypatch = monkeypatch
        self.root = root
        self.environ: dict[str, str] = {"DOCKER_HOST": f"unix://{sock}"}
        self.proc = FakeProc(
            {
                CLIENT: (0, "28.2.2\n", ""),
                SERVER: (0, "20.10.24 1.41\n", ""),
                BUILDX: (0, "github.com/docker/buildx 0.13.1 abc123\n", ""),
                COMPOSE: (0, "Docker Compose version v2.26.1\n", ""),
                INSPECT: (0, '{"maintainer":"someone"}\n', ""),
                INFO: (0, "/srv/docker\n", ""),
                RUN: (0, "", ""),
            }
        )
        self.path = {"docker": "/usr/bin/docker", "mmdebstrap": "/usr/bin/mmdebstrap"}
        self.free: dict[str, int | OSError] = {}
        self.default_free = 50 * GIB
        self.mode = "bind"
        self.probed: list[str] = []
        self.python: Path | CiparityError = Path("/opt/python3.12")
        monkeypatch.setattr(proc, "run", self.proc)
        monkeypatch.setattr(shutil, "which", lambda name: self.path.get(name))
        monkeypatch.setattr(shutil, "disk_usage", self._disk_usage)
        monkeypatch.setattr(container, "probe_workspace_mode", self._probe)
        monkeypatch.setattr(images, "find_host_python", self._find_python)

    def _disk_usage(self, path: str | os.PathLike[str]) -> Usage:
        free = self.free.get(str(path), self.default_free)
        if isinstance(free, OSError):
            raise free
        return Usage(100 * GIB, 100 * GIB - free, free)

    def _probe(self, docker: str, image: str, workspace: Path, probe_dir: Path) -> str:
        self.probed.append(image)
        return self.mode

    def _find_python(self, config: Config, prefix: str | None = None) -> Path:
        if isinstance(self.python, CiparityError):
            raise self.python
        return self.python

    def config(self, version: str = "3.12", **overrides: Any) -> Config:
        (self.root / ".python-version").write_text(version + "\n", encoding="utf-8")
        return load(self.root, overrides, environ={})

    def rows(self, config: Config | None = None) -> dict[str, doctor.Finding]:
        found = doctor.findings(config or self.config(), self.environ)
        return {f.name: f for f in found}

    def run(self, config: Config | None = None) -> tuple[int, str]:
        out = io.StringIO()
        code = doctor.run(config or self.config(), out=out, environ=self.environ)
        return code, out.getvalue()


@pytest.fixture
def sock() -> Iterator[Path]:
    # A short folder: a unix socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="cpd-") as folder:
        path = Path(folder) / "docker.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        try:
            yield path
        finally:
            server.close()


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sock: Path) -> Host:
    return Host(monkeypatch, tmp_path, sock)


def test_all_ok_host_exits_0_with_the_whole_table(host: Host, sock: Path) -> None:
    code, output = host.run()
    assert code == 0
    lines = output.splitlines()
    assert lines[0].split() == ["check", "status", "detail"]
    table = "\n".join(lines[2:])
    for name in (
        "docker CLI",
        "daemon",
        "socket",
        "buildx",
        "compose",
        "workspace",
        "base image",
        "host CPython",
        "mmdebstrap",
        "disk",
        "proxy",
        "CA bundle",
        "CA trust",
        "package index",
        "task Python",
    ):
        assert f"\n{name} " in "\n" + table
    assert " FAIL " not in output and " warn " not in output
    assert "28.2.2 (/usr/bin/docker)" in output
    assert "engine 20.10.24, API 1.41" in output
    assert f"{sock} (group " in output and "read+write" in output
    assert "0.13.1" in output and "v2.26.1" in output
    assert f"bind (daemon sees {host.root})" in output
    assert "python:3.12-slim (official)" in output
    assert "3.12 at /opt/python3.12" in output
    assert "50.0 GiB free on /srv/docker (docker data root)" in output
    assert "nothing blocks work (0 warnings)" in output
    # The CI image exists, so it is the one the workspace probe runs.
    assert host.probed == ["ciparity-ci:latest"]


def test_docker_missing_fails_its_row_and_skips_the_docker_rows(host: Host) -> None:
    del host.path["docker"]
    host.proc.answers[("docker",)] = DockerError("the docker CLI is not on PATH")
    code, output = host.run()
    rows = host.rows()
    assert code == 1
    assert rows["docker CLI"].status == "FAIL"
    assert "not on PATH" in rows["docker CLI"].detail
    for name in ("daemon", "buildx", "compose", "workspace", "base image"):
        assert rows[name].status == "skip", name
    # No daemon to ask for its data root: docker's default is measured instead.
    assert "/var/lib/docker" in rows["disk"].detail
    assert "blocked by docker CLI" in output


def test_docker_on_path_but_not_runnable_fails(host: Host) -> None:
    host.proc.answers[CLIENT] = CiparityError("docker did not finish within 30 s")
    assert host.rows()["docker CLI"] == doctor.Finding(
        "docker CLI", "FAIL", "docker did not finish within 30 s"
    )


def test_docker_on_path_but_not_executable_fails(host: Host) -> None:
    host.proc.answers[CLIENT] = PermissionError(13, "Permission denied")
    row = host.rows()["docker CLI"]
    assert row == doctor.Finding(
        "docker CLI", "FAIL", "/usr/bin/docker cannot run: Permission denied"
    )


def test_client_without_a_version_warns(host: Host) -> None:
    host.proc.answers[CLIENT] = (1, "", "template: version:1: bad")
    row = host.rows()["docker CLI"]
    assert row.status == "warn" and "version unknown: template" in row.detail


def test_permission_denied_fails_with_the_group_fix(host: Host) -> None:
    host.proc.answers[SERVER] = (1, "", DENIED)
    code, output = host.run()
    row = host.rows()["daemon"]
    assert code == 1
    assert row.status == "FAIL"
    assert "add this user to the socket's group" in row.detail
    assert "usermod -aG" in row.detail
    # A daemon that refuses us cannot be asked about images: those rows skip.
    assert host.rows()["base image"].status == "skip"


def test_permission_fix_falls_back_to_the_docker_group(host: Host) -> None:
    host.proc.answers[SERVER] = (1, "", DENIED)
    host.environ["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    assert "usermod -aG docker " in host.rows()["daemon"].detail


def test_socket_group_without_a_name_is_its_gid(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unnamed(gid: int) -> Any:
        raise KeyError(gid)

    monkeypatch.setattr(grp, "getgrgid", unnamed)
    gid = os.stat(host.environ["DOCKER_HOST"].removeprefix("unix://")).st_gid
    assert f"(group {gid})" in host.rows()["socket"].detail


def test_unreachable_daemon_fails(host: Host) -> None:
    host.proc.answers[SERVER] = (1, "", "Cannot connect to the Docker daemon. Is it running?")
    row = host.rows()["daemon"]
    assert row.status == "FAIL"
    assert row.detail == "unreachable: Cannot connect to the Docker daemon. Is it running?"


def test_hung_daemon_fails(host: Host) -> None:
    host.proc.answers[SERVER] = CiparityError("docker did not finish within 30 s")
    assert host.rows()["daemon"].detail == "unreachable: docker did not finish within 30 s"


def test_socket_without_access_fails(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    row = host.rows()["socket"]
    assert row.status == "FAIL" and "no read+write for this user" in row.detail


def test_socket_missing_or_not_a_socket_fails(host: Host) -> None:
    host.environ["DOCKER_HOST"] = f"unix://{host.root}/absent.sock"
    assert "does not exist" in host.rows()["socket"].detail
    plain = host.root / "plain"
    plain.write_text("", encoding="utf-8")
    host.environ["DOCKER_HOST"] = f"unix://{plain}"
    row = host.rows()["socket"]
    assert row.status == "FAIL" and "not a unix socket" in row.detail


def test_socket_stat_error_fails(host: Host) -> None:
    host.environ["DOCKER_HOST"] = "unix://" + "x" * 5000
    row = host.rows()["socket"]
    assert row.status == "FAIL"


def test_remote_daemon_skips_the_socket_and_measures_the_checkout(host: Host) -> None:
    host.environ["DOCKER_HOST"] = "ssh://someone@build-host"
    rows = host.rows()
    assert rows["socket"].status == "skip"
    assert "someone" not in rows["socket"].detail
    assert str(host.root) in rows["disk"].detail
    assert "remote daemon's disk is not measured" in rows["disk"].detail
    assert INFO not in host.proc.calls


def test_buildx_and_compose_missing_warn_but_do_not_block(host: Host) -> None:
    host.proc.answers[BUILDX] = (1, "", "docker: 'buildx' is not a docker command.")
    host.proc.answers[COMPOSE] = (1, "", "docker: 'compose' is not a docker command.")
    code, output = host.run()
    rows = host.rows()
    assert code == 0
    assert rows["buildx"].status == "warn" and "invoke setup" in rows["buildx"].detail
    assert rows["compose"].status == "warn" and "--parallel" in rows["compose"].detail
    assert "(2 warnings)" in output


def test_probe_that_crashes_becomes_a_warning(host: Host) -> None:
    host.proc.answers[BUILDX] = CiparityError("docker did not finish within 30 s")
    row = host.rows()["buildx"]
    assert row == doctor.Finding(
        "buildx", "warn", "could not check: docker did not finish within 30 s"
    )


def test_unexpected_os_error_in_a_probe_becomes_a_warning(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(config: Config) -> Any:
        raise OSError("reports/ is read-only")

    monkeypatch.setattr(images, "base_info", broken)
    row = host.rows()["base image"]
    assert row == doctor.Finding("base image", "warn", "could not check: reports/ is read-only")


def test_workspace_in_copy_mode(host: Host) -> None:
    host.mode = "copy"
    row = host.rows()["workspace"]
    assert row.status == "ok"
    assert row.detail == f"copy (daemon does not see {host.root}; workspace is copied in)"


def test_workspace_forced_copy_is_not_probed(host: Host) -> None:
    row = host.rows(host.config(workspace_mode="copy"))["workspace"]
    assert row.status == "ok"
    assert "forced to copy by workspace_mode (task flag)" in row.detail
    assert host.probed == []


def test_workspace_forced_bind_the_daemon_cannot_see_fails(host: Host) -> None:
    host.mode = "copy"
    row = host.rows(host.config(workspace_mode="bind"))["workspace"]
    assert row.status == "FAIL"
    assert "forced to bind" in row.detail and "does not see" in row.detail
    host.mode = "bind"
    row = host.rows(host.config(workspace_mode="bind"))["workspace"]
    assert row.status == "ok" and row.detail.endswith(f"bind (daemon sees {host.root})")


def test_workspace_probes_with_the_base_when_the_ci_image_is_missing(host: Host) -> None:
    host.proc.answers[(*INSPECT, "ciparity-ci:latest")] = (1, "", "No such image")
    assert host.rows()["workspace"].status == "ok"
    assert host.probed == ["python:3.12-slim"]


def test_workspace_skips_without_any_image(host: Host) -> None:
    host.proc.answers[INSPECT] = (1, "", "Error: No such image")
    rows = host.rows()
    assert rows["workspace"].status == "skip" and "no image yet" in rows["workspace"].detail
    assert rows["base image"].status == "warn"
    assert "`invoke base` will pull it or build a stand-in" in rows["base image"].detail


def test_workspace_probe_failure_warns(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(docker: str, image: str, workspace: Path, probe_dir: Path) -> str:
        raise DockerError("docker create failed: no space left on device")

    monkeypatch.setattr(container, "probe_workspace_mode", broken)
    row = host.rows()["workspace"]
    assert row.status == "warn" and "no space left" in row.detail


def test_base_stand_in(host: Host) -> None:
    labels = '{"ciparity.base":"stand-in","ciparity.base.python":"3.12.1"}'
    host.proc.answers[(*INSPECT, "python:3.12-slim")] = (0, labels, "")
    row = host.rows()["base image"]
    assert row.detail == "python:3.12-slim (local stand-in, CPython 3.12.1)"


def test_image_inspect_refused_does_not_raise(host: Host) -> None:
    host.proc.answers[INSPECT] = (1, "", DENIED)
    rows = host.rows()
    assert rows["base image"].status == "warn"
    assert rows["base image"].detail.startswith("could not check: docker: permission denied")


def test_host_python_missing_warns_with_the_fix(host: Host) -> None:
    host.python = CiparityError("no CPython 3.12 on this host to build the stand-in base from")
    row = host.rows()["host CPython"]
    assert row.status == "warn"
    assert "not needed while the base image is present" in row.detail
    host.proc.answers[INSPECT] = (1, "", "No such image")
    row = host.rows()["host CPython"]
    assert row.detail.startswith("no CPython 3.12: install CPython 3.12")
    assert "--python PREFIX" in row.detail


def test_configured_host_python_that_is_wrong_says_why(host: Host) -> None:
    host.python = CiparityError("--python /nope: no bin/python3.12 with its standard library")
    host.proc.answers[INSPECT] = (1, "", "No such image")
    row = host.rows(host.config(host_python="/nope"))["host CPython"]
    assert row.detail.startswith("--python /nope: no bin/python3.12")


def test_mmdebstrap_missing_warns(host: Host) -> None:
    del host.path["mmdebstrap"]
    row = host.rows()["mmdebstrap"]
    assert row.status == "warn" and "invoke setup" in row.detail


@pytest.mark.parametrize(
    ("free", "status", "code"),
    [
        (50 * GIB, "ok", 0),
        (10 * GIB, "ok", 0),
        (10 * GIB - 1, "warn", 0),
        (5 * GIB, "warn", 0),
        (2 * GIB, "warn", 0),
        (2 * GIB - 1, "FAIL", 1),
        (GIB // 2, "FAIL", 1),
    ],
)
def test_disk_thresholds(host: Host, free: int, status: str, code: int) -> None:
    host.default_free = free
    assert host.rows()["disk"].status == status
    assert host.run()[0] == code


def test_disk_falls_back_when_the_data_root_is_not_readable(host: Host) -> None:
    host.free["/srv/docker"] = PermissionError(13, "Permission denied")
    host.free["/var/lib/docker"] = FileNotFoundError(2, "No such file or directory")
    row = host.rows()["disk"]
    assert row.status == "ok"
    assert f"on {host.root} (the checkout" in row.detail
    host.free[str(host.root)] = OSError(5, "I/O error")
    assert host.rows()["disk"] == doctor.Finding("disk", "warn", "could not measure free space")


def test_disk_when_docker_info_fails(host: Host) -> None:
    host.proc.answers[INFO] = (1, "", "error")
    assert "on /var/lib/docker" in host.rows()["disk"].detail
    host.proc.answers[INFO] = CiparityError("docker did not finish within 30 s")
    assert "on /var/lib/docker" in host.rows()["disk"].detail


def test_proxy_names_shown_and_values_never(host: Host) -> None:
    host.environ.update(
        {
            "HTTP_PROXY": CANARY_URL,
            "https_proxy": CANARY_URL,
            "NO_PROXY": "localhost,CANARY.internal",
            "ftp_proxy": CANARY_URL,
        }
    )
    code, output = host.run()
    assert code == 0
    assert "CANARY" not in output
    assert "HTTP_PROXY, NO_PROXY, https_proxy set" in output
    assert "ftp_proxy" not in output


def test_proxy_credentials_echoed_by_docker_are_redacted(host: Host) -> None:
    host.environ["HTTPS_PROXY"] = "proxy-CANARY.example:3128"
    host.proc.answers[SERVER] = (
        1,
        "",
        f"proxyconnect tcp: dial {CANARY_URL} and proxy-CANARY.example:3128: refused",
    )
    code, output = host.run()
    assert code == 1
    assert "CANARY" not in output
    assert "http://***@proxy.example:3128" in output


def test_no_proxy_set(host: Host) -> None:
    host.environ["HTTP_PROXY"] = ""
    assert host.rows()["proxy"].detail == "none set"


def test_ca_bundle_set_but_missing_fails(host: Host) -> None:
    missing = host.root / "corp-ca.pem"
    code, output = host.run(host.config(ca_bundle=str(missing)))
    assert code == 1
    assert f"ca_bundle {missing} is set but is not a file" in output


def test_ca_bundle_readable_pem_is_ok(host: Host) -> None:
    bundle = host.root / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
    assert host.rows(host.config(ca_bundle=str(bundle)))["CA bundle"] == doctor.Finding(
        "CA bundle", "ok", str(bundle)
    )
    bundle.write_text("not a certificate\n")
    assert host.rows(host.config(ca_bundle=str(bundle)))["CA bundle"].status == "warn"


def test_ca_bundle_unreadable_fails(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = host.root / "ca.pem"
    bundle.write_text("x")

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied")

    config = host.config(ca_bundle=str(bundle))
    monkeypatch.setattr(Path, "read_text", refuse)
    row = doctor.check_ca_bundle(config)
    assert row.status == "FAIL" and "not readable: Permission denied" in row.detail


def test_ca_bundle_unset(host: Host) -> None:
    assert host.rows()["CA bundle"] == doctor.Finding("CA bundle", "ok", "none")


def test_task_python_other_than_the_project_warns(host: Host) -> None:
    row = host.rows(host.config(version="3.11"))["task Python"]
    assert row.status == "warn"
    assert "run the tasks from .venv (Python 3.11)" in row.detail


def test_defaults_to_stdout_and_the_process_environment(
    host: Host, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", host.environ["DOCKER_HOST"])
    monkeypatch.setenv("HTTP_PROXY", CANARY_URL)
    assert doctor.run(host.config()) == 0
    output = capsys.readouterr().out
    assert "HTTP_PROXY" in output and "CANARY" not in output


VERIFY_FAILED = "URLError <urlopen error [SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate>"


@pytest.fixture
def pip_cert(host: Host) -> Path:
    bundle = host.root / "corp.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
    host.environ["PIP_CERT"] = str(bundle)
    return bundle


def test_trust_names_its_source_the_extra_cas_and_who_gets_it(host: Host, pip_cert: Path) -> None:
    row = doctor.check_trust(host.config(), host.environ, ["corp-root.crt"])
    assert row == doctor.Finding(
        "CA trust",
        "ok",
        f"{pip_cert.resolve()} (from PIP_CERT); 1 CA(s) beyond Debian's set: corp-root.crt;"
        " act-ci jobs and `shell --job` get it read-only; builds do not (set ca_bundle to hand"
        " it to an online build's pip)",
    )
    with_setting = doctor.check_trust(host.config(ca_bundle=str(pip_cert)), host.environ, [])
    assert with_setting.detail.endswith("builds get it as a BuildKit secret")


def test_trust_that_cannot_be_read_is_one_line(host: Host) -> None:
    host.environ["SSL_CERT_FILE"] = str(host.root / "gone.pem")
    row = doctor.check_trust(host.config(), host.environ, [])
    assert row.status == "FAIL" and "SSL_CERT_FILE" in row.detail and "\n" not in row.detail


def test_local_cas_lists_the_hosts_own(tmp_path: Path) -> None:
    (tmp_path / "corp").mkdir()
    (tmp_path / "corp" / "root.crt").write_text("x")
    (tmp_path / "README").write_text("x")
    assert doctor.local_cas(tmp_path) == ["root.crt"]
    assert doctor.local_cas(tmp_path / "missing") == []


def test_index_reached_only_with_the_hosts_trust(host: Host, pip_cert: Path) -> None:
    host.proc.answers[(*RUN, "ciparity-ci:latest")] = (1, VERIFY_FAILED + "\n", "")
    row = host.rows()["package index"]
    assert row.status == "ok"
    assert "reaches https://pypi.org/simple/ only with this host's CA bundle" in row.detail
    assert "CERTIFICATE_VERIFY_FAILED" in row.detail
    trusted = [c for c in host.proc.calls if c[:4] == (*RUN, "-v")]
    assert trusted and trusted[0][4] == f"{pip_cert.resolve()}:/etc/ciparity/host-ca.pem:ro"


def test_index_a_container_cannot_reach_is_a_warning_with_the_fix(
    host: Host, pip_cert: Path
) -> None:
    host.environ["PIP_INDEX_URL"] = "https://pypi.corp.example/simple/"
    host.environ["HTTPS_PROXY"] = CANARY_URL
    host.proc.answers[RUN] = (1, VERIFY_FAILED + "\n", "")
    code, output = host.run()
    assert code == 0
    row = host.rows()["package index"]
    assert row.status == "warn"
    assert row.detail.startswith("a container cannot reach https://pypi.corp.example/simple/")
    assert row.detail.endswith(
        "fix: set ca_bundle (or PIP_CERT) to the CA bundle of your" " network's TLS proxy"
    )
    assert "CANARY" not in output  # the proxy reaches the probe by name only
    assert any("HTTPS_PROXY" in call for call in host.proc.calls if call[:3] == RUN)


def test_index_probe_is_skipped_offline_and_without_a_daemon(host: Host) -> None:
    assert host.rows(host.config(offline="on"))["package index"].status == "skip"
    host.proc.answers[SERVER] = (1, "", "Cannot connect to the Docker daemon")
    assert host.rows()["package index"] == doctor.Finding("package index", "skip", "no daemon")
