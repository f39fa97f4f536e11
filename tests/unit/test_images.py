"""Tests for ciparity.images: BuildKit logs, build commands, the base image (present, pulled or a
stand-in), the host CPython and the wheelhouse, all against a fake `proc.run`."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PY, Call, FakeRun, result, write_checkout

from ciparity import images, proc
from ciparity.config import Config
from ciparity.errors import BuildError, CiparityError, ConfigError, DockerError
from ciparity.images import BaseInfo, BuildReport, Step

pytestmark = pytest.mark.usefixtures("clean_env")

MakeConfig = Callable[..., Config]
BASE = f"python:{PY}-slim"
FULL = f"{PY}.7"
MAJOR, MINOR = (int(p) for p in PY.split("."))
OLDER = f"{MAJOR}.{MINOR - 1}"
INSPECT = ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}"]
PULL_FAILED = (
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp:'
    " lookup registry-1.docker.io: no such host"
)
RUN_SYSTEM = (
    "RUN dpkg -s gcc git >/dev/null 2>&1 || { apt-get update && apt-get install -y gcc git; }"
)
RUN_PIP = (
    "RUN --mount=type=cache,target=/root/.cache/pip pip install -r /tmp/r/requirements-dev.txt"
)
LOG = f"""\
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile.ci
#1 transferring dockerfile: 2.31kB done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/library/python:{PY}-slim
#2 DONE 0.0s

#3 [internal] load .dockerignore
#3 DONE 0.0s

#4 [system 1/3] FROM docker.io/library/python:{PY}-slim@sha256:0123abcd
#4 CACHED

#5 [system 2/3] {RUN_SYSTEM}
#5 CACHED

#6 [system 3/3] RUN groupadd --gid 1000 ci
#6 CACHED

#7 [deps 1/2] COPY requirements.txt requirements-dev.txt /tmp/r/
#7 DONE 0.1s

#8 [deps 2/2] {RUN_PIP}
#8 0.512 Looking in links: /wheels
#8 0.9 ERROR: this line is pip's output, not BuildKit's
#8 DONE 12.3s

#5 [system 2/3] {RUN_SYSTEM}
#9 [source 1/1] COPY src /app/src
#9 CACHED

#10 [ci 1/1] COPY --from=source --chown=ci:ci /app /app
#10 DONE 0.2s

#11 exporting to image
#11 DONE 0.5s
"""
FAILED_LOG = f"""\
#7 [deps 1/2] COPY requirements.txt requirements-dev.txt /tmp/r/
#7 CACHED

#8 [deps 2/2] {RUN_PIP}
#8 0.3 ERROR: Could not find a version that satisfies the requirement nope
#8 ERROR: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3
------
 > [deps 2/2] {RUN_PIP}:
