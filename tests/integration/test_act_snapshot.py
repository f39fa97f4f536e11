"""`invoke act-ci` gives a job what a hosted actions/checkout gives for a push (issue 13): each
row of the issue's table is a line the job prints, checked against the hosted result."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from docker_helpers import FIXTURES, copy_fixture, invoke, managed

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


def _edge() -> ModuleType:
    if "edge_repo" not in sys.modules:
        spec = importlib.util.spec_from_file_location("edge_repo", FIXTURES / "edge_repo.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["edge_repo"] = module
        spec.loader.exec_module(module)
    return sys.modules["edge_repo"]


edge = _edge()


def _seen(stdout: str, job: str) -> list[str]:
    """The job's `see:` lines, as act-ci printed them."""
    return [
        line.split("see: ", 1)[1].rstrip()
        for line in stdout.splitlines()
        if line.startswith(f"[{job}]") and "see: " in line
    ]


def _left_behind(repo: Path, tmp: Path) -> None:
    assert managed(repo) == []
    assert list((repo / "reports" / ".act").iterdir()) == [], "a snapshot folder is left"
    assert list(tmp.iterdir()) == [], "a staging folder is left"


def test_the_job_sees_what_a_hosted_checkout_gives(shared_dir: Path) -> None:
    repo = copy_fixture("act_snapshot", shared_dir)
    edge.build(repo, edge.library(shared_dir / "src"))
    home = shared_dir / "home"
    tmp = shared_dir / "tmp"
    tmp.mkdir()
    env = {"GIT_CONFIG_GLOBAL": str(edge.hostile_config(home)), "TMPDIR": str(tmp)}
    head = edge.git(repo, "rev-parse", "HEAD")
    recorded = edge.git(repo, "rev-parse", "HEAD:lib")

    # On branch main, tracked changes uncommitted, --include-untracked, reports/ not ignored.
    done = invoke(["act-ci", "--verbose", "--job", "sees", "--include-untracked"], repo, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = _seen(done.stdout, "sees")
    sha = seen[5].split("sha=")[1].split()[0]
    assert sha != head, "the uncommitted changes make a commit on HEAD"
    assert seen == [
        "modes 644 mode.txt 755 run.sh",
        "crlf eol.txt=2 auto.txt=0",
        "secret.rot=uryyb big.bin=version https://git-lfs",
        "names auto.txt big.bin caf\\351.txt eol.txt lib mode.txt pyproject.toml run.sh secret.rot"
        " tasks.py untracked.txt",
        "lib 160000",
        f"ref=refs/heads/main name=main sha={sha} head={sha}",
        f"event ref=refs/heads/main after={sha}",
        "depth=1 reports=0",
    ]
    assert not (home / "hook-ran").exists(), "a hook of the user ran"
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warnings[0].endswith("left out, as a commit of your changes would leave them: gone.txt")
    assert "untracked files carried, which a push would not" in warnings[1]
    _left_behind(repo, tmp)

    # Detached at tag v1; the job asks for submodules, LFS and the whole history.
    edge.git(repo, "tag", "v1")
    edge.git(repo, "checkout", "-q", "--detach")
    done = invoke(["act-ci", "--verbose", "--job", "sees-all"], repo, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = _seen(done.stdout, "sees-all")
    sha = seen[5].split("sha=")[1].split()[0]
    assert seen[2] == "secret.rot=uryyb big.bin=large binary content"
    assert seen[4] == "lib 160000 .git .gitmodules deep lib.txt"
    assert seen[5:] == [
        f"ref=refs/tags/v1 name=v1 sha={sha} head={sha}",
        f"event ref=refs/tags/v1 after={sha}",
        "depth=3 reports=0",
    ]
    assert (
        "ciparity: 1 submodules populated from your local checkouts at their recorded commits"
        " (checkout: submodules: true)" in done.stderr
    )
    assert edge.git(repo, "rev-parse", "HEAD:lib") == recorded
    _left_behind(repo, tmp)


def test_an_unborn_branch_is_refused_in_one_line(shared_dir: Path) -> None:
    repo = copy_fixture("act_snapshot", shared_dir)
    edge.git(repo, "init", "-q", "-b", "work")
    edge.git(repo, "add", "-A")
    done = invoke(["act-ci", "--verbose", "--job", "sees"], repo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "ciparity: error: branch 'work' has no commit yet: a push would carry nothing"
        " (commit first)"
    ]
    assert managed(repo) == [] and list(repo.glob("reports/.act/*")) == []
