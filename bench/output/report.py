"""report.html: the human view of one run, one self-contained file that opens offline.

Why embedded PNGs: a report is mailed, attached to tickets and opened from CI artefacts;
with the plots inside as data: URIs it needs nothing beside it (the PNGs are also
written next to it for slides and wikis). No JavaScript, no external CSS or fonts.

Order on the page is the order of questions an SRE asks: did it meet the SLO (first
thing, before any plot), what does the latency distribution look like, how did it move
over time, did the servers suffer (evictions, memory, connections), and what exactly ran.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from bench.analysis.runs import (RunData, load_runs, partial_note, percentiles_from_counts, slo_for,
                                 summarize, verdict_reasons)
from bench.output.console import ms, percent, rate
from bench.errors import InputError
from bench.scenario.slo import LOOKUP_OPS, describe_windows, format_percent, format_us
from bench.results.rundir import ERROR_KINDS, write_atomically

REPORT_FILE = "report.html"
SPECTRUM_TICKS = ((2, "50%"), (10, "90%"), (100, "99%"), (1e3, "99.9%"), (1e4, "99.99%"),
                  (1e5, "99.999%"), (1e6, "99.9999%"))
TIME_PERCENTILES = ((50.0, "p50"), (99.0, "p99"), (99.9, "p99.9"), (100.0, "max"))
# Server counters worth a row: memory, evictions, connections, hits (memcached, Redis).
SERVER_COUNTERS = ("evictions", "evicted_keys", "bytes", "limit_maxbytes", "used_memory",
                   "maxmemory", "curr_items", "curr_connections", "connected_clients",
                   "total_connections", "total_connections_received", "get_hits", "get_misses",
                   "keyspace_hits", "keyspace_misses", "cmd_get", "cmd_set",
                   "total_commands_processed", "rejected_connections", "expired_keys")
LOAD_COUNTERS = ("cmd_get", "cmd_set", "cmd_touch", "total_commands_processed")


# --- plots -------------------------------------------------------------------------------


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas; no pyplot, no global state)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return buffer.getvalue()


def _ms_axis(ax: Any) -> None:
    """Log y axis labelled in milliseconds (values are microseconds)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda us, _: f"{us / 1000:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("ms")
    ax.grid(True, which="both", alpha=0.3)


