"""Baseline vs candidate: is a latency difference real, and is it a regression?

Why not just compare two p99s: two runs of the same build differ by chance, more so in
the tail. Each run is a sequence of 1 s intervals, and each interval gives one sample of
every percentile. A difference counts as *real* when both

  * a Mann-Whitney U rank test of the per-interval values of that percentile says the
    two runs differ (p < ALPHA), and
  * a bootstrap confidence interval (intervals resampled with replacement, the whole-run
    percentile recomputed from the resampled histograms) of the relative change of the
    whole-run percentile excludes zero.

A *regression* is a real increase larger than the tolerance (--tolerance, or the SLO
file's `regression.tolerance`). The bootstrap uses a fixed seed, so the same two run
directories always give the same verdict.

`bench regress` measures each side in several short runs instead (rounds, taken in
turns), and `compare_rounds` judges those: the rounds, not the intervals, are the
samples there, paired by round (see PAIRED_TEST and bench/regress.py). Both share the
verdict rule, the rows and the outputs.

No verdict is given on a side whose measurement is invalid (its load generator fell
behind: bench.analysis.validity): `invalid_sides` says which, `bench compare` refuses
with `refusal` (and its Markdown and JUnit forms) and exits 4, since a difference then
may be the harness's, not the cache's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from bench.analysis.runs import RunData, TagSeries, load_runs, validity, validity_spec
from bench.analysis.validity import ADVICE, is_invalid
from bench.errors import InputError
from bench.results.histograms import Layout, percentiles_from_counts, segment_percentiles
from bench.results.rundir import RUN_JSON, Calibration, RunInfo
from bench.scenario.slo import load_slo
from bench.units import format_ms, format_percent, format_times, parse_fraction

STATS = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("max", 100.0))
ALPHA = 0.01
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20_240_601
MIN_INTERVALS = 5
DEFAULT_TOLERANCE = "10%"


@dataclass
class Row:
    """One op and one statistic, baseline beside candidate (times in us)."""

    op: str
    stat: str
    baseline_us: float | None
    candidate_us: float | None
    delta_us: float | None
    relative: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    intervals: tuple[int, int]
    verdict: str  # regression | improvement | within tolerance | noise | not enough data
    #               | only in baseline | only in candidate

    @property
    def regression(self) -> bool:
        """True when this row fails the comparison."""
        return self.verdict == "regression"


def _mann_whitney(candidate: np.ndarray, baseline: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value; 1.0 when both samples are one identical value."""
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        raise InputError("bench compare needs scipy: pip install scipy") from None
    if np.ptp(np.concatenate((candidate, baseline))) == 0:
        return 1.0
    return float(mannwhitneyu(candidate, baseline, alternative="two-sided").pvalue)


def _dense_rows(series: TagSeries, bins: np.ndarray) -> np.ndarray:
    """The series as a dense (intervals x bins) matrix over the given union of bins."""
    rows = np.repeat(np.arange(len(series.interval)), np.diff(series.offsets))
    matrix = np.zeros((len(series.interval), len(bins)))
    matrix[rows, np.searchsorted(bins, series.idx)] = series.cnt
    return matrix


def _row_percentiles(totals: np.ndarray, bins: np.ndarray, percentiles: np.ndarray,
                     layout: Layout) -> np.ndarray:
    """hdrh percentiles of each row of a (resamples x bins) counts matrix -> (rows x pcts).

    Each row is handed to `segment_percentiles` as one segment over `bins`: the whole-run
    and the resampled percentiles are then the same maths.
    """
    rows, width = totals.shape
    return segment_percentiles(np.arange(rows + 1) * width, np.tile(bins, rows),
                               totals.ravel().round().astype(np.int64), percentiles, layout)


