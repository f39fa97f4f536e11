"""Tests for ciparity.config: defaults, then pyproject, then environment, then task flags."""

from __future__ import annotations

import dataclasses
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import PY, write_checkout

from ciparity import config
from ciparity.config import DEFAULT_PYTHON, Config, ignore_reports, load
from ciparity.errors import ConfigError

PYPROJECT = "pyproject.toml [tool.ciparity]"
KNOWN = ", ".join(sorted(config.PARSERS))
MAJOR, MINOR = (int(p) for p in PY.split("."))
NEXT = f"{MAJOR}.{MINOR + 1}"


def pyproject(root: Path, table: str) -> None:
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "demo"\n\n[tool.ciparity]\n{table}\n', encoding="utf-8"
    )


def test_defaults(checkout: Path) -> None:
    cfg = load(checkout, environ={})
    assert cfg == Config(root=checkout, python_version=PY, package="demo")
    assert cfg.settings_source == {}
    assert (cfg.image, cfg.workspace_mode, cfg.offline, cfg.coverage_min) == (
        "ciparity-ci:latest",
        "auto",
        "auto",
        85,
    )
    assert cfg.reports_dir == checkout / "reports"
    assert cfg.base == f"python:{PY}-slim"


def test_root_defaults_to_the_current_folder(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(checkout)
    assert load(environ={}).root == checkout


def test_root_is_resolved(checkout: Path) -> None:
    assert load(checkout / "src" / "..", environ={}).root == checkout


def test_pyproject_layer(checkout: Path) -> None:
    pyproject(
        checkout,
        'package = "other"\nsrc-dirs = ["lib", "src"]\ncoverage_min = 90\noffline = true\n'
        'workspace_mode = "BIND"\nenv_allow = "FOO, BAR,"\ndebug = "yes"\nimage = "x:1"\n'
        "test_timeout = 60\nworkers = 4",
    )
    cfg = load(checkout, environ={})
    assert (cfg.package, cfg.src_dirs, cfg.coverage_min, cfg.offline) == (
        "other",
        ("lib", "src"),
        90,
        "on",
    )
    assert (cfg.workspace_mode, cfg.env_allow, cfg.debug, cfg.image) == (
        "bind",
        ("FOO", "BAR"),
        True,
        "x:1",
    )
    assert (cfg.test_timeout, cfg.workers) == (60, "4")
    assert cfg.settings_source == {
        key: PYPROJECT
        for key in (
            "package",
            "src_dirs",
            "coverage_min",
            "offline",
            "workspace_mode",
            "env_allow",
            "debug",
            "image",
            "test_timeout",
            "workers",
        )
    }


def test_pyproject_without_our_table_gives_defaults(checkout: Path) -> None:
    (checkout / "pyproject.toml").write_text('[project]\nname = "demo"\n', encoding="utf-8")
    assert load(checkout, environ={}) == Config(root=checkout, python_version=PY, package="demo")


def test_environment_overrides_pyproject(checkout: Path) -> None:
    pyproject(checkout, 'coverage_min = 90\nimage = "from-pyproject"')
    environ = {
        "CIPARITY_COVERAGE_MIN": "70",
        "CIPARITY_ENV_ALLOW": "X,Y",
        "CIPARITY_OFFLINE": "Off",
        # Variables of ciparity that are not settings (read elsewhere) are not errors here.
        "CIPARITY_MARKERS": "not docker",
        "CIPARITY_REQUIRE_DOCKER": "1",
        "COVERAGE_MIN": "1",
    }
    cfg = load(checkout, environ=environ)
    assert (cfg.coverage_min, cfg.env_allow, cfg.offline, cfg.image) == (
        70,
        ("X", "Y"),
        "off",
        "from-pyproject",
    )
    assert cfg.settings_source == {
        "coverage_min": "environment",
        "env_allow": "environment",
        "offline": "environment",
        "image": PYPROJECT,
    }


def test_task_flags_win_and_none_means_unset(checkout: Path) -> None:
    pyproject(checkout, "coverage_min = 90\ntest_timeout = 10")
    environ = {"CIPARITY_COVERAGE_MIN": "70", "CIPARITY_HOST_PYTHON": "/opt/py"}
    cfg = load(checkout, {"coverage_min": 50, "host_python": None}, environ=environ)
    assert (cfg.coverage_min, cfg.host_python, cfg.test_timeout) == (50, "/opt/py", 10)
    assert cfg.settings_source["coverage_min"] == "task flag"
    assert cfg.settings_source["host_python"] == "environment"


def test_environment_defaults_to_the_process_environment(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIPARITY_IMAGE", "from-env:2")
    assert load(checkout).image == "from-env:2"


def test_unknown_pyproject_key_is_an_error(checkout: Path) -> None:
    pyproject(checkout, 'colour = "blue"')
    with pytest.raises(ConfigError) as info:
        load(checkout, environ={})
    assert info.value.message == f"{PYPROJECT}: unknown setting 'colour' (known: {KNOWN})"
    assert info.value.exit_code == 2


def test_unknown_task_flag_is_an_error(checkout: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(checkout, {"bogus": 1}, environ={})
    assert info.value.message == f"task flag: unknown setting 'bogus' (known: {KNOWN})"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'workspace_mode = "sideways"',
            "workspace_mode: expected one of auto, bind, copy, got 'sideways'",
        ),
        ("workspace_mode = true", "workspace_mode: expected one of auto, bind, copy, got True"),
        ('offline = "maybe"', "offline: expected one of auto, on, off, got 'maybe'"),
        ('coverage_min = "abc"', "coverage_min: invalid literal for int() with base 10: 'abc'"),
        ("coverage_min = true", "coverage_min: expected a whole number, got True"),
        ('debug = "maybe"', "debug: expected true or false, got 'maybe'"),
        ('image = ["a"]', "image: expected a string, got ['a']"),
        ("package = false", "package: expected a string, got False"),
    ],
)
def test_bad_pyproject_values(checkout: Path, table: str, message: str) -> None:
    pyproject(checkout, table)
    with pytest.raises(ConfigError) as info:
        load(checkout, environ={})
    assert info.value.message == f"{PYPROJECT}: {message}"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CIPARITY_WORKSPACE_MODE", "sideways", "expected one of auto, bind, copy, got 'sideways'"),
        ("CIPARITY_COVERAGE_MIN", "abc", "invalid literal for int() with base 10: 'abc'"),
        ("CIPARITY_DEBUG", "maybe", "expected true or false, got 'maybe'"),
    ],
)
def test_bad_environment_values_name_the_variable(
    checkout: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(checkout, environ={name: value})
    assert info.value.message == f"environment: {name}: {message}"


def test_bad_task_flag_value(checkout: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(checkout, {"debug": "maybe"}, environ={})
    assert info.value.message == "task flag: debug: expected true or false, got 'maybe'"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), ("1", True), (" ON ", True), ("no", False), ("", False)],
)
def test_bool_values(checkout: Path, raw: object, expected: bool) -> None:
    assert load(checkout, {"debug": raw}, environ={}).debug is expected


