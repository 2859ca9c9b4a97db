"""What `bench capacity` shows: terminal tables, and the sizing report (Markdown, HTML).

Each function reads the capacity stage's results (a MemoryReport, a search result, a
plan) and only formats them; every number comes from bench.capacity. Plots use
matplotlib's Agg backend, imported when a report is rendered.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from bench.capacity.memory import MemoryPoint, MemoryReport
from bench.units import format_percent, format_size, format_whole


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def _points(value: float | None) -> str:
    """A hit-ratio error in percentage points: 0.0012 -> `±0.12 pt`."""
    return "-" if value is None else f"±{value * 100:.2f} pt"


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
