"""The action mirror: the real code of the remote actions a repository's workflows use, offline.

A mirror is a folder of bare git repositories, `OWNER/REPO.git`, the form `git clone --mirror`
makes. `invoke actions-sync` fills it (online) for every `uses:` the workflows and the local
composite actions name. `invoke act-ci` extracts each action's tree at its ref into the run's
temp folder and hands it to act (`--local-repository OWNER/REPO@REF=DIR`), so the real JavaScript
or composite action runs in the job. An action the mirror lacks, offline, is replaced by a
stand-in that says so in the job's log and lets the rest of the job run (`--strict`: it fails).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import sys
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ciparity import act_plan, proc
from ciparity.config import Config
from ciparity.errors import CiparityError, ConfigError

# act never fetches actions/checkout for the workflow's own repository: it copies the snapshot.
CHECKOUT = "actions/checkout"
ACTION_FILES = ("action.yml", "action.yaml")
# The title of the stand-in's workflow command, by which the job table finds skipped steps.
SKIP_TITLE = "ciparity-skip"
STRICT = " (--strict)"
_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Seconds a remote may take to answer `git ls-remote` before it counts as unreachable.
PROBE_TIMEOUT = 15.0
FETCH_TIMEOUT = 600.0
# Where act itself fetches an action it is not handed (its default GitHub instance).
ACT_SOURCE = "https://github.com"


@dataclass(frozen=True, order=True)
class Uses:
    """One remote action reference: `OWNER/REPO[/PATH]@REF`."""

    repo: str
    path: str
    ref: str

    @property
    def text(self) -> str:
        """The reference as a workflow spells it."""
        name = f"{self.repo}/{self.path}" if self.path else self.repo
        return f"{name}@{self.ref}"

    @property
    def key(self) -> str:
        """act's `--local-repository` key: the repository and ref, without the sub-path."""
        return f"{self.repo}@{self.ref}"

    @property
    def is_sha(self) -> bool:
        return bool(_SHA.match(self.ref))


def parse_uses(text: str, where: str) -> Uses | None:
    """The remote action a `uses:` value names; None for local (`./`), `docker://` and
    expression values. A malformed value or one without a ref is a ConfigError naming `where`."""
    value = text.strip()
    if value.startswith(("./", "../", "docker://")) or "${{" in value:
        return None
    name, at, ref = value.partition("@")
    if not at or not ref.strip():
        raise ConfigError(
            f"{where}: uses: {value} has no ref: write {name}@TAG, a branch or a full commit SHA"
        )
    parts = name.split("/")
    if len(parts) < 2 or not all(_NAME.match(part) for part in parts) or " " in ref:
        raise ConfigError(f"{where}: uses: {value} is not of the form OWNER/REPO[/PATH]@REF")
    return Uses("/".join(parts[:2]), "/".join(parts[2:]), ref)


def _load(path: Path, text: str | None = None) -> yaml.Node | None:
    try:
        source = path.read_text(encoding="utf-8") if text is None else text
        return yaml.compose(source)
    except yaml.YAMLError as exc:
        raise act_plan.malformed_yaml(path, exc) from exc


def _step_uses(node: yaml.Node | None) -> Iterator[tuple[str, int]]:
    """(value, line) of every `uses:` of a step, anywhere below `node` (workflow jobs' `steps`
    and composite actions' `runs.steps`)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "steps" and isinstance(value, yaml.SequenceNode):
                for item in value.value:
                    if isinstance(item, yaml.MappingNode):
                        for k, v in item.value:
                            if getattr(k, "value", None) == "uses" and isinstance(
                                v, yaml.ScalarNode
                            ):
                                yield str(v.value), v.start_mark.line + 1
            else:
                yield from _step_uses(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _step_uses(item)


def _job_uses(node: yaml.Node | None) -> Iterator[str]:
    """The `uses:` of a workflow's jobs (reusable workflows)."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key, jobs in node.value:
        if getattr(key, "value", None) == "jobs" and isinstance(jobs, yaml.MappingNode):
            for _, job in jobs.value:
                if isinstance(job, yaml.MappingNode):
                    for k, v in job.value:
                        if getattr(k, "value", None) == "uses" and isinstance(v, yaml.ScalarNode):
                            yield str(v.value)


