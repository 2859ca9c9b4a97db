"""report.html: the human view of one run, one self-contained file that opens offline.

Why embedded PNGs: a report is mailed, attached to tickets and opened from CI artefacts;
with the plots inside as data: URIs it needs nothing beside it (the PNGs are also
written next to it for slides and wikis). No JavaScript, no external CSS or fonts.

Order on the page is the order of questions an SRE asks: is this a measurement of the
cache at all (an INVALID banner leads when the load generator fell behind), did it meet
the SLO (before any plot), what did the load generator do, what does the latency
distribution look like, how did it move over time, did the servers suffer (evictions, memory, connections), and what exactly ran.
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

from bench.analysis.phases import PHASES, fault_windows
from bench.analysis.runs import RunData
from bench.analysis.summary import Summary
from bench.analysis.validity import Validity, headline
from bench.analysis.verdicts import Verdict, describe_windows, partial_note, verdict_reasons
from bench.results.rundir import RunScenario, RunTarget, write_atomically
from bench.results.histograms import percentiles_from_counts
from bench.units import format_ms, format_percent, format_times, format_us, format_whole
from bench.vocabulary import ERROR_KINDS, LOOKUP_OPS

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


def plot_spectrum(run: RunData, summary: Summary) -> Figure:
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


def _mark_slo(ax: Any, summary: Summary) -> None:
    """Each latency objective as a dashed threshold line and its target corner."""
    for objective in summary.slo.objectives if summary.slo else []:
        x = 1 / (1 - objective.percentile / 100)
        color = "green" if objective.passed else "red"
        ax.axhline(objective.threshold_us, color=color, linestyle="--", linewidth=0.8)
        ax.plot([x], [objective.threshold_us], marker="v", color=color)
        ax.annotate(objective.name, (x, objective.threshold_us), fontsize=7,
                    color=color, xytext=(4, 4), textcoords="offset points")


def _seconds(run: RunData) -> np.ndarray:
    """Interval starts as seconds since the first one (the x axis of time plots)."""
    starts = run.interval_starts
    return starts - starts.min() if len(starts) else starts


def _shade_faults(ax: Any, run: RunData) -> None:
    """Each fault window of the run as a shaded band on a time plot."""
    if not len(run.interval_starts):
        return
    origin = float(run.interval_starts.min())
    for n, window in enumerate(fault_windows(run)):
        end = window.end if window.end is not None else window.start
        ax.axvspan(window.start - origin, end - origin, color="tab:red", alpha=0.12,
                   label="fault" if n == 0 else None)


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
        _shade_faults(ax, run)
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
    _shade_faults(top, run)
    _shade_faults(bottom, run)
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
    _shade_faults(ax, run)
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
.invalid{background:#a50e0e;color:#fff}
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


def verdict_html(summary: Summary) -> str:
    """The banner (PASS / FAIL and why) and the per-objective table."""
    verdict = summary.slo
    if not verdict:
        return '<div class="verdict none">No SLO given: nothing judged</div>'
    if verdict.passed is None:
        return '<div class="verdict none">SLO not judged: none of its ops ran</div>'
    partial = partial_note(verdict)
    if verdict.passed and partial:
        banner = ('<div class="verdict none">NOT A PASS: SLO met over what was measured'
                  f'{partial}</div>')
    elif verdict.passed:
        banner = '<div class="verdict pass">PASS: SLO met</div>'
    else:
        reasons = "".join(f"<li>{_e(r)}</li>" for r in verdict_reasons(verdict))
        banner = f'<div class="verdict fail">FAIL: SLO missed{partial}<ul>{reasons}</ul></div>'
    rows, classes = _slo_rows(verdict)
    return banner + _table(["objective", "observed", "windows compliant", "verdict"],
                           rows, classes)


def _slo_rows(verdict: Verdict) -> tuple[list[list[Any]], list[str]]:
    """Rows of the SLO table: objectives, error budget, hit ratio."""
    rows = []
    for o in verdict.objectives:
        rows.append([o.name, f"{format_percent(o.observed_fraction, 3)} under "
                     f"{format_us(o.threshold_us)} (p{o.percentile:g} = "
                     f"{format_ms(o.observed_percentile_us)} ms)",
                     describe_windows(o.windows),
                     _word(o.passed)])
    errors = verdict.errors
    if errors:
        rows.append([f"errors <= {format_percent(errors.max_fraction)}",
                     f"{format_percent(errors.observed_fraction, 3)}, burn rate "
                     f"{format_times(errors.burn_rate)}",
                     describe_windows(errors.windows),
                     _word(errors.passed)])
    hit_ratio = verdict.hit_ratio
    if hit_ratio:
        rows.append([f"hit ratio >= {format_percent(hit_ratio.min)}",
                     format_percent(hit_ratio.observed, 2),
                     describe_windows(hit_ratio.windows),
                     _word(hit_ratio.passed)])
    return rows, [row[-1] for row in rows]


def _word(passed: bool | None) -> str:
    return "no data" if passed is None else ("PASS" if passed else "FAIL")


def invalid_html(summary: Summary) -> str:
    """The INVALID banner, first on the page; nothing for a valid run."""
    text = headline(summary.validity)
    return f'<div class="verdict invalid">{_e(text)}</div>' if text else ""


def loadgen_html(validity: Validity | None) -> str:
    """The load generator's own figures, per load process: what the verdict judged."""
    if not validity:
        return "<p>No load generator figures (a run directory without loadgen.csv).</p>"
    header = ["process", "verdict", "intended", "sent", "sent/intended", "send lag p50",
              "p99", "p99.9", "max", "CPU of a core", "longest stall", "parked", "in flight"]
    rows = []
    for name, source in validity.sources.items():
        lag = source.send_lag_us or {}
        rows.append([name, "valid" if source.valid else "INVALID", f"{source.intended:,}",
                     f"{source.sent:,}", format_percent(source.rate_ratio, 1),
                     *(format_ms(lag.get(k)) for k in ("p50", "p99", "p99.9", "max")),
                     format_percent(source.cpu, 0), format_ms(source.stall_max_us),
                     source.parked_max, source.in_flight_max])
    limits = validity.thresholds
    return _table(header, rows) + (
        f"<p>Times in ms. A process is invalid when, over the measured window, it sent "
        f"fewer than {format_percent(limits.min_rate)} of the ops its schedule intended, "
        f"its send-lag p99 exceeded {format_us(limits.max_send_lag_p99_us)} (open loop "
        f"only), or it used more than {format_percent(limits.max_cpu)} of a core. Send "
        f"lag: how much later than it could have an op went out. Stall: the latest wake-up "
        f"of a 10 ms watchdog timer (event-loop blocking).</p>")


