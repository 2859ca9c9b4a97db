"""Run directory: naming, files that read back exactly, interrupted runs stay readable."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from bench.errors import InputError, TargetError
from bench.results.hlog import read_hlog
from bench.results.rundir import (RUN_JSON, TIMELINE_COLUMNS, TIMELINE_CSV, RunInfo, RunWriter,
                                  TimelineRow, new_run_dir, read_run, read_run_info,
                                  stats_snapshot)
from bench.results.histograms import histogram_from_values
from bench.results.recorder import Interval, OpInterval

START = 1764072000.25
WHEN = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
RUN_INFO = {"scenario": {"name": "smoke", "seed": 1}, "load": {"mode": "open", "rate": 100}}
DESCRIPTION = RunInfo.from_json(RUN_INFO)


def interval(second: int) -> Interval:
    """A synthetic interval: a get with hits, misses and errors, and a set."""
    get = OpInterval(latency=histogram_from_values(np.array([100, 200, 300 + second])),
                     service=histogram_from_values(np.array([50, 60, 70])), count=3, hits=2,
                     misses=1, keys=3, errors={"timeout": 1, "other": 1}, bytes=4096,
                     clamped=second)
    put = OpInterval(latency=histogram_from_values(np.array([900])),
                     service=histogram_from_values(np.array([800])), count=1, keys=1, bytes=10)
    return Interval(start=1764072000.0 + second, length=1.0, ops={"set": put, "get": get})


def expected_rows(second: int) -> list[TimelineRow]:
    start = 1764072000.0 + second
    return [TimelineRow(start, 1.0, "get", 3, 2, 1, 3, 2, 1, 0, 0, 0, 4096, second),
            TimelineRow(start, 1.0, "set", 1, 0, 0, 1, 0, 0, 0, 0, 0, 10, 0)]


def hlog_summary(path: Path) -> list[tuple]:
    return [(e.tag, e.start, e.length, e.histogram.encode()) for e in read_hlog(path)]


def expected_hlog(seconds: range) -> list[tuple]:
    lines = []
    for second in seconds:
        iv = interval(second)
        for op in ("get", "set"):
            lines += [(op, iv.start, 1.0, iv.ops[op].latency.encode()),
                      (f"{op}.service", iv.start, 1.0, iv.ops[op].service.encode())]
    return lines


def test_new_run_dir_is_timestamped_unique_and_safe(tmp_path: Path) -> None:
    root = tmp_path / "results"
    first = new_run_dir(root, "mediawiki", WHEN)
    second = new_run_dir(root, "mediawiki", WHEN)
    odd = new_run_dir(root, "../evil name", WHEN.replace(tzinfo=None))
    assert [p.name for p in (first, second, odd)] == [
        "20261125T120000Z-mediawiki", "20261125T120000Z-mediawiki-2", "20261125T120000Z-evil-name"]
    assert all(p.is_dir() and p.parent == root for p in (first, second, odd))


def test_out_dir_is_created_but_never_holds_two_runs(tmp_path: Path) -> None:
    out = new_run_dir(tmp_path / "results", "smoke", out=tmp_path / "a" / "b")
    assert out == tmp_path / "a" / "b" and out.is_dir()
    assert not (tmp_path / "results").exists()
    assert new_run_dir(tmp_path, "smoke", out=out) == out  # empty: fine
    (out / "notes.txt").write_text("mine")  # issue 12 item 6: never overwrite user files
    with pytest.raises(InputError, match="not empty and not a run directory") as caught:
        new_run_dir(tmp_path, "smoke", out=out)
    assert caught.value.field == "--out" and (out / "notes.txt").read_text() == "mine"
    (out / RUN_JSON).write_text("{}")
    with pytest.raises(InputError, match="already holds a run") as caught:
        new_run_dir(tmp_path, "smoke", out=out)
    assert caught.value.field == "--out"


def test_completed_run_reads_back_exactly(tmp_path: Path) -> None:
    before = stats_snapshot({"127.0.0.1:11211": {"get_hits": 5}}, START)
    after = stats_snapshot({"127.0.0.1:11211": {"get_hits": 9}, "127.0.0.1:11212": {
        "error": "connection refused"}}, START + 3)
    with RunWriter(tmp_path, DESCRIPTION, START) as writer:
        running = json.loads((tmp_path / RUN_JSON).read_text())
        for second in range(3):
            writer.write_interval(interval(second))
        writer.write_server_stats(before, after, "memcached")
        writer.finish("completed", ended=START + 3.5)
    assert (running["status"], running["completed"], running["ended"]) == ("running", False, None)
    run = read_run(tmp_path)
    assert run.info.to_json() == {**RUN_INFO, "format": 1, "interval_s": 1.0,
                                  "started": "2025-11-25T12:00:00.250Z",
                                  "ended": "2025-11-25T12:00:03.750Z", "status": "completed",
                                  "completed": True}
    assert run.timeline == [row for second in range(3) for row in expected_rows(second)]
    assert run.server_stats == {"kind": "memcached", "before": {
        "taken_at": "2025-11-25T12:00:00.250Z", "nodes": {"127.0.0.1:11211": {"get_hits": 5}}},
        "after": after}
    assert hlog_summary(run.hlog) == expected_hlog(range(3))
    assert (tmp_path / TIMELINE_CSV).read_text().splitlines()[:2] == [
        ",".join(TIMELINE_COLUMNS), "1764072000.000,1.000,get,3,2,1,3,2,1,0,0,0,4096,0"]


def test_interrupted_run_keeps_status_and_intervals_so_far(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with RunWriter(tmp_path, DESCRIPTION, START) as writer:
            writer.write_interval(interval(0))
            writer.write_interval(interval(1))
            mid_run = read_run(tmp_path)
            raise KeyboardInterrupt
    assert mid_run.info.status == "running"
    assert mid_run.timeline == expected_rows(0) + expected_rows(1)
    run = read_run(tmp_path)
    assert run.info == read_run_info(tmp_path)
    assert (run.info.status, run.info.completed) == ("interrupted", False)
    assert run.info.ended is not None and run.server_stats is None
    assert run.timeline == expected_rows(0) + expected_rows(1)
    assert hlog_summary(run.hlog) == expected_hlog(range(2))


def test_lost_target_finishes_as_aborted_and_normal_exit_as_completed(tmp_path: Path) -> None:
    with pytest.raises(TargetError):
        with RunWriter(tmp_path / "lost", DESCRIPTION, START):
            raise TargetError("memcached://127.0.0.1:1: connection refused")
    with RunWriter(tmp_path / "fine", DESCRIPTION, START):
        pass
    assert [read_run(tmp_path / name).info.status for name in ("lost", "fine")] == \
        ["aborted", "completed"]


def test_finish_twice_or_with_an_unknown_status_is_refused(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, DESCRIPTION, START)
    with pytest.raises(ValueError, match="status must be one of"):
        writer.finish("done")
    writer.finish("aborted")
    with pytest.raises(RuntimeError, match="already finished as aborted"):
        writer.finish("completed")


@pytest.mark.parametrize("missing", [RUN_JSON, "latency.hlog", TIMELINE_CSV])
def test_read_run_names_the_missing_file(tmp_path: Path, missing: str) -> None:
    RunWriter(tmp_path, DESCRIPTION, START).finish()
    (tmp_path / missing).unlink()
    with pytest.raises(InputError, match=f"not a run directory: {missing} is missing"):
        read_run(tmp_path)


def test_timeline_truncated_last_line_is_skipped_and_bad_rows_named(tmp_path: Path) -> None:
    with RunWriter(tmp_path, DESCRIPTION, START) as writer:
        writer.write_interval(interval(0))
    path = tmp_path / TIMELINE_CSV
    text = path.read_text()
    path.write_text(text + "1764072001.000,1.000,get,3,2")
    assert read_run(tmp_path).timeline == expected_rows(0)
    path.write_text(text.replace(",4096,", ",4k,"))
    with pytest.raises(InputError, match="column bytes: expected int, got '4k'") as caught:
        read_run(tmp_path)
    assert caught.value.line == 2


def test_run_json_that_is_not_json_is_named_with_its_line(tmp_path: Path) -> None:
    RunWriter(tmp_path, DESCRIPTION, START).finish()
    (tmp_path / RUN_JSON).write_text('{\n  "status": \n')
    with pytest.raises(InputError, match="invalid JSON") as caught:
        read_run(tmp_path)
    assert (caught.value.file, caught.value.line) == (str(tmp_path / RUN_JSON), 3)
