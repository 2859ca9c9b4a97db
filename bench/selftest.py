"""`bench selftest` (`make perf`): the harness measured against plain loops, as ratios.

Machines here are shared and noisy, so nothing is judged by absolute time: each number
is set beside a reference measured in the same run (A/B/A order, the reference
averaged), and the table prints the ratio. What it measures:

- gets/s of one Locust worker process (closed loop, scenario `peak-get`) against a
  plain single-connection pymemcache loop, and against memcslap (libmemcached, C) when
  it is installed;
- the CPU cost of generating an op (scenarios `peak-get`, `mediawiki`, `fb-etc`) as a
  share of the CPU one op costs a worker (generate + execute; budget: at most 5%);
- the recorder's hot path against a bare `list.append`;
- analyzing one hour of intervals (3600 x 8 ops) as a share of that hour (budget: 1%).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pymemcache.client.base import Client

from bench import cluster
from bench.analysis.runs import load_runs, read_summary, summarize
from bench.errors import EXIT_INVALID, EXIT_OK
from bench.results.histograms import PERCENTILES, histogram_from_values
from bench.results.recorder import INTERVAL_S, Interval, OpInterval, Recorder
from bench.results.rundir import RunInfo, RunScenario, RunWriter
from bench.scenario.model import load_scenario
from bench.targets import open_target, parse_target
from bench.units import format_percent, format_times, format_whole
from bench.workload.executor import Executor
from bench.workload.ops import Workload

GENERATED_OPS = 200_000
EXECUTED_OPS = 20_000


@contextmanager
def memcached_node(url: str | None) -> Iterator[str]:
    """The given memcached URL, or a node started for the measurement and stopped after."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="cachebench-selftest-") as workdir:
        server = cluster.start_memcached(0, Path(workdir), memory_mb=64)
        try:
            yield f"memcached://{server.address}"
        finally:
            server.stop()


def plain_gets_per_s(node: str, seconds: float) -> float:
    """A bare pymemcache loop of single-key gets: the ceiling of Python on one connection.
    It reads the same keys and values as `peak-get` (its prefill)."""
    host, port = node.rsplit(":", 1)
    client = Client((host, int(port)), default_noreply=False)
    keys: list[str] = []
    for items, ttl in Workload(load_scenario("peak-get"), 1).prefill_batches():
        client.set_many(items, expire=int(ttl))
        keys.extend(items)
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for key in keys:
            client.get(key)
        done += len(keys)
    client.close()
    return done / seconds


def harness_gets_per_s(url: str, seconds: float, users: int) -> float:
    """Throughput of `bench run peak-get` with one Locust process (closed loop).

    At its ceiling the process is CPU-bound, so the run is INVALID (exit 4) as a
    measurement of the cache: as a measurement of the harness it is what is wanted."""
    with tempfile.TemporaryDirectory(prefix="cachebench-selftest-run-") as tmp:
        out = Path(tmp) / "run"
        argv = [sys.executable, "-m", "bench", "run", "peak-get", "--target", url,
                "--duration", f"{seconds}s", "--warmup", "1s", "--out", str(out),
                "--users", str(users), "--quiet"]
        done = subprocess.run(argv, capture_output=True)
        if done.returncode not in (EXIT_OK, EXIT_INVALID):
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
        return float(read_summary(out).total.throughput or 0.0)


def memcslap_gets_per_s(node: str, count: int = 50_000) -> float | None:
    """libmemcached's memcslap, single thread: a C reference (None when not installed)."""
    binary = shutil.which("memcslap")
    if binary is None:
        return None
    result = subprocess.run([binary, f"--servers={node}", "--test=get", "--concurrency=1",
                             f"--execute-number={count}"], capture_output=True, text=True)
    match = re.search(r"Time to get\s+(\d+) keys by\s+1 threads:\s+([\d.]+) seconds",
                      result.stdout + result.stderr)
    if not match or float(match.group(2)) <= 0:
        return None
    return int(match.group(1)) / float(match.group(2))


def generation_share(scenario_name: str, url: str, ops: int = GENERATED_OPS) -> tuple[float, float]:
    """(ns per generated op, share of a worker's CPU per op spent generating it).

    The worker's CPU per op is measured here as generation plus execution against the
    target in one loop, without Locust or the recorder (regeneration sleeps skipped), so
    the share is an upper bound of what a Locust worker at full load spends on it.
    """
    scenario = load_scenario(scenario_name)
    stream = Workload(scenario, 1).stream(0, 1)
    for _ in range(ops):  # warm: key and size tables fill as a long run's would
        next(stream)
    start = time.process_time()
    for _ in range(ops):
        next(stream)
    generate = (time.process_time() - start) / ops
    target = open_target(parse_target(url), timeout=5.0)
    executor = Executor(target, scenario, sleep=lambda seconds: None)
    executed = [next(stream) for _ in range(EXECUTED_OPS)]
    start = time.process_time()
    for op in executed:
        executor.execute(op)
    execute = (time.process_time() - start) / len(executed)
    target.close()
    return generate * 1e9, generate / (generate + execute)


