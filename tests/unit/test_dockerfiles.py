"""Tests of the repository's Dockerfiles as text: the stand-in base carries what their apt steps
install, the Python version comes from .python-version, the CI image's stages run in recipe
order and as a non-root user, and no secret is ever an ARG or ENV."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PY, REPO

from ciparity import checks, images

DOCKERFILE_CI = REPO / "docker" / "Dockerfile.ci"
DOCKERFILES = checks.dockerfiles(REPO)
SHELL_STOPS = {"&&", "||", ";", "|", "}", "{"}
SECRET_WORDS = ("TOKEN", "PASSWORD", "SECRET")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """The file's instructions, continuation lines joined and comment lines dropped."""
    found: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not parts:
            start = number
        continued = line.endswith("\\")
        parts.append(line[:-1].strip() if continued else line)
        if not continued:
            keyword, _, args = " ".join(p for p in parts if p).partition(" ")
            found.append(Instruction(start, keyword.upper(), args.strip()))
            parts = []
    return found


def words_after(command: str, *lead: str) -> list[str]:
    """The operands after `lead` (e.g. apt-get install) up to the next shell operator."""
    words = command.split()
    operands: list[str] = []
    for i in range(len(words) - len(lead) + 1):
        if tuple(words[i : i + len(lead)]) == lead:
            for word in words[i + len(lead) :]:
                if word in SHELL_STOPS or word.startswith((">", "2>")):
                    break
                if not word.startswith("-"):
                    operands.append(word.rstrip(";"))
    return operands


def stages(path: Path) -> list[tuple[str, str]]:
    """(image, stage name) of every FROM, in order."""
    found = []
    for ins in instructions(path):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            found.append((words[0], name))
    return found


def test_the_repository_has_its_ci_dockerfile() -> None:
    assert "docker/Dockerfile.ci" in DOCKERFILES


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_stand_in_base_carries_every_apt_package(name: str) -> None:
    wanted = [
        package
        for ins in instructions(REPO / name)
        if ins.keyword == "RUN"
        for package in words_after(ins.args, "apt-get", "install")
        # A repository's own additions (runner_packages) come from Debian's archive by design.
        if not package.lstrip('"').startswith("$")
    ]
    present = set(images.STANDIN_PREINSTALLED) | set(images.STANDIN_RUNTIME)
    assert set(wanted) <= present, set(wanted) - present


@pytest.mark.parametrize("name", DOCKERFILES)
def test_apt_steps_skip_only_when_every_package_is_present(name: str) -> None:
    compared = 0
    for ins in instructions(REPO / name):
        installed = words_after(ins.args, "apt-get", "install")
        checked = words_after(ins.args, "dpkg", "-s")
        if installed and checked:
            assert sorted(checked) == sorted(installed)
            compared += 1
    if name == "docker/Dockerfile.ci":
        assert compared == 1


def test_ci_dockerfile_apt_step_is_parsed() -> None:
    (run,) = [i for i in instructions(DOCKERFILE_CI) if "apt-get install" in i.args]
    assert words_after(run.args, "apt-get", "install")[:2] == ["gcc", "libc6-dev"]


def test_python_version_arg_is_the_project_s() -> None:
    args = [i.args for i in instructions(DOCKERFILE_CI) if i.keyword == "ARG"]
    versions = [a.split("=", 1)[1] for a in args if a.startswith("PYTHON_VERSION=")]
    assert versions == [PY]


def test_base_image_is_the_slim_python_of_that_version() -> None:
    assert stages(DOCKERFILE_CI)[0] == ("python:${PYTHON_VERSION}-slim", "system")
    assert (
        next(i for i in instructions(DOCKERFILE_CI) if i.keyword != "ARG").keyword == "FROM"
    ), "the version ARG must come before the first FROM to be usable there"


def test_final_stage_is_ci_and_runs_as_a_numeric_non_root_user() -> None:
    assert stages(DOCKERFILE_CI)[-1][1] == "ci"
    found = instructions(DOCKERFILE_CI)
    last_from = max(i.line for i in found if i.keyword == "FROM")
    users = [i.args for i in found if i.keyword == "USER" and i.line > last_from]
    assert users, "the ci stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid == "1000"
    assert gid in ("", "1000")


def test_dependency_layers_come_before_the_source() -> None:
    found = instructions(DOCKERFILE_CI)
    pip = [i.line for i in found if i.keyword == "RUN" and "pip install" in i.args]
    copy_src = [
        i.line for i in found if i.keyword == "COPY" and shlex.split(i.args)[0] in ("src", "src/")
    ]
    requirements = [i.line for i in found if i.keyword == "COPY" and "requirements" in i.args]
    assert pip and copy_src and requirements
    assert max(requirements) < min(pip) < min(copy_src)


def _env_and_arg_names(ins: Instruction) -> list[str]:
    if ins.keyword == "ARG":
        return [ins.args.split("=", 1)[0]]
    words = shlex.split(ins.args)
    if words and "=" not in words[0]:
        return [words[0]]  # the legacy `ENV NAME value` form
    return [w.split("=", 1)[0] for w in words]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_secret_is_an_arg_or_env(name: str) -> None:
    names = [
        n
        for ins in instructions(REPO / name)
        if ins.keyword in ("ARG", "ENV")
        for n in _env_and_arg_names(ins)
    ]
    assert names, "no ARG or ENV parsed"
    assert [n for n in names if any(w in n.upper() for w in SECRET_WORDS)] == []


@pytest.mark.parametrize("name", DOCKERFILES)
def test_secrets_are_read_only_from_secret_mounts(name: str) -> None:
    for ins in instructions(REPO / name):
        for sid in re.findall(r"/run/secrets/([\w.-]+)", ins.args):
            assert f"--mount=type=secret,id={sid}" in ins.args, ins.args


def test_the_parser_handles_both_env_forms(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(
        "# comment\nARG A=1\nENV B=2 \\\n    # inside\n    C=3\nENV D four\nRUN x \\\n  y\n",
        encoding="utf-8",
    )
    found = instructions(path)
    assert found == [
        Instruction(2, "ARG", "A=1"),
        Instruction(3, "ENV", "B=2 C=3"),
        Instruction(6, "ENV", "D four"),
        Instruction(7, "RUN", "x y"),
    ]
    assert [_env_and_arg_names(i) for i in found[:3]] == [["A"], ["B", "C"], ["D"]]


def test_only_the_runner_packages_step_installs_names_from_a_variable() -> None:
    variable = [
        ins.args
        for name in DOCKERFILES
        for ins in instructions(REPO / name)
        if ins.keyword == "RUN"
        and any(w.lstrip('"').startswith("$") for w in words_after(ins.args, "apt-get", "install"))
    ]
    assert len(variable) == 1 and "RUNNER_PACKAGES" in variable[0]