def bootstrap_relative_change(baseline: TagSeries, candidate: TagSeries, layout: Layout,
                              percentiles: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                              seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval (low, high per percentile) of candidate/baseline - 1.

    Each resample draws intervals with replacement from each run (multinomial weights),
    adds their histograms and takes the percentile of the sum, as the whole-run value is.
    """
    rng = np.random.default_rng(seed)
    bins = np.union1d(baseline.idx, candidate.idx)
    values = []
    for series in (baseline, candidate):
        n = len(series.interval)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
        values.append(_row_percentiles(weights @ _dense_rows(series, bins), bins,
                                       percentiles, layout))
    change = values[1] / values[0] - 1.0
    tail = (1 - CONFIDENCE) / 2 * 100
    return np.percentile(change, tail, axis=0), np.percentile(change, 100 - tail, axis=0)


def _verdict(relative: float, delta_us: float, p_value: float, ci_low: float, ci_high: float,
             tolerance: Tolerance) -> str:
    """Real change = significant rank test and a CI that excludes 0; beyond tolerance or not."""
    real = p_value < ALPHA and (ci_low > 0 or ci_high < 0)
    if not real:
        return "noise"
    if abs(relative) <= tolerance.relative or abs(delta_us) < tolerance.min_delta_us:
        return "within tolerance"
    return "regression" if relative > 0 else "improvement"


@dataclass(frozen=True)
class Tolerance:
    """How much worse a percentile may get: a relative increase, and an absolute floor
    below which no change counts (a +100% on a 40 us p50 is scheduling noise, not a
    regression an SLO would notice)."""

    relative: float
    min_delta_us: float = 0.0

    def describe(self) -> str:
        """`10%`, or `10% and 50 us` with a floor."""
        floor = f" and {self.min_delta_us:g} us" if self.min_delta_us else ""
        return f"{format_percent(self.relative, 1)}{floor}"


def compare_op(op: str, baseline: RunData, candidate: RunData,
               tolerance: Tolerance) -> list[Row]:
    """The rows of one op: every statistic of STATS, with its verdict."""
    if op not in baseline.latency or op not in candidate.latency:
        where = "baseline" if op in baseline.latency else "candidate"
        return [Row(op, stat, None, None, None, None, None, None, None, (0, 0),
                    f"only in {where}") for stat, _ in STATS]
    pcts = np.array([p for _, p in STATS])
    series = (baseline.latency[op], candidate.latency[op])
    runs = (baseline, candidate)
    whole = [percentiles_from_counts(s.total_counts(), pcts, run.layout)
             for s, run in zip(series, runs)]
    samples = [s.percentiles(pcts, run.n_intervals, run.layout)[s.interval]
               for s, run in zip(series, runs)]
    counts = (len(series[0].interval), len(series[1].interval))
    enough = min(counts) >= MIN_INTERVALS
    low, high = (bootstrap_relative_change(*series, baseline.layout, pcts) if enough
                 else (np.full(len(pcts), np.nan),) * 2)
    rows = []
    for j, (stat, _) in enumerate(STATS):
        base, cand = float(whole[0][j]), float(whole[1][j])
        relative = cand / base - 1.0
        p_value = _mann_whitney(samples[1][:, j], samples[0][:, j]) if enough else None
        verdict = (_verdict(relative, cand - base, p_value, float(low[j]), float(high[j]),
                            tolerance)
                   if p_value is not None else "not enough data")
        rows.append(Row(op, stat, base, cand, cand - base, relative,
                        _finite(low[j]), _finite(high[j]), p_value, counts, verdict))
    return rows


def _finite(value: float) -> float | None:
    """A float for JSON/tables, None for NaN."""
    return None if np.isnan(value) else float(value)


def compare(baseline: RunData, candidate: RunData, tolerance: Tolerance) -> list[Row]:
    """Every op of either run, every statistic."""
    ops = sorted(set(baseline.latency) | set(candidate.latency))
    return [row for op in ops for row in compare_op(op, baseline, candidate, tolerance)]


# --- paired rounds (bench regress) -------------------------------------------------------

MIN_ROUNDS = 3
#: A percentile is judged only where every round of both sides has at least this many
#: samples above it: a p99.9 of 200 ops, or any max, is one sample's luck, and with 30
#: rows tested at once such rows would make most of the false alarms.
MIN_TAIL_SAMPLES = 10


def compare_rounds(baselines: Sequence[RunData], candidates: Sequence[RunData],
                   tolerance: Tolerance) -> list[Row]:
    """Every op of either side, every statistic, judged on paired rounds: round k's
    baseline run against round k's candidate run (see PAIRED_TEST)."""
    ops = sorted({op for run in (*baselines, *candidates) for op in run.latency})
    rows = [row for op in ops for row in _paired_op(op, baselines, candidates, tolerance)]
    return family_adjusted(rows, tolerance)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the given order: the i-th smallest p times
    (m - i + 1), made monotone and capped at 1. Rejecting where the adjusted p < ALPHA
    keeps the chance of ANY false alarm among the m tests at most ALPHA, whatever their
    dependence."""
    order = np.argsort(p_values)
    scaled = (len(order) - np.arange(len(order))) * np.asarray(p_values, dtype=float)[order]
    adjusted = np.empty(len(order))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.tolist()


def family_adjusted(rows: list[Row], tolerance: Tolerance) -> list[Row]:
    """The rows with a p-value, p made Holm-adjusted over all of them and the verdict
    judged again on it. Why: the gate's exit status is one decision over every op and
    statistic (about 15 rows in the smoke scenario); at p < 0.01 each, identical sides
    failed about one gate in seven (a fresh CI machine: set p90 +18%, p 0.007, 3 rounds).
    Adjusted, ALPHA is the false-alarm rate of the whole gate."""
    judged = [i for i, row in enumerate(rows) if row.p_value is not None]
    adjusted = holm([rows[i].p_value for i in judged])  # type: ignore[misc]
    out = list(rows)
    for i, p_value in zip(judged, adjusted):
        row = rows[i]
        out[i] = replace(row, p_value=p_value, verdict=_verdict(
            row.relative, row.delta_us, p_value, row.ci_low, row.ci_high, tolerance))
    return out


def _round_values(runs: Sequence[RunData], op: str) -> np.ndarray:
    """Whole-run STATS of `op` in each run (rounds x stats), NaN where it did not run."""
    pcts = [p for _, p in STATS]
    return np.array([percentiles_from_counts(run.latency[op].total_counts(), pcts, run.layout)
                     if op in run.latency else np.full(len(pcts), np.nan) for run in runs])


def _paired_op(op: str, baselines: Sequence[RunData], candidates: Sequence[RunData],
               tolerance: Tolerance) -> list[Row]:
    """The rows of one op over paired rounds; rounds where one side lacks the op are left
    out of the pairing."""
    base, cand = _round_values(baselines, op), _round_values(candidates, op)
    paired = ~np.isnan(base[:, 0]) & ~np.isnan(cand[:, 0])
    counts = tuple(sum(len(run.latency[op].interval) for run in runs if op in run.latency)
                   for runs in (baselines, candidates))
    if not paired.any():
        where = "baseline" if counts[0] else "candidate"
        return [Row(op, stat, None, None, None, None, None, None, None, counts,
                    f"only in {where}") for stat, _ in STATS]
    logs = np.log(base[paired]), np.log(cand[paired])
    fewest = min(_op_count(run, op) for i, pair in enumerate(zip(baselines, candidates))
                 if paired[i] for run in pair)
    rows = []
    for j, (stat, pct) in enumerate(STATS):
        b, c = float(np.exp(logs[0][:, j].mean())), float(np.exp(logs[1][:, j].mean()))
        if paired.sum() < MIN_ROUNDS or fewest * (1 - pct / 100) < MIN_TAIL_SAMPLES:
            rows.append(Row(op, stat, b, c, c - b, c / b - 1, None, None, None, counts,
                            "not enough data"))
            continue
        p_value, low, high = paired_log_test(logs[1][:, j] - logs[0][:, j])
        rows.append(Row(op, stat, b, c, c - b, c / b - 1, low, high, p_value, counts,
                        _verdict(c / b - 1, c - b, p_value, low, high, tolerance)))
    return rows


def _op_count(run: RunData, op: str) -> int:
    """Latency samples of `op` in a run."""
    return int(run.latency[op].cnt.sum())


def paired_log_test(log_ratios: np.ndarray) -> tuple[float, float, float]:
    """(two-sided p, CI low, CI high) of a one-sample t-test of ln(candidate/baseline)
    against 0; the CI is of exp(mean) - 1, the relative change. Identical ratios in
    every round (values in the same histogram bucket) are certain: p 1 at 0, else 0."""
    from scipy.stats import ttest_1samp

    if np.ptp(log_ratios) == 0:
        change = float(np.exp(log_ratios[0]) - 1)
        return (1.0 if change == 0 else 0.0), change, change
    result = ttest_1samp(log_ratios, 0.0)
    interval = result.confidence_interval(CONFIDENCE)
    return (float(result.pvalue), float(np.expm1(interval.low)),
            float(np.expm1(interval.high)))


# --- outputs ---------------------------------------------------------------------------


def _ms(us: float | None) -> str:
    """Compare's milliseconds: 3 decimals, so that small changes show."""
    return format_ms(us, 3)


def _change(fraction: float | None) -> str:
    """A relative change, signed: `+4.0%`."""
    return format_percent(fraction, 1, signed=True)


def _ci(row: Row) -> str:
    return "-" if row.ci_low is None else f"{_change(row.ci_low)}..{_change(row.ci_high)}"


def _p(row: Row) -> str:
    return "-" if row.p_value is None else f"{row.p_value:.2g}"


@dataclass(frozen=True)
class Method:
    """How the rows were judged, in the words the reports use."""

    command: str   # the report's title: `cachebench compare`
    p_column: str  # the p-value's column header in Markdown
    sentence: str  # what makes a change real


RANK_TEST = Method("compare", "p (MWU)",
                 f"A change is real when the Mann-Whitney U test of per-interval values gives "
                 f"p < {ALPHA:g} and the {CONFIDENCE:.0%} bootstrap CI of the relative change "
                 f"excludes 0.")
PAIRED_TEST = Method("regress", "p (paired t)",
                   f"Rounds ran alternately (ABBA); a change is real when a paired t-test of "
                   f"the per-round log ratios candidate/baseline gives p < {ALPHA:g}, "
                   f"Holm-adjusted over all the rows judged (the chance of any false alarm), "
                   f"and its {CONFIDENCE:.0%} CI excludes 0. Values are geometric means over "
                   f"rounds.")
COLUMNS = ("op", "stat", "baseline ms", "candidate ms", "delta ms", "change",
           f"{CONFIDENCE:.0%} CI", "p (MWU)", "verdict")
TERMINAL = ("op", "stat", "baseline ms", "candidate ms", "change", f"{CONFIDENCE:.0%} CI",
            "p (MWU)", "verdict")  # fits 80 columns
SHORT = {"baseline ms": "base", "candidate ms": "cand", "p (MWU)": "p"}


def _cells(row: Row) -> dict[str, str]:
    """A row as table cells by column (terminal and Markdown share them)."""
    return dict(zip(COLUMNS, [row.op, row.stat, _ms(row.baseline_us), _ms(row.candidate_us),
                              format_ms(row.delta_us, 3, signed=True), _change(row.relative),
                              _ci(row), _p(row), row.verdict]))


def headline(rows: list[Row], tolerance: Tolerance) -> str:
    """One sentence: how many regressions, at what tolerance."""
    bad = [f"{r.op} {r.stat}" for r in rows if r.regression]
    if bad:
        return (f"REGRESSION: {', '.join(bad)} (real increase beyond {tolerance.describe()}; "
                f"p < {ALPHA:g} and {CONFIDENCE:.0%} CI above 0)")
    return f"No regression beyond {tolerance.describe()} tolerance"


def print_table(rows: list[Row], tolerance: Tolerance, console: Any = None) -> None:
    """The comparison as a rich table, regressions in red."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="baseline vs candidate: latency (ms) from intended start",
                  title_justify="left", box=box.SIMPLE_HEAD, header_style="bold",
                  pad_edge=False)
    for column in TERMINAL:
        table.add_column(SHORT.get(column, column), no_wrap=True,
                         justify="left" if column in ("op", "stat", "verdict") else "right")
    styles = {"regression": "bold red", "improvement": "green"}
    for row in rows:
        cells = _cells(row)
        table.add_row(*(cells[c] for c in TERMINAL), style=styles.get(row.verdict))
    console.print(table)
    console.print(headline(rows, tolerance),
                  style="bold red" if any(r.regression for r in rows) else "bold green")


def to_markdown(rows: list[Row], tolerance: Tolerance, names: tuple[str, str],
                test: Method = RANK_TEST, notes: Sequence[str] = ()) -> str:
    """A GitHub-flavoured Markdown report for a pull-request comment; `notes` are lines
    shown under the verdict (e.g. the machines' calibration ratio)."""
    status = ":x:" if any(r.regression for r in rows) else ":white_check_mark:"
    header = [test.p_column if c == COLUMNS[7] else c for c in COLUMNS]
    lines = [f"### cachebench {test.command} {status}", "",
             f"**{headline(rows, tolerance)}**", "", *(f"{note}  " for note in notes),
             f"Baseline `{names[0]}`, candidate `{names[1]}`. {test.sentence}", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join("---" if c in ("op", "stat", "verdict") else "---:"
                            for c in COLUMNS) + "|"]
    for row in rows:
        cells = _cells(row)
        if row.regression:
            cells["verdict"] = f"**{cells['verdict']}**"
        lines.append("| " + " | ".join(cells.values()) + " |")
    return "\n".join(lines) + "\n"


def to_junit(rows: list[Row], tolerance: Tolerance) -> str:
    """JUnit XML: one testcase per op and statistic, a failure for each regression."""
    failures = sum(r.regression for r in rows)
    suite = ElementTree.Element("testsuite", name="cachebench.compare", tests=str(len(rows)),
                                failures=str(failures), errors="0", skipped="0")
    for row in rows:
        case = ElementTree.SubElement(suite, "testcase", classname=f"cachebench.compare.{row.op}",
                                      name=row.stat)
        if row.regression:
            failure = ElementTree.SubElement(
                case, "failure", type="regression",
                message=f"{row.op} {row.stat} {_change(row.relative)} (tolerance "
                        f"{tolerance.describe()}, p={_p(row)}, CI {_ci(row)})")
            failure.text = json.dumps(asdict(row), indent=2)
        else:
            ElementTree.SubElement(case, "system-out").text = (
                f"{row.verdict}: {_ms(row.baseline_us)} -> {_ms(row.candidate_us)} ms "
                f"({_change(row.relative)})")
    root = ElementTree.Element("testsuites", tests=str(len(rows)), failures=str(failures))
    root.append(suite)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, "unicode") + "\n"


def tolerance_for(relative: float | None, min_delta_us: float = 0.0,
                  slo_file: str | None = None, default: str = DEFAULT_TOLERANCE) -> Tolerance:
    """`relative` (--tolerance); when not given, the SLO file's regression.tolerance,
    else `default` (10% for compare; `bench regress` has its own); `min_delta_us`
    (--min-delta) as the absolute floor."""
    if relative is None and slo_file:
        spec = load_slo(slo_file)
        if spec.regression is not None:
            return Tolerance(spec.regression.tolerance, min_delta_us)
    return Tolerance(parse_fraction(default) if relative is None else relative, min_delta_us)


def load_with_data(path: str) -> RunData:
    """A run that recorded latencies: comparing against an empty run would pass silently."""
    run = load_runs([path])
    if not run.latency:
        raise InputError("no operations recorded; expected a run with latency data",
                         file=str(path))
    return run


def invalid_sides(sides: dict[str, tuple[str, RunData]], slo_file: str | None) -> list[str]:
    """`<side> <dir> is INVALID (why)` for each side (name -> (directory, run)) whose
    measurement is invalid, judged by its own validity thresholds and the SLO file's."""
    slo = load_slo(slo_file) if slo_file else None
    found = []
    for side, (path, run) in sides.items():
        verdict = validity(run, validity_spec(run, slo))
        if is_invalid(verdict):
            found.append(f"{side} {path} is INVALID ({'; '.join(verdict.reasons)})")
    return found


def refusal(invalid: list[str]) -> str:
    """Why compare gives no verdict (the terminal's line; `invalid` from `invalid_sides`)."""
    return (f"No regression verdict: {'; '.join(invalid)}. Its load generator fell "
            f"behind, so a difference may be the harness's, not the cache's; {ADVICE}.")


def refusal_markdown(message: str) -> str:
    """The refusal as the Markdown report (a pull-request comment)."""
    return f"### cachebench compare :warning:\n\n**{message}**\n"


def refusal_junit(message: str) -> str:
    """The refusal as JUnit XML: one failed testcase, `validity`."""
    root = ElementTree.Element("testsuites", tests="1", failures="1")
    suite = ElementTree.SubElement(root, "testsuite", name="cachebench.compare", tests="1",
                                   failures="1", errors="0", skipped="0")
    case = ElementTree.SubElement(suite, "testcase", classname="cachebench.compare",
                                  name="validity")
    ElementTree.SubElement(case, "failure", type="invalid", message=message)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, "unicode") + "\n"


