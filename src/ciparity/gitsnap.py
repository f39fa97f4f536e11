"""The snapshot `invoke act-ci` runs on: what a push would carry, checked out as a runner would.

Built with git's own machinery, never by copying files. The user's index and tracked changes go
through a temporary index (their clean filters and end-of-line settings apply, as to a commit)
into a staging repository that borrows the user's objects read-only; a commit is made from that
tree; a fresh repository fetches it and checks it out the way actions/checkout does, with none of
the user's git config: `.gitattributes` applies, the user's filters and `core.autocrlf` do not,
only the executable bit of a mode survives, LFS files stay pointers. act skips actions/checkout
for the repository itself, so the inputs it ignores (`fetch-depth`, `fetch-tags`, `submodules`,
`lfs`) are honoured here; `path`, `sparse-checkout` and `filter` are reported as not honoured.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ciparity import proc
from ciparity.errors import CiparityError, ConfigError

ZERO = "0" * 40
GITLINK = "160000"
MESSAGE = "ciparity act-ci snapshot: the working tree's tracked changes"
IDENTITY = {
    "GIT_AUTHOR_NAME": "ciparity",
    "GIT_AUTHOR_EMAIL": "ciparity@localhost",
    "GIT_COMMITTER_NAME": "ciparity",
    "GIT_COMMITTER_EMAIL": "ciparity@localhost",
}
# Settings that could sign, prompt, run hooks, start daemons or rewrite files behind our back;
# given on every command line, where they outrank any config file.
HARDENING = (
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "core.fsmonitor=false",
    "core.splitIndex=false",
    "core.safecrlf=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
)
# A runner's git: no attributes but the repository's, no line-ending conversion but theirs.
RUNNER = (*HARDENING, "core.autocrlf=false", "core.attributesFile=/dev/null")
# Kept from the caller's environment when reading the user's repository: where their config is.
USER_CONFIG_VARS = ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM")
LFS_POINTER = re.compile(
    rb"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\n"
)
LFS_SIZE = re.compile(rb"\nsize ([0-9]+)\n")


@dataclass(frozen=True)
class Checkout:
    """What the workflow's own actions/checkout steps ask of the workspace."""

    fetch_depth: int = 1
    fetch_tags: bool = False
    lfs: bool = False
    # "" (the gitlink and an empty folder), "true" or "recursive".
    submodules: str = ""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot and the push it stands for."""

    path: Path
    ref: str
    sha: str
    before: str
    tree: str
    repository: str
    untracked: tuple[str, ...] = ()
    # Whole lines for stderr: each dropped or invented thing, each input not honoured.
    messages: tuple[str, ...] = ()

    @property
    def ref_name(self) -> str:
        """GITHUB_REF_NAME: the branch or tag name."""
        return self.ref.split("/", 2)[2]


@dataclass
class _Notes:
    lines: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        self.lines.append(f"ciparity: warning: {text}")

    def say(self, text: str) -> None:
        self.lines.append(f"ciparity: {text}")


def show(path: bytes) -> str:
    """A path for a message: bytes that are not UTF-8 as escapes (never an encoding error)."""
    return path.decode("utf-8", "backslashreplace")


def _listing(paths: Sequence[bytes], limit: int = 10) -> str:
    shown = ", ".join(show(p) for p in paths[:limit])
    return shown + (" ..." if len(paths) > limit else "")


def _base_env() -> dict[str, str]:
    # A caller inside a git hook (pre-push) has GIT_DIR, GIT_INDEX_FILE... set for its own repo.
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def _user_env(stage: Path | None = None) -> dict[str, str]:
    """The user's git as they run it (their config decides what a commit stores), except that
    the index and new objects go to `stage`, never into their repository."""
    env = _base_env()
    env.update({k: os.environ[k] for k in USER_CONFIG_VARS if k in os.environ})
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_LITERAL_PATHSPECS="1")
    if stage is not None:
        env.update(
            GIT_INDEX_FILE=str(stage / "index"),
            GIT_OBJECT_DIRECTORY=str(stage / "repo.git" / "objects"),
        )
    return env


def _runner_env() -> dict[str, str]:
    """git as actions/checkout runs it on a fresh runner, without `lfs: true`: no global or
    system config at all, LFS smudging skipped."""
    env = _base_env()
    env.update(IDENTITY)
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_LITERAL_PATHSPECS="1",
        GIT_LFS_SKIP_SMUDGE="1",
    )
    return env


def _git(
    where: Path,
    *args: str,
    env: Mapping[str, str],
    settings: Sequence[str] = HARDENING,
    input: bytes | None = None,
    check: bool = True,
) -> proc.Result:
    argv = ["git"]
    for setting in settings:
        argv += ["-c", setting]
    result = proc.run([*argv, "-C", str(where), *args], env=env, input=input)
    if check and not result.ok:
        why = proc.reason(result.stderr or result.stdout)
        raise CiparityError(f"snapshot: git {' '.join(args[:2])} failed: {why}")
    return result


def _split(raw: bytes) -> list[bytes]:
    return [item for item in raw.split(b"\0") if item]


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    # A runner checks out with umask 022; the user's own (077, say) must not leak into modes.
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# ---- the ref a push would send ---------------------------------------------------------------


def _normalize_ref(root: Path, ref: str) -> str:
    env = _user_env()
    if ref.startswith("refs/"):
        if not ref.startswith(("refs/heads/", "refs/tags/")):
            raise ConfigError(f"--ref {ref!r}: a push sends refs/heads/NAME or refs/tags/NAME")
        full = ref
    else:
        tag = _git(root, "show-ref", "--verify", "-q", f"refs/tags/{ref}", env=env, check=False)
        branch = _git(root, "show-ref", "--verify", "-q", f"refs/heads/{ref}", env=env, check=False)
        full = f"refs/tags/{ref}" if tag.ok and not branch.ok else f"refs/heads/{ref}"
    valid = _git(root, "check-ref-format", full, env=env, check=False)
    if not valid.ok or full.count("/") < 2:
        raise ConfigError(f"--ref {ref!r} is not a valid ref name")
    return full


def push_ref(root: Path, override: str, notes: _Notes) -> str:
    """The ref a push from `root` would send: its branch; detached, the tag at HEAD or a branch
    holding HEAD (said in one line); `override` (--ref) wins. An unborn branch is refused."""
    env = _user_env()
    head = _git(root, "rev-parse", "-q", "--verify", "HEAD^{commit}", env=env, check=False)
    symbolic = _git(root, "symbolic-ref", "-q", "HEAD", env=env, check=False)
    if not head.ok:
        branch = symbolic.stdout.strip().removeprefix("refs/heads/") or "HEAD"
        raise CiparityError(
            f"branch {branch!r} has no commit yet: a push would carry nothing (commit first)"
        )
    if override:
        return _normalize_ref(root, override)
    if symbolic.ok:
        return symbolic.stdout.strip()
    short = head.stdout.strip()[:12]
    tags = _git(root, "tag", "--points-at", "HEAD", "--sort=-v:refname", env=env).stdout.split()
    if len(tags) == 1:
        return f"refs/tags/{tags[0]}"
    if tags:
        notes.warn(
            f"HEAD is detached at {short}, where tags {', '.join(tags)} point: ran as the tag"
            f" push of {tags[0]} (--ref chooses another)"
        )
        return f"refs/tags/{tags[0]}"
    holding = _git(
        root, "for-each-ref", "--contains", "HEAD", "--format=%(refname)", "refs/heads", env=env
    ).stdout.split()
    if not holding:
        raise CiparityError(
            f"HEAD is detached at {short} and no branch or tag holds it: a push needs a ref"
            " (pass --ref refs/heads/NAME or --ref refs/tags/NAME)"
        )
    notes.warn(
        f"HEAD is detached at {short} and no tag points at it: ran as a push of"
        f" {holding[0]}, a branch that holds it (--ref chooses another)"
    )
    return holding[0]


# ---- the tree: index plus tracked changes ------------------------------------------------------


def _git_path(root: Path, name: str) -> Path:
    found = _git(root, "rev-parse", "--path-format=absolute", "--git-path", name, env=_user_env())
    return Path(os.fsdecode(found.raw.rstrip(b"\n")))


def _under(path: bytes, prefixes: Sequence[bytes]) -> bool:
    return any(path == p or path.startswith(p + b"/") for p in prefixes)


def _tree(
    root: Path, stage: Path, exclude: Sequence[bytes], include_untracked: bool, notes: _Notes
) -> tuple[str, list[bytes]]:
    """The tree a `git add -u && git commit` would record (reports/ never part of it); returns
    it with the untracked files."""
    env = _user_env(stage)
    index = _git_path(root, "index")
    if index.is_file():
        # The user's index as it stands: staged files, renames, intent-to-add, stat data; with
        # its mtime, by which git tells a racily clean entry (edited in the same second).
        shutil.copy2(index, stage / "index")
    else:
        _git(root, "read-tree", "HEAD", env=env)
    unmerged = sorted({line.split(b"\t", 1)[-1] for line in _split(_ls(root, env, "-u"))})
    if unmerged:
        raise CiparityError(
            f"{len(unmerged)} paths are unmerged (resolve the merge first): {_listing(unmerged)}"
        )
    deleted = _split(_git(root, "diff-files", "-z", "--name-only", "--diff-filter=D", env=env).raw)
    deleted = [p for p in deleted if not _under(p, exclude)]
    if deleted:
        notes.warn(
            f"{len(deleted)} tracked files deleted in the working tree are left out, as a commit"
            f" of your changes would leave them: {_listing(deleted)}"
        )
    _git(root, "add", "-u", env=env)
    # What `add -u` cannot record: a submodule's own uncommitted changes.
    links = {path for path, _sha in _index_gitlinks(_ls(root, env, "-s"))}
    changed = _git(
        root, "diff-files", "-z", "--name-only", "--ignore-submodules=untracked", env=env
    )
    dirty = [p for p in _split(changed.raw) if p in links]
    if dirty:
        notes.warn(
            f"{len(dirty)} submodules have uncommitted changes, left out (a push carries their"
            f" recorded commit only): {_listing(dirty)}"
        )
    for prefix in exclude:
        dropped = _split(_ls(root, env, "--cached", "--", os.fsdecode(prefix)))
        if dropped:
            _git(root, "rm", "-r", "-q", "--cached", "--", os.fsdecode(prefix), env=env)
            notes.warn(
                f"{len(dropped)} tracked files under {show(prefix)}/ are left out: that is where"
                " ciparity writes reports"
            )
    untracked = [
        p
        for p in _split(_ls(root, env, "--others", "--exclude-standard"))
        if not _under(p.rstrip(b"/"), exclude)
    ]
    if untracked and include_untracked:
        _git(
            root,
            "add",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            env=env,
            input=b"\0".join(untracked) + b"\0",
        )
        notes.warn(
            f"{len(untracked)} untracked files carried, which a push would not"
            f" (--include-untracked): {_listing(untracked)}"
        )
    elif untracked:
        notes.warn(
            f"{len(untracked)} untracked files left out, as a push would leave them"
            f" (--include-untracked adds them): {_listing(untracked)}"
        )
    tree = _git(root, "write-tree", env=env).stdout.strip()
    return tree, untracked


def _ls(root: Path, env: Mapping[str, str], *args: str) -> bytes:
    return _git(root, "ls-files", "-z", *args, env=env).raw


# ---- the commit, in a staging repository that borrows the user's objects ---------------------


def _stage_repo(root: Path, stage: Path) -> Path:
    repo = stage / "repo.git"
    _git(stage, "init", "-q", "--bare", "--template=", str(repo), env=_runner_env())
    objects = _git_path(root, "objects")
    # Read-only borrowing: new objects land in the stage, the user's store is only read.
    (repo / "objects" / "info" / "alternates").write_bytes(os.fsencode(objects) + b"\n")
    shallow = _git_path(root, "shallow")
    if shallow.is_file():
        # A shallow clone's history ends where its own does.
        shutil.copyfile(shallow, repo / "shallow")
    return repo


def _commit(root: Path, repo: Path, tree: str) -> str:
    """HEAD itself when the tree is HEAD's (the sha a push would send), else a commit on it."""
    env = _user_env()
    head = _git(root, "rev-parse", "HEAD", env=env).stdout.strip()
    if _git(root, "rev-parse", "HEAD^{tree}", env=env).stdout.strip() == tree:
        return head
    made = _git(
        repo, "commit-tree", "--no-gpg-sign", "-p", head, "-m", MESSAGE, tree, env=_runner_env()
    )
    return made.stdout.strip()


