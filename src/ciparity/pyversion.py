"""Check that every Python version pinned in the repository agrees with `.python-version`.

The project states its Python version once, in `.python-version` at the root. This check reads
every tracked file (every file under the root when it is not a git checkout) and reports each
place that pins a different X.Y, in one of these contexts (X.Y stands for any version):

- docker image references: `python:X.Y`, `python:X.Y-slim`, `library/python:X.Y.Z-bookworm`;
- executables and paths: `pythonX.Y`, `pythonX.Y-config`, `/usr/lib/pythonX.Y/`, `pipX.Y`, so
  also pre-commit's `language_version: pythonX.Y` and tox's `basepython = pythonX.Y`;
- `pyXY` tokens: black's and ruff's `target-version`, tox environments (`py3NN`);
- settings named python-version, python_version, pythonVersion, PYTHON_VERSION or python, with
  `:`, `=` or (for the version names and `--flags`) a space: mypy, pyright, GitHub Actions'
  setup-python including inline lists and YAML block lists under the key (every entry is checked),
  `ARG`/`ENV` in Dockerfiles, conda's `python=X.Y`, Read the Docs' `python: "X.Y"`;
- requires-python, python_requires and Requires-Python specifiers (rule at `_spec_agrees`);
- trove classifiers `Programming Language :: Python :: X.Y`;
- version files other than the root one: a nested `.python-version`, `runtime.txt`, the python
  line of `.tool-versions`.

A patch release of the project's own X.Y (X.Y.1) agrees. PEP 508 markers such as
`python_version < "X.Y"` are conditions, not pins, and are left alone, as are a version named in
an arbitrary URL, a package's own version and an IP address.

Not scanned: `tests/fixtures/` (sample repositories pin other versions on purpose), the
wheelhouse `docker/wheelhouse/`, binary files (a NUL byte), files over 1 MiB and symlinks (their
target is scanned on its own when it is tracked).

A line containing the marker `pyversion: ignore` is skipped entirely. Use it on a line that
must name another version (a changelog entry, test data), or better, build such strings so the
version does not appear literally.

Run as `python -m ciparity.pyversion [ROOT]`: exit 0 with a one-line summary when every pin
agrees, 1 with one `path:line: what was found` line per disagreeing pin, 2 when the project
version cannot be read.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ciparity import proc
from ciparity.config import read_python_version
from ciparity.errors import CiparityError, ConfigError

MARKER = "pyversion: ignore"
MAX_BYTES = 1024 * 1024
# Root-relative prefixes that may pin other versions on purpose.
EXCLUDED_PREFIXES = ("tests/fixtures/", "docker/wheelhouse/")
# Only for the walk without git: tools' environments, caches and build outputs.
SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".cache",
        ".tox",
        "node_modules",
        "reports",
        "build",
        "dist",
    }
)
# Files whose lines are versions, not text to search for contexts.
VERSION_FILES = frozenset({".python-version", "runtime.txt", ".tool-versions"})

Version = tuple[int, int]

_DOCKER = re.compile(r"(?<![\w.-])python:(?P<ver>[23]\.\d+)[\w.-]*", re.IGNORECASE)
_EXECUTABLE = re.compile(
    r"(?<![\w.])(?:python|pip)(?P<ver>[23]\.\d+)(?:\.\d+)?(?:-[a-z]\w*)*", re.IGNORECASE
)
_CLASSIFIER = re.compile(
    r"(?:Programming Language\s*::\s*)?Python\s*::\s*(?P<ver>[23]\.\d+)", re.IGNORECASE
)
_PY_TOKEN = re.compile(r"(?<![A-Za-z0-9_])py(?P<major>[23])(?P<minor>\d{1,2})(?![A-Za-z0-9_])")
# `=` followed by `=` is a comparison (a PEP 508 marker), not an assignment.
_KEY = re.compile(
    r"""(?<![A-Za-z0-9])(?P<key>["']?(?:--)?"""
    r"""(?:python[_-]?version|requires[_-]python|python[_-]requires|python)["']?)"""
    r"""(?P<sep>[ \t]*[:=](?!=)[ \t]*|[ \t]+)""",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"""(?P<q>["'])(?P<value>[^"'\n]*)(?P=q)""")
_TOKEN = re.compile(r"""(?P<value>[^\s,#;\]}'"]+)""")
_REST = re.compile(r"(?P<value>[^#\s](?:[^#]*[^#\s])?)")
_LIST_ITEM = re.compile(r"""(?P<q>["']?)(?P<value>[^"',\s\]]+)(?P=q)""")
_BLOCK_ITEM = re.compile(r"(?P<indent>[ \t]*)-[ \t]+")
_PLAIN = re.compile(r"(?:c?python|pypy)?-?(?P<ver>[23]\.\d+)(?!\d)", re.IGNORECASE)
_SPEC_START = re.compile(r"\s*(?:[<>=!~^])")
_CLAUSE = re.compile(
    r"(?P<op>===|==|~=|!=|<=|>=|<|>|\^|~)?\s*v?(?P<ver>\d+(?:\.\d+)*)(?P<wild>\.\*)?"
)
_CLAUSE_SPLIT = re.compile(r"\s*,\s*|\s+(?=[<>=!~^])")


@dataclass(frozen=True)
class Finding:
    """A pin of another Python version: where it is and the text that pins it."""

    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


@dataclass(frozen=True)
class _Scan:
    findings: list[Finding]
    scanned: int
    version: str


class _Value(NamedTuple):
    start: int
    end: int
    written: str
    value: str


class _BlockList(NamedTuple):
    label: str
    column: int


@dataclass
class _Line:
    """The pins found on one line; a span is claimed once so no pin is reported twice."""

    project: Version
    pins: list[tuple[int, str, bool]] = field(default_factory=list)
    claimed: list[tuple[int, int]] = field(default_factory=list)

    def add(self, start: int, end: int, text: str, agrees: bool | None) -> None:
        """Record a pin, unless it pins nothing or overlaps a pin already recorded."""
        if agrees is None or any(start < b and a < end for a, b in self.claimed):
            return
        self.claimed.append((start, end))
        self.pins.append((start, text, agrees))


def find_drift(root: Path, version: str | None = None) -> list[Finding]:
    """Every pin of a Python version other than `version` (default: .python-version) under root."""
    return _scan(root, version).findings


def _scan(root: Path, version: str | None) -> _Scan:
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    version = read_python_version(root) if version is None else version
    project = _project(version)
    findings: list[Finding] = []
    scanned = 0
    for rel in _candidates(root):
        text = _read_text(root / rel)
        if text is None:
            continue
        scanned += 1
        if Path(rel).name in VERSION_FILES:
            findings.extend(_scan_version_file(rel, text, project))
        else:
            findings.extend(_scan_text(rel, text, project))
    return _Scan(findings, scanned, version)


def _project(version: str) -> Version:
    parts = version.strip().split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        raise ConfigError(f"the project's Python version must be major.minor, got {version!r}")
    return int(parts[0]), int(parts[1])


def _candidates(root: Path) -> list[str]:
    """Root-relative posix paths to scan: tracked files, or every file when git cannot say."""
    paths = _tracked(root)
    if paths is None:
        paths = list(_walk(root))
    return sorted(
        rel for rel in paths if rel != ".python-version" and not rel.startswith(EXCLUDED_PREFIXES)
    )


def _tracked(root: Path) -> list[str] | None:
    # GIT_DIR and friends (set inside git hooks) would point git at another repository.
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    try:
        result = proc.run(["git", "ls-files", "-z"], cwd=root, env=env)
    except CiparityError:
        return None  # git is not installed: the caller walks the tree instead
    if not result.ok:
        return None
    return [os.fsdecode(item) for item in result.raw.split(b"\0") if item]


def _walk(root: Path) -> Iterator[str]:
    for folder, dirs, files in os.walk(root):
        # Generated metadata (*.egg-info) repeats pyproject.toml, possibly stale.
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        base = Path(folder).relative_to(root)
        for name in files:
            yield (base / name).as_posix()


def _read_text(path: Path) -> str | None:
    """The file's text, or None when it is not worth scanning."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")


def _scan_version_file(rel: str, text: str, project: Version) -> list[Finding]:
    findings = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if MARKER in raw or not line:
            continue
        if Path(rel).name == ".tool-versions":
            tool, *values = line.split()
            texts = [f"{tool} {value}" for value in values] if tool == "python" else []
        else:
            texts, values = [line], [line]
        for shown, value in zip(texts, values):
            if _agrees(value, project) is False:
                findings.append(Finding(rel, number, shown))
    return findings


def _scan_text(rel: str, text: str, project: Version) -> list[Finding]:
    findings = []
    block: _BlockList | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if MARKER in line:
            continue
        found = _Line(project)
        if block is not None:
            block = _block_item(line, block, found)
        block = _scan_line(line, found) or block
        for _, shown, agrees in sorted(found.pins):
            if not agrees:
                findings.append(Finding(rel, number, shown))
    return findings


def _block_item(line: str, block: _BlockList, found: _Line) -> _BlockList | None:
    """Check a `- X.Y` entry of a YAML list under a version key; None once the list has ended."""
    item = _BLOCK_ITEM.match(line)
    if item is not None and len(item["indent"]) >= block.column:
        for value in _values(line, item.end(), spec=False):
            agrees = _agrees(value.value, found.project)
            found.add(value.start, value.end, f"{block.label} {value.written}", agrees)
        return block
    stripped = line.strip()
    return block if not stripped or stripped.startswith("#") else None


def _scan_line(line: str, found: _Line) -> _BlockList | None:
    """Collect the pins on one line; return a block list that starts here, if any."""
    project = found.project
    block = None
    for match in _DOCKER.finditer(line):
        found.add(match.start(), match.end(), match[0], _version(match["ver"]) == project)
    for match in _KEY.finditer(line):
        key, sep = match["key"], match["sep"]
        name = key.strip("\"'").lstrip("-").lower().replace("_", "-")
        if not sep.strip() and name == "python" and "--" not in key:
            continue  # "Python X.Y" in prose is a mention, not a setting
        spec = name in ("requires-python", "python-requires")
        values = _values(line, match.end(), spec)
        rest = line[match.end() :].strip()
        if not values and ":" in sep and not spec and (not rest or rest.startswith("#")):
            block = _BlockList(key + sep.rstrip(), match.start())
        for value in values:
            agrees = _agrees(value.value, project)
            found.add(value.start, value.end, f"{key}{sep}{value.written}", agrees)
    for pattern in (_EXECUTABLE, _CLASSIFIER):
        for match in pattern.finditer(line):
            found.add(match.start(), match.end(), match[0], _version(match["ver"]) == project)
    for match in _PY_TOKEN.finditer(line):
        pinned = (int(match["major"]), int(match["minor"]))
        found.add(match.start(), match.end(), match[0], pinned == project)
    return block


def _values(line: str, pos: int, spec: bool) -> list[_Value]:
    """The value after a key: one scalar, or each entry of an inline [list]."""
    if line.startswith("[", pos):
        close = line.find("]", pos)
        end = len(line) if close < 0 else close
        return [_value(m) for m in _LIST_ITEM.finditer(line, pos + 1, end)]
    # A specifier may hold spaces and commas; any other value ends at the first of them.
    match = _QUOTED.match(line, pos) or (_REST if spec else _TOKEN).match(line, pos)
    return [_value(match)] if match else []


def _value(match: re.Match[str]) -> _Value:
    return _Value(match.start(), match.end(), match[0], match["value"])


def _version(text: str) -> Version:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _agrees(value: str, project: Version) -> bool | None:
    """Whether a setting's value agrees with the project; None when it pins no version."""
    if _SPEC_START.match(value) or "," in value:
        return _spec_agrees(value, project)
    match = _PLAIN.match(value.strip())
    return None if match is None else _version(match["ver"]) == project


def _spec_agrees(spec: str, project: Version) -> bool | None:
    """Whether a version specifier agrees with the project's X.Y; None when it is not one.

    The rule, at the X.Y level: the specifier must admit X.Y, and every version it names with a
    minor part must be X.Y itself, except `<X.(Y+1)` (the way to say "only X.Y") and `!=` (which
    excludes rather than pins). So ">=X.Y", ">=X.Y,<X.(Y+1)", "==X.Y.*", "~=X.Y", "^X.Y",
    ">=X.Y.1" and ">=X,<(X+1)" agree; ">=X.(Y-1)", "<X.(Y+2)", "<X.Y" and "==X.(Y+1)" do not.
    """
    clauses = [clause for clause in _CLAUSE_SPLIT.split(spec.strip()) if clause]
    if not clauses:
        return None
    for clause in clauses:
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            return None
        op = match["op"] or "=="
        parts = [int(part) for part in match["ver"].split(".")]
        named = len(parts) > 1
        bound = (parts[0], parts[1] if named else 0)
        upper = op == "<" and bound == (project[0], project[1] + 1)
        if named and op != "!=" and not upper and bound != project:
            return False
        if not _admits(op, parts, bool(match["wild"]), project):
            return False
    return True


def _admits(op: str, parts: list[int], wild: bool, project: Version) -> bool:
    """Whether one clause admits some release of the project's X.Y."""
    bound = (parts[0], parts[1] if len(parts) > 1 else 0)
    if op == "!=":
        # Only a wildcard excludes a whole series; "!=X.Y" excludes the one release X.Y.0.
        return not wild or (project != bound if len(parts) > 1 else project[0] != parts[0])
    if op in ("==", "===") or (op == "~" and len(parts) > 1):
        return project == bound if len(parts) > 1 else project[0] == parts[0]
    if op == "<":
        patch = parts[2] if len(parts) > 2 else 0
        return project < bound or (project == bound and patch > 0)
    if op == "<=":
        return project <= bound
    if op in ("~=", "^", "~"):
        same = project == bound if op == "~=" and len(parts) > 2 else project[0] == parts[0]
        return same and project >= bound
    return project >= bound  # ">=" and ">"


def main(argv: list[str] | None = None) -> int:
    """Report pins of other Python versions under ROOT; 0 when there is none, 1 when there is."""
    parser = argparse.ArgumentParser(
        prog="python -m ciparity.pyversion",
        description="Check that every Python version pinned in the repository agrees with "
        ".python-version.",
    )
    parser.add_argument("root", nargs="?", default=".", type=Path, help="the checkout (default: .)")
    args = parser.parse_args(argv)
    try:
        scan = _scan(args.root, None)
    except CiparityError as exc:
        proc.eprint(f"ciparity: error: {exc.message}")
        return exc.exit_code
    for finding in scan.findings:
        print(finding)
    if scan.findings:
        print(
            f"python version: {len(scan.findings)} pins disagree with .python-version"
            f" ({scan.version}): change them, or add '{MARKER}' to a line that must keep one"
        )
        return 1
    print(
        f"python version: every pin agrees with .python-version ({scan.version}),"
        f" {scan.scanned} files scanned"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
