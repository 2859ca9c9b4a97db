"""`bench selftest` (`make perf`): the harness measured against plain loops, as ratios.

Machines here are shared and noisy, so nothing is judged by absolute time: each figure is
set beside a reference measured in the same run, alternated with it over `--rounds`
rounds, and the table prints the ratio and how much it moved from round to round. The
references are plain gevent client loops without the harness (bench/loadgen/plain.py),
run in processes of their own like the harness's Locust process. What it measures:

- the noise floor: at 1,000 gets/s on one memcached node, cachebench's latency (from the
  intended start) and service time p50/p99/p99.9 (scenario peak-get, open loop, 8 users)
  beside the time a plain paced loop (8 connections, the same Poisson rate) measures
  around each get; the rounds are pooled. Targets: service p99 at most 1.25x the plain
  loop's, latency p99 at most 1.5x, p99.9 at most 2x;
- the closed-loop ceiling: gets/s of one Locust process (peak-get, closed loop, 8 users)
  against a plain closed loop with 8 connections, on memcached (pymemcache) and on Redis
  (redis-py, hiredis); target at least 0.9x;
- memcslap (libmemcached, C) and redis-benchmark (C) beside the plain loops, where
  installed;
- the CPU cost of generating an op (scenarios `peak-get`, `mediawiki`, `fb-etc`) as a
  share of the CPU one op costs a worker (generate + execute; budget: at most 5%);
- the recorder's hot path against a bare `list.append`;
- analyzing one hour of intervals (3600 x 8 ops) as a share of that hour (budget: 1%).

A Redis server is started when `redis-server` is installed and no `--redis-target` is
given; without either, the Redis rows are left out.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench import cluster
from bench.analysis.runs import load_runs, read_summary, summarize
from bench.analysis.summary import OpSummary
from bench.errors import EXIT_INVALID, EXIT_OK, TargetError
from bench.results.histograms import (PERCENTILES, add_histogram, counts_array,
                                      decode_histogram, default_layout, histogram_from_values,
                                      latency_stats, new_histogram)
from bench.results.recorder import INTERVAL_S, Interval, OpInterval, Recorder
from bench.results.rundir import RunInfo, RunScenario, RunWriter
from bench.scenario.model import load_scenario
from bench.targets import open_target, parse_target
from bench.units import format_percent, format_times, format_whole
from bench.workload.executor import Executor
from bench.workload.ops import Workload

GENERATED_OPS = 200_000
EXECUTED_OPS = 20_000
#: Users of `peak-get`; every plain loop gets as many connections.
USERS = 8
NOISE_RATE = 1000
NOISE_KEYS = ("p50", "p99", "p99.9")
#: Issue 8's targets for the noise floor: (latency, service) over the plain loop, per key.
NOISE_TARGETS = {"p99": (1.5, 1.25), "p99.9": (2.0, 2.0)}
CEILING_TARGET = 0.9

Row = tuple[str, str, str]


@contextmanager
def servers(memcached_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str | None]]:
    """(memcached URL, Redis URL or None): the given ones, or nodes started for the
    measurement and stopped after (Redis only when redis-server is installed)."""
    with tempfile.TemporaryDirectory(prefix="cachebench-selftest-") as workdir, \
            ExitStack() as stack:
        if not memcached_url:
            memcached = cluster.start_memcached(0, Path(workdir), memory_mb=64)
            stack.callback(memcached.stop)
            memcached_url = memcached.url
        if not redis_url and shutil.which("redis-server"):
            redis = cluster.start_redis(0, Path(workdir))
            stack.callback(redis.stop)
            redis_url = redis.url
        yield memcached_url, redis_url


def _run(argv: list[str], ok: tuple[int, ...] = (EXIT_OK,)) -> str:
    """Run a measuring subprocess; an exit code outside `ok` is a TargetError with the end
    of its output."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode not in ok:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise TargetError(f"selftest: {' '.join(argv[1:4])} ... failed (exit {done.returncode})"
                          f"\n{tail}")
    return done.stdout


def plain_loop(kind: str, node: str, seconds: float, rate: float | None = None) -> dict[str, Any]:
    """One run of the plain gevent loop (bench/loadgen/plain.py): closed, or paced at `rate`."""
    argv = [sys.executable, "-m", "bench.loadgen.plain", kind, node,
            "--connections", str(USERS), "--seconds", f"{seconds:g}"]
    return json.loads(_run(argv + (["--rate", f"{rate:g}"] if rate else [])))


