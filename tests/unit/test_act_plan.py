"""act-ci's plan without an engine: which workflows, jobs and matrix entries run, on which images,
and what ciparity and a repository's .actrc tell act."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ciparity import act, act_plan
from ciparity.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PLATFORMS = act_plan.platforms(act_plan.builtin_args("runner:img", "runner:sh"))

# pypa/sampleproject's test.yml: five Pythons on three operating systems.
SAMPLEPROJECT = """name: Test
on: [push, pull_request]
jobs:
  test:
    strategy:
      matrix:
        python: ['3.9', '3.10', '3.11', '3.12', '3.13']  # pyversion: ignore
        platform: [ubuntu-latest, macos-latest, windows-latest]
    runs-on: ${{ matrix.platform }}
    steps:
    - uses: actions/checkout@v4
    - name: Set up Python ${{ matrix.python }}
      uses: actions/setup-python@v5
      with:
        python-version: ${{ matrix.python }}
    - run: python -m nox -s tests-${{ matrix.python }}
"""


def _workflow(root: Path, text: str, name: str = "tests.yml") -> Path:
    path = root / ".github" / "workflows" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- matrix expansion, as GitHub documents it ----


def test_matrix_is_the_product_of_its_keys_in_order() -> None:
    assert act_plan.expand_matrix({"os": ["a", "b"], "py": [1, 2]}) == [
        {"os": "a", "py": 1},
        {"os": "a", "py": 2},
        {"os": "b", "py": 1},
        {"os": "b", "py": 2},
    ]


def test_exclude_removes_every_entry_it_matches_partially() -> None:
    matrix = {"os": ["a", "b"], "py": [1, 2], "exclude": [{"os": "a"}, {"os": "b", "py": 2}]}
    assert act_plan.expand_matrix(matrix) == [{"os": "b", "py": 1}]


def test_include_follows_githubs_documented_example() -> None:
    matrix = {
        "fruit": ["apple", "pear"],
        "animal": ["cat", "dog"],
        "include": [
            {"color": "green"},
            {"color": "pink", "animal": "cat"},
            {"fruit": "apple", "shape": "circle"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ],
    }
    assert act_plan.expand_matrix(matrix) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_include_only_matrix_and_no_matrix() -> None:
    assert act_plan.expand_matrix({"include": [{"a": 1}, {"a": 2}]}) == [{"a": 1}, {"a": 2}]
    assert act_plan.expand_matrix(None) == [{}]
    assert act_plan.expand_matrix({"os": []}) == [{}]


def test_expression_matrices_are_left_to_act() -> None:
    assert act_plan.expand_matrix("${{ fromJSON(needs.a.outputs.m) }}") is None
    assert act_plan.expand_matrix({"os": "${{ fromJSON(x) }}"}) is None


def test_exclude_of_an_unknown_key_is_refused_like_github_does() -> None:
    with pytest.raises(ConfigError, match="matrix exclude key 'nope'"):
        act_plan.expand_matrix({"os": ["a"], "exclude": [{"nope": 1}]})


# ---- expressions and labels ----


def test_resolve_matrix_expressions() -> None:
    matrix = {"os": "Ubuntu", "py": 3.1, "cfg": {"image": "x"}, "flag": True}
    assert act_plan.resolve("${{ matrix.os }}-latest", matrix) == "Ubuntu-latest"
    assert act_plan.resolve("${{matrix.py}}", matrix) == 3.1
    assert act_plan.resolve("${{ matrix.cfg.image }}", matrix) == "x"
    assert act_plan.resolve("py${{ matrix.flag }}", matrix) == "pytrue"
    assert act_plan.resolve("${{ matrix.missing }}", matrix) == ""
    assert act_plan.resolve(["self-hosted", "${{ matrix.os }}"], matrix) == [
        "self-hosted",
        "Ubuntu",
    ]
    assert act_plan.resolve("${{ github.ref }}", matrix) is None
    assert act_plan.resolve(7, matrix) == 7


def test_entry_names_follow_github() -> None:
    assert act_plan.Entry("w.yml", "test").name == "test"
    entry = act_plan.Entry("w.yml", "test", {"py": 3.1, "os": "ubuntu-latest", "x": True})
    assert entry.name == "test (3.1, ubuntu-latest, true)"


def test_labels_are_matched_case_insensitively_first_mapped_wins() -> None:
    assert act_plan.platform_image(["Ubuntu-Latest"], PLATFORMS) == "runner:img"
    assert act_plan.platform_image(["self-hosted", "linux", "x64"], PLATFORMS) == "runner:sh"
    assert act_plan.platform_image(["ubuntu-20.04"], PLATFORMS) == ""


@pytest.mark.parametrize(
    "spec, ok",
    [
        ("3.12", True),
        ("3.12.4", True),
        ("3.x", True),
        ("3", True),
        ("3.12-dev", True),
        (">=3.9 <3.14", True),
        ("3.9", False),
        ("3.1", False),
        ("3.13", False),
        ("pypy3.10", False),
    ],
)
def test_python_available(spec: str, ok: bool) -> None:
    assert act_plan.python_available(spec, ("3.12",)) is ok


def test_runner_pythons_are_the_runner_images_python() -> None:
    dockerfile = (REPO / "runner" / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(r"^ARG PYTHON_VERSION=(\S+)$", dockerfile, re.M)
    assert found and act_plan.RUNNER_PYTHONS == (found.group(1),)


# ---- planning ----


def test_sampleproject_runs_its_ubuntu_312_entry_and_says_why_not_the_others(
    tmp_path: Path,
) -> None:
    path = _workflow(tmp_path, SAMPLEPROJECT)
    plan = act_plan.plan_workflow(path, PLATFORMS, root=tmp_path)
    running = [e for e in plan.entries if not e.skip]
    assert [e.name for e in running] == ["test (3.12, ubuntu-latest)"]
    reasons = {e.name: e.skip for e in plan.entries if e.skip}
    assert len(reasons) == 14
    assert reasons["test (3.12, macos-latest)"].startswith("macOS runner (macos-latest)")
    assert reasons["test (3.9, windows-latest)"].startswith("Windows runner (windows-latest)")
    assert reasons["test (3.9, ubuntu-latest)"] == (
        "Python 3.9 is not in the runner image's tool cache (3.12)"
        " and cannot be downloaded offline"
    )
    job = plan.planned["jobs"]["test"]
    # act evaluates a matrix-dependent runs-on once, in place: it gets the resolved label.
    assert job["runs-on"] == "ubuntu-latest"
    assert job["strategy"]["matrix"] == {
        "include": [{"python": "3.12", "platform": "ubuntu-latest"}]
    }
    assert plan.data["jobs"]["test"]["runs-on"] == "${{ matrix.platform }}", "original untouched"


def test_os_latest_with_a_capitalised_os(tmp_path: Path) -> None:
    path = _workflow(
        tmp_path,
        """on: push
