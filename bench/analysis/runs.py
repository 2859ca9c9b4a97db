"""Run directories -> merged histograms -> summary.json and the SLO verdict.

Why numpy and sparse storage: an hour-long run holds 3600 intervals x 8 ops x 2 tags =
57,600 histograms of 17,408 counters each (8 GB dense). Each decoded histogram is
kept as its non-zero counts only (a few hundred), all intervals of a tag in one
CSR-like `TagSeries`. Sums, per-interval percentiles and "values <= T" counts are then
vectorised numpy over those arrays, so analysing an hour takes seconds.

Percentiles follow hdrh exactly (`get_value_at_percentile`: the first counts index where
the cumulative count reaches `int(p * total / 100 + 0.5)`, reported as that bucket's
highest equivalent value), and are always computed from merged counts, never averaged.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, InputError
from bench.results.hlog import read_hlog
from bench.results.recorder import Layout, default_layout, layout_for, sparse_counts
from bench.results.rundir import (ERROR_KINDS, SERVICE_SUFFIX, SUMMARY_JSON, TIMELINE_COLUMNS,
                          RunFiles, TimelineRow, read_run, write_atomically)
from bench.scenario.slo import (LOOKUP_OPS, SloSpec, evaluate, failures, format_percent,
                                load_slo, parse_slo)

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
PERCENTILE_KEYS = ("p50", "p90", "p99", "p99.9", "p99.99")
# Ops that look keys up, so hits and misses mean something (others report null).



# --- histogram layout and percentiles ---------------------------------------------------


def _targets(totals: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """hdrh's target count per (segment, percentile): max(int(p * total / 100 + 0.5), 1)."""
    p = np.minimum(np.asarray(percentiles, dtype=np.float64), 100.0)
    raw = np.floor(p[None, :] * totals[:, None].astype(np.float64) / 100 + 0.5)
    return np.maximum(raw.astype(np.int64), 1)


def segment_percentiles(offsets: np.ndarray, idx: np.ndarray, cnt: np.ndarray,
                        percentiles: Sequence[float], layout: Layout) -> np.ndarray:
    """Percentiles (0..100) of every segment of a CSR set of sparse histograms, in us.

    Segment s holds indexes idx[offsets[s]:offsets[s+1]] (ascending) with counts cnt[...].
    Returns an array (segments x percentiles); NaN for an empty segment. Vectorised: one
    cumulative sum over all segments and one searchsorted, no Python loop per segment.
    """
    cum = np.cumsum(cnt, dtype=np.int64)
    base = np.concatenate(([0], cum))[offsets[:-1]]
    totals = np.concatenate(([0], cum))[offsets[1:]] - base
    wanted = base[:, None] + _targets(totals, percentiles)
    position = np.searchsorted(cum, wanted.ravel(), side="left").reshape(wanted.shape)
    position = np.minimum(position, max(len(idx) - 1, 0))
    values = layout.highest[idx[position]].astype(np.float64) if len(idx) else \
        np.zeros(wanted.shape)
    zero = np.asarray(percentiles) == 0
    if zero.any() and len(idx):  # hdrh reports the lowest equivalent value at p0
        values[:, zero] = layout.lowest[idx[position[:, zero]]]
    values[totals == 0] = np.nan
    return values


def percentiles_from_counts(counts: np.ndarray, percentiles: Sequence[float],
                            layout: Layout | None = None) -> np.ndarray:
    """Percentiles (0..100) of a dense counts array in us, equal to hdrh's
    `get_value_at_percentile` (highest equivalent value); NaN where the array is empty."""
    layout = layout or default_layout()
    idx = np.flatnonzero(counts)
    cnt = np.asarray(counts)[idx].astype(np.int64)
    return segment_percentiles(np.array([0, len(idx)]), idx, cnt, percentiles, layout)[0]


