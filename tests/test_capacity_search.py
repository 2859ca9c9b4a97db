"""bench capacity search: the rate decisions on synthetic summaries, and a real search
through `bench run` against a local memcached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.analysis.summary import OpSummary, Summary
from bench.analysis.validity import Validity, ValidityThresholds
from bench.analysis.verdicts import ObjectiveVerdict, Verdict
from bench.capacity.search import Search, SearchSettings
from bench.cli import main
from bench.errors import EXIT_INVALID
from bench.proxy import DelayProxy
from bench.output.capacity import search_answer


def _op(throughput: float, latency_us: dict, service_us: dict) -> OpSummary:
    return OpSummary(count=1000, errors=0, errors_by_kind={}, hits=None, misses=None,
                     hit_ratio=None, keys=1000, throughput=throughput, bytes=0,
                     latency_us=latency_us, service_us=service_us)


def _validity(reasons: list[str]) -> Validity:
    return Validity(valid=not reasons, reasons=reasons, advice=None, mode="open",
                    thresholds=ValidityThresholds(0.95, 1000, 0.9), asked_rate=None,
                    achieved_rate=None, rate_ratio=None, intended=0, sent=0, send_lag_us=None,
                    cpu_max=None, cpu_max_source="local", stall_max_us=0, parked_max=0,
                    in_flight_max=0, sources={})


def summary(rate: float, limit: float, valid_up_to: float | None = None) -> Summary:
    """A summary as the analyzer makes it: the SLO fails above `limit`; with
    `valid_up_to`, the validity verdict says the generator fell behind above it."""
    passed = rate <= limit
    objective = ObjectiveVerdict(
        name="get p99 < 2 ms", ops=["get"], percentile=99.0, threshold_us=2000, count=1000,
        under_count=999 if passed else 950, observed_fraction=0.999 if passed else 0.95,
        observed_percentile_us=900 if passed else 5000, whole_run_passed=passed,
        windows=None, passed=passed)
    slo = Verdict(name=None, passed=passed, objectives=[objective], errors=None,
                  hit_ratio=None, window_s=None, spec={})
    total = _op(rate * 1.1, {"p50": 100, "p99": 900 if passed else 5000, "p99.9": 1500},
                {"p50": 80, "p99": 300, "p99.9": 600})
    validity = None
    if valid_up_to is not None:
        validity = _validity([] if rate <= valid_up_to else
                             ["rate: sent 81% of the scheduled ops (need 95%)"])
    return Summary(scenario="synthetic", started=None, ended=None, duration_s=10.0,
                   target=None, completed=True, ops={"get": total}, total=total, slo=slo,
                   validity=validity)


class FakeRuns:
    """Probe runner over synthetic summaries, on a fake clock (each probe 10 s)."""

    def __init__(self, limit: float, valid_up_to: float | None = None) -> None:
        self.limit, self.valid_up_to, self.now = limit, valid_up_to, 0.0
        self.rates: list[tuple[str, float]] = []

    def __call__(self, rate: float, phase: str, number: int) -> tuple[Summary, str]:
        self.now += 10.0
        self.rates.append((phase, rate))
        return summary(rate, self.limit, self.valid_up_to), f"probes/{number:02d}"

    def clock(self) -> float:
        return self.now


def test_steps_up_bisects_to_the_resolution_and_confirms() -> None:
    runs = FakeRuns(limit=5_000)
    result = Search(runs, SearchSettings(start_rate=1_000, budget_s=1e6), nodes=3,
                    clock=runs.clock).run()
    phases = [p for p, _ in runs.rates]
    assert phases[:4] == ["step"] * 4 and phases[-2:] == ["confirm", "confirm"]
    assert [r for p, r in runs.rates if p == "step"] == [1_000, 2_000, 4_000, 8_000]
    assert 5_000 / 1.02 <= result.max_rate <= 5_000
    assert result.confirmed and not result.generator_limited
    assert result.broke_first.startswith("get p99 < 2 ms")
    assert result.max_rate_per_node == pytest.approx(result.max_rate / 3)
    assert "per node" in str(search_answer(result)) and "pool of 3" in str(search_answer(result))


def test_a_failed_confirmation_steps_down() -> None:
    """A confirmation that fails (noise at the knee) lowers the answer by the resolution."""
    runs = FakeRuns(limit=5_000)

    def flaky(rate: float, phase: str, number: int) -> tuple[Summary, str]:
        data, path = runs(rate, phase, number)
        if phase == "confirm" and len([p for p, _ in runs.rates if p == "confirm"]) == 1:
            data = summary(rate, 0)
        return data, path

    result = Search(flaky, SearchSettings(start_rate=1_000, budget_s=1e6),
                    clock=runs.clock).run()
    confirms = [r for p, r in runs.rates if p == "confirm"]
    assert len(confirms) == 4 and confirms[2] == pytest.approx(confirms[0] / 1.02)
    assert result.confirmed and result.max_rate == pytest.approx(confirms[2])


def test_an_invalid_probe_says_the_generator_hit_its_limit() -> None:
    """The generator falls behind at 4000 ops/s before any objective fails: no max rate,
    the highest valid rate, and the processes that rate per process implies."""
    runs = FakeRuns(limit=50_000, valid_up_to=3_000)
    result = Search(runs, SearchSettings(start_rate=1_000, budget_s=1e6, processes=1),
                    clock=runs.clock).run()
    assert result.generator_limited and result.max_rate is None
    assert result.highest_valid_rate == 2_000 and result.processes_needed == 2
    assert [p for p, _ in runs.rates] == ["step"] * 3
    answer = str(search_answer(result))
    assert "the load generator, not the cache, hit its limit" in answer
    assert "2,000 ops/s" in answer and "2 load processes" in answer
    assert "sent 81% of the scheduled ops" in result.notes[0]


def test_the_time_budget_stops_the_search() -> None:
    runs = FakeRuns(limit=1e9)
    result = Search(runs, SearchSettings(start_rate=1_000, budget_s=35), clock=runs.clock).run()
    assert len(runs.rates) == 3 and result.budget_exhausted
    assert any("time budget" in note for note in result.notes)


@pytest.mark.slow
def test_search_finds_a_max_rate_of_a_local_memcached(memcached_server, tmp_path) -> None:
    """Through `bench run`'s code, against a cache that saturates before the generator
    does: memcached behind a loopback proxy adding 2 ms per request, driven by 4 users
    (one request in flight each), so the cache side serves at most ~2,000 gets/s and
    queues beyond. Probes are run directories under one parent, the answer is confirmed,
    and search.json has the knee plot's data."""
    out = tmp_path / "search"
    with DelayProxy(memcached_server.address, 0.002) as proxy:
        code = main(["capacity", "search", "smoke", "--target", f"memcached://{proxy.address}",
                     "--users", "4", "--start-rate", "400", "--step", "2",
                     "--resolution", "10%", "--probe-duration", "2s", "--probe-warmup", "1s",
                     "--budget", "150s", "--slo", str(_latency_slo(tmp_path)),
                     "--out", str(out)])
    result = json.loads((out / "search.json").read_text())
    if code == EXIT_INVALID:  # this machine is too busy for even a few hundred ops/s
        assert result["generator_limited"] and not result["confirmed"], result
        return
    assert code == 0
    assert result["max_rate"] and result["confirmed"] and not result["generator_limited"]
    assert result["max_rate"] < 2000 * 1.2, result  # the proxied cache's limit, not ours
    probes = result["probes"]
    assert [p["phase"] for p in probes][:1] == ["step"]
    assert sum(p["phase"] == "confirm" and p["passed"] for p in probes) >= 2
    for probe in probes:
        assert (Path(probe["run_dir"]) / "summary.json").is_file()
        assert Path(probe["run_dir"]).parent == out
        assert probe["latency_us"]["p99"] and probe["service_us"]["p50"]


def _latency_slo(tmp_path: Path) -> Path:
    """An objective that queueing at the proxied cache breaks (each request takes 2 ms
    there, so p99 under 20 ms holds until the 4 connections are nearly always busy)."""
    path = tmp_path / "slo.yaml"
    path.write_text("objectives:\n  - {ops: [get, get_multi], percentile: 99%, under: 20ms}\n")
    return path
