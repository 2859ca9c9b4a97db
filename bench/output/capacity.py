"""What `bench capacity` shows: terminal tables, and the sizing report (Markdown, HTML).

Each function reads the capacity stage's results (a MemoryReport, a search result, a
plan) and only formats them; every number comes from bench.capacity. Plots use
matplotlib's Agg backend, imported when a report is rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.capacity.memory import MemoryPoint, MemoryReport
from bench.capacity.search import KNEE_PERCENTILES, Probe, SearchResult, SearchSettings
from bench.units import format_ms, format_percent, format_size, format_whole


def _console() -> Console:
    return Console(highlight=False)


def print_parts(parts: list[Any], written: Path | None = None) -> None:
    """Tables and lines in order, then `results: FILE` when one was written."""
    console = _console()
    for part in parts:
        console.print(part)
    if written is not None:
        console.print(f"results: {written}", markup=False)


def print_search_intro(scenario: str, url: str, settings: SearchSettings, parent: Any) -> None:
    _console().print(search_intro(scenario, url, settings, parent), markup=False)


def print_probe(probe: Probe, elapsed: float, budget: float) -> None:
    """One line per finished probe (the search's progress)."""
    _console().print(probe_line(probe, elapsed, budget))


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def _points(value: float | None) -> str:
    """A hit-ratio error in percentage points: 0.0012 -> `±0.12 pt`."""
    return "-" if value is None else f"±{value * 100:.2f} pt"


def benchmark_table(checks: list[Any]) -> Table:
    """`bench capacity benchmark`: each check against its bound."""
    table = _table("capacity model self-benchmark", "check", "value", "bound", "verdict", "detail")
    for c in checks:
        table.add_row(c.name, f"{c.value:.2f} {c.unit}", f"{c.limit:g} {c.unit}",
                      "[green]ok[/green]" if c.passed else "[red]FAIL[/red]", c.detail)
    return table


# ------------------------------------------------------------------------------ memory


def memory_header(report: MemoryReport) -> Text:
    """What was simulated, in one line."""
    nodes = len(report.nodes)
    sampling = ("every key simulated" if report.sample_rate >= 1 else
                f"SHARDS rate {report.sample_rate:.3g}, expected error "
                f"{_points(report.expected_error)} (1 s.d.)")
    return Text(f"{report.scenario}: {nodes} node{'s' if nodes > 1 else ''}"
                f"{' (ketama ring)' if nodes > 1 else ''}, memcached {report.slabs}; "
                f"{report.ops:,} ops at {format_whole(report.op_rate)} ops/s, the first "
                f"{report.warmup_ops:,} warming up; {sampling}")


def memory_answer(report: MemoryReport) -> Text | None:
    """`95% needs 2.1 GiB per node (6.3 GiB for 3 nodes): simulated 95.1%; Che 2.0 GiB`."""
    if report.target_hit_ratio is None:
        return None
    target = format_percent(report.target_hit_ratio)
    che = (f"; Che's approximation: {format_size(report.che_memory_for_target)} per node"
           if report.che_memory_for_target else "")
    point = report.target
    if point is None:
        return Text(f"a hit ratio of {target} is not reached within the sizes simulated{che}",
                    style="bold red")
    nodes = len(report.nodes)
    return Text(f"a hit ratio of {target} needs {format_size(point.memory_per_node)} of -m per "
                f"node ({format_size(point.memory_per_node * nodes)} for {nodes} node"
                f"{'s' if nodes > 1 else ''}): simulated at that size "
                f"{format_percent(point.hit_ratio, 2)} {_points(point.error)}{che}",
                style="bold")


def curve_table(report: MemoryReport) -> Table:
    table = _table("hit ratio against memory per node (after the warm-up)", "memory/node",
                   "pool", "simulated", "error", "Che (LRU, IRM)")
    for p in sorted(report.curve, key=lambda p: p.memory_per_node):
        table.add_row(format_size(p.memory_per_node),
                      format_size(p.memory_per_node * len(report.nodes)),
                      format_percent(p.hit_ratio, 2), _points(p.error),
                      format_percent(p.che, 2))
    return table


def nodes_table(point: MemoryPoint) -> Table:
    table = _table(f"nodes at {format_size(point.memory_per_node)} each", "node", "requests",
                   "working set", "hit ratio", "evictions", "eviction age")
    for n in point.nodes:
        table.add_row(n.node, format_percent(n.request_share, 1),
                      format_percent(n.working_set_share, 1), format_percent(n.hit_ratio, 2),
                      format_whole(n.evictions),
                      "-" if n.eviction_age_s is None else f"{n.eviction_age_s:,.0f} s")
    return table


def slab_table(point: MemoryPoint) -> Table:
    table = _table(f"slab classes at {format_size(point.memory_per_node)} per node (all nodes)",
                   "chunk", "pages", "items", "item bytes", "waste", "waste share")
    for c in point.classes:
        table.add_row(format_size(c.chunk_size), format_whole(c.pages), format_whole(c.items),
                      format_size(c.item_bytes), format_size(c.waste_bytes),
                      format_percent(c.waste_share, 1))
    return table


def memory_tables(report: MemoryReport) -> list[Any]:
    """Everything `bench capacity memory` prints, in order."""
    shown = report.target or max(report.curve, key=lambda p: p.memory_per_node)
    ws = report.working_set
    parts: list[Any] = [memory_header(report)]
    answer = memory_answer(report)
    if answer is not None:
        parts.append(answer)
    parts += [curve_table(report), nodes_table(shown), slab_table(shown),
              Text(f"working set after the warm-up: {format_whole(ws.keys)} keys, "
                   f"{format_size(ws.item_bytes)} of items, {format_size(ws.memory)} of "
                   f"memcached memory to hold them all (the fullest node "
                   f"{format_size(ws.memory_per_node_max)})")]
    parts += [Text(f"note: {note}", style="dim") for note in report.notes]
    return parts


# ------------------------------------------------------------------------------ search


def search_intro(scenario: str, url: str, settings: SearchSettings, parent: Any) -> str:
    return (f"searching the max rate of {scenario} on {url} within its SLO: steps x"
            f"{settings.step:g} from {format_whole(settings.start_rate)} ops/s, bisection to "
            f"{format_percent(settings.resolution)}, {settings.confirmations} confirmations, "
            f"budget {settings.budget_s:g} s; probes in {parent}")


def _verdict(probe: Probe) -> str:
    if not probe.valid:
        return "[yellow]INVALID[/yellow]"
    return {True: "[green]pass[/green]", False: "[red]FAIL[/red]"}.get(probe.passed, "-")


def probe_line(probe: Probe, elapsed: float, budget: float) -> Text:
    """`probe 3 bisect 14,142 ops/s: achieved 14,101, p99 1.23 ms -> pass (52/300 s)`."""
    why = probe.invalid_reasons[:1] if not probe.valid else probe.failed[:1]
    return Text.from_markup(
        f"probe {probe.number} {probe.phase} {format_whole(probe.rate)} ops/s: achieved "
        f"{format_whole(probe.achieved)}, p99 {format_ms(probe.latency_us.get('p99'))} ms "
        f"-> {_verdict(probe)}{(': ' + why[0]) if why else ''} ({elapsed:.0f}/{budget:g} s)")


def search_answer(result: SearchResult) -> Text:
    """The answer first: the max rate (per node, per pool), or why there is none."""
    if result.generator_limited:
        valid = format_whole(result.highest_valid_rate)
        needed = (f"; about {result.processes_needed} load processes (--processes, or "
                  f"`bench worker` machines) would be needed to go further"
                  if result.processes_needed else "")
        return Text(f"no answer: the load generator, not the cache, hit its limit. The "
                    f"highest valid rate reached was {valid} ops/s, within the SLO{needed}.",
                    style="bold yellow")
    if result.max_rate is None:
        return Text("no answer: no probe passed the SLO (lower --start-rate)", style="bold red")
    pool = (f" ({format_whole(result.max_rate)} ops/s for the pool of {result.nodes})"
            if result.nodes > 1 else "")
    broke = f"; {result.broke_first} broke first above it" if result.broke_first else ""
    confirmed = "confirmed" if result.confirmed else "NOT confirmed"
    return Text(f"max rate within the SLO: {format_whole(result.max_rate_per_node)} ops/s per "
                f"node{pool}, {confirmed}{broke}", style="bold")


def knee_table(result: SearchResult) -> Table:
    """Latency and service time percentiles against the achieved rate (the knee)."""
    columns = [f"lat {p}" for p in KNEE_PERCENTILES] + [f"svc {p}" for p in KNEE_PERCENTILES]
    table = _table("latency against throughput (ms; achieved in protocol calls/s)", "#",
                   "phase", "offered", "achieved", *columns, "verdict")
    for p in sorted(result.probes, key=lambda p: (p.achieved or p.rate, p.number)):
        table.add_row(str(p.number), p.phase, format_whole(p.rate), format_whole(p.achieved),
                      *(format_ms(p.latency_us.get(k)) for k in KNEE_PERCENTILES),
                      *(format_ms(p.service_us.get(k)) for k in KNEE_PERCENTILES),
                      _verdict(p))
    return table


def search_tables(result: SearchResult) -> list[Any]:
    parts: list[Any] = [search_answer(result), knee_table(result)]
    return parts + [Text(f"note: {note}", style="dim") for note in result.notes]
