"""`invoke runners` planning, the credential tar, the agent build args, and ARC's values."""

from __future__ import annotations

import io
import os
import signal
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Call, FakeRun, result

from ciparity import config, runner, selfhosted, tasks
from ciparity.errors import CiparityError, ConfigError, Interrupted

REPO = Path(__file__).resolve().parents[2]
URL = "https://github.com/octo/hello"


def make_config(root: Path, **overrides: str) -> config.Config:
    (root / ".python-version").write_text("3.12\n")
    return config.load(root, overrides, environ={})


def test_the_plan_keeps_credentials_out_of_the_environment(tmp_path: Path) -> None:
    environ = {
        "CIPARITY_RUNNER_URL": URL,
        "CIPARITY_RUNNER_PAT": "ghp_canary_0123456789",
        "CIPARITY_RUNNER_LABELS": "gpu",
        "CIPARITY_RUNNER_NAME_PREFIX": "box",
        "CIPARITY_RUNNER_IMAGE": "not-for-the-container:1",
        "HOME": "/root",
    }
    plan = selfhosted.plan(make_config(tmp_path), environ, 2, network="net")
    assert "ghp_canary_0123456789" not in repr(plan.env)
    assert plan.files == {"PAT": "ghp_canary_0123456789"}
    assert plan.env == {
        "CIPARITY_RUNNER_URL": URL,
        "CIPARITY_RUNNER_LABELS": "gpu",
        "CIPARITY_RUNNER_NAME_PREFIX": "box",
        "CIPARITY_RUNNER_PAT_FILE": "/home/runner/.ciparity/pat",
        "CIPARITY_RUNNER_DELETE_SECRET_FILES": "true",
    }
    assert plan.pool.startswith("box-") and plan.image == "ciparity-runner:self-hosted"
    spec = selfhosted.spec(plan, 3)
    argv = " ".join(selfhosted.container.create_argv(spec))
    assert "ghp_canary" not in argv and "--init" not in argv
    assert f"--name {plan.pool}-3" in argv and "--network net" in argv
    assert f"--stop-timeout {plan.stop_timeout}" in argv


