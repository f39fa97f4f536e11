"""The push snapshot without an engine: one test per row of issue 13's table, and its inputs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from ciparity import gitsnap
from ciparity.errors import CiparityError, ConfigError, Interrupted


def _edge() -> ModuleType:
    if "edge_repo" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "fixtures" / "edge_repo.py"
        spec = importlib.util.spec_from_file_location("edge_repo", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["edge_repo"] = module
        spec.loader.exec_module(module)
    return sys.modules["edge_repo"]


edge = _edge()
git = edge.git


def _tree_digest(folder: Path) -> dict[bytes, bytes]:
    """Every file under `folder` (its .git too) with a digest of its content and mode (git may
    refresh an existing object's mtime when it meets it again, as it does to keep it from gc)."""
    found = {}
    for dirpath, _dirs, files in os.walk(os.fsencode(folder)):
        for name in files:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            with open(path, "rb") as handle:
                found[path] = hashlib.sha256(handle.read() + f"{info.st_mode}".encode()).digest()
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The edge-case repository, built once (it takes a few dozen git calls), in a folder whose
    name has a space, a %-escape look-alike and a byte that is not UTF-8."""
    base = tmp_path_factory.mktemp("edge") / os.fsdecode(b"sp ace%20\xe9")
    edge.build(base / "repo", edge.library(base))
    return base


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The user's global git config is hostile; a pre-push hook's GIT_* variables are set;
    the umask is the user's 077; temporary folders go where the test can count them."""
    config = edge.hostile_config(tmp_path / "home")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "nowhere" / "index"))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "nowhere"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    old = os.umask(0o077)
    try:
        yield tmp_path / "home"
    finally:
        os.umask(old)
    assert not (tmp_path / "home" / "hook-ran").exists(), "a hook of the user ran"
    assert list((tmp_path / "tmp").iterdir()) == [], "the staging folder is left behind"


@pytest.fixture
def snap(built: Path, hostile: Path, tmp_path: Path) -> Iterator[gitsnap.Snapshot]:
    repo = built / "repo"
    before = _tree_digest(repo)
    taken = gitsnap.take(repo, tmp_path / "snap", include_untracked=True)
    yield taken
    assert _tree_digest(repo) == before, "the user's checkout (or its .git) was written"


def _run(snap: Path, *args: str) -> str:
    return git(snap, *args)


def test_mode_is_the_executable_bit_only(snap: gitsnap.Snapshot) -> None:
    """Committed 644, chmod 600 on disk (git sees no change), umask 077: a checkout gives 644."""
    assert oct(os.stat(snap.path / "mode.txt").st_mode & 0o777) == "0o644"
    assert oct(os.stat(snap.path / "run.sh").st_mode & 0o777) == "0o755"
    assert oct(os.stat(snap.path / "lib").st_mode & 0o777) == "0o755"


def test_gitattributes_eol_applies_on_checkout(snap: gitsnap.Snapshot) -> None:
    """`eol.txt text=auto eol=crlf`, committed with LF: a checkout writes CRLF."""
    assert (snap.path / "eol.txt").read_bytes() == b"one\r\ntwo\r\n"


def test_users_autocrlf_decides_the_blob_not_the_checkout(snap: gitsnap.Snapshot) -> None:
    """core.autocrlf=true for the user, a CRLF edit: the commit stores LF, the runner sees LF."""
    assert (snap.path / "auto.txt").read_bytes() == b"changed\n"
    blob = subprocess.run(
        ["git", "-C", str(snap.path), "cat-file", "blob", "HEAD:auto.txt"],
        capture_output=True,
        check=True,
        env=edge.ENV,
    )
    assert blob.stdout == b"changed\n"


def test_filters_are_not_run_lfs_stays_a_pointer(snap: gitsnap.Snapshot) -> None:
    """A clean/smudge filter (rot13) and git-lfs's: the job gets the stored blobs."""
    assert (snap.path / "secret.rot").read_text() == "uryyb\n"
    assert (snap.path / "big.bin").read_bytes() == edge.pointer(edge.BIG)


