"""Regression verdicts on synthetic runs: a real 20% tail regression is caught, noise is not."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from bench.analysis.runs import load_runs
from bench.cli import main
from bench.analysis.compare import Row, Tolerance, compare, to_junit, to_markdown
from bench.results.rundir import RunInfo, RunScenario, RunWriter
from helpers_rundir import START, make_run_dir

INTERVALS, PER_INTERVAL = 40, 400


def _latencies(seed: int, tail_factor: float = 1.0, scale: float = 1.0) -> list[list[int]]:
    """Per-interval lognormal latencies (median ~250 us); values above the overall p98
    multiplied by `tail_factor`, everything by `scale`."""
    rng = np.random.default_rng(seed)
    values = rng.lognormal(np.log(250), 0.5, (INTERVALS, PER_INTERVAL))
    cut = np.quantile(values, 0.98)
    values = np.where(values > cut, values * tail_factor, values) * scale
    return np.clip(values, 1, 60e6).astype(np.int64).tolist()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("compare")
    return {name: make_run_dir(base, {"get": values, "set": _latencies(seed + 10)}, name=name)
            for name, seed, values in [("baseline", 1, _latencies(1)),
                                       ("same", 2, _latencies(2)),
                                       ("tail", 3, _latencies(3, tail_factor=1.2)),
                                       ("faster", 4, _latencies(4, scale=0.7))]}


def _row(rows: list[Row], op: str, stat: str) -> Row:
    return next(r for r in rows if r.op == op and r.stat == stat)


def test_same_distribution_is_not_a_regression(runs: dict[str, Path]) -> None:
    rows = compare(load_runs([runs["baseline"]]), load_runs([runs["same"]]), Tolerance(0.10))
    assert not [r for r in rows if r.regression]
    assert len(rows) == 10 and {r.op for r in rows} == {"get", "set"}
    p99 = _row(rows, "get", "p99")
    assert abs(p99.relative) < 0.05 and p99.intervals == (INTERVALS, INTERVALS)


def test_twenty_percent_tail_regression_is_flagged(runs: dict[str, Path]) -> None:
    rows = compare(load_runs([runs["baseline"]]), load_runs([runs["tail"]]), Tolerance(0.10))
    p99 = _row(rows, "get", "p99")
    assert p99.verdict == "regression"
    assert 0.15 < p99.relative < 0.25 and p99.p_value < 0.01 and p99.ci_low > 0.10
    assert _row(rows, "get", "p50").verdict == "noise"  # the body did not move
    assert not [r for r in rows if r.regression and r.op == "set"]
    # The same change judged against a 30% tolerance is real but tolerated.
    lenient = compare(load_runs([runs["baseline"]]), load_runs([runs["tail"]]), Tolerance(0.30))
    assert _row(lenient, "get", "p99").verdict == "within tolerance"


def test_improvement_is_not_a_failure(runs: dict[str, Path]) -> None:
    rows = compare(load_runs([runs["baseline"]]), load_runs([runs["faster"]]), Tolerance(0.10))
    assert _row(rows, "get", "p50").verdict == "improvement"
    assert not [r for r in rows if r.regression]


def test_verdicts_are_deterministic(runs: dict[str, Path]) -> None:
    first = compare(load_runs([runs["baseline"]]), load_runs([runs["tail"]]), Tolerance(0.10))
    second = compare(load_runs([runs["baseline"]]), load_runs([runs["tail"]]), Tolerance(0.10))
    assert first == second


def test_short_runs_and_missing_ops(tmp_path: Path) -> None:
    short = make_run_dir(tmp_path, {"get": [[100]] * 3}, name="short")
    other = make_run_dir(tmp_path, {"get": [[200]] * 3, "set": [[5]]}, name="other")
    rows = compare(load_runs([short]), load_runs([other]), Tolerance(0.10))
    assert _row(rows, "get", "p99").verdict == "not enough data"
    assert _row(rows, "get", "p99").relative == 1.0  # 200 us vs 100 us, both exact
    assert _row(rows, "set", "max").verdict == "only in candidate"


def test_command_outputs_and_exit_codes(runs: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    md, junit = tmp_path / "cmp.md", tmp_path / "cmp.xml"
    code = main(["compare", str(runs["baseline"]), str(runs["tail"]),
                 "--markdown", str(md), "--junit", str(junit)])
    assert code == 1
    assert "REGRESSION: get p99" in capsys.readouterr().out
    text = md.read_text()
    assert text.startswith("### cachebench compare :x:")
    assert "| get | p99 |" in text and "**regression**" in text
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "10"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert "p99" in failed and int(suite.get("failures")) == len(failed)
    assert main(["compare", str(runs["baseline"]), str(runs["same"])]) == 0


def test_tolerance_from_slo_file_and_bad_flag(runs: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("regression: {tolerance: 50%}\n")
    assert main(["compare", str(runs["baseline"]), str(runs["tail"]), "--slo", str(slo)]) == 0
    assert main(["compare", str(runs["baseline"]), str(runs["tail"]), "--tolerance", "lots"]) == 2
    assert capsys.readouterr().err.startswith("bench: --tolerance: expected a fraction")


def test_markdown_and_junit_without_regression() -> None:
    row = Row("get", "p99", 1000.0, 1010.0, 10.0, 0.01, -0.02, 0.03, 0.4, (10, 10), "noise")
    assert "No regression beyond 10.0% tolerance" in to_markdown([row], Tolerance(0.1), ("a", "b"))
    root = ElementTree.fromstring(to_junit([row], Tolerance(0.1)).split("\n", 1)[1])
    assert root.get("failures") == "0"
    assert root.find("testsuite/testcase/system-out").text == "noise: 1.000 -> 1.010 ms (+1.0%)"


def test_empty_candidate_is_bad_input(runs: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    with RunWriter(empty, RunInfo(scenario=RunScenario(name="x")), START) as writer:
        writer.finish("aborted", ended=START + 1)
    assert main(["compare", str(runs["baseline"]), str(empty)]) == 2
    assert capsys.readouterr().err == (f"bench: {empty}: no operations recorded; "
                                       "expected a run with latency data\n")


def test_min_delta_floor_keeps_small_absolute_changes_within_tolerance(
        runs: dict[str, Path]) -> None:
    """The tail regression is real and beyond 10%; a floor above its absolute size keeps it
    in tolerance, a floor below it does not."""
    base, tail = load_runs([runs["baseline"]]), load_runs([runs["tail"]])
    flagged = [r for r in compare(base, tail, Tolerance(0.10)) if r.regression]
    assert flagged
    smallest = min(r.delta_us for r in flagged)
    assert not any(r.regression for r in compare(base, tail, Tolerance(0.10, smallest + 1)))
    assert any(r.regression for r in compare(base, tail, Tolerance(0.10, smallest)))