jobs:
  t:
    runs-on: ${{ matrix.os }}-latest
    strategy:
      matrix:
        os: [Ubuntu, macOS, Windows]
    steps: [{run: "true"}]
""",
    )
    plan = act_plan.plan_workflow(path, PLATFORMS, root=tmp_path)
    assert [(e.name, bool(e.skip)) for e in plan.entries] == [
        ("t (Ubuntu)", False),
        ("t (macOS)", True),
        ("t (Windows)", True),
    ]
    assert plan.planned["jobs"]["t"]["runs-on"] == "ubuntu-latest"


def test_include_exclude_and_continue_on_error_per_entry(tmp_path: Path) -> None:
    path = _workflow(
        tmp_path,
        """on: [push]
jobs:
  t:
    runs-on: ubuntu-latest
    continue-on-error: ${{ matrix.experimental }}
    strategy:
      fail-fast: false
      matrix:
        py: ["3.12", "3.11"]
        experimental: [false]
        exclude: [{py: "3.11"}]
        include: [{py: "3.12", experimental: true, extra: dev}]
    steps:
      - uses: actions/setup-python@v5
        with: {python-version: "${{ matrix.py }}"}
""",
    )
    plan = act_plan.plan_workflow(path, PLATFORMS, root=tmp_path)
    assert [(e.matrix, e.continue_on_error, e.skip) for e in plan.entries] == [
        ({"py": "3.12", "experimental": False}, False, ""),
        ({"py": "3.12", "experimental": True, "extra": "dev"}, True, ""),
    ]
    # Nothing skipped: act gets the job as written.
    assert plan.planned["jobs"]["t"] == plan.data["jobs"]["t"]


def test_empty_container_expression_runs_on_the_runner_a_missing_image_is_skipped(
    tmp_path: Path,
) -> None:
    path = _workflow(
        tmp_path,
        """on: push