def test_names_accept_lists_and_commas(checkout: Path) -> None:
    cfg = load(checkout, {"env_allow": ["A", " ", "B "], "test_dirs": ""}, environ={})
    assert (cfg.env_allow, cfg.test_dirs) == (("A", "B"), ())


def test_string_settings_accept_numbers(checkout: Path) -> None:
    assert load(checkout, {"workers": 8}, environ={}).workers == "8"


def test_missing_python_version(tmp_path: Path) -> None:
    path = tmp_path / ".python-version"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, environ={})
    assert info.value.message == (
        f"{path} is missing: write the project's Python version (3.12) in it"
    )


@pytest.mark.parametrize("text", ["3.x", "", "  \n", "three", "3..12"])
def test_garbled_python_version(tmp_path: Path, text: str) -> None:
    path = tmp_path / ".python-version"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config.read_python_version(tmp_path)
    assert info.value.message == (f"{path}: expected a version such as 3.12, got {text.strip()!r}")


def test_python_version_is_stripped(tmp_path: Path) -> None:
    (tmp_path / ".python-version").write_text(f"  {NEXT}\n\n", encoding="utf-8")
    assert config.read_python_version(tmp_path) == NEXT


def test_malformed_toml(checkout: Path) -> None:
    text = "[tool.ciparity\npackage = 1\n"
    (checkout / "pyproject.toml").write_text(text, encoding="utf-8")
    with pytest.raises(tomllib.TOMLDecodeError) as parsed:
        tomllib.loads(text)
    with pytest.raises(ConfigError) as info:
        load(checkout, environ={})
    assert info.value.message == f"{checkout / 'pyproject.toml'}: {parsed.value}"