------
#9 ERROR: a later error is not the first one
ERROR: failed to solve: process "/bin/sh -c exit 3" did not complete successfully: exit code: 3
"""


def test_parse_progress_counts_dockerfile_steps_only() -> None:
    steps, failure = images.parse_progress(LOG)
    assert steps == [
        Step(f"[system 2/3] {RUN_SYSTEM}", True),
        Step("[system 3/3] RUN groupadd --gid 1000 ci", True),
        Step("[deps 1/2] COPY requirements.txt requirements-dev.txt /tmp/r/", False),
        Step(f"[deps 2/2] {RUN_PIP}", False),
        Step("[source 1/1] COPY src /app/src", True),
        Step("[ci 1/1] COPY --from=source --chown=ci:ci /app /app", False),
    ]
    assert failure is None


def test_parse_progress_names_the_first_failing_step() -> None:
    steps, failure = images.parse_progress(FAILED_LOG)
    assert steps == [
        Step("[deps 1/2] COPY requirements.txt requirements-dev.txt /tmp/r/", True),
        Step(f"[deps 2/2] {RUN_PIP}", False),
    ]
    assert failure == (
        f'[deps 2/2] {RUN_PIP}: process "/bin/sh -c exit 3" did not complete successfully:'
        " exit code: 3"
    )


def test_parse_progress_unnamed_stage_and_unknown_failing_vertex() -> None:
    log = "#3 [2/3] RUN make\n#3 CACHED\n#12 ERROR: failed to compute cache key: not found\n"
    steps, failure = images.parse_progress(log)
    assert steps == [Step("[2/3] RUN make", True)]
    assert failure == "#12: failed to compute cache key: not found"


def test_parse_progress_of_nothing() -> None:
    assert images.parse_progress("") == ([], None)


def test_build_report_rates_and_line() -> None:
    report = BuildReport(
        "ci:1",
        12.34,
        (
            Step("[system 2/3] RUN a", True),
            Step("[system 3/3] RUN b", True),
            Step("[deps 1/2] COPY r /r", False),
            Step("[2/2] RUN c", False),
        ),
    )
    assert (report.cached, report.hit_rate) == (2, 0.5)
    assert report.per_stage() == {"system": (2, 2), "deps": (0, 1), "-": (0, 1)}
    assert report.line() == (
        "built ci:1 in 12.3 s; cache hits 2/4 steps (50%): system 2/2, deps 0/1, - 0/1"
    )
    assert images.build_reports([report, report]) == [report.line(), report.line()]


def test_build_report_without_steps_is_all_cached() -> None:
    report = BuildReport("t", 0.0, ())
    assert report.hit_rate == 1.0
    assert report.line() == "built t in 0.0 s; cache hits 0/0 steps (100%): "


def test_build_argv_with_buildx() -> None:
    argv = images.build_argv(
        "docker",
        True,
        Path("/w/docker/Dockerfile.ci"),
        "ci",
        "ci:1",
        Path("/w"),
        {"PYTHON_VERSION": PY, "HTTP_PROXY": None},
        {"ca-bundle": "/etc/ssl/ca.pem"},
    )
    assert argv == [
        "docker",
        "buildx",
        "build",
        "--load",
        "--progress=plain",
        "-f",
        "/w/docker/Dockerfile.ci",
        "--target",
        "ci",
        "-t",
        "ci:1",
        "--build-arg",
        f"PYTHON_VERSION={PY}",
        "--build-arg",
        "HTTP_PROXY",
        "--secret",
        "id=ca-bundle,src=/etc/ssl/ca.pem",
        "/w",
    ]


def test_build_argv_classic_cli() -> None:
    argv = images.build_argv("podman", False, Path("D"), "t", "x", Path("."), {}, {})
    assert argv == [
        "podman",
        "build",
        "--progress=plain",
        "-f",
        "D",
        "--target",
        "t",
        "-t",
        "x",
        ".",
    ]


def test_has_buildx(fake_run: FakeRun) -> None:
    assert images.has_buildx("docker")
    fake_run.on("docker", "buildx", returncode=1, stderr="'buildx' is not a docker command.")
    assert not images.has_buildx("docker")
    assert fake_run.argvs == [["docker", "buildx", "version"]] * 2


def test_build_success_writes_the_log_and_keeps_proxies_out_of_argv(
    make_config: MakeConfig, fake_run: FakeRun
) -> None:
    config = make_config()
    fake_run.on("docker", "buildx", "build", stdout=LOG)
    out = io.StringIO()
    environ = {"HTTPS_PROXY": "http://user:hunter2@proxy:3128", "no_proxy": "", "PATH": "/bin"}
    dockerfile = config.root / "docker" / "Dockerfile.ci"
    report = images.build(config, dockerfile, "ci", "ci:1", True, out, environ)
    assert fake_run.argvs == [
        ["docker", "buildx", "version"],
        [
            "docker",
            "buildx",
            "build",
            "--load",
            "--progress=plain",
            "-f",
            str(dockerfile),
            "--target",
            "ci",
            "-t",
            "ci:1",
            "--build-arg",
            f"PYTHON_VERSION={PY}",
            "--build-arg",
            "PIP_NO_INDEX=1",
            "--build-arg",
            "HTTPS_PROXY",
            str(config.root),
        ],
    ]
    build_call = fake_run.calls[1]
    assert not any("hunter2" in arg for arg in build_call.argv)
    assert build_call.env == {**environ, "DOCKER_BUILDKIT": "1"}
    assert (build_call.cwd, build_call.tee) == (str(config.root), out)
    assert out.getvalue() == LOG
    assert (config.root / "reports" / "build-ci.log").read_text(encoding="utf-8") == LOG
    assert (config.root / "docker" / "wheelhouse").is_dir()
    assert (report.tag, report.cached, len(report.steps)) == ("ci:1", 3, 6)
    assert report.seconds >= 0


def test_build_in_a_read_only_checkout_warns_about_the_log(
    make_config: MakeConfig, fake_run: FakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(reports="taken")
    (config.root / "taken").write_text("a file where the reports folder would go")
    fake_run.on("docker", "buildx", "build", stdout=LOG)
    report = images.build(config, Path("D"), "ci", "ci:1", False, io.StringIO(), {})
    assert report.tag == "ci:1"
    err = capsys.readouterr().err
    assert err.startswith("ciparity: warning: cannot write the build log ") and err.count("\n") == 1


def test_build_online_without_buildx_uses_the_process_environment(
    make_config: MakeConfig, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIPARITY_BUILD_TEST", "1")
    config = make_config(reports="out")
    fake_run.on("docker", "buildx", returncode=1)
    images.build(config, Path("Dockerfile"), "runner", "r:1", False, io.StringIO())
    call = fake_run.calls[1]
    assert call.argv == [
        "docker",
        "build",
        "--progress=plain",
        "-f",
        "Dockerfile",
        "--target",
        "runner",
        "-t",
        "r:1",
        "--build-arg",
        f"PYTHON_VERSION={PY}",
        str(config.root),
    ]
    assert call.env is not None and call.env["CIPARITY_BUILD_TEST"] == "1"
    assert (config.root / "out" / "build-runner.log").read_text(encoding="utf-8") == ""


def test_build_failure_names_the_step(make_config: MakeConfig, fake_run: FakeRun) -> None:
    config = make_config()
    fake_run.on("docker", "buildx", "build", returncode=1, stdout=FAILED_LOG)
    with pytest.raises(BuildError) as info:
        images.build(config, Path("D"), "ci", "ci:1", False, io.StringIO(), {})
    log = config.root / "reports" / "build-ci.log"
    assert info.value.message == (
        f'building ci:1 failed at [deps 2/2] {RUN_PIP}: process "/bin/sh -c exit 3" did not'
        f" complete successfully: exit code: 3 (log: {log})"
    )
    assert info.value.exit_code == 4
    assert log.read_text(encoding="utf-8") == FAILED_LOG


def test_build_failure_without_a_step_uses_the_last_line(
    make_config: MakeConfig, fake_run: FakeRun
) -> None:
    config = make_config()
    fake_run.on("docker", "buildx", "build", returncode=1, stdout="starting\nno space left\n")
    with pytest.raises(BuildError, match=r"^building ci:1 failed at no space left \(log: "):
        images.build(config, Path("D"), "ci", "ci:1", False, io.StringIO(), {})


@pytest.mark.parametrize("relative", [True, False])
def test_build_passes_the_ca_bundle_as_a_secret(
    make_config: MakeConfig,
    fake_run: FakeRun,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    relative: bool,
) -> None:
    config = make_config()
    bundle = config.root / "certs" / "ca.pem"
    bundle.parent.mkdir()
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a relative bundle is the checkout's, wherever the task runs
    config = dataclasses.replace(config, ca_bundle="certs/ca.pem" if relative else str(bundle))
    images.build(config, Path("D"), "ci", "ci:1", False, io.StringIO(), {})
    assert fake_run.calls[1].argv[-3:] == [
        "--secret",
        f"id=ca-bundle,src={bundle}",
        str(config.root),
    ]


def test_build_with_a_missing_ca_bundle_is_a_config_error(
    make_config: MakeConfig, fake_run: FakeRun
) -> None:
    config = make_config(ca_bundle="/nonexistent/ca.pem")
    with pytest.raises(ConfigError) as info:
        images.build(config, Path("D"), "ci", "ci:1", False, io.StringIO(), {})
    assert info.value.message == "ca_bundle /nonexistent/ca.pem is not a file"
    assert fake_run.calls == []


def test_inspect_label(fake_run: FakeRun) -> None:
    fake_run.on(*INSPECT, "a", stdout='{"ciparity.base":"stand-in","other":"x"}\n')
    fake_run.on(*INSPECT, "b", stdout="null\n")
    fake_run.on(*INSPECT, "gone", returncode=1, stderr="Error: No such image: gone\n")
    assert images.inspect_label("docker", "a", "ciparity.base") == "stand-in"
    assert images.inspect_label("docker", "a", "ciparity") == ""
    assert images.inspect_label("docker", "b", "ciparity.base") == ""
    assert images.inspect_label("docker", "gone", "ciparity.base") is None
    assert fake_run.argvs[0] == [*INSPECT, "a"]


@pytest.mark.parametrize(
    "stderr",
    [
        "permission denied while trying to connect to the Docker daemon socket at"
        " unix:///var/run/docker.sock: Get ...: connect: permission denied",
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        " Is the docker daemon running?",
    ],
)
def test_inspect_label_raises_when_the_daemon_refuses(fake_run: FakeRun, stderr: str) -> None:
    fake_run.on(*INSPECT, returncode=1, stderr=stderr + "\n")
    with pytest.raises(DockerError) as info:
        images.inspect_label("docker", "a", "x")
    assert info.value.message == f"docker: {stderr}"


def test_base_info_missing_official_and_stand_in(
    make_config: MakeConfig, fake_run: FakeRun
) -> None:
    config = make_config()
    fake_run.on(*INSPECT, BASE, returncode=1, stderr="Error: No such image\n")
    assert images.base_info(config) == BaseInfo(BASE, "missing")
    fake_run.on(*INSPECT, BASE, stdout='{"maintainer":"someone"}')
    assert images.base_info(config) == BaseInfo(BASE, "official")
    labels = f'{{"ciparity.base":"stand-in","ciparity.base.python":"{FULL}"}}'
    fake_run.on(*INSPECT, BASE, stdout=labels)
    assert images.base_info(config) == BaseInfo(BASE, "stand-in", f"local stand-in, CPython {FULL}")
    fake_run.on(*INSPECT, BASE, stdout='{"ciparity.base":"stand-in"}')
    assert images.base_info(config) == BaseInfo(BASE, "stand-in", "local stand-in, CPython ?")


def fake_python(prefix: Path, version: str = PY, stdlib: bool = True) -> Path:
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / f"python{version}").write_text("", encoding="utf-8")
    if stdlib:
        (prefix / "lib" / f"python{version}").mkdir(parents=True)
        (prefix / "lib" / f"python{version}" / "os.py").write_text("", encoding="utf-8")
    return prefix


def test_find_host_python_configured_prefix(make_config: MakeConfig, tmp_path: Path) -> None:
    prefix = fake_python(tmp_path / "py")
    assert images.find_host_python(make_config(host_python=str(prefix))) == prefix
    assert images.find_host_python(make_config(host_python="/elsewhere"), str(prefix)) == prefix


def test_find_host_python_prefix_without_stdlib(make_config: MakeConfig, tmp_path: Path) -> None:
    prefix = fake_python(tmp_path / "py", stdlib=False)
    with pytest.raises(ConfigError) as info:
        images.find_host_python(make_config(host_python=str(prefix)))
    assert (
        info.value.message
        == f"--python {prefix}: no bin/python{PY} with its standard library there"
    )


def test_find_host_python_prefers_the_newest_pyenv_patch(
    make_config: MakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "pyenv" / "versions"
    for name in (f"{PY}.9", f"{PY}.10", f"{PY}.11"):
        fake_python(versions / name, stdlib=name != f"{PY}.11")
    fake_python(versions / f"{OLDER}.99", version=OLDER)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    assert images.find_host_python(make_config()) == versions / f"{PY}.10"


def test_find_host_python_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    root = write_checkout(tmp_path / "c", version="9.9")
    config = Config(root=root, python_version="9.9")
    with pytest.raises(CiparityError) as info:
        images.find_host_python(config)
    assert type(info.value) is CiparityError
    assert info.value.message == (
        "no CPython 9.9 on this host to build the stand-in base from: install one"
        " (e.g. `pyenv install 9.9`) and pass --python PREFIX, or make python:9.9-slim"
        " available (docker pull/load)"
    )


def _missing_until_pulled(fake: FakeRun) -> Callable[[Call], proc.Result]:
    def inspect(call: Call) -> proc.Result:
        if any(c.argv[1] == "pull" for c in fake.calls):
            return result(call.argv, stdout="{}")
        return result(call.argv, 1, stderr="Error: No such image\n")

    return inspect


def test_ensure_base_present_is_not_pulled(make_config: MakeConfig, fake_run: FakeRun) -> None:
    fake_run.on(*INSPECT, stdout="{}")
    assert images.ensure_base(make_config()) == BaseInfo(BASE, "official")
    assert fake_run.argvs == [[*INSPECT, BASE]]


def test_ensure_base_pulls_when_missing(make_config: MakeConfig, fake_run: FakeRun) -> None:
    fake_run.on(*INSPECT, respond=_missing_until_pulled(fake_run))
    assert images.ensure_base(make_config()) == BaseInfo(BASE, "official")
    assert fake_run.argvs == [[*INSPECT, BASE], ["docker", "pull", BASE], [*INSPECT, BASE]]
    assert fake_run.calls[1].timeout == 300


@pytest.fixture
def bootstraps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Config, Path]]:
    made: list[tuple[Config, Path]] = []

    def bootstrap(config: Config, prefix: Path, out: object = None) -> BaseInfo:
        made.append((config, prefix))
        return BaseInfo(config.base, "stand-in", "local stand-in, CPython x")

    monkeypatch.setattr(images, "bootstrap_base", bootstrap)
    return made


def test_ensure_base_builds_the_stand_in_when_the_pull_fails(
    make_config: MakeConfig,
    fake_run: FakeRun,
    bootstraps: list[tuple[Config, Path]],
    tmp_path: Path,
) -> None:
    prefix = fake_python(tmp_path / "py")
    config = make_config()
    fake_run.on(*INSPECT, returncode=1, stderr="Error: No such image\n")
    fake_run.on("docker", "pull", returncode=1, stderr=PULL_FAILED + "\n")
    out = io.StringIO()
    info = images.ensure_base(config, str(prefix), out=out)
    assert info == BaseInfo(BASE, "stand-in", "local stand-in, CPython x")
    assert out.getvalue() == (
        f"ciparity: cannot pull {BASE} ({PULL_FAILED}); building a local stand-in\n"
    )
    assert bootstraps == [(config, prefix)]


@pytest.mark.parametrize(("offline", "pull"), [("on", True), ("auto", False)])
def test_ensure_base_offline_never_pulls(
    make_config: MakeConfig,
    fake_run: FakeRun,
    bootstraps: list[tuple[Config, Path]],
    tmp_path: Path,
    offline: str,
    pull: bool,
) -> None:
    prefix = fake_python(tmp_path / "py")
    fake_run.on(*INSPECT, returncode=1, stderr="Error: No such image\n")
    images.ensure_base(make_config(offline=offline, host_python=str(prefix)), pull=pull)
    assert fake_run.argvs == [[*INSPECT, BASE]]
    assert [p for _, p in bootstraps] == [prefix]


@pytest.mark.parametrize(
    ("setting", "kind", "expected"),
    [
        ("auto", "stand-in", True),
        ("auto", "official", False),
        ("on", "official", True),
        ("off", "stand-in", False),
    ],
)
def test_offline(make_config: MakeConfig, setting: str, kind: str, expected: bool) -> None:
    assert images.offline(make_config(offline=setting), BaseInfo(BASE, kind)) is expected


def test_bootstrap_base_builds_and_imports_the_stand_in(
    make_config: MakeConfig, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", {"mmdebstrap": "/usr/bin/mmdebstrap"}.get)
    prefix = fake_python(tmp_path / FULL)
    python = str(prefix / "bin" / f"python{PY}")
    fake_run.on(python, stdout=FULL + "\n")
    fake_run.on("mmdebstrap", stdout="I: success\n")
    out = io.StringIO()
    config = make_config()
    assert images.bootstrap_base(config, prefix, out) == BaseInfo(
        BASE, "stand-in", f"local stand-in, CPython {FULL}"
    )
    version_call, debootstrap, imported = fake_run.calls
    assert version_call.argv == [python, "-c", "import platform; print(platform.python_version())"]
    assert version_call.env is not None and version_call.env["PYENV_VERSION"] == FULL
    tarball = debootstrap.argv[-1]
    assert Path(tarball).name == "rootfs.tar"
    assert Path(tarball).parent.name.startswith("ciparity-base-")
    assert not Path(tarball).parent.exists()
    exe = f"/usr/local/bin/python{PY}"
    excludes = (
        "--exclude='./lib/python*/test' --exclude='./lib/python*/site-packages/*'"
        " --exclude='./lib/python*/idlelib' --exclude='./lib/python*/tkinter'"
        " --exclude='./lib/python*/config-*/*.a' --exclude='*/__pycache__'"
    )
    hooks = [
        f'tar -C {prefix} {excludes} -c . | tar -C "$1/usr/local" -x',
        'echo /usr/local/lib > "$1/etc/ld.so.conf.d/ciparity-python.conf"',
        'chroot "$1" ldconfig',
        f'chroot "$1" {exe} -m ensurepip --default-pip',
        f'ln -sf python{PY} "$1/usr/local/bin/python3"',
        'ln -sf python3 "$1/usr/local/bin/python"',
        f'chroot "$1" {exe} -c \'import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, decimal,'
        " readline'",
        'chroot "$1" /usr/local/bin/python3.12 -m compileall -q -j 0 /usr/local/lib/python3.12',
        'rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*.bin',
    ]
    assert debootstrap.argv == [
        "mmdebstrap",
        "--variant=minbase",
        "--include=" + ",".join(images.STANDIN_RUNTIME + images.STANDIN_PREINSTALLED),
        "--aptopt=Acquire::Retries=3",
        *[f"--customize-hook={hook}" for hook in hooks],
        "trixie",
        tarball,
    ]
    assert debootstrap.tee is out
    assert out.getvalue() == "I: success\n"
    assert imported.argv == [
        "docker",
        "import",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change",
        "ENV LANG=C.UTF-8",
        "--change",
        f"ENV PYTHON_VERSION={FULL}",
        "--change",
        'CMD ["python3"]',
        "--change",
        "LABEL ciparity.base=stand-in",
        "--change",
        f"LABEL ciparity.base.python={FULL}",
        "--change",
        "LABEL ciparity.base.debian=trixie",
        tarball,
        BASE,
    ]


def test_bootstrap_base_falls_back_to_the_minor_version(
    make_config: MakeConfig, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", {"mmdebstrap": "/usr/bin/mmdebstrap"}.get)
    prefix = fake_python(tmp_path / "py")
    fake_run.on(str(prefix / "bin" / f"python{PY}"), returncode=1)
    info = images.bootstrap_base(make_config(), prefix, io.StringIO())
    assert info.detail == f"local stand-in, CPython {PY}"
    assert f"ENV PYTHON_VERSION={PY}" in fake_run.argvs[-1]


def test_bootstrap_base_needs_mmdebstrap(
    make_config: MakeConfig, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CiparityError) as info:
        images.bootstrap_base(make_config(), tmp_path)
    assert info.value.message == (
        "mmdebstrap is not installed: run `invoke setup` (or apt-get install mmdebstrap)"
    )
    assert fake_run.calls == []


def test_bootstrap_base_mmdebstrap_failure(
    make_config: MakeConfig, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", {"mmdebstrap": "/usr/bin/mmdebstrap"}.get)
    fake_run.on("mmdebstrap", returncode=1, stdout="I: downloading\nE: cannot reach mirror\n")
    with pytest.raises(BuildError) as info:
        images.bootstrap_base(make_config(), fake_python(tmp_path / "py"), io.StringIO())
    assert info.value.message == "building the stand-in base failed: E: cannot reach mirror"
    assert [a[0] for a in fake_run.argvs][-1] == "mmdebstrap"


def test_bootstrap_base_import_failure(
    make_config: MakeConfig, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", {"mmdebstrap": "/usr/bin/mmdebstrap"}.get)
    fake_run.on("docker", "import", returncode=1, stderr="Error: no space left on device\n")
    with pytest.raises(DockerError) as info:
        images.bootstrap_base(make_config(), fake_python(tmp_path / "py"), io.StringIO())
    assert info.value.message == (
        "docker import of the stand-in failed: Error: no space left on device"
    )


def test_bootstrap_base_tees_to_stdout_by_default(
    make_config: MakeConfig, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", {"mmdebstrap": "/usr/bin/mmdebstrap"}.get)
    images.bootstrap_base(make_config(), fake_python(tmp_path / "py"))
    assert fake_run.calls[1].tee is sys.stdout


@pytest.fixture
def requirements(checkout: Path) -> tuple[Path, Path, str]:
    req = checkout / "requirements.txt"
    dev = checkout / "requirements-dev.txt"
    req.write_text("invoke==3.0.3\n", encoding="utf-8")
    dev.write_text("-r requirements.txt\npytest==9.2.0\n", encoding="utf-8")
    digest = hashlib.sha256(req.read_bytes() + dev.read_bytes()).hexdigest()
    return req, dev, digest


def test_requirement_files_lists_the_existing_ones(checkout: Path) -> None:
    assert images.requirement_files(checkout) == []
    (checkout / "requirements-dev.txt").write_text("", encoding="utf-8")
    assert images.requirement_files(checkout) == [checkout / "requirements-dev.txt"]


def test_fill_wheelhouse_skips_an_unchanged_fill(
    make_config: MakeConfig, fake_run: FakeRun, requirements: tuple[Path, Path, str]
) -> None:
    config = make_config()
    house = config.root / "docker" / "wheelhouse"
    house.mkdir(parents=True)
    (house / ".stamp").write_text(requirements[2], encoding="utf-8")
    assert images.fill_wheelhouse(config) == house
    assert fake_run.calls == []


def test_fill_wheelhouse_downloads_and_stamps(
    make_config: MakeConfig, fake_run: FakeRun, requirements: tuple[Path, Path, str]
) -> None:
    req, dev, digest = requirements
    config = make_config()
    house = config.root / "docker" / "wheelhouse"
    house.mkdir(parents=True)
    (house / ".stamp").write_text("stale", encoding="utf-8")
    out = io.StringIO()
    assert images.fill_wheelhouse(config, out) == house
    assert fake_run.argvs == [
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(house)]
        + ["-r", str(req), "-r", str(dev)]
    ]
    assert (fake_run.calls[0].cwd, fake_run.calls[0].tee) == (str(config.root), out)
    assert (house / ".stamp").read_text(encoding="utf-8") == digest


def test_fill_wheelhouse_failure_keeps_the_old_stamp(
    make_config: MakeConfig, fake_run: FakeRun, requirements: tuple[Path, Path, str]
) -> None:
    config = make_config()
    fake_run.on(sys.executable, returncode=1, stdout="ERROR: No matching distribution for x\n")
    with pytest.raises(BuildError) as info:
        images.fill_wheelhouse(config, io.StringIO())
    assert info.value.message == (
        "filling the wheelhouse failed: ERROR: No matching distribution for x"
    )
    assert not (config.root / "docker" / "wheelhouse" / ".stamp").exists()


def test_fill_wheelhouse_needs_the_project_python(tmp_path: Path, fake_run: FakeRun) -> None:
    root = write_checkout(tmp_path / "old", version=OLDER)
    config = Config(root=root, python_version=OLDER)
    with pytest.raises(ConfigError) as info:
        images.fill_wheelhouse(config)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert info.value.message == (
        f"the wheelhouse must be filled by Python {OLDER}, this is {running}:"
        " run the tasks from .venv"
    )
    assert fake_run.calls == []


def test_image_size(fake_run: FakeRun) -> None:
    argv = ["docker", "image", "inspect", "--format", "{{.Size}}"]
    fake_run.on(*argv, "a", stdout="123456789\n")
    fake_run.on(*argv, "b", stdout="<no value>\n")
    fake_run.on(*argv, "gone", returncode=1, stdout="123\n")
    assert images.image_size("docker", "a") == 123456789
    assert images.image_size("docker", "b") == 0
    assert images.image_size("docker", "gone") == 0
    assert fake_run.argvs[0] == [*argv, "a"]


def test_standin_package_lists_are_distinct() -> None:
    assert set(images.STANDIN_PREINSTALLED).isdisjoint(images.STANDIN_RUNTIME)
    assert len(set(images.STANDIN_PREINSTALLED)) == len(images.STANDIN_PREINSTALLED)
