"""Host prerequisites the project installs itself: mmdebstrap, and the docker CLI plugins (buildx,
compose) the engine's CLI lacks, taken from Debian's archive through apt's own configuration."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ciparity import proc
from ciparity.errors import CiparityError

PLUGIN_SUITE = "trixie"
PLUGINS = {"buildx": "docker-buildx", "compose": "docker-compose"}


def debian_mirrors(files: Iterable[Path], codename: str) -> list[str]:
    """URIs of the host's Debian archive: those serving `codename` itself (not -security)."""
    uris: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(":") for line in stanza.splitlines())
                    if not k.startswith("#")
                )
                if codename in fields.get("suites", "").split():
                    uris += fields.get("uris", "").split()
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == codename:
                    uris.append(words[1])
    return list(dict.fromkeys(uris))


def host_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return ""
    match = re.search(r"^VERSION_CODENAME=(\S+)", text, re.M)
    return match.group(1).strip('"') if match else ""


def apt_source_files() -> list[Path]:
    base = Path("/etc/apt")
    files = [base / "sources.list"]
    if (base / "sources.list.d").is_dir():
        files += sorted((base / "sources.list.d").iterdir())
    return files


def missing_plugins(docker: str) -> list[str]:
    return [name for name in PLUGINS if not proc.run([docker, name, "version"]).ok]


def plugin_dir() -> Path:
    """Where the docker CLI looks for this user's plugins."""
    config = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(config) / "cli-plugins"


def install_plugins(docker: str, names: list[str]) -> list[str]:
    """Fetch the Debian packages of the missing plugins and unpack their binaries for this user."""
    if not names:
        return []
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise CiparityError(
            f"docker {' and '.join(names)} missing and this host has no apt to fetch them:"
            " install the docker buildx and compose plugins"
        )
    mirrors = debian_mirrors(apt_source_files(), host_codename())
    if not mirrors:
        raise CiparityError(
            "no Debian archive in this host's apt sources to fetch docker plugins from"
        )
    with tempfile.TemporaryDirectory(prefix="ciparity-plugins-") as tmp:
        work = Path(tmp)
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "cache" / "archives" / "partial").mkdir(parents=True)
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        (work / "sources.list").write_text(
            f"deb [signed-by={keyring}] {mirrors[0]} {PLUGIN_SUITE} main\n", encoding="utf-8"
        )
        opts = [
            f"-oDir::Etc::SourceList={work / 'sources.list'}",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={work / 'lists'}",
            f"-oDir::Cache={work / 'cache'}",
            "-oDir::State::status=/dev/null",
            "-oDebug::NoLocking=1",
            "-oAPT::Sandbox::User=root" if os.getuid() == 0 else "-oAPT::Sandbox::User=",
        ]
        proc.run(["apt-get", *opts, "update"], check=True)
        packages = [PLUGINS[n] for n in names]
        proc.run(["apt-get", *opts, "download", *packages], check=True, cwd=work)
        target = plugin_dir()
        target.mkdir(parents=True, exist_ok=True)
        for deb in sorted(work.glob("*.deb")):
            unpacked = work / "x"
            proc.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
            for binary in (unpacked / "usr" / "libexec" / "docker" / "cli-plugins").glob(
                "docker-*"
            ):
                shutil.copy2(binary, target / binary.name)
    still = missing_plugins(docker)
    if still:
        raise CiparityError(
            f"docker {' and '.join(still)} still missing after installing into {target}"
        )
    return names


def ensure_mmdebstrap() -> None:
    """mmdebstrap builds the offline stand-in base; install it from the host's apt when missing."""
    if shutil.which("mmdebstrap"):
        return
    if os.getuid() != 0:
        raise CiparityError("mmdebstrap is missing: run `sudo apt-get install mmdebstrap`")
    proc.run(["apt-get", "update", "-qq"])
    proc.run(["apt-get", "install", "-y", "-qq", "mmdebstrap"], check=True)