def _stage_refs(root: Path, repo: Path, ref: str, sha: str, everything: bool) -> None:
    refs = {}
    if everything:
        # fetch-depth 0 brings every branch and tag, as the remote has them (ours: the user's).
        listing = _git(
            root,
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
            env=_user_env(),
        )
        for line in listing.stdout.splitlines():
            obj, name = line.split(" ", 1)
            refs[name] = obj
    refs[ref] = sha
    lines = "".join(f"update {name} {obj}\n" for name, obj in refs.items())
    _git(repo, "update-ref", "--stdin", env=_runner_env(), input=lines.encode())


def _origin(root: Path) -> str:
    found = _git(root, "remote", "get-url", "origin", env=_user_env(), check=False)
    return found.stdout.strip() if found.ok else ""


def repository_slug(url: str) -> str:
    """owner/name from a remote URL, as act reads it; "" when it has no such form."""
    match = re.search(r"[:/]([^/:]+)/([^/]+?)(?:\.git)?/?$", url)
    return f"{match.group(1)}/{match.group(2)}" if match else ""


def _before(root: Path, ref: str) -> str:
    """What the remote had for `ref` before this push: its remote-tracking tip, else zeros."""
    if not ref.startswith("refs/heads/"):
        return ZERO
    tracking = "refs/remotes/origin/" + ref.removeprefix("refs/heads/")
    found = _git(root, "rev-parse", "-q", "--verify", tracking, env=_user_env(), check=False)
    return found.stdout.strip() if found.ok else ZERO


