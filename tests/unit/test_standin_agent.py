"""The stand-in runner agent (tests/fixtures/standin_agent): config.sh registers with the fake
and writes .runner, run.sh listens, runs a job and unregisters an ephemeral runner, config.sh
remove unregisters; arguments come from the command line or ACTIONS_RUNNER_INPUT_*, root is
refused, and every call is recorded (secrets only as fingerprints). run.sh, run-helper.sh and the
listener map exit codes and lay out process groups as actions/runner v2.336.0's scripts do.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import fake_github_module, kill_session, session_pids

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "tests" / "fixtures" / "standin_agent"
FIXTURE = REPO / "tests" / "fixtures" / "fake_github.py"
PAT = "ghp_standintests0000001"
REPO_PATH = "/octo/hello"
NOT_CONFIGURED = "Not configured. Run config.(sh/cmd) to configure the runner."


fg = fake_github_module()


def api(fake: Any, method: str, path: str, body: Any = None) -> Any:
    parts = urlsplit(fake.base_url)
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "ciparity-tests",
        "Authorization": f"Bearer {PAT}",
        "Content-Type": "application/json",
    }
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        assert response.status < 300, payload
        return json.loads(payload) if payload else None
    finally:
        conn.close()


def token(fake: Any, kind: str = "registration", scope: str = "/repos/octo/hello") -> str:
    value: str = api(fake, "POST", f"{scope}/actions/runners/{kind}-token")["token"]
    return value


@pytest.fixture
def fake() -> Iterator[Any]:
    with fg.FakeGitHub(pats=[PAT]) as server:
        yield server


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    """A fresh copy of the stand-in agent directory, as the image has it in /home/runner."""
    target = tmp_path / "agent"
    shutil.copytree(SOURCE, target)
    return target


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The host environment minus proxies and runner inputs; root allowed (we may be root)."""
    dropped = ("ACTIONS_RUNNER_INPUT_", "RUNNER_", "STANDIN_AGENT_")
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    result = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(dropped) and k.lower() not in proxies
    }
    result["RUNNER_ALLOW_RUNASROOT"] = "1"
    result["STANDIN_AGENT_RECORD"] = str(tmp_path / "calls.jsonl")
    return result


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory that is not the agent's, so nothing relies on the cwd."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(agent: Path, env: dict[str, str], elsewhere: Path) -> Run:
    def run_script(script: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(agent / script), *args],
            env={**env, **extra_env},
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=30,
        )

    return run_script


def configure(run: Run, fake: Any, *extra: str, **extra_env: str) -> Any:
    reg = token(fake)
    args = ["--unattended", "--url", fake.base_url + REPO_PATH, "--token", reg, "--name", "r1"]
    return run("config.sh", *args, *extra, **extra_env), reg


def settings(agent: Path) -> Any:
    raw = (agent / ".runner").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "the real agent writes .runner with a BOM"
    return json.loads(raw.decode("utf-8-sig"))


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


# --- the files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script, shebang",
    [
        ("config.sh", "#!/usr/bin/env python3"),
        ("bin/Runner.Listener", "#!/usr/bin/env python3"),
        ("run.sh", "#!/bin/bash"),  # bash, as the real ones: their process layout is bash's
        ("run-helper.sh.template", "#!/bin/bash"),
    ],
)
def test_scripts_are_executable_with_the_real_ones_interpreters(script: str, shebang: str) -> None:
    path = SOURCE / script
    assert os.access(path, os.X_OK)
    assert path.read_text().splitlines()[0] == shebang
    assert (SOURCE / "bin" / ".keep").is_file()
    assert (SOURCE / "externals" / ".keep").is_file()
    assert "test double" in (SOURCE / "README.md").read_text()


# --- config.sh ------------------------------------------------------------------------------


