"""SLO verdicts: does a run meet its SLO, over the whole run and per window, and why not.

Why ratios of counts and not percentile comparisons: "99.9% of gets under 2 ms" is met
when the share of recorded values <= 2 ms is >= 99.9%. Counting values at or below the
threshold in the histogram is exact up to the histogram's resolution, and adds up over
ops, intervals and machines, where percentiles don't. Values the histogram cannot tell
apart from the threshold (same bucket) count as at the threshold, so "under 2 ms" means
"<= 2 ms": a value exactly at the threshold meets it, the next distinguishable value
misses. Ratios are compared as exact fractions so that 999 of 1000 meets 99.9%.

The spec is bench.scenario.slo's; the analyzer hands measurements in through the small
`SloSource` protocol, so verdicts need no run directory (tests feed plain arrays). The
verdict is a `Verdict` (summary.json's `slo`); its field names are summary.json's keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from bench.results.rundir import JsonRecord, optional
from bench.scenario.slo import ErrorBudget, HitRatioObjective, LatencyObjective, SloSpec
from bench.units import format_percent, format_times
from bench.vocabulary import ERROR_KINDS, ERROR_TIMEOUT, LOOKUP_OPS

_RATIO_PRECISION = 10**9


class SloSource(Protocol):
    """What a verdict needs from a run: per-interval counts, aligned with `interval_starts`."""

    interval_starts: np.ndarray

    def under(self, ops: list[str], threshold_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Per interval: (latency values <= threshold_us, all latency values) over `ops`."""

    def percentile_us(self, ops: list[str], fraction: float) -> float | None:
        """Whole-run latency at `fraction` over `ops` (for display; None without data)."""

    def counter(self, name: str, ops: list[str] | None = None) -> np.ndarray:
        """Per interval sum of a timeline counter (count, hits, misses, errors_timeout ...)."""


@dataclass(frozen=True)
class WindowsVerdict(JsonRecord):
    """The window rule of one part: how many windows (with data) met its target."""

    window_s: float
    windows: int
    compliant: int
    share: float | None
    target: float  # the share of windows that must comply (windows_compliant)
    worst: float | None  # the worst window's ratio: highest for an error rate, else lowest
    passed: bool | None


@dataclass(frozen=True)
class BudgetWindows(WindowsVerdict):
    """The error budget's window rule, with the burn rate of its worst window."""

    worst_burn_rate: float | None = None


class _JudgedPart(JsonRecord):
    """A part of the SLO judged over the whole run and per window (`windows`, of the
    type `windows_type`)."""

    windows_type: ClassVar[type[WindowsVerdict]] = WindowsVerdict

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls.from_fields(data, windows=optional(cls.windows_type.from_json,
                                                      data.get("windows")))


@dataclass(frozen=True)
class ObjectiveVerdict(_JudgedPart):
    """A latency objective: the share of the ops' latencies at or under the threshold."""

    name: str
    ops: list[str]
    percentile: float  # in percent: 99.9
    threshold_us: int
    count: int
    under_count: int
    observed_fraction: float | None
    observed_percentile_us: float | None
    whole_run_passed: bool | None
    windows: WindowsVerdict | None
    passed: bool | None


@dataclass(frozen=True)
class ErrorsVerdict(_JudgedPart):
    """The error budget: failed ops over all ops, and how fast the budget burns."""

    windows_type: ClassVar[type[WindowsVerdict]] = BudgetWindows

    max_fraction: float
    count_timeouts: bool
    kinds: list[str]
    errors: int
    count: int
    observed_fraction: float | None
    burn_rate: float | None
    whole_run_passed: bool | None
    windows: BudgetWindows | None
    passed: bool | None


@dataclass(frozen=True)
class HitRatioVerdict(_JudgedPart):
    """Hits over lookups of the LOOKUP_OPS against the minimum."""

    min: float
    hits: int
    lookups: int
    observed: float | None
    whole_run_passed: bool | None
    windows: WindowsVerdict | None
    passed: bool | None


@dataclass(frozen=True)
class Verdict(JsonRecord):
    """The SLO verdict (summary.json `slo`): every part and the overall `passed`.

    `passed` is True when every judged part passes, False when one fails, and None
    when nothing could be judged (no op of the SLO ran). The analyzer's verdict of a run
    (`judged`) is never None: a part without samples fails it, named in `no_data`, and
    the verdict of a run that did not complete is `partial`.
    """

    name: str | None
    passed: bool | None
    objectives: list[ObjectiveVerdict]
    errors: ErrorsVerdict | None
    hit_ratio: HitRatioVerdict | None
    window_s: float | None
    spec: dict[str, Any]  # the SLO in its file's form (SloSpec.to_data)
    no_data: list[str] = field(default_factory=list)  # the parts that had no samples
    partial: bool = False  # over a run that did not complete: what was measured only

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls.from_fields(
            data, objectives=[ObjectiveVerdict.from_json(o) for o in data["objectives"]],
            errors=optional(ErrorsVerdict.from_json, data.get("errors")),
            hit_ratio=optional(HitRatioVerdict.from_json, data.get("hit_ratio")))


