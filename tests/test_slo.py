"""SLO parsing (one clear error per mistake) and verdict arithmetic at the boundaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.analysis.verdicts import evaluate, failures, meets, window_index
from bench.errors import InputError
from bench.scenario.slo import load_slo, parse_slo

EXAMPLE = {
    "name": "mw",
    "objectives": [{"ops": ["get", "get_multi"], "percentile": "99.9%", "under": "2ms"},
                   {"ops": ["set"], "percentile": 0.99, "under": "5ms", "name": "sets"}],
    "errors": {"max": "0.1%", "count_timeouts": False},
    "hit_ratio": {"min": "90%"},
    "window": "10s", "windows_compliant": "99%",
    "regression": {"tolerance": "5%"},
}


class FakeSource:
    """An `SloSource` from plain per-interval arrays: every op has the same numbers."""

    def __init__(self, under: list[int], total: list[int], counters: dict[str, list[int]],
                 starts: list[float] | None = None) -> None:
        self.interval_starts = np.asarray(starts if starts is not None
                                          else range(len(total)), dtype=float)
        self._under, self._total = np.asarray(under), np.asarray(total)
        self._counters = {k: np.asarray(v) for k, v in counters.items()}
        self.asked: list[tuple[list[str], int]] = []

    def under(self, ops: list[str], threshold_us: int) -> tuple[np.ndarray, np.ndarray]:
        self.asked.append((ops, threshold_us))
        return self._under, self._total

    def percentile_us(self, ops: list[str], fraction: float) -> float | None:
        return 1234.0

    def counter(self, name: str, ops: list[str] | None = None) -> np.ndarray:
        return self._counters.get(name, np.zeros(len(self.interval_starts), dtype=np.int64))


def test_parse_example_values() -> None:
    spec = parse_slo(EXAMPLE)
    first, second = spec.objectives
    assert first.ops == ["get", "get_multi"]
    assert first.percentile == pytest.approx(0.999)
    assert first.under_us == 2000
    assert first.title == "99.9% of get, get_multi under 2 ms"
    assert second.title == "sets" and second.under_us == 5000
    assert spec.errors is not None and spec.errors.max == pytest.approx(0.001)
    assert spec.errors.count_timeouts is False
    assert spec.hit_ratio is not None and spec.hit_ratio.min == pytest.approx(0.9)
    assert spec.window_s == 10.0 and spec.windows_compliant == pytest.approx(0.99)
    assert spec.regression is not None and spec.regression.tolerance == pytest.approx(0.05)


def test_to_data_round_trips() -> None:
    spec = parse_slo(EXAMPLE)
    assert parse_slo(spec.to_data()) == spec
    assert spec.to_data()["objectives"][0] == {"ops": ["get", "get_multi"],
                                               "percentile": "99.9%", "under": "2000us"}


def test_count_timeouts_defaults_to_true() -> None:
    spec = parse_slo({"errors": {"max": "1%"}})
    assert spec.errors is not None and spec.errors.count_timeouts is True


@pytest.mark.parametrize("data, field, expected", [
    ({"objectives": [{"ops": ["get"], "percentile": "120%", "under": "2ms"}]},
     "objectives[0].percentile", "between 0 and 1"),
    ({"objectives": [{"ops": ["get"], "percentile": "99%", "under": "fast"}]},
     "objectives[0].under", "expected a duration"),
    ({"objectives": [{"ops": ["gte"], "percentile": "99%", "under": "2ms"}]},
     "objectives[0]", "unknown op 'gte'"),
    ({"objectives": [{"ops": [], "percentile": "99%", "under": "2ms"}]},
     "objectives[0].ops", "at least 1"),
    ({"objectives": [{"ops": ["get"], "percentile": "99%"}]},
     "objectives[0].under", "Field required"),
    ({"errors": {"max": "1%", "count_timeout": True}},
     "errors.count_timeout", "unknown setting; expected one of max, count_timeouts"),
    ({"latency": []}, "latency", "unknown setting; expected one of name, description"),
    ({"window": "10s"}, "slo", "window and windows_compliant go together"),
    ({"window": "0s", "windows_compliant": "99%"}, "window", "duration > 0"),
])
def test_bad_input_names_file_and_field(data: dict, field: str, expected: str) -> None:
    with pytest.raises(InputError) as err:
        parse_slo(data, file="slos/x.yaml")
    assert str(err.value).startswith(f"slos/x.yaml: {field}: ")
    assert expected in str(err.value)


def test_not_a_mapping() -> None:
    with pytest.raises(InputError, match=r"^run.json: slo: expected a mapping"):
        parse_slo(["get"], file="run.json")


def test_load_slo_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the SLO file"):
        load_slo(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("objectives:\n  - {ops: [get]\n")
    with pytest.raises(InputError, match=rf"^{broken}:2: not valid YAML.*flow mapping at line 2"):
        load_slo(broken)


def test_default_slo_file_is_valid() -> None:
    spec = load_slo(Path(__file__).parent.parent / "slos" / "default.yaml")
    assert spec.objectives and spec.errors and spec.window_s


def test_meets_compares_exact_fractions() -> None:
    assert meets(999, 1000, 0.9990000000000001)  # 99.9% as parsed from "99.9%"
    assert not meets(998, 1000, 0.999)
    assert meets(2997, 3000, 0.999)
    assert meets(1, 1000, 0.001, at_most=True)
    assert not meets(2, 1000, 0.001, at_most=True)


def _latency_spec(percentile: str = "99%", **extra: object) -> dict:
    return {"objectives": [{"ops": ["get"], "percentile": percentile, "under": "2ms"}], **extra}


def test_latency_objective_at_the_boundary() -> None:
    exactly = evaluate(parse_slo(_latency_spec()), FakeSource([99], [100], {}))
    assert exactly.passed is True
    assert exactly.objectives[0].observed_fraction == 0.99
    assert exactly.objectives[0].threshold_us == 2000
    assert exactly.objectives[0].observed_percentile_us == 1234.0
    short = evaluate(parse_slo(_latency_spec()), FakeSource([98], [100], {}))
    assert short.passed is False
    assert failures(short) == ["99% of get under 2 ms: only 98.000% were"]


def test_no_data_is_not_judged() -> None:
    verdict = evaluate(parse_slo(_latency_spec()), FakeSource([0], [0], {}))
    assert verdict.objectives[0].passed is None
    assert verdict.passed is None


def test_windows_share_and_whole_run() -> None:
    # 4 intervals of 1 s, windows of 2 s: window 0 = 200/200, window 1 = 190/200 (95%).
    spec = parse_slo(_latency_spec("95%", window="2s", windows_compliant="50%"))
    source = FakeSource([100, 100, 100, 90], [100, 100, 100, 100], {})
    objective = evaluate(spec, source).to_json()["objectives"][0]
    assert objective["windows"] == {"window_s": 2.0, "windows": 2, "compliant": 2, "share": 1.0,
                                    "target": 0.5, "worst": 0.95, "passed": True}
    strict = parse_slo(_latency_spec("96%", window="2s", windows_compliant="100%"))
    objective = evaluate(strict, source).to_json()["objectives"][0]
    assert objective["whole_run_passed"] is True  # 390/400 = 97.5% >= 96%
    assert objective["windows"]["compliant"] == 1 and objective["windows"]["passed"] is False
    assert objective["passed"] is False


def test_window_index_groups_from_first_interval() -> None:
    starts = np.array([100.0, 101.0, 109.0, 110.0, 125.0])
    assert window_index(starts, 10.0).tolist() == [0, 0, 0, 1, 2]


def test_error_budget_arithmetic_and_burn_rate() -> None:
    counters = {"count": [1000, 1000], "errors": [1, 3], "errors_timeout": [1, 2],
                "errors_connection": [0, 1]}
    spec = parse_slo({"errors": {"max": "0.2%"}, "window": "1s", "windows_compliant": "50%"})
    errors = evaluate(spec, FakeSource([], [0, 0], counters)).to_json()["errors"]
    assert errors["errors"] == 4 and errors["count"] == 2000
    assert errors["observed_fraction"] == 0.002
    assert errors["burn_rate"] == pytest.approx(1.0)
    assert errors["whole_run_passed"] is True  # exactly at the budget
    assert errors["windows"]["compliant"] == 1  # 0.1% ok, 0.3% over
    assert errors["windows"]["worst_burn_rate"] == pytest.approx(1.5)
    assert errors["passed"] is True


def test_error_budget_just_over_and_timeouts_excluded() -> None:
    counters = {"count": [1000], "errors": [3], "errors_timeout": [2], "errors_server": [1]}
    over = evaluate(parse_slo({"errors": {"max": "0.2%"}}), FakeSource([], [0], counters))
    assert over.errors.errors == 3 and over.passed is False
    assert failures(over) == ["errors <= 0.2%: 0.300% failed (burn rate 1.5x)"]
    spec = parse_slo({"errors": {"max": "0.2%", "count_timeouts": False}})
    excluded = evaluate(spec, FakeSource([], [0], counters))
    assert excluded.errors.errors == 1 and excluded.passed is True
    assert excluded.errors.kinds == ["connection", "server", "client"]


def test_errors_of_an_unexpected_kind_spend_the_budget() -> None:
    """The timeline's `errors` counts every kind; one outside the named kinds (an
    unexpected exception) is still a failed request."""
    counters = {"count": [1000], "errors": [3], "errors_timeout": [1]}
    verdict = evaluate(parse_slo({"errors": {"max": "0.2%"}}), FakeSource([], [0], counters))
    assert verdict.errors.errors == 3 and verdict.passed is False
    spec = parse_slo({"errors": {"max": "0.2%", "count_timeouts": False}})
    assert evaluate(spec, FakeSource([], [0], counters)).errors.errors == 2


def test_zero_budget_burn_rate() -> None:
    counters = {"count": [10], "errors": [1], "errors_client": [1]}
    verdict = evaluate(parse_slo({"errors": {"max": 0}}), FakeSource([], [0], counters))
    assert verdict.errors.burn_rate is None and verdict.passed is False
    assert failures(verdict) == ["errors <= 0%: 10.000% failed (zero budget)"]


def test_hit_ratio_boundary() -> None:
    spec = parse_slo({"hit_ratio": {"min": "90%"}})
    met = evaluate(spec, FakeSource([], [0], {"hits": [90], "misses": [10]}))
    assert met.hit_ratio.observed == 0.9 and met.passed is True
    missed = evaluate(spec, FakeSource([], [0], {"hits": [89], "misses": [11]}))
    assert missed.passed is False
    assert failures(missed) == ["hit ratio >= 90%: only 89.00%"]


def test_window_only_failure_is_explained() -> None:
    counters = {"count": [1000, 1000], "errors": [0, 3], "errors_timeout": [0, 3]}
    spec = parse_slo({"errors": {"max": "0.2%"}, "window": "1s", "windows_compliant": "100%"})
    verdict = evaluate(spec, FakeSource([], [0, 0], counters))
    assert verdict.errors.whole_run_passed is True and verdict.passed is False
    assert failures(verdict) == ["errors <= 0.2%: met over the run, 50.0% of 1 s windows "
                                 "compliant (< 100%)"]


def test_slo_file_that_is_not_text_is_input_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"objectives: \xff\xfe\n")
    with pytest.raises(InputError, match="UTF-8"):
        load_slo(path)
