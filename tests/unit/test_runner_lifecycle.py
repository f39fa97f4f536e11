"""The entrypoint end to end, as a process: the fake GitHub API on 127.0.0.1, the stand-in agent
in a temporary folder. Registration per auth mode and scope, deregistration exactly once, the
ephemeral exit, API errors and retries, and a canary credential that must never be printed.

No fixed sleeps: a test waits for the entrypoint's `ready` line (its signal handlers are set),
for a line of the agent, or for the fake (`fake.hanging`). Every process an entrypoint started
is ended by the test (Entry.kill), and conftest checks that none is left."""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MARK, fake_github_module, live_pids

from ciparity import runner

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "fixtures" / "standin_agent"
CANARY = "ghp_CANARY0canary0CANARY0canary01"
fg = fake_github_module()


@pytest.fixture
def fake(app_key: tuple[str, str]) -> Iterator[Any]:
    pats = {CANARY: None, "ghp_reposcopeonly": ["repo"]}
    with fg.FakeGitHub(pats=pats, app_id=42, app_public_key=app_key[1]) as server:
        yield server


class Entry:
    """One entrypoint process with its agent folder and its combined output."""

    def __init__(self, tmp: Path, fake: Any, settings: dict[str, str], **env: str) -> None:
        self.agent = tmp / "agent"
        if not self.agent.exists():
            shutil.copytree(STANDIN, self.agent)
        self.log = tmp / f"entry-{secrets.token_hex(3)}.log"
        # Every process this entrypoint starts inherits it: Entry.kill finds them all by it.
        self.mark = f"{MARK}_ENTRY={secrets.token_hex(6)}".encode()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CIPARITY_", "RUNNER_"))}
        base.update(
            {
                "CIPARITY_RUNNER_AGENT_DIR": str(self.agent),
                "CIPARITY_RUNNER_RETRY_DELAY": "0.05",
                "RUNNER_ALLOW_RUNASROOT": "1",  # the stand-in refuses root, as the agent does
                **{"CIPARITY_RUNNER_" + k: v for k, v in settings.items()},
                **env,
            }
        )
        name, _, value = self.mark.decode().partition("=")
        base[name] = value
        self.fake = fake
        self.seen = len(fake.requests)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ciparity.runner"], env=base, stdout=out, stderr=out
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def processes(self) -> list[int]:
        """Live processes this entrypoint started (itself included)."""
        found = []
        for pid in live_pids():
            try:
                if self.mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.append(pid)
            except OSError:
                pass
        return found

    def kill(self) -> None:
        """As a container's end: the entrypoint and all it started, at once."""
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def finish(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.kill()

    def pid_alive(self, pid: int) -> bool:
        return pid in live_pids()

    def listener_pids(self) -> list[int]:
        return [c["pid"] for c in self.calls("Runner.Listener")]

    def calls(self, script: str | None = None) -> list[dict[str, Any]]:
        record = self.agent / "_diag" / "standin-calls.jsonl"
        lines = record.read_text().splitlines() if record.exists() else []
        found = [json.loads(line) for line in lines]
        return [c for c in found if script is None or c["script"] == script]

    def requests(self) -> list[tuple[str, str, str]]:
        """(method, path, auth) of each call made since this entrypoint started, in order (the
        stand-in's online/offline reports left out)."""
        found = self.fake.requests[self.seen :]
        return [(r["method"], r["path"], r["auth"]) for r in found if r["path"] != "/_agent/status"]


def fingerprint(secret: str) -> str:
    """How the stand-in's record keeps a secret."""
    return "***sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def registration_token(fake: Any, scope: str = "/repos/octo/hello") -> str:
    req = urllib.request.Request(
        f"{fake.base_url}{scope}/actions/runners/registration-token",
        method="POST",
        headers={
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "tests",
            "Authorization": f"Bearer {CANARY}",
        },
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        token: str = json.loads(resp.read())["token"]
    return token


def url(fake: Any, path: str = "octo/hello") -> str:
    return f"{fake.base_url}/{path}"


READY = "ciparity-runner: ready;"
REG = "/repos/octo/hello/actions/runners/registration-token"
RM = "/repos/octo/hello/actions/runners/remove-token"


def test_pat_repo_ephemeral_job_ends_with_exit_0_and_no_remove(tmp_path: Path, fake: Any) -> None:
    settings = {"URL": url(fake), "PAT": CANARY, "LABELS": "gpu"}
    entry = Entry(tmp_path, fake, settings, STANDIN_AGENT_JOB="0.3")
    assert entry.finish() == 0, entry.output()
    assert entry.requests()[0] == ("POST", REG, "pat")
    assert [r[1] for r in entry.requests()] == [REG, "/_agent/register", "/_agent/job-done"]
    (configure,) = entry.calls("config.sh")
    argv = configure["argv"]
    assert argv[:3] == ["--unattended", "--url", url(fake)]
    assert argv[argv.index("--name") + 1].startswith("ciparity-")
    assert argv[argv.index("--labels") + 1] == "gpu"  # the agent adds its default labels
    assert argv[argv.index("--work") + 1] == "_work" and "--ephemeral" in argv
    # The registration token travels in config.sh's environment; the PAT goes nowhere.
    assert fake.token_kind(configure["env"]["ACTIONS_RUNNER_INPUT_TOKEN"]) == "registration"
    (run,) = entry.calls("Runner.Listener")
    assert run["argv"] == ["run"] and "ACTIONS_RUNNER_INPUT_TOKEN" not in run["env"]
    assert not any(CANARY in json.dumps(c) for c in entry.calls())
    assert not any(k.startswith("CIPARITY_RUNNER_") for k in run["env"])
    assert fake.runners == []  # GitHub removes an ephemeral runner after its job
    assert "already unregistered itself" in entry.output()
    assert CANARY not in entry.output()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_deregisters_exactly_once(tmp_path: Path, fake: Any, signum: int) -> None:
    settings = {"URL": url(fake, "octo"), "PAT": CANARY, "EPHEMERAL": "false", "GROUP": "ci"}
    entry = Entry(tmp_path, fake, settings)
    entry.wait_for("Listening for Jobs")
    assert len(fake.runners) == 1 and fake.runners[0]["ephemeral"] is False
    entry.proc.send_signal(signum)
    entry.proc.send_signal(signum)  # a second one, impatient: still one removal
    assert entry.finish() == 0, entry.output()
    paths = [r[1] for r in entry.requests()]
    assert paths == [
        "/orgs/octo/actions/runners/registration-token",
        "/_agent/register",
        "/orgs/octo/actions/runners/remove-token",
        "/_agent/remove",
    ], paths
    (configure,) = [c for c in entry.calls("config.sh") if c["argv"][:1] != ["remove"]]
    assert "--ephemeral" not in configure["argv"]
    assert configure["argv"][configure["argv"].index("--runnergroup") + 1] == "ci"
    (remove,) = [c for c in entry.calls("config.sh") if c["argv"][:1] == ["remove"]]
    assert fake.token_kind(remove["env"]["ACTIONS_RUNNER_INPUT_TOKEN"]) == "remove"
    assert fake.runners == []
    assert "deregistered ciparity-" in entry.output()


def test_a_registration_token_alone_registers_and_removes_with_it(
    tmp_path: Path, fake: Any
) -> None:
    token = registration_token(fake)
    entry = Entry(tmp_path, fake, {"URL": url(fake), "TOKEN": token, "NAME": "box-1"})
    entry.wait_for("Listening for Jobs")
    entry.proc.terminate()
    assert entry.finish() == 0, entry.output()
    # No API call of its own: config.sh registers, and removes with the same token.
    assert [r[1] for r in entry.requests()] == ["/_agent/register", "/_agent/remove"]
    expected = [fingerprint(token)] * 2
    assert [c["env"]["ACTIONS_RUNNER_INPUT_TOKEN"] for c in entry.calls("config.sh")] == expected
    assert token not in entry.output()


def test_a_github_app_gets_an_installation_token_first(
    tmp_path: Path, fake: Any, app_key: tuple[str, str]
) -> None:
    settings = {"URL": url(fake), "APP_ID": "42", "APP_PRIVATE_KEY": app_key[0]}
    entry = Entry(tmp_path, fake, settings, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0, entry.output()
    assert entry.requests()[:3] == [
        ("GET", "/repos/octo/hello/installation", "jwt"),
        ("POST", "/app/installations/1/access_tokens", "jwt"),
        ("POST", REG, "installation"),
    ]
    assert "BEGIN RSA PRIVATE KEY" not in entry.output()


def test_an_enterprise_pat(tmp_path: Path, fake: Any) -> None:
    settings = {"URL": url(fake, "enterprises/acme"), "PAT": CANARY}
    entry = Entry(tmp_path, fake, settings, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0, entry.output()
    assert entry.requests()[0] == (
        "POST",
        "/enterprises/acme/actions/runners/registration-token",
        "pat",
    )


def test_jit_generated_with_a_pat_skips_config_sh(tmp_path: Path, fake: Any) -> None:
    settings = {"URL": url(fake), "PAT": CANARY, "JIT": "true", "LABELS": "jit", "GROUP_ID": "1"}
    entry = Entry(tmp_path, fake, settings, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0, entry.output()
    assert entry.requests()[0] == (
        "POST",
        "/repos/octo/hello/actions/runners/generate-jitconfig",
        "pat",
    )
    body = fake.requests[entry.seen]["body"]
    assert body["labels"] == [*runner.default_labels(), "jit"]
    assert body["runner_group_id"] == 1 and body["work_folder"] == "_work"
    assert entry.calls("config.sh") == []
    (run,) = entry.calls("Runner.Listener")
    assert run["env"]["ACTIONS_RUNNER_INPUT_JITCONFIG"].startswith("***sha256:")
    assert run["argv"] == ["run"]
    assert fake.runners == []


def until(check: Any, timeout: float = 15) -> bool:
    """Poll `check` until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def jit_config(fake: Any, name: str = "arc-1") -> str:
    req = urllib.request.Request(
        f"{fake.base_url}/repos/octo/hello/actions/runners/generate-jitconfig",
        method="POST",
        data=json.dumps({"name": name, "runner_group_id": 1, "labels": ["arc"]}).encode(),
        headers={
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "tests",
            "Authorization": f"Bearer {CANARY}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        config: str = json.loads(resp.read())["encoded_jit_config"]
    return config


def test_a_given_jit_config_runs_without_any_api_call(tmp_path: Path, fake: Any) -> None:
    entry = Entry(tmp_path, fake, {"JITCONFIG": jit_config(fake)}, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0, entry.output()
    assert [r[1] for r in entry.requests() if not r[1].startswith("/_agent")] == []
    assert entry.calls("config.sh") == []


def test_under_arc_the_entrypoint_only_hands_over_to_run_sh(tmp_path: Path, fake: Any) -> None:
    config = jit_config(fake)
    entry = Entry(
        tmp_path, fake, {}, ACTIONS_RUNNER_INPUT_JITCONFIG=config, STANDIN_AGENT_JOB="0.2"
    )
    assert entry.finish() == 0, entry.output()
    assert entry.calls("config.sh") == []
    (run,) = entry.calls("Runner.Listener")
    assert run["env"]["ACTIONS_RUNNER_INPUT_JITCONFIG"] == fingerprint(config)
    assert [r[1] for r in entry.requests() if not r[1].startswith("/_agent")] == []


def test_a_stale_registration_is_removed_before_registering_again(
    tmp_path: Path, fake: Any
) -> None:
    first = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY, "EPHEMERAL": "false"})
    first.wait_for("Listening for Jobs")
    first.kill()  # the container dies with all its processes: .runner stays, as after a crash
    assert (first.agent / ".runner").exists() and len(fake.runners) == 1
    second = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY}, STANDIN_AGENT_JOB="0.2")
    assert second.finish() == 0, second.output()
    assert "left by an earlier start" in second.output()
    assert fake.runners == []


def test_a_stale_registration_that_cannot_be_removed_is_forgotten(
    tmp_path: Path, fake: Any
) -> None:
    agent = tmp_path / "agent"
    shutil.copytree(STANDIN, agent)
    (agent / ".runner").write_text(json.dumps({"agentId": 999999, "agentName": "gone"}))
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY}, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0, entry.output()
    assert "Does not exist" in entry.output()  # config.sh remove skips what GitHub lacks
    assert "forgetting it" not in entry.output()
    assert fake.runners == []


def test_a_stale_registration_is_forgotten_when_it_cannot_be_removed(
    tmp_path: Path, fake: Any
) -> None:
    agent = tmp_path / "agent"
    shutil.copytree(STANDIN, agent)
    (agent / ".runner").write_text(json.dumps({"agentId": 999999, "agentName": "gone"}))
    fake.add_fault("remove-token=403x1")
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY}, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0, entry.output()
    assert "could not get a remove token" in entry.output() and "forgetting it" in entry.output()
    assert entry.calls("config.sh")[0]["argv"][:1] != ["remove"]
    assert fake.runners == []


@pytest.mark.parametrize(
    "settings, status, expected",
    [
        (
            {"PAT": "ghp_wrong"},
            3,
            "GitHub rejected the personal access token (401 Bad credentials)",
        ),
        (
            {"PAT": "ghp_reposcopeonly", "URL": "octo"},
            3,
            "may not manage runners of organisation octo (403 Resource not accessible by personal"
            " access token): it needs a classic PAT with the `admin:org` scope",
        ),
        ({"PAT": CANARY, "URL": "missing-org"}, 3, "organisation missing-org was not found (404"),
        (
            {"PAT": CANARY, "JIT": "true", "GROUP_ID": "7"},
            3,
            "GitHub refused POST /repos/octo/hello/actions/runners/generate-jitconfig (422",
        ),
        ({"TOKEN": "REGnotissued"}, 4, "config.sh failed with exit code 1"),
    ],
)
def test_api_errors_are_one_line_naming_the_permission(
    tmp_path: Path, fake: Any, settings: dict[str, str], status: int, expected: str
) -> None:
    settings = {"URL": url(fake), **settings}
    if not settings["URL"].startswith("http"):
        settings["URL"] = url(fake, settings["URL"])
    entry = Entry(tmp_path, fake, settings)
    assert entry.finish() == status, entry.output()
    errors = [line for line in entry.output().splitlines() if "error:" in line]
    assert len(errors) == 1 and expected in errors[0], entry.output()
    assert "Traceback" not in entry.output()
    assert fake.runners == []


def test_5xx_is_retried_with_backoff_then_succeeds(tmp_path: Path, fake: Any) -> None:
    fake.add_fault("registration-token=503x2")
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY}, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0, entry.output()
    assert [r[1] for r in entry.requests()][:3] == [REG] * 3
    assert entry.output().count("503 Service Unavailable; retrying in") == 2


def test_5xx_that_persists_fails_clearly(tmp_path: Path, fake: Any) -> None:
    fake.add_fault("registration-token=502")
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY, "ATTEMPTS": "3"})
    assert entry.finish() == 3, entry.output()
    assert len(entry.requests()) == 3
    last = entry.output().strip().splitlines()[-1]
    assert last.startswith("ciparity-runner: error: GitHub API POST " + REG)
    assert "failed after 3 attempts: 502" in last


def test_a_hanging_api_times_out_and_fails_clearly(tmp_path: Path, fake: Any) -> None:
    fake.add_fault("registration-token=hang")
    settings = {"URL": url(fake), "PAT": CANARY, "ATTEMPTS": "2", "TIMEOUT": "0.3"}
    entry = Entry(tmp_path, fake, settings)
    assert entry.finish() == 3, entry.output()
    last = entry.output().strip().splitlines()[-1]
    assert "no answer within 0.3 s, 2 attempts" in last, last


def test_sigterm_while_waiting_for_the_api_stops_without_registering(
    tmp_path: Path, fake: Any
) -> None:
    fake.add_fault("registration-token=hang")
    settings = {"URL": url(fake), "PAT": CANARY, "TIMEOUT": "20"}
    entry = Entry(tmp_path, fake, settings)
    entry.wait_for(READY)  # its signal handlers are set
    assert until(lambda: fake.hanging == 1), entry.output()  # the request is waiting (30 s)
    entry.proc.terminate()
    assert entry.finish() == 0, entry.output()
    assert "stopped" in entry.output() and entry.calls() == []


def test_a_run_sh_that_ignores_the_stop_is_killed_then_deregistered(
    tmp_path: Path, fake: Any
) -> None:
    agent = tmp_path / "agent"
    shutil.copytree(STANDIN, agent)
    stubborn = agent / "run.sh"
    stubborn.write_text(
        "#!/bin/bash\ntrap '' TERM INT\necho Listening for Jobs\nsleep 60 & sleep 60\n"
    )
    settings = {"URL": url(fake), "PAT": CANARY, "STOP_TIMEOUT": "0.5"}
    entry = Entry(tmp_path, fake, settings)
    entry.wait_for("Listening for Jobs")
    entry.proc.terminate()
    assert entry.finish() == 0, entry.output()
    assert "killing it" in entry.output()
    assert [r[1] for r in entry.requests()][-2:] == [RM, "/_agent/remove"]
    assert fake.runners == []
    assert entry.processes() == []  # run.sh and both sleeps: its whole session


def test_a_missing_agent_is_one_line(tmp_path: Path, fake: Any) -> None:
    (tmp_path / "agent").mkdir()
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY})
    assert entry.finish() == 4
    assert "no runner agent at" in entry.output() and entry.requests() == []


def test_bad_configuration_makes_no_network_call(tmp_path: Path, fake: Any) -> None:
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY, "LABELS": "a b"})
    assert entry.finish() == 2
    assert entry.requests() == [] and entry.calls() == []
    assert CANARY not in entry.output()


def test_the_canary_credential_never_reaches_a_log_or_a_job(tmp_path: Path, fake: Any) -> None:
    secret = tmp_path / "pat"
    secret.write_text(CANARY)
    settings = {"URL": url(fake), "PAT_FILE": str(secret), "DELETE_SECRET_FILES": "true"}
    entry = Entry(tmp_path, fake, settings, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0
    assert not secret.exists()  # read once, then gone: a job running as the same user cannot
    assert CANARY not in entry.output()
    assert all(CANARY not in json.dumps(c["env"]) for c in entry.calls())
    assert CANARY not in json.dumps(fake.requests)


def test_a_stopped_jit_runner_it_generated_is_deleted(tmp_path: Path, fake: Any) -> None:
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY, "JIT": "true"})
    entry.wait_for("Listening for Jobs")
    assert len(fake.runners) == 1
    entry.proc.terminate()
    assert entry.finish() == 0, entry.output()
    assert entry.requests()[-1][:2] == ("DELETE", f"/repos/octo/hello/actions/runners/{1001}")
    assert fake.runners == [] and "stopped by SIGTERM" in entry.output()


def test_run_sh_killed_by_a_signal_is_128_plus_n(tmp_path: Path, fake: Any) -> None:
    agent = tmp_path / "agent"
    shutil.copytree(STANDIN, agent)
    (agent / "run.sh").write_text("#!/bin/bash\nkill -KILL $$\n")
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY})
    assert entry.finish() == 137, entry.output()
    assert "run.sh exited with code -9" in entry.output()
    assert fake.runners == []  # still deregistered


def test_under_arc_a_missing_run_sh_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {runner.ARC_JITCONFIG: "e30=", "CIPARITY_RUNNER_AGENT_DIR": str(tmp_path)}
    assert runner.main(environ=environ) == 4
    err = capsys.readouterr().err
    assert err.startswith("ciparity-runner: error: cannot start ") and err.count("\n") == 1


# --- issue 14: what a review against the real agent found -----------------------------------


def test_an_app_runner_idle_past_its_token_lifetime_still_deregisters(
    tmp_path: Path, app_key: tuple[str, str]
) -> None:
    """Finding 1: GitHub expires installation tokens (an hour; 2 s here)."""
    with fg.FakeGitHub(app_id=42, app_public_key=app_key[1], app_token_ttl=2) as fake:
        settings = {"URL": url(fake), "APP_ID": "42", "APP_PRIVATE_KEY": app_key[0]}
        entry = Entry(tmp_path, fake, {**settings, "EPHEMERAL": "false"})
        entry.wait_for("Listening for Jobs")
        issued = time.time()
        assert until(lambda: time.time() > issued + 2.5)  # idle past the token's life
        entry.proc.terminate()
        assert entry.finish() == 0, entry.output()
        assert fake.runners == [] and "deregistered" in entry.output()
        assert [r[1] for r in entry.requests()].count("/app/installations/1/access_tokens") == 2


def test_a_listener_that_cannot_work_is_a_failure_not_a_finished_job(
    tmp_path: Path, fake: Any
) -> None:
    """Finding 2: run-helper.sh turns the listener's 1 (here: runner not found) into run.sh's 0;
    the entrypoint reads the listener's own status and exits 4, so nobody replaces it."""
    fake.add_fault("agent-session=404")
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY})
    assert entry.finish() == 4, entry.output()
    last = entry.output().strip().splitlines()[-1]
    assert last.startswith("ciparity-runner: error: the runner agent cannot work: its listener")
    assert "code 1 (terminated error): An error occurred: Runner not found" in last
    assert fake.runners == []  # still deregistered


@pytest.mark.parametrize("trap", ["", "1"])
def test_a_generated_jit_runner_whose_listener_fails_is_deleted(
    tmp_path: Path, fake: Any, trap: str
) -> None:
    """Finding 2, JIT: a session conflict (5, also mapped to 0) with a runner we generated."""
    fake.add_fault("agent-session=409")
    settings = {"URL": url(fake), "PAT": CANARY, "JIT": "true"}
    entry = Entry(tmp_path, fake, settings, RUNNER_MANUALLY_TRAP_SIG=trap)
    assert entry.finish() == 4, entry.output()
    assert "code 5 (session conflict" in entry.output()
    assert entry.requests()[-1][:2] == ("DELETE", "/repos/octo/hello/actions/runners/1001")
    assert fake.runners == []


def test_a_given_jit_config_for_a_deleted_runner_is_a_failure(tmp_path: Path, fake: Any) -> None:
    config = jit_config(fake, "gone-1")
    (gone,) = fake.runners
    req = urllib.request.Request(
        f"{fake.base_url}/repos/octo/hello/actions/runners/{gone['id']}",
        method="DELETE",
        headers={
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "tests",
            "Authorization": f"Bearer {CANARY}",
        },
    )
    urllib.request.urlopen(req, timeout=5).close()
    entry = Entry(tmp_path, fake, {"JITCONFIG": config})
    assert entry.finish() == 4, entry.output()
    assert "Runner not found" in entry.output()


def test_a_quiet_run_sh_is_judged_by_the_listeners_diag_log(tmp_path: Path, fake: Any) -> None:
    agent = tmp_path / "agent"
    shutil.copytree(STANDIN, agent)
    (agent / "run.sh").write_text(
        "#!/bin/bash\nmkdir -p _diag\n"
        "echo '[2026-01-01 00:00:00Z ERR  Listener] An error occurred: Access denied' "
        ">> _diag/Runner_20260101-000000-utc.log\n"
        "echo '[2026-01-01 00:00:01Z INFO Listener] Runner execution has finished with return"
        " code 1' >> _diag/Runner_20260101-000000-utc.log\n"
    )
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY})
    assert entry.finish() == 4, entry.output()
    assert "code 1 (terminated error): An error occurred: Access denied" in entry.output()


@pytest.mark.parametrize("trap", ["", "1"])
def test_a_stop_ends_the_listener_before_the_runner_is_removed(
    tmp_path: Path, fake: Any, trap: str
) -> None:
    """Finding 3, without the manual trap: SIGTERM kills bash run.sh alone, the listener goes on
    in its session; with it, the listener is in a process group of its own (`set -m`)."""
    settings = {"URL": url(fake), "PAT": CANARY, "EPHEMERAL": "false"}
    entry = Entry(tmp_path, fake, settings, RUNNER_MANUALLY_TRAP_SIG=trap)
    entry.wait_for("Listening for Jobs")
    (listener,) = entry.listener_pids()
    entry.proc.terminate()
    assert entry.finish() == 0, entry.output()
    assert not entry.pid_alive(listener)
    calls = [(r["path"], (r["body"] or {}).get("status")) for r in fake.requests[entry.seen :]]
    offline = calls.index(("/_agent/status", "offline"))
    assert offline < calls.index(("/_agent/remove", None)), calls
    assert fake.runners == []


def test_a_listener_that_ignores_the_stop_is_killed_in_its_own_group_before_removal(
    tmp_path: Path, fake: Any
) -> None:
    """Finding 3: killing run.sh's process group missed the listener `set -m` put apart."""
    settings = {"URL": url(fake), "PAT": CANARY, "STOP_TIMEOUT": "0.5"}
    entry = Entry(
        tmp_path, fake, settings, RUNNER_MANUALLY_TRAP_SIG="1", STANDIN_AGENT_IGNORE_STOP="1"
    )
    entry.wait_for("Listening for Jobs")
    (listener,) = entry.listener_pids()
    assert os.getpgid(listener) != os.getpgid(entry.proc.pid)
    entry.proc.terminate()
    assert entry.finish() == 0, entry.output()
    assert "killing it and everything it started" in entry.output()
    assert not entry.pid_alive(listener)
    assert [r[1] for r in entry.requests()][-2:] == [RM, "/_agent/remove"]
    assert entry.processes() == []


def test_a_stop_during_the_jit_post_deletes_the_runner_github_made(
    tmp_path: Path, fake: Any
) -> None:
    """Finding 4: the POST was done, its answer had not come when the stop did."""
    fake.add_fault("generate-jitconfig=slowx1")
    settings = {"URL": url(fake), "PAT": CANARY, "JIT": "true", "TIMEOUT": "20"}
    entry = Entry(tmp_path, fake, settings)
    assert until(lambda: fake.hanging == 1), entry.output()
    assert len(fake.runners) == 1  # GitHub made it; we have not heard its id
    entry.proc.terminate()
    assert entry.finish() == 0, entry.output()
    assert fake.runners == [] and "stopped by SIGTERM" in entry.output()
    assert entry.calls() == []


def test_a_lost_jit_answer_leaves_no_second_runner(tmp_path: Path, fake: Any) -> None:
    fake.add_fault("generate-jitconfig=lostx1")
    settings = {"URL": url(fake), "PAT": CANARY, "JIT": "true"}
    entry = Entry(tmp_path, fake, settings, STANDIN_AGENT_JOB="0.2")
    assert entry.finish() == 0, entry.output()
    assert fake.runners == []
    assert ("DELETE", "/repos/octo/hello/actions/runners/1001", "pat") in entry.requests()


def test_the_worst_case_stop_is_what_the_entrypoint_announces_and_keeps(
    tmp_path: Path, fake: Any
) -> None:
    """Finding 8: every part of a stop is bounded: a listener that ignores it, an API that never
    answers the remove-token call. The announced budget holds."""
    settings = {
        "URL": url(fake),
        "PAT": CANARY,
        "STOP_TIMEOUT": "0.5",
        "TIMEOUT": "0.5",
        "ATTEMPTS": "2",
        "RETRY_DELAY": "0.1",
    }
    entry = Entry(
        tmp_path, fake, settings, RUNNER_MANUALLY_TRAP_SIG="1", STANDIN_AGENT_IGNORE_STOP="1"
    )
    entry.wait_for("Listening for Jobs")
    budget = runner.worst_case_stop(
        runner.read_settings({f"CIPARITY_RUNNER_{k}": v for k, v in settings.items()})
    )
    assert f"ends within {math.ceil(budget)} s" in entry.output()
    fake.add_fault("remove-token=hang")
    started = time.monotonic()
    entry.proc.terminate()
    assert entry.finish() == 3, entry.output()
    assert time.monotonic() - started < budget
    last = entry.output().strip().splitlines()[-1]
    assert "is still registered: remove it in GitHub's runner settings" in last


def test_a_rate_limit_that_outlasts_the_stop_fails_at_once(tmp_path: Path, fake: Any) -> None:
    entry = Entry(tmp_path, fake, {"URL": url(fake), "PAT": CANARY})
    entry.wait_for("Listening for Jobs")
    reset = str(int(time.time()) + 3000)
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
    fake.add_fault(fg.Fault("remove-token", 403, None, headers=headers, message="API rate limit"))
    started = time.monotonic()
    entry.proc.terminate()
    assert entry.finish() == 3, entry.output()
    assert time.monotonic() - started < 20
    assert "GitHub's API rate limit (resets" in entry.output()
    assert "would outlast the stop budget" in entry.output()


def test_a_stop_during_a_config_sh_that_hangs_is_bounded_too(tmp_path: Path, fake: Any) -> None:
    """A stop while config.sh registers: it gets the agent's stop timeout, then is killed."""
    agent = tmp_path / "agent"
    shutil.copytree(STANDIN, agent)
    (agent / "config.sh").write_text("#!/bin/bash\ntrap '' TERM INT\necho stuck\nsleep 60\n")
    settings = {"URL": url(fake), "PAT": CANARY, "STOP_TIMEOUT": "0.5"}
    entry = Entry(tmp_path, fake, settings)
    entry.wait_for("stuck")
    started = time.monotonic()
    entry.proc.terminate()
    assert entry.finish() == 0, entry.output()
    assert time.monotonic() - started < 0.5 + runner.KILL_GRACE + 5
    assert "config.sh takes too long: killing it" in entry.output()
    assert entry.processes() == []
