"""Build run directories with known latency distributions for the analyzer's tests.

`make_run_dir(tmp_path, {"get": [[100, 200], [300]]})` records the chosen microsecond
values into histograms (one per op per interval, latency and service) and writes the
run directory through the harness's own `RunWriter`, so the files are exactly what
`bench run` writes and every expected percentile can be worked out by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.results.histograms import histogram_from_values
from bench.results.loadstats import LoadInterval
from bench.results.recorder import Interval, OpInterval
from bench.results.rundir import RunInfo, RunWriter, stats_snapshot

START = 1_764_072_000.0
Values = Sequence[Sequence[int]]


def make_run_dir(base: Path, ops: Mapping[str, Values], *, name: str = "run",
                 start: float = START, interval_s: float = 1.0,
                 service: Mapping[str, Values] | None = None,
                 counters: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 slo: dict[str, Any] | None = None,
                 server_stats: tuple[dict[str, Any], dict[str, Any]] | None = None,
                 status: str = "completed",
                 load: Mapping[str, Sequence[LoadInterval]] | None = None,
                 info: Mapping[str, Any] | None = None) -> Path:
    """A run directory `base/name`; `ops[op][i]` are the latencies (us) of interval i.

    `service` gives service times the same way (default: equal to latency).
    `counters[op][i]` sets counters of interval i: hits, misses, keys, bytes, and
    `errors` as {kind: n}. An op with no values in an interval has no line for it,
    as the recorder writes only ops that ran. `load[source][i]` is what load process
    `source` did in interval i (loadgen.csv, its send-lag histogram). `info` replaces
    run.json keys (e.g. `load`).
    """
    path = base / name
    n_intervals = max(len(per_interval) for per_interval in ops.values())
    with RunWriter(path, RunInfo.from_json({**run_info(slo), **(info or {})}), start,
                   interval_s) as writer:
        for i in range(n_intervals):
            writer.write_interval(Interval(start + i * interval_s, interval_s, {
                op: _op_interval(values[i], _at(service or ops, op, i),
                                 _at(counters or {}, op, i) or {})
                for op, values in ops.items() if i < len(values) and len(values[i])},
                {source: pieces[i] for source, pieces in (load or {}).items()
                 if i < len(pieces)}))
        before, after = server_stats or default_server_stats()
        writer.write_server_stats(stats_snapshot(before, start),
                                  stats_snapshot(after, start + n_intervals * interval_s),
                                  "memcached")
        writer.finish(status, ended=start + n_intervals * interval_s)
    return path


def _at(per_op: Mapping[str, Sequence[Any]], op: str, i: int) -> Any:
    """per_op[op][i], or None when not given."""
    values = per_op.get(op, [])
    return values[i] if i < len(values) else None


def _op_interval(latency: Sequence[int], service: Sequence[int] | None,
                 counters: Mapping[str, Any]) -> OpInterval:
    """One op's interval: histograms of the chosen values, counters as given."""
    return OpInterval(latency=histogram_from_values(np.asarray(latency, dtype=np.int64)),
                      service=histogram_from_values(np.asarray(service if service is not None
                                                               else latency, dtype=np.int64)),
                      count=len(latency), hits=counters.get("hits", 0),
                      misses=counters.get("misses", 0), keys=counters.get("keys", len(latency)),
                      errors=dict(counters.get("errors", {})),
                      bytes=counters.get("bytes", 100 * len(latency)))


def run_info(slo: dict[str, Any] | None) -> dict[str, Any]:
    """The run.json keys a driver describes a run with, plausible for a local run."""
    return {
        "harness": {"name": "cachebench", "version": "0.1.0"},
        "scenario": {"name": "synthetic", "file": "scenarios/synthetic.yaml", "seed": 1,
                     "resolved": {"name": "synthetic"}},
        "target": {"url": "memcached://127.0.0.1:11211", "kind": "memcached",
                   "nodes": ["127.0.0.1:11211"]},
        "load": {"mode": "open", "rate": 1000.0, "arrival": "poisson", "users": 4,
                 "processes": 1, "warmup_s": 0.0, "duration_s": 60.0},
        "slo": slo,
        "versions": {"python": "3.11.2", "servers": {"127.0.0.1:11211": "1.6.21"}},
        "host": {"hostname": "testhost", "platform": "Linux", "cpus": 2},
        "argv": ["bench", "run", "synthetic"],
    }


def default_server_stats() -> tuple[dict[str, Any], dict[str, Any]]:
    """Before/after counters of a two-node memcached pool."""
    def nodes(gets: int, evictions: int, conns: int, mem: int) -> dict[str, Any]:
        return {node: {"cmd_get": gets * (i + 1), "evictions": evictions,
                       "curr_connections": conns, "bytes": mem * (i + 1),
                       "limit_maxbytes": 64 * 2**20}
                for i, node in enumerate(("127.0.0.1:11211", "127.0.0.1:11212"))}
    return nodes(0, 0, 2, 1000), nodes(500, 3, 6, 5_000_000)
