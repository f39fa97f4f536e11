"""The one configuration resolver.

Order, later wins: built-in defaults, then `[tool.ciparity]` in pyproject.toml, then CIPARITY_*
environment variables, then task flags. An unknown setting is an error, never ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ciparity.errors import ConfigError
from ciparity.ownership import Owner

WORKSPACE_MODES = ("auto", "bind", "copy")
OFFLINE_MODES = ("auto", "on", "off")
# Where the self-hosted image's runner agent comes from (runner/Dockerfile, RUNNER_AGENT).
RUNNER_AGENTS = ("auto", "download", "local", "standin")
# The images' Python, for a repository that states none (act-ci needs no .python-version: the
# workflow, not ciparity, decides which Python a job uses).
DEFAULT_PYTHON = "3.12"


@dataclass(frozen=True)
class Config:
    """Every setting a task or service reads; built only by `load`."""

    root: Path
    python_version: str
    package: str = ""
    src_dirs: tuple[str, ...] = ("src",)
    test_dirs: tuple[str, ...] = ("tests",)
    image: str = "ciparity-ci:latest"
    runner_image: str = "ciparity-runner:latest"
    self_hosted_image: str = "ciparity-runner:self-hosted"
    runner_agent: str = "auto"
    base_image: str = ""
    workspace_mode: str = "auto"
    env_allow: tuple[str, ...] = ()
    offline: str = "auto"
    host_python: str = ""
    coverage_min: int = 85
    test_timeout: int = 300
    workers: str = "auto"
    ca_bundle: str = ""
    runner_packages: tuple[str, ...] = ()
    actions_mirror: str = ""
    actions_url: str = "https://github.com"
    reports: str = "reports"
    debug: bool = False
    docker: str = "docker"
    settings_source: Mapping[str, str] = field(default_factory=dict, compare=False)
    # The run this configuration's objects belong to (a new one unless inherited; see ownership).
    owner: Owner | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.owner is None:
            object.__setattr__(self, "owner", Owner.for_checkout(self.root))

    @property
    def run(self) -> Owner:
        """The run every container, volume and network of this task is labelled with."""
        return self.owner or Owner.for_checkout(self.root)  # always set by __post_init__

    @property
    def reports_dir(self) -> Path:
        path = Path(self.reports)
        return path if path.is_absolute() else self.root / path

    @property
    def base(self) -> str:
        return self.base_image or f"python:{self.python_version}-slim"


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


# A Debian package name (policy 5.6.1), optionally `=version`: nothing a shell would interpret.
_DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")


def _packages(value: Any) -> tuple[str, ...]:
    names = _names(value if isinstance(value, (list, tuple)) else str(value).replace(" ", ","))
    bad = [name for name in names if not _DEBIAN_PACKAGE.match(name)]
    if bad:
        raise ValueError(f"not a Debian package name: {bad[0]!r}")
    return names


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if isinstance(value, bool):
            text = "on" if value else "off"
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _str(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value)


def _url(value: Any) -> str:
    text = _str(value).strip()
    if not text.startswith(("https://", "http://", "file://", "ssh://", "git://")):
        raise ValueError(
            f"expected an https://, http://, file://, ssh:// or git:// URL, got {value!r}"
        )
    return text


PARSERS: dict[str, Callable[[Any], Any]] = {
    "package": _str,
    "src_dirs": _names,
    "test_dirs": _names,
    "image": _str,
    "runner_image": _str,
    "self_hosted_image": _str,
    "runner_agent": _choice(RUNNER_AGENTS),
    "base_image": _str,
    "workspace_mode": _choice(WORKSPACE_MODES),
    "env_allow": _names,
    "offline": _choice(OFFLINE_MODES),
    "host_python": _str,
    "coverage_min": _int,
    "test_timeout": _int,
    "workers": _str,
    "ca_bundle": _str,
    "runner_packages": _packages,
    "actions_mirror": _str,
    "actions_url": _url,
    "reports": _str,
    "debug": parse_bool,
    "docker": _str,
}


def env_name(key: str) -> str:
    """The environment variable that sets `key`."""
    return "CIPARITY_" + key.upper()


def read_python_version(root: Path, required: bool = True) -> str:
    """The one Python version of the project, from .python-version (DEFAULT_PYTHON if that file
    is missing and not `required`)."""
    path = root / ".python-version"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not required:
            return DEFAULT_PYTHON
        raise ConfigError(f"{path} is missing: write the project's Python version (3.12) in it")
    if not text or not all(part.isdigit() for part in text.split(".")):
        raise ConfigError(f"{path}: expected a version such as 3.12, got {text!r}")
    return text


def _pyproject_table(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    table = data.get("tool", {}).get("ciparity", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.ciparity] must be a table")
    return {key.replace("-", "_"): value for key, value in table.items()}


def load(
    root: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    require_python: bool = True,
) -> Config:
    """Resolve the configuration for the checkout at `root` (default: the current directory).

    `require_python=False` (act-ci, clean) accepts a checkout without .python-version.
    """
    root_path = Path(root or os.getcwd()).resolve()
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("pyproject.toml [tool.ciparity]", _pyproject_table(root_path)),
        (
            "environment",
            {key: environ[env_name(key)] for key in PARSERS if env_name(key) in environ},
        ),
        ("task flag", {k: v for k, v in (overrides or {}).items() if v is not None}),
    ]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, raw in layer.items():
            parser = PARSERS.get(key)
            if parser is None:
                known = ", ".join(sorted(PARSERS))
                raise ConfigError(f"{source}: unknown setting {key!r} (known: {known})")
            try:
                values[key] = parser(raw)
            except (TypeError, ValueError) as exc:
                where = env_name(key) if source == "environment" else key
                raise ConfigError(f"{source}: {where}: {exc}") from exc
            sources[key] = source
    config = Config(
        root=root_path,
        python_version=read_python_version(root_path, require_python),
        settings_source=sources,
        owner=Owner.for_checkout(root_path, environ),
        **values,
    )
    if not config.package:
        config = dataclasses.replace(config, package=_guess_package(config))
    return config


def _guess_package(config: Config) -> str:
    for src in config.src_dirs:
        folder = config.root / src
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                if (child / "__init__.py").exists():
                    return child.name
    return ""


def ignore_reports(config: Config) -> None:
    """Create the reports folder with a `.gitignore` of `*` in it (and in its top folder under
    the checkout), so `git add -A` never stages what ciparity writes there."""
    folders = [config.reports_dir]
    try:
        relative = config.reports_dir.relative_to(config.root)
    except ValueError:
        relative = None
    if relative is not None:
        if not relative.parts:
            return  # reports in the checkout's root: ignoring everything there would be wrong
        folders.insert(0, config.root / relative.parts[0])
    for folder in folders:
        marker = folder / ".gitignore"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not marker.exists():
                marker.write_text("*\n", encoding="utf-8")
        except OSError:
            return  # a read-only checkout: the check's own output error says more
