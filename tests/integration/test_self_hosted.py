"""The self-hosted image itself, against the fake GitHub API in a container next to it.

The fake runs in its own container (from the same image, the fixture copied in); each runner
container joins its network namespace, so `http://127.0.0.1:8080` is the fake wherever these
tests run: on a host, in the CI image, or in an act job. The image's agent is the stand-in.

CIPARITY_TEST_STANDIN_IMAGE names the stand-in image's tag (default ciparity-runner:standin) and
CIPARITY_RUNNER_IMAGE, when set, the act image `invoke build-runner` builds beside it, so runs
from several checkouts on one engine do not rebuild each other's images."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_helpers import FIXTURES, REPO, invoke_env, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

IMAGE = os.environ.get("CIPARITY_TEST_STANDIN_IMAGE", "ciparity-runner:standin")
CANARY = "ghp_CANARY0integration0CANARY0001"
ORIGIN = "http://127.0.0.1:8080"


def docker(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, **kw)
    if check and done.returncode:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
    return done


def repo_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment for invoke run in this checkout: its reports go where this run's go (in
    a check container, the only writable part of the checkout)."""
    return invoke_env({"CIPARITY_REPORTS": os.environ.get("CIPARITY_REPORTS", "reports"), **extra})


@pytest.fixture(scope="module")
def image(engine: None) -> str:
    """The self-hosted image with the stand-in agent, under a tag of its own: built (from cache,
    mostly) by `invoke build-runner`, so an image with the real agent is never replaced."""
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "build-runner"],
        cwd=REPO,
        env=repo_env(
            {
                "CIPARITY_SELF_HOSTED_IMAGE": IMAGE,
                "CIPARITY_RUNNER_AGENT": "standin",
                **{k: v for k, v in os.environ.items() if k == "CIPARITY_RUNNER_IMAGE"},
            }
        ),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode:
        problem = f"building {IMAGE} failed: {(done.stderr or done.stdout).strip()[-500:]}"
        if os.environ.get("CIPARITY_REQUIRE_DOCKER") == "1":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    return IMAGE


class Fake:
    """The fake GitHub API in a container; its requests and runners read through docker."""

    def __init__(self, image: str, *args: str) -> None:
        self.name = f"ciparity-fake-{secrets.token_hex(4)}"
        docker(
            "create",
            "--name",
            self.name,
            "--label",
            "ciparity.managed=1",
            "--entrypoint",
            "python3",
            image,
            "/tmp/fake_github.py",
            "--port",
            "8080",
            "--record",
            "/tmp/requests.jsonl",
            "--pat",
            CANARY,
            "--pat",
            "ghp_repoonly:repo",
            *args,
        )
        docker("cp", str(FIXTURES / "fake_github.py"), f"{self.name}:/tmp/fake_github.py")

    def start(self) -> None:
        docker("start", self.name)
        assert wait_for(lambda: "listening on" in docker("logs", self.name).stdout, 30), docker(
            "logs", self.name
        )

    def get(self, path: str) -> Any:
        code = f"import urllib.request as u; print(u.urlopen('{ORIGIN}{path}').read().decode())"
        return json.loads(docker("exec", self.name, "python3", "-c", code).stdout)

    def requests(self) -> list[dict[str, Any]]:
        return [r for r in self.get("/_fake/requests") if r["path"] != "/_agent/status"]

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests()]

    def runners(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/_fake/runners")
        return found

    def token(self, kind: str = "registration", scope: str = "/repos/octo/hello") -> str:
        code = (
            "import json, urllib.request as u; r = u.Request("
            f"'{ORIGIN}{scope}/actions/runners/{kind}-token', method='POST', headers={{"
            "'Accept': 'application/vnd.github+json', 'X-GitHub-Api-Version': '2022-11-28',"
            f"'User-Agent': 't', 'Authorization': 'Bearer {CANARY}'}}); "
            "print(json.loads(u.urlopen(r).read())['token'])"
        )
        return docker("exec", self.name, "python3", "-c", code).stdout.strip()

    def fail(self, spec: str) -> None:
        """Add a fault to the running fake (POST /_fake/fail)."""
        code = (
            "import sys, urllib.request as u; u.urlopen(u.Request("
            f"'{ORIGIN}/_fake/fail', data=sys.argv[1].encode(), method='POST')).read()"
        )
        docker("exec", self.name, "python3", "-c", code, json.dumps({"fail": spec}))

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)