def test_secret_files_on_the_host_are_read_there(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("AAAAregistration\n")
    environ = {"CIPARITY_RUNNER_URL": URL, "CIPARITY_RUNNER_TOKEN_FILE": str(token)}
    plan = selfhosted.plan(make_config(tmp_path), environ, 1)
    assert plan.files == {"TOKEN": "AAAAregistration"}
    assert str(token) not in repr(plan.env)


def test_the_credential_tar_is_private_to_the_runner() -> None:
    data = selfhosted.secrets_tar({"PAT": "ghp_x", "APP_PRIVATE_KEY": "-----BEGIN"})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {".ciparity", ".ciparity/pat", ".ciparity/app_private_key"}
        assert members[".ciparity"].mode == 0o700 and members[".ciparity"].isdir()
        pat = members[".ciparity/pat"]
        assert (pat.mode, pat.uid, pat.gid) == (0o400, 1001, 1001)
        extracted = tar.extractfile(pat)
        assert extracted is not None and extracted.read() == b"ghp_x"


@pytest.mark.parametrize(
    "environ, replicas, expected",
    [
        ({"CIPARITY_RUNNER_URL": URL, "CIPARITY_RUNNER_TOKEN": "AAAA"}, 0, "--replicas 0"),
        ({"CIPARITY_RUNNER_JITCONFIG": "e30="}, 1, "a JIT config registers exactly one"),
        (
            {
                "CIPARITY_RUNNER_URL": URL,
                "CIPARITY_RUNNER_TOKEN": "AAAA",
                "CIPARITY_RUNNER_NAME": "a",
            },
            2,
            "use CIPARITY_RUNNER_NAME_PREFIX",
        ),
        ({"CIPARITY_RUNNER_URL": URL}, 1, "no credential"),
    ],
)
def test_plan_errors(tmp_path: Path, environ: dict[str, str], replicas: int, expected: str) -> None:
    with pytest.raises(CiparityError, match=expected):
        selfhosted.plan(make_config(tmp_path), environ, replicas)


def test_agent_build_args(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert tasks._agent_args(config, offline=False) == {
        "RUNNER_AGENT": "release",
        "RUNNER_TARBALL": "download",
    }
    assert tasks._agent_args(config, offline=True) == {"RUNNER_AGENT": "standin"}
    local = tmp_path / tasks.LOCAL_AGENT
    with pytest.raises(ConfigError, match="runner/dist/actions-runner.tar.gz is missing"):
        tasks._agent_args(make_config(tmp_path, runner_agent="local"), offline=True)
    local.parent.mkdir(parents=True)
    local.write_bytes(b"tar")
    assert tasks._agent_args(config, offline=True)["RUNNER_TARBALL"] == "local"
    standin = make_config(tmp_path, runner_agent="standin")
    assert tasks._agent_args(standin, offline=False) == {"RUNNER_AGENT": "standin"}


def test_the_arc_values_meet_the_charts_contract() -> None:
    """What gha-runner-scale-set's templates enforce or rely on, for runner/k8s/values.yaml."""
    values = yaml.safe_load((REPO / "runner" / "k8s" / "values.yaml").read_text())
    assert values["githubConfigUrl"].startswith("https://github.com/")
    assert isinstance(values["githubConfigSecret"], str) and values["githubConfigSecret"]
    assert 0 < len(values["runnerScaleSetName"]) <= 45
    assert 0 <= values["minRunners"] <= values["maxRunners"]
    assert values["containerMode"]["type"] == "dind"
    runners = [c for c in values["template"]["spec"]["containers"] if c["name"] == "runner"]
    assert len(runners) == 1, "ARC passes the JIT config only to the container named runner"
    (container,) = runners
    assert container["command"] == ["/home/runner/run.sh"]
    assert container["image"].endswith("ciparity-runner:self-hosted")
    assert container["securityContext"]["runAsUser"] == 1001
    # The Dockerfile's self-hosted target provides what the values rely on.
    dockerfile = (REPO / "runner" / "Dockerfile").read_text()
    self_hosted = dockerfile.split("AS self-hosted", 1)[1]
    assert "COPY --from=agent --chown=1001:1001 /opt/actions-runner/ /home/runner/" in self_hosted
    assert "USER 1001\n" in self_hosted  # by uid alone, so the docker group applies too
    assert "groupadd --gid 123 docker" in dockerfile


# --- issue 14, finding 8 --------------------------------------------------------------------


def test_a_pool_is_always_ephemeral(tmp_path: Path) -> None:
    environ = {
        "CIPARITY_RUNNER_URL": URL,
        "CIPARITY_RUNNER_TOKEN": "AAAA",
        "CIPARITY_RUNNER_EPHEMERAL": "false",
    }
    with pytest.raises(ConfigError, match="EPHEMERAL=false: `invoke runners` gives every job"):
        selfhosted.plan(make_config(tmp_path), environ, 1)


def test_the_stop_timeout_covers_the_entrypoints_worst_case(tmp_path: Path) -> None:
    environ = {"CIPARITY_RUNNER_URL": URL, "CIPARITY_RUNNER_TOKEN": "AAAA"}
    plan = selfhosted.plan(make_config(tmp_path), environ, 1)
    # Defaults: stop 20 + kill 5 + API (5 x 10 s + 1+2+4+8 s back-off) + remove 30 + margin 5.
    assert runner.worst_case_stop(runner.read_settings(environ)) == 125
    assert plan.stop_timeout == 126  # what the README recommends for docker stop
    slow = {**environ, "CIPARITY_RUNNER_TIMEOUT": "30", "CIPARITY_RUNNER_STOP_TIMEOUT": "60"}
    assert selfhosted.plan(make_config(tmp_path), slow, 1).stop_timeout == 60 + 5 + 165 + 30 + 6


def pool_env() -> dict[str, str]:
    return {
        "CIPARITY_RUNNER_URL": "http://127.0.0.1:9/octo/hello",
        "CIPARITY_RUNNER_TOKEN": "AAAAtoken",
    }


def test_sighup_stops_the_pool_like_sigterm(
    tmp_path: Path, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed terminal: before, SIGHUP killed `invoke runners` and left its runners unwatched
    (here the test's own handler stands in for that death, and the pool would poll forever)."""
    unhandled: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: unhandled.append(signum))
    polls: list[int] = []

    def ps(call: Call) -> Any:
        polls.append(1)
        if len(polls) == 1:
            os.kill(os.getpid(), signal.SIGHUP)
        if unhandled:
            raise RuntimeError("SIGHUP did not stop the pool")
        return result(call.argv)

    fake_run.on("docker", "ps", respond=ps)
    fake_run.on("docker", "inspect", stdout="0\n")
    monkeypatch.setattr(selfhosted.time, "sleep", lambda seconds: None)
    try:
        code = selfhosted.run(make_config(tmp_path), pool_env(), 2, out=io.StringIO())
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert code == 0 and unhandled == []
    stops = [c for c in fake_run.argvs if c[1:2] == ["stop"]]
    assert len(stops) == 1 and len(stops[0]) == 4 + 2  # docker stop -t N and both replicas
    removed = {c[-1] for c in fake_run.argvs if c[1:3] == ["rm", "-f"]}
    assert removed == set(stops[0][4:])
    assert signal.getsignal(signal.SIGHUP) is previous


def test_an_interrupt_right_after_docker_create_leaks_no_container(
    tmp_path: Path, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    enter = selfhosted.container.Container.__enter__

    def created_then_interrupted(self: Any) -> Any:
        enter(self)
        raise Interrupted(signal.SIGTERM)  # the signal lands before start_one records the box

    monkeypatch.setattr(selfhosted.container.Container, "__enter__", created_then_interrupted)
    fake_run.on("docker", "inspect", stdout="0\n")
    assert selfhosted.run(make_config(tmp_path), pool_env(), 1, out=io.StringIO()) == 0
    (created,) = [c[c.index("--name") + 1] for c in fake_run.argvs if c[1:2] == ["create"]]
    assert ["docker", "rm", "-f", "-v", created] in fake_run.argvs
