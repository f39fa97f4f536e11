"""`invoke runners` planning, the credential tar, the agent build args, and ARC's values."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml

from ciparity import config, selfhosted, tasks
from ciparity.errors import CiparityError, ConfigError

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