def test_non_utf8_names_survive(snap: gitsnap.Snapshot) -> None:
    assert edge.NON_UTF8 in os.listdir(os.fsencode(snap.path))
    assert (snap.path / os.fsdecode(edge.NON_UTF8)).read_bytes() == b"latin-1 name\n"


def test_submodule_is_a_gitlink_and_an_empty_folder(snap: gitsnap.Snapshot, built: Path) -> None:
    assert (snap.path / "lib").is_dir() and list((snap.path / "lib").iterdir()) == []
    recorded = git(built / "repo", "rev-parse", "HEAD:lib")
    assert _run(snap.path, "ls-files", "-s", "lib").split()[:2] == ["160000", recorded]
    assert (snap.path / ".gitmodules").is_file()


def test_ref_sha_and_history_are_a_pushs(snap: gitsnap.Snapshot, built: Path) -> None:
    """On branch main with changes: refs/heads/main, a commit on HEAD, depth 1."""
    repo = built / "repo"
    assert (snap.ref, snap.ref_name) == ("refs/heads/main", "main")
    assert _run(snap.path, "rev-parse", "HEAD") == snap.sha
    assert _run(snap.path, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert _run(snap.path, "rev-parse", "refs/remotes/origin/main") == snap.sha
    assert _run(snap.path, "rev-list", "--count", "HEAD") == "1", "fetch-depth 1"
    assert (snap.path / ".git" / "shallow").read_text().strip() == snap.sha
    assert snap.before == git(repo, "rev-parse", "refs/remotes/origin/main")
    assert _run(snap.path, "remote", "get-url", "origin") == edge.ORIGIN
    assert snap.repository == "team/edge"
    assert _run(snap.path, "status", "--porcelain", "--ignore-submodules=none") == ""


def test_commit_never_signs_and_no_hook_runs(snap: gitsnap.Snapshot) -> None:
    """commit.gpgSign=true with a failing gpg, failing hooks and templates, useConfigOnly: the
    snapshot is made unsigned (the `hostile` fixture asserts no hook ran)."""
    assert "gpgsig" not in _run(snap.path, "cat-file", "-p", "HEAD")
    assert list((snap.path / ".git").glob("hooks/*")) == [], "the user's template is not used"


def test_reports_never_carried_and_every_drop_is_a_line(snap: gitsnap.Snapshot) -> None:
    """--include-untracked with reports/ not ignored: reports/ stays out; the deleted file and
    the carried untracked file are each one warning line."""
    assert not (snap.path / "reports").exists()
    assert (snap.path / "untracked.txt").exists()
    assert not (snap.path / "gone.txt").exists()
    assert list(snap.messages) == [
        "ciparity: warning: 1 tracked files deleted in the working tree are left out, as a"
        " commit of your changes would leave them: gone.txt",
        "ciparity: warning: 1 untracked files carried, which a push would not"
        " (--include-untracked): untracked.txt",
    ]


def test_untracked_left_out_by_default(built: Path, tmp_path: Path) -> None:
    taken = gitsnap.take(built / "repo", tmp_path / "snap")
    assert not (tmp_path / "snap" / "untracked.txt").exists()
    assert taken.untracked == ("untracked.txt",)
    assert taken.messages[-1].startswith("ciparity: warning: 1 untracked files left out")


def test_tracked_reports_are_dropped_with_a_line(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "reports").mkdir()
    (repo / "reports" / "old.xml").write_text("x")
    (repo / "a").write_text("a")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "x")
    taken = gitsnap.take(repo, tmp_path / "snap")
    assert not (tmp_path / "snap" / "reports").exists()
    assert taken.messages == (
        "ciparity: warning: 1 tracked files under reports/ are left out: that is where ciparity"
        " writes reports",
    )


