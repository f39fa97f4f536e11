"""act-ci's console: act's JSON log, read as it arrives, turned into what a person reads.

By default a compact view: per job, a line as each step starts and ends (result, seconds), a
failing step's own output in full under its line, and a line when the job ends. On a terminal the
running jobs each keep one status line at the bottom (rich's Live display) and only the end lines
scroll; elsewhere (CI, a pipe) every line is plain text that depends on act's log alone, so the
same log always renders to the same bytes. `--verbose` prints every log line, as act-ci always did.
Either way the whole log is written to reports/act/: act's JSON and a readable copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ciparity import act_plan

JSON_LOG = "act.log.jsonl"
TEXT_LOG = "act.log"
# The width of the result column, so the step names of one job line up.
RESULT_WIDTH = 7
# How act announces a step: "\u2b50 Run STAGE NAME" (no stage for Set up job / Complete job).
RUN = "\u2b50 Run "
# A line of a failed step's output that names the problem, preferred for the job table.
_ERROR = re.compile(r"error|exception|fatal|denied|fail|not found|no such|traceback", re.I)
# Lines that mention failure without saying what failed: pytest's rules, act's own exit line.
_NOT_A_REASON = re.compile(r"^=+ .* =+$|^exitcode '\d+': failure$|^-+$")

Namer = Callable[[str, Mapping[str, object]], str]
ResultOf = Callable[[Sequence[str]], str]


class View(Protocol):
    """What proc.run's `tee` feeds: act's output, a line at a time."""

    failures: dict[str, str]

    def write(self, line: str, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def default_name(job_id: str, matrix: Mapping[str, object]) -> str:
    """A job's name as the job table shows it: `test (3.12, unit)` for a matrix entry."""
    return act_plan.Entry("", job_id, matrix).name


def readable(line: str) -> str:
    """A log line as `--verbose` prints it: `[JOB] message`, or the line itself if not JSON."""
    entry = _json(line)
    if entry is None:
        return line if line.endswith("\n") else line + "\n"
    msg = str(entry.get("msg", "")).rstrip("\n")
    return f"[{entry.get('jobID') or 'act'}] {msg}\n"


def _json(line: str) -> dict[str, object] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def last_error(output: Sequence[str], fallback: str = "") -> str:
    """The line of a failed step's output that most likely says why: the last one naming an
    error, else its last line, else `fallback` (act's own reason)."""
    lines = [line.strip() for line in output if line.strip()]
    reasons = [line for line in lines if _ERROR.search(line) and not _NOT_A_REASON.match(line)]
    if reasons:
        return reasons[-1]
    return lines[-1] if lines else fallback


def _step_name(msg: str, stage: str, step: str, inner: bool) -> str:
    """A step's name from act's `Run` line, which names a composite action's own steps too (their
    `step` field is the composite's); stage-prefixed unless Main, inner steps indented."""
    if msg.startswith(RUN):
        name = msg[len(RUN) :].strip()
        name = name.removeprefix("Main ") if stage == "Main" else name
    else:
        name = f"{stage} {step}" if stage and stage != "Main" else step
    return f"  {name}" if inner else name


@dataclass
class _Step:
    name: str
    started: datetime | None
    since: float  # this process's clock, for the live status line
    output: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    announced: bool = False


@dataclass
class _Job:
    name: str
    started: datetime | None
    lines: list[str] = field(default_factory=list)
    steps: dict[tuple[str, ...], _Step] = field(default_factory=dict)
    running: list[_Step] = field(default_factory=list)  # the innermost last
    failed: tuple[str, ...] | None = None


