"""A local double of actions/upload-artifact and actions/download-artifact (v4 inputs).

Runs inside a job container under `invoke act-ci`, as the script of a composite action that
act-ci substitutes for those actions when their own code (its bundled dist/) is not available
offline. It stands alone (standard library only) and imports nothing from the host side.
Artifacts live in the folder `$CIPARITY_ARTIFACTS` names, one subfolder per artifact name,
which act-ci mounts into every job of the run and copies to reports/act/artifacts/ afterwards.

Usage: python3 artifact_double.py upload|download  (inputs as INPUT_* variables)
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path

REAL = {"upload": "actions/upload-artifact", "download": "actions/download-artifact"}
GLOB_CHARS = "*?["


class Failure(Exception):
    """One line for the job log; the step fails."""


def _input(name: str, default: str = "") -> str:
    return os.environ.get("INPUT_" + name.upper().replace("-", "_"), default).strip() or default


def _bool(name: str, default: bool) -> bool:
    value = _input(name, "true" if default else "false").lower()
    if value not in ("true", "false"):
        raise Failure(f"input {name} must be true or false, got {value!r}")
    return value == "true"


def _store() -> Path:
    folder = os.environ.get("CIPARITY_ARTIFACTS", "")
    if not folder:
        raise Failure("CIPARITY_ARTIFACTS is not set: run this through invoke act-ci")
    if not Path(folder).is_dir():
        raise Failure(
            f"the run's artifact folder {folder} is not mounted here (a job with `container:`"
            " gets none of act-ci's mounts)"
        )
    return Path(folder)


def _output(**values: str) -> None:
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            for key, value in values.items():
                handle.write(f"{key}={value}\n")


def _valid_name(name: str) -> str:
    bad = set(name) & set('"\\/:<>|*?\r\n')
    if not name or bad:
        raise Failure(f"artifact name {name!r} is not valid (empty, or contains {sorted(bad)})")
    return name


def _search_root(pattern: str) -> Path:
    """The folder a pattern searches from: its path up to the first glob character."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if any(c in part for c in GLOB_CHARS):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    if len(fixed) == len(parts) and not root.is_dir():
        return root.parent  # a single file: its folder, as upload-artifact does
    return root


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _matches(patterns: list[str], include_hidden: bool) -> tuple[Path, list[Path]]:
    """The files the patterns select and the folder their artifact paths are relative to."""
    includes = [p for p in patterns if not p.startswith("!")]
    excludes = [p[1:].strip() for p in patterns if p.startswith("!")]
    excluded: set[Path] = set()
    for pattern in excludes:
        for hit in glob.glob(os.path.expanduser(pattern), recursive=True):
            excluded.add(Path(hit).absolute())
            excluded.update(p.absolute() for p in Path(hit).rglob("*"))
    roots = [_search_root(os.path.expanduser(p)).absolute() for p in includes]
    files: dict[Path, None] = {}
    for pattern in includes:
        for hit in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)):
            path = Path(hit).absolute()
            found = sorted(path.rglob("*")) if path.is_dir() else [path]
            for item in found:
                if item.is_file() and item not in excluded:
                    files[item] = None
    root = Path(os.path.commonpath(roots)) if roots else Path.cwd()
    chosen = [f for f in files if include_hidden or not _hidden(f, root)]
    return root, chosen


def upload() -> int:
    """Copy the selected files into the run's artifact folder under the artifact's name."""
    name = _valid_name(_input("name", "artifact"))
    patterns = [line.strip() for line in _input("path").splitlines() if line.strip()]
    if not patterns:
        raise Failure("input path is required")
    when_none = _input("if-no-files-found", "warn")
    if when_none not in ("warn", "error", "ignore"):
        raise Failure(f"if-no-files-found must be warn, error or ignore, got {when_none!r}")
    days = _input("retention-days", "0")
    if not days.isdigit() or not 0 <= int(days) <= 90:
        raise Failure(f"retention-days must be a whole number from 0 to 90, got {days!r}")
    overwrite = _bool("overwrite", False)
    root, files = _matches(patterns, _bool("include-hidden-files", False))
    if not files:
        message = f"No files were found with the provided path: {', '.join(patterns)}."
        if when_none == "error":
            raise Failure(message + " No artifacts will be uploaded.")
        if when_none == "warn":
            print(f"::warning::{message} No artifacts will be uploaded.")
        return 0
    target = _store() / name
    if target.exists():
        if not overwrite:
            raise Failure(
                f"an artifact named {name!r} already exists in this run (overwrite: false)"
            )
        shutil.rmtree(target)
    for path in files:
        dest = target / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    kept = f"retention-days {days} has no effect locally" if days != "0" else "kept locally"
    print(f"ciparity: {len(files)} files uploaded as artifact {name!r} ({kept})")
    _output(**{"artifact-id": name, "artifact-url": f"file://{target}", "artifact-digest": ""})
    return 0


def download() -> int:
    """Copy one artifact (by name) or all of them (by pattern) into the path."""
    store = _store()
    name = _input("name")
    dest = Path(os.path.expanduser(_input("path", os.environ.get("GITHUB_WORKSPACE", "."))))
    dest = dest if dest.is_absolute() else Path.cwd() / dest
    if name:
        source = store / _valid_name(name)
        if not source.is_dir():
            known = ", ".join(sorted(p.name for p in store.iterdir())) or "none"
            raise Failure(f"Artifact not found for name: {name} (this run has: {known})")
        shutil.copytree(source, dest, dirs_exist_ok=True)
        count = 1
    else:
        pattern = _input("pattern", "*")
        merge = _bool("merge-multiple", False)
        chosen = sorted(p for p in store.glob(pattern) if p.is_dir())
        for source in chosen:
            shutil.copytree(source, dest if merge else dest / source.name, dirs_exist_ok=True)
        count = len(chosen)
    print(f"ciparity: {count} artifacts downloaded to {dest}")
    _output(**{"download-path": str(dest)})
    return 0


def main(argv: list[str]) -> int:
    """Run `upload` or `download`; a failure is one `::error::` line and exit 1."""
    verb = argv[1] if len(argv) > 1 else ""
    if verb not in REAL:
        print("usage: artifact_double.py upload|download", file=sys.stderr)
        return 2
    print(
        f"ciparity: {REAL[verb]} is a local double under invoke act-ci (the action's own code is"
        " not available offline); artifacts go to reports/act/artifacts/"
    )
    try:
        return upload() if verb == "upload" else download()
    except (Failure, OSError) as exc:
        print(f"::error::{REAL[verb]} (ciparity double): {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
