"""Tests for the upload/download-artifact double (ciparity.artifact_double), run as the
composite action runs it: inputs as INPUT_* variables, in the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciparity import artifact_double


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace (the current folder), the run's artifact folder and an outputs file."""
    workspace = tmp_path / "ws"
    (workspace / "reports" / "sub").mkdir(parents=True)
    (workspace / "reports" / "junit.xml").write_text("<j/>", encoding="utf-8")
    (workspace / "reports" / "sub" / "cov.xml").write_text("<c/>", encoding="utf-8")
    (workspace / "reports" / ".hidden").write_text("h", encoding="utf-8")
    (workspace / "reports" / "skip.log").write_text("s", encoding="utf-8")
    (tmp_path / "store").mkdir()
    monkeypatch.chdir(workspace)
    for name in list(__import__("os").environ):
        if name.startswith("INPUT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CIPARITY_ARTIFACTS", str(tmp_path / "store"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(workspace))
    return tmp_path


def _run(verb: str, monkeypatch: pytest.MonkeyPatch, **inputs: str) -> int:
    for key, value in inputs.items():
        monkeypatch.setenv("INPUT_" + key.upper(), value)
    return artifact_double.main(["artifact_double.py", verb])


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_upload_keeps_paths_below_the_search_root_and_honours_exclusions(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(
        "upload", monkeypatch, name="reports", path="reports/\n!reports/*.log", retention_days="5"
    )
    assert code == 0
    assert _files(job / "store" / "reports") == ["junit.xml", "sub/cov.xml"]
    out = capsys.readouterr().out
    assert "actions/upload-artifact is a local double under invoke act-ci" in out
    assert "2 files uploaded as artifact 'reports' (retention-days 5 has no effect" in out
    assert "artifact-id=reports\n" in (job / "out").read_text()


def test_upload_of_globs_uses_their_common_folder_and_hidden_files_on_request(
    job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run("upload", monkeypatch, path="reports/**/*.xml\nreports/.hidden") == 0
    assert _files(job / "store" / "artifact") == ["junit.xml", "sub/cov.xml"]
    assert (
        _run("upload", monkeypatch, path="reports/.hidden", include_hidden_files="true", name="h")
        == 0
    )
    assert _files(job / "store" / "h") == [".hidden"]


@pytest.mark.parametrize(
    "when, code, line",
    [
        ("warn", 0, "::warning::No files were found with the provided path: nothing/*."),
        ("ignore", 0, ""),
        ("error", 1, "::error::actions/upload-artifact (ciparity double): No files were found"),
    ],
)
def test_upload_when_no_files_are_found(
    job: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    when: str,
    code: int,
    line: str,
) -> None:
    assert _run("upload", monkeypatch, path="nothing/*", if_no_files_found=when) == code
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ([] if not line else [out[1]]) and (not line or out[1].startswith(line))
    assert _files(job / "store") == []


@pytest.mark.parametrize(
    "inputs, message",
    [
        ({"path": "reports", "retention_days": "91"}, "retention-days must be a whole number"),
        ({"path": "reports", "if_no_files_found": "maybe"}, "if-no-files-found must be warn"),
        ({"path": "reports", "name": "a/b"}, "artifact name 'a/b' is not valid"),
        ({"path": ""}, "input path is required"),
        ({"path": "reports", "overwrite": "perhaps"}, "input overwrite must be true or false"),
    ],
)
def test_upload_bad_inputs_fail_the_step_in_one_line(
    job: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    inputs: dict[str, str],
    message: str,
) -> None:
    assert _run("upload", monkeypatch, **inputs) == 1
    error = capsys.readouterr().out.splitlines()[-1]
    assert error.startswith("::error::actions/upload-artifact (ciparity double): " + message)


def test_upload_twice_needs_overwrite(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("upload", monkeypatch, path="reports/junit.xml") == 0
    assert _run("upload", monkeypatch, path="reports/sub") == 1
    assert "already exists in this run (overwrite: false)" in capsys.readouterr().out
    assert _run("upload", monkeypatch, path="reports/sub", overwrite="true") == 0
    assert _files(job / "store" / "artifact") == ["cov.xml"]


def test_download_by_name_into_a_path(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run("upload", monkeypatch, name="r", path="reports/*.xml") == 0
    monkeypatch.delenv("INPUT_PATH")
    assert _run("download", monkeypatch, name="r", path="got") == 0
    assert _files(job / "ws" / "got") == ["junit.xml"]
    assert f"download-path={job / 'ws' / 'got'}\n" in (job / "out").read_text()


def test_download_all_by_pattern_and_merged(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, path in (("a-1", "reports/junit.xml"), ("a-2", "reports/sub"), ("b", "reports")):
        monkeypatch.setenv("INPUT_NAME", name)
        assert _run("upload", monkeypatch, path=path) == 0
    monkeypatch.delenv("INPUT_NAME")
    monkeypatch.delenv("INPUT_PATH")
    assert _run("download", monkeypatch, path="all") == 0
    assert {p.name for p in (job / "ws" / "all").iterdir()} == {"a-1", "a-2", "b"}
    assert _run("download", monkeypatch, path="merged", pattern="a-*", merge_multiple="true") == 0
    assert _files(job / "ws" / "merged") == ["cov.xml", "junit.xml"]


def test_download_of_a_missing_name_lists_what_exists(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("upload", monkeypatch, name="there", path="reports/junit.xml") == 0
    assert _run("download", monkeypatch, name="gone") == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "::error::actions/download-artifact (ciparity double): Artifact not found for name: gone"
        " (this run has: there)"
    )


def test_outside_act_ci_the_double_says_so(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CIPARITY_ARTIFACTS")
    assert _run("upload", monkeypatch, path="reports") == 1
    assert (
        "CIPARITY_ARTIFACTS is not set: run this through invoke act-ci" in capsys.readouterr().out
    )
    monkeypatch.setenv("CIPARITY_ARTIFACTS", str(job / "not-mounted"))
    assert _run("upload", monkeypatch, path="reports") == 1
    assert "not-mounted is not mounted here (a job with `container:`" in capsys.readouterr().out
    assert artifact_double.main(["x", "delete"]) == 2
