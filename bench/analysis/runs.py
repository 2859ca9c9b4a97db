"""Run directories -> merged histograms -> summary.json, the SLO and validity verdicts.

Why numpy and sparse storage: an hour-long run holds 3600 intervals x 8 ops x 2 tags =
57,600 histograms of 17,408 counters each (8 GB dense). Each decoded histogram is
kept as its non-zero counts only (a few hundred), all intervals of a tag in one
CSR-like `TagSeries`. Sums, per-interval percentiles and "values <= T" counts are then
vectorised numpy over those arrays, so analysing an hour takes seconds.

Percentiles are always computed from merged counts, never averaged, by the hdrh-exact
maths of `bench.results.histograms`.

Every summary also says whether the run measured the cache at all (`validity`): the
load generator's own figures per source (loadgen.csv, the `_lag:<source>` histograms)
judged against `bench.scenario.validity`'s thresholds by `bench.analysis.validity`.
Several run directories keep their sources apart (`<directory name>/<source>`), since
each is a process of its own.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.analysis.phases import phase_figures
from bench.analysis.routing import gutter_figures
from bench.analysis.summary import SUMMARY_FORMATS, OpSummary, Summary
from bench.analysis.validity import Validity, is_invalid, judge
from bench.analysis.verdicts import evaluate, judged
from bench.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE, InputError
from bench.results.histograms import (Layout, add_sparse, default_layout, latency_stats,
                                      layout_for, percentiles_from_counts, segment_percentiles,
                                      sparse_counts)
from bench.results.hlog import read_hlog
from bench.results.rundir import (LAG_PREFIX, LOADGEN_COLUMNS, RUN_JSON, SERVICE_SUFFIX,
                                  SUMMARY_JSON, TIMELINE_COLUMNS, LoadgenRow, RunFiles,
                                  RunInfo, TimelineRow, read_run, read_versioned,
                                  write_atomically)
from bench.scenario.slo import SloSpec, load_slo, parse_slo
from bench.scenario.validity import ValiditySpec, parse_validity, resolve
from bench.vocabulary import ERROR_KINDS, ERROR_OTHER, LOOKUP_OPS


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
        merged = [add_sparse(pieces[i]) for i in order]
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


# --- loading run directories -----------------------------------------------------------


# The timeline columns that are counters (summed over ops, intervals and machines).
COUNTER_COLUMNS = tuple(c for c in TIMELINE_COLUMNS if c not in ("start", "length", "op"))
# The loadgen columns that are maxima (pieces of one source and interval take the larger).
LOADGEN_MAXIMA = ("stall_max_us", "parked", "in_flight")
LOADGEN_FIGURES = tuple(c for c in LOADGEN_COLUMNS if c not in ("start", "source"))


@dataclass
class RunData:
    """One or more run directories merged: interval histograms, timeline counters, metadata.

    Implements `verdicts.SloSource` and `validity.LoadSource`, so the SLO and validity
    verdicts read it directly.
    """

    dirs: list[Path]
    runs: list[RunInfo]
    server_stats: list[dict[str, Any]]
    interval_starts: np.ndarray
    interval_lengths: np.ndarray
    latency: dict[str, TagSeries]
    service: dict[str, TagSeries]
    counters: dict[str, dict[str, np.ndarray]]  # op -> timeline column -> per interval
    layout: Layout
    lag: dict[str, TagSeries]  # source -> send-lag histograms
    loadgen: dict[str, dict[str, float]]  # source -> loadgen column -> over all intervals

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
        windows = [r.measured for r in self.runs if r.measured]
        if windows:
            return float(max(w.end for w in windows) - min(w.start for w in windows))
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

    def lag_counts(self, source: str | None = None) -> np.ndarray:
        """Dense send-lag counts of one source (None: every source merged); zeros
        without any."""
        total = np.zeros(self.layout.counts_len, dtype=np.int64)
        for name, series in self.lag.items():
            if source is None or name == source:
                total += series.total_counts()
        return total

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
        self.load: dict[str, dict[str, float]] = {}
        self.config: tuple[int, int, int] | None = None  # (lowest, highest, digits)

    def add_hlog(self, path: Path, label: str | None = None) -> None:
        """Decode every histogram of a log into sparse counts, grouped by tag and start;
        a send-lag tag's source is put under `label` (see `_source`)."""
        for entry in read_hlog(path):
            if entry.tag is None:
                raise InputError("histogram line without Tag=<op>", file=str(path))
            self._check_layout(entry.histogram, path)
            idx, cnt = sparse_counts(entry.histogram)
            start = round(entry.start, 3)
            self.starts.setdefault(start, entry.length)
            tag = entry.tag
            if tag.startswith(LAG_PREFIX):
                tag = LAG_PREFIX + _source(label, tag.removeprefix(LAG_PREFIX))
            if len(idx):
                self.hist[tag][start].append((idx, cnt))

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

    def add_loadgen(self, rows: Iterable[LoadgenRow], label: str | None = None) -> None:
        """Add loadgen rows up per source over all intervals (maxima: the largest)."""
        for row in rows:
            totals = self.load.setdefault(_source(label, row.source),
                                          dict.fromkeys(LOADGEN_FIGURES, 0.0))
            for name in LOADGEN_FIGURES:
                value = float(getattr(row, name))
                totals[name] = max(totals[name], value) if name in LOADGEN_MAXIMA \
                    else totals[name] + value

    def finish(self, dirs: list[Path], runs: list[RunInfo],
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
            latency={t: s for t, s in series.items()
                     if not t.endswith(SERVICE_SUFFIX) and not t.startswith(LAG_PREFIX)},
            service={t.removesuffix(SERVICE_SUFFIX): s for t, s in series.items()
                     if t.endswith(SERVICE_SUFFIX)},
            counters={op: _columns(rows, position, len(starts)) for op, rows in self.rows.items()},
            layout=layout,
            lag={t.removeprefix(LAG_PREFIX): s for t, s in series.items()
                 if t.startswith(LAG_PREFIX)},
            loadgen=self.load)


