"""`bench capacity search`: the highest open-loop rate a target sustains within the SLO.

Why open loop and probes: a closed-loop peak says how fast the harness can push, not
what rate the cache serves within an SLO; latency measured from each op's intended
start (bench.loadgen.pacing) shows the queueing a real client population would see as
the rate nears the cache's limit (mutilate's --search times from the actual send and
misses that). So the search runs short probes, each a complete run at one rate:

1. step up: from `start_rate`, multiply by `step` until an objective fails;
2. bisect between the last passing and the first failing rate until they are within
   `resolution` (default 2%) of each other;
3. confirm: run the answer `confirmations` more times; all must pass, else step down
   by the resolution and confirm again.

Every probe must be valid (its summary's `validity.valid`, the load generator's own
verdict): a probe in which the generator fell behind its schedule measured the
generator. The first invalid probe ends the search with that said, the highest valid
rate reached, and how many load processes that rate per process implies for the next
step. The search never answers with a rate that belongs to the harness.

The probes run through whatever `run_probe` does (the command layer passes `bench
run`'s own code); this module only decides rates, so it is tested with synthetic
summaries. Time is budgeted: a probe is started only when the time left allows one
more of the length the last one took.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.analysis.summary import Summary
from bench.analysis.validity import is_invalid
from bench.analysis.verdicts import failures

#: The percentiles of the knee plot (summary.json keys of latency_us / service_us).
KNEE_PERCENTILES = ("p50", "p99", "p99.9")

#: (rate, phase, probe number) -> the probe's summary and its run directory.
ProbeRunner = Callable[[float, str, int], tuple[Summary, str]]


@dataclass(frozen=True)
class SearchSettings:
    start_rate: float
    step: float = 2.0
    resolution: float = 0.02
    confirmations: int = 2
    budget_s: float = 300.0
    max_rate: float | None = None
    processes: int = 1


@dataclass
class Probe:
    """One short run at one rate, as the search judged it."""

    number: int
    phase: str                    # step, bisect or confirm
    rate: float                   # offered, ops/s
    achieved: float | None        # throughput measured: protocol calls/s (a miss's set too)
    passed: bool | None           # the SLO verdict (None: nothing judged)
    valid: bool
    failed: list[str]             # why the SLO failed, one line per objective
    invalid_reasons: list[str]
    latency_us: dict[str, float | None]
    service_us: dict[str, float | None]
    run_dir: str
    seconds: float

    @property
    def good(self) -> bool:
        return self.valid and self.passed is True


@dataclass
class SearchResult:
    """The answer and every probe behind it (search.json)."""

    max_rate: float | None               # pool total, confirmed
    nodes: int
    broke_first: str | None              # the objective that failed first above it
    generator_limited: bool
    highest_valid_rate: float | None
    processes_needed: int | None
    confirmed: bool
    budget_exhausted: bool
    elapsed_s: float
    probes: list[Probe] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def max_rate_per_node(self) -> float | None:
        return None if self.max_rate is None else self.max_rate / self.nodes

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_rate_per_node"] = self.max_rate_per_node
        return data


def judge(summary: Summary, rate: float, phase: str, number: int, run_dir: str,
          seconds: float) -> Probe:
    """A probe from its summary: SLO verdict, validity verdict (a run not judged for
    validity counts as valid), the knee plot's percentiles."""
    slo, validity, total = summary.slo, summary.validity, summary.total
    passed = None if slo is None else slo.passed
    return Probe(
        number=number, phase=phase, rate=rate, achieved=total.throughput,
        passed=passed, valid=not is_invalid(validity),
        failed=failures(slo) if slo is not None and passed is False else [],
        invalid_reasons=list(validity.reasons) if is_invalid(validity) else [],
        latency_us={p: total.latency_us.get(p) for p in KNEE_PERCENTILES},
        service_us={p: total.service_us.get(p) for p in KNEE_PERCENTILES},
        run_dir=run_dir, seconds=seconds)