# ---- the checkout, as actions/checkout makes it ----------------------------------------------


def _checkout(dest: Path, repo: Path, ref: str, origin: str, inputs: Checkout) -> None:
    env = _runner_env()
    dest.mkdir(parents=True, mode=0o755)
    _git(dest, "init", "-q", "--template=", env=env, settings=RUNNER)
    if origin:
        _git(dest, "remote", "add", "origin", origin, env=env, settings=RUNNER)
    branch = ref.removeprefix("refs/heads/")
    wanted = (
        f"+{ref}:refs/remotes/origin/{branch}" if ref.startswith("refs/heads/") else f"+{ref}:{ref}"
    )
    fetch = ["fetch", "-q", "--prune", "--no-recurse-submodules", "--update-shallow"]
    if inputs.fetch_depth > 0:
        fetch += [f"--depth={inputs.fetch_depth}"] + ([] if inputs.fetch_tags else ["--no-tags"])
        refspecs = [wanted]
    else:
        refspecs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*", wanted]
    _git(dest, *fetch, str(repo), *refspecs, env=env, settings=RUNNER)
    if ref.startswith("refs/heads/"):
        _git(
            dest,
            "checkout",
            "-q",
            "--force",
            "-B",
            branch,
            f"refs/remotes/origin/{branch}",
            env=env,
            settings=RUNNER,
        )
    else:
        _git(dest, "checkout", "-q", "--force", ref, env=env, settings=RUNNER)