def _source(label: str | None, source: str) -> str:
    """A source's name in merged data: `<label>/<source>` when several run directories
    are merged (each directory's `local` is another process), else as written."""
    return f"{label}/{source}" if label else source


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
        label = run.path.name if len(files) > 1 else None
        builder.add_hlog(run.hlog, label)
        builder.add_timeline(run.timeline)
        builder.add_loadgen(run.loadgen, label)
    return builder.finish([f.path for f in files], [f.info for f in files],
                          [f.server_stats or {} for f in files])


def _refuse_duplicates(files: Sequence[RunFiles]) -> None:
    """The same run given twice (or a copy of it) would count every op twice."""
    seen: dict[str, Path] = {}
    for run in files:
        for key in {run.info.run_id or "", str(run.path.resolve())} - {""}:
            if key in seen:
                raise InputError(f"the same run as {seen[key]} (run_id or directory); give "
                                 "each run once", file=str(run.path), field="RUN_DIR")
            seen[key] = run.path


# --- the summary ------------------------------------------------------------------------


def _op_summary(run: RunData, ops: list[str], hit_ops: list[str] | None = None) -> OpSummary:
    """OpSummary of `ops` merged: one op, or all for the total, whose
    hits and misses are those of `hit_ops` (the lookups: vocabulary.LOOKUP_OPS)."""
    count = int(run.counter("count", ops).sum())
    errors = int(run.counter("errors", ops).sum())
    errors_by_kind = {kind: int(run.counter(f"errors_{kind}", ops).sum())
                      for kind in ERROR_KINDS}
    if errors > sum(errors_by_kind.values()):
        errors_by_kind[ERROR_OTHER] = errors - sum(errors_by_kind.values())
    hit_ops = ops if hit_ops is None else hit_ops
    has_hits = any(op in LOOKUP_OPS or run.counter("hits", [op]).any()
                   or run.counter("misses", [op]).any() for op in hit_ops)
    hits = int(run.counter("hits", hit_ops).sum()) if has_hits else None
    misses = int(run.counter("misses", hit_ops).sum()) if has_hits else None
    lookups = (hits or 0) + (misses or 0)
    duration = run.duration_s
    return OpSummary(
        count=count,
        errors=errors,
        errors_by_kind=errors_by_kind,
        hits=hits, misses=misses,
        hit_ratio=hits / lookups if has_hits and lookups else None,
        keys=int(run.counter("keys", ops).sum()),
        throughput=count / duration if duration else None,
        bytes=int(run.counter("bytes", ops).sum()),
        latency_us=latency_stats(run.total_counts(ops, "latency"), run.layout),
        service_us=latency_stats(run.total_counts(ops, "service"), run.layout),
    )