@pytest.fixture
def fake(image: str) -> Iterator[Fake]:
    box = Fake(image)
    try:
        box.start()
        yield box
    finally:
        box.remove()


class Runner:
    """One runner container in the fake's network namespace."""

    def __init__(self, fake: Fake, settings: dict[str, str], *extra: str, **env: str) -> None:
        self.name = f"ciparity-runner-it-{secrets.token_hex(4)}"
        argv = [
            "create",
            "--name",
            self.name,
            "--label",
            "ciparity.managed=1",
            "--network",
            f"container:{fake.name}",
            "--stop-timeout",
            "60",
        ]
        for key, value in settings.items():
            argv += ["-e", f"CIPARITY_RUNNER_{key}={value}"]
        for key, value in env.items():
            argv += ["-e", f"{key}={value}"]
        docker(*argv, *extra, IMAGE)
        self.created = time.monotonic()
        docker("start", self.name)

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def wait(self, timeout: float = 60) -> int:
        done = docker("wait", self.name, timeout=timeout)
        return int(done.stdout.strip())

    def calls(self, script: str | None = None) -> list[dict[str, Any]]:
        raw = subprocess.run(
            ["docker", "cp", f"{self.name}:/home/runner/_diag/standin-calls.jsonl", "-"],
            capture_output=True,
        ).stdout
        if not raw:
            return []
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            member = tar.extractfile("standin-calls.jsonl")
            lines = member.read().decode().splitlines() if member else []
        found = [json.loads(line) for line in lines]
        return [c for c in found if script is None or c["script"] == script]

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)


def pool_containers(prefix: str, every: bool = True) -> list[str]:
    """`invoke runners` containers of this test's pool (named after its prefix)."""
    argv = ["ps", "-q", "--filter", "label=ciparity.runners", "--filter", f"name={prefix}-"]
    return docker(*argv, *(["-a"] if every else [])).stdout.split()


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for box in made:
        box.remove()


def start(
    made: list[Runner], fake: Fake, settings: dict[str, str], *extra: str, **env: str
) -> Runner:
    box = Runner(fake, settings, *extra, **env)
    made.append(box)
    return box


def test_the_image_meets_arcs_contract(image: str) -> None:
    script = (
        "set -e; id -u; id -g; id -G; test -x /home/runner/run.sh; test -x /home/runner/config.sh;"
        " test -d /home/runner/externals; test -d /home/runner/_work; test -w /home/runner/_work;"
        " docker --version >/dev/null; command -v tail"
    )
    done = docker("run", "--rm", "--entrypoint", "bash", image, "-c", script)
    uid, gid, groups, _ = done.stdout.splitlines()
    assert (uid, gid) == ("1001", "1001") and "123" in groups.split()
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "1001" and config["WorkingDir"] == "/home/runner"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "ciparity-runner"]
    # No credential in any layer's configuration or history.
    history = docker("history", "--no-trunc", image).stdout
    for text in (json.dumps(config), history):
        assert "TOKEN=" not in text and "ghp_" not in text and "PRIVATE KEY" not in text


def test_under_arc_the_image_does_not_register_itself(fake: Fake, runners: list[Runner]) -> None:
    jit = _jit_config(fake)
    before = len(fake.requests())
    # As ARC runs it: command /home/runner/run.sh, the JIT config in the environment ...
    arc = start(
        runners,
        fake,
        {},
        "--entrypoint",
        "/home/runner/run.sh",
        ACTIONS_RUNNER_INPUT_JITCONFIG=jit,
        STANDIN_AGENT_JOB="0.5",
    )
    assert arc.wait() == 0, arc.logs()
    # ... and with the image's own entrypoint, which must hand over without registering.
    jit2 = _jit_config(fake, "arc-2")
    own = start(runners, fake, {}, ACTIONS_RUNNER_INPUT_JITCONFIG=jit2, STANDIN_AGENT_JOB="0.5")
    assert own.wait() == 0, own.logs()
    assert "JIT config from the environment (ARC)" in own.logs()
    for box in (arc, own):
        assert box.calls("config.sh") == [] and len(box.calls("Runner.Listener")) == 1
    made = [p for p in fake.paths()[before:] if not p.startswith("/_agent")]
    assert made == ["/repos/octo/hello/actions/runners/generate-jitconfig"]  # the test's own
    assert fake.runners() == []