def _gitlinks(repo: Path) -> list[tuple[bytes, str]]:
    return _index_gitlinks(
        _git(repo, "ls-files", "-s", "-z", env=_runner_env(), settings=RUNNER).raw
    )


def _index_gitlinks(listing: bytes) -> list[tuple[bytes, str]]:
    """(path, commit) of each submodule in `ls-files -s -z` output."""
    links = []
    for entry in _split(listing):
        meta, path = entry.split(b"\t", 1)
        mode, sha, _stage = meta.split(b" ")
        if mode.decode() == GITLINK:
            links.append((path, sha.decode()))
    return links


def _submodule_names(repo: Path) -> dict[bytes, str]:
    if not (repo / ".gitmodules").is_file():
        return {}
    found = _git(
        repo,
        "config",
        "-f",
        ".gitmodules",
        "-z",
        "--get-regexp",
        r"^submodule\..*\.path$",
        env=_runner_env(),
        settings=RUNNER,
        check=False,
    )
    names = {}
    for entry in _split(found.raw):
        key, _, path = entry.partition(b"\n")
        names[path] = key.decode("utf-8", "surrogateescape")[len("submodule.") : -len(".path")]
    return names


def _populate(source: Path, repo: Path, recursive: bool, notes: _Notes, where: bytes = b"") -> int:
    """Fill `repo`'s submodules from the user's checkouts of them under `source`, each at its
    recorded commit, as `git submodule update --init` would from the remote. Returns the count."""
    env = _runner_env()
    names = _submodule_names(repo)
    done = 0
    for path, sha in _gitlinks(repo):
        shown = show(where + path)
        name = names.get(path)
        local = source / os.fsdecode(path)
        has = _git(local, "cat-file", "-e", f"{sha}^{{commit}}", env=_user_env(), check=False)
        if name is None or not (local / ".git").exists() or not has.ok:
            why = "not in .gitmodules" if name is None else f"no local checkout holds {sha[:12]}"
            notes.warn(f"submodule {shown} left empty: {why}")
            continue
        key = f"submodule.{name}.url"
        _git(repo, "submodule", "init", "--", os.fsdecode(path), env=env, settings=RUNNER)
        url = _git(
            repo, "config", "--get", key, env=env, settings=RUNNER, check=False
        ).stdout.strip()
        # A file:// URL: git copies objects instead of hard-linking the user's (act chowns them).
        url_path = urllib.parse.quote(os.fsencode(local.resolve()), safe="/")
        _git(repo, "config", key, f"file://{url_path}", env=env, settings=RUNNER)
        _git(
            repo,
            "submodule",
            "update",
            "-q",
            "--force",
            "--",
            os.fsdecode(path),
            env=env,
            settings=(*RUNNER, "protocol.file.allow=always"),
        )
        _git(repo, "config", key, url, env=env, settings=RUNNER)
        inner = repo / os.fsdecode(path)
        _git(inner, "remote", "set-url", "origin", url, env=env, settings=RUNNER)
        done += 1
        if recursive:
            done += _populate(local, inner, recursive, notes, where + path + b"/")
    return done