class Verbose:
    """Every line of act's log, as `[JOB] message`."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.failures: dict[str, str] = {}

    def write(self, line: str) -> int:
        self.out.write(readable(line))
        return len(line)

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class Compact:
    """The compact view. Plain lines unless `live`, where running jobs keep a status line each.

    `name` turns act's job id and matrix into the name the job table uses; `result_of` reads a
    job's result from its log lines (act's own jobResult is wrong for matrix entries, #1519).
    `failures` maps act's job key to 'STEP: REASON' for each job whose step failed.
    """

    def __init__(
        self,
        out: IO[str],
        *,
        name: Namer = default_name,
        result_of: ResultOf | None = None,
        live: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.name = name
        self.result_of = result_of
        self.clock = clock
        self.jobs: dict[str, _Job] = {}
        self.failures: dict[str, str] = {}
        self.live: Live | None = None
        if live:
            term = Console(file=out, force_terminal=True, highlight=False, markup=False)
            self.live = Live(
                console=term, transient=True, get_renderable=self._status, redirect_stderr=False
            )
            self.live.start()

    # --- the sink ---

    def write(self, line: str) -> int:
        entry = _json(line)
        if entry is None:
            if line.strip():
                self._print(Text(line.rstrip("\n")))
        elif entry.get("jobID"):
            self._job_event(line, entry)
        elif entry.get("level") in ("warning", "error", "fatal"):
            self._print(Text(f"[act] {str(entry.get('msg', '')).strip()}"))
        return len(line)

    def flush(self) -> None:
        if self.live is None:
            self.out.flush()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        self.out.flush()

    # --- act's events ---

    def _job_event(self, line: str, entry: Mapping[str, object]) -> None:
        key = str(entry.get("job") or entry["jobID"]).strip()
        when = _time(entry.get("time"))
        job = self.jobs.get(key)
        if job is None:
            matrix = entry.get("matrix")
            label = self.name(str(entry["jobID"]), matrix if isinstance(matrix, dict) else {})
            job = self.jobs[key] = _Job(label, when)
        job.lines.append(line)
        if entry.get("jobResult"):
            self._job_end(key, job, str(entry["jobResult"]), when)
            return
        step = entry.get("step")
        if not step:
            return
        stage = str(entry.get("stage") or "")
        ids = entry.get("stepID") or entry.get("stepid") or []
        skey = (stage, *(str(i) for i in ids)) if isinstance(ids, list) else (stage, str(ids))
        msg = str(entry.get("msg", ""))
        inner = len(skey) > 2
        current = job.steps.get(skey)
        if current is None:
            # act may log about a step (resolving its action) before it runs, or never run it.
            current = job.steps[skey] = _Step(_step_name("", stage, str(step), inner), when, 0.0)
        if not current.announced and (msg.startswith(RUN) or entry.get("stepResult")):
            current.name = _step_name(msg, stage, str(step), inner)
            current.started, current.since, current.announced = when, self.clock(), True
            job.running.append(current)
            self._plain(job, "start", current.name)
            self._redraw()
        if entry.get("stepResult"):
            self._step_end(key, job, skey, current, entry, when)
        elif entry.get("raw_output"):
            current.output += msg.rstrip("\n").split("\n")
        elif entry.get("level") in ("warning", "error", "fatal"):
            current.errors.append(msg.strip())
            if job.failed == skey:
                # act logs the step's error (its exit code) after the step's result.
                self._print(self._output_line(job, msg.strip()))

    def _step_end(
        self,
        key: str,
        job: _Job,
        skey: tuple[str, ...],
        step: _Step,
        entry: Mapping[str, object],
        when: datetime | None,
    ) -> None:
        result = str(entry["stepResult"])
        nanos = entry.get("executionTime")
        if isinstance(nanos, int):
            seconds = nanos / 1e9
        elif when is not None and step.started is not None:
            seconds = (when - step.started).total_seconds()
        else:
            seconds = 0.0
        self._print(self._line(job, result, f"{step.name} ({seconds:.1f} s)"))
        if step in job.running:
            job.running.remove(step)
            self._redraw()
        if result == "failure":
            job.failed = skey
            for text in (*step.output, *step.errors):
                self._print(self._output_line(job, text))
            if key not in self.failures:
                reason = last_error(step.output, step.errors[-1] if step.errors else "")
                self.failures[key] = f"{step.name}: {reason}" if reason else step.name

    def _job_end(self, key: str, job: _Job, result: str, when: datetime | None) -> None:
        if self.result_of is not None:
            result = self.result_of(job.lines) or result
        seconds = (when - job.started).total_seconds() if when and job.started else 0.0
        self._print(self._line(job, "job", f"{result} ({seconds:.1f} s)", result))
        job.running.clear()
        self._redraw()
        if result == "success":
            # A failed step whose job still succeeded (continue-on-error) is no failure.
            self.failures.pop(key, None)

    # --- output ---

    def _line(self, job: _Job, word: str, rest: str, result: str = "") -> Text:
        styles = {"success": "green", "failure": "red", "skipped": "yellow"}
        text = Text()
        text.append(f"[{job.name}] ", style="bold")
        text.append(word.ljust(RESULT_WIDTH), style=styles.get(result or word, ""))
        text.append(f" {rest}")
        return text

    def _output_line(self, job: _Job, text: str) -> Text:
        return Text(f"[{job.name}]   | {text}")

    def _plain(self, job: _Job, word: str, rest: str) -> None:
        """A line only plain output shows: on a terminal the status line says it."""
        if self.live is None:
            self._print(self._line(job, word, rest))

    def _print(self, text: Text) -> None:
        if self.live is not None:
            self.live.console.print(text, soft_wrap=True)
        else:
            self.out.write(text.plain + "\n")
            self.out.flush()

    def _redraw(self) -> None:
        """Show a change of the running steps now, not at the next timed refresh."""
        if self.live is not None:
            self.live.refresh()

    def _status(self) -> Table:
        """One line per running job: its name, its running step and for how long."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style="bold")
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_column(no_wrap=True, justify="right")
        now = self.clock()
        # A copy: rich's refresh thread calls this while the reader adds jobs.
        for job in list(self.jobs.values()):
            if job.running:
                step = job.running[-1]
                grid.add_row(f"[{job.name}]", step.name, f"{now - step.since:.0f} s")
        return grid