def _jit_config(fake: Fake, name: str = "arc-1") -> str:
    code = (
        "import json, urllib.request as u; r = u.Request("
        f"'{ORIGIN}/repos/octo/hello/actions/runners/generate-jitconfig', method='POST',"
        f" data=json.dumps({{'name': '{name}', 'runner_group_id': 1, 'labels': ['arc']}}).encode(),"
        " headers={'Accept': 'application/vnd.github+json', 'X-GitHub-Api-Version': '2022-11-28',"
        f" 'User-Agent': 't', 'Authorization': 'Bearer {CANARY}',"
        " 'Content-Type': 'application/json'}); print(json.loads(u.urlopen(r).read())"
        "['encoded_jit_config'])"
    )
    return docker("exec", fake.name, "python3", "-c", code).stdout.strip()


@pytest.mark.parametrize(
    "case, first_call",
    [
        ("token-repo", None),
        ("pat-org", "/orgs/octo/actions/runners/registration-token"),
        ("pat-enterprise", "/enterprises/acme/actions/runners/registration-token"),
        ("jit-pat-repo", "/repos/octo/hello/actions/runners/generate-jitconfig"),
    ],
)
def test_registration_per_auth_mode_and_scope_then_the_ephemeral_exit(
    fake: Fake, runners: list[Runner], case: str, first_call: str | None
) -> None:
    settings = {
        "token-repo": {"URL": f"{ORIGIN}/octo/hello", "TOKEN": fake.token()},
        "pat-org": {"URL": f"{ORIGIN}/octo", "PAT": CANARY},
        "pat-enterprise": {"URL": f"{ORIGIN}/enterprises/acme", "PAT": CANARY},
        "jit-pat-repo": {"URL": f"{ORIGIN}/octo/hello", "PAT": CANARY, "JIT": "true"},
    }[case]
    before = len(fake.requests())
    box = start(runners, fake, {**settings, "LABELS": "it"}, STANDIN_AGENT_JOB="0.5")
    # An ephemeral runner's job ends: the agent unregisters itself and the container exits 0.
    assert box.wait() == 0, box.logs()
    calls = [r for r in fake.requests()[before:]]
    api = [r for r in calls if not r["path"].startswith("/_")]
    assert (api[0]["path"] if api else None) == first_call
    assert all(r["headers"]["x-github-api-version"] == "2022-11-28" for r in api)
    configure = box.calls("config.sh")
    if case.startswith("jit"):
        assert configure == []
    else:
        (call,) = configure
        assert "--ephemeral" in call["argv"] and call["uid"] == 1001
        assert call["argv"][call["argv"].index("--labels") + 1] == "it"
    assert fake.runners() == []
    assert CANARY not in box.logs()


def test_docker_stop_deregisters_exactly_once(fake: Fake, runners: list[Runner]) -> None:
    box = start(runners, fake, {"URL": f"{ORIGIN}/octo/hello", "PAT": CANARY})
    assert wait_for(lambda: "Listening for Jobs" in box.logs(), 60), box.logs()
    started = time.monotonic()
    docker("stop", "-t", "60", box.name)
    seconds = time.monotonic() - started
    assert box.wait() == 0, box.logs()
    paths = fake.paths()
    assert paths.count("/repos/octo/hello/actions/runners/remove-token") == 1
    assert paths.count("/_agent/remove") == 1
    assert len([c for c in box.calls("config.sh") if c["argv"][:1] == ["remove"]]) == 1
    assert fake.runners() == []
    assert seconds < 60, "deregistration must finish inside the stop timeout"
    print(f"SIGTERM to deregistered and exited: {seconds:.2f} s")


