"""The action mirror without an engine: parsing `uses:`, `invoke actions-sync` against a file://
stand-in remote (bare repositories made here, shaped like the published actions: compiled
JavaScript under dist/, sub-path actions, moving major tags), resolution and extraction for act,
the stand-ins for what the mirror lacks, and the job table's note. The published actions' own
code (../shared/actions) is run by tests/integration/test_actions_mirror_offline.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FakeRun, write_checkout

from ciparity import act, actions_mirror, config
from ciparity.actions_mirror import Uses, parse_uses
from ciparity.config import Config
from ciparity.errors import ConfigError

pytestmark = pytest.mark.usefixtures("clean_env")

PIN = "11bd71901bbe5b1630ceea73d27597364c9af683"
WORKFLOW = """name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@{pin} # v4.2.2
      - uses: "actions/setup-python@v5"
        with:
          python-version: "3.12"
      - uses: 'actions/cache/restore@v4'
      - uses: ./.github/actions/build
      - uses: docker://alpine:3
      - run: pytest
      - if: always()
        uses: codecov/codecov-action@v5
"""
COMPOSITE = """name: build
description: the repository's own composite action
runs:
  using: composite
  steps:
    - uses: actions/setup-python@v5.6.0
    - shell: bash
      run: echo built
"""


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def publish(remote: Path, repo: str, releases: list[tuple[dict[str, str], list[str]]]) -> None:
    """A bare `remote/OWNER/REPO.git` whose commits hold `files` and carry `tags`, in order."""
    work = remote.parent / "work" / repo
    git("init", "-q", "-b", "main", str(work))
    for files, tags in releases:
        for name, text in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"release {tags}", cwd=work)
        for tag in tags:
            git("tag", "-f", tag, cwd=work)
    git("clone", "-q", "--bare", str(work), str(remote / f"{repo}.git"))


def node_action(name: str, main: str) -> dict[str, str]:
    return {
        "action.yml": f"name: {name}\nruns:\n  using: node20\n  main: {main}\n",
        main: f"console.log('{name}')\n",
    }


@pytest.fixture(scope="module")
def built_remote(tmp_path_factory: pytest.TempPathFactory) -> Path:
    remote = tmp_path_factory.mktemp("published") / "remote"
    publish(
        remote,
        "actions/checkout",
        [(node_action("checkout", "dist/index.js"), ["v4.2.2"]), ({"x": "2"}, ["v4"])],
    )
    setup = node_action("setup-python", "dist/setup/index.js")
    publish(remote, "actions/setup-python", [(setup, ["v5", "v5.6.0"])])
    # A sub-path action, as actions/cache/restore is: restore/action.yml runs ../dist code.
    restore = node_action("restore", "../dist/restore-only/index.js")["action.yml"]
    cache = {
        **node_action("cache", "dist/restore/index.js"),
        "restore/action.yml": restore,
        "dist/restore-only/index.js": "console.log('restore')\n",
    }
    publish(remote, "actions/cache", [(cache, ["v4"]), ({"dist/restore/index.js": "v5"}, ["v5"])])
    return remote


@pytest.fixture
def remote(tmp_path: Path, built_remote: Path) -> Path:
    """A stand-in for GitHub: bare repositories under one folder, reached as file://."""
    return Path(shutil.copytree(built_remote, tmp_path / "remote"))


def rev(remote: Path, repo: str, ref: str) -> str:
    return git("--git-dir", str(remote / f"{repo}.git"), "rev-parse", f"{ref}^{{commit}}")


@pytest.fixture
def workflow(built_remote: Path) -> str:
    """The workflow, its checkout pinned by commit as hardened workflows do."""
    return WORKFLOW.format(pin=rev(built_remote, "actions/checkout", "v4.2.2"))


@pytest.fixture
def repo(tmp_path: Path, workflow: str) -> Path:
    root = write_checkout(tmp_path / "repo")
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text(workflow)
    (root / ".github" / "actions" / "build").mkdir(parents=True)
    (root / ".github" / "actions" / "build" / "action.yml").write_text(COMPOSITE)
    return root