def uses_in(path: Path, text: str | None = None, label: str = "") -> list[tuple[str, str]]:
    """(value, `file:line`) of each step `uses:` in one workflow or action file."""
    shown = label or str(path)
    return [(value, f"{shown}:{line}") for value, line in _step_uses(_load(path, text))]


def _local(root: Path, value: str) -> Path | None:
    """The file a local `uses: ./PATH` names: an action's action.yml, or a reusable workflow."""
    target = (root / value).resolve()
    if not target.is_relative_to(root.resolve()):
        return None
    if target.is_file():
        return target
    for name in ACTION_FILES:
        if (target / name).is_file():
            return target / name
    return None


def find_uses(root: Path, workflows: Sequence[Path] | None = None) -> dict[Uses, str]:
    """Every remote action that `workflows` (default: all of them, and every action.yml under
    .github) and the local actions and reusable workflows they use name, with where each is
    first named. Remote reusable workflows are act's to fetch."""
    github = root / ".github"
    if workflows is None:
        queue = sorted((github / "workflows").glob("*.y*ml"))
        queue += sorted(p for p in github.rglob("*") if p.name in ACTION_FILES)
    else:
        queue = list(workflows)
    seen: set[Path] = set()
    found: dict[Uses, str] = {}
    while queue:
        path = queue.pop(0).resolve()
        if path in seen:
            continue
        seen.add(path)
        label = str(path.relative_to(root.resolve()))
        for value in _job_uses(_load(path)):
            local = _local(root, value.strip()) if value.strip().startswith("./") else None
            if local is not None:
                queue.append(local)
        for value, where in uses_in(path, label=label):
            if value.strip().startswith("./"):
                local = _local(root, value.strip())
                if local is not None:
                    queue.append(local)
                continue
            uses = parse_uses(value, where)
            if uses is not None:
                found.setdefault(uses, where)
    return found