def test_bad_configuration_in_the_image_is_one_line_and_no_call(
    fake: Fake, runners: list[Runner]
) -> None:
    before = len(fake.requests())
    cases = {
        "no URL": ({"PAT": CANARY}, "CIPARITY_RUNNER_URL is not set"),
        "two credentials": (
            {"URL": f"{ORIGIN}/o/r", "PAT": CANARY, "TOKEN": "x" * 8},
            "two credentials",
        ),
        "EPHEMERAL=false trap": (
            {"URL": f"{ORIGIN}/o/r", "TOKEN": "x" * 8},
            "EPHEMERAL is another",
        ),
        "unknown scope": (
            {"URL": f"{ORIGIN}/o/r", "TOKEN": "x" * 8, "SCOPE": "team"},
            "is not a scope",
        ),
    }
    for name, (settings, expected) in cases.items():
        env = {"EPHEMERAL": "false"} if "trap" in name else {}
        box = start(runners, fake, settings, **env)
        assert box.wait() == 2, (name, box.logs())
        lines = box.logs().strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (name, lines)
        assert CANARY not in box.logs()
    assert len(fake.requests()) == before


def test_api_errors_in_the_image(fake: Fake, runners: list[Runner]) -> None:
    box = start(runners, fake, {"URL": f"{ORIGIN}/octo", "PAT": "ghp_repoonly"})
    assert box.wait() == 3
    ready, line = box.logs().strip().splitlines()
    assert ready.startswith("ciparity-runner: ready; a stop (SIGTERM) ends within 125 s")
    assert "(403 Resource not accessible by personal access token)" in line
    assert "`admin:org`" in line


def test_invoke_runners_replaces_finished_runners_and_deregisters_on_stop(
    fake: Fake, tmp_path: Path
) -> None:
    prefix = f"it-pool-{secrets.token_hex(3)}"
    env = repo_env(
        {
            "CIPARITY_RUNNER_URL": f"{ORIGIN}/octo/hello",
            "CIPARITY_RUNNER_PAT": CANARY,
            "CIPARITY_RUNNER_NAME_PREFIX": prefix,
            "CIPARITY_SELF_HOSTED_IMAGE": IMAGE,
            "CIPARITY_ENV_ALLOW": "STANDIN_AGENT_JOB",
            "STANDIN_AGENT_JOB": "3",
        }
    )
    log = tmp_path / "runners.log"
    with log.open("w") as out:
        pool = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "invoke",
                "runners",
                "--replicas",
                "2",
                "--network",
                f"container:{fake.name}",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:

        def registered() -> int:
            assert pool.poll() is None, log.read_text()
            return fake.paths().count("/_agent/register")

        # Two at first; each ephemeral runner's job ends, a fresh container replaces it.
        assert wait_for(lambda: registered() >= 3, 120), log.read_text()
        assert wait_for(lambda: len(fake.runners()) == 2, 60), log.read_text()
        pool_boxes = pool_containers(prefix, every=False)
        assert len(pool_boxes) == 2
        inspected = docker("inspect", *pool_boxes).stdout
        assert CANARY not in inspected  # the PAT was copied in as a file, not passed as env
        pool.send_signal(signal.SIGTERM)
        code = pool.wait(timeout=120)
    finally:
        if pool.poll() is None:
            pool.kill()
    text = log.read_text()
    assert code == 0, text
    assert pool_containers(prefix) == []
    assert CANARY not in text
    # What the product guarantees (issue 9): every runner that registered ends deregistered, by
    # itself (its job done) or by one remove call, and no call is made twice. How many were
    # running at the stop is a race: one may finish its job as the stop comes.
    assert fake.runners() == [], text
    calls = fake.requests()
    names = [r["body"]["name"] for r in calls if r["path"] == "/_agent/register"]
    removed = [r["body"]["id"] for r in calls if r["path"] == "/_agent/remove"]
    finished = [r["body"]["id"] for r in calls if r["path"] == "/_agent/job-done"]
    assert len(names) == len(set(names)) >= 3
    assert len(removed) == len(set(removed)) and len(finished) == len(set(finished))
    assert len(set(removed) | set(finished)) == len(names), text
    tokens = [r for r in calls if r["path"].endswith("/remove-token")]
    assert len(tokens) == len(removed), text  # one remove token per removal, none wasted


def _requirements() -> tuple[str, ...]:
    """requirements.txt's names as wheel file names begin (lower case, `-` as `_`)."""
    lines = (REPO / "requirements.txt").read_text().splitlines()
    pins = [line.split("==")[0].strip() for line in lines if line.strip() and line[0] != "#"]
    return tuple(name.lower().replace("-", "_") + "-" for name in pins)