@pytest.fixture
def make(repo: Path, tmp_path: Path, remote: Path) -> Callable[..., Config]:
    def build(**overrides: object) -> Config:
        settings = {
            "actions_mirror": str(tmp_path / "mirror"),
            "actions_url": f"file://{remote}",
            **overrides,
        }
        return config.load(repo, settings, environ={})

    return build


# --- parsing `uses:` -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("actions/checkout@v4", Uses("actions/checkout", "", "v4")),
        ("actions/checkout@main", Uses("actions/checkout", "", "main")),
        ("owner/repo@release/v1", Uses("owner/repo", "", "release/v1")),
        (f"actions/checkout@{PIN}", Uses("actions/checkout", "", PIN)),
        ("actions/cache/restore@v4", Uses("actions/cache", "restore", "v4")),
        ("o/r/deep/er/path@v1.2.3", Uses("o/r", "deep/er/path", "v1.2.3")),
        (" my-org/my.action_x@v1 ", Uses("my-org/my.action_x", "", "v1")),
        ("./.github/actions/build", None),
        ("../elsewhere", None),
        ("docker://alpine:3", None),
        ("${{ matrix.action }}", None),
    ],
)
def test_parse_uses(text: str, expected: Uses | None) -> None:
    assert parse_uses(text, "ci.yml:3") == expected


def test_uses_text_and_act_key() -> None:
    sub = Uses("actions/cache", "restore", "v4")
    assert (sub.text, sub.key, sub.is_sha) == (
        "actions/cache/restore@v4",
        "actions/cache@v4",
        False,
    )
    assert Uses("a/b", "", PIN).is_sha


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("actions/checkout", "ci.yml:3: uses: actions/checkout has no ref"),
        ("actions/checkout@", "ci.yml:3: uses: actions/checkout@ has no ref"),
        ("checkout@v4", "ci.yml:3: uses: checkout@v4 is not of the form OWNER/REPO[/PATH]@REF"),
        ("a//b@v1", "ci.yml:3: uses: a//b@v1 is not of the form"),
    ],
)
def test_parse_uses_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        parse_uses(text, "ci.yml:3")


def test_find_uses_reads_quoted_and_pinned_forms_and_follows_local_actions(
    repo: Path, remote: Path
) -> None:
    found = actions_mirror.find_uses(repo)
    pin = rev(remote, "actions/checkout", "v4.2.2")
    assert found == {
        Uses("actions/checkout", "", pin): ".github/workflows/ci.yml:7",
        Uses("actions/setup-python", "", "v5"): ".github/workflows/ci.yml:8",
        Uses("actions/cache", "restore", "v4"): ".github/workflows/ci.yml:11",
        Uses("codecov/codecov-action", "", "v5"): ".github/workflows/ci.yml:16",
        Uses("actions/setup-python", "", "v5.6.0"): ".github/actions/build/action.yml:6",
    }


def test_find_uses_follows_a_local_action_outside_github(repo: Path, workflow: str) -> None:
    (repo / "tools" / "act1").mkdir(parents=True)
    (repo / "tools" / "act1" / "action.yaml").write_text(
        COMPOSITE.replace("actions/setup-python@v5.6.0", "o/nested@v2")
    )
    (repo / ".github" / "workflows" / "ci.yml").write_text(
        workflow + "      - uses: ./tools/act1\n"
    )
    assert Uses("o/nested", "", "v2") in actions_mirror.find_uses(repo)


def test_find_uses_of_chosen_workflows_follows_their_local_workflows_and_actions(
    repo: Path,
) -> None:
    workflows = repo / ".github" / "workflows"
    (workflows / "release.yml").write_text(
        "jobs:\n  pub:\n    steps:\n      - uses: pypa/gh-action-pypi-publish@release/v1\n"
    )
    (workflows / "caller.yml").write_text(
        "jobs:\n  call:\n    uses: ./.github/workflows/reusable.yml\n"
        "  remote:\n    uses: org/wf/.github/workflows/x.yml@v1\n"
    )
    (workflows / "reusable.yml").write_text(
        "on: workflow_call\njobs:\n  r:\n    steps:\n      - uses: ./.github/actions/build\n"
    )
    everything = actions_mirror.find_uses(repo)
    assert Uses("pypa/gh-action-pypi-publish", "", "release/v1") in everything
    called = actions_mirror.find_uses(repo, [workflows / "caller.yml"])
    # Through the local reusable workflow to the local action and its remote one; the remote
    # reusable workflow is act's to fetch.
    assert called == {
        Uses("actions/setup-python", "", "v5.6.0"): ".github/actions/build/action.yml:6"
    }