def is_live(out: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether `out` is a terminal that can redraw status lines."""
    env = os.environ if environ is None else environ
    return out.isatty() and env.get("TERM", "") not in ("", "dumb")


class _Tee:
    """proc.run's sink: every line to both log files, then to the view."""

    def __init__(self, raw: IO[str], text: IO[str], view: View) -> None:
        self.raw, self.text, self.view = raw, text, view
        self.failures = view.failures

    def write(self, line: str) -> int:
        self.raw.write(line)
        self.text.write(readable(line))
        return self.view.write(line)

    def flush(self) -> None:
        self.raw.flush()
        self.text.flush()
        self.view.flush()

    def close(self) -> None:
        self.view.close()


@contextlib.contextmanager
def session(
    folder: Path,
    verbose: bool = False,
    *,
    out: IO[str] | None = None,
    name: Namer = default_name,
    result_of: ResultOf | None = None,
) -> Iterator[View]:
    """A sink for act's output that writes the full log into `folder` (act's JSON and a readable
    copy) and shows the compact view, or every line with `verbose`."""
    stream = out or sys.stdout
    folder.mkdir(parents=True, exist_ok=True)
    with (
        (folder / JSON_LOG).open("w", encoding="utf-8") as raw,
        (folder / TEXT_LOG).open("w", encoding="utf-8") as text,
    ):
        view: View = (
            Verbose(stream)
            if verbose
            else Compact(stream, name=name, result_of=result_of, live=is_live(stream))
        )
        tee = _Tee(raw, text, view)
        try:
            yield tee
        except BaseException:
            # Interrupted or broken off: the log so far is still the place to look.
            tee.close()
            print(f"ciparity: {where(folder)}", file=sys.stderr, flush=True)
            raise
        tee.close()


def where(folder: Path, cwd: Path | None = None) -> str:
    """The end line naming the full log, relative to the current folder when inside it."""
    path = folder / TEXT_LOG
    with contextlib.suppress(ValueError):
        path = path.resolve().relative_to((cwd or Path.cwd()).resolve())
    return f"full log: {path} (act's JSON: {path.with_name(JSON_LOG)})"
