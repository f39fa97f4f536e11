"""Tests for ciparity.act_console: act's JSON log turned into the compact view, the verbose
stream and the log files. The recorded log (tests/fixtures/act_logs/console.jsonl) is a real
`invoke act-ci` run of tests/fixtures/act_console: two jobs in parallel, one failing in its
middle step, and a two-entry matrix."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Iterable
from fcntl import ioctl
from pathlib import Path
from typing import Any

import pytest

from ciparity import act, act_console

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "act_logs"
RECORDED = (LOGS / "console.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _render(lines: Iterable[str], **kwargs: Any) -> tuple[str, act_console.Compact]:
    out = io.StringIO()
    view = act_console.Compact(out, result_of=act._result, **kwargs)
    for line in lines:
        view.write(line)
    view.close()
    return out.getvalue(), view


def _line(**fields: Any) -> str:
    return json.dumps(fields) + "\n"


def test_plain_output_of_a_real_run_is_byte_stable() -> None:
    """The same log always renders to the same bytes: no clock, no terminal codes."""
    first, _ = _render(RECORDED)
    second, _ = _render(RECORDED)
    assert first == second == (LOGS / "console.plain.txt").read_text(encoding="utf-8")
    assert "\x1b" not in first


def test_each_step_has_a_line_as_it_starts_and_ends() -> None:
    text, _ = _render(RECORDED)
    lines = text.splitlines()
    passes = [line for line in lines if line.startswith("[passes] ")]
    assert passes == [
        "[passes] start   Set up job",
        "[passes] success Set up job (5.0 s)",
        "[passes] start   actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
        "[passes] success actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 (0.0 s)",
        "[passes] start   greet",
        "[passes] success greet (0.9 s)",
        "[passes] start   count",
        "[passes] success count (1.0 s)",
        "[passes] start   Complete job",
        "[passes] success Complete job (1.0 s)",
        "[passes] job     success (13.0 s)",
    ]
    # A successful step's output and act's own chatter (docker calls) stay in the full log.
    assert "hello from passes" not in text and "docker exec" not in text
    assert "[matrix (1)] job     success (8.0 s)" in lines
    assert "[matrix (2)] success entry (0.8 s)" in lines


def test_a_failing_steps_output_is_printed_in_full_under_its_line() -> None:
    text, view = _render(RECORDED)
    lines = text.splitlines()
    at = lines.index("[fails] failure run the tests (0.7 s)")
    assert lines[at + 1 : at + 5] == [
        "[fails]   | E   AssertionError: expected 2, got 3",
        "[fails]   | collected 2 items",
        "[fails]   | test_one PASSED",
        "[fails]   | exitcode '3': failure",
    ]
    assert "[fails] job     failure (11.0 s)" in lines
    assert "never runs" not in text, "a step after the failure does not run"
    assert view.failures == {
        "console/fails": "run the tests: E   AssertionError: expected 2, got 3"
    }


def test_a_matrix_entry_ends_with_its_own_result_not_acts_shared_one() -> None:
    """act reports the other entry's failure as this entry's (nektos/act#1519); the job's end
    line uses the job table's reading of its own log lines."""
    unit = {"job": "tests/test-1", "jobID": "test", "matrix": {"suite": "unit"}}
    nightly = {"job": "tests/test-2", "jobID": "test", "matrix": {"suite": "nightly"}}
    when = "2026-11-26T12:00:0{}Z".format
    lines = [
        _line(**nightly, step="boom", stepID=["0"], stage="Main", time=when(1)),
        _line(**nightly, step="boom", stepID=["0"], stage="Main", raw_output=True, msg="bad\n"),
        _line(**nightly, step="boom", stepID=["0"], stage="Main", stepResult="failure"),
        _line(**nightly, step="Complete job", stepid=["--complete-job"], stepResult="success"),
        _line(**nightly, jobResult="failure", time=when(2)),
        _line(**unit, step="pytest", stepID=["0"], stage="Main", time=when(1)),
        _line(**unit, step="pytest", stepID=["0"], stage="Main", stepResult="success"),
        _line(**unit, step="Complete job", stepid=["--complete-job"], stepResult="success"),
        _line(**unit, jobResult="failure", time=when(3)),
    ]
    text, view = _render(lines)
    assert "[test (nightly)] job     failure (1.0 s)" in text.splitlines()
    assert "[test (unit)] job     success (2.0 s)" in text.splitlines()
    assert view.failures == {"tests/test-2": "boom: bad"}


def test_a_failed_step_of_a_job_that_succeeds_is_no_failure() -> None:
    """continue-on-error on a step: its output is shown, the job table names no failure."""
    job = {"job": "w/j", "jobID": "j", "stage": "Main", "step": "flaky", "stepID": ["0"]}
    job["time"] = "2026-11-26T12:00:01Z"
    lines = [
        _line(**job, msg="Run Main flaky"),
        _line(**job, raw_output=True, msg="oops\n"),
        _line(**job, stepResult="failure", executionTime=1_500_000_000),
        _line(jobID="j", job="w/j", jobResult="success"),
    ]
    text, view = _render(lines)
    assert text.splitlines() == [
        "[j] start   flaky",
        "[j] failure flaky (1.5 s)",
        "[j]   | oops",
        "[j] job     success (0.0 s)",
    ]
    assert view.failures == {}


def test_pre_and_post_steps_are_named_by_their_stage() -> None:
    job = {"job": "w/j", "jobID": "j", "step": "actions/cache@v4", "stepID": ["1"]}
    text, _ = _render([_line(**job, stage="Post", stepResult="success", executionTime=0)])
    assert text == "[j] start   Post actions/cache@v4\n[j] success Post actions/cache@v4 (0.0 s)\n"


def test_acts_own_errors_and_plain_lines_are_shown_its_chatter_is_not() -> None:
    lines = [
        _line(level="info", msg="Using docker host 'unix:///var/run/docker.sock'"),
        _line(level="fatal", msg="EOF\n"),
        "Error: Job 'fails' failed\n",
        "\n",
    ]
    text, _ = _render(lines)
    assert text == "[act] EOF\nError: Job 'fails' failed\n"


@pytest.mark.parametrize(
    ("output", "fallback", "expected"),
    [
        (["collected 1 item", "E   KeyError: 'API_URL'", "=== 1 failed in 0.1s ==="], "", "E"),
        (["building", "done badly"], "exitcode '1': failure", "done badly"),
        ([], "exitcode '1': failure", "exitcode '1': failure"),
        (["  ", "mkdir: cannot create directory 'x': Permission denied", "next"], "", "mkdir"),
    ],
)
def test_last_error_prefers_a_line_naming_the_problem(
    output: list[str], fallback: str, expected: str
) -> None:
    assert act_console.last_error(output, fallback).startswith(expected)


def test_readable_is_the_verbose_line() -> None:
    assert act_console.readable(_line(jobID="lint", msg="hello\n")) == "[lint] hello\n"
    assert act_console.readable(_line(msg="no job")) == "[act] no job\n"
    assert act_console.readable("Error: x") == "Error: x\n"


def test_verbose_prints_every_line_and_reports_no_failures() -> None:
    out = io.StringIO()
    view = act_console.Verbose(out)
    for line in RECORDED:
        view.write(line)
    view.close()
    assert out.getvalue() == "".join(act_console.readable(line) for line in RECORDED)
    assert "[passes] hello from passes\n" in out.getvalue()
    assert view.failures == {}


@pytest.mark.parametrize("verbose", [False, True])
def test_session_writes_the_full_log_both_ways(tmp_path: Path, verbose: bool) -> None:
    out = io.StringIO()
    with act_console.session(tmp_path / "act", verbose, out=out) as view:
        for line in RECORDED:
            view.write(line)
            view.flush()
    assert (tmp_path / "act" / "act.log.jsonl").read_text(encoding="utf-8") == "".join(RECORDED)
    text = (tmp_path / "act" / "act.log").read_text(encoding="utf-8")
    assert text == "".join(act_console.readable(line) for line in RECORDED)
    assert ("[passes] hello from passes" in out.getvalue()) is verbose
    assert bool(view.failures) is not verbose


def test_a_session_broken_off_still_says_where_the_log_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with act_console.session(tmp_path / "act", out=out) as view:
            view.write(RECORDED[1])
            raise KeyboardInterrupt
    assert capsys.readouterr().err == f"ciparity: {act_console.where(tmp_path / 'act')}\n"
    assert (tmp_path / "act" / "act.log.jsonl").read_text(encoding="utf-8") == RECORDED[1]
    assert out.getvalue() == "[fails] start   Set up job\n"


def test_live_only_on_a_terminal_that_can_redraw() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not act_console.is_live(io.StringIO(), {"TERM": "xterm"})
    assert act_console.is_live(Tty(), {"TERM": "xterm"})
    assert not act_console.is_live(Tty(), {"TERM": "dumb"})
    assert not act_console.is_live(Tty(), {})


def test_where_names_the_log_relative_to_the_current_folder(tmp_path: Path) -> None:
    assert act_console.where(tmp_path / "reports" / "act", tmp_path) == (
        "full log: reports/act/act.log (act's JSON: reports/act/act.log.jsonl)"
    )
    elsewhere = act_console.where(tmp_path / "act", tmp_path / "other")
    assert elsewhere.startswith(f"full log: {tmp_path / 'act' / 'act.log'} ")


# Feeds the recorded log to act-ci's console in a process whose stdout is a pseudo-terminal.
LIVE_CHILD = """
import sys
from pathlib import Path
from ciparity import act, act_console
with act_console.session(Path(sys.argv[2]), result_of=act._result) as view:
    for line in open(sys.argv[1], encoding="utf-8"):
        view.write(line)
        view.flush()
print("child done")
"""


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            raise AssertionError("the console process went silent")
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_live_view_on_a_pseudo_terminal(tmp_path: Path) -> None:
    """On a terminal the running jobs each get a status line (rich redraws them in place), the
    end lines scroll above them, start lines are not printed, and the status lines are gone at
    the end."""
    main, child = pty.openpty()
    ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(Path(act.__file__).parents[1])}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-c", LIVE_CHILD, str(LOGS / "console.jsonl"), str(tmp_path / "act")],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
    )
    os.close(child)
    try:
        raw = _read_all(main).decode("utf-8", errors="replace")
    finally:
        os.close(main)
        process.kill()
        process.wait()
    assert process.returncode == 0, raw
    # Redrawn in place: the cursor goes up over the status lines and erases them.
    assert "\x1b[1A" in raw and "\x1b[2K" in raw, raw
    assert "\x1b[31m" in raw, "the failure is red"
    plain = ANSI.sub("", raw).replace("\r", "")
    # A status line: the job, its running step and for how long.
    assert re.search(r"\[fails\] run the tests +\d+ s", plain), plain
    assert re.search(r"\[matrix \(1\)\] entry +\d+ s", plain), plain
    # The end lines, printed once each above the status lines (which the cursor moves overwrite,
    # hence substrings of the stream rather than whole lines).
    for line in (
        "[fails] failure run the tests (0.7 s)\n",
        "[fails]   | E   AssertionError: expected 2, got 3\n",
        "[passes] job     success (13.0 s)\n",
        "[matrix (2)] job     success (8.0 s)\n",
    ):
        assert plain.count(line) == 1, (line, plain)
    assert "start   " not in plain, "on a terminal a step's start is shown by its status line"
    # Stopped: the status lines are erased and nothing but what follows is printed after them.
    assert ANSI.sub("", raw.rsplit("\x1b[2K", 1)[1]).strip() == "child done", raw[-300:]
    assert (tmp_path / "act" / "act.log.jsonl").read_text(encoding="utf-8") == "".join(RECORDED)


