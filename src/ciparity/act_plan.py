"""What `invoke act-ci` hands act: which workflows, jobs and matrix entries run, on which images.

GitHub runs every workflow an event triggers, expands each job's matrix (the product of its keys,
minus `exclude`, plus `include`), and gives each entry the runner its `runs-on` names. act does
the same, but it cannot run macOS or Windows runners, silently skips a label with no image, and
evaluates a matrix-dependent `runs-on` once for all entries of a job. So ciparity plans first:
it expands the matrices itself, decides per entry whether it can be reproduced here (and why
not), and hands act a copy of each workflow whose matrices list only the entries that run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ciparity.errors import ConfigError

WORKFLOWS = Path(".github") / "workflows"
# Runner labels mapped to the runner image. ubuntu-20.04 is not: GitHub retired it (2025-04), so
# a job asking for it never starts there either, and act-ci says so instead of pretending.
HOSTED_LABELS = ("ubuntu-latest", "ubuntu-24.04", "ubuntu-22.04")
SELF_HOSTED_LABEL = "self-hosted"
# Options act-ci always passes; a repository's .actrc comes after them, so it can override any.
# The cache server's own flags (loopback, per-checkout storage) come from act_env, per run.
ACT_OPTIONS = ("--pull=false", "--action-offline-mode")
# The Pythons the runner image's tool cache holds (runner/Dockerfile's PYTHON_VERSION); nothing
# else can be downloaded offline.
RUNNER_PYTHONS = ("3.12",)
SETUP_PYTHON = "actions/setup-python"
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_MATRIX_REF = re.compile(r"^matrix((?:\.[A-Za-z_][\w-]*)+)$")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
# act flags that take a value as the next argument (the ones whose value we read or check).
_PLATFORM_FLAGS = ("-P", "--platform")
_CONTAINER_OPTIONS = "--container-options"


@dataclass(frozen=True)
class Entry:
    """One job, or one entry of a job's matrix, and whether it runs here."""

    workflow: str
    job: str
    matrix: Mapping[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    continue_on_error: bool = False
    skip: str = ""

    @property
    def name(self) -> str:
        """GitHub's name for it: `job`, or `job (value, value)` for a matrix entry."""
        if not self.matrix:
            return self.job
        return f"{self.job} ({', '.join(text(v) for v in self.matrix.values())})"


@dataclass(frozen=True)
class WorkflowPlan:
    """One workflow the event triggers: its entries, and the document act is given."""

    path: Path
    data: Mapping[Any, Any]
    entries: tuple[Entry, ...]
    # The workflow as act gets it (matrices narrowed, skipped jobs switched off).
    planned: Mapping[Any, Any]


@dataclass(frozen=True)
class Plan:
    """Every workflow of a run."""

    workflows: tuple[WorkflowPlan, ...]

    @property
    def entries(self) -> list[Entry]:
        return [e for w in self.workflows for e in w.entries]

    @property
    def skipped(self) -> list[Entry]:
        return [e for e in self.entries if e.skip]

    def display(self, entry: Entry) -> str:
        """An entry's name in the job table: prefixed by its workflow when there are several."""
        return f"{entry.workflow}: {entry.name}" if len(self.workflows) > 1 else entry.name

    def write(self, dest: Path) -> Path:
        """The workflows as act runs them, in a folder of their own (act's -W)."""
        dest.mkdir(parents=True, exist_ok=True)
        for workflow in self.workflows:
            if workflow.planned == _with_on(workflow.data):
                # Unchanged: act reads the author's own bytes (YAML 1.2, as GitHub does).
                text = workflow.path.read_text(encoding="utf-8")
            else:
                text = yaml.safe_dump(_with_on(workflow.planned), sort_keys=False, width=1000)
            (dest / workflow.path.name).write_text(text, encoding="utf-8")
        return dest


def text(value: Any) -> str:
    """A value as GitHub's expressions turn it into a string (true, 3.1, JSON for objects)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def malformed_yaml(path: Path, exc: yaml.YAMLError) -> ConfigError:
    """The one line for a YAML file that does not parse: the file, the line where known, why."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        return ConfigError(f"{path}{line}: malformed YAML: {exc.problem or exc}")
    return ConfigError(f"{path}: malformed YAML: {exc}")


def read_workflow(path: Path) -> dict[Any, Any]:
    """A workflow's YAML; malformed YAML or a missing `jobs` mapping is one line with its place."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise malformed_yaml(path, exc) from exc
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict) or not jobs:
        raise ConfigError(f"{path}: no jobs: a workflow needs a 'jobs' mapping")
    return dict(data)


def _on(data: Mapping[Any, Any]) -> Any:
    # YAML 1.1 reads the key `on` as the boolean true.
    return data.get("on", data.get(True))


def _with_on(data: Mapping[Any, Any]) -> dict[Any, Any]:
    return {("on" if key is True else key): value for key, value in data.items()}


def events(data: Mapping[Any, Any]) -> list[str]:
    """The events that trigger a workflow (act ignores branch and path filters, and so do we)."""
    on = _on(data)
    if isinstance(on, str):
        return [on]
    if isinstance(on, list):
        return [str(e) for e in on]
    if isinstance(on, dict):
        return [str(e) for e in on]
    return []


def workflow_files(root: Path) -> list[Path]:
    folder = root / WORKFLOWS
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yml", ".yaml"))


def select_workflows(root: Path, name: str, event: str) -> list[Path]:
    """The workflows to run: `name` alone if given, else every one `event` triggers."""
    if name:
        for path in (root / name, root / WORKFLOWS / name):
            if path.is_file():
                if event not in events(read_workflow(path)):
                    raise ConfigError(f"{path.name} is not triggered by {event}")
                return [path]
        known = ", ".join(p.name for p in workflow_files(root)) or "none"
        raise ConfigError(f"no workflow {name!r} (known: {known})")
    files = workflow_files(root)
    chosen = [p for p in files if event in events(read_workflow(p))]
    if not chosen:
        known = ", ".join(p.name for p in files)
        where = f"none of {known}" if known else f"no workflow in {WORKFLOWS}"
        raise ConfigError(f"{event} triggers no workflow here ({where})")
    return chosen


def expand_matrix(matrix: Any) -> list[dict[str, Any]] | None:
    """A matrix's entries as GitHub computes them; None when it is an expression (fromJSON...).

    The product of the keys' lists, minus entries matching an `exclude`; each `include` object
    then adds its keys to every entry whose original values it does not change, or becomes an
    entry of its own if it fits none.
    """
    if matrix is None:
        return [{}]
    if not isinstance(matrix, dict):
        return None
    keys = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    if any(not isinstance(v, list) for v in keys.values()):
        return None
    includes = matrix.get("include") or []
    excludes = matrix.get("exclude") or []
    if not isinstance(includes, list) or not isinstance(excludes, list):
        return None
    for item in excludes:
        if not isinstance(item, dict):
            return None
        unknown = [k for k in item if k not in keys]
        if unknown:
            # GitHub and act both refuse the workflow.
            raise ConfigError(f"matrix exclude key {unknown[0]!r} is not a key of the matrix")
    entries: list[dict[str, Any]] = [{}] if keys else []
    for key, values in keys.items():
        entries = [{**e, key: v} for e in entries for v in values]
    entries = [e for e in entries if not any(_matches(e, x) for x in excludes)]
    extra: list[dict[str, Any]] = []
    for item in includes:
        if not isinstance(item, dict):
            return None
        fitted = False
        for entry in entries:
            if all(entry[k] == v for k, v in item.items() if k in keys and k in entry):
                entry.update(item)
                fitted = True
        if not fitted:
            extra.append(dict(item))
    entries += extra
    return entries or [{}]


def _matches(entry: Mapping[str, Any], exclude: Mapping[str, Any]) -> bool:
    return all(k in entry and entry[k] == v for k, v in exclude.items())


def resolve(value: Any, matrix: Mapping[str, Any]) -> Any:
    """`value` with its `${{ matrix.* }}` expressions evaluated; None if another expression
    (or an unknown matrix key) is left, which only act can evaluate."""
    if isinstance(value, list):
        items = [resolve(v, matrix) for v in value]
        return None if any(i is None for i in items) else items
    if not isinstance(value, str):
        return value
    whole = _EXPR.fullmatch(value.strip())
    if whole:
        return _lookup(whole.group(1), matrix)
    parts: list[str] = []
    last = 0
    for found in _EXPR.finditer(value):
        got = _lookup(found.group(1), matrix)
        if got is None:
            return None
        parts += [value[last : found.start()], text(got)]
        last = found.end()
    return "".join(parts) + value[last:]


def _lookup(expression: str, matrix: Mapping[str, Any]) -> Any:
    ref = _MATRIX_REF.match(expression)
    if not ref:
        return None
    current: Any = matrix
    for key in ref.group(1).strip(".").split("."):
        if not isinstance(current, Mapping) or key not in current:
            # GitHub evaluates a missing key to '' (a `container:` only some entries set).
            return ""
        current = current[key]
    return current


def _labels(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, dict):
        labels = value.get("labels", [])
        group = value.get("group")
        value = ([labels] if isinstance(labels, str) else list(labels)) + ([group] if group else [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    return tuple(text(v).strip().lower() for v in value)


def platform_image(labels: Sequence[str], platforms: Mapping[str, str]) -> str:
    """The image act picks: the first label that has a mapping (act's own rule)."""
    for label in labels:
        image = platforms.get(label.lower(), "")
        if image:
            return image
    return ""


def python_available(spec: str, pythons: Sequence[str]) -> bool:
    """Whether setup-python's `python-version` spec resolves to one of `pythons` (major.minor)."""
    spec = spec.strip()
    if not spec:
        return True
    lowered = spec.lower()
    if lowered.startswith(("pypy", "graalpy")):
        return False
    if any(c in spec for c in "<>=^~ ,|"):
        return True  # a range: setup-python decides; no false skips
    spec = lowered.removesuffix("-dev")
    for python in pythons:
        have = python.split(".")
        want = spec.split(".")
        if all(w in ("x", "*") or w == h for w, h in zip(want, have)):
            return True
    return False


def _setup_python_versions(job: Mapping[str, Any], matrix: Mapping[str, Any], root: Path) -> Any:
    """The Python versions the job's setup-python steps ask for; None if not knowable here."""
    found: list[str] = []
    for step in job.get("steps") or []:
        if not isinstance(step, dict):
            continue
        uses = str(step.get("uses", ""))
        if not uses.lower().startswith(SETUP_PYTHON + "@"):
            continue
        inputs = step.get("with") or {}
        version = resolve(inputs.get("python-version", ""), matrix)
        if version is None:
            return None
        if not text(version).strip() and inputs.get("python-version-file"):
            name = resolve(inputs["python-version-file"], matrix)
            path = root / text(name) if name else None
            if path is None or not path.is_file():
                continue  # setup-python reports a missing file itself
            version = path.read_text(encoding="utf-8")
        found += [line.strip() for line in text(version).splitlines() if line.strip()]
    return found


def _skip_reason(
    labels: tuple[str, ...] | None,
    job: Mapping[str, Any],
    matrix: Mapping[str, Any],
    platforms: Mapping[str, str],
    pythons: Sequence[str],
    has_image: Callable[[str], bool],
    root: Path,
) -> str:
    if labels is not None:
        shown = ", ".join(labels)
        if any(label.startswith("macos") for label in labels):
            return f"macOS runner ({shown}): act runs Linux containers only"
        if any(label.startswith("windows") for label in labels):
            return f"Windows runner ({shown}): act runs Linux containers only"
        if not platform_image(labels, platforms):
            return f"no runner image for {shown}: add `-P {labels[0]}=IMAGE` to .actrc"
    box = job.get("container")
    image = resolve(box.get("image") if isinstance(box, dict) else box, matrix)
    if isinstance(image, str) and image.strip() and not has_image(image.strip()):
        return f"container image {image.strip()} is not on this engine: docker pull it first"
    versions = _setup_python_versions(job, matrix, root)
    for version in versions or []:
        if not python_available(version, pythons):
            have = ", ".join(pythons)
            return (
                f"Python {version} is not in the runner image's tool cache ({have})"
                " and cannot be downloaded offline"
            )
    return ""


def _continue_on_error(job: Mapping[str, Any], matrix: Mapping[str, Any]) -> bool:
    value = resolve(job.get("continue-on-error", False), matrix)
    return text(value).strip().lower() == "true"


def plan_workflow(
    path: Path,
    platforms: Mapping[str, str],
    pythons: Sequence[str] = RUNNER_PYTHONS,
    has_image: Callable[[str], bool] = lambda image: True,
    root: Path | None = None,
    only_job: str = "",
) -> WorkflowPlan:
    """Every entry of every job of one workflow, each with the reason it cannot run here."""
    data = read_workflow(path)
    root = root or path.parents[2]
    planned = _with_on(data)
    planned["jobs"] = dict(data["jobs"])
    entries: list[Entry] = []
    for job_id, job in data["jobs"].items():
        job = job if isinstance(job, dict) else {}
        strategy = job.get("strategy")
        strategy = strategy if isinstance(strategy, dict) else {}
        matrices = expand_matrix(strategy.get("matrix"))
        if matrices is None:
            entries.append(Entry(path.name, str(job_id)))  # an expression only act can expand
            continue
        job_entries = []
        for matrix in matrices:
            labels = _labels(resolve(job.get("runs-on"), matrix)) if "runs-on" in job else None
            reason = _skip_reason(labels, job, matrix, platforms, pythons, has_image, root)
            job_entries.append(
                Entry(
                    path.name,
                    str(job_id),
                    matrix,
                    labels or (),
                    _continue_on_error(job, matrix),
                    reason,
                )
            )
        job_entries = _one_image_per_job(job, job_entries, platforms)
        entries += job_entries
        planned["jobs"][job_id] = _planned_job(job, job_entries)
    entries = _skip_dependents(data["jobs"], entries, planned["jobs"])
    if only_job:
        # act's -j runs the job and, first, every job it needs.
        wanted = _closure(data["jobs"], only_job)
        entries = [e for e in entries if e.job in wanted]
    return WorkflowPlan(path, data, tuple(entries), planned)


def _closure(jobs: Mapping[Any, Any], job: str) -> set[str]:
    found: set[str] = set()
    todo = [job]
    while todo:
        name = todo.pop()
        if name in found or name not in jobs:
            continue
        found.add(name)
        todo += _needs(jobs[name])
    return found


_RUNS_ANYWAY = re.compile(r"\b(always|failure|cancelled)\s*\(")


def _needs(job: Any) -> list[str]:
    needs = job.get("needs", []) if isinstance(job, dict) else []
    return [str(n) for n in ([needs] if isinstance(needs, str) else needs or [])]


def _skip_dependents(
    jobs: Mapping[Any, Any], entries: list[Entry], planned: dict[Any, Any]
) -> list[Entry]:
    """A job that needs a job skipped here is skipped too, as GitHub skips the dependents of a
    skipped job (unless their `if` runs them anyway: always(), failure(), cancelled())."""
    changed = True
    while changed:
        changed = False
        skipped = {e.job for e in entries if all(x.skip for x in entries if x.job == e.job)}
        for entry in list(entries):
            job = jobs.get(entry.job)
            if entry.skip or not isinstance(job, dict):
                continue
            if _RUNS_ANYWAY.search(str(job.get("if", ""))):
                continue
            missing = [n for n in _needs(job) if n in skipped]
            if missing:
                why = f"needs {', '.join(missing)}, which cannot run here"
                entries = [dataclasses.replace(e, skip=why) if e == entry else e for e in entries]
                planned[entry.job] = {**planned[entry.job], "if": "${{ false }}"}
                changed = True
    return entries


def _one_image_per_job(
    job: Mapping[str, Any], entries: list[Entry], platforms: Mapping[str, str]
) -> list[Entry]:
    """act evaluates a matrix-dependent `runs-on` once, for every entry of the job: entries
    whose label maps to another image than the first running entry's cannot run in this call."""
    if "${{" not in json.dumps(job.get("runs-on"), default=str):
        return entries
    running = [e for e in entries if not e.skip and e.labels]
    if not running:
        return entries
    first = running[0]
    image = platform_image(first.labels, platforms)
    out = []
    for entry in entries:
        if not entry.skip and entry.labels and platform_image(entry.labels, platforms) != image:
            why = (
                f"act gives every entry of a job the image of its first ({', '.join(first.labels)}"
                f" -> {image}); {', '.join(entry.labels)} maps elsewhere"
            )
            entry = dataclasses.replace(entry, skip=why)
        out.append(entry)
    return out


def _planned_job(job: Mapping[str, Any], entries: Sequence[Entry]) -> dict[str, Any]:
    planned = dict(job)
    running = [e for e in entries if not e.skip]
    if not running:
        # act reports a job whose `if` is false as skipped, and its dependents as GitHub would.
        planned["if"] = "${{ false }}"
        return planned
    if "${{" in json.dumps(job.get("runs-on"), default=str) and running[0].labels:
        # act evaluates a matrix-dependent runs-on in place, once for all entries (and entries
        # racing it have failed with `invalid reference format`): give it the label it resolved.
        labels = list(running[0].labels)
        planned["runs-on"] = labels[0] if len(labels) == 1 else labels
    if len(running) < len(entries) and any(e.matrix for e in running):
        strategy = dict(job.get("strategy") or {})
        # An include-only matrix is exactly its entries (act: an empty product, each include
        # becoming an entry of its own).
        strategy["matrix"] = {"include": [dict(e.matrix) for e in running]}
        planned["strategy"] = strategy
    return planned


def plan(
    paths: Iterable[Path],
    platforms: Mapping[str, str],
    pythons: Sequence[str] = RUNNER_PYTHONS,
    has_image: Callable[[str], bool] = lambda image: True,
    root: Path | None = None,
    only_job: str = "",
) -> Plan:
    """Plan every workflow of a run."""
    return Plan(
        tuple(plan_workflow(p, platforms, pythons, has_image, root, only_job) for p in paths)
    )


def builtin_args(runner_image: str, self_hosted_image: str) -> list[str]:
    """ciparity's own act options: platform mappings for the hosted labels and self-hosted."""
    args: list[str] = []
    for label in HOSTED_LABELS:
        args += ["-P", f"{label}={runner_image}"]
    args += ["-P", f"{SELF_HOSTED_LABEL}={self_hosted_image}"]
    return args + list(ACT_OPTIONS)


def _expand(value: str, environ: Mapping[str, str]) -> str:
    # act expands $VAR and ${VAR}, an unset one to nothing (Go's os.ExpandEnv).
    return _VAR.sub(lambda m: environ.get(m.group(1) or m.group(2), ""), value)


def read_actrc(path: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """The arguments of an .actrc, as act reads them, with malformed lines refused.

    One flag per line, optionally followed by whitespace and its value; blank lines and `#`
    comments are allowed. act silently drops any other line: here it is an error.
    """
    env = os.environ if environ is None else environ
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    args: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = _expand(raw.strip(), env)
        if not line or line.startswith("#"):
            continue
        if not line.startswith("-"):
            raise ConfigError(f"{path}:{number}: expected a flag such as -P label=image: {raw!r}")
        flag, *rest = re.split(r"\s", line, maxsplit=1)
        value = rest[0].strip() if rest else ""
        for long in ("--platform", _CONTAINER_OPTIONS):
            if flag.startswith(long + "="):
                flag, value = long, flag.partition("=")[2]
        if flag in _PLATFORM_FLAGS:
            label, eq, image = value.partition("=")
            if not (label.strip() and eq and image.strip()):
                raise ConfigError(f"{path}:{number}: {flag} needs label=image, got {value!r}")
        if flag == _CONTAINER_OPTIONS and not value:
            raise ConfigError(f"{path}:{number}: {flag} needs a value")
        args += [flag, value] if value else [flag]
    return args


def platforms(args: Sequence[str]) -> dict[str, str]:
    """The label -> image mapping act builds from `-P` arguments (later ones win)."""
    found: dict[str, str] = {}
    for flag, value in zip(args, list(args[1:]) + [""]):
        if flag in _PLATFORM_FLAGS:
            label, _, image = value.partition("=")
            found[label.strip().lower()] = image.strip()
    return found


def split_container_options(args: Sequence[str]) -> tuple[list[str], str]:
    """`args` without their --container-options, and those options' last value (act keeps one),
    so act-ci can add its labels to them instead of replacing them."""
    rest: list[str] = []
    options = ""
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == _CONTAINER_OPTIONS and i + 1 < len(args):
            options, skip = args[i + 1], True
        elif arg.startswith(_CONTAINER_OPTIONS + "="):
            options = arg.partition("=")[2]
        else:
            rest.append(arg)
    return rest, options
