"""The analyzer against run directories with known latencies: every number checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from bench.analysis.runs import load_runs, summarize, write_summary
from bench.cli import main
from bench.output.console import RunDirWatcher, RunProgress, print_summary, task_progress
from bench.errors import InputError
from bench.results.histograms import (counts_array, default_layout, histogram_from_values,
                                      percentiles_from_counts)
from bench.scenario.slo import parse_slo
from bench.selftest import bench_analyze_speed
from helpers_rundir import START, make_run_dir

ONE_TO_1000 = list(range(1, 1001))


def test_layout_matches_hdrh_for_every_index() -> None:
    layout = default_layout()
    hist = layout.histogram
    sample = np.unique(np.linspace(0, layout.counts_len - 1, 3000).astype(int))
    for index in sample:
        value = hist.get_value_from_index(int(index))
        assert layout.lowest[index] == value
        assert layout.highest[index] == hist.get_highest_equivalent_value(value)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_equal_hdrh(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.clip(rng.lognormal(6, 1.5, 5000), 1, 60_000_000).astype(np.int64)
    hist = histogram_from_values(values)
    wanted = [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0]
    ours = percentiles_from_counts(counts_array(hist), wanted)
    assert ours.tolist() == [hist.get_value_at_percentile(p) for p in wanted]


@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.integers(1, 60_000_000), min_size=1, max_size=300),
       percentile=st.floats(0, 100))
def test_percentiles_equal_hdrh_property(values: list[int], percentile: float) -> None:
    hist = histogram_from_values(np.asarray(values))
    ours = percentiles_from_counts(counts_array(hist), [percentile])
    assert ours[0] == hist.get_value_at_percentile(percentile)


def test_percentiles_of_empty_counts_are_nan() -> None:
    assert np.isnan(percentiles_from_counts(np.zeros(default_layout().counts_len), [50.0])).all()


def test_summary_percentiles_and_counters(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [ONE_TO_1000[:500], ONE_TO_1000[500:]],
                                      "set": [[3000, 5000]]},
                           service={"get": [[10] * 500, [20] * 500], "set": [[7, 9]]},
                           counters={"get": [{"hits": 400, "misses": 100, "errors": {"timeout": 2}},
                                             {"hits": 450, "misses": 50,
                                              "errors": {"connection": 1}}]})
    summary = summarize(load_runs([run_dir]), None).to_json()
    get, set_ = summary["ops"]["get"], summary["ops"]["set"]
    assert get["latency_us"] == {"p50": 500, "p90": 900, "p99": 990, "p99.9": 999,
                                 "p99.99": 1000, "max": 1000, "mean": 500.5}
    assert get["service_us"]["p50"] == 10 and get["service_us"]["max"] == 20
    assert get["count"] == 1000 and get["errors"] == 3
    assert get["errors_by_kind"] == {"timeout": 2, "connection": 1, "server": 0, "client": 0}
    assert (get["hits"], get["misses"], get["hit_ratio"]) == (850, 150, 0.85)
    assert get["throughput"] == 500.0 and get["bytes"] == 100_000 and get["keys"] == 1000
    # 5000 us sits in a 4-us bucket: hdrh reports its highest equivalent value, 5003.
    assert set_["latency_us"]["max"] == 5003 and set_["latency_us"]["p50"] == 3001
    assert (set_["hits"], set_["misses"], set_["hit_ratio"]) == (None, None, None)
    total = summary["total"]
    assert total["count"] == 1002 and total["hits"] == 850 and total["misses"] == 150
    assert total["latency_us"]["max"] == 5003 and total["latency_us"]["p50"] == 501
    assert summary["duration_s"] == 2.0 and summary["scenario"] == "synthetic"
    assert summary["completed"] is True and summary["slo"] is None
    assert summary["started"] == "2025-11-25T12:00:00.000Z"
    assert set(summary) == {"format", "scenario", "started", "ended", "duration_s", "target",
                            "completed", "ops", "total", "slo", "validity"}


def _slo_pass(tmp_path: Path, values: list[int], under: str, name: str) -> bool | None:
    slo = parse_slo({"objectives": [{"ops": ["get"], "percentile": "99%", "under": under}]})
    run_dir = make_run_dir(tmp_path, {"get": [[100] * 99 + values]}, name=name)
    return summarize(load_runs([run_dir]), slo).to_json()["slo"]["passed"]


def test_verdict_at_threshold_meets_and_just_over_misses(tmp_path: Path) -> None:
    assert _slo_pass(tmp_path, [100, 2000], "2ms", "at") is True   # 100/101 under: 99.0099%
    assert _slo_pass(tmp_path, [2001, 2001], "2ms", "over") is False  # 99/101 under
    # 5000-5003 us share one histogram bucket: they cannot be told apart from 5 ms.
    assert _slo_pass(tmp_path, [100, 5003], "5ms", "bucket") is True
    assert _slo_pass(tmp_path, [5004, 5004], "5ms", "next") is False


def test_percent_boundary_is_exact(tmp_path: Path) -> None:
    slo = parse_slo({"objectives": [{"ops": ["get"], "percentile": "99.9%", "under": "1ms"}]})
    at = make_run_dir(tmp_path, {"get": [[100] * 999 + [5000]]}, name="at")
    over = make_run_dir(tmp_path, {"get": [[100] * 998 + [5000] * 2]}, name="over")
    objective = summarize(load_runs([at]), slo).to_json()["slo"]["objectives"][0]
    assert (objective["under_count"], objective["count"], objective["passed"]) == (999, 1000, True)
    assert objective["observed_percentile_us"] == 100
    assert summarize(load_runs([over]), slo).to_json()["slo"]["passed"] is False


def test_windows_from_a_run(tmp_path: Path) -> None:
    slo = parse_slo({"objectives": [{"ops": ["get", "get_multi"], "percentile": "90%",
                                     "under": "1ms"}],
                     "window": "2s", "windows_compliant": "60%"})
    slow, fast = [5000] * 10, [100] * 10
    run_dir = make_run_dir(tmp_path, {"get": [fast, fast, fast, slow, fast, fast],
                                      "get_multi": [fast] * 6})
    objective = summarize(load_runs([run_dir]), slo).to_json()["slo"]["objectives"][0]
    assert objective["under_count"] == 110 and objective["count"] == 120
    assert objective["windows"]["compliant"] == 2 and objective["windows"]["windows"] == 3
    assert objective["whole_run_passed"] is True and objective["passed"] is True


def test_two_directories_merge_exactly(tmp_path: Path) -> None:
    a_values, b_values = [[100, 200], [300]], [[150, 5000], [250, 260], [999]]
    a = make_run_dir(tmp_path, {"get": a_values},
                     counters={"get": [{"hits": 2, "errors": {"timeout": 1}}]}, name="a")
    b = make_run_dir(tmp_path, {"get": b_values, "set": [[10]]},
                     counters={"get": [{"hits": 1, "misses": 1}]}, name="b")
    together = make_run_dir(tmp_path, {"get": [a_values[0] + b_values[0], a_values[1] +
                                               b_values[1], b_values[2]], "set": [[10]]},
                            name="together")
    merged = summarize(load_runs([a, b]), None).to_json()
    single = summarize(load_runs([together]), None).to_json()
    assert merged["ops"]["get"]["latency_us"] == single["ops"]["get"]["latency_us"]
    assert merged["total"]["latency_us"] == single["total"]["latency_us"]
    assert merged["ops"]["get"]["count"] == 8 and merged["ops"]["get"]["hits"] == 3
    assert merged["ops"]["get"]["errors_by_kind"]["timeout"] == 1
    assert merged["duration_s"] == 3.0
    run = load_runs([a, b])
    assert run.latency["get"].per_interval(run.latency["get"].cnt, 3).tolist() == [4, 3, 1]


def test_per_interval_percentiles(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [ONE_TO_1000, [], [7]]})
    run = load_runs([run_dir])
    table = run.latency["get"].percentiles([50.0, 100.0], run.n_intervals, run.layout)
    assert run.n_intervals == 2 and run.interval_starts.tolist() == [START, START + 2]
    assert table.tolist() == [[500.0, 1000.0], [7.0, 7.0]]


def test_write_summary(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[1]]})
    path = write_summary(run_dir, summarize(load_runs([run_dir]), None))
    assert json.loads(path.read_text())["ops"]["get"]["count"] == 1


SLO_YAML = "objectives:\n  - {ops: [get], percentile: 99%, under: 1ms}\n"


def test_command_exit_codes_and_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = make_run_dir(tmp_path, {"get": [[100] * 10]}, name="good")
    bad = make_run_dir(tmp_path, {"get": [[5000] * 10]}, name="bad")
    slo_file = tmp_path / "slo.yaml"
    slo_file.write_text(SLO_YAML)
    assert main(["analyze", str(good), "--slo", str(slo_file)]) == 0
    assert json.loads((good / "summary.json").read_text())["slo"]["passed"] is True
    assert "PASS: SLO met" in capsys.readouterr().out
    assert main(["analyze", str(bad), "--slo", str(slo_file), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["slo"]["passed"] is False
    assert main(["analyze", str(good), str(bad)]) == 0  # no SLO: nothing judged
    assert not (tmp_path / "summary.json").exists()


def test_command_uses_run_json_slo(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    slo = {"objectives": [{"ops": ["get"], "percentile": "99%", "under": "1ms"}]}
    run_dir = make_run_dir(tmp_path, {"get": [[5000]]}, slo=slo)
    assert main(["analyze", str(run_dir)]) == 1
    assert "FAIL: 99% of get under 1 ms: only 0.000% were" in capsys.readouterr().out


def test_bad_input_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith(f"bench: {tmp_path / 'nope'}: not a run directory")
    run_dir = make_run_dir(tmp_path, {"get": [[1]]},
                           slo={"objectives": [{"ops": ["get"], "percentile": "200%",
                                                "under": "1ms"}]})
    assert main(["analyze", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench: {run_dir / 'run.json'}: objectives[0].percentile: ")
    assert err.count("\n") == 1


def test_corrupt_hlog_is_input_error(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[1], [2]]})
    log = run_dir / "latency.hlog"
    # Break the first histogram's base64 cookie on purpose: the line is then malformed.
    log.write_text(log.read_text().replace("HISTF", "XXXXX", 1))
    with pytest.raises(InputError, match="latency.hlog:6: malformed histogram log line"):
        load_runs([run_dir])


def test_mixed_histogram_layouts_refused(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[1]]})
    other = HdrHistogram(1, 1_000_000, 2)
    other.record_value(5)
    with (run_dir / "latency.hlog").open("a") as log:
        log.write(f"Tag=get,1.000,1.000,0.005,{other.encode().decode()}\n")
    with pytest.raises(InputError, match="different ranges or precision"):
        load_runs([run_dir])


def test_bench_analyze_speed_reports_ratio() -> None:
    result = bench_analyze_speed(n_intervals=20, n_ops=2)
    assert result["histograms"] == 80 and result["count"] == 40_000
    assert result["budget_ratio"] == result["analyze_s"] / 0.2


def _console() -> Console:
    return Console(record=True, width=100, force_terminal=False, color_system=None)


def test_print_summary_table_and_verdict(tmp_path: Path) -> None:
    slo = parse_slo({"objectives": [{"ops": ["get"], "percentile": "50%", "under": "1ms"}],
                     "errors": {"max": "10%"}})
    run_dir = make_run_dir(tmp_path, {"get": [ONE_TO_1000], "set": [[2500, 2500]]},
                           counters={"get": [{"hits": 3, "misses": 1,
                                              "errors": {"timeout": 2}}]})
    console = _console()
    print_summary(summarize(load_runs([run_dir]), slo), console)
    text = console.export_text()
    assert re.search(r"get\s+1,000\s+75\.0%\s+0\.5\s+0\.99\s+0\.999\s+1\s+0\.99\s+2", text)
    assert re.search(r"set\s+2\s+-\s+2\.5\s+2\.5\s+2\.5\s+2\.5\s+2\.5\s+0", text)
    assert "errors by kind: get 2 timeout" in text
    assert re.search(r"50% of get under 1 ms\s+100\.000% under 1 ms; p50 = 0\.5 ms\s+-\s+PASS",
                     text)
    assert text.rstrip().endswith("PASS: SLO met")


def test_print_summary_fail_line_and_no_slo(tmp_path: Path) -> None:
    slo = parse_slo({"objectives": [{"ops": ["get"], "percentile": "99%", "under": "500us"}]})
    run = load_runs([make_run_dir(tmp_path, {"get": [ONE_TO_1000]})])
    console = _console()
    print_summary(summarize(run, slo), console)
    assert console.export_text().rstrip().endswith(
        "FAIL: 99% of get under 500 us: only 50.000% were")
    console = _console()
    print_summary(summarize(run, None), console)
    assert "No SLO given: nothing judged" in console.export_text()


def test_run_progress_renders_and_stays_off_without_tty() -> None:
    quiet_console = _console()
    progress = RunProgress(None, 60, 20_000, console=quiet_console)
    assert progress.enabled is False  # not a terminal: no live display
    with progress:
        progress.update(30, 19_950.4, 1234, 7, phase="measuring")
    assert quiet_console.export_text() == ""
    shown = _console()
    shown.print(progress.render())
    assert "measuring: 30/60 s  19,950 ops/s / 20,000 asked  p99 1.23 ms  errors 7" in \
        shown.export_text()
    tty = Console(record=True, width=100, force_terminal=True)
    assert RunProgress(None, 60, console=tty, quiet=True).enabled is False
    live = RunProgress(None, 60, console=tty)
    with live:
        live.update(1, 100, None, 0, phase="warmup")
    assert "warmup: 1/60 s  100 ops/s  p99 - ms  errors 0" in tty.export_text()


def test_run_dir_watcher_reads_only_new_intervals(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[100] * 10, ONE_TO_1000[:500]],
                                      "set": [[5], ONE_TO_1000[500:]]},
                           counters={"get": [{"errors": {"timeout": 2}},
                                             {"errors": {"server": 1}}]})
    watcher = RunDirWatcher(run_dir)
    assert watcher.poll() == (1000.0, 990.0)  # interval 2: 1000 ops in 1 s, values 1..1000
    assert watcher.errors == 3
    assert watcher.poll() == (None, None)
    with (run_dir / "timeline.csv").open("a") as timeline:
        timeline.write(f"{START + 2:.3f},1.000,get,4,0,0,4,0,0,0,0,0,400,0\n{START + 3:.3f},1.0")
    assert watcher.poll() == (4.0, None)  # the unfinished last line waits for its newline


def test_refresh_feeds_the_display_from_the_run_dir(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, {"get": [[2000] * 50]})
    tty = Console(record=True, width=100, force_terminal=True)
    with RunProgress(run_dir, 10, 50, console=tty) as progress:
        progress.refresh()
    assert "50 ops/s / 50 asked  p99 2 ms  errors 0" in tty.export_text()


def test_task_progress_is_silent_off_a_terminal(capsys: pytest.CaptureFixture) -> None:
    with task_progress("prefill", total=10) as advance:
        advance(4)
        advance(6)
    assert capsys.readouterr() == ("", "")


def test_total_hit_ratio_counts_lookups_only(tmp_path: Path) -> None:
    """A delete of a missing key or an incr of a new counter is not a cache miss: the
    total's hits and misses (and the SLO's hit ratio) are those of get/get_multi/hget."""
    run_dir = make_run_dir(tmp_path, {"get": [[100] * 10], "delete": [[100] * 10]},
                           counters={"get": [{"hits": 9, "misses": 1}],
                                     "delete": [{"hits": 0, "misses": 10}]})
    run = load_runs([run_dir])
    summary = summarize(run, parse_slo({"hit_ratio": {"min": "90%"}})).to_json()
    assert summary["ops"]["delete"]["misses"] == 10  # still reported for the op itself
    assert (summary["total"]["hits"], summary["total"]["misses"]) == (9, 1)
    assert summary["slo"]["hit_ratio"]["observed"] == 0.9
    assert summary["slo"]["passed"] is True
