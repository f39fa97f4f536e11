"""act-ci without an engine: validation, the snapshot, argv, the JSON log (the remote
actions: test_actions_mirror.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeRun, result

from ciparity import act, act_env, act_plan, images, proc
from ciparity.errors import CiparityError, ConfigError, DockerError
from ciparity.ownership import Owner

WORKFLOW = """name: ci
on: [push]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@abc123 # v4
      - if: ${{ !env.ACT }}
        uses: docker/build-push-action@def456 # v6
  lint:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - uses: owner/repo/sub/dir@v1
      - run: echo hi
"""


def _git(root: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "-C", str(root), *args], check=True, env=env, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text(WORKFLOW)
    (root / "tracked.txt").write_text("committed\n")
    (root / "gone.txt").write_text("deleted later\n")
    (root / ".gitignore").write_text("ignored.txt\n")
    (root / "docker" / "wheelhouse").mkdir(parents=True)
    (root / "docker" / "wheelhouse" / "a.whl").write_text("wheel")
    (root / "docker" / "wheelhouse" / ".gitignore").write_text("*\n!.gitignore\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "tracked.txt", "gone.txt", ".gitignore", ".github", "docker")
    _git(root, "commit", "-q", "-m", "one")
    _git(root, "remote", "add", "origin", "https://example.invalid/team/project.git")
    (root / "tracked.txt").write_text("changed, not committed\n")
    (root / "gone.txt").unlink()
    (root / "staged.txt").write_text("new and staged\n")
    _git(root, "add", "staged.txt")
    (root / "untracked.txt").write_text("forgot to add\n")
    (root / "ignored.txt").write_text("ignored\n")
    return root


def test_snapshot_carries_what_a_push_would(repo: Path, tmp_path: Path) -> None:
    dest = tmp_path / "snap"
    taken = act.snapshot(repo, dest)
    assert taken.untracked == ("untracked.txt",)
    assert (dest / "tracked.txt").read_text() == "changed, not committed\n"
    assert (dest / "staged.txt").exists()
    assert not (dest / "gone.txt").exists()
    assert not (dest / "untracked.txt").exists()
    assert not (dest / "ignored.txt").exists()
    assert (dest / "docker" / "wheelhouse" / "a.whl").exists(), "offline builds need the wheels"
    log = subprocess.run(
        ["git", "-C", str(dest), "log", "--oneline"], capture_output=True, text=True, check=True
    )
    assert len(log.stdout.splitlines()) == 1, "history as shallow as fetch-depth 1"
    remote = subprocess.run(
        ["git", "-C", str(dest), "remote", "get-url", "origin"], capture_output=True, text=True
    )
    assert remote.stdout.strip() == "https://example.invalid/team/project.git"
    assert (repo / "untracked.txt").exists() and (repo / "tracked.txt").read_text().startswith(
        "changed"
    ), "the checkout itself is untouched"


def test_snapshot_with_untracked(repo: Path, tmp_path: Path) -> None:
    act.snapshot(repo, tmp_path / "snap", include_untracked=True)
    assert (tmp_path / "snap" / "untracked.txt").exists()
    assert not (tmp_path / "snap" / "ignored.txt").exists()


def test_snapshot_outside_git(tmp_path: Path) -> None:
    with pytest.raises(CiparityError, match="is not a git checkout"):
        act.snapshot(tmp_path, tmp_path / "snap")


def test_validate(repo: Path) -> None:
    assert act.validate(repo, act.Options()) == [repo / ".github" / "workflows" / "ci.yml"]
    assert act.workflow_jobs(repo / ".github" / "workflows" / "ci.yml") == ["build", "lint"]
    with pytest.raises(ConfigError, match=r"no workflow 'nope.yml' \(known: ci.yml\)"):
        act.validate(repo, act.Options(workflow="nope.yml"))
    with pytest.raises(ConfigError, match=r"no job 'deploy' in ci.yml \(jobs: build, lint\)"):
        act.validate(repo, act.Options(job="deploy"))
    with pytest.raises(ConfigError, match="unknown event 'pish'"):
        act.validate(repo, act.Options(event="pish"))


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("name: x\njobs:\n  a:\n    steps: [\n")
    with pytest.raises(ConfigError, match=rf"^{path}:5: malformed YAML"):
        act.workflow_jobs(path)
    path.write_text("name: only\n")
    with pytest.raises(ConfigError, match="no jobs"):
        act.workflow_jobs(path)


def test_act_argv() -> None:
    options = act.Options(job="lint", event="pull_request", dry_run=True)
    owner = Owner("0123456789ab", "/my checkout", "box", 42)
    argv = act.act_argv("act", Path("/s/.github/workflows/ci.yml"), options, owner, 105, ["-x"])
    labels = (
        "--label ciparity.managed=1 --label ciparity.run=0123456789ab"
        " --label 'ciparity.checkout=/my checkout' --label ciparity.owner=box:42"
    )
    assert argv == [
        "act",
        "pull_request",
        "-W",
        "/s/.github/workflows/ci.yml",
        "--json",
        "--bind",
        "--rm",
        "--container-options",
        f"{labels} --group-add 105",
        "--env",
        "CIPARITY_RUN_ID=0123456789ab",
        "--env",
        "CIPARITY_RUN_CHECKOUT=/my checkout",
        "--env",
        "CIPARITY_RUN_OWNER=box:42",
        "-j",
        "lint",
        "--dryrun",
        "-x",
    ]


def test_act_argv_puts_configuration_first_and_keeps_their_container_options() -> None:
    config_args = ["-P", "ubuntu-latest=img", "--container-options", "--cpus 2", "--pull=true"]
    owner = Owner("0123456789ab", "/c", "box", 42)
    argv = act.act_argv(
        "act", Path("/plan"), act.Options(), owner, None, (), Path("/snap"), config_args
    )
    assert argv == [
        "act",
        "push",
        "-P",
        "ubuntu-latest=img",
        "--pull=true",
        "-C",
        "/snap",
        "-W",
        "/plan",
        "--json",
        "--bind",
        "--rm",
        "--container-options",
        "--cpus 2 --label ciparity.managed=1 --label ciparity.run=0123456789ab"
        " --label ciparity.checkout=/c --label ciparity.owner=box:42",
        "--env",
        "CIPARITY_RUN_ID=0123456789ab",
        "--env",
        "CIPARITY_RUN_CHECKOUT=/c",
        "--env",
        "CIPARITY_RUN_OWNER=box:42",
    ]


def _line(**fields: Any) -> str:
    return json.dumps(fields)


def test_parse_log() -> None:
    lines = [
        _line(level="info", msg="Using docker host", time="2026-11-26T12:00:00Z"),
        _line(jobID="build", msg="Run Set up job", time="2026-11-26T12:00:01Z"),
        "not json",
        _line(jobID="lint", msg="Run", time="2026-11-26T12:00:05Z"),
        _line(jobID="build", jobResult="success", time="2026-11-26T12:00:11Z"),
        _line(jobID="lint", jobResult="failure", time="2026-11-26T12:00:07.5Z"),
        _line(jobID="test", msg="started, never ended", time="2026-11-26T12:00:08Z"),
    ]
    assert act.parse_log(lines) == [
        act.JobRow("build", "success", 10.0),
        act.JobRow("lint", "failure", 2.5),
        act.JobRow("test", "unfinished", 0.0),
    ]


def test_a_matrix_entry_is_judged_by_its_own_steps_not_acts_shared_result() -> None:
    """act keeps one result per matrix job (nektos/act#1519): the unit entry, ending after the
    nightly entry failed, is logged `failure` though every step of its own succeeded."""
    unit = {"job": "tests/test-1", "jobID": "test", "matrix": {"suite": "unit"}}
    nightly = {"job": "tests/test-2", "jobID": "test", "matrix": {"suite": "nightly"}}
    when = "2026-11-26T12:00:0{}Z".format
    lines = [
        _line(**nightly, step="exit 1", stepResult="failure", time=when(1)),
        _line(**nightly, step="Complete job", stepResult="success", time=when(2)),
        _line(**nightly, jobResult="failure", time=when(2)),
        _line(**unit, step="pytest", stepResult="success", time=when(1)),
        _line(**unit, step="Complete job", stepResult="success", time=when(3)),
        _line(**unit, jobResult="failure", time=when(3)),
    ]
    assert [(r.job, r.result) for r in act.parse_log(lines)] == [
        ("test (nightly)", "failure"),
        ("test (unit)", "success"),
    ]
    # An entry that never completed, or whose own step failed, keeps act's verdict.
    cut = [line for line in lines if "Complete job" not in line or "test-2" in line]
    assert [r.result for r in act.parse_log(cut)] == ["failure", "failure"]


def test_find_act_checks_the_pinned_version(
    fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(act.sys, "executable", str(tmp_path / "python"))
    (tmp_path / "act").write_text("")
    fake_run.on(str(tmp_path / "act"), "--version", stdout="act version 0.2.89\n")
    assert act.find_act() == str(tmp_path / "act")
    fake_run.on(str(tmp_path / "act"), "--version", stdout="act version 0.2.70\n")
    with pytest.raises(CiparityError, match="is act 0.2.70, this project pins 0.2.89"):
        act.find_act()
    (tmp_path / "act").unlink()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CiparityError, match="act is not installed"):
        act.find_act()


def test_act_error_prefers_acts_own_error_line() -> None:
    out = "\n".join([_line(level="info", msg="x"), "Error: Job 'lint' failed", "tail"])
    assert act._act_error(out) == "Error: Job 'lint' failed"
    out = _line(level="fatal", msg="EOF\n")
    assert act._act_error(out) == "EOF"


def test_job_env_and_shell_spec(repo: Path, make_config: Any, monkeypatch: Any) -> None:
    path = repo / ".github" / "workflows" / "ci.yml"
    path.write_text(
        "env:\n  A: top\n  REPORTS: reports/${{ github.job }}\n"
        "jobs:\n  lint:\n    env:\n      A: job\n    steps: []\n"
    )
    env = act.job_env(path, "lint", Path("/ws"))
    assert env["A"] == "job" and env["REPORTS"] == "reports/lint"
    assert (env["GITHUB_WORKSPACE"], env["GITHUB_JOB"], env["ACT"]) == ("/ws", "lint", "true")
    for name in (*act_env.CA_SOURCES, *images.PROXY_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(act_env, "SYSTEM_BUNDLE", repo / "no-system-bundle.crt")
    spec = act.job_shell_spec(make_config(), path, "lint", Path("/ws"), ["bash"], True)
    assert (spec.image, spec.user, spec.interactive) == (
        "ciparity-runner:latest",
        "1001:1001",
        True,
    )
    assert spec.extra_args == ("-v", "/ws:/ws", "-w", "/ws")
    assert spec.socket == "/var/run/docker.sock", "the socket, and its group, come with the spec"


def test_job_shell_gets_the_host_ca_and_proxy_as_jobs_do(
    repo: Path, make_config: Any, monkeypatch: Any
) -> None:
    path = repo / ".github" / "workflows" / "ci.yml"
    path.write_text("jobs:\n  lint:\n    steps: []\n")
    bundle = repo / "ca.pem"
    bundle.write_text("pem")
    for name in (*act_env.CA_SOURCES, *images.PROXY_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CERT", str(bundle))
    monkeypatch.setenv("HTTPS_PROXY", "http://u:secret@proxy:3128")
    spec = act.job_shell_spec(make_config(), path, "lint", Path("/ws"), ["bash"], False)
    assert spec.extra_args[-2:] == ("-v", f"{bundle.resolve()}:/etc/ciparity/host-ca.pem:ro")
    assert {n: spec.env[n] for n in act_env.CA_VARS} == dict.fromkeys(
        act_env.CA_VARS, "/etc/ciparity/host-ca.pem"
    )
    assert spec.pass_env == ("HTTPS_PROXY",)
    assert "secret" not in " ".join(f"{k}={v}" for k, v in spec.env.items())
    assert spec.env["NO_PROXY"] == "127.0.0.1,localhost"


def test_remove_job_volumes_only_this_workflows_jobs(repo: Path, fake_run: FakeRun) -> None:
    path = repo / ".github" / "workflows" / "ci.yml"
    fake_run.on(
        "docker",
        "volume",
        "ls",
        stdout="act-ci-build-1a-env\nact-ci-lint-2b-env\nact-ci-builder-3c-env\nact-cix-build-4d\n",
    )
    act.remove_job_volumes("docker", path, "build")
    assert fake_run.argvs == [
        ["docker", "volume", "ls", "-q", "--filter", "name=act-ci-"],
        ["docker", "volume", "rm", "-f", "act-ci-build-1a-env"],
    ]
    fake_run.calls.clear()
    act.remove_job_volumes("docker", path)
    assert fake_run.argvs[-1] == [
        "docker",
        "volume",
        "rm",
        "-f",
        "act-ci-build-1a-env",
        "act-ci-lint-2b-env",
    ]


MINE = Owner("0123456789ab", "/c", socket.gethostname(), os.getpid())


def test_remove_run_containers_polls_until_none_is_left(fake_run: FakeRun) -> None:
    answers = iter(["a b\n", "c\n"])
    fake_run.on("docker", "ps", respond=lambda call: result(call.argv, 0, next(answers, "")))
    # act removing the same container at once: the error is expected, the poll decides.
    fake_run.on(
        "docker", "rm", returncode=1, stderr="removal of container a is already in progress"
    )
    act.remove_run_containers("docker", MINE)
    assert [a for a in fake_run.argvs if a[1] == "rm"] == [
        ["docker", "rm", "-f", "-v", "a", "b"],
        ["docker", "rm", "-f", "-v", "c"],
    ]
    assert fake_run.argvs[0][-1] == "label=ciparity.run=0123456789ab"
    assert any(a[1:3] == ["volume", "ls"] for a in fake_run.argvs), "then its volumes"


def test_a_nested_run_leaves_the_sweep_to_the_process_owning_the_run(fake_run: FakeRun) -> None:
    outer = Owner("0123456789ab", "/c", socket.gethostname(), os.getpid() + 1)
    act.remove_run_containers("docker", outer)
    assert fake_run.calls == []


def test_remove_run_containers_gives_up_after_its_deadline(fake_run: FakeRun) -> None:
    fake_run.on("docker", "ps", stdout="stuck\n")
    with pytest.raises(DockerError, match="containers of this run are still there: stuck"):
        act.remove_run_containers("docker", MINE, deadline=0.0)


def test_cleanup_runs_every_step_even_after_one_fails(
    repo: Path, fake_run: FakeRun, make_config: Any, tmp_path: Path
) -> None:
    fake_run.on("docker", "ps", returncode=1, stderr="daemon hiccup")
    folder = tmp_path / "act-L"
    folder.mkdir()
    path = repo / ".github" / "workflows" / "ci.yml"
    with pytest.raises(DockerError, match="daemon hiccup"):
        act.cleanup(make_config(), [path], "", [folder])
    assert not folder.exists(), "the snapshot is removed although the container step failed"
    assert any(a[1:3] == ["volume", "ls"] for a in fake_run.argvs)


def test_remove_stale_spares_a_live_runs_snapshot(
    tmp_path: Path, make_config: Any, fake_run: FakeRun
) -> None:
    workdir = tmp_path / ".act"
    for name in ("act-live", "act-live-plan", "act-dead", "act-dead-actions", "last-failed"):
        (workdir / name).mkdir(parents=True)
    act.claim(workdir, "act-live")
    (workdir / ".act-dead.pid").write_text("999999999")
    removed = act.remove_stale(make_config(), workdir)
    assert removed == [".act-dead.pid", "act-dead", "act-dead-actions", "last-failed"]
    assert sorted(p.name for p in workdir.iterdir()) == [
        ".act-live.pid",
        "act-live",
        "act-live-plan",
    ]
    act.release(workdir, "act-live")
    assert act.remove_stale(make_config(), tmp_path / "none") == []


def test_a_run_with_nothing_reproducible_starts_nothing(
    tmp_path: Path,
    make_config: Any,
    fake_run: FakeRun,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config()
    workflows = config.root / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "mac.yml").write_text("on: push\njobs:\n  mac: {runs-on: macos-14}\n")
    monkeypatch.setattr(act, "find_act", lambda: "act")
    rows = act.run(config, act.Options(), tmp_path / "work")
    reason = "macOS runner (macos-14): act runs Linux containers only"
    assert [(r.job, r.result) for r in rows] == [("mac", f"skipped: {reason}")]
    assert capsys.readouterr().err == f"ciparity: skipped mac: {reason}\n"
    assert fake_run.calls == [] and not (tmp_path / "work").exists()
    assert act.failures(rows) == [] and act.failures(rows, strict=True) == ["mac"]


def _real(call: Any) -> proc.Result:
    """git itself, for the snapshot (only docker and act are faked)."""
    data = call.input.encode() if isinstance(call.input, str) else call.input
    done = subprocess.run(call.argv, cwd=call.cwd, env=call.env, input=data, capture_output=True)
    return result(
        call.argv, done.returncode, done.stdout.decode(), done.stderr.decode(), done.stdout
    )


MATRIX_WORKFLOW = """name: m
on: push
jobs:
  t:
    runs-on: ${{ matrix.os }}
    continue-on-error: ${{ matrix.experimental }}
    strategy:
      matrix:
        os: [ubuntu-latest, windows-latest]
        include: [{os: ubuntu-latest, experimental: true, extra: x}]
    steps: [{run: "true"}]
"""


def test_run_hands_act_the_plan_and_builds_the_job_table(
    tmp_path: Path,
    make_config: Any,
    fake_run: FakeRun,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config()
    name = ".github/workflows/m.yml"
    (config.root / name).parent.mkdir(parents=True)
    (config.root / name).write_text(MATRIX_WORKFLOW)
    (config.root / ".actrc").write_text("-P ubuntu-latest=mine:1\n")
    monkeypatch.setattr(act, "find_act", lambda: "act")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _git(config.root, "init", "-q", "-b", "main")
    _git(config.root, "add", "-A")
    _git(config.root, "commit", "-q", "-m", "one")
    fake_run.on("git", respond=_real)
    log = "\n".join(
        json.dumps(e)
        for e in (
            {
                "jobID": "t",
                "job": "m/t",
                "matrix": {"os": "ubuntu-latest", "experimental": True, "extra": "x"},
                "time": "2026-01-01T00:00:00Z",
            },
            {
                "jobID": "t",
                "job": "m/t",
                "matrix": {"os": "ubuntu-latest", "experimental": True, "extra": "x"},
                "jobResult": "failure",
                "time": "2026-01-01T00:00:03Z",
            },
        )
    )
    seen: list[Any] = []

    def act_run(call: Any) -> Any:
        planned = Path(call.cwd) / "m.yml"
        seen.append((call.argv, planned.read_text(), sorted(os.listdir(call.cwd))))
        return result(call.argv, 1, log + "\nError: Job 't' failed\n")

    fake_run.on("act", respond=act_run)
    workdir = config.reports_dir / ".act"
    rows = act.run(config, act.Options(), workdir)
    argv, planned, listing = seen[0]
    builtin = act_plan.builtin_args(config.runner_image, config.self_hosted_image)
    # ciparity's options, then the repository's .actrc (act: the last one wins), then ours.
    assert argv[2 : argv.index("-C")] == [*builtin, "-P", "ubuntu-latest=mine:1"]
    assert Path(argv[argv.index("-C") + 1]).parent == workdir
    assert listing == ["m.yml"], "act runs where no .actrc is"
    assert "runs-on: ubuntu-latest" in planned and "windows" not in planned
    assert [(r.job, r.result) for r in rows] == [
        ("t (ubuntu-latest, true, x)", act.CONTINUED),
        (
            "t (windows-latest)",
            "skipped: Windows runner (windows-latest): act runs Linux containers only",
        ),
    ]
    assert act.failures(rows) == []
    assert "ciparity: skipped t (windows-latest): Windows runner" in capsys.readouterr().err
    # The failed run's workspace is kept; nothing else of the run is.
    assert sorted(p.name for p in workdir.iterdir()) == ["last-failed"]


def test_event_flags_tell_act_the_push(tmp_path: Path) -> None:
    from ciparity import gitsnap

    taken = gitsnap.Snapshot(tmp_path, "refs/tags/v1", "c" * 40, gitsnap.ZERO, "t" * 40, "a/b")
    path = tmp_path / "event.json"
    assert act.event_flags(taken, "push", path) == ["-e", str(path)]
    payload = json.loads(path.read_text())
    assert (payload["ref"], payload["after"], payload["deleted"]) == (
        "refs/tags/v1",
        "c" * 40,
        False,
    )
    path.unlink()
    assert act.event_flags(taken, "pull_request", path) == [] and not path.exists()


def test_snapshot_excludes_the_reports_folder_inside_the_checkout(make_config: Any) -> None:
    assert act.snapshot_excludes(make_config()) == ("reports",)
    assert act.snapshot_excludes(make_config(reports="out/r")) == ("out/r",)
    assert act.snapshot_excludes(make_config(reports="/elsewhere/r")) == ()