def harness_run(url: str, out: Path, seconds: float, rate: float | None = None) -> OpSummary:
    """`bench run peak-get` with one Locust process (closed loop, or open at `rate`) into
    `out`; returns the summary's total.

    At its closed-loop ceiling the process is CPU-bound, so the run is INVALID (exit 4) as
    a measurement of the cache: as a measurement of the harness it is what is wanted."""
    argv = [sys.executable, "-m", "bench", "run", "peak-get", "--target", url,
            "--duration", f"{seconds:g}s", "--warmup", "1s", "--users", str(USERS),
            "--out", str(out), "--quiet", "--no-report"]
    _run(argv + (["--rate", f"{rate:g}"] if rate else []), ok=(EXIT_OK, EXIT_INVALID))
    return read_summary(out).total


def alternated(reference: Callable[[], float], measured: Callable[[], float],
               rounds: int) -> tuple[float, list[float], float]:
    """Reference, measured, reference, ... reference: (mean of the references, each
    measured value over the mean of the two references around it, mean measured)."""
    references, ratios, values = [reference()], [], []
    for _ in range(rounds):
        values.append(measured())
        references.append(reference())
        ratios.append(values[-1] / statistics.fmean(references[-2:]))
    return statistics.fmean(references), ratios, statistics.fmean(values)


def _spread(ratios: list[float]) -> str:
    """The median ratio and its range over the rounds, as the table prints them."""
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}"
    return f"{statistics.median(ratios):.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f})"


def noise_floor(url: str, seconds: float, rounds: int, workdir: Path) -> list[Row]:
    """cachebench's latency and service percentiles at NOISE_RATE beside the plain paced
    loop's per-get time, alternated, the rounds pooled; per-round p99 ratios for spread.
    The plain loop's own latency from its intended start is shown for comparison."""
    node = parse_target(url).nodes[0]
    pooled = {"service": new_histogram(), "latency": new_histogram()}
    run_dirs, p99_ratios = [], []
    for index in range(rounds):
        plain = plain_loop("memcached", node, seconds, NOISE_RATE)
        for name, histogram in pooled.items():
            add_histogram(histogram, decode_histogram(plain[f"{name}_histogram"]))
        run_dirs.append(workdir / f"noise-{index}")
        total = harness_run(url, run_dirs[-1], seconds, NOISE_RATE)
        p99_ratios.append(total.latency_us["p99"] / plain["service_us"]["p99"])
    plain_us = {name: latency_stats(counts_array(histogram), default_layout())
                for name, histogram in pooled.items()}
    harness = summarize(load_runs(run_dirs), None).total
    rows = [(f"noise floor at {format_whole(NOISE_RATE)} gets/s: plain paced loop, time per get",
             _percentiles(plain_us["service"]), "1.00 (reference)")]
    for what, key, index in (("latency (from intended start)", "latency_us", 0),
                             ("service time", "service_us", 1)):
        ratios = {k: getattr(harness, key)[k] / plain_us["service"][k] for k in NOISE_KEYS}
        targets = ", ".join(f"{k} <= {NOISE_TARGETS[k][index]:g}x" for k in NOISE_TARGETS)
        rows.append((f"  cachebench {what}", _percentiles(getattr(harness, key)),
                     " / ".join(f"{ratios[k]:.2f}" for k in NOISE_KEYS)
                     + f" x plain (targets {targets})"))
    rows.append(("  latency p99 over plain p99, per round", "", _spread(p99_ratios)))
    rows.append(("  plain loop's own latency from intended start (gevent.sleep)",
                 _percentiles(plain_us["latency"]), "for comparison"))
    return rows


def _percentiles(stats: dict[str, Any]) -> str:
    return "p50/p99/p99.9 " + "/".join(format_whole(stats[k]) for k in NOISE_KEYS) + " us"


