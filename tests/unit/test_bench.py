"""The benchmark's arithmetic and table, with builds and timed commands faked."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeRun

from ciparity import bench, images
from ciparity.errors import CiparityError
from ciparity.images import BaseInfo, BuildReport, Step


def _report(root: Path, *cached: bool) -> BuildReport:
    names = ["[system 2/3] RUN apt", "[deps 2/2] RUN pip", "[ci 1/2] COPY"]
    return BuildReport("ciparity-ci:latest", 1.0, tuple(Step(n, c) for n, c in zip(names, cached)))


def test_run_reports_medians_ratio_and_rebuild(
    make_config: Any, fake_run: FakeRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = make_config()
    monkeypatch.setattr(images, "ensure_base", lambda c: BaseInfo(c.base, "official"))
    builds = iter(
        [
            _report(config.root, False, False, False),
            _report(config.root, True, True, True),
            _report(config.root, True, True, False),
        ]
    )
    edited_roots: list[Path] = []

    def build(c: Any, *args: Any) -> BuildReport:
        edited_roots.append(c.root)
        return next(builds)

    monkeypatch.setattr(bench, "_build", build)
    # Warm-up round, then three rounds: (ci, then lint/typecheck/security/test natively).
    times: Iterator[float] = iter(
        [99.0, 1, 1, 1, 1] + [12.0, 2, 2, 2, 4] + [10.0, 2, 2, 2, 2] + [30.0, 5, 5, 5, 5]
    )
    calls: list[list[str]] = []

    def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
        calls.append(argv)
        if argv[-2:] == ["ciparity.checks", "test"]:
            assert env["CIPARITY_MARKERS"] == "not docker"
            assert env["PATH"].split(":")[0].endswith("bin")
        return next(times), 0

    monkeypatch.setattr(bench, "_timed", timed)
    out = tmp_path / "bench.md"
    rows = dict(bench.run(config, out))

    assert len(calls) == 4 * 5
    assert rows["warm `invoke ci --markers 'not docker'`, median of 3"] == "12.0 s"
    assert rows["same checks natively in the host venv, median of 3"] == "10.0 s"
    assert rows["ratio containerized / native"] == "1.20x"
    assert rows["runs (containerized/native)"] == "12.0/10.0, 10.0/8.0, 30.0/20.0; exit codes [0]"
    assert rows["rebuild after editing src/demo/__init__.py"].endswith(
        "dependency layers 2/2 cached"
    )
    assert edited_roots[2] != config.root, "the rebuild uses a copy; the checkout is not edited"
    assert (config.root / "src" / "demo" / "__init__.py").read_text() == ""
    assert out.read_text().startswith("# ciparity bench (official base python:3.12-slim)")


def test_job_overheads_are_acts_own_phases() -> None:
    lines = [
        '{"jobID": "lint", "step": "Set up job", "time": "2026-11-26T12:00:00Z"}',
        '{"jobID": "lint", "step": "Set up job", "time": "2026-11-26T12:00:02Z"}',
        '{"jobID": "lint", "step": "lint", "time": "2026-11-26T12:00:09Z"}',
        '{"jobID": "lint", "step": "Complete job", "time": "2026-11-26T12:00:10Z"}',
        '{"jobID": "lint", "step": "Complete job", "time": "2026-11-26T12:00:11Z"}',
        "plain text",
    ]
    assert bench.job_overheads(lines) == {"lint": 3.0}


def test_step_seconds_reads_act_s_own_step_duration(tmp_path: Path) -> None:
    log = tmp_path / "act.log.jsonl"
    entries = [
        {
            "step": "actions/setup-python@v5",
            "stage": "Pre",
            "stepResult": "success",
            "executionTime": 1,
        },
        {"step": "actions/setup-python@v5", "stage": "Main", "msg": "started"},
        {
            "step": "actions/setup-python@v5",
            "stage": "Main",
            "stepResult": "success",
            "executionTime": 1_500_000_000,
        },
    ]
    log.write_text("not json\n" + "\n".join(json.dumps(e) for e in entries) + "\n")
    assert bench._step_seconds(log, "actions/setup-python@v5") == 1.5
    assert bench._step_seconds(log, "actions/cache@v4") is None


def test_saved_gzip_bytes_streams_docker_save_through_gzip(tmp_path: Path) -> None:
    payload = tmp_path / "image.tar"
    payload.write_bytes(b"layer" * 100_000)
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\n[ \"$1 $2\" = 'save img:1' ] || exit 3\ncat {payload}\n")
    fake.chmod(0o755)
    size = bench.saved_gzip_bytes(str(fake), "img:1")
    assert size == len(gzip.compress(payload.read_bytes(), 6, mtime=0))
    with pytest.raises(CiparityError, match="docker save other failed"):
        bench.saved_gzip_bytes(str(fake), "other")


def _act_log(tmp_path: Path, entries: list[dict[str, object]]) -> Path:
    log = tmp_path / "act.log.jsonl"
    log.write_text("not json\n[1]\n" + "\n".join(json.dumps(e) for e in entries) + "\n")
    return log


def test_step_times_lists_every_finished_step_in_order(tmp_path: Path) -> None:
    log = _act_log(
        tmp_path,
        [
            {"step": "Set up job", "stepResult": "success", "executionTime": 5},
            {"step": "install", "stage": "Main", "msg": "Collecting pytest"},
            {"step": "install", "stage": "Main", "stepResult": "success", "executionTime": 2e9},
            {"step": "test", "stage": "Main", "stepResult": "failure", "executionTime": 5e8},
            {
                "step": "actions/cache@v4",
                "stage": "Post",
                "stepResult": "success",
                "executionTime": 1e9,
            },
        ],
    )
    assert bench.step_times(log) == [
        ("Main", "install", 2.0),
        ("Main", "test", 0.5),
        ("Post", "actions/cache@v4", 1.0),
    ]


def test_saved_cache_sizes_reads_what_post_steps_saved(tmp_path: Path) -> None:
    log = _act_log(
        tmp_path,
        [
            {"stage": "Main", "msg": "Cache Size: ~9 MB (9000000 B)"},  # a restore, not a save
            {"stage": "Post", "msg": "Cache Size: ~0 MB (210 B)"},
            {"stage": "Post", "msg": "Cache saved successfully"},
            {"stage": "Post", "msg": "Cache Size: ~2 MB (2100000 B)\n"},
        ],
    )
    assert bench.saved_cache_sizes(log) == ["~0 MB (210 B)", "~2 MB (2100000 B)"]


def test_job_run_splits_the_natively_repeated_steps_from_the_rest() -> None:
    run = bench.JobRun(
        30.0,
        0,
        [
            ("Main", "actions/setup-python@v5", 2.0),
            ("Main", "install", 20.0),
            ("Main", "test", 3.0),
            ("Post", "actions/setup-python@v5", 4.0),
            ("Main", "report", 0.5),
        ],
        [],
    )
    assert run.work() == 23.0
    assert run.slowest(2) == "Post actions/setup-python@v5 4.0, Main actions/setup-python@v5 2.0"


def test_native_job_gives_pip_the_cache_folder_it_is_handed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = tmp_path / "fixture"
    fixture.mkdir()
    (fixture / "pyproject.toml").write_text("")
    seen: list[tuple[str, str]] = []

    def quiet(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
        assert env is not None
        seen.append((argv[2] if len(argv) > 2 else "", env["PIP_CACHE_DIR"]))
        return 1 if argv[2:] == ["pytest", "-q"] else 0

    monkeypatch.setattr(bench, "_quiet", quiet)
    parts, code = bench._native_job(fixture, tmp_path / "copy", tmp_path / "pip-cache")
    assert set(parts) == {"venv", "pip", "pytest"}
    assert code == 1  # the worst exit code of the four commands
    assert [cache for _, cache in seen] == [str(tmp_path / "pip-cache")] * 4
    assert [what for what, _ in seen] == ["venv", "pip", "pip", "pytest"]
    assert (tmp_path / "copy" / "pyproject.toml").is_file()


def test_cpu_probe_times_the_same_loop_on_the_host_and_in_the_runner_image(
    make_config: Any, fake_run: FakeRun
) -> None:
    config = make_config()
    fake_run.on("docker", "run", returncode=0, stdout="2.5\n")
    host, inside = bench.cpu_probe(config)
    assert inside == 2.5
    assert 0 < host < 60  # the real loop ran here
    (call,) = fake_run.calls
    assert call.argv[call.argv.index("--entrypoint") + 1 :] == [
        "python3",
        config.runner_image,
        "-c",
        bench.CPU_PROBE,
    ]
    assert "--rm" in call.argv and "--network" in call.argv


def test_cpu_probe_failing_in_the_container_is_one_clear_error(
    make_config: Any, fake_run: FakeRun
) -> None:
    config = make_config()
    fake_run.on("docker", "run", returncode=125, stderr="no such image")
    with pytest.raises(CiparityError, match=f"the CPU probe failed in {config.runner_image}"):
        bench.cpu_probe(config)


def test_shared_actions_source_prefers_the_setting_then_the_setup_copy(
    make_config: Any, tmp_path: Path
) -> None:
    config = make_config()
    beside = config.root.parent / "shared" / "actions"
    assert bench.shared_actions_source(config, {}) == beside
    (config.reports_dir / ".shared-actions").mkdir(parents=True)
    assert bench.shared_actions_source(config, {}) == config.reports_dir / ".shared-actions"
    chosen = {"CIPARITY_SHARED_ACTIONS": str(tmp_path / "mine")}
    assert bench.shared_actions_source(config, chosen) == tmp_path / "mine"