def machine_notes(baseline: RunInfo, candidate: RunInfo, names: tuple[str, str],
                  allow_other_machine: bool) -> list[str]:
    """What to say beside the verdict about where the two runs were measured (their
    run.json `machine` and `calibration`).

    One machine class: nothing. Two: refused (exit 2), since the difference would be the
    machines', unless allowed; then which fields differ and the ratio of the two machines'
    calibration round trips. A run.json without a fingerprint (recorded before runs had
    one): a line saying that nobody can tell.
    """
    machines = (baseline.machine, candidate.machine)
    if baseline.machine is None or candidate.machine is None:
        missing = " and ".join(name for name, found in zip(names, machines) if found is None)
        return [f"machine: not recorded in {missing}; cannot tell whether both runs come "
                f"from one machine"]
    differ = "; ".join(baseline.machine.differences(candidate.machine))
    if not differ:
        return []
    if not allow_other_machine:
        raise InputError(f"recorded on another machine than the candidate ({differ}), so "
                         f"the difference would be the machines'; measure both sides on one "
                         f"machine with `bench regress`, or give --allow-other-machine",
                         file=str(Path(names[0]) / RUN_JSON), field="machine")
    return [f"machine: the baseline comes from another machine ({differ})",
            calibration_ratio(baseline.calibration, candidate.calibration)]


def calibration_ratio(baseline: Calibration | None, candidate: Calibration | None) -> str:
    """`calibration: the candidate machine's plain-client round trip is 3.78x at p50, 2.10x
    at p99 the baseline machine's (...)`, or why that cannot be said."""
    if baseline is None or candidate is None or not (baseline.measured and candidate.measured):
        return "calibration: not recorded in both runs, so no ratio of the machines"
    ratios = (f"{format_times(candidate.p50_us / baseline.p50_us)} at p50, "
              f"{format_times(candidate.p99_us / baseline.p99_us)} at p99")
    return (f"calibration: the candidate machine's plain-client round trip is {ratios} "
            f"the baseline machine's ({baseline.p50_us:g} -> {candidate.p50_us:g} us p50)")