jobs:
  t:
    runs-on: ubuntu-latest
    container: ${{ matrix.container }}
    strategy:
      matrix:
        include: [{name: plain}, {name: boxed, container: "ciparity-it-missing/other:2"}]
    steps: [{run: "true"}]
""",
    )
    seen: list[str] = []

    def has_image(image: str) -> bool:
        seen.append(image)
        return False

    plan = act_plan.plan_workflow(path, PLATFORMS, has_image=has_image, root=tmp_path)
    assert [e.skip for e in plan.entries] == [
        "",
        "container image ciparity-it-missing/other:2 is not on this engine: docker pull it first",
    ]
    assert seen == ["ciparity-it-missing/other:2"]
    assert plan.planned["jobs"]["t"]["strategy"]["matrix"] == {"include": [{"name": "plain"}]}


def test_python_version_file_and_unmapped_labels(tmp_path: Path) -> None:
    (tmp_path / ".python-version").write_text("3.11\n")
    path = _workflow(
        tmp_path,
        """on: push
jobs:
  fromfile:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/setup-python@v5
        with: {python-version-file: .python-version}
  retired:
    runs-on: ubuntu-20.04
    steps: [{run: "true"}]
  grouped:
    runs-on: {group: big, labels: [self-hosted, linux]}
    steps: [{run: "true"}]
  unknowable:
    runs-on: ${{ github.event.inputs.runner }}
    steps: [{run: "true"}]
""",
    )
    plan = act_plan.plan_workflow(path, PLATFORMS, root=tmp_path)
    reasons = {e.name: e.skip for e in plan.entries}
    assert reasons["fromfile"].startswith("Python 3.11 is not in the runner image's tool cache")
    assert (
        reasons["retired"]
        == "no runner image for ubuntu-20.04: add `-P ubuntu-20.04=IMAGE` to .actrc"
    )
    assert reasons["grouped"] == "" and reasons["unknowable"] == ""
    # A job with nothing to run is switched off, so act reports it skipped.
    assert plan.planned["jobs"]["retired"]["if"] == "${{ false }}"
    assert "if" not in plan.planned["jobs"]["grouped"]


def test_entries_mapping_to_another_image_than_the_first_are_skipped(tmp_path: Path) -> None:
    path = _workflow(
        tmp_path,
        """on: push
jobs:
  t:
    runs-on: ${{ matrix.runner }}
    strategy: {matrix: {runner: [ubuntu-latest, ubuntu-22.04, self-hosted]}}
    steps: [{run: "true"}]
