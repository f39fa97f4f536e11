"""`invoke act-ci` runs ordinary workflows with the REAL actions/setup-python@v5 and
actions/cache@v4 (synced into an action mirror from ../shared/actions), offline: the tool
cache, node, pip through the host's CA, the cache server on loopback (a second run restores),
artifacts through the local double, a missing tool's hint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from docker_helpers import copy_fixture, invoke, managed, owners, shared_actions_remote

# The published actions come from ../shared/actions, which only this checkout's own
# machine has (not a workflow job): see the `shared_actions` marker.
pytestmark = [pytest.mark.docker, pytest.mark.shared_actions, pytest.mark.usefixtures("engine")]

RUNNER_IMAGE = os.environ.get("CIPARITY_IT_RUNNER_IMAGE", "ciparity-runner:latest")


def _repo(fixture: str, dest: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the fixture as a git repository (no .actrc: act-ci maps the runner labels
    itself), and the settings that give it the runner image and an action mirror."""
    repo = copy_fixture(fixture, dest)
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], [*env, "commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True)
    settings = {
        "CIPARITY_RUNNER_IMAGE": RUNNER_IMAGE,
        "CIPARITY_ACTIONS_MIRROR": str(dest / "mirror"),
        "CIPARITY_OFFLINE": "on",
    }
    return repo, settings


def _lines(output: str, job: str) -> list[str]:
    return [line[len(job) + 3 :] for line in output.splitlines() if line.startswith(f"[{job}] ")]


def test_ordinary_workflow_with_real_setup_python_cache_and_artifacts(shared_dir: Path) -> None:
    repo, env = _repo("real_python", shared_dir)
    env["XDG_CACHE_HOME"] = str(shared_dir / "xdg")
    remote = shared_actions_remote(shared_dir)
    synced = invoke(["actions-sync"], repo, env={**env, "CIPARITY_ACTIONS_URL": f"file://{remote}"})
    # The artifact actions' code is not to be had here: the double stands in for them.
    errors = [line for line in synced.stderr.splitlines() if line.startswith("ciparity: error:")]
    assert [e.split(":")[2].strip() for e in errors] == [
        "actions/upload-artifact",
        "actions/download-artifact",
    ], (
        synced.stdout + synced.stderr
    )
    assert "actions/setup-python@v5: " in synced.stdout and "actions/cache@v4: " in synced.stdout
    # act's shared tool-cache volume, already there (and stale: Docker seeds only new volumes).
    subprocess.run(["docker", "volume", "create", "act-toolcache"], check=True, capture_output=True)

    first = invoke(["act-ci", "--verbose"], repo, env=env)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr
    test = _lines(first.stdout, "test")
    assert "  ✅  Success - Main actions/setup-python@v5" in "\n".join(test)
    python = "/opt/ciparity/toolcache/Python/3.12"
    assert any(line.startswith("python=Python 3.12") and python in line for line in test), test
    assert "pip-cache-hit=false" in test
    assert any(line.startswith("from-file=3.12.") for line in test), "python-version-file"
    # The tool cache's Python belongs to the runner: pip upgrades itself without sudo.
    assert any(line.startswith("Successfully installed pip-") for line in test), test
    assert not any("Defaulting to user installation" in line for line in test)
    assert any(line.startswith("Successfully installed") and "pytest" in line for line in test)
    assert "1 passed" in "\n".join(test)
    assert "jq" in test
    assert any("actions/upload-artifact is a local double under invoke act-ci" in t for t in test)
    assert (
        "ciparity: actions/upload-artifact@v4 is not in the action mirror: a local double runs"
        in first.stderr
    )
    assert "  ✅  Success - Post actions/setup-python@v5" in "\n".join(test)
    assert "1" in _lines(first.stdout, "summary"), "the downloaded junit.xml has one testcase"
    junit = repo / "reports" / "act" / "artifacts" / "test-reports" / "junit.xml"
    assert "testcase" in junit.read_text(encoding="utf-8")
    cache = shared_dir / "xdg" / "ciparity" / "act-cache"
    assert [p.name for p in cache.iterdir()][0].startswith("real_python-")

    second = invoke(["act-ci", "--verbose"], repo, env=env)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr
    test = _lines(second.stdout, "test")
    # Both report a hit: act's server lowercases keys, the relay gives them back as saved.
    assert "data-cache-hit=true" in test
    assert "pip-cache-hit=true" in test
    restored = [line for line in test if line.startswith("Cache restored from key: ")]
    assert any("setup-python-" in line and "-pip-" in line for line in restored), restored
    assert "Cache restored from key: sample-data-v1-Linux" in restored

    assert managed(repo) == []
    assert [p.name for p in (repo / "reports" / ".act").iterdir()] == []
    assert owners(repo / "reports") == {os.getuid()}


def test_a_missing_tool_names_itself_and_how_to_add_it(shared_dir: Path) -> None:
    repo, env = _repo("real_missing_tool", shared_dir)
    proxy = "http://user:pw@proxy.invalid:3128"
    env.update(HTTPS_PROXY=proxy, NO_PROXY="corp")
    done = invoke(["act-ci", "--verbose"], repo, env=env)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr
    tools = _lines(done.stdout, "tools")
    # The host's proxy (loopback kept direct for the cache server) and CA bundle, read-only.
    assert f"proxy={proxy} no_proxy=corp,127.0.0.1,localhost" in tools
    for name in ("SSL_CERT_FILE", "PIP_CERT", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"):
        assert f"{name}=/etc/ciparity/host-ca.pem" in tools
    assert "ca read-only" in tools
    assert "  ✅  Success - Main tools the image has" in "\n".join(tools)
    assert "Debian" in tools and any(line.startswith("v2") for line in tools), tools
    assert (
        "ciparity: yq: command not found in the runner image; hosted runners may have it: add its"
        " Debian package to runner_packages in [tool.ciparity] (or CIPARITY_RUNNER_PACKAGES),"
        " then invoke build-runner"
    ) in tools
    assert "  ❌  Failure - Main a tool it lacks" in "\n".join(tools)


def test_unreadable_ca_bundle_is_one_line_and_leaves_nothing(shared_dir: Path) -> None:
    repo, env = _repo("real_missing_tool", shared_dir)
    env["CIPARITY_CA_BUNDLE"] = str(shared_dir / "no.pem")
    done = invoke(["act-ci", "--verbose"], repo, env=env)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"ciparity: error: ca_bundle: cannot read CA bundle {shared_dir / 'no.pem'}:"
        " No such file or directory"
    )
    assert managed(repo) == []
    kept = repo / "reports" / ".act"
    assert not kept.exists() or list(kept.iterdir()) == []