def test_a_composite_actions_own_steps_are_named_and_indented() -> None:
    """Recorded from this repository's build-ci-image job: act logs a composite action's steps
    with the composite's `step` field, and names them only in its `Run` line; steps skipped by
    their `if:` (act logs only about resolving their action) get no line."""
    lines = (LOGS / "composite.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    text, view = _render(lines)
    setup = "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065"
    steps = text.splitlines()
    assert steps[8:20] == [
        "[build-ci-image] start   ./.github/actions/ci-image",
        f"[build-ci-image] start     {setup}",
        f"[build-ci-image] start     skipped: {setup} not available offline",
        f"[build-ci-image] success   skipped: {setup} not available offline (1.2 s)",
        f"[build-ci-image] success   {setup} (4.1 s)",
        "[build-ci-image] start     python3 -m pip install --quiet -r requirements.txt",
        "[build-ci-image] success   python3 -m pip install --quiet -r requirements.txt (19.5 s)",
        "[build-ci-image] start     python3 -m invoke build",
        "[build-ci-image] success   python3 -m invoke build (37.2 s)",
        "[build-ci-image] success ./.github/actions/ci-image (64.7 s)",
        "[build-ci-image] start   Post ./.github/actions/ci-image",
        f"[build-ci-image] start     Post {setup}",
    ]
    assert not any(line.startswith("[build-ci-image] start     docker/") for line in steps)
    assert text.splitlines()[-1] == "[build-ci-image] job     success (76.0 s)"
    assert view.failures == {}
