"""Before / during / after a run's faults: per-phase figures and recovery times.

A run with faults (run.json `faults`, the windows `bench run` observed) is judged by
what users saw around them, not by whole-run percentiles that mix the outage into
normal time. The phases are made of whole reporting intervals: `before` ends by the
first fault's start, `during` overlaps any fault, `after` starts once the last one is
over. Times are seconds from the first fault's start, to the start of the interval
where the thing was first seen (so at the resolution of one interval):

- `first_error_s`: the first interval with an error;
- `tko_s`: the first interval without timeouts after timeouts began: a client with
  mcrouter-style routing stops waiting on the node once it marked it TKO;
- `p99_recovered_s`, `hit_ratio_recovered_s`: from when on every interval's p99 stayed
  within RECOVERY_P99 x the `before` phase's p99, and its hit ratio within
  RECOVERY_HIT_RATIO of the `before` one (0 when it never left; None when it had not
  come back by the end of the run, or there is no `before`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from bench.analysis.summary import FaultTiming, PhaseFigures, Phases
from bench.results.histograms import Layout, latency_stats, segment_percentiles
from bench.results.rundir import FaultWindow, RunInfo
from bench.vocabulary import ERROR_KINDS, LOOKUP_OPS

#: How far from the pre-fault figure still counts as recovered (noise allowance).
RECOVERY_P99 = 1.5
RECOVERY_HIT_RATIO = 0.02
PHASES = ("before", "during", "after")


class _Series(Protocol):
    interval: np.ndarray
    offsets: np.ndarray
    idx: np.ndarray
    cnt: np.ndarray


class PhaseSource(Protocol):
    """What the phases need of a run (bench.analysis.runs.RunData has it)."""

    runs: list[RunInfo]
    interval_starts: np.ndarray
    interval_lengths: np.ndarray
    latency: dict[str, _Series]
    layout: Layout

    @property
    def n_intervals(self) -> int: ...

    def counter(self, name: str, ops: list[str] | None = None) -> np.ndarray: ...


def fault_windows(run: PhaseSource) -> list[FaultWindow]:
    """Every fault window of the run's directories, in start order."""
    return sorted((w for info in run.runs for w in info.faults or []),
                  key=lambda window: window.start)


def phase_figures(run: PhaseSource) -> Phases | None:
    """summary.json `phases`, or None for a run without faults."""
    windows = fault_windows(run)
    if not windows:
        return None
    start = min(w.start for w in windows)
    end = max(w.end if w.end is not None else w.start for w in windows)
    begins = run.interval_starts
    ends = begins + run.interval_lengths
    before = _phase(run, ends <= start)
    return Phases(windows=windows, before=before,
                  during=_phase(run, (begins < end) & (ends > start)),
                  after=_phase(run, begins >= end),
                  timing=_timing(run, start, before))


def _phase(run: PhaseSource, mask: np.ndarray) -> PhaseFigures | None:
    """Counts, errors by kind, hit ratio and latency of the intervals in `mask`."""
    if not mask.any():
        return None
    lookups = [op for op in run.latency if op in LOOKUP_OPS]
    hits = int(run.counter("hits", lookups)[mask].sum())
    misses = int(run.counter("misses", lookups)[mask].sum())
    counts = np.zeros(run.layout.counts_len, dtype=np.int64)
    for series in run.latency.values():
        keep = mask[_entry_intervals(series)]
        counts += np.bincount(series.idx[keep], weights=series.cnt[keep],
                              minlength=run.layout.counts_len).round().astype(np.int64)
    return PhaseFigures(duration_s=float(run.interval_lengths[mask].sum()),
                        count=int(run.counter("count")[mask].sum()),
                        errors=int(run.counter("errors")[mask].sum()),
                        errors_by_kind={kind: int(run.counter(f"errors_{kind}")[mask].sum())
                                        for kind in ERROR_KINDS},
                        hit_ratio=hits / (hits + misses) if hits + misses else None,
                        latency_us=latency_stats(counts, run.layout))


def _entry_intervals(series: _Series) -> np.ndarray:
    """The interval position of every sparse entry of a series."""
    return np.repeat(series.interval, np.diff(series.offsets))


def _interval_p99(run: PhaseSource) -> np.ndarray:
    """Per interval, the p99 latency of all ops merged (NaN for an empty interval)."""
    where = np.concatenate([_entry_intervals(s) for s in run.latency.values()] or [[]])
    idx = np.concatenate([s.idx for s in run.latency.values()] or [[]]).astype(np.int64)
    cnt = np.concatenate([s.cnt for s in run.latency.values()] or [[]]).astype(np.int64)
    order = np.lexsort((idx, where))
    offsets = np.searchsorted(where[order], np.arange(run.n_intervals + 1))
    return segment_percentiles(offsets, idx[order], cnt[order], [99.0], run.layout)[:, 0]


def _interval_hit_ratio(run: PhaseSource) -> np.ndarray:
    lookups = [op for op in run.latency if op in LOOKUP_OPS]
    hits, misses = run.counter("hits", lookups), run.counter("misses", lookups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hits + misses > 0, hits / (hits + misses), np.nan)


def _timing(run: PhaseSource, start: float,
            before_figures: PhaseFigures | None) -> FaultTiming:
    """Seconds from the first fault's start to the moments the module docstring names."""
    from_fault = run.interval_starts + run.interval_lengths > start
    errors, timeouts = run.counter("errors"), run.counter("errors_timeout")
    first_error = _first(run, start, from_fault & (errors > 0))
    tko = p99_recovered = hit_ratio_recovered = None
    first_timeout = _first_index(from_fault & (timeouts > 0))
    if first_timeout is not None:
        later = np.arange(run.n_intervals) > first_timeout
        tko = _first(run, start, later & (timeouts == 0) & (run.counter("count") > 0))
    if before_figures is not None:
        baseline_p99 = before_figures.latency_us["p99"]
        if baseline_p99 is not None:
            p99_recovered = _recovered(run, start, from_fault,
                                       _interval_p99(run) <= RECOVERY_P99 * baseline_p99)
        if before_figures.hit_ratio is not None:
            hit_ratio_recovered = _recovered(
                run, start, from_fault,
                _interval_hit_ratio(run) >= before_figures.hit_ratio - RECOVERY_HIT_RATIO)
    return FaultTiming(first_error_s=first_error, tko_s=tko, p99_recovered_s=p99_recovered,
                       hit_ratio_recovered_s=hit_ratio_recovered)


def _recovered(run: PhaseSource, start: float, from_fault: np.ndarray,
               good: np.ndarray) -> float | None:
    """When `good` held again for good: the first interval of the last streak of good
    intervals (from the fault on, intervals without ops skipped), so that a lucky
    interval in the middle of the outage is not taken for the recovery; 0 when it never
    stopped holding, None when the run ended before it held again."""
    with_ops = from_fault & (run.counter("count") > 0)
    bad = np.flatnonzero(with_ops & ~good)
    if not len(bad):
        return 0.0
    return _first(run, start, (np.arange(run.n_intervals) > bad[-1]) & with_ops)


def _first_index(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _first(run: PhaseSource, start: float, mask: np.ndarray) -> float | None:
    """Seconds from `start` to the start of the first interval in `mask` (>= 0)."""
    index = _first_index(mask)
    return None if index is None else max(0.0, float(run.interval_starts[index]) - start)
