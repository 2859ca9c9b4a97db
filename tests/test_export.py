"""Prometheus text checked line by line against the format, and parsed back; CSV values."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from bench.analysis.runs import load_runs, slo_for, summarize
from bench.analysis.summary import OpSummary, Summary
from bench.cli import main
from bench.output.export import to_csv, to_prometheus
from helpers_rundir import START, make_run_dir

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)|NaN|[-+]Inf)"
SAMPLE = re.compile(rf"({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)\}})? ({VALUE})")
HELP = re.compile(rf"# HELP ({NAME}) .+")
TYPE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|summary|histogram|untyped)")
SLO = {"objectives": [{"ops": ["get"], "percentile": "99%", "under": "900us", "name": "fast gets"}],
       "errors": {"max": "1%"}}
EASY_SLO = {"objectives": [{"ops": ["get"], "percentile": "99%", "under": "1s"}]}


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    """Strictly parse exposition text; fail on any line or family rule it breaks."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[tuple[str, frozenset], float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("# HELP"):
            match = HELP.fullmatch(line)
            assert match and match.group(1) not in helped, f"line {number}: {line}"
            helped.add(match.group(1))
        elif line.startswith("# TYPE"):
            match = TYPE.fullmatch(line)
            assert match and match.group(1) not in types, f"line {number}: {line}"
            types[match.group(1)] = match.group(2)
        else:
            match = SAMPLE.fullmatch(line)
            assert match, f"line {number} is not a sample: {line!r}"
            name, labels, value = match.groups()
            family = re.sub(r"_(sum|count)$", "", name) if name not in types else name
            assert family in types and family in helped, f"line {number}: no TYPE/HELP for {name}"
            if types[family] == "counter":
                assert name.endswith("_total"), f"line {number}: counter without _total"
            pairs = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                         labels or ""))
            assert (name, pairs) not in samples, f"line {number}: duplicate sample"
            samples[(name, pairs)] = float(value)
    return samples


def _labels(**labels: str) -> frozenset:
    return frozenset(labels.items())


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path, {"get": [list(range(1, 1001)), [], [2000, 3000]],
                                   "set": [[10, 20], [30]]},
                        counters={"get": [{"hits": 900, "misses": 100,
                                           "errors": {"timeout": 4, "server": 1}}]},
                        slo=SLO)


def test_prometheus_exposition_parses_and_matches_summary(run_dir: Path) -> None:
    run = load_runs([run_dir])
    summary = summarize(run, slo_for(run, None))
    samples = parse_exposition(to_prometheus(summary))
    assert samples[("cachebench_ops_total", _labels(op="get"))] == 1002
    assert samples[("cachebench_ops_total", _labels(op="total"))] == 1005
    assert samples[("cachebench_errors_total", _labels(op="get", kind="timeout"))] == 4
    assert samples[("cachebench_errors_total", _labels(op="set", kind="server"))] == 0
    assert samples[("cachebench_hits_total", _labels(op="get"))] == 900
    assert ("cachebench_hits_total", _labels(op="set")) not in samples
    assert samples[("cachebench_latency_us", _labels(op="get", quantile="0.5"))] == 501
    assert samples[("cachebench_latency_us", _labels(op="get", quantile="1"))] == 3001
    assert samples[("cachebench_latency_us_count", _labels(op="get"))] == 1002
    # hdrh's mean counts a value at the middle of its bucket: 3000 sits in [3000, 3001].
    assert samples[("cachebench_latency_us_sum", _labels(op="get"))] == 500_500 + 2000 + 3001
    assert samples[("cachebench_service_us", _labels(op="set", quantile="0.99"))] == 30
    assert samples[("cachebench_slo_passed", frozenset())] == 0
    assert samples[("cachebench_slo_objective_passed", _labels(objective="fast gets"))] == 0
    assert samples[("cachebench_slo_error_budget_burn_rate", frozenset())] == \
        pytest.approx(5 / 1005 / 0.01)
    assert samples[("cachebench_duration_seconds", frozenset())] == 3


def test_a_partial_run_that_met_its_slo_is_no_pass(tmp_path: Path) -> None:
    """An interrupted run whose measured part met the SLO: slo_passed 0, slo_partial 1
    (the exit status of such a run is 3, and an alert on the gauge must agree)."""
    path = make_run_dir(tmp_path, {"get": [[100] * 50]}, slo=EASY_SLO, status="interrupted")
    run = load_runs([path])
    summary = summarize(run, slo_for(run, None))
    assert summary.slo is not None and summary.slo.passed and summary.slo.partial
    samples = parse_exposition(to_prometheus(summary))
    assert samples[("cachebench_slo_passed", frozenset())] == 0
    assert samples[("cachebench_slo_partial", frozenset())] == 1


def test_label_values_are_escaped() -> None:
    no_values = dict.fromkeys(("p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"))
    nothing = OpSummary(count=0, errors=0, errors_by_kind={}, hits=None, misses=None,
                        hit_ratio=None, keys=0, throughput=None, bytes=0, latency_us=no_values,
                        service_us=no_values)
    summary = Summary(scenario='a "quoted"\\name\nx', started=None, ended=None,
                      duration_s=0.0, target=None, completed=False, ops={}, total=nothing,
                      slo=None)
    text = to_prometheus(summary)
    samples = parse_exposition(text)
    assert 'scenario="a \\"quoted\\"\\\\name\\nx"' in text
    assert samples[("cachebench_latency_us", _labels(op="total", quantile="0.99"))] != \
        samples[("cachebench_latency_us", _labels(op="total", quantile="0.99"))]  # NaN


def test_csv_timeline_with_percentiles(run_dir: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(load_runs([run_dir])))))
    assert [(r["op"], r["start"]) for r in rows] == [
        ("get", f"{START:.3f}"), ("get", f"{START + 2:.3f}"),
        ("set", f"{START:.3f}"), ("set", f"{START + 1:.3f}")]
    first = rows[0]
    assert (first["count"], first["hits"], first["errors"], first["errors_timeout"]) == \
        ("1000", "900", "5", "4")
    assert (first["latency_p50_us"], first["latency_p99_us"], first["latency_p99.9_us"],
            first["latency_max_us"]) == ("500", "990", "999", "1000")
    assert (rows[1]["latency_p50_us"], rows[1]["latency_max_us"]) == ("2000", "3001")
    assert rows[3]["service_max_us"] == "30"


def test_command_writes_file_or_stdout(run_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(run_dir), "--prometheus"]) == 0
    parse_exposition(capsys.readouterr().out)
    out = tmp_path / "timeline.csv"
    assert main(["export", str(run_dir), "--csv", "--out", str(out)]) == 0
    assert out.read_text().startswith("start,length,op,count,")
    assert main(["export", str(run_dir), "--csv", "--out", str(tmp_path / "no" / "x")]) == 2
    assert "--out: cannot write" in capsys.readouterr().err