class Search:
    """The state of one search; `run()` drives it to an answer."""

    def __init__(self, run_probe: ProbeRunner, settings: SearchSettings, nodes: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 progress: Callable[[Probe, float], None] | None = None) -> None:
        if settings.start_rate <= 0 or settings.step <= 1 or not 0 < settings.resolution < 1 \
                or settings.confirmations < 0:
            raise ValueError("expected a start rate > 0, a step > 1, a resolution in (0, 1) "
                             "and confirmations >= 0")
        self.run_probe, self.settings, self.nodes = run_probe, settings, nodes
        self.clock, self.progress = clock, progress
        self.started = clock()
        self.probes: list[Probe] = []
        self.exhausted = False

    # -- probing

    def _time_left(self) -> bool:
        """Room for one more probe as long as the last one took (budget), else stop."""
        last = self.probes[-1].seconds if self.probes else 0.0
        if self.clock() - self.started + last > self.settings.budget_s:
            self.exhausted = True
        return not self.exhausted

    def probe(self, rate: float, phase: str) -> Probe | None:
        """Run one probe (None: no time left for it)."""
        if not self._time_left():
            return None
        began = self.clock()
        summary, run_dir = self.run_probe(rate, phase, len(self.probes) + 1)
        probe = judge(summary, rate, phase, len(self.probes) + 1, run_dir, self.clock() - began)
        self.probes.append(probe)
        if self.progress:
            self.progress(probe, self.clock() - self.started)
        return probe

    # -- the three phases

    def run(self) -> SearchResult:
        low, high = self._step_up()
        if self._invalid() is None and low is not None and high is not None:
            low, high = self._bisect(low, high)
        answer = self._confirm(low) if self._invalid() is None and low is not None else None
        return self._result(low if answer is None else answer, high, answer is not None)

    def _invalid(self) -> Probe | None:
        return next((p for p in self.probes if not p.valid), None)

    def _step_up(self) -> tuple[float | None, float | None]:
        """(highest passing rate, first failing rate) of the coarse steps."""
        rate, low = self.settings.start_rate, None
        while self.settings.max_rate is None or rate <= self.settings.max_rate * (1 + 1e-9):
            probe = self.probe(rate, "step")
            if probe is None or not probe.valid:
                return low, None
            if not probe.good:
                return low, rate
            low, rate = rate, rate * self.settings.step
        return low, None

    def _bisect(self, low: float, high: float) -> tuple[float, float]:
        while (high - low) / low > self.settings.resolution:
            middle = math.sqrt(low * high)
            probe = self.probe(middle, "bisect")
            if probe is None or not probe.valid:
                break
            low, high = (middle, high) if probe.good else (low, middle)
        return low, high

    def _confirm(self, rate: float) -> float | None:
        """The rate once every confirmation passes; a failure steps down and retries."""
        while rate > 0:
            results = [self.probe(rate, "confirm") for _ in range(self.settings.confirmations)]
            if any(p is None or not p.valid for p in results):
                return None
            if all(p.good for p in results):      # type: ignore[union-attr]
                return rate
            rate /= 1 + self.settings.resolution
        return None

    def _result(self, rate: float | None, failing: float | None, confirmed: bool
                ) -> SearchResult:
        invalid = self._invalid()
        first_failure = next((p for p in self.probes if p.valid and p.passed is False), None)
        highest_valid = max((p.rate for p in self.probes if p.good), default=None)
        result = SearchResult(
            max_rate=rate if invalid is None else None, nodes=self.nodes,
            broke_first=first_failure.failed[0] if first_failure and first_failure.failed
            else None, generator_limited=invalid is not None,
            highest_valid_rate=highest_valid,
            processes_needed=self._processes_needed(invalid, highest_valid),
            confirmed=confirmed, budget_exhausted=self.exhausted,
            elapsed_s=self.clock() - self.started, probes=self.probes)
        if rate is None and invalid is None and not self.exhausted:
            result.notes.append("the first probe already failed: give a lower --start-rate")
        if invalid is not None:
            result.notes.append(
                f"the load generator, not the cache, hit its limit at {invalid.rate:,.0f} "
                f"ops/s (probe {invalid.number}: {'; '.join(invalid.invalid_reasons) or 'invalid'})")
        elif failing is None and rate is not None:
            result.notes.append(f"no objective failed up to {rate:,.0f} ops/s "
                                f"({'--max-rate' if not self.exhausted else 'time budget'})")
        if self.exhausted:
            result.notes.append(f"the time budget ({self.settings.budget_s:g} s) ran out")
        return result

    def _processes_needed(self, invalid: Probe | None, highest_valid: float | None) -> int | None:
        """Load processes that the rate per process of the best valid probe would need
        to offer the rate at which the generator fell behind."""
        if invalid is None or not highest_valid:
            return None
        per_process = highest_valid / self.settings.processes
        return max(self.settings.processes + 1, math.ceil(invalid.rate / per_process))
