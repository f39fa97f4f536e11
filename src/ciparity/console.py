"""Output: progress lines, summary tables, and GitHub Actions' own language when running there."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# Reading our own reports; bandit's warning is about untrusted XML.
from xml.etree import ElementTree  # nosec B405

TEST_COUNTS = ("tests", "failures", "errors", "skipped")


@dataclass(frozen=True)
class Row:
    """One line of a summary table: a check or job, its result and how long it took."""

    name: str
    result: str
    seconds: float
    detail: str = ""


def in_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS") == "true"


def step(message: str, out: IO[str] | None = None) -> None:
    """A progress line for long work."""
    stream = out or sys.stdout
    print(f"==> {message}", file=stream, flush=True)


class Phases:
    """Progress for long work: a line per phase, with the seconds since the work started."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        step(f"[{time.monotonic() - self.started:6.1f} s] {message}", self.out)


def group_start(title: str, out: IO[str] | None = None) -> None:
    """Open a collapsible group in GitHub's log, a heading elsewhere."""
    stream = out or sys.stdout
    if in_github_actions():
        print(f"::group::{title}", file=stream, flush=True)
    else:
        step(title, stream)


def group_end(out: IO[str] | None = None) -> None:
    if in_github_actions():
        print("::endgroup::", file=out or sys.stdout, flush=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def reports_summary(reports: Path) -> str:
    """Markdown lines for the JUnit and coverage reports in `reports` ('' when there are none)."""
    lines = []
    junit = reports / "junit.xml"
    if junit.is_file():
        # Our own run's report, not input from elsewhere.
        root = ElementTree.parse(junit).getroot()  # nosec B314
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        count = {k: sum(int(s.get(k, 0) or 0) for s in suites) for k in TEST_COUNTS}
        passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
        lines.append(
            f"**Tests:** {passed} passed, {count['failures']} failed, {count['errors']} errors,"
            f" {count['skipped']} skipped"
        )
    coverage = reports / "coverage.xml"
    if coverage.is_file():
        rate = float(ElementTree.parse(coverage).getroot().get("line-rate", 0))  # nosec B314
        lines.append(f"**Coverage:** {rate:.1%} of lines")
    return "".join(line + "\n\n" for line in lines)


def summary(
    title: str, rows: Sequence[Row], out: IO[str] | None = None, extra: str = "", detail: str = ""
) -> None:
    """Print the end-of-run table; inside GitHub Actions also append it (and `extra`, Markdown)
    to the job summary. With `detail` (its header), the rows' details are a fourth column,
    shown when any row has one."""
    headers: tuple[str, ...] = ("check", "result", "seconds")
    cells: list[tuple[str, ...]] = [(r.name, r.result, f"{r.seconds:.1f}") for r in rows]
    if detail and any(r.detail for r in rows):
        headers += (detail,)
        cells = [(*cell, r.detail) for cell, r in zip(cells, rows)]
    print("\n" + format_table(headers, cells), file=out or sys.stdout, flush=True)
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path and in_github_actions():
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"### {title}\n\n" + markdown_table(headers, cells) + "\n" + extra)
        except OSError as exc:
            # A run nested in a job's container inherits the variable but not the file.
            print(
                f"ciparity: warning: no job summary written ({exc.strerror}: {path})",
                file=sys.stderr,
            )