def summarize(run: RunData, slo: SloSpec | None) -> Summary:
    """summary.json: what ran, from run.json (several directories: earliest start, latest
    end), per op, total, SLO verdict (or None), validity verdict (None without load
    generator figures); before / during / after a run's faults and what a gutter pool
    served, for runs that have them."""
    first = run.runs[0]
    started = [r.started for r in run.runs if r.started]
    ended = [r.ended for r in run.runs if r.ended]
    completed = all(r.completed for r in run.runs)
    return Summary(
        scenario=first.scenario.name if first.scenario else None,
        started=min(started) if started else None,
        ended=max(ended) if ended else None,
        duration_s=run.duration_s,
        target=first.target,
        completed=completed,
        ops={op: _op_summary(run, [op]) for op in run.ops},
        total=_op_summary(run, run.ops, [op for op in run.ops if op in LOOKUP_OPS]),
        slo=judged(evaluate(slo, run), completed) if slo is not None else None,
        validity=validity(run, validity_spec(run, slo)),
        phases=phase_figures(run),
        gutter=gutter_figures(run.runs, run.server_stats),
    )


# --- validity: did the run measure the cache? -------------------------------------------


def validity_spec(run: RunData, slo: SloSpec | None) -> ValiditySpec:
    """The thresholds: defaults, then the scenario's `validity:` block (from run.json),
    then the SLO's (bench.scenario.validity)."""
    path, info = run.dirs[0], run.runs[0]
    resolved = (info.scenario.resolved if info.scenario else None) or {}
    scenario = parse_validity(resolved["validity"], file=str(path / RUN_JSON)) \
        if resolved.get("validity") else None
    return resolve(scenario, slo.validity if slo is not None else None)


def validity(run: RunData, spec: ValiditySpec) -> Validity | None:
    """summary.json's `validity` block (bench.analysis.validity); None for a run
    directory without loadgen.csv (nothing to judge by). The load mode is the first
    directory's, the asked rate the sum of every directory's (each drove its share)."""
    loads = [r.load or {} for r in run.runs]
    open_loop = loads[0].get("mode", "open") == "open"
    asked = sum(rate for rate in (load.get("rate") for load in loads) if rate)
    return judge(spec, run, open_loop, asked)


def write_summary(run_dir: str | Path, summary: Summary,
                  path: str | Path | None = None) -> Path:
    """Write summary.json into a run directory, or to `path` (atomically: readers never
    see half a file, a full disk leaves the old one intact)."""
    path = Path(path) if path else Path(run_dir) / SUMMARY_JSON
    write_atomically(path, json.dumps(summary.to_json(), indent=2, allow_nan=False) + "\n")
    return path


def read_summary(run_dir: str | Path) -> Summary:
    """summary.json of a run directory, as `write_summary` wrote it (or an older format
    this harness knows); InputError names the file when it is missing or unknown."""
    path = Path(run_dir) / SUMMARY_JSON
    if not path.is_file():
        raise InputError(f"no {SUMMARY_JSON}; analyze the run first (bench analyze)",
                         file=str(run_dir))
    return read_versioned(path, SUMMARY_FORMATS, Summary)


def slo_for(run: RunData, slo_file: str | None) -> SloSpec | None:
    """The SLO to judge by: --slo FILE, else the first run.json `slo` block, else none."""
    if slo_file:
        return load_slo(slo_file)
    for path, info in zip(run.dirs, run.runs):
        if info.slo:
            return parse_slo(info.slo, file=str(path / "run.json"))
    return None


def exit_code(summary: Summary) -> int:
    """A run that did not complete is judged as that first: 1 when even what it measured
    missed the SLO, else 3 (a partial verdict is not a pass), as `bench run` exits for it.
    A complete run: 4 when the measurement is invalid (whatever the SLO says), else 1
    when the SLO is missed, 0 when it is met or there is none."""
    if summary.slo and summary.slo.partial:
        return EXIT_FAILED if summary.slo.passed is False else EXIT_UNREACHABLE
    if is_invalid(summary.validity):
        return EXIT_INVALID
    return EXIT_FAILED if summary.slo and summary.slo.passed is False else EXIT_OK