@pytest.mark.parametrize("source", ["download", "local"])
def test_the_release_path_checks_the_tarball_checksum(
    image: str, tmp_path: Path, source: str
) -> None:
    """runner/Dockerfile's release stages, fed a tarball (GitHub is unreachable here): over HTTP
    from a server container, as the download stage fetches the release, or from runner/dist."""
    context = tmp_path / "context"
    (context / "runner" / "dist").mkdir(parents=True)
    (context / "docker").mkdir()
    shutil.copy(REPO / "runner" / "Dockerfile", context / "runner" / "Dockerfile")
    shutil.copy(REPO / "runner" / "bash_env.sh", context / "runner" / "bash_env.sh")
    shutil.copy(REPO / "requirements.txt", context / "requirements.txt")
    shutil.copytree(
        REPO / "docker" / "wheelhouse",
        context / "docker" / "wheelhouse",
        # Only the wheels of the entrypoint's own requirements (requirements.txt).
        ignore=lambda d, names: [n for n in names if not n.lower().startswith(_requirements())],
    )
    # A version of its own: the download step's cache key is its URL.
    version = f"0.0.{secrets.randbelow(10**9)}"
    release = tmp_path / "releases" / f"v{version}"
    release.mkdir(parents=True)
    tarball = release / f"actions-runner-linux-x64-{version}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name in ("config.sh", "run.sh"):
            tar.add(FIXTURES / "standin_agent" / name, arcname=name)
    shutil.copy(tarball, context / "runner" / "dist" / "actions-runner.tar.gz")
    shutil.copy(tarball, release / f"actions-runner-linux-arm64-{version}.tar.gz")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()

    # Offline (a stand-in base) the act stage installs from the wheelhouse only.
    offline = any(context.glob("docker/wheelhouse/invoke-*.whl"))
    server = f"ciparity-it-releases-{secrets.token_hex(3)}"

    def build(sha: str, tag: str) -> subprocess.CompletedProcess[str]:
        args = [
            "--build-arg",
            f"RUNNER_TARBALL={source}",
            "--build-arg",
            f"RUNNER_VERSION={version}",
        ]
        args += ["--build-arg", "PIP_NO_INDEX=1"] if offline else []
        args += ["--build-arg", f"RUNNER_RELEASES=http://{address}:8000"]
        for arch in ("X64", "ARM64"):
            args += ["--build-arg", f"RUNNER_SHA256_{arch}={sha}"]
        dockerfile = str(context / "runner" / "Dockerfile")
        return docker(
            "buildx", "build", "--load", "--progress=plain", "-f", dockerfile,
            "--target", "agent-release", *args, "-t", tag, str(context), check=False,
        )  # fmt: skip

    tag = f"ciparity-it-agent:{secrets.token_hex(3)}"
    try:
        # A release server on the engine's bridge, where the build's RUN steps can reach it.
        docker(
            "create", "--name", server, "--label", "ciparity.managed=1", "--entrypoint",
            "python3", image, "-m", "http.server", "8000", "--directory", "/home/runner/releases",
        )  # fmt: skip
        docker("cp", str(tmp_path / "releases"), f"{server}:/home/runner/releases")
        docker("start", server)
        address = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", server).stdout.strip()
        good = build(digest, tag)
        assert good.returncode == 0, good.stderr[-3000:]
        listed = docker("run", "--rm", "--entrypoint", "ls", tag, "/opt/actions-runner").stdout
        assert listed.split() == ["config.sh", "run.sh"]
        fetched = docker("logs", server, check=False).stderr
        assert (f"GET /v{version}/actions-runner-linux-" in fetched) == (source == "download")
        bad = build("0" * 64, tag + "-bad")
        assert bad.returncode != 0
        assert "actions-runner.tar.gz: FAILED" in bad.stderr, bad.stderr[-3000:]
    finally:
        docker("rm", "-f", server, check=False)
        docker("rmi", "-f", tag, tag + "-bad", check=False)


