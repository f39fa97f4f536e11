"""Tests for ciparity.hostsetup: the host's Debian mirrors, and installing the docker plugins and
mmdebstrap through apt, against a fake `proc.run` (nothing is installed)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Call, FakeRun, result

from ciparity import hostsetup, proc
from ciparity.errors import CiparityError

pytestmark = pytest.mark.usefixtures("clean_env")

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SOURCES_LIST = f"""\
# the main archive
deb [arch=amd64 signed-by={KEYRING}] {MIRROR} bookworm main contrib
deb-src {MIRROR} bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb {MIRROR} bookworm-updates main
deb http://mirror.example/debian bookworm main
deb {MIRROR} bookworm non-free
deb short
"""
DEB822 = f"""\
Types: deb
URIs: {MIRROR} http://other.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: {KEYRING}

# Types: deb
# URIs: http://commented.example/debian

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def _redirect_etc(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Make the module's /etc/... paths point under root (other paths are untouched)."""

    def path(*parts: str) -> Path:
        real = Path(*parts)
        if str(real).startswith("/etc"):
            return root / str(real).lstrip("/")
        return real

    monkeypatch.setattr(hostsetup, "Path", path)


def test_debian_mirrors_from_one_line_lists(tmp_path: Path) -> None:
    listing = tmp_path / "sources.list"
    listing.write_text(SOURCES_LIST, encoding="utf-8")
    assert hostsetup.debian_mirrors([listing], "bookworm") == [
        MIRROR,
        "http://mirror.example/debian",
    ]
    assert hostsetup.debian_mirrors([listing], "trixie") == []


def test_debian_mirrors_from_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(DEB822, encoding="utf-8")
    listing = tmp_path / "extra.list"
    listing.write_text(f"deb {MIRROR} bookworm main\n", encoding="utf-8")
    missing = tmp_path / "absent.list"
    assert hostsetup.debian_mirrors([missing, sources, listing], "bookworm") == [
        MIRROR,
        "http://other.example/debian",
    ]


def test_host_codename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _redirect_etc(monkeypatch, tmp_path)
    assert hostsetup.host_codename() == ""
    (tmp_path / "etc").mkdir()
    release = tmp_path / "etc" / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nVERSION_CODENAME="bookworm"\n', encoding="utf-8")
    assert hostsetup.host_codename() == "bookworm"
    release.write_text("VERSION_CODENAME=trixie\n", encoding="utf-8")
    assert hostsetup.host_codename() == "trixie"
    release.write_text("ID=alpine\n", encoding="utf-8")
    assert hostsetup.host_codename() == ""


def test_apt_source_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _redirect_etc(monkeypatch, tmp_path)
    apt = tmp_path / "etc" / "apt"
    assert hostsetup.apt_source_files() == [apt / "sources.list"]
    (apt / "sources.list.d").mkdir(parents=True)
    for name in ("z.list", "debian.sources"):
        (apt / "sources.list.d" / name).write_text("", encoding="utf-8")
    assert hostsetup.apt_source_files() == [
        apt / "sources.list",
        apt / "sources.list.d" / "debian.sources",
        apt / "sources.list.d" / "z.list",
    ]


def test_missing_plugins(fake_run: FakeRun) -> None:
    fake_run.on("docker", "compose", returncode=1, stderr="'compose' is not a docker command.")
    assert hostsetup.missing_plugins("docker") == ["compose"]
    assert fake_run.argvs == [["docker", "buildx", "version"], ["docker", "compose", "version"]]


def test_plugin_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hostsetup.plugin_dir() == tmp_path / ".docker" / "cli-plugins"
    monkeypatch.setenv("DOCKER_CONFIG", "/opt/dockercfg")
    assert hostsetup.plugin_dir() == Path("/opt/dockercfg/cli-plugins")


def test_install_plugins_with_nothing_missing(fake_run: FakeRun) -> None:
    assert hostsetup.install_plugins("docker", []) == []
    assert fake_run.calls == []


@pytest.fixture
def apt_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """apt and dpkg-deb present, one mirror, plugins installed under tmp_path/dockercfg."""
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    listing = tmp_path / "sources.list"
    listing.write_text(f"deb {MIRROR} bookworm main\n", encoding="utf-8")
    monkeypatch.setattr(hostsetup, "apt_source_files", lambda: [listing])
    monkeypatch.setattr(hostsetup, "host_codename", lambda: "bookworm")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dockercfg"))
    return tmp_path / "dockercfg" / "cli-plugins"


def _apt_fake(fake: FakeRun, seen_sources: list[str]) -> None:
    def update(call: Call) -> proc.Result:
        source_list = call.argv[1].removeprefix("-oDir::Etc::SourceList=")
        seen_sources.append(Path(source_list).read_text(encoding="utf-8"))
        return result(call.argv)

    def download(call: Call) -> proc.Result:
        assert call.cwd is not None
        for package in call.argv[call.argv.index("download") + 1 :]:
            (Path(call.cwd) / f"{package}_1.0_amd64.deb").write_text(package, encoding="utf-8")
        return result(call.argv)

    def unpack(call: Call) -> proc.Result:
        deb, target = Path(call.argv[2]), Path(call.argv[3])
        plugins = target / "usr" / "libexec" / "docker" / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / deb.name.split("_")[0]).write_text("#!/bin/sh\n", encoding="utf-8")
        return result(call.argv)

    fake.on(
        "apt-get", respond=lambda call: download(call) if "download" in call.argv else update(call)
    )
    fake.on("dpkg-deb", respond=unpack)


