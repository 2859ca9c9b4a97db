"""What `bench capacity` shows: terminal tables, and the sizing report (Markdown, HTML).

Each function reads the capacity stage's results (a MemoryReport, a search result, a
plan) and only formats them; every number comes from bench.capacity. Plots use
matplotlib's Agg backend, imported when a report is rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.capacity.memory import MemoryPoint, MemoryReport
from bench.capacity.plan import Plan
from bench.capacity.search import KNEE_PERCENTILES, Probe, SearchResult, SearchSettings
from bench.units import format_bandwidth, format_ms, format_percent, format_size, format_whole


def _console() -> Console:
    return Console(highlight=False)


def print_parts(parts: list[Any], written: Path | None = None) -> None:
    """Tables and lines in order, then `results: FILE` when one was written."""
    console = _console()
    for part in parts:
        console.print(part)
    if written is not None:
        console.print(f"results: {written}", markup=False)


def print_lines(text: str) -> None:
    """Plain text, no markup (paths may hold brackets)."""
    _console().print(text, markup=False)


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


# ------------------------------------------------------------------------------ plan

CAPACITY_MD, CAPACITY_HTML = "capacity.md", "capacity.html"


def plan_answer(plan: Plan) -> str:
    """The answer in one sentence, first in every view."""
    memory = (f"-m {format_size(plan.memory_per_node)} of {format_size(plan.node_memory)}"
              if plan.memory_per_node else f"-m {format_size(plan.node_memory)}")
    return (f"{plan.nodes} nodes ({plan.nodes - plan.spare} + {plan.spare} spare) for "
            f"{format_whole(plan.planned_rate)} ops/s, bound by {plan.binding}; {memory} per "
            f"node, hit ratio {format_percent(plan.hit_ratio, 2)} with the spares down")


def plan_rows(plan: Plan) -> list[tuple[str, str]]:
    """(what, value) rows of the plan, shared by the terminal, Markdown and HTML."""
    rows = [("planned rate (pool)", f"{format_whole(plan.planned_rate)} ops/s"),
            ("nodes", f"{plan.nodes} ({plan.nodes - plan.spare} + {plan.spare} spare)"),
            ("binding resource", plan.binding)]
    rows += [(f"nodes for {what}", str(count)) for what, count in plan.counts.items()]
    rows += [("node rate within the SLO", f"{format_whole(plan.node_rate)} ops/s"),
             ("hottest node's share", format_percent(plan.hottest_share, 1)),
             ("memory per node for the target", format_size(plan.memory_per_node)
              if plan.memory_per_node else "-"),
             ("node memory (-m)", format_size(plan.node_memory)),
             ("hit ratio, spares down", format_percent(plan.hit_ratio, 2)),
             ("network RX per node (hottest)", format_bandwidth(plan.rx_per_node)),
             ("network TX per node (hottest)", format_bandwidth(plan.tx_per_node)),
             ("connections per node", format_whole(plan.connections_per_node))]
    if plan.gutter_nodes is not None:
        plural = "s" if plan.gutter_nodes > 1 else ""
        rows.append(("gutter pool", f"{plan.gutter_nodes} node{plural}"))
    return rows


def plan_tables(plan: Plan) -> list[Any]:
    table = _table(f"capacity plan: {plan.scenario}", "", "")
    for what, value in plan_rows(plan):
        table.add_row(what, value)
    return [Text(plan_answer(plan), style="bold"), table,
            Text("assumptions:\n" + "\n".join(f"- {a}" for a in plan.assumptions))]


def plan_markdown(plan: Plan) -> str:
    lines = [f"# Capacity plan: {plan.scenario}", "", f"**{plan_answer(plan)}**", "",
             "| | |", "|---|---:|"]
    lines += [f"| {what} | {value} |" for what, value in plan_rows(plan)]
    lines += ["", "## Assumptions", ""] + [f"- {a}" for a in plan.assumptions]
    if plan.memory:
        lines += ["", f"## Hit ratio against memory per node ({plan.nodes - plan.spare} nodes)",
                  "", "| memory/node | simulated | Che |", "|---:|---:|---:|"]
        lines += [f"| {format_size(p.memory_per_node)} | {format_percent(p.hit_ratio, 2)} | "
                  f"{format_percent(p.che, 2)} |"
                  for p in sorted(plan.memory.curve, key=lambda p: p.memory_per_node)]
    return "\n".join(lines) + "\n"


def _curve_figure(report: MemoryReport) -> Any:
    from matplotlib.figure import Figure

    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    points = sorted(report.curve, key=lambda p: p.memory_per_node)
    sizes = [p.memory_per_node for p in points]
    ax.plot(sizes, [p.hit_ratio * 100 for p in points], "o-", label="simulated (memcached)")
    if all(p.che is not None for p in points):
        ax.plot(sizes, [p.che * 100 for p in points], "s--", label="Che (LRU, IRM)")
    if report.target_hit_ratio:
        ax.axhline(report.target_hit_ratio * 100, color="grey", lw=0.8, label="target")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda size, _: format_size(size)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(sizes)
    ax.set_xlabel("memory per node (-m)")
    ax.set_ylabel("hit ratio (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def _knee_figure(search: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    from bench.output.report import _ms_axis

    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    probes = sorted((p for p in search["probes"] if p.get("achieved")),
                    key=lambda p: p["achieved"])
    for kind, style in (("latency_us", "-"), ("service_us", ":")):
        for percentile in KNEE_PERCENTILES:
            ax.plot([p["achieved"] for p in probes],
                    [p[kind][percentile] or np.nan for p in probes], style, marker="o",
                    label=f"{kind.split('_')[0]} {percentile}")
    _ms_axis(ax)
    ax.set_xlabel("achieved rate (protocol calls/s)")
    ax.legend(fontsize=8, ncol=2)
    return fig


def render_plan(plan: Plan, out_dir: Path) -> list[Path]:
    """capacity.md and capacity.html (answer first, then the plots) into `out_dir`."""
    from bench.output.report import CSS, _e, _img, _png

    md = out_dir / CAPACITY_MD
    md.write_text(plan_markdown(plan), encoding="utf-8")
    rows = "".join(f"<tr><td>{_e(w)}</td><td>{_e(v)}</td></tr>" for w, v in plan_rows(plan))
    plots = []
    if plan.memory and plan.memory.curve:
        plots.append(("Hit ratio against memory per node", _curve_figure(plan.memory)))
    if plan.search and plan.search.get("probes"):
        plots.append(("Latency against rate (the knee)", _knee_figure(plan.search)))
    figures = "".join(f"<h2>{_e(t)}</h2>{_img(t, _png(f), t)}" for t, f in plots)
    assumptions = "".join(f"<li>{_e(a)}</li>" for a in plan.assumptions)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>capacity plan: {_e(plan.scenario)}</title><style>{CSS}</style></head><body>"
            f"<h1>Capacity plan: {_e(plan.scenario)}</h1>"
            f'<div class="verdict pass">{_e(plan_answer(plan))}</div>'
            f"<table>{rows}</table>{figures}<h2>Assumptions</h2><ul>{assumptions}</ul>"
            f"</body></html>\n")
    html_path = out_dir / CAPACITY_HTML
    html_path.write_text(page, encoding="utf-8")
    return [md, html_path]