def latency_stats(counts: np.ndarray, layout: Layout) -> dict[str, float | None]:
    """p50 ... p99.99, max and mean of a dense counts array, as summary.json has them."""
    total = int(counts.sum())
    if not total:
        return dict.fromkeys((*PERCENTILE_KEYS, "max", "mean"))
    values = percentiles_from_counts(counts, PERCENTILES, layout)
    stats: dict[str, float | None] = {k: int(v) for k, v in zip(PERCENTILE_KEYS, values)}
    nonzero = np.flatnonzero(counts)
    stats["max"] = int(layout.highest[nonzero[-1]])
    stats["mean"] = float(np.dot(counts[nonzero].astype(np.float64),
                                 layout.median[nonzero]) / total)
    return stats


# --- per-tag series of sparse interval histograms ----------------------------------------


@dataclass
class TagSeries:
    """All interval histograms of one tag, sparse, in CSR form.

    Segment s is the histogram of interval `interval[s]` (a position in
    `RunData.interval_starts`): counts indexes idx[offsets[s]:offsets[s+1]] with counts cnt.
    """

    interval: np.ndarray
    offsets: np.ndarray
    idx: np.ndarray
    cnt: np.ndarray
    counts_len: int
    _total: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def build(cls, pieces: dict[int, list[tuple[np.ndarray, np.ndarray]]],
              counts_len: int) -> TagSeries:
        """From {interval position: [(idx, cnt), ...]}; pieces of one interval are added."""
        order = sorted(pieces)
        merged = [_add_sparse(pieces[i]) for i in order]
        lengths = [len(m[0]) for m in merged]
        return cls(interval=np.asarray(order, dtype=np.int64),
                   offsets=np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
                   idx=np.concatenate([m[0] for m in merged]) if merged else np.zeros(0, np.int64),
                   cnt=np.concatenate([m[1] for m in merged]) if merged else np.zeros(0, np.int64),
                   counts_len=counts_len)

    def total_counts(self) -> np.ndarray:
        """The whole-run histogram as a dense counts array (sum of all intervals).

        Computed once: a summary asks for it per op, for the total and per SLO objective.
        """
        if self._total is None:
            self._total = np.bincount(self.idx, weights=self.cnt, minlength=self.counts_len) \
                .round().astype(np.int64)
        return self._total

    def per_interval(self, values: np.ndarray, n_intervals: int) -> np.ndarray:
        """Sum `values` (one per sparse entry) within each interval; 0 where no histogram."""
        out = np.zeros(n_intervals, dtype=np.int64)
        if len(self.idx):
            sums = np.add.reduceat(values, self.offsets[:-1])
            out[self.interval] = sums
        return out

    def percentiles(self, percentiles: Sequence[float], n_intervals: int,
                    layout: Layout) -> np.ndarray:
        """Per-interval percentiles (intervals x percentiles), NaN where the tag has no data."""
        out = np.full((n_intervals, len(percentiles)), np.nan)
        if len(self.idx):
            out[self.interval] = segment_percentiles(self.offsets, self.idx, self.cnt,
                                                     percentiles, layout)
        return out


