"""Tests for ciparity.console: progress lines, tables, and GitHub Actions' groups and summary."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ciparity import console
from ciparity.console import Row

pytestmark = pytest.mark.usefixtures("clean_env")

ROWS = [Row("lint", "passed", 1.234), Row("test", "FAILED (pytest)", 12.05, "1")]
TABLE = (
    "check  result           seconds\n"
    "-----  ---------------  -------\n"
    "lint   passed           1.2\n"
    "test   FAILED (pytest)  12.1"
)


def test_row_detail_defaults_to_empty() -> None:
    assert Row("lint", "passed", 1.0).detail == ""


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({"GITHUB_ACTIONS": "true"}, True), ({"GITHUB_ACTIONS": "false"}, False), ({}, False)],
)
def test_in_github_actions(environ: dict[str, str], expected: bool) -> None:
    assert console.in_github_actions(environ) is expected


def test_in_github_actions_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not console.in_github_actions()
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert console.in_github_actions()


def test_step_to_a_stream_and_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    console.step("building", out)
    console.step("testing")
    assert out.getvalue() == "==> building\n"
    assert capsys.readouterr().out == "==> testing\n"


def test_groups_outside_github_are_headings(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    console.group_start("lint", out)
    console.group_end(out)
    console.group_start("test")
    console.group_end()
    assert out.getvalue() == "==> lint\n"
    assert capsys.readouterr().out == "==> test\n"


def test_groups_inside_github_use_its_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    out = io.StringIO()
    console.group_start("lint", out)
    console.group_end(out)
    console.group_start("test")
    console.group_end()
    assert out.getvalue() == "::group::lint\n::endgroup::\n"
    assert capsys.readouterr().out == "::group::test\n::endgroup::\n"


def test_format_table_pads_columns_and_strips_trailing_space() -> None:
    cells = [(r.name, r.result, f"{r.seconds:.1f}") for r in ROWS]
    assert console.format_table(("check", "result", "seconds"), cells) == TABLE


def test_format_table_without_rows() -> None:
    assert console.format_table(("a", "bb"), []) == "a  bb\n-  --"


def test_markdown_table_escapes_pipes() -> None:
    assert console.markdown_table(("check", "result"), [("lint", "FAILED (a|b)")]) == (
        "| check | result |\n|---|---|\n| lint | FAILED (a\\|b) |\n"
    )


def test_summary_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    console.summary("ciparity ci", ROWS, out)
    console.summary("ciparity ci", ROWS)
    assert out.getvalue() == "\n" + TABLE + "\n"
    assert capsys.readouterr().out == "\n" + TABLE + "\n"


def test_summary_appends_to_the_job_summary_in_github(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "summary.md"
    path.write_text("earlier\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    console.summary("ciparity ci", ROWS, io.StringIO())
    assert path.read_text(encoding="utf-8") == (
        "earlier\n### ciparity ci\n\n| check | result | seconds |\n|---|---|---|\n"
        "| lint | passed | 1.2 |\n| test | FAILED (pytest) | 12.1 |\n\n"
    )


def test_summary_file_is_left_alone_outside_github(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    console.summary("ciparity ci", ROWS, io.StringIO())
    assert not path.exists()


def test_summary_file_missing_in_a_nested_run_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run inside a job's container inherits GITHUB_STEP_SUMMARY but not the file's folder."""
    path = tmp_path / "absent" / "SUMMARY.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    console.summary("ciparity ci", ROWS, io.StringIO())
    err = capsys.readouterr().err
    assert err == f"ciparity: warning: no job summary written (No such file or directory: {path})\n"


def test_reports_summary_counts_tests_and_coverage(tmp_path: Path) -> None:
    assert console.reports_summary(tmp_path) == ""
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite tests="10" failures="2" errors="1" skipped="3"/>'
        '<testsuite tests="5" failures="0" errors="0" skipped="0"/></testsuites>'
    )
    (tmp_path / "coverage.xml").write_text('<coverage line-rate="0.9731"/>')
    assert console.reports_summary(tmp_path) == (
        "**Tests:** 9 passed, 2 failed, 1 errors, 3 skipped\n\n**Coverage:** 97.3% of lines\n\n"
    )


def test_phases_say_what_runs_with_the_time_since_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = iter([100.0, 100.0, 112.34])
    monkeypatch.setattr(console.time, "monotonic", lambda: next(now))
    out = io.StringIO()
    phase = console.Phases(out)
    phase("cold build")
    phase("warm build")
    assert out.getvalue() == "==> [   0.0 s] cold build\n==> [  12.3 s] warm build\n"