def ceiling(kind: str, url: str, seconds: float, rounds: int,
            workdir: Path) -> tuple[list[Row], float]:
    """Closed-loop gets/s of one Locust process against the plain closed loop, alternated;
    the rows and the plain loop's mean gets/s."""
    node = parse_target(url).nodes[0]
    runs = iter(range(rounds))
    plain, ratios, harness = alternated(
        lambda: plain_loop(kind, node, seconds)["throughput"],
        lambda: harness_run(url, workdir / f"{kind}-ceiling-{next(runs)}",
                            seconds).throughput or 0.0,
        rounds)
    client = {"memcached": "pymemcache", "redis": "redis-py"}[kind]
    return [(f"plain gevent {client} loop, {USERS} connections", f"{format_whole(plain)} gets/s",
             "1.00 (reference)"),
            (f"  cachebench closed loop, 1 process, {USERS} users", f"{format_whole(harness)} gets/s",
             f"{_spread(ratios)} of plain (target >= {CEILING_TARGET:g})")], plain


def memcslap_gets_per_s(node: str, count: int = 20_000) -> float | None:
    """libmemcached's memcslap, USERS threads of one connection each: a C reference
    (None when it is not installed). It loads its own keys first, then gets them."""
    binary = shutil.which("memcslap")
    if binary is None:
        return None
    result = subprocess.run([binary, f"--servers={node}", "--test=get", "--tcp-nodelay",
                             f"--concurrency={USERS}", f"--execute-number={count}"],
                            capture_output=True, text=True)
    match = re.search(r"Time to get\s+(\d+) keys by\s+\d+ threads:\s+([\d.]+) seconds",
                      result.stdout + result.stderr)
    if not match or float(match.group(2)) <= 0:
        return None
    return int(match.group(1)) / float(match.group(2))


def redis_benchmark_gets_per_s(node: str, count: int = 200_000) -> float | None:
    """redis-benchmark GETs on USERS connections, no pipelining (None when not installed)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    host, port = node.rsplit(":", 1)
    result = subprocess.run([binary, "-h", host, "-p", port, "-t", "get", "-c", str(USERS),
                             "-n", str(count), "-d", "100", "-r", "1000", "-q", "--csv"],
                            capture_output=True, text=True)
    match = re.search(r'^"GET","([\d.]+)"', result.stdout, re.MULTILINE)
    return float(match.group(1)) if match else None


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


def measure(memcached_url: str, redis_url: str | None, seconds: float, rounds: int,
            say: Callable[[str], None] = print) -> list[Row]:
    """Every measurement, as (what, value, ratio or share) rows; `say` is told what is
    measured before each of the minutes it takes."""
    node = parse_target(memcached_url).nodes[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cachebench-selftest-runs-") as tmp:
        workdir = Path(tmp)
        say(f"noise floor at {format_whole(NOISE_RATE)} gets/s on {memcached_url}, {rounds} "
            f"rounds of {seconds:g} s ...")
        rows += noise_floor(memcached_url, seconds, rounds, workdir)
        say("closed-loop ceiling on memcached ...")
        ceiling_rows, plain = ceiling("memcached", memcached_url, seconds, rounds, workdir)
        rows += ceiling_rows
        memcslap = memcslap_gets_per_s(node)
        if memcslap:
            rows.append((f"  memcslap (C), {USERS} connections", f"{format_whole(memcslap)} gets/s",
                         f"{memcslap / plain:.2f} of plain"))
        if redis_url:
            say(f"closed-loop ceiling on Redis ({redis_url}) ...")
            ceiling_rows, plain = ceiling("redis", redis_url, seconds, rounds, workdir)
            rows += ceiling_rows
            benchmark = redis_benchmark_gets_per_s(parse_target(redis_url).nodes[0])
            if benchmark:
                rows.append((f"  redis-benchmark (C), {USERS} connections",
                             f"{format_whole(benchmark)} gets/s",
                             f"{benchmark / plain:.2f} of plain"))
    say("op generation, recorder, analysis ...")
    for name in ("peak-get", "mediawiki", "fb-etc"):
        ns, share = generation_share(name, memcached_url)
        rows.append((f"op generation, {name}", f"{format_whole(ns)} ns/op",
                     f"{format_percent(share, 1)} of a worker's CPU per op (budget 5%)"))
    rec = bench_record_overhead()
    rows.append(("recorder: record + flush per sample", f"{format_whole(rec['per_sample_ns'])} ns",
                 f"{format_times(rec['ratio_to_append'], 1)} a list.append"))
    speed = bench_analyze_speed(3600, 8)
    rows.append(("analyze 1 h (3600 intervals x 8 ops)", f"{speed['analyze_s']:.1f} s",
                 f"{format_percent(speed['analyze_s'] / 3600, 2)} of the hour (budget 1%)"))
    return rows
