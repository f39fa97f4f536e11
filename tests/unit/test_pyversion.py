"""Tests for ciparity.pyversion: every pinning context, both file listings, exclusions, the CLI.

Every version below is built from the constants, never written in a pinning context, so this
file pins nothing itself and the repository's own check stays clean whatever its version.
"""

from __future__ import annotations

import os
import runpy
import subprocess  # nosec B404 - argv lists only
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from ciparity.errors import ConfigError
from ciparity.pyversion import MARKER, Finding, find_drift, main

PROJECT = "3.12"
OLD = "3.11"
NEXT = "3.13"
AFTER_NEXT = "3.14"
ANCIENT = "2.7"


def tag(version: str) -> str:
    """The pyXY token of a version, as black, ruff and tox spell it."""
    return "py" + version.replace(".", "")


def make_tree(root: Path, files: Mapping[str, str | bytes], version: str | None = PROJECT) -> Path:
    """Write `files` under root, plus .python-version holding `version` unless it is None."""
    root.mkdir(parents=True, exist_ok=True)
    if version is not None:
        (root / ".python-version").write_text(version + "\n", encoding="utf-8")
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def git(root: Path, *args: str) -> None:
    """Run git in root, isolated from any repository a surrounding hook points at."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    argv = ["git", "-c", "user.name=ciparity tests", "-c", "user.email=tests@example.invalid"]
    subprocess.run(
        [*argv, "-c", "init.defaultBranch=main", *args],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )  # nosec B603


def texts(root: Path) -> list[str]:
    return [finding.text for finding in find_drift(root)]


def one_line(tmp_path: Path, line: str, name: str = "config.txt") -> list[str]:
    """What find_drift reports for a tree holding one file of one line."""
    return texts(make_tree(tmp_path, {name: line + "\n"}))


# (template, what is reported); {v} is the version and {tag} its pyXY token.
CONTEXTS = [
    ("FROM python:{v}-slim AS base", "python:{v}-slim"),
    ("FROM python:{v}", "python:{v}"),
    ("image: docker.io/library/python:{v}.4-bookworm@sha256:0a1b", "python:{v}.4-bookworm"),
    ("RUN python{v} -m pip install .", "python{v}"),
    ("#!/usr/bin/env python{v}", "python{v}"),
    ("CFLAGS=$(python{v}-config --cflags)", "python{v}-config"),
    ("RUN pip{v} install wheel", "pip{v}"),
    ("    language_version: python{v}", "python{v}"),
    ("basepython = python{v}", "python{v}"),
    ('target-version = ["{tag}"]', "{tag}"),
    ('target-version = "{tag}"', "{tag}"),
    ("envlist = {tag}, lint", "{tag}"),
    ("[testenv:{tag}-django]", "{tag}"),
    ('python_version = "{v}"', 'python_version = "{v}"'),
    ("python_version = {v}", "python_version = {v}"),
    ('    "pythonVersion": "{v}",', '"pythonVersion": "{v}"'),
    ('          python-version: "{v}"', 'python-version: "{v}"'),
    ("        - python-version: '{v}'", "python-version: '{v}'"),
    ("ARG PYTHON_VERSION={v}", "PYTHON_VERSION={v}"),
    ("ENV PYTHON_VERSION {v}", "PYTHON_VERSION {v}"),
    ("  PYTHON_VERSION: {v}", "PYTHON_VERSION: {v}"),
    ("mypy --python-version {v} src", "--python-version {v}"),
    ("uv venv --python {v}", "--python {v}"),
    ("  - python={v}", "python={v}"),
    ('    python: "{v}"', 'python: "{v}"'),
    (
        '    "Programming Language :: Python :: {v}",',
        "Programming Language :: Python :: {v}",
    ),
    ('requires-python = "=={v}.*"', 'requires-python = "=={v}.*"'),
]


@pytest.mark.parametrize(("template", "reported"), CONTEXTS)
def test_each_context_reports_another_version(tmp_path: Path, template: str, reported: str) -> None:
    line = template.format(v=OLD, tag=tag(OLD))
    assert one_line(tmp_path, line) == [reported.format(v=OLD, tag=tag(OLD))]


@pytest.mark.parametrize(("template", "reported"), CONTEXTS)
def test_each_context_accepts_the_project_version(
    tmp_path: Path, template: str, reported: str
) -> None:
    assert one_line(tmp_path, template.format(v=PROJECT, tag=tag(PROJECT))) == []


@pytest.mark.parametrize(
    "line",
    [
        f"FROM python:{PROJECT}.1-slim",
        f'python_version = "{PROJECT}.1"',
        f"RUN python{PROJECT}.1 -V",
        f"python-version: '{PROJECT}.0-alpha.1'",
    ],
)
def test_a_patch_release_of_the_project_version_agrees(tmp_path: Path, line: str) -> None:
    assert one_line(tmp_path, line) == []


@pytest.mark.parametrize(
    ("line", "reported"),
    [
        (f"FROM python:{ANCIENT}", f"python:{ANCIENT}"),
        (f"envlist = {tag(ANCIENT)}", tag(ANCIENT)),
        (f"#!/usr/bin/python{ANCIENT}", f"python{ANCIENT}"),
        (f"FROM python:{NEXT}-slim", f"python:{NEXT}-slim"),
    ],
)
def test_older_and_newer_versions_are_both_drift(tmp_path: Path, line: str, reported: str) -> None:
    assert one_line(tmp_path, line) == [reported]


@pytest.mark.parametrize(
    "line",
    [
        "black==26.10.1",
        "      - uses: actions/setup-python@v5",
        f"curl -O https://www.python.org/ftp/python/{OLD}.0/Python-{OLD}.0.tgz",
        f"host = 10.{OLD}.4",
        f'tomli==2.0.1 ; python_version < "{OLD}"',
        f'exceptiongroup ; python_version == "{OLD}"',
        f"Python {OLD} was the previous release.",
        "python-version: ${{ matrix.python-version }}",
        "python-version-file: .python-version",
        "    'Programming Language :: Python :: 3 :: Only',",
        "FROM python:3-slim",
        "RUN python3 -m pip install .",
        "python_version = read_python_version(root)",
        'requires-python = ">=3.x"',
        f'requires-python = ">={OLD} || >=4"',
        "requires-python = ",
        'requires-python = ","',
        f"wheel name foo-1.0-{tag(OLD)}_x86_64.whl uses an underscore",
    ],
)
def test_versions_of_other_things_are_not_pins(tmp_path: Path, line: str) -> None:
    assert one_line(tmp_path, line) == []


def test_every_entry_of_an_inline_list_is_checked(tmp_path: Path) -> None:
    line = f"python-version: ['{OLD}', '{PROJECT}', \"{NEXT}\"]"
    assert one_line(tmp_path, line) == [f"python-version: '{OLD}'", f'python-version: "{NEXT}"']


def test_every_entry_of_a_yaml_block_list_is_checked(tmp_path: Path) -> None:
    workflow = (
        "jobs:\n"
        "  test:\n"
        "    strategy:\n"
        "      matrix:\n"
        "        python-version:  # the versions\n"
        f'          - "{OLD}"\n'
        "\n"
        "          # a comment inside the list\n"
        f"          - '{PROJECT}'\n"
        f"          - python{ANCIENT}\n"
        "        os: [ubuntu-latest]\n"
        f'          - "{NEXT}"\n'
    )
    root = make_tree(tmp_path, {".github/workflows/ci.yml": workflow})
    assert find_drift(root) == [
        Finding(".github/workflows/ci.yml", 6, f'python-version: "{OLD}"'),
        Finding(".github/workflows/ci.yml", 10, f"python-version: python{ANCIENT}"),
    ]


def test_a_block_list_may_sit_at_the_key_indentation(tmp_path: Path) -> None:
    content = f'python_version:\n- "{OLD}"\n- "{PROJECT}"\nother: 1\n- "{NEXT}"\n'
    root = make_tree(tmp_path, {"cfg.yml": content})
    assert find_drift(root) == [Finding("cfg.yml", 2, f'python_version: "{OLD}"')]


def test_a_nested_mapping_under_a_python_key_is_not_a_list(tmp_path: Path) -> None:
    content = f"python:\n  steps:\n    - uses: x\n      - {OLD}\n"
    assert texts(make_tree(tmp_path, {"w.yml": content})) == []


def test_every_pin_on_a_line_is_reported_once_in_column_order(tmp_path: Path) -> None:
    line = f"RUN python{NEXT} -V && python{OLD} -V && python{PROJECT} -V"
    assert one_line(tmp_path, line) == [f"python{NEXT}", f"python{OLD}"]


@pytest.mark.parametrize(
    ("line", "reported"),
    [
        (f"image: python:{OLD}", f"python:{OLD}"),
        (f"python: python{OLD}", f"python: python{OLD}"),
        (f"python-version: pypy{OLD}", f"python-version: pypy{OLD}"),
    ],
)
def test_overlapping_contexts_report_a_pin_once(tmp_path: Path, line: str, reported: str) -> None:
    assert one_line(tmp_path, line) == [reported]


@pytest.mark.parametrize(
    "spec",
    [
        f">={PROJECT}",
        f">={PROJECT},<{NEXT}",
        f">={PROJECT}, <{NEXT}.0",
        f">={PROJECT} <{NEXT}",
        f"=={PROJECT}.*",
        f"=={PROJECT}",
        f"==={PROJECT}",
        f"~={PROJECT}",
        f"~={PROJECT}.1",
        f"^{PROJECT}",
        f"~{PROJECT}",
        f">{PROJECT}",
        f">={PROJECT}.1",
        f"<={PROJECT}",
        f"<{PROJECT}.5",
        f">={PROJECT},!={OLD}.*",
        f">={PROJECT},!={PROJECT}.0",
        ">=3,<4",
        "==3.*",
        "~3",
    ],
)
def test_requires_python_that_agrees(tmp_path: Path, spec: str) -> None:
    assert one_line(tmp_path, f'requires-python = "{spec}"') == []


@pytest.mark.parametrize(
    "spec",
    [
        f">={OLD}",
        f">={OLD},<{NEXT}",
        f">={PROJECT},<{AFTER_NEXT}",
        f"<={NEXT}",
        f"<{PROJECT}",
        f"=={NEXT}.*",
        f"~={OLD}",
        f"^{OLD}",
        f">={PROJECT},!={PROJECT}.*",
        f">={PROJECT},!=3.*",
        "<3",
        "==2.*",
        ">=4",
        f"{NEXT}",
    ],
)
def test_requires_python_that_drifts(tmp_path: Path, spec: str) -> None:
    line = f'requires-python = "{spec}"'
    assert one_line(tmp_path, line) == [line]


def test_specifier_spellings_of_setup_cfg_setup_py_and_metadata(tmp_path: Path) -> None:
    files = {
        "setup.cfg": f"[options]\npython_requires = >={OLD}, <4\n",
        "setup.py": f'setup(python_requires=">={OLD}")\n',
        "PKG-INFO": f"Requires-Python: <{NEXT},>={PROJECT}\n",
        "pyproject.toml": f'[tool.poetry.dependencies]\npython = "^{OLD}"  # was {PROJECT}\n',
    }
    assert find_drift(make_tree(tmp_path, files)) == [
        Finding("pyproject.toml", 2, f'python = "^{OLD}"'),
        Finding("setup.cfg", 2, f"python_requires = >={OLD}, <4"),
        Finding("setup.py", 1, f'python_requires=">={OLD}"'),
    ]


def test_a_nested_python_version_file_is_checked(tmp_path: Path) -> None:
    files = {
        "sub/.python-version": f"# pinned for the tool\n{OLD}\n",
        "other/.python-version": f"{PROJECT}.4\n",
        "pypy/.python-version": "system\n",
    }
    assert find_drift(make_tree(tmp_path, files)) == [Finding("sub/.python-version", 2, OLD)]


def test_runtime_txt_and_tool_versions_are_checked(tmp_path: Path) -> None:
    files = {
        "runtime.txt": f"python-{OLD}.4\n",
        "app/runtime.txt": f"python-{PROJECT}.4\n",
        ".tool-versions": f"nodejs 20.11.0\npython {OLD}.4 {PROJECT}.1\n",
    }
    assert find_drift(make_tree(tmp_path, files)) == [
        Finding(".tool-versions", 2, f"python {OLD}.4"),
        Finding("runtime.txt", 1, f"python-{OLD}.4"),
    ]


def test_the_marker_skips_a_line(tmp_path: Path) -> None:
    files = {
        "Dockerfile": f"FROM python:{OLD}-slim  # {MARKER}\nFROM python:{NEXT}-slim\n",
        "ci.yml": f"python-version:\n  - '{OLD}'  # {MARKER}\n  - '{NEXT}'\n",
        "sub/.python-version": f"{OLD}  # {MARKER}\n",
    }
    assert find_drift(make_tree(tmp_path, files)) == [
        Finding("Dockerfile", 2, f"python:{NEXT}-slim"),
        Finding("ci.yml", 3, f"python-version: '{NEXT}'"),
    ]


def exclusion_tree(root: Path) -> Path:
    return make_tree(
        root,
        {
            "Dockerfile": f"FROM python:{OLD}-slim\n",
            "tests/fixtures/old/Dockerfile": f"FROM python:{OLD}-slim\n",
            "tests/fixtures/old/.python-version": f"{OLD}\n",
            "docker/wheelhouse/index.txt": f"foo-1.0-{tag(OLD)}-none-any.whl\n",
            "data.bin": f"FROM python:{OLD}\n".encode() + b"\0\1",
            "big.txt": f"FROM python:{OLD}\n" + "x" * (1024 * 1024),
        },
    )


def test_fixtures_wheelhouse_binary_and_large_files_are_skipped_in_a_walk(tmp_path: Path) -> None:
    root = exclusion_tree(tmp_path)
    assert find_drift(root) == [Finding("Dockerfile", 1, f"python:{OLD}-slim")]


def test_fixtures_wheelhouse_binary_and_large_files_are_skipped_in_a_checkout(
    tmp_path: Path,
) -> None:
    root = exclusion_tree(tmp_path)
    git(root, "init", "-q")
    git(root, "add", "-A")
    assert find_drift(root) == [Finding("Dockerfile", 1, f"python:{OLD}-slim")]


def test_a_checkout_scans_only_tracked_files(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path,
        {
            "tracked/Dockerfile": f"FROM python:{OLD}\n",
            "gone.txt": f"FROM python:{OLD}\n",
            "untracked.txt": f"FROM python:{NEXT}\n",
            ".venv/lib/site.txt": f"python{NEXT}\n",
        },
    )
    git(root, "init", "-q")
    git(root, "add", ".python-version", "tracked/Dockerfile", "gone.txt", ".venv/lib/site.txt")
    git(root, "commit", "-q", "-m", "tree")
    (root / "gone.txt").unlink()
    assert find_drift(root) == [
        Finding(".venv/lib/site.txt", 1, f"python{NEXT}"),
        Finding("tracked/Dockerfile", 1, f"python:{OLD}"),
    ]


def test_a_checkout_ignores_a_git_dir_set_by_a_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_tree(tmp_path / "other", {"x.txt": f"python{NEXT}\n"})
    git(other, "init", "-q")
    git(other, "add", "-A")
    root = make_tree(tmp_path / "root", {"a.txt": f"python{OLD}\n"})
    git(root, "init", "-q")
    git(root, "add", "-A")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert find_drift(root) == [Finding("a.txt", 1, f"python{OLD}")]


def test_a_walk_skips_tool_directories_and_symlinks(tmp_path: Path) -> None:
    files = {
        f"{folder}/x.txt": f"python{OLD}\n"
        for folder in (".venv", "venv", "node_modules", ".tox", "build", "dist", "reports")
    }
    files["src/pkg.egg-info/PKG-INFO"] = f"Requires-Python: >={OLD}\n"
    files["src/pkg/__pycache__/x.txt"] = f"python{OLD}\n"
    files["src/pkg/tool.py"] = f'EXE = "python{OLD}"\n'
    root = make_tree(tmp_path, files)
    (root / "link.py").symlink_to(root / "src/pkg/tool.py")
    assert find_drift(root) == [Finding("src/pkg/tool.py", 1, f"python{OLD}")]


def test_an_unreadable_file_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path, {"a.txt": f"python{OLD}\n", "b.txt": f"python{NEXT}\n"})
    real = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path.name == "a.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert find_drift(root) == [Finding("b.txt", 1, f"python{NEXT}")]


def test_without_git_the_tree_is_walked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path, {"a/b/Dockerfile": f"FROM python:{OLD}\n"})
    git(root, "init", "-q")
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    assert find_drift(root) == [Finding("a/b/Dockerfile", 1, f"python:{OLD}")]


def test_an_explicit_version_overrides_the_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"a.txt": f"python{OLD}\npython{PROJECT}\n"}, version=None)
    assert find_drift(root, OLD) == [Finding("a.txt", 2, f"python{PROJECT}")]


def test_a_project_version_without_a_minor_is_an_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {}, version="3")
    with pytest.raises(ConfigError, match="major.minor"):
        find_drift(root)


def test_a_finding_prints_as_path_line_text() -> None:
    assert str(Finding("docker/Dockerfile.ci", 3, f"python:{OLD}-slim")) == (
        f"docker/Dockerfile.ci:3: python:{OLD}-slim"
    )


def test_main_reports_agreement_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_tree(tmp_path, {"Dockerfile": f"FROM python:{PROJECT}-slim\n", "README": "hi\n"})
    assert main([str(root)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"python version: every pin agrees with .python-version ({PROJECT}), 2 files scanned\n"
    )
    assert err == ""


def test_main_defaults_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(make_tree(tmp_path, {"a.txt": "nothing\n"}))
    assert main([]) == 0
    assert capsys.readouterr().out.endswith("1 files scanned\n")


def test_main_lists_every_drift_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "docker/Dockerfile": f"FROM python:{OLD}-slim\nRUN python{NEXT} -V\n",
        "pyproject.toml": f'requires-python = ">={OLD}"\n',
    }
    assert main([str(make_tree(tmp_path, files))]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"docker/Dockerfile:1: python:{OLD}-slim",
        f"docker/Dockerfile:2: python{NEXT}",
        f'pyproject.toml:1: requires-python = ">={OLD}"',
        f"python version: 3 pins disagree with .python-version ({PROJECT}): change them, or add"
        f" '{MARKER}' to a line that must keep one",
    ]
    assert err == ""


def test_main_without_python_version_prints_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_tree(tmp_path, {"a.txt": "x\n"}, version=None)
    assert main([str(root)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"ciparity: error: {root / '.python-version'} is missing")
    assert err.count("\n") == 1


@pytest.mark.parametrize("content", ["", "three.twelve"])
def test_main_with_an_unreadable_python_version_prints_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    (tmp_path / ".python-version").write_text(content, encoding="utf-8")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ciparity: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_main_with_a_root_that_is_not_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == (
        f"ciparity: error: {tmp_path / 'missing'} is not a directory\n"
    )


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_running_the_module_exits_with_mains_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_tree(tmp_path, {"a.txt": f"python{OLD}\n"})
    monkeypatch.setattr(sys, "argv", ["pyversion", str(root)])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("ciparity.pyversion", run_name="__main__")
    assert exited.value.code == 1
    assert capsys.readouterr().out.startswith(f"a.txt:1: python{OLD}\n")


def test_the_command_line_runs_in_a_fresh_interpreter(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"a.txt": f"python{OLD}\n"}, version=None)
    completed = subprocess.run(
        [sys.executable, "-m", "ciparity.pyversion", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )  # nosec B603
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.startswith("ciparity: error: ")
    assert completed.stderr.count("\n") == 1
