"""Tests for ciparity.proc: real harmless subprocesses, its errors, tee mode and signals."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ciparity import proc
from ciparity.errors import CiparityError, DockerError, Interrupted

PYTHON = sys.executable


def py(code: str) -> list[str]:
    return [PYTHON, "-c", code]


def test_run_captures_output_and_exit_code() -> None:
    argv = py("import sys; print('out'); print('err', file=sys.stderr); raise SystemExit(5)")
    assert proc.run(argv) == proc.Result(tuple(argv), 5, "out\n", "err\n", b"out\n")


def test_result_ok_only_for_zero() -> None:
    assert proc.Result(("x",), 0, "", "").ok
    assert not proc.Result(("x",), 1, "", "").ok


def test_run_turns_argv_items_into_strings_and_uses_cwd(tmp_path: Path) -> None:
    argv = [Path(PYTHON), "-c", "import os; print(os.getcwd())"]
    found = proc.run(argv, cwd=tmp_path)  # type: ignore[arg-type]
    assert found.argv == (PYTHON, "-c", "import os; print(os.getcwd())")
    assert found.stdout == f"{tmp_path}\n"


@pytest.mark.parametrize("given", ["héllo\n", "héllo\n".encode()])
def test_run_feeds_text_or_bytes_input(given: str | bytes) -> None:
    found = proc.run(py("import sys; sys.stdout.write(sys.stdin.read().upper())"), input=given)
    assert found.stdout == "HÉLLO\n"


def test_run_with_env_gives_exactly_that_environment() -> None:
    code = "import os; print(sorted(k for k in os.environ if k != 'LC_CTYPE'))"
    assert proc.run(py(code), env={"ONLY_THIS": "1"}).stdout == "['ONLY_THIS']\n"


def test_run_inherits_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIPARITY_PROC_TEST", "inherited")
    code = "import os; print(os.environ['CIPARITY_PROC_TEST'])"
    assert proc.run(py(code)).stdout == "inherited\n"


def test_check_raises_with_the_last_line_of_stderr() -> None:
    argv = py("import sys; sys.stderr.write('warming up\\nreal reason  \\n\\n'); sys.exit(1)")
    with pytest.raises(CiparityError) as info:
        proc.run(argv, check=True)
    assert type(info.value) is CiparityError
    assert info.value.message == f"{proc.quote(argv)} failed: real reason"
    assert info.value.exit_code == 2


def test_check_falls_back_to_stdout_then_to_no_output() -> None:
    argv = py("print('from stdout'); raise SystemExit(3)")
    with pytest.raises(CiparityError, match="failed: from stdout$"):
        proc.run(argv, check=True)
    silent = py("raise SystemExit(3)")
    with pytest.raises(CiparityError) as info:
        proc.run(silent, check=True)
    assert info.value.message == f"{proc.quote(silent)} failed: (no output)"


def test_check_passes_a_successful_command() -> None:
    assert proc.run(py("print('fine')"), check=True).stdout == "fine\n"


def test_missing_docker_is_a_docker_error(tmp_path: Path) -> None:
    # An empty PATH: the real docker CLI on this host is never started.
    with pytest.raises(DockerError) as info:
        proc.run(["docker", "version"], env={"PATH": str(tmp_path)})
    assert info.value.message == (
        "the docker CLI is not on PATH: install Docker Engine or Docker Desktop"
    )
    assert info.value.exit_code == 3


def test_missing_other_tool_is_a_plain_error() -> None:
    with pytest.raises(CiparityError) as info:
        proc.run(["no-such-tool-xyz", "--help"])
    assert type(info.value) is CiparityError
    assert info.value.message == "no-such-tool-xyz is not installed or not on PATH"


def test_missing_tool_in_tee_mode() -> None:
    with pytest.raises(CiparityError, match="^no-such-tool-xyz is not installed or not on PATH$"):
        proc.run(["no-such-tool-xyz"], tee=io.StringIO())


def test_program_that_cannot_be_executed(tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o644)
    with pytest.raises(CiparityError) as info:
        proc.run([str(script)])
    assert info.value.message == f"cannot run {script}: Permission denied"


def test_timeout_stops_the_command_with_one_line() -> None:
    argv = py("import time; time.sleep(30)")
    started = time.monotonic()
    with pytest.raises(CiparityError) as info:
        proc.run(argv, timeout=0.2)
    assert time.monotonic() - started < 10
    assert info.value.message == f"{PYTHON} did not finish within 0 s: {proc.quote(argv)}"


def test_tee_copies_merged_output_live_and_captures_it() -> None:
    out = io.StringIO()
    code = (
        "import sys; print('one', flush=True); sys.stderr.write('two\\n'); sys.stderr.flush();"
        " print('three', flush=True); raise SystemExit(4)"
    )
    found = proc.run(py(code), tee=out)
    assert out.getvalue() == "one\ntwo\nthree\n"
    assert found == proc.Result(tuple(py(code)), 4, "one\ntwo\nthree\n", "")


def test_tee_with_check_reports_from_the_merged_output() -> None:
    argv = py("import sys; sys.stderr.write('boom\\n'); raise SystemExit(2)")
    with pytest.raises(CiparityError) as info:
        proc.run(argv, tee=io.StringIO(), check=True)
    assert info.value.message == f"{proc.quote(argv)} failed: boom"


class _BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise RuntimeError("terminal went away")


def test_tee_terminates_the_child_when_the_reader_fails() -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="terminal went away"):
        proc.run(py("import time; print('x', flush=True); time.sleep(30)"), tee=_BrokenStream())
    # Without the TERM the Popen block would wait the child's 30 s out.
    assert time.monotonic() - started < 10


def test_tee_honours_the_timeout() -> None:
    with pytest.raises(CiparityError, match="did not finish within"):
        proc.run(py("import time; time.sleep(0.5)"), tee=io.StringIO(), timeout=0.05)


def test_missing_cwd_is_not_reported_as_a_missing_program(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(CiparityError) as info:
        proc.run(py("pass"), cwd=missing)
    assert "is not installed" not in info.value.message
    assert str(missing) in info.value.message


def test_run_interactive_returns_the_exit_code() -> None:
    assert proc.run_interactive(py("raise SystemExit(4)")) == 4


def test_run_interactive_uses_the_given_environment() -> None:
    code = "import os, sys; sys.exit(0 if os.environ.get('MARK') == 'yes' else 9)"
    assert proc.run_interactive(py(code), env={"MARK": "yes"}) == 0


def test_run_interactive_missing_docker(tmp_path: Path) -> None:
    with pytest.raises(DockerError, match="^the docker CLI is not on PATH"):
        proc.run_interactive(["docker", "start", "-a", "-i", "x"], env={"PATH": str(tmp_path)})


def test_run_interactive_missing_tool() -> None:
    with pytest.raises(CiparityError, match="^no-such-tool-xyz is not installed or not on PATH$"):
        proc.run_interactive(["no-such-tool-xyz"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("first\n\n  last line  \n\n", "last line"),
        ("only", "only"),
        ("", "(no output)"),
        ("  \n \n", "(no output)"),
    ],
)
def test_reason_is_the_last_non_empty_line(text: str, expected: str) -> None:
    assert proc.reason(text) == expected


def test_quote_gives_a_pasteable_line() -> None:
    argv = ["docker", "run", "-e", "A=b c", "it's", "plain"]
    assert proc.quote(argv) == "docker run -e 'A=b c' 'it'\"'\"'s' plain"


def test_eprint_writes_one_line_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    proc.eprint("ciparity: error: nope")
    assert capsys.readouterr() == ("", "ciparity: error: nope\n")


def _handlers() -> dict[int, object]:
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_becomes_interrupted_and_handlers_are_restored(signum: int, code: int) -> None:
    before = _handlers()
    with pytest.raises(Interrupted) as info:
        with proc.signals_as_interrupt():
            os.kill(os.getpid(), signum)
            time.sleep(0)  # the handler runs at the next bytecode boundary
    assert info.value.signum == signum
    assert info.value.exit_code == code
    assert str(info.value) == f"interrupted by signal {int(signum)}"
    assert _handlers() == before


def test_second_signal_during_cleanup_is_ignored() -> None:
    before = _handlers()
    cleaned = False
    with proc.signals_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0)
        except Interrupted:
            assert _handlers() == {signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN}
            os.kill(os.getpid(), signal.SIGTERM)
            cleaned = True
    assert cleaned
    assert _handlers() == before


def test_handlers_are_restored_after_a_normal_exit() -> None:
    before = _handlers()
    with proc.signals_as_interrupt():
        assert _handlers() != before
    assert _handlers() == before