def test_find_uses_errors_name_file_and_line(repo: Path, workflow: str) -> None:
    path = repo / ".github" / "workflows" / "ci.yml"
    path.write_text(workflow.replace("codecov/codecov-action@v5", "codecov/codecov-action"))
    with pytest.raises(ConfigError, match=r"^\.github/workflows/ci\.yml:16: uses: codecov/"):
        actions_mirror.find_uses(repo)
    path.write_text("jobs:\n  a: [\n")
    with pytest.raises(ConfigError, match="ci.yml:3: malformed YAML"):
        actions_mirror.find_uses(repo)


# --- settings --------------------------------------------------------------------------------


def test_mirror_dir_defaults_to_the_users_cache(checkout: Path, tmp_path: Path) -> None:
    cfg = config.load(checkout, environ={})
    home = {"HOME": str(tmp_path / "home")}
    assert actions_mirror.mirror_dir(cfg, home) == tmp_path / "home/.cache/ciparity/actions"
    xdg = {**home, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert actions_mirror.mirror_dir(cfg, xdg) == tmp_path / "xdg/ciparity/actions"
    set_by_env = config.load(checkout, environ={"CIPARITY_ACTIONS_MIRROR": "mirrors/a"})
    assert actions_mirror.mirror_dir(set_by_env, xdg) == checkout / "mirrors/a"
    assert set_by_env.settings_source["actions_mirror"] == "environment"
    assert cfg.actions_url == "https://github.com"


def test_actions_url_must_be_a_url(checkout: Path) -> None:
    with pytest.raises(ConfigError, match="CIPARITY_ACTIONS_URL: expected an https://"):
        config.load(checkout, environ={"CIPARITY_ACTIONS_URL": "github.com"})
    cfg = config.load(checkout, {"actions_url": "file:///srv/actions/"}, environ={})
    assert actions_mirror.remote_url(cfg, "o/r") == "file:///srv/actions/o/r.git"


# --- invoke actions-sync ---------------------------------------------------------------------


def test_sync_fills_the_mirror_then_is_idempotent_and_updates(
    make: Callable[..., Config], tmp_path: Path, remote: Path
) -> None:
    cfg = make()
    first = actions_mirror.sync(cfg)
    assert first.errors == (
        "codecov/codecov-action: cannot fetch"
        f" file://{remote}/codecov/codecov-action.git: '{remote}/codecov/codecov-action.git'"
        " does not appear to be a git repository",
    )
    pin = rev(remote, "actions/checkout", "v4.2.2")
    setup = rev(remote, "actions/setup-python", "v5")[:12]
    assert first.lines == (
        f"actions/checkout@{pin}: {pin[:12]}",
        f"actions/setup-python@v5: {setup}",
        f"actions/cache/restore@v4: {rev(remote, 'actions/cache', 'v4')[:12]}",
        f"actions/setup-python@v5.6.0: {setup}",
    )
    mirror = tmp_path / "mirror"
    assert sorted(p.relative_to(mirror).as_posix() for p in mirror.glob("*/*")) == [
        "actions/cache.git",
        "actions/checkout.git",
        "actions/setup-python.git",
    ], "no half-written or empty folder for the repository that failed"
    bare = git("--git-dir", str(mirror / "actions/cache.git"), "rev-parse", "--is-bare-repository")
    assert bare == "true"

    assert actions_mirror.sync(cfg) == first, "a second run changes nothing"

    # The remote moves a tag and gains one: a sync follows.
    cache = remote / "actions" / "cache.git"
    git("--git-dir", str(cache), "tag", "-f", "v4", "v5")
    after = actions_mirror.sync(cfg)
    v5 = git("--git-dir", str(cache), "rev-parse", "v5")
    assert f"actions/cache/restore@v4: {v5[:12]}" in after.lines
    assert git("--git-dir", str(mirror / "actions/cache.git"), "rev-parse", "v4") == v5


def test_sync_reports_a_ref_the_remote_lacks_and_a_remote_that_is_down(
    make: Callable[..., Config], repo: Path, tmp_path: Path, workflow: str
) -> None:
    (repo / ".github" / "workflows" / "ci.yml").write_text(
        workflow.replace("cache/restore@v4", "cache/restore@v99")
    )
    result = actions_mirror.sync(make())
    assert any(
        e.startswith("actions/cache/restore@v99 (.github/workflows/ci.yml:11): file://")
        and e.endswith("actions/cache.git has no tag, branch or commit v99")
        for e in result.errors
    ), result.errors

    down = actions_mirror.sync(
        make(actions_mirror=str(tmp_path / "m2"), actions_url="http://127.0.0.1:9")
    )
    assert len(down.errors) == 4 and not down.lines
    assert all("cannot fetch http://127.0.0.1:9/" in e for e in down.errors), down.errors
    assert all("\n" not in e for e in down.errors)
    assert not (tmp_path / "m2").exists() or list((tmp_path / "m2").rglob("*")) == []


def test_sync_fetches_a_pinned_commit_on_no_branch_or_tag(
    make: Callable[..., Config], repo: Path, tmp_path: Path, remote: Path
) -> None:
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    (work / "action.yml").write_text(COMPOSITE.replace("actions/setup-python@v5.6.0", "o/x@v1"))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    pinned = git("rev-parse", "HEAD", cwd=work)
    (work / "later").write_text("x")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "two", cwd=work)
    git("clone", "-q", "--bare", str(work), str(remote / "team" / "tool.git"))
    git("--git-dir", str(remote / "team" / "tool.git"), "reset", "--soft", "HEAD")
    # Only `main` (the second commit) is advertised; the pin is its parent.
    (repo / ".github" / "workflows" / "ci.yml").write_text(
        f"jobs:\n  a:\n    steps:\n      - uses: team/tool@{pinned} # v1\n"
    )
    (repo / ".github" / "actions" / "build" / "action.yml").unlink()
    result = actions_mirror.sync(make())
    assert result.lines[0] == f"team/tool@{pinned}: {pinned[:12]}"
    # Its composite's own remote action is followed (and missing from this remote).
    assert result.errors and result.errors[0].startswith("o/x: cannot fetch")