""",
    )
    plan = act_plan.plan_workflow(path, PLATFORMS, root=tmp_path)
    assert [bool(e.skip) for e in plan.entries] == [False, False, True]
    assert "act gives every entry of a job the image of its first" in plan.entries[2].skip


def test_plan_writes_on_as_on_and_keeps_the_file_name(tmp_path: Path) -> None:
    path = _workflow(tmp_path, SAMPLEPROJECT)
    plan = act_plan.plan([path], PLATFORMS, root=tmp_path)
    out = plan.write(tmp_path / "plan")
    written = (out / "tests.yml").read_text()
    # Quoted, so no YAML 1.1 reader turns the key into `true`; act's YAML 1.2 reads "on".
    assert written.startswith("name: Test\n'on':\n")
    assert yaml.safe_load(written)["on"] == ["push", "pull_request"]


def test_plan_copies_a_workflow_it_does_not_change_byte_for_byte(tmp_path: Path) -> None:
    text = "on: push  # as written\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: []\n"
    path = _workflow(tmp_path, text)
    out = act_plan.plan([path], PLATFORMS, root=tmp_path).write(tmp_path / "plan")
    assert (out / "tests.yml").read_text() == text


def test_select_workflows_runs_every_workflow_the_event_triggers(tmp_path: Path) -> None:
    _workflow(tmp_path, "on: push\njobs: {a: {runs-on: x}}\n", "a.yml")
    _workflow(tmp_path, "on: {pull_request: {branches: [main]}}\njobs: {b: {}}\n", "b.yaml")
    _workflow(tmp_path, "on: [push, pull_request]\njobs: {c: {}}\n", "c.yml")
    names = lambda paths: [p.name for p in paths]  # noqa: E731
    assert names(act_plan.select_workflows(tmp_path, "", "push")) == ["a.yml", "c.yml"]
    assert names(act_plan.select_workflows(tmp_path, "", "pull_request")) == ["b.yaml", "c.yml"]
    assert names(act_plan.select_workflows(tmp_path, "b.yaml", "pull_request")) == ["b.yaml"]
    with pytest.raises(ConfigError, match="^a.yml is not triggered by pull_request$"):
        act_plan.select_workflows(tmp_path, "a.yml", "pull_request")
    with pytest.raises(ConfigError, match=r"^release triggers no workflow here \(none of a.yml"):
        act_plan.select_workflows(tmp_path, "", "release")
    with pytest.raises(ConfigError, match=r"no workflow 'ci.yml' \(known: a.yml, b.yaml, c.yml\)"):
        act_plan.select_workflows(tmp_path, "ci.yml", "push")


def test_no_workflows_at_all(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="push triggers no workflow here"):
        act_plan.select_workflows(tmp_path, "", "push")


# ---- .actrc ----


def test_read_actrc(tmp_path: Path) -> None:
    path = tmp_path / ".actrc"
    path.write_text(
        "# mine\n\n-P ubuntu-latest=$IMG\n--platform=ubuntu-20.04=old:1\n"
        "--container-options --cpus 2\n--pull=true\n  --env   A=b c\n"
    )
    args = act_plan.read_actrc(path, {"IMG": "my:img"})
    assert args == [
        "-P",
        "ubuntu-latest=my:img",
        "--platform",
        "ubuntu-20.04=old:1",
        "--container-options",
        "--cpus 2",
        "--pull=true",
        "--env",
        "A=b c",
    ]
    assert act_plan.read_actrc(tmp_path / "missing") == []


@pytest.mark.parametrize(
    "line, message",
    [
        ("ubuntu-latest=x", r":2: expected a flag such as -P label=image"),
        ("-P ubuntu-latest", r":2: -P needs label=image, got 'ubuntu-latest'"),
        ("-P", r":2: -P needs label=image, got ''"),
        ("--platform =img", r":2: --platform needs label=image"),
        ("--container-options", r":2: --container-options needs a value"),
    ],
)
def test_malformed_actrc_is_one_line_with_its_place(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / ".actrc"
    path.write_text(f"--pull=false\n{line}\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}{message}"):
        act_plan.read_actrc(path, {})


def test_repository_actrc_adds_to_and_overrides_ciparitys(make_config: Any) -> None:
    config = make_config()
    (config.root / ".actrc").write_text("-P Ubuntu-Latest=theirs:1\n-P ubuntu-20.04=old:1\n")
    args = act.config_args(config)
    assert args[: len(act_plan.builtin_args(config.runner_image, config.self_hosted_image))] == (
        act_plan.builtin_args(config.runner_image, config.self_hosted_image)
    )
    found = act_plan.platforms(args)
    assert found["ubuntu-latest"] == "theirs:1"
    assert found["ubuntu-20.04"] == "old:1"
    assert found["ubuntu-24.04"] == config.runner_image
    assert found["self-hosted"] == config.self_hosted_image
    # Their options come after ciparity's, so act (last one wins) applies theirs.
    assert args.index("--pull=false") < len(args)


def test_builtin_args() -> None:
    assert act_plan.builtin_args("r", "s") == [
        "-P",
        "ubuntu-latest=r",
        "-P",
        "ubuntu-24.04=r",
        "-P",
        "ubuntu-22.04=r",
        "-P",
        "self-hosted=s",
        "--pull=false",
        "--action-offline-mode",
    ]


def test_split_container_options() -> None:
    assert act_plan.split_container_options(["-a", "--container-options", "x y", "-b"]) == (
        ["-a", "-b"],
        "x y",
    )
    assert act_plan.split_container_options(["--container-options=z"]) == ([], "z")


# ---- the job table and the exit code ----


def _plan(tmp_path: Path) -> act_plan.Plan:
    path = _workflow(
        tmp_path,
        """on: push