def _legend(ax: Any, **options: Any) -> None:
    """A legend when the axes have labelled lines (an empty run has none)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def spectrum_points(counts: np.ndarray, run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """(1/(1-p), value) pairs from p=0 up to the last percentile the count can resolve."""
    total = int(counts.sum())
    x = np.logspace(0, np.log10(max(total, 2)), 300)
    return x, percentiles_from_counts(counts, (1 - 1 / x) * 100, run.layout)


def plot_spectrum(run: RunData, summary: dict[str, Any]) -> Figure:
    """HdrHistogram-style percentile spectrum, latency and service time, SLO targets marked."""
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind in zip(axes, ("latency", "service")):
        for op in run.ops:
            counts = run.total_counts([op], kind)
            if counts.any():
                ax.plot(*spectrum_points(counts, run), label=op)
        _spectrum_axis(ax, run)
        ax.set_title("latency from intended start" if kind == "latency" else "service time")
    _mark_slo(axes[0], summary)
    _legend(axes[0], fontsize=8, loc="upper left")
    return fig


def _spectrum_axis(ax: Any, run: RunData) -> None:
    """x = 1/(1-p) on a log scale, labelled with percentiles."""
    ax.set_xscale("log")
    top = max(int(run.total_counts(run.ops).sum()), 2)
    ticks = [(x, label) for x, label in SPECTRUM_TICKS if x <= top] or [SPECTRUM_TICKS[0]]
    ax.set_xticks([x for x, _ in ticks], [label for _, label in ticks])
    ax.minorticks_off()
    ax.set_xlim(1, max(top, ticks[-1][0]))
    ax.set_xlabel("percentile")
    _ms_axis(ax)


def _mark_slo(ax: Any, summary: dict[str, Any]) -> None:
    """Each latency objective as a dashed threshold line and its target corner."""
    verdict = summary.get("slo") or {}
    for objective in verdict.get("objectives", []):
        x = 1 / (1 - objective["percentile"] / 100)
        color = "green" if objective["passed"] else "red"
        ax.axhline(objective["threshold_us"], color=color, linestyle="--", linewidth=0.8)
        ax.plot([x], [objective["threshold_us"]], marker="v", color=color)
        ax.annotate(objective["name"], (x, objective["threshold_us"]), fontsize=7,
                    color=color, xytext=(4, 4), textcoords="offset points")


def _seconds(run: RunData) -> np.ndarray:
    """Interval starts as seconds since the first one (the x axis of time plots)."""
    starts = run.interval_starts
    return starts - starts.min() if len(starts) else starts


def plot_latency_over_time(run: RunData) -> Figure:
    """p50/p99/p99.9/max per interval, one small panel per op."""
    ops = [op for op in run.ops if op in run.latency]
    fig = Figure(figsize=(11, 2.4 * max(1, (len(ops) + 1) // 2)))
    axes = np.atleast_1d(fig.subplots(max(1, (len(ops) + 1) // 2), 2, sharex=True,
                                      squeeze=False)).ravel()
    x = _seconds(run)
    for ax, op in zip(axes, ops):
        values = run.latency[op].percentiles([p for p, _ in TIME_PERCENTILES], run.n_intervals,
                                             run.layout)
        for column, (_, label) in enumerate(TIME_PERCENTILES):
            ax.plot(x, values[:, column], label=label, linewidth=1)
        ax.set_title(op, fontsize=9)
        _ms_axis(ax)
    for ax in axes[len(ops):]:
        ax.set_visible(False)
    _legend(axes[0], fontsize=7, ncol=4)
    for ax in axes[-2:]:
        ax.set_xlabel("seconds since start")
    return fig


def plot_throughput(run: RunData) -> Figure:
    """Ops/s per op and in total, and the hit ratio, per interval."""
    fig = Figure(figsize=(11, 5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    x, lengths = _seconds(run), np.maximum(run.interval_lengths, 1e-9)
    for op in run.ops:
        top.plot(x, run.counter("count", [op]) / lengths, label=op, linewidth=1)
    top.plot(x, run.counter("count") / lengths, label="total", color="black", linewidth=1.5)
    top.set_ylabel("ops/s")
    _legend(top, fontsize=7, ncol=5)
    top.grid(True, alpha=0.3)
    lookups_ops = [op for op in run.ops if op in LOOKUP_OPS]
    hits, misses = run.counter("hits", lookups_ops), run.counter("misses", lookups_ops)
    lookups = hits + misses
    ratio = np.divide(hits, lookups, out=np.full(len(x), np.nan), where=lookups > 0)
    bottom.plot(x, ratio * 100, color="tab:green")
    bottom.set_ylabel("hit ratio %")
    bottom.set_xlabel("seconds since start")
    bottom.grid(True, alpha=0.3)
    return fig


def plot_errors(run: RunData) -> Figure:
    """Errors per interval, by kind, summed over ops."""
    fig = Figure(figsize=(11, 2.8))
    ax = fig.subplots()
    x = _seconds(run)
    for kind in ERROR_KINDS:
        ax.plot(x, run.counter(f"errors_{kind}"), label=kind, linewidth=1)
    ax.set_ylabel("errors per interval")
    ax.set_xlabel("seconds since start")
    _legend(ax, fontsize=8, ncol=4)
    ax.grid(True, alpha=0.3)
    return fig


def node_load(stats: dict[str, Any]) -> dict[str, float]:
    """Commands each node served during the run (after - before of its load counters)."""
    before = (stats.get("before") or {}).get("nodes", {})
    after = (stats.get("after") or {}).get("nodes", {})
    return {node: float(sum(after[node].get(c, 0) - before[node].get(c, 0)
                            for c in LOAD_COUNTERS))
            for node in after if node in before and "error" not in after[node]
            and "error" not in before[node]}


def plot_node_load(load: dict[str, float]) -> Figure:
    """Per-node commands during the run: shows hot nodes and unbalanced hashing."""
    fig = Figure(figsize=(11, 0.5 + 0.35 * len(load)))
    ax = fig.subplots()
    ax.barh(list(load), list(load.values()))
    ax.set_xlabel("commands during the run (server counters)")
    ax.invert_yaxis()
    return fig


# --- HTML --------------------------------------------------------------------------------


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1150px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.verdict{font-size:1.4em;font-weight:bold;padding:.6em 1em;border-radius:6px;margin:1em 0}
.pass{background:#e6f4ea;color:#137333}.fail{background:#fce8e6;color:#a50e0e}
.none{background:#f1f3f4;color:#555}img{max-width:100%}
td.PASS{color:#137333;font-weight:bold}td.FAIL{color:#a50e0e;font-weight:bold}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}
dd{margin:0;font-family:monospace;white-space:pre-wrap}
"""