def test_sync_refuses_a_folder_that_is_not_a_git_mirror(
    make: Callable[..., Config], tmp_path: Path
) -> None:
    squatter = tmp_path / "mirror" / "actions" / "checkout.git"
    squatter.mkdir(parents=True)
    (squatter / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"checkout\.git is not a git mirror .*actions-sync"):
        actions_mirror.sync(make())
    assert (squatter / "mine.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        actions_mirror.sync(make(actions_mirror=str(tmp_path / "file")))


# --- act-ci: resolution, extraction, stand-ins -----------------------------------------------


def test_prepare_hands_act_the_real_trees_and_stands_in_offline(
    make: Callable[..., Config],
    repo: Path,
    tmp_path: Path,
    remote: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = make(offline="on")
    actions_mirror.sync(cfg)
    pin = rev(remote, "actions/checkout", "v4.2.2")
    dest = tmp_path / "run"
    prepared = actions_mirror.prepare(cfg, repo, dest)
    flags = dict(zip(prepared.flags[1::2], prepared.flags[::2]))
    assert set(prepared.flags[::2]) == {"--local-repository"}
    keys = {flag.partition("=")[0]: Path(flag.partition("=")[2]) for flag in flags}
    assert set(keys) == {
        f"actions/checkout@{pin}",
        "actions/setup-python@v5",
        "actions/setup-python@v5.6.0",
        "actions/cache@v4",
        "codecov/codecov-action@v5",
    }
    # The real code, as its tag holds it: compiled JavaScript and sub-path actions included.
    cache = keys["actions/cache@v4"]
    assert (cache / "restore" / "action.yml").is_file()
    assert (cache / "dist" / "restore-only" / "index.js").is_file()
    assert "node20" in (keys["actions/setup-python@v5"] / "action.yml").read_text()
    assert prepared.real[:2] == (f"actions/checkout@{pin}", "actions/setup-python@v5")
    # What the mirror lacks: a stand-in that warns and succeeds, named before any job starts.
    assert prepared.missing == ("codecov/codecov-action@v5",)
    stand_in = json.loads((keys["codecov/codecov-action@v5"] / "action.yml").read_text())
    assert stand_in["runs"]["using"] == "composite"
    assert stand_in["runs"]["steps"][0]["name"] == (
        "skipped: codecov/codecov-action@v5 not available offline"
    )
    assert stand_in["runs"]["steps"][0]["run"] == (
        "echo '::warning title=ciparity-skip::codecov/codecov-action@v5 not available offline'\n"
    )
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "ciparity: warning: codecov/codecov-action@v5 is not available offline (not in the action"
        f" mirror {tmp_path / 'mirror'}): its steps are skipped; `invoke actions-sync` fetches it"
    ]


def test_prepare_for_one_workflow_names_only_what_it_lacks(
    make: Callable[..., Config], repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = repo / ".github" / "workflows" / "other.yml"
    other.write_text("jobs:\n  a:\n    steps:\n      - uses: codecov/codecov-action@v5\n")
    ci = repo / ".github" / "workflows" / "ci.yml"
    ci.write_text("jobs:\n  a:\n    steps:\n      - uses: actions/cache/restore@v4\n")
    cfg = make(offline="on")
    actions_mirror.sync(cfg)
    capsys.readouterr()
    prepared = actions_mirror.prepare(cfg, repo, tmp_path / "run", workflows=[ci])
    assert prepared.real == ("actions/cache/restore@v4",) and prepared.missing == ()
    assert capsys.readouterr().err == ""


def test_prepare_follows_a_mirrored_composite_to_the_actions_it_uses(
    make: Callable[..., Config], repo: Path, tmp_path: Path, remote: Path
) -> None:
    nested = COMPOSITE.replace("actions/setup-python@v5.6.0", "actions/cache/restore@v4")
    publish(remote, "team/tool", [({"action.yml": nested}, ["v1"])])
    ci = repo / ".github" / "workflows" / "ci.yml"
    ci.write_text("jobs:\n  a:\n    steps:\n      - uses: team/tool@v1\n")
    cfg = make(offline="on")
    assert actions_mirror.sync(cfg).errors == ()
    prepared = actions_mirror.prepare(cfg, repo, tmp_path / "run", workflows=[ci])
    assert prepared.real == ("team/tool@v1", "actions/cache/restore@v4")
    assert [f.partition("=")[0] for f in prepared.flags[1::2]] == [
        "team/tool@v1",
        "actions/cache@v4",
    ]


def test_prepare_uses_act_ci_s_double_where_the_mirror_lacks_an_action(
    make: Callable[..., Config], repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ci = repo / ".github" / "workflows" / "ci.yml"
    ci.write_text(
        "jobs:\n  a:\n    steps:\n      - uses: actions/upload-artifact@v4\n"
        "      - uses: codecov/codecov-action@v5\n"
    )
    double = tmp_path / "double"
    substitutes = {"actions/upload-artifact@v4": double}
    prepared = actions_mirror.prepare(
        make(offline="on"), repo, tmp_path / "run", workflows=[ci], substitutes=substitutes
    )
    keys = dict(f.partition("=")[::2] for f in prepared.flags[1::2])
    assert keys["actions/upload-artifact@v4"] == str(double)
    assert prepared.missing == ("codecov/codecov-action@v5",), "the double is no skip"
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0]
        == "ciparity: actions/upload-artifact@v4 is not in the action mirror: a local double runs"
    )
    assert len(err) == 2 and "codecov/codecov-action@v5 is not available offline" in err[1]


def test_prepare_strict_stand_in_fails_its_step(
    make: Callable[..., Config], repo: Path, tmp_path: Path
) -> None:
    prepared = actions_mirror.prepare(make(offline="on"), repo, tmp_path / "run", strict=True)
    folder = [f for f in prepared.flags if f.startswith("codecov/")][0].partition("=")[2]
    run = json.loads((Path(folder) / "action.yml").read_text())["runs"]["steps"][0]["run"]
    assert run.startswith("echo '::error title=ciparity-skip::codecov/codecov-action@v5 not")
    assert run.endswith("exit 1\n")


def test_prepare_online_leaves_a_missing_action_to_act(
    make: Callable[..., Config], repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = actions_mirror.prepare(make(offline="off"), repo, tmp_path / "run")
    assert prepared.flags == () and prepared.missing == ()
    assert "codecov/codecov-action@v5" in prepared.fetched_by_act
    assert "codecov/codecov-action@v5 is not in the action mirror: act fetches it" in (
        capsys.readouterr().err
    )


def test_auto_decides_online_by_asking_where_act_fetches_from(
    make: Callable[..., Config], fake_run: FakeRun
) -> None:
    probe = ("git", "ls-remote", "https://github.com/codecov/codecov-action.git", "HEAD")
    fake_run.on(*probe, stdout="abc\tHEAD\n")
    assert actions_mirror.is_online(make(), "codecov/codecov-action")
    fake_run.on(*probe, returncode=128, stderr="fatal: unable to access: Could not resolve host")
    assert not actions_mirror.is_online(make(), "codecov/codecov-action")
    assert not actions_mirror.is_online(make(offline="on"), "codecov/codecov-action")
    assert actions_mirror.is_online(make(offline="off"), "codecov/codecov-action")
    assert len(fake_run.calls) == 2, "on and off never ask"
    timeout = fake_run.calls[0].timeout
    assert timeout is not None and timeout <= 15


def test_prepare_bad_input(
    make: Callable[..., Config], repo: Path, tmp_path: Path, workflow: str
) -> None:
    cfg = make(offline="on")
    actions_mirror.sync(cfg)
    path = repo / ".github" / "workflows" / "ci.yml"
    # A ref the mirror lacks, offline.
    path.write_text(workflow.replace("setup-python@v5", "setup-python@v7"))
    with pytest.raises(
        ConfigError,
        match=r"^actions/setup-python@v7: the action mirror's .*"
        r"setup-python\.git has no ref v7: run `invoke actions-sync`$",
    ):
        actions_mirror.prepare(cfg, repo, tmp_path / "a")
    # A sub-path the tree lacks.
    path.write_text(workflow.replace("cache/restore@v4", "cache/nope@v4"))
    with pytest.raises(
        ConfigError,
        match="actions/cache/nope@v4: the mirror's actions/cache@v4 has no action at nope",
    ):
        actions_mirror.prepare(cfg, repo, tmp_path / "b")
    # A uses: with no ref.
    path.write_text(workflow.replace("@v5\n", "\n"))
    with pytest.raises(ConfigError, match="has no ref"):
        actions_mirror.prepare(cfg, repo, tmp_path / "c")
    # A mirror entry that is not a git mirror.
    path.write_text(workflow)
    shutil.rmtree(tmp_path / "mirror" / "actions" / "cache.git")
    (tmp_path / "mirror" / "actions" / "cache.git").mkdir()
    with pytest.raises(ConfigError, match="cache.git is not a git mirror"):
        actions_mirror.prepare(cfg, repo, tmp_path / "d")


def test_checkout_is_never_stood_in(
    make: Callable[..., Config], repo: Path, tmp_path: Path
) -> None:
    """act copies the snapshot for the repository's own checkout: a mirror without checkout
    is no reason to warn or to stand in."""
    (repo / ".github" / "workflows" / "ci.yml").write_text(
        "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n"
    )
    shutil.rmtree(repo / ".github" / "actions")
    prepared = actions_mirror.prepare(make(offline="on"), repo, tmp_path / "run")
    assert prepared == actions_mirror.Prepared()


# --- the job table ---------------------------------------------------------------------------


def _entry(**fields: object) -> str:
    return json.dumps(fields)


def test_skipped_steps_from_acts_log_reach_the_job_table() -> None:
    matrix_entry = {"command": "warning", "kvPairs": {"title": "ciparity-skip"}}
    lines = [
        # Two entries of one matrix job: act's `job` tells them apart, the jobID does not.
        _entry(jobID="m", job="wf/m-1", arg="x/y@v1 not available offline", **matrix_entry),
        _entry(jobID="m", job="wf/m-2", arg="x/y@v1 not available offline", **matrix_entry),
        _entry(
            jobID="test",
            command="warning",
            kvPairs={"title": "ciparity-skip"},
            arg="codecov/codecov-action@v5 not available offline",
        ),
        _entry(jobID="test", command="warning", kvPairs={"title": "other"}, arg="not ours"),
        _entry(
            jobID="lint",
            command="error",
            kvPairs={"title": "ciparity-skip"},
            arg="o/r@v1 not available offline (--strict; `invoke actions-sync` fetches it)",
        ),
        "not json",
        _entry(jobID="test", msg="plain"),
    ]
    skipped = actions_mirror.skipped_steps(lines)
    assert skipped == {
        "wf/m-1": ["x/y@v1 not available offline"],
        "wf/m-2": ["x/y@v1 not available offline"],
        "test": ["codecov/codecov-action@v5 not available offline"],
        "lint": ["o/r@v1 not available offline (--strict)"],
    }
    rows = [
        act.JobRow("test", "success", 3.0, tuple(skipped["test"])),
        act.JobRow("lint", "failure", 1.0, tuple(skipped["lint"])),
        act.JobRow("build", "success", 2.0),
    ]
    assert [r.result for r in act.rows_table(rows)] == [
        "success, 1 step skipped: codecov/codecov-action@v5 not available offline",
        "failure, 1 step failed: o/r@v1 not available offline (--strict)",
        "success",
    ]
    assert actions_mirror.skip_note(["a not available offline", "b not available offline"]) == (
        "2 steps skipped: a not available offline, b not available offline"
    )


# --- the tasks -------------------------------------------------------------------------------


def test_actions_sync_task_prints_lines_and_fails_on_errors(
    repo: Path,
    tmp_path: Path,
    remote: Path,
    workflow: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from invoke.context import MockContext
    from invoke.exceptions import Exit

    from ciparity import tasks

    monkeypatch.chdir(repo)
    monkeypatch.setenv("CIPARITY_ACTIONS_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("CIPARITY_ACTIONS_URL", f"file://{remote}")
    with pytest.raises(Exit) as failed:
        tasks.actions_sync(MockContext())
    assert failed.value.code == 1
    out, err = capsys.readouterr()
    assert f"actions/setup-python@v5: {rev(remote, 'actions/setup-python', 'v5')[:12]}" in out
    assert out.splitlines()[-1] == f"4 actions in {tmp_path / 'mirror'}"
    assert err.splitlines() == [
        f"ciparity: error: codecov/codecov-action: cannot fetch file://{remote}/codecov/"
        f"codecov-action.git: '{remote}/codecov/codecov-action.git' does not appear to be a git"
        " repository"
    ]
    # Complete: exit 0.
    shutil.copytree(remote / "actions" / "checkout.git", remote / "x" / "codecov-action.git")
    (repo / ".github" / "workflows" / "ci.yml").write_text(
        workflow.replace("codecov/codecov-action@v5", "x/codecov-action@v4")
    )
    tasks.actions_sync(MockContext())
    # Bad input: one line, exit 2, no traceback.
    (tmp_path / "mirror" / "x" / "codecov-action.git" / "HEAD").unlink()
    with pytest.raises(Exit) as bad:
        tasks.actions_sync(MockContext())
    assert bad.value.code == 2
    assert str(bad.value.message).startswith("ciparity: error: ")
    assert "codecov-action.git is not a git mirror" in str(bad.value.message)


def test_act_ci_strict_reaches_the_run(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from invoke.context import MockContext

    from ciparity import tasks

    seen: list[act.Options] = []

    def run(cfg: Config, options: act.Options, workdir: Path) -> list[act.JobRow]:
        seen.append(options)
        return [act.JobRow("test", "success", 1.0)]

    monkeypatch.chdir(repo)
    monkeypatch.setattr(act, "run", run)
    monkeypatch.setattr(tasks, "_docker_ready", lambda cfg: None)
    monkeypatch.setattr(tasks, "_build_ci", lambda cfg: None)
    monkeypatch.setattr(tasks, "_build_runner", lambda cfg: None)
    tasks.act_ci(MockContext(), strict=True)
    tasks.act_ci(MockContext())
    assert [o.strict for o in seen] == [True, False]