def meets(numerator: float, denominator: float, target: float, at_most: bool = False) -> bool:
    """numerator/denominator >= target (or <= with at_most), compared as exact fractions.

    Why: 99.9% parses to 0.9990000000000001 in floating point, and 999/1000 must meet it.
    """
    observed = Fraction(int(numerator), int(denominator))
    wanted = Fraction(target).limit_denominator(_RATIO_PRECISION)
    return observed <= wanted if at_most else observed >= wanted


def _ratio(numerator: float, denominator: float) -> float | None:
    """numerator/denominator, None when there is nothing to divide by."""
    return float(numerator) / float(denominator) if denominator else None


def window_index(starts: np.ndarray, window_s: float) -> np.ndarray:
    """Window number of each interval: windows of `window_s` from the first interval."""
    if not len(starts):
        return np.zeros(0, dtype=np.int64)
    # A small tolerance keeps an interval starting exactly on a window edge in that window.
    return np.floor((starts - starts.min()) / window_s + 1e-9).astype(np.int64)


def _per_window(values: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Sum per-interval values into their windows."""
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    return np.bincount(windows, weights=values, minlength=int(windows.max()) + 1) \
        .round().astype(np.int64)


def _windows_report(spec: SloSpec, numerators: np.ndarray, denominators: np.ndarray,
                    source: SloSource, target: float,
                    at_most: bool) -> WindowsVerdict | None:
    """Share of windows (with data) meeting `target`, against `windows_compliant`.

    `worst` is the ratio of the worst window: the highest for an at-most target (error
    rate), the lowest otherwise.
    """
    if spec.window_s is None or spec.windows_compliant is None:
        return None
    windows = window_index(source.interval_starts, spec.window_s)
    pairs = [(n, d) for n, d in zip(_per_window(numerators, windows),
                                    _per_window(denominators, windows)) if d > 0]
    compliant = sum(meets(n, d, target, at_most) for n, d in pairs)
    ratios = [float(n) / float(d) for n, d in pairs]
    return WindowsVerdict(
        window_s=spec.window_s, windows=len(pairs), compliant=compliant,
        share=_ratio(compliant, len(pairs)), target=spec.windows_compliant,
        worst=(max if at_most else min)(ratios, default=None),
        passed=meets(compliant, len(pairs), spec.windows_compliant) if pairs else None)


def _combine(*verdicts: bool | None) -> bool | None:
    """All judged parts must pass; parts without data (None) are not judged."""
    judged = [v for v in verdicts if v is not None]
    return all(judged) if judged else None


def _latency_verdict(spec: SloSpec, objective: LatencyObjective,
                     source: SloSource) -> ObjectiveVerdict:
    """Share of the ops' latencies at or under the threshold, whole run and per window."""
    under, total = source.under(objective.ops, objective.under_us)
    n_under, n_total = int(under.sum()), int(total.sum())
    whole = meets(n_under, n_total, objective.percentile) if n_total else None
    windows = _windows_report(spec, under, total, source, objective.percentile, False)
    return ObjectiveVerdict(
        name=objective.title, ops=list(objective.ops),
        percentile=round(objective.percentile * 100, 9), threshold_us=objective.under_us,
        count=n_total, under_count=n_under, observed_fraction=_ratio(n_under, n_total),
        observed_percentile_us=source.percentile_us(objective.ops, objective.percentile),
        whole_run_passed=whole, windows=windows,
        passed=_combine(whole, windows.passed if windows else None))


def _error_verdict(spec: SloSpec, budget: ErrorBudget, source: SloSource) -> ErrorsVerdict:
    """Errors over all ops against the budget, with burn rates: every kind (an unexpected
    one too), less timeouts when the budget does not count them."""
    kinds = [k for k in ERROR_KINDS if budget.count_timeouts or k != ERROR_TIMEOUT]
    errors = source.counter("errors")
    if not budget.count_timeouts:
        errors = errors - source.counter(f"errors_{ERROR_TIMEOUT}")
    count = source.counter("count")
    n_errors, n_count = int(errors.sum()), int(count.sum())
    whole = meets(n_errors, n_count, budget.max, at_most=True) if n_count else None
    report = _windows_report(spec, errors, count, source, budget.max, True)
    windows = None if report is None else BudgetWindows(
        **asdict(report), worst_burn_rate=_burn_rate(report.worst, budget.max))
    observed = _ratio(n_errors, n_count)
    return ErrorsVerdict(
        max_fraction=budget.max, count_timeouts=budget.count_timeouts, kinds=kinds,
        errors=n_errors, count=n_count, observed_fraction=observed,
        burn_rate=_burn_rate(observed, budget.max), whole_run_passed=whole, windows=windows,
        passed=_combine(whole, windows.passed if windows else None))


def _burn_rate(observed: float | None, allowed: float) -> float | None:
    """Observed error rate / allowed rate: 1.0 spends the budget exactly, 2.0 twice as fast.

    None when unknown (no ops) or unbounded (errors against a zero budget): JSON has no
    infinity, and the verdict already says FAIL.
    """
    if observed is None or (allowed == 0 and observed > 0):
        return None
    return observed / allowed if allowed else 0.0


def _hit_ratio_verdict(spec: SloSpec, objective: HitRatioObjective,
                       source: SloSource) -> HitRatioVerdict:
    """Hits over lookups (hits + misses) of the LOOKUP_OPS, whole run and per window."""
    ops = list(LOOKUP_OPS)
    hits = source.counter("hits", ops)
    lookups = hits + source.counter("misses", ops)
    n_hits, n_lookups = int(hits.sum()), int(lookups.sum())
    whole = meets(n_hits, n_lookups, objective.min) if n_lookups else None
    windows = _windows_report(spec, hits, lookups, source, objective.min, False)
    return HitRatioVerdict(min=objective.min, hits=n_hits, lookups=n_lookups,
                           observed=_ratio(n_hits, n_lookups), whole_run_passed=whole,
                           windows=windows,
                           passed=_combine(whole, windows.passed if windows else None))


def evaluate(spec: SloSpec, source: SloSource) -> Verdict:
    """The verdict of every part of the SLO and the overall one (summary.json's `slo`).

    A part with windows passes when the whole run meets it and enough windows do.
    """
    objectives = [_latency_verdict(spec, o, source) for o in spec.objectives]
    errors = _error_verdict(spec, spec.errors, source) if spec.errors else None
    hit_ratio = _hit_ratio_verdict(spec, spec.hit_ratio, source) if spec.hit_ratio else None
    parts = [o.passed for o in objectives] + [p.passed for p in (errors, hit_ratio) if p]
    return Verdict(name=spec.name, passed=_combine(*parts), objectives=objectives,
                   errors=errors, hit_ratio=hit_ratio, window_s=spec.window_s,
                   spec=spec.to_data())


def judged(verdict: Verdict, completed: bool) -> Verdict:
    """The verdict of a run: no data is never a pass, and an incomplete run is not a
    pass either.

    `evaluate` leaves a part without samples unjudged (passed None) and judges the rest;
    here any such part fails the whole verdict (named in `no_data`). The verdict of a
    run that did not complete is marked `partial`: it covers only what was measured.
    """
    missing = [o.name for o in verdict.objectives if o.passed is None]
    if verdict.errors and verdict.errors.passed is None:
        missing.append(f"errors <= {format_percent(verdict.errors.max_fraction)}")
    if verdict.hit_ratio and verdict.hit_ratio.passed is None:
        missing.append(f"hit ratio >= {format_percent(verdict.hit_ratio.min)}")
    return replace(verdict, passed=False if missing else verdict.passed, no_data=missing,
                   partial=not completed)


def partial_note(verdict: Verdict) -> str:
    """What a verdict line adds for a partial verdict (nothing for a complete run)."""
    return " (partial: the run did not complete)" if verdict.partial else ""


def verdict_reasons(verdict: Verdict) -> list[str]:
    """Why a verdict failed: the missed parts, then the parts that had no samples."""
    return failures(verdict) + [f"{name}: no samples" for name in verdict.no_data]


def failures(verdict: Verdict) -> list[str]:
    """Why an SLO verdict failed, one sentence per failed part (for the terminal and reports)."""
    reasons = [_reason(o.name, o, f"only {format_percent(o.observed_fraction, 3)} were")
               for o in verdict.objectives if o.passed is False]
    errors = verdict.errors
    if errors and errors.passed is False:
        burn = errors.burn_rate
        reasons.append(_reason(
            f"errors <= {format_percent(errors.max_fraction)}", errors,
            f"{format_percent(errors.observed_fraction, 3)} failed ("
            + ("zero budget" if burn is None else f"burn rate {format_times(burn, 1)}") + ")"))
    hit_ratio = verdict.hit_ratio
    if hit_ratio and hit_ratio.passed is False:
        reasons.append(_reason(f"hit ratio >= {format_percent(hit_ratio.min)}", hit_ratio,
                               f"only {format_percent(hit_ratio.observed, 2)}"))
    return reasons


def _reason(name: str, part: ObjectiveVerdict | ErrorsVerdict | HitRatioVerdict,
            missed: str) -> str:
    """`<name>: <what was missed over the run>` and/or the window shortfall."""
    head = f"{name}: " + (missed if part.whole_run_passed is False else "met over the run")
    return head + _windows_reason(part.windows)


def _windows_reason(windows: WindowsVerdict | None) -> str:
    """`, 97.0% of 10 s windows compliant (< 99%)` when the window rule failed."""
    if not windows or windows.passed is not False:
        return ""
    return (f", {format_percent(windows.share, 1)} of {windows.window_s:g} s windows "
            f"compliant (< {format_percent(windows.target)})")


def describe_windows(windows: WindowsVerdict | None) -> str:
    """`58/60 of 10 s (96.6667%, need 99%)`, or `-` without a window rule (console, report)."""
    if not windows or not windows.windows:
        return "-"
    return (f"{windows.compliant}/{windows.windows} of {windows.window_s:g} s "
            f"({format_percent(windows.share)}, need {format_percent(windows.target)})")