jobs:
  t:
    runs-on: ${{ matrix.os }}
    continue-on-error: ${{ matrix.os == 'x' || matrix.py == '3.12' }}
    strategy:
      matrix:
        os: [ubuntu-latest, macos-latest]
        py: ["3.12"]
  lint:
    runs-on: ubuntu-latest
    continue-on-error: true
""",
    )
    return act_plan.plan([path], PLATFORMS, root=tmp_path)


def test_job_table_names_entries_and_lists_skips(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    rows = [
        act.JobRow(
            "t (ubuntu-latest, 3.12)",
            "failure",
            3.0,
            job_id="t",
            matrix={"py": "3.12", "os": "ubuntu-latest"},
        ),
        act.JobRow("lint", "failure", 1.0, job_id="lint"),
    ]
    table = act.job_table(plan, rows)
    assert [(r.job, r.result) for r in table] == [
        # continue-on-error that only act can evaluate stays a failure
        ("t (ubuntu-latest, 3.12)", "failure"),
        ("lint", act.CONTINUED),
        (
            "t (macos-latest, 3.12)",
            "skipped: macOS runner (macos-latest): act runs Linux containers only",
        ),
    ]
    assert act.failures(table) == ["t (ubuntu-latest, 3.12)"]
    assert act.failures(table, strict=True) == ["t (ubuntu-latest, 3.12)", "t (macos-latest, 3.12)"]
    passed = [act.JobRow("x", "success", 1.0), table[1], table[2]]
    assert act.failures(passed) == []
    assert act.failures(passed, strict=True) == ["t (macos-latest, 3.12)"]


def test_parse_log_gives_each_matrix_entry_its_row() -> None:
    lines = [
        '{"job":"W/t-1 ","jobID":"t","matrix":{"os":"a"},"time":"2026-01-01T00:00:00Z"}',
        '{"job":"W/t-2 ","jobID":"t","matrix":{"os":"b"},"time":"2026-01-01T00:00:01Z"}',
        '{"job":"W/t-1 ","jobID":"t","matrix":{"os":"a"},"jobResult":"success",'
        '"time":"2026-01-01T00:00:04Z"}',
        '{"job":"W/t-2 ","jobID":"t","matrix":{"os":"b"},"jobResult":"failure",'
        '"time":"2026-01-01T00:00:02Z"}',
    ]
    rows = act.parse_log(lines)
    assert [(r.job, r.result, r.seconds, r.job_id) for r in rows] == [
        ("t (a)", "success", 4.0, "t"),
        ("t (b)", "failure", 1.0, "t"),
    ]


def test_a_job_needing_a_skipped_job_is_skipped_unless_it_runs_anyway(tmp_path: Path) -> None:
    path = _workflow(
        tmp_path,
        """on: push
jobs:
  mac: {runs-on: macos-latest}
  after: {runs-on: ubuntu-latest, needs: mac}
  later: {runs-on: ubuntu-latest, needs: [after]}
  report: {runs-on: ubuntu-latest, needs: [mac], if: "${{ always() }}"}
  linux: {runs-on: ubuntu-latest}
""",
    )
    plan = act_plan.plan_workflow(path, PLATFORMS, root=tmp_path)
    assert {e.name: e.skip for e in plan.entries} == {
        "mac": "macOS runner (macos-latest): act runs Linux containers only",
        "after": "needs mac, which cannot run here",
        "later": "needs after, which cannot run here",
        "report": "",
        "linux": "",
    }
    assert plan.planned["jobs"]["later"]["if"] == "${{ false }}"
    assert plan.planned["jobs"]["report"]["if"] == "${{ always() }}"


def test_one_job_is_planned_with_the_jobs_it_needs_as_acts_j_runs_them(tmp_path: Path) -> None:
    path = _workflow(
        tmp_path,
        """on: push
jobs:
  mac: {runs-on: macos-latest}
  build: {runs-on: ubuntu-latest}
  after: {runs-on: ubuntu-latest, needs: [mac, build]}
  other: {runs-on: windows-latest}
""",
    )
    plan = act_plan.plan_workflow(path, PLATFORMS, root=tmp_path, only_job="after")
    assert [(e.name, bool(e.skip)) for e in plan.entries] == [
        ("mac", True),
        ("build", False),
        ("after", True),
    ]
    assert act_plan.plan_workflow(path, PLATFORMS, root=tmp_path, only_job="nope").entries == ()