def _e(value: Any) -> str:
    """Escape anything for HTML text."""
    return html.escape("-" if value is None else str(value))


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    """A plain HTML table; `classes` optionally styles the last cell of each row."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = [f"<td>{_e(c)}</td>" for c in row]
        if classes:
            cells[-1] = f'<td class="{_e(classes[i])}">{_e(row[-1])}</td>'
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def verdict_html(summary: dict[str, Any]) -> str:
    """The banner (PASS / FAIL and why) and the per-objective table."""
    verdict = summary.get("slo")
    if not verdict:
        return '<div class="verdict none">No SLO given: nothing judged</div>'
    if verdict["passed"] is None:
        return '<div class="verdict none">SLO not judged: none of its ops ran</div>'
    partial = partial_note(verdict)
    if verdict["passed"] and partial:
        banner = ('<div class="verdict none">NOT A PASS: SLO met over what was measured'
                  f'{partial}</div>')
    elif verdict["passed"]:
        banner = '<div class="verdict pass">PASS: SLO met</div>'
    else:
        reasons = "".join(f"<li>{_e(r)}</li>" for r in verdict_reasons(verdict))
        banner = f'<div class="verdict fail">FAIL: SLO missed{partial}<ul>{reasons}</ul></div>'
    rows, classes = _slo_rows(verdict)
    return banner + _table(["objective", "observed", "windows compliant", "verdict"],
                           rows, classes)


def _slo_rows(verdict: dict[str, Any]) -> tuple[list[list[Any]], list[str]]:
    """Rows of the SLO table: objectives, error budget, hit ratio."""
    rows = []
    for o in verdict["objectives"]:
        rows.append([o["name"], f"{percent(o['observed_fraction'], 3)} under "
                     f"{format_us(o['threshold_us'])} (p{o['percentile']:g} = "
                     f"{ms(o['observed_percentile_us'])} ms)", describe_windows(o["windows"]),
                     _word(o["passed"])])
    errors = verdict.get("errors")
    if errors:
        rows.append([f"errors <= {format_percent(errors['max_fraction'])}",
                     f"{percent(errors['observed_fraction'], 3)}, burn rate "
                     + ("-" if errors["burn_rate"] is None else f"{errors['burn_rate']:.2f}x"),
                     describe_windows(errors["windows"]),
                     _word(errors["passed"])])
    hit_ratio = verdict.get("hit_ratio")
    if hit_ratio:
        rows.append([f"hit ratio >= {format_percent(hit_ratio['min'])}",
                     percent(hit_ratio["observed"]), describe_windows(hit_ratio["windows"]),
                     _word(hit_ratio["passed"])])
    return rows, [row[-1] for row in rows]


def _word(passed: bool | None) -> str:
    return "no data" if passed is None else ("PASS" if passed else "FAIL")


def ops_html(summary: dict[str, Any]) -> str:
    """The per-op numbers of summary.json (ms, ops/s, errors)."""
    header = ["op", "ops", "ops/s", "hit ratio", "p50", "p90", "p99", "p99.9", "p99.99", "max",
              "mean", "service p50", "service p99", "service max", "errors"]
    rows = []
    for name, op in [*summary["ops"].items(), ("total", summary["total"])]:
        lat, svc = op["latency_us"], op["service_us"]
        rows.append([name, f"{op['count']:,}", rate(op["throughput"]), percent(op["hit_ratio"]),
                     *(ms(lat[k]) for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max",
                                            "mean")),
                     ms(svc["p50"]), ms(svc["p99"]), ms(svc["max"]),
                     f"{op['errors']:,}"])
    return _table(header, rows) + "<p>Latency in ms, from the intended start (open loop); " \
        "service time from the actual send.</p>"


def server_html(stats_list: list[dict[str, Any]]) -> str:
    """Before/after of the interesting server counters, per node."""
    rows = []
    for stats in stats_list:
        before = (stats.get("before") or {}).get("nodes", {})
        after = (stats.get("after") or {}).get("nodes", {})
        for node in sorted(set(before) | set(after)):
            rows.extend(_node_rows(node, before.get(node, {}), after.get(node, {})))
    if not rows:
        return "<p>No server statistics recorded.</p>"
    return _table(["node", "counter", "before", "after", "change"], rows)


def _node_rows(node: str, before: dict[str, Any], after: dict[str, Any]) -> list[list[Any]]:
    """One node's counter rows, or its error."""
    if "error" in before or "error" in after:
        return [[node, "error", before.get("error", ""), after.get("error", ""), ""]]
    rows = []
    for counter in SERVER_COUNTERS:
        if counter in before or counter in after:
            old, new = before.get(counter), after.get(counter)
            change = new - old if isinstance(old, (int, float)) and \
                isinstance(new, (int, float)) else ""
            rows.append([node, counter, old, new, change])
    return rows