def ops_html(summary: Summary) -> str:
    """The per-op numbers of summary.json (ms, ops/s, errors)."""
    header = ["op", "ops", "ops/s", "hit ratio", "p50", "p90", "p99", "p99.9", "p99.99", "max",
              "mean", "service p50", "service p99", "service max", "errors"]
    rows = []
    for name, op in [*summary.ops.items(), ("total", summary.total)]:
        lat, svc = op.latency_us, op.service_us
        rows.append([name, f"{op.count:,}", format_whole(op.throughput),
                     format_percent(op.hit_ratio, 2),
                     *(format_ms(lat[k]) for k in ("p50", "p90", "p99", "p99.9", "p99.99",
                                                   "max", "mean")),
                     format_ms(svc["p50"]), format_ms(svc["p99"]), format_ms(svc["max"]),
                     f"{op.errors:,}"])
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


def faults_html(summary: Summary) -> str:
    """The fault windows, the figures before / during / after them and the recovery
    times; what the gutter pool served. Empty for a run without faults or gutter."""
    parts = []
    phases = summary.phases
    if phases:
        start = min(w.start for w in phases.windows)
        windows = [[w.kind, w.node, w.address, f"+{w.start - start:.1f} s",
                    "-" if w.end is None else f"{w.end - w.start:.1f} s",
                    w.error or ""] for w in phases.windows]
        parts.append(_table(["fault", "node", "address", "from", "lasted", "error"], windows))
        rows = [[name, f"{p.duration_s:.0f} s", format_whole(p.count),
                 format_whole(p.errors),
                 ", ".join(f"{k} {n}" for k, n in p.errors_by_kind.items() if n) or "-",
                 format_percent(p.hit_ratio, 1), format_ms(p.latency_us["p50"]),
                 format_ms(p.latency_us["p99"]), format_ms(p.latency_us["max"])]
                for name in PHASES if (p := phases.phase(name)) is not None]
        parts.append(_table(["phase", "time", "ops", "errors", "by kind", "hit ratio",
                             "p50 ms", "p99 ms", "max ms"], rows))
        timing = ", ".join(f"{name.removesuffix('_s').replace('_', ' ')}: "
                           f"{'never' if value is None else f'+{value:.1f} s'}"
                           for name, value in phases.timing.items())
        parts.append(f"<p>From the first fault's start: {_e(timing)}.</p>")
    gutter = summary.gutter
    if gutter:
        parts.append(_table(["pool", "hits", "misses", "hit ratio"],
                            [[pool, format_whole(g.hits), format_whole(g.misses),
                              format_percent(g.hit_ratio, 1)] for pool, g in gutter.pools()]))
    return f"<h2>Faults and failover</h2>{''.join(parts)}" if parts else ""