def test_config_registers_and_writes_runner_settings(
    run: Run, fake: Any, agent: Path, tmp_path: Path
) -> None:
    result, reg = configure(
        run, fake, "--labels", "gpu,ci", "--work", "w", "--ephemeral", "--disableupdate"
    )
    assert result.returncode == 0, result.stderr
    assert "Runner successfully added" in result.stdout
    assert "Settings Saved." in result.stdout
    assert reg not in result.stdout + result.stderr
    assert "--token ***" in result.stdout
    [runner] = fake.runners
    assert (runner["name"], runner["scope"], runner["ephemeral"]) == (
        "r1",
        "repos/octo/hello",
        True,
    )
    assert runner["labels"][:2] == ["self-hosted", "Linux"]
    assert runner["labels"][-2:] == ["gpu", "ci"]
    assert runner["disable_update"] is True
    saved = settings(agent)
    assert saved["agentId"] == runner["id"]
    assert saved["agentName"] == "r1"
    assert saved["gitHubUrl"] == fake.base_url + REPO_PATH
    assert (saved["workFolder"], saved["ephemeral"]) == ("w", True)
    assert json.loads((agent / ".credentials").read_text("utf-8-sig"))
    assert (agent / "w").is_dir()
    assert not (tmp_path / "elsewhere" / "w").exists()


def test_config_records_each_call(run: Run, fake: Any, tmp_path: Path, elsewhere: Path) -> None:
    result, reg = configure(run, fake, SOME_VAR="some value")
    assert result.returncode == 0, result.stderr
    [entry] = records(tmp_path / "calls.jsonl")
    assert entry["script"] == "config.sh"
    assert entry["argv"][:2] == ["--unattended", "--url"]
    assert entry["env"]["SOME_VAR"] == "some value"
    assert (entry["uid"], entry["gid"]) == (os.getuid(), os.getgid())
    assert entry["groups"] == sorted(os.getgroups())
    assert entry["cwd"] == str(elsewhere)
    assert isinstance(entry["pid"], int) and entry["time"]
    assert "some value" not in result.stdout


def fingerprint(secret: str) -> str:
    return "***sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def test_the_record_never_holds_a_credential(
    run: Run, fake: Any, agent: Path, tmp_path: Path
) -> None:
    reg = token(fake)
    args = ["--unattended", "--url", fake.base_url + REPO_PATH, "--name", "r1"]
    assert run("config.sh", *args, ACTIONS_RUNNER_INPUT_TOKEN=reg).returncode == 0
    removal = token(fake, "remove")
    assert run("config.sh", "remove", "--token", removal).returncode == 0
    raw = (tmp_path / "calls.jsonl").read_text()
    assert reg not in raw and removal not in raw
    first, second = records(tmp_path / "calls.jsonl")
    assert first["env"]["ACTIONS_RUNNER_INPUT_TOKEN"] == fingerprint(reg)
    assert second["argv"] == ["remove", "--token", fingerprint(removal)]


@pytest.mark.parametrize(
    "url",
    ["https://github.com/octo/hello", "https://api.github.com/x/y", "http://10.0.0.1:8080/o/r"],
)
def test_config_talks_only_to_loopback_or_test_hosts(
    run: Run, fake: Any, agent: Path, url: str
) -> None:
    result = run("config.sh", "--unattended", "--url", url, "--token", "REGsomething")
    assert result.returncode == 1
    assert "refusing to talk to" in result.stderr and "test double" in result.stderr
    assert not (agent / ".runner").exists()


def test_the_listener_refuses_a_server_that_is_not_a_test_one(
    run: Run, agent: Path, tmp_path: Path
) -> None:
    config = {"runner_id": 7, "url": "https://github.com", "name": "x"}
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    result = run("run.sh", "--jitconfig", encoded)
    assert result.returncode == 0  # as the real run.sh: the listener's 1 becomes 0
    assert "refusing to talk to 'github.com'" in result.stderr
    assert "Runner listener exit with terminated error" in result.stdout