def _add_sparse(pieces: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Add sparse histograms (same layout): union of indexes, counts summed, ascending."""
    if len(pieces) == 1:
        return pieces[0]
    idx = np.concatenate([p[0] for p in pieces])
    cnt = np.concatenate([p[1] for p in pieces])
    unique, inverse = np.unique(idx, return_inverse=True)
    return unique, np.bincount(inverse, weights=cnt).round().astype(np.int64)


# --- loading run directories -----------------------------------------------------------


# The timeline columns that are counters (summed over ops, intervals and machines).
COUNTER_COLUMNS = tuple(c for c in TIMELINE_COLUMNS if c not in ("start", "length", "op"))


@dataclass
class RunData:
    """One or more run directories merged: interval histograms, timeline counters, metadata.

    Implements `slo.SloSource`, so SLO verdicts read it directly.
    """

    dirs: list[Path]
    runs: list[dict[str, Any]]
    server_stats: list[dict[str, Any]]
    interval_starts: np.ndarray
    interval_lengths: np.ndarray
    latency: dict[str, TagSeries]
    service: dict[str, TagSeries]
    counters: dict[str, dict[str, np.ndarray]]  # op -> timeline column -> per interval
    layout: Layout

    @property
    def ops(self) -> list[str]:
        """Every op seen in the histograms or the timeline, in a stable order."""
        return sorted(set(self.latency) | set(self.counters))

    @property
    def n_intervals(self) -> int:
        """Number of distinct interval starts over all directories."""
        return len(self.interval_starts)

    @property
    def duration_s(self) -> float:
        """Measured time: the measured window that run.json records (the union over
        directories), else first interval start to last interval end.

        Intervals are whole wall-clock seconds, so a 10 s window usually touches 11 of
        them; dividing by their span would understate throughput by up to 2 s worth.
        """
        windows = [r["measured"] for r in self.runs if r.get("measured")]
        if windows:
            return float(max(w["to"] for w in windows) - min(w["from"] for w in windows))
        if not self.n_intervals:
            return 0.0
        return float((self.interval_starts + self.interval_lengths).max()
                     - self.interval_starts.min())

    def total_counts(self, ops: Iterable[str], tags: str = "latency") -> np.ndarray:
        """Dense whole-run counts of the given ops merged (latency or service)."""
        series = self.latency if tags == "latency" else self.service
        total = np.zeros(self.layout.counts_len, dtype=np.int64)
        for op in ops:
            if op in series:
                total += series[op].total_counts()
        return total

    def under(self, ops: list[str], threshold_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Per interval: latency values <= threshold (same bucket counts as equal), all values."""
        limit = self.layout.index_of(threshold_us)
        under = np.zeros(self.n_intervals, dtype=np.int64)
        total = np.zeros(self.n_intervals, dtype=np.int64)
        for op in ops:
            if op in self.latency:
                series = self.latency[op]
                under += series.per_interval(np.where(series.idx <= limit, series.cnt, 0),
                                             self.n_intervals)
                total += series.per_interval(series.cnt, self.n_intervals)
        return under, total

    def percentile_us(self, ops: list[str], fraction: float) -> float | None:
        """Whole-run latency at `fraction` (0..1) over the merged ops; None without data."""
        counts = self.total_counts(ops)
        if not counts.any():
            return None
        return float(percentiles_from_counts(counts, [fraction * 100], self.layout)[0])

    def counter(self, name: str, ops: list[str] | None = None) -> np.ndarray:
        """Per interval sum of timeline column `name` over `ops` (default: all ops)."""
        total = np.zeros(self.n_intervals, dtype=np.int64)
        for op in ops if ops is not None else self.counters:
            columns = self.counters.get(op, {})
            if name in columns:
                total += columns[name]
        return total


class _Builder:
    """Collects the pieces of several run directories, keyed by interval start."""

    def __init__(self) -> None:
        self.starts: dict[float, float] = {}  # start -> length
        self.hist: dict[str, dict[float, list[tuple[np.ndarray, np.ndarray]]]] = \
            defaultdict(lambda: defaultdict(list))
        self.rows: dict[str, dict[float, dict[str, int]]] = defaultdict(dict)
        self.config: tuple[int, int, int] | None = None  # (lowest, highest, digits)

    def add_hlog(self, path: Path) -> None:
        """Decode every histogram of a log into sparse counts, grouped by tag and start."""
        for entry in read_hlog(path):
            if entry.tag is None:
                raise InputError("histogram line without Tag=<op>", file=str(path))
            self._check_layout(entry.histogram, path)
            idx, cnt = sparse_counts(entry.histogram)
            start = round(entry.start, 3)
            self.starts.setdefault(start, entry.length)
            if len(idx):
                self.hist[entry.tag][start].append((idx, cnt))

    def _check_layout(self, histogram: HdrHistogram, path: Path) -> None:
        """All histograms must share one layout, else their counts cannot be added."""
        config = (histogram.lowest_trackable_value, histogram.highest_trackable_value,
                  histogram.significant_figures)
        if self.config is None:
            self.config = config
        elif config != self.config:
            raise InputError("histograms with different ranges or precision cannot be merged",
                             file=str(path))

    def add_timeline(self, rows: Iterable[TimelineRow]) -> None:
        """Add timeline rows; rows of equal start and op (from several machines) add up."""
        for row in rows:
            start = round(row.start, 3)
            self.starts.setdefault(start, row.length)
            counters = self.rows[row.op].setdefault(start, dict.fromkeys(COUNTER_COLUMNS, 0))
            for name in COUNTER_COLUMNS:
                counters[name] += getattr(row, name)

    def finish(self, dirs: list[Path], runs: list[dict[str, Any]],
               stats: list[dict[str, Any]]) -> RunData:
        """Align everything on the sorted union of interval starts."""
        starts = np.array(sorted(self.starts), dtype=np.float64)
        position = {s: i for i, s in enumerate(starts.tolist())}
        layout = layout_for(*self.config) if self.config else default_layout()
        series: dict[str, TagSeries] = {}
        for tag, per_start in self.hist.items():
            series[tag] = TagSeries.build({position[s]: p for s, p in per_start.items()},
                                          layout.counts_len)
        return RunData(
            dirs=dirs, runs=runs, server_stats=stats, interval_starts=starts,
            interval_lengths=np.array([self.starts[s] for s in starts.tolist()]),
            latency={t: s for t, s in series.items() if not t.endswith(SERVICE_SUFFIX)},
            service={t.removesuffix(SERVICE_SUFFIX): s for t, s in series.items()
                     if t.endswith(SERVICE_SUFFIX)},
            counters={op: _columns(rows, position, len(starts)) for op, rows in self.rows.items()},
            layout=layout)


def _columns(rows: dict[float, dict[str, int]], position: dict[float, int],
             n_intervals: int) -> dict[str, np.ndarray]:
    """{start: {column: value}} -> {column: array over all intervals}."""
    columns = {name: np.zeros(n_intervals, dtype=np.int64) for name in COUNTER_COLUMNS}
    for start, row in rows.items():
        for name, value in row.items():
            columns[name][position[start]] = value
    return columns


def load_runs(paths: Sequence[str | Path]) -> RunData:
    """Read one or more run directories; several merge by adding equal-start intervals."""
    if not paths:
        raise InputError("expected at least one run directory", field="RUN_DIR")
    builder = _Builder()
    files = [read_run(path) for path in paths]
    _refuse_duplicates(files)
    for run in files:
        builder.add_hlog(run.hlog)
        builder.add_timeline(run.timeline)
    return builder.finish([f.path for f in files], [f.info for f in files],
                          [f.server_stats or {} for f in files])


def _refuse_duplicates(files: Sequence[RunFiles]) -> None:
    """The same run given twice (or a copy of it) would count every op twice."""
    seen: dict[str, Path] = {}
    for run in files:
        for key in {str(run.info.get("run_id") or ""), str(run.path.resolve())} - {""}:
            if key in seen:
                raise InputError(f"the same run as {seen[key]} (run_id or directory); give "
                                 "each run once", file=str(run.path), field="RUN_DIR")
            seen[key] = run.path


# --- the summary ------------------------------------------------------------------------


def _op_summary(run: RunData, ops: list[str], hit_ops: list[str] | None = None) -> dict[str, Any]:
    """OpSummary (docs/internals.md) of `ops` merged: one op, or all for the total, whose
    hits and misses are those of `hit_ops` (the lookups: see slo.LOOKUP_OPS)."""
    count = int(run.counter("count", ops).sum())
    errors = int(run.counter("errors", ops).sum())
    errors_by_kind = {kind: int(run.counter(f"errors_{kind}", ops).sum())
                      for kind in ERROR_KINDS}
    if errors > sum(errors_by_kind.values()):
        errors_by_kind["other"] = errors - sum(errors_by_kind.values())
    hit_ops = ops if hit_ops is None else hit_ops
    has_hits = any(op in LOOKUP_OPS or run.counter("hits", [op]).any()
                   or run.counter("misses", [op]).any() for op in hit_ops)
    hits = int(run.counter("hits", hit_ops).sum()) if has_hits else None
    misses = int(run.counter("misses", hit_ops).sum()) if has_hits else None
    lookups = (hits or 0) + (misses or 0)
    duration = run.duration_s
    return {
        "count": count,
        "errors": errors,
        "errors_by_kind": errors_by_kind,
        "hits": hits, "misses": misses,
        "hit_ratio": hits / lookups if has_hits and lookups else None,
        "keys": int(run.counter("keys", ops).sum()),
        "throughput": count / duration if duration else None,
        "bytes": int(run.counter("bytes", ops).sum()),
        "latency_us": latency_stats(run.total_counts(ops, "latency"), run.layout),
        "service_us": latency_stats(run.total_counts(ops, "service"), run.layout),
    }


def _meta(run: RunData) -> dict[str, Any]:
    """What ran, from run.json (several directories: earliest start, latest end)."""
    first = run.runs[0]
    started = [r.get("started") for r in run.runs if r.get("started")]
    ended = [r.get("ended") for r in run.runs if r.get("ended")]
    return {
        "scenario": (first.get("scenario") or {}).get("name"),
        "started": min(started) if started else None,
        "ended": max(ended) if ended else None,
        "duration_s": run.duration_s,
        "target": first.get("target"),
        "completed": all(bool(r.get("completed")) for r in run.runs),
    }


def summarize(run: RunData, slo: SloSpec | None) -> dict[str, Any]:
    """summary.json as docs/internals.md defines it: per op, total, SLO verdict (or null)."""
    summary = _meta(run)
    summary["ops"] = {op: _op_summary(run, [op]) for op in run.ops}
    summary["total"] = _op_summary(run, run.ops, [op for op in run.ops if op in LOOKUP_OPS])
    summary["slo"] = _judged(evaluate(slo, run), summary["completed"]) if slo is not None \
        else None
    return summary


def _judged(verdict: dict[str, Any], completed: bool) -> dict[str, Any]:
    """No data is never a pass, and an incomplete run is not a pass either.

    `evaluate` leaves a part without samples unjudged (passed None) and judges the rest;
    here any such part fails the whole verdict (named in `no_data`). The verdict of a
    run that did not complete is marked `partial`: it covers only what was measured.
    """
    missing = [o["name"] for o in verdict["objectives"] if o["passed"] is None]
    if verdict.get("errors") and verdict["errors"]["passed"] is None:
        missing.append(f"errors <= {format_percent(verdict['errors']['max_fraction'])}")
    if verdict.get("hit_ratio") and verdict["hit_ratio"]["passed"] is None:
        missing.append(f"hit ratio >= {format_percent(verdict['hit_ratio']['min'])}")
    if missing:
        verdict.update(passed=False, no_data=missing)
    if not completed:
        verdict["partial"] = True
    return verdict


def partial_note(verdict: dict[str, Any]) -> str:
    """What a verdict line adds for a partial verdict (nothing for a complete run)."""
    return " (partial: the run did not complete)" if verdict.get("partial") else ""


def verdict_reasons(verdict: dict[str, Any]) -> list[str]:
    """Why a verdict failed: the missed parts, then the parts that had no samples."""
    return failures(verdict) + [f"{name}: no samples" for name in verdict.get("no_data", [])]


def write_summary(run_dir: str | Path, summary: dict[str, Any],
                  path: str | Path | None = None) -> Path:
    """Write summary.json into a run directory, or to `path` (atomically: readers never
    see half a file, a full disk leaves the old one intact)."""
    path = Path(path) if path else Path(run_dir) / SUMMARY_JSON
    write_atomically(path, json.dumps(summary, indent=2, allow_nan=False,
                                      default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    """numpy scalars to plain numbers for json."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def slo_for(run: RunData, slo_file: str | None) -> SloSpec | None:
    """The SLO to judge by: --slo FILE, else the first run.json `slo` block, else none."""
    if slo_file:
        return load_slo(slo_file)
    for path, data in zip(run.dirs, run.runs):
        if data.get("slo"):
            return parse_slo(data["slo"], file=str(path / "run.json"))
    return None


def exit_code(summary: dict[str, Any]) -> int:
    """0 when the SLO is met or there is none, 1 when missed, 3 when it was met over a run
    that did not complete (a partial verdict is not a pass)."""
    slo = summary.get("slo")
    if slo and slo["passed"] is False:
        return EXIT_FAILED
    return EXIT_UNREACHABLE if slo and slo.get("partial") else EXIT_OK


def command(args: Any) -> int:
    """`bench analyze RUN_DIR... [--slo FILE] [--json]`."""
    from bench.output.console import print_summary

    run = load_runs(args.runs)
    summary = summarize(run, slo_for(run, args.slo))
    if args.out or len(run.dirs) == 1:
        write_summary(run.dirs[0], summary, args.out)
    if args.json:
        print(json.dumps(summary, indent=2, default=_json_default))
    else:
        print_summary(summary)
    return exit_code(summary)


# --- speed benchmark --------------------------------------------------------------------


SYNTHETIC_OPS = ("get", "get_multi", "set", "add", "delete", "incr", "touch", "replace")


def write_synthetic_run(path: Path, n_intervals: int, n_ops: int, seed: int = 1,
                        start: float = 1_764_072_000.0) -> None:
    """A run directory of `n_intervals` 1 s intervals x `n_ops` ops, lognormal latencies.

    A pool of 16 distinct histograms per op is cycled, so writing stays quick while the
    analysis still decodes every line of the log.
    """
    from bench.results.recorder import Interval, OpInterval, histogram_from_values
    from bench.results.rundir import RunWriter

    rng = np.random.default_rng(seed)
    ops = [SYNTHETIC_OPS[i % len(SYNTHETIC_OPS)] + ("" if i < len(SYNTHETIC_OPS) else f"{i}")
           for i in range(n_ops)]
    pool = {op: [histogram_from_values(np.clip(rng.lognormal(5.5, 0.6, 1000), 1, 6e7)
                                       .astype(np.int64)) for _ in range(16)] for op in ops}
    info = {"scenario": {"name": "synthetic"}, "target": None, "interval_s": 1.0}
    with RunWriter(path, info, start) as writer:
        for i in range(n_intervals):
            hists = {op: pool[op][i % 16] for op in ops}
            writer.write_interval(Interval(start + i, 1.0, {
                op: OpInterval(latency=h, service=h, count=h.total_count, keys=h.total_count)
                for op, h in hists.items()}))
        writer.finish("completed", ended=start + n_intervals)


def bench_analyze_speed(n_intervals: int = 3600, n_ops: int = 8) -> dict[str, float]:
    """Time the analysis of a synthetic run of `n_intervals` x `n_ops` x 2 tags.

    `budget_ratio` is the analysis time over 1% of the simulated run time: below 1.0
    meets the budget (an hour analysed in under 36 s).
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        began = time.perf_counter()
        write_synthetic_run(run_dir, n_intervals, n_ops)
        written = time.perf_counter()
        run = load_runs([run_dir])
        summary = summarize(run, None)
        for series in run.latency.values():  # what plots and compare ask for
            series.percentiles(PERCENTILES, run.n_intervals, run.layout)
        analysed = time.perf_counter()
    seconds = analysed - written
    return {"intervals": n_intervals, "ops": n_ops, "histograms": n_intervals * n_ops * 2,
            "write_s": written - began, "analyze_s": seconds,
            "budget_ratio": seconds / (0.01 * n_intervals), "count": summary["total"]["count"]}