def what_ran_html(run: RunData) -> str:
    """Scenario, target, load, versions, host, command line, times, status."""
    info = run.runs[0]
    scenario = info.scenario or RunScenario()
    target = info.target or RunTarget()
    items = [("scenario", f"{scenario.name} ({scenario.file}, seed {scenario.seed})"),
             ("target", target.url), ("nodes", ", ".join(target.nodes or [])),
             ("load", _compact(info.load)), ("versions", _compact(info.versions)),
             ("host", _compact(info.host)), ("command", " ".join(info.argv or [])),
             ("started / ended", f"{info.started} / {info.ended}"),
             ("status", info.status), ("interval", f"{info.interval_s} s"),
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


def figures(run: RunData, summary: Summary) -> list[tuple[str, str, Figure]]:
    """(file stem, section title, figure) of every plot, in page order."""
    plots = [("spectrum", "Latency percentile spectrum", plot_spectrum(run, summary)),
             ("latency-over-time", "Latency over time", plot_latency_over_time(run)),
             ("throughput", "Throughput and hit ratio over time", plot_throughput(run))]
    if summary.total.errors:
        plots.append(("errors", "Errors over time", plot_errors(run)))
    load = {node: n for stats in run.server_stats for node, n in node_load(stats).items()}
    if load:
        plots.append(("node-load", "Load per node", plot_node_load(load)))
    return plots


def render(run: RunData, summary: Summary, out: Path) -> list[Path]:
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
    errors_text = "" if summary.total.errors else "<h2>Errors</h2><p>No errors.</p>"
    title = f"cachebench: {summary.scenario or 'run'} ({summary.started})"
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1>{invalid_html(summary)}{verdict_html(summary)}"
            f"<h2>Per operation</h2>{ops_html(summary)}"
            f"<h2>Load generator</h2>{loadgen_html(summary.validity)}"
            f"{sections['spectrum']}{sections['latency-over-time']}{sections['throughput']}"
            f"{sections['errors'] or errors_text}{faults_html(summary)}"
            f"<h2>Servers</h2>{server_html(run.server_stats)}{sections['node-load']}"
            f"<h2>What ran</h2>{what_ran_html(run)}</body></html>\n")
    write_atomically(out, page)
    return [out, *written]