def _smudge_lfs(root: Path, dest: Path, notes: _Notes) -> int:
    """Replace LFS pointers by their content from the user's local LFS store (what `lfs: true`
    downloads); returns how many. The runner image has no git-lfs, so this is done here."""
    env = _runner_env()
    files = _split(_git(dest, "ls-files", "-z", env=env, settings=RUNNER).raw)
    attrs = _git(
        dest,
        "check-attr",
        "-z",
        "--stdin",
        "filter",
        env=env,
        settings=RUNNER,
        input=b"".join(f + b"\0" for f in files),
    ).raw.split(b"\0")
    store = _git_path(root, "lfs") / "objects"
    missing: list[bytes] = []
    done = 0
    for i in range(0, len(attrs) - 2, 3):
        path, value = attrs[i], attrs[i + 2]
        target = dest / os.fsdecode(path)
        if value != b"lfs" or target.is_symlink() or not target.is_file():
            continue
        pointer = target.read_bytes()
        oid, size = LFS_POINTER.match(pointer), LFS_SIZE.search(pointer)
        if oid is None or size is None:
            continue
        digest = oid.group(1).decode()
        stored = store / digest[:2] / digest[2:4] / digest
        content = stored.read_bytes() if stored.is_file() else b""
        if len(content) != int(size.group(1)) or hashlib.sha256(content).hexdigest() != digest:
            missing.append(path)
            continue
        target.write_bytes(content)
        done += 1
    if missing:
        notes.warn(
            f"{len(missing)} LFS files are not in your local LFS store (git lfs fetch): left as"
            f" pointers: {_listing(missing)}"
        )
    return done