def test_install_plugins_fetches_and_unpacks_the_debian_packages(
    fake_run: FakeRun, apt_host: Path
) -> None:
    sources: list[str] = []
    _apt_fake(fake_run, sources)
    assert hostsetup.install_plugins("docker", ["buildx", "compose"]) == ["buildx", "compose"]
    update, download, unpack1, unpack2, buildx, compose = fake_run.calls
    assert download.cwd is not None
    work = Path(download.cwd)
    assert work.name.startswith("ciparity-plugins-") and not work.exists()
    opts = [
        f"-oDir::Etc::SourceList={work}/sources.list",
        "-oDir::Etc::SourceParts=/dev/null",
        f"-oDir::State::Lists={work}/lists",
        f"-oDir::Cache={work}/cache",
        "-oDir::State::status=/dev/null",
        "-oDebug::NoLocking=1",
        "-oAPT::Sandbox::User=root" if os.getuid() == 0 else "-oAPT::Sandbox::User=",
    ]
    assert update.argv == ["apt-get", *opts, "update"]
    assert download.argv == ["apt-get", *opts, "download", "docker-buildx", "docker-compose"]
    assert (update.check, download.check) == (True, True)
    assert sources == [f"deb [signed-by={KEYRING}] {MIRROR} trixie main\n"]
    assert unpack1.argv == ["dpkg-deb", "-x", f"{work}/docker-buildx_1.0_amd64.deb", f"{work}/x"]
    assert unpack2.argv == ["dpkg-deb", "-x", f"{work}/docker-compose_1.0_amd64.deb", f"{work}/x"]
    assert (buildx.argv, compose.argv) == (
        ["docker", "buildx", "version"],
        ["docker", "compose", "version"],
    )
    assert sorted(p.name for p in apt_host.iterdir()) == ["docker-buildx", "docker-compose"]


@pytest.mark.parametrize(("uid", "user"), [(0, "root"), (1000, "")])
def test_install_plugins_apt_sandbox_user(
    fake_run: FakeRun,
    apt_host: Path,
    monkeypatch: pytest.MonkeyPatch,
    uid: int,
    user: str,
) -> None:
    monkeypatch.setattr(os, "getuid", lambda: uid)
    _apt_fake(fake_run, [])
    hostsetup.install_plugins("docker", ["compose"])
    assert fake_run.argvs[0][-2:] == [f"-oAPT::Sandbox::User={user}", "update"]


def test_install_plugins_still_missing(fake_run: FakeRun, apt_host: Path) -> None:
    _apt_fake(fake_run, [])
    fake_run.on("docker", "buildx", returncode=1)
    with pytest.raises(CiparityError) as info:
        hostsetup.install_plugins("docker", ["buildx"])
    assert info.value.message == f"docker buildx still missing after installing into {apt_host}"


def test_install_plugins_apt_failure_is_reported(fake_run: FakeRun, apt_host: Path) -> None:
    fake_run.on("apt-get", returncode=100, stderr="E: Failed to fetch\n")
    with pytest.raises(CiparityError, match=" update failed: E: Failed to fetch$"):
        hostsetup.install_plugins("docker", ["buildx"])
    assert len(fake_run.calls) == 1


def test_install_plugins_without_mirrors(
    fake_run: FakeRun, apt_host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hostsetup, "host_codename", lambda: "trixie")
    with pytest.raises(CiparityError) as info:
        hostsetup.install_plugins("docker", ["buildx"])
    assert info.value.message == (
        "no Debian archive in this host's apt sources to fetch docker plugins from"
    )
    assert fake_run.calls == []


@pytest.mark.parametrize("absent", ["apt-get", "dpkg-deb"])
def test_install_plugins_without_apt(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, absent: str
) -> None:
    which: Callable[[str], str | None] = lambda name: None if name == absent else f"/bin/{name}"
    monkeypatch.setattr(shutil, "which", which)
    with pytest.raises(CiparityError) as info:
        hostsetup.install_plugins("docker", ["buildx", "compose"])
    assert info.value.message == (
        "docker buildx and compose missing and this host has no apt to fetch them:"
        " install the docker buildx and compose plugins"
    )
    assert fake_run.calls == []


def test_ensure_mmdebstrap_present(fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    hostsetup.ensure_mmdebstrap()
    assert fake_run.calls == []


def test_ensure_mmdebstrap_as_root_installs_it(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "getuid", lambda: 0)
    hostsetup.ensure_mmdebstrap()
    assert fake_run.argvs == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "mmdebstrap"],
    ]
    assert [c.check for c in fake_run.calls] == [False, True]


def test_ensure_mmdebstrap_as_a_user_says_how(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    with pytest.raises(CiparityError) as info:
        hostsetup.ensure_mmdebstrap()
    assert info.value.message == "mmdebstrap is missing: run `sudo apt-get install mmdebstrap`"
    assert fake_run.calls == []
