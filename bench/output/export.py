"""Export a run for other tools: Prometheus text exposition, and a CSV timeline.

Prometheus: the run's totals as they would be scraped at its end (for a Pushgateway,
node_exporter's textfile collector, or a dashboard comparing runs). Latency is a
`summary`: quantiles from the merged histograms, `_count` the recorded values and
`_sum` count x histogram mean (the histogram keeps no exact sum; the error is within
its 0.1% resolution).

CSV: timeline.csv's counters with each interval's p50/p99/p99.9/max beside them, for
spreadsheets and pandas.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np

from bench.analysis.runs import COUNTER_COLUMNS, RunData
from bench.analysis.summary import OpSummary, Summary
from bench.vocabulary import LOOKUP_OPS

PREFIX = "cachebench"
QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("0.999", "p99.9"),
             ("0.9999", "p99.99"), ("1", "max"))
CSV_PERCENTILES = ((50.0, "p50"), (99.0, "p99"), (99.9, "p99.9"), (100.0, "max"))


def _label_value(value: Any) -> str:
    """Escape a label value as the exposition format requires (\\, ", newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | int | None) -> str:
    """A sample value: integers plainly, NaN for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Exposition:
    """Collects metric families and renders them, HELP and TYPE once per family."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        """Start a family: its HELP and TYPE lines."""
        self.lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} {kind}"]

    def sample(self, name: str, value: float | int | None, **labels: Any) -> None:
        """One sample line of the current family."""
        rendered = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        self.lines.append(f"{PREFIX}_{name}{{{rendered}}} {_number(value)}" if labels
                          else f"{PREFIX}_{name} {_number(value)}")

    def text(self) -> str:
        """The exposition, newline-terminated."""
        return "\n".join(self.lines) + "\n"


def _rows(summary: Summary) -> list[tuple[str, OpSummary]]:
    """(op label, OpSummary) for every op and the total (op="total")."""
    return [*summary.ops.items(), ("total", summary.total)]


def _counters(out: Exposition, summary: Summary) -> None:
    """ops, errors by kind, hits and misses as counters."""
    out.family("ops_total", "counter", "Operations completed during the run.")
    for op, numbers in _rows(summary):
        out.sample("ops_total", numbers.count, op=op)
    out.family("errors_total", "counter", "Failed operations, by kind of failure.")
    for op, numbers in _rows(summary):
        for kind, n in numbers.errors_by_kind.items():
            out.sample("errors_total", n, op=op, kind=kind)
    for name, found in (("hits_total", True), ("misses_total", False)):
        out.family(name, "counter", f"Keys {'found' if found else 'missing'}: per op "
                                    "(delete, touch, incr: the key existed or not); the total "
                                    f"counts lookups ({', '.join(LOOKUP_OPS)}) only.")
        for op, numbers in _rows(summary):
            value = numbers.hits if found else numbers.misses
            if value is not None:
                out.sample(name, value, op=op)
    out.family("throughput_ops_per_second", "gauge", "Operations per second over the run.")
    for op, numbers in _rows(summary):
        out.sample("throughput_ops_per_second", numbers.throughput, op=op)


def _latency(out: Exposition, summary: Summary, name: str, service: bool,
             help_text: str) -> None:
    """One latency summary family (latency, or service time): quantiles, _sum and _count
    per op."""
    out.family(name, "summary", help_text)
    for op, numbers in _rows(summary):
        stats = numbers.service_us if service else numbers.latency_us
        count = numbers.count
        for quantile, stat in QUANTILES:
            out.sample(name, stats[stat], op=op, quantile=quantile)
        out.sample(f"{name}_sum", round((stats["mean"] or 0) * count), op=op)
        out.sample(f"{name}_count", count, op=op)


def _slo(out: Exposition, summary: Summary) -> None:
    """SLO verdicts as 1/0 gauges (absent when there is no SLO or nothing was judged)."""
    verdict = summary.slo
    if not verdict or verdict.passed is None:
        return
    # A run that did not complete met its SLO only over what it measured: not a pass an
    # alert should trust (its exit status is 3), so 0, and slo_partial says why.
    out.family("slo_passed", "gauge",
               "1 when the run completed and met its SLO, 0 when not.")
    out.sample("slo_passed", int(verdict.passed and not verdict.partial))
    out.family("slo_partial", "gauge",
               "1 when the verdict covers a run that did not complete (what it measured).")
    out.sample("slo_partial", int(verdict.partial))
    out.family("slo_objective_passed", "gauge", "1 when the latency objective was met.")
    for objective in verdict.objectives:
        if objective.passed is not None:
            out.sample("slo_objective_passed", int(objective.passed), objective=objective.name)
    if verdict.errors and verdict.errors.burn_rate is not None:
        out.family("slo_error_budget_burn_rate", "gauge",
                   "Observed error rate over the allowed rate (1 spends the budget exactly).")
        out.sample("slo_error_budget_burn_rate", verdict.errors.burn_rate)


def _validity(out: Exposition, summary: Summary) -> None:
    """Whether the run measured the cache at all, as a 1/0 gauge (absent when not judged)."""
    validity = summary.validity
    if not validity:
        return
    out.family("measurement_valid", "gauge",
               "1 when the load generator kept its schedule (a measurement of the cache), "
               "0 when it fell behind (the percentiles are the harness's).")
    out.sample("measurement_valid", int(validity.valid))


def to_prometheus(summary: Summary) -> str:
    """The summary in Prometheus text exposition format 0.0.4."""
    out = Exposition()
    out.family("run_info", "gauge", "The run these metrics describe (value always 1).")
    out.sample("run_info", 1, scenario=summary.scenario or "",
               target=(summary.target and summary.target.url) or "",
               started=summary.started or "")
    out.family("duration_seconds", "gauge", "Measured duration of the run.")
    out.sample("duration_seconds", summary.duration_s)
    _counters(out, summary)
    _latency(out, summary, "latency_us", False,
             "Latency from the intended start (open loop), microseconds.")
    _latency(out, summary, "service_us", True,
             "Service time from the actual send, microseconds.")
    _slo(out, summary)
    _validity(out, summary)
    return out.text()


def to_csv(run: RunData) -> str:
    """One row per interval and op: timeline counters plus latency/service percentiles (us)."""
    pcts = [p for p, _ in CSV_PERCENTILES]
    header = ["start", "length", "op", *COUNTER_COLUMNS,
              *(f"{kind}_{label}_us" for kind in ("latency", "service")
                for _, label in CSV_PERCENTILES)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for op in run.ops:
        tables = [series[op].percentiles(pcts, run.n_intervals, run.layout) if op in series
                  else np.full((run.n_intervals, len(pcts)), np.nan)
                  for series in (run.latency, run.service)]
        counters = [run.counter(name, [op]) for name in COUNTER_COLUMNS]
        for i in _intervals_with_data(run, op):
            writer.writerow([f"{run.interval_starts[i]:.3f}", f"{run.interval_lengths[i]:.3f}",
                             op, *(int(c[i]) for c in counters),
                             *(_cell(v) for table in tables for v in table[i])])
    return buffer.getvalue()


def _intervals_with_data(run: RunData, op: str) -> list[int]:
    """Positions of the intervals where `op` has a timeline row or a histogram."""
    has = run.counter("count", [op]) > 0
    if op in run.latency:
        has[run.latency[op].interval] = True
    return np.flatnonzero(has).tolist()


def _cell(value: float) -> str:
    """A percentile cell: whole microseconds, empty when the interval had no values."""
    return "" if math.isnan(value) else str(int(value))