# ---- the whole snapshot -----------------------------------------------------------------------


def take(
    root: Path,
    dest: Path,
    *,
    include_untracked: bool = False,
    ref: str = "",
    checkout: Checkout | None = None,
    exclude: Sequence[str] = ("reports",),
) -> Snapshot:
    """Write into `dest` the repository a runner's actions/checkout would make of a push from
    `root` (its tracked changes committed on HEAD); `exclude` (relative paths) is never part of
    it. Nothing of `root` is written; on any error `dest` does not exist afterwards."""
    inside = _git(root, "rev-parse", "--show-toplevel", env=_user_env(), check=False)
    if not inside.ok:
        raise CiparityError(f"{root} is not a git checkout: {proc.reason(inside.stderr)}")
    if dest.exists():
        raise CiparityError(f"snapshot: {dest} already exists")
    checkout = checkout or Checkout()
    notes = _Notes()
    full_ref = push_ref(root, ref, notes)
    prefixes = [os.fsencode(p).strip(b"/") for p in exclude if p.strip("/")]
    try:
        with _umask(0o022), tempfile.TemporaryDirectory(prefix="ciparity-stage-") as tmp:
            stage = Path(tmp)
            repo = _stage_repo(root, stage)
            tree, untracked = _tree(root, stage, prefixes, include_untracked, notes)
            sha = _commit(root, repo, tree)
            _stage_refs(root, repo, full_ref, sha, checkout.fetch_depth <= 0 or checkout.fetch_tags)
            origin = _origin(root)
            _checkout(dest, repo, full_ref, origin, checkout)
            if checkout.submodules:
                count = _populate(root, dest, checkout.submodules == "recursive", notes)
                if count:
                    notes.say(
                        f"{count} submodules populated from your local checkouts at their"
                        f" recorded commits (checkout: submodules: {checkout.submodules})"
                    )
            if checkout.lfs:
                count = _smudge_lfs(root, dest, notes)
                if count:
                    notes.say(f"{count} LFS files filled from your local LFS store (lfs: true)")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return Snapshot(
        path=dest,
        ref=full_ref,
        sha=sha,
        before=_before(root, full_ref),
        tree=tree,
        repository=repository_slug(origin),
        untracked=tuple(show(p) for p in untracked),
        messages=tuple(notes.lines),
    )


# ---- what the workflow's checkout steps ask ---------------------------------------------------