def test_the_record_defaults_to_the_agent_diag_folder(
    run: Run, agent: Path, env: dict[str, str]
) -> None:
    del env["STANDIN_AGENT_RECORD"]
    result = run("run.sh")
    assert result.returncode == 0
    [entry] = records(agent / "_diag" / "standin-calls.jsonl")
    assert (entry["script"], entry["argv"]) == ("Runner.Listener", ["run"])


def test_config_takes_inputs_from_the_environment_and_the_command_line_wins(
    run: Run, fake: Any, agent: Path
) -> None:
    reg = token(fake)
    result = run(
        "config.sh",
        "--name",
        "from-argv",
        ACTIONS_RUNNER_INPUT_URL=fake.base_url + REPO_PATH,
        ACTIONS_RUNNER_INPUT_TOKEN=reg,
        ACTIONS_RUNNER_INPUT_NAME="from-env",
        ACTIONS_RUNNER_INPUT_EPHEMERAL="True",
        ACTIONS_RUNNER_INPUT_LABELS="envlabel",
    )
    assert result.returncode == 0, result.stderr
    [runner] = fake.runners
    assert (runner["name"], runner["ephemeral"]) == ("from-argv", True)
    assert "envlabel" in runner["labels"]
    assert reg not in result.stdout


def test_a_flag_from_the_environment_must_say_true(run: Run, fake: Any) -> None:
    result, _ = configure(run, fake, ACTIONS_RUNNER_INPUT_EPHEMERAL="1")
    assert result.returncode == 0, result.stderr
    assert fake.runners[0]["ephemeral"] is False


def test_hyphenated_options_come_from_the_environment_by_their_exact_name(
    run: Run, fake: Any
) -> None:
    underscored, _ = configure(run, fake, ACTIONS_RUNNER_INPUT_NO_DEFAULT_LABELS="true")
    assert underscored.returncode == 0, underscored.stderr
    assert "ACTIONS_RUNNER_INPUT_NO-DEFAULT-LABELS" in underscored.stderr
    assert "self-hosted" in fake.runners[0]["labels"]
    assert run("config.sh", "remove", "--token", token(fake, "remove")).returncode == 0
    env = {"ACTIONS_RUNNER_INPUT_NO-DEFAULT-LABELS": "true"}
    exact, _ = configure(run, fake, "--labels", "only", **env)
    assert exact.returncode == 0, exact.stderr
    assert fake.runners[0]["labels"] == ["only"]


@pytest.mark.parametrize("args", [["--bogus"], ["--runner-group", "x"], ["stray"]])
def test_config_refuses_unknown_arguments(run: Run, fake: Any, args: list[str]) -> None:
    result, _ = configure(run, fake, *args)
    assert result.returncode == 1
    assert "Unrecognized command-line input arguments" in result.stderr
    assert args[0] in result.stderr
    assert fake.runners == []


@pytest.mark.parametrize("missing", ["url", "token"])
def test_config_needs_a_url_and_a_token(run: Run, fake: Any, agent: Path, missing: str) -> None:
    values = {"url": fake.base_url + REPO_PATH, "token": token(fake)}
    del values[missing]
    args = [x for name, value in values.items() for x in (f"--{name}", value)]
    result = run("config.sh", "--unattended", *args)
    assert result.returncode == 1
    assert f"Invalid configuration provided for {missing}" in result.stderr
    assert not (agent / ".runner").exists()


def test_config_refuses_to_configure_twice(run: Run, fake: Any) -> None:
    assert configure(run, fake)[0].returncode == 0
    again, _ = configure(run, fake, "--name", "r2")
    assert again.returncode == 1
    assert "Cannot configure the runner because it is already configured." in again.stderr
    assert [r["name"] for r in fake.runners] == ["r1"]


def test_config_reports_a_refused_token(run: Run, fake: Any, agent: Path) -> None:
    url = fake.base_url + "/octo/other"  # the token was issued for octo/hello
    result = run("config.sh", "--url", url, "--token", token(fake), "--unattended")
    assert result.returncode == 1
    assert "registration token invalid" in result.stderr
    assert not (agent / ".runner").exists()
    assert fake.runners == []