def bench_record_overhead(n: int = 200_000) -> dict[str, float]:
    """Cost per sample of record_sample() + flush() against a plain list.append of the
    same tuple (a sample's fields and its origin).

    Used by `bench selftest`: the recorder must stay a small multiple of an append, far
    below the cost of the cache operation being measured.
    """
    names = ("get", "get_multi", "set", "delete")
    base = time.perf_counter()
    samples = [((names[i % 4], base + i * 1e-5, base + i * 1e-5 + 2e-4, 1, 0, 1,
                 None if i % 100 else "timeout", 100), base + i * 1e-5) for i in range(n)]
    plain: list[tuple[Any, ...]] = []
    t0 = time.perf_counter()
    for sample, origin in samples:
        plain.append(sample + (origin,))
    t1 = time.perf_counter()
    recorder = Recorder()
    for sample, origin in samples:
        recorder.record_sample(sample, origin)  # type: ignore[arg-type]
    t2 = time.perf_counter()
    recorder.flush(t2, final=True)
    t3 = time.perf_counter()
    append_ns, record_ns, flush_ns = ((b - a) * 1e9 / n for a, b in ((t0, t1), (t1, t2), (t2, t3)))
    return {"samples": n, "append_ns": append_ns, "record_ns": record_ns,
            "flush_ns": flush_ns, "per_sample_ns": record_ns + flush_ns,
            "ratio_to_append": (record_ns + flush_ns) / append_ns}


SYNTHETIC_OPS = ("get", "get_multi", "set", "add", "delete", "incr", "touch", "replace")


def write_synthetic_run(path: Path, n_intervals: int, n_ops: int, seed: int = 1,
                        start: float = 1_764_072_000.0) -> None:
    """A run directory of `n_intervals` intervals x `n_ops` ops, lognormal latencies.

    A pool of 16 distinct histograms per op is cycled, so writing stays quick while the
    analysis still decodes every line of the log.
    """
    rng = np.random.default_rng(seed)
    ops = [SYNTHETIC_OPS[i % len(SYNTHETIC_OPS)] + ("" if i < len(SYNTHETIC_OPS) else f"{i}")
           for i in range(n_ops)]
    pool = {op: [histogram_from_values(np.clip(rng.lognormal(5.5, 0.6, 1000), 1, 6e7)
                                       .astype(np.int64)) for _ in range(16)] for op in ops}
    with RunWriter(path, RunInfo(scenario=RunScenario(name="synthetic")), start) as writer:
        for i in range(n_intervals):
            hists = {op: pool[op][i % 16] for op in ops}
            writer.write_interval(Interval(start + i * INTERVAL_S, INTERVAL_S, {
                op: OpInterval(latency=h, service=h, count=h.total_count, keys=h.total_count)
                for op, h in hists.items()}))
        writer.finish("completed", ended=start + n_intervals * INTERVAL_S)


def bench_analyze_speed(n_intervals: int = 3600, n_ops: int = 8) -> dict[str, float]:
    """Time the analysis of a synthetic run of `n_intervals` x `n_ops` x 2 tags.

    `budget_ratio` is the analysis time over 1% of the simulated run time: below 1.0
    meets the budget (an hour analysed in under 36 s).
    """
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        began = time.perf_counter()
        write_synthetic_run(run_dir, n_intervals, n_ops)
        written = time.perf_counter()
        run = load_runs([run_dir])
        summary = summarize(run, None)
        for series in run.latency.values():  # what plots and compare ask for
            series.percentiles(PERCENTILES, run.n_intervals, run.layout)
        analysed = time.perf_counter()
    seconds = analysed - written
    return {"intervals": n_intervals, "ops": n_ops, "histograms": n_intervals * n_ops * 2,
            "write_s": written - began, "analyze_s": seconds,
            "budget_ratio": seconds / (0.01 * n_intervals * INTERVAL_S),
            "count": summary.total.count}


def measure(url: str, seconds: float,
            say: Callable[[str], None] = print) -> list[tuple[str, str, str]]:
    """Every measurement, as (what, value, ratio or share) rows; `say` is told what is
    measured before the minute or so it takes."""
    node = parse_target(url).nodes[0]
    say(f"measuring against {url} ({seconds:g} s per run) ...")
    plain_a = plain_gets_per_s(node, seconds)
    one_user = harness_gets_per_s(url, seconds, users=1)
    harness = harness_gets_per_s(url, seconds, users=8)
    plain_b = plain_gets_per_s(node, seconds)
    plain = (plain_a + plain_b) / 2
    rows = [("plain pymemcache loop, 1 connection", f"{format_whole(plain)} gets/s",
             "1.00 (reference)"),
            ("cachebench, 1 Locust process, 1 user", f"{format_whole(one_user)} gets/s",
             f"{one_user / plain:.2f} of plain"),
            ("cachebench, 1 Locust process, 8 users", f"{format_whole(harness)} gets/s",
             f"{harness / plain:.2f} of plain")]
    memcslap = memcslap_gets_per_s(node)
    if memcslap:
        rows.append(("memcslap (C), 1 thread", f"{format_whole(memcslap)} gets/s",
                     f"{memcslap / plain:.2f} of plain"))
    for name in ("peak-get", "mediawiki", "fb-etc"):
        ns, share = generation_share(name, url)
        rows.append((f"op generation, {name}", f"{format_whole(ns)} ns/op",
                     f"{format_percent(share, 1)} of a worker's CPU per op (budget 5%)"))
    rec = bench_record_overhead()
    rows.append(("recorder: record + flush per sample", f"{format_whole(rec['per_sample_ns'])} ns",
                 f"{format_times(rec['ratio_to_append'], 1)} a list.append"))
    speed = bench_analyze_speed(3600, 8)
    rows.append(("analyze 1 h (3600 intervals x 8 ops)", f"{speed['analyze_s']:.1f} s",
                 f"{format_percent(speed['analyze_s'] / 3600, 2)} of the hour (budget 1%)"))
    return rows