def test_our_table_must_be_a_table(checkout: Path) -> None:
    (checkout / "pyproject.toml").write_text("[tool]\nciparity = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(checkout, environ={})
    assert info.value.message == f"{checkout / 'pyproject.toml'}: [tool.ciparity] must be a table"


def test_package_is_guessed_from_the_first_package_in_src(tmp_path: Path) -> None:
    root = write_checkout(tmp_path / "c")
    for name in ("zeta", "alpha"):
        (root / "src" / name).mkdir()
        (root / "src" / name / "__init__.py").write_text("", encoding="utf-8")
    (root / "src" / "aaa_not_a_package").mkdir()
    (root / "src" / "aaa_module.py").write_text("", encoding="utf-8")
    assert load(root, environ={}).package == "alpha"


def test_package_guess_walks_the_src_dirs_in_order(tmp_path: Path) -> None:
    root = write_checkout(tmp_path / "c")
    (root / "lib" / "zlib_pkg").mkdir(parents=True)
    (root / "lib" / "zlib_pkg" / "__init__.py").write_text("", encoding="utf-8")
    cfg = load(root, {"src_dirs": "missing,lib,src"}, environ={})
    assert cfg.package == "zlib_pkg"


def test_no_package_when_nothing_to_guess(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    (root / ".python-version").write_text(PY, encoding="utf-8")
    (root / "src").mkdir()
    (root / "src" / "loose.py").write_text("", encoding="utf-8")
    assert load(root, environ={}).package == ""


def test_explicit_package_is_kept(checkout: Path) -> None:
    assert load(checkout, {"package": "mine"}, environ={}).package == "mine"


def test_reports_dir_relative_and_absolute(checkout: Path, tmp_path: Path) -> None:
    assert load(checkout, {"reports": "out/rep"}, environ={}).reports_dir == (
        checkout / "out" / "rep"
    )
    elsewhere = tmp_path / "elsewhere"
    assert load(checkout, {"reports": str(elsewhere)}, environ={}).reports_dir == elsewhere


def test_base_follows_the_python_version_unless_set(tmp_path: Path) -> None:
    root = write_checkout(tmp_path / "c", version=NEXT)
    assert load(root, environ={}).base == f"python:{NEXT}-slim"
    assert load(root, {"base_image": "mirror/py:x"}, environ={}).base == "mirror/py:x"


def test_env_name() -> None:
    assert config.env_name("coverage_min") == "CIPARITY_COVERAGE_MIN"


def test_every_setting_has_a_parser_and_a_field() -> None:
    fields = {f.name for f in dataclasses.fields(Config)}
    assert set(config.PARSERS) == fields - {"root", "python_version", "settings_source", "owner"}


def test_config_is_frozen(checkout: Path) -> None:
    cfg = load(checkout, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image = "other"  # type: ignore[misc]


def test_runner_packages_from_pyproject_and_environment(checkout: Path) -> None:
    pyproject(checkout, 'runner_packages = ["gh", "yq"]')
    assert load(checkout, environ={}).runner_packages == ("gh", "yq")
    env = {"CIPARITY_RUNNER_PACKAGES": "postgresql-client, libpq-dev=17.6-1 shellcheck"}
    assert load(checkout, environ=env).runner_packages == (
        "postgresql-client",
        "libpq-dev=17.6-1",
        "shellcheck",
    )


@pytest.mark.parametrize("raw", ["gh;rm -rf /", "$(id)", "-y", "Gh", "a b`c`"])
def test_runner_packages_must_be_debian_package_names(checkout: Path, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(checkout, environ={"CIPARITY_RUNNER_PACKAGES": raw})
    assert caught.value.message.startswith(
        "environment: CIPARITY_RUNNER_PACKAGES: not a Debian package name: "
    )


def test_python_version_is_optional_when_not_required(tmp_path: Path) -> None:
    cfg = load(tmp_path, environ={}, require_python=False)
    assert cfg.python_version == DEFAULT_PYTHON == "3.12"
    (tmp_path / ".python-version").write_text("3.11\n")
    assert load(tmp_path, environ={}, require_python=False).python_version == "3.11"
    (tmp_path / ".python-version").write_text("three\n")
    with pytest.raises(ConfigError, match="expected a version such as 3.12"):
        load(tmp_path, environ={}, require_python=False)


def test_ignore_reports_writes_a_star_gitignore_once(tmp_path: Path) -> None:
    cfg = load(tmp_path, {"reports": "reports/lint"}, environ={}, require_python=False)
    ignore_reports(cfg)
    assert (tmp_path / "reports" / ".gitignore").read_text() == "*\n"
    assert (tmp_path / "reports" / "lint" / ".gitignore").read_text() == "*\n"
    (tmp_path / "reports" / ".gitignore").write_text("mine\n")
    ignore_reports(cfg)
    assert (tmp_path / "reports" / ".gitignore").read_text() == "mine\n", "never overwritten"


def test_ignore_reports_never_ignores_the_checkout_itself(tmp_path: Path) -> None:
    ignore_reports(load(tmp_path, {"reports": "."}, environ={}, require_python=False))
    assert not (tmp_path / ".gitignore").exists()


def test_git_add_stages_nothing_ciparity_wrote(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    cfg = load(tmp_path, environ={}, require_python=False)
    ignore_reports(cfg)
    nested = tmp_path / "reports" / ".act" / "last-failed"
    nested.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    (tmp_path / "reports" / "act.log").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
    staged = subprocess.run(
        ["git", "-C", str(tmp_path), "diff", "--cached", "--name-only"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert staged == ""