def test_config_reports_an_unreachable_server(run: Run, agent: Path) -> None:
    with fg.FakeGitHub() as gone:
        url = gone.base_url + REPO_PATH
    result = run("config.sh", "--url", url, "--token", "REGX", "--unattended")
    assert result.returncode == 1
    assert "Failed to connect" in result.stderr
    assert not (agent / ".runner").exists()


def test_config_with_replace_takes_over_a_runner_of_the_same_name(
    run: Run, fake: Any, agent: Path
) -> None:
    assert configure(run, fake)[0].returncode == 0
    first = fake.runners[0]["id"]
    for name in (".runner", ".credentials", ".credentials_rsaparams"):
        (agent / name).unlink()
    clash, _ = configure(run, fake)
    assert clash.returncode == 1
    assert "A runner exists with the same name" in clash.stderr
    replaced, _ = configure(run, fake, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert [r["id"] for r in fake.runners] == [first]


# --- config.sh remove -----------------------------------------------------------------------


def test_remove_unregisters_and_deletes_the_settings(run: Run, fake: Any, agent: Path) -> None:
    assert configure(run, fake)[0].returncode == 0
    rm = token(fake, "remove")
    result = run("config.sh", "remove", ACTIONS_RUNNER_INPUT_TOKEN=rm)
    assert result.returncode == 0, result.stderr
    assert "Runner removed successfully" in result.stdout
    assert fake.runners == []
    assert not (agent / ".runner").exists()
    assert not (agent / ".credentials").exists()
    assert rm not in result.stdout


def test_remove_with_a_bad_token_fails_and_keeps_everything(
    run: Run, fake: Any, agent: Path
) -> None:
    assert configure(run, fake)[0].returncode == 0
    wrong = token(fake, "remove", "/repos/octo/other")
    result = run("config.sh", "remove", "--token", wrong)
    assert result.returncode == 1
    assert "Failed: Removing runner from the server" in result.stderr
    assert len(fake.runners) == 1
    assert (agent / ".runner").exists()


def test_remove_without_a_token_fails(run: Run, fake: Any, agent: Path) -> None:
    assert configure(run, fake)[0].returncode == 0
    result = run("config.sh", "remove")
    assert result.returncode == 1
    assert "Invalid configuration provided for token" in result.stderr
    assert (agent / ".runner").exists()


def test_remove_when_not_configured_is_a_no_op_like_the_real_one(run: Run, agent: Path) -> None:
    result = run("config.sh", "remove", "--token", "RMX")
    assert result.returncode == 0, result.stderr
    assert "config files are missing" in result.stdout
    assert "Does not exist. Skipping Removing .runner" in result.stdout


def test_remove_of_a_runner_github_already_deleted_cleans_up(
    run: Run, fake: Any, agent: Path
) -> None:
    assert configure(run, fake)[0].returncode == 0
    api(fake, "DELETE", f"/repos/octo/hello/actions/runners/{fake.runners[0]['id']}")
    result = run("config.sh", "remove", "--token", token(fake, "remove"))
    assert result.returncode == 0, result.stderr
    assert "Does not exist. Skipping Removing runner from the server" in result.stdout
    assert not (agent / ".runner").exists()


def test_remove_local_only_forgets_the_settings(run: Run, fake: Any, agent: Path) -> None:
    assert configure(run, fake)[0].returncode == 0
    result = run("config.sh", "remove", "--local")
    assert result.returncode == 0, result.stderr
    assert not (agent / ".runner").exists()
    assert not (agent / ".credentials").exists()
    assert len(fake.runners) == 1


# --- root -----------------------------------------------------------------------------------


def test_config_refuses_root_unless_allowed(run: Run, fake: Any, env: dict[str, str]) -> None:
    del env["RUNNER_ALLOW_RUNASROOT"]
    refused, _ = configure(run, fake, STANDIN_AGENT_FAKE_UID="0")
    assert refused.returncode == 1
    assert "Must not run with sudo" in refused.stdout
    assert fake.runners == []
    allowed, _ = configure(run, fake, STANDIN_AGENT_FAKE_UID="0", RUNNER_ALLOW_RUNASROOT="1")
    assert allowed.returncode == 0, allowed.stderr


def test_without_the_knob_the_real_uid_decides(run: Run, fake: Any, env: dict[str, str]) -> None:
    """Root here (a host, `invoke test`) is refused; the runner's uid (under act) is not."""
    del env["RUNNER_ALLOW_RUNASROOT"]
    result, _ = configure(run, fake)
    if os.getuid() == 0:
        assert (result.returncode, result.stdout.splitlines()[-1]) == (1, "Must not run with sudo")
    else:
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("trap", "code"), [({}, 0), ({"RUNNER_MANUALLY_TRAP_SIG": "1"}, 1)])
def test_run_refuses_root_and_exits_as_the_real_run_sh(
    run: Run, env: dict[str, str], trap: dict[str, str], code: int
) -> None:
    del env["RUNNER_ALLOW_RUNASROOT"]
    result = run("run.sh", STANDIN_AGENT_FAKE_UID="0", **trap)
    assert result.returncode == code
    assert "Must not run interactively with sudo" in result.stdout
    assert "Listening for Jobs" not in result.stdout


