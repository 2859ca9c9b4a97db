"""What the terminal shows: the summary table with SLO verdicts, and live run progress.

Latencies are stored in microseconds and shown in milliseconds, the unit SLOs for
caches are written in. A run whose measurement is invalid (the load generator fell
behind: bench.analysis.validity) leads with INVALID and ends with it instead of PASS/FAIL.
Tables read a `Summary` (summary.json's content), so a table printed now and one printed
from an old run directory look the same. Live progress reads the
run directory as it is written (the load runs in Locust child processes), or takes
numbers through `RunProgress.update`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bench.analysis.summary import OpSummary, Summary
from bench.analysis.validity import Validity, headline, is_invalid
from bench.analysis.verdicts import Verdict, describe_windows, partial_note, verdict_reasons
from bench.results.histograms import counts_array, percentiles_from_counts
from bench.results.hlog import parse_interval
from bench.results.rundir import LATENCY_HLOG, SERVICE_SUFFIX, TIMELINE_CSV, TimelineRow
from bench.units import format_ms, format_percent, format_times, format_us, format_whole

SHOWN = ("p50", "p99", "p99.9", "max")


def error_kinds_line(summary: Summary) -> Text | None:
    """`errors by kind: get 9 timeout, 3 connection; set 1 server`, None without errors."""
    parts = []
    for name, op in summary.ops.items():
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in op.errors_by_kind.items() if n)
        if kinds:
            parts.append(f"{name} {kinds}")
    return Text("errors by kind: " + "; ".join(parts), style="red") if parts else None


def ops_table(summary: Summary) -> Table:
    """Per op and total: rate, hit ratio, latency percentiles (ms), service p99, errors."""
    table = Table(title="latency (ms) from intended start; svc = service time from send",
                  title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  padding=(0, 1))
    for column in ("op", "ops/s", "hit%", *SHOWN, "svc p99", "errors"):
        table.add_column(column, justify="left" if column == "op" else "right")
    rows: list[tuple[str, OpSummary]] = [*summary.ops.items(), ("total", summary.total)]
    for i, (name, op) in enumerate(rows):
        latency = op.latency_us
        table.add_row(name, format_whole(op.throughput), format_percent(op.hit_ratio, 1),
                      *(format_ms(latency[key]) for key in SHOWN),
                      format_ms(op.service_us["p99"]),
                      f"{op.errors:,}", end_section=i == len(rows) - 2,
                      style="bold" if name == "total" else None)
    return table


def _verdict_cell(passed: bool | None) -> Text:
    """PASS in green, FAIL in red, `no data` dim."""
    if passed is None:
        return Text("no data", style="dim")
    return Text("PASS", style="bold green") if passed else Text("FAIL", style="bold red")


def slo_table(verdict: Verdict) -> Table:
    """One row per objective, then the error budget and the hit ratio."""
    table = Table(title=f"SLO {verdict.name or ''}".rstrip(), title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("objective", "observed", "windows", "verdict"):
        table.add_column(column)
    for objective in verdict.objectives:
        observed = (f"{format_percent(objective.observed_fraction, 3)} under "
                    f"{format_us(objective.threshold_us)}; p{objective.percentile:g} = "
                    f"{format_ms(objective.observed_percentile_us)} ms")
        table.add_row(objective.name, observed, describe_windows(objective.windows),
                      _verdict_cell(objective.passed))
    errors = verdict.errors
    if errors:
        table.add_row(f"errors <= {format_percent(errors.max_fraction)}"
                      + ("" if errors.count_timeouts else " (timeouts excluded)"),
                      f"{format_percent(errors.observed_fraction, 3)} ({errors.errors:,}); "
                      f"burn rate {format_times(errors.burn_rate)}",
                      describe_windows(errors.windows), _verdict_cell(errors.passed))
    hit_ratio = verdict.hit_ratio
    if hit_ratio:
        table.add_row(f"hit ratio >= {format_percent(hit_ratio.min)}",
                      format_percent(hit_ratio.observed, 2),
                      describe_windows(hit_ratio.windows),
                      _verdict_cell(hit_ratio.passed))
    return table


def verdict_line(summary: Summary) -> Text:
    """The last line. A run that did not complete says that first (as its exit code,
    3 or 1, does); else INVALID; else PASS / FAIL and why, or that no SLO was given."""
    verdict = summary.slo
    partial = partial_note(verdict) if verdict is not None else ""
    if partial and verdict.passed is not None:
        if verdict.passed:
            return Text(f"NOT A PASS: SLO met over what was measured{partial}",
                        style="bold yellow")
        return Text(f"FAIL{partial}: " + "; ".join(verdict_reasons(verdict)), style="bold red")
    if is_invalid(summary.validity):
        judged = verdict is not None and verdict.passed is not None
        would = f" (the SLO verdict would be {'PASS' if verdict.passed else 'FAIL'})" \
            if judged else ""
        return Text(f"INVALID: not a measurement of the cache{would}; see the top",
                    style="bold red")
    if not verdict:
        return Text("No SLO given: nothing judged (use --slo FILE or a scenario slo: block)",
                    style="dim")
    if verdict.passed is None:
        return Text("SLO not judged: none of its ops ran", style="bold yellow")
    if verdict.passed:
        return Text("PASS: SLO met", style="bold green")
    return Text("FAIL: " + "; ".join(verdict_reasons(verdict)), style="bold red")


def loadgen_line(validity: Validity) -> Text:
    """The load generator's own figures in one line: sent against asked, send lag,
    the busiest process's CPU, the longest event-loop stall, ops parked and in flight."""
    parts = []
    if validity.mode == "open":
        parts.append(f"sent {format_percent(validity.rate_ratio, 1)} of the asked "
                     f"{format_whole(validity.asked_rate)} ops/s")
        lag = validity.send_lag_us or {}
        parts.append(f"send lag p99 {format_ms(lag.get('p99'))} ms, "
                     f"max {format_ms(lag.get('max'))} ms")
    else:
        parts.append(f"closed loop, {format_whole(validity.achieved_rate)} ops/s")
    parts.append(f"CPU {format_percent(validity.cpu_max, 0)} of a core "
                 f"({validity.cpu_max_source})")
    parts.append(f"longest stall {format_ms(validity.stall_max_us)} ms")
    parts.append(f"at most {validity.parked_max} parked, {validity.in_flight_max} in flight")
    style = "bold red" if is_invalid(validity) else "dim"
    return Text("load generator: " + "; ".join(parts), style=style)