def what_ran_html(run: RunData) -> str:
    """Scenario, target, load, versions, host, command line, times, status."""
    info = run.runs[0]
    scenario = info.get("scenario") or {}
    items = [("scenario", f"{scenario.get('name')} ({scenario.get('file')}, seed "
                          f"{scenario.get('seed')})"),
             ("target", (info.get("target") or {}).get("url")),
             ("nodes", ", ".join((info.get("target") or {}).get("nodes") or [])),
             ("load", _compact(info.get("load"))), ("versions", _compact(info.get("versions"))),
             ("host", _compact(info.get("host"))), ("command", " ".join(info.get("argv") or [])),
             ("started / ended", f"{info.get('started')} / {info.get('ended')}"),
             ("status", info.get("status")), ("interval", f"{info.get('interval_s')} s"),
             ("run directories", ", ".join(str(d) for d in run.dirs))]
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"


def _compact(mapping: dict[str, Any] | None) -> str:
    """`key=value, ...` (nested mappings flattened one level) for the what-ran list."""
    if not mapping:
        return "-"
    parts = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            parts.extend(f"{key}.{k}={v}" for k, v in value.items())
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def _img(name: str, png: bytes, alt: str) -> str:
    """An <img> with the PNG inside (data: URI)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}" title="{_e(name)}">'


def figures(run: RunData, summary: dict[str, Any]) -> list[tuple[str, str, Figure]]:
    """(file stem, section title, figure) of every plot, in page order."""
    plots = [("spectrum", "Latency percentile spectrum", plot_spectrum(run, summary)),
             ("latency-over-time", "Latency over time", plot_latency_over_time(run)),
             ("throughput", "Throughput and hit ratio over time", plot_throughput(run))]
    if summary["total"]["errors"]:
        plots.append(("errors", "Errors over time", plot_errors(run)))
    load = {node: n for stats in run.server_stats for node, n in node_load(stats).items()}
    if load:
        plots.append(("node-load", "Load per node", plot_node_load(load)))
    return plots


def render(run: RunData, summary: dict[str, Any], out: Path) -> list[Path]:
    """Write report.html (or `out`) and its PNGs beside it; returns the files written."""
    sections = {"spectrum": "", "latency-over-time": "", "throughput": "", "errors": "",
                "node-load": ""}
    written = []
    for stem, title, fig in figures(run, summary):
        png = _png(fig)
        path = out.with_name(f"{out.stem}-{stem}.png")
        write_atomically(path, png)
        written.append(path)
        sections[stem] = f"<h2>{_e(title)}</h2>{_img(path.name, png, title)}"
    errors_text = "" if summary["total"]["errors"] else "<h2>Errors</h2><p>No errors.</p>"
    title = f"cachebench: {summary.get('scenario') or 'run'} ({summary.get('started')})"
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1>{verdict_html(summary)}"
            f"<h2>Per operation</h2>{ops_html(summary)}"
            f"{sections['spectrum']}{sections['latency-over-time']}{sections['throughput']}"
            f"{sections['errors'] or errors_text}"
            f"<h2>Servers</h2>{server_html(run.server_stats)}{sections['node-load']}"
            f"<h2>What ran</h2>{what_ran_html(run)}</body></html>\n")
    write_atomically(out, page)
    return [out, *written]


def command(args: Any) -> int:
    """`bench report RUN_DIR [--slo FILE] [--out FILE]`: always exit 0 once written."""
    run = load_runs([args.run])
    summary = summarize(run, slo_for(run, args.slo))
    out = Path(args.out) if args.out else Path(args.run) / REPORT_FILE
    if not out.parent.is_dir():
        raise InputError("directory does not exist", file=str(out.parent), field="--out")
    if out.is_dir():
        raise InputError("is a directory; expected the report's file name, e.g. "
                         f"{out / REPORT_FILE}", file=str(out), field="--out")
    written = render(run, summary, out)
    print(f"wrote {written[0]} (+{len(written) - 1} PNG beside it)")
    return 0