def test_invoke_runners_bad_settings_are_one_line_and_start_nothing(image: str) -> None:
    prefix = f"it-bad-{secrets.token_hex(3)}"
    cases = {
        ("--replicas", "2"): "ciparity: error: no credential: set one of CIPARITY_RUNNER_TOKEN",
        ("--replicas", "0"): "ciparity: error: --replicas 0: expected at least 1",
        ("--replicas", "1"): f"ciparity: error: {IMAGE} carries the stand-in agent, a test double",
    }
    for args, expected in cases.items():
        env = {
            "CIPARITY_SELF_HOSTED_IMAGE": IMAGE,
            "CIPARITY_RUNNER_URL": f"{ORIGIN}/o/r",
            "CIPARITY_RUNNER_NAME_PREFIX": prefix,
        }
        if args[1] != "2":
            env["CIPARITY_RUNNER_TOKEN"] = "x" * 8
        if args[1] == "1":
            env["CIPARITY_RUNNER_URL"] = "https://github.com/octo/hello"
        done = subprocess.run(
            [sys.executable, "-m", "invoke", "runners", *args],
            cwd=REPO,
            env=repo_env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]
        assert done.stderr.startswith(expected), done.stderr
    assert pool_containers(prefix) == []


def test_invoke_runners_does_not_restart_failing_runners(fake: Fake, tmp_path: Path) -> None:
    """A registration token GitHub does not know: each runner fails in config.sh; none is
    replaced (that would retry against GitHub forever) and the pool ends with that code."""
    prefix = f"it-fail-{secrets.token_hex(3)}"
    env = {
        "CIPARITY_RUNNER_NAME_PREFIX": prefix,
        "CIPARITY_SELF_HOSTED_IMAGE": IMAGE,
        "CIPARITY_RUNNER_URL": f"{ORIGIN}/octo/hello",
        "CIPARITY_RUNNER_TOKEN": "REGnotissuedbyfake",
    }
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "runners", "--replicas", "2"]
        + ["--network", f"container:{fake.name}"],
        cwd=REPO,
        env=repo_env(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stdout.count("failed: not replaced") == 2, done.stdout
    assert done.stdout.count("started ") == 2
    assert done.stderr.strip() == "ciparity: a runner exited with code 4"
    assert fake.paths().count("/_agent/register") == 2
    assert pool_containers(prefix) == []


def test_invoke_runners_does_not_replace_a_runner_whose_listener_fails(
    fake: Fake, tmp_path: Path
) -> None:
    """Issue 14, finding 2: the listener cannot open its session (runner not found, here), exits
    1, and run.sh turns that into 0, as actions/runner's does. Read as a finished job, it was
    replaced in a loop; the entrypoint now says 4, and the pool ends."""
    prefix = f"it-dead-{secrets.token_hex(3)}"
    fake.fail("agent-session=404")
    env = {
        "CIPARITY_RUNNER_NAME_PREFIX": prefix,
        "CIPARITY_SELF_HOSTED_IMAGE": IMAGE,
        "CIPARITY_RUNNER_URL": f"{ORIGIN}/octo/hello",
        "CIPARITY_RUNNER_PAT": CANARY,
    }
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "runners", "--replicas", "1"]
        + ["--network", f"container:{fake.name}"],
        cwd=REPO,
        env=repo_env(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "failed: not replaced" in done.stdout
    assert "its listener exited with code 1 (terminated error)" in done.stdout
    assert fake.paths().count("/_agent/register") == 1
    assert fake.runners() == []
    assert pool_containers(prefix) == []


def test_the_stand_in_refuses_a_real_github_and_keeps_no_token(
    fake: Fake, runners: list[Runner]
) -> None:
    """Issue 14, finding 8: `docker run` of the stand-in image against github.com sent the token
    to the stand-in's register call and wrote it to _diag/standin-calls.jsonl."""
    secret = "AAAAREGISTRATIONsecret0000000"
    box = start(runners, fake, {"URL": "https://github.com/octo/hello", "TOKEN": secret})
    assert box.wait() == 4, box.logs()
    assert "refusing to talk to 'github.com'" in box.logs()
    (call,) = box.calls("config.sh")
    assert call["env"]["ACTIONS_RUNNER_INPUT_TOKEN"].startswith("***sha256:")
    assert secret not in json.dumps(box.calls()) and secret not in box.logs()