# --- run.sh ---------------------------------------------------------------------------------


@pytest.mark.parametrize("trap", [{}, {"RUNNER_MANUALLY_TRAP_SIG": "1"}])
def test_run_without_configuration_exits_0_as_the_real_one(
    run: Run, trap: dict[str, str], tmp_path: Path, agent: Path
) -> None:
    """run-helper.sh turns the listener's 1 (terminated error) into 0, in both modes: the exit
    code alone cannot tell a broken runner from a finished one; the output and _diag can."""
    result = run("run.sh", **trap)
    assert result.returncode == 0
    assert NOT_CONFIGURED in result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2:] == [
        "Runner listener exit with terminated error, stop the service, no retry needed.",
        "Exiting runner...",
    ]
    assert "Listening for Jobs" not in result.stdout
    assert records(tmp_path / "calls.jsonl")[0]["script"] == "Runner.Listener"
    (log,) = (agent / "_diag").glob("Runner_*-utc.log")
    trace = log.read_text().splitlines()
    assert trace[0].endswith(f"ERR  Listener] An error occurred: {NOT_CONFIGURED}")
    assert trace[-1].endswith("INFO Listener] Runner execution has finished with return code 1")


@pytest.mark.parametrize(
    "status, code, line",
    [
        (404, 1, "Runner listener exit with terminated error, stop the service"),
        (409, 5, "Runner listener exit with Session Conflict error, stop the service"),
    ],
)
def test_a_session_github_refuses_ends_the_listener(
    run: Run, fake: Any, agent: Path, status: int, code: int, line: str
) -> None:
    assert configure(run, fake)[0].returncode == 0
    fake.add_fault(f"agent-session={status}x1")
    result = run("run.sh", RUNNER_MANUALLY_TRAP_SIG="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert line in result.stdout and "An error occurred" in result.stderr
    (log,) = (agent / "_diag").glob("Runner_*-utc.log")
    assert log.read_text().splitlines()[-1].endswith(f"finished with return code {code}")


@pytest.mark.parametrize("deprecated, code", [("1", 7), ("", 0)])
def test_a_deprecated_version_is_passed_on_only_when_asked(
    run: Run, agent: Path, deprecated: str, code: int
) -> None:
    listener = agent / "bin" / "Runner.Listener"
    listener.write_text("#!/bin/bash\nexit 7\n")
    result = run("run.sh", ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=deprecated)
    assert result.returncode == code
    assert "Exiting runner..." in result.stdout


def test_a_retryable_exit_restarts_the_helper(run: Run, agent: Path, tmp_path: Path) -> None:
    counter = tmp_path / "starts"
    listener = agent / "bin" / "Runner.Listener"
    listener.write_text(
        f"#!/bin/bash\necho x >> {counter}\n[ $(wc -l < {counter}) -ge 2 ] && exit 0\nexit 3\n"
    )
    result = run("run.sh")
    assert result.returncode == 0
    assert result.stdout.count("Restarting runner...") == 1
    assert counter.read_text().count("x") == 2


def test_an_ephemeral_runner_runs_one_job_and_is_gone(run: Run, fake: Any, agent: Path) -> None:
    assert configure(run, fake, "--ephemeral")[0].returncode == 0
    started = time.monotonic()
    result = run("run.sh", STANDIN_AGENT_JOB="0.5")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 0.5
    lines = result.stdout.splitlines()
    order = ["Listening for Jobs", "Running job: standin", "completed with result: Succeeded"]
    positions = [next(i for i, line in enumerate(lines) if text in line) for text in order]
    assert positions == sorted(positions)
    assert fake.runners == []
    assert not (agent / ".runner").exists()
    assert not (agent / ".credentials").exists()
    assert (agent / "_work" / "_temp").is_dir()


def test_a_job_that_cannot_write_its_work_folder_fails(run: Run, fake: Any, agent: Path) -> None:
    blocker = agent / "blocked"
    blocker.write_text("a file, not a folder")
    assert configure(run, fake, "--ephemeral", "--work", "blocked")[0].returncode == 0
    result = run("run.sh", STANDIN_AGENT_JOB="0")
    assert result.returncode == 0
    assert "completed with result: Failed" in result.stdout
    assert "cannot write to its work folder" in result.stderr


def test_run_refuses_a_job_delay_that_is_no_number(run: Run, fake: Any) -> None:
    assert configure(run, fake)[0].returncode == 0
    result = run("run.sh", STANDIN_AGENT_JOB="soon")
    assert result.returncode == 0
    assert "STANDIN_AGENT_JOB" in result.stderr
    assert "Runner listener exit with terminated error" in result.stdout


@pytest.mark.parametrize("source", ["argv", "env"])
def test_a_jit_runner_needs_no_config_and_is_gone_after_its_job(
    run: Run, fake: Any, agent: Path, source: str
) -> None:
    body = {"name": "jit-1", "runner_group_id": 1, "labels": ["ciparity"]}
    encoded = api(fake, "POST", "/repos/octo/hello/actions/runners/generate-jitconfig", body)[
        "encoded_jit_config"
    ]
    if source == "argv":
        result = run("run.sh", "--jitconfig", encoded, STANDIN_AGENT_JOB="0.2")
    else:
        result = run("run.sh", STANDIN_AGENT_JOB="0.2", ACTIONS_RUNNER_INPUT_JITCONFIG=encoded)
    assert result.returncode == 0, result.stderr
    assert "Listening for Jobs" in result.stdout
    assert "Job standin completed with result: Succeeded" in result.stdout
    assert encoded not in result.stdout
    assert fake.runners == []
    assert not (agent / ".runner").exists()


@pytest.mark.parametrize(
    "encoded",
    [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(json.dumps({"name": "x"}).encode()).decode(),
    ],
)
def test_a_bad_jit_config_ends_the_listener(run: Run, fake: Any, encoded: str) -> None:
    result = run("run.sh", "--jitconfig", encoded, STANDIN_AGENT_JOB="0")
    assert result.returncode == 0  # as the real run.sh
    assert "Runner listener exit with terminated error" in result.stdout
    assert "Listening for Jobs" not in result.stdout
    assert "JIT configuration" in result.stderr


class Listener:
    """run.sh in the background in a session of its own (so the whole agent can be found and
    ended), its output read line by line. RUNNER_MANUALLY_TRAP_SIG=1 unless told otherwise, as
    the official image and ours set it."""

    def __init__(self, agent: Path, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(agent / "run.sh"), *args],
            env={"RUNNER_MANUALLY_TRAP_SIG": "1", **env},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # unbuffered, so select() sees every line not yet read
            start_new_session=True,
        )
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no {text!r} within {timeout}s: {self.lines}")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"run.sh ended before {text!r}: {self.lines}")
            self.lines.append(line.decode().rstrip("\n"))

    def finish(self, signum: int, timeout: float = 5.0) -> tuple[int, str]:
        self.proc.send_signal(signum)
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "\n".join(self.lines) + "\n" + out.decode()

    def kill(self) -> None:
        kill_session(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def listener(agent: Path, env: dict[str, str], elsewhere: Path) -> Iterator[Callable[..., Any]]:
    started: list[Listener] = []

    def start(*args: str, **extra_env: str) -> Listener:
        started.append(Listener(agent, {**env, **extra_env}, elsewhere, *args))
        return started[-1]

    yield start
    for each in started:
        each.kill()


def listener_pid(tmp_path: Path) -> int:
    pid: int = [c for c in records(tmp_path / "calls.jsonl") if c["script"] == "Runner.Listener"][
        -1
    ]["pid"]
    return pid


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_with_the_manual_trap_a_signal_to_run_sh_stops_the_listener_in_its_own_group(
    run: Run, fake: Any, listener: Callable[..., Listener], signum: int, tmp_path: Path
) -> None:
    assert configure(run, fake)[0].returncode == 0
    proc = listener()
    proc.wait_for("Listening for Jobs")
    assert until(lambda: fake.runners[0]["status"] == "online")
    # `set -m`: run-helper.sh and the listener are a process group apart from run.sh's.
    assert os.getpgid(listener_pid(tmp_path)) != os.getpgid(proc.proc.pid)
    started = time.monotonic()
    code, out = proc.finish(signum)
    assert code == 128 + signum  # what `wait` returned when the trap ran, as the real one
    assert time.monotonic() - started < 3
    assert "Exiting..." in out
    assert fake.runners[0]["status"] == "offline"
    assert session_pids(proc.proc.pid) == []


def test_without_the_trap_a_signal_to_run_sh_alone_leaves_the_listener_running(
    run: Run, fake: Any, listener: Callable[..., Listener], tmp_path: Path
) -> None:
    """The real run.sh without RUNNER_MANUALLY_TRAP_SIG: bash dies of the SIGTERM at once and
    the listener goes on, orphaned. Whoever stops it must signal the whole tree."""
    assert configure(run, fake)[0].returncode == 0
    proc = listener(RUNNER_MANUALLY_TRAP_SIG="")
    proc.wait_for("Listening for Jobs")
    pid = listener_pid(tmp_path)
    assert os.getpgid(pid) == os.getpgid(proc.proc.pid)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=5) == -signal.SIGTERM
    assert pid in session_pids(proc.proc.pid)
    assert fake.runners[0]["status"] == "online"


def test_a_runner_that_is_not_ephemeral_keeps_listening_after_its_job(
    run: Run, fake: Any, agent: Path, listener: Callable[..., Listener]
) -> None:
    assert configure(run, fake)[0].returncode == 0
    proc = listener(STANDIN_AGENT_JOB="0.2")
    proc.wait_for("Job standin completed with result: Succeeded")
    # Busy during the job; idle again once the listener has gone back to listening.
    assert until(lambda: [r["busy"] for r in fake.runners] == [False])
    assert proc.proc.poll() is None
    code, _ = proc.finish(signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert len(fake.runners) == 1
    assert (agent / ".runner").exists()


def test_a_signal_during_the_wait_for_a_job_stops_at_once(
    run: Run, fake: Any, listener: Callable[..., Listener]
) -> None:
    assert configure(run, fake, "--ephemeral")[0].returncode == 0
    proc = listener(STANDIN_AGENT_JOB="60")
    proc.wait_for("Listening for Jobs")
    code, out = proc.finish(signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert "Running job" not in out
    assert len(fake.runners) == 1