def mirror_dir(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """The action mirror's folder: `actions_mirror`, else the user's cache folder."""
    env = os.environ if environ is None else environ
    if config.actions_mirror:
        path = Path(config.actions_mirror).expanduser()
        return path if path.is_absolute() else config.root / path
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(cache) / "ciparity" / "actions"


def _git(git_dir: Path, *args: str, timeout: float | None = 60.0) -> proc.Result:
    # The mirror may belong to another user (a shared cache); reading it is still safe.
    base = ["git", "-c", f"safe.directory={git_dir}", "--git-dir", str(git_dir)]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return proc.run([*base, *args], env=env, timeout=timeout)


def repo_dir(mirror: Path, repo: str) -> Path:
    """Where the bare mirror of `owner/repo` lives."""
    return mirror / f"{repo}.git"


def check_mirror_root(mirror: Path) -> None:
    """The mirror path, if it exists, must be a folder."""
    if mirror.exists() and not mirror.is_dir():
        raise ConfigError(f"action mirror {mirror} is not a folder (setting actions_mirror)")


def check_mirror(git_dir: Path) -> None:
    """An existing `OWNER/REPO.git` must be a bare git repository, as `git clone --mirror`
    makes; anything else is the user's and is never touched."""
    result = _git(git_dir, "rev-parse", "--is-bare-repository")
    if not git_dir.is_dir() or result.stdout.strip() != "true":
        raise ConfigError(
            f"{git_dir} is not a git mirror (a bare repository, as `git clone --mirror` makes):"
            " move it away, then run `invoke actions-sync`"
        )


def commit_of(git_dir: Path, ref: str) -> str | None:
    """The commit `ref` (a tag, a branch or a full SHA) names in the mirror, if it has it."""
    names = [ref] if _SHA.match(ref) else [f"refs/tags/{ref}", f"refs/heads/{ref}"]
    for name in names:
        result = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
        if result.ok and result.stdout.strip():
            return result.stdout.strip()
    return None


def extract(git_dir: Path, commit: str, dest: Path) -> None:
    """The tree of `commit` into `dest` (what GitHub's tarball of that commit holds)."""
    result = _git(git_dir, "archive", "--format=tar", commit)
    if not result.ok:
        raise CiparityError(f"cannot read {commit} from {git_dir}: {proc.reason(result.stderr)}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(result.raw)) as archive:
        archive.extractall(dest, filter="data")


def action_yaml(git_dir: Path, commit: str, path: str) -> tuple[str, str] | None:
    """(file name, text) of the action.yml at `path` in `commit`, or None if there is none."""
    for name in ACTION_FILES:
        spec = f"{commit}:{path}/{name}" if path else f"{commit}:{name}"
        result = _git(git_dir, "show", spec)
        if result.ok:
            return name, result.stdout
    return None


def _nested(git_dir: Path, commit: str, uses: Uses) -> list[Uses]:
    """The remote actions a composite action in the mirror uses in turn."""
    found = action_yaml(git_dir, commit, uses.path)
    if found is None:
        return []
    label = f"{uses.text} {found[0]}"
    nested = []
    for value, where in uses_in(Path(found[0]), found[1], label):
        inner = parse_uses(value, where)
        if inner is not None:
            nested.append(inner)
    return nested


def stand_in(uses: Uses, strict: bool) -> str:
    """A composite action standing in for `uses`, which is not available offline: it says so in
    the job's log and succeeds, or with `strict` fails the step."""
    what = f"{uses.text} not available offline"
    if strict:
        line = f"::error title={SKIP_TITLE}::{what} (--strict; `invoke actions-sync` fetches it)"
        run = f"echo {shlex.quote(line)}\nexit 1\n"
    else:
        run = f"echo {shlex.quote(f'::warning title={SKIP_TITLE}::{what}')}\n"
    doc = {
        "name": f"{uses.text} (stand-in)",
        "description": "Stands in under invoke act-ci for an action the action mirror lacks",
        "runs": {
            "using": "composite",
            "steps": [{"name": f"skipped: {what}", "shell": "bash", "run": run}],
        },
    }
    # JSON is YAML, and quotes every value: nothing in it reads as an expression or a tag.
    return json.dumps(doc, indent=2) + "\n"


@dataclass(frozen=True)
class Prepared:
    """What act-ci hands act for the remote actions of a run."""

    flags: tuple[str, ...] = ()
    real: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    fetched_by_act: tuple[str, ...] = ()


@dataclass
class _Plan:
    folders: dict[str, Path] = field(default_factory=dict)
    real: list[str] = field(default_factory=list)
    missing: list[Uses] = field(default_factory=list)


def _dir_name(uses: Uses) -> str:
    return f"{uses.repo.replace('/', '__')}@{uses.ref[:40]}"


def prepare(
    config: Config,
    root: Path,
    dest: Path,
    strict: bool = False,
    online: bool | None = None,
    workflows: Sequence[Path] | None = None,
    substitutes: Mapping[str, Path] | None = None,
) -> Prepared:
    """Resolve every remote action of the checkout at `root` (the run's snapshot) against the
    mirror (only those `workflows` need, if given), and lay out under `dest` what act gets.

    Found: the real tree, extracted under `dest`. Not found: a folder `substitutes` names for
    its `OWNER/REPO@REF` (act-ci's own local double), else online, act fetches it as usual;
    offline, a stand-in (one warning line each, before any job starts). `online` None means
    decided by `is_online`.
    """
    mirror = mirror_dir(config)
    check_mirror_root(mirror)
    plan = _Plan()
    queue = list(find_uses(root, workflows).items())
    done: set[Uses] = set()
    while queue:
        uses, where = queue.pop(0)
        if uses in done:
            continue
        done.add(uses)
        git_dir = repo_dir(mirror, uses.repo)
        commit = None
        if git_dir.exists():
            check_mirror(git_dir)
            commit = commit_of(git_dir, uses.ref)
        if commit is None:
            if substitutes and uses.key in substitutes:
                plan.folders.setdefault(uses.key, substitutes[uses.key])
                proc.eprint(
                    f"ciparity: {uses.text} is not in the action mirror: a local double runs"
                )
            elif uses.repo != CHECKOUT:
                plan.missing.append(uses)
            continue
        folder = dest / _dir_name(uses)
        if uses.key not in plan.folders:
            extract(git_dir, commit, folder)
            plan.folders[uses.key] = folder
        if uses.path and not any((folder / uses.path / n).is_file() for n in ACTION_FILES):
            raise ConfigError(
                f"{where}: {uses.text}: the mirror's {uses.repo}@{uses.ref} has no action at"
                f" {uses.path}"
            )
        plan.real.append(uses.text)
        queue += [(inner, uses.text) for inner in _nested(git_dir, commit, uses)]
    return _finish(config, mirror, dest, plan, strict, online)


def _finish(
    config: Config, mirror: Path, dest: Path, plan: _Plan, strict: bool, online: bool | None
) -> Prepared:
    fetched: list[str] = []
    if plan.missing:
        if online is None:
            online = is_online(config, plan.missing[0].repo)
        lacking = [u for u in plan.missing if repo_dir(mirror, u.repo).exists()]
        if lacking and not online:
            u = lacking[0]
            raise ConfigError(
                f"{u.text}: the action mirror's {repo_dir(mirror, u.repo)} has no ref {u.ref}:"
                " run `invoke actions-sync`"
            )
        for uses in plan.missing:
            if online:
                fetched.append(uses.text)
                proc.eprint(f"ciparity: {uses.text} is not in the action mirror: act fetches it")
                continue
            folder = plan.folders.setdefault(uses.key, dest / f"{_dir_name(uses)}-standin")
            action = folder / uses.path if uses.path else folder
            action.mkdir(parents=True, exist_ok=True)
            (action / "action.yml").write_text(stand_in(uses, strict), encoding="utf-8")
            outcome = "fail (--strict)" if strict else "are skipped"
            proc.eprint(
                f"ciparity: warning: {uses.text} is not available offline (not in the action"
                f" mirror {mirror}): its steps {outcome}; `invoke actions-sync` fetches it"
            )
    flags: list[str] = []
    for key, folder in plan.folders.items():
        flags += ["--local-repository", f"{key}={folder}"]
    return Prepared(
        tuple(flags),
        tuple(plan.real),
        tuple(u.text for u in plan.missing if not online),
        tuple(fetched),
    )


def actions_url(config: Config) -> str:
    """The base URL actions are synced from, without a trailing slash."""
    return config.actions_url.rstrip("/")


def remote_url(config: Config, repo: str) -> str:
    """Where `owner/repo` is fetched from: `{actions_url}/owner/repo.git`."""
    return f"{actions_url(config)}/{repo}.git"


def is_online(config: Config, repo: str) -> bool:
    """Whether act can fetch `repo`, an action the mirror lacks: the `offline` setting; `auto`
    asks where act fetches from (GitHub), only when something is missing, so a complete mirror
    costs no network."""
    if config.offline != "auto":
        return config.offline == "off"
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        result = proc.run(
            ["git", "ls-remote", f"{ACT_SOURCE}/{repo}.git", "HEAD"],
            env=env,
            timeout=PROBE_TIMEOUT,
        )
    except CiparityError:
        return False
    return result.ok


def skipped_steps(lines: Iterable[str]) -> dict[str, list[str]]:
    """Per job run (act's `job`: one matrix entry), the stand-ins that ran, from act's `--json`
    log: `X not available offline`, with ` (--strict)` where the stand-in failed its step."""
    skipped: dict[str, list[str]] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("command") not in ("warning", "error"):
            continue
        pairs = entry.get("kvPairs")
        if isinstance(pairs, dict) and pairs.get("title") == SKIP_TITLE and entry.get("jobID"):
            what = str(entry.get("arg", "")).split(" (--strict", 1)[0].strip()
            if entry["command"] == "error":
                what += STRICT
            # act's `job` names one matrix entry; the jobID is shared by all of a job's entries.
            key = str(entry.get("job") or entry["jobID"]).strip()
            skipped.setdefault(key, []).append(what)
    return skipped


def skip_note(skipped: Sequence[str]) -> str:
    """For the job table: `1 step skipped: X not available offline`, and under --strict
    `1 step failed: X not available offline (--strict)`."""
    notes = []
    for verb, items in (
        ("skipped", [s for s in skipped if not s.endswith(STRICT)]),
        ("failed", [s for s in skipped if s.endswith(STRICT)]),
    ):
        if items:
            steps = "step" if len(items) == 1 else "steps"
            notes.append(f"{len(items)} {steps} {verb}: {', '.join(items)}")
    return "; ".join(notes)


# --- invoke actions-sync -------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """What `invoke actions-sync` did: one line per repository, and the errors."""

    lines: tuple[str, ...]
    errors: tuple[str, ...]


def sync(config: Config) -> SyncResult:
    """Fetch every remote action the checkout names into the mirror, from `actions_url`.

    New repositories are fetched into a temporary folder and renamed into place, so a failure
    leaves nothing half-written; existing mirrors are updated. Composite actions' own remote
    actions are followed. Errors are collected, one line each.
    """
    mirror = mirror_dir(config)
    check_mirror_root(mirror)
    queue = list(find_uses(config.root).items())
    lines: list[str] = []
    errors: list[str] = []
    synced: dict[str, str | None] = {}
    done: set[Uses] = set()
    while queue:
        uses, where = queue.pop(0)
        if uses in done:
            continue
        done.add(uses)
        if uses.repo not in synced:
            synced[uses.repo] = _sync_repo(config, mirror, uses.repo)
        problem = synced[uses.repo]
        if problem is not None:
            if problem not in errors:
                errors.append(problem)
            continue
        git_dir = repo_dir(mirror, uses.repo)
        commit = commit_of(git_dir, uses.ref)
        if commit is None and uses.is_sha:
            commit = _fetch_sha(config, git_dir, uses)
        if commit is None:
            errors.append(
                f"{uses.text} ({where}): {remote_url(config, uses.repo)} has no tag, branch or"
                f" commit {uses.ref}"
            )
            continue
        lines.append(f"{uses.text}: {commit[:12]}")
        queue += [(inner, uses.text) for inner in _nested(git_dir, commit, uses)]
    return SyncResult(tuple(lines), tuple(errors))


def _sync_repo(config: Config, mirror: Path, repo: str) -> str | None:
    """Create or update the mirror of `repo`; the error line, or None."""
    git_dir = repo_dir(mirror, repo)
    url = remote_url(config, repo)
    if git_dir.exists():
        check_mirror(git_dir)
        _git(git_dir, "config", "remote.origin.url", url)
        return _fetch(git_dir, repo, url)
    git_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = git_dir.parent / f".{git_dir.name}.tmp-{secrets.token_hex(4)}"
    try:
        init = proc.run(["git", "init", "-q", "--bare", str(tmp)])
        if not init.ok:
            return f"{repo}: cannot create {tmp}: {git_reason(init.stderr)}"
        # Branches and tags only: GitHub's refs/pull/* would multiply the mirror's size.
        _git(tmp, "config", "remote.origin.url", url)
        _git(tmp, "config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*")
        _git(tmp, "config", "--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*")
        _git(tmp, "config", "remote.origin.mirror", "true")
        problem = _fetch(tmp, repo, url)
        if problem is None:
            tmp.rename(git_dir)
        return problem
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            git_dir.parent.rmdir()  # only if empty: the owner folder this attempt made


def _fetch(git_dir: Path, repo: str, url: str) -> str | None:
    # --update-shallow: a shallow source (a trimmed mirror) may update shallow roots.
    try:
        result = _git(
            git_dir, "fetch", "--prune", "--update-shallow", "origin", timeout=FETCH_TIMEOUT
        )
    except CiparityError as exc:
        return f"{repo}: cannot fetch {url}: {exc.message}"
    if not result.ok:
        return f"{repo}: cannot fetch {url}: {git_reason(result.stderr)}"
    return None


def git_reason(stderr: str) -> str:
    """git's own reason: its first `fatal:` or `error:` line (later lines are advice)."""
    for line in stderr.splitlines():
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    return proc.reason(stderr)


def _fetch_sha(config: Config, git_dir: Path, uses: Uses) -> str | None:
    """A pinned commit on no branch or tag: fetched by id and kept under refs/ciparity/."""
    try:
        result = _git(
            git_dir, "fetch", "--update-shallow", "origin", uses.ref, timeout=FETCH_TIMEOUT
        )
    except CiparityError:
        return None
    if not result.ok:
        return None
    commit = commit_of(git_dir, uses.ref)
    if commit is not None:
        _git(git_dir, "update-ref", f"refs/ciparity/{commit}", commit)
    return commit


def print_sync(result: SyncResult, mirror: Path) -> None:
    """The sync's lines on stdout, its errors one line each on stderr."""
    for line in result.lines:
        print(line, flush=True)
    for error in result.errors:
        print(f"ciparity: error: {error}", file=sys.stderr, flush=True)
    print(f"{len(result.lines)} actions in {mirror}", flush=True)