def test_submodules_true_populates_from_local_checkouts(built: Path, tmp_path: Path) -> None:
    repo = built / "repo"
    taken = gitsnap.take(repo, tmp_path / "snap", checkout=gitsnap.Checkout(submodules="true"))
    lib = tmp_path / "snap" / "lib"
    assert (lib / "lib.txt").read_text() == "library\n"
    assert git(lib, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD:lib")
    assert git(lib, "remote", "get-url", "origin") == edge.LIB_URL
    assert git(tmp_path / "snap", "config", "submodule.lib.url") == edge.LIB_URL
    assert (lib / ".git").read_text().startswith("gitdir: ../.git/modules/lib")
    assert list((lib / "deep").iterdir()) == [], "true is not recursive"
    assert "1 submodules populated from your local checkouts" in taken.messages[-1]
    # Copied, never hard-linked: act chowns the snapshot, which would reach the user's objects.
    packs = list((tmp_path / "snap" / ".git" / "modules" / "lib" / "objects").rglob("*"))
    assert all(p.stat().st_nlink == 1 for p in packs if p.is_file())


def test_submodules_recursive(built: Path, tmp_path: Path) -> None:
    repo = built / "repo"
    taken = gitsnap.take(repo, tmp_path / "snap", checkout=gitsnap.Checkout(submodules="recursive"))
    assert (tmp_path / "snap" / "lib" / "deep" / "deep.txt").read_text() == "deep\n"
    assert "2 submodules populated" in taken.messages[-1]


def test_lfs_true_fills_from_the_local_store(built: Path, tmp_path: Path) -> None:
    taken = gitsnap.take(built / "repo", tmp_path / "snap", checkout=gitsnap.Checkout(lfs=True))
    assert (tmp_path / "snap" / "big.bin").read_bytes() == edge.BIG
    assert "1 LFS files filled from your local LFS store" in taken.messages[-1]


def test_fetch_depth_0_brings_history_and_tags(built: Path, tmp_path: Path) -> None:
    repo = built / "repo"
    git(repo, "tag", "-f", "old", "HEAD~1")
    gitsnap.take(repo, tmp_path / "snap", checkout=gitsnap.Checkout(fetch_depth=0))
    assert git(tmp_path / "snap", "rev-list", "--count", "HEAD") == "3"
    assert git(tmp_path / "snap", "rev-parse", "old") == git(repo, "rev-parse", "old")
    assert not (tmp_path / "snap" / ".git" / "shallow").exists()


def test_a_submodules_own_changes_are_one_line(built: Path, tmp_path: Path) -> None:
    lib = built / "repo" / "lib" / "lib.txt"
    lib.write_text("edited inside the submodule\n")
    try:
        taken = gitsnap.take(built / "repo", tmp_path / "snap")
    finally:
        git(built / "repo" / "lib", "checkout", "--", "lib.txt")
    assert (
        "ciparity: warning: 1 submodules have uncommitted changes, left out (a push carries"
        " their recorded commit only): lib" in taken.messages
    )


@pytest.fixture
def small(tmp_path: Path) -> Path:
    repo = tmp_path / "small"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    return repo


def test_fetch_tags(small: Path, tmp_path: Path) -> None:
    git(small, "tag", "t1")
    gitsnap.take(small, tmp_path / "plain")
    assert git(tmp_path / "plain", "tag") == "", "actions/checkout fetches with --no-tags"
    gitsnap.take(small, tmp_path / "tags", checkout=gitsnap.Checkout(fetch_tags=True))
    assert git(tmp_path / "tags", "tag") == "t1"


def test_detached_at_tag_is_the_tag_push(small: Path, tmp_path: Path) -> None:
    git(small, "tag", "-a", "-m", "release", "v1")
    git(small, "checkout", "-q", "--detach")
    taken = gitsnap.take(small, tmp_path / "snap")
    head = git(small, "rev-parse", "HEAD")
    assert (taken.ref, taken.ref_name, taken.sha, taken.messages) == (
        "refs/tags/v1",
        "v1",
        head,
        (),
    )
    assert git(tmp_path / "snap", "rev-parse", "HEAD") == head, "a clean tree: HEAD's own sha"
    detached = subprocess.run(
        ["git", "-C", str(tmp_path / "snap"), "symbolic-ref", "-q", "HEAD"], capture_output=True
    )
    assert detached.returncode == 1, "a tag checkout is detached"
    assert git(tmp_path / "snap", "rev-parse", "refs/tags/v1") == head
    payload = gitsnap.event_payload(taken, "push")
    assert payload is not None
    assert (payload["ref"], payload["after"], payload["deleted"]) == ("refs/tags/v1", head, False)


def test_detached_choices_are_one_line(small: Path, tmp_path: Path) -> None:
    git(small, "tag", "v1")
    git(small, "tag", "v2")
    git(small, "checkout", "-q", "--detach")
    taken = gitsnap.take(small, tmp_path / "a")
    assert taken.ref == "refs/tags/v2"
    assert taken.messages[0].startswith("ciparity: warning: HEAD is detached at ")
    assert (
        "tags v2, v1 point: ran as the tag push of v2 (--ref chooses another)" in taken.messages[0]
    )
    git(small, "tag", "-d", "v1", "v2")
    taken = gitsnap.take(small, tmp_path / "b")
    assert taken.ref == "refs/heads/main"
    assert "ran as a push of refs/heads/main, a branch that holds it" in taken.messages[0]
    assert gitsnap.take(small, tmp_path / "c", ref="v9").ref == "refs/heads/v9"
    git(small, "tag", "v3")
    assert gitsnap.take(small, tmp_path / "d", ref="v3").ref == "refs/tags/v3"
    assert gitsnap.take(small, tmp_path / "e", ref="refs/tags/x").ref_name == "x"
    git(small, "commit", "-q", "--allow-empty", "-m", "on no branch")
    with pytest.raises(CiparityError, match="no branch or tag holds it: a push needs a ref"):
        gitsnap.take(small, tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_bad_ref_is_one_line(small: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a push sends refs/heads/NAME or refs/tags/NAME"):
        gitsnap.take(small, tmp_path / "s", ref="refs/pull/1/merge")
    with pytest.raises(ConfigError, match="is not a valid ref name"):
        gitsnap.take(small, tmp_path / "s", ref="a..b")
    assert not (tmp_path / "s").exists()


def test_unborn_branch_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "new"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "work")
    (repo / "a").write_text("a")
    git(repo, "add", "a")
    with pytest.raises(
        CiparityError, match=r"^branch 'work' has no commit yet: a push would carry"
    ):
        gitsnap.take(repo, tmp_path / "snap")
    assert not (tmp_path / "snap").exists()


def test_outside_git_and_unmerged(tmp_path: Path, small: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(CiparityError, match="is not a git checkout"):
        gitsnap.take(tmp_path / "plain", tmp_path / "snap")
    git(small, "checkout", "-q", "-b", "other")
    (small / "a.txt").write_text("other\n")
    git(small, "commit", "-q", "-am", "other")
    git(small, "checkout", "-q", "main")
    (small / "a.txt").write_text("main\n")
    git(small, "commit", "-q", "-am", "main")
    subprocess.run(
        ["git", "-C", str(small), "merge", "other"],
        capture_output=True,
        env={**os.environ, **edge.ENV},
    )
    with pytest.raises(
        CiparityError, match=r"1 paths are unmerged \(resolve the merge first\): a.txt"
    ):
        gitsnap.take(small, tmp_path / "snap")
    assert not (tmp_path / "snap").exists()


WORKFLOW = """on: push
jobs:
  a:
    steps:
      - uses: actions/checkout@v4
        with: {fetch-depth: 0, submodules: true, path: sub}
      - uses: actions/checkout@v4
        with: {repository: other/repo, lfs: true}
  b:
    steps:
      - uses: actions/checkout@abc # v4
        with:
          lfs: "true"
          fetch-depth: ${{ inputs.depth }}
          submodules: recursive
  c:
    steps:
      - run: echo no checkout
"""


def test_checkout_inputs(tmp_path: Path) -> None:
    path = tmp_path / "ci.yml"
    path.write_text(WORKFLOW)
    inputs, notes = gitsnap.checkout_inputs(path, "a")
    assert inputs == gitsnap.Checkout(fetch_depth=0, submodules="true")
    assert notes == [
        "ciparity: warning: checkout path: 'sub' is not honoured: act runs every job in the"
        " repository's root"
    ]
    inputs, notes = gitsnap.checkout_inputs(path, "b")
    assert inputs == gitsnap.Checkout(fetch_depth=1, lfs=True, submodules="recursive")
    assert notes == [
        "ciparity: warning: checkout fetch-depth: '${{ inputs.depth }}' cannot be evaluated:"
        " default used"
    ]
    no_checkout = (
        "ciparity: warning: jobs c have no actions/checkout step: on GitHub they start in an"
        " empty workspace, under act-ci they see the snapshot"
    )
    assert gitsnap.checkout_inputs(path, "c") == (gitsnap.Checkout(), [no_checkout])
    inputs, notes = gitsnap.checkout_inputs(path)
    assert inputs == gitsnap.Checkout(fetch_depth=0, lfs=True, submodules="recursive")
    assert notes[0] == no_checkout
    assert notes[-1] == (
        "ciparity: warning: the jobs' checkout steps differ; the one snapshot serves them all"
        " with fetch-depth 0, lfs true, submodules recursive"
    )


def test_event_payload_agrees_with_the_snapshot() -> None:
    taken = gitsnap.Snapshot(
        Path("/s"), "refs/heads/main", "c" * 40, gitsnap.ZERO, "t" * 40, "team/edge"
    )
    push = gitsnap.event_payload(taken, "push")
    assert push is not None
    assert (push["ref"], push["after"], push["before"], push["created"]) == (
        "refs/heads/main",
        "c" * 40,
        gitsnap.ZERO,
        True,
    )
    assert push["deleted"] is False, "act takes `after` as github.sha only when deleted is false"
    assert push["head_commit"]["id"] == "c" * 40
    assert push["repository"]["full_name"] == "team/edge"
    assert gitsnap.event_payload(taken, "workflow_dispatch") == {
        "ref": "refs/heads/main",
        "inputs": {},
    }
    assert gitsnap.event_payload(taken, "pull_request") is None


def test_repository_slug() -> None:
    assert gitsnap.repository_slug("https://github.com/team/edge.git") == "team/edge"
    assert gitsnap.repository_slug("git@github.com:team/edge.git") == "team/edge"
    assert gitsnap.repository_slug("") == ""


def test_a_failing_git_step_is_one_line_and_leaves_nothing(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    git(small, "config", "filter.bad.clean", "false")
    git(small, "config", "filter.bad.required", "true")
    (small / ".gitattributes").write_text("a.txt filter=bad\n")
    (small / "a.txt").write_text("changed\n")
    with pytest.raises(CiparityError, match=r"^snapshot: git add -u failed: .*a\.txt"):
        gitsnap.take(small, tmp_path / "snap")
    assert not (tmp_path / "snap").exists() and list((tmp_path / "tmp").iterdir()) == []
    (tmp_path / "snap").mkdir()
    with pytest.raises(CiparityError, match="already exists"):
        gitsnap.take(small, tmp_path / "snap")


def test_an_interrupt_mid_snapshot_leaves_nothing(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    checkout = gitsnap._checkout

    def interrupted(*args: object) -> None:
        checkout(*args)  # type: ignore[arg-type]
        raise Interrupted(15)

    monkeypatch.setattr(gitsnap, "_checkout", interrupted)
    with pytest.raises(Interrupted):
        gitsnap.take(small, tmp_path / "snap")
    assert not (tmp_path / "snap").exists() and list((tmp_path / "tmp").iterdir()) == []


def test_a_checkout_naming_this_repository_is_its_own(small: Path, tmp_path: Path) -> None:
    git(small, "remote", "add", "origin", "git@github.com:Team/Small.git")
    path = tmp_path / "ci.yml"
    path.write_text(
        "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n"
        "        with: {repository: team/small, lfs: true}\n"
    )
    assert gitsnap.checkout_inputs(path, "a", small)[0] == gitsnap.Checkout(lfs=True)
    assert gitsnap.checkout_inputs(path, "a")[0] == gitsnap.Checkout(), "another repository"


def test_what_already_matched_still_does(small: Path, tmp_path: Path) -> None:
    """Symlinks, spaces and Unicode names, a staged rename, .gitkeep, a force-added ignored file
    and export-ignore (which only `git archive` reads) come out as a hosted checkout has them."""
    (small / "a b.txt").write_text("space\n")
    (small / "é.txt").write_text("unicode\n")
    os.symlink("a.txt", small / "link")
    (small / "empty").mkdir()
    (small / "empty" / ".gitkeep").write_text("")
    (small / ".gitignore").write_text("*.log\n")
    (small / "kept.log").write_text("forced\n")
    (small / ".gitattributes").write_text("a b.txt export-ignore\n")
    git(small, "add", "-A")
    git(small, "add", "-f", "kept.log")
    git(small, "commit", "-q", "-m", "more")
    git(small, "mv", "a.txt", "renamed.txt")
    os.symlink("renamed.txt", small / "link2")
    git(small, "add", "link2")
    taken = gitsnap.take(small, tmp_path / "snap")
    snap = tmp_path / "snap"
    assert (snap / "a b.txt").read_text() == "space\n"
    assert (snap / "é.txt").read_text() == "unicode\n"
    assert os.readlink(snap / "link") == "a.txt" and os.readlink(snap / "link2") == "renamed.txt"
    assert (snap / "renamed.txt").read_text() == "a\n" and not (snap / "a.txt").exists()
    assert (snap / "empty" / ".gitkeep").exists() and (snap / "kept.log").exists()
    assert taken.messages == ()


def test_a_racily_clean_edit_is_carried(small: Path, tmp_path: Path) -> None:
    """An edit of the same size in the same instant the index was written looks clean by stat;
    git rechecks such entries by the index file's mtime, which the snapshot must keep."""
    git(small, "config", "core.trustctime", "false")
    then = (int(time.time()) - 100) * 1_000_000_000
    os.utime(small / "a.txt", ns=(then, then))
    git(small, "add", "a.txt")  # the index records `then` and the real size: not racy
    (small / "a.txt").write_text("b\n")
    os.utime(small / "a.txt", ns=(then, then))
    os.utime(small / ".git" / "index", ns=(then, then))
    gitsnap.take(small, tmp_path / "snap")
    assert (tmp_path / "snap" / "a.txt").read_text() == "b\n"


def test_a_shallow_clone_snapshots_at_any_depth(small: Path, tmp_path: Path) -> None:
    git(small, "commit", "-q", "--allow-empty", "-m", "two")
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{small}", "shallow")
    (tmp_path / "shallow" / "a.txt").write_text("changed\n")
    for depth in (1, 0):
        snap = tmp_path / f"snap{depth}"
        gitsnap.take(tmp_path / "shallow", snap, checkout=gitsnap.Checkout(fetch_depth=depth))
        assert (snap / "a.txt").read_text() == "changed\n"
        assert git(snap, "rev-list", "--count", "HEAD") == str(2 - depth)