NOT_HONOURED = {
    "path": "act runs every job in the repository's root",
    "sparse-checkout": "the snapshot is a full checkout",
    "filter": "the snapshot fetches every object",
}


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def checkout_inputs(
    workflow: Path, job: str = "", root: Path | None = None
) -> tuple[Checkout, list[str]]:
    """The merged inputs of the workflow's own actions/checkout steps (of `job`, or every job),
    and one line for each input the snapshot cannot honour. A step's `repository:` is this
    repository when it names `github.repository` or the owner/name of `root`'s origin."""
    own_slug = repository_slug(_origin(root)).lower() if root is not None else ""
    data = yaml.safe_load(workflow.read_text(encoding="utf-8")) or {}
    jobs = data.get("jobs") or {}
    steps: list[dict[str, Any]] = []
    missing: list[str] = []
    for name, body in jobs.items():
        if job and str(name) != job or not isinstance(body, dict):
            continue
        if "steps" not in body:
            continue  # a job that calls a reusable workflow
        own = 0
        for step in body.get("steps") or []:
            uses = str(step.get("uses", "")) if isinstance(step, dict) else ""
            if uses.split("@")[0].lower() != "actions/checkout":
                continue
            inputs = step.get("with") if isinstance(step.get("with"), dict) else {}
            other = str(inputs.get("repository", "${{ github.repository }}"))
            if "github.repository" in other.replace(" ", "") or other.lower() == own_slug:
                steps.append({str(k): v for k, v in inputs.items()})
                own += 1
        if not own:
            missing.append(str(name))
    notes = _Notes()
    if missing:
        notes.warn(
            f"jobs {', '.join(missing)} have no actions/checkout step: on GitHub they start in an"
            " empty workspace, under act-ci they see the snapshot"
        )
    wanted: set[Checkout] = set()
    for inputs in steps:
        for key, why in NOT_HONOURED.items():
            if inputs.get(key) not in (None, ""):
                notes.warn(f"checkout {key}: {inputs[key]!r} is not honoured: {why}")
        for key in ("fetch-depth", "fetch-tags", "lfs", "submodules"):
            if "${{" in str(inputs.get(key, "")):
                notes.warn(f"checkout {key}: {inputs[key]!r} cannot be evaluated: default used")
                inputs.pop(key)
        depth = str(inputs.get("fetch-depth", "1")).strip()
        submodules = str(inputs.get("submodules", "false")).strip().lower()
        wanted.add(
            Checkout(
                fetch_depth=int(depth) if depth.isdigit() else 1,
                fetch_tags=_flag(inputs.get("fetch-tags")),
                lfs=_flag(inputs.get("lfs")),
                submodules=submodules if submodules in ("true", "recursive") else "",
            )
        )
    if not wanted:
        return Checkout(), notes.lines
    depths = {c.fetch_depth for c in wanted}
    merged = Checkout(
        fetch_depth=0 if 0 in depths else max(depths),
        fetch_tags=any(c.fetch_tags for c in wanted),
        lfs=any(c.lfs for c in wanted),
        submodules=max((c.submodules for c in wanted), key=("", "true", "recursive").index),
    )
    if len(wanted) > 1:
        notes.warn(
            "the jobs' checkout steps differ; the one snapshot serves them all with"
            f" fetch-depth {merged.fetch_depth}, lfs {str(merged.lfs).lower()},"
            f" submodules {merged.submodules or 'false'}"
        )
    return merged, notes.lines


def event_payload(snap: Snapshot, event: str) -> dict[str, Any] | None:
    """The event act reads (`-e`) so that github.ref, github.sha and github.event tell the same
    story as the checkout; None for events whose ref is not the push's."""
    if event == "workflow_dispatch":
        return {"ref": snap.ref, "inputs": {}}
    if event != "push":
        return None
    owner, _, name = snap.repository.partition("/")
    payload: dict[str, Any] = {
        "ref": snap.ref,
        "before": snap.before,
        "after": snap.sha,
        "created": snap.before == ZERO,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "head_commit": {"id": snap.sha, "tree_id": snap.tree},
    }
    if name:
        payload["repository"] = {
            "name": name,
            "full_name": snap.repository,
            "owner": {"login": owner, "name": owner},
        }
    return payload