def header(summary: Summary) -> Text:
    """What ran: scenario, target, duration, whether the run completed."""
    target = summary.target
    status = "" if summary.completed else "  [run did not complete]"
    return Text(f"{summary.scenario or 'run'} against "
                f"{(target and (target.url or target.kind)) or '?'}: "
                f"{summary.duration_s:g} s measured, {summary.total.count:,} ops"
                + status, style="bold")


def print_summary(summary: Summary, console: Console | None = None) -> None:
    """Print the summary: INVALID first if it is, header, per-op table, the load
    generator's figures, SLO table, final verdict line."""
    console = console or Console()
    invalid = headline(summary.validity)
    if invalid:
        console.print(Text(invalid, style="bold red"))
    console.print(header(summary))
    console.print(ops_table(summary))
    kinds = error_kinds_line(summary)
    if kinds is not None:
        console.print(kinds)
    if summary.validity:
        console.print(loadgen_line(summary.validity))
    if summary.slo:
        console.print(slo_table(summary.slo))
    console.print(verdict_line(summary))


def print_rows(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A plain table of text cells (`bench selftest`'s measurements)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


class _Tail:
    """New complete lines of a file that another process appends to.

    Keeps its offset and any unfinished last line, so each call reads only what was
    appended since the previous one (an hour's log is never re-read every refresh).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""

    def lines(self) -> list[str]:
        """Lines completed since the last call (none while the file does not exist)."""
        try:
            with self.path.open(encoding="utf-8", newline="") as handle:
                handle.seek(self.offset)
                text = handle.read()
                self.offset = handle.tell()
        except FileNotFoundError:
            return []
        *complete, self.partial = (self.partial + text).split("\n")
        return complete


class RunDirWatcher:
    """The latest closed interval of a run directory being written: rate, p99, errors.

    The driver runs Locust in child processes, so what it knows of the run is what they
    write to timeline.csv and latency.hlog; intervals are written whole, then flushed.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.timeline = _Tail(Path(run_dir) / TIMELINE_CSV)
        self.hlog = _Tail(Path(run_dir) / LATENCY_HLOG)
        self.errors = 0

    def poll(self) -> tuple[float | None, float | None]:
        """(ops/s, p99 us) of the newest interval seen since the last poll, else (None, None)."""
        return self._rate(), self._p99()

    def _rate(self) -> float | None:
        """Ops/s of the newest interval in new timeline rows; adds their errors to the total."""
        rows = [TimelineRow.parse(line.split(",")) for line in self.timeline.lines()
                if line and not line.startswith("start,")]
        if not rows:
            return None
        self.errors += sum(row.errors for row in rows)
        newest = rows[-1]
        count = sum(row.count for row in rows if row.start == newest.start)
        return count / max(newest.length, 1e-9)

    def _p99(self) -> float | None:
        """p99 (us) over all ops of the newest interval in new hlog lines (latency tags only)."""
        entries = [parse_interval(line, 0.0) for line in self.hlog.lines()
                   if line.startswith("Tag=")]
        entries = [e for e in entries if not e.tag.endswith(SERVICE_SUFFIX)]
        if not entries:
            return None
        newest = entries[-1].start
        counts = sum(counts_array(e.histogram).astype(np.int64)
                     for e in entries if e.start == newest)
        return float(percentiles_from_counts(counts, [99.0])[0])


class RunProgress:
    """Live status for long runs: elapsed/total, achieved vs asked rate, p99, errors.

    Two ways to feed it: `update(...)` with numbers (once per interval), or `refresh()`
    when it was given the run directory being written, which it then reads itself.
    Disabled (every call a no-op) when `quiet` or when the console is not a terminal,
    so logs and CI output stay clean. A context manager, or call `start` and `stop`.
    """

    def __init__(self, run_dir: str | Path | None, total_s: float,
                 asked_rate: float | None = None, *, console: Console | None = None,
                 quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.total_s = total_s
        self.asked_rate = asked_rate
        self.enabled = not quiet and self.console.is_terminal
        self.watcher = RunDirWatcher(run_dir) if run_dir is not None else None
        self._live: Live | None = None
        self._started = time.monotonic()
        self._state: dict[str, Any] = {"elapsed_s": 0.0, "ops_per_s": None, "p99_us": None,
                                       "errors": 0, "phase": "starting"}

    def start(self) -> None:
        """Begin the live display (nothing when disabled)."""
        self._started = time.monotonic()
        if self.enabled and self._live is None:
            self._live = Live(self.render(), console=self.console, auto_refresh=False,
                              transient=False)
            self._live.start()

    def stop(self) -> None:
        """End the live display, leaving its last state on screen."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, elapsed_s: float, ops_per_s: float | None, p99_us: float | None,
               errors: int, phase: str = "running") -> None:
        """New numbers: achieved rate and p99 (us) of the last interval, errors so far."""
        self._state.update(elapsed_s=elapsed_s, ops_per_s=ops_per_s, p99_us=p99_us,
                           errors=errors, phase=phase)
        if self._live is not None:
            self._live.update(self.render(), refresh=True)

    def refresh(self) -> None:
        """Read what the run directory gained and redraw (wall-clock elapsed time).

        Only when enabled: a hidden display need not decode histograms.
        """
        if not self.enabled or self.watcher is None:
            return
        ops_per_s, p99_us = self.watcher.poll()
        state = self._state
        self.update(time.monotonic() - self._started,
                    state["ops_per_s"] if ops_per_s is None else ops_per_s,
                    state["p99_us"] if p99_us is None else p99_us, self.watcher.errors)

    def render(self) -> Group:
        """The display: a bar and one line of numbers (also used by tests)."""
        state = self._state
        asked = f" / {format_whole(self.asked_rate)} asked" if self.asked_rate else ""
        elapsed = min(state["elapsed_s"], self.total_s)  # start-up is not part of the run
        line = Text(f"{state['phase']}: {elapsed:.0f}/{self.total_s:.0f} s  "
                    f"{format_whole(state['ops_per_s'])} ops/s{asked}  "
                    f"p99 {format_ms(state['p99_us'])} ms  errors {state['errors']:,}")
        bar = ProgressBar(total=max(self.total_s, 1e-9),
                          completed=min(state["elapsed_s"], self.total_s), width=40)
        return Group(bar, line)

    def __enter__(self) -> RunProgress:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


@contextmanager
def task_progress(description: str, total: int | None = None,
                  quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """A counting progress line (prefill); yields `advance(n)`. Silent off a terminal."""
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()) if total else \
        (SpinnerColumn(), TextColumn("{task.description}: {task.completed:,}"),
         TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
